//! Scheduled reducers (docs/module-authoring.md, "Schedules").
//!
//! A schedule table's rows say when its reducer runs. The host keeps, in
//! the module's `st_schedule` table, when each row is due next, and changes
//! it only inside transactions:
//!
//! - [`track`] runs at the end of every transaction a reducer made (calls,
//!   lifecycle, init and migration reducers, scheduled runs): a row
//!   inserted gets an entry, a row changed gets its entry recomputed, a row
//!   deleted loses it. A delete is how a schedule is cancelled.
//! - [`finish_run`] runs at the end of a scheduled run, in the same
//!   transaction as its reducer: a one-shot row is deleted with its entry,
//!   an interval row's entry moves to its next time. A crash before that
//!   transaction commits runs the row again after restart; after, never.
//!
//! Missed firings: a one-shot row that fell due while nothing ran runs
//! once, as soon as it can; an interval row runs once for all the periods
//! it missed, then keeps its phase (the next time is the first
//! `due + k × interval` after the run).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use interstice_store::system::{INTERVAL_MIN_MICROS, ScheduleAt, schedule_key};
use interstice_store::{
    AlgebraicType, IndexId, ModuleDef, MutationOp, Tables, TxLog, Value, codec,
};

use crate::error::CallError;

/// One `st_schedule` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: String,
    pub table: String,
    pub scheduled_id: u64,
    pub next_at: i64,
    /// The interval; 0 for a one-shot row.
    pub every: i64,
}

fn entry_types() -> [AlgebraicType; 5] {
    [
        AlgebraicType::String,
        AlgebraicType::String,
        AlgebraicType::U64,
        AlgebraicType::Timestamp,
        AlgebraicType::Duration,
    ]
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        codec::encode_row(
            &[
                Value::String(self.key.as_str().into()),
                Value::String(self.table.as_str().into()),
                Value::U64(self.scheduled_id),
                Value::Timestamp(self.next_at),
                Value::Duration(self.every),
            ],
            &entry_types(),
        )
    }

    pub fn decode(row: &[u8]) -> Option<Entry> {
        match codec::decode_row(row, &entry_types()).ok()?.as_slice() {
            [
                Value::String(key),
                Value::String(table),
                Value::U64(id),
                Value::Timestamp(next_at),
                Value::Duration(every),
            ] => Some(Entry {
                key: key.to_string(),
                table: table.to_string(),
                scheduled_id: *id,
                next_at: *next_at,
                every: *every,
            }),
            _ => None,
        }
    }
}

/// The encoded primary key of an `st_schedule` entry or of a row.
fn string_key(key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode_value(&Value::String(key.into()), &AlgebraicType::String, &mut out);
    out
}

fn internal(e: impl std::fmt::Display) -> CallError {
    CallError::Schedule(format!("the schedule could not be kept: {e}"))
}

/// The entry of `key`, if any.
pub(crate) fn entry(
    def: &ModuleDef,
    tables: &Tables,
    key: &str,
) -> Result<Option<Entry>, CallError> {
    let Some(st) = def.schedule_table_id() else {
        return Ok(None);
    };
    let row = tables.get(st, &string_key(key)).map_err(internal)?;
    Ok(row.and_then(|r| Entry::decode(&r)))
}

fn put(def: &ModuleDef, tables: &mut Tables, tx: &mut TxLog, e: &Entry) -> Result<(), CallError> {
    let st = def
        .schedule_table_id()
        .ok_or_else(|| internal("no st_schedule"))?;
    let row = e.encode();
    if tables
        .get(st, &string_key(&e.key))
        .map_err(internal)?
        .is_some()
    {
        tables.update(tx, st, &row).map_err(internal)
    } else {
        tables.insert(tx, st, &row).map(|_| ()).map_err(internal)
    }
}

pub(crate) fn remove(
    def: &ModuleDef,
    tables: &mut Tables,
    tx: &mut TxLog,
    key: &str,
) -> Result<(), CallError> {
    let st = def
        .schedule_table_id()
        .ok_or_else(|| internal("no st_schedule"))?;
    tables
        .delete(tx, st, &string_key(key))
        .map(|_| ())
        .map_err(internal)
}

