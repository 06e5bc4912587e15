//! Interstice benchmarks. Every figure is measured in the same run as the
//! figures it is compared with; compare ratios, not absolute times across
//! machines or runs.
//!
//! `cargo run --release -p interstice-bench -- peers | reducers | languages | codec | indexes | durable | replay | snapshots [ROWS] | all`

mod durable;
mod indexes;
mod languages;
mod live;
mod peers;
mod row_codec;
mod schedules;
mod serve;
mod session;
mod snapshots;
mod sql;
mod wrk;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use interstice_runtime::Database;
use interstice_runtime::log::SyncPolicy;
use interstice_store::{
    ABI_VERSION, AlgebraicType, ColumnDef, ModuleDef, TableDef, Tables, TxLog, Value, codec,
};
use interstice_tests::{guest_bytes, guests};

/// Calls per measurement.
const CALLS: u64 = 200_000;
/// Measurements per figure; the best is reported (least disturbed by the
/// rest of the machine).
const ROUNDS: usize = 3;

struct Figure {
    name: &'static str,
    per_call: Duration,
}

fn best_of(mut run: impl FnMut() -> Result<Duration>) -> Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        best = best.min(run()?);
    }
    Ok(best)
}

pub(crate) fn u64_args(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Calls `reducer` CALLS times with arguments from `args(i)`.
fn time_calls(
    db: &Database,
    module: &str,
    reducer: &str,
    mut args: impl FnMut(u64) -> Vec<u8>,
) -> Result<Duration> {
    let id = db.resolve_reducer(module, reducer)?;
    let encoded: Vec<Vec<u8>> = (0..CALLS).map(&mut args).collect();
    let start = Instant::now();
    for a in &encoded {
        db.call_encoded(module, id, a, &interstice_runtime::Caller::operator())
            .with_context(|| format!("{module}.{reducer}"))?;
    }
    Ok(start.elapsed() / CALLS as u32)
}

/// A fresh database whose log never syncs: the in-memory figures measure
/// the reducer path, not the disk.
fn fresh_with(name: &str, guest: &str) -> Result<(tempfile::TempDir, Database)> {
    let dir = durable::bench_dir()?;
    let db = Database::open(dir.path(), durable::config(SyncPolicy::Never))?;
    db.publish(name, &guest_bytes(guest))?;
    Ok((dir, db))
}

/// Native table inserts, no guest: the table operation alone.
fn native_insert() -> Result<Duration> {
    let t = AlgebraicType::U64;
    let def = ModuleDef {
        owner: None,
        abi_version: ABI_VERSION,
        tables: vec![TableDef {
            public: false,
            name: "rows".into(),
            columns: vec![
                ColumnDef::new("id", t.clone()),
                ColumnDef::new("value", t.clone()),
            ],
            primary_key: 0,
            auto_inc: None,
            indexes: vec![],
            ephemeral: false,
            scheduled: None,
        }],
        reducers: vec![],
    };
    let rows: Vec<Vec<u8>> = (0..CALLS)
        .map(|i| codec::encode_row(&[Value::U64(i), Value::U64(i)], &[t.clone(), t.clone()]))
        .collect();
    let mut tables = Tables::new(&def);
    let mut tx = TxLog::new();
    let start = Instant::now();
    for row in &rows {
        tables.insert(&mut tx, 0, row)?;
        std::hint::black_box(tables.commit(&mut tx));
    }
    Ok(start.elapsed() / CALLS as u32)
}

/// The floor under a table insert: a bare map from integer to shared bytes.
fn bare_btree() -> Result<Duration> {
    let rows: Vec<Vec<u8>> = (0..CALLS).map(|i| u64_args(&[i, i])).collect();
    let mut map = std::collections::BTreeMap::<u64, std::sync::Arc<[u8]>>::new();
    let start = Instant::now();
    for (i, row) in rows.iter().enumerate() {
        map.insert(i as u64, row.as_slice().into());
    }
    std::hint::black_box(&map);
    Ok(start.elapsed() / CALLS as u32)
}

fn reducers() -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let mut add = |name, per_call| figures.push(Figure { name, per_call });

    add(
        "peer: bare BTreeMap<u64, Arc<[u8]>> insert",
        best_of(bare_btree)?,
    );
    add("table insert, native (no guest)", best_of(native_insert)?);
    add(
        "noop reducer (guest entry + empty commit)",
        best_of(|| {
            let (_d, db) = fresh_with("b", guests::BENCH_GUEST)?;
            time_calls(&db, "b", "noop", |_| Vec::new())
        })?,
    );
    add(
        "reducer with one host import (get, miss)",
        best_of(|| {
            let (_d, db) = fresh_with("b", guests::BENCH_GUEST)?;
            time_calls(&db, "b", "get_missing", |i| u64_args(&[i]))
        })?,
    );
    add(
        "single-row insert reducer",
        best_of(|| {
            let (_d, db) = fresh_with("b", guests::BENCH_GUEST)?;
            time_calls(&db, "b", "insert", |i| u64_args(&[i, i]))
        })?,
    );
    add(
        "counter.increment (find + update)",
        best_of(|| {
            let (_d, db) = fresh_with("counter", guests::COUNTER)?;
            let name = codec::encode_row(&[Value::String("c".into())], &[AlgebraicType::String]);
            time_calls(&db, "counter", "increment", |_| name.clone())
        })?,
    );
    add(
        "bank.transfer (2 finds + 2 updates), 100,000 accounts",
        best_of(|| {
            let (_d, db) = fresh_with("bank", guests::BANK)?;
            let open = db.resolve_reducer("bank", "open_account")?;
            for id in 0..100_000u64 {
                db.call_encoded(
                    "bank",
                    open,
                    &u64_args(&[id, 1_000_000]),
                    &interstice_runtime::Caller::operator(),
                )?;
            }
            let mut x = 0x2545_F491_4F6C_DD1Du64;
            time_calls(&db, "bank", "transfer", |_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                u64_args(&[x % 100_000, (x >> 32) % 100_000, 1])
            })
        })?,
    );
    Ok(figures)
}

