//! Snapshots of a data directory: where they live, which one opening starts
//! from, how a new one is built without stopping reducers, and retention.
//!
//! A new snapshot is built off the reducers' path: the newest valid
//! snapshot is loaded into scratch tables, the log records after it up to
//! an acknowledged transaction are applied (by the replay code, which cannot
//! reach a guest), and the result is written. Reducers only hand over a
//! transaction id; they never wait for the build. The price is memory for a
//! second copy of the tables while a snapshot is built.

use std::path::{Path, PathBuf};
use std::time::Instant;

use interstice_fs::{Storage, atomic};
use interstice_log::{remove_segments_before, scan_range};
use interstice_store::snapshot::{self, Loaded, ModuleImage};
use serde::Serialize;

use crate::database::LOG_DIR;
use crate::error::SnapshotError;
use crate::replay::Replayer;

/// Directory (under the data directory) holding snapshots.
pub const SNAPSHOTS_DIR: &str = "snapshots";

/// When snapshots are taken and how many are kept.
#[derive(Clone, Debug)]
pub struct SnapshotConfig {
    /// Take a snapshot once this many transactions were committed since the
    /// last one; 0 turns this trigger off.
    pub every_tx: u64,
    /// Take a snapshot once this many bytes of log records were written
    /// since the last one; 0 turns this trigger off.
    pub every_log_bytes: u64,
    /// Snapshots kept; older ones are deleted, and so are the log segments
    /// that lie wholly before the oldest kept snapshot. At least 1.
    pub keep: usize,
    /// Where those segments are moved instead of being deleted (on the same
    /// file system as the data directory).
    pub archive_dir: Option<PathBuf>,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            every_tx: 100_000,
            every_log_bytes: 256 << 20,
            keep: 3,
            archive_dir: None,
        }
    }
}

/// What taking a snapshot did.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotInfo {
    pub tx_id: u64,
    pub path: PathBuf,
    /// Bytes of the file, and of its body before compression.
    pub bytes: u64,
    pub raw_bytes: u64,
    pub modules: usize,
    pub rows: u64,
    /// Loading the previous snapshot and applying the log after it.
    pub build_ms: f64,
    /// Writing (and syncing) the new file.
    pub write_ms: f64,
    /// Snapshots and log segments retention deleted (or archived).
    pub removed_snapshots: Vec<PathBuf>,
    pub removed_segments: Vec<PathBuf>,
}

/// One snapshot file in `snapshot list`.
#[derive(Clone, Debug, Serialize)]
pub struct ListedSnapshot {
    pub tx_id: u64,
    pub path: PathBuf,
    pub bytes: u64,
    /// The header's fields, or why it is unreadable.
    pub raw_bytes: Option<u64>,
    pub last_timestamp_micros: Option<i64>,
    pub header_error: Option<String>,
}

/// One snapshot in `snapshot verify`.
#[derive(Clone, Debug, Serialize)]
pub struct VerifiedSnapshot {
    pub tx_id: u64,
    pub path: PathBuf,
    pub modules: usize,
    pub rows: u64,
    pub error: Option<String>,
}

pub(crate) fn dir_of(data_dir: &Path) -> PathBuf {
    data_dir.join(SNAPSHOTS_DIR)
}

/// Snapshot files as (tx id, path), oldest first.
pub fn list(storage: &dyn Storage, data_dir: &Path) -> Result<Vec<(u64, PathBuf)>, SnapshotError> {
    let dir = dir_of(data_dir);
    if !storage.exists(&dir) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for path in storage.list(&dir).map_err(SnapshotError::io(&dir))? {
        if let Some(tx) = snapshot::parse_name(&path) {
            out.push((tx, path));
        }
    }
    out.sort();
    Ok(out)
}

/// `snapshot list`: every file with what its header says.
pub fn describe_all(
    storage: &dyn Storage,
    data_dir: &Path,
) -> Result<Vec<ListedSnapshot>, SnapshotError> {
    let mut out = Vec::new();
    for (tx_id, path) in list(storage, data_dir)? {
        let bytes = storage.len(&path).map_err(SnapshotError::io(&path))?;
        let header = snapshot::read_header(storage, &path);
        out.push(ListedSnapshot {
            tx_id,
            bytes,
            raw_bytes: header.as_ref().ok().map(|h| h.raw_len),
            last_timestamp_micros: header.as_ref().ok().map(|h| h.last_timestamp_micros),
            header_error: header.err().map(|e| e.to_string()),
            path,
        });
    }
    Ok(out)
}

/// `snapshot verify`: reads every snapshot whole, checking its checksums
/// and loading every row into scratch tables.
pub fn verify_all(
    storage: &dyn Storage,
    data_dir: &Path,
) -> Result<Vec<VerifiedSnapshot>, SnapshotError> {
    let mut out = Vec::new();
    for (tx_id, path) in list(storage, data_dir)? {
        let (modules, rows, error) = match snapshot::read(storage, &path) {
            Ok(l) => (l.modules.len(), l.rows, None),
            Err(e) => (0, 0, Some(e.to_string())),
        };
        out.push(VerifiedSnapshot {
            tx_id,
            path,
            modules,
            rows,
            error,
        });
    }
    Ok(out)
}

/// Removes temporary files an interrupted snapshot write left behind.
pub(crate) fn remove_temporaries(
    storage: &dyn Storage,
    data_dir: &Path,
) -> Result<Vec<PathBuf>, SnapshotError> {
    let dir = dir_of(data_dir);
    let mut removed = Vec::new();
    if !storage.exists(&dir) {
        return Ok(removed);
    }
    for path in storage.list(&dir).map_err(SnapshotError::io(&dir))? {
        if atomic::is_temporary(&path) {
            storage.remove(&path).map_err(SnapshotError::io(&path))?;
            removed.push(path);
        }
    }
    if !removed.is_empty() {
        storage.sync_dir(&dir).map_err(SnapshotError::io(&dir))?;
    }
    Ok(removed)
}

