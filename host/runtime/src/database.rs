//! A data directory's modules, their tables, the durable log behind them,
//! and the serial transaction pipeline that runs reducers on them.
//!
//! Layout of a data directory:
//!
//! ```text
//! LOCK                 held by the one process that has the directory open
//! log/                 the durable log (docs/log-format.md)
//! snapshots/           images of every table at a transaction (docs/snapshot-format.md)
//! modules/NAME.wasm    the code of each published module
//! cache/               wasmtime's compiled code
//! ```

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use interstice_log::{Log, MutationRef, RecordKind, TxHeader, payload};
use interstice_store::json::{args_from_json, row_to_json};
use interstice_store::{IndexId, ModuleDef, Mutation, ReducerKind, ScanPosition, Tables, migrate};
use serde::Serialize;

use crate::counters::CounterSnapshot;
use crate::engine::{Host, RuntimeConfig};
use crate::error::{CallError, LoadError, SnapshotError};
use crate::feed::{CommittedTx, Feed, Listener, LogSink, TxEvent};
use crate::limits;
use crate::lock::DirLock;
use crate::module::{CallContext, Committed, Runner};
use crate::replay::{Replayer, op_to_log};
use crate::snapshots::{self, SnapshotConfig, SnapshotInfo};
use crate::state::LogLine;
use crate::tools::Throttled;
use interstice_fs::{Storage, atomic};

/// Directory (under the data directory) holding published modules.
pub const MODULES_DIR: &str = "modules";
/// Directory (under the data directory) holding wasmtime's compiled code.
pub const CACHE_DIR: &str = "cache";
/// Directory (under the data directory) holding the log's segments.
pub const LOG_DIR: &str = "log";

/// One published module: its definition, its tables and, once a call needs
/// it, its compiled code.
struct ModuleEntry {
    def: Arc<ModuleDef>,
    version: u32,
    tables: Tables,
    runner: Option<Runner>,
}

/// A committed, durable reducer call.
#[derive(Debug)]
pub struct CallOutcome {
    pub tx_id: u64,
    pub timestamp_micros: i64,
    pub mutations: Vec<Mutation>,
    pub log: Vec<LogLine>,
    pub fuel_consumed: u64,
}

/// What publication did.
#[derive(Debug)]
pub struct Published {
    pub def: Arc<ModuleDef>,
    /// The definition's version now in force.
    pub version: u32,
    /// What the init reducer (first publication, or `clear`) or the
    /// migration reducer (a new version) did, if one ran.
    pub init: Option<CallOutcome>,
    /// Whether the module replaced code of the same definition.
    pub replaced: bool,
    /// The publication's transaction (none when only the code was replaced).
    pub tx_id: Option<u64>,
    /// For a new version: what changed, one line each.
    pub changes: Vec<String>,
}

/// How [`Database::publish_with`] treats a new version.
#[derive(Clone, Copy, Debug, Default)]
pub struct PublishOptions {
    /// Drop the module's data: the new version starts from empty tables and
    /// runs its init reducer, whatever changed.
    pub clear: bool,
}

/// The definition document of an upgrade record (`docs/log-format.md`).
#[derive(Serialize, serde::Deserialize)]
pub(crate) struct UpgradeDocument {
    pub version: u32,
    pub clear: bool,
    pub definition: ModuleDef,
}

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

/// Transaction ids and the logical clock.
struct Clock {
    next_tx_id: u64,
    last_timestamp_micros: i64,
    /// `RuntimeConfig::clock`: where wall time comes from.
    source: Option<crate::engine::ClockSource>,
}

impl Clock {
    /// Context of the next transaction. Nothing advances until
    /// [`Clock::committed`].
    fn next(&self, caller: &str) -> CallContext {
        let tx_id = self.next_tx_id;
        let now = match &self.source {
            Some(source) => source(),
            None => wall_clock_micros(),
        };
        let timestamp_micros = now.max(self.last_timestamp_micros + 1);
        CallContext {
            tx_id,
            timestamp_micros,
            caller: caller.to_string(),
            seed: seed_for(tx_id, timestamp_micros),
        }
    }

    fn committed(&mut self, ctx: &CallContext) {
        self.next_tx_id = ctx.tx_id + 1;
        self.last_timestamp_micros = ctx.timestamp_micros;
    }
}

struct Inner {
    modules: BTreeMap<String, ModuleEntry>,
    clock: Clock,
}

/// A transaction executed and queued for the log, or reserved for the
/// calling thread to write and sync itself once it has let go of the
/// database.
struct Executed<'a> {
    ctx: CallContext,
    committed: Committed,
    direct: Option<(interstice_log::Direct<'a>, Vec<u8>)>,
}

/// A call waiting for the thread that holds the database to run it.
struct Queued {
    module: String,
    reducer_id: u32,
    args: Vec<u8>,
    caller: String,
    thread: std::thread::Thread,
    result: Mutex<Option<Result<(CallContext, Committed), CallError>>>,
}

fn lock_queue(queue: &Mutex<Vec<Arc<Queued>>>) -> MutexGuard<'_, Vec<Arc<Queued>>> {
    queue.lock().unwrap_or_else(|p| p.into_inner())
}

/// The database held by one thread. Whoever holds it runs the calls other
/// threads queued meanwhile before letting go (flat combining), so waiting
/// callers sleep once, on their own result, instead of queueing on a lock.
struct Held<'a> {
    db: &'a Database,
    guard: Option<MutexGuard<'a, Inner>>,
}

impl std::ops::Deref for Held<'_> {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        self.guard.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        self.guard.as_mut().expect("held until dropped")
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            if std::thread::panicking() {
                // The database is poisoned by this panic: run nothing more.
                drop(guard);
                self.db.fail_queued();
                return;
            }
            self.db.drain(&mut guard);
            drop(guard);
            self.db.combine();
        }
    }
}

