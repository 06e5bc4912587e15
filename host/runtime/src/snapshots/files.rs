//! The snapshot files of a data directory: listing, describing, verifying,
//! finding the newest valid one, and cleaning up after an interrupted write.

use std::path::{Path, PathBuf};

use interstice_fs::{Storage, atomic};
use interstice_store::snapshot::{self, Loaded};
use serde::Serialize;

use crate::error::SnapshotError;
use crate::layout::SNAPSHOTS_DIR;

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
