//! Durable file writes outside the log: the store's one atomic-write helper
//! (`interstice_store::atomic`), re-exported for the runtime's users.

pub use interstice_store::atomic::{sync_dir, write_atomic, write_atomic_with};
