//! The Rust client (`clients/rust`, `interstice-client`) against a real
//! server process: pipelined calls, a cache that equals a fresh query after
//! every round of random calls from several clients, events that tell the
//! same story as the cache, and reconnection after the server is killed.

use std::collections::BTreeMap;
use std::time::Duration;

use interstice_client::{Client, ClientError, Connect, Event};
use interstice_tests::guests;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::TryRecvError;

mod common;

use common::serve::Server;

fn publish(server: &Server, name: &str, guest: &str) {
    let wasm = std::fs::read(guest).unwrap();
    let response = common::agent()
        .put(&format!("{}/v1/modules/{name}", server.url))
        .header("Authorization", &format!("Bearer {}", server.token))
        .send(&wasm[..])
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Waits until the client's cache reflects transaction `tx_id`.
async fn caught_up(client: &Client, tx_id: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut events = client.events();
    while client.tx_id() < tx_id {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cache stayed at {} < {tx_id}",
            client.tx_id()
        );
        let _ = tokio::time::timeout(Duration::from_millis(50), events.recv()).await;
    }
}

/// The accounts as a fresh query gives them, keyed by id.
async fn fresh(client: &Client) -> (u64, BTreeMap<u64, u64>) {
    let q = client
        .query("SELECT id, balance FROM accounts")
        .await
        .unwrap();
    let rows = q
        .rows
        .iter()
        .map(|r| (r[0].as_u64().unwrap(), r[1].as_u64().unwrap()))
        .collect();
    (q.tx_id, rows)
}

fn cached(client: &Client) -> BTreeMap<u64, u64> {
    client
        .rows("accounts")
        .iter()
        .map(|r| (r["id"].as_u64().unwrap(), r["balance"].as_u64().unwrap()))
        .collect()
}

/// Applies a client's events to a model of the table: it must agree with
/// the cache.
fn apply_events(
    model: &mut BTreeMap<u64, u64>,
    events: &mut tokio::sync::broadcast::Receiver<Event>,
) {
    loop {
        match events.try_recv() {
            Ok(Event::Insert { table, row }) => {
                assert_eq!(table, "accounts");
                let id = row["id"].as_u64().unwrap();
                assert!(
                    model.insert(id, row["balance"].as_u64().unwrap()).is_none(),
                    "insert of a held row {row}"
                );
            }
            Ok(Event::Update { old, new, .. }) => {
                let id = new["id"].as_u64().unwrap();
                assert_eq!(
                    model.get(&id).copied(),
                    old["balance"].as_u64(),
                    "the old row is the held one"
                );
                model.insert(id, new["balance"].as_u64().unwrap());
            }
            Ok(Event::Delete { row, .. }) => {
                assert!(model.remove(&row["id"].as_u64().unwrap()).is_some());
            }
            Ok(_) => {}
            Err(TryRecvError::Empty) => return,
            Err(e) => panic!("events: {e}"),
        }
    }
}

/// Three clients (anonymous sessions: three identities) make random calls
/// at once, pipelined; after every round each one's cache, and the model
/// its events build, equal a fresh query of the table at the same
/// transaction.
#[test]
fn caches_of_several_clients_equal_a_fresh_query_after_every_round() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    publish(&server, "bank", guests::BANK);
    let seed = interstice_tests::rng::seed();
    runtime().block_on(async {
        let mut clients = Vec::new();
        for _ in 0..3 {
            let c = Client::connect(Connect::new(&server.url, "bank"))
                .await
                .unwrap();
            assert!(c.token().is_some(), "an anonymous session gets a token");
            let events = c.events();
            c.subscribe(&["accounts", "SELECT * FROM accounts WHERE balance >= 50"])
                .await
                .unwrap();
            clients.push((c, events, BTreeMap::new()));
        }
        let identities: std::collections::BTreeSet<String> =
            clients.iter().map(|(c, _, _)| c.identity()).collect();
        assert_eq!(identities.len(), 3);
        let mut state = seed;
        for round in 0..12 {
            let mut calls = Vec::new();
            for (c, _, _) in &clients {
                for _ in 0..15 {
                    let r = interstice_tests::rng::next(&mut state);
                    let (a, b) = (r % 8, (r >> 8) % 8);
                    let amount = (r >> 16) % 120;
                    let (reducer, args) = match (r >> 32) % 4 {
                        0 => ("open_account", json!([a, amount])),
                        1 => ("deposit", json!([a, amount])),
                        _ => ("transfer", json!([a, b, amount])),
                    };
                    calls.push(c.call(reducer, args));
                }
            }
            let results = futures_join(calls).await;
            let last = results
                .iter()
                .filter_map(|r| r.as_ref().ok().map(|c| c.tx_id))
                .max()
                .unwrap_or(0);
            for r in &results {
                if let Err(e) = r {
                    assert!(
                        matches!(e, ClientError::Server { code, .. } if code == "reducer_failed"),
                        "seed {seed:#x} round {round}: {e}"
                    );
                }
            }
            for (c, events, model) in &mut clients {
                // The answer comes after every change before its
                // transaction: the cache is as of it.
                let (tx, table) = fresh(c).await;
                assert!(tx >= last, "seed {seed:#x} round {round}: {tx} < {last}");
                assert!(
                    c.tx_id() >= tx,
                    "seed {seed:#x} round {round}: the client is behind its query"
                );
                assert_eq!(
                    cached(c),
                    table,
                    "seed {seed:#x} round {round}: the cache is the table"
                );
                apply_events(model, events);
                assert_eq!(
                    *model, table,
                    "seed {seed:#x} round {round}: the events tell the cache"
                );
            }
        }
    });
}

