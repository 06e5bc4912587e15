//! Snapshot figures: opening a database of many rows from a snapshot versus
//! from the log alone, snapshot write throughput against a plain write of
//! the same bytes, and the longest pause a reducer sees while a snapshot is
//! taken.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Result;
use interstice_runtime::log::SyncPolicy;
use interstice_runtime::{Database, SNAPSHOTS_DIR};
use interstice_tests::{guest_bytes, guests};

use crate::durable::{bench_dir, config};
use crate::u64_args;

fn open(dir: &std::path::Path) -> Result<(Database, Duration)> {
    let started = Instant::now();
    let db = Database::open(dir, config(SyncPolicy::Never))?;
    Ok((db, started.elapsed()))
}

/// Reducer latencies while `during` runs on this thread and one caller
/// calls on another.
struct Latencies {
    calls: usize,
    p99: Duration,
    longest: Duration,
    over_1ms: usize,
    over_10ms: usize,
}

fn latencies(db: &Database, during: impl FnOnce()) -> Result<Latencies> {
    let transfer = db.resolve_reducer("bank", "transfer")?;
    // The first call after open loads the module's code: not a pause of
    // interest here.
    db.call_encoded(
        "bank",
        transfer,
        &u64_args(&[0, 1, 0]),
        &interstice_runtime::Caller::operator(),
    )?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut all = std::thread::scope(|s| -> Result<Vec<Duration>> {
        let caller = s.spawn(|| -> Result<Vec<Duration>> {
            let mut out = Vec::new();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let args = u64_args(&[i % 1000, (i * 7 + 1) % 1000, 1]);
                let t = Instant::now();
                db.call_encoded(
                    "bank",
                    transfer,
                    &args,
                    &interstice_runtime::Caller::operator(),
                )?;
                out.push(t.elapsed());
                i += 1;
            }
            Ok(out)
        });
        std::thread::sleep(Duration::from_millis(200));
        during();
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        caller.join().expect("caller thread")
    })?;
    all.sort();
    Ok(Latencies {
        calls: all.len(),
        p99: all[all.len() * 99 / 100],
        longest: *all.last().unwrap_or(&Duration::ZERO),
        over_1ms: all
            .iter()
            .filter(|d| **d > Duration::from_millis(1))
            .count(),
        over_10ms: all
            .iter()
            .filter(|d| **d > Duration::from_millis(10))
            .count(),
    })
}

