//! Guests that import WASI (`wasm32-wasip2`): what they observe is a
//! function of the transaction, and nothing outside their tables is within
//! reach: no files, environment, sockets or sleeping, and bounded output.

use std::collections::BTreeMap;
use std::path::Path;

use interstice_runtime::{CallError, Database, LogLine, ModuleError, PublishError, limits, wasi};
use interstice_tests::{clocked_config, guest_bytes, guests, test_config};
use serde_json::json;

const T0: i64 = 1_750_000_000_000_000;

fn probe(dir: &Path, start: i64) -> Database {
    let db = Database::open(dir, clocked_config(start)).expect("open");
    db.publish("probe", &guest_bytes(guests::WASI_PROBE_WASIP2))
        .expect("publish the WASI probe");
    db
}

fn facts(db: &Database) -> BTreeMap<String, String> {
    db.rows_json("probe", "facts")
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn refusal(db: &Database, reducer: &str, args: serde_json::Value) -> String {
    match db.call_json(
        "probe",
        reducer,
        &args,
        &interstice_runtime::Caller::operator(),
    ) {
        Err(CallError::Reducer(message)) => message,
        other => panic!("{reducer}: expected a refusal, got {other:?}"),
    }
}

fn lines(log: &[LogLine]) -> Vec<(&'static str, &str)> {
    log.iter()
        .map(|l| (l.level_name(), l.message.as_str()))
        .collect()
}

#[test]
fn time_and_randomness_come_from_the_transaction() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let (db_a, db_b, db_c) = (
        probe(a.path(), T0),
        probe(b.path(), T0),
        probe(c.path(), T0 + 7),
    );
    let mut seen = Vec::new();
    for db in [&db_a, &db_b, &db_c] {
        let first = db
            .call_json(
                "probe",
                "observe",
                &json!([]),
                &interstice_runtime::Caller::operator(),
            )
            .unwrap();
        let f1 = facts(db);
        let second = db
            .call_json(
                "probe",
                "observe",
                &json!([]),
                &interstice_runtime::Caller::operator(),
            )
            .unwrap();
        let f2 = facts(db);
        db.call_json(
            "probe",
            "hash_order",
            &json!([]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
        let f3 = facts(db);
        // Both clocks read the transaction's timestamp and stand still.
        assert_eq!(f1["wall_micros"], first.timestamp_micros.to_string());
        assert_eq!(f1["ctx_micros"], first.timestamp_micros.to_string());
        assert_eq!(f2["wall_micros"], second.timestamp_micros.to_string());
        assert_eq!(f1["monotonic_elapsed_nanos"], "0");
        // No environment, no arguments, an empty stdin.
        assert_eq!((f1["vars"].as_str(), f1["args"].as_str()), ("0", "0"));
        assert_eq!(f1["stdin"], "Ok(0) 0");
        // Randomness changes from one transaction to the next...
        assert_ne!(f1["random"], f2["random"]);
        // ...and stdout and stderr reach the module's log.
        assert_eq!(
            lines(&second.log),
            vec![
                (
                    "info",
                    format!("observed at {}", second.timestamp_micros).as_str()
                ),
                (
                    "warn",
                    format!("stderr at {}", second.timestamp_micros).as_str()
                ),
            ]
        );
        seen.push((
            f1["random"].clone(),
            f2["random"].clone(),
            f3["hash_order"].clone(),
        ));
    }
    // The same transactions draw the same bytes and iterate hash maps in the
    // same order; other timestamps (so other seeds) draw other bytes.
    assert_eq!(seen[0], seen[1]);
    assert_ne!(seen[0].0, seen[2].0);
    assert_ne!(seen[0].1, seen[2].1);
}

/// The host's environment holds a secret only in a child process of this
/// test binary, started with it set: changing the environment of a process
/// whose other tests run on other threads is not safe.
#[test]
fn files_environment_and_sockets_are_refused() {
    if std::env::var_os("INTERSTICE_PROBE_SECRET").is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "files_environment_and_sockets_are_refused",
                "--test-threads",
                "1",
            ])
            .env("INTERSTICE_PROBE_SECRET", "hunter2")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "in the child: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = probe(dir.path(), T0);
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    std::fs::write(&secret, b"not for guests").unwrap();
    let escape = outside.path().join("escape");
    // A real listener, so that a refusal is the host's doing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let before = db.next_tx_id().expect("not poisoned");

    let cases = [
        ("read_file", json!([secret.display().to_string()]), "open"),
        ("read_file", json!(["/etc/hostname"]), "open"),
        ("read_file", json!(["."]), "open"),
        (
            "write_file",
            json!([escape.display().to_string()]),
            "create",
        ),
        (
            "read_env",
            json!(["INTERSTICE_PROBE_SECRET"]),
            "env INTERSTICE_PROBE_SECRET: environment variable not found",
        ),
        (
            "read_env",
            json!(["PATH"]),
            "env PATH: environment variable not found",
        ),
        ("connect", json!([addr]), "connect"),
        ("bind", json!(["127.0.0.1:0"]), "bind"),
    ];
    for (reducer, args, expected) in cases {
        let message = refusal(&db, reducer, args.clone());
        assert!(
            !message.starts_with("ACCESS"),
            "{reducer} {args}: {message}"
        );
        assert!(message.starts_with(expected), "{reducer} {args}: {message}");
    }
    assert!(!escape.exists(), "a guest wrote outside the database");
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a guest connected to the listener"
    );
    assert_eq!(
        db.next_tx_id().expect("not poisoned"),
        before,
        "refusals commit nothing"
    );
}

