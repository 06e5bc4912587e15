//! A fault-injecting, in-memory [`Storage`] for crash and I/O-error tests.
//!
//! Every file keeps two states: what was written and what was made durable.
//! [`FaultFs::crash`] simulates a power loss: unsynced bytes are dropped
//! (optionally keeping a torn prefix of them) and files whose creation was
//! never made durable by a directory sync disappear. Failures can be armed
//! for the n-th append or sync: the operation returns `EIO` (or `ENOSPC`)
//! and, for an append, writes only a prefix of its bytes.
//!
//! For power-loss simulation, [`FaultFs::record_before_sync`] keeps an image
//! of the whole file system just before every `sync_data` and directory
//! sync: each image, crashed with any torn length, is one moment a power
//! loss could have hit, between that sync boundary and the one before.
//!
//! This is a real file system with a model of durability, not a mock: the
//! log runs on it exactly as on disk.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::storage::{LogFile, Storage};

#[derive(Clone, Debug, Default)]
struct FileState {
    data: Vec<u8>,
    /// Bytes that survive a crash.
    synced: Vec<u8>,
    /// Whether the directory entry survives a crash.
    entry_durable: bool,
}

/// Which failure to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The n-th `sync_data` (counting from 1, over all files) fails with EIO.
    SyncEio { nth: u64 },
    /// The n-th `append` writes half its bytes and fails with EIO.
    AppendEio { nth: u64 },
    /// The n-th `append` writes half its bytes and fails with ENOSPC.
    AppendNoSpace { nth: u64 },
}

#[derive(Default)]
struct Inner {
    files: BTreeMap<PathBuf, FileState>,
    dirs: Vec<PathBuf>,
    appends: u64,
    syncs: u64,
    faults: Vec<Fault>,
    injected: u64,
    /// Whether to keep an image before every sync.
    recording: bool,
    /// What the test says it has been told so far (e.g. the newest
    /// acknowledged transaction); copied into each image.
    label: u64,
    images: Vec<CrashImage>,
}

/// The file system just before a sync: what a power loss at any moment
/// since the previous sync could leave, depending on how much of the
/// unsynced bytes reached the device ([`FaultFs::crash`]).
pub struct CrashImage {
    /// The label set with [`FaultFs::set_label`] when the image was taken.
    pub label: u64,
    /// The file system at that moment.
    pub fs: FaultFs,
    /// The longest unsynced tail of any file: crashing with more torn bytes
    /// keeps nothing more.
    pub unsynced_max: usize,
}

/// See the module documentation.
#[derive(Clone, Default)]
pub struct FaultFs {
    inner: Arc<Mutex<Inner>>,
}

