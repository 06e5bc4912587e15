//! Running what is due: rounds of scheduled rows (`schedule.rs` keeps the
//! rows and their entries), each run one transaction through the one
//! commit path (`call.rs`), and the server's loop that sleeps until the
//! next one is due.
//!
//! This room only adds methods to [`Database`]; nothing imports it, so
//! that `schedule.rs`, which `call.rs` and the catalog use, imports
//! neither of them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Database;
use super::call::{CallArgs, CallKind};
use super::schedule::{
    Entry, ROUND_MAX, ScheduleRound, ScheduleStats, backoff_micros, due, earliest,
};
use crate::caller::{Caller, Identity};
use crate::error::{CallError, Poisoned};

/// Longest the scheduler sleeps without looking again.
const IDLE: Duration = Duration::from_secs(1);

impl Database {
    /// Runs up to `max` rows that are due now, each as one transaction
    /// whose sender is the module's identity, fair across modules (one of
    /// each module's earliest rows in turn). Rows whose reducer failed wait
    /// out their backoff first.
    pub fn run_due(&self, max: usize) -> Result<ScheduleRound, Poisoned> {
        let (scheduler, now) = self.read(|c| (c.scheduler.clone(), c.clock.now()))?;
        let backoff = scheduler
            .backoff
            .lock()
            .map(|b| b.clone())
            .unwrap_or_default();
        let turn = scheduler.turn.fetch_add(1, Ordering::Relaxed) as usize;
        let picks = self.read(|c| {
            let mut queues: Vec<(String, std::collections::VecDeque<Entry>)> = c
                .modules
                .iter()
                .filter(|(_, m)| m.def.has_schedules())
                .map(|(name, m)| {
                    let waiting = |key: &str| {
                        backoff
                            .get(&(name.clone(), key.to_string()))
                            .is_some_and(|&(_, not_before)| not_before > now)
                    };
                    (
                        name.clone(),
                        due(&m.def, &m.tables, now, max, &waiting).into(),
                    )
                })
                .filter(|(_, q): &(String, std::collections::VecDeque<Entry>)| !q.is_empty())
                .collect();
            if !queues.is_empty() {
                let at = turn % queues.len();
                queues.rotate_left(at);
            }
            let mut picks = Vec::new();
            while picks.len() < max && queues.iter().any(|(_, q)| !q.is_empty()) {
                for (name, q) in &mut queues {
                    if picks.len() < max
                        && let Some(e) = q.pop_front()
                    {
                        picks.push((name.clone(), e));
                    }
                }
            }
            picks
        })?;
        let mut round = ScheduleRound::default();
        for ((module, e), done) in picks.iter().zip(self.run_scheduled(&picks)?) {
            let slot = (module.clone(), e.key.clone());
            match done {
                Ok(outcome) => {
                    round.ran += 1;
                    scheduler.runs.fetch_add(1, Ordering::Relaxed);
                    scheduler.observe_lateness(outcome.timestamp_micros - e.next_at);
                    if let Ok(mut b) = scheduler.backoff.lock() {
                        b.remove(&slot);
                    }
                }
                Err(CallError::NotDue(_)) => round.skipped += 1,
                Err(CallError::Poisoned) => return Err(Poisoned),
                Err(error) => {
                    round.failed += 1;
                    scheduler.failures.fetch_add(1, Ordering::Relaxed);
                    let failures = backoff.get(&slot).map_or(0, |&(n, _)| n).saturating_add(1);
                    let wait = backoff_micros(failures);
                    tracing::warn!(
                        "module `{module}`: scheduled row `{}` failed ({failures} in a row): \
                         {error}; tried again in {} s",
                        e.key,
                        wait / 1_000_000
                    );
                    if let Ok(mut b) = scheduler.backoff.lock() {
                        b.insert(slot, (failures, now.saturating_add(wait)));
                    }
                }
            }
        }
        Ok(round)
    }

