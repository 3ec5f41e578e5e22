//! The durable function store: what was deployed survives restarts, and a crash at any
//! moment leaves either the old or the new version of a function, never a broken one.
//!
//! Layout under the store directory:
//!
//! ```text
//! blobs/<sha256>.wasm        the component bytes, content-addressed
//! functions/<name>.json      its kept versions (each: digest, size, settings, deployed_at,
//!                            number), which is current, and a canary if one runs
//! cache/<key>.cwasm          compiled code, keyed by digest and engine (see `loader`)
//! cache/<key>.tag            its HMAC-SHA256 under the code key, checked before it loads
//! cache-key                  a store used alone: the code key (see below)
//! compiling/                 markers of compiles in progress (`--compile-in-process`)
//! quarantine/                what was found broken at start, set aside
//! .lock                      held while a runtime uses the store (shared or exclusive)
//! .write-lock                held by whoever writes or removes anything above
//! ```
//!
//! The store is private to the runtime's user: directories 0700, files 0600 (manifests
//! hold environment values, the cache holds machine code the runtime runs). A store that
//! another user owns or can write is refused at start.
//!
//! Compiled code runs as it is, so it is loaded only with a tag made with a key kept
//! outside anything a replica could share: `--cache-key-file` (a Secret in Kubernetes),
//! else, for a store used alone, `cache-key` in the store (whoever can write the store
//! is its user anyway). A shared store without a key file caches no code: replicas
//! cannot run code another wrote unless they share a key.
//!
//! The store in files: `manifests` (what is deployed: `Record`s and their blobs),
//! `cache` (compiled code and its tags), and `files` (writing a file so that a
//! crash leaves the old one or the new one, and keeping the store private).
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

mod cache;
mod compiling;
mod files;
mod manifests;

pub use compiling::CompileMarker;
use manifests::digest_hex;
pub use manifests::{Canary, ChangeError, Manifest, Placement, Record, Serving, digest, unix_now};

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use files::make_private;
use manifests::blob_file_name;

/// The durable store (`--store-dir`): deployed components by digest (`blobs/`), one
/// manifest per function (`functions/`), compiled code (`cache/`), and what was set aside
/// (`quarantine/`). Cheap to clone: clones share its locks.
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
    /// The key compiled code is tagged with; `None`: no code is cached.
    code_key: Option<Arc<CodeKey>>,
}

/// A key for compiled code's tags: 256 bits.
pub type CodeKey = [u8; 32];

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

impl FunctionStore {
    /// Opens (creating if needed, private) the store at `dir` for this process alone;
    /// refuses one another user owns or can write, or another runtime is using. Clears
    /// what an interrupted write left behind (temporary files, blobs no manifest names)
    /// and moves aside, to `quarantine/`, every manifest that does not parse, names
    /// another function than its file, or whose blob is missing or not the size it
    /// records: the rest start (see [`FunctionStore::quarantined`]). Blobs are checked
    /// against their digests when read.
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
            code_key: match shared {
                false => Some(Arc::new(own_code_key(&dir.join("cache-key"))?)),
                true => None,
            },
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
        for (path, manifest) in store.manifests()? {
            if let Err(reason) = manifest.and_then(|m| store.check_manifest(&path, &m)) {
                quarantined.push(store.quarantine(&path, "functions", reason)?);
            }
        }
        let used: std::collections::HashSet<String> = store
            .list()?
            .into_iter()
            .flat_map(|m| m.versions)
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

    /// The store with compiled code tagged with `key` (from `--cache-key-file`): what
    /// replicas sharing a store must agree on to share compiled code.
    pub fn with_code_key(mut self, key: CodeKey) -> Self {
        self.code_key = Some(Arc::new(key));
        self
    }

