//! Backups: a consistent copy of a data directory taken while it serves
//! writes, and its verified restoration.
//!
//! A backup never takes the data directory's lock and never writes to it.
//! It relies on what the files promise: a snapshot never changes once
//! renamed into place, segments are only appended to, and module files are
//! replaced atomically. So it copies the newest valid snapshot, every segment
//! after it (holding all of them open before copying, so retention cannot
//! remove one half-way), and the modules; cuts the copy of the log at its
//! last whole record; replays the copy to prove it opens; and writes a
//! manifest with every file's size and CRC-32 last. A directory without a
//! manifest is not a backup.

use std::io::Read;
use std::path::{Path, PathBuf};

use interstice_fs::{Storage, atomic};
use interstice_log::{RecoveryMode, first_needed, list_segments, recover, scan_range};
use interstice_store::snapshot;
use serde::{Deserialize, Serialize};

use crate::Database;
use crate::config::RuntimeConfig;
use crate::error::OpenError;
use crate::layout::{LOG_DIR, MODULES_DIR, RESTORE_MARKER, SNAPSHOTS_DIR};
use crate::replay::Replayer;
use crate::snapshots;

/// The manifest's file name in a backup directory.
pub const MANIFEST: &str = "BACKUP.json";
/// Version of the manifest's layout.
pub const MANIFEST_VERSION: u32 = 1;
/// A copy is retried this many times when retention removes a file it
/// needed before the file could be opened.
const ATTEMPTS: usize = 5;

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} exists and is not empty; give a new or empty directory")]
    NotEmpty(PathBuf),
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("the copy does not replay: {0}")]
    Replay(String),
    #[error(
        "files kept changing under the backup ({0} attempts); retry when the database is less busy"
    )]
    Unstable(usize),
    #[error(transparent)]
    Log(#[from] interstice_log::LogError),
    #[error(transparent)]
    Snapshot(#[from] crate::error::SnapshotError),
    #[error("the restored directory does not open: {0}")]
    Open(#[source] Box<OpenError>),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One file of a backup.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupFile {
    /// Relative to the backup directory, `/`-separated.
    pub path: String,
    pub bytes: u64,
    pub crc32: u32,
}

/// `BACKUP.json`: what a backup holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// The state the backup restores to: every transaction up to this one.
    pub tx_id: u64,
    /// The snapshot it starts from, if any.
    pub snapshot_tx_id: Option<u64>,
    pub created_unix_micros: i64,
    pub modules: Vec<String>,
    pub rows: u64,
    pub files: Vec<BackupFile>,
}

fn ensure_empty(storage: &dyn Storage, dir: &Path) -> Result<(), BackupError> {
    if !storage.exists(dir) {
        return Ok(());
    }
    match storage.list(dir).map_err(io(dir))?.is_empty() {
        true => Ok(()),
        false => Err(BackupError::NotEmpty(dir.to_path_buf())),
    }
}

/// A backup being written: where, and every file written so far.
struct Copy<'a> {
    storage: &'a dyn Storage,
    dest: &'a Path,
    files: Vec<BackupFile>,
}

impl Copy<'_> {
    /// Writes `bytes` at `dest/rel` durably and records it.
    fn put(&mut self, rel: &str, bytes: &[u8]) -> Result<(), BackupError> {
        let path = self.dest.join(rel);
        if let Some(parent) = path.parent() {
            self.storage.create_dir_all(parent).map_err(io(parent))?;
        }
        atomic::write_atomic(self.storage, &path, bytes).map_err(io(&path))?;
        self.files.push(BackupFile {
            path: rel.to_string(),
            bytes: bytes.len() as u64,
            crc32: crc32fast::hash(bytes),
        });
        Ok(())
    }

    /// Removes every file written so far (before another attempt).
    fn clear(&mut self) -> Result<(), BackupError> {
        for f in self.files.drain(..) {
            let path = self.dest.join(&f.path);
            self.storage.remove(&path).map_err(io(&path))?;
        }
        Ok(())
    }
}

fn read_all(path: &Path, mut reader: Box<dyn Read + Send>) -> Result<Vec<u8>, BackupError> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(io(path))?;
    Ok(bytes)
}

