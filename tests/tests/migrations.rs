//! Schema evolution with real guests: `bank` → `bank-v2` (additive) →
//! `bank-v3` (a migration reducer) or `bank-v3-bad` (refused, or `--clear`).
//! Every step survives reopening, with and without a snapshot in between.

use std::path::Path;

use interstice_runtime::fs::RealFs;
use interstice_runtime::{Database, MODULES_DIR, PublishError, PublishOptions};
use interstice_tests::{db_with, guest_bytes, guests, test_config};
use serde_json::{Value, json};

fn reopen(dir: &Path) -> Database {
    Database::open(dir, test_config()).expect("reopen")
}

fn accounts(db: &Database) -> Vec<Value> {
    db.rows_json("bank", "accounts").unwrap()
}

/// Bank v1 with three accounts, upgraded to v2.
fn at_v2() -> (tempfile::TempDir, Database) {
    let (dir, db) = db_with("bank", guests::BANK);
    for (id, balance) in [(1, 100), (2, 250), (3, 0)] {
        db.call_json(
            "bank",
            "open_account",
            &json!([id, balance]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    }
    let published = db.publish("bank", &guest_bytes(guests::BANK_V2)).unwrap();
    assert_eq!(published.version, 2);
    assert!(!published.replaced);
    (dir, db)
}

#[test]
fn additive_version_migrates_automatically_and_replays() {
    let (dir, db) = db_with("bank", guests::BANK);
    for (id, balance) in [(1, 100), (2, 250), (3, 0)] {
        db.call_json(
            "bank",
            "open_account",
            &json!([id, balance]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    }
    let published = db.publish("bank", &guest_bytes(guests::BANK_V2)).unwrap();
    assert_eq!(published.version, 2);
    for expected in [
        "table `audit` added",
        "table `accounts`: column `branch` (u32) added",
        "table `accounts`: column `owner` (option<string>) added",
        "table `accounts`: btree index `branch` on (branch) added",
        "reducer `set_owner` added",
    ] {
        assert!(
            published.changes.iter().any(|c| c == expected),
            "{expected}: {:?}",
            published.changes
        );
    }
    assert_eq!(db.module_version("bank").expect("not poisoned"), Some(2));
    // Old rows got the declared default and none.
    assert_eq!(
        accounts(&db)[1],
        json!({"id": 2, "balance": 250, "branch": 7, "owner": null})
    );
    // The new version serves: new reducer, new table (whose id moved the
    // old table's), old reducers on migrated rows.
    db.call_json(
        "bank",
        "set_owner",
        &json!([2, "ann"]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    db.call_json(
        "bank",
        "transfer",
        &json!([2, 3, 50]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    db.call_json(
        "bank",
        "open_account",
        &json!([4, 1]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    let audit = db.rows_json("bank", "audit").unwrap();
    assert_eq!(
        audit,
        vec![json!({"id": 1, "account": 2, "note": "owner set to ann"})]
    );
    let state = db.state_json().unwrap();
    drop(db);

    // Replay across the schema change, with no code at hand.
    std::fs::remove_dir_all(dir.path().join(MODULES_DIR)).unwrap();
    let db = reopen(dir.path());
    assert_eq!(db.state_json().unwrap(), state);
    assert_eq!(db.module_version("bank").expect("not poisoned"), Some(2));
    assert_eq!(db.replay_stats().publications_replayed, 2);
    assert_eq!(db.replay_stats().guest_instantiations, 0);
}

#[test]
fn refused_changes_are_listed_and_nothing_changes() {
    let (_dir, db) = at_v2();
    let before = db.state_json().unwrap();
    let err = db
        .publish("bank", &guest_bytes(guests::BANK_V3_BAD))
        .unwrap_err();
    let PublishError::SchemaChanged { changes, .. } = &err else {
        panic!("expected a refusal, got {err}");
    };
    for expected in [
        "table `accounts`: column `balance` changes type from u64 to i64",
        "table `accounts`: column `owner` removed, with its values",
        "reducer `deposit` removed",
        "reducer `open_account` changes its parameters from (id: u64, balance: u64) to (id: u64, balance: i64)",
    ] {
        assert!(
            changes.iter().any(|c| c == expected),
            "{expected}: {changes:?}"
        );
    }
    let message = err.to_string();
    assert!(
        message.contains("--clear") && message.contains("#[reducer(migrate)]"),
        "{message}"
    );
    assert_eq!(db.module_version("bank").expect("not poisoned"), Some(2));
    assert_eq!(db.state_json().unwrap(), before);
    db.call_json(
        "bank",
        "deposit",
        &json!([1, 1]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
}

#[test]
fn clear_drops_the_data_and_the_new_version_serves() {
    let (dir, db) = at_v2();
    let published = db
        .publish_with(
            "bank",
            &guest_bytes(guests::BANK_V3_BAD),
            PublishOptions {
                clear: true,
                ..PublishOptions::default()
            },
        )
        .unwrap();
    assert_eq!(published.version, 3);
    assert!(accounts(&db).is_empty());
    db.call_json(
        "bank",
        "open_account",
        &json!([9, -5]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    let state = db.state_json().unwrap();
    drop(db);
    let db = reopen(dir.path());
    assert_eq!(db.state_json().unwrap(), state);
    assert_eq!(db.module_version("bank").expect("not poisoned"), Some(3));
    assert_eq!(
        accounts(&db),
        vec![json!({"id": 9, "balance": -5, "branch": 1})]
    );
}

#[test]
fn migration_reducer_runs_once_and_its_failure_changes_nothing() {
    let (dir, db) = at_v2();
    db.call_json(
        "bank",
        "set_owner",
        &json!([1, "bo"]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    db.call_json(
        "bank",
        "deposit",
        &json!([1, 2_000_000]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    // A snapshot of version 2: reopening later starts from it and replays
    // the upgrade after it.
    db.snapshot().unwrap().unwrap();
    let before = db.state_json().unwrap();
    let next = db.next_tx_id().expect("not poisoned");

    let err = db
        .publish("bank", &guest_bytes(guests::BANK_V3))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("account 1 holds more than 1000000; cannot migrate"),
        "{err}"
    );
    assert_eq!(db.module_version("bank").expect("not poisoned"), Some(2));
    assert_eq!(db.state_json().unwrap(), before);
    assert_eq!(
        db.next_tx_id().expect("not poisoned"),
        next,
        "a failed publication commits nothing"
    );
    db.call_json(
        "bank",
        "set_owner",
        &json!([2, "cy"]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();

    db.call_json(
        "bank",
        "open_account",
        &json!([4, 0]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    for to in [3, 4] {
        db.call_json(
            "bank",
            "transfer",
            &json!([1, to, 999_995]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    }
    let published = db.publish("bank", &guest_bytes(guests::BANK_V3)).unwrap();
    assert_eq!(published.version, 3);
    assert_eq!(published.init.as_ref().map(|o| o.mutations.len()), Some(4));
    assert!(
        published
            .changes
            .contains(&"table `audit` removed, with all its rows".to_string()),
        "{:?}",
        published.changes
    );
    // The migration reducer filled the new column from each balance.
    assert_eq!(
        accounts(&db),
        vec![
            json!({"id": 1, "balance": 110, "branch": 7, "owner": "bo", "tier": 1}),
            json!({"id": 2, "balance": 250, "branch": 7, "owner": "cy", "tier": 2}),
            json!({"id": 3, "balance": 999_995, "branch": 7, "owner": null, "tier": 9_999}),
            json!({"id": 4, "balance": 999_995, "branch": 1, "owner": null, "tier": 9_999}),
        ]
    );
    assert!(db.rows_json("bank", "audit").is_err());
    assert!(
        db.call_json(
            "bank",
            "set_owner",
            &json!([2, "x"]),
            &interstice_runtime::Caller::operator()
        )
        .is_err()
    );
    db.call_json(
        "bank",
        "deposit",
        &json!([2, 50]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    let state = db.state_json().unwrap();
    drop(db);

    let db = reopen(dir.path());
    assert!(db.replay_stats().snapshot_tx_id.is_some());
    assert_eq!(db.state_json().unwrap(), state);
    assert_eq!(db.module_version("bank").expect("not poisoned"), Some(3));
    // The code of each version is kept under its own name.
    for file in ["bank.wasm", "bank.v2.wasm", "bank.v3.wasm"] {
        assert!(dir.path().join(MODULES_DIR).join(file).is_file(), "{file}");
    }
    db.call_json(
        "bank",
        "deposit",
        &json!([1, 1]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
}

#[test]
fn log_tools_follow_the_versions() {
    use interstice_runtime::tools;
    let (dir, db) = at_v2();
    db.call_json(
        "bank",
        "set_owner",
        &json!([1, "al"]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    drop(db);
    let report = tools::verify(&RealFs, dir.path(), &mut |_, _| {}).unwrap();
    assert!(report.intact(), "{report:?}");
    let inspect = tools::inspect(&RealFs, dir.path(), &mut |_, _| {}).unwrap();
    let bank = &inspect.modules["bank"];
    assert_eq!(bank.version, 2);
    assert_eq!(bank.transactions, 6);
    assert_eq!(bank.tables["audit"], 1);
    let mut out = Vec::new();
    tools::dump(&RealFs, dir.path(), &tools::DumpFilter::default(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(": upgrade bank to version 2\n"), "{text}");
    assert!(
        text.contains(r#"insert audit {"account":1,"id":1,"note":"owner set to al"}"#),
        "{text}"
    );
}
