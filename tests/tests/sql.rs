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
