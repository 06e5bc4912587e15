//! The server's cost: durable `bank.transfer` calls over HTTP from C
//! keep-alive clients, against two peers measured in the same run with the
//! same client threads: the same calls made in-process
//! (`Database::call_json`, no HTTP), and a bare axum route on the same
//! tokio runtime that answers at once (HTTP alone, no database).

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use interstice_runtime::Database;
use interstice_runtime::log::SyncPolicy;
use interstice_server::ServerConfig;

use crate::durable::{ACCOUNTS, config, seeded_bank};

/// Runs `clients` threads, each making `calls` calls with `call(client, i)`;
/// the rate in calls per second.
fn drive(
    clients: usize,
    calls: usize,
    call: impl Fn(usize, usize) -> Result<()> + Sync,
) -> Result<f64> {
    let barrier = Barrier::new(clients + 1);
    let elapsed = std::thread::scope(|s| -> Result<Duration> {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let (barrier, call) = (&barrier, &call);
                s.spawn(move || -> Result<()> {
                    barrier.wait();
                    for i in 0..calls {
                        call(c, i)?;
                    }
                    Ok(())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a client panicked"))??;
        }
        Ok(start.elapsed())
    })?;
    Ok((clients * calls) as f64 / elapsed.as_secs_f64())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(true)
        .build()
        .into()
}

/// The transfer client `c` makes as its `i`-th call: between accounts of
/// its own, so that no call fails for lack of funds.
fn transfer_args(c: usize, i: usize) -> String {
    let from = (c as u64 * 1000 + i as u64 % 1000) % ACCOUNTS;
    let to = (from + 1) % ACCOUNTS;
    format!("[{from}, {to}, 1]")
}

pub fn figures() -> Result<()> {
    let dir = seeded_bank()?;
    let db = Arc::new(Database::open(dir.path(), config(SyncPolicy::Always))?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (server_url, bare_url, server) = runtime.block_on(async {
        let listener = interstice_server::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let bare = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let bare_url = format!("http://{}", bare.local_addr()?);
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(|| async { r#"{"tx_id":0,"timestamp":0}"# }),
        );
        tokio::spawn(async move { axum::serve(bare, app).await });
        let server = tokio::spawn(interstice_server::serve(
            db.clone(),
            "bench".into(),
            ServerConfig::default(),
            listener,
            async {
                let _ = stopped.await;
            },
        ));
        anyhow::Ok((url, bare_url, server))
    })?;

    println!("## The HTTP API (`cargo run --release -p interstice-bench -- serve`)\n");
    println!(
        "Durable `bank.transfer` ({ACCOUNTS} accounts, sync `always`), C keep-alive HTTP/1.1 clients (ureq, one thread each) on loopback, same process.\n"
    );
    println!(
        "| clients | over HTTP (tx/s) | in-process peer (tx/s) | HTTP / in-process | bare HTTP peer (req/s) |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for (clients, calls) in [(1, 2_000), (8, 2_000), (64, 1_000)] {
        let agents: Vec<ureq::Agent> = (0..clients).map(|_| agent()).collect();
        let url = format!("{server_url}/v1/modules/bank/reducers/transfer");
        let http = drive(clients, calls, |c, i| {
            agents[c]
                .post(&url)
                .send(transfer_args(c, i).as_bytes())
                .context("an HTTP call")?;
            Ok(())
        })?;
        let local = drive(clients, calls, |c, i| {
            let args: serde_json::Value = serde_json::from_str(&transfer_args(c, i))?;
            db.call_json(
                "bank",
                "transfer",
                &args,
                &interstice_runtime::Caller::operator(),
            )?;
            Ok(())
        })?;
        let bare = drive(clients, calls, |c, i| {
            agents[c]
                .post(&bare_url)
                .send(transfer_args(c, i).as_bytes())
                .context("a bare HTTP call")?;
            Ok(())
        })?;
        println!(
            "| {clients} | {http:.0} | {local:.0} | {:.2}× | {bare:.0} |",
            http / local
        );
    }
    println!();
    let _ = stop.send(());
    runtime.block_on(server)??;
    Ok(())
}
