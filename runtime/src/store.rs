//! The durable function store: what was deployed survives restarts, and a crash at any
//! moment leaves either the old or the new version of a function, never a broken one.
//!
//! Layout under the store directory:
//!
//! ```text
//! blobs/<sha256>.wasm        the component bytes, content-addressed
//! functions/<name>.json      the deployed version: digest, size, settings, deployed_at
//! cache/<key>.cwasm          compiled code, keyed by digest and engine (see `loader`)
//! cache/<key>.sha256         the SHA-256 of that code, checked before it is loaded
//! quarantine/                what was found broken at start, set aside
//! .lock                      held while a runtime uses the store (shared or exclusive)
//! .write-lock                held by whoever writes or removes anything above
//! ```
//!
//! The store is private to the runtime's user: directories 0700, files 0600 (manifests
//! hold environment values, the cache holds machine code the runtime runs). A store that
//! another user owns or can write is refused at start.
//!
//! A deploy writes the blob first, then the manifest; each file is written to a temporary
//! name, fsynced, renamed over the final name, and the directory fsynced. A manifest
//! therefore only ever names a complete blob; a crash between the two leaves an unused
//! blob, which the next start removes.
//!
//! Several runtimes may share one store (`--shared-store`: replicas on one volume). Each
//! holds `.lock` shared (a runtime without the flag holds it exclusively, so the two
//! never mix), and every change (deploy, delete, cached code, what a start clears or
//! sets aside) happens under the exclusive `.write-lock`, so that no replica ever
//! removes a blob another is about to name, or a temporary file another is writing.
//! Readers take no lock: every file appears whole, by rename. Both are `flock(2)`
//! locks, which the kernel drops with a process that dies, and which shared file
//! systems made for this (NFSv4, CephFS, EFS) carry between machines.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::limits::Settings;
use crate::name::FunctionName;

impl Record {
    /// A new version of `name` made of `wasm`, deployed now. The digest is computed
    /// here, once per deploy; everything after (cache key, store blob) reuses it.
    pub fn new(name: FunctionName, wasm: &[u8], settings: Settings) -> Self {
        Self {
            name,
            digest: digest(wasm),
            size: wasm.len() as u64,
            settings,
            deployed_at: unix_now(),
        }
    }
}

/// One deployed version, as the manifest records it and the API shows it. A loaded
/// [`crate::function::Function`] holds its record; nothing copies its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Checked when the manifest is read: one that names no valid function does not
    /// parse.
    pub name: FunctionName,
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    pub size: u64,
    pub settings: Settings,
    /// Seconds since the Unix epoch.
    pub deployed_at: u64,
}

#[derive(Debug, Clone)]
pub struct FunctionStore {
    dir: PathBuf,
    /// Whether other runtimes may use the store at the same time.
    shared: bool,
    /// What [`FunctionStore::open`] set aside.
    quarantined: Vec<Quarantined>,
    /// `.lock`, locked (shared or exclusive) for as long as any clone of the store lives.
    _lock: Arc<File>,
    /// `.write-lock`; the mutex makes the threads of this process take turns too (a
    /// `flock` is held by an open file, which they all share).
    writer: Arc<std::sync::Mutex<File>>,
}

/// The store's `.write-lock`, held: no other process or thread changes the store.
struct WriteGuard<'a>(std::sync::MutexGuard<'a, File>);

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// A file found broken at start and moved to `quarantine/`, so that the rest can start.
#[derive(Debug, Clone, PartialEq)]
pub struct Quarantined {
    /// The file's name where it was (e.g. `functions/x.json`).
    pub file: String,
    pub reason: String,
}

