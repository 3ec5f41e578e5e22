//! How both servers start, serve and stop: one function, so "instrumented the same way"
//! is code, not a convention.
//!
//! [`run`] builds the tokio runtime, the metrics registry (with the process collector and
//! the HTTP metrics), lets the caller build its app on it, then binds both listeners
//! before serving either (a bad address fails the start, not half of it), serves
//! `/{function}/...` on the traffic listener and `/metrics`, `/healthz` plus the app's
//! own endpoints on the ops listener, and drains both on SIGTERM or ctrl-c.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::server::ConnectionMetrics;
use crate::traffic::{Functions, Traffic};
use crate::{HttpMetrics, ProcessCollector, ServeConfig, Shutdown, bind, ops, serve};
use tokio::net::TcpListener;

/// Where and how a server listens: what both binaries' flags say (see
/// [`crate::listener_flags!`]).
#[derive(Debug, Clone)]
pub struct Listeners {
    /// Function traffic (`/{function}/...`).
    pub traffic: SocketAddr,
    /// `/metrics`, `/healthz` and the app's own endpoints.
    pub ops: SocketAddr,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub drain: Duration,
    /// How long a client may take to send its request headers.
    pub header_read_timeout: Duration,
    /// How long a client may take to accept response bytes before it is dropped.
    pub write_timeout: Duration,
    /// Open connections on the traffic listener at most.
    pub max_connections: NonZeroUsize,
    /// Open connections on the ops listener at most: its own reserve, apart from traffic.
    pub ops_max_connections: NonZeroUsize,
    /// Open traffic connections per client address at most (0: no cap).
    pub max_connections_per_peer: usize,
    /// Open ops connections per client address at most (0: no cap).
    pub ops_max_connections_per_peer: usize,
    /// Largest request head in bytes (431 past it).
    pub max_request_head_bytes: usize,
    /// Most request headers (431 past it).
    pub max_request_headers: usize,
    /// Tokio worker threads; one per core if `None`.
    pub worker_threads: Option<NonZeroUsize>,
}

/// A start-up setting that contradicts another.
#[derive(Debug, thiserror::Error)]
pub enum ListenersError {
    #[error("--listen and --ops-listen must differ, both are {0}")]
    SameAddress(SocketAddr),
}

impl Listeners {
    /// The cross-field rules; each value's own rules are in its type.
    pub fn validate(&self) -> Result<(), ListenersError> {
        if self.traffic == self.ops && self.traffic.port() != 0 {
            return Err(ListenersError::SameAddress(self.traffic));
        }
        Ok(())
    }
}

