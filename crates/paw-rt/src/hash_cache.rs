//! Process-wide memo of model weight hashes. Hashing a model reads every byte (a 1.1 GB GGUF
//! takes seconds), and one compile asks for the same hashes several times (compile key,
//! pipeline, interpreter identity). An entry is keyed by what the files look like on disk:
//! canonical path, length and modification time of each file hashed (and, on Unix, inode and
//! status-change time), so a file replaced or rewritten in place is hashed again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use crate::error::Result;

/// What one file looks like on disk, as far as the cache can tell without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Stamp {
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
    /// Unix only: (device, inode, ctime seconds, ctime nanoseconds); a rewrite that restores the
    /// old mtime still moves the status-change time.
    unix: Option<(u64, u64, i64, i64)>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let path = path.canonicalize().ok()?;
    let meta = std::fs::metadata(&path).ok()?;
    Some(stamp_of(path, &meta))
}

fn stamp_of(path: PathBuf, meta: &std::fs::Metadata) -> Stamp {
    #[cfg(unix)]
    let unix = {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec()))
    };
    #[cfg(not(unix))]
    let unix = None;
    Stamp {
        path,
        len: meta.len(),
        modified: meta.modified().ok(),
        unix,
    }
}

fn stamps(files: &[PathBuf]) -> Option<Vec<Stamp>> {
    files.iter().map(|f| stamp(f)).collect()
}

type Memo = HashMap<Vec<Stamp>, String>;

fn memo() -> &'static Mutex<Memo> {
    static MEMO: OnceLock<Mutex<Memo>> = OnceLock::new();
    MEMO.get_or_init(Mutex::default)
}

/// The hash of `files` (in that order) as `compute` gives it, computed at most once per state of
/// the files on disk. A file that cannot be stat'ed, or that changes while it is hashed, is not
/// memoized (its hash, or the error `compute` returns, passes through).
pub(crate) fn cached(
    files: &[PathBuf],
    compute: impl FnOnce() -> Result<String>,
) -> Result<String> {
    memoized(|| stamps(files), compute)
}

/// [`cached`] for one file already open: the stamp is taken from the open handle (`fstat`), so
/// the hash describes the file the caller holds and goes on reading, even if the path is
/// replaced meanwhile. `compute` must hash through the same handle.
pub(crate) fn cached_open(
    path: &Path,
    file: &std::fs::File,
    compute: impl FnOnce() -> Result<String>,
) -> Result<String> {
    memoized(
        || {
            Some(vec![stamp_of(
                path.canonicalize().ok()?,
                &file.metadata().ok()?,
            )])
        },
        compute,
    )
}

/// `compute`'s hash, memoized under what `stamp_now` says the files look like, before and
/// after computing (a change in between is not memoized).
fn memoized(
    stamp_now: impl Fn() -> Option<Vec<Stamp>>,
    compute: impl FnOnce() -> Result<String>,
) -> Result<String> {
    let Some(before) = stamp_now() else {
        return compute();
    };
    let lock = || memo().lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(hash) = lock().get(&before) {
        return Ok(hash.clone());
    }
    // Computed without the lock held: other models hash in parallel. Two threads asking for the
    // same file at once may both hash it; they get the same answer.
    let hash = compute()?;
    if stamp_now().as_ref() == Some(&before) {
        lock().insert(before, hash.clone());
    }
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::fs::{File, FileTimes};
    use std::time::Duration;

    use super::*;

    #[test]
    fn second_call_does_not_rehash_and_a_changed_file_does() {
        let dir = tempfile::tempdir().expect("test setup");
        let path = dir.path().join("model.gguf");
        std::fs::write(&path, b"first content").expect("test setup");
        let files = [path.clone()];
        let runs = Cell::new(0);
        let hash = || {
            cached(&files, || {
                runs.set(runs.get() + 1);
                Ok(paw_format::hash_file(&path)?)
            })
            .expect("hashes")
        };

        let first = hash();
        assert_eq!(first, paw_format::hash_file(&path).expect("test setup"));
        assert_eq!(hash(), first);
        // Through another spelling of the same path too.
        let other = dir.path().join(".").join("model.gguf");
        let again = cached(&[other], || unreachable!("memoized")).expect("test setup");
        assert_eq!(again, first);
        assert_eq!(runs.get(), 1, "the second call must not read the file");

        // Same length, different bytes, an older mtime: re-hashed (the timestamps are set
        // explicitly, so the test does not depend on the clock ticking between writes).
        let mtime = std::fs::metadata(&path)
            .expect("test setup")
            .modified()
            .expect("test setup");
        std::fs::write(&path, b"other content").expect("test setup");
        let f = File::options().write(true).open(&path).expect("test setup");
        f.set_times(FileTimes::new().set_modified(mtime - Duration::from_secs(60)))
            .expect("test setup");
        drop(f);
        let second = hash();
        assert_eq!(runs.get(), 2);
        assert_ne!(second, first);
        assert_eq!(second, paw_format::hash_file(&path).expect("test setup"));

        std::fs::write(&path, b"third content").expect("test setup");
        let f = File::options().write(true).open(&path).expect("test setup");
        f.set_times(FileTimes::new().set_modified(mtime + Duration::from_secs(60)))
            .expect("test setup");
        drop(f);
        let third = hash();
        assert_eq!(runs.get(), 3);
        assert_eq!(third, paw_format::hash_file(&path).expect("test setup"));
        assert_eq!(hash(), third);
        assert_eq!(runs.get(), 3);
    }

    #[test]
    fn missing_file_is_an_error_and_not_memoized() {
        let dir = tempfile::tempdir().expect("test setup");
        let path = dir.path().join("absent.gguf");
        assert!(crate::gguf::weights_hash(&path).is_err());
        std::fs::write(&path, b"now here").expect("test setup");
        assert_eq!(
            crate::gguf::weights_hash(&path).expect("test setup"),
            paw_format::hash_file(&path).expect("test setup")
        );
    }
}
