//! Flat combining: one thread holds the state at a time, and whoever holds
//! it runs every call other threads queued meanwhile before it lets go.
//!
//! A caller that finds the state free runs its call itself. One that finds
//! it held queues its call and sleeps once, until its answer is ready (for
//! the database: until its record is durable, or its call failed), instead
//! of queueing on the lock and sleeping once per hand-over.
//!
//! The held state is reachable only through [`Held`], whose drop runs what
//! was queued: no path can take the state and skip the queue. The queue is
//! generic over an [`Executor`], so its guarantees (every queued job runs
//! exactly once, in queue order, and its caller is answered only once the
//! executor says the answer is ready) are tested here without a guest.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::Thread;

use crate::error::Poisoned;

/// What the holder does with a queued job, and when its caller may be
/// answered.
pub(crate) trait Executor<S> {
    type Job;
    type Done;

    /// Runs one queued job on the held state.
    fn execute(&self, state: &mut S, job: Self::Job) -> Self::Done;

    /// Arranges for `waiter` to be unparked once `done` is [`ready`]
    /// (at once if it is already).
    ///
    /// [`ready`]: Executor::ready
    fn hand_over(&self, done: &Self::Done, waiter: Thread);

    /// Whether the caller may be answered with `done` now. It may first
    /// turn `done` into the final answer (a commit whose record then failed
    /// to become durable is a failure).
    fn ready(&self, done: &mut Self::Done) -> bool;

    /// The answer to a queued job that will never run: the state was
    /// poisoned by a panic.
    fn poisoned(&self) -> Self::Done;
}

/// A queued job and, once it ran, what it produced.
struct Slot<J, D> {
    job: Mutex<Option<J>>,
    done: Mutex<Option<D>>,
    waiter: Thread,
}

/// The state, and the jobs queued for whoever holds it.
pub(crate) struct Combiner<S, J, D> {
    state: Mutex<S>,
    queue: Mutex<VecDeque<Arc<Slot<J, D>>>>,
}

/// Locks a mutex whose contents stay consistent at every instant (a queue
/// of slots, a slot's job or answer), so a panic elsewhere cannot leave it
/// half-changed.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<S, J, D> Combiner<S, J, D> {
    pub fn new(state: S) -> Self {
        Combiner {
            state: Mutex::new(state),
            queue: Mutex::new(VecDeque::new()),
        }
    }

    /// Takes the state, waiting for it if another thread holds it.
    pub fn hold<'c, E>(&'c self, exec: &'c E) -> Result<Held<'c, S, J, D, E>, Poisoned>
    where
        E: Executor<S, Job = J, Done = D>,
    {
        let guard = self.state.lock().map_err(|_| Poisoned)?;
        Ok(Held::new(self, exec, guard))
    }

    /// Takes the state if it is free; `None` if another thread holds it.
    pub fn try_hold<'c, E>(&'c self, exec: &'c E) -> Result<Option<Held<'c, S, J, D, E>>, Poisoned>
    where
        E: Executor<S, Job = J, Done = D>,
    {
        match self.state.try_lock() {
            Ok(guard) => Ok(Some(Held::new(self, exec, guard))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Poisoned(_)) => Err(Poisoned),
        }
    }

    /// Queues `job` for whoever holds the state (this thread, if nobody
    /// does), and sleeps until its answer is ready.
    pub fn submit<E>(&self, exec: &E, job: J) -> D
    where
        E: Executor<S, Job = J, Done = D>,
    {
        let slot = Arc::new(Slot {
            job: Mutex::new(Some(job)),
            done: Mutex::new(None),
            waiter: std::thread::current(),
        });
        lock(&self.queue).push_back(slot.clone());
        self.combine(exec);
        loop {
            {
                let mut done = lock(&slot.done);
                if let Some(mut d) = done.take() {
                    if exec.ready(&mut d) {
                        return d;
                    }
                    *done = Some(d);
                }
            }
            // Unparked by the holder on failure, or by whatever `hand_over`
            // arranged; a spurious return checks again.
            std::thread::park();
        }
    }

    /// Jobs queued and not yet taken by a holder.
    pub fn queued(&self) -> usize {
        lock(&self.queue).len()
    }

    /// Runs every queued job, in queue order, until the queue is empty.
    /// Called by the holder just before it lets go.
    fn drain<E>(&self, exec: &E, state: &mut S)
    where
        E: Executor<S, Job = J, Done = D>,
    {
        loop {
            let Some(slot) = lock(&self.queue).pop_front() else {
                return;
            };
            let Some(job) = lock(&slot.job).take() else {
                continue;
            };
            let done = exec.execute(state, job);
            // The answer is in place before the waiter can be woken for it.
            let mut answer = lock(&slot.done);
            let done = answer.insert(done);
            exec.hand_over(done, slot.waiter.clone());
        }
    }

    /// After letting go: a job queued between the last drain and the
    /// release would be stranded, so take the state again and run it,
    /// unless someone else holds it (and will).
    fn combine<E>(&self, exec: &E)
    where
        E: Executor<S, Job = J, Done = D>,
    {
        while !lock(&self.queue).is_empty() {
            match self.state.try_lock() {
                Ok(mut guard) => self.drain(exec, &mut guard),
                Err(TryLockError::WouldBlock) => return,
                Err(TryLockError::Poisoned(_)) => return self.fail_queued(exec),
            }
        }
    }

    /// After a panic while the state was held: every queued job fails.
    fn fail_queued<E>(&self, exec: &E)
    where
        E: Executor<S, Job = J, Done = D>,
    {
        let queued = std::mem::take(&mut *lock(&self.queue));
        for slot in queued {
            *lock(&slot.done) = Some(exec.poisoned());
            slot.waiter.unpark();
        }
    }
}

