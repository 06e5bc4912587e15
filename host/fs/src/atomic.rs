//! The one way the host writes a file outside the log: module code,
//! snapshots, backup manifests and anything else that must be whole or
//! absent.
//!
//! A temporary file beside the target is written and synced, renamed over
//! the target, and the directory is synced so the rename itself survives a
//! crash. Readers see the old file or the new one, never a mix; a crash
//! leaves at most a stray temporary file, which [`is_temporary`] recognizes.
//! A failure at any step leaves the old file in place (and the temporary
//! file removed where the file system still lets it be).

use std::io;
use std::path::{Path, PathBuf};

use crate::storage::{Storage, WriteFile};

/// Prefix and suffix of temporary files: `.NAME.tmp`.
const TMP_PREFIX: &str = ".";
const TMP_SUFFIX: &str = ".tmp";

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(storage, path, |file| file.append(bytes))
}

/// Writes `path` atomically with whatever `fill` writes into the temporary
/// file. Nothing is renamed if `fill` or the sync fails; the temporary file
/// is removed then.
pub fn write_atomic_with<T>(
    storage: &dyn Storage,
    path: &Path,
    fill: impl FnOnce(&mut dyn WriteFile) -> io::Result<T>,
) -> io::Result<T> {
    let dir = parent(path);
    let tmp = temporary_path(path)?;
    // One left by a crash (or a failed removal) is never the target: start
    // afresh.
    if storage.exists(&tmp) {
        storage.remove(&tmp)?;
    }
    let mut file = storage.create(&tmp)?;
    let written = fill(&mut *file).and_then(|out| file.sync_data().map(|()| out));
    drop(file);
    let out = match written {
        Ok(out) => out,
        Err(e) => {
            let _ = storage.remove(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = storage.rename(&tmp, path) {
        let _ = storage.remove(&tmp);
        return Err(e);
    }
    storage.sync_dir(dir)?;
    Ok(out)
}

/// The temporary file [`write_atomic`] uses for `path`.
pub fn temporary_path(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} has no file name", path.display())))?;
    Ok(parent(path).join(format!(
        "{TMP_PREFIX}{}{TMP_SUFFIX}",
        name.to_string_lossy()
    )))
}

/// Whether `path` is a temporary file left by an interrupted atomic write.
pub fn is_temporary(path: &Path) -> bool {
    path.file_name()
        .map(|n| n.to_string_lossy())
        .is_some_and(|n| n.starts_with(TMP_PREFIX) && n.ends_with(TMP_SUFFIX))
}

/// The directory holding `path` (`.` for a bare name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RealFs;
    use crate::fault::{EIO, Fault, FaultFs, Op};

    #[test]
    fn replaces_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&RealFs, &path, b"one").unwrap();
        write_atomic(&RealFs, &path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn failed_fill_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&RealFs, &path, b"old").unwrap();
        let err = write_atomic_with(&RealFs, &path, |f| {
            f.append(b"half")?;
            Err::<(), _>(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(!temporary_path(&path).unwrap().exists());
        assert!(is_temporary(&temporary_path(&path).unwrap()));
        assert!(!is_temporary(&path));
    }

    /// A failure at each step of the write: the caller hears of it, the old
    /// content is what a reader and a power loss both see, and a write after
    /// the fault is healed succeeds.
    #[test]
    fn a_failure_at_any_step_keeps_the_old_file_through_a_power_loss() {
        let dir = Path::new("/d");
        let path = dir.join("f");
        for op in [Op::Create, Op::Append, Op::Sync, Op::Rename, Op::SyncDir] {
            let fs = FaultFs::new();
            fs.create_dir_all(dir).unwrap();
            write_atomic(&fs, &path, b"old").unwrap();
            fs.inject(Fault::error(op, EIO));
            let err = write_atomic(&fs, &path, b"new content").unwrap_err();
            assert_eq!(err.raw_os_error(), Some(EIO), "{op:?}");
            assert_eq!(fs.injected(), 1, "{op:?}");
            let after = fs.read(&path).unwrap();
            if op == Op::SyncDir {
                // The rename happened; only its durability is unknown.
                assert_eq!(after, b"new content");
            } else {
                assert_eq!(after, b"old", "{op:?}");
                assert!(!fs.exists(&temporary_path(&path).unwrap()), "{op:?}");
            }
            for torn in [0, usize::MAX] {
                let crashed = fs.crash(torn).read(&path).unwrap();
                assert!(
                    crashed == b"old" || (op == Op::SyncDir && crashed == b"new content"),
                    "{op:?}: {crashed:?}"
                );
            }
            write_atomic(&fs, &path, b"newer").unwrap();
            assert_eq!(fs.crash(0).read(&path).unwrap(), b"newer", "{op:?}");
        }
    }
}