/// A schedule row's id and `scheduled_at`, decoded.
fn read_row(def: &ModuleDef, table: u32, row: &[u8]) -> Result<(u64, ScheduleAt), CallError> {
    let t = &def.tables[table as usize];
    let values = codec::decode_row(row, &t.column_types()).map_err(internal)?;
    let id = t
        .column_index("scheduled_id")
        .and_then(|i| match values.get(i) {
            Some(Value::U64(id)) => Some(*id),
            _ => None,
        });
    let at = t
        .column_index("scheduled_at")
        .and_then(|i| values.get(i))
        .and_then(ScheduleAt::from_value);
    match (id, at) {
        (Some(id), Some(at)) => Ok((id, at)),
        _ => Err(internal(format!("a row of `{}` does not decode", t.name))),
    }
}

/// Brings `st_schedule` up to date with the schedule rows the transaction
/// changed, from its `from`-th change on, at logical time `now`.
pub(crate) fn track(
    def: &ModuleDef,
    tables: &mut Tables,
    tx: &mut TxLog,
    from: usize,
    now: i64,
) -> Result<(), CallError> {
    if def.schedule_table_id().is_none() {
        return Ok(());
    }
    let guest = def.guest_table_count() as u32;
    let changed: Vec<_> = tx.mutations()[from.min(tx.mutations().len())..]
        .iter()
        .filter(|m| m.table < guest && def.tables[m.table as usize].scheduled.is_some())
        .cloned()
        .collect();
    for m in changed {
        let name = &def.tables[m.table as usize].name;
        let (id, at) = read_row(def, m.table, &m.row)?;
        let key = schedule_key(name, id);
        if m.op == MutationOp::Delete {
            remove(def, tables, tx, &key)?;
            continue;
        }
        let (next_at, every) = match at {
            ScheduleAt::Time(t) => (t, 0),
            ScheduleAt::Interval(d) if d < INTERVAL_MIN_MICROS => {
                return Err(CallError::Schedule(format!(
                    "row {id} of `{name}` repeats every {d} µs; the shortest interval is \
                     {INTERVAL_MIN_MICROS} µs"
                )));
            }
            ScheduleAt::Interval(d) => {
                // A changed row that keeps its interval keeps its phase.
                match entry(def, tables, &key)? {
                    Some(e) if m.op == MutationOp::Update && e.every == d => continue,
                    _ => (now.saturating_add(d), d),
                }
            }
        };
        let e = Entry {
            key,
            table: name.clone(),
            scheduled_id: id,
            next_at,
            every,
        };
        put(def, tables, tx, &e)?;
    }
    Ok(())
}

/// The first `due + k × every` (k ≥ 1) after `now`.
pub(crate) fn next_after(due: i64, every: i64, now: i64) -> i64 {
    let every = every.max(1);
    let k = if now < due {
        1
    } else {
        (now - due) / every + 1
    };
    due.saturating_add(k.saturating_mul(every))
}

/// The host's half of a scheduled run of `fired`, after its reducer
/// returned `Ok` and [`track`] saw what the reducer changed. A one-shot row
/// is deleted with its entry, unless the reducer gave it a new time; an
/// interval row's entry moves to its next time, unless the reducer changed
/// its schedule.
pub(crate) fn finish_run(
    def: &ModuleDef,
    tables: &mut Tables,
    tx: &mut TxLog,
    fired: &Entry,
    table: u32,
    now: i64,
) -> Result<(), CallError> {
    let Some(current) = entry(def, tables, &fired.key)? else {
        // The reducer deleted its row: `track` removed the entry.
        return Ok(());
    };
    if current.next_at != fired.next_at || current.every != fired.every {
        return Ok(());
    }
    if fired.every == 0 {
        tables
            .delete(tx, table, &fired.scheduled_id.to_le_bytes())
            .map_err(internal)?;
        remove(def, tables, tx, &fired.key)?;
    } else {
        let e = Entry {
            next_at: next_after(fired.next_at, fired.every, now),
            ..current
        };
        put(def, tables, tx, &e)?;
    }
    Ok(())
}

