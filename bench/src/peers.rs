//! Interstice against its peers, side by side in one run: SQLite (rusqlite,
//! bundled library) in memory and on disk in WAL mode, a JSON-lines append
//! log with an fsync per write replayed into a map at open, and the raw
//! fdatasync rate of the disk.
//!
//! Every side runs the same logical transactions: a transfer between two
//! accounts that fails, changing nothing, when it would overdraw; the
//! insert of one new account; a point read of one account's balance.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use interstice_runtime::log::SyncPolicy;
use interstice_runtime::{CallError, Database};
use interstice_store::Value;
use interstice_tests::{guest_bytes, guests};
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};
use rusqlite::{Connection, params};
use serde_json::json;

use crate::durable::{self, bench_dir};
use crate::u64_args;

/// Accounts every side starts with.
pub const ACCOUNTS: u64 = 100_000;
const START_BALANCE: u64 = 1_000_000;
/// Zipf exponent of the skewed transfer workload: a few accounts take most
/// transfers.
const ZIPF_EXPONENT: f64 = 1.1;

/// One connection, handle or lock holder per calling thread.
pub trait Worker {
    /// `Ok(false)`: refused (it would overdraw); nothing changed.
    fn transfer(&mut self, from: u64, to: u64, amount: u64) -> Result<bool>;
    fn insert(&mut self, id: u64) -> Result<()>;
    fn read(&mut self, id: u64) -> Result<Option<u64>>;
}

pub trait Side: Sync {
    fn name(&self) -> String;
    fn worker(&self) -> Result<Box<dyn Worker + '_>>;
}

// ---------------------------------------------------------------- Interstice

pub struct IntersticeSide {
    db: Database,
    transfer: u32,
    open: u32,
    label: &'static str,
    _dir: tempfile::TempDir,
}

impl IntersticeSide {
    pub fn new(sync: SyncPolicy, label: &'static str) -> Result<Self> {
        let dir = durable::seeded_bank()?;
        let db = Database::open(dir.path(), durable::config(sync))?;
        Ok(IntersticeSide {
            transfer: db.resolve_reducer("bank", "transfer")?,
            open: db.resolve_reducer("bank", "open_account")?,
            db,
            label,
            _dir: dir,
        })
    }
}

struct IntersticeWorker<'a>(&'a IntersticeSide);

impl Worker for IntersticeWorker<'_> {
    fn transfer(&mut self, from: u64, to: u64, amount: u64) -> Result<bool> {
        let s = self.0;
        match s.db.call_encoded(
            "bank",
            s.transfer,
            &u64_args(&[from, to, amount]),
            &interstice_runtime::Caller::operator(),
        ) {
            Ok(_) => Ok(true),
            Err(CallError::Reducer(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn insert(&mut self, id: u64) -> Result<()> {
        let s = self.0;
        s.db.call_encoded(
            "bank",
            s.open,
            &u64_args(&[id, 0]),
            &interstice_runtime::Caller::operator(),
        )?;
        Ok(())
    }

    fn read(&mut self, id: u64) -> Result<Option<u64>> {
        let row = self.0.db.get_row("bank", "accounts", &Value::U64(id))?;
        Ok(row.map(|r| balance_of(&r)))
    }
}

/// The balance column of a bank row: the second `u64` (docs/row-encoding.md).
fn balance_of(row: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&row[8..16]);
    u64::from_le_bytes(b)
}

impl Side for IntersticeSide {
    fn name(&self) -> String {
        self.label.to_string()
    }

    fn worker(&self) -> Result<Box<dyn Worker + '_>> {
        Ok(Box::new(IntersticeWorker(self)))
    }
}

// -------------------------------------------------------------------- SQLite

pub struct SqliteSide {
    label: &'static str,
    /// On disk: each worker opens its own connection (WAL, busy timeout).
    path: Option<PathBuf>,
    synchronous: &'static str,
    /// In memory: the one connection, for one caller.
    memory: Option<Mutex<Connection>>,
    _dir: Option<tempfile::TempDir>,
}

fn create_accounts(conn: &Connection, rows: u64) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);",
    )?;
    let tx = conn.unchecked_transaction()?;
    {
        let mut insert = tx.prepare("INSERT INTO accounts (id, balance) VALUES (?1, ?2)")?;
        for id in 0..rows {
            insert.execute(params![id as i64, START_BALANCE as i64])?;
        }
    }
    tx.commit()?;
    Ok(())
}

