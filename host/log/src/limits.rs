//! Every bound the log puts on what can grow, with the reason for it.

/// Largest record payload. A transaction's redo list is bounded by the
/// store (`REDO_BYTES_PER_TX_MAX`, 64 MiB) and its arguments by the runtime
/// (1 MiB); 128 MiB leaves room for both plus names and framing, and lets a
/// reader reject a damaged length field before it allocates.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 128 << 20;

/// Default size at which the writer starts a new segment. Big enough that
/// rotation (two extra fsyncs) is rare, small enough that one segment is read
/// into memory at a time on replay and that retention can drop old ones.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;

/// Smallest segment size accepted in configuration: a segment must hold its
/// header and at least one small record.
pub const SEGMENT_BYTES_MIN: u64 = 4096;

/// Records waiting for the writer thread. Callers block (backpressure) when
/// it is full; 8192 small records is a few megabytes at most and far more
/// than one fsync's worth at any rate this machine reaches.
pub const QUEUE_RECORDS_MAX: usize = 8192;

/// Bytes the writer gathers before it writes and syncs a batch, so a burst of
/// large records does not build one unbounded buffer.
pub const BATCH_BYTES_MAX: usize = 8 << 20;

/// When a damaged region is found, how far ahead (in transaction ids) a
/// record may be and still count as the place where valid records resume.
/// Anything further is not trusted as a resynchronisation point.
pub const RESYNC_TX_WINDOW: u64 = 1 << 20;

/// Under the weak sync policies callers do not wait for the writer, so the
/// writer polls its queue this often instead of being woken by every
/// append: appends then cost no system call.
pub const WEAK_POLL_MS: u64 = 1;

/// Empty polls in a row (about 100 ms idle) after which the writer stops
/// polling and sleeps until the next append wakes it.
pub const WEAK_IDLE_POLLS_MAX: u32 = 100;
