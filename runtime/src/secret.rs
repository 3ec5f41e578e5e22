//! Secrets kept in files: the deploy token (`--create-deploy-token`), the code key that
//! compiled code is tagged with (`--cache-key-file`, or a store's own `cache-key`).

use std::io;
use std::path::Path;

/// Writes a fresh secret (256 random bits, hex, one line) to `path` unless the file
/// exists; whether it wrote one. The file is created exclusively, readable by its owner
/// only, so two starts racing for it agree on one secret.
pub fn create_file(path: &Path) -> io::Result<bool> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut secret = String::with_capacity(65);
    for _ in 0..4 {
        let word = getrandom::u64().map_err(io::Error::other)?;
        secret.push_str(&format!("{word:016x}"));
    }
    secret.push('\n');
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())?;
            file.sync_all()?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// A 256-bit key from the file at `path`: the SHA-256 of its bytes, of which it must
/// hold at least 32 (any text or binary).
pub fn key_from_file(path: &Path) -> Result<[u8; 32], String> {
    use sha2::Digest as _;
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if bytes.len() < 32 {
        return Err(format!(
            "holds {} bytes; a key needs at least 32 (e.g. `head -c 32 /dev/urandom`)",
            bytes.len()
        ));
    }
    Ok(sha2::Sha256::digest(&bytes).into())
}
