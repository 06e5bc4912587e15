//! The one way the host writes a file outside the log: modules, snapshots,
//! backup manifests and anything else that must be whole or absent.
//!
//! A temporary file beside the target is written and fsynced, renamed over
//! the target, and the directory is fsynced so the rename itself survives a
//! crash. Readers see the old file or the new one, never a mix; a crash
//! leaves at most a stray temporary file, which [`is_temporary`] recognizes.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Prefix and suffix of temporary files: `.NAME.tmp`.
const TMP_PREFIX: &str = ".";
const TMP_SUFFIX: &str = ".tmp";

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Writes `path` atomically with whatever `fill` writes into the temporary
/// file (which it may also seek in). Nothing is renamed if `fill` fails; the
/// temporary file is removed.
pub fn write_atomic_with<T>(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<T>,
) -> io::Result<T> {
    let dir = parent(path);
    let tmp = temporary_path(path)?;
    let result = (|| {
        let mut file = File::create(&tmp)?;
        let out = fill(&mut file)?;
        file.sync_all()?;
        Ok(out)
    })();
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    fs::rename(&tmp, path)?;
    sync_dir(dir)?;
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

/// Fsyncs a directory, making creations, renames and removals in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn failed_fill_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |f| {
            f.write_all(b"half")?;
            Err::<(), _>(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert!(!temporary_path(&path).unwrap().exists());
        assert!(is_temporary(&temporary_path(&path).unwrap()));
        assert!(!is_temporary(&path));
    }
}
