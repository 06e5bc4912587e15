//! Writes the fuzzers' seed corpus (`fuzz/corpus/`) from a real database:
//! log segments and payloads, a snapshot, rows. Run it when a format
//! changes, and commit what it writes:
//!
//! ```sh
//! cargo test -p interstice-tests --test fuzz_corpus -- --ignored
//! ```

use std::path::Path;

use interstice_runtime::log::{LogConfig, RealFs, SyncPolicy, scan};
use interstice_runtime::{Database, LOG_DIR, RuntimeConfig, SNAPSHOTS_DIR, SnapshotConfig};
use interstice_tests::{guest_bytes, guests, test_config};
use serde_json::json;

#[test]
#[ignore = "writes fuzz/corpus; run by hand when a format changes"]
fn write_fuzz_seed_corpus() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        log: LogConfig {
            sync: SyncPolicy::Never,
            segment_bytes_max: 4096,
            ..LogConfig::default()
        },
        snapshots: SnapshotConfig {
            every_tx: 0,
            every_log_bytes: 0,
            ..SnapshotConfig::default()
        },
        ..test_config()
    };
    let db = Database::open(dir.path(), config).unwrap();
    db.publish("bank", &guest_bytes(guests::BANK)).unwrap();
    db.publish("chat", &guest_bytes(guests::CHAT)).unwrap();
    for id in 0..60u64 {
        db.call_json(
            "bank",
            "open_account",
            &json!([id, 100]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
        db.call_json(
            "bank",
            "transfer",
            &json!([id, 0, 7]),
            &interstice_runtime::Caller::operator(),
        )
        .unwrap();
    }
    db.call_json(
        "chat",
        "register",
        &json!(["ann", "bio"]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    db.call_json(
        "chat",
        "send",
        &json!(["ann", "general", "hi"]),
        &interstice_runtime::Caller::operator(),
    )
    .unwrap();
    db.drop_module("bank").unwrap();

    let write = |target: &str, name: String, bytes: &[u8]| {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    let mut segments: Vec<_> = std::fs::read_dir(dir.path().join(LOG_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    for (i, path) in segments.iter().enumerate().take(3) {
        write(
            "log_segment",
            format!("segment-{i}"),
            &std::fs::read(path).unwrap(),
        );
    }
    let last = std::fs::read(segments.last().unwrap()).unwrap();
    write("log_segment", "segment-last".into(), &last);
    let mut payloads = Vec::new();
    scan(&RealFs, &dir.path().join(LOG_DIR), &mut |rec| {
        payloads.push(rec.payload.to_vec());
        Ok(())
    })
    .unwrap();
    // A publication, a call, and the deletion.
    for (i, p) in [0, 3, payloads.len() - 1].into_iter().enumerate() {
        write("log_payload", format!("payload-{i}"), &payloads[p]);
    }
    // The snapshot last: its retention removes the log before it.
    db.snapshot().unwrap();
    drop(db);
    for entry in std::fs::read_dir(dir.path().join(SNAPSHOTS_DIR)).unwrap() {
        let path = entry.unwrap().path();
        write(
            "snapshot",
            "snapshot-0".into(),
            &std::fs::read(path).unwrap(),
        );
    }
    // Rows: [count, kinds..., row] (see interstice_store::fuzz::row).
    let mut account = vec![2, 4, 4];
    account.extend(7u64.to_le_bytes());
    account.extend(100u64.to_le_bytes());
    write("row", "row-account".into(), &account);
    let mut user = vec![4, 4, 6, 6 | 8, 2];
    user.extend(1u64.to_le_bytes());
    user.extend(3u32.to_le_bytes());
    user.extend(b"ann");
    user.extend([1]);
    user.extend(3u32.to_le_bytes());
    user.extend(b"bio");
    user.extend((-5i64).to_le_bytes());
    write("row", "row-user".into(), &user);
    write(
        "row",
        "row-bool-f64".into(),
        &[1, 0, 5, 1, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f],
    );
}
