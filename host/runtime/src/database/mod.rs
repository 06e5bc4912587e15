//! The database: a data directory's modules, their tables, the durable log
//! behind them, and the serial transaction pipeline that runs reducers on
//! them. This file holds the struct and its thin public methods; each room
//! beside it has one reason to change:
//!
//! | file | owns |
//! | --- | --- |
//! | `open.rs` | lock → newest snapshot → recover → replay → report |
//! | `catalog.rs` | the modules in force and loading their code |
//! | `clock.rs` | transaction ids, timestamps, seeds |
//! | `combine.rs` | the combining queue; the only way to the held state |
//! | `call.rs` | a reducer call as a transaction |
//! | `commit.rs` | the one commit path every transaction goes through |
//! | `publish.rs` | choosing and carrying out a publication; deletion |
//! | `query.rs` | reads and JSON |
//! | `schedule.rs` | schedule tables: `st_schedule`, entries, what is due, backoff |
//! | `due.rs` | running what is due, in rounds; the schedule loop |

mod call;
mod catalog;
mod clock;
mod combine;
mod commit;
mod due;
mod live;
mod open;
mod publish;
mod query;
mod schedule;
mod statement;

use std::path::Path;
use std::sync::Arc;

use interstice_log::Log;
use interstice_store::json::args_from_json;
use interstice_store::{ModuleDef, RowBytes, Value};

use crate::caller::{Caller, Identity};
use crate::config::RuntimeConfig;
use crate::counters::CounterSnapshot;
use crate::error::{CallError, DropError, OpenError, Poisoned, PublishError, SnapshotError};
use crate::feed::{Feed, Listener, LogSink};
use crate::layout::DirLock;
use crate::ops::Progress;
use crate::sandbox::{Host, Runner};
use crate::snapshots::{SnapshotInfo, Trigger};
use call::{CallArgs, CallKind, Calls, Done, Job};
use catalog::{Catalog, Code};
use combine::{Combiner, Held};
use commit::{Pending, Pipeline};
use publish::Candidate;

pub use call::CallOutcome;
pub use open::ReplayStats;
pub use publish::{PublishOptions, Published};
pub use query::{
    LiveStart, Page, QueryError, Reader, RowQuery, SqlAnswer, index_on, value_from_query,
};
pub use schedule::{LATENESS_BUCKETS, ROUND_MAX, ScheduleRound, ScheduleStats, backoff_micros};

/// A call that has committed and whose record is on its way to the log
/// ([`Database::call_begin_many`]); its caller is answered only once
/// [`Database::calls_durable`] says it is durable.
#[must_use = "a call is answered only once durable"]
#[derive(Debug)]
pub struct Committing {
    tx_id: u64,
    version: u32,
    outcome: CallOutcome,
}

impl Committing {
    /// The version of the module that ran the call.
    pub fn version(&self) -> u32 {
        self.version
    }
}

/// A call's arguments for [`Database::call_begin_many`].
#[derive(Clone, Copy, Debug)]
pub enum CallInput<'a> {
    /// JSON: an array in parameter order, or an object by name.
    Json(&'a serde_json::Value),
    /// An argument row (docs/row-encoding.md), checked before the call.
    Row(&'a [u8]),
}

/// One call of [`Database::call_begin_many`].
#[derive(Clone, Copy, Debug)]
pub struct BeginCall<'a> {
    pub module: &'a str,
    pub reducer: &'a str,
    pub args: CallInput<'a>,
    pub caller: &'a Caller,
}

/// The held database, as this file reaches it.
type HeldCatalog<'a> = Held<'a, Catalog, Job, Done, Calls<'a>>;

/// The database: modules, tables, the log, and the transaction counter.
///
/// Calls are serial: one reducer runs at a time. A caller holds the commit
/// order only while its reducer runs and its record is queued, and waits for
/// durability afterwards, so the next reducer runs while earlier ones wait
/// for their fsync, and one fsync serves them all (group commit).
pub struct Database {
    /// The engine, the file system and the data directory.
    code: Code,
    /// The log, the feed and the snapshot trigger.
    pipeline: Pipeline,
    /// The modules and the clock, behind the combining queue.
    state: Combiner<Catalog, Job, Done>,
    replay: ReplayStats,
    _lock: DirLock,
}

