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

async fn serve(config: Config) -> anyhow::Result<()> {
    let prom = prometheus::Registry::new();
    prom.register(Box::new(ProcessCollector::new()))?;
    let http_metrics = HttpMetrics::new(&prom)?;
    let faas = metrics::FaasMetrics::new(&prom)?;

    let engine = engine::build(&config)?;
    let linker = engine::linker(&engine)?;
    let _ticker = engine::EpochTicker::start(engine.clone());

    // Every function is compiled and checked before a socket is bound: a bad one stops
    // the start with its name and reason.
    let registry = Arc::new(registry::Registry::default());
    if let Some(dir) = &config.functions_dir {
        let functions = function::Function::load_dir(
            &engine,
            &linker,
            dir,
            &config.default_limits(),
            config.max_memory_mib << 20,
        )?;
        for function in functions {
            faas.compile_duration
                .with_label_values(&[&*function.name])
                .observe(function.compile_seconds);
            registry.insert(function);
        }
    }
    faas.functions.set(registry.len() as i64);

    let shutdown = Shutdown::on_signals()?;
    let traffic = service_ops::listen(config.listen, "traffic").await?;
    let ops_listener = service_ops::listen(config.ops_listen, "ops").await?;

    let serve_config = |name, connections| ServeConfig {
        name,
        drain: std::time::Duration::from_secs_f64(config.drain_timeout_secs),
        header_read_timeout: std::time::Duration::from_secs_f64(config.header_read_timeout_secs),
        connections,
    };
    let connections = http_metrics.connections();
    let invoker = Arc::new(invoke::Invoker::new(registry, http_metrics, faas));
    let traffic_service = hyper::service::service_fn(move |request| {
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
    tracing::info!("stopped");
    Ok(())
}
