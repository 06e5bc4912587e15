//! Scheduled reducers on real guests (Rust and Python) with a clock the
//! test sets: when rows run, what they write, cancellation, failure and
//! backoff, determinism, and that replay runs nothing.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};

use interstice_runtime::{Caller, Database, Identity, backoff_micros};
use interstice_store::json::value_to_json;
use interstice_store::{AlgebraicType, Value};
use interstice_tests::{REMINDERS, guest_bytes, manual_clock_config};
use serde_json::{Value as Json, json};

const T0: i64 = 1_700_000_000_000_000;
const MS: i64 = 1_000;

/// A database of `guest` published as `reminders`, on a clock at `T0`.
fn open(dir: &Path, guest: &str) -> (Database, std::sync::Arc<AtomicI64>) {
    let (config, clock) = manual_clock_config(T0);
    let db = Database::open(dir, config).unwrap();
    if db.module_def("reminders").unwrap().is_none() {
        db.publish("reminders", &guest_bytes(guest)).unwrap();
    }
    (db, clock)
}

fn call(db: &Database, reducer: &str, args: Json) -> Result<i64, String> {
    db.call_json("reminders", reducer, &args, &Caller::operator())
        .map(|o| o.timestamp_micros)
        .map_err(|e| e.to_string())
}

fn rows(db: &Database, table: &str) -> Vec<Json> {
    db.rows_json("reminders", table).unwrap()
}

fn ts(micros: i64) -> Json {
    value_to_json(&Value::Timestamp(micros), &AlgebraicType::Timestamp)
}

/// The `at` of every run so far, and the texts, in order.
fn runs(db: &Database) -> Vec<(String, Json)> {
    rows(db, "fired")
        .iter()
        .map(|r| (r["text"].as_str().unwrap().to_string(), r["at"].clone()))
        .collect()
}

fn run_due(db: &Database) -> (usize, usize) {
    let round = db.run_due(64).unwrap();
    (round.ran, round.failed)
}

#[test]
fn one_shot_and_interval_rows_run_at_their_logical_times() {
    for (lang, guest) in REMINDERS {
        let dir = tempfile::tempdir().unwrap();
        let (db, clock) = open(dir.path(), guest);
        let set = |micros: i64| clock.store(micros, Ordering::SeqCst);

        call(&db, "remind_at", json!(["once", T0 + 10 * MS])).unwrap();
        let every_at = call(&db, "remind_every", json!(["every", 5 * MS])).unwrap();
        let first_due = every_at + 5 * MS;
        assert_eq!(db.next_due().unwrap(), Some(first_due), "{lang}");

        set(T0 + 4 * MS);
        assert_eq!(run_due(&db), (0, 0), "{lang}: nothing is due yet");
        set(first_due + 500);
        assert_eq!(run_due(&db), (1, 0), "{lang}");
        // A run is never earlier than its due time: here, the clock's now.
        assert_eq!(runs(&db), [("every".into(), ts(first_due + 500))], "{lang}");

        set(T0 + 10 * MS);
        assert_eq!(run_due(&db), (1, 0), "{lang}: the one-shot row");
        assert_eq!(runs(&db)[1], ("once".into(), ts(T0 + 10 * MS)), "{lang}");
        let left = rows(&db, "reminders");
        assert_eq!(left.len(), 1, "{lang}: a one-shot row is gone once run");
        assert_eq!(left[0]["text"], "every");

        // Down for four periods: the interval runs once, then keeps its
        // phase.
        set(first_due + 4 * 5 * MS + 100);
        assert_eq!(run_due(&db), (1, 0), "{lang}");
        assert_eq!(run_due(&db), (0, 0), "{lang}: missed periods run once");
        assert_eq!(
            db.next_due().unwrap(),
            Some(first_due + 5 * 5 * MS),
            "{lang}"
        );

        // Every run's sender is the module itself; a client may not run
        // the reducer directly.
        let module = Identity::of_module("reminders").to_string();
        assert!(
            rows(&db, "fired")
                .iter()
                .all(|r| r["sender"] == module.as_str())
        );
        let row = &rows(&db, "reminders")[0];
        let e = call(&db, "remind", json!([row])).unwrap_err();
        assert!(
            e.contains("reminders run only when they are due"),
            "{lang}: {e}"
        );

        // Cancelling is deleting the row.
        let id = row["scheduled_id"].as_u64().unwrap();
        call(&db, "cancel", json!([id])).unwrap();
        set(T0 + 1_000 * MS);
        assert_eq!(run_due(&db), (0, 0), "{lang}: a cancelled row never runs");
        assert_eq!(db.next_due().unwrap(), None, "{lang}");
        assert!(rows(&db, "st_schedule").is_empty(), "{lang}");
        let stats = db.schedule_stats().unwrap();
        assert_eq!((stats.runs, stats.failures), (3, 0), "{lang}");
        assert_eq!(stats.lateness_count, 3, "{lang}");
    }
}