fn print(title: &str, figures: &[Figure]) {
    println!("### {title}\n");
    println!("| what | ns per call | calls per second |");
    println!("| --- | ---: | ---: |");
    for f in figures {
        let ns = f.per_call.as_nanos();
        let per_second = 1e9 / f.per_call.as_nanos().max(1) as f64;
        println!("| {} | {ns} | {:.0} |", f.name, per_second);
    }
    println!();
}

fn durable_figures() -> Result<()> {
    println!("### Durable bank.transfer, sync policy `always`\n");
    let dir = durable::seeded_bank()?;
    let db = Database::open(dir.path(), durable::config(SyncPolicy::Always))?;
    println!(
        "| callers | tx/s | raw fdatasync/s (same moment) | tx/s ÷ raw | p50 latency | p99 latency | fsyncs/s | tx per fsync |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for callers in [1, 8, 64] {
        // The disk's speed drifts on a shared machine: the peer runs right
        // before and right after each figure, and the mean is the reference.
        let before = durable::raw_fdatasync(1500)?;
        let d = durable::durable_transfers(&db, callers, Duration::from_secs(5))?;
        let after = durable::raw_fdatasync(1500)?;
        let raw_rate = 2.0 / (before + after).as_secs_f64();
        println!(
            "| {} | {:.0} | {raw_rate:.0} | {:.2}× | {:.0} µs | {:.0} µs | {:.0} | {:.1} |",
            d.callers,
            d.per_second(),
            d.per_second() / raw_rate,
            d.p50.as_secs_f64() * 1e6,
            d.p99.as_secs_f64() * 1e6,
            d.fsyncs_per_second(),
            d.tx_per_fsync()
        );
    }
    println!();
    Ok(())
}

fn replay_figures() -> Result<()> {
    let r = durable::replay(1_000_000)?;
    let secs = r.replay.as_secs_f64();
    println!("### Replay of a 1,000,000-transaction log\n");
    println!("| what | time | tx/s | MB/s |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| open: replay every record into the tables ({} tx, {:.1} MB) | {:.0} ms | {:.0} | {:.0} |",
        r.transactions,
        r.log_bytes as f64 / 1e6,
        secs * 1e3,
        r.transactions as f64 / secs,
        r.log_bytes as f64 / 1e6 / secs
    );
    let scan = r.scan_only.as_secs_f64();
    println!(
        "| peer: read and checksum the same log, nothing applied | {:.0} ms | {:.0} | {:.0} |",
        scan * 1e3,
        r.transactions as f64 / scan,
        r.log_bytes as f64 / 1e6 / scan
    );
    println!("\nReplay takes {:.1}× the bare scan.\n", secs / scan);
    Ok(())
}

