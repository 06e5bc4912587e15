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

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use interstice_fs::{RealFs, Storage, atomic};
use interstice_log::{RecoveryMode, first_needed, list_segments, recover, scan_range};
use interstice_store::snapshot;
use serde::{Deserialize, Serialize};

use crate::Database;
use crate::config::RuntimeConfig;
use crate::error::OpenError;
use crate::layout::{LOG_DIR, MODULES_DIR, SNAPSHOTS_DIR};
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

fn ensure_empty(dir: &Path) -> Result<(), BackupError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(BackupError::NotEmpty(dir.to_path_buf())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(dir)(e)),
    }
}

/// Writes `bytes` at `dest/rel` durably and records it.
fn put(
    dest: &Path,
    rel: &str,
    bytes: &[u8],
    files: &mut Vec<BackupFile>,
) -> Result<(), BackupError> {
    let path = dest.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    atomic::write_atomic(&RealFs, &path, bytes).map_err(io(&path))?;
    files.push(BackupFile {
        path: rel.to_string(),
        bytes: bytes.len() as u64,
        crc32: crc32fast::hash(bytes),
    });
    Ok(())
}

fn read_open(path: &Path, mut file: File) -> Result<Vec<u8>, BackupError> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io(path))?;
    Ok(bytes)
}

/// Makes a consistent copy of `data_dir` in `dest` (new or empty) while the
/// database may keep serving writes in another thread or process.
pub fn backup(data_dir: &Path, dest: &Path) -> Result<Manifest, BackupError> {
    ensure_empty(dest)?;
    for _ in 0..ATTEMPTS {
        match copy_once(data_dir, dest)? {
            Some(manifest) => return Ok(manifest),
            None => {
                // A file vanished under us: start over on a clean slate.
                if dest.exists() {
                    std::fs::remove_dir_all(dest).map_err(io(dest))?;
                }
            }
        }
    }
    Err(BackupError::Unstable(ATTEMPTS))
}

/// One attempt; `None` when a needed file disappeared before it was opened.
fn copy_once(data_dir: &Path, dest: &Path) -> Result<Option<Manifest>, BackupError> {
    let mut files = Vec::new();
    std::fs::create_dir_all(dest).map_err(io(dest))?;

    // The newest snapshot that reads back whole is the base.
    let mut base = None;
    for (tx, path) in snapshots::list(&RealFs, data_dir)?.into_iter().rev() {
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let bytes = read_open(&path, file)?;
        let rel = format!("{SNAPSHOTS_DIR}/{}", snapshot::file_name(tx));
        put(dest, &rel, &bytes, &mut files)?;
        match snapshot::read(&RealFs, &dest.join(&rel)) {
            Ok(loaded) => {
                base = Some(loaded);
                break;
            }
            Err(e) => {
                tracing::warn!("backup: snapshot passed over: {e}");
                std::fs::remove_file(dest.join(&rel)).map_err(io(dest))?;
                files.pop();
            }
        }
    }
    let mut replayer = match base {
        Some(loaded) => Replayer::from_snapshot(loaded),
        None => Replayer::new(),
    };
    let snapshot_tx_id = replayer.snapshot_tx_id;

    // Every segment from the one holding the first transaction after the
    // snapshot, opened before any is read.
    let log_dir = data_dir.join(LOG_DIR);
    let from = replayer.next_tx_id();
    let segments = if log_dir.is_dir() {
        list_segments(&RealFs, &log_dir)?
    } else {
        Vec::new()
    };
    let mut open = Vec::new();
    for (_, path) in &segments[first_needed(&segments, from)..] {
        match File::open(path) {
            Ok(f) => open.push((path.clone(), f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path)(e)),
        }
    }
    let dest_log = dest.join(LOG_DIR);
    std::fs::create_dir_all(&dest_log).map_err(io(&dest_log))?;
    for (path, file) in open {
        let bytes = read_open(&path, file)?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        put(dest, &format!("{LOG_DIR}/{name}"), &bytes, &mut files)?;
    }
    // The copy of a segment being appended to may end inside a record: that
    // torn tail is cut. Damage anywhere else fails the backup rather than
    // leave out every transaction after it.
    let cut = recover(
        &RealFs,
        &dest_log,
        RecoveryMode::TolerateTail,
        from,
        &mut |_| Ok(()),
    )?;
    if cut.cut.is_some() {
        let quarantine = dest_log.join(interstice_log::QUARANTINE_DIR);
        std::fs::remove_dir_all(&quarantine).map_err(io(&quarantine))?;
        for f in files.iter_mut().filter(|f| f.path.starts_with(LOG_DIR)) {
            let path = dest.join(&f.path);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    f.bytes = bytes.len() as u64;
                    f.crc32 = crc32fast::hash(&bytes);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => f.bytes = u64::MAX,
                Err(e) => return Err(io(&path)(e)),
            }
        }
        files.retain(|f| f.bytes != u64::MAX);
    }

    // Module code.
    let modules_dir = data_dir.join(MODULES_DIR);
    if modules_dir.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&modules_dir)
            .map_err(io(&modules_dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm") && !atomic::is_temporary(p))
            .collect();
        entries.sort();
        for path in entries {
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            put(dest, &format!("{MODULES_DIR}/{name}"), &bytes, &mut files)?;
        }
    }

    // Prove the copy replays, and learn where it ends.
    let mut failed = None;
    let scanned = scan_range(&RealFs, &dest_log, from, u64::MAX, &mut |rec| {
        if failed.is_none()
            && let Err(e) = replayer.apply(rec)
        {
            failed = Some(format!("tx {}: {e}", rec.tx_id));
        }
        Ok(())
    })?;
    // Damage inside the copy (the tail was cut above) means a transaction
    // the backup would silently lack.
    if let Some(d) = scanned.skipped.first() {
        return Err(BackupError::Replay(format!("the log is damaged at {d}")));
    }
    if let Some(e) = failed {
        return Err(BackupError::Replay(e));
    }
    let rows = replayer
        .modules
        .values()
        .flat_map(|m| m.tables.tables().iter().map(|t| t.len() as u64))
        .sum();
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        tx_id: replayer.last_tx_id,
        snapshot_tx_id,
        created_unix_micros: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0),
        modules: replayer.modules.keys().cloned().collect(),
        rows,
        files,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Invalid {
        path: dest.join(MANIFEST),
        reason: e.to_string(),
    })?;
    let path = dest.join(MANIFEST);
    atomic::write_atomic(&RealFs, &path, &json).map_err(io(&path))?;
    for dir in [dest.join(SNAPSHOTS_DIR), dest_log, dest.join(MODULES_DIR)] {
        if dir.is_dir() {
            RealFs.sync_dir(&dir).map_err(io(&dir))?;
        }
    }
    Ok(Some(manifest))
}

