//! The serverless side of the comparison: a wasi:http function host.
//!
//! Each function version is compiled and pre-instantiated once ([`function::Function`]);
//! every request gets a new `Store` and a fresh instance from the pooling allocator, runs
//! the guest's `wasi:http/incoming-handler`, streams the response, and is dropped
//! ([`invoke`]). Limits (memory, time, concurrency, body size) fail only the request that
//! hits them.

mod api;
mod cli;
mod config;
pub mod engine;
pub mod function;
mod heap;
mod host;
pub mod invoke;
pub mod limits;
mod metrics;
pub mod registry;
pub mod store;

pub use cli::{Cli, Command};
pub use config::Config;

use std::convert::Infallible;
use std::sync::Arc;

use service_ops::{HttpMetrics, ProcessCollector, ServeConfig, Shutdown, ops};

/// Runs the runtime until SIGTERM or SIGINT, then drains and returns.
pub fn run(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    service_ops::tokio_runtime(config.worker_threads)?.block_on(serve(config))
}

/// The host without its listeners: engine, linker, epoch ticker, deployed functions, the
/// store that keeps them, and the invoker that runs requests. `serve` puts sockets in
/// front of it; benchmarks call [`invoke::Invoker::handle`] on it directly.
pub struct Runtime {
    engine: wasmtime::Engine,
    linker: wasmtime::component::Linker<host::Host>,
    /// `--baseline-compile`: Winch's engine and linker for first deploys, created on the
    /// first deploy that needs them (a second pooling allocator costs resident memory a
    /// runtime that never takes deploys should not pay).
    baseline: Option<std::sync::OnceLock<Baseline>>,
    /// The configuration the baseline engine is built from.
    config: Config,
    /// Background Cranelift compiles run one at a time: they share the cores with traffic.
    tier_up_lock: Arc<std::sync::Mutex<()>>,
    invoker: Arc<invoke::Invoker>,
    store: Option<store::FunctionStore>,
    defaults: limits::Limits,
    max_memory_bytes: u64,
    /// One deploy or delete at a time: store writes and the swap happen in order.
    deploy_lock: std::sync::Mutex<()>,
    ticker: engine::EpochTicker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("functions", &self.invoker.registry.names())
            .finish_non_exhaustive()
    }
}

type Baseline = (wasmtime::Engine, wasmtime::component::Linker<host::Host>);

/// What a deploy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployed {
    Created,
    Replaced,
}

/// Why a deploy failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Invalid(#[from] function::LoadError),
    #[error("writing the store: {0}")]
    Store(#[from] std::io::Error),
}

impl Runtime {
    /// Builds the engine and registers every metric in `prom`. Loads `--functions-dir`,
    /// then what `--store-dir` holds (a stored deploy wins over a file of the same name).
    /// Every function is compiled (or loaded from the compiled-code cache) and checked;
    /// a bad one is an error that names it.
    pub fn new(config: &Config, prom: &prometheus::Registry) -> anyhow::Result<Self> {
        config.validate()?;
        let http_metrics = HttpMetrics::new(prom)?;
        let faas = metrics::FaasMetrics::new(prom)?;
        let engine = engine::build(config, wasmtime::Strategy::Cranelift)?;
        let linker = engine::linker(&engine)?;
        let baseline = config.baseline_compile.then(std::sync::OnceLock::new);
        let ticker = engine::EpochTicker::start(engine.clone());
        let store = match &config.store_dir {
            Some(dir) => Some(
                store::FunctionStore::open(dir)
                    .map_err(|e| anyhow::anyhow!("opening the store {}: {e}", dir.display()))?,
            ),
            None => None,
        };
        let runtime = Self {
            invoker: Arc::new(invoke::Invoker::new(Default::default(), http_metrics, faas)),
            defaults: config.default_limits(),
            max_memory_bytes: config.max_memory_mib << 20,
            deploy_lock: Default::default(),
            engine,
            linker,
            baseline,
            config: config.clone(),
            tier_up_lock: Default::default(),
            store,
            ticker,
        };
        if let Some(dir) = &config.functions_dir {
            let functions = function::Function::load_dir(
                &runtime.engine,
                &runtime.linker,
                dir,
                &runtime.defaults,
                runtime.max_memory_bytes,
                runtime.store.as_ref(),
            )?;
            for function in functions {
                runtime.install(function);
            }
        }
        if let Some(store) = &runtime.store {
            for record in store.list()? {
                let wasm = store.wasm(&record)?;
                let mut function = runtime
                    .load(&record.name, &wasm, &record.settings)
                    .map_err(|e| anyhow::anyhow!("stored function {}: {e}", record.name))?;
                function.deployed_at = record.deployed_at;
                tracing::info!(
                    function = record.name,
                    from_cache = function.from_cache,
                    "restored"
                );
                runtime.install(function);
            }
        }
        heap::release_free_memory();
        Ok(runtime)
    }

