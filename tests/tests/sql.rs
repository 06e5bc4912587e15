//! SQL on a real guest's tables: enums by variant name, struct fields by
//! path, identities as hex, timestamps as RFC 3339, and the indexes every
//! kind of declaration gives (composite B-tree, unique and plain hash,
//! B-tree on an enum), as `EXPLAIN` shows them.

use interstice_runtime::sql::{Budget, SqlError};
use interstice_runtime::{Database, QueryError, Reader, SqlAnswer};
use interstice_tests::{guest_bytes, guests, test_config};
use serde_json::{Value, json};

fn sql(db: &Database, text: &str) -> Result<SqlAnswer, QueryError> {
    db.sql("types", text, Reader::Operator, &Budget::default())
}

fn rows(db: &Database, text: &str) -> Value {
    sql(db, text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .to_json()["rows"]
        .clone()
}

fn plan(db: &Database, text: &str) -> String {
    let answer = sql(db, &format!("EXPLAIN {text}")).unwrap();
    answer
        .rows
        .iter()
        .map(|r| match &r[0] {
            interstice_store::Value::String(line) => line.to_string(),
            other => panic!("a plan line that is not a string: {other:?}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn sql_reads_every_kind_of_value_and_uses_every_kind_of_index() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), test_config()).unwrap();
    db.publish("types", &guest_bytes(guests::TYPES)).unwrap();
    let op = interstice_runtime::Caller::operator();
    let (p1, p2) = ("11".repeat(32), "22".repeat(32));
    for (game, turn, player, tag, x, y, kind) in [
        (1, 1, &p1, "a", 0, 0, json!("Sword")),
        (1, 2, &p2, "b", 1, 0, json!({"Bow": 3})),
        (1, 3, &p1, "c", 2, 0, json!("Sword")),
        (
            2,
            1,
            &p2,
            "d",
            0,
            0,
            json!({"Staff": {"power": 1, "name": "x"}}),
        ),
        (1, 2, &p1, "e", 3, 3, json!("Sword")),
    ] {
        db.call_json(
            "types",
            "play",
            &json!([game, turn, player, tag, x, y, kind]),
            &op,
        )
        .unwrap();
    }
    let mut other = interstice_tests::every_type_row();
    other["id"] = json!("7");
    db.call_json(
        "types",
        "put",
        &json!([interstice_tests::every_type_row()]),
        &op,
    )
    .unwrap();
    db.call_json("types", "put", &json!([other]), &op).unwrap();
    let last = db
        .call_json(
            "types",
            "move_to",
            &json!(["7", {"x": -2, "y": 0.25}, "Sword", 0, p1]),
            &op,
        )
        .unwrap()
        .tx_id;

    // An enum by its variant's name, through the B-tree index on it.
    let q = "SELECT tag FROM moves WHERE kind = 'Sword' ORDER BY tag";
    assert_eq!(rows(&db, q), json!([["a"], ["c"], ["e"]]));
    let p = plan(&db, q);
    assert!(p.starts_with("scan moves: index kind at #0()"), "{p}");
    // A whole key of the composite B-tree index; of the unique hash index
    // over three columns; a hash index on an identity given as hex.
    let q = "SELECT tag FROM moves WHERE game = 1 AND turn = 2 ORDER BY tag";
    assert_eq!(rows(&db, q), json!([["b"], ["e"]]));
    assert!(
        plan(&db, q).contains("index by_game_turn at (1, 2)"),
        "{}",
        plan(&db, q)
    );
    let q = "SELECT tag FROM moves WHERE game = 1 AND x = 2 AND y = 0";
    assert_eq!(rows(&db, q), json!([["c"]]));
    assert!(plan(&db, q).contains("index by_cell"), "{}", plan(&db, q));
    let q = format!("SELECT COUNT(*) FROM moves WHERE player = '{p1}'");
    assert_eq!(rows(&db, &q), json!([[3]]));
    assert!(!plan(&db, &q).contains("every row"), "{}", plan(&db, &q));
    // A prefix of the composite index, and a range of the primary key.
    let q = "SELECT tag FROM moves WHERE game = 1 ORDER BY tag";
    assert_eq!(rows(&db, q), json!([["a"], ["b"], ["c"], ["e"]]));
    assert!(
        plan(&db, q).contains("index by_game_turn over [(1)"),
        "{}",
        plan(&db, q)
    );
    let q = "SELECT tag FROM moves WHERE id BETWEEN 2 AND 3 ORDER BY id";
    assert_eq!(rows(&db, q), json!([["b"], ["c"]]));
    assert!(
        plan(&db, q).contains("primary key id) over [2, 3]"),
        "{}",
        plan(&db, q)
    );

    // Timestamps as RFC 3339; every move was made after 1970.
    assert_eq!(
        rows(
            &db,
            "SELECT COUNT(*) FROM moves WHERE at >= '1970-01-01T00:00:00Z'"
        ),
        json!([[5]])
    );
    assert_eq!(
        rows(
            &db,
            "SELECT COUNT(*) FROM moves WHERE at < '1970-01-01T00:00:00Z'"
        ),
        json!([[0]])
    );

    // Struct fields by path; 128-bit integers as their digits.
    assert_eq!(
        rows(&db, "SELECT id, pos.y FROM everything WHERE pos.x < 0"),
        json!([["7", 0.25]])
    );
    assert_eq!(
        rows(&db, "SELECT COUNT(*) FROM everything WHERE pos.x = 1.5"),
        json!([[1]])
    );

    // Grouped by an enum: in variant order, values as JSON of the enum.
    assert_eq!(
        rows(
            &db,
            "SELECT kind, COUNT(*) FROM moves GROUP BY kind ORDER BY kind"
        ),
        json!([
            ["Sword", 3],
            [{"Bow": 3}, 1],
            [{"Staff": {"power": 1, "name": "x"}}, 1]
        ])
    );

    // What cannot meet is refused before anything runs.
    let refused = |text: &str| match sql(&db, text) {
        Err(QueryError::Sql(e)) => e,
        other => panic!("{text}: {other:?}"),
    };
    assert!(matches!(
        refused("SELECT * FROM moves WHERE kind = 'Axe'"),
        SqlError::Type(_)
    ));
    assert!(matches!(
        refused("SELECT * FROM moves WHERE player = 'zz'"),
        SqlError::Type(_)
    ));
    assert!(matches!(
        refused("SELECT * FROM moves WHERE at = 'noon'"),
        SqlError::Type(_)
    ));
    assert!(matches!(
        refused("SELECT pos.z FROM everything"),
        SqlError::UnknownColumn(c) if c == "pos.z"
    ));

    // The answer is as of the last transaction.
    assert_eq!(sql(&db, "SELECT * FROM found").unwrap().tx_id, last);
}

fn chat_sql(db: &Database, text: &str, reader: Reader<'_>) -> Result<SqlAnswer, QueryError> {
    db.sql("chat", text, reader, &Budget::default())
}

fn changed(answer: &SqlAnswer) -> u64 {
    match answer.rows.as_slice() {
        [row] => match row.as_slice() {
            [interstice_store::Value::U64(n)] => *n,
            other => panic!("a write answers one count, not {other:?}"),
        },
        other => panic!("a write answers one row, not {other:?}"),
    }
}

#[test]
fn sql_writes_are_logged_transactions_that_replay_without_any_guest() {
    use interstice_runtime::fs::RealFs;
    use interstice_runtime::tools;
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), test_config()).unwrap();
    db.publish("chat", &guest_bytes(guests::CHAT)).unwrap();
    let op = Reader::Operator;
    let stranger = interstice_store::Identity::from_claims("https://issuer.test", "stranger");

    // INSERT: the auto-increment column left out is assigned, an option
    // column left out is NULL, and the answer carries the new transaction.
    let before = db.next_tx_id().unwrap();
    let ins = chat_sql(
        &db,
        "INSERT INTO users (name, joined_micros) VALUES ('ada', 10), ('bob', 20)",
        op,
    )
    .unwrap();
    assert_eq!(changed(&ins), 2);
    assert_eq!(ins.tx_id, before, "one transaction for the statement");
    let ins2 = chat_sql(
        &db,
        "INSERT INTO messages (channel, sender, text, sent_micros) VALUES ('general', 2, 'hi', 30), ('general', 3, 'yo', 31), ('random', 2, 'x', 32)",
        op,
    )
    .unwrap();
    assert_eq!(changed(&ins2), 3);
    // UPDATE through the B-tree on channel; DELETE by a range.
    let upd = chat_sql(
        &db,
        "UPDATE messages SET text = 'edited', sender = 3 WHERE channel = 'general' AND sent_micros BETWEEN 31 AND 40",
        op,
    )
    .unwrap();
    assert_eq!(changed(&upd), 1);
    let del = chat_sql(&db, "DELETE FROM messages WHERE channel = 'random'", op).unwrap();
    assert_eq!(changed(&del), 1);
    let none = chat_sql(&db, "DELETE FROM messages WHERE id = 999", op).unwrap();
    assert_eq!(changed(&none), 0, "a statement that matches nothing");
    // An UPDATE that moves a row to another primary key.
    let moved = chat_sql(&db, "UPDATE users SET id = 100 WHERE name = 'bob'", op).unwrap();
    assert_eq!(changed(&moved), 1);
    // The ephemeral table takes writes, but they are not logged.
    chat_sql(
        &db,
        "INSERT INTO typing (user, channel) VALUES (100, 'general')",
        op,
    )
    .unwrap();

    // A unique index refuses the whole statement: the first row is not
    // kept, and no transaction is taken.
    let next = db.next_tx_id().unwrap();
    let e = chat_sql(
        &db,
        "INSERT INTO users (name, joined_micros) VALUES ('cy', 40), ('ada', 41)",
        op,
    )
    .unwrap_err();
    assert!(
        matches!(&e, QueryError::Sql(SqlError::Refused(m)) if m.contains("unique")),
        "{e}"
    );
    assert_eq!(db.next_tx_id().unwrap(), next);
    assert_eq!(
        chat_rows(&db, "SELECT COUNT(*) FROM users WHERE name = 'cy'"),
        json!([[0]])
    );
    // Bad input is refused before anything runs.
    for (text, what) in [
        ("INSERT INTO users (name) VALUES ('dee')", "no default"),
        (
            "INSERT INTO users (name, joined_micros) VALUES (NULL, 1)",
            "NULL",
        ),
        (
            "INSERT INTO users (name, joined_micros) VALUES ('e', 1.5)",
            "not an integer",
        ),
        (
            "INSERT INTO users (name, joined_micros) VALUES ('e', 1, 2)",
            "3 values",
        ),
        ("INSERT INTO users (nope) VALUES (1)", "nope"),
        ("UPDATE users SET bio = name", "literals"),
        ("UPDATE messages SET sender = -1", "out of range"),
        ("INSERT INTO users SELECT * FROM users", "VALUES"),
        ("DELETE FROM st_client", "st_client"),
    ] {
        let e = chat_sql(&db, text, op).unwrap_err().to_string();
        assert!(e.contains(what), "{text}: {e}");
        assert_eq!(db.next_tx_id().unwrap(), next, "{text} took a transaction");
    }
    // Only the owner and the operator write; others are told so, for
    // public tables too.
    let e = chat_sql(&db, "DELETE FROM messages", Reader::Identity(&stranger)).unwrap_err();
    assert!(
        matches!(e, QueryError::Sql(SqlError::ReadOnly("DELETE"))),
        "{e}"
    );
    let e = chat_sql(&db, "DELETE FROM messages", Reader::Anonymous).unwrap_err();
    assert!(matches!(e, QueryError::Sql(SqlError::ReadOnly(_))), "{e}");
    // A write's condition is bounded like any query.
    let tight = Budget {
        rows: 1,
        ..Budget::default()
    };
    let e = db
        .sql("chat", "DELETE FROM messages", op, &tight)
        .unwrap_err();
    assert!(matches!(e, QueryError::Sql(SqlError::Budget { .. })), "{e}");
    assert_eq!(db.next_tx_id().unwrap(), next);

    assert_eq!(
        chat_rows(
            &db,
            "SELECT * FROM users WHERE joined_micros < 1000 ORDER BY id"
        ),
        json!([[2, "ada", null, 10], [100, "bob", null, 20]])
    );
    assert_eq!(
        chat_rows(
            &db,
            "SELECT sender, text FROM messages WHERE sent_micros < 1000 ORDER BY id"
        ),
        json!([[2, "hi"], [3, "edited"]])
    );
    let state = db.state_json().unwrap();
    drop(db);

    // The log holds each statement as a kind 5 record with its text.
    let mut out = Vec::new();
    tools::dump(&RealFs, dir.path(), &tools::DumpFilter::default(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(": sql chat: DELETE FROM messages WHERE channel = 'random'\n"),
        "{text}"
    );
    assert!(
        !text.contains("insert typing"),
        "an ephemeral write was logged: {text}"
    );

    // Replay applies the records' rows without running SQL or any guest.
    let db = Database::open(dir.path(), test_config()).unwrap();
    let mut replayed = db.state_json().unwrap();
    assert_eq!(replayed["chat"]["typing"]["rows"], json!([]));
    let mut expected = state;
    expected["chat"]["typing"]["rows"] = json!([]);
    replayed["chat"]["typing"]["next_auto_inc"] =
        expected["chat"]["typing"]["next_auto_inc"].clone();
    assert_eq!(replayed, expected);
    assert_eq!(db.counters().guest_instantiations, 0);
    // And reducers go on from the state SQL left: the next id follows 100.
    db.call_json(
        "chat",
        "register",
        &json!(["cy", null]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    assert_eq!(
        chat_rows(&db, "SELECT id FROM users WHERE name = 'cy'"),
        json!([[101]])
    );
}

fn chat_rows(db: &Database, text: &str) -> Value {
    chat_sql(db, text, Reader::Operator)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .to_json()["rows"]
        .clone()
}

#[test]
fn sql_writes_to_a_schedule_table_keep_the_schedule() {
    let (config, clock) = interstice_tests::manual_clock_config(1_700_000_000_000_000);
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config).unwrap();
    db.publish("reminders", &guest_bytes(guests::REMINDERS))
        .unwrap();
    let due = 1_700_000_000_000_000 + 5_000;
    let text = format!(
        "INSERT INTO reminders (scheduled_at, text) VALUES ('{{\"Time\": {due}}}', 'by sql')"
    );
    db.sql("reminders", &text, Reader::Operator, &Budget::default())
        .unwrap();
    assert_eq!(db.next_due().unwrap(), Some(due));
    clock.store(due + 1, std::sync::atomic::Ordering::SeqCst);
    let round = db.run_due(64).unwrap();
    assert_eq!(round.ran, 1, "{round:?}");
    let fired = db
        .sql(
            "reminders",
            "SELECT text FROM fired",
            Reader::Operator,
            &Budget::default(),
        )
        .unwrap();
    assert_eq!(fired.to_json()["rows"], json!([["by sql"]]));
    // Deleting a schedule row by SQL cancels it.
    let later = due + 60_000;
    let text = format!(
        "INSERT INTO reminders (scheduled_at, text) VALUES ('{{\"Time\": {later}}}', 'gone')"
    );
    db.sql("reminders", &text, Reader::Operator, &Budget::default())
        .unwrap();
    assert_eq!(db.next_due().unwrap(), Some(later));
    db.sql(
        "reminders",
        "DELETE FROM reminders WHERE text = 'gone'",
        Reader::Operator,
        &Budget::default(),
    )
    .unwrap();
    assert_eq!(db.next_due().unwrap(), None);
}
