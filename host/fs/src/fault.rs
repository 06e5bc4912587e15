//! A fault-injecting, in-memory [`Storage`] for crash and I/O-error tests.
//!
//! It models what a power loss can and cannot take away:
//!
//! - Every file is an inode with two states: the bytes written and the
//!   bytes made durable by `sync_data`.
//! - Names are kept twice: the directory entries as they are now, and as
//!   they were when their directory was last synced. A creation, rename or
//!   removal survives a crash only once its directory was synced; until
//!   then a crash brings back the old entry (the old file under a name a
//!   rename replaced, a removed file, or no file at all).
//! - A directory made inside one this file system knows is durable only
//!   after its parent is synced, and takes its files with it when it is
//!   not. Directories it did not make (the test's temporary directory and
//!   its parents) always exist.
//!
//! [`FaultFs::crash`] simulates a power loss: unsynced bytes are dropped
//! (optionally keeping a torn prefix of them) and entries not made durable
//! are rolled back. Faults are armed with [`FaultFs::inject`]: the n-th
//! call of one operation (optionally only on paths under a directory)
//! fails with an errno, or silently stores or returns data with one bit
//! flipped.
//!
//! For power-loss simulation, [`FaultFs::record_before_sync`] keeps an image
//! of the whole file system just before every `sync_data` and directory
//! sync: each image, crashed with any torn length, is one moment a power
//! loss could have hit, between that sync boundary and the one before.
//!
//! This is a file system with a model of durability, not a mock: the log
//! and snapshots run on it exactly as on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::storage::{Storage, WriteFile};

/// Input/output error.
pub const EIO: i32 = 5;
/// No space left on device.
pub const ENOSPC: i32 = 28;

/// The operations a fault can hit. `Read` covers `read` and `open_read`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    CreateDir,
    List,
    Read,
    Create,
    OpenAppend,
    Append,
    WriteAt,
    Sync,
    Truncate,
    Rename,
    Remove,
    SyncDir,
    Len,
}

impl Op {
    /// Every operation.
    pub const ALL: [Op; 13] = [
        Op::CreateDir,
        Op::List,
        Op::Read,
        Op::Create,
        Op::OpenAppend,
        Op::Append,
        Op::WriteAt,
        Op::Sync,
        Op::Truncate,
        Op::Rename,
        Op::Remove,
        Op::SyncDir,
        Op::Len,
    ];
}

/// What an armed fault does when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The operation fails with this errno. An append or `write_at` writes
    /// the first half of its bytes first; anything else changes nothing.
    Error(i32),
    /// The operation succeeds, but the bytes stored (`Append`, `WriteAt`) or
    /// returned (`Read`) have this bit flipped, counted from the first bit
    /// of the buffer and wrapping around its length: silent corruption.
    FlipBit(u64),
}

/// One failure to inject. See [`Fault::error`] and [`Fault::flip_bit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub op: Op,
    /// Fires at the n-th matching call after it is armed (1: the next).
    pub nth: u64,
    pub effect: Effect,
    /// Only calls on paths under this directory count.
    pub under: Option<PathBuf>,
}

impl Fault {
    /// The next call of `op` fails with `errno`.
    pub fn error(op: Op, errno: i32) -> Fault {
        Fault {
            op,
            nth: 1,
            effect: Effect::Error(errno),
            under: None,
        }
    }

    /// The next call of `op` (`Append`, `WriteAt` or `Read`) succeeds with
    /// one bit flipped.
    pub fn flip_bit(op: Op, bit: u64) -> Fault {
        Fault {
            op,
            nth: 1,
            effect: Effect::FlipBit(bit),
            under: None,
        }
    }

    /// Fires at the n-th matching call instead of the next.
    pub fn nth(self, nth: u64) -> Fault {
        Fault { nth, ..self }
    }

    /// Counts only calls on paths under `dir`.
    pub fn under(self, dir: impl Into<PathBuf>) -> Fault {
        Fault {
            under: Some(dir.into()),
            ..self
        }
    }
}

struct Armed {
    fault: Fault,
    seen: u64,
}

#[derive(Clone, Debug, Default)]
struct Inode {
    data: Vec<u8>,
    /// Bytes that survive a crash.
    synced: Vec<u8>,
}

