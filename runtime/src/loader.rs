//! Compilation, behind one value: a [`Loader`] holds an engine, its linker, the default
//! limits and (for Cranelift) the compiled-code cache, and turns a record plus component
//! bytes into a ready [`Function`]. Deploy, restore and tier-up all load through it.

use std::path::Path;
use std::time::Instant;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Module};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::function::{Code, Compiled, Compiler, Function};
use crate::host::{Host, WagiHost};
use crate::limits::{Limits, Settings, SettingsError};
use crate::name::{FunctionName, NameError};
use crate::store::{FunctionStore, Record};

/// Why a function could not be loaded. Each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// (what it is: "component" or "core module", why)
    #[error("not a valid WebAssembly {0}: {1}")]
    Compile(&'static str, String),
    /// (what it is, which import)
    #[error("the {0} needs imports this runtime does not provide: {1}")]
    Link(&'static str, String),
    #[error("the component does not export wasi:http/incoming-handler@0.2.x: {0}")]
    NotAHandler(String),
    #[error(
        "the core module is not a WASI 0.1 command: it must export `_start` taking and \
         returning nothing (served the WAGI way: CGI over WASI)"
    )]
    NotACommand,
    #[error(
        "allowed_outbound_hosts is for wasi:http components: a WASI 0.1 module has no \
         sockets, so it can make no outbound requests"
    )]
    OutboundForModule,
    #[error("invalid settings: {0}")]
    Settings(#[from] SettingsError),
}

impl LoadError {
    /// The deploy API's answer: a bad request (400) or a component it cannot run (422).
    pub fn status(&self) -> u16 {
        match self {
            LoadError::Settings(_) => 400,
            LoadError::Compile(..)
            | LoadError::Link(..)
            | LoadError::NotAHandler(_)
            | LoadError::NotACommand
            | LoadError::OutboundForModule => 422,
        }
    }
}

