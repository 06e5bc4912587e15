//! The same reducer calls, with the same timestamps, write the same log,
//! byte for byte: run twice, and across the languages and targets a module
//! is written in (the Rust bank for `wasm32-unknown-unknown` and for
//! `wasm32-wasip2`, and the Python bank; the Rust and the Python chat, which
//! use every feature of the Python SDK's schema and tables; the Rust and the
//! Python `types`, with every type and every kind of index; an upgrade to
//! the second version of the bank in Rust and in Python). Then the Python
//! module's log replays with its code deleted, running no guest.

use std::path::Path;

use interstice_runtime::{CallError, Database, LOG_DIR, MODULES_DIR};
use interstice_tests::{BANKS, clocked_config, guest_bytes, guests, test_config};
use serde_json::{Value, json};

const T0: i64 = 1_760_000_000_000_000;

/// A bank workload with refusals and both argument forms.
fn bank_calls() -> Vec<(&'static str, Value)> {
    vec![
        ("open_account", json!([1, 1000])),
        ("open_account", json!([2, 50])),
        ("open_account", json!({"id": 3, "balance": 0})),
        ("open_account", json!([1, 5])),
        ("deposit", json!([2, 25])),
        ("deposit", json!([9, 1])),
        ("deposit", json!([1, u64::MAX])),
        ("transfer", json!([1, 2, 300])),
        ("transfer", json!({"from": 2, "to": 3, "amount": 75})),
        ("transfer", json!([3, 1, 76])),
        ("transfer", json!([3, 9, 1])),
        ("transfer", json!([2, 2, 10])),
        ("transfer", json!([1, 3, 700])),
    ]
}

/// A chat workload: optional values, unique and B-tree indexes, deletes,
/// the ephemeral table, log lines and refusals.
fn chat_calls() -> Vec<(&'static str, Value)> {
    vec![
        ("register", json!(["ann", null])),
        ("register", json!(["bob", "likes \"quotes\" and ünïcode"])),
        ("register", json!(["", null])),
        ("register", json!(["ann", "again"])),
        ("send", json!(["ann", "general", "hello"])),
        ("send", json!(["bob", "random", "first"])),
        ("start_typing", json!(["ann", "random"])),
        ("send", json!(["ann", "random", "second"])),
        ("send", json!(["bob", "general", "third"])),
        ("send", json!(["carol", "general", "who?"])),
        ("send", json!(["ann", "general", "x".repeat(4097)])),
        ("start_typing", json!(["bob", "general"])),
        ("clear_channel", json!(["random"])),
        ("clear_channel", json!(["empty"])),
        ("rename", json!(["bob", "robert"])),
        ("rename", json!(["robert", "ann"])),
        ("send", json!(["robert", "general", "renamed"])),
        (
            "send",
            json!({"sender": "ann", "channel": "general", "text": ""}),
        ),
    ]
}

/// Every type as an argument and a column, and every kind of index: the
/// calls of the type tests (`host/cli/tests/types.rs`), with refusals.
fn types_calls() -> Vec<(&'static str, Value)> {
    let p1 = "ab".repeat(32);
    let p2 = "cd".repeat(32);
    let mut other = interstice_tests::every_type_row();
    other["id"] = json!("7");
    other["kind"] = json!("Sword");
    other["maybe"] = json!(null);
    other["k"] = json!(-0.0);
    let find = json!({
        "game": 1, "from": 2, "to": 3, "player": p1, "tag": "c", "x": 1, "y": 0, "kind": "Sword"
    });
    vec![
        ("put", json!([interstice_tests::every_type_row()])),
        ("put", json!({"row": other})),
        (
            "move_to",
            json!(["7", {"x": -2, "y": 0.25}, {"Pair": [4, 65535]}, 0, "cd".repeat(32)]),
        ),
        ("move_to", json!(["8", {"x": 0, "y": 0}, "Sword", 0, p1])),
        ("play", json!([1, 1, p1, "a", 0, 0, "Sword"])),
        ("play", json!([1, 2, p2, "b", 1, 0, {"Bow": 3}])),
        ("play", json!([1, 3, p1, "c", 2, 0, "Sword"])),
        (
            "play",
            json!([2, 1, p2, "d", 0, 0, {"Staff": {"power": 1, "name": "x"}}]),
        ),
        ("play", json!([1, 2, p1, "e", 3, 3, "Sword"])),
        ("play", json!([3, 0, p1, "f", 0, 0, "Sword"])),
        ("play", json!([9, 9, p1, "a", 9, 9, "Sword"])),
        ("play", json!([1, 9, p2, "z", 2, 0, "Sword"])),
        ("find", find.clone()),
        ("take_back", json!(["c"])),
        ("take_back", json!(["c"])),
        ("find", find),
    ]
}