/// Why a store directory was refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(
        "{path} is writable by other users (mode {mode:o}): the store holds machine code the \
         runtime runs; `chmod 700` it"
    )]
    WritableByOthers { path: String, mode: u32 },
    #[error("{path} belongs to another user (uid {owner}, this process runs as {me})")]
    NotOurs { path: String, owner: u32, me: u32 },
    #[error(
        "another process (a second runtime?) is using the store {0}; two would corrupt it \
         (runtimes that share a store all run with --shared-store)"
    )]
    InUse(String),
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

impl FunctionStore {
    /// Opens (creating if needed, private) the store at `dir` for this process alone;
    /// refuses one another user owns or can write, or another runtime is using. Clears
    /// what an interrupted write left behind (temporary files, blobs no manifest names)
    /// and moves aside, to `quarantine/`, every manifest that does not parse, names
    /// another function than its file, or whose blob is missing or does not match its
    /// digest: the rest start (see [`FunctionStore::quarantined`]).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_as(dir, false)
    }

    /// Opens the store at `dir` like [`FunctionStore::open`], to be shared with other
    /// runtimes that open it this way (refused while one uses it alone).
    pub fn open_shared(dir: &Path) -> Result<Self, StoreError> {
        Self::open_as(dir, true)
    }

    fn open_as(dir: &Path, shared: bool) -> Result<Self, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        make_private(dir)?;
        let lock = open_lock_file(&dir.join(".lock"))?;
        let locked = match shared {
            true => lock.try_lock_shared(),
            false => lock.try_lock(),
        };
        match locked {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StoreError::InUse(dir.display().to_string()));
            }
            Err(fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        let mut store = Self {
            dir: dir.to_path_buf(),
            shared,
            quarantined: Vec::new(),
            _lock: Arc::new(lock),
            writer: Arc::new(std::sync::Mutex::new(open_lock_file(
                &dir.join(".write-lock"),
            )?)),
        };
        // Under the write lock, a temporary file is one a writer left when it died, and
        // a blob no manifest names is not about to be named.
        let _writing = store.write_lock()?;
        for sub in ["blobs", "functions", "cache", "quarantine"] {
            let sub = dir.join(sub);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&sub)?;
            make_private(&sub)?;
            for entry in fs::read_dir(&sub)? {
                let path = entry?.path();
                if path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(".tmp-"))
                {
                    fs::remove_file(&path)?;
                } else if path.is_file() {
                    make_private(&path)?;
                }
            }
        }
        let mut quarantined = Vec::new();
        for (path, record) in store.manifests()? {
            if let Err(reason) = record.and_then(|r| store.check_manifest(&path, &r)) {
                quarantined.push(store.quarantine(&path, "functions", reason)?);
            }
        }
        let used: std::collections::HashSet<String> = store
            .list()?
            .into_iter()
            .map(|r| blob_file_name(&r.digest))
            .collect();
        for entry in fs::read_dir(dir.join("blobs"))? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if !used.contains(&name) {
                fs::remove_file(&path)?;
            }
        }
        drop(_writing);
        store.quarantined = quarantined;
        Ok(store)
    }

    /// Whether other runtimes may be using the store too.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// Takes `.write-lock`, waiting for whoever holds it.
    fn write_lock(&self) -> io::Result<WriteGuard<'_>> {
        let file = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        file.lock()?;
        Ok(WriteGuard(file))
    }

    /// What the last [`FunctionStore::open`] moved to `quarantine/`, and why.
    pub fn quarantined(&self) -> &[Quarantined] {
        &self.quarantined
    }

    /// A manifest that names the function its file is named after, and whose blob is
    /// there and matches its digest.
    fn check_manifest(&self, path: &Path, record: &Record) -> Result<(), String> {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if *record.name != *stem {
            return Err(format!("it names function {:?}", record.name));
        }
        self.wasm(record).map(drop).map_err(|e| e.to_string())
    }

    /// Moves `path` (in `sub`) to `quarantine/`, under a name that keeps where it came
    /// from and when, and logs why.
    fn quarantine(&self, path: &Path, sub: &str, reason: String) -> io::Result<Quarantined> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let file = format!("{sub}/{name}");
        let aside = self
            .dir
            .join("quarantine")
            .join(format!("{sub}-{name}.{}", unix_now()));
        fs::rename(path, &aside)?;
        tracing::error!("store: {file} set aside in {}: {reason}", aside.display());
        Ok(Quarantined { file, reason })
    }

    /// Moves the manifest of `name` aside: its function could not be loaded at start.
    pub fn quarantine_function(
        &self,
        name: &FunctionName,
        reason: String,
    ) -> io::Result<Quarantined> {
        let _writing = self.write_lock()?;
        let path = self.manifest_path(name);
        self.quarantine(&path, "functions", reason)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Durably records `record`, whose component is `wasm`, as the current version of
    /// its name: the blob first, then the manifest that names it.
    pub fn put(&self, record: &Record, wasm: &[u8]) -> io::Result<()> {
        debug_assert_eq!(record.size, wasm.len() as u64);
        // The manifest's file is named after the record, so what is written always reads
        // back as this function (`open` quarantines a manifest whose name differs); a
        // `FunctionName` is a file name, never a path.
        let _writing = self.write_lock()?;
        let blob = self.dir.join("blobs").join(blob_file_name(&record.digest));
        if !blob.exists() {
            write_file(&blob, wasm, "blob")?;
        }
        let manifest = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        write_file(&self.manifest_path(&record.name), &manifest, "manifest")
    }

    /// Removes `name`; its blob goes too unless another function uses it. False if
    /// there was no such function.
    pub fn remove(&self, name: &FunctionName) -> io::Result<bool> {
        let _writing = self.write_lock()?;
        let path = self.manifest_path(name);
        let record = match read_record(&path) {
            Ok(record) => record,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        fs::remove_file(&path)?;
        sync_dir(&self.dir.join("functions"))?;
        if !self.list()?.iter().any(|r| r.digest == record.digest) {
            let _ = fs::remove_file(self.dir.join("blobs").join(blob_file_name(&record.digest)));
        }
        Ok(true)
    }

    /// Every deployed version, by name.
    pub fn list(&self) -> io::Result<Vec<Record>> {
        let mut records = self
            .manifests()?
            .into_iter()
            .map(|(path, record)| {
                record.map_err(|reason| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {reason}", path.display()),
                    )
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }

    /// Every manifest file, each with its record or why it does not parse.
    pub fn manifests(&self) -> io::Result<Vec<(PathBuf, Result<Record, String>)>> {
        let mut manifests = Vec::new();
        for entry in fs::read_dir(self.dir.join("functions"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let record = match read_record(&path) {
                    Ok(record) => Ok(record),
                    // Deleted since the directory was read.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => Err(e.to_string()),
                };
                manifests.push((path, record));
            }
        }
        Ok(manifests)
    }

    /// The deployed version of `name` and its component bytes, read together under the
    /// write lock (so the blob cannot be removed between the two); `None` if `name` is
    /// not deployed.
    pub fn read(&self, name: &FunctionName) -> io::Result<Option<(Record, Vec<u8>)>> {
        let _writing = self.write_lock()?;
        let record = match read_record(&self.manifest_path(name)) {
            Ok(record) => record,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let wasm = self.wasm(&record)?;
        Ok(Some((record, wasm)))
    }

    /// Every deployed version with its component bytes, read together under the write
    /// lock.
    pub fn read_all(&self) -> io::Result<Vec<(Record, Vec<u8>)>> {
        let _writing = self.write_lock()?;
        self.list()?
            .into_iter()
            .map(|record| {
                let wasm = self.wasm(&record)?;
                Ok((record, wasm))
            })
            .collect()
    }

    /// The component bytes of `record`, checked against its digest.
    pub fn wasm(&self, record: &Record) -> io::Result<Vec<u8>> {
        let bytes = fs::read(self.dir.join("blobs").join(blob_file_name(&record.digest)))?;
        if digest(&bytes) != record.digest {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob of {} does not match its digest {}",
                    record.name, record.digest
                ),
            ));
        }
        Ok(bytes)
    }

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

    /// The compiled code cached under `key`, if there is any: `Ok(None)` when there is
    /// none, an error when there is some that does not match the SHA-256 recorded with
    /// it (or has none), in which case it has been moved to `quarantine/`.
    pub fn compiled(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        let path = self.cache_path(key);
        let code = match fs::read(&path) {
            Ok(code) => code,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let sum_path = self.checksum_path(key);
        let recorded = fs::read_to_string(&sum_path).unwrap_or_default();
        if recorded.trim() == digest(&code) {
            return Ok(Some(code));
        }
        // Another runtime sharing the store may be between writing the code and its
        // SHA-256: under the write lock, what is there is what it is.
        let _writing = self.write_lock()?;
        let code = match fs::read(&path) {
            Ok(code) => code,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let recorded = fs::read_to_string(&sum_path).unwrap_or_default();
        if recorded.trim() == digest(&code) {
            return Ok(Some(code));
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

    fn manifest_path(&self, name: &str) -> PathBuf {
        self.dir.join("functions").join(format!("{name}.json"))
    }
}

/// Opens (creating, private) one of the store's lock files.
fn open_lock_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn blob_file_name(digest: &str) -> String {
    format!("{}.wasm", digest.trim_start_matches("sha256:"))
}

fn read_record(path: &Path) -> io::Result<Record> {
    let bytes = fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one:
/// a temporary file of its own (created exclusively, mode 0600, removed on error),
/// fsync, rename, fsync the directory. The crash points of [`crash_point`] are named
/// `{what}-temp` (the temporary file is written and synced, not renamed) and `{what}`.
fn write_file(path: &Path, bytes: &[u8], what: &str) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().expect("store paths have a parent");
    let tmp = dir.join(format!(
        ".tmp-{}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let write = || {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        crash_point(what, "-temp");
        fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)?;
    crash_point(what, "");
    Ok(())
}

/// Refuses `path` if another user owns it or can write it; otherwise takes away every
/// permission of group and others (0700 for a directory, 0600 for a file).
fn make_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = fs::metadata(path)?;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(StoreError::NotOurs {
            path: path.display().to_string(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(StoreError::WritableByOthers {
            path: path.display().to_string(),
            mode,
        });
    }
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

/// Fault injection for the crash-consistency test, in debug builds only: with
/// `RUNTIME_STORE_CRASH_AT=POINT` the process aborts (no unwinding, no cleanup, as a
/// SIGKILL or a power cut would leave it) when a write reaches POINT: `blob-temp`,
/// `blob`, `manifest-temp` or `manifest`. Release builds have no such hook.
#[cfg(debug_assertions)]
fn crash_point(what: &str, suffix: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| std::env::var("RUNTIME_STORE_CRASH_AT").ok());
    if at
        .as_deref()
        .is_some_and(|at| at.strip_prefix(what) == Some(suffix))
    {
        eprintln!("RUNTIME_STORE_CRASH_AT={what}{suffix}: aborting");
        std::process::abort();
    }
}

#[cfg(not(debug_assertions))]
fn crash_point(_what: &str, _suffix: &str) {}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(name: &str) -> FunctionName {
        FunctionName::parse(name).unwrap()
    }

    #[test]
    fn put_list_remove_round_trip_and_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let store = FunctionStore::open(dir.path()).unwrap();
        let settings = Settings {
            memory_mib: Some(service_ops::Mib::new(8)),
            ..Default::default()
        };
        let a = Record::new(name("a"), b"wasm-a", settings);
        store.put(&a, b"wasm-a").unwrap();
        store
            .put(
                &Record::new(name("b"), b"wasm-a", Settings::default()),
                b"wasm-a",
            )
            .unwrap();
        assert_eq!(a.digest, digest(b"wasm-a"));
        assert_eq!(
            store
                .list()
                .unwrap()
                .iter()
                .map(|r| &*r.name)
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(store.wasm(&a).unwrap(), b"wasm-a");
        // Shared blob survives removing one user of it, and goes with the last.
        assert!(store.remove(&name("a")).unwrap());
        assert!(!store.remove(&name("a")).unwrap());
        let b = &store.list().unwrap()[0];
        assert_eq!(store.wasm(b).unwrap(), b"wasm-a");
        assert!(store.remove(&name("b")).unwrap());
        assert_eq!(fs::read_dir(dir.path().join("blobs")).unwrap().count(), 0);

        // What an interrupted deploy leaves (a temp file, an orphan blob) is cleared on open.
        drop(store);
        fs::write(dir.path().join("functions/.tmp-1-x.json"), b"{").unwrap();
        fs::write(dir.path().join("blobs/0123.wasm"), b"orphan").unwrap();
        let store = FunctionStore::open(dir.path()).unwrap();
        assert!(store.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(dir.path().join("blobs")).unwrap().count(), 0);
        assert_eq!(
            fs::read_dir(dir.path().join("functions")).unwrap().count(),
            0
        );
    }

    #[test]
    fn one_store_serves_one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = FunctionStore::open(dir.path()).unwrap();
        let clone = store.clone();
        drop(store);
        // A clone still holds the lock (a lock per open file, so a second open of the
        // same store, as a second runtime would make, is refused).
        let err = FunctionStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::InUse(_)), "{err}");
        drop(clone);
        FunctionStore::open(dir.path()).unwrap();
    }

    #[test]
    fn runtimes_share_a_store_only_when_all_ask_to() {
        let dir = tempfile::tempdir().unwrap();
        let a = FunctionStore::open_shared(dir.path()).unwrap();
        let b = FunctionStore::open_shared(dir.path()).unwrap();
        assert!(a.is_shared() && b.is_shared());
        let err = FunctionStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::InUse(_)), "{err}");
        assert!(err.to_string().contains("--shared-store"), "{err}");

        // What one writes, the other reads; a temporary file or an unnamed blob that a
        // writer may be about to use survives the other's open (it waits for the lock).
        let record = Record::new(name("a"), b"wasm-a", Settings::default());
        a.put(&record, b"wasm-a").unwrap();
        assert_eq!(
            b.read(&name("a")).unwrap(),
            Some((record.clone(), b"wasm-a".to_vec()))
        );
        let writing = a.write_lock().unwrap();
        let opened = std::thread::spawn({
            let dir = dir.path().to_path_buf();
            move || FunctionStore::open_shared(&dir).map(drop)
        });
        fs::write(dir.path().join("blobs/.tmp-9-x.wasm"), b"half").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            !opened.is_finished(),
            "open did not wait for the write lock"
        );
        assert!(dir.path().join("blobs/.tmp-9-x.wasm").exists());
        fs::remove_file(dir.path().join("blobs/.tmp-9-x.wasm")).unwrap();
        drop(writing);
        opened.join().unwrap().unwrap();
        assert!(b.remove(&name("a")).unwrap());
        assert_eq!(a.read(&name("a")).unwrap(), None);
        drop((a, b));

        let alone = FunctionStore::open(dir.path()).unwrap();
        let err = FunctionStore::open_shared(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::InUse(_)), "{err}");
        drop(alone);
    }

    #[test]
    fn a_corrupt_blob_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FunctionStore::open(dir.path()).unwrap();
        let record = Record::new(name("a"), b"good", Settings::default());
        store.put(&record, b"good").unwrap();
        fs::write(
            dir.path()
                .join("blobs")
                .join(blob_file_name(&record.digest)),
            b"evil",
        )
        .unwrap();
        assert_eq!(
            store.wasm(&record).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