#[derive(Default)]
struct Inner {
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    /// Directory entries now.
    files: BTreeMap<PathBuf, u64>,
    /// Directory entries a crash would leave.
    durable: BTreeMap<PathBuf, u64>,
    /// Directories this file system made, and whether each one's entry is
    /// durable.
    dirs: BTreeMap<PathBuf, bool>,
    counts: BTreeMap<Op, u64>,
    faults: Vec<Armed>,
    injected: u64,
    /// Whether to keep an image before every sync.
    recording: bool,
    /// What the test says it has been told so far (e.g. the newest
    /// acknowledged transaction); copied into each image.
    label: u64,
    images: Vec<CrashImage>,
    /// How long every `sync_data` takes, as a slow disk's would.
    sync_delay: std::time::Duration,
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
        format!("{}: no such file or directory", path.display()),
    )
}

fn flip(bytes: &mut [u8], bit: u64) {
    if !bytes.is_empty() {
        let bit = bit % (bytes.len() as u64 * 8);
        bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
    }
}

impl Inner {
    /// Counts a call of `op` on `path` and fires the armed fault it meets.
    fn call(&mut self, op: Op, path: &Path) -> Option<Effect> {
        *self.counts.entry(op).or_default() += 1;
        let mut fired = None;
        for armed in self.faults.iter_mut() {
            let f = &armed.fault;
            if f.op != op || f.under.as_ref().is_some_and(|d| !path.starts_with(d)) {
                continue;
            }
            armed.seen += 1;
            if fired.is_none() && armed.seen == f.nth {
                fired = Some(f.effect);
                armed.seen = u64::MAX;
            }
        }
        self.faults.retain(|a| a.seen != u64::MAX);
        if fired.is_some() {
            self.injected += 1;
        }
        fired
    }

    /// Fails the call if an error fault fired; returns a bit to flip if a
    /// flip fault did.
    fn check(&mut self, op: Op, path: &Path) -> io::Result<Option<u64>> {
        match self.call(op, path) {
            Some(Effect::Error(errno)) => Err(io::Error::from_raw_os_error(errno)),
            Some(Effect::FlipBit(bit)) => Ok(Some(bit)),
            None => Ok(None),
        }
    }

    fn inode(&self, path: &Path) -> io::Result<&Inode> {
        let ino = self.files.get(path).ok_or_else(|| no_file(path))?;
        Ok(&self.inodes[ino])
    }

    fn dir_exists(&self, dir: &Path) -> bool {
        // Ours, or outside everything ours (made before this file system).
        self.dirs.contains_key(dir) || !dir.ancestors().any(|a| self.dirs.contains_key(a))
    }

    /// Whether `path`'s directory and every directory above it that this
    /// file system made are durable.
    fn dirs_durable(&self, path: &Path) -> bool {
        path.ancestors()
            .skip(1)
            .all(|d| self.dirs.get(d).copied().unwrap_or(true))
    }

    /// A new file system holding `entries`, each file cut as `keep` says.
    fn image(
        &self,
        entries: &BTreeMap<PathBuf, u64>,
        dirs: BTreeMap<PathBuf, bool>,
        keep: impl Fn(&Inode) -> Vec<u8>,
    ) -> FaultFs {
        let mut inodes = BTreeMap::new();
        for ino in entries.values() {
            let data = keep(&self.inodes[ino]);
            inodes.insert(
                *ino,
                Inode {
                    synced: data.clone(),
                    data,
                },
            );
        }
        self.file_system(inodes, entries.clone(), entries.clone(), dirs)
    }

    /// A new file system of these parts, with nothing armed or recorded.
    fn file_system(
        &self,
        inodes: BTreeMap<u64, Inode>,
        files: BTreeMap<PathBuf, u64>,
        durable: BTreeMap<PathBuf, u64>,
        dirs: BTreeMap<PathBuf, bool>,
    ) -> FaultFs {
        FaultFs {
            inner: Arc::new(Mutex::new(Inner {
                inodes,
                next_inode: self.next_inode,
                files,
                durable,
                dirs,
                ..Inner::default()
            })),
        }
    }

