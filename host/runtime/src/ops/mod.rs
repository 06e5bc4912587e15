//! Operator tools over a data directory that do not run the database:
//! backup and restore, and the log tools (verify, inspect, dump, truncate).
//! Every durable file they read or write goes through the file-system seam
//! (`interstice_fs::Storage`), so the fault layer reaches them.

pub mod backup;
pub(crate) mod progress;
pub mod tools;

pub use progress::Progress;
