//! Plumbing shared by the runtime and the webserver, so both sides of the comparison are
//! served, measured and stopped the same way:
//!
//! - [`listen`]: bind and announce `listening on http://ADDR` (tests bind port 0 and read it);
//! - [`serve`]: the HTTP/1.1 accept loop with graceful, bounded shutdown;
//! - [`Shutdown`]: SIGTERM / ctrl-c fan-out to every listener;
//! - [`HttpMetrics`] and [`ProcessCollector`]: the metric names DESIGN.md fixes for both sides;
//! - [`ops`]: `/metrics` and `/healthz` responses.

mod http_metrics;
pub mod ops;
mod process;
mod server;
mod shutdown;

pub use http_metrics::{HttpMetrics, InFlight, LATENCY_BUCKETS, method_label};
pub use process::{ProcStat, ProcessCollector};
pub use server::{BoxError, ServeConfig, listen, serve};
pub use shutdown::Shutdown;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The multi-threaded tokio runtime both servers run on: `worker_threads` workers, or
/// one per core.
pub fn tokio_runtime(worker_threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = worker_threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
}