/// Makes a consistent copy of `data_dir` in `dest` (new or empty) while the
/// database may keep serving writes in another thread or process. Both are
/// on `storage`.
pub fn backup(
    storage: &dyn Storage,
    data_dir: &Path,
    dest: &Path,
) -> Result<Manifest, BackupError> {
    ensure_empty(storage, dest)?;
    storage.create_dir_all(dest).map_err(io(dest))?;
    let mut copy = Copy {
        storage,
        dest,
        files: Vec::new(),
    };
    for _ in 0..ATTEMPTS {
        match copy_once(&mut copy, data_dir)? {
            Some(manifest) => return Ok(manifest),
            // A file vanished under us: start over on a clean slate.
            None => copy.clear()?,
        }
    }
    Err(BackupError::Unstable(ATTEMPTS))
}

/// One attempt; `None` when a needed file disappeared before it was opened.
fn copy_once(copy: &mut Copy<'_>, data_dir: &Path) -> Result<Option<Manifest>, BackupError> {
    let mut replayer = copy_base_snapshot(copy, data_dir)?;
    let snapshot_tx_id = replayer.snapshot_tx_id;
    let from = replayer.next_tx_id();
    if !copy_log(copy, data_dir, from)? {
        return Ok(None);
    }
    copy_modules(copy, data_dir)?;
    // Prove the copy replays, and learn where it ends.
    let dest_log = copy.dest.join(LOG_DIR);
    let mut failed = None;
    let scanned = scan_range(copy.storage, &dest_log, from, u64::MAX, &mut |rec| {
        replayer.apply_noting(rec, &mut failed);
        Ok(())
    })?;
    // Damage inside the copy (the tail was cut before) means a transaction
    // the backup would silently lack.
    if let Some(d) = scanned.skipped.first() {
        return Err(BackupError::Replay(format!("the log is damaged at {d}")));
    }
    if let Some(e) = failed {
        return Err(BackupError::Replay(e));
    }
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        tx_id: replayer.last_tx_id,
        snapshot_tx_id,
        created_unix_micros: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0),
        modules: replayer.modules.keys().cloned().collect(),
        rows: replayer.tables_and_rows().1,
        files: copy.files.clone(),
    };
    write_manifest(copy, &manifest)?;
    Ok(Some(manifest))
}

/// Copies the newest snapshot that reads back whole (from the copy) and
/// returns the replayer that starts from it.
fn copy_base_snapshot(copy: &mut Copy<'_>, data_dir: &Path) -> Result<Replayer, BackupError> {
    for (tx, path) in snapshots::list(copy.storage, data_dir)?.into_iter().rev() {
        // Retention may remove an old snapshot meanwhile: the next is tried.
        let Ok(bytes) = copy.storage.read(&path) else {
            continue;
        };
        let rel = format!("{SNAPSHOTS_DIR}/{}", snapshot::file_name(tx));
        copy.put(&rel, &bytes)?;
        match snapshot::read(copy.storage, &copy.dest.join(&rel)) {
            Ok(loaded) => return Ok(Replayer::from_snapshot(loaded)),
            Err(e) => {
                tracing::warn!("backup: snapshot passed over: {e}");
                let written = copy.dest.join(&rel);
                copy.storage.remove(&written).map_err(io(&written))?;
                copy.files.pop();
            }
        }
    }
    Ok(Replayer::new())
}

