//! The server's call queue: every reducer call from HTTP runs on one
//! executor thread, and is answered, as a future, once its record is
//! durable.
//!
//! ```text
//! handler ──try_send──▶ executor thread ──committed──▶ durability thread
//!   ▲  (admitted: a permit)   runs every job queued              waits once for the
//!   │                         meanwhile, in one hold             newest record, then
//!   └──────────── oneshot: outcomes, only once durable ◀──────── answers each job
//! ```
//!
//! A call takes no thread of its own: whatever arrived while the previous
//! batch ran goes in the next batch, so under load one hold of the
//! database runs dozens of calls and one fsync covers them (group commit),
//! with no timer and no call waiting for others to come. The number of
//! calls admitted and not yet answered is bounded (`calls_queued_max`):
//! past it a call is refused at once with 503 and `Retry-After`, so memory
//! never grows with the load.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;

use interstice_runtime::{
    BeginCall, CallError, CallInput, CallOutcome, Caller, Committing, Database,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::error::ApiError;
use crate::protocol::Args;

/// Calls run in one hold of the database, at most: a bound on how long a
/// read or a schedule round waits behind a batch.
pub(crate) const BATCH_MAX: usize = 64;

/// One call to queue.
pub(crate) struct Call {
    pub module: String,
    pub reducer: String,
    pub args: Args,
    pub caller: Caller,
}

/// What a call came to: the version that ran it and its outcome, once
/// durable; or why not, and whether that is because its module is gone.
pub(crate) type Answer = Result<(u32, CallOutcome), Failed>;

/// Why a call did not commit.
#[derive(Clone, Debug)]
pub(crate) struct Failed {
    pub error: ApiError,
    /// The module is not (or no longer) there.
    pub gone: bool,
}

impl From<CallError> for Failed {
    fn from(e: CallError) -> Failed {
        Failed {
            gone: matches!(e, CallError::UnknownModule(_)),
            error: ApiError::from(e),
        }
    }
}

/// Why a call was not queued.
#[derive(Debug)]
pub(crate) enum Refused {
    /// `calls_queued_max` calls are waiting already.
    Full,
    /// The server is stopping.
    Stopping,
}

/// Calls queued together: answered together, in order, once durable.
struct Job {
    calls: Vec<Call>,
    reply: oneshot::Sender<Vec<Answer>>,
    _admitted: Vec<OwnedSemaphorePermit>,
    _busy: Busy,
}

/// A batch the executor ran: its jobs, and each call's begun commit (or
/// why it did not commit), in order.
type Batch = (Vec<Job>, Vec<Result<Committing, Failed>>);

enum Message {
    Run(Job),
    Stop,
}

/// The sending side of the queue, shared by every handler.
pub(crate) struct Queue {
    db: Arc<Database>,
    jobs: mpsc::UnboundedSender<Message>,
    admitted: Arc<Semaphore>,
    /// Jobs queued or running, and calls running on a handler's thread.
    busy: Arc<AtomicUsize>,
}

/// Counts one job or call in [`Queue::busy`] while it lives.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(busy: &Arc<AtomicUsize>) -> Busy {
        busy.fetch_add(1, Ordering::AcqRel);
        Busy(busy.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The two threads behind a [`Queue`]; joined by [`Threads::stop`].
pub(crate) struct Threads {
    jobs: mpsc::UnboundedSender<Message>,
    executor: Option<std::thread::JoinHandle<()>>,
    durability: Option<std::thread::JoinHandle<()>>,
}

/// Starts the executor and the durability threads for `db`, admitting at
/// most `max_queued` calls not yet answered.
pub(crate) fn start(db: Arc<Database>, max_queued: usize) -> std::io::Result<(Queue, Threads)> {
    let (jobs, queued) = mpsc::unbounded_channel();
    let (committed, to_wait) = std_mpsc::channel();
    let executor = {
        let db = db.clone();
        std::thread::Builder::new()
            .name("interstice-calls".into())
            .spawn(move || execute(&db, queued, committed))?
    };
    let durability = {
        let db = db.clone();
        std::thread::Builder::new()
            .name("interstice-durable".into())
            .spawn(move || answer(&db, to_wait))?
    };
    let queue = Queue {
        db,
        jobs: jobs.clone(),
        admitted: Arc::new(Semaphore::new(max_queued.max(1))),
        busy: Arc::new(AtomicUsize::new(0)),
    };
    Ok((
        queue,
        Threads {
            jobs,
            executor: Some(executor),
            durability: Some(durability),
        },
    ))
}

impl Queue {
    /// Runs one call; its answer once durable. Refused at once, without
    /// waiting, when `calls_queued_max` calls are waiting already or the
    /// server stops.
    ///
    /// When nothing is queued or running, the call runs here, on the
    /// handler's own thread (its async worker handed over meanwhile), and
    /// is synced here: a lone caller's answer then takes no wake-up of
    /// another thread at all. Otherwise it joins the queue's next batch.
    pub async fn call(&self, call: Call) -> Result<Answer, Refused> {
        let permit = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Full)?;
        let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread;
        if multi_thread
            && self
                .busy
                .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            let _busy = Busy(self.busy.clone());
            let answer = tokio::task::block_in_place(|| {
                self.db
                    .call_now(BeginCall {
                        module: &call.module,
                        reducer: &call.reducer,
                        args: input(&call.args),
                        caller: &call.caller,
                    })
                    .map_err(Failed::from)
            });
            drop(permit);
            return Ok(answer);
        }
        let (reply, answered) = oneshot::channel();
        let job = Job {
            calls: vec![call],
            reply,
            _admitted: vec![permit],
            _busy: Busy::new(&self.busy),
        };
        self.jobs
            .send(Message::Run(job))
            .map_err(|_| Refused::Stopping)?;
        match answered.await.map(|mut answers| answers.pop()) {
            Ok(Some(answer)) => Ok(answer),
            _ => Err(Refused::Stopping),
        }
    }

    /// Queues a session's calls, which run in the order given (and after
    /// any the session queued before); their answers, together, once
    /// durable. Not admitted against `calls_queued_max`: a session bounds
    /// its own calls in flight (`session_calls_max`).
    pub fn session_calls(
        &self,
        calls: Vec<Call>,
    ) -> Result<oneshot::Receiver<Vec<Answer>>, Refused> {
        let (reply, answered) = oneshot::channel();
        let job = Job {
            calls,
            reply,
            _admitted: Vec::new(),
            _busy: Busy::new(&self.busy),
        };
        self.jobs
            .send(Message::Run(job))
            .map_err(|_| Refused::Stopping)?;
        Ok(answered)
    }
}

