//! The Interstice runtime: loads reducer modules with wasmtime and runs every
//! reducer call as one serial transaction on the module's in-memory tables.
//!
//! Responsibilities: replaying the durable log into the tables at open
//! (without any guest, behind the replay guard), appending every committed
//! transaction to the log before its caller is answered, the wasmtime engine and its configuration (determinism,
//! fuel, memory limits, compiled-code cache), module loading and validation,
//! the host imports of `wit/interstice.wit`, reducer calls with full rollback
//! on error or trap, and the [`Database`] that ties modules to a data
//! directory. Not here: the row encoding and tables (`interstice-store`),
//! HTTP, and the command line.
//!
//! ```no_run
//! use interstice_runtime::{Database, RuntimeConfig};
//!
//! let db = Database::open("./interstice-data".as_ref(), RuntimeConfig::default())?;
//! let wasm = std::fs::read("bank.wasm")?;
//! db.publish("bank", &wasm)?;
//! db.call_json("bank", "open_account", &serde_json::json!([1, 100]), "example")?;
//! for row in db.rows_json("bank", "accounts")? {
//!     println!("{row}");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod backup;
mod bindings;
mod counters;
mod database;
mod engine;
mod error;
pub mod feed;
pub mod limits;
mod lock;
mod module;
mod replay;
pub mod snapshots;
mod state;
pub mod tools;
pub mod wasi;

pub use counters::{CounterSnapshot, Counters, ReplayGuard, ReplayPhase};
pub use database::{
    CACHE_DIR, CallOutcome, Database, LOG_DIR, MODULES_DIR, Page, PublishOptions, Published,
    QueryError, ReplayStats, RowQuery, index_on, value_from_query,
};
pub use engine::{ClockSource, Host, RuntimeConfig};
pub use error::{CallError, LoadError, SnapshotError};
pub use interstice_fs as fs;
pub use interstice_log as log;
pub use lock::LOCK_FILE;
pub use module::{CallContext, Committed, REPLAY_REFUSAL, Runner, prepare_wasm};
pub use snapshots::{SNAPSHOTS_DIR, SnapshotConfig, SnapshotInfo};
pub use state::LogLine;
