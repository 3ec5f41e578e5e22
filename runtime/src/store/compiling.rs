//! Markers for compiles in progress (`compiling/<digest>.<random>`), each locked by the
//! process compiling: a marker found unlocked at start is a compile the process did not
//! live through (a crash, an OOM kill), and its version is set aside instead of being
//! compiled again at every start. A process that dies drops its lock with it; another
//! runtime sharing the store still holds the lock of a compile it is running.

use std::fs::{self, File};
use std::io;
use std::path::PathBuf;

use super::{FunctionStore, open_lock_file};

/// A compile in progress; the marker goes when this is dropped.
#[derive(Debug)]
pub struct CompileMarker {
    path: PathBuf,
    file: File,
}

impl Drop for CompileMarker {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

impl FunctionStore {
    fn compiling_dir(&self) -> PathBuf {
        self.dir.join("compiling")
    }

    /// Marks component `digest` as being compiled by this process until the marker
    /// is dropped.
    pub fn compiling(&self, digest: &str) -> io::Result<CompileMarker> {
        let hex = super::digest_hex(digest)?;
        let dir = self.compiling_dir();
        fs::create_dir_all(&dir)?;
        let suffix = getrandom::u64().map_err(io::Error::other)?;
        let path = dir.join(format!("{hex}.{suffix:016x}"));
        let file = open_lock_file(&path)?;
        file.lock()?;
        Ok(CompileMarker { path, file })
    }

    /// The digests of compiles a process did not live through: markers no process
    /// holds. Each marker is removed as it is reported.
    pub fn interrupted_compiles(&self) -> io::Result<Vec<String>> {
        let entries = match fs::read_dir(self.compiling_dir()) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut found = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let Some(hex) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split('.').next())
                .map(str::to_string)
            else {
                continue;
            };
            let Ok(file) = File::open(&path) else {
                continue;
            };
            // Held: a compile running now, in this process or another.
            if file.try_lock().is_err() {
                continue;
            }
            let _ = fs::remove_file(&path);
            let digest = format!("sha256:{hex}");
            if super::digest_hex(&digest).is_ok() && !found.contains(&digest) {
                found.push(digest);
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_marker_left_behind_is_reported_once_and_a_held_one_never() {
        let dir = tempfile::tempdir().unwrap();
        let store = FunctionStore::open(dir.path()).unwrap();
        let held = store.compiling(DIGEST).unwrap();
        assert_eq!(store.interrupted_compiles().unwrap(), Vec::<String>::new());
        // What a process that died mid-compile leaves: the file, no lock on it.
        let stale = dir
            .path()
            .join("compiling")
            .join(format!("{}.00", &DIGEST[7..]));
        fs::write(&stale, b"").unwrap();
        assert_eq!(
            store.interrupted_compiles().unwrap(),
            vec![DIGEST.to_string()]
        );
        assert!(!stale.exists());
        assert_eq!(store.interrupted_compiles().unwrap(), Vec::<String>::new());
        // The held marker is still there; dropped, it leaves nothing.
        assert!(held.path.exists());
        drop(held);
        assert_eq!(
            fs::read_dir(dir.path().join("compiling")).unwrap().count(),
            0
        );
    }

    #[test]
    fn a_marker_name_that_is_not_a_digest_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = FunctionStore::open(dir.path()).unwrap();
        assert!(store.compiling("sha256:../../x").is_err());
        fs::create_dir_all(dir.path().join("compiling")).unwrap();
        fs::write(dir.path().join("compiling").join("..%2f.00"), b"").unwrap();
        assert_eq!(store.interrupted_compiles().unwrap(), Vec::<String>::new());
    }
}
