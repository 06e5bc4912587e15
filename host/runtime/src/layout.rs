//! The data directory's names, and its lock.
//!
//! ```text
//! LOCK                 held by the one process that has the directory open
//! log/                 the durable log (docs/log-format.md)
//! snapshots/           images of every table at a transaction (docs/snapshot-format.md)
//! modules/NAME.wasm    the code of each published module (NAME.vN.wasm for version N)
//! cache/               wasmtime's compiled code
//! ```
//!
//! One process per data directory: an exclusive lock on `DATA_DIR/LOCK`,
//! which also names the holder's pid for the error the next process gets.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::OpenError;

/// Name of the lock file in the data directory.
pub const LOCK_FILE: &str = "LOCK";
/// Directory (under the data directory) holding published modules.
pub const MODULES_DIR: &str = "modules";
/// Directory (under the data directory) holding wasmtime's compiled code.
pub const CACHE_DIR: &str = "cache";
/// Directory (under the data directory) holding the log's segments.
pub const LOG_DIR: &str = "log";
/// Present in a data directory while a restore fills it (and after a
/// restore failed): a database refuses to open it.
pub const RESTORE_MARKER: &str = "RESTORING";
/// Directory (under the data directory) holding snapshots.
pub const SNAPSHOTS_DIR: &str = "snapshots";

/// The code of version `version` of a module: `NAME.wasm` for the first,
/// `NAME.vN.wasm` after.
pub(crate) fn module_path(data_dir: &Path, name: &str, version: u32) -> PathBuf {
    let file = match version {
        0 | 1 => format!("{name}.wasm"),
        n => format!("{name}.v{n}.wasm"),
    };
    data_dir.join(MODULES_DIR).join(file)
}

/// Held for as long as the database is open; the operating system releases
/// the lock when the process exits, however it exits.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<DirLock, OpenError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| OpenError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(OpenError::Locked {
                    dir: dir.to_path_buf(),
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.into()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DirLock { _file: file })
    }
}