/// After a migration, rows of tables that became schedule tables (or were
/// carried without entries) get one, due from `now`; entries of rows or
/// tables that are gone are removed.
pub(crate) fn reconcile(
    def: &ModuleDef,
    tables: &mut Tables,
    tx: &mut TxLog,
    now: i64,
) -> Result<(), CallError> {
    let Some(st) = def.schedule_table_id() else {
        return Ok(());
    };
    let mut stale = Vec::new();
    for row in tables.table(st).map_err(internal)?.iter() {
        let Some(e) = Entry::decode(row) else {
            continue;
        };
        let live = def
            .table_id(&e.table)
            .filter(|&t| def.tables[t as usize].scheduled.is_some())
            .map(|t| tables.get(t, &e.scheduled_id.to_le_bytes()));
        if !matches!(live, Some(Ok(Some(_)))) {
            stale.push(e.key);
        }
    }
    for key in stale {
        remove(def, tables, tx, &key)?;
    }
    for (t, table) in def.tables.iter().enumerate() {
        if table.scheduled.is_none() {
            continue;
        }
        let rows: Vec<_> = tables
            .table(t as u32)
            .map_err(internal)?
            .iter()
            .cloned()
            .collect();
        for row in rows {
            let (id, at) = read_row(def, t as u32, &row)?;
            let key = schedule_key(&table.name, id);
            if entry(def, tables, &key)?.is_some() {
                continue;
            }
            let (next_at, every) = match at {
                ScheduleAt::Time(at) => (at, 0),
                ScheduleAt::Interval(d) => (now.saturating_add(d.max(INTERVAL_MIN_MICROS)), d),
            };
            put(
                def,
                tables,
                tx,
                &Entry {
                    key,
                    table: table.name.clone(),
                    scheduled_id: id,
                    next_at,
                    every,
                },
            )?;
        }
    }
    Ok(())
}

/// Up to `max` entries due at or before `now`, earliest first, of one
/// module's tables, skipping those `skip` says are backing off.
pub(crate) fn due(
    def: &ModuleDef,
    tables: &Tables,
    now: i64,
    max: usize,
    skip: &dyn Fn(&str) -> bool,
) -> Vec<Entry> {
    let Some(st) = def.schedule_table_id() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let mut batch = Vec::new();
        let scanned = tables.scan(
            st,
            IndexId::Secondary(0),
            &Bound::Unbounded,
            &Bound::Included(Value::Timestamp(now)),
            after.as_ref(),
            max.max(16),
            &mut batch,
        );
        if scanned.is_err() || batch.is_empty() {
            return out;
        }
        for (position, row) in batch {
            after = Some(position);
            if let Some(e) = Entry::decode(&row)
                && !skip(&e.key)
            {
                out.push(e);
                if out.len() >= max {
                    return out;
                }
            }
        }
    }
}

/// When the earliest entry not backing off is due, if any.
pub(crate) fn earliest(
    def: &ModuleDef,
    tables: &Tables,
    skip: &dyn Fn(&str) -> bool,
) -> Option<i64> {
    due(def, tables, i64::MAX, 1, skip)
        .first()
        .map(|e| e.next_at)
}

/// How long a row whose reducer failed `failures` times in a row waits
/// before it is tried again: 1 s, doubling, at most 5 minutes.
pub fn backoff_micros(failures: u32) -> i64 {
    let doublings = failures.saturating_sub(1).min(9);
    (1_000_000i64 << doublings).min(300_000_000)
}

/// Bucket bounds of the lateness histogram, in seconds.
pub const LATENESS_BUCKETS: [f64; 10] =
    [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0, 10.0];

