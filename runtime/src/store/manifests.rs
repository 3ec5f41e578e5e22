//! What is deployed: one manifest per function (`functions/<name>.json`, a [`Record`])
//! naming its component's blob (`blobs/<sha256>.wasm`), written blob first.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::files::{sync_dir, write_file};
use super::{FunctionStore, Quarantined};
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
    /// `sha256:<hex>` of the component bytes: 64 lowercase hex digits, checked when the
    /// manifest is read (it names files in the store: a manifest whose digest is
    /// anything else, `sha256:../../x` say, does not parse and is quarantined).
    #[serde(deserialize_with = "sha256_digest")]
    pub digest: String,
    pub size: u64,
    pub settings: Settings,
    /// Seconds since the Unix epoch.
    pub deployed_at: u64,
}

/// A `digest` field as [`digest`] writes it, or an error.
fn sha256_digest<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    digest_hex(&text).map_err(serde::de::Error::custom)?;
    Ok(text)
}

/// The hex part of `digest` if it is what [`digest`] writes (`sha256:` and 64
/// lowercase hex digits): safe to use in a file name.
pub(super) fn digest_hex(digest: &str) -> std::io::Result<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "digest {:?} is not sha256: and 64 lowercase hex digits",
                    digest.chars().take(80).collect::<String>()
                ),
            )
        })
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

impl FunctionStore {
    /// A manifest that names the function its file is named after, and whose blob is
    /// there with the size it records. The blob's digest is checked whenever it is read
    /// ([`Self::wasm`]), not here: a restart with thousands of functions reads no blob.
    pub(super) fn check_manifest(&self, path: &Path, record: &Record) -> Result<(), String> {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if *record.name != *stem {
            return Err(format!("it names function {:?}", record.name));
        }
        let blob = self.blob_path(record);
        match fs::metadata(&blob) {
            Ok(meta) if meta.len() == record.size => Ok(()),
            Ok(meta) => Err(format!(
                "its blob holds {} bytes, not the {} it records",
                meta.len(),
                record.size
            )),
            Err(e) => Err(format!("its blob {}: {e}", record.digest)),
        }
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

    /// The first bytes of `record`'s component (up to 8: enough to tell a core module
    /// from a component).
    pub fn wasm_header(&self, record: &Record) -> io::Result<Vec<u8>> {
        use std::io::Read as _;
        let mut head = Vec::with_capacity(8);
        fs::File::open(self.blob_path(record))?
            .take(8)
            .read_to_end(&mut head)?;
        Ok(head)
    }

    /// The component bytes of `record`, checked against its digest.
    pub fn wasm(&self, record: &Record) -> io::Result<Vec<u8>> {
        let bytes = fs::read(self.blob_path(record))?;
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

    fn blob_path(&self, record: &Record) -> PathBuf {
        self.dir.join("blobs").join(blob_file_name(&record.digest))
    }

    pub(super) fn manifest_path(&self, name: &str) -> PathBuf {
        self.dir.join("functions").join(format!("{name}.json"))
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(super) fn blob_file_name(digest: &str) -> String {
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
