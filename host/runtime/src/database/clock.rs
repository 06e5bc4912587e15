//! Transaction ids and the logical clock.

use std::time::{SystemTime, UNIX_EPOCH};

use interstice_store::Identity;

use crate::caller::Caller;
use crate::config::ClockSource;
use crate::sandbox::CallContext;

/// Hands out the next transaction's id, timestamp and seed. Nothing advances
/// until a transaction commits ([`Clock::committed`]), so a failed call uses
/// no id.
pub(crate) struct Clock {
    next_tx_id: u64,
    last_timestamp_micros: i64,
    /// `RuntimeConfig::clock`: where wall time comes from.
    source: Option<ClockSource>,
}

impl Clock {
    /// A clock that continues after transaction `next_tx_id - 1`, made at
    /// `last_timestamp_micros`.
    pub fn new(next_tx_id: u64, last_timestamp_micros: i64, source: Option<ClockSource>) -> Clock {
        assert!(next_tx_id >= 1, "transaction ids start at 1");
        Clock {
            next_tx_id,
            last_timestamp_micros,
            source,
        }
    }

    /// The id the next committed transaction will get.
    pub fn next_tx_id(&self) -> u64 {
        self.next_tx_id
    }

    /// The last committed transaction (0 before the first).
    pub fn last_tx_id(&self) -> u64 {
        self.next_tx_id - 1
    }

    /// Context of the next transaction of module `module`: its id, a
    /// timestamp after the last one's, and a seed that is a function of
    /// both.
    pub fn next(&self, caller: &Caller, owner: Identity, module: &str) -> CallContext {
        self.next_not_before(caller, owner, module, i64::MIN)
    }

    /// [`Clock::next`] with a timestamp of at least `not_before`: a
    /// scheduled run is never earlier than its due time.
    pub fn next_not_before(
        &self,
        caller: &Caller,
        owner: Identity,
        module: &str,
        not_before: i64,
    ) -> CallContext {
        let tx_id = self.next_tx_id;
        let timestamp_micros = self
            .now()
            .max(self.last_timestamp_micros + 1)
            .max(not_before);
        CallContext {
            tx_id,
            timestamp_micros,
            caller: caller.clone(),
            connection_id: None,
            owner,
            module: Identity::of_module(module),
            seed: seed_for(tx_id, timestamp_micros),
        }
    }

    /// The time now, by the clock's source: what the next transaction's
    /// timestamp is made from.
    pub fn now(&self) -> i64 {
        match &self.source {
            Some(source) => source(),
            None => wall_clock_micros(),
        }
    }

    /// The transaction `ctx` describes committed: the clock moves past it.
    pub fn committed(&mut self, ctx: &CallContext) {
        assert_eq!(
            ctx.tx_id, self.next_tx_id,
            "transactions commit in id order"
        );
        self.next_tx_id = ctx.tx_id + 1;
        self.last_timestamp_micros = ctx.timestamp_micros;
    }
}

/// A 64-bit mix of the transaction's id and time (splitmix64): reducers get
/// randomness that replays identically.
fn seed_for(tx_id: u64, timestamp_micros: i64) -> u64 {
    let mut z = tx_id ^ (timestamp_micros as u64).rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn wall_clock_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn timestamps_increase_even_when_the_source_goes_back() {
        let mut clock = Clock::new(1, 0, Some(Arc::new(|| 100)));
        let a = clock.next(&Caller::operator(), Identity::operator(), "m");
        clock.committed(&a);
        let b = clock.next(&Caller::operator(), Identity::operator(), "m");
        assert_eq!((a.tx_id, a.timestamp_micros), (1, 100));
        assert_eq!((b.tx_id, b.timestamp_micros), (2, 101));
        assert_ne!(a.seed, b.seed);
        // Nothing advances until a commit: asking twice gives the same.
        assert_eq!(
            clock.next(&Caller::operator(), Identity::operator(), "m"),
            b
        );
    }
}
