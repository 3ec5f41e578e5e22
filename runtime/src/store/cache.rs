//! Compiled code, cached by key (`cache/<key>.cwasm`, see `loader`), each file with its
//! SHA-256 beside it (`cache/<key>.sha256`), checked before the code reaches wasmtime,
//! which then maps the file rather than copying it: what a function's first request
//! does, so a restart reads none of it before it serves.

use std::fs;
use std::io;
use std::path::PathBuf;

use super::files::write_file;
use super::{FunctionStore, Quarantined, digest};

impl FunctionStore {
    /// Where compiled code for `key` lives.
    pub fn cache_path(&self, key: &str) -> PathBuf {
        self.dir.join("cache").join(format!("{key}.cwasm"))
    }

    /// Where the SHA-256 of the compiled code for `key` lives.
    fn checksum_path(&self, key: &str) -> PathBuf {
        self.dir.join("cache").join(format!("{key}.sha256"))
    }

    /// Caches compiled `code` under `key`: the code, then its SHA-256.
    pub fn put_compiled(&self, key: &str, code: &[u8]) -> io::Result<()> {
        let _writing = self.write_lock()?;
        write_file(&self.cache_path(key), code, "cache")?;
        write_file(&self.checksum_path(key), digest(code).as_bytes(), "cache")
    }

    /// The file of compiled code cached under `key`, checked: `Ok(None)` when there is
    /// none, an error when there is one that does not match the SHA-256 recorded with
    /// it (or has none), in which case it has been moved to `quarantine/`. The file is
    /// read once, through the hash, and not kept: the caller maps it.
    pub fn compiled(&self, key: &str) -> io::Result<Option<PathBuf>> {
        let path = self.cache_path(key);
        let sum_path = self.checksum_path(key);
        let Some(found) = file_digest(&path)? else {
            return Ok(None);
        };
        let recorded = fs::read_to_string(&sum_path).unwrap_or_default();
        if recorded.trim() == found {
            return Ok(Some(path));
        }
        // Another runtime sharing the store may be between writing the code and its
        // SHA-256: under the write lock, what is there is what it is.
        let _writing = self.write_lock()?;
        let Some(found) = file_digest(&path)? else {
            return Ok(None);
        };
        let recorded = fs::read_to_string(&sum_path).unwrap_or_default();
        if recorded.trim() == found {
            return Ok(Some(path));
        }
        let reason = if recorded.is_empty() {
            "no SHA-256 was recorded with it".to_string()
        } else {
            "it does not match the SHA-256 recorded with it".to_string()
        };
        self.quarantine(&path, "cache", reason.clone())?;
        let _ = fs::remove_file(&sum_path);
        Err(io::Error::new(io::ErrorKind::InvalidData, reason))
    }

    /// Sets a cached file that wasmtime would not load aside.
    pub fn quarantine_compiled(&self, key: &str, reason: String) -> io::Result<Quarantined> {
        let _writing = self.write_lock()?;
        let path = self.cache_path(key);
        let _ = fs::remove_file(self.checksum_path(key));
        self.quarantine(&path, "cache", reason)
    }
}

/// `sha256:<hex>` of the file at `path`, read in pieces; `None` if there is no file.
fn file_digest(path: &std::path::Path) -> io::Result<Option<String>> {
    use sha2::Digest as _;
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut hasher = sha2::Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(Some(format!("sha256:{:x}", hasher.finalize())))
}