/// The state, held by one thread. Dropping it runs the jobs queued
/// meanwhile, then lets go.
pub(crate) struct Held<'c, S, J, D, E: Executor<S, Job = J, Done = D>> {
    combiner: &'c Combiner<S, J, D>,
    exec: &'c E,
    guard: Option<MutexGuard<'c, S>>,
}

impl<'c, S, J, D, E: Executor<S, Job = J, Done = D>> Held<'c, S, J, D, E> {
    fn new(combiner: &'c Combiner<S, J, D>, exec: &'c E, guard: MutexGuard<'c, S>) -> Self {
        Held {
            combiner,
            exec,
            guard: Some(guard),
        }
    }

    /// Whether nobody is queued behind the holder.
    pub fn alone(&self) -> bool {
        self.combiner.queued() == 0
    }
}

impl<S, J, D, E: Executor<S, Job = J, Done = D>> Deref for Held<'_, S, J, D, E> {
    type Target = S;

    fn deref(&self) -> &S {
        self.guard.as_ref().expect("held until dropped")
    }
}

impl<S, J, D, E: Executor<S, Job = J, Done = D>> DerefMut for Held<'_, S, J, D, E> {
    fn deref_mut(&mut self) -> &mut S {
        self.guard.as_mut().expect("held until dropped")
    }
}

impl<S, J, D, E: Executor<S, Job = J, Done = D>> Drop for Held<'_, S, J, D, E> {
    fn drop(&mut self) {
        let Some(mut guard) = self.guard.take() else {
            return;
        };
        if std::thread::panicking() {
            // The state is poisoned by this panic: run nothing more.
            drop(guard);
            self.combiner.fail_queued(self.exec);
            return;
        }
        self.combiner.drain(self.exec, &mut guard);
        drop(guard);
        self.combiner.combine(self.exec);
    }
}

#[cfg(test)]
mod tests {
    //! The queue with an executor that appends to an in-memory "log" made
    //! durable by a thread of its own, as the real log's writer does.

    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Condvar;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// An in-memory log: appended ids become durable when its writer
    /// thread gets to them, and waiters are unparked then.
    #[derive(Default)]
    struct MemLog {
        state: Mutex<MemLogState>,
        wake: Condvar,
        durable: AtomicU64,
    }

    #[derive(Default)]
    struct MemLogState {
        appended: u64,
        waiters: Vec<(u64, Thread)>,
        stop: bool,
    }

    impl MemLog {
        fn append(&self, tx: u64) {
            let mut st = lock(&self.state);
            assert_eq!(tx, st.appended + 1, "appends in tx order");
            st.appended = tx;
            self.wake.notify_one();
        }

