//! A reducer call as a transaction: resolve the reducer, run it in the next
//! transaction's context, and hand the result to the commit path.

use std::thread::Thread;

use interstice_store::{Mutation, ReducerKind};

use super::catalog::{Catalog, Code};
use super::combine::Executor;
use super::commit::{Change, Draft, Pending, Pipeline};
use crate::error::CallError;
use crate::sandbox::{CallContext, Committed, LogLine};

/// One call, as the combining queue carries it.
pub(crate) struct Job {
    pub module: String,
    pub reducer_id: u32,
    pub args: Vec<u8>,
    pub caller: String,
}

/// A call's arguments, borrowed.
#[derive(Clone, Copy)]
pub(crate) struct CallArgs<'a> {
    pub module: &'a str,
    pub reducer_id: u32,
    pub args: &'a [u8],
    pub caller: &'a str,
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
    let reducer = match entry.def.reducers.get(call.reducer_id as usize) {
        Some(r) if r.kind == ReducerKind::Normal => r.name.as_str(),
        Some(r) => return Err(CallError::InitNotCallable(r.name.clone())),
        None => {
            return Err(CallError::UnknownReducer {
                module: call.module.to_string(),
                reducer: format!("#{}", call.reducer_id),
            });
        }
    };
    let runner = code.runner(call.module, &mut entry.runner, entry.version, &entry.def)?;
    let ctx = catalog.clock.next(call.caller);
    let committed = match runner.call(&mut entry.tables, &ctx, call.reducer_id, call.args) {
        Ok(committed) => committed,
        Err(e) => {
            let lines = runner.take_failed_log();
            pipeline
                .feed
                .log_lines(call.module, reducer, ctx.tx_id, false, &lines);
            return Err(e);
        }
    };
    pipeline
        .feed
        .log_lines(call.module, reducer, ctx.tx_id, true, &committed.log);
    let draft = Draft {
        ctx: &ctx,
        module: call.module,
        change: Change::Call { args: call.args },
        reducer,
        mutations: &committed.mutations,
        def: Some(&entry.def),
    };
    let pending = pipeline
        .commit(&mut catalog.clock, draft, direct)
        .map_err(CallError::Durability)?;
    Ok((ctx, committed, pending))
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
    pub timestamp_micros: i64,
    pub mutations: Vec<Mutation>,
    pub log: Vec<LogLine>,
    pub fuel_consumed: u64,
}

impl CallOutcome {
    pub(crate) fn new(ctx: &CallContext, committed: Committed) -> CallOutcome {
        CallOutcome {
            tx_id: ctx.tx_id,
            timestamp_micros: ctx.timestamp_micros,
            mutations: committed.mutations,
            log: committed.log,
            fuel_consumed: committed.fuel_consumed,
        }
    }
}
