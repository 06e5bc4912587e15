//! Every way a reducer can fail rolls back everything it wrote, and the next
//! call works (on a fresh instance after a trap).

use interstice_runtime::{CallError, Database, RuntimeConfig};
use interstice_tests::{db_with, guest_bytes, guests, shared_cache_dir};
use serde_json::{Value, json};

fn items(db: &Database) -> Vec<Value> {
    db.rows_json("m", "items").unwrap()
}

fn results(db: &Database) -> Vec<(String, Vec<u64>)> {
    db.rows_json("m", "results")
        .unwrap()
        .into_iter()
        .map(|r| {
            let hex = r["ids"].as_str().unwrap();
            let ids = (0..hex.len())
                .step_by(2)
                .map(|i| u64::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (r["what"].as_str().unwrap().to_string(), ids)
        })
        .collect()
}

/// A database with items 1 (group 1), 2 (group 2), 3 (group 1).
fn seeded() -> (tempfile::TempDir, Database) {
    let (dir, db) = db_with("m", guests::MISBEHAVE);
    for (id, group) in [(1, 1), (2, 2), (3, 1)] {
        db.call_json(
            "m",
            "put",
            &json!([id, format!("tag{id}"), group]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    }
    (dir, db)
}

/// After a failed call: the items are as seeded, the indexes agree with them,
/// and the module still works.
fn assert_intact_and_working(db: &Database, before: &[Value]) {
    assert_eq!(items(db), before);
    db.call_json(
        "m",
        "read_group",
        &json!([0]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    db.call_json(
        "m",
        "read_group",
        &json!([1]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    db.call_json(
        "m",
        "read_tag",
        &json!(["tag9"]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    let r = results(db);
    let n = r.len();
    assert_eq!(r[n - 3], ("group 0 of 3".to_string(), vec![]));
    assert_eq!(r[n - 2], ("group 1 of 3".to_string(), vec![1, 3]));
    assert_eq!(r[n - 1], ("tag tag9 of 3".to_string(), vec![]));
    // The rolled-back insert left no trace: the same id and tag insert fine.
    db.call_json(
        "m",
        "put",
        &json!([9, "tag9", 0]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    db.call_json(
        "m",
        "remove",
        &json!([9]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
}

fn check_failure(reducer: &str, expect: impl Fn(&CallError) -> bool) {
    let (_dir, db) = seeded();
    let before = items(&db);
    let instantiations = db.host().counters().snapshot().guest_instantiations;
    let err = db
        .call_json(
            "m",
            reducer,
            &json!([9]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    assert!(expect(&err), "{reducer}: unexpected error {err:?}");
    assert_intact_and_working(&db, &before);
    let after = db.host().counters().snapshot().guest_instantiations;
    let trapped = !matches!(err, CallError::Reducer(_));
    assert_eq!(
        after - instantiations,
        u64::from(trapped),
        "{reducer}: a trap, and only a trap, replaces the instance"
    );
}

#[test]
fn err_return_rolls_back() {
    check_failure(
        "put_then_fail",
        |e| matches!(e, CallError::Reducer(m) if m == "refused on purpose"),
    );
}

#[test]
fn panic_rolls_back_with_its_message() {
    check_failure(
        "put_then_panic",
        |e| matches!(e, CallError::Trap(m) if m.contains("panicked on purpose after writing 9")),
    );
}

#[test]
fn unreachable_rolls_back() {
    check_failure(
        "put_then_unreachable",
        |e| matches!(e, CallError::Trap(m) if m.contains("unreachable")),
    );
}

#[test]
fn fuel_exhaustion_rolls_back() {
    check_failure("put_then_loop", |e| {
        matches!(e, CallError::OutOfFuel { .. })
    });
}

#[test]
fn memory_bomb_rolls_back() {
    check_failure("put_then_bomb", |e| matches!(e, CallError::MemoryLimit(_)));
}

#[test]
fn fuel_and_memory_limits_are_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        fuel_per_call: 20_000_000,
        memory_bytes_max: 4 << 20,
        cache_dir: Some(shared_cache_dir()),
        ..RuntimeConfig::default()
    };
    let db = Database::open(dir.path(), config).unwrap();
    db.publish("m", &guest_bytes(guests::MISBEHAVE)).unwrap();
    let err = db
        .call_json(
            "m",
            "put_then_loop",
            &json!([1]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    assert!(
        matches!(err, CallError::OutOfFuel { fuel: 20_000_000 }),
        "{err}"
    );
    let err = db
        .call_json(
            "m",
            "put_then_bomb",
            &json!([1]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    assert!(
        matches!(err, CallError::MemoryLimit(ref m) if m.contains("4194304")),
        "{err}"
    );
    db.call_json(
        "m",
        "put",
        &json!([1, "a", 0]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    assert_eq!(items(&db).len(), 1);
}

#[test]
fn unique_violations_fail_the_reducer() {
    let (_dir, db) = seeded();
    let before = items(&db);
    let err = db
        .call_json(
            "m",
            "put",
            &json!([2, "new", 0]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("primary key"), "{err}");
    let err = db
        .call_json(
            "m",
            "put",
            &json!([7, "tag1", 0]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unique constraint `tag` of table `items` violated by value \"tag1\""
    );
    let err = db
        .call_json(
            "m",
            "retag",
            &json!([2, "tag3"]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("unique constraint `tag`"), "{err}");
    assert_intact_and_working(&db, &before);
    // Keeping one's own unique value is not a violation.
    db.call_json(
        "m",
        "retag",
        &json!([2, "tag2"]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
}

#[test]
fn host_rejects_rows_that_do_not_decode() {
    let (_dir, db) = seeded();
    let before = items(&db);
    let err = db
        .call_json(
            "m",
            "put_garbage",
            &json!([]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    assert!(
        matches!(err, CallError::Reducer(ref m) if m.contains("InvalidRow") && m.contains("column 0: expected 8 more bytes")),
        "{err}"
    );
    assert_eq!(items(&db), before);
}

#[test]
fn scans_see_the_transaction_and_survive_deletes() {
    let (_dir, db) = seeded();
    db.call_json(
        "m",
        "read_range",
        &json!([2, 4]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    db.call_json(
        "m",
        "read_range",
        &json!([0, 2]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    db.call_json(
        "m",
        "read_tag",
        &json!(["tag2"]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    let r = results(&db);
    assert_eq!(r[0], ("range 2..4 of 3".to_string(), vec![2, 3]));
    assert_eq!(r[1], ("range 0..2 of 3".to_string(), vec![1]));
    assert_eq!(r[2], ("tag tag2 of 3".to_string(), vec![2]));
    // More rows than one cursor batch, deleted while being iterated.
    for id in 10..200 {
        db.call_json(
            "m",
            "put",
            &json!([id, format!("t{id}"), id % 3]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    }
    db.call_json(
        "m",
        "read_group",
        &json!([2]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    let expected: Vec<u64> = std::iter::once(2)
        .chain((10..200).filter(|id| id % 3 == 2))
        .map(|id| id % 256)
        .collect();
    assert_eq!(results(&db).last().unwrap().1, expected);
    db.call_json(
        "m",
        "delete_all",
        &json!([]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    assert!(items(&db).is_empty());
}

#[test]
fn wrong_arguments_are_refused_before_the_guest_runs() {
    let (_dir, db) = seeded();
    let calls = db.host().counters().snapshot().guest_calls;
    let cases = [
        (json!(["x", "tag", 1]), "field id: \"x\" is not an integer"),
        (json!([1, "tag"]), "expected 3 arguments, got 2"),
        (
            json!([1, 2, 3]),
            "field tag: expected a string, got a number",
        ),
        (
            json!([1, "t", 4294967296u64]),
            "field group: 4294967296 is out of range",
        ),
        (json!({"id": 1, "tag": "t"}), "missing field `group`"),
        (
            json!({"id": 1, "tag": "t", "group": 1, "x": 2}),
            "unknown field `x`",
        ),
    ];
    for (args, expected) in cases {
        let err = db
            .call_json("m", "put", &args, &interstice_runtime::Caller::operator())
            .unwrap_err();
        assert!(matches!(err, CallError::BadArguments(_)), "{err}");
        assert!(err.to_string().contains(expected), "{err} lacks {expected}");
    }
    let err = db
        .call_json(
            "m",
            "nope",
            &json!([]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "module `m` has no reducer named `nope`");
    let err = db
        .call_json(
            "x",
            "put",
            &json!([]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "no module named `x`");
    assert_eq!(db.host().counters().snapshot().guest_calls, calls);
}