#[test]
fn sleeping_and_exiting_trap_and_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = probe(dir.path(), T0);
    db.call_json(
        "probe",
        "observe",
        &json!([]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    let state = db.state_json().unwrap();
    let started = std::time::Instant::now();
    let err = db
        .call_json(
            "probe",
            "nap",
            &json!([60_000]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the guest slept"
    );
    assert!(
        matches!(&err, CallError::Trap(m) if m.contains(wasi::SLEEP_REFUSAL)),
        "{err}"
    );
    let err = db
        .call_json(
            "probe",
            "exit",
            &json!([3]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap_err();
    assert!(matches!(err, CallError::Trap(_)), "{err}");
    assert_eq!(db.state_json().unwrap(), state);
    // A fresh instance serves the next call.
    db.call_json(
        "probe",
        "observe",
        &json!([]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
}

#[test]
fn output_without_bound_is_cut_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let db = probe(dir.path(), T0);
    let (count, width) = (3000u32, 1000usize);
    let out = db
        .call_json(
            "probe",
            "shout",
            &json!([count, width]),
            &interstice_runtime::Caller::operator(),
        )
        .expect("a guest that prints too much is cut, not failed");
    let printed: usize = (0..count).map(|i| format!("{i} ").len() + width + 1).sum();
    let kept_lines = limits::LOG_LINES_PER_CALL_MAX;
    assert_eq!(
        out.log.len(),
        kept_lines + 2,
        "{:?}",
        &out.log[kept_lines..]
    );
    for (i, line) in out.log[..kept_lines].iter().enumerate() {
        assert_eq!(line.message, format!("{i} {}", "x".repeat(width)));
    }
    let complete_lines = limits::OUTPUT_BYTES_PER_CALL_MAX / (width + 5);
    assert!(complete_lines > kept_lines);
    assert!(
        out.log[kept_lines]
            .message
            .contains(" more log lines dropped (at most 64 per call)"),
        "{}",
        out.log[kept_lines].message
    );
    assert_eq!(
        out.log[kept_lines + 1].message,
        format!(
            "output cut: {} more bytes of stdout and stderr dropped (at most {} bytes per call)",
            printed - limits::OUTPUT_BYTES_PER_CALL_MAX,
            limits::OUTPUT_BYTES_PER_CALL_MAX
        )
    );
    // The next call starts with nothing left over.
    let out = db
        .call_json(
            "probe",
            "observe",
            &json!([]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    assert_eq!(out.log.len(), 2);
}

/// Handles a guest never gives back are bounded per instance: past the
/// bound the call traps, and a fresh instance serves the next one.
#[test]
fn leaked_handles_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let db = probe(dir.path(), T0);
    let per_call = 1000;
    let mut committed = 0;
    let err = loop {
        match db.call_json(
            "probe",
            "leak_handles",
            &json!([per_call]),
            &interstice_runtime::Caller::operator(),
        ) {
            Ok(_) => committed += 1,
            Err(e) => break e,
        }
        assert!(committed <= 20, "no bound on leaked handles");
    };
    assert_eq!(committed, limits::RESOURCES_PER_INSTANCE_MAX / per_call);
    assert!(
        matches!(&err, CallError::Trap(m) if m.contains("resource table has no free keys")),
        "{err}"
    );
    db.call_json(
        "probe",
        "leak_handles",
        &json!([per_call]),
        &interstice_runtime::Caller::operator(),
    )
    .expect("a fresh instance, with an empty table");
}

/// A component importing an interface outside the grant is refused at
/// publication, and the error names the import.
#[test]
fn imports_beyond_the_grant_are_refused_at_publish() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), test_config()).unwrap();
    for import in [
        "wasi:http/outgoing-handler@0.2.0",
        "wasi:cli/environment@0.3.0",
        "wasi:keyvalue/store@0.2.0",
        "acme:mail/send",
    ] {
        let wasm =
            wat::parse_str(format!(r#"(component (import "{import}" (instance)))"#)).unwrap();
        let err = db.publish("m", &wasm).unwrap_err();
        assert!(
            matches!(&err, PublishError::Module(ModuleError::ImportNotGranted { import: i }) if i == import),
            "{import}: {err}"
        );
        assert!(err.to_string().contains(import), "{err}");
    }
    assert!(db.module_names().expect("not poisoned").is_empty());
    // Granted imports pass the check (and then fail for want of exports).
    let wasm =
        wat::parse_str(r#"(component (import "wasi:cli/environment@0.2.3" (instance)))"#).unwrap();
    let err = db.publish("m", &wasm).unwrap_err();
    assert!(
        matches!(err, PublishError::Module(ModuleError::NotOurs(_))),
        "{err}"
    );
}
