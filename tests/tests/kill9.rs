//! kill -9 under load: a child process runs concurrent bank transfers and is
//! killed at random moments, again and again. After every kill, the data
//! directory opens, every account holds exactly the balance its start
//! balance and the logged transfers (in tx order) give it, and every
//! transfer the child acknowledged is in the log with the arguments it was
//! called with.
//!
//! `INTERSTICE_KILLS=<n>` sets the number of kills (default 50).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use interstice_runtime::log::{LogConfig, RealFs, SyncPolicy, TxRecord, scan};
use interstice_runtime::{Database, LOG_DIR, RuntimeConfig, SNAPSHOTS_DIR};
use interstice_tests::rng::{next, seed};
use interstice_tests::{guest_bytes, guests, test_config};

const ACCOUNTS: u64 = 16;
const START_BALANCE: u64 = 1_000;
const THREADS: &str = "4";

/// What a run of kills exercises.
struct Scenario {
    accounts: u64,
    kills: u64,
    /// Child environment: snapshot and log settings.
    env: Vec<(&'static str, String)>,
    /// Every other kill waits for a snapshot's temporary file to appear
    /// and kills at once, so some kills land mid-write.
    kill_during_snapshot_writes: bool,
    /// Otherwise, the child is killed this many milliseconds after it is
    /// ready: at least the first, less than the second.
    kill_after_ms: (u64, u64),
    /// Where retention moves old segments (read with the log); passed to
    /// the child as `INTERSTICE_ARCHIVE_DIR`.
    archive: Option<std::path::PathBuf>,
}

fn spawn(dir: &Path, scenario: &Scenario, seed: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_bank-load"))
        .arg(dir)
        .arg(scenario.accounts.to_string())
        .arg(THREADS)
        .arg(seed.to_string())
        .envs(scenario.env.iter().map(|(k, v)| (k, v)))
        .envs(
            scenario
                .archive
                .iter()
                .map(|a| ("INTERSTICE_ARCHIVE_DIR", a)),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bank-load")
}

/// Every transfer in the log (and the archive): tx id to (from, to, amount).
fn logged_transfers(dirs: &[&Path]) -> BTreeMap<u64, (u64, u64, u64)> {
    let mut out = BTreeMap::new();
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        scan(&RealFs, dir, &mut |rec| {
            let tx = TxRecord::decode(rec.payload).map_err(|e| e.to_string())?;
            if tx.header.reducer == "transfer" {
                let n = |i: usize| {
                    u64::from_le_bytes(tx.header.args[i * 8..i * 8 + 8].try_into().unwrap())
                };
                out.insert(rec.tx_id, (n(0), n(1), n(2)));
            }
            Ok(())
        })
        .unwrap();
    }
    out
}

fn kills(default: u64) -> u64 {
    std::env::var("INTERSTICE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn kill_nine_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario {
        accounts: ACCOUNTS,
        kills: kills(50),
        env: Vec::new(),
        kill_during_snapshot_writes: false,
        kill_after_ms: (5, 65),
        archive: None,
    };
    let report = run(dir.path(), &scenario);
    assert!(
        report.acknowledged > 0,
        "seed {}: the child never acknowledged a transfer",
        report.seed
    );
}

/// Snapshots every few hundred transactions over a table large enough that
/// writing one takes a while, small segments and an archive: kills land
/// while snapshots are built and written, and after every one the directory
/// opens (from a snapshot) with nothing acknowledged lost.
#[test]
fn kill_nine_while_snapshots_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let scenario = Scenario {
        accounts: 20_000,
        kills: kills(50) / 2,
        env: vec![
            ("INTERSTICE_SNAPSHOT_EVERY_TX", "300".into()),
            ("INTERSTICE_SEGMENT_BYTES", (64 << 10).to_string()),
        ],
        kill_during_snapshot_writes: true,
        kill_after_ms: (50, 600),
        archive: Some(archive),
    };
    let data = dir.path().join("data");
    let report = run(&data, &scenario);
    let seed = report.seed;
    assert!(
        report.acknowledged > 0,
        "seed {seed}: the child never acknowledged a transfer"
    );
    assert!(
        report.mid_write > 0,
        "seed {seed}: no kill landed while a snapshot was being written"
    );
    assert!(
        report.opened_from_snapshot > 0,
        "seed {seed}: no reopen started from a snapshot the child took"
    );
}

struct Report {
    /// The seed the run used (`INTERSTICE_SEED` replays it).
    seed: u64,
    acknowledged: u64,
    /// Kills after which a snapshot's temporary file was found.
    mid_write: u64,
    opened_from_snapshot: u64,
}

