//! Interstice's durable log: every committed transaction, in order, on
//! stable storage before its caller is answered.
//!
//! Responsible for: segment files (`DATA_DIR/log/<base tx id>.log`) and
//! their header, record framing with CRC-32 and per-segment salt, the
//! payload codec of a transaction, the group-commit writer thread and its
//! sync policies, rotation, recovery on open with four recovery modes,
//! and read-only verification and repair by truncation. All its I/O goes
//! through the file-system seam of `interstice-fs`.
//!
//! Not responsible for: what a row means (the store validates rows on
//! replay), running guests (this crate cannot reach wasmtime), or deciding
//! transaction ids (the caller hands them in, strictly increasing by one).
//!
//! The formats are specified in `docs/log-format.md`.
//!
//! ```
//! use std::sync::Arc;
//! use interstice_log::{payload, Log, LogConfig, RealFs, RecordKind, TxHeader, TxRecord};
//!
//! let dir = tempfile::tempdir()?;
//! let header = TxHeader {
//!     kind: RecordKind::Call,
//!     timestamp_micros: 1,
//!     module: "bank",
//!     definition: None,
//!     reducer: "deposit",
//!     caller: "doc",
//!     args: &[],
//!     };
//! let mut bytes = Vec::new();
//! payload::encode(&header, std::iter::empty(), &mut bytes);
//!
//! let (log, _) = Log::open(Arc::new(RealFs), dir.path(), LogConfig::default(), 1, &mut |_| Ok(()))?;
//! log.append(1, bytes)?;
//! log.wait(1)?; // durable: fdatasync has returned
//! log.close()?;
//!
//! let mut seen = Vec::new();
//! let (_log, recovered) = Log::open(Arc::new(RealFs), dir.path(), LogConfig::default(), 1, &mut |rec| {
//!     let tx = TxRecord::decode(rec.payload).map_err(|e| e.to_string())?;
//!     seen.push((rec.tx_id, tx.header.reducer.to_string()));
//!     Ok(())
//! })?;
//! assert_eq!(seen, [(1, "deposit".to_string())]);
//! assert_eq!(recovered.last_tx_id, Some(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
pub mod frame;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod limits;
pub mod payload;
mod recovery;
pub mod segment;
mod writer;

pub use error::{AppendError, Damage, DamageKind, LogError};
pub use interstice_fs::{RealFs, Storage, WriteFile};
pub use payload::{MutationRef, Op, PayloadError, RecordKind, TxHeader, TxRecord};
pub use recovery::{
    QUARANTINE_DIR, Record, Recovered, RecoveryMode, SegmentInfo, first_needed, list_segments,
    log_bytes, recover, remove_segments_before, scan, scan_range, truncate_after,
    truncate_to_last_valid,
};
pub use writer::{Direct, Log, LogConfig, LogStats, SYNC_BUCKETS_MICROS, SyncPolicy};
