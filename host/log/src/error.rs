use std::path::PathBuf;

use thiserror::Error;

/// What is wrong at one place in the log.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DamageKind {
    #[error("segment header is {len} bytes, {needed} needed")]
    ShortHeader { len: u64, needed: u64 },
    #[error("bad magic bytes in the segment header")]
    BadMagic,
    #[error("unsupported segment format version {0}")]
    UnsupportedVersion(u32),
    #[error("segment header checksum mismatch")]
    HeaderChecksum,
    #[error("segment header says base tx {found}, its file name says {named}")]
    BaseMismatch { named: u64, found: u64 },
    #[error("record header cut short: {available} of {needed} bytes")]
    TruncatedHeader { available: u64, needed: u64 },
    #[error("record payload cut short: {available} of {needed} bytes")]
    TruncatedPayload { available: u64, needed: u64 },
    #[error("record length {len} exceeds the limit of {max} bytes")]
    LengthTooLarge { len: u64, max: u64 },
    #[error("record checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("transaction id {found} where {expected} was expected")]
    TxIdGap { expected: u64, found: u64 },
    #[error("the segment starts at tx {found}, but tx {expected} was expected next")]
    MissingTransactions { expected: u64, found: u64 },
}

/// One damaged place: a file, a byte offset in it, and what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{}: offset {offset}: {kind}", segment.display())]
pub struct Damage {
    pub segment: PathBuf,
    pub offset: u64,
    pub kind: DamageKind,
}

/// Errors of opening, recovering, verifying and repairing the log.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Two reads of the same file disagreed where damage was found, so it
    /// is unknown whether the damage is real. Nothing was changed.
    #[error(
        "{}: two reads of this file returned different bytes (the first found: {damage}); nothing was changed. Check the device, then open again",
        path.display()
    )]
    UnstableRead { path: PathBuf, damage: Damage },
    /// Damage the recovery mode does not tolerate. Nothing was changed.
    #[error("the log is damaged and recovery mode `{mode}` does not allow opening it: {damage}")]
    Corrupt { damage: Damage, mode: &'static str },
    /// A record passed its checksum but the caller could not apply it.
    #[error("{}: offset {offset}: tx {tx_id}: {message}", segment.display())]
    Apply {
        segment: PathBuf,
        offset: u64,
        tx_id: u64,
        message: String,
    },
    #[error("not a log segment name: {0}")]
    BadSegmentName(String),
    #[error("invalid log configuration: {0}")]
    Config(String),
    #[error("no transaction {0} in the log")]
    NoSuchTx(u64),
}

/// Why an append was not made durable. The caller must not report success.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AppendError {
    /// An earlier write or sync failed. The log refuses every later write;
    /// reopen the database to recover by replay.
    #[error(
        "the log is out of service after an I/O failure ({0}); no later write is accepted, reopen the database to recover"
    )]
    Poisoned(String),
    #[error("record payload of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("transaction id {got} appended where {expected} was expected")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("the log writer has shut down")]
    Closed,
}

pub(crate) fn io_at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}
