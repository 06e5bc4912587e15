//! A reducer call as a transaction: resolve the reducer, run it in the next
//! transaction's context, and hand the result to the commit path.

use std::thread::Thread;

use interstice_store::{ModuleDef, Mutation, ReducerKind, Tables, TxLog, Value, codec};

use super::catalog::{Catalog, Code};
use super::combine::Executor;
use super::commit::{Change, Draft, Pending, Pipeline};
use super::live::ModuleTables;
use super::schedule;
use crate::caller::Caller;
use crate::error::CallError;
use crate::sandbox::{CallContext, Committed, LogLine};

/// What a transaction of [`execute`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// A client's call of reducer `reducer_id` (a normal one).
    Reducer,
    /// A session opens: a row in `st_client`, then `client_connected`.
    Connect,
    /// Session `connection_id` ends: `client_disconnected`, then its row
    /// leaves `st_client`.
    Disconnect { connection_id: u64 },
    /// Session `connection_id` ends without a reducer: what is left when
    /// `client_disconnected` failed.
    Forget { connection_id: u64 },
    /// The schedule row whose `st_schedule` key is the call's arguments,
    /// due at `due_at`, runs its reducer (`schedule.rs`).
    Scheduled { due_at: i64 },
}

/// One call, as the combining queue carries it.
pub(crate) struct Job {
    pub module: String,
    pub kind: CallKind,
    pub reducer_id: u32,
    pub args: Vec<u8>,
    pub caller: Caller,
}

/// A call's arguments, borrowed.
#[derive(Clone, Copy)]
pub(crate) struct CallArgs<'a> {
    pub module: &'a str,
    pub kind: CallKind,
    pub reducer_id: u32,
    pub args: &'a [u8],
    pub caller: &'a Caller,
}

impl CallArgs<'_> {
    pub fn to_job(self) -> Job {
        Job {
            module: self.module.to_string(),
            kind: self.kind,
            reducer_id: self.reducer_id,
            args: self.args.to_vec(),
            caller: self.caller.clone(),
        }
    }
}

/// What a queued call produced: its transaction, answerable once the log
/// says it is durable (or why it is not).
pub(crate) type Done = Result<(CallContext, Committed), CallError>;

