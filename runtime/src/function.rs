//! A deployed function version: its store record, its limits and sandbox settings, and,
//! while it is in memory, its pre-instantiated code (a wasi:http component or a WASI 0.1
//! core module served the WAGI way), shared with every name that deployed the same
//! component, ready to be instantiated per request.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use serde::Serialize;

use crate::host::{Host, WagiHost};
use crate::limits::Limits;
use crate::metrics::{ColdStart, InvocationMetrics};
use crate::registry::Role;
use crate::store::Record;

pub struct Function {
    /// What was deployed: name, digest, size, settings, when. The store keeps the same.
    pub record: Record,
    /// Which ABI its code serves, known without loading it.
    pub kind: Kind,
    /// `record.settings` applied to the runtime's defaults.
    pub limits: Limits,
    pub env: Arc<[(String, String)]>,
    pub allowed_hosts: Arc<[String]>,
    /// `record.version` as text, shared by the log lines it writes.
    pub version: Arc<str>,
    /// One permit per instance allowed at once.
    pub permits: Arc<Semaphore>,
    /// This function's per-invocation metric series, resolved at its first request as
    /// each [`Role`] (a canary promoted counts as current from then on) and handed to
    /// the executor that runs it.
    pub metrics: [OnceLock<Arc<InvocationMetrics>>; 2],
    /// Whether its code stays in memory for good: functions from `--functions-dir` do
    /// (they are the operator's, checked at start); deployed ones may be unloaded.
    pub pinned: bool,
    /// Its code while in memory; `None` before its first request after a restart and
    /// after it was unloaded.
    code: RwLock<Option<Arc<Ready>>>,
    /// Held while its code loads, so concurrent first requests load it once.
    pub(crate) loading: tokio::sync::Mutex<()>,
    /// The id of the last request it served: the least recently used is unloaded
    /// first.
    pub(crate) last_used: AtomicU64,
    /// Why its next invocation is a cold start ([`ColdStart`] as `u8`; 0 once warm).
    cold: AtomicU8,
    /// Replaced or deleted: code it loads now serves the requests that hold it, and is
    /// never counted as resident.
    pub(crate) retired: AtomicBool,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("record", &self.record)
            .field("limits", &self.limits)
            .field("pinned", &self.pinned)
            .field("compiled", &self.code().map(|ready| ready.compiled))
            .finish_non_exhaustive()
    }
}

/// Code ready to instantiate, and how it was made ready.
#[derive(Debug)]
pub struct Ready {
    /// Shared by every name that deployed the same component (and compiler).
    pub code: Arc<Code>,
    pub compiled: Compiled,
}

/// Which compiler made a function's running code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Compiler {
    /// Optimized code; what every function runs in the end.
    Cranelift,
    /// Wasmtime's baseline compiler: about 4x faster to compile, slower code. Serves a
    /// first deploy while Cranelift compiles in the background.
    Winch,
}

impl Compiler {
    pub fn strategy(self) -> wasmtime::Strategy {
        match self {
            Compiler::Cranelift => wasmtime::Strategy::Cranelift,
            Compiler::Winch => wasmtime::Strategy::Winch,
        }
    }
}

/// How a function's code was made ready.
#[derive(Debug, Clone, Copy)]
pub struct Compiled {
    pub compiler: Compiler,
    /// True when the code came from the on-disk cache instead of a compiler.
    pub from_cache: bool,
    /// True when cached code was found but set aside (it failed its SHA-256 or would
    /// not load), so the code was compiled afresh.
    pub cache_set_aside: bool,
    /// True when another name held the same component's code, now shared.
    pub shared: bool,
    /// How long compiling (or loading cached code) and pre-instantiating took.
    pub seconds: f64,
}

impl Compiled {
    /// The `faas_compiles_total{result}` label.
    pub fn result(&self) -> &'static str {
        match (self.shared, self.from_cache, self.compiler) {
            (true, _, _) => "shared",
            (false, true, _) => "cached",
            (false, false, Compiler::Winch) => "baseline",
            (false, false, Compiler::Cranelift) => "compiled",
        }
    }
}

/// A function's code, pre-instantiated: linked once, instantiated per request.
pub enum Code {
    /// A component exporting `wasi:http/incoming-handler`.
    Http(ProxyPre<Host>),
    /// A WASI 0.1 (preview1) core module exporting `_start`: CGI over WASI (WAGI).
    Wagi(wasmtime::InstancePre<WagiHost>),
}

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind().label())
    }
}

impl Code {
    pub fn kind(&self) -> Kind {
        match self {
            Code::Http(_) => Kind::Http,
            Code::Wagi(_) => Kind::Wagi,
        }
    }

    /// Bytes of machine code (and its data) it maps.
    pub fn image_bytes(&self) -> usize {
        let range = match self {
            Code::Http(pre) => pre.instance_pre().component().image_range(),
            Code::Wagi(pre) => pre.module().image_range(),
        };
        (range.end as usize).saturating_sub(range.start as usize)
    }
}

/// Which ABI a function's code serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A component exporting `wasi:http/incoming-handler`.
    Http,
    /// A WASI 0.1 command module, served the WAGI way.
    Wagi,
}