fn run(data: &Path, scenario: &Scenario) -> Report {
    let seed = seed();
    eprintln!(
        "kill -9 test: {} kills, INTERSTICE_SEED={seed}",
        scenario.kills
    );
    let mut rng = seed;
    {
        let quick = RuntimeConfig {
            log: LogConfig {
                sync: SyncPolicy::Never,
                ..LogConfig::default()
            },
            ..test_config()
        };
        let db = Database::open(data, quick).unwrap();
        db.publish("bank", &guest_bytes(guests::BANK)).unwrap();
        let open = db.resolve_reducer("bank", "open_account").unwrap();
        for id in 0..scenario.accounts {
            let args: Vec<u8> = [id, START_BALANCE]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            db.call_encoded("bank", open, &args, &interstice_runtime::Caller::operator())
                .unwrap();
        }
        db.log().sync().unwrap();
        if scenario.kill_during_snapshot_writes {
            db.snapshot().unwrap();
        }
    }

    let mut report = Report {
        seed,
        acknowledged: 0,
        mid_write: 0,
        opened_from_snapshot: 0,
    };
    let mut torn_tails = 0u64;
    let mut slowest_open = Duration::ZERO;
    let snapshots = data.join(SNAPSHOTS_DIR);
    for kill in 0..scenario.kills {
        let mut child = spawn(data, scenario, next(&mut rng));
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        assert_eq!(
            line, "ready\n",
            "seed {seed}, kill {kill}: the child did not open"
        );
        // Read the acknowledgements while the child runs, so the pipe
        // never fills; kill at a random moment once transfers are flowing.
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            BufReader::new(stdout).read_to_string(&mut all).unwrap();
            all
        });
        if kill == 0 {
            second_process_is_refused(data, child.id());
        }
        if scenario.kill_during_snapshot_writes && kill % 2 == 1 {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && !has_temporary(&snapshots) {
                std::thread::yield_now();
            }
        } else {
            let (min, max) = scenario.kill_after_ms;
            std::thread::sleep(Duration::from_millis(min + next(&mut rng) % (max - min)));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let out = reader.join().unwrap();
        if has_temporary(&snapshots) {
            report.mid_write += 1;
        }

        let started = Instant::now();
        let db = Database::open(data, test_config())
            .unwrap_or_else(|e| panic!("seed {seed}, kill {kill}: reopen failed: {e}"));
        let open_time = started.elapsed();
        if db.replay_stats().cut.is_some() {
            torn_tails += 1;
        }
        // From a snapshot the child took, not only the one made at setup.
        if db.replay_stats().snapshot_tx_id > Some(scenario.accounts + 1) {
            report.opened_from_snapshot += 1;
        }
        let rows = db.rows_json("bank", "accounts").unwrap();
        drop(db);
        assert!(
            !has_temporary(&snapshots),
            "seed {seed}, kill {kill}: opening removes temporaries"
        );

        let mut dirs = vec![data.join(LOG_DIR)];
        dirs.extend(scenario.archive.clone());
        let logged = logged_transfers(&dirs.iter().map(|d| d.as_path()).collect::<Vec<_>>());
        // The model: every account from its start balance through the
        // logged transfers, in tx order (a transfer is logged only when it
        // committed). A lost, doubled or reordered transfer shows in some
        // account's row.
        let mut model = vec![START_BALANCE; scenario.accounts as usize];
        for (from, to, amount) in logged.values() {
            if from != to {
                model[*from as usize] -= amount;
                model[*to as usize] += amount;
            }
        }
        assert_eq!(
            rows.len() as u64,
            scenario.accounts,
            "seed {seed}, kill {kill}: accounts"
        );
        for row in &rows {
            let id = row["id"].as_u64().unwrap();
            assert_eq!(
                row["balance"].as_u64(),
                Some(model[id as usize]),
                "seed {seed}, kill {kill}: account {id} does not hold what the log's transfers give it"
            );
        }
        // Only whole lines count: the child may die while printing one.
        for line in out.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            let f: Vec<u64> = line
                .trim_end()
                .split(' ')
                .skip(1)
                .map(|v| v.parse().unwrap())
                .collect();
            let [tx, from, to, amount] = f[..] else {
                panic!("seed {seed}, kill {kill}: unexpected line from the child: {line:?}");
            };
            assert_eq!(
                logged.get(&tx),
                Some(&(from, to, amount)),
                "seed {seed}, kill {kill}: acknowledged transfer tx {tx} is not in the log"
            );
            report.acknowledged += 1;
        }
        slowest_open = slowest_open.max(open_time);
    }
    eprintln!(
        "kill -9 test: {} kills, {} acknowledged transfers checked, {torn_tails} torn tails cut, {} kills mid snapshot write, {} reopens from a snapshot, slowest reopen {slowest_open:?}",
        scenario.kills, report.acknowledged, report.mid_write, report.opened_from_snapshot
    );
    report
}

fn has_temporary(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(|e| e.ok())
            .any(|e| interstice_runtime::fs::atomic::is_temporary(&e.path()))
    })
}

/// While one process has the directory open, a second fails at once and
/// names the holder.
fn second_process_is_refused(dir: &Path, holder: u32) {
    let out = Command::new(env!("CARGO_BIN_EXE_bank-load"))
        .arg(dir)
        .args(["1", "1", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("is in use by another process (pid {holder})")),
        "{stderr}"
    );
}
