//! Snapshots: opening from a snapshot plus the log after it equals replaying
//! the whole log; a damaged snapshot is passed over; retention keeps disk
//! use bounded; the replay guard covers loading a snapshot.

use std::path::Path;

use interstice_runtime::fs::RealFs;
use interstice_runtime::log::{LogConfig, SyncPolicy};
use interstice_runtime::{
    Database, LOG_DIR, MODULES_DIR, RuntimeConfig, SNAPSHOTS_DIR, SnapshotConfig,
};
use interstice_tests::{guest_bytes, guests, test_config};
use serde_json::{Value, json};

/// No automatic snapshots: the tests take them when they want them.
fn manual() -> RuntimeConfig {
    RuntimeConfig {
        snapshots: SnapshotConfig {
            every_tx: 0,
            every_log_bytes: 0,
            ..SnapshotConfig::default()
        },
        ..test_config()
    }
}

fn open(dir: &Path, config: RuntimeConfig) -> Database {
    Database::open(dir, config).unwrap_or_else(|e| panic!("open: {e}"))
}

/// Bank and chat, with some activity in each.
fn activity(db: &Database, round: u64) {
    for i in 0..20 {
        let id = round * 100 + i;
        db.call_json(
            "bank",
            "open_account",
            &json!([id, 1_000]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
        db.call_json(
            "bank",
            "transfer",
            &json!([id, round * 100, 7]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    }
    db.call_json(
        "chat",
        "register",
        &json!([format!("u{round}"), null]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    for i in 0..5 {
        db.call_json(
            "chat",
            "send",
            &json!([format!("u{round}"), "general", format!("m{round}.{i}")]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    }
}

fn published(config: RuntimeConfig) -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), config);
    db.publish("bank", &guest_bytes(guests::BANK)).unwrap();
    db.publish("chat", &guest_bytes(guests::CHAT)).unwrap();
    (dir, db)
}

/// Table by table, so a difference names its table.
fn assert_same_state(a: &Value, b: &Value, what: &str) {
    let (a, b) = (a.as_object().unwrap(), b.as_object().unwrap());
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{what}: modules"
    );
    for (module, tables) in a {
        for (table, content) in tables.as_object().unwrap() {
            assert_eq!(
                Some(content),
                b[module].get(table),
                "{what}: table {module}.{table}"
            );
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn snapshot_plus_suffix_equals_full_replay() {
    let (dir, db) = published(manual());
    activity(&db, 1);
    let info = db.snapshot().unwrap().expect("a new snapshot");
    assert_eq!(info.tx_id, db.next_tx_id().expect("not poisoned") - 1);
    assert_eq!(info.modules, 2);
    assert!(info.rows > 20, "{info:?}");
    assert!(db.snapshot().unwrap().is_none(), "nothing new to snapshot");
    activity(&db, 2);
    let state = db.state_json().unwrap();
    let next_tx = db.next_tx_id().expect("not poisoned");
    drop(db);

    // Without the code: the snapshot is loaded and the log replayed with no
    // guest at all.
    std::fs::remove_dir_all(dir.path().join(MODULES_DIR)).unwrap();
    let db = open(dir.path(), manual());
    let stats = db.replay_stats().clone();
    assert_eq!(stats.snapshot_tx_id, Some(info.tx_id));
    assert_eq!(stats.snapshot_rows, info.rows);
    assert_eq!(stats.transactions_replayed, next_tx - 1 - info.tx_id);
    assert_eq!(
        (
            stats.guest_instantiations,
            stats.guest_calls,
            stats.fuel_consumed
        ),
        (0, 0, 0)
    );
    assert_same_state(&db.state_json().unwrap(), &state, "snapshot + suffix");
    assert_eq!(db.next_tx_id().expect("not poisoned"), next_tx);
    assert_eq!(db.module_version("bank").expect("not poisoned"), Some(1));
    drop(db);

    // The same directory without its snapshots replays the whole log.
    let full = tempfile::tempdir().unwrap();
    copy_tree(dir.path(), full.path());
    std::fs::remove_dir_all(full.path().join(SNAPSHOTS_DIR)).unwrap();
    let db = open(full.path(), manual());
    assert_eq!(db.replay_stats().snapshot_tx_id, None);
    assert_eq!(db.replay_stats().transactions_replayed, next_tx - 1);
    assert_same_state(&db.state_json().unwrap(), &state, "full replay");
}

#[test]
fn damaged_newest_snapshot_falls_back_to_the_older_one() {
    let (dir, db) = published(manual());
    activity(&db, 1);
    let older = db.snapshot().unwrap().unwrap();
    activity(&db, 2);
    let newer = db.snapshot().unwrap().unwrap();
    activity(&db, 3);
    let state = db.state_json().unwrap();
    drop(db);

    let len = std::fs::metadata(&newer.path).unwrap().len();
    let mut bytes = std::fs::read(&newer.path).unwrap();
    bytes[len as usize / 2] ^= 0x04;
    std::fs::write(&newer.path, bytes).unwrap();
    let db = open(dir.path(), manual());
    let stats = db.replay_stats();
    assert_eq!(stats.snapshot_tx_id, Some(older.tx_id));
    assert_eq!(stats.snapshots_rejected.len(), 1, "{stats:?}");
    assert!(
        stats.snapshots_rejected[0].contains(&newer.path.display().to_string()),
        "{:?}",
        stats.snapshots_rejected
    );
    assert_same_state(&db.state_json().unwrap(), &state, "older snapshot");
    drop(db);

    // Neither readable: the whole log is replayed.
    std::fs::write(&older.path, b"not a snapshot").unwrap();
    let db = open(dir.path(), manual());
    assert_eq!(db.replay_stats().snapshot_tx_id, None);
    assert_eq!(db.replay_stats().snapshots_rejected.len(), 2);
    assert_same_state(&db.state_json().unwrap(), &state, "whole log");
}

/// A hundred thousand transactions through small segments and frequent
/// snapshots: the data directory stops growing, and what is left opens to
/// the same state.
#[test]
fn retention_keeps_disk_use_bounded() {
    let config = RuntimeConfig {
        log: LogConfig {
            // Disk use, not durability, is under test here.
            sync: SyncPolicy::Never,
            segment_bytes_max: 64 << 10,
            ..LogConfig::default()
        },
        snapshots: SnapshotConfig {
            every_tx: 5_000,
            every_log_bytes: 0,
            keep: 3,
            archive_dir: None,
        },
        ..test_config()
    };
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), config.clone());
    db.publish("bank", &guest_bytes(guests::BANK)).unwrap();
    for id in 0..100 {
        db.call_json(
            "bank",
            "open_account",
            &json!([id, 1_000]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    }
    let deposit = db.resolve_reducer("bank", "deposit").unwrap();
    let mut sizes = Vec::new();
    for i in 0..100_000u64 {
        let args: Vec<u8> = [i % 100, 1 + i % 5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        db.call_encoded(
            "bank",
            deposit,
            &args,
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
        if i % 10_000 == 9_999 {
            sizes.push(disk_use(dir.path()));
        }
    }
    let state = db.state_json().unwrap();
    let last = db.last_automatic_snapshot().expect("snapshots were taken");
    let last = last.unwrap_or_else(|e| panic!("automatic snapshot failed: {e}"));
    drop(db);
    eprintln!("disk use every 10,000 transactions: {sizes:?}");
    // Growth stops: after the first 20,000 transactions, no measurement is
    // above twice the one at 20,000 (100,000 transactions of log alone
    // would be about five times it).
    let bound = 2 * sizes[1];
    assert!(sizes[2..].iter().all(|s| *s <= bound), "{sizes:?}");
    let snapshots = std::fs::read_dir(dir.path().join(SNAPSHOTS_DIR))
        .unwrap()
        .count();
    assert!(snapshots <= 3, "{snapshots} snapshots kept");
    assert!(last.tx_id > 90_000, "{last:?}");

    let db = open(dir.path(), config);
    assert!(db.replay_stats().snapshot_tx_id.is_some());
    assert_same_state(&db.state_json().unwrap(), &state, "after retention");
    drop(db);

    // The log tools work on what retention left: verify replays from the
    // oldest kept snapshot; inspect and dump take the definitions from it.
    use interstice_runtime::tools;
    let report = tools::verify(&RealFs, dir.path(), &mut |_, _| {}).unwrap();
    assert!(report.intact(), "{report:?}");
    assert!(report.snapshot_tx_id.is_some(), "{report:?}");
    let inspect = tools::inspect(&RealFs, dir.path(), &mut |_, _| {}).unwrap();
    assert!(inspect.first_tx_id > Some(1), "{:?}", inspect.first_tx_id);
    assert!(inspect.modules["bank"].tables["accounts"] > 0);
    let mut out = Vec::new();
    let filter = tools::DumpFilter {
        table: Some("accounts".into()),
        ..Default::default()
    };
    tools::dump(&RealFs, dir.path(), &filter, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("call bank.deposit") && text.contains("update accounts {"),
        "{}",
        &text[..200.min(text.len())]
    );
}

fn disk_use(dir: &Path) -> u64 {
    [LOG_DIR, SNAPSHOTS_DIR]
        .iter()
        .filter_map(|d| std::fs::read_dir(dir.join(d)).ok())
        .flatten()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// A backup taken while another thread keeps transferring money restores to
/// exactly the source's state at the backup's transaction.
#[test]
fn backup_during_writes_restores_to_its_transaction() {
    use interstice_runtime::backup;
    use interstice_runtime::tools::{TruncateTo, truncate};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let (dir, db) = published(manual());
    for id in 0..50 {
        db.call_json(
            "bank",
            "open_account",
            &json!([id, 1_000]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    }
    db.snapshot().unwrap().unwrap();
    let stop = AtomicBool::new(false);
    // Calls the writer made so far: the backup starts after 100 of them and
    // the writer stops 100 after it ends, so the two overlap by the
    // writer's own count, not by sleeps.
    let made = AtomicU64::new(0);
    let dest = tempfile::tempdir().unwrap();
    let wait_for = |n: u64| {
        while made.load(Ordering::SeqCst) < n {
            std::thread::yield_now();
        }
    };
    let manifest = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                match db.call_json(
                    "bank",
                    "transfer",
                    &json!([i % 50, (i * 7 + 1) % 50, 3]),
                    &interstice_runtime::Caller::operator(),
                ) {
                    Ok(_) => {}
                    // The one refusal the workload may meet.
                    Err(interstice_runtime::CallError::Reducer(m))
                        if m.contains("insufficient funds") => {}
                    Err(e) => {
                        // Never leave the main thread waiting for calls.
                        made.store(u64::MAX, Ordering::SeqCst);
                        panic!("transfer {i} during the backup: {e}");
                    }
                }
                i += 1;
                made.store(i, Ordering::SeqCst);
                if i.is_multiple_of(200)
                    // Snapshots and retention run during the backup too.
                    && let Err(e) = db.snapshot()
                {
                    made.store(u64::MAX, Ordering::SeqCst);
                    panic!("a snapshot during the backup: {e}");
                }
            }
            i
        });
        wait_for(100);
        let manifest = backup::backup(&RealFs, dir.path(), &dest.path().join("b")).unwrap();
        wait_for(made.load(Ordering::SeqCst).saturating_add(100));
        stop.store(true, Ordering::SeqCst);
        let calls = writer.join().unwrap();
        assert!(calls >= 200, "{calls} calls");
        manifest
    });
    let end = db.next_tx_id().expect("not poisoned") - 1;
    assert!(
        manifest.tx_id > 52 && manifest.tx_id < end,
        "{} of {end}",
        manifest.tx_id
    );
    drop(db);

    // The source cut after the backup's transaction is the expected state.
    let reference = tempfile::tempdir().unwrap();
    copy_tree(dir.path(), reference.path());
    truncate(&RealFs, reference.path(), TruncateTo::After(manifest.tx_id)).unwrap();
    let expected = open(reference.path(), manual()).state_json().unwrap();

    let restored_dir = dest.path().join("restored");
    let restored = backup::restore(&dest.path().join("b"), &restored_dir, manual()).unwrap();
    assert_eq!(restored.tx_id, manifest.tx_id);
    let db = open(&restored_dir, manual());
    let state = db.state_json().unwrap();
    assert_same_state(&state, &expected, "restored backup");
    let total: u64 = state["bank"]["accounts"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["balance"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 50 * 1_000);
    // The restored directory works: calls run and commit after the backup's
    // transaction.
    let out = db
        .call_json(
            "bank",
            "deposit",
            &json!([1, 5]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    assert_eq!(out.tx_id, manifest.tx_id + 1);
    drop(db);

    // Restore refuses a directory in use, a damaged file and a backup
    // without its manifest.
    let err = backup::restore(&dest.path().join("b"), &restored_dir, manual()).unwrap_err();
    assert!(err.to_string().contains("is not empty"), "{err}");
    let victim = dest.path().join("b").join(&manifest.files[0].path);
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let err = backup::restore(&dest.path().join("b"), &dest.path().join("r2"), manual())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&victim.display().to_string()) && err.contains("CRC-32"),
        "{err}"
    );
    std::fs::remove_file(dest.path().join("b").join(backup::MANIFEST)).unwrap();
    let err = backup::restore(&dest.path().join("b"), &dest.path().join("r3"), manual())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a finished backup"), "{err}");
}

/// The size trigger: a snapshot follows every so many bytes of log, with
/// the transaction-count trigger off.
#[test]
fn snapshots_follow_log_bytes_too() {
    let config = RuntimeConfig {
        snapshots: SnapshotConfig {
            every_tx: 0,
            every_log_bytes: 32 << 10,
            keep: 2,
            archive_dir: None,
        },
        log: LogConfig {
            sync: SyncPolicy::Never,
            ..LogConfig::default()
        },
        ..test_config()
    };
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), config.clone());
    db.publish("bank", &guest_bytes(guests::BANK)).unwrap();
    db.call_json(
        "bank",
        "open_account",
        &json!([1, 0]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    assert!(db.last_automatic_snapshot().is_none());
    let before = db.log().stats().bytes;
    let mut calls = 0u32;
    // Each deposit record is about 90 bytes: well over 32 KiB after 1,000.
    while db.last_automatic_snapshot().is_none() && calls < 5_000 {
        db.call_json(
            "bank",
            "deposit",
            &json!([1, 1]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
        calls += 1;
        if calls.is_multiple_of(500) {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let taken = db.last_automatic_snapshot().expect("a snapshot by size");
    let taken = taken.unwrap();
    assert!(db.log().stats().bytes - before >= 32 << 10);
    assert!(taken.tx_id > 2, "{taken:?}");
    drop(db);
    let db = open(dir.path(), config);
    assert!(db.replay_stats().snapshot_tx_id >= Some(taken.tx_id));
}

/// A deleted module stays deleted: through a snapshot taken after the
/// deletion, through a snapshot taken before it plus the log, and through
/// the whole log; its name can be published again, from version 1.
#[test]
fn deletion_replays_from_the_log_and_from_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), manual());
    db.publish("bank", &guest_bytes(guests::BANK)).unwrap();
    db.publish("chat", &guest_bytes(guests::CHAT)).unwrap();
    activity(&db, 1);
    let before = db
        .snapshot()
        .unwrap()
        .expect("a snapshot before the deletion");
    let tx = db.drop_module("bank").unwrap();
    assert_eq!(tx, db.next_tx_id().expect("not poisoned") - 1);
    assert!(matches!(
        db.drop_module("bank"),
        Err(interstice_runtime::DropError::UnknownModule(_))
    ));
    assert!(!dir.path().join(MODULES_DIR).join("bank.wasm").exists());
    let state = db.state_json().unwrap();
    assert!(state.get("bank").is_none());
    drop(db);

    // From the snapshot before the deletion, plus the log.
    let db = open(dir.path(), manual());
    assert_eq!(db.replay_stats().snapshot_tx_id, Some(before.tx_id));
    assert_eq!(db.state_json().unwrap(), state);
    let after = db
        .snapshot()
        .unwrap()
        .expect("a snapshot after the deletion");
    drop(db);
    // From the snapshot after it.
    let db = open(dir.path(), manual());
    assert_eq!(db.replay_stats().snapshot_tx_id, Some(after.tx_id));
    assert_eq!(db.state_json().unwrap(), state);
    drop(db);
    // From the log alone.
    std::fs::remove_dir_all(dir.path().join(SNAPSHOTS_DIR)).unwrap();
    let db = open(dir.path(), manual());
    assert_eq!(db.replay_stats().snapshot_tx_id, None);
    assert_eq!(db.state_json().unwrap(), state);
    // The name is free again.
    let again = db.publish("bank", &guest_bytes(guests::BANK)).unwrap();
    assert_eq!(again.version, 1);
    assert_eq!(
        db.rows_json("bank", "accounts").unwrap(),
        Vec::<Value>::new()
    );
    drop(db);
    let db = open(dir.path(), manual());
    assert_eq!(db.module_version("bank").expect("not poisoned"), Some(1));
}

/// Damage in the middle of the log (not a torn tail): a backup and a
/// snapshot both refuse to go past it rather than leave out a transaction.
#[test]
fn backup_and_snapshot_refuse_a_log_damaged_in_the_middle() {
    use interstice_runtime::backup;
    let (dir, db) = published(manual());
    activity(&db, 1);
    drop(db);
    let segment = std::fs::read_dir(dir.path().join(LOG_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max()
        .unwrap();
    // Damage a record in the middle whose loss leaves the rest consistent:
    // the third-last chat message (activity ends with five of them), inside
    // its payload.
    let mut records = Vec::new();
    interstice_runtime::log::scan(&RealFs, &dir.path().join(LOG_DIR), &mut |rec| {
        records.push((rec.segment.to_path_buf(), rec.offset));
        Ok(())
    })
    .unwrap();
    let (in_segment, offset) = records[records.len() - 3].clone();
    assert_eq!(in_segment, segment);
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[offset as usize + 24] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();

    let dest = tempfile::tempdir().unwrap();
    let err = backup::backup(&RealFs, dir.path(), &dest.path().join("b")).unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");

    // Opened skipping damage (an operator's explicit choice), the database
    // serves, but a snapshot is not taken past the damage.
    let cfg = RuntimeConfig {
        log: LogConfig {
            recovery: interstice_runtime::log::RecoveryMode::SkipCorrupt,
            ..LogConfig::default()
        },
        ..manual()
    };
    let db = open(dir.path(), cfg);
    let err = db.snapshot().unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
}
