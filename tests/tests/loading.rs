//! Loading modules: what is accepted, and a clear error for everything else.

use interstice_runtime::{ModuleError, PublishError};
use interstice_tests::{fresh_db, guest_bytes, guests};
use serde_json::json;

#[test]
fn a_file_that_is_not_wasm() {
    let (_dir, db) = fresh_db();
    let err = db.publish("x", b"#!/bin/sh\necho hello\n").unwrap_err();
    assert!(
        matches!(err, PublishError::Module(ModuleError::NotWasm)),
        "{err}"
    );
    assert!(err.to_string().contains("not a WebAssembly file"));
    let err = db.publish("x", b"").unwrap_err();
    assert!(
        matches!(err, PublishError::Module(ModuleError::NotWasm)),
        "{err}"
    );
    assert_eq!(db.module_names().expect("not poisoned").len(), 0);
}

#[test]
fn a_core_module_without_our_metadata() {
    let (_dir, db) = fresh_db();
    // The smallest valid core module: magic and version, no sections.
    let err = db.publish("x", b"\0asm\x01\0\0\0").unwrap_err();
    assert!(
        matches!(err, PublishError::Module(ModuleError::NotOurs(_))),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("not an Interstice module"),
        "{err}"
    );
}

#[test]
fn a_component_that_is_not_ours() {
    let (_dir, db) = fresh_db();
    // The smallest valid component: it exports nothing.
    let err = db.publish("x", b"\0asm\x0d\0\x01\0").unwrap_err();
    assert!(
        matches!(err, PublishError::Module(ModuleError::NotOurs(_))),
        "{err}"
    );
    assert!(err.to_string().contains("no export"), "{err}");
}

#[test]
fn truncated_wasm_does_not_compile() {
    let (_dir, db) = fresh_db();
    let bank = guest_bytes(guests::BANK);
    let err = db.publish("x", &bank[..bank.len() / 2]).unwrap_err();
    assert!(
        matches!(err, PublishError::Module(ModuleError::Compile(_))),
        "{err}"
    );
}

#[test]
fn a_malformed_describe_is_refused() {
    let (_dir, db) = fresh_db();
    let err = db
        .publish("bad", &guest_bytes(guests::BAD_DESCRIBE))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid module definition: duplicate table name `things`"
    );
    assert_eq!(db.module_names().expect("not poisoned").len(), 0);
    assert!(!db.dir().join("modules/bad.wasm").exists());
}

#[test]
fn core_modules_built_with_the_sdk_are_componentized() {
    let (_dir, db) = fresh_db();
    db.publish("bank", &guest_bytes(guests::BANK_CORE)).unwrap();
    db.call_json(
        "bank",
        "open_account",
        &json!([1, 5]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    assert_eq!(db.rows_json("bank", "accounts").unwrap().len(), 1);
}

#[test]
fn module_names_are_checked() {
    let (_dir, db) = fresh_db();
    for name in ["", "../x", "a/b", "a b", "-x", &"n".repeat(65)] {
        let err = db.publish(name, &guest_bytes(guests::BANK)).unwrap_err();
        assert!(matches!(err, PublishError::InvalidName(_)), "{name}: {err}");
    }
}

#[test]
fn republishing_keeps_data_and_refuses_schema_changes() {
    let (_dir, db) = fresh_db();
    let bank = guest_bytes(guests::BANK);
    db.publish("bank", &bank).unwrap();
    db.call_json(
        "bank",
        "open_account",
        &json!([1, 5]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    let again = db.publish("bank", &bank).unwrap();
    assert!(again.replaced);
    assert_eq!(db.rows_json("bank", "accounts").unwrap().len(), 1);
    let err = db
        .publish("bank", &guest_bytes(guests::COUNTER))
        .unwrap_err();
    assert!(matches!(err, PublishError::SchemaChanged { .. }), "{err}");
    db.call_json(
        "bank",
        "deposit",
        &json!([1, 5]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
}

#[test]
fn published_modules_load_again_on_open() {
    let (dir, db) = fresh_db();
    db.publish("chat", &guest_bytes(guests::CHAT)).unwrap();
    drop(db);
    let db =
        interstice_runtime::Database::open(dir.path(), interstice_tests::test_config()).unwrap();
    assert_eq!(db.module_names().expect("not poisoned"), vec!["chat"]);
    db.call_json(
        "chat",
        "register",
        &json!(["ann", null]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
}

/// Replay needs no code: a damaged module file does not stop the open, and
/// the first call names the module, the file and what is wrong with it.
#[test]
fn a_damaged_module_file_fails_the_first_call_not_the_open() {
    let (dir, db) = fresh_db();
    db.publish("bank", &guest_bytes(guests::BANK)).unwrap();
    db.call_json(
        "bank",
        "open_account",
        &json!([1, 10]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    drop(db);
    let path = dir.path().join("modules/bank.wasm");
    std::fs::write(&path, b"garbage!").unwrap();
    let db = interstice_runtime::Database::open(dir.path(), interstice_tests::test_config())
        .expect("replay does not need the module's code");
    assert_eq!(
        db.rows_json("bank", "accounts").unwrap(),
        vec![json!({"id": 1, "balance": 10})]
    );
    let err = db
        .call_json(
            "bank",
            "deposit",
            &json!([1, 5]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    let path = std::fs::canonicalize(&path).unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "module `bank` cannot run: its code {} does not load: not a WebAssembly file (it does not start with the `\\0asm` magic)",
            path.display()
        )
    );
    assert!(matches!(
        err,
        interstice_runtime::CallError::NotLoaded { .. }
    ));
    // Publishing the code again brings the module back, data intact.
    db.publish("bank", &guest_bytes(guests::BANK)).unwrap();
    db.call_json(
        "bank",
        "deposit",
        &json!([1, 5]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    assert_eq!(
        db.rows_json("bank", "accounts").unwrap(),
        vec![json!({"id": 1, "balance": 15})]
    );
}