/// The newest snapshot that reads back whole, at or before `upto`. Each
/// newer one that does not is named in `rejected`.
pub(crate) fn load_newest(
    storage: &dyn Storage,
    data_dir: &Path,
    upto: u64,
    rejected: &mut Vec<String>,
) -> Result<Option<(PathBuf, Loaded)>, SnapshotError> {
    for (tx, path) in list(storage, data_dir)?.into_iter().rev() {
        if tx > upto {
            continue;
        }
        match snapshot::read(storage, &path) {
            Ok(loaded) => return Ok(Some((path, loaded))),
            Err(e) => rejected.push(e.to_string()),
        }
    }
    Ok(None)
}

/// Builds and writes the snapshot at transaction `upto`, whose record must
/// be in the log, then applies retention. Returns `None` when a snapshot at
/// `upto` already exists.
pub(crate) fn build(
    data_dir: &Path,
    storage: &dyn Storage,
    upto: u64,
    config: &SnapshotConfig,
) -> Result<Option<SnapshotInfo>, SnapshotError> {
    if upto == 0 || list(storage, data_dir)?.iter().any(|(tx, _)| *tx == upto) {
        return Ok(None);
    }
    let started = Instant::now();
    let mut rejected = Vec::new();
    let mut replayer = match load_newest(storage, data_dir, upto, &mut rejected)? {
        Some((_, loaded)) => Replayer::from_snapshot(loaded),
        None => Replayer::new(),
    };
    for r in &rejected {
        tracing::warn!("snapshot skipped: {r}");
    }
    let log_dir = data_dir.join(LOG_DIR);
    let from = replayer.next_tx_id();
    let mut failed = None;
    let scanned = scan_range(storage, &log_dir, from, upto, &mut |rec| {
        if failed.is_none()
            && let Err(e) = replayer.apply(rec)
        {
            failed = Some(format!(
                "{}: offset {}: tx {}: {e}",
                rec.segment.display(),
                rec.offset,
                rec.tx_id
            ));
        }
        Ok(())
    })?;
    // A read-only scan steps over damage. A snapshot must not: it would be
    // written without the damaged transactions, and retention would then
    // delete the log, which may hold them whole (a misread is damage too).
    if let Some(d) = scanned.skipped.first() {
        return Err(SnapshotError::Replay(format!(
            "the log is damaged at {d}; no snapshot is taken past damage (`interstice log verify` tells more)"
        )));
    }
    if let Some(e) = failed {
        return Err(SnapshotError::Replay(e));
    }
    if replayer.last_tx_id != upto {
        return Err(SnapshotError::Replay(format!(
            "the log holds transactions {from}..={} only; a snapshot at {upto} needs all of them",
            replayer.last_tx_id
        )));
    }
    let build_ms = started.elapsed().as_secs_f64() * 1000.0;

    let written_at = Instant::now();
    let dir = dir_of(data_dir);
    storage
        .create_dir_all(&dir)
        .map_err(SnapshotError::io(&dir))?;
    let parent = atomic::parent(&dir);
    storage
        .sync_dir(parent)
        .map_err(SnapshotError::io(parent))?;
    let path = dir.join(snapshot::file_name(upto));
    let images: Vec<ModuleImage<'_>> = replayer
        .modules
        .iter()
        .map(|(name, m)| ModuleImage {
            name,
            version: m.version,
            def: &m.def,
            tables: &m.tables,
        })
        .collect();
    let written = snapshot::write(
        storage,
        &path,
        upto,
        replayer.last_timestamp_micros,
        &images,
    )?;
    // Retention is about to delete the log this snapshot replaces: read it
    // back first. One that does not check out is removed, and nothing else.
    if let Err(e) = snapshot::check(storage, &path) {
        let dir = dir_of(data_dir);
        let removed = storage.remove(&path).and_then(|()| storage.sync_dir(&dir));
        if let Err(r) = removed {
            tracing::warn!("could not remove {}: {r}", path.display());
        }
        return Err(SnapshotError::ReadBack(e));
    }
    let write_ms = written_at.elapsed().as_secs_f64() * 1000.0;
    let (removed_snapshots, removed_segments) = retain(data_dir, storage, config)?;
    Ok(Some(SnapshotInfo {
        tx_id: upto,
        path,
        bytes: snapshot::HEADER_LEN as u64 + written.header.body_len,
        raw_bytes: written.header.raw_len,
        modules: images.len(),
        rows: written.rows,
        build_ms,
        write_ms,
        removed_snapshots,
        removed_segments,
    }))
}

/// Retention: keeps the newest `config.keep` snapshots, and the log from the
/// oldest of them on.
pub(crate) fn retain(
    data_dir: &Path,
    storage: &dyn Storage,
    config: &SnapshotConfig,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>), SnapshotError> {
    let all = list(storage, data_dir)?;
    let keep = config.keep.max(1);
    if all.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let cut = all.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for (_, path) in &all[..cut] {
        storage.remove(path).map_err(SnapshotError::io(path))?;
        removed.push(path.clone());
    }
    if !removed.is_empty() {
        let dir = dir_of(data_dir);
        storage.sync_dir(&dir).map_err(SnapshotError::io(&dir))?;
    }
    let oldest_kept = all[cut].0;
    let log_dir = data_dir.join(LOG_DIR);
    let segments = remove_segments_before(
        storage,
        &log_dir,
        oldest_kept + 1,
        config.archive_dir.as_deref(),
    )?;
    Ok((removed, segments))
}