/// An engine and everything needed to turn components into functions with it. Cheap to
/// clone (engines, linkers and the store handle are shared), so a background compile
/// takes its own.
#[derive(Clone)]
pub struct Loader {
    engine: Engine,
    linker: Linker<Host>,
    /// WASI 0.1 for core modules (WAGI functions).
    wagi_linker: wasmtime::Linker<WagiHost>,
    compiler: Compiler,
    defaults: Limits,
    ceilings: crate::limits::Ceilings,
    /// Where compiled code is cached; `None` compiles every time.
    cache: Option<FunctionStore>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("compiler", &self.compiler)
            .field("defaults", &self.defaults)
            .field("cached", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

impl Loader {
    /// A loader for `compiler` with an engine configured from `config`.
    pub fn new(
        config: &crate::Config,
        compiler: Compiler,
        cache: Option<FunctionStore>,
    ) -> anyhow::Result<Self> {
        let engine = crate::engine::build(config, compiler.strategy())?;
        let linker = crate::engine::linker(&engine)?;
        let wagi_linker = crate::engine::wagi_linker(&engine)?;
        Ok(Self {
            engine,
            linker,
            wagi_linker,
            compiler,
            defaults: config.default_limits(),
            ceilings: config.ceilings(),
            cache,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles `wasm` (or loads its compiled code from the cache), links it, and checks
    /// it is a wasi:http handler (a component) or a WASI 0.1 command (a core module,
    /// served the WAGI way) with settings the runtime allows.
    pub fn load(&self, record: Record, wasm: &[u8]) -> Result<Function, LoadError> {
        let limits = record.settings.limits(&self.defaults, &self.ceilings)?;
        let start = Instant::now();
        let link = |what| move |e: wasmtime::Error| LoadError::Link(what, format!("{e:#}"));
        let (code, from_cache, cache_set_aside) = if wasmparser::Parser::is_core_wasm(wasm) {
            if !record.settings.allowed_outbound_hosts.is_empty() {
                return Err(LoadError::OutboundForModule);
            }
            let (module, from_cache, set_aside) = self.compile::<Module>(wasm, &record.digest)?;
            let start = module.get_export("_start").and_then(|e| e.func().cloned());
            if !start.is_some_and(|f| f.params().len() == 0 && f.results().len() == 0) {
                return Err(LoadError::NotACommand);
            }
            let pre = self
                .wagi_linker
                .instantiate_pre(&module)
                .map_err(link(Module::KIND))?;
            (Code::Wagi(pre), from_cache, set_aside)
        } else {
            let (component, from_cache, set_aside) =
                self.compile::<Component>(wasm, &record.digest)?;
            let pre = self
                .linker
                .instantiate_pre(&component)
                .map_err(link(Component::KIND))?;
            let pre = ProxyPre::new(pre).map_err(|e| LoadError::NotAHandler(format!("{e:#}")))?;
            (Code::Http(pre), from_cache, set_aside)
        };
        let compiled = Compiled {
            compiler: self.compiler,
            from_cache,
            cache_set_aside,
            seconds: start.elapsed().as_secs_f64(),
        };
        Ok(Function::new(record, code, limits, compiled))
    }

    /// Whether the cache holds this engine's code for the component `digest`.
    pub fn is_cached(&self, digest: &str) -> bool {
        self.cache
            .as_ref()
            .is_some_and(|cache| cache.cache_path(&self.cache_key(digest)).exists())
    }

    /// Compiled code is cached under a key made of the component's digest and the
    /// engine's compatibility hash (wasmtime version, target, every setting that changes
    /// codegen), so a restart or a redeploy of known bytes loads machine code instead of
    /// compiling, and an engine change never loads incompatible code.
    fn compile<C: Artifact>(
        &self,
        wasm: &[u8],
        digest: &str,
    ) -> Result<(C, bool, bool), LoadError> {
        let compile = || {
            C::compile(&self.engine, wasm)
                .map_err(|e| LoadError::Compile(C::KIND, format!("{e:#}")))
        };
        let Some(cache) = &self.cache else {
            return Ok((compile()?, false, false));
        };
        let mut set_aside = false;
        let key = self.cache_key(digest);
        match cache.compiled(&key) {
            Ok(None) => {}
            Ok(Some(code)) => match C::load_cached(&self.engine, &code) {
                Ok(component) => return Ok((component, true, false)),
                Err(e) => {
                    let _ = cache.quarantine_compiled(&key, format!("{e:#}"));
                    set_aside = true;
                }
            },
            // Did not match its SHA-256: already set aside and logged; compile afresh.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => set_aside = true,
            Err(e) => tracing::warn!("reading compiled code for {digest}: {e}"),
        }
        let component = compile()?;
        match C::serialize(&component) {
            Ok(bytes) => {
                if let Err(e) = cache.put_compiled(&key, &bytes) {
                    tracing::warn!("caching compiled code for {digest}: {e}");
                }
            }
            Err(e) => tracing::warn!("serialising compiled code: {e:#}"),
        }
        Ok((component, false, set_aside))
    }

    /// The component's digest and a SHA-256 of the engine's compatibility hash: stable
    /// across Rust releases (std's `DefaultHasher` is not), so an upgraded toolchain
    /// does not orphan every cached file.
    fn cache_key(&self, digest: &str) -> String {
        use std::hash::Hash;
        let mut hasher = StableHasher(sha2::Sha256::default());
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let engine = sha2::Digest::finalize(hasher.0);
        format!(
            "{}-{}",
            digest.trim_start_matches("sha256:"),
            &format!("{engine:x}")[..16]
        )
    }
}

/// What the compiled-code cache holds: a component's or a core module's machine code.
trait Artifact: Sized {
    /// What it is, for error messages.
    const KIND: &'static str;
    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self>;
    fn serialize(&self) -> wasmtime::Result<Vec<u8>>;
    /// Loads code from the cache. It must be code this runtime compiled: it comes from
    /// the store, which is private to the runtime's user (checked at open), and matches
    /// the SHA-256 recorded when it was written; wasmtime checks the header and engine
    /// compatibility.
    fn load_cached(engine: &Engine, code: &[u8]) -> wasmtime::Result<Self>;
}

impl Artifact for Component {
    const KIND: &'static str = "component";
    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self> {
        Component::new(engine, wasm)
    }
    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Component::serialize(self)
    }
    fn load_cached(engine: &Engine, code: &[u8]) -> wasmtime::Result<Self> {
        // SAFETY: see the trait: code this runtime compiled, checked against its SHA-256.
        #[expect(
            unsafe_code,
            reason = "deserialising machine code we compiled and checked"
        )]
        unsafe {
            Component::deserialize(engine, code)
        }
    }
}

impl Artifact for Module {
    const KIND: &'static str = "core module";
    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self> {
        Module::new(engine, wasm)
    }
    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Module::serialize(self)
    }
    fn load_cached(engine: &Engine, code: &[u8]) -> wasmtime::Result<Self> {
        // SAFETY: see the trait: code this runtime compiled, checked against its SHA-256.
        #[expect(
            unsafe_code,
            reason = "deserialising machine code we compiled and checked"
        )]
        unsafe {
            Module::deserialize(engine, code)
        }
    }
}

/// A `Hasher` that feeds SHA-256: what `Hash` writes, hashed the same way by every
/// Rust release.
struct StableHasher(sha2::Sha256);

impl std::hash::Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        sha2::Digest::update(&mut self.0, bytes);
    }

    fn finish(&self) -> u64 {
        unreachable!("only the SHA-256 is read")
    }
}

/// `NAME.wasm` and its optional `NAME.toml` settings, for every `.wasm` in `dir`, by name.
pub fn read_dir(dir: &Path) -> Result<Vec<(Record, Vec<u8>)>, DirError> {
    let io = |path: &Path, source| DirError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .collect();
    paths.sort();
    let mut functions = Vec::new();
    for path in paths {
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let name = FunctionName::parse(&stem).map_err(|source| DirError::Name {
            path: path.display().to_string(),
            source,
        })?;
        let wasm = std::fs::read(&path).map_err(|e| io(&path, e))?;
        let settings_path = path.with_extension("toml");
        let settings = match std::fs::read_to_string(&settings_path) {
            Ok(text) => Settings::parse(&text).map_err(|source| DirError::Settings {
                path: settings_path.display().to_string(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Settings::default(),
            Err(e) => return Err(io(&settings_path, e)),
        };
        functions.push((Record::new(name, &wasm, settings), wasm));
    }
    Ok(functions)
}

/// Why `--functions-dir` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    // The cause is the error's source, not part of its message: a chain printed with
    // `{:#}` (anyhow) shows each once.
    #[error("reading {path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}")]
    Settings { path: String, source: SettingsError },
    #[error("{path}")]
    Name { path: String, source: NameError },
}