        fn notify(&self, tx: u64, thread: Thread) {
            if self.durable.load(Ordering::SeqCst) >= tx {
                thread.unpark();
                return;
            }
            lock(&self.state).waiters.push((tx, thread));
            self.wake.notify_one();
        }

        /// The writer: makes everything appended durable in one "sync",
        /// after a short pause so that batches form.
        fn run(&self) {
            let mut st = lock(&self.state);
            loop {
                let durable = self.durable.load(Ordering::SeqCst);
                if st.appended > durable {
                    let upto = st.appended;
                    drop(st);
                    std::thread::sleep(Duration::from_micros(50));
                    self.durable.store(upto, Ordering::SeqCst);
                    st = lock(&self.state);
                }
                let durable = self.durable.load(Ordering::SeqCst);
                st.waiters.retain(|(tx, t)| {
                    let ready = *tx <= durable;
                    if ready {
                        t.unpark();
                    }
                    !ready
                });
                if st.stop && st.appended == durable {
                    return;
                }
                if st.appended == durable {
                    st = self
                        .wake
                        .wait_timeout(st, Duration::from_millis(1))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }

    /// The state: every job in the order it ran, and the tx id it got.
    #[derive(Default)]
    struct Ledger {
        ran: Vec<(usize, usize)>,
        next_tx: u64,
    }

    struct Exec<'a> {
        log: &'a MemLog,
        /// Jobs that fail (are not logged) instead of committing.
        failing: fn(&(usize, usize)) -> bool,
    }

    type Done = Result<u64, String>;

    impl Executor<Ledger> for Exec<'_> {
        type Job = (usize, usize);
        type Done = Done;

        fn execute(&self, state: &mut Ledger, job: (usize, usize)) -> Done {
            state.ran.push(job);
            if (self.failing)(&job) {
                return Err(format!("job {job:?} failed"));
            }
            state.next_tx += 1;
            self.log.append(state.next_tx);
            Ok(state.next_tx)
        }

        fn hand_over(&self, done: &Done, waiter: Thread) {
            match done {
                Ok(tx) => self.log.notify(*tx, waiter),
                Err(_) => waiter.unpark(),
            }
        }

        fn ready(&self, done: &mut Done) -> bool {
            match done {
                Ok(tx) => self.log.durable.load(Ordering::SeqCst) >= *tx,
                Err(_) => true,
            }
        }

        fn poisoned(&self) -> Done {
            Err("poisoned".into())
        }
    }

    /// Runs `threads` × `per_thread` jobs, each submitted (queued when the
    /// state is held) or run in place, as the database does.
    fn run_many(threads: usize, per_thread: usize, failing: fn(&(usize, usize)) -> bool) {
        let log = &MemLog::default();
        let combiner: Combiner<Ledger, (usize, usize), Done> = Combiner::new(Ledger::default());
        let answers = Mutex::new(BTreeMap::new());
        let exec = Exec { log, failing };
        std::thread::scope(|s| {
            s.spawn(|| log.run());
            for t in 0..threads {
                let (exec, combiner, answers) = (&exec, &combiner, &answers);
                s.spawn(move || {
                    for i in 0..per_thread {
                        let mut done = match combiner.try_hold(exec).expect("not poisoned") {
                            Some(mut held) => {
                                let mut done = exec.execute(&mut held, (t, i));
                                drop(held);
                                while !exec.ready(&mut done) {
                                    exec.hand_over(&done, std::thread::current());
                                    std::thread::park();
                                }
                                done
                            }
                            None => combiner.submit(exec, (t, i)),
                        };
                        // Answered only once durable.
                        assert!(exec.ready(&mut done), "answered before durable: {done:?}");
                        if let Ok(tx) = done {
                            assert!(log.durable.load(Ordering::SeqCst) >= tx);
                        }
                        lock(answers).insert((t, i), done);
                    }
                });
            }
            // The scope joins the callers first only if the writer stops:
            // tell it to once every answer is in.
            s.spawn(|| {
                while lock(&answers).len() < threads * per_thread {
                    std::thread::sleep(Duration::from_millis(1));
                }
                lock(&log.state).stop = true;
                log.wake.notify_one();
            });
        });
        let ledger = combiner.state.into_inner().expect("not poisoned");
        let answers = answers.into_inner().expect("not poisoned");
        // Exactly once: every job ran once, and nothing else ran.
        let mut ran = ledger.ran.clone();
        ran.sort();
        let expected: Vec<_> = (0..threads)
            .flat_map(|t| (0..per_thread).map(move |i| (t, i)))
            .collect();
        assert_eq!(ran, expected);
        // Each caller's jobs ran in the order it made them.
        for t in 0..threads {
            let mine: Vec<_> = ledger
                .ran
                .iter()
                .filter(|j| j.0 == t)
                .map(|j| j.1)
                .collect();
            assert_eq!(mine, (0..per_thread).collect::<Vec<_>>());
        }
        // Every answer is the job's own: tx ids follow the run order, and
        // failed jobs got their own error.
        let mut tx = 0;
        for job in &ledger.ran {
            match &answers[job] {
                Ok(got) => {
                    tx += 1;
                    assert_eq!(*got, tx, "{job:?}");
                }
                Err(e) => {
                    assert!(failing(job), "{job:?}: {e}");
                    assert_eq!(e, &format!("job {job:?} failed"));
                }
            }
        }
        assert_eq!(ledger.next_tx, tx);
    }

