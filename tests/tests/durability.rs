//! State survives closing and reopening, replay runs no guest, and the log
//! refuses to acknowledge what is not durable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use interstice_runtime::fs::fault::{EIO, Fault, FaultFs, Op};
use interstice_runtime::log::{LogConfig, RecoveryMode, TxRecord};
use interstice_runtime::{
    CallError, Database, LOG_DIR, OpenError, REPLAY_REFUSAL, Runner, RuntimeConfig,
};
use interstice_tests::{BANKS, db_with, guest_bytes, guests, test_config};
use serde_json::json;

fn reopen(dir: &Path) -> Database {
    Database::open(dir, test_config()).expect("reopen")
}

fn bank_with_activity() -> (tempfile::TempDir, Database) {
    bank_with_activity_in(guests::BANK)
}

fn bank_with_activity_in(guest: &str) -> (tempfile::TempDir, Database) {
    let (dir, db) = db_with("bank", guest);
    for id in 1..=5 {
        db.call_json(
            "bank",
            "open_account",
            &json!([id, 100 * id]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    }
    for (from, to, amount) in [(1, 2, 50), (5, 1, 400), (3, 4, 1), (2, 3, 150)] {
        db.call_json(
            "bank",
            "transfer",
            &json!([from, to, amount]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    }
    db.call_json(
        "bank",
        "transfer",
        &json!([1, 2, 1_000_000]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap_err();
    (dir, db)
}

#[test]
fn close_and_reopen_gives_identical_state() {
    let (dir, db) = bank_with_activity();
    let state = db.state_json().unwrap();
    let next_tx = db.next_tx_id().expect("not poisoned");
    drop(db);
    let db = reopen(dir.path());
    assert_eq!(db.state_json().unwrap(), state);
    assert_eq!(db.next_tx_id().expect("not poisoned"), next_tx);
    let stats = db.replay_stats();
    assert_eq!(stats.transactions_replayed, next_tx - 1);
    assert_eq!(stats.publications_replayed, 1);
    assert_eq!(stats.rows, 5);
    // The clock goes on: new ids follow, timestamps keep increasing.
    let last_ts = {
        let out = db
            .call_json(
                "bank",
                "deposit",
                &json!([1, 1]),
                &interstice_runtime::Caller::operator(),
            )
            .unwrap();
        assert_eq!(out.tx_id, next_tx);
        out.timestamp_micros
    };
    drop(db);
    let db = reopen(dir.path());
    let out = db
        .call_json(
            "bank",
            "deposit",
            &json!([1, 1]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    assert_eq!(out.tx_id, next_tx + 1);
    assert!(out.timestamp_micros > last_ts);
}

/// Auto-increment counters, unique and btree indexes are rebuilt; the
/// ephemeral table comes back empty.
#[test]
fn chat_indexes_counters_and_ephemeral_tables_after_reopen() {
    let (dir, db) = db_with("chat", guests::CHAT);
    db.call_json(
        "chat",
        "register",
        &json!(["ann", null]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    db.call_json(
        "chat",
        "register",
        &json!(["bob", "hi"]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    for i in 0..3 {
        db.call_json(
            "chat",
            "send",
            &json!(["ann", "general", format!("m{i}")]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    }
    db.call_json(
        "chat",
        "start_typing",
        &json!(["bob", "general"]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    assert_eq!(db.rows_json("chat", "typing").unwrap().len(), 1);
    let mut state = db.state_json().unwrap();
    drop(db);
    let db = reopen(dir.path());
    assert!(db.rows_json("chat", "typing").unwrap().is_empty());
    state["chat"]["typing"]["rows"] = json!([]);
    assert_eq!(db.state_json().unwrap(), state);
    // The unique index on user names holds after replay.
    let err = db
        .call_json(
            "chat",
            "register",
            &json!(["ann", null]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("ann"), "{err}");
    // The next message id follows the replayed ones.
    db.call_json(
        "chat",
        "send",
        &json!(["bob", "general", "after"]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    let messages = db.rows_json("chat", "messages").unwrap();
    let ids: Vec<u64> = messages.iter().map(|m| m["id"].as_u64().unwrap()).collect();
    // 1 is the init reducer's welcome, logged with the publication.
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
}

/// The replay test: the module's code deleted (and, separately, replaced
/// with garbage), the state still comes back, and no guest was instantiated,
/// called or given fuel during replay. For every bank: Rust (both targets)
/// and Python.
#[test]
fn replay_runs_no_guest_even_without_the_modules_code() {
    for ((language, guest), damage) in BANKS.iter().flat_map(|b| [(b, "delete"), (b, "garbage")]) {
        let (dir, db) = bank_with_activity_in(guest);
        let state = db.state_json().unwrap();
        drop(db);
        let wasm = dir.path().join("modules/bank.wasm");
        match damage {
            "delete" => std::fs::remove_file(&wasm).unwrap(),
            _ => std::fs::write(&wasm, b"\0asm garbage garbage").unwrap(),
        }
        let db = reopen(dir.path());
        assert_eq!(db.state_json().unwrap(), state, "{language} {damage}");
        let stats = db.replay_stats();
        assert!(stats.transactions_replayed > 5);
        assert_eq!(
            (
                stats.guest_instantiations,
                stats.guest_calls,
                stats.fuel_consumed
            ),
            (0, 0, 0),
            "{damage}"
        );
        let counters = db.counters();
        assert_eq!(
            (
                counters.guest_instantiations,
                counters.guest_calls,
                counters.fuel_consumed
            ),
            (0, 0, 0)
        );
        let err = db
            .call_json(
                "bank",
                "deposit",
                &json!([1, 1]),
                &interstice_runtime::Caller::operator(),
            )
            .unwrap_err();
        assert!(matches!(err, CallError::NotLoaded { .. }), "{err}");
        assert_eq!(db.state_json().unwrap(), state);
    }
}

#[test]
fn only_the_first_call_after_replay_instantiates_the_guest() {
    let (dir, db) = bank_with_activity();
    drop(db);
    let db = reopen(dir.path());
    assert_eq!(db.counters().guest_instantiations, 0);
    db.call_json(
        "bank",
        "deposit",
        &json!([1, 1]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    assert_eq!(db.counters().guest_instantiations, 1);
    db.call_json(
        "bank",
        "deposit",
        &json!([1, 1]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    assert_eq!(db.counters().guest_instantiations, 1);
}

/// The runtime half of the guard: while the replay phase is up, a guest can
/// be neither instantiated nor called, and the counters do not move.
#[test]
fn the_replay_guard_refuses_guests() {
    let (_dir, db) = db_with("bank", guests::BANK);
    let host = db.host();
    let mut runner = Runner::compile(host, &guest_bytes(guests::BANK)).unwrap();
    let before = db.counters();
    {
        let _phase = host.replay_guard().enter();
        let err = runner.describe().unwrap_err();
        assert!(err.to_string().contains(REPLAY_REFUSAL), "{err}");
        let err = db
            .call_json(
                "bank",
                "open_account",
                &json!([1, 1]),
                &interstice_runtime::Caller::operator(),
            )
            .unwrap_err();
        assert!(err.to_string().contains(REPLAY_REFUSAL), "{err}");
    }
    assert_eq!(db.counters(), before);
    assert!(runner.describe().is_ok());
    db.call_json(
        "bank",
        "open_account",
        &json!([1, 1]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let (dir, db) = db_with("bank", guests::BANK);
    let err = Database::open(dir.path(), test_config()).err().unwrap();
    assert!(matches!(err, OpenError::Locked { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("(pid {})", std::process::id())),
        "{err}"
    );
    drop(db);
    Database::open(dir.path(), test_config()).expect("free again once closed");
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir.join(LOG_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    out.sort();
    out
}

fn config(mode: RecoveryMode, segment_bytes_max: u64) -> RuntimeConfig {
    RuntimeConfig {
        log: LogConfig {
            recovery: mode,
            segment_bytes_max,
            ..LogConfig::default()
        },
        ..test_config()
    }
}

#[test]
fn rotation_and_replay_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(RecoveryMode::TolerateTail, 4096);
    let db = Database::open(dir.path(), cfg.clone()).unwrap();
    db.publish("counter", &guest_bytes(guests::COUNTER))
        .unwrap();
    for i in 0..400 {
        db.call_json(
            "counter",
            "increment",
            &json!([format!("c{}", i % 7)]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    }
    let state = db.state_json().unwrap();
    drop(db);
    assert!(segment_files(dir.path()).len() >= 5);
    let db = Database::open(dir.path(), cfg).unwrap();
    assert_eq!(db.state_json().unwrap(), state);
    assert_eq!(db.replay_stats().segments, segment_files(dir.path()).len());
}

/// A bit flip in a middle record: refused by default with the file and
/// offset; point-in-time recovery opens the state before it.
#[test]
fn a_damaged_middle_record_refuses_the_open_unless_told_otherwise() {
    let (dir, db) = bank_with_activity();
    drop(db);
    let seg = segment_files(dir.path()).remove(0);
    let mut offsets = Vec::new();
    interstice_runtime::log::scan(
        &interstice_runtime::log::RealFs,
        &dir.path().join(LOG_DIR),
        &mut |r| {
            offsets.push((r.tx_id, r.offset));
            Ok(())
        },
    )
    .unwrap();
    let (tx, offset) = offsets[4];
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[offset as usize + 30] ^= 0x04;
    std::fs::write(&seg, bytes).unwrap();

    let err = Database::open(dir.path(), test_config()).err().unwrap();
    let text = err.to_string();
    assert!(text.contains(&seg.display().to_string()), "{text}");
    assert!(text.contains(&format!("offset {offset}")), "{text}");
    assert!(text.contains("checksum"), "{text}");

    let db = Database::open(dir.path(), config(RecoveryMode::PointInTime, 64 << 20)).unwrap();
    assert_eq!(db.replay_stats().last_tx_id, Some(tx - 1));
    assert_eq!(db.next_tx_id().expect("not poisoned"), tx);
    assert_eq!(db.replay_stats().quarantined.len(), 1);
    drop(db);
    // Repaired: the default mode opens it now.
    Database::open(dir.path(), test_config()).unwrap();
}

/// The log's fsync fails while many callers are committing: callers are
/// told of the failure, not success; later calls are refused; after a power
/// loss every acknowledged deposit is there, and nothing else is lost from
/// the acknowledged prefix.
#[test]
fn fsync_failure_under_concurrent_callers_never_acknowledges_lost_work() {
    for fail_at in [4u64, 7, 12] {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::new();
        let cfg = RuntimeConfig {
            storage: Arc::new(fs.clone()),
            ..test_config()
        };
        let db = Database::open(dir.path(), cfg.clone()).unwrap();
        db.publish("bank", &guest_bytes(guests::BANK)).unwrap();
        const THREADS: u64 = 4;
        for id in 0..THREADS {
            db.call_json(
                "bank",
                "open_account",
                &json!([id, 0]),
                &interstice_runtime::Caller::operator(),
            )
            .unwrap();
        }
        fs.inject(Fault::error(Op::Sync, EIO).nth(fail_at));
        // Per caller: the tx ids it was acknowledged, and how many of its
        // calls failed (their outcome is unknown: the record may or may not
        // have reached the disk).
        let outcomes: Vec<(Vec<u64>, u64)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|id| {
                    let db = &db;
                    s.spawn(move || {
                        let (mut acked, mut failed) = (Vec::new(), 0);
                        for _ in 0..50 {
                            match db.call_json(
                                "bank",
                                "deposit",
                                &json!([id, 1]),
                                &interstice_runtime::Caller::operator(),
                            ) {
                                Ok(outcome) => acked.push(outcome.tx_id),
                                Err(CallError::Durability(_)) => failed += 1,
                                Err(e) => panic!("unexpected error: {e}"),
                            }
                        }
                        (acked, failed)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(fs.injected(), 1, "fail at {fail_at}");
        let acked_total: usize = outcomes.iter().map(|(a, _)| a.len()).sum();
        assert!(acked_total < (THREADS * 50) as usize);
        let err = db
            .call_json(
                "bank",
                "deposit",
                &json!([0, 1]),
                &interstice_runtime::Caller::operator(),
            )
            .unwrap_err();
        assert!(matches!(err, CallError::Durability(_)), "{err}");
        assert!(err.to_string().contains("reopen"), "{err}");
        drop(db);

        for torn in [0, 5, usize::MAX] {
            let crashed = fs.crash(torn);
            let cfg = RuntimeConfig {
                storage: Arc::new(crashed.clone()),
                ..test_config()
            };
            let db = Database::open(dir.path(), cfg).unwrap();
            let recovered = db.next_tx_id().unwrap() - 1;
            let rows = db.rows_json("bank", "accounts").unwrap();
            drop(db);
            // The deposits the recovered log holds, by tx id: the state is
            // exactly theirs, every acknowledged one is among them, and the
            // others are at most the calls that failed.
            let mut logged = std::collections::BTreeMap::new();
            interstice_runtime::log::scan(&crashed, &dir.path().join(LOG_DIR), &mut |rec| {
                let tx = TxRecord::decode(rec.payload).map_err(|e| e.to_string())?;
                if tx.header.reducer == "deposit" {
                    let account = u64::from_le_bytes(tx.header.args[..8].try_into().unwrap());
                    logged.insert(rec.tx_id, account);
                }
                Ok(())
            })
            .unwrap();
            let what = format!("fail at {fail_at}, torn {torn}, recovered up to {recovered}");
            for (id, (acked, failed)) in outcomes.iter().enumerate() {
                let id = id as u64;
                let mine = logged.values().filter(|a| **a == id).count() as u64;
                assert_eq!(
                    rows[id as usize]["balance"].as_u64(),
                    Some(mine),
                    "{what}: account {id} does not hold its logged deposits"
                );
                for tx in acked {
                    assert_eq!(
                        logged.get(tx),
                        Some(&id),
                        "{what}: acknowledged deposit tx {tx} of account {id} is lost"
                    );
                }
                assert!(
                    mine <= acked.len() as u64 + failed,
                    "{what}: account {id} holds {mine} deposits; {} were acknowledged and {failed} failed",
                    acked.len()
                );
            }
        }
    }
}

/// Many callers at once (most of them queued for whoever holds the
/// database): each call commits exactly once, gets its own tx id, and the
/// state after reopening is the same. On a disk whose syncs take 2 ms (a
/// fault file system that delays them, so that the check does not depend
/// on this machine's disk), they share syncs: group commit.
#[test]
fn concurrent_callers_each_commit_exactly_once() {
    const THREADS: u64 = 16;
    const CALLS: u64 = 60;
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::new();
    fs.slow_syncs(std::time::Duration::from_millis(2));
    let cfg = RuntimeConfig {
        storage: Arc::new(fs.clone()),
        ..test_config()
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
    let first = db.next_tx_id().expect("not poisoned");
    let syncs_before = db.log().stats().syncs;
    let mut tx_ids: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|id| {
                let db = &db;
                s.spawn(move || {
                    let mut ids = Vec::new();
                    for i in 0..CALLS {
                        let out = db
                            .call_json(
                                "bank",
                                "deposit",
                                &json!([id, i + 1]),
                                &interstice_runtime::Caller::operator(),
                            )
                            .unwrap();
                        ids.push(out.tx_id);
                    }
                    // A refusal on the contended path reaches its caller.
                    let err = db
                        .call_json(
                            "bank",
                            "deposit",
                            &json!([999, 1]),
                            &interstice_runtime::Caller::operator(),
                        )
                        .unwrap_err();
                    assert_eq!(err.to_string(), "account 999 does not exist");
                    ids
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    tx_ids.sort();
    let expected: Vec<u64> = (first..first + THREADS * CALLS).collect();
    assert_eq!(tx_ids, expected, "every call got its own tx id, none lost");
    // Group commit: with 16 callers waiting on 2 ms syncs, a sync covers
    // at least 4 transactions on average.
    let syncs = db.log().stats().syncs - syncs_before;
    assert!(
        syncs * 4 <= THREADS * CALLS,
        "{syncs} fsyncs for {} transactions",
        THREADS * CALLS
    );
    let rows = db.rows_json("bank", "accounts").unwrap();
    for row in &rows {
        assert_eq!(row["balance"], CALLS * (CALLS + 1) / 2, "{row}");
    }
    let state = db.state_json().unwrap();
    drop(db);
    fs.slow_syncs(std::time::Duration::ZERO);
    let again = Database::open(dir.path(), cfg).unwrap();
    assert_eq!(again.state_json().unwrap(), state);
}

/// One caller at a time (each writing and syncing its own record): a failed
/// fsync fails that call, refuses the next, and loses nothing acknowledged.
#[test]
fn fsync_failure_for_a_single_caller() {
    for fail_at in [1u64, 2, 5] {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::new();
        let cfg = RuntimeConfig {
            storage: Arc::new(fs.clone()),
            ..test_config()
        };
        let db = Database::open(dir.path(), cfg).unwrap();
        db.publish("bank", &guest_bytes(guests::BANK)).unwrap();
        db.call_json(
            "bank",
            "open_account",
            &json!([1, 0]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
        fs.inject(Fault::error(Op::Sync, EIO).nth(fail_at));
        let mut acked = 0;
        let err = loop {
            match db.call_json(
                "bank",
                "deposit",
                &json!([1, 1]),
                &interstice_runtime::Caller::operator(),
            ) {
                Ok(_) => acked += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(acked, fail_at - 1);
        assert!(matches!(err, CallError::Durability(_)), "{err}");
        let again = db
            .call_json(
                "bank",
                "deposit",
                &json!([1, 1]),
                &interstice_runtime::Caller::operator(),
            )
            .unwrap_err();
        assert!(matches!(again, CallError::Durability(_)), "{again}");
        drop(db);
        // The failed call's outcome is unknown, as after any failed fsync:
        // its record reached the file but not necessarily the disk. A power
        // loss keeps it or not; everything acknowledged is there either way.
        for (torn, balances) in [(0, acked..=acked), (usize::MAX, acked..=acked + 1)] {
            let cfg = RuntimeConfig {
                storage: Arc::new(fs.crash(torn)),
                ..test_config()
            };
            let db = Database::open(dir.path(), cfg).unwrap();
            let rows = db.rows_json("bank", "accounts").unwrap();
            let balance = rows[0]["balance"].as_u64().unwrap();
            assert!(
                balances.contains(&balance),
                "fail at {fail_at}, torn {torn}: {balance}"
            );
        }
    }
}