/// Reads a backup's manifest and checks every file it lists.
pub fn verify(backup_dir: &Path) -> Result<Manifest, BackupError> {
    let path = backup_dir.join(MANIFEST);
    let bytes = std::fs::read(&path).map_err(|e| BackupError::Invalid {
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
        let file = backup_dir.join(&f.path);
        let bytes = std::fs::read(&file).map_err(|e| BackupError::Invalid {
            path: file.clone(),
            reason: format!("listed in the manifest but unreadable: {e}"),
        })?;
        let crc = crc32fast::hash(&bytes);
        if bytes.len() as u64 != f.bytes || crc != f.crc32 {
            return Err(BackupError::Invalid {
                path: file,
                reason: format!(
                    "{} bytes with CRC-32 {crc:#010x}; the manifest says {} bytes with {:#010x}",
                    bytes.len(),
                    f.bytes,
                    f.crc32
                ),
            });
        }
    }
    Ok(manifest)
}

/// What a restore did.
#[derive(Clone, Debug, Serialize)]
pub struct Restored {
    pub tx_id: u64,
    pub files: usize,
    pub rows: u64,
}

/// Verifies the backup in `backup_dir`, copies it into `data_dir` (new or
/// empty), and opens the result to prove it replays to the backup's
/// transaction.
pub fn restore(
    backup_dir: &Path,
    data_dir: &Path,
    config: RuntimeConfig,
) -> Result<Restored, BackupError> {
    let manifest = verify(backup_dir)?;
    ensure_empty(data_dir)?;
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let mut dirs = std::collections::BTreeSet::new();
    for f in &manifest.files {
        let from = backup_dir.join(&f.path);
        let to = data_dir.join(&f.path);
        let bytes = std::fs::read(&from).map_err(io(&from))?;
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
            dirs.insert(parent.to_path_buf());
        }
        atomic::write_atomic(&RealFs, &to, &bytes).map_err(io(&to))?;
    }
    dirs.insert(data_dir.to_path_buf());
    for d in &dirs {
        RealFs.sync_dir(d).map_err(io(d))?;
    }
    let db = Database::open(data_dir, config).map_err(|e| BackupError::Open(Box::new(e)))?;
    let stats = db.replay_stats().clone();
    let last = db
        .next_tx_id()
        .map_err(|e| BackupError::Replay(e.to_string()))?
        - 1;
    drop(db);
    if last != manifest.tx_id {
        return Err(BackupError::Replay(format!(
            "the restored directory ends at transaction {last}; the backup says {}",
            manifest.tx_id
        )));
    }
    Ok(Restored {
        tx_id: last,
        files: manifest.files.len(),
        rows: stats.rows,
    })
}
