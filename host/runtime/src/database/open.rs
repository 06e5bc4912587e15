//! Opening a data directory: lock → load the newest snapshot → recover the
//! log → replay it (no guest runs) → report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use interstice_fs::Storage;
use interstice_log::{Log, Recovered};
use serde::Serialize;

use super::catalog::{Catalog, Code, ModuleEntry};
use super::clock::Clock;
use crate::config::RuntimeConfig;
use crate::counters::CounterSnapshot;
use crate::error::OpenError;
use crate::layout::{CACHE_DIR, DirLock, LOG_DIR, MODULES_DIR, RESTORE_MARKER};
use crate::ops::progress::{Progress, Throttled};
use crate::replay::Replayer;
use crate::sandbox::Host;
use crate::snapshots;

/// What opening the database found and did, for `interstice replay`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplayStats {
    pub transactions_replayed: u64,
    pub publications_replayed: u64,
    pub mutations_replayed: u64,
    pub log_bytes: u64,
    pub segments: usize,
    pub last_tx_id: Option<u64>,
    pub duration_ms: f64,
    pub modules: usize,
    pub tables: usize,
    pub rows: u64,
    pub recovery_mode: String,
    pub sync_policy: String,
    /// The snapshot opening started from, and the log was replayed after.
    pub snapshot_tx_id: Option<u64>,
    pub snapshot_rows: u64,
    pub snapshot_ms: f64,
    /// Snapshots that failed their checks and were passed over.
    pub snapshots_rejected: Vec<String>,
    /// A torn tail that was cut off, or where point-in-time recovery stopped.
    pub cut: Option<String>,
    /// Damage skipped over (skip-corrupt).
    pub skipped: Vec<String>,
    /// Files moved aside into the log's quarantine directory.
    pub quarantined: Vec<String>,
    /// Guest activity during replay: all zero, by the replay guard.
    pub guest_instantiations: u64,
    pub guest_calls: u64,
    pub fuel_consumed: u64,
}

