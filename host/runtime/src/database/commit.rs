//! The one commit path. Every transaction, whatever made it (a call, a
//! queued call, a publication, an upgrade, a deletion), goes through
//! [`Pipeline::writable`] and [`Pipeline::commit`] with the database held, and
//! through [`Pending::durable`] after letting go:
//!
//! ```text
//! writable: log poisoned? → refuse; then the clock gives the context
//!           (the caller runs its reducer, if any, in that context)
//! commit:   draft → record → append (or reserve a direct write) → clock
//!           advances → snapshot trigger counts the appended record → feed
//! durable:  wait for the record's sync (or write and sync it here) →
//!           release it to the feed's listeners → the caller is answered
//! ```

use std::sync::Arc;

use interstice_log::{AppendError, Direct, Log, RecordKind, TxHeader};
use interstice_store::{ModuleDef, Mutation};

use super::clock::Clock;
use crate::feed::{CommittedTx, Feed, QueryDelta, TxEvent};
use crate::record::{definition_document, encode_tx};
use crate::sandbox::CallContext;
use crate::snapshots::Trigger;

/// What a transaction is, beyond its mutations.
pub(crate) enum Change<'a> {
    /// A reducer call with its encoded arguments.
    Call { args: &'a [u8] },
    /// A first publication (`first`) or a new version of a module, whose
    /// definition is the draft's `def`; `clear` dropped the old data.
    Publish {
        first: bool,
        version: u32,
        clear: bool,
    },
    /// The module and its data are deleted.
    Drop,
    /// A SQL statement changed rows; its text is the record's arguments.
    Sql { text: &'a str },
}

/// A transaction ready to commit: everything its record and the feed need.
pub(crate) struct Draft<'a> {
    pub ctx: &'a CallContext,
    pub module: &'a str,
    pub change: Change<'a>,
    /// The reducer that ran; empty when none did.
    pub reducer: &'a str,
    pub mutations: &'a [Mutation],
    /// The module's definition after the transaction (none once deleted).
    pub def: Option<&'a Arc<ModuleDef>>,
    /// What it changed in the module's live queries.
    pub queries: Vec<QueryDelta>,
}

impl Draft<'_> {
    fn kind(&self) -> RecordKind {
        match self.change {
            Change::Call { .. } => RecordKind::Call,
            Change::Publish { first: true, .. } => RecordKind::Publish,
            Change::Publish { first: false, .. } => RecordKind::Upgrade,
            Change::Drop => RecordKind::Drop,
            Change::Sql { .. } => RecordKind::Sql,
        }
    }

    /// The record's payload (docs/log-format.md).
    fn payload(&self) -> Vec<u8> {
        let kind = self.kind();
        let definition = match (&self.change, self.def) {
            (Change::Publish { version, clear, .. }, Some(def)) => {
                Some(definition_document(kind, def, *version, *clear))
            }
            _ => None,
        };
        let args = match self.change {
            Change::Call { args } => args,
            Change::Sql { text } => text.as_bytes(),
            _ => &[],
        };
        let caller = self.ctx.caller.identity.to_string();
        let header = TxHeader {
            kind,
            timestamp_micros: self.ctx.timestamp_micros,
            module: self.module,
            definition: definition.as_deref(),
            reducer: self.reducer,
            caller: &caller,
            args,
        };
        encode_tx(&header, self.mutations)
    }

    /// The transaction as the feed hands it to listeners.
    fn for_feed(self) -> CommittedTx {
        let event = match self.change {
            Change::Call { .. } => TxEvent::Call {
                reducer: self.reducer.to_string(),
                caller: self.ctx.caller.identity,
            },
            Change::Publish { version, clear, .. } => TxEvent::Publish { version, clear },
            Change::Drop => TxEvent::Drop,
            Change::Sql { .. } => TxEvent::Sql {
                caller: self.ctx.caller.identity,
            },
        };
        CommittedTx {
            tx_id: self.ctx.tx_id,
            timestamp_micros: self.ctx.timestamp_micros,
            module: self.module.to_string(),
            event,
            def: self.def.cloned(),
            mutations: self.mutations.to_vec(),
            queries: self.queries,
        }
    }
}

