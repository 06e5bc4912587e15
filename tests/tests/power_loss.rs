//! Deterministic power-loss simulation.
//!
//! A seeded workload of reducer calls on two modules (bank transfers and
//! deposits, chat registrations, messages and channel clears), with
//! snapshots and retention now and then, runs on a database whose files
//! live on [`FaultFs`], which keeps an image of the file system before
//! every sync. Each image, crashed with several torn lengths
//! of its unsynced bytes, is one moment a power loss could have hit: at a
//! sync boundary (nothing unsynced kept) or part-way through the write
//! before it. After each crash the database must open, and hold exactly the
//! state after some prefix of the committed transactions that contains
//! every transaction acknowledged before the crash.
//!
//! `INTERSTICE_SEED` replays a seed exactly; `INTERSTICE_POWER_LOSS_SEEDS`
//! runs more seeds (the long mode), `INTERSTICE_POWER_LOSS_CALLS` longer
//! workloads.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use interstice_runtime::fs::fault::FaultFs;
use interstice_runtime::{Database, RuntimeConfig, SnapshotConfig};
use interstice_tests::rng::{next, seed};
use interstice_tests::{fault_config, guest_bytes, guests};
use serde_json::{Value, json};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The data directory on `fs`; snapshots when the workload takes them, two
/// kept, so retention removes snapshots and segments as it goes.
fn config(fs: &FaultFs) -> RuntimeConfig {
    fault_config(fs, 2)
}

/// What the workload committed: the state after each transaction.
struct Run {
    states: BTreeMap<u64, Value>,
    images: Vec<interstice_runtime::fs::fault::CrashImage>,
    failed_calls: u64,
    snapshots: u64,
}

/// One call of the workload, chosen by `r`.
fn call(db: &Database, r: &mut u64, users: &mut Vec<String>) -> Option<u64> {
    let pick = next(r) % 100;
    let channel = ["general", "random", "ops"][(next(r) % 3) as usize];
    let result = match pick {
        0..=44 => db.call_json(
            "bank",
            "transfer",
            &json!([next(r) % 12, next(r) % 12, next(r) % 400]),
            &interstice_runtime::Caller::operator(),
        ),
        45..=59 => db.call_json(
            "bank",
            "deposit",
            &json!([next(r) % 12, next(r) % 50]),
            &interstice_runtime::Caller::operator(),
        ),
        60..=79 => {
            let user = &users[(next(r) % users.len() as u64) as usize];
            let text = "m".repeat((next(r) % 200) as usize);
            db.call_json(
                "chat",
                "send",
                &json!([user, channel, text]),
                &interstice_runtime::Caller::operator(),
            )
        }
        80..=94 => {
            // Sometimes a name that is taken: the call fails.
            let name = format!("u{}", next(r) % 40);
            let result = db.call_json(
                "chat",
                "register",
                &json!([name, null]),
                &interstice_runtime::Caller::operator(),
            );
            if result.is_ok() {
                users.push(name);
            }
            result
        }
        _ => db.call_json(
            "chat",
            "clear_channel",
            &json!([channel]),
            &interstice_runtime::Caller::operator(),
        ),
    };
    result.ok().map(|o| o.tx_id)
}

fn run_workload(dir: &Path, fs: &FaultFs, seed: u64, calls: u64) -> Run {
    let db = Database::open(dir, config(fs)).unwrap();
    let mut states = BTreeMap::new();
    fs.record_before_sync();
    for (name, guest) in [("bank", guests::BANK), ("chat", guests::CHAT)] {
        let tx = db
            .publish(name, &guest_bytes(guest))
            .unwrap()
            .tx_id
            .unwrap();
        states.insert(tx, db.state_json().unwrap());
        fs.set_label(tx);
    }
    for id in 0..10u64 {
        let tx = db
            .call_json(
                "bank",
                "open_account",
                &json!([id, 500]),
                &interstice_runtime::Caller::operator(),
            )
            .unwrap()
            .tx_id;
        states.insert(tx, db.state_json().unwrap());
        fs.set_label(tx);
    }
    let mut r = seed;
    let mut users = vec!["system".to_string()];
    let mut failed_calls = 0;
    let mut snapshots = 0;
    for _ in 0..calls {
        match call(&db, &mut r, &mut users) {
            Some(tx) => {
                // Acknowledged: durable from here on.
                states.insert(tx, db.state_json().unwrap());
                fs.set_label(tx);
            }
            None => failed_calls += 1,
        }
        // Now and then a snapshot, and with it retention: a power loss
        // can hit any of their writes, syncs, renames and removals too.
        if next(&mut r).is_multiple_of(30) && db.snapshot().unwrap().is_some() {
            snapshots += 1;
        }
    }
    drop(db);
    Run {
        states,
        images: fs.take_images(),
        failed_calls,
        snapshots,
    }
}

