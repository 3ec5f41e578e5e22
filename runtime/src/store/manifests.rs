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
            version: 1,
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
    /// Its number among its name's versions: 1 for the first deploy of a name, one more
    /// for each deploy after (the store numbers them; a manifest written before versions
    /// were kept reads as version 1).
    #[serde(default = "first_version")]
    pub version: u64,
}

fn first_version() -> u64 {
    1
}

/// Everything the store keeps about one name (`functions/<name>.json`): its kept
/// versions, oldest first, which of them serves, and a canary if one runs. Every change
/// (a deploy, a rollback, a canary started, promoted or ended) rewrites this one file by
/// rename, so a crash leaves the old state or the new, never a mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: FunctionName,
    /// The version that serves every request the canary does not take.
    pub current: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// Oldest first; at most `--keep-versions` (more only while a canary runs).
    pub versions: Vec<Record>,
}

/// A version that serves a share of its name's requests beside the current one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Canary {
    pub version: u64,
    /// Of every 100 requests, how many it serves on average: 1 to 99.
    pub percent: u8,
    /// Past this share of its requests failing (5xx), the runtime ends it (once it has
    /// served `--canary-min-requests`); `None`: only by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
}

/// What a name serves, out of its manifest: what a runtime compares with what it applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Serving {
    pub current: Record,
    pub canary: Option<(Record, Canary)>,
}

/// Where a deploy puts its new version.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    /// It serves every request; a canary running ends.
    Current,
    /// It serves a share of requests beside the current version (replacing a canary
    /// running).
    Canary {
        percent: u8,
        max_error_rate: Option<f64>,
    },
}

/// Why a change to a name's versions was refused; the store is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("no function named {0:?}")]
    NoFunction(String),
    /// A change that does not apply to the name as it is (409).
    #[error("{0}")]
    Refused(String),
}

impl Manifest {
    /// A manifest of one version, `record`, current.
    pub fn first(record: Record) -> Self {
        Self {
            name: record.name.clone(),
            current: record.version,
            canary: None,
            versions: vec![record],
        }
    }

    pub fn version(&self, version: u64) -> Option<&Record> {
        self.versions.iter().find(|r| r.version == version)
    }

    /// The current version's record.
    pub fn current(&self) -> &Record {
        self.version(self.current)
            .expect("a manifest's current version is checked when it is read")
    }

    pub fn serving(&self) -> Serving {
        Serving {
            current: self.current().clone(),
            canary: self.canary.as_ref().map(|canary| {
                let record = self
                    .version(canary.version)
                    .expect("a manifest's canary version is checked when it is read");
                (record.clone(), canary.clone())
            }),
        }
    }

    /// Whether it holds together: versions named after it, numbered in increasing
    /// order, the current and canary ones among them, a canary's share within 1-99.
    pub fn check(&self) -> Result<(), String> {
        if self.versions.is_empty() {
            return Err("it lists no versions".into());
        }
        if let Some(other) = self.versions.iter().find(|r| r.name != self.name) {
            return Err(format!(
                "its version {} names function {:?}",
                other.version, other.name
            ));
        }
        if self
            .versions
            .windows(2)
            .any(|w| w[0].version >= w[1].version)
        {
            return Err("its versions are not numbered in increasing order".into());
        }
        if self.version(self.current).is_none() {
            return Err(format!(
                "its current version {} is not among its versions",
                self.current
            ));
        }
        if let Some(canary) = &self.canary {
            if self.version(canary.version).is_none() || canary.version == self.current {
                return Err(format!(
                    "its canary version {} is not another kept version",
                    canary.version
                ));
            }
            if !(1..=99).contains(&canary.percent) {
                return Err(format!(
                    "its canary share {} % is not 1-99 %",
                    canary.percent
                ));
            }
        }
        Ok(())
    }

    /// Drops the oldest versions past `keep` that serve nothing (the current and canary
    /// versions always stay); returns what was dropped.
    fn prune(&mut self, keep: usize) -> Vec<Record> {
        let (current, canary) = (self.current, self.canary.as_ref().map(|c| c.version));
        let serves = |r: &Record| r.version == current || Some(r.version) == canary;
        let mut excess = self.versions.len().saturating_sub(keep.max(1));
        let mut dropped = Vec::new();
        self.versions.retain(|r| {
            if excess > 0 && !serves(r) {
                excess -= 1;
                dropped.push(r.clone());
                return false;
            }
            true
        });
        dropped
    }
}

