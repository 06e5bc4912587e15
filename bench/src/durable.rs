//! Durable figures: the raw fdatasync rate of the disk, durable bank
//! transfers with 1, 8 and 64 concurrent callers, and replay speed.

use std::io::Write;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use interstice_runtime::log::{LogConfig, RealFs, SyncPolicy, scan};
use interstice_runtime::{Database, LOG_DIR, RuntimeConfig, SnapshotConfig};
use interstice_tests::{guest_bytes, guests, test_config};

use crate::u64_args;

/// Accounts of the bank every durable figure runs on.
pub const ACCOUNTS: u64 = 100_000;

/// No automatic snapshots: replay figures must replay the whole log, and
/// durable figures must not share the cores with a snapshot build.
pub fn config(sync: SyncPolicy) -> RuntimeConfig {
    RuntimeConfig {
        log: LogConfig {
            sync,
            ..LogConfig::default()
        },
        snapshots: SnapshotConfig {
            every_tx: 0,
            every_log_bytes: 0,
            ..SnapshotConfig::default()
        },
        ..test_config()
    }
}

/// A data directory on the same file system as the build (not a tmpfs),
/// so fsync costs what it costs on this disk.
pub fn bench_dir() -> Result<tempfile::TempDir> {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&base)?;
    Ok(tempfile::tempdir_in(base)?)
}

/// fdatasync after each 128-byte append, one caller: the physical limit of
/// a single durable caller on this disk.
pub fn raw_fdatasync(appends: u32) -> Result<Duration> {
    let dir = bench_dir()?;
    let mut file = std::fs::File::create(dir.path().join("probe"))?;
    let record = [0x5au8; 128];
    let start = Instant::now();
    for _ in 0..appends {
        file.write_all(&record)?;
        file.sync_data()?;
    }
    Ok(start.elapsed() / appends)
}

/// A bank of ACCOUNTS accounts, written without fsync (setup only).
pub fn seeded_bank() -> Result<tempfile::TempDir> {
    let dir = bench_dir()?;
    seed_bank(dir.path())?;
    Ok(dir)
}

fn seed_bank(dir: &std::path::Path) -> Result<()> {
    let db = Database::open(dir, config(SyncPolicy::Never))?;
    db.publish("bank", &guest_bytes(guests::BANK))?;
    let open = db.resolve_reducer("bank", "open_account")?;
    for id in 0..ACCOUNTS {
        db.call_encoded(
            "bank",
            open,
            &u64_args(&[id, 1_000_000]),
            &interstice_runtime::Caller::operator(),
        )?;
    }
    Ok(())
}

pub struct Durable {
    pub callers: usize,
    pub transactions: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub fsyncs: u64,
}

impl Durable {
    pub fn per_second(&self) -> f64 {
        self.transactions as f64 / self.elapsed.as_secs_f64()
    }

    pub fn fsyncs_per_second(&self) -> f64 {
        self.fsyncs as f64 / self.elapsed.as_secs_f64()
    }

    pub fn tx_per_fsync(&self) -> f64 {
        self.transactions as f64 / self.fsyncs.max(1) as f64
    }
}

/// `callers` threads each make transfers for `run`, every call answered
/// only once durable (sync policy `always`).
pub fn durable_transfers(db: &Database, callers: usize, run: Duration) -> Result<Durable> {
    let transfer = db.resolve_reducer("bank", "transfer")?;
    let before = db.log().stats();
    let barrier = Barrier::new(callers + 1);
    let (latencies, elapsed) = std::thread::scope(|s| -> Result<(Vec<Duration>, Duration)> {
        let handles: Vec<_> = (0..callers)
            .map(|c| {
                let barrier = &barrier;
                s.spawn(move || -> Result<Vec<Duration>> {
                    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (c as u64 + 1);
                    let mut lat = Vec::with_capacity(1 << 16);
                    barrier.wait();
                    let start = Instant::now();
                    while start.elapsed() < run {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let args = u64_args(&[x % ACCOUNTS, (x >> 32) % ACCOUNTS, 1]);
                        let t = Instant::now();
                        db.call_encoded(
                            "bank",
                            transfer,
                            &args,
                            &interstice_runtime::Caller::operator(),
                        )
                        .context("durable transfer")?;
                        lat.push(t.elapsed());
                    }
                    Ok(lat)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().expect("caller thread")?);
        }
        Ok((all, start.elapsed()))
    })?;
    let after = db.log().stats();
    let mut sorted = latencies;
    sorted.sort();
    let pick = |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)];
    Ok(Durable {
        callers,
        transactions: sorted.len() as u64,
        elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
        fsyncs: after.syncs - before.syncs,
    })
}

/// Fills a data directory with the bank and transfers up to `transactions`
/// transactions in all (for profiling replay with `interstice replay`).
pub fn write_transfers(dir: &std::path::Path, transactions: u64) -> Result<()> {
    if !dir.join(LOG_DIR).exists() {
        seed_bank(dir)?;
    }
    let db = Database::open(dir, config(SyncPolicy::Never))?;
    let transfer = db.resolve_reducer("bank", "transfer")?;
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let already = db.next_tx_id()? - 1;
    for _ in already..transactions {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        db.call_encoded(
            "bank",
            transfer,
            &u64_args(&[x % ACCOUNTS, (x >> 32) % ACCOUNTS, 1]),
            &interstice_runtime::Caller::operator(),
        )?;
    }
    Ok(())
}

pub struct Replay {
    pub transactions: u64,
    pub log_bytes: u64,
    pub replay: Duration,
    pub scan_only: Duration,
}

/// Writes `transactions` transfers (without fsync), then times opening the
/// database (replay of every record into the tables) against a bare scan
/// of the same log (read and checksum, no decoding or applying).
pub fn replay(transactions: u64) -> Result<Replay> {
    let dir = seeded_bank()?;
    write_transfers(dir.path(), transactions)?;
    let mut best = Duration::MAX;
    let mut stats = None;
    for _ in 0..3 {
        let start = Instant::now();
        let db = Database::open(dir.path(), config(SyncPolicy::Always))?;
        best = best.min(start.elapsed());
        stats = Some(db.replay_stats().clone());
    }
    let stats = stats.expect("three opens");
    let mut scan_best = Duration::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        scan(&RealFs, &dir.path().join(LOG_DIR), &mut |_| Ok(()))?;
        scan_best = scan_best.min(start.elapsed());
    }
    Ok(Replay {
        transactions: stats.transactions_replayed,
        log_bytes: stats.log_bytes,
        replay: best,
        scan_only: scan_best,
    })
}
