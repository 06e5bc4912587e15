//! Shared pieces of the end-to-end tests and benchmarks: the guests, built
//! once by this crate's build script, and fresh databases to load them into.

use std::path::PathBuf;

use interstice_runtime::{Database, RuntimeConfig};

/// Paths of the guest components (and of the core modules they came from).
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// The bytes of a guest file.
pub fn guest_bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A compiled-code cache shared by every test process, so each guest is
/// compiled by cranelift once per build rather than once per test.
pub fn shared_cache_dir() -> PathBuf {
    PathBuf::from(env!("OUT_DIR")).join("wasmtime-cache")
}

/// Runtime settings for tests: the defaults plus the shared cache.
pub fn test_config() -> RuntimeConfig {
    RuntimeConfig {
        cache_dir: Some(shared_cache_dir()),
        ..RuntimeConfig::default()
    }
}

/// The bank module in every language and target it is built for: the
/// Rust crate for `wasm32-unknown-unknown` and for `wasm32-wasip2`, and the
/// Python app (componentize-py). Same tables, reducers and errors.
pub const BANKS: [(&str, &str); 3] = [
    ("rust", guests::BANK),
    ("rust-wasip2", guests::BANK_WASIP2),
    ("python", guests::BANK_PY),
];

/// [`test_config`] with a clock the test supplies: the `n`-th call asks
/// for a timestamp (from 0; committed or not) and reads
/// `start_micros + n * 1000`, and segment salts are seeded, so two
/// databases given the same calls write the same log, byte for byte
/// (seeds follow from transaction id and timestamp).
pub fn clocked_config(start_micros: i64) -> RuntimeConfig {
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let config = test_config();
    RuntimeConfig {
        log: interstice_runtime::log::LogConfig {
            salt_seed: Some(0x1e55_0000_5a17),
            ..config.log
        },
        clock: Some(std::sync::Arc::new(move || {
            start_micros + 1000 * ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        })),
        ..config
    }
}

/// The reminders module (scheduled reducers) in every language it is
/// written in: same tables, reducers and errors.
pub const REMINDERS: [(&str, &str); 2] = [
    ("rust", guests::REMINDERS),
    ("python", guests::REMINDERS_PY),
];

/// [`test_config`] with a clock the test sets: every reading is the value
/// of the returned cell, in microseconds since the Unix epoch, and segment
/// salts are seeded as in [`clocked_config`]. Transactions at one reading
/// get timestamps one microsecond apart.
pub fn manual_clock_config(
    start_micros: i64,
) -> (RuntimeConfig, std::sync::Arc<std::sync::atomic::AtomicI64>) {
    let now = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(start_micros));
    let config = test_config();
    let reading = now.clone();
    let config = RuntimeConfig {
        log: interstice_runtime::log::LogConfig {
            salt_seed: Some(0x1e55_0000_5a17),
            ..config.log
        },
        clock: Some(std::sync::Arc::new(move || {
            reading.load(std::sync::atomic::Ordering::SeqCst)
        })),
        ..config
    };
    (config, now)
}

/// A data directory on the fault-injecting file system `fs`: the log
/// synced on every commit in small segments (so that workloads rotate), no
/// automatic snapshots, `keep` snapshots kept (so that retention removes
/// snapshots and segments as tests take new ones).
pub fn fault_config(fs: &interstice_runtime::fs::fault::FaultFs, keep: usize) -> RuntimeConfig {
    use interstice_runtime::SnapshotConfig;
    use interstice_runtime::log::{LogConfig, SyncPolicy};
    RuntimeConfig {
        log: LogConfig {
            sync: SyncPolicy::Always,
            segment_bytes_max: 4096,
            ..LogConfig::default()
        },
        storage: std::sync::Arc::new(fs.clone()),
        snapshots: SnapshotConfig {
            every_tx: 0,
            every_log_bytes: 0,
            keep,
            archive_dir: None,
        },
        ..test_config()
    }
}

/// A database in a new temporary directory (removed when the guard drops).
pub fn fresh_db() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let db = Database::open(dir.path(), test_config()).expect("open a fresh database");
    (dir, db)
}

/// A fresh database with `guest` published as `name`.
pub fn db_with(name: &str, guest: &str) -> (tempfile::TempDir, Database) {
    let (dir, db) = fresh_db();
    db.publish(name, &guest_bytes(guest))
        .unwrap_or_else(|e| panic!("publish {name}: {e}"));
    (dir, db)
}

/// Seeded randomness for the crash tests: the seed is printed by each test
/// and `INTERSTICE_SEED` replays it exactly.
pub mod rng {
    /// `INTERSTICE_SEED` when set, else one from the clock (never zero).
    pub fn seed() -> u64 {
        std::env::var("INTERSTICE_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                    | 1
            })
    }

    /// xorshift64*: the next number of the sequence `state` is at.
    pub fn next(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A row of the `types` guest's `everything` table holding every type of
/// row encoding 2, in the JSON the host writes for it
/// (docs/row-encoding.md, "JSON").
pub fn every_type_row() -> serde_json::Value {
    serde_json::json!({
        "id": "340282366920938463463374607431768211455",
        "flag": true,
        "a": 255,
        "b": 65535,
        "c": 4294967295u32,
        "d": 18446744073709551615u64,
        "e": -128,
        "f": -32768,
        "g": -2147483648i64,
        "h": -9223372036854775808i64,
        "i": "-170141183460469231731687303715884105728",
        "j": 0.1,
        "k": "NaN",
        "text": "hé",
        "raw": "00ff10",
        "who": "ab".repeat(32),
        "at": "2026-12-02T19:31:37.000042Z",
        "took": -1500,
        "pos": {"x": 1.5, "y": "-Infinity"},
        "kind": {"Staff": {"power": 9, "name": "oak"}},
        "inventory": [
            {"kind": "Sword", "count": 1, "tags": []},
            {"kind": {"Bow": 3}, "count": 2, "tags": ["long", "yew"]},
            {"kind": {"Pair": [1, 2]}, "count": 3, "tags": ["x"]},
        ],
        "maybe": [1, null, -3],
    })
}
