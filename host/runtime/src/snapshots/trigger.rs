//! The snapshot trigger: counts what the commit path appended and, once a
//! threshold is reached, has a snapshot built on a thread of its own.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use interstice_fs::Storage;

use super::build::build;
use super::files::SnapshotInfo;
use crate::config::SnapshotConfig;
use crate::error::SnapshotError;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each of these holds plain counters or a last result, consistent at
    // every instant: a panic elsewhere leaves nothing half-written here.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes snapshots on a thread of its own, when the commit path asks.
pub(crate) struct Trigger {
    config: SnapshotConfig,
    /// Held while a snapshot is built: one at a time.
    building: Arc<Mutex<()>>,
    /// Transactions and log bytes appended since the last request.
    since: Mutex<(u64, u64)>,
    requests: Option<SyncSender<u64>>,
    thread: Option<JoinHandle<()>>,
    /// What the last background snapshot did.
    last: Arc<Mutex<Option<Result<SnapshotInfo, String>>>>,
}

/// What the snapshot thread needs.
struct Worker {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    config: SnapshotConfig,
    building: Arc<Mutex<()>>,
    last: Arc<Mutex<Option<Result<SnapshotInfo, String>>>>,
}

impl Worker {
    fn run(self, requests: Receiver<u64>) {
        while let Ok(upto) = requests.recv() {
            let _one = lock(&self.building);
            let result = match build(&self.dir, &*self.storage, upto, &self.config) {
                Ok(Some(info)) => {
                    tracing::info!(
                        "snapshot at tx {} written: {} rows, {} bytes",
                        info.tx_id,
                        info.rows,
                        info.bytes
                    );
                    Ok(info)
                }
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!("snapshot at tx {upto} failed: {e}");
                    Err(e.to_string())
                }
            };
            *lock(&self.last) = Some(result);
        }
    }
}

impl Trigger {
    /// A trigger for the data directory `dir`; with automatic snapshots
    /// configured, its thread is started.
    pub fn start(
        dir: &Path,
        config: SnapshotConfig,
        storage: Arc<dyn Storage>,
    ) -> std::io::Result<Trigger> {
        let building = Arc::new(Mutex::new(()));
        let last = Arc::new(Mutex::new(None));
        let (requests, thread) = if config.automatic() {
            // One pending request is enough: a later one covers it.
            let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(1);
            let worker = Worker {
                dir: dir.to_path_buf(),
                storage,
                config: config.clone(),
                building: building.clone(),
                last: last.clone(),
            };
            let thread = std::thread::Builder::new()
                .name("interstice-snapshot".into())
                .spawn(move || worker.run(rx))?;
            (Some(tx), Some(thread))
        } else {
            (None, None)
        };
        Ok(Trigger {
            config,
            building,
            since: Mutex::new((0, 0)),
            requests,
            thread,
            last,
        })
    }

    /// Counts a transaction whose record was appended; once a threshold is
    /// reached, asks for a snapshot at `acknowledged` (the log's newest
    /// acknowledged transaction).
    pub fn appended(&self, payload_bytes: usize, acknowledged: impl FnOnce() -> u64) {
        let Some(requests) = &self.requests else {
            return;
        };
        let mut since = lock(&self.since);
        since.0 += 1;
        since.1 += payload_bytes as u64;
        let due = (self.config.every_tx > 0 && since.0 >= self.config.every_tx)
            || (self.config.every_log_bytes > 0 && since.1 >= self.config.every_log_bytes);
        if due {
            *since = (0, 0);
            // Full: a snapshot is pending already.
            let _ = requests.try_send(acknowledged());
        }
    }

    /// Transactions and bytes counted since the last request.
    #[cfg(test)]
    pub fn counted(&self) -> (u64, u64) {
        *lock(&self.since)
    }

    /// Builds the snapshot at `upto` now, on the calling thread (one build
    /// at a time, with the background thread).
    pub fn build_now(
        &self,
        dir: &Path,
        storage: &dyn Storage,
        upto: u64,
    ) -> Result<Option<SnapshotInfo>, SnapshotError> {
        let _one = lock(&self.building);
        build(dir, storage, upto, &self.config)
    }

    /// What the last automatic snapshot did, if one was taken.
    pub fn last(&self) -> Option<Result<SnapshotInfo, String>> {
        lock(&self.last).clone()
    }
}

impl Drop for Trigger {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
