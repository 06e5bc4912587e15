//! A data directory whose log holds SQL writes (record kind 5), written by
//! the host that introduced them (`tests/fixtures/sql-writes`, made by its
//! `make.sh` and committed as it came out), opens by replaying those
//! records, without running a guest, and gives the answers that host gave.
//!
//! The fixture is never written to: the test works on a copy.

mod common;
use common::{copy_dir, ok};

use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sql-writes")
}

#[test]
fn a_log_of_sql_writes_replays_to_the_answers_it_gave() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_dir(&fixture().join("data"), &data);
    let report: serde_json::Value = serde_json::from_str(&ok(&data, &["log", "verify"])).unwrap();
    assert_eq!(report["records"], 8, "{report}");
    assert_eq!(report["damage"], serde_json::json!([]), "{report}");
    let dump = ok(&data, &["log", "dump"]);
    assert_eq!(
        dump.lines().filter(|l| l.contains(": sql chat: ")).count(),
        5,
        "{dump}"
    );
    for (name, query) in [
        ("users", "SELECT id, name, bio FROM users ORDER BY id"),
        (
            "messages",
            "SELECT id, channel, sender, text FROM messages ORDER BY id",
        ),
    ] {
        let expected =
            std::fs::read_to_string(fixture().join(format!("answers/{name}.jsonl"))).unwrap();
        assert_eq!(
            ok(&data, &["sql", "chat", query, "--json"]),
            expected,
            "{name}"
        );
    }
    // Opening replays every record; no guest runs.
    let replay: serde_json::Value = serde_json::from_str(&ok(&data, &["replay"])).unwrap();
    assert_eq!(replay["transactions_replayed"], 8, "{replay}");
    assert_eq!(
        replay["snapshot_tx_id"],
        serde_json::Value::Null,
        "{replay}"
    );
    assert_eq!(replay["guest_instantiations"], 0, "{replay}");
}
