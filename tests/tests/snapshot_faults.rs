//! I/O errors and bit flips at every step of taking a snapshot and of
//! retention, on the fault-injecting file system.
//!
//! For each operation a snapshot performs (listing, reading the previous
//! snapshot and the log, making the directory, creating, writing, syncing,
//! renaming, syncing the directory, reading back, and retention's removals),
//! and for each n, the n-th such call fails. Whatever it was: the database
//! keeps serving (or, if the log itself failed, refuses writes with a
//! durability error), a snapshot without the fault succeeds afterwards, and
//! after a power loss (with or without the unsynced tails) the database
//! opens with every acknowledged transaction, from snapshots that all read
//! back whole. Also here: bit flips written into a snapshot or read from it
//! or from the log it is built from, failures while writing module code at
//! publication, and failures at each operation of opening.

use std::path::{Path, PathBuf};

use interstice_runtime::fs::Storage;
use interstice_runtime::fs::fault::{EIO, ENOSPC, Fault, FaultFs, Op};
use interstice_runtime::{
    CallError, Database, LOG_DIR, RuntimeConfig, SNAPSHOTS_DIR, SnapshotError, snapshots,
};
use interstice_tests::{fault_config, guest_bytes, guests};
use serde_json::{Value, json};

const ACCOUNTS: u64 = 8;

/// The data directory on `fs`, one snapshot kept so that retention removes
/// the previous one and the segments before it.
fn config(fs: &FaultFs) -> RuntimeConfig {
    fault_config(fs, 1)
}

