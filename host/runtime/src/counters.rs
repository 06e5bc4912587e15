//! Counters of guest activity. The replay guard relies on them: replay must
//! leave all three unchanged.

use std::sync::atomic::{AtomicU64, Ordering};

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
