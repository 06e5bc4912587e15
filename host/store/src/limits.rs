//! Every bound the store puts on what can grow, with the reason for it.

/// Longest table, column, index, reducer or parameter name. Names appear in
/// every log record of a publication and in URLs; 64 bytes is plenty for an
/// identifier and keeps them short.
pub const NAME_LEN_MAX: usize = 64;

/// Tables per module: table ids are `u32` on the wire, but a module with more
/// than a thousand tables is a bug, not a design.
pub const TABLES_PER_MODULE_MAX: usize = 1024;

/// Reducers per module, for the same reason as tables.
pub const REDUCERS_PER_MODULE_MAX: usize = 4096;

/// Columns per table (and parameters per reducer): keeps a row's column walk
/// short and a schema readable.
pub const COLUMNS_PER_TABLE_MAX: usize = 256;

/// Secondary indexes per table: each one costs memory per row and time per
/// write.
pub const INDEXES_PER_TABLE_MAX: usize = 32;

/// Columns of one index: a composite key is decoded and compared column by
/// column on every write to the table.
pub const INDEX_COLUMNS_MAX: usize = 16;

/// Largest encoded row. Rows are copied into the log and into snapshots
/// whole; 1 MiB bounds the cost of one row and the size of one log record's
/// largest part.
pub const ROW_BYTES_MAX: usize = 1 << 20;

/// Mutations one transaction may make. A runaway reducer is stopped with an
/// error instead of growing the undo and redo logs without bound.
pub const MUTATIONS_PER_TX_MAX: usize = 1 << 20;

/// Row bytes one transaction may write (the sum over its redo list). A
/// committed transaction becomes one log record, which must stay below the
/// log's record size limit (128 MiB) together with its arguments and names.
pub const REDO_BYTES_PER_TX_MAX: usize = 64 << 20;

/// Deepest nesting of a type (`vec<option<Item>>` is 3 deep, more for each
/// level inside `Item`). Decoding and JSON conversion recurse along the type,
/// never along the data, so this bounds their stack.
pub const TYPE_DEPTH_MAX: usize = 32;

/// Variants of one enum: the variant tag is one byte.
pub const VARIANTS_MAX: usize = 256;

/// Named types one module may declare.
pub const TYPESPACE_MAX: usize = 1024;

/// Parts of one column's or parameter's type once expanded, a struct used
/// in several places counted at each: a guest's typespace shares types by
/// index, and a type that doubles at every level would otherwise cost
/// 2^depth to validate, compare and write as JSON.
pub const TYPE_NODES_MAX: usize = 4096;
