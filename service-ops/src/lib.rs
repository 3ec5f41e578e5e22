//! Plumbing shared by the runtime and the webserver, so both sides of the comparison are
//! served, measured and stopped the same way:
//!
//! - [`bind`]: bind and announce `listening on http://ADDR` (tests bind port 0 and read it);
//! - [`serve`]: the HTTP/1.1 accept loop with connection limits, write timeouts and
//!   graceful, bounded shutdown;
//! - [`Shutdown`]: SIGTERM / ctrl-c fan-out to every listener;
//! - [`HttpMetrics`] and [`ProcessCollector`]: the metric names DESIGN.md fixes for both sides;
//! - [`ops`]: `/metrics` and `/healthz` responses;
//! - [`start::run`]: all of the above put together, the one start-up both binaries call;
//! - [`traffic`]: `/{function}/...` routing, the `(unknown)` label and request metrics;
//! - [`body`]: the limited request-body reader;
//! - [`units`]: flag and setting types that cannot hold a bad value (sizes, durations).

pub mod body;
mod http_metrics;
pub mod ops;
mod peers;
mod process;
mod server;
mod shutdown;
pub mod start;
pub mod traffic;
pub mod units;

pub use http_metrics::{HttpMetrics, InFlight, LATENCY_BUCKETS, method_label};
pub use process::{ProcStat, ProcessCollector};
pub use server::{
    BoxError, ConnectionMetrics, ListenerMetrics, RemoteAddr, ServeConfig, bind,
    raise_open_files_limit, serve,
};
pub use shutdown::Shutdown;
pub use units::{Mib, positive_duration, wasm_memory_mib};

/// A binary's exit: success, or the error's whole chain on stderr after the program's
/// name and a failure code.
pub fn exit_code(program: &str, result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), through a writer thread: a
/// request's task never blocks on a slow terminal or a full pipe, and when the writer
/// falls behind by more than its buffer, lines are dropped rather than requests slowed.
/// Keep the guard until the process ends: dropping it flushes what is queued.
#[must_use = "dropping the guard stops the log writer"]
pub fn init_tracing() -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer)
        .try_init();
    guard
}

/// The multi-threaded tokio runtime both servers run on: `worker_threads` workers, or
/// one per core.
pub fn tokio_runtime(
    worker_threads: Option<std::num::NonZeroUsize>,
) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = worker_threads
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
}