#[test]
fn a_failing_row_stays_and_is_retried_with_a_backoff() {
    for (lang, guest) in REMINDERS {
        let dir = tempfile::tempdir().unwrap();
        let (db, clock) = open(dir.path(), guest);
        let set = |micros: i64| clock.store(micros, Ordering::SeqCst);
        call(&db, "close_gate", json!(["g"])).unwrap();
        call(&db, "remind_at", json!(["g", T0 + MS])).unwrap();

        let mut now = T0 + 2 * MS;
        set(now);
        assert_eq!(run_due(&db), (0, 1), "{lang}");
        for failures in 1..=3 {
            let retry = now + backoff_micros(failures);
            assert_eq!(db.next_due().unwrap(), Some(retry), "{lang}");
            // Not before the backoff ends: no hot loop.
            set(retry - 1);
            assert_eq!(run_due(&db), (0, 0), "{lang}");
            now = retry;
            set(now);
            if failures < 3 {
                assert_eq!(run_due(&db), (0, 1), "{lang}: fails again");
            }
        }
        assert_eq!(rows(&db, "reminders").len(), 1, "{lang}: the row stays");
        assert!(runs(&db).is_empty());
        call(&db, "open_gate", json!(["g"])).unwrap();
        assert_eq!(run_due(&db), (1, 0), "{lang}: runs once the gate opens");
        assert_eq!(runs(&db), [("g".into(), ts(now + 1))], "{lang}");
        assert!(rows(&db, "reminders").is_empty(), "{lang}");
        let stats = db.schedule_stats().unwrap();
        assert_eq!((stats.runs, stats.failures), (1, 3), "{lang}");
    }
}

/// The same calls and clock readings on a fresh directory.
fn workload(dir: &Path, guest: &str) {
    let (db, clock) = open(dir, guest);
    let set = |micros: i64| clock.store(micros, Ordering::SeqCst);
    call(&db, "remind_every", json!(["tick", 3 * MS])).unwrap();
    call(&db, "remind_many", json!(["batch", 5, 2 * MS, MS])).unwrap();
    call(&db, "close_gate", json!(["batch 3"])).unwrap();
    for step in 1..=12 {
        set(T0 + step * MS);
        db.run_due(64).unwrap();
        if step == 8 {
            call(&db, "open_gate", json!(["batch 3"])).unwrap();
        }
    }
    set(T0 + 2_000 * MS);
    db.run_due(64).unwrap();
}

fn log_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn the_same_scheduled_workload_writes_the_same_log_twice() {
    for (lang, guest) in REMINDERS {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        workload(a.path(), guest);
        workload(b.path(), guest);
        let (la, lb) = (log_bytes(a.path()), log_bytes(b.path()));
        assert!(!la.is_empty());
        assert!(la == lb, "{lang}: the two logs differ");
    }
}

#[test]
fn replay_runs_nothing_and_keeps_when_each_row_is_due() {
    let (_, guest) = REMINDERS[0];
    let dir = tempfile::tempdir().unwrap();
    let due = {
        let (db, clock) = open(dir.path(), guest);
        let at = call(&db, "remind_every", json!(["tick", 10 * MS])).unwrap();
        call(&db, "remind_at", json!(["later", T0 + 500 * MS])).unwrap();
        clock.store(at + 10 * MS, Ordering::SeqCst);
        assert_eq!(run_due(&db), (1, 0));
        let due = db.next_due().unwrap();
        assert_eq!(due, Some(at + 20 * MS), "the interval moved forward");
        due
    };
    // Reopened long after everything fell due: replay runs no guest and
    // no schedule; the next times are as they were.
    let (config, _clock) = manual_clock_config(T0 + 3_600_000 * MS);
    let db = Database::open(dir.path(), config).unwrap();
    let stats = db.replay_stats();
    assert_eq!(stats.guest_instantiations, 0);
    assert_eq!(stats.guest_calls, 0);
    assert_eq!(db.next_due().unwrap(), due);
    assert_eq!(rows(&db, "fired").len(), 1, "nothing ran at open");
    assert_eq!(rows(&db, "st_schedule").len(), 2);
    // Only when asked: each runs once, missed periods and all.
    assert_eq!(run_due(&db), (2, 0));
    assert_eq!(run_due(&db), (0, 0));
    assert_eq!(rows(&db, "fired").len(), 3);
}

#[test]
fn an_interval_under_a_millisecond_is_refused_with_the_reducer_rolled_back() {
    for (lang, guest) in REMINDERS {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = open(dir.path(), guest);
        let e = call(&db, "remind_every", json!(["fast", 999])).unwrap_err();
        assert!(
            e.contains("the shortest interval is 1000 µs"),
            "{lang}: {e}"
        );
        assert!(rows(&db, "reminders").is_empty(), "{lang}");
        assert!(rows(&db, "st_schedule").is_empty(), "{lang}");
    }
}

#[test]
fn rounds_are_bounded_and_fair_across_modules() {
    let (_, guest) = REMINDERS[0];
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = manual_clock_config(T0);
    let db = Database::open(dir.path(), config).unwrap();
    for name in ["busy", "quiet"] {
        db.publish(name, &guest_bytes(guest)).unwrap();
    }
    let op = Caller::operator();
    db.call_json("busy", "remind_many", &json!(["b", 100, MS, 0]), &op)
        .unwrap();
    db.call_json("quiet", "remind_at", &json!(["q", T0 + MS]), &op)
        .unwrap();
    clock.store(T0 + 10 * MS, Ordering::SeqCst);
    // Ten a round: the quiet module's one row is among the first ten,
    // however many the busy one has.
    let round = db.run_due(10).unwrap();
    assert_eq!(round.ran, 10);
    assert_eq!(db.rows_json("quiet", "fired").unwrap().len(), 1);
    assert_eq!(db.rows_json("busy", "fired").unwrap().len(), 9);
    let mut rounds = 1;
    while db.run_due(10).unwrap().ran > 0 {
        rounds += 1;
    }
    assert_eq!(rounds, 11, "91 rows left: ten rounds of at most ten");
    assert_eq!(db.rows_json("busy", "fired").unwrap().len(), 100);
    assert_eq!(db.next_due().unwrap(), None);
}
