//! A deployed function version: its store record, its pre-instantiated code (a wasi:http
//! component or a WASI 0.1 core module served the WAGI way), its limits and sandbox
//! settings, ready to be instantiated per request.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use serde::Serialize;

use crate::host::{Host, WagiHost};
use crate::limits::Limits;
use crate::metrics::InvocationMetrics;
use crate::store::Record;

pub struct Function {
    /// What was deployed: name, digest, size, settings, when. The store keeps the same.
    pub record: Record,
    pub code: Code,
    /// `record.settings` applied to the runtime's defaults.
    pub limits: Limits,
    pub env: Arc<[(String, String)]>,
    pub allowed_hosts: Arc<[String]>,
    /// One permit per instance allowed at once.
    pub permits: Arc<Semaphore>,
    /// True until the first invocation in this process: that one is the cold start.
    pub cold: AtomicBool,
    /// This function's per-invocation metric series, resolved at its first request
    /// and handed to the executor that runs it.
    pub metrics: OnceLock<Arc<InvocationMetrics>>,
    /// How its code was made ready.
    pub compiled: Compiled,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("record", &self.record)
            .field("limits", &self.limits)
            .field("compiled", &self.compiled)
            .finish_non_exhaustive()
    }
}

/// Which compiler made a function's running code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    /// How long compiling (or loading cached code) and pre-instantiating took.
    pub seconds: f64,
}

impl Compiled {
    /// The `faas_compiles_total{result}` label.
    pub fn result(&self) -> &'static str {
        match (self.from_cache, self.compiler) {
            (true, _) => "cached",
            (false, Compiler::Winch) => "baseline",
            (false, Compiler::Cranelift) => "compiled",
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
        f.write_str(self.kind())
    }
}

impl Code {
    /// What `GET /functions/{name}` calls it.
    pub fn kind(&self) -> &'static str {
        match self {
            Code::Http(_) => "wasi-http",
            Code::Wagi(_) => "wagi",
        }
    }
}

impl Function {
    pub fn new(record: Record, code: Code, limits: Limits, compiled: Compiled) -> Self {
        let settings = &record.settings;
        Self {
            env: settings.env.clone().into_iter().collect(),
            allowed_hosts: settings.allowed_outbound_hosts.clone().into(),
            permits: Arc::new(Semaphore::new(limits.max_concurrency.get() as usize)),
            cold: AtomicBool::new(true),
            metrics: OnceLock::new(),
            record,
            code,
            limits,
            compiled,
        }
    }

    pub fn name(&self) -> &Arc<str> {
        self.record.name.as_arc()
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
        } = &self.record;
        serde_json::json!({
            "name": name,
            "digest": digest,
            "size": size,
            "deployed_at": deployed_at,
            "kind": self.code.kind(),
            "compiler": self.compiled.compiler,
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
fn hide_env(settings: &crate::limits::Settings) -> serde_json::Value {
    let mut value = serde_json::json!(settings);
    if let Some(env) = value.get_mut("env").and_then(|e| e.as_object_mut()) {
        for v in env.values_mut() {
            *v = serde_json::Value::Null;
        }
    }
    value
}