impl SqliteSide {
    pub fn memory() -> Result<Self> {
        let conn = Connection::open_in_memory()?;
        create_accounts(&conn, ACCOUNTS)?;
        Ok(SqliteSide {
            label: "SQLite, in memory",
            path: None,
            synchronous: "OFF",
            memory: Some(Mutex::new(conn)),
            _dir: None,
        })
    }

    /// WAL mode with `synchronous` FULL (durable on power loss) or NORMAL
    /// (not: the last transactions can be lost).
    pub fn wal(synchronous: &'static str, label: &'static str) -> Result<Self> {
        let dir = bench_dir()?;
        let path = dir.path().join("bank.sqlite");
        let conn = open_wal(&path, "OFF")?;
        create_accounts(&conn, ACCOUNTS)?;
        drop(conn);
        Ok(SqliteSide {
            label,
            path: Some(path),
            synchronous,
            memory: None,
            _dir: Some(dir),
        })
    }
}

fn open_wal(path: &Path, synchronous: &str) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    Ok(conn)
}

enum Conn<'a> {
    Own(Connection),
    Shared(std::sync::MutexGuard<'a, Connection>),
}

impl std::ops::Deref for Conn<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            Conn::Own(c) => c,
            Conn::Shared(c) => c,
        }
    }
}

struct SqliteWorker<'a>(Conn<'a>);

impl Worker for SqliteWorker<'_> {
    fn transfer(&mut self, from: u64, to: u64, amount: u64) -> Result<bool> {
        let conn = &*self.0;
        // IMMEDIATE: take the write lock up front, as a transfer will write.
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let balance = |id: u64| -> Result<Option<i64>> {
            let mut stmt = conn.prepare_cached("SELECT balance FROM accounts WHERE id = ?1")?;
            let mut rows = stmt.query(params![id as i64])?;
            Ok(match rows.next()? {
                Some(r) => Some(r.get(0)?),
                None => None,
            })
        };
        let (Some(source), Some(_)) = (balance(from)?, balance(to)?) else {
            conn.execute_batch("ROLLBACK")?;
            return Ok(false);
        };
        if source < amount as i64 {
            conn.execute_batch("ROLLBACK")?;
            return Ok(false);
        }
        if from != to {
            let mut update =
                conn.prepare_cached("UPDATE accounts SET balance = balance + ?2 WHERE id = ?1")?;
            update.execute(params![from as i64, -(amount as i64)])?;
            update.execute(params![to as i64, amount as i64])?;
        }
        conn.execute_batch("COMMIT")?;
        Ok(true)
    }

    fn insert(&mut self, id: u64) -> Result<()> {
        let mut stmt = self
            .0
            .prepare_cached("INSERT INTO accounts (id, balance) VALUES (?1, 0)")?;
        stmt.execute(params![id as i64])?;
        Ok(())
    }

    fn read(&mut self, id: u64) -> Result<Option<u64>> {
        let mut stmt = self
            .0
            .prepare_cached("SELECT balance FROM accounts WHERE id = ?1")?;
        let mut rows = stmt.query(params![id as i64])?;
        Ok(match rows.next()? {
            Some(r) => Some(r.get::<_, i64>(0)? as u64),
            None => None,
        })
    }
}

impl Side for SqliteSide {
    fn name(&self) -> String {
        self.label.to_string()
    }