    fn keep_image(&mut self) {
        if !self.recording {
            return;
        }
        let live: BTreeSet<u64> = self
            .files
            .values()
            .chain(self.durable.values())
            .copied()
            .collect();
        let unsynced_max = live
            .iter()
            .map(|ino| {
                let f = &self.inodes[ino];
                f.data.len().saturating_sub(f.synced.len())
            })
            .max()
            .unwrap_or(0);
        // The image must crash exactly as this file system would: keep both
        // sets of entries and both states of every file.
        let inodes = live.iter().map(|i| (*i, self.inodes[i].clone())).collect();
        let fs = self.file_system(
            inodes,
            self.files.clone(),
            self.durable.clone(),
            self.dirs.clone(),
        );
        let label = self.label;
        self.images.push(CrashImage {
            label,
            fs,
            unsynced_max,
        });
    }
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
        self.lock().faults.push(Armed { fault, seen: 0 });
    }

    /// Disarms every fault that has not fired.
    pub fn disarm(&self) {
        self.lock().faults.clear();
    }

    /// How many failures have been injected so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// Faults armed and not fired yet.
    pub fn pending(&self) -> usize {
        self.lock().faults.len()
    }

    /// Calls of `op` so far, failed ones included.
    pub fn count(&self, op: Op) -> u64 {
        self.lock().counts.get(&op).copied().unwrap_or(0)
    }

    /// Successful and failed `sync_data` calls so far.
    pub fn syncs(&self) -> u64 {
        self.count(Op::Sync)
    }

    /// Makes every `sync_data` from now on take `delay`, as on a slow disk
    /// (what group commit exists for).
    pub fn slow_syncs(&self, delay: std::time::Duration) {
        self.lock().sync_delay = delay;
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

    /// A power loss: a new file system holding only the durable entries
    /// whose directories are durable, each file with its durable bytes plus
    /// the first `torn_bytes` of its unsynced tail (a write the device had
    /// partly completed).
    pub fn crash(&self, torn_bytes: usize) -> FaultFs {
        let inner = self.lock();
        let entries: BTreeMap<PathBuf, u64> = inner
            .durable
            .iter()
            .filter(|(path, _)| inner.dirs_durable(path))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        let dirs = inner
            .dirs
            .iter()
            .filter(|(d, durable)| **durable && inner.dirs_durable(d))
            .map(|(d, _)| (d.clone(), true))
            .collect();
        inner.image(&entries, dirs, |f| {
            let mut data = f.synced.clone();
            if f.data.len() > f.synced.len() && f.data.starts_with(&f.synced) {
                let tail = &f.data[f.synced.len()..];
                data.extend_from_slice(&tail[..torn_bytes.min(tail.len())]);
            }
            data
        })
    }

    /// Overwrites bytes of a file in place (durably): simulated media damage.
    pub fn corrupt(&self, path: &Path, offset: usize, xor: u8) {
        let mut inner = self.lock();
        let ino = *inner.files.get(path).expect("file exists");
        let f = inner.inodes.get_mut(&ino).expect("inode exists");
        f.data[offset] ^= xor;
        f.synced = f.data.clone();
    }
}

struct FaultFile {
    fs: FaultFs,
    path: PathBuf,
    ino: u64,
}

impl FaultFile {
    fn write(&mut self, op: Op, offset: Option<u64>, bytes: &[u8]) -> io::Result<()> {
        let mut inner = self.fs.lock();
        let effect = inner.call(op, &self.path);
        let f = inner
            .inodes
            .get_mut(&self.ino)
            .ok_or_else(|| no_file(&self.path))?;
        let (stored, result) = match effect {
            None => (bytes.to_vec(), Ok(())),
            Some(Effect::FlipBit(bit)) => {
                let mut b = bytes.to_vec();
                flip(&mut b, bit);
                (b, Ok(()))
            }
            Some(Effect::Error(errno)) => (
                bytes[..bytes.len() / 2].to_vec(),
                Err(io::Error::from_raw_os_error(errno)),
            ),
        };
        match offset {
            None => f.data.extend_from_slice(&stored),
            Some(at) => {
                let at = at as usize;
                if f.data.len() < at + stored.len() {
                    f.data.resize(at + stored.len(), 0);
                }
                f.data[at..at + stored.len()].copy_from_slice(&stored);
            }
        }
        result
    }
}

