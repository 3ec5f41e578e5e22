//! Compiled code, cached by key (`cache/<key>.cwasm`, see `loader`), each file with its
//! tag beside it (`cache/<key>.tag`: HMAC-SHA256 of the code under the store's code key,
//! see the module above), checked before the code reaches wasmtime, which then maps the
//! file rather than copying it: what a function's first request does, so a restart
//! reads none of it before it serves. Code whose tag is missing or wrong (damaged, or
//! written by someone without the key) is set aside and compiled again.

use std::fs;
use std::io;
use std::path::PathBuf;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::files::write_file;
use super::{CodeKey, FunctionStore, Quarantined};

impl FunctionStore {
    /// Where compiled code for `key` lives.
    pub fn cache_path(&self, key: &str) -> PathBuf {
        self.dir.join("cache").join(format!("{key}.cwasm"))
    }

    /// Where the tag of the compiled code for `key` lives.
    fn tag_path(&self, key: &str) -> PathBuf {
        self.dir.join("cache").join(format!("{key}.tag"))
    }

    fn code_key(&self) -> io::Result<&CodeKey> {
        self.code_key.as_deref().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "this store caches no compiled code (shared, without --cache-key-file)",
            )
        })
    }

    /// Caches compiled `code` under `key`: the code, then its tag.
    pub fn put_compiled(&self, key: &str, code: &[u8]) -> io::Result<()> {
        let mut mac = new_mac(self.code_key()?);
        mac.update(code);
        let tag = format!("{:x}", mac.finalize().into_bytes());
        let _writing = self.write_lock()?;
        write_file(&self.cache_path(key), code, "cache")?;
        write_file(&self.tag_path(key), tag.as_bytes(), "cache")
    }

    /// The file of compiled code cached under `key`, checked: `Ok(None)` when there is
    /// none, an error when there is one without a valid tag, in which case it has been
    /// moved to `quarantine/`. The file is read once, through the MAC, and not kept:
    /// the caller maps it.
    pub fn compiled(&self, key: &str) -> io::Result<Option<PathBuf>> {
        let code_key = self.code_key()?;
        let path = self.cache_path(key);
        let tag_path = self.tag_path(key);
        match self.tag_holds(code_key, &path, &tag_path)? {
            None => return Ok(None),
            Some(true) => return Ok(Some(path)),
            Some(false) => {}
        }
        // Another runtime sharing the store may be between writing the code and its
        // tag: under the write lock, what is there is what it is.
        let _writing = self.write_lock()?;
        let reason = match self.tag_holds(code_key, &path, &tag_path)? {
            None => return Ok(None),
            Some(true) => return Ok(Some(path)),
            Some(false) if !tag_path.exists() => "no tag was recorded with it",
            Some(false) => "its tag is not valid under this runtime's code key",
        };
        self.quarantine(&path, "cache", reason.to_string())?;
        let _ = fs::remove_file(&tag_path);
        Err(io::Error::new(io::ErrorKind::InvalidData, reason))
    }

    /// Whether the code at `path` carries a valid tag at `tag_path`; `None` if there is
    /// no code.
    fn tag_holds(
        &self,
        code_key: &CodeKey,
        path: &std::path::Path,
        tag_path: &std::path::Path,
    ) -> io::Result<Option<bool>> {
        use std::io::Read;
        let mut file = match fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut mac = new_mac(code_key);
        let mut buffer = vec![0u8; 64 << 10];
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            mac.update(&buffer[..n]);
        }
        let recorded = fs::read_to_string(tag_path).unwrap_or_default();
        let expected = format!("{:x}", mac.finalize().into_bytes());
        // Constant time: a forger learns nothing from how long a check takes.
        use subtle::ConstantTimeEq;
        Ok(Some(
            expected.as_bytes().ct_eq(recorded.trim().as_bytes()).into(),
        ))
    }

    /// Sets a cached file that wasmtime would not load aside.
    pub fn quarantine_compiled(&self, key: &str, reason: String) -> io::Result<Quarantined> {
        let _writing = self.write_lock()?;
        let path = self.cache_path(key);
        let _ = fs::remove_file(self.tag_path(key));
        self.quarantine(&path, "cache", reason)
    }
}

fn new_mac(key: &CodeKey) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef-0123456789abcdef";

    #[test]
    fn code_loads_only_with_a_tag_made_with_the_stores_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = FunctionStore::open(dir.path()).unwrap();
        store.put_compiled(KEY, b"machine code").unwrap();
        assert_eq!(store.compiled(KEY).unwrap(), Some(store.cache_path(KEY)));

        // Planted: other code beside the right SHA-256 (what used to be checked), no tag.
        fs::write(store.cache_path(KEY), b"planted code").unwrap();
        fs::write(
            dir.path().join("cache").join(format!("{KEY}.sha256")),
            super::super::digest(b"planted code"),
        )
        .unwrap();
        let err = store.compiled(KEY).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(!store.cache_path(KEY).exists(), "set aside");

        // Tagged with another key: refused too.
        store.put_compiled(KEY, b"machine code").unwrap();
        let other = FunctionStore::open_shared(tempfile::tempdir().unwrap().path())
            .unwrap()
            .with_code_key([7; 32]);
        let mut mac = new_mac(other.code_key().unwrap());
        mac.update(b"planted code");
        fs::write(store.cache_path(KEY), b"planted code").unwrap();
        fs::write(
            store.tag_path(KEY),
            format!("{:x}", mac.finalize().into_bytes()),
        )
        .unwrap();
        let err = store.compiled(KEY).unwrap_err();
        assert!(err.to_string().contains("not valid"), "{err}");
    }

    #[test]
    fn a_shared_store_caches_code_only_with_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let shared = FunctionStore::open_shared(dir.path()).unwrap();
        assert!(!shared.caches_code());
        assert_eq!(
            shared.put_compiled(KEY, b"code").unwrap_err().kind(),
            io::ErrorKind::Unsupported
        );
        let keyed = shared.with_code_key([1; 32]);
        keyed.put_compiled(KEY, b"code").unwrap();
        let replica = FunctionStore::open_shared(dir.path())
            .unwrap()
            .with_code_key([1; 32]);
        assert!(replica.compiled(KEY).unwrap().is_some(), "same key: shared");
    }

    #[test]
    fn a_store_used_alone_keeps_its_key_across_starts() {
        let dir = tempfile::tempdir().unwrap();
        let store = FunctionStore::open(dir.path()).unwrap();
        store.put_compiled(KEY, b"code").unwrap();
        drop(store);
        let store = FunctionStore::open(dir.path()).unwrap();
        assert!(store.compiled(KEY).unwrap().is_some());
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("cache-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
