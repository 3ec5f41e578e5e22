//! The serverless side of the comparison: a wasi:http function host.
//!
//! Each function version is compiled and pre-instantiated once ([`function::Function`]);
//! every request gets a new `Store` and a fresh instance from the pooling allocator, runs
//! the guest's `wasi:http/incoming-handler`, streams the response, and is dropped
//! ([`invoke`]). Limits (memory, time, concurrency, body size) fail only the request that
//! hits them.

mod config;
pub mod engine;
pub mod function;
mod heap;
mod host;
pub mod invoke;
pub mod limits;
mod metrics;
pub mod registry;

pub use config::Config;

use std::convert::Infallible;
use std::sync::Arc;

use service_ops::{HttpMetrics, ProcessCollector, ServeConfig, Shutdown, ops};

/// Runs the runtime until SIGTERM or SIGINT, then drains and returns.
pub fn run(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads())
        .enable_all()
        .build()?;
    runtime.block_on(serve(config))
}

/// The host without its listeners: engine, linker, epoch ticker, deployed functions and
/// the invoker that runs requests. `serve` puts sockets in front of it; benchmarks call
/// [`invoke::Invoker::handle`] on it directly.
pub struct Runtime {
    engine: wasmtime::Engine,
    linker: wasmtime::component::Linker<host::Host>,
    invoker: Arc<invoke::Invoker>,
    defaults: limits::Limits,
    max_memory_bytes: u64,
    _ticker: engine::EpochTicker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("functions", &self.invoker.registry.names())
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds the engine and registers every metric in `prom`. Loads `--functions-dir`,
    /// if given: every function is compiled and checked, and a bad one is an error that
    /// names its file.
    pub fn new(config: &Config, prom: &prometheus::Registry) -> anyhow::Result<Self> {
        config.validate()?;
        let http_metrics = HttpMetrics::new(prom)?;
        let faas = metrics::FaasMetrics::new(prom)?;
        let engine = engine::build(config)?;
        let linker = engine::linker(&engine)?;
        let ticker = engine::EpochTicker::start(engine.clone());
        let runtime = Self {
            invoker: Arc::new(invoke::Invoker::new(Default::default(), http_metrics, faas)),
            defaults: config.default_limits(),
            max_memory_bytes: config.max_memory_mib << 20,
            engine,
            linker,
            _ticker: ticker,
        };
        if let Some(dir) = &config.functions_dir {
            let functions = function::Function::load_dir(
                &runtime.engine,
                &runtime.linker,
                dir,
                &runtime.defaults,
                runtime.max_memory_bytes,
            )?;
            for function in functions {
                runtime.install(function);
            }
            heap::release_free_memory();
        }
        Ok(runtime)
    }

    /// Compiles and installs `wasm` as `name`, replacing any previous version.
    pub fn deploy(
        &self,
        name: &str,
        wasm: &[u8],
        settings: &limits::Settings,
    ) -> Result<(), function::LoadError> {
        let function = function::Function::load(
            &self.engine,
            &self.linker,
            name,
            wasm,
            settings,
            &self.defaults,
            self.max_memory_bytes,
        )?;
        self.install(function);
        heap::release_free_memory();
        Ok(())
    }

    fn install(&self, function: function::Function) {
        let faas = &self.invoker.faas;
        faas.compile_duration
            .with_label_values(&[&*function.name])
            .observe(function.compile_seconds);
        self.invoker.registry.insert(function);
        faas.functions.set(self.invoker.registry.len() as i64);
    }

    pub fn invoker(&self) -> Arc<invoke::Invoker> {
        self.invoker.clone()
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let prom = prometheus::Registry::new();
    prom.register(Box::new(ProcessCollector::new()))?;
    // Every function is compiled and checked before a socket is bound.
    let runtime = Runtime::new(&config, &prom)?;

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
    let ops_service =
        hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let response = match request.uri().path() {
                "/metrics" => ops::metrics(&prom),
                "/healthz" => ops::healthz(ops_shutdown.is_triggered()),
                path => ops::json_error(
                    404,
                    &format!("no ops endpoint {path:?}; try /metrics or /healthz"),
                ),
            };
            std::future::ready(Ok::<_, Infallible>(response))
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