    fn worker(&self) -> Result<Box<dyn Worker + '_>> {
        let conn = match (&self.path, &self.memory) {
            (Some(path), _) => Conn::Own(open_wal(path, self.synchronous)?),
            (None, Some(m)) => Conn::Shared(m.lock().map_err(|_| anyhow::anyhow!("poisoned"))?),
            (None, None) => bail!("no database"),
        };
        Ok(Box::new(SqliteWorker(conn)))
    }
}

// ---------------------------------------------------------------- JSON lines

/// The small-system design: state in a map, every change appended to a
/// file as one JSON line (and fsynced, when durable), the whole file
/// replayed at open. One lock around map and file.
pub struct JsonLinesSide {
    label: &'static str,
    fsync: bool,
    state: Mutex<(HashMap<u64, u64>, File)>,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl JsonLinesSide {
    pub fn new(fsync: bool, label: &'static str) -> Result<Self> {
        let dir = bench_dir()?;
        let path = dir.path().join("bank.jsonl");
        {
            let mut f = std::io::BufWriter::new(File::create(&path)?);
            for id in 0..ACCOUNTS {
                writeln!(
                    f,
                    "{}",
                    json!({"op": "open", "id": id, "balance": START_BALANCE})
                )?;
            }
            f.into_inner()?.sync_all()?;
        }
        let (map, file) = Self::open(&path)?;
        Ok(JsonLinesSide {
            label,
            fsync,
            state: Mutex::new((map, file)),
            path,
            _dir: dir,
        })
    }

    /// Replays the file into a map and opens it for appending.
    pub fn open(path: &Path) -> Result<(HashMap<u64, u64>, File)> {
        let mut map = HashMap::new();
        for line in BufReader::new(File::open(path)?).lines() {
            let line = line?;
            let v: serde_json::Value = serde_json::from_str(&line)?;
            let n = |k: &str| v[k].as_u64().with_context(|| format!("{k} in {line}"));
            match v["op"].as_str() {
                Some("open") => {
                    map.insert(n("id")?, n("balance")?);
                }
                Some("transfer") => {
                    let amount = n("amount")?;
                    *map.get_mut(&n("from")?).context("from")? -= amount;
                    *map.get_mut(&n("to")?).context("to")? += amount;
                }
                _ => bail!("unknown line {line}"),
            }
        }
        let file = std::fs::OpenOptions::new().append(true).open(path)?;
        Ok((map, file))
    }
}

struct JsonWorker<'a>(&'a JsonLinesSide);

impl JsonWorker<'_> {
    fn append(&self, file: &mut File, line: serde_json::Value) -> Result<()> {
        let mut bytes = serde_json::to_vec(&line)?;
        bytes.push(b'\n');
        file.write_all(&bytes)?;
        if self.0.fsync {
            file.sync_data()?;
        }
        Ok(())
    }
}

impl Worker for JsonWorker<'_> {
    fn transfer(&mut self, from: u64, to: u64, amount: u64) -> Result<bool> {
        let mut guard = self
            .0
            .state
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        let (map, file) = &mut *guard;
        match (map.get(&from), map.get(&to)) {
            (Some(b), Some(_)) if *b >= amount => {}
            _ => return Ok(false),
        }
        self.append(
            file,
            json!({"op": "transfer", "from": from, "to": to, "amount": amount}),
        )?;
        *map.get_mut(&from).context("from")? -= amount;
        *map.get_mut(&to).context("to")? += amount;
        Ok(true)
    }

    fn insert(&mut self, id: u64) -> Result<()> {
        let mut guard = self
            .0
            .state
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        let (map, file) = &mut *guard;
        if map.contains_key(&id) {
            bail!("account {id} exists");
        }
        self.append(file, json!({"op": "open", "id": id, "balance": 0}))?;
        map.insert(id, 0);
        Ok(())
    }

    fn read(&mut self, id: u64) -> Result<Option<u64>> {
        let guard = self
            .0
            .state
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        Ok(guard.0.get(&id).copied())
    }
}

impl Side for JsonLinesSide {
    fn name(&self) -> String {
        self.label.to_string()
    }

    fn worker(&self) -> Result<Box<dyn Worker + '_>> {
        Ok(Box::new(JsonWorker(self)))
    }
}

