//! The file-system seam. All I/O on a database's durable state (log
//! segments, snapshots, module code) goes through [`Storage`], so tests can
//! swap the real file system for [`crate::fault::FaultFs`], which keeps
//! written and synced bytes apart and injects failures.
//!
//! Contract of each method, which both implementations keep:
//!
//! - `create_dir_all`: the directory and its parents exist afterwards; a new
//!   directory's entry is durable only after `sync_dir` of its parent.
//! - `list`: the files directly in a directory, in no particular order.
//! - `read`: the whole current content of a file (synced or not).
//! - `open_read`: a reader over the file's current content, for files too
//!   big to hold in memory at once.
//! - `create`: a new, empty file open for writing; fails if it exists.
//!   The file's existence is durable only after `sync_dir` of its parent.
//!   On the real file system it is readable and writable by its owner
//!   only (mode 0600): a data directory holds data nobody else should read.
//! - `open_append`: an existing file, open for appending at its end.
//! - `WriteFile::append`: adds bytes at the end; they are durable only after
//!   a later `sync_data` succeeds. On error, any prefix of the bytes may have
//!   been written.
//! - `WriteFile::write_at`: overwrites bytes inside what was written; the
//!   same durability and error rules as `append`.
//! - `WriteFile::sync_data`: every byte written so far is durable when it
//!   returns `Ok`. After an error, nothing about unsynced bytes is known,
//!   and the caller must not retry (the log poisons itself; a snapshot
//!   write gives up its temporary file).
//! - `truncate`: the file is cut to `len` bytes and the cut is durable.
//! - `rename`: atomically replaces `to` with `from`; durable after
//!   `sync_dir` of the parent. On error, nothing was renamed.
//! - `remove`: deletes a file; durable after `sync_dir` of the parent.
//! - `sync_dir`: makes creations, renames and removals in a directory
//!   durable. After an error, which of them are durable is unknown.
//! - `len`: the current length of a file.
//! - `exists`: whether a file or directory is there now.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A file open for writing.
pub trait WriteFile: Send {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()>;
    fn sync_data(&mut self) -> io::Result<()>;
}

/// See the module documentation for each method's contract.
pub trait Storage: Send + Sync + 'static {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn Read + Send>>;
    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>>;
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>>;
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn len(&self, path: &Path) -> io::Result<u64>;
    fn exists(&self, path: &Path) -> bool;
}

/// Appends everything written to a [`WriteFile`]: lets streaming encoders
/// (zstd, `BufWriter`) write through the seam.
pub struct Appender<'a>(pub &'a mut dyn WriteFile);

impl Write for Appender<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.append(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

struct RealFile(File);

impl WriteFile for RealFile {
    // The cursor stays at the end between calls, so appending costs no seek.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.0.seek(SeekFrom::Start(offset))?;
        let written = self.0.write_all(bytes);
        self.0.seek(SeekFrom::End(0))?;
        written
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

fn private() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
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

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(File::open(path)?))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        // Not `append(true)`: `write_at` must be able to go back.
        let file = private().write(true).create_new(true).open(path)?;
        Ok(Box::new(RealFile(file)))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let mut file = OpenOptions::new().write(true).open(path)?;
        file.seek(SeekFrom::End(0))?;
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

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_files_append_overwrite_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = RealFs.create(&path).unwrap();
        f.append(b"hello ").unwrap();
        f.append(b"world").unwrap();
        f.write_at(0, b"J").unwrap();
        f.append(b"!").unwrap();
        f.sync_data().unwrap();
        drop(f);
        assert_eq!(RealFs.read(&path).unwrap(), b"Jello world!");
        assert!(
            RealFs.create(&path).is_err(),
            "create refuses an existing file"
        );
        let mut f = RealFs.open_append(&path).unwrap();
        f.append(b"?").unwrap();
        drop(f);
        let mut text = String::new();
        RealFs
            .open_read(&path)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "Jello world!?");
        assert_eq!(RealFs.len(&path).unwrap(), 13);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
