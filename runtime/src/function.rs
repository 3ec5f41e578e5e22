//! A deployed function: compiled and pre-instantiated once, with its limits and sandbox
//! settings, ready to be instantiated per request.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::host::Host;
use crate::limits::{Limits, Settings};
use crate::metrics::InvocationMetrics;
use crate::store::{self, FunctionStore};

/// Why a function could not be loaded. Each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "invalid function name {0:?}: use 1-63 of a-z, 0-9 and '-', starting with a letter or digit"
    )]
    Name(String),
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    #[error("the component needs imports this runtime does not provide: {0}")]
    Link(String),
    #[error("the component does not export wasi:http/incoming-handler@0.2.x: {0}")]
    NotAHandler(String),
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub struct Function {
    pub name: Arc<str>,
    pub pre: ProxyPre<Host>,
    pub limits: Limits,
    pub env: Arc<[(String, String)]>,
    pub allowed_hosts: Arc<[String]>,
    /// One permit per instance allowed at once.
    pub permits: Arc<Semaphore>,
    /// True until the first invocation in this process: that one is the cold start.
    pub cold: AtomicBool,
    /// This function's per-invocation metric series, resolved at its first request.
    pub metrics: OnceLock<InvocationMetrics>,
    /// How long compiling (or loading compiled code) and pre-instantiating took.
    pub compile_seconds: f64,
    /// True when the compiled code came from the on-disk cache instead of Cranelift.
    pub from_cache: bool,
    /// Which compiler made the running code: `cranelift`, or `winch` while the optimized
    /// version is being compiled.
    pub compiler: &'static str,
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    pub size: u64,
    pub settings: Settings,
    /// When this version was deployed, in seconds since the Unix epoch.
    pub deployed_at: u64,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

pub fn validate_name(name: &str) -> Result<(), LoadError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(LoadError::Name(name.to_string()))
    }
}

impl Function {
    /// What the deploy API shows about this version.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "name": &*self.name,
            "digest": self.digest,
            "size": self.size,
            "deployed_at": self.deployed_at,
            "compiler": self.compiler,
            "settings": self.settings,
            "limits": {
                "memory_bytes": self.limits.memory_bytes,
                "timeout_secs": self.limits.timeout.as_secs_f64(),
                "max_concurrency": self.limits.max_concurrency,
                "max_body_bytes": self.limits.max_body_bytes,
            },
        })
    }

    /// Compiles `wasm` (or loads its compiled code from `cache`), links it, and checks it
    /// is a wasi:http handler.
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        engine: &Engine,
        linker: &Linker<Host>,
        name: &str,
        wasm: &[u8],
        settings: &Settings,
        defaults: &Limits,
        max_memory_bytes: u64,
        cache: Option<&FunctionStore>,
    ) -> Result<Self, LoadError> {
        validate_name(name)?;
        let limits = settings
            .limits(defaults, max_memory_bytes)
            .map_err(LoadError::Settings)?;
        let start = Instant::now();
        let digest = store::digest(wasm);
        let (component, from_cache) = compile(engine, wasm, &digest, cache)?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = ProxyPre::new(pre).map_err(|e| LoadError::NotAHandler(format!("{e:#}")))?;
        Ok(Self {
            name: name.into(),
            pre,
            env: settings
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            allowed_hosts: settings.allowed_outbound_hosts.clone().into(),
            permits: Arc::new(Semaphore::new(limits.max_concurrency as usize)),
            limits,
            cold: AtomicBool::new(true),
            metrics: OnceLock::new(),
            compile_seconds: start.elapsed().as_secs_f64(),
            from_cache,
            // The caller says otherwise when it loaded with the baseline engine.
            compiler: "cranelift",
            digest,
            size: wasm.len() as u64,
            settings: settings.clone(),
            deployed_at: store::unix_now(),
        })
    }

    /// Loads `NAME.wasm` and its optional `NAME.toml` from `dir`, for every `.wasm` there.
    pub fn load_dir(
        engine: &Engine,
        linker: &Linker<Host>,
        dir: &Path,
        defaults: &Limits,
        max_memory_bytes: u64,
        cache: Option<&FunctionStore>,
    ) -> anyhow::Result<Vec<Function>> {
        let io = |path: &Path, source| LoadError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        entries.sort();
        let mut functions = Vec::new();
        for path in entries {
            let name = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let wasm = std::fs::read(&path).map_err(|e| io(&path, e))?;
            let settings_path = path.with_extension("toml");
            let settings = match std::fs::read_to_string(&settings_path) {
                Ok(text) => Settings::parse(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", settings_path.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Settings::default(),
                Err(e) => return Err(io(&settings_path, e).into()),
            };
            let function = Self::load(
                engine,
                linker,
                &name,
                &wasm,
                &settings,
                defaults,
                max_memory_bytes,
                cache,
            )
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            tracing::info!(
                function = name,
                compile_seconds = function.compile_seconds,
                "loaded"
            );
            functions.push(function);
        }
        Ok(functions)
    }
}

/// Compiled code is cached under a key made of the component's digest and the engine's
/// compatibility hash (wasmtime version, target, every setting that changes codegen), so
/// a restart or a redeploy of known bytes loads machine code instead of compiling, and an
/// engine change never loads incompatible code.
fn compile(
    engine: &Engine,
    wasm: &[u8],
    digest: &str,
    cache: Option<&FunctionStore>,
) -> Result<(Component, bool), LoadError> {
    let compile = || Component::new(engine, wasm).map_err(|e| LoadError::Compile(format!("{e:#}")));
    let Some(cache) = cache else {
        return Ok((compile()?, false));
    };
    let path = cache.cache_path(&cache_key(engine, digest));
    if path.exists() {
        // SAFETY: `deserialize_file` runs the machine code in the file, so it must be code
        // this runtime compiled: the cache directory is inside the store, which only the
        // runtime writes (README: keep it private to the runtime's user); files are
        // written atomically, and wasmtime checks the header and engine compatibility.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(component) => return Ok((component, true)),
            Err(e) => {
                tracing::warn!(
                    "discarding unusable compiled code {}: {e:#}",
                    path.display()
                );
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let component = compile()?;
    match component.serialize() {
        Ok(bytes) => {
            if let Err(e) = store::write_atomic(&path, &bytes) {
                tracing::warn!("caching compiled code at {}: {e}", path.display());
            }
        }
        Err(e) => tracing::warn!("serialising compiled code: {e:#}"),
    }
    Ok((component, false))
}

/// Whether `cache` holds compiled code for `wasm` from `engine`.
pub fn is_cached(engine: &Engine, wasm: &[u8], cache: &FunctionStore) -> bool {
    cache
        .cache_path(&cache_key(engine, &store::digest(wasm)))
        .exists()
}

fn cache_key(engine: &Engine, digest: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!(
        "{}-{:016x}",
        digest.trim_start_matches("sha256:"),
        hasher.finish()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        for ok in ["hello", "a", "fn-2", "0x"] {
            assert!(super::validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "Hello", "a_b", "a/b", "..", &"x".repeat(64)] {
            assert!(super::validate_name(bad).is_err(), "{bad}");
        }
    }
}
