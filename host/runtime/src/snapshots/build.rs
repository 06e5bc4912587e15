//! Building a snapshot off the reducers' path, and retention.

use std::path::{Path, PathBuf};
use std::time::Instant;

use interstice_fs::{Storage, atomic};
use interstice_log::{remove_segments_before, scan_range};
use interstice_store::snapshot::{self, ModuleImage};

use super::files::{SnapshotInfo, dir_of, list, load_newest};
use crate::config::SnapshotConfig;
use crate::error::SnapshotError;
use crate::layout::LOG_DIR;
use crate::replay::Replayer;

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
    let replayer = replay_upto(data_dir, storage, upto)?;
    let build_ms = started.elapsed().as_secs_f64() * 1000.0;

    let written_at = Instant::now();
    let (path, written) = write_checked(data_dir, storage, upto, &replayer)?;
    let write_ms = written_at.elapsed().as_secs_f64() * 1000.0;
    let (removed_snapshots, removed_segments) = retain(data_dir, storage, config)?;
    Ok(Some(SnapshotInfo {
        tx_id: upto,
        path,
        bytes: snapshot::HEADER_LEN as u64 + written.header.body_len,
        raw_bytes: written.header.raw_len,
        modules: replayer.modules.len(),
        rows: written.rows,
        build_ms,
        write_ms,
        removed_snapshots,
        removed_segments,
    }))
}

/// Every table at transaction `upto`: the newest valid snapshot before it,
/// and the log after that snapshot applied by the replay code.
fn replay_upto(
    data_dir: &Path,
    storage: &dyn Storage,
    upto: u64,
) -> Result<Replayer, SnapshotError> {
    let mut rejected = Vec::new();
    let mut replayer = match load_newest(storage, data_dir, upto, &mut rejected)? {
        Some((_, loaded)) => Replayer::from_snapshot(loaded),
        None => Replayer::new(),
    };
    for r in &rejected {
        tracing::warn!("snapshot skipped: {r}");
    }
    // Named if the log then does not reach back far enough: an unreadable
    // snapshot (an I/O error) is the reason, not the log.
    replayer.passed_over = rejected;
    let log_dir = data_dir.join(LOG_DIR);
    let from = replayer.next_tx_id();
    let mut failed = None;
    let scanned = scan_range(storage, &log_dir, from, upto, &mut |rec| {
        replayer.apply_noting(rec, &mut failed);
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
    Ok(replayer)
}

/// Writes the snapshot file and reads it back: one that does not check out
/// is removed, and the call fails.
fn write_checked(
    data_dir: &Path,
    storage: &dyn Storage,
    upto: u64,
    replayer: &Replayer,
) -> Result<(PathBuf, snapshot::Written), SnapshotError> {
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
    // back first.
    if let Err(e) = snapshot::check(storage, &path) {
        let removed = storage.remove(&path).and_then(|()| storage.sync_dir(&dir));
        if let Err(r) = removed {
            tracing::warn!("could not remove {}: {r}", path.display());
        }
        return Err(SnapshotError::ReadBack(e));
    }
    Ok((path, written))
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