/// Copies every segment from the one holding transaction `from`, all opened
/// before any is read, and cuts a torn tail off the copy. `false` when one
/// disappeared before it was opened.
fn copy_log(copy: &mut Copy<'_>, data_dir: &Path, from: u64) -> Result<bool, BackupError> {
    let log_dir = data_dir.join(LOG_DIR);
    let segments = match copy.storage.exists(&log_dir) {
        true => list_segments(copy.storage, &log_dir)?,
        false => Vec::new(),
    };
    let mut open = Vec::new();
    for (_, path) in &segments[first_needed(&segments, from)..] {
        match copy.storage.open_read(path) {
            Ok(f) => open.push((path.clone(), f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io(path)(e)),
        }
    }
    let dest_log = copy.dest.join(LOG_DIR);
    copy.storage
        .create_dir_all(&dest_log)
        .map_err(io(&dest_log))?;
    for (path, file) in open {
        let bytes = read_all(&path, file)?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        copy.put(&format!("{LOG_DIR}/{name}"), &bytes)?;
    }
    // The copy of a segment being appended to may end inside a record: that
    // torn tail is cut. Damage anywhere else fails the backup rather than
    // leave out every transaction after it.
    let cut = recover(
        copy.storage,
        &dest_log,
        RecoveryMode::TolerateTail,
        from,
        &mut |_| Ok(()),
    )?;
    if cut.cut.is_some() {
        after_cut(copy, &dest_log)?;
    }
    Ok(true)
}

/// After recovery cut the copy's tail: what it moved aside is not part of
/// the backup, and the cut segment's size and checksum change.
fn after_cut(copy: &mut Copy<'_>, dest_log: &Path) -> Result<(), BackupError> {
    let quarantine = dest_log.join(interstice_log::QUARANTINE_DIR);
    if copy.storage.exists(&quarantine) {
        for path in copy.storage.list(&quarantine).map_err(io(&quarantine))? {
            copy.storage.remove(&path).map_err(io(&path))?;
        }
    }
    let mut kept = Vec::new();
    for mut f in std::mem::take(&mut copy.files) {
        if f.path.starts_with(LOG_DIR) {
            let path = copy.dest.join(&f.path);
            match copy.storage.read(&path) {
                Ok(bytes) => {
                    f.bytes = bytes.len() as u64;
                    f.crc32 = crc32fast::hash(&bytes);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&path)(e)),
            }
        }
        kept.push(f);
    }
    copy.files = kept;
    Ok(())
}

/// Copies every module's code.
fn copy_modules(copy: &mut Copy<'_>, data_dir: &Path) -> Result<(), BackupError> {
    let modules_dir = data_dir.join(MODULES_DIR);
    if !copy.storage.exists(&modules_dir) {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = copy
        .storage
        .list(&modules_dir)
        .map_err(io(&modules_dir))?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && !atomic::is_temporary(p))
        .collect();
    entries.sort();
    for path in entries {
        let bytes = copy.storage.read(&path).map_err(io(&path))?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        copy.put(&format!("{MODULES_DIR}/{name}"), &bytes)?;
    }
    Ok(())
}

/// Syncs the copy's directories, then writes the manifest last: a directory
/// without one is not a backup.
fn write_manifest(copy: &Copy<'_>, manifest: &Manifest) -> Result<(), BackupError> {
    let dest = copy.dest;
    for dir in [
        dest.join(SNAPSHOTS_DIR),
        dest.join(LOG_DIR),
        dest.join(MODULES_DIR),
    ] {
        if copy.storage.exists(&dir) {
            copy.storage.sync_dir(&dir).map_err(io(&dir))?;
        }
    }
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| BackupError::Invalid {
        path: dest.join(MANIFEST),
        reason: e.to_string(),
    })?;
    let path = dest.join(MANIFEST);
    atomic::write_atomic(copy.storage, &path, &json).map_err(io(&path))
}

/// Reads a backup's manifest and checks every file it lists.
pub fn verify(storage: &dyn Storage, backup_dir: &Path) -> Result<Manifest, BackupError> {
    let path = backup_dir.join(MANIFEST);
    let bytes = storage.read(&path).map_err(|e| BackupError::Invalid {
        path: path.clone(),
        reason: format!("no readable manifest ({e}); this is not a finished backup"),
    })?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| BackupError::Invalid {
        path: path.clone(),
        reason: format!("manifest does not parse: {e}"),
    })?;
    if manifest.version != MANIFEST_VERSION {
        return Err(BackupError::Invalid {
            path,
            reason: format!(
                "manifest version {}; this build reads version {MANIFEST_VERSION}",
                manifest.version
            ),
        });
    }
    for f in &manifest.files {
        if f.path
            .split('/')
            .any(|part| part == ".." || part.is_empty())
        {
            return Err(BackupError::Invalid {
                path: path.clone(),
                reason: format!("file path {:?} leaves the backup directory", f.path),
            });
        }
        check_file(storage, &backup_dir.join(&f.path), f)?;
    }
    Ok(manifest)
}

