//! Every type of row encoding 2 through the CLI, on a real guest
//! (`guest-modules/test-modules/types`): the JSON written is exactly the
//! documented form (docs/row-encoding.md, "JSON"), values survive a restart
//! (a replay of the log), and malformed values are refused with their path.

mod common;
use common::{ok, refused};

use interstice_tests::{every_type_row as everything, guests};
use serde_json::{Value, json};

#[test]
fn every_type_round_trips_through_the_cli_and_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    ok(data, &["publish", guests::TYPES, "--name", "types"]);
    let row = everything();
    ok(data, &["call", "types", "put", &json!([row]).to_string()]);
    // A second row: the other forms of option and enum.
    let mut other = everything();
    other["id"] = json!("7");
    other["kind"] = json!("Sword");
    other["maybe"] = json!(null);
    other["k"] = json!(-0.0);
    ok(
        data,
        &["call", "types", "put", &json!({"row": other}).to_string()],
    );

    // Each command is a process of its own: these rows come from a replay.
    let lines: Vec<Value> = ok(data, &["query", "types", "everything"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, vec![other.clone(), row.clone()], "in u128 key order");
    // The text itself, not only its parse: key order as declared by JSON
    // maps (sorted), numbers as written.
    let text = ok(
        data,
        &[
            "query",
            "types",
            "everything",
            "--where",
            "id=340282366920938463463374607431768211455",
        ],
    );
    assert_eq!(text.trim_end(), serde_json::to_string(&row).unwrap());

    // Parameters of every kind, and the context's timestamp arithmetic.
    ok(
        data,
        &[
            "call",
            "types",
            "move_to",
            &json!({
                "id": "7",
                "pos": {"x": -2, "y": 0.25},
                "kind": {"Pair": [4, 65535]},
                "since": 0,
                "who": "CD".repeat(32),
            })
            .to_string(),
        ],
    );
    let moved: Value =
        serde_json::from_str(ok(data, &["query", "types", "everything", "--where", "id=7"]).trim())
            .unwrap();
    assert_eq!(moved["pos"], json!({"x": -2.0, "y": 0.25}));
    assert_eq!(moved["kind"], json!({"Pair": [4, 65535]}));
    assert_eq!(moved["who"], json!("cd".repeat(32)));
    // `at` is the transaction's time plus 1 ms, `took` the time since the
    // epoch: both from the same clock.
    let took = moved["took"].as_i64().unwrap();
    assert!(took > 1_700_000_000_000_000, "{took}");
    let at = moved["at"].as_str().unwrap();
    assert!(at.ends_with('Z') && at.len() == 27, "{at}");
}

#[test]
fn malformed_values_are_refused_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    ok(data, &["publish", guests::TYPES, "--name", "types"]);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "inventory",
            json!([{"kind": "Sword", "count": 1, "tags": []}, {"kind": "Sward", "count": 1, "tags": []}]),
            "field row.inventory[1].kind: unknown variant \"Sward\"",
        ),
        (
            "kind",
            json!({"Staff": {"power": 70000, "name": "x"}}),
            "field row.kind.Staff.power: 70000 is out of range",
        ),
        (
            "raw",
            json!([0, 255]),
            "field row.raw: expected a hex string, got an array",
        ),
        (
            "who",
            json!("abc"),
            "field row.who: hex string has an odd number of digits",
        ),
        (
            "at",
            json!("yesterday"),
            "field row.at: \"yesterday\" is not an RFC 3339 timestamp",
        ),
        ("a", json!(256), "field row.a: 256 is out of range"),
        ("id", json!(-1), "field row.id: -1 is out of range"),
        (
            "maybe",
            json!([1, "x"]),
            "field row.maybe[1]: \"x\" is not an integer",
        ),
        ("pos", json!({"x": 1}), "field row.pos.y: missing"),
    ];
    for (field, value, expected) in cases {
        let mut row = everything();
        row[field] = value;
        let err = refused(data, &["call", "types", "put", &json!([row]).to_string()]);
        assert!(err.contains(expected), "{field}: {err} lacks {expected}");
    }
    // Nothing was stored.
    assert_eq!(ok(data, &["query", "types", "everything"]), "");
}

#[test]
fn the_schema_shows_the_full_types() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    ok(data, &["publish", guests::TYPES, "--name", "types"]);
    let schema: Value = serde_json::from_str(&ok(data, &["schema", "types"])).unwrap();
    assert_eq!(schema["abi_version"], 2);
    let columns = &schema["tables"][0]["columns"];
    let ty = |name: &str| {
        columns
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["ty"].clone())
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    assert_eq!(ty("id"), json!("u128"));
    assert_eq!(ty("raw"), json!("bytes"));
    assert_eq!(ty("at"), json!("timestamp"));
    assert_eq!(ty("maybe"), json!({"option": {"vec": {"option": "i32"}}}));
    assert_eq!(
        ty("pos"),
        json!({"product": {"name": "Pos", "fields": [
            {"name": "x", "ty": "f32"}, {"name": "y", "ty": "f32"}]}})
    );
    assert_eq!(
        ty("kind")["sum"]["variants"],
        json!([
            {"name": "Sword", "shape": "unit"},
            {"name": "Bow", "shape": "tuple", "fields": [{"name": "0", "ty": "u8"}]},
            {"name": "Pair", "shape": "tuple", "fields": [
                {"name": "0", "ty": "u8"}, {"name": "1", "ty": "u16"}]},
            {"name": "Staff", "shape": "struct", "fields": [
                {"name": "power", "ty": "u16"}, {"name": "name", "ty": "string"}]},
        ])
    );
    // The parameter is the table's own struct, with every type inside it.
    let put = schema["reducers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "put")
        .unwrap();
    assert_eq!(put["params"][0]["ty"]["product"]["name"], "Everything");
    // Indexes of every kind, as declared.
    assert_eq!(schema["tables"][1]["name"], "moves");
    assert_eq!(
        schema["tables"][1]["indexes"],
        json!([
            {"name": "player", "columns": [3], "unique": false, "kind": "hash"},
            {"name": "tag", "columns": [4], "unique": true, "kind": "hash"},
            {"name": "kind", "columns": [7], "unique": false, "kind": "btree"},
            {"name": "at", "columns": [8], "unique": true, "kind": "btree"},
            {"name": "by_game_turn", "columns": [1, 2], "unique": false, "kind": "btree"},
            {"name": "by_cell", "columns": [1, 5, 6], "unique": true, "kind": "hash"},
            {"name": "by_game_kind", "columns": [1, 7], "unique": false, "kind": "hash"},
        ])
    );
}

