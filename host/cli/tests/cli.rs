//! The `interstice` binary, run as a real process.

mod common;
use common::interstice;

use std::path::Path;
use std::process::{Command, Output};

use interstice_tests::guests;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn publish_call_query_schema() {
    let dir = tempfile::tempdir().unwrap();
    let out = interstice(
        dir.path(),
        &["publish", guests::COUNTER, "--name", "counter"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "published module `counter`: 1 tables, 1 reducers\n"
    );
    assert!(dir.path().join("modules/counter.wasm").is_file());

    let out = interstice(dir.path(), &["call", "counter", "increment", r#"["a"]"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    // Publication is transaction 1.
    assert_eq!(answer["tx_id"], 2);
    assert!(answer["timestamp"].as_i64().unwrap() > 0);

    // A new process replays the log: the row written by the last one is
    // there.
    let out = interstice(dir.path(), &["query", "counter", "counters"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "{\"name\":\"a\",\"value\":1}\n");

    let out = interstice(dir.path(), &["schema", "counter"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let schema: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(schema["tables"][0]["name"], "counters");
    assert_eq!(schema["reducers"][0]["params"][0]["ty"], "string");
}

#[test]
fn failures_exit_non_zero_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = interstice(dir.path(), &["publish", guests::BANK, "--name", "bank"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cases: [(&[&str], &str); 5] = [
        (
            &["call", "bank", "transfer", "[1, 2, 3]"],
            "account 1 does not exist",
        ),
        (
            &["call", "bank", "transfer", "[1, 2]"],
            "expected 3 arguments, got 2",
        ),
        (
            &["call", "bank", "transfer", "not json"],
            "arguments are not valid JSON",
        ),
        (&["call", "nope", "x"], "no module named `nope`"),
        (
            &["query", "bank", "nope"],
            "module `bank` has no table named `nope`",
        ),
    ];
    for (args, message) in cases {
        let out = interstice(dir.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty());
    }
    let not_wasm = dir.path().join("notes.txt");
    std::fs::write(&not_wasm, "hello").unwrap();
    let out = interstice(dir.path(), &["publish", not_wasm.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a WebAssembly file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn relative_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_interstice"))
        .current_dir(dir.path())
        .args([
            "publish",
            guests::BANK,
            "--name",
            "bank",
            "--data-dir",
            "data",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("data/modules/bank.wasm").is_file());
    assert!(dir.path().join("data/cache").is_dir());
}

fn json_out(o: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// A data directory with the bank and a few transactions, written by real
/// processes.
fn bank_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = interstice(dir.path(), args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    run(&["publish", guests::BANK, "--name", "bank"]);
    run(&["call", "bank", "open_account", "[1, 100]"]);
    run(&["call", "bank", "open_account", "[2, 0]"]);
    // The local CLI may act as anyone: the log records that identity.
    run(&["call", "bank", "transfer", "[1, 2, 30]", "--as", CALLER]);
    dir
}

/// The identity `bank_dir` makes its transfer as.
const CALLER: &str = "a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0";

#[test]
fn replay_prints_its_stats_and_runs_no_guest() {
    let dir = bank_dir();
    std::fs::remove_file(dir.path().join("modules/bank.wasm")).unwrap();
    let out = interstice(dir.path(), &["replay"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stats = json_out(&out);
    assert_eq!(stats["transactions_replayed"], 4);
    assert_eq!(stats["mutations_replayed"], 4);
    assert_eq!(stats["rows"], 2);
    assert_eq!(stats["guest_instantiations"], 0);
    assert_eq!(stats["guest_calls"], 0);
    assert_eq!(stats["fuel_consumed"], 0);
    assert_eq!(stats["sync_policy"], "always");
    let out = interstice(dir.path(), &["query", "bank", "accounts"]);
    assert_eq!(
        stdout(&out),
        "{\"balance\":70,\"id\":1}\n{\"balance\":30,\"id\":2}\n"
    );
}

#[test]
fn log_verify_inspect_dump() {
    let dir = bank_dir();
    let out = interstice(dir.path(), &["log", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Not a terminal: no progress bar, nothing on stderr.
    assert_eq!(stderr(&out), "");
    assert_eq!(json_out(&out)["records"], 4);

    let out = interstice(dir.path(), &["log", "inspect"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json_out(&out);
    assert_eq!(report["transactions"], 4);
    assert_eq!(report["first_tx_id"], 1);
    assert_eq!(report["last_tx_id"], 4);
    assert_eq!(report["segments"].as_array().unwrap().len(), 1);
    assert_eq!(report["modules"]["bank"]["tables"]["accounts"], 4);
    assert!(report["first_timestamp_micros"].as_i64() < report["last_timestamp_micros"].as_i64());

    let out = interstice(dir.path(), &["log", "dump", "--from", "4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("tx 4 @"), "{text}");
    assert!(
        lines[0].ends_with(&format!(
            r#"by "{CALLER}": call bank.transfer {{"amount":30,"from":1,"to":2}}"#
        )),
        "{text}"
    );
    assert_eq!(lines[1], r#"  update accounts {"balance":70,"id":1}"#);
    assert_eq!(lines[2], r#"  update accounts {"balance":30,"id":2}"#);
    let out = interstice(
        dir.path(),
        &["log", "dump", "--table", "accounts", "--to", "2"],
    );
    let text = stdout(&out);
    assert!(
        text.contains("insert accounts {\"balance\":100,\"id\":1}"),
        "{text}"
    );
    assert!(
        !text.contains("tx 1 "),
        "the publication has no account rows: {text}"
    );
}

/// Corruption in the middle: verify and open name file and offset; point-in-
/// time recovery opens the prefix; the repair tool makes the log whole.
#[test]
fn damaged_log_is_reported_and_repaired() {
    let dir = bank_dir();
    let seg = dir.path().join("log/00000000000000000001.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    // Record 3 (the second account) sits after the publication and the
    // first call; find it by reading the frame lengths.
    let mut at = 36usize;
    for _ in 0..2 {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        at += 16 + len;
    }
    bytes[at + 20] ^= 0x08;
    std::fs::write(&seg, &bytes).unwrap();

    let out = interstice(dir.path(), &["log", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("offset {at}: record checksum mismatch")),
        "{err}"
    );
    assert!(err.contains("00000000000000000001.log"), "{err}");

    let out = interstice(dir.path(), &["query", "bank", "accounts"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("does not allow opening it"),
        "{}",
        stderr(&out)
    );

    let out = interstice(dir.path(), &["replay", "--recovery-mode", "point-in-time"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("log recovery cut the log at"),
        "{}",
        stderr(&out)
    );
    let stats = json_out(&out);
    assert_eq!(stats["last_tx_id"], 2);
    assert_eq!(stats["quarantined"].as_array().unwrap().len(), 1);

    let out = interstice(dir.path(), &["log", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = interstice(dir.path(), &["log", "truncate", "--after", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("the log now ends at tx 1\n"),
        "{}",
        stdout(&out)
    );
    let out = interstice(dir.path(), &["query", "bank", "accounts"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
}

#[test]
fn a_weak_sync_policy_is_stated_at_every_start() {
    let dir = bank_dir();
    for policy in ["never", "interval=10"] {
        let out = interstice(dir.path(), &["query", "bank", "accounts", "--sync", policy]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "sync policy `{policy}`: acknowledged transactions can be lost on power loss"
            )),
            "{}",
            stderr(&out)
        );
    }
    let out = interstice(
        dir.path(),
        &["query", "bank", "accounts", "--sync", "sometimes"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown sync policy"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn snapshot_create_list_verify_then_backup_and_restore() {
    let dir = bank_dir();
    let out = interstice(dir.path(), &["snapshot", "create"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = json_out(&out);
    let tx = info["tx_id"].as_u64().unwrap();
    assert!(tx > 1);
    let out = interstice(dir.path(), &["snapshot", "create"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("exists already"), "{}", stdout(&out));

    let out = interstice(dir.path(), &["call", "bank", "deposit", "[1, 5]"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = interstice(dir.path(), &["replay"]);
    let stats = json_out(&out);
    assert_eq!(stats["snapshot_tx_id"], tx);
    assert_eq!(stats["transactions_replayed"], 1);

    let out = interstice(dir.path(), &["snapshot", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = json_out(&out);
    assert_eq!(list[0]["tx_id"], tx);
    let out = interstice(dir.path(), &["snapshot", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Backup and restore in new processes give the same rows.
    let dest = tempfile::tempdir().unwrap();
    let backup_dir = dest.path().join("b");
    let out = interstice(dir.path(), &["backup", backup_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_out(&out)["tx_id"], tx + 1);
    let restored = dest.path().join("r");
    let out = Command::new(env!("CARGO_BIN_EXE_interstice"))
        .args([
            "restore",
            backup_dir.to_str().unwrap(),
            restored.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_out(&out)["tx_id"], tx + 1);
    let a = interstice(dir.path(), &["query", "bank", "accounts"]);
    let b = interstice(&restored, &["query", "bank", "accounts"]);
    assert!(b.status.success(), "{}", stderr(&b));
    assert_eq!(stdout(&a), stdout(&b));

    // A damaged snapshot: verify names it and fails; opening passes over it.
    let snap = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&snap).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&snap, bytes).unwrap();
    let out = interstice(dir.path(), &["snapshot", "verify"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&snap.display().to_string()),
        "{}",
        stderr(&out)
    );
    let out = interstice(dir.path(), &["replay"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_out(&out)["snapshot_tx_id"], serde_json::Value::Null);
    assert!(stderr(&out).contains("snapshot"), "{}", stderr(&out));

    // `--snapshots-keep 0` is refused.
    let out = interstice(dir.path(), &["replay", "--snapshots-keep", "0"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("keep at least one snapshot"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn publishing_a_new_version_lists_its_changes() {
    let dir = bank_dir();
    let out = interstice(dir.path(), &["publish", guests::BANK_V2, "--name", "bank"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("upgraded to version 2 module `bank`"),
        "{text}"
    );
    assert!(text.contains("  - table `audit` added\n"), "{text}");

    let out = interstice(
        dir.path(),
        &["publish", guests::BANK_V3_BAD, "--name", "bank"],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("cannot be upgraded in place"), "{err}");
    assert!(err.contains("  - reducer `deposit` removed"), "{err}");

    let out = interstice(
        dir.path(),
        &["publish", guests::BANK_V3_BAD, "--name", "bank", "--clear"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("all data of `bank` cleared"),
        "{}",
        stdout(&out)
    );
    let out = interstice(dir.path(), &["query", "bank", "accounts"]);
    assert_eq!(stdout(&out), "");
}

/// `interstice build` on a Python app (componentize-py) and on a Rust crate
/// for `wasm32-wasip2`: both components publish and serve calls; a broken
/// Python app fails with componentize-py's reason.
#[test]
fn build_python_and_wasip2_guests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let guests_dir = root.join("guest-modules");
    let tmp = tempfile::tempdir().unwrap();
    let build = |dir: &Path, extra: &[&str], out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_interstice"))
            .arg("build")
            .arg(dir)
            .arg("-o")
            .arg(out)
            .args(extra)
            // The tools the test suite's build installed.
            .env("INTERSTICE_TOOLS_DIR", guests_dir.join("target/tools"))
            .output()
            .expect("run interstice build")
    };
    for (name, dir, extra) in [
        ("py", guests_dir.join("python/bank"), vec![]),
        (
            "wasip2",
            guests_dir.join("examples/bank"),
            vec!["--target", "wasm32-wasip2"],
        ),
    ] {
        let wasm = tmp.path().join(format!("{name}.wasm"));
        let out = build(&dir, &extra, &wasm);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert_eq!(stdout(&out).trim(), wasm.display().to_string());
        let data = tmp.path().join(format!("data-{name}"));
        let wasm = wasm.display().to_string();
        let out = interstice(&data, &["publish", &wasm, "--name", "bank"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        for args in [r#"[1, 100]"#, r#"[2, 0]"#] {
            let out = interstice(&data, &["call", "bank", "open_account", args]);
            assert!(out.status.success(), "{name}: {}", stderr(&out));
        }
        let out = interstice(&data, &["call", "bank", "transfer", "[1, 2, 101]"]);
        assert_eq!(
            stderr(&out).trim(),
            "error: bank.transfer: insufficient funds: account 1 holds 100, transfer needs 101",
            "{name}"
        );
    }

    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("app.py"), "def broken(:\n").unwrap();
    let out = build(&broken, &[], &tmp.path().join("broken.wasm"));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("componentize-py failed") && err.contains("SyntaxError"),
        "{err}"
    );
    assert!(!tmp.path().join("broken.wasm").exists());
}