/// Awaits every future, in order.
async fn futures_join<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::with_capacity(futures.len());
    for f in futures {
        out.push(f.await);
    }
    out
}

/// Calls made one after another without awaiting run in that order: tx
/// ids rise with the order of the calls.
#[test]
fn pipelined_calls_commit_in_the_order_they_were_made() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    publish(&server, "bank", guests::BANK);
    runtime().block_on(async {
        let c = Client::connect(Connect::new(&server.url, "bank").token(&server.token))
            .await
            .unwrap();
        c.call("open_account", json!([1, 0])).await.unwrap();
        let calls: Vec<_> = (0..300).map(|_| c.call("deposit", json!([1, 1]))).collect();
        let results = futures_join(calls).await;
        let txs: Vec<u64> = results.iter().map(|r| r.as_ref().unwrap().tx_id).collect();
        assert!(txs.windows(2).all(|w| w[0] < w[1]), "{txs:?}");
        let e = c.call("nope", json!([])).await.unwrap_err();
        assert!(
            matches!(&e, ClientError::Server { code, .. } if code == "not_found"),
            "{e}"
        );
        let (_, table) = fresh(&c).await;
        assert_eq!(table[&1], 300);
    });
}

/// The server is killed (-9) under a subscribed client and started again
/// on the same port: the client reconnects as the same identity,
/// resubscribes, and its cache comes back to the server's state, with
/// events for what changed; a call made while it was away runs once it is
/// back.
#[test]
fn after_a_kill_the_client_reconnects_resubscribes_and_catches_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start(&dir, &[]);
    let listen = server.url.trim_start_matches("http://").to_string();
    publish(&server, "bank", guests::BANK);
    let rt = runtime();
    let c = rt.block_on(async {
        let c = Client::connect(Connect::new(&server.url, "bank"))
            .await
            .unwrap();
        c.subscribe(&["accounts"]).await.unwrap();
        for i in 0..3 {
            c.call("open_account", json!([i, 10])).await.unwrap();
        }
        c
    });
    let identity = c.identity();
    let mut events = c.events();
    server.kill9();
    rt.block_on(async {
        // Lost: the client says so.
        loop {
            match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
                Ok(Ok(Event::Disconnected)) => break,
                Ok(Ok(_)) => {}
                other => panic!("no Disconnected event: {other:?}"),
            }
        }
    });
    // A call made while the server is down waits for the next session.
    let pending = {
        let c = c.clone();
        rt.spawn(async move { c.call("deposit", json!([0, 5])).await })
    };
    let server = Server::start_on(&dir, &listen, &[]);
    // Someone else changes the data as the server comes back.
    rt.block_on(async {
        let other = Client::connect(Connect::new(&server.url, "bank").token(&server.token))
            .await
            .unwrap();
        other.call("open_account", json!([7, 70])).await.unwrap();
        other.call("transfer", json!([1, 2, 4])).await.unwrap();
        let done = pending.await.unwrap().expect("the waiting call ran");
        caught_up(&c, done.tx_id).await;
        assert_eq!(
            c.identity(),
            identity,
            "the same identity, by the issued token"
        );
        let (_, table) = fresh(&c).await;
        assert_eq!(table, BTreeMap::from([(0, 15), (1, 6), (2, 14), (7, 70)]));
        assert_eq!(cached(&c), table, "the cache is the server's state");
        let mut seen = Vec::new();
        while let Ok(e) = events.try_recv() {
            seen.push(e);
        }
        assert!(seen.contains(&Event::Reconnected), "{seen:?}");
        assert!(
            seen.contains(&Event::Insert {
                table: "accounts".into(),
                row: json!({"id": 7, "balance": 70})
            }),
            "{seen:?}"
        );
        let balance_of_0: Vec<&Value> = seen
            .iter()
            .filter_map(|e| match e {
                Event::Update { new, .. } if new["id"] == 0 => Some(&new["balance"]),
                _ => None,
            })
            .collect();
        assert_eq!(balance_of_0, [&json!(15)], "{seen:?}");
    });
    drop(server);
}
