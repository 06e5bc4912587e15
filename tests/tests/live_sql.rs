//! Query subscriptions on a real guest: a random workload of reducer calls
//! and SQL writes on the chat module, with subscribers to filters and
//! semi-joins. Each subscriber applies the messages of the change feed to
//! its initial rows; after every transaction its rows must equal the same
//! query run fresh. Replaying the log (a restart) never evaluates a live
//! query: they are the server's, not the log's.
//!
//! `LIVE_SQL_STEPS` sets the workload's length (default 150),
//! `INTERSTICE_SEED` its seed (printed).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use interstice_runtime::feed::CommittedTx;
use interstice_runtime::sql::Budget;
use interstice_runtime::{Caller, Database, Reader};
use interstice_store::MutationOp;
use interstice_store::json::row_to_json;
use interstice_tests::{guest_bytes, guests, rng, test_config};
use serde_json::{Value, json};

const QUERIES: [&str; 5] = [
    "SELECT * FROM messages WHERE channel = 'general' AND text LIKE 'a%'",
    "SELECT * FROM users WHERE bio IS NOT NULL OR id > 4",
    "SELECT m.* FROM messages AS m JOIN users AS u ON m.sender = u.id WHERE u.name LIKE 'a%'",
    "SELECT u.* FROM users AS u JOIN messages AS m ON u.id = m.sender WHERE m.channel = 'random'",
    "SELECT * FROM messages WHERE sender IN (2, 3) AND NOT channel = 'random'",
];

/// One subscriber's copy of an answer, by primary key (`id`).
struct Client {
    query: &'static str,
    query_id: u64,
    table: String,
    rows: BTreeMap<u64, Value>,
}

fn id_of(row: &Value) -> u64 {
    row["id"].as_u64().expect("an id")
}

/// The fresh answer as rows by id (a join's repeated rows once).
fn fresh(db: &Database, query: &str) -> BTreeMap<u64, Value> {
    let answer = db
        .sql("chat", query, Reader::Operator, &Budget::default())
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    let json = answer.to_json();
    let names: Vec<String> = json["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let object: serde_json::Map<String, Value> = names
                .iter()
                .cloned()
                .zip(r.as_array().unwrap().iter().cloned())
                .collect();
            let row = Value::Object(object);
            (id_of(&row), row)
        })
        .collect()
}

impl Client {
    fn apply(&mut self, tx: &CommittedTx) {
        let def = tx.def.as_ref().expect("a definition");
        let table = def.tables.iter().find(|t| t.name == self.table).unwrap();
        for delta in tx.queries.iter().filter(|d| d.query_id == self.query_id) {
            let changes = delta.changes.as_ref().expect("the query follows");
            for d in changes {
                let row = row_to_json(&d.row, table).unwrap();
                let id = id_of(&row);
                match d.op {
                    MutationOp::Insert => assert!(
                        self.rows.insert(id, row).is_none(),
                        "{}: insert of held row {id}",
                        self.query
                    ),
                    MutationOp::Update => assert!(
                        self.rows.insert(id, row).is_some(),
                        "{}: update of row {id}, not held",
                        self.query
                    ),
                    MutationOp::Delete => assert!(
                        self.rows.remove(&id).is_some(),
                        "{}: delete of row {id}, not held",
                        self.query
                    ),
                }
            }
        }
    }
}

const NAMES: [&str; 6] = ["ann", "al", "bo", "cy", "amy", "dee"];
const CHANNELS: [&str; 3] = ["general", "random", "dev"];
const TEXTS: [&str; 4] = ["a", "ab", "b", "hello"];