fn transfers(db: &Database, round: u64) {
    for i in 0..30 {
        let from = (round + i) % ACCOUNTS;
        db.call_json(
            "bank",
            "transfer",
            &json!([from, (from + 3) % ACCOUNTS, 5]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    }
}

/// A bank with a snapshot and log after it: the state a faulty snapshot
/// then starts from.
fn prepared(dir: &Path) -> (FaultFs, Database) {
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
    transfers(&db, 0);
    db.snapshot().unwrap().expect("a first snapshot");
    transfers(&db, 1);
    (fs, db)
}

fn data_dir(tmp: &tempfile::TempDir) -> PathBuf {
    std::fs::canonicalize(tmp.path()).unwrap()
}

/// Opens what a power loss left and checks it holds `expected`, from
/// snapshots that all read back whole.
fn check_after_power_loss(dir: &Path, fs: &FaultFs, expected: &Value, what: &str) {
    for torn in [0, usize::MAX] {
        let crashed = fs.crash(torn);
        for s in snapshots::verify_all(&crashed, dir).unwrap() {
            assert_eq!(s.error, None, "{what}, torn {torn}: {}", s.path.display());
        }
        let db = Database::open(dir, config(&crashed))
            .unwrap_or_else(|e| panic!("{what}, torn {torn}: open: {e}"));
        assert!(
            db.replay_stats().snapshots_rejected.is_empty(),
            "{what}, torn {torn}: {:?}",
            db.replay_stats().snapshots_rejected
        );
        assert_eq!(&db.state_json().unwrap(), expected, "{what}, torn {torn}");
    }
}

fn total(db: &Database) -> u64 {
    db.rows_json("bank", "accounts")
        .unwrap()
        .iter()
        .map(|r| r["balance"].as_u64().unwrap())
        .sum()
}

#[test]
fn an_io_error_at_any_step_of_a_snapshot_loses_nothing_and_serving_goes_on() {
    let mut fired = 0u64;
    let mut failed_snapshots = 0u64;
    let mut poisoned = 0u64;
    let ops = [
        (Op::List, EIO),
        (Op::Read, EIO),
        (Op::Len, EIO),
        (Op::CreateDir, EIO),
        (Op::Create, ENOSPC),
        (Op::Append, ENOSPC),
        (Op::Append, EIO),
        (Op::WriteAt, EIO),
        (Op::Sync, EIO),
        (Op::Rename, EIO),
        (Op::SyncDir, EIO),
        (Op::Remove, EIO),
    ];
    for (op, errno) in ops {
        for nth in 1.. {
            let what = format!("{op:?} (errno {errno}) #{nth}");
            let tmp = tempfile::tempdir().unwrap();
            let dir = data_dir(&tmp);
            let (fs, db) = prepared(&dir);
            fs.inject(Fault::error(op, errno).nth(nth).under(&dir));
            let result = db.snapshot();
            if fs.injected() == 0 {
                eprintln!("{op:?}: {} calls", nth - 1);
                // The snapshot makes fewer than `nth` such calls: this
                // operation is done.
                assert!(result.unwrap().is_some(), "{what}");
                fs.disarm();
                assert!(nth > 1, "{what}: a snapshot never calls {op:?}");
                break;
            }
            fired += 1;
            // Every step a snapshot takes is one it needs (listing the
            // snapshots and segments, reading back what it wrote, removing
            // what retention drops): a failure at any of them fails it,
            // and the error names the errno.
            match &result {
                Ok(info) => panic!("{what}: the snapshot succeeded: {info:?}"),
                Err(e) => {
                    failed_snapshots += 1;
                    assert!(
                        e.to_string().contains(&format!("(os error {errno})")),
                        "{what}: the error does not name the errno: {e}"
                    );
                }
            }
            // Serving goes on, or the log refuses every write (a failed
            // sync of the log itself).
            let served = db.call_json(
                "bank",
                "transfer",
                &json!([0, 1, 1]),
                &interstice_runtime::Caller::operator(),
            );
            match served {
                Ok(_) => {
                    transfers(&db, 2);
                    let again = db.snapshot();
                    assert!(again.is_ok(), "{what}: a later snapshot: {again:?}");
                }
                Err(CallError::Durability(_)) => {
                    poisoned += 1;
                    assert!(
                        matches!(result, Err(SnapshotError::Durability(_))),
                        "{what}: {result:?}"
                    );
                }
                Err(e) => panic!("{what}: {e}"),
            }
            assert_eq!(total(&db), ACCOUNTS * 1_000, "{what}");
            let expected = db.state_json().unwrap();
            drop(db);
            check_after_power_loss(&dir, &fs, &expected, &what);
        }
    }
    eprintln!(
        "snapshot I/O faults: {fired} injected, {failed_snapshots} snapshots failed, {poisoned} poisoned the log"
    );
    // Exactly the steps of this code: 5 listings, 4 reads, 2 lengths, 1
    // directory made, 1 creation, 2+2 appends, 1 header write, 1 sync, 1
    // rename, 4 directory syncs, 3 removals.
    assert_eq!(fired, 27, "faults fired");
}

/// A bit flipped on its way to the device while a snapshot is written: the
/// read-back catches it, the file is removed, and retention gives up no
/// log for it.
#[test]
fn a_snapshot_damaged_on_write_is_caught_before_retention() {
    let mut caught = 0;
    for (op, bit) in [
        (Op::Append, 3u64),
        (Op::Append, 64 * 8 + 17),
        (Op::Append, 1_000_003),
        (Op::WriteAt, 5),
        (Op::WriteAt, 60 * 8),
    ] {
        let what = format!("{op:?} bit {bit}");
        let tmp = tempfile::tempdir().unwrap();
        let dir = data_dir(&tmp);
        let (fs, db) = prepared(&dir);
        let segments_before = fs_list(&fs, &dir.join(LOG_DIR));
        // The first append is the header's placeholder, which the header
        // overwrites: a flip there harms nothing. The second is the body.
        let nth = if op == Op::Append { 2 } else { 1 };
        fs.inject(
            Fault::flip_bit(op, bit)
                .nth(nth)
                .under(dir.join(SNAPSHOTS_DIR)),
        );
        let err = db.snapshot().unwrap_err();
        assert_eq!(fs.injected(), 1, "{what}");
        assert!(matches!(err, SnapshotError::ReadBack(_)), "{what}: {err}");
        caught += 1;
        assert_eq!(
            fs_list(&fs, &dir.join(LOG_DIR)),
            segments_before,
            "{what}: no segment removed"
        );
        transfers(&db, 3);
        let expected = db.state_json().unwrap();
        drop(db);
        check_after_power_loss(&dir, &fs, &expected, &what);
    }
    assert_eq!(caught, 5);
}

/// A bit flipped while the only snapshot is read at open (the file itself
/// is fine): the database refuses to open with a clear error, or opens
/// with exactly the committed state; the next open, undisturbed, is whole.
#[test]
fn a_bit_flipped_reading_a_snapshot_at_open_never_changes_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let (fs, db) = prepared(&dir);
    db.snapshot().unwrap().expect("a second snapshot");
    transfers(&db, 4);
    let expected = db.state_json().unwrap();
    drop(db);
    let snapshot_dir = dir.join(SNAPSHOTS_DIR);
    let size = fs_list(&fs, &snapshot_dir)
        .iter()
        .map(|p| fs.len(p).unwrap())
        .sum::<u64>();
    let (mut refused, mut opened) = (0, 0);
    for bit in (0..size * 8).step_by(97) {
        fs.inject(Fault::flip_bit(Op::Read, bit).under(&snapshot_dir));
        match Database::open(&dir, config(&fs)) {
            Ok(db) => {
                opened += 1;
                assert_eq!(db.state_json().unwrap(), expected, "bit {bit}");
            }
            Err(e) => {
                refused += 1;
                let text = e.to_string();
                assert!(text.contains("no valid snapshot"), "bit {bit}: {text}");
                assert!(text.contains("Snapshots passed over"), "bit {bit}: {text}");
            }
        }
        fs.disarm();
        let db = Database::open(&dir, config(&fs)).unwrap();
        assert_eq!(db.state_json().unwrap(), expected, "bit {bit}, reopened");
    }
    eprintln!("read flips: {refused} opens refused, {opened} opened whole");
    assert!(refused > 0);
}

fn fs_list(fs: &FaultFs, dir: &Path) -> Vec<PathBuf> {
    let mut list = fs.list(dir).unwrap();
    list.sort();
    list
}

/// Module code is written (temporary file, sync, rename, directory sync)
/// before the publication record. A failure at any of those steps fails
/// the publication and nothing else: the old version keeps serving, no
/// record names code that is not there, and a power loss changes nothing.
#[test]
fn an_io_error_writing_module_code_fails_the_publication_only() {
    let mut fired = 0;
    for op in [Op::Create, Op::Append, Op::Sync, Op::Rename, Op::SyncDir] {
        for nth in 1.. {
            let what = format!("{op:?} #{nth}");
            let tmp = tempfile::tempdir().unwrap();
            let dir = data_dir(&tmp);
            let (fs, db) = prepared(&dir);
            let modules = dir.join(interstice_runtime::MODULES_DIR);
            fs.inject(Fault::error(op, EIO).nth(nth).under(&modules));
            // bank-v2 adds a table: an upgrade with a new code file.
            let result = db.publish("bank", &guest_bytes(guests::BANK_V2));
            if fs.injected() == 0 {
                result.unwrap();
                fs.disarm();
                break;
            }
            fired += 1;
            let err = result.err().unwrap_or_else(|| panic!("{what}: published"));
            assert!(err.to_string().contains("os error 5"), "{what}: {err}");
            assert_eq!(
                db.module_version("bank").expect("not poisoned"),
                Some(1),
                "{what}"
            );
            db.call_json(
                "bank",
                "deposit",
                &json!([0, 1]),
                &interstice_runtime::Caller::operator(),
            )
            .unwrap_or_else(|e| panic!("{what}: the old version serves: {e}"));
            let expected = db.state_json().unwrap();
            drop(db);
            check_after_power_loss(&dir, &fs, &expected, &what);
            // The code in force is there after the crash: calls run.
            let db = Database::open(&dir, config(&fs.crash(0))).unwrap();
            assert_eq!(
                db.module_version("bank").expect("not poisoned"),
                Some(1),
                "{what}"
            );
            db.call_json(
                "bank",
                "deposit",
                &json!([0, 1]),
                &interstice_runtime::Caller::operator(),
            )
            .unwrap_or_else(|e| panic!("{what}: after the crash: {e}"));
        }
    }
    assert_eq!(fired, 5);
}

/// An I/O error at any step of opening (temporary-file cleanup, the
/// snapshot, the log's segments, its first write): the open fails with the
/// path and the error, or succeeds; either way the next open, undisturbed,
/// holds every committed transaction, and no open ever shows other data.
#[test]
fn an_io_error_while_opening_never_opens_with_other_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let (fs, db) = prepared(&dir);
    // A temporary file left by an interrupted snapshot, for open to remove.
    fs.create(
        &dir.join(SNAPSHOTS_DIR)
            .join(".00000000000000000099.snap.tmp"),
    )
    .unwrap();
    let expected = db.state_json().unwrap();
    drop(db);
    let (mut refused, mut opened) = (0, 0);
    for op in Op::ALL {
        for nth in 1.. {
            let what = format!("{op:?} #{nth}");
            fs.inject(Fault::error(op, EIO).nth(nth).under(&dir));
            let result = Database::open(&dir, config(&fs));
            let fired = fs.injected() > refused + opened;
            fs.disarm();
            match result {
                Ok(db) => {
                    assert_eq!(db.state_json().unwrap(), expected, "{what}");
                    if !fired {
                        break;
                    }
                    opened += 1;
                }
                Err(e) => {
                    assert!(fired, "{what}: {e}");
                    refused += 1;
                    assert!(e.to_string().contains("os error 5"), "{what}: {e}");
                }
            }
            let db = Database::open(&dir, config(&fs)).unwrap();
            assert_eq!(db.state_json().unwrap(), expected, "{what}: reopened");
        }
    }
    eprintln!("open-time I/O faults: {refused} opens refused, {opened} opened whole");
    assert!(refused >= 5, "{refused}");
}

/// A bit flipped while a snapshot build reads the log after the previous
/// snapshot: the record does not check out, and the snapshot must fail
/// rather than be written without that transaction (retention would then
/// delete the only whole copy of it).
#[test]
fn a_bit_flipped_reading_the_log_fails_the_snapshot() {
    let mut failed = 0;
    for bit in [40 * 8 + 3, 300 * 8, 1_000 * 8 + 1, 2_500 * 8 + 7] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = data_dir(&tmp);
        let (fs, db) = prepared(&dir);
        fs.inject(Fault::flip_bit(Op::Read, bit).under(dir.join(LOG_DIR)));
        let result = db.snapshot();
        assert_eq!(fs.injected(), 1, "bit {bit}");
        match result {
            Err(e) => {
                failed += 1;
                assert!(e.to_string().contains("damaged"), "bit {bit}: {e}");
            }
            Ok(info) => panic!("bit {bit}: a snapshot was written: {info:?}"),
        }
        transfers(&db, 5);
        let expected = db.state_json().unwrap();
        drop(db);
        check_after_power_loss(&dir, &fs, &expected, &format!("bit {bit}"));
    }
    assert_eq!(failed, 4);
}