/// The durable tail of every transaction: the log, the change feed and the
/// snapshot trigger.
pub(crate) struct Pipeline {
    pub log: Log,
    pub feed: Feed,
    pub trigger: Trigger,
}

/// A committed transaction whose record may not be durable yet. It must be
/// made [`durable`](Pending::durable) before its caller is answered.
#[must_use = "a transaction is answered only once durable"]
pub(crate) struct Pending<'l> {
    pipeline: &'l Pipeline,
    tx_id: u64,
    /// The reservation and payload of a record this thread writes itself.
    direct: Option<(Direct<'l>, Vec<u8>)>,
}

impl Pending<'_> {
    #[cfg(test)]
    pub fn tx_id(&self) -> u64 {
        self.tx_id
    }

    /// Waits until the record is durable (or writes and syncs it here, for a
    /// direct write), then releases the transaction to the feed. Called
    /// after letting go of the database.
    pub fn durable(self) -> Result<u64, AppendError> {
        let pipeline = self.pipeline;
        match self.direct {
            Some((direct, payload)) => {
                let bytes = payload.len();
                direct.commit(payload)?;
                pipeline.count(bytes);
                pipeline.feed.release(self.tx_id);
            }
            None => pipeline.durable(self.tx_id)?,
        }
        Ok(self.tx_id)
    }

    /// The transaction id, for a caller that waits for durability later
    /// (and elsewhere) with [`Pipeline::durable`]. Only a record the log
    /// writer syncs (not a direct write) can be waited for so.
    pub fn detach(self) -> u64 {
        debug_assert!(self.direct.is_none(), "a direct write must be made here");
        self.tx_id
    }
}

impl Pipeline {
    /// Refuses work up front when the log refuses writes: checked before a
    /// reducer runs, so no work is done for a transaction that cannot
    /// commit. The transaction's context then comes from the clock.
    pub fn writable(&self) -> Result<(), AppendError> {
        match self.log.poisoned() {
            Some(p) => Err(AppendError::Poisoned(p)),
            None => Ok(()),
        }
    }

    /// Commits `draft` as the next transaction, with the database held:
    /// its record is appended in tx order (or, with `direct` and when the
    /// log allows, reserved for this thread to write once it has let go),
    /// the clock moves past it, and the feed queues it. On error nothing
    /// advanced and the transaction must be taken as never committed.
    pub fn commit<'l>(
        &'l self,
        clock: &mut Clock,
        draft: Draft<'_>,
        direct: bool,
    ) -> Result<Pending<'l>, AppendError> {
        let tx_id = draft.ctx.tx_id;
        assert_eq!(
            tx_id,
            clock.next_tx_id(),
            "a draft commits as the next transaction"
        );
        let payload = draft.payload();
        let reserved = match direct {
            true => self.log.reserve_direct(tx_id),
            false => None,
        };
        let direct = match reserved {
            Some(reservation) => Some((reservation, payload)),
            None => {
                let bytes = payload.len();
                self.log.append(tx_id, payload)?;
                self.count(bytes);
                None
            }
        };
        clock.committed(draft.ctx);
        if self.feed.active() {
            self.feed.committed(draft.for_feed());
        }
        Ok(Pending {
            pipeline: self,
            tx_id,
            direct,
        })
    }

    /// Waits until transaction `tx_id`, committed and
    /// [detached](Pending::detach), is durable, then releases it to the
    /// feed: the other half of [`Pending::durable`].
    pub fn durable(&self, tx_id: u64) -> Result<(), AppendError> {
        self.log.wait(tx_id)?;
        self.feed.release(tx_id);
        Ok(())
    }

    /// Whether a transaction the holder committed for a queued caller may
    /// be answered: `None` while its record waits for the writer. Once it is
    /// durable, it is released to the feed.
    pub fn answerable(&self, tx_id: u64) -> Option<Result<(), AppendError>> {
        let status = self.log.status(tx_id)?;
        if status.is_ok() {
            self.feed.release(tx_id);
        }
        Some(status)
    }

    /// The snapshot trigger counts a record once it is in the log.
    fn count(&self, payload_bytes: usize) {
        self.trigger
            .appended(payload_bytes, || self.log.acknowledged_tx());
    }
}

