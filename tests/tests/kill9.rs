//! kill -9 under load: a child process runs concurrent bank transfers and is
//! killed at random moments, again and again. After every kill, the data
//! directory opens, the bank's total is unchanged, and every transfer the
//! child acknowledged is in the log with the arguments it was called with.
//!
//! `INTERSTICE_KILLS=<n>` sets the number of kills (default 50).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use interstice_runtime::log::{RealFs, TxRecord, scan};
use interstice_runtime::{Database, LOG_DIR};
use interstice_tests::{guest_bytes, guests, test_config};
use serde_json::json;

const ACCOUNTS: u64 = 16;
const START_BALANCE: u64 = 1_000;
const THREADS: &str = "4";

fn spawn(dir: &Path, seed: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_bank-load"))
        .arg(dir)
        .arg(ACCOUNTS.to_string())
        .arg(THREADS)
        .arg(seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bank-load")
}

/// xorshift64*, seeded per run and printed, so a failing run can be redone.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Every transfer in the log: tx id to (from, to, amount).
fn logged_transfers(dir: &Path) -> BTreeMap<u64, (u64, u64, u64)> {
    let mut out = BTreeMap::new();
    scan(&RealFs, &dir.join(LOG_DIR), &mut |rec| {
        let tx = TxRecord::decode(rec.payload).map_err(|e| e.to_string())?;
        if tx.header.reducer == "transfer" {
            let n =
                |i: usize| u64::from_le_bytes(tx.header.args[i * 8..i * 8 + 8].try_into().unwrap());
            out.insert(rec.tx_id, (n(0), n(1), n(2)));
        }
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn kill_nine_under_load_loses_nothing_acknowledged() {
    let kills: u64 = std::env::var("INTERSTICE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed = std::env::var("INTERSTICE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("kill -9 test: {kills} kills, INTERSTICE_SEED={seed}");
    let mut rng = seed;

    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path(), test_config()).unwrap();
        db.publish("bank", &guest_bytes(guests::BANK)).unwrap();
        for id in 0..ACCOUNTS {
            db.call_json("bank", "open_account", &json!([id, START_BALANCE]), "t")
                .unwrap();
        }
    }

    let mut acknowledged = 0u64;
    let mut torn_tails = 0u64;
    let mut slowest_open = Duration::ZERO;
    for kill in 0..kills {
        let mut child = spawn(dir.path(), next(&mut rng));
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n", "kill {kill}: the child did not open");
        // Read the acknowledgements while the child runs, so the pipe
        // never fills; kill at a random moment once transfers are flowing.
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            BufReader::new(stdout).read_to_string(&mut all).unwrap();
            all
        });
        if kill == 0 {
            second_process_is_refused(dir.path(), child.id());
        }
        std::thread::sleep(Duration::from_millis(5 + next(&mut rng) % 60));
        child.kill().unwrap();
        child.wait().unwrap();
        let out = reader.join().unwrap();

        let started = Instant::now();
        let db = Database::open(dir.path(), test_config())
            .unwrap_or_else(|e| panic!("seed {seed}, kill {kill}: reopen failed: {e}"));
        let open_time = started.elapsed();
        if db.replay_stats().cut.is_some() {
            torn_tails += 1;
        }
        let rows = db.rows_json("bank", "accounts").unwrap();
        let total: u64 = rows.iter().map(|r| r["balance"].as_u64().unwrap()).sum();
        assert_eq!(rows.len() as u64, ACCOUNTS);
        assert_eq!(
            total,
            ACCOUNTS * START_BALANCE,
            "seed {seed}, kill {kill}: money created or destroyed"
        );
        drop(db);

        let logged = logged_transfers(dir.path());
        // Only whole lines count: the child may die while printing one.
        for line in out.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            let f: Vec<u64> = line
                .trim_end()
                .split(' ')
                .skip(1)
                .map(|v| v.parse().unwrap())
                .collect();
            let [tx, from, to, amount] = f[..] else {
                panic!("unexpected line from the child: {line:?}");
            };
            assert_eq!(
                logged.get(&tx),
                Some(&(from, to, amount)),
                "seed {seed}, kill {kill}: acknowledged transfer tx {tx} is not in the log"
            );
            acknowledged += 1;
        }
        slowest_open = slowest_open.max(open_time);
    }
    eprintln!(
        "kill -9 test: {kills} kills, {acknowledged} acknowledged transfers checked, {torn_tails} torn tails cut, slowest reopen {slowest_open:?}"
    );
    assert!(acknowledged > 0, "the child never acknowledged a transfer");
}

/// While one process has the directory open, a second fails at once and
/// names the holder.
fn second_process_is_refused(dir: &Path, holder: u32) {
    let out = Command::new(env!("CARGO_BIN_EXE_bank-load"))
        .arg(dir)
        .args([ACCOUNTS.to_string().as_str(), "1", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("is in use by another process (pid {holder})")),
        "{stderr}"
    );
}