fn no_file(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl FaultFs {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not hide the file system from others.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Arms a failure.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// How many failures have been injected so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// Keeps an image of the file system before every sync from now on.
    pub fn record_before_sync(&self) {
        self.lock().recording = true;
    }

    /// Sets the label the next images carry.
    pub fn set_label(&self, label: u64) {
        self.lock().label = label;
    }

    /// The images kept so far, oldest first.
    pub fn take_images(&self) -> Vec<CrashImage> {
        std::mem::take(&mut self.lock().images)
    }

    fn keep_image(inner: &mut Inner) {
        if !inner.recording {
            return;
        }
        let unsynced_max = inner
            .files
            .values()
            .map(|f| f.data.len().saturating_sub(f.synced.len()))
            .max()
            .unwrap_or(0);
        let fs = FaultFs {
            inner: Arc::new(Mutex::new(Inner {
                files: inner.files.clone(),
                dirs: inner.dirs.clone(),
                ..Inner::default()
            })),
        };
        let label = inner.label;
        inner.images.push(CrashImage {
            label,
            fs,
            unsynced_max,
        });
    }

    /// Successful and failed `sync_data` calls so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// A power loss: a new file system holding only what was durable, plus,
    /// for each file, the first `torn_bytes` of its unsynced tail (a write
    /// the device had partly completed).
    pub fn crash(&self, torn_bytes: usize) -> FaultFs {
        let inner = self.lock();
        let mut files = BTreeMap::new();
        for (path, f) in &inner.files {
            if !f.entry_durable {
                continue;
            }
            let mut data = f.synced.clone();
            if f.data.len() > f.synced.len() && f.data.starts_with(&f.synced) {
                let tail = &f.data[f.synced.len()..];
                data.extend_from_slice(&tail[..torn_bytes.min(tail.len())]);
            }
            files.insert(
                path.clone(),
                FileState {
                    synced: data.clone(),
                    data,
                    entry_durable: true,
                },
            );
        }
        FaultFs {
            inner: Arc::new(Mutex::new(Inner {
                files,
                dirs: inner.dirs.clone(),
                ..Inner::default()
            })),
        }
    }

    /// Overwrites bytes of a file in place (durably): simulated media damage.
    pub fn corrupt(&self, path: &Path, offset: usize, xor: u8) {
        let mut inner = self.lock();
        let f = inner.files.get_mut(path).expect("file exists");
        f.data[offset] ^= xor;
        f.synced = f.data.clone();
    }

    fn take_fault(inner: &mut Inner, matches: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let at = inner.faults.iter().position(matches)?;
        inner.injected += 1;
        Some(inner.faults.remove(at))
    }
}

struct FaultFile {
    fs: FaultFs,
    path: PathBuf,
}

impl LogFile for FaultFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut inner = self.fs.lock();
        inner.appends += 1;
        let n = inner.appends;
        let fault = FaultFs::take_fault(
            &mut inner,
            |f| matches!(f, Fault::AppendEio { nth } | Fault::AppendNoSpace { nth } if *nth == n),
        );
        let file = inner
            .files
            .get_mut(&self.path)
            .ok_or_else(|| no_file(&self.path))?;
        match fault {
            None => {
                file.data.extend_from_slice(bytes);
                Ok(())
            }
            Some(fault) => {
                file.data.extend_from_slice(&bytes[..bytes.len() / 2]);
                Err(match fault {
                    Fault::AppendNoSpace { .. } => io::Error::from_raw_os_error(28),
                    _ => io::Error::from_raw_os_error(5),
                })
            }
        }
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut inner = self.fs.lock();
        FaultFs::keep_image(&mut inner);
        inner.syncs += 1;
        let n = inner.syncs;
        if FaultFs::take_fault(
            &mut inner,
            |f| matches!(f, Fault::SyncEio { nth } if *nth == n),
        )
        .is_some()
        {
            return Err(io::Error::from_raw_os_error(5));
        }
        let file = inner
            .files
            .get_mut(&self.path)
            .ok_or_else(|| no_file(&self.path))?;
        file.synced = file.data.clone();
        Ok(())
    }
}

impl Storage for FaultFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut inner = self.lock();
        if !inner.dirs.iter().any(|d| d == dir) {
            inner.dirs.push(dir.to_path_buf());
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let inner = self.lock();
        if !inner.dirs.iter().any(|d| d == dir) {
            return Err(no_file(dir));
        }
        Ok(inner
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let inner = self.lock();
        inner
            .files
            .get(path)
            .map(|f| f.data.clone())
            .ok_or_else(|| no_file(path))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let mut inner = self.lock();
        if inner.files.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
        }
        inner.files.insert(path.to_path_buf(), FileState::default());
        Ok(Box::new(FaultFile {
            fs: self.clone(),
            path: path.to_path_buf(),
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        if !self.lock().files.contains_key(path) {
            return Err(no_file(path));
        }
        Ok(Box::new(FaultFile {
            fs: self.clone(),
            path: path.to_path_buf(),
        }))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut inner = self.lock();
        let f = inner.files.get_mut(path).ok_or_else(|| no_file(path))?;
        f.data.truncate(len as usize);
        f.synced = f.data.clone();
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut inner = self.lock();
        let mut f = inner.files.remove(from).ok_or_else(|| no_file(from))?;
        f.entry_durable = false;
        inner.files.insert(to.to_path_buf(), f);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.lock()
            .files
            .remove(path)
            .map(drop)
            .ok_or_else(|| no_file(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut inner = self.lock();
        FaultFs::keep_image(&mut inner);
        for (path, f) in inner.files.iter_mut() {
            if path.parent() == Some(dir) {
                f.entry_durable = true;
            }
        }
        Ok(())
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        let inner = self.lock();
        inner
            .files
            .get(path)
            .map(|f| f.data.len() as u64)
            .ok_or_else(|| no_file(path))
    }
}
