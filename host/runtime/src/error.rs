use std::path::PathBuf;

use interstice_log::{AppendError, LogError};
use interstice_store::SchemaError;
use interstice_store::json::JsonError;
use thiserror::Error;

/// Why a module's code was refused: what loading, compiling and asking a
/// component for its definition can produce.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ModuleError {
    #[error("not a WebAssembly file (it does not start with the `\\0asm` magic)")]
    NotWasm,
    #[error("module file of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("not an Interstice module: {0}")]
    NotOurs(String),
    /// The component imports an interface the host does not grant
    /// (`crate::sandbox::wasi::GRANTED`).
    #[error(
        "the module imports `{import}`, which Interstice does not grant to guests \
         (granted: interstice:module/host and WASI 0.2's cli, clocks, filesystem, io, random and sockets \
         interfaces, with no environment, no files and no network)"
    )]
    ImportNotGranted { import: String },
    #[error("the module does not compile: {0}")]
    Compile(String),
    #[error("the module could not be instantiated: {0}")]
    Instantiate(String),
    #[error("the module's `describe` failed: {0}")]
    Describe(String),
    #[error("invalid module definition: {0}")]
    Schema(#[from] SchemaError),
}

/// Why a data directory could not be opened.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data directory {dir} is in use by another process (pid {pid})")]
    Locked { dir: PathBuf, pid: String },
    #[error("the WebAssembly engine could not be set up: {0}")]
    Engine(String),
    /// A restore into this directory did not finish: it holds part of a
    /// backup at most.
    #[error(
        "{0} holds an unfinished restore (its RESTORING file says so); restore the backup again into an empty directory"
    )]
    RestoreIncomplete(PathBuf),
    /// Recovery refused the log, or a record did not replay.
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// Why a publication (first, new code, or new version) did not happen.
/// Nothing changed: the old version, if any, keeps serving.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PublishError {
    #[error("invalid module name {0:?}: use ASCII letters, digits, `_` or `-`, at most 64 bytes")]
    InvalidName(String),
    #[error(transparent)]
    Module(#[from] ModuleError),
    /// A new version changes the schema in ways that lose data or break
    /// callers, and neither `clear` nor a migration reducer says so is fine.
    #[error(
        "module `{module}` cannot be upgraded in place:\n{}\npublish with --clear to drop its data, or give the new version a #[reducer(migrate)]",
        changes.iter().map(|c| format!("  - {c}")).collect::<Vec<_>>().join("\n")
    )]
    SchemaChanged {
        module: String,
        changes: Vec<String>,
    },
    /// The old version's rows do not fit the new definition.
    #[error("the tables of `{module}` cannot be migrated: {reason}; the old version keeps serving")]
    MigrationRefused { module: String, reason: String },
    /// The init or migration reducer failed; nothing changed.
    #[error("reducer `{reducer}` of `{module}` failed at publication: {source}; nothing changed")]
    InitFailed {
        module: String,
        reducer: String,
        #[source]
        source: CallError,
    },
    /// The module's code could not be stored.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The publication was not made durable; it must not be taken as done.
    #[error("the publication was not made durable: {0}")]
    Durability(#[source] AppendError),
    /// Only the module's owner (and the operator) may publish over it.
    #[error("module `{module}` belongs to {owner}; only its owner or the operator may change it")]
    NotOwner {
        module: String,
        owner: interstice_store::Identity,
    },
    /// Only the operator may create modules, unless the server allows it.
    #[error("only the operator may publish a new module `{0}` on this server")]
    MayNotCreate(String),
    /// An identity who is not the operator named an owner other than itself.
    #[error("only the operator may publish a module for another owner")]
    OwnerNotSelf,
    #[error("the database is unusable after an internal error in another thread")]
    Poisoned,
}

/// Why a module was not deleted.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DropError {
    #[error("no module named `{0}`")]
    UnknownModule(String),
    #[error("module `{module}` belongs to {owner}; only its owner or the operator may delete it")]
    NotOwner {
        module: String,
        owner: interstice_store::Identity,
    },
    /// The deletion was not made durable; it must not be taken as done.
    #[error("the deletion was not made durable: {0}")]
    Durability(#[source] AppendError),
    #[error("the database is unusable after an internal error in another thread")]
    Poisoned,
}

/// The database's state could not be read: a panic in another thread
/// poisoned it. Every read answers this rather than an empty answer.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("the database is unusable after an internal error in another thread")]
pub struct Poisoned;

/// Why a reducer call did not commit. Nothing it wrote was kept.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CallError {
    #[error("no module named `{0}`")]
    UnknownModule(String),
    #[error("module `{module}` has no reducer named `{reducer}`")]
    UnknownReducer { module: String, reducer: String },
    #[error(
        "reducer `{0}` is run by the host (init, migrate, client_connected or client_disconnected); it cannot be called"
    )]
    InitNotCallable(String),
    /// A session was opened or closed on a module without lifecycle reducers.
    #[error("the module keeps no sessions: it has no lifecycle reducers")]
    NoSessions,
    #[error("no open session with connection id {0}")]
    NoSuchSession(u64),
    /// The host's own row in `st_client` was refused (an internal error).
    #[error("the session could not be recorded: {0}")]
    Session(String),
    /// A row of a schedule table cannot be scheduled (an interval under
    /// 1 ms); the reducer that wrote it was rolled back.
    #[error("{0}; the reducer was rolled back")]
    Schedule(String),
    /// A scheduled row chosen to run was changed, cancelled or run by
    /// someone else before its turn: nothing ran.
    #[error("scheduled row `{0}` is no longer due")]
    NotDue(String),
    #[error("bad arguments: {0}")]
    BadArguments(#[from] JsonError),
    /// An argument row (row-encoded arguments from a client) that does
    /// not decode as the reducer's parameters.
    #[error("bad argument row: {0}")]
    BadArgumentRow(String),
    #[error("arguments of {len} bytes exceed the limit of {max} bytes")]
    ArgumentsTooLarge { len: usize, max: usize },
    /// The reducer returned `Err`.
    #[error("{0}")]
    Reducer(String),
    #[error(
        "the reducer ran out of fuel after {fuel} units (an endless loop?); it was rolled back"
    )]
    OutOfFuel { fuel: u64 },
    #[error("the reducer exceeded the memory limit: {0}; it was rolled back")]
    MemoryLimit(String),
    #[error("the reducer trapped: {0}; it was rolled back")]
    Trap(String),
    #[error("the module could not be instantiated: {0}")]
    Instantiate(String),
    #[error("module `{module}` cannot run: {reason}")]
    NotLoaded { module: String, reason: String },
    /// The transaction ran but was not made durable. It must not be taken
    /// as committed; reopening the database recovers the durable state.
    #[error("the transaction was not made durable: {0}")]
    Durability(#[source] AppendError),
    #[error("the database is unusable after an internal error in another thread")]
    Poisoned,
}

/// Why a snapshot could not be taken or read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SnapshotError {
    #[error(transparent)]
    File(#[from] interstice_store::snapshot::SnapshotError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The log after the base snapshot does not replay up to the target.
    #[error("the log does not replay: {0}")]
    Replay(String),
    #[error("the log could not be synced first: {0}")]
    Durability(#[source] AppendError),
    /// The snapshot was written but does not read back whole; it was
    /// removed, and no log was given up for it.
    #[error("the new snapshot did not read back and was removed: {0}")]
    ReadBack(#[source] interstice_store::snapshot::SnapshotError),
}

impl SnapshotError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
        move |source| SnapshotError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