impl WriteFile for FaultFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write(Op::Append, None, bytes)
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.write(Op::WriteAt, Some(offset), bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        // Outside the lock: other files are written and synced meanwhile,
        // as on a device.
        let delay = self.fs.lock().sync_delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let mut inner = self.fs.lock();
        inner.keep_image();
        inner.check(Op::Sync, &self.path)?;
        let f = inner
            .inodes
            .get_mut(&self.ino)
            .ok_or_else(|| no_file(&self.path))?;
        f.synced = f.data.clone();
        Ok(())
    }
}

impl Storage for FaultFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut inner = self.lock();
        inner.check(Op::CreateDir, dir)?;
        // The directories to make, innermost first. The walk stops at one
        // of ours, or at a directory whose parent lies outside everything
        // ours: that one stands for a directory that was there before.
        let mut missing = Vec::new();
        for d in dir.ancestors() {
            if d.as_os_str().is_empty() || inner.dirs.contains_key(d) {
                break;
            }
            missing.push(d.to_path_buf());
            let parent_inside = d
                .parent()
                .is_some_and(|p| p.ancestors().any(|a| inner.dirs.contains_key(a)));
            if !parent_inside {
                break;
            }
        }
        for d in missing.into_iter().rev() {
            // A directory made inside one of ours is new, and not yet durable.
            let ours = d.parent().is_some_and(|p| inner.dirs.contains_key(p));
            inner.dirs.insert(d, !ours);
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut inner = self.lock();
        inner.check(Op::List, dir)?;
        if !inner.dirs.contains_key(dir) {
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
        let mut inner = self.lock();
        let flip_at = inner.check(Op::Read, path)?;
        let mut data = inner.inode(path)?.data.clone();
        if let Some(bit) = flip_at {
            flip(&mut data, bit);
        }
        Ok(data)
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn io::Read + Send>> {
        Ok(Box::new(io::Cursor::new(self.read(path)?)))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let mut inner = self.lock();
        inner.check(Op::Create, path)?;
        if inner.files.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
        }
        if !inner.dir_exists(crate::atomic::parent(path)) {
            return Err(no_file(path));
        }
        let ino = inner.next_inode;
        inner.next_inode += 1;
        inner.inodes.insert(ino, Inode::default());
        inner.files.insert(path.to_path_buf(), ino);
        Ok(Box::new(FaultFile {
            fs: self.clone(),
            path: path.to_path_buf(),
            ino,
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let mut inner = self.lock();
        inner.check(Op::OpenAppend, path)?;
        let ino = *inner.files.get(path).ok_or_else(|| no_file(path))?;
        Ok(Box::new(FaultFile {
            fs: self.clone(),
            path: path.to_path_buf(),
            ino,
        }))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut inner = self.lock();
        inner.check(Op::Truncate, path)?;
        let ino = *inner.files.get(path).ok_or_else(|| no_file(path))?;
        let f = inner.inodes.get_mut(&ino).expect("inode exists");
        f.data.truncate(len as usize);
        f.synced = f.data.clone();
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut inner = self.lock();
        inner.check(Op::Rename, from)?;
        let ino = inner.files.remove(from).ok_or_else(|| no_file(from))?;
        inner.files.insert(to.to_path_buf(), ino);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut inner = self.lock();
        inner.check(Op::Remove, path)?;
        inner
            .files
            .remove(path)
            .map(drop)
            .ok_or_else(|| no_file(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut inner = self.lock();
        inner.keep_image();
        inner.check(Op::SyncDir, dir)?;
        let in_dir = |p: &Path| p.parent() == Some(dir);
        inner.durable.retain(|p, _| !in_dir(p));
        let now: Vec<(PathBuf, u64)> = inner
            .files
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        inner.durable.extend(now);
        for (d, durable) in inner.dirs.iter_mut() {
            if in_dir(d) {
                *durable = true;
            }
        }
        Ok(())
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        let mut inner = self.lock();
        inner.check(Op::Len, path)?;
        Ok(inner.inode(path)?.data.len() as u64)
    }

    fn exists(&self, path: &Path) -> bool {
        let inner = self.lock();
        inner.files.contains_key(path) || inner.dirs.contains_key(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs_with_dir() -> (FaultFs, PathBuf) {
        let fs = FaultFs::new();
        let dir = PathBuf::from("/data");
        fs.create_dir_all(&dir).unwrap();
        (fs, dir)
    }

    #[test]
    fn a_crash_keeps_synced_bytes_and_synced_entries_only() {
        let (fs, dir) = fs_with_dir();
        let a = dir.join("a");
        let mut f = fs.create(&a).unwrap();
        f.append(b"durable").unwrap();
        f.sync_data().unwrap();
        // Synced bytes, but the name was never made durable.
        assert!(!fs.crash(0).exists(&a));
        fs.sync_dir(&dir).unwrap();
        f.append(b" and not").unwrap();
        assert_eq!(fs.crash(0).read(&a).unwrap(), b"durable");
        assert_eq!(fs.crash(4).read(&a).unwrap(), b"durable and");
        assert_eq!(fs.crash(usize::MAX).read(&a).unwrap(), b"durable and not");
    }

    #[test]
    fn an_unsynced_rename_or_removal_is_rolled_back_by_a_crash() {
        let (fs, dir) = fs_with_dir();
        let (old, new) = (dir.join("target"), dir.join(".target.tmp"));
        for (path, text) in [(&old, b"old"), (&new, b"new")] {
            let mut f = fs.create(path).unwrap();
            f.append(text).unwrap();
            f.sync_data().unwrap();
        }
        fs.sync_dir(&dir).unwrap();
        fs.rename(&new, &old).unwrap();
        assert_eq!(fs.read(&old).unwrap(), b"new");
        let crashed = fs.crash(0);
        assert_eq!(crashed.read(&old).unwrap(), b"old");
        assert_eq!(crashed.read(&new).unwrap(), b"new");
        fs.sync_dir(&dir).unwrap();
        assert_eq!(fs.crash(0).read(&old).unwrap(), b"new");
        assert!(!fs.crash(0).exists(&new));
        fs.remove(&old).unwrap();
        assert!(fs.crash(0).exists(&old));
        fs.sync_dir(&dir).unwrap();
        assert!(!fs.crash(0).exists(&old));
    }

    #[test]
    fn a_new_directory_needs_its_parent_synced() {
        let (fs, dir) = fs_with_dir();
        let sub = dir.join("sub");
        fs.create_dir_all(&sub).unwrap();
        let file = sub.join("f");
        let mut f = fs.create(&file).unwrap();
        f.append(b"x").unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(&sub).unwrap();
        let crashed = fs.crash(0);
        assert!(!crashed.exists(&sub) && !crashed.exists(&file));
        fs.sync_dir(&dir).unwrap();
        assert_eq!(fs.crash(0).read(&file).unwrap(), b"x");
    }

    #[test]
    fn faults_fire_at_the_nth_matching_call_only() {
        let (fs, dir) = fs_with_dir();
        let other = PathBuf::from("/elsewhere");
        fs.create_dir_all(&other).unwrap();
        fs.inject(Fault::error(Op::Create, ENOSPC).nth(2).under(&dir));
        fs.create(&other.join("1")).unwrap();
        fs.create(&dir.join("1")).unwrap();
        fs.create(&other.join("2")).unwrap();
        let err = fs.create(&dir.join("2")).err().unwrap();
        assert_eq!(err.raw_os_error(), Some(ENOSPC));
        assert!(!fs.exists(&dir.join("2")));
        fs.create(&dir.join("3")).unwrap();
        assert_eq!((fs.injected(), fs.pending()), (1, 0));
        assert_eq!(fs.count(Op::Create), 5);
    }

    #[test]
    fn bit_flips_corrupt_what_is_stored_or_what_is_read() {
        let (fs, dir) = fs_with_dir();
        let path = dir.join("f");
        let mut f = fs.create(&path).unwrap();
        fs.inject(Fault::flip_bit(Op::Append, 9));
        f.append(&[0, 0, 0]).unwrap();
        assert_eq!(fs.read(&path).unwrap(), [0, 2, 0]);
        fs.inject(Fault::flip_bit(Op::Read, 0));
        assert_eq!(fs.read(&path).unwrap(), [1, 2, 0]);
        // Only that read was damaged.
        assert_eq!(fs.read(&path).unwrap(), [0, 2, 0]);
        fs.inject(Fault::error(Op::Append, EIO));
        let err = f.append(&[7, 7, 7, 7]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(EIO));
        assert_eq!(fs.read(&path).unwrap(), [0, 2, 0, 7, 7], "half was written");
    }
}