const P1: &str = "abababababababababababababababababababababababababababababababab";
const P2: &str = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";

/// `play` through the CLI: one move.
fn play(
    data: &std::path::Path,
    game: u32,
    turn: u16,
    player: &str,
    tag: &str,
    cell: (u8, u8),
    kind: Value,
) {
    let args = json!([game, turn, player, tag, cell.0, cell.1, kind]).to_string();
    ok(data, &["call", "types", "play", &args]);
}

/// `find` through the CLI, then what each lookup returned.
fn find(data: &std::path::Path) -> String {
    let args = json!({
        "game": 1, "from": 2, "to": 3, "player": P1, "tag": "c", "x": 1, "y": 0, "kind": "Sword"
    });
    ok(data, &["call", "types", "find", &args.to_string()]);
    ok(data, &["query", "types", "found"])
}

#[test]
fn composite_and_hash_indexes_answer_every_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    ok(data, &["publish", guests::TYPES, "--name", "types"]);
    play(data, 1, 1, P1, "a", (0, 0), json!("Sword"));
    play(data, 1, 2, P2, "b", (1, 0), json!({"Bow": 3}));
    play(data, 1, 3, P1, "c", (2, 0), json!("Sword"));
    play(
        data,
        2,
        1,
        P2,
        "d",
        (0, 0),
        json!({"Staff": {"power": 1, "name": "x"}}),
    );
    play(data, 1, 2, P1, "e", (3, 3), json!("Sword"));
    play(data, 3, 0, P1, "f", (0, 0), json!("Sword"));

    // Rows in each index's order: by key, then by primary key. Every
    // command is a process of its own, so these indexes were rebuilt by a
    // replay of the log.
    let expected = r#"{"ids":[2],"lookup":"cell"}
{"ids":[1,2,5,3,4,6],"lookup":"everything"}
{"ids":[1,3,5],"lookup":"game and kind"}
{"ids":[2,5,3],"lookup":"inclusive range"}
{"ids":[1,3,5,6,2,4],"lookup":"kind and after"}
{"ids":[2,5,3],"lookup":"open range"}
{"ids":[1,3,5,6],"lookup":"player"}
{"ids":[1,2,5,3],"lookup":"prefix"}
{"ids":[1,2,5,3,4],"lookup":"range on the first column"}
{"ids":[2,5],"lookup":"range on the last column"}
{"ids":[3],"lookup":"tag"}
{"ids":[2,5],"lookup":"whole key"}
"#;
    assert_eq!(find(data), expected);

    // Unique hash indexes, over one column and over three.
    let again = json!([9, 9, P1, "a", 9, 9, "Sword"]).to_string();
    let err = refused(data, &["call", "types", "play", &again]);
    assert!(
        err.contains("unique constraint `tag` of table `moves` violated by value \"a\""),
        "{err}"
    );
    let same_cell = json!([1, 9, P2, "z", 2, 0, "Sword"]).to_string();
    let err = refused(data, &["call", "types", "play", &same_cell]);
    assert!(
        err.contains("unique constraint `by_cell` of table `moves` violated by value"),
        "{err}"
    );

    // A delete through the unique hash index leaves every index without the
    // row; a snapshot's load rebuilds them the same.
    ok(data, &["call", "types", "take_back", r#"["c"]"#]);
    let err = refused(data, &["call", "types", "take_back", r#"["c"]"#]);
    assert!(err.contains("no move tagged \"c\""), "{err}");
    let without_3 = find(data);
    assert_eq!(
        without_3,
        expected
            .replace("[1,3,5]", "[1,5]")
            .replace("[1,2,5,3,4,6]", "[1,2,5,4,6]")
            .replace("[2,5,3]", "[2,5]")
            .replace("[1,3,5,6,2,4]", "[1,5,6,2,4]")
            .replace("[1,3,5,6]", "[1,5,6]")
            .replace("[1,2,5,3]", "[1,2,5]")
            .replace("[1,2,5,3,4]", "[1,2,5,4]")
            .replace(
                "{\"ids\":[3],\"lookup\":\"tag\"}",
                "{\"ids\":[],\"lookup\":\"tag\"}"
            )
    );
    ok(data, &["snapshot", "create"]);
    assert_eq!(find(data), without_3);
}
