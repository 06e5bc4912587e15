//! The bank in every language it is written in: component size, compile
//! and instantiation time, and transfers per second, side by side.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use interstice_runtime::log::SyncPolicy;
use interstice_runtime::{Database, Host, Runner, RuntimeConfig};
use interstice_tests::{BANKS, guest_bytes};

use crate::{durable, u64_args};

const ACCOUNTS: u64 = 10_000;
const INSTANTIATIONS: usize = 20;

struct Row {
    language: &'static str,
    bytes: usize,
    compile: Duration,
    instantiate: Duration,
    transfer: Duration,
    fuel: u64,
}

/// Time per transfer over `calls` calls, best of three runs, and the fuel
/// one transfer burns (on average).
fn transfers(guest: &str, calls: u64) -> Result<(Duration, u64)> {
    let mut best = Duration::MAX;
    let mut fuel = 0;
    for _ in 0..3 {
        let dir = durable::bench_dir()?;
        let db = Database::open(dir.path(), durable::config(SyncPolicy::Never))?;
        db.publish("bank", &guest_bytes(guest))?;
        let open = db.resolve_reducer("bank", "open_account")?;
        for id in 0..ACCOUNTS {
            db.call_encoded(
                "bank",
                open,
                &u64_args(&[id, 1_000_000]),
                &interstice_runtime::Caller::operator(),
            )?;
        }
        let transfer = db.resolve_reducer("bank", "transfer")?;
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let args: Vec<Vec<u8>> = (0..calls)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                u64_args(&[x % ACCOUNTS, (x >> 32) % ACCOUNTS, 1])
            })
            .collect();
        fuel = 0;
        let start = Instant::now();
        for a in &args {
            fuel += db
                .call_encoded("bank", transfer, a, &interstice_runtime::Caller::operator())
                .context("bank.transfer")?
                .fuel_consumed;
        }
        best = best.min(start.elapsed() / calls as u32);
    }
    Ok((best, fuel / calls))
}

fn measure(language: &'static str, guest: &str, calls: u64) -> Result<Row> {
    let wasm = guest_bytes(guest);
    // Compiled from scratch: no code cache.
    let host = Host::new(RuntimeConfig::default())?;
    let start = Instant::now();
    let mut runner = Runner::compile(&host, &wasm)?;
    let compile = start.elapsed();
    let mut instantiate = Duration::MAX;
    for _ in 0..INSTANTIATIONS {
        let start = Instant::now();
        runner.instantiate()?;
        instantiate = instantiate.min(start.elapsed());
    }
    let (transfer, fuel) = transfers(guest, calls)?;
    Ok(Row {
        language,
        bytes: wasm.len(),
        compile,
        instantiate,
        transfer,
        fuel,
    })
}

pub fn figures() -> Result<()> {
    let mut rows = Vec::new();
    for (language, guest) in BANKS {
        let calls = if language == "python" {
            20_000
        } else {
            200_000
        };
        rows.push(measure(language, guest, calls)?);
    }
    let rust = rows[0].transfer.as_nanos().max(1) as f64;
    println!("### The bank in each language (in memory, one core, {ACCOUNTS} accounts)\n");
    println!(
        "| bank | component bytes | compile (no cache) | instantiate (best of {INSTANTIATIONS}) | ns per transfer | transfers per second | time per transfer vs Rust | fuel per transfer |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        let ns = r.transfer.as_nanos();
        println!(
            "| {} | {} | {:.2} s | {:.2} ms | {ns} | {:.0} | {:.1}× | {} |",
            r.language,
            r.bytes,
            r.compile.as_secs_f64(),
            r.instantiate.as_secs_f64() * 1e3,
            1e9 / ns.max(1) as f64,
            ns as f64 / rust,
            r.fuel
        );
    }
    println!();
    Ok(())
}