impl Kind {
    /// Told from the first bytes of the WebAssembly binary: a core module's header
    /// differs from a component's.
    pub fn of(wasm: &[u8]) -> Self {
        match wasmparser::Parser::is_core_wasm(wasm) {
            true => Kind::Wagi,
            false => Kind::Http,
        }
    }

    /// What its WebAssembly is, in messages.
    pub fn artifact(self) -> &'static str {
        match self {
            Kind::Http => "component",
            Kind::Wagi => "core module",
        }
    }

    /// What `GET /functions/{name}` calls it.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Http => "wasi-http",
            Kind::Wagi => "wagi",
        }
    }
}

impl Function {
    /// A function of `record` with `limits` and, if given, its code; its first
    /// invocation will count as a cold start for `cold`.
    pub fn new(
        record: Record,
        kind: Kind,
        limits: Limits,
        code: Option<Ready>,
        pinned: bool,
        cold: ColdStart,
    ) -> Self {
        let settings = &record.settings;
        Self {
            env: settings.env.clone().into_iter().collect(),
            version: Arc::from(record.version.to_string()),
            // As the policy matches them (`https://h` is `h:443`); checked at load.
            allowed_hosts: settings
                .allowed_outbound_hosts
                .iter()
                .filter_map(|entry| crate::limits::allow_entry(entry))
                .collect(),
            permits: Arc::new(Semaphore::new(limits.max_concurrency.get() as usize)),
            metrics: Default::default(),
            pinned,
            code: RwLock::new(code.map(Arc::new)),
            loading: tokio::sync::Mutex::new(()),
            last_used: AtomicU64::new(0),
            cold: AtomicU8::new(cold_code(cold)),
            retired: AtomicBool::new(false),
            record,
            kind,
            limits,
        }
    }

    /// Gives it the number the store gave its version (a deploy is loaded, and checked,
    /// before the store numbers it).
    pub fn renumber(&mut self, version: u64) {
        self.record.version = version;
        self.version = Arc::from(version.to_string());
    }

    /// Its series as `role`.
    pub fn metrics(
        &self,
        faas: &crate::metrics::FaasMetrics,
        role: Role,
    ) -> Arc<InvocationMetrics> {
        self.metrics[role.index()]
            .get_or_init(|| Arc::new(faas.for_function(self.name(), role)))
            .clone()
    }

    pub fn name(&self) -> &Arc<str> {
        self.record.name.as_arc()
    }

    /// Its code, if in memory.
    pub fn code(&self) -> Option<Arc<Ready>> {
        self.code.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `ready` in place of whatever code it had (a load, or optimized code
    /// replacing the baseline's); requests running keep the code they started with.
    pub fn set_code(&self, ready: Arc<Ready>) {
        *self.code.write().unwrap_or_else(|e| e.into_inner()) = Some(ready);
    }

    /// Drops its code to make room; the next request loads it again, a cold start.
    /// Requests running keep the code they started with.
    pub fn unload(&self) -> Option<Arc<Ready>> {
        let code = self.code.write().unwrap_or_else(|e| e.into_inner()).take();
        if code.is_some() {
            self.cold
                .store(cold_code(ColdStart::Evicted), Ordering::Relaxed);
        }
        code
    }

    /// Whether this invocation is a cold start, and why: true once per version and
    /// once after each unload.
    pub fn take_cold_start(&self) -> Option<ColdStart> {
        if self.cold.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let code = self.cold.swap(0, Ordering::Relaxed);
        ColdStart::ALL
            .get(usize::from(code).checked_sub(1)?)
            .copied()
    }

    /// What the deploy API shows about this version; environment values only if
    /// `reveal_env` (otherwise each key maps to `null`).
    pub fn describe(&self, reveal_env: bool) -> serde_json::Value {
        let Record {
            name,
            digest,
            size,
            settings,
            deployed_at,
            version,
        } = &self.record;
        let code = self.code();
        serde_json::json!({
            "name": name,
            "version": version,
            "digest": digest,
            "size": size,
            "deployed_at": deployed_at,
            "kind": self.kind.label(),
            "compiler": code.as_ref().map(|ready| ready.compiled.compiler),
            "loaded": code.is_some(),
            "pinned": self.pinned,
            "settings": if reveal_env { serde_json::json!(settings) } else { hide_env(settings) },
            "limits": {
                "memory_bytes": self.limits.memory.bytes(),
                "timeout_secs": self.limits.timeout.as_secs_f64(),
                "max_concurrency": self.limits.max_concurrency,
                "max_body_bytes": self.limits.max_body_bytes,
            },
        })
    }
}

/// `settings` as JSON with every `env` value replaced by `null`.
pub fn hide_env(settings: &crate::limits::Settings) -> serde_json::Value {
    let mut value = serde_json::json!(settings);
    if let Some(env) = value.get_mut("env").and_then(|e| e.as_object_mut()) {
        for v in env.values_mut() {
            *v = serde_json::Value::Null;
        }
    }
    value
}

/// `cold` as its place in [`ColdStart::ALL`] plus one: 0 is "warm".
fn cold_code(cold: ColdStart) -> u8 {
    let at = ColdStart::ALL.iter().position(|c| *c == cold);
    at.map_or(0, |at| at as u8 + 1)
}
