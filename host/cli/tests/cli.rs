//! The `interstice` binary, run as a real process.

use std::path::Path;
use std::process::{Command, Output};

use interstice_tests::guests;

fn interstice(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_interstice"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run interstice")
}

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
    assert_eq!(schema["reducers"][0]["params"][0]["ty"]["scalar"], "string");
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