// ----------------------------------------------------------------- workloads

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    TransferUniform,
    TransferZipf,
    Insert,
    Read,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::TransferUniform => "transfer, uniform",
            Workload::TransferZipf => "transfer, Zipf",
            Workload::Insert => "insert",
            Workload::Read => "read",
        }
    }
}

/// What callers of one side achieved on one workload.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Run {
    pub side: String,
    pub workload: &'static str,
    pub callers: usize,
    pub transactions: u64,
    pub refused: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// One caller's latencies, and how many of its transfers were refused.
type CallerResult = (Vec<Duration>, u64);

/// `callers` threads run `workload` on `side` for `run`. Insert ids start
/// past every id used so far (`next_id`).
pub fn measure(
    side: &dyn Side,
    workload: Workload,
    callers: usize,
    run: Duration,
    next_id: &std::sync::atomic::AtomicU64,
) -> Result<Run> {
    let barrier = Barrier::new(callers + 1);
    let zipf = Zipf::new(ACCOUNTS as f64, ZIPF_EXPONENT)?;
    let (results, elapsed) = std::thread::scope(|s| -> Result<(Vec<CallerResult>, Duration)> {
        let handles: Vec<_> = (0..callers)
            .map(|c| {
                let barrier = &barrier;
                let zipf = &zipf;
                s.spawn(move || -> Result<CallerResult> {
                    let mut worker = side.worker()?;
                    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed + c as u64);
                    let mut latencies = Vec::with_capacity(1 << 16);
                    let mut refused = 0u64;
                    barrier.wait();
                    let start = Instant::now();
                    while start.elapsed() < run {
                        let t = Instant::now();
                        match workload {
                            Workload::TransferUniform | Workload::TransferZipf => {
                                let (from, to) = if workload == Workload::TransferZipf {
                                    let a = zipf.sample(&mut rng) as u64 - 1;
                                    let b = zipf.sample(&mut rng) as u64 - 1;
                                    (a, b)
                                } else {
                                    (rng.random_range(0..ACCOUNTS), rng.random_range(0..ACCOUNTS))
                                };
                                let amount = rng.random_range(1..1_000u64);
                                if !worker.transfer(from, to, amount)? {
                                    refused += 1;
                                }
                            }
                            Workload::Insert => {
                                let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                worker.insert(id)?;
                            }
                            Workload::Read => {
                                let id = rng.random_range(0..ACCOUNTS);
                                if worker.read(id)?.is_none() {
                                    bail!("account {id} missing");
                                }
                            }
                        }
                        latencies.push(t.elapsed());
                    }
                    Ok((latencies, refused))
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut out = Vec::new();
        for h in handles {
            out.push(
                h.join()
                    .map_err(|_| anyhow::anyhow!("a caller panicked"))??,
            );
        }
        Ok((out, start.elapsed()))
    })?;
    let refused = results.iter().map(|(_, r)| r).sum();
    let mut all: Vec<Duration> = results.into_iter().flat_map(|(l, _)| l).collect();
    all.sort();
    let n = all.len().max(1);
    Ok(Run {
        side: side.name(),
        workload: workload.name(),
        callers,
        transactions: all.len() as u64,
        refused,
        seconds: elapsed.as_secs_f64(),
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p50_us: all.get(n / 2).map_or(0.0, |d| d.as_secs_f64() * 1e6),
        p99_us: all.get(n * 99 / 100).map_or(0.0, |d| d.as_secs_f64() * 1e6),
    })
}

// ---------------------------------------------------------------- open time

/// `n` transfers of 1 between uniformly chosen accounts (setup).
fn random_transfers(worker: &mut dyn Worker, n: u64) -> Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for _ in 0..n {
        worker.transfer(
            rng.random_range(0..ACCOUNTS),
            rng.random_range(0..ACCOUNTS),
            1,
        )?;
    }
    Ok(())
}

/// Time to open after `transactions` committed transactions (100,000
/// account openings, then transfers), for each side that has an open.
pub fn open_times(transactions: u64) -> Result<Vec<(String, Duration)>> {
    let mut out = Vec::new();

    let dir = bench_dir()?;
    durable::write_transfers(dir.path(), transactions)?;
    let start = Instant::now();
    let db = Database::open(dir.path(), durable::config(SyncPolicy::Always))?;
    db.get_row("bank", "accounts", &Value::U64(1))?
        .context("account 1")?;
    out.push((
        "Interstice (replay of the log)".to_string(),
        start.elapsed(),
    ));
    drop(db);

    let dir = bench_dir()?;
    let path = dir.path().join("bank.sqlite");
    {
        let conn = open_wal(&path, "OFF")?;
        create_accounts(&conn, ACCOUNTS)?;
        random_transfers(&mut SqliteWorker(Conn::Own(conn)), transactions - ACCOUNTS)?;
    }
    let start = Instant::now();
    let mut w = SqliteWorker(Conn::Own(open_wal(&path, "FULL")?));
    w.read(1)?.context("account 1")?;
    out.push((
        "SQLite, WAL (open + first read)".to_string(),
        start.elapsed(),
    ));

    let side = JsonLinesSide::new(false, "setup")?;
    {
        random_transfers(&mut *side.worker()?, transactions - ACCOUNTS)?;
    }
    let start = Instant::now();
    let (map, _) = JsonLinesSide::open(&side.path)?;
    map.get(&1).context("account 1")?;
    out.push((
        "JSON lines (replay into a map)".to_string(),
        start.elapsed(),
    ));
    Ok(out)
}

// ------------------------------------------------------------ memory per row

fn resident_bytes() -> Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).context("statm")?.parse()?;
    Ok(pages * 4096)
}