pub fn figures(rows: u64) -> Result<()> {
    let dir = bench_dir()?;
    let seeding = Instant::now();
    {
        let db = Database::open(dir.path(), config(SyncPolicy::Never))?;
        db.publish("bank", &guest_bytes(guests::BANK))?;
        let open = db.resolve_reducer("bank", "open_account")?;
        for id in 0..rows {
            db.call_encoded(
                "bank",
                open,
                &u64_args(&[id, 1_000]),
                &interstice_runtime::Caller::operator(),
            )?;
        }
        db.log().sync()?;
    }
    eprintln!(
        "seeded {rows} rows in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    // From the log alone.
    let (db, from_log) = open(dir.path())?;
    let log_bytes = db.replay_stats().log_bytes;
    // The first snapshot replays the whole log into scratch tables; the
    // second starts from the first.
    let first = db.snapshot()?.expect("a first snapshot");
    let transfer = db.resolve_reducer("bank", "transfer")?;
    for i in 0..10_000u64 {
        db.call_encoded(
            "bank",
            transfer,
            &u64_args(&[i, i + 1, 1]),
            &interstice_runtime::Caller::operator(),
        )?;
    }
    let second = db.snapshot()?.expect("a second snapshot");
    drop(db);

    // Peer of the write: the same number of bytes written and fsynced as a
    // plain file, no encoding, no compression.
    let peer_path = dir.path().join("peer");
    let raw = vec![0x5au8; second.raw_bytes as usize];
    let peer_start = Instant::now();
    {
        let mut f = std::fs::File::create(&peer_path)?;
        f.write_all(&raw)?;
        f.sync_all()?;
    }
    let peer = peer_start.elapsed();
    std::fs::remove_file(&peer_path)?;
    drop(raw);

    let (db, from_snapshot) = open(dir.path())?;
    let stats = db.replay_stats().clone();
    // Peer of the load: decompress the same snapshot's body, nothing else.
    let decompress_start = Instant::now();
    {
        let file = std::fs::File::open(&second.path)?;
        let mut body = std::io::BufReader::new(file);
        std::io::copy(
            &mut std::io::Read::take(&mut body, 64),
            &mut std::io::sink(),
        )?;
        let mut decoder = zstd::stream::read::Decoder::new(body)?;
        std::io::copy(&mut decoder, &mut std::io::sink())?;
    }
    let decompress = decompress_start.elapsed();

    // Pause: reducer latencies with and without a snapshot being taken.
    let quiet = latencies(&db, || std::thread::sleep(Duration::from_secs(3)))?;
    let mut third = None;
    let busy = latencies(&db, || third = db.snapshot().ok().flatten())?;
    let third = third.expect("a third snapshot");
    drop(db);
    let snapshot_files = std::fs::read_dir(dir.path().join(SNAPSHOTS_DIR))?.count();

    let mb = |b: u64| b as f64 / 1e6;
    println!("## Snapshots: {rows} rows (bank accounts)\n");
    println!(
        "Log: {:.0} MB. Snapshot: {:.0} MB compressed, {:.0} MB raw. Files kept: {snapshot_files}.\n",
        mb(log_bytes),
        mb(second.bytes),
        mb(second.raw_bytes)
    );
    println!("| open | time | ratio |");
    println!("| --- | ---: | ---: |");
    println!(
        "| from the log alone ({} transactions) | {:.2} s | 1.00 |",
        rows + 1,
        from_log.as_secs_f64()
    );
    println!(
        "| from a snapshot ({} rows) + {} transactions of log | {:.2} s (snapshot load {:.0} ms) | {:.2} |\n",
        stats.snapshot_rows,
        stats.transactions_replayed,
        from_snapshot.as_secs_f64(),
        stats.snapshot_ms,
        from_snapshot.as_secs_f64() / from_log.as_secs_f64()
    );
    println!(
        "Peer of the snapshot load: decompressing its body alone takes {:.0} ms.\n",
        decompress.as_secs_f64() * 1e3
    );
    println!("| snapshot | build | write | write MB/s (raw) | write MB/s (file) |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (what, s) in [
        ("first (whole log replayed)", &first),
        ("second (first + 10,000 tx)", &second),
        ("third (while a caller runs)", &third),
    ] {
        println!(
            "| {what} | {:.0} ms | {:.0} ms | {:.0} | {:.0} |",
            s.build_ms,
            s.write_ms,
            mb(s.raw_bytes) / (s.write_ms / 1e3),
            mb(s.bytes) / (s.write_ms / 1e3)
        );
    }
    println!(
        "| peer: write + fsync of the same raw bytes, plain | | {:.0} ms | {:.0} | |\n",
        peer.as_secs_f64() * 1e3,
        mb(second.raw_bytes) / peer.as_secs_f64()
    );
    println!(
        "| one caller, bank.transfer (sync never) | calls | p99 | longest | calls > 1 ms | > 10 ms |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (what, l) in [
        ("no snapshot (3.4 s)", &quiet),
        ("while a snapshot is built and written", &busy),
    ] {
        println!(
            "| {what} | {} | {:.0} µs | {:.1} ms | {} | {} |",
            l.calls,
            l.p99.as_secs_f64() * 1e6,
            l.longest.as_secs_f64() * 1e3,
            l.over_1ms,
            l.over_10ms
        );
    }
    println!();
    Ok(())
}