/// The flags every server has, as a clap `Args` struct named `$name`: `--listen`,
/// `--ops-listen`, `--drain-timeout`, `--header-read-timeout`, `--write-timeout`,
/// `--max-connections`, `--ops-max-connections`, `--body-read-timeout`,
/// `--max-body-buffer-mib`, `--worker-threads`, each
/// with an environment variable `{PREFIX}_{FLAG}` for containers. One definition, so
/// both sides parse, default and document them alike.
#[macro_export]
macro_rules! listener_flags {
    ($name:ident, env_prefix = $prefix:literal, traffic = $traffic:literal, ops = $ops:literal,
     per_peer = $per_peer:literal) => {
        /// Where and how this server listens.
        #[derive(clap::Args, Debug, Clone)]
        pub struct $name {
            /// Address for function traffic (`/{function}/...`).
            #[arg(long, env = concat!($prefix, "_LISTEN"), default_value = $traffic)]
            pub listen: std::net::SocketAddr,

            /// Address for the ops endpoints: `/metrics`, `/healthz` (and the runtime's
            /// deploy API, `/functions`).
            #[arg(long, env = concat!($prefix, "_OPS_LISTEN"), default_value = $ops)]
            pub ops_listen: std::net::SocketAddr,

            /// How long in-flight requests may take to finish after SIGTERM (`30s`,
            /// `500ms`, or a number of seconds).
            #[arg(long, visible_alias = "drain-timeout-secs", env = concat!($prefix, "_DRAIN_TIMEOUT"),
                  default_value = "30s", value_parser = $crate::positive_duration)]
            pub drain_timeout: std::time::Duration,

            /// How long a client may take to send its request headers.
            #[arg(long, visible_alias = "header-read-timeout-secs",
                  env = concat!($prefix, "_HEADER_READ_TIMEOUT"),
                  default_value = "10s", value_parser = $crate::positive_duration)]
            pub header_read_timeout: std::time::Duration,

            /// How long a client may take to accept response bytes (between two
            /// writes, as nginx's `send_timeout`) before its connection is dropped.
            #[arg(long, env = concat!($prefix, "_WRITE_TIMEOUT"),
                  default_value = "60s", value_parser = $crate::positive_duration)]
            pub write_timeout: std::time::Duration,

            /// Open connections on the traffic listener at most; one more is answered
            /// 503 and closed. Lowered at start to fit the open-files limit.
            #[arg(long, env = concat!($prefix, "_MAX_CONNECTIONS"), default_value = "10000")]
            pub max_connections: std::num::NonZeroUsize,

            /// Open connections on the ops listener at most (served on its own thread,
            /// so traffic never delays `/healthz`, `/metrics` or the deploy API).
            #[arg(long, env = concat!($prefix, "_OPS_MAX_CONNECTIONS"), default_value = "64")]
            pub ops_max_connections: std::num::NonZeroUsize,

            /// Open traffic connections one client address may hold; one more is answered
            /// 503 and closed, while other clients are served. 0: no cap (behind a
            /// trusted proxy, whose address every request comes from).
            #[arg(long, env = concat!($prefix, "_MAX_CONNECTIONS_PER_PEER"), default_value = $per_peer)]
            pub max_connections_per_peer: usize,

            /// Open ops connections one client address may hold (0: no cap), so one
            /// client cannot take the ops listener from the liveness probe and Prometheus.
            #[arg(long, env = concat!($prefix, "_OPS_MAX_CONNECTIONS_PER_PEER"), default_value = "16")]
            pub ops_max_connections_per_peer: usize,

            /// Largest request head (request line and headers) in bytes; a larger one is
            /// answered 431. At least 8192 (nginx reads up to four 8 KiB lines).
            #[arg(long, env = concat!($prefix, "_MAX_REQUEST_HEAD_BYTES"), default_value = "32768",
                  value_parser = clap::value_parser!(u32).range(8192..))]
            pub max_request_head_bytes: u32,

            /// Most request headers; more are answered 431.
            #[arg(long, env = concat!($prefix, "_MAX_REQUEST_HEADERS"), default_value = "100",
                  value_parser = clap::value_parser!(u32).range(1..))]
            pub max_request_headers: u32,

            /// How long a client may take to send a request body, whole; a slower
            /// one is answered 408 and its connection closed.
            #[arg(long, env = concat!($prefix, "_BODY_READ_TIMEOUT"),
                  default_value = "10s", value_parser = $crate::positive_duration)]
            pub body_read_timeout: std::time::Duration,

            /// Request bodies buffered at once, all requests together, in MiB; a body
            /// that does not fit is answered 503 with Retry-After.
            #[arg(long, env = concat!($prefix, "_MAX_BODY_BUFFER_MIB"), default_value = "256")]
            pub max_body_buffer_mib: std::num::NonZeroU32,

            /// Of that, what one client address may hold at once, in MiB; past it that
            /// client's bodies get 503 while others' are read. 0: no share (behind a
            /// trusted proxy every request comes from the proxy's address).
            #[arg(long, env = concat!($prefix, "_MAX_BODY_BUFFER_PER_PEER_MIB"), default_value = "64")]
            pub max_body_buffer_per_peer_mib: u32,

            /// Tokio worker threads for traffic (default: one per core).
            #[arg(long, env = concat!($prefix, "_WORKER_THREADS"))]
            pub worker_threads: Option<std::num::NonZeroUsize>,
        }

        impl $name {
            /// The request-body reader these flags describe, one per process.
            pub fn body_reader(&self) -> $crate::body::BodyReader {
                $crate::body::BodyReader::new(
                    self.body_read_timeout,
                    u64::from(self.max_body_buffer_mib.get()) << 20,
                    u64::from(self.max_body_buffer_per_peer_mib) << 20,
                )
            }

            pub fn listeners(&self) -> $crate::start::Listeners {
                $crate::start::Listeners {
                    traffic: self.listen,
                    ops: self.ops_listen,
                    drain: self.drain_timeout,
                    header_read_timeout: self.header_read_timeout,
                    write_timeout: self.write_timeout,
                    max_connections: self.max_connections,
                    ops_max_connections: self.ops_max_connections,
                    max_connections_per_peer: self.max_connections_per_peer,
                    ops_max_connections_per_peer: self.ops_max_connections_per_peer,
                    max_request_head_bytes: self.max_request_head_bytes as usize,
                    max_request_headers: self.max_request_headers as usize,
                    worker_threads: self.worker_threads,
                }
            }
        }
    };
}

