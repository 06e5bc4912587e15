//! Snapshots of a data directory: where they live, which one opening starts
//! from, how a new one is built without stopping reducers, and retention.
//!
//! A new snapshot is built off the reducers' path: the newest valid
//! snapshot is loaded into scratch tables, the log records after it up to
//! an acknowledged transaction are applied (by the replay code, which cannot
//! reach a guest), and the result is written. Reducers only hand over a
//! transaction id; they never wait for the build. The price is memory for a
//! second copy of the tables while a snapshot is built.

mod build;
mod files;
mod trigger;

pub use files::{ListedSnapshot, SnapshotInfo, VerifiedSnapshot, describe_all, list, verify_all};
pub(crate) use files::{dir_of, load_newest, remove_temporaries};
pub(crate) use trigger::Trigger;