    fn load(
        &self,
        name: &str,
        wasm: &[u8],
        settings: &limits::Settings,
    ) -> Result<function::Function, function::LoadError> {
        function::Function::load(
            &self.engine,
            &self.linker,
            name,
            wasm,
            settings,
            &self.defaults,
            self.max_memory_bytes,
            self.store.as_ref(),
        )
    }

    /// Compiles and checks `wasm`, records it durably (with a store), then swaps it in
    /// for `name`. Requests already running finish on the version they started with; a
    /// component that fails to load changes nothing.
    pub fn deploy(
        &self,
        name: &str,
        wasm: &[u8],
        settings: &limits::Settings,
    ) -> Result<Deployed, DeployError> {
        let _serial = self.deploy_lock.lock().unwrap_or_else(|e| e.into_inner());
        // New code is served first from Winch's quick compile unless Cranelift's is
        // already cached; Cranelift's then swaps in from the background.
        let cached = self
            .store
            .as_ref()
            .is_some_and(|store| function::is_cached(&self.engine, wasm, store));
        let baseline = match &self.baseline {
            Some(_) if !cached => self.baseline_engine(),
            _ => None,
        };
        let mut function = match baseline {
            Some((engine, linker)) => {
                let mut function = function::Function::load(
                    engine,
                    linker,
                    name,
                    wasm,
                    settings,
                    &self.defaults,
                    self.max_memory_bytes,
                    None,
                )?;
                function.compiler = "winch";
                function
            }
            None => self.load(name, wasm, settings)?,
        };
        heap::release_free_memory();
        if let Some(store) = &self.store {
            function.deployed_at = store.put(name, wasm, settings)?.deployed_at;
        }
        let replaced = self.install(function);
        if baseline.is_some()
            && let Some(installed) = self.invoker.registry.get(name)
        {
            self.tier_up(installed, wasm.to_vec(), settings.clone());
        }
        Ok(if replaced {
            Deployed::Replaced
        } else {
            Deployed::Created
        })
    }

    /// Winch's engine and linker, built on first use; `None` (Cranelift only) if that
    /// fails, which is logged.
    fn baseline_engine(&self) -> Option<&Baseline> {
        let cell = self.baseline.as_ref()?;
        if let Some(baseline) = cell.get() {
            return Some(baseline);
        }
        let built = engine::build(&self.config, wasmtime::Strategy::Winch)
            .and_then(|engine| Ok((engine.clone(), engine::linker(&engine)?)));
        match built {
            Ok(baseline) => {
                self.ticker.add(baseline.0.clone());
                Some(cell.get_or_init(|| baseline))
            }
            Err(e) => {
                tracing::error!(
                    "building the baseline compiler's engine: {e:#}; compiling with Cranelift only"
                );
                None
            }
        }
    }

    /// Compiles `expected`'s component with Cranelift on a background thread (caching
    /// the code in the store) and swaps the result in, unless a newer deploy or a
    /// delete replaced `expected` meanwhile.
    fn tier_up(
        &self,
        expected: Arc<function::Function>,
        wasm: Vec<u8>,
        settings: limits::Settings,
    ) {
        let engine = self.engine.clone();
        let linker = self.linker.clone();
        let store = self.store.clone();
        let invoker = self.invoker.clone();
        let defaults = self.defaults.clone();
        let max_memory_bytes = self.max_memory_bytes;
        let lock = self.tier_up_lock.clone();
        let spawned = std::thread::Builder::new()
            .name("tier-up".into())
            .spawn(move || {
                let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
                if !invoker.registry.is_current(&expected) {
                    return;
                }
                let name = expected.name.clone();
                let loaded = function::Function::load(
                    &engine,
                    &linker,
                    &name,
                    &wasm,
                    &settings,
                    &defaults,
                    max_memory_bytes,
                    store.as_ref(),
                );
                match loaded {
                    Ok(mut optimized) => {
                        optimized.deployed_at = expected.deployed_at;
                        let seconds = optimized.compile_seconds;
                        if invoker.registry.replace_if_current(&expected, optimized) {
                            let faas = &invoker.faas;
                            faas.compile_duration
                                .with_label_values(&[&*name])
                                .observe(seconds);
                            faas.compiles.with_label_values(&["compiled"]).inc();
                            tracing::info!(
                                function = %name,
                                compile_seconds = seconds,
                                "optimized code swapped in"
                            );
                        }
                    }
                    Err(e) => tracing::error!(
                        function = %name,
                        "compiling optimized code failed; the baseline code keeps serving: {e}"
                    ),
                }
                heap::release_free_memory();
            });
        if let Err(e) = spawned {
            tracing::error!("starting a background compile: {e}; the baseline code keeps serving");
        }
    }