fn pick(state: &mut u64, items: &[&'static str]) -> &'static str {
    items[(rng::next(state) as usize) % items.len()]
}

/// One random transaction: a reducer call or a SQL write (failures are
/// part of the workload: they commit nothing).
fn step(db: &Database, state: &mut u64) {
    let op = Caller::operator();
    let roll = rng::next(state) % 10;
    let _ = match roll {
        0 | 1 => db
            .call_json(
                "chat",
                "register",
                &json!([
                    pick(state, &NAMES),
                    if roll == 0 { json!("bio") } else { json!(null) }
                ]),
                &op,
            )
            .map(drop),
        2..=4 => db
            .call_json(
                "chat",
                "send",
                &json!([
                    pick(state, &NAMES),
                    pick(state, &CHANNELS),
                    pick(state, &TEXTS)
                ]),
                &op,
            )
            .map(drop),
        5 => db
            .call_json(
                "chat",
                "rename",
                &json!([pick(state, &NAMES), pick(state, &NAMES)]),
                &op,
            )
            .map(drop),
        6 => db
            .call_json(
                "chat",
                "clear_channel",
                &json!([pick(state, &CHANNELS)]),
                &op,
            )
            .map(drop),
        7 => db
            .sql(
                "chat",
                &format!(
                    "UPDATE messages SET sender = {} WHERE channel = '{}'",
                    rng::next(state) % 6,
                    pick(state, &CHANNELS)
                ),
                Reader::Operator,
                &Budget::default(),
            )
            .map(drop)
            .map_err(|e| interstice_runtime::CallError::Reducer(e.to_string())),
        8 => db
            .sql(
                "chat",
                &format!("DELETE FROM users WHERE id = {}", rng::next(state) % 7),
                Reader::Operator,
                &Budget::default(),
            )
            .map(drop)
            .map_err(|e| interstice_runtime::CallError::Reducer(e.to_string())),
        _ => db
            .sql(
                "chat",
                &format!(
                    "UPDATE messages SET channel = '{}', text = '{}' WHERE id = {}",
                    pick(state, &CHANNELS),
                    pick(state, &TEXTS),
                    rng::next(state) % 20
                ),
                Reader::Operator,
                &Budget::default(),
            )
            .map(drop)
            .map_err(|e| interstice_runtime::CallError::Reducer(e.to_string())),
    };
}

#[test]
fn subscribers_applying_every_message_hold_what_a_fresh_query_answers() {
    let steps: usize = std::env::var("LIVE_SQL_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let seed = rng::seed();
    eprintln!("INTERSTICE_SEED={seed}");
    let mut state = seed;
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), test_config()).unwrap();
    db.publish("chat", &guest_bytes(guests::CHAT)).unwrap();
    let feed: Arc<Mutex<Vec<Arc<CommittedTx>>>> = Arc::default();
    let sink = feed.clone();
    db.listen(Box::new(move |tx| sink.lock().unwrap().push(tx.clone())))
        .unwrap();
    // Some state before anyone subscribes.
    for _ in 0..20 {
        step(&db, &mut state);
    }
    let mut clients = Vec::new();
    let mut started_at = Vec::new();
    for (i, query) in QUERIES.iter().enumerate() {
        // Two subscribers of the first query: they share one live query.
        for _ in 0..if i == 0 { 2 } else { 1 } {
            let start = db
                .subscribe_sql("chat", query, Reader::Operator, &Budget::default(), 100)
                .unwrap_or_else(|e| panic!("{query}: {e}"));
            let table = start
                .def
                .tables
                .iter()
                .find(|t| t.name == start.table)
                .unwrap();
            let rows = start
                .rows
                .iter()
                .map(|r| {
                    let row = row_to_json(r, table).unwrap();
                    (id_of(&row), row)
                })
                .collect();
            let client = Client {
                query,
                query_id: start.query_id,
                table: start.table.clone(),
                rows,
            };
            assert_eq!(
                client.rows,
                fresh(&db, query),
                "seed {seed}: {query}: initial rows"
            );
            clients.push(client);
            started_at.push(start.tx_id);
        }
    }
    assert_eq!(clients[0].query_id, clients[1].query_id);
    assert_eq!(
        db.live_queries().unwrap(),
        (QUERIES.len(), QUERIES.len() + 1)
    );
    let mut seen = 0;
    for n in 0..steps {
        step(&db, &mut state);
        let txs: Vec<Arc<CommittedTx>> = feed.lock().unwrap().drain(..).collect();
        for tx in &txs {
            for (client, start) in clients.iter_mut().zip(&started_at) {
                if tx.tx_id > *start {
                    client.apply(tx);
                }
            }
            seen += tx.queries.len();
        }
        for client in &clients {
            assert_eq!(
                client.rows,
                fresh(&db, client.query),
                "seed {seed}, step {n}: {}",
                client.query
            );
        }
    }
    assert!(
        seen > steps / 4,
        "seed {seed}: only {seen} live query changes in {steps} steps"
    );
    for client in &clients {
        db.unsubscribe_sql("chat", client.query_id).unwrap();
    }
    assert_eq!(db.live_queries().unwrap(), (0, 0));
    drop(db);
    // A restart replays the log; no live query exists to evaluate.
    let db = Database::open(dir.path(), test_config()).unwrap();
    assert_eq!(db.live_queries().unwrap(), (0, 0));
    assert_eq!(db.counters().guest_instantiations, 0);
}

#[test]
fn a_subscription_is_refused_what_a_query_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), test_config()).unwrap();
    db.publish("lobby", &guest_bytes(guests::LOBBY)).unwrap();
    let e = db
        .subscribe_sql(
            "lobby",
            "SELECT * FROM secrets",
            Reader::Anonymous,
            &Budget::default(),
            100,
        )
        .unwrap_err();
    assert!(e.to_string().contains("`secrets` is private"), "{e}");
    let e = db
        .subscribe_sql(
            "lobby",
            "SELECT COUNT(*) FROM calls",
            Reader::Operator,
            &Budget::default(),
            100,
        )
        .unwrap_err();
    assert!(e.to_string().contains("subscribe to SELECT *"), "{e}");
    // Past the most live queries, a new text is refused; one followed
    // already is shared.
    let first = db
        .subscribe_sql(
            "lobby",
            "SELECT * FROM calls",
            Reader::Operator,
            &Budget::default(),
            1,
        )
        .unwrap();
    let e = db
        .subscribe_sql(
            "lobby",
            "SELECT * FROM calls WHERE id > 1",
            Reader::Operator,
            &Budget::default(),
            1,
        )
        .unwrap_err();
    assert!(
        matches!(e, interstice_runtime::QueryError::TooManyLive(1)),
        "{e}"
    );
    let second = db
        .subscribe_sql(
            "lobby",
            "SELECT * FROM calls",
            Reader::Operator,
            &Budget::default(),
            1,
        )
        .unwrap();
    assert_eq!(first.query_id, second.query_id);
    db.unsubscribe_sql("lobby", first.query_id).unwrap();
    db.unsubscribe_sql("lobby", second.query_id).unwrap();
    assert_eq!(db.live_queries().unwrap(), (0, 0));
}