fn workload(db: &Database, module: &str, calls: Vec<(&str, Value)>) -> Vec<Result<u64, String>> {
    calls
        .into_iter()
        .map(|(reducer, args)| {
            db.call_json(
                module,
                reducer,
                &args,
                &interstice_runtime::Caller::operator(),
            )
            .map(|out| out.tx_id)
            .map_err(|e| match e {
                CallError::Reducer(m) => m,
                other => panic!("{reducer} {args}: {other}"),
            })
        })
        .collect()
}

fn log_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join(LOG_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

struct Run {
    outcomes: Vec<Result<u64, String>>,
    state: Value,
    log: Vec<(String, Vec<u8>)>,
}

fn run(guest: &str, dir: &Path) -> Run {
    run_module("bank", bank_calls(), guest, dir)
}

fn run_module(module: &str, calls: Vec<(&str, Value)>, guest: &str, dir: &Path) -> Run {
    let db = Database::open(dir, clocked_config(T0)).unwrap();
    db.publish(module, &guest_bytes(guest)).unwrap();
    let outcomes = workload(&db, module, calls);
    let state = db.state_json().unwrap();
    drop(db);
    Run {
        outcomes,
        state,
        log: log_files(dir),
    }
}

#[test]
fn the_same_calls_write_the_same_log_in_every_language() {
    let dirs: Vec<_> = (0..BANKS.len() + 1)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    // Every bank, then the Python one a second time.
    let guests: Vec<(&str, &str)> = BANKS.iter().copied().chain([BANKS[2]]).collect();
    let runs: Vec<Run> = guests
        .iter()
        .zip(&dirs)
        .map(|((_, guest), dir)| run(guest, dir.path()))
        .collect();
    let first = &runs[0];
    assert_eq!(
        first.outcomes.iter().filter(|o| o.is_ok()).count(),
        8,
        "{:?}",
        first.outcomes
    );
    assert!(!first.log.is_empty() && first.log.iter().any(|(_, b)| b.len() > 64));
    for ((language, _), run) in guests.iter().zip(&runs).skip(1) {
        assert_same(language, run, first);
    }
}

/// The same calls against the Rust and the Python version of a module.
fn rust_and_python(
    module: &str,
    calls: fn() -> Vec<(&'static str, Value)>,
    rust: &str,
    python: &str,
) -> (Run, Run) {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    (
        run_module(module, calls(), rust, a.path()),
        run_module(module, calls(), python, b.path()),
    )
}

/// The messages of the calls that were refused, in order.
fn refusals(run: &Run) -> Vec<&str> {
    run.outcomes
        .iter()
        .filter_map(|o| o.as_ref().err().map(String::as_str))
        .collect()
}

#[test]
fn the_same_chat_calls_write_the_same_log_in_rust_and_python() {
    let (rust, python) = rust_and_python("chat", chat_calls, guests::CHAT, guests::CHAT_PY);
    let failed = refusals(&rust);
    assert_eq!(
        failed,
        [
            "a user name must not be empty",
            "user name \"ann\" is taken",
            "no user named \"carol\"",
            "a message holds at most 4096 bytes",
            "unique constraint `name` of table `users` violated by value \"ann\"",
        ],
        "{:?}",
        rust.outcomes
    );
    assert_eq!(
        rust.state["chat"]["messages"]["rows"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_same("python chat", &python, &rust);
}

#[test]
fn the_same_type_calls_write_the_same_log_in_rust_and_python() {
    let (rust, python) = rust_and_python("types", types_calls, guests::TYPES, guests::TYPES_PY);
    let failed = refusals(&rust);
    assert_eq!(failed.len(), 4, "{:?}", rust.outcomes);
    assert_eq!(failed[0], "no row 8");
    assert!(failed[1].contains("unique constraint `tag` of table `moves`"));
    assert!(failed[2].contains("unique constraint `by_cell` of table `moves`"));
    assert_eq!(failed[3], "no move tagged \"c\"");
    let found = &rust.state["types"]["found"]["rows"];
    assert_eq!(found[0], json!({"lookup": "cell", "ids": [2]}));
    assert_eq!(
        found[1],
        json!({"lookup": "everything", "ids": [1, 2, 5, 4, 6]})
    );
    assert_same("python types", &python, &rust);
}

fn assert_same(language: &str, run: &Run, first: &Run) {
    {
        assert_eq!(run.outcomes, first.outcomes, "{language}: outcomes");
        assert_eq!(run.state, first.state, "{language}: state");
        assert_eq!(
            run.log
                .iter()
                .map(|(n, b)| (n, b.len()))
                .collect::<Vec<_>>(),
            first
                .log
                .iter()
                .map(|(n, b)| (n, b.len()))
                .collect::<Vec<_>>(),
            "{language}: log files"
        );
        for ((name, a), (_, b)) in run.log.iter().zip(&first.log) {
            let at = a.iter().zip(b).position(|(x, y)| x != y);
            assert!(
                at.is_none(),
                "{language}: {name} differs first at byte {at:?}"
            );
        }
    }
}

/// A new version published over the old one (an additive migration: a
/// column with a declared default, an optional one, an index, a new table
/// that moves table ids), then calls of the new version: Rust and Python
/// write the same log, and the Python module's data replays without code.
#[test]
fn the_same_upgrade_writes_the_same_log_in_rust_and_python() {
    let mut runs = Vec::new();
    let mut dirs = Vec::new();
    for (v1, v2) in [
        (guests::BANK, guests::BANK_V2),
        (guests::BANK_PY, guests::BANK_V2_PY),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path(), clocked_config(T0)).unwrap();
        db.publish("bank", &guest_bytes(v1)).unwrap();
        let mut outcomes = workload(&db, "bank", bank_calls());
        let published = db.publish("bank", &guest_bytes(v2)).unwrap();
        assert_eq!(published.version, 2);
        assert_eq!(published.changes.len(), 5, "{:?}", published.changes);
        outcomes.extend(workload(
            &db,
            "bank",
            vec![
                ("set_owner", json!([1, "ann"])),
                ("set_owner", json!([9, "nobody"])),
                ("open_account", json!([4, 10])),
                ("transfer", json!([4, 1, 10])),
                ("set_owner", json!({"id": 4, "owner": "bob"})),
            ],
        ));
        let state = db.state_json().unwrap();
        drop(db);
        runs.push(Run {
            outcomes,
            state,
            log: log_files(dir.path()),
        });
        dirs.push(dir);
    }
    let (rust, python) = (&runs[0], &runs[1]);
    assert_eq!(
        rust.state["bank"]["accounts"]["rows"][0],
        json!({"id": 1, "balance": 10, "branch": 7, "owner": "ann"})
    );
    assert_eq!(
        rust.state["bank"]["audit"]["rows"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_same("python upgrade", python, rust);
    for version in ["bank.wasm", "bank.v2.wasm"] {
        std::fs::remove_file(dirs[1].path().join(MODULES_DIR).join(version)).unwrap();
    }
    let db = Database::open(dirs[1].path(), test_config()).unwrap();
    assert_eq!(db.state_json().unwrap(), python.state);
    assert_eq!(db.replay_stats().guest_instantiations, 0);
}

/// The replay test, against the Python module's data: its code deleted,
/// the state comes back and no guest ran.
#[test]
fn python_module_replays_without_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let before = run(BANKS[2].1, dir.path());
    let wasm = dir.path().join(MODULES_DIR).join("bank.wasm");
    assert!(
        std::fs::metadata(&wasm).unwrap().len() > 1 << 20,
        "the Python component"
    );
    std::fs::remove_file(&wasm).unwrap();
    let db = Database::open(dir.path(), test_config()).unwrap();
    assert_eq!(db.state_json().unwrap(), before.state);
    let stats = db.replay_stats();
    assert_eq!(stats.transactions_replayed, 9);
    assert_eq!(
        (
            stats.guest_instantiations,
            stats.guest_calls,
            stats.fuel_consumed
        ),
        (0, 0, 0)
    );
    let counters = db.counters();
    assert_eq!(
        (counters.guest_instantiations, counters.guest_calls),
        (0, 0)
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
}