    #[test]
    fn thousands_of_calls_from_many_threads_run_exactly_once_and_answer_when_durable() {
        run_many(8, 500, |_| false);
    }

    #[test]
    fn failed_calls_are_answered_at_once_and_take_no_tx_id() {
        run_many(6, 300, |(t, i)| (t + i) % 7 == 0);
    }

    #[test]
    fn queued_jobs_run_in_queue_order_before_the_holder_lets_go() {
        let log = &MemLog::default();
        let combiner: Combiner<Ledger, (usize, usize), Done> = Combiner::new(Ledger::default());
        let counter = AtomicU64::new(0);
        let exec = Exec {
            log,
            failing: |_| false,
        };
        std::thread::scope(|s| {
            s.spawn(|| log.run());
            let held = combiner.hold(&exec).expect("not poisoned");
            let mut callers = Vec::new();
            for t in 0..10 {
                let (exec, combiner) = (&exec, &combiner);
                callers.push(s.spawn(move || combiner.submit(exec, (t, 0))));
                // Wait until this caller is in the queue: the queue order is
                // then 0, 1, ..., 9.
                while combiner.queued() < t + 1 {
                    std::thread::yield_now();
                }
            }
            assert!(!held.alone());
            assert!(held.ran.is_empty(), "nothing runs while the state is held");
            drop(held);
            for (t, c) in callers.into_iter().enumerate() {
                assert_eq!(c.join().expect("caller"), Ok(t as u64 + 1));
                counter.fetch_add(1, Ordering::SeqCst);
            }
            lock(&log.state).stop = true;
            log.wake.notify_one();
        });
        assert_eq!(counter.load(Ordering::SeqCst), 10);
        let ledger = combiner.state.into_inner().expect("not poisoned");
        assert_eq!(ledger.ran, (0..10).map(|t| (t, 0)).collect::<Vec<_>>());
    }

    #[test]
    fn a_panic_while_held_fails_every_queued_job_and_poisons_the_state() {
        let log = MemLog::default();
        let combiner: Combiner<Ledger, (usize, usize), Done> = Combiner::new(Ledger::default());
        let exec = Exec {
            log: &log,
            failing: |_| false,
        };
        std::thread::scope(|s| {
            let (exec, combiner) = (&exec, &combiner);
            let (holding, held) = std::sync::mpsc::channel();
            let holder = s.spawn(move || {
                let _held = combiner.hold(exec).expect("not poisoned");
                holding.send(()).expect("test alive");
                while combiner.queued() < 3 {
                    std::thread::yield_now();
                }
                panic!("a bug while holding the state");
            });
            held.recv().expect("holder");
            let callers: Vec<_> = (0..3)
                .map(|t| s.spawn(move || combiner.submit(exec, (t, 0))))
                .collect();
            assert!(holder.join().is_err());
            for c in callers {
                assert_eq!(c.join().expect("caller"), Err("poisoned".to_string()));
            }
            assert!(combiner.hold(exec).is_err());
            assert!(combiner.try_hold(exec).is_err());
        });
    }
}