/// The database: modules, tables, the log, and the transaction counter.
///
/// Calls are serial: one reducer runs at a time. A caller holds the commit
/// order only while its reducer runs and its record is queued, and waits for
/// durability afterwards, so the next reducer runs while earlier ones wait
/// for their fsync, and one fsync serves them all (group commit).
pub struct Database {
    host: Host,
    dir: PathBuf,
    /// Where the log, snapshots and module code live.
    storage: Arc<dyn Storage>,
    log: Log,
    inner: Mutex<Inner>,
    /// Calls waiting for the thread that holds `inner`.
    queue: Mutex<Vec<Arc<Queued>>>,
    replay: ReplayStats,
    snapshots: Snapshotter,
    feed: Feed,
    _lock: DirLock,
}

/// Takes snapshots on a thread of its own, when the commit path asks.
struct Snapshotter {
    config: SnapshotConfig,
    /// Held while a snapshot is built: one at a time.
    building: Arc<Mutex<()>>,
    /// Transactions and log bytes since the last request.
    since: Mutex<(u64, u64)>,
    requests: Option<std::sync::mpsc::SyncSender<u64>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// What the last background snapshot did.
    last: Arc<Mutex<Option<Result<SnapshotInfo, String>>>>,
}

impl Snapshotter {
    fn start(
        dir: &Path,
        config: SnapshotConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<Snapshotter, LoadError> {
        let building = Arc::new(Mutex::new(()));
        let last = Arc::new(Mutex::new(None));
        let automatic = config.every_tx > 0 || config.every_log_bytes > 0;
        let (requests, thread) = if automatic {
            // One pending request is enough: a later one covers it.
            let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(1);
            let thread_dir = dir.to_path_buf();
            let config = config.clone();
            let storage = storage.clone();
            let building = building.clone();
            let last = last.clone();
            let thread = std::thread::Builder::new()
                .name("interstice-snapshot".into())
                .spawn(move || {
                    while let Ok(upto) = rx.recv() {
                        let _one = building.lock().unwrap_or_else(|p| p.into_inner());
                        let result = snapshots::build(&thread_dir, &*storage, upto, &config);
                        let result = match result {
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
                        *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
                    }
                })
                .map_err(io_err(dir))?;
            (Some(tx), Some(thread))
        } else {
            (None, None)
        };
        Ok(Snapshotter {
            config,
            building,
            since: Mutex::new((0, 0)),
            requests,
            thread,
            last,
        })
    }

    /// Counts a committed transaction; once a trigger is reached, asks for a
    /// snapshot at the log's newest acknowledged transaction.
    fn committed(&self, payload_bytes: usize, log: &Log) {
        let Some(requests) = &self.requests else {
            return;
        };
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        since.0 += 1;
        since.1 += payload_bytes as u64;
        let due = (self.config.every_tx > 0 && since.0 >= self.config.every_tx)
            || (self.config.every_log_bytes > 0 && since.1 >= self.config.every_log_bytes);
        if due {
            *since = (0, 0);
            let acknowledged = log.acknowledged_tx();
            // Full: a snapshot is pending already.
            let _ = requests.try_send(acknowledged);
        }
    }
}

impl Drop for Snapshotter {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn check_module_name(name: &str) -> Result<(), LoadError> {
    let ok = !name.is_empty()
        && name.len() <= limits::MODULE_NAME_LEN_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(LoadError::InvalidName(name.to_string()))
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A 64-bit mix of the transaction's id and time (splitmix64): reducers get
/// randomness that replays identically.
fn seed_for(tx_id: u64, timestamp_micros: i64) -> u64 {
    let mut z = tx_id ^ (timestamp_micros as u64).rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn wall_clock_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn encode_tx(header: &TxHeader<'_>, mutations: &[Mutation]) -> Vec<u8> {
    let row_bytes: usize = mutations.iter().map(|m| m.row.len() + 9).sum();
    let mut out = Vec::with_capacity(64 + header.args.len() + row_bytes);
    let refs = mutations.iter().map(|m| MutationRef {
        op: op_to_log(m.op),
        table: m.table,
        row: &m.row,
    });
    payload::encode(header, refs, &mut out);
    out
}

/// The code of version `version` of a module: `NAME.wasm` for the first,
/// `NAME.vN.wasm` after.
fn module_path(dir: &Path, name: &str, version: u32) -> PathBuf {
    let file = match version {
        0 | 1 => format!("{name}.wasm"),
        n => format!("{name}.v{n}.wasm"),
    };
    dir.join(MODULES_DIR).join(file)
}

impl Database {
    /// Opens (creating if needed) the data directory: takes its lock,
    /// recovers the log and replays it into the tables without running any
    /// guest. Module code is compiled when a call first needs it.
    pub fn open(dir: &Path, config: RuntimeConfig) -> Result<Database, LoadError> {
        Self::open_with_progress(dir, config, &mut |_, _| {})
    }

    /// [`Database::open`], reporting replay progress as (bytes of the log
    /// read, total bytes).
    pub fn open_with_progress(
        dir: &Path,
        mut config: RuntimeConfig,
        progress: crate::tools::Progress<'_>,
    ) -> Result<Database, LoadError> {
        // The lock file lives on the real file system, whatever `storage` is.
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let dir = std::fs::canonicalize(dir).map_err(io_err(dir))?;
        let lock = DirLock::acquire(&dir)?;
        if config.cache_dir.is_none() {
            config.cache_dir = Some(dir.join(CACHE_DIR));
        }
        let storage = config.storage.clone();
        // The modules directory's entry is made durable before any code is
        // written into it: a publication record must never outlive its code.
        let modules_dir = dir.join(MODULES_DIR);
        storage.create_dir_all(&dir).map_err(io_err(&dir))?;
        if !storage.exists(&modules_dir) {
            storage
                .create_dir_all(&modules_dir)
                .map_err(io_err(&modules_dir))?;
            storage.sync_dir(&dir).map_err(io_err(&dir))?;
        }
        let log_config = config.log;
        let snapshot_config = config.snapshots.clone();
        let host = Host::new(config)?;
        for path in snapshots::remove_temporaries(&*storage, &dir)? {
            tracing::warn!(
                "removed {}, left by an interrupted snapshot",
                path.display()
            );
        }

        let started = Instant::now();
        let before = host.counters().snapshot();
        let log_dir = dir.join(LOG_DIR);
        let mut snapshots_rejected = Vec::new();
        let (log, recovered, replayer, snapshot_ms) = {
            let _phase = host.replay_guard().enter();
            let base = snapshots::load_newest(&*storage, &dir, u64::MAX, &mut snapshots_rejected)?;
            let snapshot_ms = started.elapsed().as_secs_f64() * 1000.0;
            let mut replayer = match base {
                Some((_, loaded)) => Replayer::from_snapshot(loaded),
                None => Replayer::new(),
            };
            replayer.passed_over = snapshots_rejected.clone();
            // Progress counts only the log replay reads: from the segment
            // holding the snapshot's next transaction on.
            let total = if storage.exists(&log_dir) {
                interstice_log::log_bytes(&*storage, &log_dir, replayer.next_tx_id())?
            } else {
                0
            };
            let mut progress = Throttled::new(progress, total);
            let (log, recovered) = Log::open(
                storage.clone(),
                &log_dir,
                log_config,
                replayer.next_tx_id(),
                &mut |rec| {
                    progress.at(rec.log_offset);
                    replayer.apply(rec)
                },
            )?;
            progress.done();
            (log, recovered, replayer, snapshot_ms)
        };
        let after = host.counters().snapshot();
        let snapshot_tx_id = replayer.snapshot_tx_id;
        let snapshot_rows = replayer.snapshot_rows;
        let modules: BTreeMap<String, ModuleEntry> = replayer
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
            .collect();
        let replay = ReplayStats {
            transactions_replayed: replayer.transactions,
            publications_replayed: replayer.publications,
            mutations_replayed: replayer.mutations,
            log_bytes: recovered.bytes,
            segments: recovered.segments.len(),
            last_tx_id: recovered.last_tx_id,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            modules: modules.len(),
            tables: modules.values().map(|m| m.def.tables.len()).sum(),
            rows: modules
                .values()
                .flat_map(|m| m.tables.tables().iter().map(|t| t.len() as u64))
                .sum(),
            recovery_mode: log_config.recovery.to_string(),
            snapshot_tx_id,
            snapshot_rows,
            snapshot_ms,
            snapshots_rejected,
            sync_policy: log_config.sync.to_string(),
            cut: recovered.cut.as_ref().map(|d| d.to_string()),
            skipped: recovered.skipped.iter().map(|d| d.to_string()).collect(),
            quarantined: recovered
                .quarantined
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            guest_instantiations: after.guest_instantiations - before.guest_instantiations,
            guest_calls: after.guest_calls - before.guest_calls,
            fuel_consumed: after.fuel_consumed - before.fuel_consumed,
        };
        report_open(&*storage, &dir, &replay, &modules);
        let next_tx_id = log.next_tx_id();
        let snapshots = Snapshotter::start(&dir, snapshot_config, storage.clone())?;
        let clock_source = host.config.clock.clone();
        Ok(Database {
            host,
            dir,
            storage,
            log,
            inner: Mutex::new(Inner {
                modules,
                clock: Clock {
                    next_tx_id,
                    last_timestamp_micros: replayer.last_timestamp_micros,
                    source: clock_source,
                },
            }),
            queue: Mutex::new(Vec::new()),
            replay,
            snapshots,
            feed: Feed::new(next_tx_id - 1),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The durable log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// What opening found and did.
    pub fn replay_stats(&self) -> &ReplayStats {
        &self.replay
    }

    fn lock(&self) -> Result<Held<'_>, ()> {
        let guard = self.inner.lock().map_err(drop)?;
        Ok(Held {
            db: self,
            guard: Some(guard),
        })
    }

    /// A module's definition.
    pub fn module_def(&self, name: &str) -> Option<Arc<ModuleDef>> {
        let inner = self.lock().ok()?;
        inner.modules.get(name).map(|m| m.def.clone())
    }

    pub fn module_names(&self) -> Vec<String> {
        self.lock()
            .map(|inner| inner.modules.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// A module's definition version: 1 at first publication, one more at
    /// each schema change.
    pub fn module_version(&self, name: &str) -> Option<u32> {
        let inner = self.lock().ok()?;
        inner.modules.get(name).map(|m| m.version)
    }

    /// The id the next committed transaction will get.
    pub fn next_tx_id(&self) -> u64 {
        self.lock().map(|i| i.clock.next_tx_id).unwrap_or(0)
    }

    /// Validates, stores and loads a module, then runs its init reducer if it
    /// is new, as one transaction whose log record carries the definition.
    /// Over a module of the same name: the code alone is replaced when the
    /// definition is unchanged (nothing is logged); otherwise the new
    /// version is migrated to as [`Database::publish_with`] says.
    pub fn publish(&self, name: &str, wasm: &[u8]) -> Result<Published, LoadError> {
        self.publish_with(name, wasm, PublishOptions::default())
    }

    /// [`Database::publish`] with options. A new version of a published
    /// module is accepted when its changes are additive (new tables, new
    /// columns at the end with a default, new indexes, new reducers), when
    /// it has a migration reducer, or with `clear`; anything else is
    /// refused with the list of changes. Migration, the migration reducer
    /// (or, with `clear`, the init reducer) and the switch to the new
    /// version are one transaction: if any of it fails, the old version
    /// keeps serving and no data changes.
    pub fn publish_with(
        &self,
        name: &str,
        wasm: &[u8],
        options: PublishOptions,
    ) -> Result<Published, LoadError> {
        check_module_name(name)?;
        let mut runner = Runner::compile(&self.host, wasm)?;
        let def = Arc::new(runner.describe()?);
        let mut inner = self.lock().map_err(|()| LoadError::Poisoned)?;
        if let Some(p) = self.log.poisoned() {
            return Err(LoadError::Durability(
                interstice_log::AppendError::Poisoned(p),
            ));
        }
        let existing = inner.modules.get(name);
        if let Some(existing) = existing
            && *existing.def == *def
            && !options.clear
        {
            let path = module_path(&self.dir, name, existing.version);
            atomic::write_atomic(&*self.storage, &path, wasm).map_err(io_err(&path))?;
            let version = existing.version;
            if let Some(existing) = inner.modules.get_mut(name) {
                existing.runner = Some(runner);
            }
            return Ok(Published {
                def,
                version,
                init: None,
                replaced: true,
                tx_id: None,
                changes: Vec::new(),
            });
        }
        // The new version's tables, and which reducer runs on them.
        let (kind, version, mut tables, reducer, changes) = match existing {
            None => (
                RecordKind::Publish,
                1,
                Tables::new(&def),
                def.init_reducer(),
                Vec::new(),
            ),
            Some(old) => {
                let plan = migrate::plan(&old.def, &def);
                let mut changes = plan.additive.clone();
                changes.extend(plan.breaking.iter().cloned());
                if options.clear {
                    changes.push(format!("all data of `{name}` cleared"));
                    (
                        RecordKind::Upgrade,
                        old.version + 1,
                        Tables::new(&def),
                        def.init_reducer(),
                        changes,
                    )
                } else if plan.is_additive() || def.migrate_reducer().is_some() {
                    let tables = migrate::apply(&plan, &old.tables, &def).map_err(|e| {
                        LoadError::MigrationRefused {
                            module: name.to_string(),
                            reason: e.to_string(),
                        }
                    })?;
                    (
                        RecordKind::Upgrade,
                        old.version + 1,
                        tables,
                        def.migrate_reducer(),
                        changes,
                    )
                } else {
                    return Err(LoadError::SchemaChanged {
                        module: name.to_string(),
                        changes: plan.breaking,
                    });
                }
            }
        };
        let ctx = inner.clock.next("publish");
        let ran = match reducer {
            Some(id) => {
                let committed = runner.call(&mut tables, &ctx, id, &[]).map_err(|source| {
                    LoadError::InitFailed {
                        module: name.to_string(),
                        reducer: def.reducers[id as usize].name.clone(),
                        source,
                    }
                })?;
                Some((def.reducers[id as usize].name.clone(), committed))
            }
            None => None,
        };
        // The code is on disk before the record that makes it part of the
        // database, so a durable publication always has its code. Each
        // version has its own file: the old version's stays in force (and
        // on disk) if this record never becomes durable.
        let path = module_path(&self.dir, name, version);
        atomic::write_atomic(&*self.storage, &path, wasm).map_err(io_err(&path))?;
        let definition = match kind {
            RecordKind::Upgrade => serde_json::to_vec(&UpgradeDocument {
                version,
                clear: options.clear,
                definition: (*def).clone(),
            }),
            _ => serde_json::to_vec(&*def),
        }
        .expect("a definition serializes");
        let empty = Vec::new();
        let header = TxHeader {
            kind,
            timestamp_micros: ctx.timestamp_micros,
            module: name,
            definition: Some(&definition),
            reducer: ran.as_ref().map_or("", |(n, _)| n.as_str()),
            caller: &ctx.caller,
            args: &[],
        };
        let payload = encode_tx(&header, ran.as_ref().map_or(&empty, |(_, c)| &c.mutations));
        self.log
            .append(ctx.tx_id, payload)
            .map_err(LoadError::Durability)?;
        inner.clock.committed(&ctx);
        if self.feed.active() {
            self.feed.committed(CommittedTx {
                tx_id: ctx.tx_id,
                timestamp_micros: ctx.timestamp_micros,
                module: name.to_string(),
                event: TxEvent::Publish {
                    version,
                    clear: options.clear,
                },
                def: Some(def.clone()),
                mutations: ran
                    .as_ref()
                    .map_or_else(Vec::new, |(_, c)| c.mutations.clone()),
            });
        }
        inner.modules.insert(
            name.to_string(),
            ModuleEntry {
                def: def.clone(),
                version,
                tables,
                runner: Some(runner),
            },
        );
        drop(inner);
        self.log.wait(ctx.tx_id).map_err(LoadError::Durability)?;
        self.feed.release(ctx.tx_id);
        Ok(Published {
            def,
            version,
            init: ran.map(|(_, c)| outcome(&ctx, c)),
            replaced: false,
            tx_id: Some(ctx.tx_id),
            changes,
        })
    }

    /// Calls a reducer with arguments given as JSON (an array in declaration
    /// order, or an object keyed by parameter name).
    pub fn call_json(
        &self,
        module: &str,
        reducer: &str,
        args: &serde_json::Value,
        caller: &str,
    ) -> Result<CallOutcome, CallError> {
        let (reducer_id, def) = self.resolve(module, reducer)?;
        let encoded = args_from_json(args, &def.reducers[reducer_id as usize].params)?;
        self.call_encoded(module, reducer_id, &encoded, caller)
    }

    /// Looks up a reducer's id for [`Database::call_encoded`]. The init
    /// reducer is not callable.
    pub fn resolve_reducer(&self, module: &str, reducer: &str) -> Result<u32, CallError> {
        self.resolve(module, reducer).map(|(id, _)| id)
    }

    fn resolve(&self, module: &str, reducer: &str) -> Result<(u32, Arc<ModuleDef>), CallError> {
        let def = self
            .module_def(module)
            .ok_or_else(|| CallError::UnknownModule(module.to_string()))?;
        let id = def
            .reducer_id(reducer)
            .ok_or_else(|| CallError::UnknownReducer {
                module: module.to_string(),
                reducer: reducer.to_string(),
            })?;
        if def.reducers[id as usize].kind == ReducerKind::Init {
            return Err(CallError::InitNotCallable(reducer.to_string()));
        }
        Ok((id, def))
    }

    /// Calls reducer number `reducer_id` with arguments already in the row
    /// encoding, as the next transaction. Returns once the transaction is
    /// durable (under the `always` sync policy), or with the reason it did
    /// not commit. The guest validates the arguments against the parameter
    /// types.
    pub fn call_encoded(
        &self,
        module: &str,
        reducer_id: u32,
        args: &[u8],
        caller: &str,
    ) -> Result<CallOutcome, CallError> {
        if args.len() > limits::ARGS_BYTES_MAX {
            return Err(CallError::ArgumentsTooLarge {
                len: args.len(),
                max: limits::ARGS_BYTES_MAX,
            });
        }
        // Uncontended: run the call here. Contended: queue it for whoever
        // holds the database (that thread runs every queued call before it
        // lets go) and sleep until the log says the record is durable.
        let executed = match self.inner.try_lock() {
            Ok(guard) => {
                let mut held = Held {
                    db: self,
                    guard: Some(guard),
                };
                // Writing its own record is worth it only to a caller with
                // nobody waiting behind it: queued calls are better served by
                // one group commit than by a sync of their own after this one.
                let alone = lock_queue(&self.queue).is_empty();
                self.execute(&mut held, module, reducer_id, args, caller, alone)
                // `held` drops here: queued calls run, then the database is
                // free for the next caller while this one waits for its sync.
            }
            Err(std::sync::TryLockError::Poisoned(_)) => return Err(CallError::Poisoned),
            Err(std::sync::TryLockError::WouldBlock) => {
                return self.call_queued(module, reducer_id, args, caller);
            }
        };
        let executed = executed?;
        let durable = match executed.direct {
            Some((direct, payload)) => direct.commit(payload),
            None => self.log.wait(executed.ctx.tx_id),
        };
        durable.map_err(CallError::Durability)?;
        self.feed.release(executed.ctx.tx_id);
        Ok(outcome(&executed.ctx, executed.committed))
    }

    /// Runs one call as the next transaction on the held database and queues
    /// its record; the caller waits for durability.
    fn execute(
        &self,
        inner: &mut Inner,
        module: &str,
        reducer_id: u32,
        args: &[u8],
        caller: &str,
        may_write_directly: bool,
    ) -> Result<Executed<'_>, CallError> {
        if let Some(p) = self.log.poisoned() {
            return Err(CallError::Durability(
                interstice_log::AppendError::Poisoned(p),
            ));
        }
        let entry = inner
            .modules
            .get_mut(module)
            .ok_or_else(|| CallError::UnknownModule(module.to_string()))?;
        let reducer = match entry.def.reducers.get(reducer_id as usize) {
            Some(r) if r.kind == ReducerKind::Normal => r.name.as_str(),
            Some(r) => return Err(CallError::InitNotCallable(r.name.clone())),
            None => {
                return Err(CallError::UnknownReducer {
                    module: module.to_string(),
                    reducer: format!("#{reducer_id}"),
                });
            }
        };
        let runner = match &mut entry.runner {
            Some(r) => r,
            None => entry.runner.insert(load_runner(
                &self.host,
                &*self.storage,
                &self.dir,
                module,
                entry.version,
                &entry.def,
            )?),
        };
        let ctx = inner.clock.next(caller);
        let committed = match runner.call(&mut entry.tables, &ctx, reducer_id, args) {
            Ok(committed) => committed,
            Err(e) => {
                let lines = runner.take_failed_log();
                self.feed
                    .log_lines(module, reducer, ctx.tx_id, false, &lines);
                return Err(e);
            }
        };
        self.feed
            .log_lines(module, reducer, ctx.tx_id, true, &committed.log);
        let header = TxHeader {
            kind: RecordKind::Call,
            timestamp_micros: ctx.timestamp_micros,
            module,
            definition: None,
            reducer,
            caller,
            args,
        };
        let payload = encode_tx(&header, &committed.mutations);
        self.snapshots.committed(payload.len(), &self.log);
        let direct = match may_write_directly {
            true => self.log.reserve_direct(ctx.tx_id),
            false => None,
        };
        let direct = match direct {
            Some(direct) => Some((direct, payload)),
            None => {
                self.log
                    .append(ctx.tx_id, payload)
                    .map_err(CallError::Durability)?;
                None
            }
        };
        inner.clock.committed(&ctx);
        if self.feed.active() {
            self.feed.committed(CommittedTx {
                tx_id: ctx.tx_id,
                timestamp_micros: ctx.timestamp_micros,
                module: module.to_string(),
                event: TxEvent::Call {
                    reducer: reducer.to_string(),
                    caller: caller.to_string(),
                },
                def: Some(entry.def.clone()),
                mutations: committed.mutations.clone(),
            });
        }
        Ok(Executed {
            ctx,
            committed,
            direct,
        })
    }

    /// The contended path of [`Database::call_encoded`].
    fn call_queued(
        &self,
        module: &str,
        reducer_id: u32,
        args: &[u8],
        caller: &str,
    ) -> Result<CallOutcome, CallError> {
        let queued = Arc::new(Queued {
            module: module.to_string(),
            reducer_id,
            args: args.to_vec(),
            caller: caller.to_string(),
            thread: std::thread::current(),
            result: Mutex::new(None),
        });
        lock_queue(&self.queue).push(queued.clone());
        self.combine();
        loop {
            {
                let mut result = queued.result.lock().unwrap_or_else(|p| p.into_inner());
                match result.take() {
                    Some(Err(e)) => return Err(e),
                    Some(Ok((ctx, committed))) => match self.log.status(ctx.tx_id) {
                        Some(Ok(())) => {
                            self.feed.release(ctx.tx_id);
                            return Ok(outcome(&ctx, committed));
                        }
                        Some(Err(e)) => return Err(CallError::Durability(e)),
                        None => *result = Some(Ok((ctx, committed))),
                    },
                    None => {}
                }
            }
            // Woken by the holder on failure, by the log writer once the
            // record may be acknowledged; a spurious return checks again.
            std::thread::park();
        }
    }

    /// Runs every queued call. Called by whoever holds the database, just
    /// before letting go.
    fn drain(&self, inner: &mut Inner) {
        loop {
            let batch = std::mem::take(&mut *lock_queue(&self.queue));
            if batch.is_empty() {
                return;
            }
            for q in batch {
                let executed = self
                    .execute(inner, &q.module, q.reducer_id, &q.args, &q.caller, false)
                    .map(|e| (e.ctx, e.committed));
                let tx_id = executed.as_ref().ok().map(|(ctx, _)| ctx.tx_id);
                *q.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(executed);
                match tx_id {
                    Some(tx) => self.log.notify(tx, q.thread.clone()),
                    None => q.thread.unpark(),
                }
            }
        }
    }

    /// After letting go of the database: a call queued between the last
    /// drain and the release would be stranded, so take the database again
    /// and run it, unless someone else holds it (and will).
    fn combine(&self) {
        while !lock_queue(&self.queue).is_empty() {
            match self.inner.try_lock() {
                Ok(mut guard) => self.drain(&mut guard),
                Err(std::sync::TryLockError::WouldBlock) => return,
                Err(std::sync::TryLockError::Poisoned(_)) => return self.fail_queued(),
            }
        }
    }

    /// After a panic while the database was held: every queued call fails.
    fn fail_queued(&self) {
        for q in std::mem::take(&mut *lock_queue(&self.queue)) {
            *q.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(Err(CallError::Poisoned));
            q.thread.unpark();
        }
    }

    /// Deletes a module and all its data, as one logged transaction; its
    /// code files are removed once the deletion is durable. Returns the
    /// transaction's id.
    pub fn drop_module(&self, name: &str) -> Result<u64, LoadError> {
        let mut inner = self.lock().map_err(|()| LoadError::Poisoned)?;
        if let Some(p) = self.log.poisoned() {
            return Err(LoadError::Durability(
                interstice_log::AppendError::Poisoned(p),
            ));
        }
        let Some(entry) = inner.modules.get(name) else {
            return Err(LoadError::UnknownModule(name.to_string()));
        };
        let last_version = entry.version;
        let ctx = inner.clock.next("admin");
        let header = TxHeader {
            kind: RecordKind::Drop,
            timestamp_micros: ctx.timestamp_micros,
            module: name,
            definition: None,
            reducer: "",
            caller: &ctx.caller,
            args: &[],
        };
        let payload = encode_tx(&header, &[]);
        self.log
            .append(ctx.tx_id, payload)
            .map_err(LoadError::Durability)?;
        inner.clock.committed(&ctx);
        inner.modules.remove(name);
        if self.feed.active() {
            self.feed.committed(CommittedTx {
                tx_id: ctx.tx_id,
                timestamp_micros: ctx.timestamp_micros,
                module: name.to_string(),
                event: TxEvent::Drop,
                def: None,
                mutations: Vec::new(),
            });
        }
        drop(inner);
        self.log.wait(ctx.tx_id).map_err(LoadError::Durability)?;
        self.feed.release(ctx.tx_id);
        // The code is no longer part of the database. A file left behind by
        // a crash here is harmless: publishing the name again replaces it.
        for version in 1..=last_version {
            let path = module_path(&self.dir, name, version);
            if let Err(e) = self.storage.remove(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!("could not remove {}: {e}", path.display());
            }
        }
        Ok(ctx.tx_id)
    }

    /// Hands every committed transaction, once durable, to `listener`, in
    /// commit order, from the next commit on. The listener runs on the
    /// committing thread and must not block.
    pub fn listen(&self, listener: Listener) {
        // Registered with the database held: no transaction is half-way
        // between executing and joining the feed.
        let _held = self.inner.lock();
        self.feed.listen(listener);
    }

    /// Hands every log line a guest writes to `sink`, as the call ends
    /// (committed or not). The sink runs on the calling thread and must not
    /// block.
    pub fn add_log_sink(&self, sink: LogSink) {
        self.feed.add_log_sink(sink);
    }

    /// Every transaction up to this one has been handed to the listeners.
    pub fn released_tx(&self) -> u64 {
        self.feed.released()
    }

    /// Rows of a table as JSON objects: all of them in primary-key order, or
    /// those whose indexed column holds a value, in pages.
    pub fn query(&self, module: &str, table: &str, query: &RowQuery) -> Result<Page, QueryError> {
        let inner = self.lock().map_err(|()| QueryError::Poisoned)?;
        let (entry, t) = table_of(&inner, module, table)?;
        let limit = query.limit.max(1);
        let mut out = Vec::new();
        let (index, lower, upper) = match &query.filter {
            None => (IndexId::PrimaryKey, Bound::Unbounded, Bound::Unbounded),
            Some((column, raw)) => {
                let (index, ty) = index_on(t.def(), column)?;
                let value = value_from_query(raw, ty).map_err(|reason| QueryError::BadValue {
                    column: column.clone(),
                    reason,
                })?;
                (
                    index,
                    Bound::Included(value.clone()),
                    Bound::Included(value),
                )
            }
        };
        let after = match &query.after {
            None => None,
            Some(raw) => {
                let pk_col = &t.def().columns[t.def().primary_key as usize];
                let pk =
                    value_from_query(raw, pk_col.ty).map_err(|reason| QueryError::BadValue {
                        column: pk_col.name.clone(),
                        reason,
                    })?;
                let key = match &lower {
                    Bound::Included(v) => v.clone(),
                    _ => pk.clone(),
                };
                Some(ScanPosition { key, pk })
            }
        };
        // One more than asked tells whether another page follows.
        t.scan(
            index,
            &lower,
            &upper,
            after.as_ref(),
            limit.saturating_add(1),
            &mut out,
        )
        .map_err(|e| QueryError::Corrupt(e.to_string()))?;
        let more = out.len() > limit;
        out.truncate(limit);
        let next_after = match more {
            true => out
                .last()
                .map(|(pos, _)| interstice_store::json::value_to_json(&pos.pk)),
            false => None,
        };
        let rows = out
            .iter()
            .map(|(_, row)| {
                row_to_json(row, t.def()).map_err(|e| QueryError::Corrupt(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            rows,
            next_after,
            tx_id: inner.clock.next_tx_id - 1,
            def: entry.def.clone(),
        })
    }

    /// A table's rows as JSON objects, in primary-key order.
    pub fn rows_json(
        &self,
        module: &str,
        table: &str,
    ) -> Result<Vec<serde_json::Value>, QueryError> {
        self.with_table(module, table, |t| {
            t.iter()
                .map(|row| {
                    row_to_json(row, t.def()).map_err(|e| QueryError::Corrupt(e.to_string()))
                })
                .collect()
        })
    }

    /// The row of `table` whose primary key is `key` (JSON of the key
    /// column's type), as a JSON object.
    pub fn get_json(
        &self,
        module: &str,
        table: &str,
        key: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>, QueryError> {
        self.with_table(module, table, |t| {
            let pk_type = t.def().columns[t.def().primary_key as usize].ty;
            let pk = interstice_store::json::value_from_json(key, pk_type)
                .map_err(QueryError::BadKey)?;
            t.get(&pk)
                .map(|row| {
                    row_to_json(row, t.def()).map_err(|e| QueryError::Corrupt(e.to_string()))
                })
                .transpose()
        })
    }

    /// The row of `table` whose primary key is `key`, in the row encoding.
    pub fn get_row(
        &self,
        module: &str,
        table: &str,
        key: &interstice_store::Value,
    ) -> Result<Option<interstice_store::RowBytes>, QueryError> {
        self.with_table(module, table, |t| Ok(t.get(key).cloned()))
    }

    fn with_table<T>(
        &self,
        module: &str,
        table: &str,
        f: impl FnOnce(&interstice_store::Table) -> Result<T, QueryError>,
    ) -> Result<T, QueryError> {
        let inner = self.lock().map_err(|()| QueryError::Poisoned)?;
        let (_, t) = table_of(&inner, module, table)?;
        f(t)
    }

    /// Every module's every table: rows as JSON in primary-key order, and
    /// the next auto-increment value. Two databases with equal state give
    /// equal values.
    pub fn state_json(&self) -> Result<serde_json::Value, QueryError> {
        let inner = self.lock().map_err(|()| QueryError::Poisoned)?;
        let mut out = serde_json::Map::new();
        for (name, entry) in &inner.modules {
            let mut tables = serde_json::Map::new();
            for t in entry.tables.tables() {
                let rows = t
                    .iter()
                    .map(|row| row_to_json(row, t.def()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| QueryError::Corrupt(e.to_string()))?;
                tables.insert(
                    t.def().name.clone(),
                    serde_json::json!({"rows": rows, "next_auto_inc": t.next_auto_inc()}),
                );
            }
            out.insert(name.clone(), serde_json::Value::Object(tables));
        }
        Ok(serde_json::Value::Object(out))
    }

    /// Takes a snapshot now, at the newest transaction (synced first), and
    /// applies retention. Reducers keep running meanwhile: the snapshot is
    /// built from the previous one and the log, not from the live tables.
    /// `None` when a snapshot at that transaction exists already.
    pub fn snapshot(&self) -> Result<Option<SnapshotInfo>, SnapshotError> {
        self.log.sync().map_err(SnapshotError::Durability)?;
        let upto = self.log.acknowledged_tx();
        let _one = self
            .snapshots
            .building
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        snapshots::build(&self.dir, &*self.storage, upto, &self.snapshots.config)
    }

    /// What the last automatic snapshot did, if one was taken since open.
    pub fn last_automatic_snapshot(&self) -> Option<Result<SnapshotInfo, String>> {
        self.snapshots
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Guest activity so far.
    pub fn counters(&self) -> CounterSnapshot {
        self.host.counters().snapshot()
    }
}

fn outcome(ctx: &CallContext, committed: Committed) -> CallOutcome {
    CallOutcome {
        tx_id: ctx.tx_id,
        timestamp_micros: ctx.timestamp_micros,
        mutations: committed.mutations,
        log: committed.log,
        fuel_consumed: committed.fuel_consumed,
    }
}

/// Compiles a module's stored code on its first call after open, and checks
/// that it still describes the definition in force.
fn load_runner(
    host: &Host,
    storage: &dyn Storage,
    dir: &Path,
    module: &str,
    version: u32,
    def: &ModuleDef,
) -> Result<Runner, CallError> {
    let not_loaded = |reason: String| CallError::NotLoaded {
        module: module.to_string(),
        reason,
    };
    let path = module_path(dir, module, version);
    let wasm = storage.read(&path).map_err(|e| {
        not_loaded(format!(
            "its code {} cannot be read ({e}); publish the module again",
            path.display()
        ))
    })?;
    let mut runner = Runner::compile(host, &wasm)
        .map_err(|e| not_loaded(format!("its code {} does not load: {e}", path.display())))?;
    let described = runner
        .describe()
        .map_err(|e| not_loaded(format!("its code {} does not load: {e}", path.display())))?;
    if described != *def {
        return Err(not_loaded(format!(
            "its code {} describes a different schema from the one published",
            path.display()
        )));
    }
    Ok(runner)
}

/// Says at every start what an operator must know: a weak sync policy, and
/// anything recovery cut, skipped or moved aside.
fn report_open(
    storage: &dyn Storage,
    dir: &Path,
    stats: &ReplayStats,
    modules: &BTreeMap<String, ModuleEntry>,
) {
    if stats.sync_policy != "always" {
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
    for (name, entry) in modules {
        if !storage.exists(&module_path(dir, name, entry.version)) {
            tracing::warn!(
                "module `{name}` has no code in {}; its tables are served but calls fail until it is published again",
                dir.join(MODULES_DIR).display()
            );
        }
    }
}

/// Which rows [`Database::query`] returns.
#[derive(Clone, Debug, Default)]
pub struct RowQuery {
    /// Only rows whose column (the primary key or an indexed column) holds
    /// this value, given as JSON of the column's type (or, for a string
    /// column, the string itself).
    pub filter: Option<(String, String)>,
    /// Only rows after the one with this primary key (as `filter`'s value).
    pub after: Option<String>,
    /// At most this many rows.
    pub limit: usize,
}

/// One page of [`Database::query`].
#[derive(Debug)]
pub struct Page {
    pub rows: Vec<serde_json::Value>,
    /// The primary key to pass as `after` for the next page, when more rows
    /// may follow.
    pub next_after: Option<serde_json::Value>,
    /// The last transaction whose changes the rows include.
    pub tx_id: u64,
    /// The module's definition the rows were read under.
    pub def: Arc<ModuleDef>,
}

fn table_of<'a>(
    inner: &'a Inner,
    module: &str,
    table: &str,
) -> Result<(&'a ModuleEntry, &'a interstice_store::Table), QueryError> {
    let entry = inner
        .modules
        .get(module)
        .ok_or_else(|| QueryError::UnknownModule(module.to_string()))?;
    let table_id = entry
        .def
        .table_id(table)
        .ok_or_else(|| QueryError::UnknownTable {
            module: module.to_string(),
            table: table.to_string(),
        })?;
    let t = entry
        .tables
        .table(table_id)
        .map_err(|e| QueryError::Corrupt(e.to_string()))?;
    Ok((entry, t))
}

/// The index over `column` (the primary key's, or a secondary one), and the
/// column's type.
pub fn index_on(
    table: &interstice_store::TableDef,
    column: &str,
) -> Result<(IndexId, interstice_store::ColumnType), QueryError> {
    let not_indexed = || QueryError::NotIndexed {
        table: table.name.clone(),
        column: column.to_string(),
    };
    let col = table.column_index(column).ok_or_else(not_indexed)?;
    let ty = table.columns[col].ty;
    if col == table.primary_key as usize {
        return Ok((IndexId::PrimaryKey, ty));
    }
    let i = table
        .indexes
        .iter()
        .position(|ix| ix.column as usize == col)
        .ok_or_else(not_indexed)?;
    Ok((IndexId::Secondary(i), ty))
}

/// A column value from a query string: JSON of the column's type, or, for
/// a string column, the text itself when it is not a JSON string.
pub fn value_from_query(
    raw: &str,
    ty: interstice_store::ColumnType,
) -> Result<interstice_store::Value, String> {
    use interstice_store::ScalarType;
    let json = match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(v @ serde_json::Value::String(_)) => v,
        Ok(v) if ty.scalar != ScalarType::String => v,
        _ if ty.scalar == ScalarType::String => serde_json::Value::String(raw.to_string()),
        Ok(v) => v,
        Err(e) => return Err(format!("`{raw}` is not JSON: {e}")),
    };
    interstice_store::json::value_from_json(&json, ty)
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    #[error("no module named `{0}`")]
    UnknownModule(String),
    #[error("module `{module}` has no table named `{table}`")]
    UnknownTable { module: String, table: String },
    #[error("stored row does not decode: {0}")]
    Corrupt(String),
    #[error("bad key: {0}")]
    BadKey(String),
    #[error("table `{table}` has no index on a column named `{column}`")]
    NotIndexed { table: String, column: String },
    #[error("bad value for column `{column}`: {reason}")]
    BadValue { column: String, reason: String },
    #[error("the database is unusable after an internal error in another thread")]
    Poisoned,
}