/// Reads `file` and checks it against its manifest entry.
fn check_file(storage: &dyn Storage, file: &Path, f: &BackupFile) -> Result<(), BackupError> {
    let bytes = storage.read(file).map_err(|e| BackupError::Invalid {
        path: file.to_path_buf(),
        reason: format!("listed in the manifest but unreadable: {e}"),
    })?;
    let crc = crc32fast::hash(&bytes);
    if bytes.len() as u64 != f.bytes || crc != f.crc32 {
        return Err(BackupError::Invalid {
            path: file.to_path_buf(),
            reason: format!(
                "{} bytes with CRC-32 {crc:#010x}; the manifest says {} bytes with {:#010x}",
                bytes.len(),
                f.bytes,
                f.crc32
            ),
        });
    }
    Ok(())
}

/// What a restore did.
#[derive(Clone, Debug, Serialize)]
pub struct Restored {
    pub tx_id: u64,
    pub files: usize,
    pub rows: u64,
}

/// Verifies the backup in `backup_dir`, copies it into `data_dir` (new or
/// empty) on `config.storage`, and opens the result to prove it replays to
/// the backup's transaction.
///
/// Until every file is copied and read back whole, `data_dir` holds a
/// [`RESTORE_MARKER`] file, and a database refuses to open a directory that
/// has one: an interrupted or failed restore never leaves a directory that
/// opens with part of the data.
pub fn restore(
    backup_dir: &Path,
    data_dir: &Path,
    config: RuntimeConfig,
) -> Result<Restored, BackupError> {
    let storage = config.storage.clone();
    let manifest = verify(&*storage, backup_dir)?;
    ensure_empty(&*storage, data_dir)?;
    storage.create_dir_all(data_dir).map_err(io(data_dir))?;
    let marker = data_dir.join(RESTORE_MARKER);
    atomic::write_atomic(&*storage, &marker, b"a restore is in progress\n").map_err(io(&marker))?;
    copy_back(&*storage, backup_dir, data_dir, &manifest)?;
    storage.remove(&marker).map_err(io(&marker))?;
    storage.sync_dir(data_dir).map_err(io(data_dir))?;
    let opened = Database::open(data_dir, config).map_err(|e| BackupError::Open(Box::new(e)));
    let checked = opened.and_then(|db| {
        let next = db
            .next_tx_id()
            .map_err(|e| BackupError::Replay(e.to_string()))?;
        Ok((next - 1, db.replay_stats().rows))
    });
    let (last, rows) = match checked {
        Ok((last, rows)) if last == manifest.tx_id => (last, rows),
        other => {
            // Put the marker back: this directory must not be taken for the
            // backup's data.
            if let Err(e) = atomic::write_atomic(&*storage, &marker, b"a restore failed\n") {
                tracing::warn!("could not mark {} as failed: {e}", data_dir.display());
            }
            return Err(match other {
                Ok((last, _)) => BackupError::Replay(format!(
                    "the restored directory ends at transaction {last}; the backup says {}",
                    manifest.tx_id
                )),
                Err(e) => e,
            });
        }
    };
    Ok(Restored {
        tx_id: last,
        files: manifest.files.len(),
        rows,
    })
}

/// Copies every file of the backup into `data_dir`, durably, and reads each
/// back against the manifest.
fn copy_back(
    storage: &dyn Storage,
    backup_dir: &Path,
    data_dir: &Path,
    manifest: &Manifest,
) -> Result<(), BackupError> {
    let mut dirs = std::collections::BTreeSet::new();
    for f in &manifest.files {
        // `verify` checked it; the read-back below checks what arrives.
        let from = backup_dir.join(&f.path);
        let bytes = storage.read(&from).map_err(io(&from))?;
        let to = data_dir.join(&f.path);
        if let Some(parent) = to.parent() {
            storage.create_dir_all(parent).map_err(io(parent))?;
            dirs.insert(parent.to_path_buf());
        }
        atomic::write_atomic(storage, &to, &bytes).map_err(io(&to))?;
    }
    dirs.insert(data_dir.to_path_buf());
    for d in &dirs {
        storage.sync_dir(d).map_err(io(d))?;
    }
    // What was written must read back as the backup has it: a bit flipped
    // on the way to the device would otherwise be cut as a torn tail by the
    // open below, and the directory would open with less.
    for f in &manifest.files {
        check_file(storage, &data_dir.join(&f.path), f)?;
    }
    Ok(())
}
