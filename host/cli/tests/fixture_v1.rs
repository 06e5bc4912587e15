//! A data directory written by the host and SDK of row encoding 1
//! (`tests/fixtures/v1`, made by its `make.sh` with that code and committed
//! as it came out) opens, replays and serves with this host, and gives the
//! answers that host gave (`tests/fixtures/v1/answers`).
//!
//! The fixture is never written to: each test works on a copy.

mod common;
use common::{copy_dir, ok};

use std::path::{Path, PathBuf};

use interstice_tests::guests;

/// Each answer file and the query that gave it.
const ANSWERS: &[(&str, &[&str])] = &[
    ("scalars.samples", &["scalars", "samples"]),
    (
        "scalars.samples.group-7",
        &["scalars", "samples", "--where", "group=7"],
    ),
    (
        "scalars.samples.label-edges",
        &["scalars", "samples", "--where", "label=edges"],
    ),
    ("bank.accounts", &["bank", "accounts"]),
    ("bank.audit", &["bank", "audit"]),
    ("chat.users", &["chat", "users"]),
    ("chat.messages", &["chat", "messages"]),
    (
        "chat.messages.channel-general",
        &["chat", "messages", "--where", "channel=general"],
    ),
    ("chat.typing", &["chat", "typing"]),
];

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/v1")
}

/// A copy of the fixture's data directory.
fn data_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_dir(&fixture().join("data"), &data);
    (tmp, data)
}

fn answer(name: &str) -> String {
    let path = fixture().join("answers").join(format!("{name}.jsonl"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn query(data: &Path, args: &[&str]) -> String {
    let mut all = vec!["query"];
    all.extend_from_slice(args);
    ok(data, &all)
}

fn assert_answers(data: &Path) {
    for (name, args) in ANSWERS {
        assert_eq!(query(data, args), answer(name), "answer {name}");
    }
}

#[test]
fn the_v1_fixture_verifies_opens_and_gives_its_answers() {
    let (_tmp, data) = data_copy();
    let verify: serde_json::Value =
        serde_json::from_str(&ok(&data, &["log", "verify"])).expect("verify prints JSON");
    assert_eq!(verify["damage"], serde_json::json!([]), "{verify}");
    assert_eq!(verify["replay_error"], serde_json::Value::Null, "{verify}");
    assert_eq!(verify["last_tx_id"], 21, "{verify}");
    ok(&data, &["snapshot", "verify"]);
    assert_answers(&data);
}

#[test]
fn the_v1_fixture_replays_from_its_log_alone() {
    let (_tmp, data) = data_copy();
    // Without the snapshot, and with the segment retention archived, the
    // whole history comes from log records of row encoding 1.
    for snap in std::fs::read_dir(data.join("snapshots")).unwrap() {
        std::fs::remove_file(snap.unwrap().path()).unwrap();
    }
    for seg in std::fs::read_dir(fixture().join("archive")).unwrap() {
        let seg = seg.unwrap();
        std::fs::copy(seg.path(), data.join("log").join(seg.file_name())).unwrap();
    }
    assert_answers(&data);
}

#[test]
fn the_v1_fixture_serves_new_calls_that_survive_a_restart() {
    let (_tmp, data) = data_copy();
    ok(&data, &["call", "bank", "transfer", "[1, 2, 7]"]);
    ok(
        &data,
        &[
            "call",
            "scalars",
            "put",
            r#"["new", 7, true, 1, 2, 0.5, "ff", null, null]"#,
        ],
    );
    // Each command above was a process of its own: these answers come from
    // a replay of the fixture plus the new records.
    assert_eq!(
        query(&data, &["bank", "accounts"]),
        answer("bank.accounts")
            .replace("\"balance\":757", "\"balance\":750")
            .replace("\"balance\":300", "\"balance\":307")
    );
    let group7 = query(&data, &["scalars", "samples", "--where", "group=7"]);
    assert_eq!(
        group7,
        format!(
            "{}{}\n",
            answer("scalars.samples.group-7"),
            r#"{"blob":"ff","flag":true,"group":7,"id":6,"label":"new","maybe":null,"note":null,"ratio":0.5,"small":1,"wide":2}"#
        )
    );
}

#[test]
fn a_module_republished_on_the_v1_fixture_keeps_its_rows() {
    let (_tmp, data) = data_copy();
    let published = ok(&data, &["publish", guests::SCALARS, "--name", "scalars"]);
    // The same declarations, built for contract 2: the definition is the
    // same, so only the code is replaced and the rows stay as they are.
    assert_eq!(
        published,
        "replaced the code of module `scalars`: 1 tables, 2 reducers\n"
    );
    for (name, args) in ANSWERS.iter().filter(|(n, _)| n.starts_with("scalars")) {
        assert_eq!(query(&data, args), answer(name), "answer {name}");
    }
    ok(&data, &["call", "scalars", "remove", r#"["mid"]"#]);
    assert!(!query(&data, &["scalars", "samples"]).contains("\"mid\""));
}