impl Database {
    /// Opens (creating if needed) the data directory: takes its lock,
    /// recovers the log and replays it into the tables without running any
    /// guest. Module code is compiled when a call first needs it.
    pub fn open(dir: &Path, config: RuntimeConfig) -> Result<Database, OpenError> {
        Self::open_with_progress(dir, config, &mut |_, _| {})
    }

    /// [`Database::open`], reporting replay progress as (bytes of the log
    /// read, total bytes).
    pub fn open_with_progress(
        dir: &Path,
        config: RuntimeConfig,
        progress: Progress<'_>,
    ) -> Result<Database, OpenError> {
        let snapshot_config = config.snapshots.clone();
        let opened = open::open(dir, config, progress)?;
        let storage = opened.code.storage.clone();
        let trigger =
            Trigger::start(&opened.code.dir, snapshot_config, storage).map_err(|source| {
                OpenError::Io {
                    path: opened.code.dir.clone(),
                    source,
                }
            })?;
        let last_tx_id = opened.catalog.clock.last_tx_id();
        Ok(Database {
            code: opened.code,
            pipeline: Pipeline {
                log: opened.log,
                feed: Feed::new(last_tx_id),
                trigger,
            },
            state: Combiner::new(opened.catalog),
            replay: opened.stats,
            _lock: opened.lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.code.dir
    }

    pub fn host(&self) -> &Host {
        &self.code.host
    }

    /// The durable log.
    pub fn log(&self) -> &Log {
        &self.pipeline.log
    }

    /// What opening found and did.
    pub fn replay_stats(&self) -> &ReplayStats {
        &self.replay
    }

    fn calls(&self) -> Calls<'_> {
        Calls {
            code: &self.code,
            pipeline: &self.pipeline,
        }
    }

    /// Runs `f` on the held database; calls queued meanwhile run before it
    /// is let go.
    fn read<T>(&self, f: impl FnOnce(&Catalog) -> T) -> Result<T, Poisoned> {
        let calls = self.calls();
        let held = self.state.hold(&calls)?;
        Ok(f(&held))
    }

    /// A module's definition; `None` when there is no module of that name.
    pub fn module_def(&self, name: &str) -> Result<Option<Arc<ModuleDef>>, Poisoned> {
        self.read(|c| c.modules.get(name).map(|m| m.def.clone()))
    }

    pub fn module_names(&self) -> Result<Vec<String>, Poisoned> {
        self.read(|c| c.modules.keys().cloned().collect())
    }

    /// A module's definition version: 1 at first publication, one more at
    /// each schema change.
    pub fn module_version(&self, name: &str) -> Result<Option<u32>, Poisoned> {
        self.read(|c| c.modules.get(name).map(|m| m.version))
    }

    /// The id the next committed transaction will get.
    pub fn next_tx_id(&self) -> Result<u64, Poisoned> {
        self.read(|c| c.clock.next_tx_id())
    }

    /// Validates, stores and loads a module, then runs its init reducer if it
    /// is new, as one transaction whose log record carries the definition.
    /// Over a module of the same name: the code alone is replaced when the
    /// definition is unchanged (nothing is logged); otherwise the new
    /// version is migrated to as [`Database::publish_with`] says.
    pub fn publish(&self, name: &str, wasm: &[u8]) -> Result<Published, PublishError> {
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
    ) -> Result<Published, PublishError> {
        publish::check_name(name)?;
        // Compiled outside the database: reducers keep committing meanwhile.
        let mut runner = Runner::compile(&self.code.host, wasm)?;
        let def = runner.describe()?;
        let candidate = Candidate {
            name,
            wasm,
            runner,
            def,
            options,
        };
        let calls = self.calls();
        let mut held = self
            .state
            .hold(&calls)
            .map_err(|_| PublishError::Poisoned)?;
        let (published, pending) =
            publish::publish(&mut held, &self.code, &self.pipeline, candidate)?;
        drop(held);
        if let Some(pending) = pending {
            pending.durable().map_err(PublishError::Durability)?;
        }
        Ok(published)
    }

    /// Deletes a module and all its data, as one logged transaction; its
    /// code files are removed once the deletion is durable. Returns the
    /// transaction's id.
    pub fn drop_module(&self, name: &str) -> Result<u64, DropError> {
        self.drop_module_as(name, Identity::operator())
    }

    /// [`Database::drop_module`] on behalf of `by`: the operator, or the
    /// module's owner.
    pub fn drop_module_as(&self, name: &str, by: Identity) -> Result<u64, DropError> {
        let calls = self.calls();
        let mut held = self.state.hold(&calls).map_err(|_| DropError::Poisoned)?;
        let (pending, last_version) = publish::drop_module(&mut held, &self.pipeline, name, by)?;
        drop(held);
        let tx_id = pending.durable().map_err(DropError::Durability)?;
        // The code is no longer part of the database.
        self.code.remove_all(name, last_version);
        Ok(tx_id)
    }

    /// Calls a reducer with arguments given as JSON (an array in declaration
    /// order, or an object keyed by parameter name).
    pub fn call_json(
        &self,
        module: &str,
        reducer: &str,
        args: &serde_json::Value,
        caller: &Caller,
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
            .map_err(|Poisoned| CallError::Poisoned)?
            .ok_or_else(|| CallError::UnknownModule(module.to_string()))?;
        let id = def
            .reducer_id(reducer)
            .ok_or_else(|| CallError::UnknownReducer {
                module: module.to_string(),
                reducer: reducer.to_string(),
            })?;
        if !def.reducers[id as usize].kind.callable() {
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
        caller: &Caller,
    ) -> Result<CallOutcome, CallError> {
        if args.len() > crate::limits::ARGS_BYTES_MAX {
            return Err(CallError::ArgumentsTooLarge {
                len: args.len(),
                max: crate::limits::ARGS_BYTES_MAX,
            });
        }
        self.run(CallArgs {
            module,
            kind: CallKind::Reducer,
            reducer_id,
            args,
            caller,
        })
    }

    /// Runs and commits calls, in order, each as the next transaction and
    /// its own (one failing changes nothing of the others), with the
    /// database held once for all of them, like [`Database::call_json`]
    /// but without waiting for their sync: each returns as soon as its
    /// record is queued for the log. Nobody may be told of them before
    /// [`Database::calls_durable`] says they are durable. An error for all
    /// of them only when the database cannot be held.
    ///
    /// A reducer is resolved and its arguments encoded (from JSON) or
    /// checked (an argument row) with the database held for the call, so
    /// they are those of the version that runs it. Calls begun one after
    /// another commit in that order, however many are waiting for their
    /// sync: this is how the server's call queue runs whatever arrived
    /// while its previous batch ran, and how a session pipelines its calls
    /// (docs/client-protocol.md).
    pub fn call_begin_many(
        &self,
        calls: &[BeginCall<'_>],
    ) -> Result<Vec<Result<Committing, CallError>>, CallError> {
        let calls_exec = self.calls();
        let mut held = self
            .state
            .hold(&calls_exec)
            .map_err(|Poisoned| CallError::Poisoned)?;
        Ok(calls
            .iter()
            .map(|c| {
                let (version, outcome, pending) = self.begin_held(&mut held, *c, false)?;
                Ok(Committing {
                    tx_id: pending.detach(),
                    version,
                    outcome,
                })
            })
            .collect())
    }

    /// Runs one call like [`Database::call_begin_many`] and returns once
    /// it is durable: when nobody else waits for the database, this thread
    /// writes and syncs the record itself, with no hand-over to the log's
    /// writer and back (what a lone caller's latency is made of). The
    /// version that ran it, and its outcome.
    pub fn call_now(&self, call: BeginCall<'_>) -> Result<(u32, CallOutcome), CallError> {
        let calls_exec = self.calls();
        let mut held = self
            .state
            .hold(&calls_exec)
            .map_err(|Poisoned| CallError::Poisoned)?;
        let alone = held.alone();
        let begun = self.begin_held(&mut held, call, alone);
        drop(held);
        let (version, outcome, pending) = begun?;
        pending.durable().map_err(CallError::Durability)?;
        Ok((version, outcome))
    }

    /// One call of [`Database::call_begin_many`], the database held: the
    /// version that runs it, its outcome, and its record on its way to the
    /// log (reserved for this thread to write, with `direct`, when the log
    /// allows).
    fn begin_held<'s>(
        &'s self,
        held: &mut HeldCatalog<'_>,
        call: BeginCall<'_>,
        direct: bool,
    ) -> Result<(u32, CallOutcome, Pending<'s>), CallError> {
        let BeginCall {
            module,
            reducer,
            args,
            caller,
        } = call;
        let entry = held
            .modules
            .get(module)
            .ok_or_else(|| CallError::UnknownModule(module.to_string()))?;
        let version = entry.version;
        let reducer_id =
            entry
                .def
                .reducer_id(reducer)
                .ok_or_else(|| CallError::UnknownReducer {
                    module: module.to_string(),
                    reducer: reducer.to_string(),
                })?;
        let def = &entry.def.reducers[reducer_id as usize];
        let encoded;
        let args = match args {
            CallInput::Json(json) => {
                encoded = args_from_json(json, &def.params)?;
                &encoded[..]
            }
            CallInput::Row(row) => {
                interstice_store::codec::decode_row(row, &def.param_types())
                    .map_err(|e| CallError::BadArgumentRow(e.to_string()))?;
                row
            }
        };
        if args.len() > crate::limits::ARGS_BYTES_MAX {
            return Err(CallError::ArgumentsTooLarge {
                len: args.len(),
                max: crate::limits::ARGS_BYTES_MAX,
            });
        }
        let call = CallArgs {
            module,
            kind: CallKind::Reducer,
            reducer_id,
            args,
            caller,
        };
        // Without `direct`, the record is synced by the log's writer, with
        // whatever else is queued, while this thread goes on.
        let (ctx, committed, pending) =
            call::execute(held, &self.code, &self.pipeline, call, direct)?;
        Ok((version, CallOutcome::new(&ctx, committed), pending))
    }

    /// Waits until calls of [`Database::call_begin_many`] are durable: one
    /// wait, for the newest (the log makes records durable as a prefix).
    /// Their outcomes, or why a record did not become durable (the calls
    /// are then not committed, and the log refuses every later write).
    pub fn calls_durable(&self, calls: Vec<Committing>) -> Result<Vec<CallOutcome>, CallError> {
        if let Some(newest) = calls.iter().map(|c| c.tx_id).max() {
            self.wait_durable(newest)?;
        }
        Ok(calls.into_iter().map(|c| c.outcome).collect())
    }

    /// Waits until every transaction up to `tx_id` (one that has
    /// committed) is durable and handed to the feed's listeners.
    pub fn wait_durable(&self, tx_id: u64) -> Result<(), CallError> {
        self.pipeline.durable(tx_id).map_err(CallError::Durability)
    }

    /// Opens a session of `caller` on `module`: one transaction that adds
    /// a row to the module's `st_client` table and runs its
    /// `client_connected` reducer, if it has one. `None`, with nothing
    /// logged, when the module has no lifecycle reducers. An error from
    /// `client_connected` refuses the session: nothing is kept.
    pub fn connect(&self, module: &str, caller: &Caller) -> Result<Option<u64>, CallError> {
        if !self.keeps_sessions(module)? {
            return Ok(None);
        }
        let outcome = self.run(CallArgs {
            module,
            kind: CallKind::Connect,
            reducer_id: 0,
            args: &[],
            caller,
        })?;
        Ok(outcome.connection_id)
    }

    /// Ends session `connection_id` of `module`: one transaction that runs
    /// `client_disconnected`, if the module has one, and removes the
    /// session's row. If the reducer fails, the row is removed all the same,
    /// in a transaction of its own, so that no session stays open forever.
    pub fn disconnect(
        &self,
        module: &str,
        connection_id: u64,
        caller: &Caller,
    ) -> Result<CallOutcome, CallError> {
        let args = |kind| CallArgs {
            module,
            kind,
            reducer_id: 0,
            args: &[],
            caller,
        };
        match self.run(args(CallKind::Disconnect { connection_id })) {
            Err(CallError::Reducer(_) | CallError::OutOfFuel { .. } | CallError::Trap(_))
            | Err(CallError::MemoryLimit(_) | CallError::NotLoaded { .. }) => {
                self.run(args(CallKind::Forget { connection_id }))
            }
            other => other,
        }
    }

    fn keeps_sessions(&self, module: &str) -> Result<bool, CallError> {
        let def = self
            .module_def(module)
            .map_err(|Poisoned| CallError::Poisoned)?
            .ok_or_else(|| CallError::UnknownModule(module.to_string()))?;
        Ok(def.has_lifecycle())
    }

    /// The sessions every module's `st_client` holds: (module, connection
    /// id, identity). At start these are sessions that were open when the
    /// server stopped.
    pub fn open_sessions(&self) -> Result<Vec<(String, u64, Identity)>, Poisoned> {
        self.read(|c| {
            let mut out = Vec::new();
            for (name, entry) in &c.modules {
                let Some(table) = entry.def.sessions_table_id() else {
                    continue;
                };
                let Ok(t) = entry.tables.table(table) else {
                    continue;
                };
                for row in t.iter() {
                    if let Ok(values) =
                        interstice_store::codec::decode_row(row, &t.def().column_types())
                        && let [Value::U64(id), Value::Identity(who), ..] = values.as_slice()
                    {
                        out.push((name.clone(), *id, Identity(**who)));
                    }
                }
            }
            out
        })
    }

    /// Ends every session left open by a server that stopped without ending
    /// them (a crash, a kill): `client_disconnected` runs for each, as its
    /// sender. Returns how many were ended. The server runs this before it
    /// serves.
    pub fn end_stale_sessions(&self) -> Result<usize, CallError> {
        let sessions = self
            .open_sessions()
            .map_err(|Poisoned| CallError::Poisoned)?;
        for (module, connection_id, identity) in &sessions {
            self.disconnect(module, *connection_id, &Caller::identity(*identity))?;
        }
        Ok(sessions.len())
    }

    /// Runs one transaction of [`call::execute`].
    fn run(&self, call: CallArgs<'_>) -> Result<CallOutcome, CallError> {
        // Uncontended: run the call here. Contended: queue it for whoever
        // holds the database (that thread runs every queued call before it
        // lets go) and sleep until the log says the record is durable.
        let calls = self.calls();
        match self.state.try_hold(&calls) {
            Ok(Some(held)) => self.call_here(held, call),
            Ok(None) => self.call_queued(&calls, call),
            Err(Poisoned) => Err(CallError::Poisoned),
        }
    }

    /// The uncontended path of [`Database::call_encoded`].
    fn call_here(
        &self,
        mut held: HeldCatalog<'_>,
        call: CallArgs<'_>,
    ) -> Result<CallOutcome, CallError> {
        // Writing its own record is worth it only to a caller with nobody
        // waiting behind it: queued calls are better served by one group
        // commit than by a sync of their own after this one.
        let alone = held.alone();
        let executed = call::execute(&mut held, &self.code, &self.pipeline, call, alone);
        // Queued calls run, then the database is free for the next caller
        // while this one waits for its sync.
        drop(held);
        let (ctx, committed, pending) = executed?;
        pending.durable().map_err(CallError::Durability)?;
        Ok(CallOutcome::new(&ctx, committed))
    }

    /// The contended path of [`Database::call_encoded`].
    fn call_queued(&self, calls: &Calls<'_>, call: CallArgs<'_>) -> Result<CallOutcome, CallError> {
        let job = call.to_job();
        let (ctx, committed) = self.state.submit(calls, job)?;
        Ok(CallOutcome::new(&ctx, committed))
    }

    /// Hands every committed transaction, once durable, to `listener`, in
    /// commit order, from the next commit on. The listener runs on the
    /// committing thread and must not block.
    pub fn listen(&self, listener: Listener) -> Result<(), Poisoned> {
        // Registered with the database held: no transaction is half-way
        // between executing and joining the feed.
        self.read(|_| self.pipeline.feed.listen(listener))
    }

    /// Hands every log line a guest writes to `sink`, as the call ends
    /// (committed or not). The sink runs on the calling thread and must not
    /// block.
    pub fn add_log_sink(&self, sink: LogSink) {
        self.pipeline.feed.add_log_sink(sink);
    }

    /// Runs `join` (a subscriber joining a listener's channel) while no
    /// transaction is handed to the listeners: returns its result and the
    /// last transaction handed out before, so that the joined channel gets
    /// exactly the transactions after it.
    pub fn join_feed<T>(&self, join: impl FnOnce() -> T) -> (T, u64) {
        self.pipeline.feed.joined(join)
    }

    /// Every transaction up to this one has been handed to the listeners.
    pub fn released_tx(&self) -> u64 {
        self.pipeline.feed.released()
    }

    /// Rows of a table as JSON objects: all of them in primary-key order, or
    /// those whose indexed column holds a value, in pages.
    pub fn query(&self, module: &str, table: &str, query: &RowQuery) -> Result<Page, QueryError> {
        self.read(|c| query::page(c, module, table, query))?
    }

    /// Runs one SQL statement (docs/sql.md). A query (`SELECT`, `EXPLAIN
    /// SELECT`) answers from the state as of the newest transaction. An
    /// `INSERT`, `UPDATE` or `DELETE`, for the module's owner and the
    /// operator only, is one logged transaction, answered once durable with
    /// its tx id and the rows it changed. The state is held while the
    /// statement runs, so `budget` bounds how long every other caller waits.
    pub fn sql(
        &self,
        module: &str,
        text: &str,
        reader: Reader<'_>,
        budget: &interstice_sql::Budget,
    ) -> Result<SqlAnswer, QueryError> {
        let calls = self.calls();
        let mut held = self.state.hold(&calls)?;
        let ran = statement::run(&mut held, &self.pipeline, module, text, reader, budget);
        drop(held);
        let (answer, pending) = ran?;
        if let Some(pending) = pending {
            pending.durable().map_err(QueryError::Durability)?;
        }
        Ok(answer)
    }

    /// Subscribes to a SQL query (docs/sql.md "Subscriptions"): its answer
    /// now, as of one transaction, and from the next transaction on, what
    /// each one changes in it, in [`CommittedTx::queries`] under the
    /// returned `query_id` (the feed hands it out once durable). Subscribers
    /// to the same text with the same access share one live query; a new
    /// one is refused while `max_live` are followed. Each subscription must
    /// end with [`Database::unsubscribe_sql`].
    ///
    /// [`CommittedTx::queries`]: crate::feed::CommittedTx::queries
    pub fn subscribe_sql(
        &self,
        module: &str,
        text: &str,
        reader: Reader<'_>,
        budget: &interstice_sql::Budget,
        max_live: usize,
    ) -> Result<LiveStart, QueryError> {
        let mut started = self.subscribe_sql_all(module, &[text], reader, budget, max_live)?;
        started.pop().ok_or_else(|| {
            QueryError::Sql(interstice_sql::SqlError::Unsupported(
                "no query was started".into(),
            ))
        })
    }

    /// Subscribes to several SQL queries at once, as
    /// [`Database::subscribe_sql`] does to one: every answer is as of the
    /// same transaction. All are started or none (the first error, with
    /// its query's position in `texts`, is the answer).
    pub fn subscribe_sql_all(
        &self,
        module: &str,
        texts: &[&str],
        reader: Reader<'_>,
        budget: &interstice_sql::Budget,
        max_live: usize,
    ) -> Result<Vec<LiveStart>, QueryError> {
        let calls = self.calls();
        let mut held = self.state.hold(&calls)?;
        let catalog = &mut *held;
        let entry = catalog
            .modules
            .get(module)
            .ok_or_else(|| QueryError::UnknownModule(module.to_string()))?;
        let access = reader.access(&entry.def);
        let mut out: Vec<LiveStart> = Vec::with_capacity(texts.len());
        let mut failed = None;
        for (i, text) in texts.iter().enumerate() {
            if !catalog.live.follows(module, text, access) && catalog.live.counts().0 >= max_live {
                failed = Some((i, QueryError::TooManyLive(max_live)));
                break;
            }
            let tables = live::ModuleTables {
                def: &entry.def,
                tables: &entry.tables,
            };
            match catalog.live.subscribe(module, tables, text, access, budget) {
                Ok(started) => out.push(LiveStart {
                    query_id: started.query_id,
                    tx_id: catalog.clock.last_tx_id(),
                    table: started.table,
                    def: entry.def.clone(),
                    version: entry.version,
                    rows: started.rows,
                }),
                Err(e) => {
                    failed = Some((i, e.into()));
                    break;
                }
            }
        }
        match failed {
            None => Ok(out),
            Some((i, e)) => {
                for started in &out {
                    catalog.live.unsubscribe(module, started.query_id);
                }
                Err(match texts.len() {
                    1 => e,
                    _ => QueryError::InQuery {
                        index: i,
                        source: Box::new(e),
                    },
                })
            }
        }
    }

    /// Ends one subscription of [`Database::subscribe_sql`].
    pub fn unsubscribe_sql(&self, module: &str, query_id: u64) -> Result<(), Poisoned> {
        let calls = self.calls();
        let mut held = self.state.hold(&calls)?;
        held.live.unsubscribe(module, query_id);
        Ok(())
    }

    /// Live queries followed now, and their subscribers.
    pub fn live_queries(&self) -> Result<(usize, usize), Poisoned> {
        self.read(|c| c.live.counts())
    }

    /// A table's rows as JSON objects, in primary-key order.
    pub fn rows_json(
        &self,
        module: &str,
        table: &str,
    ) -> Result<Vec<serde_json::Value>, QueryError> {
        self.read(|c| query::rows_json(query::table_of(c, module, table)?.1))?
    }

    /// The row of `table` whose primary key is `key` (JSON of the key
    /// column's type), as a JSON object.
    pub fn get_json(
        &self,
        module: &str,
        table: &str,
        key: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>, QueryError> {
        self.read(|c| query::get_json(query::table_of(c, module, table)?.1, key))?
    }

    /// The row of `table` whose primary key is `key`, in the row encoding.
    pub fn get_row(
        &self,
        module: &str,
        table: &str,
        key: &Value,
    ) -> Result<Option<RowBytes>, QueryError> {
        self.read(|c| Ok(query::get_row(query::table_of(c, module, table)?.1, key)))?
    }

    /// Every module's every table: rows as JSON in primary-key order, and
    /// the next auto-increment value. Two databases with equal state give
    /// equal values.
    pub fn state_json(&self) -> Result<serde_json::Value, QueryError> {
        self.read(query::state_json)?
    }

    /// Takes a snapshot now, at the newest transaction (synced first), and
    /// applies retention. Reducers keep running meanwhile: the snapshot is
    /// built from the previous one and the log, not from the live tables.
    /// `None` when a snapshot at that transaction exists already.
    pub fn snapshot(&self) -> Result<Option<SnapshotInfo>, SnapshotError> {
        self.pipeline
            .log
            .sync()
            .map_err(SnapshotError::Durability)?;
        let upto = self.pipeline.log.acknowledged_tx();
        self.pipeline
            .trigger
            .build_now(&self.code.dir, &*self.code.storage, upto)
    }

    /// What the last automatic snapshot did, if one was taken since open.
    pub fn last_automatic_snapshot(&self) -> Option<Result<SnapshotInfo, String>> {
        self.pipeline.trigger.last()
    }

    /// Guest activity so far.
    pub fn counters(&self) -> CounterSnapshot {
        self.code.host.counters().snapshot()
    }
}

impl From<Poisoned> for QueryError {
    fn from(Poisoned: Poisoned) -> Self {
        QueryError::Poisoned
    }
}
