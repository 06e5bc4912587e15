//! The file-system seam. All log I/O goes through [`Storage`], so tests can
//! swap the real file system for [`crate::fault::FaultFs`], which keeps
//! written and synced bytes apart and injects failures.
//!
//! Contract of each method, which both implementations keep:
//!
//! - `create_dir_all`: the directory exists afterwards (not yet durable).
//! - `list`: the files directly in a directory, in no particular order.
//! - `read`: the whole current content of a file (synced or not).
//! - `create`: a new, empty file open for appending; fails if it exists.
//!   The file's existence is durable only after `sync_dir` of its parent.
//! - `open_append`: an existing file, open for appending at its end.
//! - `LogFile::append`: adds bytes at the end; they are durable only after a
//!   later `sync_data` succeeds. On error, any prefix of the bytes may have
//!   been written.
//! - `LogFile::sync_data`: every byte appended so far is durable when it
//!   returns `Ok`. After an error, nothing about unsynced bytes is known,
//!   and the caller must not retry (the log poisons itself).
//! - `truncate`: the file is cut to `len` bytes and the cut is durable.
//! - `rename`: atomically replaces `to` with `from`; durable after
//!   `sync_dir` of the parent.
//! - `remove`: deletes a file; durable after `sync_dir` of the parent.
//! - `sync_dir`: makes creations, renames and removals in a directory
//!   durable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub trait LogFile: Send {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    fn sync_data(&mut self) -> io::Result<()>;
}

pub trait Storage: Send + Sync + 'static {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn create(&self, path: &Path) -> io::Result<Box<dyn LogFile>>;
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn LogFile>>;
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Current length of a file.
    fn len(&self, path: &Path) -> io::Result<u64>;
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

struct RealFile(File);

impl LogFile for RealFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Storage for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                out.push(entry.path());
            }
        }
        Ok(out)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)?;
        Ok(Box::new(RealFile(file)))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Box::new(RealFile(file)))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }
}