    /// Removes `name` (and its stored copy). False if there was no such function.
    pub fn remove(&self, name: &str) -> std::io::Result<bool> {
        let _serial = self.deploy_lock.lock().unwrap_or_else(|e| e.into_inner());
        let stored = match &self.store {
            Some(store) => store.remove(name)?,
            None => false,
        };
        let removed = self.invoker.registry.remove(name).is_some();
        self.invoker
            .faas
            .functions
            .set(self.invoker.registry.len() as i64);
        Ok(stored || removed)
    }

    /// Installs `function`; true if it replaced a version.
    fn install(&self, function: function::Function) -> bool {
        let faas = &self.invoker.faas;
        faas.compile_duration
            .with_label_values(&[&*function.name])
            .observe(function.compile_seconds);
        faas.compiles
            .with_label_values(&[if function.from_cache {
                "cached"
            } else if function.compiler == "winch" {
                "baseline"
            } else {
                "compiled"
            }])
            .inc();
        let replaced = self.invoker.registry.insert(function).is_some();
        faas.functions.set(self.invoker.registry.len() as i64);
        replaced
    }

    pub fn invoker(&self) -> Arc<invoke::Invoker> {
        self.invoker.clone()
    }

    pub fn functions(&self) -> Vec<Arc<function::Function>> {
        self.invoker.registry.all()
    }

    pub fn function(&self, name: &str) -> Option<Arc<function::Function>> {
        self.invoker.registry.get(name)
    }

    fn count_deployment(&self, result: &str) {
        self.invoker
            .faas
            .deployments
            .with_label_values(&[result])
            .inc();
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let prom = prometheus::Registry::new();
    prom.register(Box::new(ProcessCollector::new()))?;
    // Every function is compiled and checked before a socket is bound.
    let runtime = Arc::new(Runtime::new(&config, &prom)?);

    let shutdown = Shutdown::on_signals()?;
    let traffic = service_ops::listen(config.listen, "traffic").await?;
    let ops_listener = service_ops::listen(config.ops_listen, "ops").await?;

    let serve_config = |name, connections| ServeConfig {
        name,
        drain: std::time::Duration::from_secs_f64(config.drain_timeout_secs),
        header_read_timeout: std::time::Duration::from_secs_f64(config.header_read_timeout_secs),
        connections,
    };
    let invoker = runtime.invoker();
    let connections = invoker.http.connections();
    let traffic_service =
        hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let invoker = invoker.clone();
            async move { Ok::<_, Infallible>(invoker.handle(request).await) }
        });
    let ops_shutdown = shutdown.clone();
    let api = Arc::new(api::Api::new(
        runtime.clone(),
        config.deploy_token.clone(),
        config.max_deploy_bytes,
    ));
    let ops_service =
        hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let (api, prom, shutdown) = (api.clone(), prom.clone(), ops_shutdown.clone());
            async move {
                let response = match request.uri().path() {
                    "/metrics" => ops::metrics(&prom),
                    "/healthz" => ops::healthz(shutdown.is_triggered()),
                    _ => api.handle(request).await,
                };
                Ok::<_, Infallible>(response)
            }
        });
    let traffic = tokio::spawn(service_ops::serve(
        traffic,
        traffic_service,
        shutdown.clone(),
        serve_config("traffic", Some(connections)),
    ));
    let ops = tokio::spawn(service_ops::serve(
        ops_listener,
        ops_service,
        shutdown.clone(),
        serve_config("ops", None),
    ));
    traffic.await?;
    ops.await?;
    drop(runtime);
    tracing::info!("stopped");
    Ok(())
}