/// Runs one call as the next transaction on the held catalog and commits
/// it; the caller makes it durable after letting go.
pub(crate) fn execute<'l>(
    catalog: &mut Catalog,
    code: &Code,
    pipeline: &'l Pipeline,
    call: CallArgs<'_>,
    direct: bool,
) -> Result<(CallContext, Committed, Pending<'l>), CallError> {
    pipeline.writable().map_err(CallError::Durability)?;
    let entry = catalog
        .modules
        .get_mut(call.module)
        .ok_or_else(|| CallError::UnknownModule(call.module.to_string()))?;
    let reducer = match call.kind {
        CallKind::Reducer => match entry.def.reducers.get(call.reducer_id as usize) {
            Some(r) if r.kind.callable() => Some(call.reducer_id),
            Some(r) => return Err(CallError::InitNotCallable(r.name.clone())),
            None => {
                return Err(CallError::UnknownReducer {
                    module: call.module.to_string(),
                    reducer: format!("#{}", call.reducer_id),
                });
            }
        },
        CallKind::Connect => entry.def.reducer_of(ReducerKind::ClientConnected),
        CallKind::Disconnect { .. } => entry.def.reducer_of(ReducerKind::ClientDisconnected),
        CallKind::Forget { .. } => None,
        CallKind::Scheduled { .. } => None,
    };
    // The host's own changes (`st_client`, stale `st_schedule` entries), in
    // a transaction of its own that commits or rolls back with the
    // reducer's.
    let mut session = TxLog::new();
    let (reducer, args, fired, due_at) = match call.kind {
        CallKind::Scheduled { due_at } => {
            match scheduled_run(
                &entry.def,
                &mut entry.tables,
                &mut session,
                call.args,
                due_at,
            )? {
                Some((reducer, row, fired)) => (Some(reducer), row, Some(fired), due_at),
                None => (None, Vec::new(), None, due_at),
            }
        }
        _ => (reducer, call.args.to_vec(), None, i64::MIN),
    };
    let name = reducer.map_or("", |id| entry.def.reducers[id as usize].name.as_str());
    let mut ctx =
        catalog
            .clock
            .next_not_before(call.caller, entry.def.owner(), call.module, due_at);
    if matches!(
        call.kind,
        CallKind::Connect | CallKind::Disconnect { .. } | CallKind::Forget { .. }
    ) {
        ctx.connection_id = Some(session_change(
            &mut entry.tables,
            &mut session,
            &entry.def,
            &ctx,
            call.kind,
        )?);
    }
    let def = entry.def.clone();
    let now = ctx.timestamp_micros;
    // After the reducer, in its transaction: the schedule rows it changed,
    // then the end of the scheduled run.
    let mut then = |tables: &mut Tables, tx: &mut TxLog| {
        schedule::track(&def, tables, tx, 0, now)?;
        match &fired {
            Some((e, table)) => schedule::finish_run(&def, tables, tx, e, *table, now),
            None => Ok(()),
        }
    };
    let ran = match reducer {
        None => Ok(Committed::default()),
        Some(id) => match code.runner(call.module, &mut entry.runner, entry.version, &entry.def) {
            // The session's change is rolled back below, like the reducer's.
            Err(e) => Err(e),
            Ok(runner) => runner
                .call_then(&mut entry.tables, &ctx, id, &args, &mut then)
                .inspect_err(|_| {
                    let lines = runner.take_failed_log();
                    pipeline
                        .feed
                        .log_lines(call.module, name, ctx.tx_id, false, &lines);
                }),
        },
    };
    let mut committed = match ran {
        Ok(committed) => committed,
        Err(e) => {
            entry.tables.rollback(&mut session);
            return Err(e);
        }
    };
    let mut mutations = entry.tables.commit(&mut session);
    if !mutations.is_empty() {
        mutations.append(&mut committed.mutations);
        committed.mutations = mutations;
    }
    pipeline
        .feed
        .log_lines(call.module, name, ctx.tx_id, true, &committed.log);
    let tables = ModuleTables {
        def: &entry.def,
        tables: &entry.tables,
    };
    let queries = catalog
        .live
        .evaluate(call.module, tables, &committed.mutations);
    let draft = Draft {
        ctx: &ctx,
        module: call.module,
        change: Change::Call { args: &args },
        reducer: name,
        mutations: &committed.mutations,
        def: Some(&entry.def),
        queries,
    };
    let pending = pipeline
        .commit(&mut catalog.clock, draft, direct)
        .map_err(CallError::Durability)?;
    if def.has_schedules() {
        catalog.scheduler.wake();
    }
    Ok((ctx, committed, pending))
}

/// Records a session opening (a new `st_client` row; its connection id is
/// the auto-increment value) or closing (its row removed). Returns the
/// connection id.
fn session_change(
    tables: &mut Tables,
    tx: &mut TxLog,
    def: &interstice_store::ModuleDef,
    ctx: &CallContext,
    kind: CallKind,
) -> Result<u64, CallError> {
    let no_sessions = || CallError::NoSessions;
    let table = def.sessions_table_id().ok_or_else(no_sessions)?;
    let host = |e: interstice_store::DbError| CallError::Session(e.to_string());
    match kind {
        CallKind::Connect => {
            let types = tables.table(table).map_err(host)?.def().column_types();
            let row = codec::encode_row(
                &[
                    Value::U64(0),
                    Value::Identity(Box::new(*ctx.caller.identity.as_bytes())),
                    Value::Timestamp(ctx.timestamp_micros),
                ],
                &types,
            );
            let stored = tables.insert(tx, table, &row).map_err(host)?;
            match codec::decode_row(&stored, &types).as_deref() {
                Ok([Value::U64(id), ..]) => Ok(*id),
                _ => Err(CallError::Session(
                    "an st_client row does not decode".into(),
                )),
            }
        }
        CallKind::Disconnect { connection_id } | CallKind::Forget { connection_id } => {
            let key = connection_id.to_le_bytes();
            if tables.delete(tx, table, &key).map_err(host)? {
                Ok(connection_id)
            } else {
                Err(CallError::NoSuchSession(connection_id))
            }
        }
        CallKind::Reducer | CallKind::Scheduled { .. } => {
            unreachable!("only lifecycle transactions change sessions")
        }
    }
}

