//! A child process for crash tests: opens a data directory holding the
//! `bank` module and runs random transfers from several threads until it is
//! killed. Each transfer that committed durably is printed as one line,
//! `ok <tx id> <from> <to> <amount>`, only after the call returned.
//!
//! `bank-load <data-dir> <accounts> <threads> <seed>`; the environment
//! variables `INTERSTICE_SNAPSHOT_EVERY_TX`, `INTERSTICE_SEGMENT_BYTES` and
//! `INTERSTICE_ARCHIVE_DIR` set the snapshot and log configuration.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use interstice_runtime::Database;
use interstice_tests::rng::next;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, accounts, threads, seed] = &args[..] else {
        eprintln!("usage: bank-load <data-dir> <accounts> <threads> <seed>");
        return ExitCode::from(2);
    };
    let (Ok(accounts), Ok(threads), Ok(seed)) = (
        accounts.parse::<u64>(),
        threads.parse::<u64>(),
        seed.parse::<u64>(),
    ) else {
        eprintln!("accounts, threads and seed are numbers");
        return ExitCode::from(2);
    };
    let mut config = interstice_tests::test_config();
    // Crash tests with snapshots: take them often, keep the log in small
    // segments, and archive what retention removes so the test can still
    // read every acknowledged transaction.
    let env = |name: &str| std::env::var(name).ok();
    if let Some(every) = env("INTERSTICE_SNAPSHOT_EVERY_TX").and_then(|v| v.parse().ok()) {
        config.snapshots.every_tx = every;
    }
    if let Some(bytes) = env("INTERSTICE_SEGMENT_BYTES").and_then(|v| v.parse().ok()) {
        config.log.segment_bytes_max = bytes;
    }
    if let Some(archive) = env("INTERSTICE_ARCHIVE_DIR") {
        config.snapshots.archive_dir = Some(PathBuf::from(archive));
    }
    let db = match Database::open(&PathBuf::from(dir), config) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("ready");
    let transfer = match db.resolve_reducer("bank", "transfer") {
        Ok(id) => id,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    std::thread::scope(|s| {
        for t in 0..threads {
            let db = &db;
            s.spawn(move || {
                let mut rng = seed ^ (t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                loop {
                    let from = next(&mut rng) % accounts;
                    let to = next(&mut rng) % accounts;
                    let amount = next(&mut rng) % 300;
                    let args = [from, to, amount]
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect::<Vec<u8>>();
                    if let Ok(outcome) = db.call_encoded(
                        "bank",
                        transfer,
                        &args,
                        &interstice_runtime::Caller::operator(),
                    ) {
                        // One write of one short line: atomic on a pipe.
                        let line = format!("ok {} {from} {to} {amount}\n", outcome.tx_id);
                        let _ = std::io::stdout().lock().write_all(line.as_bytes());
                    }
                }
            });
        }
    });
    ExitCode::SUCCESS
}