    /// Whether compiled code is cached here (there is a key to tag it with).
    pub fn caches_code(&self) -> bool {
        self.code_key.is_some()
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

    /// Where the store is.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Opens (creating, private) one of the store's lock files.
/// The code key of a store used alone, created (random, 0600) on its first start.
fn own_code_key(path: &Path) -> io::Result<CodeKey> {
    crate::secret::create_file(path)?;
    crate::secret::key_from_file(path).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

fn open_lock_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Settings;
    use crate::name::FunctionName;

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
        let mut a = Record::new(name("a"), b"wasm-a", settings);
        store
            .deploy(&mut a, b"wasm-a", &Placement::Current, 5)
            .unwrap();
        let mut b = Record::new(name("b"), b"wasm-a", Settings::default());
        store
            .deploy(&mut b, b"wasm-a", &Placement::Current, 5)
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
        assert_eq!(store.wasm(b.current()).unwrap(), b"wasm-a");
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
        let mut record = Record::new(name("a"), b"wasm-a", Settings::default());
        let manifest = a
            .deploy(&mut record, b"wasm-a", &Placement::Current, 5)
            .unwrap();
        assert_eq!(b.read_manifest(&name("a")).unwrap(), Some(manifest));
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
        assert_eq!(a.read_manifest(&name("a")).unwrap(), None);
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
        let mut record = Record::new(name("a"), b"good", Settings::default());
        store
            .deploy(&mut record, b"good", &Placement::Current, 5)
            .unwrap();
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

    fn blobs(dir: &Path) -> usize {
        fs::read_dir(dir.join("blobs")).unwrap().count()
    }

    #[test]
    fn versions_are_numbered_kept_to_a_bound_and_their_blobs_go_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = FunctionStore::open(dir.path()).unwrap();
        let deploy = |wasm: &[u8], placement: Placement| {
            let mut record = Record::new(name("f"), wasm, Settings::default());
            store.deploy(&mut record, wasm, &placement, 3)
        };
        for (n, wasm) in [b"one".as_slice(), b"two", b"three"]
            .into_iter()
            .enumerate()
        {
            let manifest = deploy(wasm, Placement::Current).unwrap();
            assert_eq!(manifest.current, n as u64 + 1);
        }
        assert_eq!(blobs(dir.path()), 3);
        // A change makes an older version current; nothing is dropped.
        let manifest = store
            .change(&name("f"), |m| {
                m.current = 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(manifest.current().digest, digest(b"one"));
        // A fourth version becomes current and drops the oldest (1).
        let manifest = deploy(b"four", Placement::Current).unwrap();
        let kept: Vec<u64> = manifest.versions.iter().map(|r| r.version).collect();
        assert_eq!(kept, [2, 3, 4]);
        assert_eq!(manifest.current, 4);
        assert!(
            !dir.path()
                .join("blobs")
                .join(blob_file_name(&digest(b"one")))
                .exists()
        );
        assert_eq!(blobs(dir.path()), 3);
        // Back to 2, then a canary beside it: the versions serving stay, the oldest that
        // serves nothing (3) goes.
        store
            .change(&name("f"), |m| {
                m.current = 2;
                Ok(())
            })
            .unwrap();
        let canary = Placement::Canary {
            percent: 10,
            max_error_rate: None,
        };
        let manifest = deploy(b"five", canary).unwrap();
        let kept: Vec<u64> = manifest.versions.iter().map(|r| r.version).collect();
        assert_eq!(kept, [2, 4, 5]);
        assert_eq!(manifest.current, 2);
        assert_eq!(
            manifest.canary.as_ref().map(|c| (c.version, c.percent)),
            Some((5, 10))
        );
        let serving = manifest.serving();
        assert_eq!(serving.current.digest, digest(b"two"));
        assert_eq!(serving.canary.unwrap().0.digest, digest(b"five"));
        // What is written reads back the same, also from a new open.
        drop(store);
        let store = FunctionStore::open(dir.path()).unwrap();
        assert_eq!(store.read_manifest(&name("f")).unwrap(), Some(manifest));
        assert_eq!(blobs(dir.path()), 3);
        // A refused change changes nothing.
        let before = fs::read(dir.path().join("functions/f.json")).unwrap();
        let err = store
            .change(&name("f"), |m| {
                m.current = 9;
                Ok(())
            })
            .unwrap_err();
        assert!(matches!(err, ChangeError::Refused(_)), "{err}");
        assert_eq!(
            fs::read(dir.path().join("functions/f.json")).unwrap(),
            before
        );
        assert!(matches!(
            store.change(&name("g"), |_| Ok(())).unwrap_err(),
            ChangeError::NoFunction(_)
        ));
        // Every version's blob goes with the name.
        assert!(store.remove(&name("f")).unwrap());
        assert_eq!(blobs(dir.path()), 0);
    }

    #[test]
    fn a_canary_needs_a_version_to_run_beside() {
        let dir = tempfile::tempdir().unwrap();
        let store = FunctionStore::open(dir.path()).unwrap();
        let mut record = Record::new(name("f"), b"one", Settings::default());
        let placement = Placement::Canary {
            percent: 10,
            max_error_rate: None,
        };
        let err = store
            .deploy(&mut record, b"one", &placement, 5)
            .unwrap_err();
        assert!(matches!(err, ChangeError::Refused(_)), "{err}");
        assert!(store.list().unwrap().is_empty());
        assert_eq!(blobs(dir.path()), 0);
    }

    #[test]
    fn a_manifest_written_before_versions_reads_as_version_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = FunctionStore::open(dir.path()).unwrap();
        let mut record = Record::new(name("f"), b"one", Settings::default());
        store
            .deploy(&mut record, b"one", &Placement::Current, 5)
            .unwrap();
        drop(store);
        // As the runtime wrote it before: the record alone, without a number.
        let mut old = serde_json::to_value(&record).unwrap();
        old.as_object_mut().unwrap().remove("version");
        fs::write(
            dir.path().join("functions/f.json"),
            serde_json::to_vec(&old).unwrap(),
        )
        .unwrap();
        let store = FunctionStore::open(dir.path()).unwrap();
        assert!(store.quarantined().is_empty());
        let manifest = store.read_manifest(&name("f")).unwrap().unwrap();
        assert_eq!((manifest.current, manifest.versions.len()), (1, 1));
        assert_eq!(manifest.current().digest, digest(b"one"));
        let mut next = Record::new(name("f"), b"two", Settings::default());
        let manifest = store
            .deploy(&mut next, b"two", &Placement::Current, 5)
            .unwrap();
        assert_eq!((manifest.current, manifest.versions.len()), (2, 2));
    }
}
