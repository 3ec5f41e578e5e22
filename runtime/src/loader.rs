//! Compilation, behind one value: a [`Loader`] holds an engine, its linker, the default
//! limits and (for Cranelift) the compiled-code cache, and turns a record plus component
//! bytes into [`Ready`] code or a whole [`Function`]. Deploy, restore, a first request
//! and tier-up all load through it. Code is shared per component: names that deploy the
//! same bytes hold one compiled, pre-instantiated copy while any of them is loaded.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Module};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::compiler::{self, ChildError, CompileLimits, ShapeError};
use crate::function::{Code, Compiled, Compiler, Function, Kind, Ready};
use crate::host::{Host, WagiHost};
use crate::limits::{Limits, Settings, SettingsError};
use crate::metrics::ColdStart;
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
    /// The stored component could not be read (a first load after a restart).
    #[error("reading the stored component: {0}")]
    Store(#[from] std::io::Error),
    /// Its shape is past a limit on what the runtime compiles.
    #[error("the {0} is too large to compile here: {1}")]
    Shape(&'static str, ShapeError),
    /// Compiling it hit the compiler process's memory, CPU or time limit, now or
    /// earlier in this process's life (not tried again until it is redeployed).
    #[error("the {0} could not be compiled within the runtime's limits: {1}")]
    CompileLimit(&'static str, String),
    /// The compiler process could not be run.
    #[error("{0}")]
    Compiler(String),
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
            | LoadError::OutboundForModule
            | LoadError::Shape(..)
            | LoadError::CompileLimit(..) => 422,
            LoadError::Store(_) | LoadError::Compiler(_) => 500,
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
    /// The code in memory, by component digest: what a name that deploys (or loads)
    /// the same bytes shares instead of loading another copy. An entry lives while
    /// any function holds its code.
    shared: Arc<Mutex<HashMap<String, Weak<Code>>>>,
    /// What may be compiled, and how (in a child process, under limits).
    compile_limits: CompileLimits,
    /// Where compiles in progress are marked (the store, whether or not it caches).
    markers: Option<FunctionStore>,
    /// Components that could not be compiled within the limits, by digest: by which
    /// compiler (`None`: set aside for all), and why. Not compiled again by it (a deploy
    /// of the same bytes gets the same answer at once). Shared with the loader beside.
    failed: Arc<Mutex<HashMap<String, Failed>>>,
}

/// By which compiler a component could not be compiled (`None`: any), and why.
type Failed = (Option<Compiler>, String);

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
            shared: Default::default(),
            compile_limits: config.compile.clone(),
            markers: cache.clone(),
            // A shared store without a code key caches no code (see `store`).
            cache: cache.filter(FunctionStore::caches_code),
            failed: Default::default(),
        })
    }

    /// This loader, marking its compiles in `store` (without caching code there) and
    /// sharing `other`'s record of components that could not be compiled: the baseline
    /// compiler's loader, beside the optimizing one.
    pub fn beside(mut self, other: &Loader) -> Self {
        self.markers = other.markers.clone();
        self.failed = other.failed.clone();
        self
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The limits `record`'s settings give under this runtime's defaults and ceilings.
    pub fn limits(&self, record: &Record) -> Result<Limits, LoadError> {
        Ok(record.settings.limits(&self.defaults, &self.ceilings)?)
    }

    /// A function from `record` and its component `wasm`, with its code ready (see
    /// [`Self::ready`]); its first invocation counts as a cold start for `cold`.
    pub fn load(
        &self,
        record: Record,
        wasm: &[u8],
        pinned: bool,
        cold: ColdStart,
    ) -> Result<Function, LoadError> {
        let limits = self.limits(&record)?;
        let ready = self.ready(&record, wasm)?;
        let kind = ready.code.kind();
        Ok(Function::new(
            record,
            kind,
            limits,
            Some(ready),
            pinned,
            cold,
        ))
    }

    /// Code for `record` from its component `wasm` (see [`Self::ready_with`]).
    pub fn ready(&self, record: &Record, wasm: &[u8]) -> Result<Ready, LoadError> {
        self.ready_with(record, Kind::of(wasm), || Ok(wasm.to_vec()))
    }

    /// Code for `record`, a `kind` function: shared with a name that holds the same
    /// component's code, else loaded from the compiled-code cache (its file mapped, not
    /// copied), else compiled (and cached) from the component `wasm` gives, which is
    /// asked for only then; linked, and checked to be a wasi:http handler (a component)
    /// or a WASI 0.1 command (a core module, served the WAGI way) with settings the
    /// runtime allows.
    pub fn ready_with(
        &self,
        record: &Record,
        kind: Kind,
        wasm: impl FnOnce() -> std::io::Result<Vec<u8>>,
    ) -> Result<Ready, LoadError> {
        check_settings(record, kind)?;
        if let Some(ready) = self.in_memory(&record.digest, kind) {
            return Ok(ready);
        }
        let start = Instant::now();
        let digest = &record.digest;
        let (code, from_cache, set_aside) = match kind {
            Kind::Wagi => match self.cached::<Module>(digest) {
                (Some(module), _) => (self.link_module(&module)?, true, false),
                (None, set_aside) => {
                    let module = self.compile::<Module>(&wasm()?, digest)?;
                    (self.link_module(&module)?, false, set_aside)
                }
            },
            Kind::Http => match self.cached::<Component>(digest) {
                (Some(component), _) => (self.link_component(&component)?, true, false),
                (None, set_aside) => {
                    let component = self.compile::<Component>(&wasm()?, digest)?;
                    (self.link_component(&component)?, false, set_aside)
                }
            },
        };
        Ok(self.share(digest, code, from_cache, set_aside, start))
    }

    /// The code of component `digest` if a function holds it now.
    fn in_memory(&self, digest: &str, kind: Kind) -> Option<Ready> {
        let start = Instant::now();
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let code = shared.get(digest)?.upgrade()?;
        // Same digest, same bytes: the kind cannot differ; checked all the same.
        (code.kind() == kind).then(|| Ready {
            code,
            compiled: Compiled {
                compiler: self.compiler,
                from_cache: true,
                cache_set_aside: false,
                shared: true,
                seconds: start.elapsed().as_secs_f64(),
            },
        })
    }

    /// Makes `code` the one names deploying `digest` share, and ready.
    fn share(
        &self,
        digest: &str,
        code: Code,
        from_cache: bool,
        cache_set_aside: bool,
        start: Instant,
    ) -> Ready {
        let code = Arc::new(code);
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.retain(|_, code| code.strong_count() > 0);
        shared.insert(digest.to_string(), Arc::downgrade(&code));
        Ready {
            code,
            compiled: Compiled {
                compiler: self.compiler,
                from_cache,
                cache_set_aside,
                shared: false,
                seconds: start.elapsed().as_secs_f64(),
            },
        }
    }

    fn link_module(&self, module: &Module) -> Result<Code, LoadError> {
        let start = module.get_export("_start").and_then(|e| e.func().cloned());
        if !start.is_some_and(|f| f.params().len() == 0 && f.results().len() == 0) {
            return Err(LoadError::NotACommand);
        }
        let pre = self
            .wagi_linker
            .instantiate_pre(module)
            .map_err(link(Module::KIND))?;
        Ok(Code::Wagi(pre))
    }

    fn link_component(&self, component: &Component) -> Result<Code, LoadError> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(link(Component::KIND))?;
        let pre = ProxyPre::new(pre).map_err(|e| LoadError::NotAHandler(format!("{e:#}")))?;
        Ok(Code::Http(pre))
    }

    /// Whether the cache holds this engine's code for the component `digest`.
    pub fn is_cached(&self, digest: &str) -> bool {
        self.cache
            .as_ref()
            .is_some_and(|cache| cache.cache_path(&self.cache_key(digest)).exists())
    }

    /// Compiles `wasm` and caches its code under a key made of the component's digest
    /// and the engine's compatibility hash (wasmtime version, target, every setting that
    /// changes codegen), so a restart or a redeploy of known bytes loads machine code
    /// instead of compiling, and an engine change never loads incompatible code. Its
    /// shape is checked first; the compile runs in a child process under limits (see
    /// [`compiler`]), or, with `--compile-in-process`, here, with a marker in the store
    /// while it runs (see [`crate::store::CompileMarker`]).
    fn compile<C: Artifact>(&self, wasm: &[u8], digest: &str) -> Result<C, LoadError> {
        compiler::check_shape(wasm, &self.compile_limits)
            .map_err(|e| LoadError::Shape(C::KIND, e))?;
        if let Some(reason) = self.failed_before(digest) {
            return Err(LoadError::CompileLimit(C::KIND, reason));
        }
        let Some(compiled) =
            compiler::in_child(&self.compile_limits, self.compiler, C::ARTIFACT, wasm)
        else {
            // In process, a compile that runs out of memory takes the runtime with it:
            // marked, so the next start sets the version aside instead of compiling it
            // again. (A child's crash is its own: reported, never a loop.)
            let _marker = self.markers.as_ref().and_then(|store| {
                store
                    .compiling(digest)
                    .inspect_err(|e| tracing::warn!("marking the compile of {digest}: {e}"))
                    .ok()
            });
            let code = C::compile(&self.engine, wasm)
                .map_err(|e| LoadError::Compile(C::KIND, format!("{e:#}")))?;
            if self.cache.is_some() {
                match C::serialize(&code) {
                    Ok(bytes) => drop(self.put_cached(digest, &bytes)),
                    Err(e) => tracing::warn!("serialising compiled code: {e:#}"),
                }
            }
            return Ok(code);
        };
        let bytes = match compiled {
            Ok(bytes) => bytes,
            Err(ChildError::Rejected(message)) => return Err(LoadError::Compile(C::KIND, message)),
            Err(ChildError::Limit(reason)) => {
                self.failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(digest.to_string(), (Some(self.compiler), reason.clone()));
                return Err(LoadError::CompileLimit(C::KIND, reason));
            }
            Err(e @ ChildError::Failed(_)) => return Err(LoadError::Compiler(e.to_string())),
        };
        // Mapped from the cache file when there is one (its pages shared with the page
        // cache), else copied from the child's output.
        let loaded = match self.put_cached(digest, &bytes) {
            Some(path) => C::load_cached(&self.engine, &path),
            None => C::load_compiled(&self.engine, &bytes),
        };
        loaded.map_err(|e| LoadError::Compiler(format!("loading the compiled code: {e:#}")))
    }

    /// Why component `digest` could not be compiled before, if it could not.
    pub fn failed_before(&self, digest: &str) -> Option<String> {
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        let (compiler, reason) = failed.get(digest)?;
        compiler
            .is_none_or(|c| c == self.compiler)
            .then(|| reason.clone())
    }

    /// Records that component `digest` must not be compiled again by any compiler (a
    /// compile of it did not finish: see [`crate::store::FunctionStore::interrupted_compiles`]).
    pub fn set_aside(&self, digest: &str, reason: String) {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.insert(digest.to_string(), (None, reason));
    }

    /// Caches compiled `bytes` for component `digest`; where, if it could.
    fn put_cached(&self, digest: &str, bytes: &[u8]) -> Option<std::path::PathBuf> {
        let cache = self.cache.as_ref()?;
        let key = self.cache_key(digest);
        match cache.put_compiled(&key, bytes) {
            Ok(()) => Some(cache.cache_path(&key)),
            Err(e) => {
                tracing::warn!("caching compiled code for {digest}: {e}");
                None
            }
        }
    }

    /// This engine's cached code for component `digest`, mapped from its file, and
    /// whether cached code was found but set aside (it failed its SHA-256 or would not
    /// load).
    fn cached<C: Artifact>(&self, digest: &str) -> (Option<C>, bool) {
        let Some(cache) = &self.cache else {
            return (None, false);
        };
        let key = self.cache_key(digest);
        match cache.compiled(&key) {
            Ok(None) => (None, false),
            Ok(Some(path)) => match C::load_cached(&self.engine, &path) {
                Ok(code) => (Some(code), false),
                Err(e) => {
                    let _ = cache.quarantine_compiled(&key, format!("{e:#}"));
                    (None, true)
                }
            },
            // Did not match its SHA-256: already set aside and logged.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => (None, true),
            Err(e) => {
                tracing::warn!("reading compiled code for {digest}: {e}");
                (None, false)
            }
        }
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

/// `--baseline-compile`: Winch's loader, for first deploys and for components Cranelift
/// cannot compile within the limits, built on first use (a second engine and pool cost
/// resident memory that a runtime which never needs it should not pay).
#[derive(Debug)]
pub struct Baseline {
    cell: std::sync::OnceLock<Option<Loader>>,
    config: Arc<crate::Config>,
    optimizing: Loader,
    ticker: Arc<crate::engine::EpochTicker>,
}

impl Baseline {
    pub fn new(
        config: Arc<crate::Config>,
        optimizing: Loader,
        ticker: Arc<crate::engine::EpochTicker>,
    ) -> Self {
        Self {
            cell: Default::default(),
            config,
            optimizing,
            ticker,
        }
    }

    /// The loader; `None` if building it failed, which is logged once.
    pub fn get(&self) -> Option<&Loader> {
        self.cell
            .get_or_init(|| match Loader::new(&self.config, Compiler::Winch, None) {
                Ok(loader) => {
                    self.ticker.add(loader.engine().clone());
                    Some(loader.beside(&self.optimizing))
                }
                Err(e) => {
                    tracing::error!(
                        "building the baseline compiler's engine: {e:#}; compiling with Cranelift only"
                    );
                    None
                }
            })
            .as_ref()
    }
}

/// What the compiled-code cache holds: a component's or a core module's machine code.
trait Artifact: Sized {
    /// What it is, for error messages.
    const KIND: &'static str;
    /// What a child compiles for it.
    const ARTIFACT: compiler::Artifact;
    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self>;
    fn serialize(&self) -> wasmtime::Result<Vec<u8>>;
    /// Loads code from the cache. It must be code this runtime compiled: it comes from
    /// the store, which is private to the runtime's user (checked at open), and matches
    /// the SHA-256 recorded when it was written; wasmtime checks the header and engine
    /// compatibility.
    fn load_cached(engine: &Engine, file: &Path) -> wasmtime::Result<Self>;
    /// Loads code a child compiled for this runtime (see [`compiler`]), from its bytes.
    fn load_compiled(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self>;
}

/// Settings a function of `kind` may not have.
fn check_settings(record: &Record, kind: Kind) -> Result<(), LoadError> {
    if kind == Kind::Wagi && !record.settings.allowed_outbound_hosts.is_empty() {
        return Err(LoadError::OutboundForModule);
    }
    Ok(())
}

/// A link error of a `what`, with wasmtime's chain of causes.
fn link(what: &'static str) -> impl Fn(wasmtime::Error) -> LoadError {
    move |e| LoadError::Link(what, format!("{e:#}"))
}

impl Artifact for Component {
    const KIND: &'static str = "component";
    const ARTIFACT: compiler::Artifact = compiler::Artifact::Component;
    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self> {
        Component::new(engine, wasm)
    }
    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Component::serialize(self)
    }
    fn load_cached(engine: &Engine, file: &Path) -> wasmtime::Result<Self> {
        // SAFETY: see the trait: code this runtime compiled, checked against its SHA-256.
        // The store replaces files by rename, never in place, so the mapping stays whole.
        #[expect(
            unsafe_code,
            reason = "deserialising machine code we compiled and checked"
        )]
        unsafe {
            Component::deserialize_file(engine, file)
        }
    }
    fn load_compiled(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self> {
        // SAFETY: code our own child process just compiled for this engine's settings.
        #[expect(unsafe_code, reason = "deserialising machine code we compiled")]
        unsafe {
            Component::deserialize(engine, bytes)
        }
    }
}

impl Artifact for Module {
    const KIND: &'static str = "core module";
    const ARTIFACT: compiler::Artifact = compiler::Artifact::Module;
    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self> {
        Module::new(engine, wasm)
    }
    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Module::serialize(self)
    }
    fn load_cached(engine: &Engine, file: &Path) -> wasmtime::Result<Self> {
        // SAFETY: as for components.
        #[expect(
            unsafe_code,
            reason = "deserialising machine code we compiled and checked"
        )]
        unsafe {
            Module::deserialize_file(engine, file)
        }
    }
    fn load_compiled(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self> {
        // SAFETY: as for components.
        #[expect(unsafe_code, reason = "deserialising machine code we compiled")]
        unsafe {
            Module::deserialize(engine, bytes)
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