/// A manifest's text: a [`Manifest`], or a single [`Record`] as stores wrote before
/// versions were kept (read as that record's only version).
fn parse_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let manifest = match value.get("versions") {
        Some(_) => serde_json::from_value::<Manifest>(value).map_err(|e| e.to_string())?,
        None => {
            Manifest::first(serde_json::from_value::<Record>(value).map_err(|e| e.to_string())?)
        }
    };
    manifest.check()?;
    Ok(manifest)
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
    /// A manifest whose versions all name the function its file is named after, and
    /// whose blobs are there with the sizes they record. Blobs' digests are checked
    /// whenever they are read ([`Self::wasm`]), not here: a restart with thousands of
    /// functions reads no blob.
    pub(super) fn check_manifest(&self, path: &Path, manifest: &Manifest) -> Result<(), String> {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if *manifest.name != *stem {
            return Err(format!("it names function {:?}", manifest.name));
        }
        for record in &manifest.versions {
            let blob = self.blob_path(record);
            match fs::metadata(&blob) {
                Ok(meta) if meta.len() == record.size => {}
                Ok(meta) => {
                    return Err(format!(
                        "the blob of its version {} holds {} bytes, not the {} it records",
                        record.version,
                        meta.len(),
                        record.size
                    ));
                }
                Err(e) => {
                    return Err(format!(
                        "the blob of its version {} ({}): {e}",
                        record.version, record.digest
                    ));
                }
            }
        }
        Ok(())
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

    /// Durably records `record`, whose component is `wasm`, as a new version of its
    /// name (numbered here: one past the newest kept) placed as `placement` says, and
    /// keeps at most `keep` versions (the serving ones always): the blob first, then the
    /// manifest that names it. Returns the manifest written; `record.version` is set to
    /// the new version's number.
    pub fn deploy(
        &self,
        record: &mut Record,
        wasm: &[u8],
        placement: &Placement,
        keep: usize,
    ) -> Result<Manifest, ChangeError> {
        debug_assert_eq!(record.size, wasm.len() as u64);
        // The manifest's file is named after the record, so what is written always reads
        // back as this function (`open` quarantines a manifest whose name differs); a
        // `FunctionName` is a file name, never a path.
        let _writing = self.write_lock()?;
        let existing = self.read_manifest(&record.name)?;
        record.version = existing
            .as_ref()
            .and_then(|m| m.versions.last())
            .map_or(1, |newest| newest.version + 1);
        let mut manifest = match (existing, placement) {
            (None, Placement::Canary { .. }) => {
                return Err(ChangeError::Refused(format!(
                    "{:?} has no version to run a canary beside: deploy it without a canary first",
                    record.name
                )));
            }
            (None, Placement::Current) => Manifest::first(record.clone()),
            (Some(mut manifest), placement) => {
                manifest.versions.push(record.clone());
                match placement {
                    Placement::Current => {
                        manifest.current = record.version;
                        manifest.canary = None;
                    }
                    Placement::Canary {
                        percent,
                        max_error_rate,
                    } => {
                        manifest.canary = Some(Canary {
                            version: record.version,
                            percent: *percent,
                            max_error_rate: *max_error_rate,
                            started_at: unix_now(),
                        });
                    }
                }
                manifest
            }
        };
        let pruned = manifest.prune(keep);
        let blob = self.blob_path(record);
        if !blob.exists() {
            write_file(&blob, wasm, "blob")?;
        }
        self.write_manifest(&manifest)?;
        self.remove_unused_blobs(&pruned)?;
        Ok(manifest)
    }

    /// Changes `name`'s manifest with `change` (which may refuse, changing nothing),
    /// durably, under the write lock; returns the manifest written.
    pub fn change(
        &self,
        name: &FunctionName,
        change: impl FnOnce(&mut Manifest) -> Result<(), String>,
    ) -> Result<Manifest, ChangeError> {
        let _writing = self.write_lock()?;
        let mut manifest = self
            .read_manifest(name)?
            .ok_or_else(|| ChangeError::NoFunction(name.to_string()))?;
        change(&mut manifest).map_err(ChangeError::Refused)?;
        manifest.check().map_err(ChangeError::Refused)?;
        self.write_manifest(&manifest)?;
        Ok(manifest)
    }

    fn write_manifest(&self, manifest: &Manifest) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(manifest).map_err(io::Error::other)?;
        write_file(&self.manifest_path(&manifest.name), &bytes, "manifest")
    }

    /// Removes the blobs of `records` that no version of any function names. Under the
    /// write lock.
    fn remove_unused_blobs(&self, records: &[Record]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let used: std::collections::HashSet<String> = self
            .list()?
            .iter()
            .flat_map(|m| m.versions.iter().map(|r| r.digest.clone()))
            .collect();
        for record in records {
            if !used.contains(&record.digest) {
                let _ = fs::remove_file(self.blob_path(record));
            }
        }
        Ok(())
    }

    /// Removes `name` and every version of it; their blobs go too unless another
    /// function uses them. False if there was no such function.
    pub fn remove(&self, name: &FunctionName) -> io::Result<bool> {
        let _writing = self.write_lock()?;
        let Some(manifest) = self.read_manifest(name)? else {
            return Ok(false);
        };
        fs::remove_file(self.manifest_path(name))?;
        sync_dir(&self.dir.join("functions"))?;
        self.remove_unused_blobs(&manifest.versions)?;
        Ok(true)
    }

    /// Every deployed function's manifest, by name.
    pub fn list(&self) -> io::Result<Vec<Manifest>> {
        let mut manifests = self
            .manifests()?
            .into_iter()
            .map(|(path, manifest)| {
                manifest.map_err(|reason| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {reason}", path.display()),
                    )
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        manifests.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(manifests)
    }

    /// Every manifest file, each with its manifest or why it does not parse.
    pub fn manifests(&self) -> io::Result<Vec<(PathBuf, Result<Manifest, String>)>> {
        let mut manifests = Vec::new();
        for entry in fs::read_dir(self.dir.join("functions"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let manifest = match fs::read(&path) {
                    Ok(bytes) => parse_manifest(&bytes),
                    // Deleted since the directory was read.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => Err(e.to_string()),
                };
                manifests.push((path, manifest));
            }
        }
        Ok(manifests)
    }

    /// `name`'s manifest; `None` if `name` is not deployed.
    pub fn read_manifest(&self, name: &FunctionName) -> io::Result<Option<Manifest>> {
        let path = self.manifest_path(name);
        match fs::read(&path) {
            Ok(bytes) => parse_manifest(&bytes).map(Some).map_err(|reason| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {reason}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
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
                    "blob of {} version {} does not match its digest {}",
                    record.name, record.version, record.digest
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
