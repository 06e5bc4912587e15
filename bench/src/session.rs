//! Durable `bank.transfer` over the client protocol (`.../connect`, the
//! Rust client `interstice-client`), with 1, 8 and 64 sessions, one call in
//! flight per session and 40 (as SpacetimeDB's published benchmark
//! pipelines), against two peers in the same run: the same calls made in
//! process by as many threads (`Database::call_encoded`), and the HTTP
//! route (`POST .../reducers/transfer`, one keep-alive client thread per
//! session, one call at a time: HTTP/1.1 does not pipeline).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use interstice_client::{Client, Connect};
use interstice_runtime::Database;
use interstice_runtime::log::SyncPolicy;
use interstice_server::ServerConfig;

use crate::durable::{ACCOUNTS, config, durable_transfers, seeded_bank};

/// How long each figure runs.
const RUN: Duration = Duration::from_secs(3);

/// The transfer session `s` makes as its `i`-th call: between random
/// accounts, one unit, so that no call fails for lack of funds.
fn transfer(s: usize, i: u64) -> serde_json::Value {
    let mut x = (s as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    serde_json::json!([x % ACCOUNTS, (x >> 32) % ACCOUNTS, 1])
}

/// `sessions` sessions each keep up to `depth` calls in flight for
/// [`RUN`]: calls per second, and transactions per fsync.
async fn over_sessions(
    db: &Database,
    url: &str,
    token: &str,
    sessions: usize,
    depth: usize,
) -> Result<(f64, f64)> {
    let mut clients = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        clients.push(Client::connect(Connect::new(url, "bank").token(token)).await?);
    }
    let before = db.log().stats();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (s, client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut window = std::collections::VecDeque::with_capacity(depth);
            let mut done = 0u64;
            let mut i = 0u64;
            while start.elapsed() < RUN {
                while window.len() < depth {
                    window.push_back(client.call("transfer", transfer(s, i)));
                    i += 1;
                }
                if let Some(call) = window.pop_front() {
                    call.await
                        .map_err(|e| anyhow::anyhow!("a transfer over the protocol: {e:?}"))?;
                    done += 1;
                }
            }
            for call in window {
                call.await
                    .map_err(|e| anyhow::anyhow!("a transfer over the protocol: {e:?}"))?;
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let mut calls = 0;
    for t in tasks {
        calls += t.await??;
    }
    let elapsed = start.elapsed();
    let after = db.log().stats();
    let fsyncs = (after.syncs - before.syncs).max(1);
    Ok((
        calls as f64 / elapsed.as_secs_f64(),
        calls as f64 / fsyncs as f64,
    ))
}

/// `clients` HTTP clients, one call at a time each, for [`RUN`].
fn over_http(url: &str, token: &str, clients: usize) -> Result<f64> {
    let url = format!("{url}/v1/modules/bank/reducers/transfer");
    let start = Instant::now();
    let calls = std::thread::scope(|s| -> Result<u64> {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let url = &url;
                s.spawn(move || -> Result<u64> {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(true)
                        .build()
                        .into();
                    let mut i = 0;
                    while start.elapsed() < RUN {
                        agent
                            .post(url)
                            .header("Authorization", &format!("Bearer {token}"))
                            .send(transfer(c, i).to_string().as_bytes())
                            .context("an HTTP call")?;
                        i += 1;
                    }
                    Ok(i)
                })
            })
            .collect();
        let mut all = 0;
        for h in handles {
            all += h
                .join()
                .map_err(|_| anyhow::anyhow!("a client panicked"))??;
        }
        Ok(all)
    })?;
    Ok(calls as f64 / start.elapsed().as_secs_f64())
}

pub fn figures() -> Result<()> {
    let dir = seeded_bank()?;
    let db = Arc::new(Database::open(dir.path(), config(SyncPolicy::Always))?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let token = "bench".to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (url, server) = runtime.block_on(async {
        let listener = interstice_server::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(interstice_server::serve(
            db.clone(),
            token.clone(),
            ServerConfig::default(),
            listener,
            async {
                let _ = stopped.await;
            },
        ));
        anyhow::Ok((url, server))
    })?;
    println!("## The client protocol (`cargo run --release -p interstice-bench -- session`)\n");
    println!(
        "Durable `bank.transfer` ({ACCOUNTS} accounts, sync `always`) for {} s per figure; server and clients in one process on one tokio runtime, over loopback. Sessions use the Rust client (JSON encoding); the in-process peer is as many threads calling `Database::call_encoded`; the HTTP peer is as many keep-alive clients (one thread each, one call at a time).\n",
        RUN.as_secs()
    );
    println!(
        "| sessions | protocol, 1 in flight (tx/s) | protocol, 40 in flight (tx/s) | tx per fsync (40) | in process (tx/s) | HTTP (tx/s) | 40 in flight ÷ in process |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for sessions in [1usize, 8, 64] {
        let (one, _) = runtime.block_on(over_sessions(&db, &url, &token, sessions, 1))?;
        let (piped, per_fsync) =
            runtime.block_on(over_sessions(&db, &url, &token, sessions, 40))?;
        let local = durable_transfers(&db, sessions, RUN)?;
        let local_rate = local.transactions as f64 / local.elapsed.as_secs_f64();
        let http = over_http(&url, &token, sessions)?;
        println!(
            "| {sessions} | {one:.0} | {piped:.0} | {per_fsync:.1} | {local_rate:.0} | {http:.0} | {:.2}× |",
            piped / local_rate
        );
    }
    println!();
    let _ = stop.send(());
    runtime.block_on(server)??;
    first_rows_sizes(&db)
}

/// What compressing a subscription's first rows would save: the
/// `subscribed` message for the whole `accounts` table (100,000 rows) in
/// each encoding, as is and through zstd, and the time zstd takes.
fn first_rows_sizes(db: &Database) -> Result<()> {
    use interstice_server::protocol::{Encoding, Frame, QueryRows, ServerMessage};
    let budget = interstice_runtime::sql::Budget {
        rows: u64::MAX,
        time: Duration::from_secs(60),
    };
    let start = db.subscribe_sql(
        "bank",
        "SELECT * FROM accounts",
        interstice_runtime::Reader::Operator,
        &budget,
        10,
    )?;
    let table = start
        .def
        .tables
        .iter()
        .find(|t| t.name == "accounts")
        .context("the accounts table")?;
    let message = ServerMessage::Subscribed {
        id: 1,
        subscription: 1,
        tx_id: start.tx_id,
        queries: vec![QueryRows {
            table,
            rows: &start.rows,
        }],
    };
    println!(
        "First rows of a subscription to the whole `accounts` table ({} rows), as one `subscribed` message:\n",
        start.rows.len()
    );
    println!("| encoding | bytes | zstd level 1 | time | zstd level 3 | time |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, encoding) in [("JSON", Encoding::Json), ("binary", Encoding::Binary)] {
        let bytes = match message.encode(encoding)? {
            Frame::Text(t) => t.into_bytes(),
            Frame::Binary(b) => b,
        };
        let mut cells = Vec::new();
        for level in [1, 3] {
            let t = Instant::now();
            let packed = zstd::bulk::compress(&bytes, level)?;
            cells.push(format!(
                "{} | {:.1} ms",
                packed.len(),
                t.elapsed().as_secs_f64() * 1e3
            ));
        }
        println!("| {name} | {} | {} |", bytes.len(), cells.join(" | "));
    }
    println!();
    db.unsubscribe_sql("bank", start.query_id)?;
    Ok(())
}
