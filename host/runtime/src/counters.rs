//! Counters of guest activity and the replay guard. Replay must leave all
//! three counters unchanged, and while the guard is up no guest may be
//! instantiated or called.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counters {
    instantiations: AtomicU64,
    guest_calls: AtomicU64,
    fuel_consumed: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CounterSnapshot {
    pub guest_instantiations: u64,
    pub guest_calls: u64,
    pub fuel_consumed: u64,
}

impl CounterSnapshot {
    /// What happened between `before` and this snapshot.
    pub fn since(&self, before: &CounterSnapshot) -> CounterSnapshot {
        CounterSnapshot {
            guest_instantiations: self.guest_instantiations - before.guest_instantiations,
            guest_calls: self.guest_calls - before.guest_calls,
            fuel_consumed: self.fuel_consumed - before.fuel_consumed,
        }
    }
}

impl Counters {
    pub(crate) fn instantiated(&self) {
        self.instantiations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn called(&self) {
        self.guest_calls.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fuel(&self, fuel: u64) {
        self.fuel_consumed.fetch_add(fuel, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            guest_instantiations: self.instantiations.load(Ordering::Relaxed),
            guest_calls: self.guest_calls.load(Ordering::Relaxed),
            fuel_consumed: self.fuel_consumed.load(Ordering::Relaxed),
        }
    }
}

/// The runtime half of the replay guard: while a [`ReplayPhase`] is alive,
/// every attempt to instantiate or call a guest fails.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    replaying: AtomicBool,
}

/// Proof that replay is in progress; the guard drops with it.
#[must_use = "the replay phase ends when this is dropped"]
pub struct ReplayPhase<'a> {
    guard: &'a ReplayGuard,
}

impl ReplayGuard {
    /// Starts the replay phase.
    pub fn enter(&self) -> ReplayPhase<'_> {
        let was = self.replaying.swap(true, Ordering::SeqCst);
        assert!(!was, "replay phases do not nest");
        ReplayPhase { guard: self }
    }

    pub fn replaying(&self) -> bool {
        self.replaying.load(Ordering::SeqCst)
    }
}

impl Drop for ReplayPhase<'_> {
    fn drop(&mut self) {
        self.guard.replaying.store(false, Ordering::SeqCst);
    }
}