/// What a server answers on its ops listener besides `/metrics`, `/healthz` and
/// `/readyz`.
pub trait Ops: Send + Sync + 'static {
    fn handle(
        &self,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send;

    /// Whether the server is fit to take traffic beyond being up (`/readyz`), and if
    /// not, why. Up and not draining is all most servers need.
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// No endpoints of its own: 404 naming the ones there are.
#[derive(Debug, Clone, Copy)]
pub struct NoOps;

impl Ops for NoOps {
    fn handle(
        &self,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send {
        let path = request.uri().path().to_string();
        std::future::ready(ops::json_error(
            404,
            &format!("no ops endpoint {path:?}; try /metrics, /healthz or /readyz"),
        ))
    }
}

/// What a server serves: its functions on the traffic listener, its ops endpoints.
#[derive(Debug)]
pub struct App<F, O> {
    pub functions: Arc<F>,
    pub ops: O,
}

/// Open files kept back from the traffic listener's connections: the ops listener's,
/// the store's and compiled-code cache's files, logs, the process's own.
const RESERVED_FILES: u64 = 256;

/// Runs a server until SIGTERM or SIGINT, then drains and returns. `build` makes the
/// app with its metrics registered in the registry it is given; it runs before any
/// socket is bound, so whatever it checks fails the start cleanly.
///
/// Traffic is served by the multi-threaded runtime; the ops listener by a thread of its
/// own with its own small runtime and connection limit, so that no amount of traffic,
/// however CPU-heavy, delays health checks, metrics or the deploy API.
pub fn run<F, O, B>(listeners: &Listeners, build: B) -> anyhow::Result<()>
where
    F: Functions,
    O: Ops,
    B: FnOnce(&prometheus::Registry, &HttpMetrics) -> anyhow::Result<App<F, O>>,
{
    listeners.validate()?;
    let mut listeners = listeners.clone();
    if let Some(files) = crate::server::raise_open_files_limit() {
        let fit = files
            .saturating_sub(RESERVED_FILES + listeners.ops_max_connections.get() as u64)
            .max(1);
        if (listeners.max_connections.get() as u64) > fit {
            tracing::warn!(
                "--max-connections {} lowered to {fit} to fit the open-files limit of {files}",
                listeners.max_connections
            );
            listeners.max_connections = NonZeroUsize::new(fit as usize).expect("at least 1");
        }
    }
    crate::tokio_runtime(listeners.worker_threads)?.block_on(serve_all(&listeners, build))
}

async fn serve_all<F, O, B>(listeners: &Listeners, build: B) -> anyhow::Result<()>
where
    F: Functions,
    O: Ops,
    B: FnOnce(&prometheus::Registry, &HttpMetrics) -> anyhow::Result<App<F, O>>,
{
    let registry = prometheus::Registry::new();
    registry.register(Box::new(ProcessCollector::new()))?;
    let http = HttpMetrics::new(&registry)?;
    let connection_metrics = ConnectionMetrics::new(&registry)?;
    let App { functions, ops } = build(&registry, &http)?;
    let ops = Arc::new(ops);

    let shutdown = Shutdown::on_signals()?;
    let traffic_listener = TcpListener::from_std(bind(listeners.traffic, "traffic")?)?;
    let ops_listener = bind(listeners.ops, "ops")?;

    let config = |name, max_connections: NonZeroUsize, per_peer, accepted| ServeConfig {
        name,
        drain: listeners.drain,
        header_read_timeout: listeners.header_read_timeout,
        write_timeout: listeners.write_timeout,
        max_connections: max_connections.get(),
        max_connections_per_peer: per_peer,
        max_head_bytes: listeners.max_request_head_bytes,
        max_headers: listeners.max_request_headers,
        metrics: connection_metrics.listener(name, accepted),
    };
    let traffic_config = config(
        "traffic",
        listeners.max_connections,
        listeners.max_connections_per_peer,
        Some(http.connections()),
    );
    let ops_config = config(
        "ops",
        listeners.ops_max_connections,
        listeners.ops_max_connections_per_peer,
        None,
    );
    // One Arc clone per request, not a clone of every metric handle.
    let traffic = Arc::new(Traffic::new(functions.clone(), http));
    let traffic_service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let traffic = traffic.clone();
        async move { Ok::<_, Infallible>(traffic.handle(request).await) }
    });
    let ops_shutdown = shutdown.clone();
    let ops_service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let (ops, registry, shutdown) = (ops.clone(), registry.clone(), ops_shutdown.clone());
        async move {
            let response = match request.uri().path() {
                "/metrics" => crate::ops::metrics(&registry),
                "/healthz" => crate::ops::healthz(shutdown.is_triggered()),
                "/readyz" => crate::ops::readyz(shutdown.is_triggered(), ops.ready()),
                _ => ops.handle(request).await,
            };
            Ok::<_, Infallible>(response)
        }
    });
    let ops_thread = {
        let shutdown = shutdown.clone();
        let ops_runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("ops")
            .build()?;
        std::thread::Builder::new()
            .name("ops".into())
            .spawn(move || {
                ops_runtime.block_on(async move {
                    let listener = TcpListener::from_std(ops_listener)?;
                    serve(listener, ops_service, shutdown, ops_config).await;
                    std::io::Result::Ok(())
                })
            })?
    };
    serve(
        traffic_listener,
        traffic_service,
        shutdown.clone(),
        traffic_config,
    )
    .await;
    let ops_result = tokio::task::spawn_blocking(move || ops_thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the ops thread panicked"))?;
    ops_result?;
    drop(functions);
    tracing::info!("stopped");
    Ok(())
}