/// Torn lengths to crash an image with: none, all, and a few in between.
fn torn_lengths(unsynced: usize, r: &mut u64) -> Vec<usize> {
    let mut out = vec![0, unsynced];
    if unsynced > 2 {
        out.extend([1, unsynced / 2, unsynced - 1]);
        out.push(1 + (next(r) % (unsynced as u64 - 1)) as usize);
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[derive(Default)]
struct Tally {
    crash_points: u64,
    in_flight_recovered: u64,
    acknowledged_checked: u64,
    writes_after_recovery: u64,
    snapshots: u64,
    from_snapshot: u64,
}

fn simulate(seed: u64, calls: u64, tally: &mut Tally) {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::new();
    let run = run_workload(dir.path(), &fs, seed, calls);
    assert!(run.images.len() as u64 > calls / 2, "a sync per commit");
    let mut r = seed ^ 0x5eed;
    for (i, image) in run.images.iter().enumerate() {
        for torn in torn_lengths(image.unsynced_max, &mut r) {
            let crashed = image.fs.crash(torn);
            let db = Database::open(dir.path(), config(&crashed)).unwrap_or_else(|e| {
                panic!("seed {seed}: image {i}, torn {torn}: the database does not open: {e}")
            });
            let recovered = db.next_tx_id().expect("not poisoned") - 1;
            let acknowledged = image.label;
            // Nothing acknowledged is lost; at most the one record being
            // synced is there beyond it.
            assert!(
                recovered >= acknowledged,
                "seed {seed}: image {i}, torn {torn}: acknowledged tx {acknowledged} lost (recovered up to {recovered})"
            );
            assert!(
                recovered <= acknowledged + 1,
                "seed {seed}: image {i}, torn {torn}: recovered {recovered} past the record in flight"
            );
            // Exactly the state after that prefix: nothing silently different.
            let expected = match recovered {
                0 => json!({}),
                t => run.states[&t].clone(),
            };
            assert_eq!(
                db.state_json().unwrap(),
                expected,
                "seed {seed}: image {i}, torn {torn}: state after tx {recovered} differs"
            );
            assert_eq!(db.replay_stats().guest_instantiations, 0);
            // A crash never leaves a damaged snapshot under its own name.
            assert_eq!(
                db.replay_stats().snapshots_rejected,
                Vec::<String>::new(),
                "seed {seed}: image {i}, torn {torn}"
            );
            tally.crash_points += 1;
            tally.from_snapshot += u64::from(db.replay_stats().snapshot_tx_id.is_some());
            tally.acknowledged_checked += acknowledged;
            tally.in_flight_recovered += u64::from(recovered > acknowledged);
            // Every so often: the recovered log takes new writes, and they
            // survive the next crash.
            if i % 16 == 0 && recovered >= 2 {
                let text = format!("after image {i}, torn {torn}");
                let tx = db
                    .call_json(
                        "chat",
                        "send",
                        &json!(["system", "general", text]),
                        &interstice_runtime::Caller::operator(),
                    )
                    .unwrap()
                    .tx_id;
                assert_eq!(tx, recovered + 1);
                let written = db.state_json().unwrap();
                drop(db);
                let again = Database::open(dir.path(), config(&crashed.crash(0))).unwrap();
                assert_eq!(again.next_tx_id().expect("not poisoned") - 1, tx);
                // The write's data, not only its id: the whole state is the
                // one it left, its message among the rows.
                let state = again.state_json().unwrap();
                assert_eq!(
                    state, written,
                    "seed {seed}: image {i}, torn {torn}: the write after recovery came back different"
                );
                assert!(
                    state["chat"]["messages"]["rows"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|m| m["text"] == text),
                    "seed {seed}: image {i}, torn {torn}: the message written after recovery is gone"
                );
                tally.writes_after_recovery += 1;
            }
        }
    }
    assert!(run.failed_calls > 0, "the workload includes failing calls");
    tally.snapshots += run.snapshots;
}

#[test]
fn power_loss_at_every_sync_and_in_between_keeps_an_acknowledged_prefix() {
    let seeds = env_or("INTERSTICE_POWER_LOSS_SEEDS", 2);
    let calls = env_or("INTERSTICE_POWER_LOSS_CALLS", 120);
    let first = seed();
    let mut tally = Tally::default();
    for k in 0..seeds {
        let seed = first.wrapping_add(k);
        eprintln!("power-loss simulation: INTERSTICE_SEED={seed}, {calls} calls");
        simulate(seed, calls, &mut tally);
    }
    eprintln!(
        "power-loss simulation: {} crash points, {} with the in-flight record recovered, {} acknowledged transactions checked, {} writes after recovery, {} snapshots taken, {} recoveries from a snapshot; 0 losses, 0 differences",
        tally.crash_points,
        tally.in_flight_recovered,
        tally.acknowledged_checked,
        tally.writes_after_recovery,
        tally.snapshots,
        tally.from_snapshot
    );
    assert!(tally.in_flight_recovered > 0);
    assert!(tally.snapshots > 0, "the workload took snapshots");
    assert!(tally.from_snapshot > 0, "some recoveries started from one");
}

/// Power loss under concurrent callers sharing fsyncs (group commit) while
/// automatic snapshots are built on their own thread. Thread timing is not
/// replayable, so instead of a state per transaction each caller deposits
/// into its own account and records the ids it was acknowledged: after
/// each crash, recovered up to tx L, every account must hold exactly its
/// deposits with ids up to L, and every id acknowledged before the image
/// must be at most L.
#[test]
fn power_loss_under_concurrent_callers_and_background_snapshots() {
    const THREADS: u64 = 4;
    let calls = env_or("INTERSTICE_POWER_LOSS_CALLS", 120);
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::new();
    let cfg = RuntimeConfig {
        snapshots: SnapshotConfig {
            every_tx: 40,
            every_log_bytes: 0,
            keep: 2,
            archive_dir: None,
        },
        ..config(&fs)
    };
    let db = Database::open(dir.path(), cfg.clone()).unwrap();
    db.publish("bank", &guest_bytes(guests::BANK)).unwrap();
    for id in 0..THREADS {
        db.call_json(
            "bank",
            "open_account",
            &json!([id, 0]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    }
    let setup = db.next_tx_id().expect("not poisoned") - 1;
    fs.set_label(0);
    fs.record_before_sync();
    // Acknowledged ids in the order callers learnt of them; an image's
    // label is how many of them were known when it was taken.
    let acked = std::sync::Mutex::new(Vec::<u64>::new());
    let per_thread: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|id| {
                let (db, fs, acked) = (&db, &fs, &acked);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for _ in 0..calls {
                        let tx = db
                            .call_json(
                                "bank",
                                "deposit",
                                &json!([id, 1]),
                                &interstice_runtime::Caller::operator(),
                            )
                            .unwrap()
                            .tx_id;
                        mine.push(tx);
                        let mut acked = acked.lock().unwrap();
                        acked.push(tx);
                        fs.set_label(acked.len() as u64);
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let last = db.next_tx_id().expect("not poisoned") - 1;
    drop(db);
    let images = fs.take_images();
    let acked = acked.into_inner().unwrap();
    let seed = seed();
    let mut r = seed;
    let (mut points, mut from_snapshot) = (0u64, 0u64);
    for (i, image) in images.iter().enumerate() {
        let required = acked[..image.label as usize]
            .iter()
            .copied()
            .max()
            .unwrap_or(setup);
        for torn in torn_lengths(image.unsynced_max, &mut r) {
            let crashed = image.fs.crash(torn);
            let db = Database::open(
                dir.path(),
                RuntimeConfig {
                    storage: Arc::new(crashed),
                    ..cfg.clone()
                },
            )
            .unwrap_or_else(|e| panic!("seed {seed}: image {i}, torn {torn}: does not open: {e}"));
            let recovered = db.next_tx_id().expect("not poisoned") - 1;
            assert!(
                recovered >= required && recovered <= last,
                "seed {seed}: image {i}, torn {torn}: recovered up to {recovered}; {required} was acknowledged"
            );
            let rows = db.rows_json("bank", "accounts").unwrap();
            for (id, mine) in per_thread.iter().enumerate() {
                let expected = mine.iter().filter(|t| **t <= recovered).count() as u64;
                assert_eq!(
                    rows[id]["balance"].as_u64(),
                    Some(expected),
                    "seed {seed}: image {i}, torn {torn}: account {id} after tx {recovered}"
                );
            }
            assert_eq!(
                db.replay_stats().snapshots_rejected,
                Vec::<String>::new(),
                "seed {seed}: image {i}, torn {torn}"
            );
            points += 1;
            from_snapshot += u64::from(db.replay_stats().snapshot_tx_id.is_some());
        }
    }
    eprintln!(
        "concurrent power-loss simulation: INTERSTICE_SEED={seed}, {} images, {points} crash points, {from_snapshot} recoveries from a snapshot, {} acknowledged deposits; 0 losses",
        images.len(),
        acked.len()
    );
    assert!(
        from_snapshot > 0,
        "seed {seed}: background snapshots were taken and used"
    );
}