/// Run in a child process (`interstice-bench mem SIDE ROWS`): resident
/// bytes per row after loading ROWS accounts into one side.
pub fn memory_child(side: &str, rows: u64) -> Result<()> {
    let before = resident_bytes()?;
    let keep: Box<dyn std::any::Any> = match side {
        "interstice" => {
            let dir = bench_dir()?;
            let db = Database::open(dir.path(), durable::config(SyncPolicy::Never))?;
            db.publish("bank", &guest_bytes(guests::BANK))?;
            let open = db.resolve_reducer("bank", "open_account")?;
            for id in 0..rows {
                db.call_encoded(
                    "bank",
                    open,
                    &u64_args(&[id, START_BALANCE]),
                    &interstice_runtime::Caller::operator(),
                )?;
            }
            db.log().sync()?;
            Box::new((db, dir))
        }
        "sqlite" => {
            let conn = Connection::open_in_memory()?;
            create_accounts(&conn, rows)?;
            Box::new(conn)
        }
        "jsonl" => {
            let mut map = HashMap::new();
            for id in 0..rows {
                map.insert(id, START_BALANCE);
            }
            Box::new(map)
        }
        other => bail!("unknown side {other}"),
    };
    let after = resident_bytes()?;
    println!("{}", (after.saturating_sub(before)) as f64 / rows as f64);
    drop(keep);
    Ok(())
}

/// Resident bytes per row of each side, each measured in a fresh process.
pub fn memory_per_row(rows: u64) -> Result<Vec<(String, f64)>> {
    let exe = std::env::current_exe()?;
    let mut out = Vec::new();
    for (side, label) in [
        ("interstice", "Interstice (bank module, 1 table)"),
        ("sqlite", "SQLite, in memory"),
        ("jsonl", "JSON lines (HashMap<u64, u64>)"),
    ] {
        let output = std::process::Command::new(&exe)
            .args(["mem", side, &rows.to_string()])
            .output()?;
        if !output.status.success() {
            bail!("mem {side}: {}", String::from_utf8_lossy(&output.stderr));
        }
        let per_row: f64 = String::from_utf8_lossy(&output.stdout).trim().parse()?;
        out.push((label.to_string(), per_row));
    }
    Ok(out)
}
