//! Bounds the runtime puts on guests, with the reason for each default.

/// Fuel (roughly, wasm instructions) one reducer call may burn before it is
/// stopped and rolled back. 100 million is a few hundred milliseconds of
/// work: far above any reasonable reducer, low enough that a runaway loop
/// stops the serial transaction pipeline only briefly.
pub const FUEL_PER_CALL_DEFAULT: u64 = 100_000_000;

/// Linear memory one instance may grow to. Reducers work on a handful of rows
/// at a time; 64 MiB leaves room for large scans while bounding what a
/// memory bomb can take from the host.
pub const MEMORY_BYTES_MAX_DEFAULT: usize = 64 << 20;

/// Table elements (function references) one instance may hold.
pub const TABLE_ELEMENTS_MAX: usize = 100_000;

/// Rows one cursor batch may return, whatever the guest asks for: bounds the
/// size of one host-to-guest copy.
pub const SCAN_BATCH_ROWS_MAX: usize = 1024;

/// Log lines one reducer call may emit; later lines are counted and dropped.
pub const LOG_LINES_PER_CALL_MAX: usize = 64;

/// Longest log line kept; longer lines are cut.
pub const LOG_LINE_BYTES_MAX: usize = 4096;

/// Bytes of stdout and stderr one call of a WASI guest may write; the rest
/// is dropped (and counted in a last log line), and the call goes on. The
/// lines kept are then bounded like `host.log` lines: 64 KiB is 16 full
/// lines of [`LOG_LINE_BYTES_MAX`], or many short ones up to
/// [`LOG_LINES_PER_CALL_MAX`].
pub const OUTPUT_BYTES_PER_CALL_MAX: usize = 64 << 10;

/// Random bytes one `get-random-bytes` (or insecure) request of a WASI guest
/// may ask for; a larger request traps. Keys and nonces need a few dozen
/// bytes; the bound keeps a guest from making the host generate and copy
/// WASI's default of 64 MiB at once.
pub const RANDOM_BYTES_PER_REQUEST_MAX: u64 = 1 << 20;

/// Largest module file accepted for publication.
pub const MODULE_BYTES_MAX: usize = 64 << 20;

/// Longest module name (it becomes a file name and a URL segment).
pub const MODULE_NAME_LEN_MAX: usize = 64;

/// Largest encoded argument row of one reducer call.
pub const ARGS_BYTES_MAX: usize = 1 << 20;

/// Open cursors per reducer call.
pub const CURSORS_PER_CALL_MAX: usize = 1024;

/// Handles one instance may hold at once in the host's resource table:
/// cursors and, for WASI guests, streams and pollables. A guest that takes
/// handles and never drops them would otherwise grow host memory call after
/// call; past the bound the call traps and the instance is replaced. Well
/// above what a guest keeps open (a few streams, at most
/// [`CURSORS_PER_CALL_MAX`] cursors).
pub const RESOURCES_PER_INSTANCE_MAX: usize = 16 * 1024;

/// Core instances one component may create: a Rust guest is one module plus
/// a few shims that the component encoding adds.
pub const CORE_INSTANCES_MAX: usize = 32;