/// An opened data directory, before the database is assembled around it.
pub(crate) struct Opened {
    pub code: Code,
    pub log: Log,
    pub catalog: Catalog,
    pub stats: ReplayStats,
    pub lock: DirLock,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens (creating if needed) the data directory `dir`.
pub(crate) fn open(
    dir: &Path,
    mut config: RuntimeConfig,
    progress: Progress<'_>,
) -> Result<Opened, OpenError> {
    // The lock file lives on the real file system, whatever `storage` is.
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let dir = std::fs::canonicalize(dir).map_err(io_err(dir))?;
    let lock = DirLock::acquire(&dir)?;
    if config.cache_dir.is_none() {
        config.cache_dir = Some(dir.join(CACHE_DIR));
    }
    let storage = config.storage.clone();
    prepare_dir(&*storage, &dir)?;
    let log_config = config.log;
    let clock_source = config.clock.clone();
    let host = Host::new(config)?;
    let started = Instant::now();
    let before = host.counters().snapshot();
    let replayed = {
        let _phase = host.replay_guard().enter();
        replay(&storage, &dir, log_config, progress)?
    };
    let guest = host.counters().snapshot().since(&before);
    let Replayed {
        log,
        recovered,
        replayer,
        snapshot_ms,
    } = replayed;
    let mut stats = ReplayStats::new(&replayer, &recovered, &log, snapshot_ms, guest);
    stats.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let clock = Clock::new(
        log.next_tx_id(),
        replayer.last_timestamp_micros,
        clock_source,
    );
    let modules = modules_of(replayer);
    report_open(&stats, log_config.sync.is_weak());
    let code = Code { host, storage, dir };
    code.report_missing(&modules);
    Ok(Opened {
        code,
        log,
        catalog: Catalog {
            modules,
            clock,
            scheduler: Default::default(),
            live: Default::default(),
        },
        stats,
        lock,
    })
}

/// Makes the directories a database needs, durably, and removes what an
/// interrupted snapshot left.
fn prepare_dir(storage: &dyn Storage, dir: &Path) -> Result<(), OpenError> {
    if storage.exists(&dir.join(RESTORE_MARKER)) {
        return Err(OpenError::RestoreIncomplete(dir.to_path_buf()));
    }
    // The modules directory's entry is made durable before any code is
    // written into it: a publication record must never outlive its code.
    let modules_dir = dir.join(MODULES_DIR);
    storage.create_dir_all(dir).map_err(io_err(dir))?;
    if !storage.exists(&modules_dir) {
        storage
            .create_dir_all(&modules_dir)
            .map_err(io_err(&modules_dir))?;
        storage.sync_dir(dir).map_err(io_err(dir))?;
    }
    for path in snapshots::remove_temporaries(storage, dir)? {
        tracing::warn!(
            "removed {}, left by an interrupted snapshot",
            path.display()
        );
    }
    Ok(())
}

/// What the replay phase produced.
struct Replayed {
    log: Log,
    recovered: Recovered,
    replayer: Replayer,
    snapshot_ms: f64,
}

/// The replay phase: the newest valid snapshot, then the log after it,
/// applied by the replay code, which cannot reach a guest.
fn replay(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    log_config: interstice_log::LogConfig,
    progress: Progress<'_>,
) -> Result<Replayed, OpenError> {
    let started = Instant::now();
    let mut rejected = Vec::new();
    let base = snapshots::load_newest(&**storage, dir, u64::MAX, &mut rejected)?;
    let snapshot_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut replayer = match base {
        Some((_, loaded)) => Replayer::from_snapshot(loaded),
        None => Replayer::new(),
    };
    replayer.passed_over = rejected;
    let log_dir: PathBuf = dir.join(LOG_DIR);
    // Progress counts only the log replay reads: from the segment holding
    // the snapshot's next transaction on.
    let from = replayer.next_tx_id();
    let total = match storage.exists(&log_dir) {
        true => interstice_log::log_bytes(&**storage, &log_dir, from)?,
        false => 0,
    };
    let mut progress = Throttled::new(progress, total);
    let (log, recovered) = Log::open(storage.clone(), &log_dir, log_config, from, &mut |rec| {
        progress.at(rec.log_offset);
        replayer.apply(rec)
    })?;
    progress.done();
    Ok(Replayed {
        log,
        recovered,
        replayer,
        snapshot_ms,
    })
}

fn modules_of(replayer: Replayer) -> BTreeMap<String, ModuleEntry> {
    replayer
        .modules
        .into_iter()
        .map(|(name, m)| {
            let entry = ModuleEntry {
                def: m.def,
                version: m.version,
                tables: m.tables,
                runner: None,
            };
            (name, entry)
        })
        .collect()
}

impl ReplayStats {
    fn new(
        replayer: &Replayer,
        recovered: &Recovered,
        log: &Log,
        snapshot_ms: f64,
        guest: CounterSnapshot,
    ) -> ReplayStats {
        let config = log.config();
        let (tables, rows) = replayer.tables_and_rows();
        ReplayStats {
            transactions_replayed: replayer.transactions,
            publications_replayed: replayer.publications,
            mutations_replayed: replayer.mutations,
            log_bytes: recovered.bytes,
            segments: recovered.segments.len(),
            last_tx_id: recovered.last_tx_id,
            modules: replayer.modules.len(),
            tables,
            rows,
            recovery_mode: config.recovery.to_string(),
            sync_policy: config.sync.to_string(),
            snapshot_tx_id: replayer.snapshot_tx_id,
            snapshot_rows: replayer.snapshot_rows,
            snapshot_ms,
            snapshots_rejected: replayer.passed_over.clone(),
            cut: recovered.cut.as_ref().map(|d| d.to_string()),
            skipped: recovered.skipped.iter().map(|d| d.to_string()).collect(),
            quarantined: recovered
                .quarantined
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            guest_instantiations: guest.guest_instantiations,
            guest_calls: guest.guest_calls,
            fuel_consumed: guest.fuel_consumed,
            ..ReplayStats::default()
        }
    }
}

/// Says at every start what an operator must know: a weak sync policy, and
/// anything recovery cut, skipped or moved aside.
fn report_open(stats: &ReplayStats, weak_sync: bool) {
    if weak_sync {
        tracing::warn!(
            "sync policy `{}`: acknowledged transactions can be lost on power loss",
            stats.sync_policy
        );
    }
    if let Some(cut) = &stats.cut {
        tracing::warn!("log recovery cut the log at {cut}");
    }
    for d in &stats.skipped {
        tracing::warn!("log recovery skipped damage: {d}");
    }
    for q in &stats.quarantined {
        tracing::warn!("moved aside: {q}");
    }
    for r in &stats.snapshots_rejected {
        tracing::warn!("snapshot passed over (an older one, or the log, is used): {r}");
    }
}
