//! Live queries against a fresh query: random tables, random queries of
//! both subscription shapes, and random transactions (inserts, updates
//! that move rows in and out, deletes, several changes per transaction).
//! After every transaction the answer a client holds (the initial rows with
//! every delta applied) must equal the same query run fresh, as a set of
//! rows, and each delta must make sense to a client: an insert of a row it
//! does not hold, an update or delete of one it does.
//!
//! `SQL_LIVE_CASES` sets how many cases run (default 300), `SQL_LIVE_SEED`
//! the first seed.

use std::collections::BTreeMap;

mod common;

use common::Rng;
use interstice_sql::{Access, Budget, Change, Live, Tables};
use interstice_store::codec::{decode_row, encode_row};
use interstice_store::{
    AlgebraicType, ColumnDef, IndexDef, IndexKind, ModuleDef, MutationOp, Table, TableDef, TxLog,
    Value,
};

struct Db {
    def: ModuleDef,
    tables: interstice_store::Tables,
}

impl Tables for Db {
    fn table(&self, name: &str) -> Option<&Table> {
        let id = self.def.tables.iter().position(|t| t.name == name)?;
        self.tables.table(id as u32).ok()
    }
}

/// `a (id u64, x i32, s string, n option<i64>)` and `b (id u32, y i64, z
/// string)`, with indexes on the join columns or not.
fn db(rng: &mut Rng) -> Db {
    use AlgebraicType as T;
    let mut a_indexes = Vec::new();
    if rng.chance(50) {
        a_indexes.push(IndexDef {
            name: "a_x".into(),
            columns: vec![1],
            unique: false,
            kind: if rng.chance(50) {
                IndexKind::Btree
            } else {
                IndexKind::Hash
            },
        });
    } else if rng.chance(50) {
        a_indexes.push(IndexDef {
            name: "a_x_s".into(),
            columns: vec![1, 2],
            unique: false,
            kind: IndexKind::Btree,
        });
    }
    let table = |name: &str, columns: Vec<ColumnDef>, indexes: Vec<IndexDef>| TableDef {
        name: name.into(),
        columns,
        primary_key: 0,
        auto_inc: None,
        indexes,
        ephemeral: false,
        public: true,
        scheduled: None,
    };
    let def = ModuleDef {
        abi_version: 2,
        tables: vec![
            table(
                "a",
                vec![
                    ColumnDef::new("id", T::U64),
                    ColumnDef::new("x", T::I32),
                    ColumnDef::new("s", T::String),
                    ColumnDef::new("n", T::option(T::I64)),
                ],
                a_indexes,
            ),
            table(
                "b",
                vec![
                    ColumnDef::new("id", T::U32),
                    ColumnDef::new("y", T::I64),
                    ColumnDef::new("z", T::String),
                ],
                Vec::new(),
            ),
        ],
        reducers: Vec::new(),
        owner: None,
    };
    let tables = interstice_store::Tables::new(&def);
    Db { def, tables }
}

const STRINGS: [&str; 4] = ["p", "q", "pq", ""];

fn a_row(rng: &mut Rng, id: u64) -> Vec<Value> {
    vec![
        Value::U64(id),
        Value::I32(rng.below(5) as i32 - 1),
        Value::String(STRINGS[rng.below(4)].into()),
        if rng.chance(25) {
            Value::Null
        } else {
            Value::I64(rng.below(7) as i64)
        },
    ]
}

fn b_row(rng: &mut Rng, id: u64) -> Vec<Value> {
    vec![
        Value::U32(id as u32),
        Value::I64(rng.below(5) as i64 - 1),
        Value::String(STRINGS[rng.below(4)].into()),
    ]
}

fn a_condition(rng: &mut Rng, alias: &str) -> String {
    let p = if alias.is_empty() {
        String::new()
    } else {
        format!("{alias}.")
    };
    match rng.below(6) {
        0 => format!("{p}x = {}", rng.below(4) as i32 - 1),
        1 => format!("{p}x BETWEEN 0 AND {}", rng.below(3)),
        2 => format!("{p}s LIKE 'p%'"),
        3 => format!("{p}n IS NULL OR {p}n > {}", rng.below(6)),
        4 => format!("NOT ({p}s = 'q') AND {p}x <> 2"),
        _ => format!("{p}n IN (1, 3, 5)"),
    }
}

fn random_query(rng: &mut Rng) -> String {
    if rng.chance(40) {
        return match rng.below(3) {
            0 => "SELECT * FROM a".to_string(),
            _ => format!("SELECT * FROM a WHERE {}", a_condition(rng, "")),
        };
    }
    let b_cond = match rng.below(4) {
        0 => "b.z = 'p'".to_string(),
        1 => format!("b.y >= {}", rng.below(3)),
        2 => "b.z LIKE '%q%' OR b.id < 5".to_string(),
        _ => "b.id <> 3".to_string(),
    };
    let mut q = format!("SELECT a.* FROM a JOIN b ON a.x = b.y WHERE ({b_cond})");
    if rng.chance(30) {
        q.push_str(&format!(" AND ({})", a_condition(rng, "a")));
    }
    q
}