/// `section`: `memory`, `durable`, `open` or `rows` for one part, or all.
fn peers_figures(section: Option<&str>) -> Result<()> {
    use peers::{JsonLinesSide, Side, SqliteSide, Workload};
    let want = |s: &str| section.is_none_or(|x| x == s);
    use std::sync::atomic::AtomicU64;
    let mut runs = Vec::new();
    let ratio = |interstice: f64, this: f64| {
        if this > 0.0 {
            format!("{:.2}×", interstice / this)
        } else {
            "–".into()
        }
    };

    let mut raw_rate = 0.0;
    let mut opens = Vec::new();
    let mut memory = Vec::new();
    if want("memory") {
        println!("## Against peers: in memory, 1 caller\n");
        println!(
            "Interstice with sync policy `never` (its log is still written, to the page cache); SQLite `:memory:`; the JSON-lines log without fsync.\n"
        );
        println!("| workload | side | tx/s | p50 | p99 | refused | Interstice ÷ this |");
        println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
        let memory_sides: Vec<Box<dyn Side>> = vec![
            Box::new(peers::IntersticeSide::new(SyncPolicy::Never, "Interstice")?),
            Box::new(SqliteSide::memory()?),
            Box::new(JsonLinesSide::new(false, "JSON lines, no fsync")?),
        ];
        for workload in [
            Workload::TransferUniform,
            Workload::TransferZipf,
            Workload::Insert,
            Workload::Read,
        ] {
            let mut base = 0.0;
            for (i, side) in memory_sides.iter().enumerate() {
                // For profiling one side: INTERSTICE_BENCH_ONLY=<side name prefix>.
                if let Ok(only) = std::env::var("INTERSTICE_BENCH_ONLY")
                    && !side.name().starts_with(&only)
                {
                    continue;
                }
                let next_id = AtomicU64::new(10_000_000);
                let r = peers::measure(&**side, workload, 1, Duration::from_secs(2), &next_id)?;
                if i == 0 {
                    base = r.per_second;
                }
                println!(
                    "| {} | {} | {:.0} | {:.1} µs | {:.1} µs | {} | {} |",
                    r.workload,
                    r.side,
                    r.per_second,
                    r.p50_us,
                    r.p99_us,
                    r.refused,
                    ratio(base, r.per_second)
                );
                runs.push(r);
            }
        }
        drop(memory_sides);
    }

    if want("durable") {
        println!("\n## Against peers: durable transfers (uniform)\n");
        let raw_before = durable::raw_fdatasync(1500)?;
        let durable_sides: Vec<Box<dyn Side>> = vec![
            Box::new(peers::IntersticeSide::new(
                SyncPolicy::Always,
                "Interstice, sync always",
            )?),
            Box::new(SqliteSide::wal("FULL", "SQLite WAL, synchronous=FULL")?),
            Box::new(SqliteSide::wal(
                "NORMAL",
                "SQLite WAL, synchronous=NORMAL (not durable on power loss)",
            )?),
            Box::new(JsonLinesSide::new(true, "JSON lines, fsync per write")?),
        ];
        println!("| callers | side | tx/s | p50 | p99 | Interstice ÷ this |");
        println!("| ---: | --- | ---: | ---: | ---: | ---: |");
        for callers in [1, 8, 64] {
            let mut base = 0.0;
            for (i, side) in durable_sides.iter().enumerate() {
                let next_id = AtomicU64::new(10_000_000);
                let r = peers::measure(
                    &**side,
                    Workload::TransferUniform,
                    callers,
                    Duration::from_secs(3),
                    &next_id,
                )?;
                if i == 0 {
                    base = r.per_second;
                }
                println!(
                    "| {callers} | {} | {:.0} | {:.0} µs | {:.0} µs | {} |",
                    r.side,
                    r.per_second,
                    r.p50_us,
                    r.p99_us,
                    ratio(base, r.per_second)
                );
                runs.push(r);
            }
        }
        drop(durable_sides);
        let raw_after = durable::raw_fdatasync(1500)?;
        raw_rate = 2.0 / (raw_before + raw_after).as_secs_f64();
        println!(
            "\nPhysical limit of one durable caller: raw fdatasync after a 128-byte append, {raw_rate:.0}/s (mean of before and after the table).\n"
        );
    }

    if want("open") {
        println!("## Against peers: time to open after 1,000,000 committed transactions\n");
        println!("| side | open | Interstice ÷ this |");
        println!("| --- | ---: | ---: |");
        opens = peers::open_times(1_000_000)?;
        let base = opens[0].1.as_secs_f64();
        for (side, t) in &opens {
            println!(
                "| {side} | {:.3} ms | {} |",
                t.as_secs_f64() * 1e3,
                ratio(base, t.as_secs_f64())
            );
        }
    }

    if want("rows") {
        println!("\n## Against peers: resident memory per row (1,000,000 accounts)\n");
        println!("| side | bytes per row | Interstice ÷ this |");
        println!("| --- | ---: | ---: |");
        memory = peers::memory_per_row(1_000_000)?;
        let base = memory[0].1;
        for (side, bytes) in &memory {
            println!("| {side} | {bytes:.0} | {} |", ratio(base, *bytes));
        }
        println!();
    }

    let out =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data/peers.json");
    std::fs::create_dir_all(out.parent().context("a parent")?)?;
    let json = serde_json::json!({
        "runs": runs,
        "raw_fdatasync_per_second": raw_rate,
        "open_ms": opens.iter().map(|(s, t)| serde_json::json!({"side": s, "ms": t.as_secs_f64() * 1e3})).collect::<Vec<_>>(),
        "bytes_per_row": memory.iter().map(|(s, b)| serde_json::json!({"side": s, "bytes": b})).collect::<Vec<_>>(),
    });
    std::fs::write(&out, serde_json::to_vec_pretty(&json)?)?;
    println!("JSON: {}\n", out.display());
    Ok(())
}

