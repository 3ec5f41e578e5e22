//! The traditional side of the comparison: one long-running process that links every
//! example function natively and routes `/{function}/...` to it, meant to sit behind
//! nginx. It is instrumented exactly like the serverless runtime (same metric names,
//! same ops endpoints), so the two differ only in how a request is executed.

mod app;
mod config;
pub mod functions;

pub use config::Config;

use service_ops::{HttpMetrics, ProcessCollector, ServeConfig, Shutdown};
use std::sync::Arc;

/// Runs the webserver until SIGTERM or SIGINT, then drains and returns.
pub fn run(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    service_ops::tokio_runtime(config.worker_threads)?.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let registry = prometheus::Registry::new();
    registry.register(Box::new(ProcessCollector::new()))?;
    let metrics = HttpMetrics::new(&registry)?;
    let shutdown = Shutdown::on_signals()?;

    // Bind both before serving either, so a bad address fails the start, not half of it.
    let traffic = service_ops::listen(config.listen, "traffic").await?;
    let ops = service_ops::listen(config.ops_listen, "ops").await?;

    let connections = metrics.connections();
    let serve_config = |name, connections| ServeConfig {
        name,
        drain: config.drain_timeout(),
        header_read_timeout: config.header_read_timeout(),
        connections,
    };
    let app = Arc::new(app::App::new(metrics, config.max_body_bytes));
    let traffic = tokio::spawn(service_ops::serve(
        traffic,
        app::traffic_service(app),
        shutdown.clone(),
        serve_config("traffic", Some(connections)),
    ));
    let ops = tokio::spawn(service_ops::serve(
        ops,
        app::ops_service(registry, shutdown.clone()),
        shutdown.clone(),
        serve_config("ops", None),
    ));
    traffic.await?;
    ops.await?;
    tracing::info!("stopped");
    Ok(())
}
