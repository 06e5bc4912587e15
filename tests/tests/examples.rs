//! The example modules' reducers, run in real guests.

use interstice_runtime::CallError;
use interstice_tests::{BANKS, db_with, guests};
use serde_json::{Value, json};

fn rows(db: &interstice_runtime::Database, module: &str, table: &str) -> Vec<Value> {
    db.rows_json(module, table).expect("read table")
}

#[test]
fn counter_increments_and_creates() {
    let (_dir, db) = db_with("counter", guests::COUNTER);
    for _ in 0..3 {
        db.call_json(
            "counter",
            "increment",
            &json!(["a"]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    }
    db.call_json(
        "counter",
        "increment",
        &json!({"name": "b"}),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    assert_eq!(
        rows(&db, "counter", "counters"),
        vec![
            json!({"name": "a", "value": 3}),
            json!({"name": "b", "value": 1})
        ]
    );
}

#[test]
fn bank_open_deposit_transfer() {
    for (language, guest) in BANKS {
        bank_open_deposit_transfer_in(language, guest);
    }
}

fn bank_open_deposit_transfer_in(language: &str, guest: &str) {
    let (_dir, db) = db_with("bank", guest);
    db.call_json(
        "bank",
        "open_account",
        &json!([1, 100]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    db.call_json(
        "bank",
        "open_account",
        &json!([2, 5]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    db.call_json(
        "bank",
        "deposit",
        &json!([2, 10]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    db.call_json(
        "bank",
        "transfer",
        &json!([1, 2, 30]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    assert_eq!(
        rows(&db, "bank", "accounts"),
        vec![
            json!({"id": 1, "balance": 70}),
            json!({"id": 2, "balance": 45})
        ],
        "{language}"
    );
}

#[test]
fn bank_refusals_change_nothing() {
    for (language, guest) in BANKS {
        bank_refusals_change_nothing_in(language, guest);
    }
}

fn bank_refusals_change_nothing_in(language: &str, guest: &str) {
    let (_dir, db) = db_with("bank", guest);
    db.call_json(
        "bank",
        "open_account",
        &json!([1, 100]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    db.call_json(
        "bank",
        "open_account",
        &json!([2, 0]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    let before = rows(&db, "bank", "accounts");
    let next_tx = db.next_tx_id().expect("not poisoned");

    let err = db
        .call_json(
            "bank",
            "open_account",
            &json!([1, 7]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "account 1 already exists");
    let err = db
        .call_json(
            "bank",
            "transfer",
            &json!([1, 2, 101]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    assert!(
        matches!(err, CallError::Reducer(ref m) if m.contains("insufficient funds")),
        "{err}"
    );
    let err = db
        .call_json(
            "bank",
            "transfer",
            &json!([1, 9, 1]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "account 9 does not exist");
    let err = db
        .call_json(
            "bank",
            "deposit",
            &json!([9, 1]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "account 9 does not exist");
    let err = db
        .call_json(
            "bank",
            "deposit",
            &json!([1, u64::MAX]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("overflow"), "{err}");

    assert_eq!(rows(&db, "bank", "accounts"), before, "{language}");
    assert_eq!(
        db.next_tx_id().expect("not poisoned"),
        next_tx,
        "{language}: failed calls consume no tx id"
    );
}

#[test]
fn transaction_ids_and_timestamps_increase() {
    let (_dir, db) = db_with("bank", guests::BANK);
    let mut last = (0, 0);
    for id in 0..20 {
        let out = db
            .call_json(
                "bank",
                "open_account",
                &json!([id, 1]),
                &interstice_runtime::Caller::operator(),
            )
            .unwrap();
        assert!(out.tx_id > last.0 && out.timestamp_micros > last.1);
        last = (out.tx_id, out.timestamp_micros);
        assert_eq!(out.mutations.len(), 1);
    }
}

#[test]
fn chat_init_runs_once_at_first_publication() {
    let (_dir, db) = db_with("chat", guests::CHAT);
    let users = rows(&db, "chat", "users");
    assert_eq!(users.len(), 1);
    assert_eq!(
        (&users[0]["id"], &users[0]["name"]),
        (&json!(1), &json!("system"))
    );
    assert_eq!(rows(&db, "chat", "messages")[0]["text"], "welcome");
    let err = db
        .call_json(
            "chat",
            "init",
            &json!([]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    assert!(matches!(err, CallError::InitNotCallable(_)), "{err}");
    let again = db
        .publish("chat", &interstice_tests::guest_bytes(guests::CHAT))
        .unwrap();
    assert!(again.replaced && again.init.is_none());
    assert_eq!(rows(&db, "chat", "users").len(), 1);
}

#[test]
fn chat_auto_increment_unique_and_index() {
    let (_dir, db) = db_with("chat", guests::CHAT);
    db.call_json(
        "chat",
        "clear_channel",
        &json!(["general"]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
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
        &json!(["bob", "hi there"]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    let err = db
        .call_json(
            "chat",
            "register",
            &json!(["ann", null]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "user name \"ann\" is taken");

    for (who, channel, text) in [
        ("ann", "general", "hello"),
        ("bob", "random", "x"),
        ("bob", "general", "hey ann"),
    ] {
        db.call_json(
            "chat",
            "send",
            &json!([who, channel, text]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    }
    let users = rows(&db, "chat", "users");
    assert_eq!(users.len(), 3);
    assert_eq!(users[1]["id"], 2);
    assert_eq!(users[1]["name"], "ann");
    assert_eq!(users[1]["bio"], Value::Null);
    assert_eq!(users[2]["id"], 3, "the refused registration consumed no id");
    assert_eq!(users[2]["bio"], "hi there");
    // Message 1 (the welcome) was deleted; ids are never reused.
    let messages = rows(&db, "chat", "messages");
    let ids: Vec<_> = messages.iter().map(|m| m["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![2, 3, 4]);
    assert_eq!(messages[2]["sender"], 3);

    // The btree index finds exactly the channel's messages.
    db.call_json(
        "chat",
        "clear_channel",
        &json!(["general"]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    let left = rows(&db, "chat", "messages");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["channel"], "random");

    // Renaming onto a taken name violates the unique index and changes
    // nothing; renaming to a free name frees the old one.
    let err = db
        .call_json(
            "chat",
            "rename",
            &json!(["bob", "ann"]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("unique"), "{err}");
    db.call_json(
        "chat",
        "rename",
        &json!(["bob", "rob"]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    db.call_json(
        "chat",
        "register",
        &json!(["bob", null]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    let names: Vec<_> = rows(&db, "chat", "users")
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["system", "ann", "rob", "bob"]);
}

#[test]
fn ephemeral_tables_are_not_logged() {
    let (dir, db) = db_with("chat", guests::CHAT);
    db.call_json(
        "chat",
        "register",
        &json!(["ann", null]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    let out = db
        .call_json(
            "chat",
            "start_typing",
            &json!(["ann", "general"]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    assert!(
        out.mutations.is_empty(),
        "typing is ephemeral: nothing to log"
    );
    assert_eq!(rows(&db, "chat", "typing").len(), 1);
    let out = db
        .call_json(
            "chat",
            "send",
            &json!(["ann", "general", "hi"]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    assert_eq!(out.mutations.len(), 1, "only the message is logged");
    assert!(rows(&db, "chat", "typing").is_empty());
    // Once more, and left in place: then read the log itself.
    db.call_json(
        "chat",
        "start_typing",
        &json!(["ann", "random"]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    let typing = db
        .module_def("chat")
        .unwrap()
        .unwrap()
        .table_id("typing")
        .unwrap();
    drop(db);
    let mut calls = Vec::new();
    interstice_runtime::log::scan(
        &interstice_runtime::fs::RealFs,
        &dir.path().join(interstice_runtime::LOG_DIR),
        &mut |rec| {
            let tx = interstice_runtime::log::TxRecord::decode(rec.payload)
                .map_err(|e| e.to_string())?;
            let touches_typing = tx.mutations.iter().any(|m| m.table == typing);
            calls.push((tx.header.reducer.to_string(), touches_typing));
            Ok(())
        },
    )
    .unwrap();
    let typed: Vec<&(String, bool)> = calls.iter().filter(|(r, _)| r == "start_typing").collect();
    assert_eq!(
        typed.len(),
        2,
        "each call is a logged transaction: {calls:?}"
    );
    assert!(
        calls.iter().all(|(_, touches)| !touches),
        "a record holds a row of the ephemeral table: {calls:?}"
    );
    // And a restart starts with none.
    let db =
        interstice_runtime::Database::open(dir.path(), interstice_tests::test_config()).unwrap();
    assert!(rows(&db, "chat", "typing").is_empty());
}

#[test]
fn module_log_lines_reach_the_host() {
    let (_dir, db) = db_with("chat", guests::CHAT);
    let out = db
        .call_json(
            "chat",
            "clear_channel",
            &json!(["x"]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    assert_eq!(out.log.len(), 1);
    assert_eq!(out.log[0].message, "cleared channel x");
}
