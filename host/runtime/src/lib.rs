//! The Interstice runtime: loads reducer modules with wasmtime and runs every
//! reducer call as one serial transaction on the module's in-memory tables.
//!
//! Responsibilities: replaying the durable log into the tables at open
//! (without any guest, behind the replay guard), appending every committed
//! transaction to the log before its caller is answered, the wasmtime
//! engine and its configuration (determinism, fuel, memory limits,
//! compiled-code cache), module loading and validation, the host imports of
//! `wit/interstice.wit`, reducer calls with full rollback on error or trap,
//! and the [`Database`] that ties modules to a data directory. Not here: the
//! row encoding and tables (`interstice-store`), HTTP, and the command line.
//!
//! The rooms (docs/architecture.md follows a call and a start through them):
//!
//! | path | owns |
//! | --- | --- |
//! | `layout.rs` | the data directory's names and its lock |
//! | `config.rs` | [`RuntimeConfig`], [`SnapshotConfig`], the clock source |
//! | `record.rs` | what the runtime puts in a log record's payload |
//! | `error.rs` | one error type per operation |
//! | `database/` | the [`Database`]: open, catalog, clock, combining, the one commit path, publication, queries |
//! | `replay.rs` | applying log records to tables (no wasmtime) |
//! | `snapshots/` | finding, building and retaining snapshots; the trigger |
//! | `sandbox/` | everything that touches wasmtime |
//! | `ops/` | backup and restore, the log tools |
//! | `feed.rs` | committed transactions to listeners, once durable |
//!
//! ```no_run
//! use interstice_runtime::{Caller, Database, RuntimeConfig};
//!
//! let db = Database::open("./interstice-data".as_ref(), RuntimeConfig::default())?;
//! let wasm = std::fs::read("bank.wasm")?;
//! db.publish("bank", &wasm)?;
//! db.call_json("bank", "open_account", &serde_json::json!([1, 100]), &Caller::operator())?;
//! for row in db.rows_json("bank", "accounts")? {
//!     println!("{row}");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod caller;
mod config;
mod counters;
mod database;
mod error;
pub mod feed;
mod layout;
pub mod limits;
pub mod ops;
mod record;
mod replay;
mod sandbox;
pub mod snapshots;

pub use caller::{Caller, Identity, TokenClaims};
pub use config::{ClockSource, RuntimeConfig, SnapshotConfig};
pub use counters::{CounterSnapshot, Counters, ReplayGuard, ReplayPhase};
pub use database::{
    BeginCall, CallInput, CallOutcome, Committing, Database, LATENESS_BUCKETS, Page,
    PublishOptions, Published, QueryError, ROUND_MAX, Reader, ReplayStats, RowQuery, ScheduleRound,
    ScheduleStats, SqlAnswer, backoff_micros, index_on, value_from_query,
};
pub use error::{
    CallError, DropError, ModuleError, OpenError, Poisoned, PublishError, SnapshotError,
};
pub use interstice_fs as fs;
pub use interstice_log as log;
/// The SQL engine (docs/sql.md): its budget and errors.
pub use interstice_sql as sql;
pub use layout::{CACHE_DIR, LOCK_FILE, LOG_DIR, MODULES_DIR, RESTORE_MARKER, SNAPSHOTS_DIR};
pub use ops::{backup, tools};
pub use sandbox::{
    CallContext, Committed, Host, LogLine, REPLAY_REFUSAL, Runner, prepare_wasm, wasi,
};
pub use snapshots::SnapshotInfo;