    /// Runs each picked row as its own transaction, one after the other
    /// while the database is held, then waits for them to be durable
    /// together: rows due at the same time share one fsync, and none waits
    /// for another's before it starts.
    fn run_scheduled(
        &self,
        picks: &[(String, Entry)],
    ) -> Result<Vec<Result<super::CallOutcome, CallError>>, Poisoned> {
        let calls = self.calls();
        let mut held = self.state.hold(&calls)?;
        let mut executed = Vec::with_capacity(picks.len());
        for (module, e) in picks {
            let caller = Caller::identity(Identity::of_module(module));
            let call = CallArgs {
                module,
                kind: CallKind::Scheduled { due_at: e.next_at },
                reducer_id: 0,
                args: e.key.as_bytes(),
                caller: &caller,
            };
            executed.push(super::call::execute(
                &mut held,
                &self.code,
                &self.pipeline,
                call,
                false,
            ));
        }
        drop(held);
        Ok(executed
            .into_iter()
            .map(|done| {
                let (ctx, committed, pending) = done?;
                pending.durable().map_err(CallError::Durability)?;
                Ok(super::CallOutcome::new(&ctx, committed))
            })
            .collect())
    }

    /// When the next row is due, in microseconds since the Unix epoch: the
    /// earliest entry not backing off, or the end of a backoff.
    pub fn next_due(&self) -> Result<Option<i64>, Poisoned> {
        self.read(|c| {
            let backoff = c
                .scheduler
                .backoff
                .lock()
                .map(|b| b.clone())
                .unwrap_or_default();
            let now = c.clock.now();
            let entries = c
                .modules
                .iter()
                .filter(|(_, m)| m.def.has_schedules())
                .filter_map(|(name, m)| {
                    let waiting = |key: &str| {
                        backoff
                            .get(&(name.clone(), key.to_string()))
                            .is_some_and(|&(_, not_before)| not_before > now)
                    };
                    earliest(&m.def, &m.tables, &waiting)
                });
            let backoffs = backoff
                .values()
                .map(|&(_, not_before)| not_before)
                .filter(|&t| t > now);
            entries.chain(backoffs).min()
        })
    }

    /// Runs due rows until [`Database::stop_schedules`]: a round, then a
    /// sleep until the next row is due (at most a second), cut short by
    /// any transaction of a module with schedule tables. The server runs
    /// this on a thread of its own; nothing else fires schedules.
    pub fn run_schedules(&self) {
        let Ok(scheduler) = self.read(|c| c.scheduler.clone()) else {
            return;
        };
        while !scheduler.stopped.load(Ordering::Acquire) {
            let Ok(round) = self.run_due(ROUND_MAX) else {
                return;
            };
            if round.ran + round.failed + round.skipped >= ROUND_MAX {
                continue;
            }
            let (Ok(next), Ok(now)) = (self.next_due(), self.read(|c| c.clock.now())) else {
                return;
            };
            let wait = match next {
                Some(at) => Duration::from_micros(at.saturating_sub(now).max(0) as u64).min(IDLE),
                None => IDLE,
            };
            if !wait.is_zero() {
                scheduler.sleep(wait);
            }
        }
    }

    /// Ends [`Database::run_schedules`] (at once if it sleeps).
    pub fn stop_schedules(&self) {
        if let Ok(scheduler) = self.read(|c| c.scheduler.clone()) {
            scheduler.stopped.store(true, Ordering::Release);
            scheduler.wake();
        }
    }

    /// The scheduler's counters.
    pub fn schedule_stats(&self) -> Result<ScheduleStats, Poisoned> {
        let scheduler = self.read(|c| c.scheduler.clone())?;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Ok(ScheduleStats {
            runs: load(&scheduler.runs),
            failures: load(&scheduler.failures),
            lateness_buckets: scheduler.lateness_buckets.iter().map(load).collect(),
            lateness_count: load(&scheduler.lateness_count),
            lateness_sum_secs: load(&scheduler.lateness_sum_micros) as f64 / 1e6,
        })
    }
}