#[cfg(test)]
mod tests {
    //! The commit path and group commit on a real log over the in-memory
    //! fault-injecting file system, with no guest: drafts stand for calls.

    use super::*;
    use crate::config::SnapshotConfig;
    use crate::database::combine::{Combiner, Executor};
    use interstice_fs::fault::{EIO, Fault, FaultFs, Op};
    use interstice_log::{LogConfig, SyncPolicy, TxRecord};
    use interstice_store::MutationOp;
    use std::path::Path;
    use std::sync::Mutex;
    use std::thread::Thread;

    const DATA: &str = "/data";

    fn pipeline(fs: &FaultFs, every_tx: u64) -> Pipeline {
        let storage: Arc<dyn interstice_fs::Storage> = Arc::new(fs.clone());
        let dir = Path::new(DATA);
        let config = LogConfig {
            sync: SyncPolicy::Always,
            segment_bytes_max: 64 << 10,
            ..LogConfig::default()
        };
        let (log, _) = Log::open(
            storage.clone(),
            &dir.join("log"),
            config,
            1,
            &mut |_| Ok(()),
        )
        .expect("open the log");
        let snapshots = SnapshotConfig {
            every_tx,
            every_log_bytes: 0,
            keep: 1,
            archive_dir: None,
        };
        Pipeline {
            log,
            feed: Feed::new(0),
            trigger: Trigger::start(dir, snapshots, storage).expect("trigger"),
        }
    }

    fn row(caller: usize, i: usize) -> Mutation {
        Mutation {
            table: 0,
            op: MutationOp::Insert,
            row: format!("{caller}:{i}").into_bytes().into(),
        }
    }

