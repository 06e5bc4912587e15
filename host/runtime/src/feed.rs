//! The change feed: every committed transaction, handed to listeners in
//! commit order and only once it is durable.
//!
//! A transaction joins the feed while the database is held, so the feed's
//! order is the commit order. It leaves the feed (to every listener) when
//! the caller that ran it learns it is durable: that caller releases every
//! transaction up to its own, in order. The log makes transactions durable
//! as a prefix (a sync covers every earlier record), so a released
//! transaction never follows one that could still be lost.
//!
//! Listeners run on the releasing thread while the feed is locked: they must
//! not block (the server's listener pushes into a bounded channel and drops
//! slow consumers instead of waiting for them).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use interstice_store::{ModuleDef, Mutation};

use crate::sandbox::LogLine;

/// What a committed transaction was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxEvent {
    /// A reducer call.
    Call {
        reducer: String,
        caller: interstice_store::Identity,
    },
    /// A first publication or a new version; `clear` dropped the old data.
    Publish { version: u32, clear: bool },
    /// The module and its data were deleted.
    Drop,
    /// An `INSERT`, `UPDATE` or `DELETE` by the module's owner or the
    /// operator.
    Sql { caller: interstice_store::Identity },
}

/// One committed transaction as the feed hands it out.
#[derive(Debug)]
pub struct CommittedTx {
    pub tx_id: u64,
    pub timestamp_micros: i64,
    pub module: String,
    pub event: TxEvent,
    /// The module's definition after the transaction (none once deleted):
    /// the schema its mutations' rows are encoded in.
    pub def: Option<Arc<ModuleDef>>,
    pub mutations: Vec<Mutation>,
    /// What the transaction changed in the answers of the module's live
    /// queries (`Database::subscribe_sql`), one entry per query it changed.
    pub queries: Vec<QueryDelta>,
}

/// The changes one transaction made to a live query's answer, or why the
/// query can no longer be followed (it has ended).
#[derive(Debug)]
pub struct QueryDelta {
    pub query_id: u64,
    pub changes: Result<Vec<interstice_sql::Delta>, String>,
}

/// A guest's log line, with the call that wrote it.
#[derive(Clone, Debug)]
pub struct ModuleLogLine {
    pub module: String,
    pub reducer: String,
    /// The transaction the call ran as; it committed only if `committed`.
    pub tx_id: u64,
    pub committed: bool,
    pub line: LogLine,
}

pub type Listener = Box<dyn Fn(&Arc<CommittedTx>) + Send + Sync>;
pub type LogSink = Box<dyn Fn(&ModuleLogLine) + Send + Sync>;

#[derive(Default)]
struct State {
    /// Committed, not yet released, in commit order.
    pending: VecDeque<Arc<CommittedTx>>,
    listeners: Vec<Listener>,
}

#[derive(Default)]
pub(crate) struct Feed {
    state: Mutex<State>,
    /// Whether anyone listens: without listeners nothing is queued.
    active: AtomicBool,
    /// Every transaction up to this one has been released.
    released: AtomicU64,
    log_sinks: Mutex<Vec<LogSink>>,
    logging: AtomicBool,
}

impl Feed {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn new(last_tx_id: u64) -> Feed {
        Feed {
            released: AtomicU64::new(last_tx_id),
            ..Feed::default()
        }
    }

    /// Whether committed transactions need to be built for the feed.
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    pub fn listen(&self, listener: Listener) {
        let mut st = self.lock();
        st.listeners.push(listener);
        self.active.store(true, Ordering::Release);
    }

    /// Queues a committed transaction. Called with the database held, in
    /// commit order.
    pub fn committed(&self, tx: CommittedTx) {
        self.lock().pending.push_back(Arc::new(tx));
    }

    /// Hands every queued transaction up to `tx_id` to the listeners, in
    /// order. Called once `tx_id` is durable.
    pub fn release(&self, tx_id: u64) {
        if self.released.load(Ordering::Acquire) >= tx_id {
            return;
        }
        if !self.active() {
            // Nothing is queued without listeners. A listener registered
            // since this transaction committed only queues later ones.
            self.released.fetch_max(tx_id, Ordering::AcqRel);
            return;
        }
        let mut st = self.lock();
        while st.pending.front().is_some_and(|t| t.tx_id <= tx_id) {
            let Some(tx) = st.pending.pop_front() else {
                break;
            };
            for listener in &st.listeners {
                listener(&tx);
            }
        }
        self.released.fetch_max(tx_id, Ordering::AcqRel);
    }

    /// Runs `join` (a listener's subscriber joining its channel) while no
    /// transaction can be released, and returns what it returned with the
    /// last transaction released before: every later one reaches the
    /// joined channel, and no earlier one does.
    pub fn joined<T>(&self, join: impl FnOnce() -> T) -> (T, u64) {
        let _st = self.lock();
        let joined = join();
        (joined, self.released())
    }

    /// Every transaction up to this one has been released.
    pub fn released(&self) -> u64 {
        self.released.load(Ordering::Acquire)
    }

    pub fn add_log_sink(&self, sink: LogSink) {
        self.log_sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sink);
        self.logging.store(true, Ordering::Release);
    }

    /// Hands a call's log lines to the sinks, if there are any.
    pub fn log_lines(
        &self,
        module: &str,
        reducer: &str,
        tx_id: u64,
        committed: bool,
        lines: &[LogLine],
    ) {
        if lines.is_empty() || !self.logging.load(Ordering::Acquire) {
            return;
        }
        let sinks = self.log_sinks.lock().unwrap_or_else(|p| p.into_inner());
        for line in lines {
            let line = ModuleLogLine {
                module: module.to_string(),
                reducer: reducer.to_string(),
                tx_id,
                committed,
                line: line.clone(),
            };
            for sink in sinks.iter() {
                sink(&line);
            }
        }
    }
}