/// One random transaction's changes, applied to the tables.
fn random_tx(rng: &mut Rng, db: &mut Db) -> Vec<(u32, MutationOp, Vec<u8>)> {
    let mut tx = TxLog::new();
    for _ in 0..1 + rng.below(4) {
        let table = rng.below(2) as u32;
        let id = rng.below(12) as u64;
        let types = db.def.tables[table as usize].column_types();
        let row = match table {
            0 => a_row(rng, id),
            _ => b_row(rng, id),
        };
        let bytes = encode_row(&row, &types);
        let exists = db
            .tables
            .get(table, &encode_row(&row[..1], &types[..1]))
            .unwrap()
            .is_some();
        match (exists, rng.below(3)) {
            (false, _) => {
                db.tables.insert(&mut tx, table, &bytes).unwrap();
            }
            (true, 0) => {
                let key = encode_row(&row[..1], &types[..1]);
                db.tables.delete(&mut tx, table, &key).unwrap();
            }
            (true, _) => db.tables.update(&mut tx, table, &bytes).unwrap(),
        }
    }
    db.tables
        .commit(&mut tx)
        .into_iter()
        .map(|m| (m.table, m.op, m.row.to_vec()))
        .collect()
}

/// The fresh answer: rows of `a` by primary key (a join's duplicates once).
fn fresh(db: &Db, text: &str) -> BTreeMap<u64, Vec<Value>> {
    let answer = interstice_sql::query(db, Access::All, text, &Budget::default()).unwrap();
    answer
        .rows
        .into_iter()
        .map(|row| match row[0] {
            Value::U64(id) => (id, row),
            ref other => panic!("an id that is not u64: {other:?}"),
        })
        .collect()
}

fn decode_a(db: &Db, row: &[u8]) -> (u64, Vec<Value>) {
    let values = decode_row(row, &db.def.tables[0].column_types()).unwrap();
    match values[0] {
        Value::U64(id) => (id, values),
        ref other => panic!("an id that is not u64: {other:?}"),
    }
}

fn run_case(seed: u64) {
    let mut rng = Rng::new(seed);
    let mut db = db(&mut rng);
    for _ in 0..rng.below(10) {
        random_tx(&mut rng, &mut db);
    }
    let text = random_query(&mut rng);
    let (mut live, rows) = Live::start(&db, Access::All, &text, &Budget::default())
        .unwrap_or_else(|e| panic!("seed {seed}: {text}: {e}"));
    let mut client: BTreeMap<u64, Vec<Value>> = rows.iter().map(|r| decode_a(&db, r)).collect();
    assert_eq!(client.len(), rows.len(), "seed {seed}: a row sent twice");
    assert_eq!(
        client,
        fresh(&db, &text),
        "seed {seed}: {text}: initial rows"
    );
    for step in 0..30 {
        let changes = random_tx(&mut rng, &mut db);
        let names = ["a", "b"];
        let changes: Vec<Change<'_>> = changes
            .iter()
            .map(|(t, op, row)| Change {
                table: names[*t as usize],
                op: *op,
                row,
            })
            .collect();
        let deltas = live
            .apply(&db, &changes)
            .unwrap_or_else(|e| panic!("seed {seed}: {text}: {e}"));
        let what = || format!("seed {seed}: {text}: step {step}: {changes:?}");
        for d in deltas {
            let (id, values) = decode_a(&db, &d.row);
            match d.op {
                MutationOp::Insert => {
                    assert!(
                        client.insert(id, values).is_none(),
                        "{}: insert of a held row",
                        what()
                    )
                }
                MutationOp::Update => {
                    assert!(
                        client.insert(id, values).is_some(),
                        "{}: update of a row not held",
                        what()
                    )
                }
                MutationOp::Delete => {
                    assert!(
                        client.remove(&id).is_some(),
                        "{}: delete of a row not held",
                        what()
                    )
                }
            }
        }
        assert_eq!(client, fresh(&db, &text), "{}", what());
        assert_eq!(live.len(), client.len(), "{}", what());
    }
}

#[test]
fn live_answers_stay_equal_to_fresh_queries() {
    let cases: u64 = std::env::var("SQL_LIVE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let first: u64 = std::env::var("SQL_LIVE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for seed in first..first + cases {
        run_case(seed);
    }
}

#[test]
fn only_the_two_shapes_are_followed() {
    let mut rng = Rng::new(7);
    let db = db(&mut rng);
    for text in [
        "SELECT id FROM a",
        "SELECT * FROM a ORDER BY id",
        "SELECT * FROM a LIMIT 3",
        "SELECT COUNT(*) FROM a",
        "SELECT DISTINCT * FROM a",
        "SELECT b.* FROM a JOIN b ON a.x = b.y",
        "SELECT a.* FROM a LEFT JOIN b ON a.x = b.y",
        "SELECT a.* FROM a JOIN b ON a.x < b.y",
        "SELECT a.* FROM a JOIN b ON a.x = b.y WHERE a.s = b.z",
        "SELECT a.* FROM a, b",
        "EXPLAIN SELECT * FROM a",
        "DELETE FROM a",
    ] {
        let e = Live::start(&db, Access::All, text, &Budget::default())
            .err()
            .unwrap_or_else(|| panic!("{text} was accepted"));
        assert!(
            matches!(e, interstice_sql::SqlError::Unsupported(_)),
            "{text}: {e}"
        );
    }
}