    /// Commits one "call" writing `mutation`, as the database does.
    fn commit_one<'l>(
        pipeline: &'l Pipeline,
        clock: &mut Clock,
        mutation: &Mutation,
        direct: bool,
    ) -> Result<Pending<'l>, AppendError> {
        pipeline.writable()?;
        let ctx = clock.next(
            &crate::caller::Caller::operator(),
            interstice_store::Identity::operator(),
            "m",
        );
        let draft = Draft {
            ctx: &ctx,
            module: "m",
            change: Change::Call { args: &[] },
            reducer: "r",
            mutations: std::slice::from_ref(mutation),
            def: None,
            queries: Vec::new(),
        };
        pipeline.commit(clock, draft, direct)
    }

    struct Commits<'a> {
        pipeline: &'a Pipeline,
    }

    impl Executor<Clock> for Commits<'_> {
        type Job = Mutation;
        type Done = Result<u64, AppendError>;

        fn execute(&self, clock: &mut Clock, job: Mutation) -> Self::Done {
            commit_one(self.pipeline, clock, &job, false).map(|p| p.tx_id())
        }

        fn hand_over(&self, done: &Self::Done, waiter: Thread) {
            match done {
                Ok(tx) => self.pipeline.log.notify(*tx, waiter),
                Err(_) => waiter.unpark(),
            }
        }

        fn ready(&self, done: &mut Self::Done) -> bool {
            let Ok(tx) = *done else {
                return true;
            };
            match self.pipeline.answerable(tx) {
                None => false,
                Some(Ok(())) => true,
                Some(Err(e)) => {
                    *done = Err(e);
                    true
                }
            }
        }

        fn poisoned(&self) -> Self::Done {
            Err(AppendError::Closed)
        }
    }

    #[test]
    fn group_commit_answers_every_call_once_durable_and_shares_syncs() {
        const THREADS: usize = 8;
        const CALLS: usize = 250;
        let fs = FaultFs::new();
        let pipeline = pipeline(&fs, 0);
        let combiner: Combiner<Clock, Mutation, Result<u64, AppendError>> =
            Combiner::new(Clock::new(1, 0, None));
        let exec = Commits {
            pipeline: &pipeline,
        };
        let answered = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (exec, combiner, pipeline, answered) = (&exec, &combiner, &pipeline, &answered);
                s.spawn(move || {
                    for i in 0..CALLS {
                        let tx = match combiner.try_hold(exec).expect("not poisoned") {
                            // Uncontended: commit here, writing its own
                            // record when nobody waits behind it.
                            Some(mut held) => {
                                let alone = held.alone();
                                let pending = commit_one(pipeline, &mut held, &row(t, i), alone)
                                    .expect("commit");
                                drop(held);
                                pending.durable().expect("durable")
                            }
                            None => combiner.submit(exec, row(t, i)).expect("durable"),
                        };
                        // Answered only once on stable storage.
                        assert!(
                            pipeline.log.acknowledged_tx() >= tx,
                            "tx {tx} answered early"
                        );
                        answered.lock().expect("answers").push((tx, t, i));
                    }
                });
            }
        });
        let total = (THREADS * CALLS) as u64;
        let stats = pipeline.log.stats();
        assert_eq!(stats.records, total);
        assert!(
            stats.syncs < total,
            "{} syncs for {total} records: group commit shares none",
            stats.syncs
        );
        // Power loss now: every answered call must be in what survives, with
        // the row its caller wrote, in tx order.
        let crashed = fs.crash(0);
        let mut answered = answered.into_inner().expect("answers");
        answered.sort();
        let mut recovered = Vec::new();
        let (_log, _) = Log::open(
            Arc::new(crashed),
            &Path::new(DATA).join("log"),
            LogConfig::default(),
            1,
            &mut |rec| {
                let tx = TxRecord::decode(rec.payload).map_err(|e| e.to_string())?;
                recovered.push((rec.tx_id, tx.mutations[0].row.to_vec()));
                Ok(())
            },
        )
        .expect("reopen after power loss");
        assert_eq!(recovered.len(), answered.len());
        for ((tx, t, i), (got_tx, got_row)) in answered.iter().zip(&recovered) {
            assert_eq!(tx, got_tx);
            assert_eq!(got_row, format!("{t}:{i}").as_bytes());
        }
    }

    #[test]
    fn the_snapshot_trigger_counts_a_record_only_once_appended() {
        let fs = FaultFs::new();
        let pipeline = pipeline(&fs, 1_000);
        let mut clock = Clock::new(1, 0, None);
        let first = commit_one(&pipeline, &mut clock, &row(0, 0), false).expect("commit");
        pipeline.log.sync().expect("sync");
        first.durable().expect("durable");
        assert_eq!(pipeline.trigger.counted().0, 1);
        // The next sync fails: the log is poisoned, and the record after it
        // is refused at append. Whoever committed past the check must not
        // have it counted.
        fs.inject(Fault::error(Op::Sync, EIO));
        let second = commit_one(&pipeline, &mut clock, &row(0, 1), false).expect("appended");
        assert!(second.durable().is_err());
        let ctx = clock.next(
            &crate::caller::Caller::operator(),
            interstice_store::Identity::operator(),
            "m",
        );
        let mutation = row(0, 2);
        let draft = Draft {
            ctx: &ctx,
            module: "m",
            change: Change::Call { args: &[] },
            reducer: "r",
            mutations: std::slice::from_ref(&mutation),
            def: None,
            queries: Vec::new(),
        };
        assert!(matches!(
            pipeline.commit(&mut clock, draft, false),
            Err(AppendError::Poisoned(_))
        ));
        assert_eq!(
            pipeline.trigger.counted().0,
            2,
            "the refused record was counted"
        );
        assert_eq!(clock.next_tx_id(), 3, "a refused record takes no tx id");
        assert!(pipeline.writable().is_err());
    }
}
