//! I/O errors at every step of a backup and of a restore, on the
//! fault-injecting file system.
//!
//! For each operation a clean backup (or restore) performs, and for each n,
//! the n-th such call fails with EIO. Whatever it was:
//! - a backup either fails, or leaves a directory whose manifest verifies
//!   and which restores to exactly the source's state; a directory that does
//!   not restore to that state never passes `backup verify`;
//! - a restore either succeeds with exactly the backup's state, or leaves a
//!   directory that refuses to open (or is still empty), also after a power
//!   loss: never one that opens with other data.

use std::path::{Path, PathBuf};

use interstice_runtime::fs::fault::{EIO, Fault, FaultFs, Op};
use interstice_runtime::{Database, OpenError, RuntimeConfig, backup};
use interstice_tests::{fault_config, guest_bytes, guests};
use serde_json::{Value, json};

const ACCOUNTS: u64 = 6;

fn config(fs: &FaultFs) -> RuntimeConfig {
    fault_config(fs, 2)
}

/// A bank with a snapshot and log after it, closed; its state.
fn source(dir: &Path) -> (FaultFs, Value) {
    let fs = FaultFs::new();
    let db = Database::open(dir, config(&fs)).unwrap();
    db.publish("bank", &guest_bytes(guests::BANK)).unwrap();
    for id in 0..ACCOUNTS {
        db.call_json(
            "bank",
            "open_account",
            &json!([id, 1_000]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    }
    db.snapshot().unwrap().expect("a snapshot");
    for i in 0..20 {
        let from = i % ACCOUNTS;
        db.call_json(
            "bank",
            "transfer",
            &json!([from, (from + 1) % ACCOUNTS, 7]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    }
    let state = db.state_json().unwrap();
    (fs, state)
}

/// How many calls of each operation `work` makes on `fs`.
fn steps(fs: &FaultFs, work: impl FnOnce()) -> Vec<(Op, u64)> {
    let before: Vec<u64> = Op::ALL.iter().map(|op| fs.count(*op)).collect();
    work();
    Op::ALL
        .iter()
        .zip(before)
        .map(|(op, b)| (*op, fs.count(*op) - b))
        .filter(|(_, n)| *n > 0)
        .collect()
}

struct Dirs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    n: u64,
}

impl Dirs {
    fn new() -> Dirs {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        Dirs {
            _tmp: tmp,
            root,
            n: 0,
        }
    }

    /// A new directory path (the lock file of a database opened there is on
    /// the real file system; its data on the fault-injecting one).
    fn next(&mut self, what: &str) -> PathBuf {
        self.n += 1;
        self.root.join(format!("{what}-{}", self.n))
    }
}

/// Restores `backup_dir` into a new directory and returns its state.
fn restored_state(fs: &FaultFs, dirs: &mut Dirs, backup_dir: &Path) -> Value {
    let target = dirs.next("check");
    backup::restore(backup_dir, &target, config(fs)).unwrap();
    Database::open(&target, config(fs))
        .unwrap()
        .state_json()
        .unwrap()
}

#[test]
fn an_io_error_at_any_step_of_a_backup_never_leaves_a_backup_with_other_data() {
    let mut dirs = Dirs::new();
    let data = dirs.next("data");
    let (fs, expected) = source(&data);
    let clean = dirs.next("backup");
    let steps = steps(&fs, || {
        backup::backup(&fs, &data, &clean).unwrap();
    });
    assert_eq!(restored_state(&fs, &mut dirs, &clean), expected);
    let (mut failed, mut faults) = (0, 0);
    for (op, n) in steps {
        for nth in 1..=n {
            let what = format!("{op:?} #{nth}");
            let dest = dirs.next("backup");
            fs.inject(Fault::error(op, EIO).nth(nth));
            let result = backup::backup(&fs, &data, &dest);
            fs.disarm();
            faults += 1;
            if result.is_err() {
                failed += 1;
            }
            // Whatever the call said: a directory that verifies restores to
            // exactly the source's state.
            if backup::verify(&fs, &dest).is_ok() {
                assert_eq!(restored_state(&fs, &mut dirs, &dest), expected, "{what}");
            } else {
                assert!(
                    result.is_err(),
                    "{what}: a backup that does not verify was reported done"
                );
            }
        }
    }
    assert!(faults >= 40, "only {faults} steps");
    assert!(
        failed * 10 >= faults * 9,
        "{failed} of {faults} faults failed the backup"
    );
}

#[test]
fn an_io_error_at_any_step_of_a_restore_never_leaves_a_directory_that_opens_with_other_data() {
    let mut dirs = Dirs::new();
    let data = dirs.next("data");
    let (fs, expected) = source(&data);
    let backup_dir = dirs.next("backup");
    backup::backup(&fs, &data, &backup_dir).unwrap();
    let clean = dirs.next("restore");
    let steps = steps(&fs, || {
        backup::restore(&backup_dir, &clean, config(&fs)).unwrap();
    });
    // A finished restore survives a power loss.
    let crashed = fs.crash(0);
    let db = Database::open(&clean, config(&crashed)).unwrap();
    assert_eq!(db.state_json().unwrap(), expected);
    drop(db);
    let (mut refused, mut faults) = (0, 0);
    for (op, n) in steps {
        for nth in 1..=n {
            let what = format!("{op:?} #{nth}");
            let target = dirs.next("restore");
            fs.inject(Fault::error(op, EIO).nth(nth));
            let result = backup::restore(&backup_dir, &target, config(&fs));
            fs.disarm();
            faults += 1;
            if let Ok(restored) = &result {
                let db = Database::open(&target, config(&fs)).unwrap();
                assert_eq!(db.state_json().unwrap(), expected, "{what}");
                assert_eq!(db.next_tx_id().unwrap() - 1, restored.tx_id, "{what}");
                continue;
            }
            for (image, fs) in [("live", fs.clone()), ("after power loss", fs.crash(0))] {
                match Database::open(&target, config(&fs)) {
                    Err(OpenError::RestoreIncomplete(_)) => refused += 1,
                    Err(e) => panic!("{what}, {image}: unexpected error {e}"),
                    Ok(db) => {
                        let state = db.state_json().unwrap();
                        assert!(
                            state == expected || state == json!({}),
                            "{what}, {image}: opens with {state}"
                        );
                    }
                }
            }
        }
    }
    assert!(faults >= 40, "only {faults} steps");
    assert!(refused >= faults, "{refused} refusals for {faults} faults");
}
