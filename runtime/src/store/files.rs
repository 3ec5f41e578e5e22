//! The store's file primitives: a write that a crash cannot leave half done, and the
//! permissions that keep other users out.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use super::StoreError;

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one:
/// a temporary file of its own (created exclusively, mode 0600, removed on error),
/// fsync, rename, fsync the directory. The crash points of [`crash_point`] are named
/// `{what}-temp` (the temporary file is written and synced, not renamed) and `{what}`.
pub(super) fn write_file(path: &Path, bytes: &[u8], what: &str) -> io::Result<()> {
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
pub(super) fn make_private(path: &Path) -> Result<(), StoreError> {
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

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