impl Threads {
    /// Lets the calls queued so far run and be answered, then stops both
    /// threads; later calls are refused as [`Refused::Stopping`].
    pub fn stop(mut self) {
        let _ = self.jobs.send(Message::Stop);
        for thread in [self.executor.take(), self.durability.take()]
            .into_iter()
            .flatten()
        {
            let _ = thread.join();
        }
    }
}

/// The executor: runs every job queued since its last batch (up to
/// [`BATCH_MAX`] calls) in one hold of the database and hands the begun
/// calls to the durability thread.
fn execute(
    db: &Database,
    mut queued: mpsc::UnboundedReceiver<Message>,
    committed: std_mpsc::Sender<Batch>,
) {
    let mut stopping = false;
    while !stopping {
        let Some(first) = queued.blocking_recv() else {
            break;
        };
        let mut jobs = Vec::new();
        let mut calls = 0;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Run(job) => {
                    calls += job.calls.len();
                    jobs.push(job);
                }
                Message::Stop => {
                    stopping = true;
                    break;
                }
            }
            if calls < BATCH_MAX {
                next = queued.try_recv().ok();
            }
        }
        if jobs.is_empty() {
            continue;
        }
        // One call and nothing behind it: run it and sync it here, and
        // answer it from here (no hand-over to the log's writer and to the
        // durability thread, which is most of a lone call's latency above
        // its fsync). Whatever arrives meanwhile is the next batch.
        if calls == 1 && jobs.len() == 1 && queued.is_empty() {
            if let Some(job) = jobs.pop() {
                answer_now(db, job);
            }
            continue;
        }
        let begin: Vec<BeginCall<'_>> = jobs
            .iter()
            .flat_map(|job| job.calls.iter())
            .map(|call| BeginCall {
                module: &call.module,
                reducer: &call.reducer,
                args: input(&call.args),
                caller: &call.caller,
            })
            .collect();
        let begun = match db.call_begin_many(&begin) {
            Ok(begun) => begun.into_iter().map(|r| r.map_err(Failed::from)).collect(),
            Err(e) => {
                let failed = Failed::from(e);
                begin.iter().map(|_| Err(failed.clone())).collect()
            }
        };
        drop(begin);
        if committed.send((jobs, begun)).is_err() {
            break;
        }
    }
    // Whatever is still queued past a stop is refused by its dropped reply.
}

/// Runs a job of one call with [`Database::call_now`] and answers it.
fn answer_now(db: &Database, mut job: Job) {
    let answers = job
        .calls
        .drain(..)
        .map(|call| {
            db.call_now(BeginCall {
                module: &call.module,
                reducer: &call.reducer,
                args: input(&call.args),
                caller: &call.caller,
            })
            .map_err(Failed::from)
        })
        .collect();
    let _ = job.reply.send(answers);
}

fn input(args: &Args) -> CallInput<'_> {
    match args {
        Args::Json(json) => CallInput::Json(json),
        Args::Row(row) => CallInput::Row(row),
    }
}

/// The durability thread: waits once per batch, for its newest record,
/// then answers every job of it.
fn answer(db: &Database, to_wait: std_mpsc::Receiver<Batch>) {
    while let Ok((jobs, begun)) = to_wait.recv() {
        // Each call's place: its version, or why it did not commit.
        let mut places = Vec::with_capacity(begun.len());
        let mut committing = Vec::new();
        for result in begun {
            match result {
                Ok(call) => {
                    places.push(Ok(call.version()));
                    committing.push(call);
                }
                Err(e) => places.push(Err(e)),
            }
        }
        let mut outcomes = db
            .calls_durable(committing)
            .map(Vec::into_iter)
            .map_err(Failed::from);
        let mut places = places.into_iter();
        for job in jobs {
            let answers = job
                .calls
                .iter()
                .map(|_| match (places.next(), &mut outcomes) {
                    (Some(Err(e)), _) => Err(e),
                    (Some(Ok(version)), Ok(outcomes)) => outcomes
                        .next()
                        .map(|outcome| (version, outcome))
                        .ok_or_else(missing),
                    (Some(Ok(_)), Err(e)) => Err(e.clone()),
                    (None, _) => Err(missing()),
                })
                .collect();
            // A caller that is gone gets no answer; its call is durable.
            let _ = job.reply.send(answers);
        }
    }
}

/// An answer the batch does not have: a bug, said as one.
fn missing() -> Failed {
    Failed {
        error: ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "a call's outcome is missing from its batch",
        ),
        gone: false,
    }
}
