//! What a database is opened with: runtime limits, the log's settings, the
//! file system, when snapshots are taken, and where time comes from.

use std::path::PathBuf;
use std::sync::Arc;

use interstice_fs::{RealFs, Storage};
use interstice_log::LogConfig;

use crate::limits;

/// Runtime settings.
#[derive(Clone)]
pub struct RuntimeConfig {
    /// Fuel one reducer call may burn.
    pub fuel_per_call: u64,
    /// Linear memory one instance may grow to.
    pub memory_bytes_max: usize,
    /// Where compiled code is cached between runs; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Sync policy, segment size and recovery mode of the durable log.
    pub log: LogConfig,
    /// The file system the data directory's durable files live on (log
    /// segments, snapshots, module code): the real one, or a
    /// fault-injecting one in tests. The lock file and the compiled-code
    /// cache are always on the real file system.
    pub storage: Arc<dyn Storage>,
    /// When snapshots are taken, how many are kept, where old segments go.
    pub snapshots: SnapshotConfig,
    /// Where transactions take their time from, in microseconds since the
    /// Unix epoch; the system clock when `None`. Whatever it says, each
    /// transaction's timestamp is at least one more than the last one's,
    /// and its seed is a function of its id and timestamp. Tests set it to
    /// make two runs write the same log byte for byte.
    pub clock: Option<ClockSource>,
}

/// A source of wall time for [`RuntimeConfig::clock`].
pub type ClockSource = Arc<dyn Fn() -> i64 + Send + Sync>;

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            fuel_per_call: limits::FUEL_PER_CALL_DEFAULT,
            memory_bytes_max: limits::MEMORY_BYTES_MAX_DEFAULT,
            cache_dir: None,
            log: LogConfig::default(),
            storage: Arc::new(RealFs),
            snapshots: SnapshotConfig::default(),
            clock: None,
        }
    }
}

impl std::fmt::Debug for RuntimeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeConfig")
            .field("fuel_per_call", &self.fuel_per_call)
            .field("memory_bytes_max", &self.memory_bytes_max)
            .field("cache_dir", &self.cache_dir)
            .field("log", &self.log)
            .field("snapshots", &self.snapshots)
            .field("clock", &self.clock.as_ref().map(|_| "supplied"))
            .finish_non_exhaustive()
    }
}

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

impl SnapshotConfig {
    /// Whether snapshots are taken without being asked for.
    pub fn automatic(&self) -> bool {
        self.every_tx > 0 || self.every_log_bytes > 0
    }
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