fn main() -> Result<()> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "reducers".into());
    if which == "mem" {
        let side = std::env::args().nth(2).context("mem SIDE ROWS")?;
        let rows = std::env::args().nth(3).context("mem SIDE ROWS")?.parse()?;
        return peers::memory_child(&side, rows);
    }
    if matches!(which.as_str(), "peers" | "all") {
        let section = std::env::args().nth(2).filter(|_| which == "peers");
        peers_figures(section.as_deref())?;
    }
    if matches!(which.as_str(), "languages" | "all") {
        languages::figures()?;
    }
    if matches!(which.as_str(), "codec" | "all") {
        row_codec::figures()?;
    }
    if matches!(which.as_str(), "indexes" | "all") {
        indexes::figures()?;
    }
    if matches!(which.as_str(), "durable" | "all") {
        durable_figures()?;
    }
    if matches!(which.as_str(), "replay" | "all") {
        replay_figures()?;
    }
    if matches!(which.as_str(), "serve" | "all") {
        serve::figures()?;
    }
    if matches!(which.as_str(), "session" | "all") {
        session::figures()?;
    }
    if matches!(which.as_str(), "sql" | "all") {
        sql::figures()?;
    }
    if matches!(which.as_str(), "http") {
        wrk::figures()?;
    }
    if matches!(which.as_str(), "live" | "all") {
        live::figures()?;
    }
    if matches!(which.as_str(), "schedules" | "all") {
        schedules::figures()?;
    }
    if matches!(which.as_str(), "snapshots" | "all") {
        let rows = std::env::args()
            .nth(2)
            .filter(|_| which == "snapshots")
            .map_or(Ok(10_000_000), |v| v.parse())?;
        snapshots::figures(rows)?;
    }
    match which.as_str() {
        "codec" | "indexes" | "durable" | "replay" | "snapshots" | "peers" | "serve"
        | "languages" | "schedules" | "sql" | "live" | "session" | "http" => {}
        "write-log" => {
            let dir = std::env::args()
                .nth(2)
                .context("write-log DIR [TRANSACTIONS]")?;
            let n = std::env::args()
                .nth(3)
                .map_or(Ok(1_000_000), |v| v.parse())?;
            durable::write_transfers(std::path::Path::new(&dir), n)?;
        }
        "reducers" | "all" => {
            let figures = reducers()?;
            print("In-memory reducer calls, one core", &figures);
            let get = |name: &str| {
                figures
                    .iter()
                    .find(|f| f.name.starts_with(name))
                    .map(|f| f.per_call.as_nanos() as i128)
                    .unwrap_or(0)
            };
            let noop = get("noop");
            println!("Cost split of the single-row insert reducer:\n");
            println!("| part | ns |");
            println!("| --- | ---: |");
            println!("| guest entry, context, fuel, empty commit (noop) | {noop} |");
            println!(
                "| one host import round trip (get_missing - noop) | {} |",
                get("reducer with one") - noop
            );
            println!("| table insert itself (native) | {} |", get("table insert"));
            println!(
                "| rest: row encode/copy, insert import, undo/redo (insert - noop - native) | {} |",
                get("single-row") - noop - get("table insert")
            );
        }
        other => bail!(
            "unknown benchmark {other:?}; try `reducers`, `codec`, `languages`, `durable`, `replay`, `serve`, `http`, `session`, `sql`, `live`, `schedules`, `snapshots`, `peers` or `all`"
        ),
    }
    Ok(())
}
