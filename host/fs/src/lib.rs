//! The file-system seam of Interstice.
//!
//! Responsible for: the [`Storage`] trait through which the log, snapshots
//! and module code do all their I/O, with a written contract per method;
//! [`RealFs`], the real file system; [`fault::FaultFs`], an in-memory file
//! system that models what a power loss keeps and injects I/O errors and
//! bit flips; and [`atomic`], the one way a whole file is replaced.
//!
//! Not responsible for: what the files hold (the log and the store own
//! their formats).

pub mod atomic;
pub mod fault;
mod storage;

pub use storage::{Appender, RealFs, Storage, WriteFile};
