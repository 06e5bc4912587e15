use thiserror::Error;

/// A module definition the host cannot use.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaError {
    #[error("module was built for ABI version {found}; this host supports versions {min} to {max}")]
    AbiVersion { found: u32, min: u32, max: u32 },
    #[error("duplicate {what} name `{name}`{at}")]
    Duplicate {
        what: String,
        name: String,
        at: String,
    },
    #[error("too many {what} (at most {max})")]
    TooMany { what: &'static str, max: usize },
    #[error("{0}")]
    Invalid(String),
}

/// Bytes that are not a valid encoding of the expected row, key or value.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("column {column}: expected {needed} more bytes at offset {offset}, found {available}")]
    Truncated {
        column: usize,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("column {column}: invalid bool byte {byte:#04x} at offset {offset}")]
    InvalidBool {
        column: usize,
        offset: usize,
        byte: u8,
    },
    #[error("column {column}: invalid option tag {tag:#04x} at offset {offset}")]
    InvalidOptionTag {
        column: usize,
        offset: usize,
        tag: u8,
    },
    #[error(
        "column {column}: variant tag {tag} at offset {offset}, but the enum has {variants} variants"
    )]
    InvalidVariant {
        column: usize,
        offset: usize,
        tag: u8,
        variants: usize,
    },
    #[error("column {column}: string at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { column: usize, offset: usize },
    #[error("{extra} trailing bytes after the last column")]
    TrailingBytes { extra: usize },
    #[error("row of {len} bytes exceeds the limit of {max} bytes")]
    TooLong { len: usize, max: usize },
}

/// Why a table operation was refused. Refusals leave the table unchanged.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DbError {
    #[error("no table with id {0}")]
    NoSuchTable(u32),
    #[error("no index with id {0}")]
    NoSuchIndex(u32),
    /// The index exists but cannot answer this request (a range over a hash
    /// index, a lookup of part of a key).
    #[error("index `{index}` of table `{table}` (id {id}) {reason}")]
    IndexUse {
        id: u32,
        table: String,
        index: String,
        reason: &'static str,
    },
    #[error("invalid row for table `{table}`: {source}")]
    InvalidRow {
        table: String,
        #[source]
        source: DecodeError,
    },
    #[error("unique constraint `{index}` of table `{table}` violated by value {value}")]
    UniqueViolation {
        table: String,
        index: String,
        value: String,
    },
    #[error("no row with that primary key in table `{table}`")]
    NotFound { table: String },
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
}