/// What the scheduler keeps in memory: rows backing off after failures,
/// and the counters of the metrics.
#[derive(Default)]
pub(crate) struct Scheduler {
    /// (module, key) → (failures in a row, not before).
    pub backoff: Mutex<BTreeMap<(String, String), (u32, i64)>>,
    /// Where the next round of fair picking starts.
    pub turn: AtomicU64,
    pub runs: AtomicU64,
    pub failures: AtomicU64,
    /// Lateness: count per bucket of [`LATENESS_BUCKETS`] (and one past
    /// them), total count and sum in microseconds.
    pub lateness_buckets: [AtomicU64; LATENESS_BUCKETS.len() + 1],
    pub lateness_count: AtomicU64,
    pub lateness_sum_micros: AtomicU64,
    /// Set by [`Database::stop_schedules`].
    pub stopped: std::sync::atomic::AtomicBool,
    /// Set by [`Scheduler::wake`]: schedules may have changed.
    woken: Mutex<bool>,
    bell: Condvar,
}

impl Scheduler {
    /// Tells whoever waits in [`Scheduler::sleep`] that schedules changed.
    pub fn wake(&self) {
        if let Ok(mut woken) = self.woken.lock() {
            *woken = true;
            self.bell.notify_all();
        }
    }

    /// Waits up to `timeout`, less if [`Scheduler::wake`] is called.
    pub fn sleep(&self, timeout: Duration) {
        let Ok(mut woken) = self.woken.lock() else {
            return;
        };
        if !*woken {
            woken = match self.bell.wait_timeout(woken, timeout) {
                Ok((guard, _)) => guard,
                Err(_) => return,
            };
        }
        *woken = false;
    }

    pub fn observe_lateness(&self, micros: i64) {
        let micros = micros.max(0) as u64;
        let secs = micros as f64 / 1e6;
        let bucket = LATENESS_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENESS_BUCKETS.len());
        self.lateness_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.lateness_count.fetch_add(1, Ordering::Relaxed);
        self.lateness_sum_micros
            .fetch_add(micros, Ordering::Relaxed);
    }
}

/// Most scheduled rows one round of [`Database::run_due`] runs.
pub const ROUND_MAX: usize = 64;

/// What one round of [`Database::run_due`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScheduleRound {
    /// Rows whose reducer ran and committed.
    pub ran: usize,
    /// Rows whose reducer failed: each backs off ([`backoff_micros`]).
    pub failed: usize,
    /// Rows changed or cancelled between being chosen and their turn.
    pub skipped: usize,
}

/// The scheduler's counters since the database opened.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScheduleStats {
    pub runs: u64,
    pub failures: u64,
    /// Lateness (how long after its due time a row ran) per bucket of
    /// [`LATENESS_BUCKETS`], and past the last.
    pub lateness_buckets: Vec<u64>,
    pub lateness_count: u64,
    pub lateness_sum_secs: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_keeps_its_phase_and_runs_once_for_missed_periods() {
        assert_eq!(next_after(100, 10, 100), 110);
        assert_eq!(next_after(100, 10, 105), 110);
        // Late by more than two periods: the next is still on the phase.
        assert_eq!(next_after(100, 10, 125), 130);
        assert_eq!(next_after(100, 10, 130), 140);
        assert_eq!(next_after(100, 10, 90), 110);
    }

    #[test]
    fn backoff_doubles_from_a_second_to_five_minutes() {
        assert_eq!(backoff_micros(1), 1_000_000);
        assert_eq!(backoff_micros(2), 2_000_000);
        assert_eq!(backoff_micros(9), 256_000_000);
        assert_eq!(backoff_micros(10), 300_000_000);
        assert_eq!(backoff_micros(u32::MAX), 300_000_000);
    }

    #[test]
    fn entries_read_back() {
        let e = Entry {
            key: "reminders/7".into(),
            table: "reminders".into(),
            scheduled_id: 7,
            next_at: -5,
            every: 1_000,
        };
        assert_eq!(Entry::decode(&e.encode()), Some(e));
        assert_eq!(Entry::decode(b"junk"), None);
    }
}