/// A scheduled run: the reducer, the row (its argument), and the entry
/// with the id of the row's table.
type ScheduledRun = (u32, Vec<u8>, (schedule::Entry, u32));

/// What a scheduled run of the entry `key` (due at `due_at`) runs: its
/// reducer, the row as its argument, and the entry with the row's table.
/// `None` when the entry points at a row or table that is gone: the entry
/// is removed in `tx` and nothing runs. An entry changed or removed since
/// it was chosen is not due: [`CallError::NotDue`].
fn scheduled_run(
    def: &ModuleDef,
    tables: &mut Tables,
    tx: &mut TxLog,
    key: &[u8],
    due_at: i64,
) -> Result<Option<ScheduledRun>, CallError> {
    let key = String::from_utf8_lossy(key).into_owned();
    let not_due = || CallError::NotDue(key.clone());
    let e = schedule::entry(def, tables, &key)?
        .filter(|e| e.next_at == due_at)
        .ok_or_else(not_due)?;
    let table = def
        .table_id(&e.table)
        .filter(|&t| (t as usize) < def.guest_table_count());
    let reducer = table
        .and_then(|t| def.tables[t as usize].scheduled.as_deref())
        .and_then(|r| def.reducer_id(r));
    let row = match table {
        Some(t) => tables
            .get(t, &e.scheduled_id.to_le_bytes())
            .map_err(|e| CallError::Schedule(e.to_string()))?,
        None => None,
    };
    match (table, reducer, row) {
        (Some(t), Some(reducer), Some(row)) => Ok(Some((reducer, row.to_vec(), (e, t)))),
        _ => {
            schedule::remove(def, tables, tx, &e.key)?;
            Ok(None)
        }
    }
}

/// Runs queued calls for the combining queue.
pub(crate) struct Calls<'a> {
    pub code: &'a Code,
    pub pipeline: &'a Pipeline,
}

impl Executor<Catalog> for Calls<'_> {
    type Job = Job;
    type Done = Done;

    fn execute(&self, catalog: &mut Catalog, job: Job) -> Done {
        let call = CallArgs {
            module: &job.module,
            kind: job.kind,
            reducer_id: job.reducer_id,
            args: &job.args,
            caller: &job.caller,
        };
        // A queued call is better served by the next group commit than by a
        // sync of its own: never a direct write.
        execute(catalog, self.code, self.pipeline, call, false)
            .map(|(ctx, committed, _pending)| (ctx, committed))
    }

    fn hand_over(&self, done: &Done, waiter: Thread) {
        match done {
            Ok((ctx, _)) => self.pipeline.log.notify(ctx.tx_id, waiter),
            Err(_) => waiter.unpark(),
        }
    }

    fn ready(&self, done: &mut Done) -> bool {
        let Ok((ctx, _)) = done else {
            return true;
        };
        match self.pipeline.answerable(ctx.tx_id) {
            None => false,
            Some(Ok(())) => true,
            Some(Err(e)) => {
                *done = Err(CallError::Durability(e));
                true
            }
        }
    }

    fn poisoned(&self) -> Done {
        Err(CallError::Poisoned)
    }
}

/// A committed, durable reducer call.
#[derive(Debug)]
pub struct CallOutcome {
    pub tx_id: u64,
    /// The session a lifecycle transaction opened or closed.
    pub connection_id: Option<u64>,
    pub timestamp_micros: i64,
    pub mutations: Vec<Mutation>,
    pub log: Vec<LogLine>,
    pub fuel_consumed: u64,
}

impl CallOutcome {
    pub(crate) fn new(ctx: &CallContext, committed: Committed) -> CallOutcome {
        CallOutcome {
            tx_id: ctx.tx_id,
            connection_id: ctx.connection_id,
            timestamp_micros: ctx.timestamp_micros,
            mutations: committed.mutations,
            log: committed.log,
            fuel_consumed: committed.fuel_consumed,
        }
    }
}
