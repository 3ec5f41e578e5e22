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

use crate::traffic::{Functions, Traffic};
use crate::{HttpMetrics, ProcessCollector, ServeConfig, Shutdown, listen, ops, serve};

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
/// `--ops-listen`, `--drain-timeout`, `--header-read-timeout`, `--worker-threads`, each
/// with an environment variable `{PREFIX}_{FLAG}` for containers. One definition, so
/// both sides parse, default and document them alike.
#[macro_export]
macro_rules! listener_flags {
    ($name:ident, env_prefix = $prefix:literal, traffic = $traffic:literal, ops = $ops:literal) => {
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

            /// Tokio worker threads (default: one per core).
            #[arg(long, env = concat!($prefix, "_WORKER_THREADS"))]
            pub worker_threads: Option<std::num::NonZeroUsize>,
        }

        impl $name {
            pub fn listeners(&self) -> $crate::start::Listeners {
                $crate::start::Listeners {
                    traffic: self.listen,
                    ops: self.ops_listen,
                    drain: self.drain_timeout,
                    header_read_timeout: self.header_read_timeout,
                    worker_threads: self.worker_threads,
                }
            }
        }
    };
}

/// What a server answers on its ops listener besides `/metrics` and `/healthz`.
pub trait Ops: Send + Sync + 'static {
    fn handle(
        &self,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send;
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
            &format!("no ops endpoint {path:?}; try /metrics or /healthz"),
        ))
    }
}

/// What a server serves: its functions on the traffic listener, its ops endpoints.
#[derive(Debug)]
pub struct App<F, O> {
    pub functions: Arc<F>,
    pub ops: O,
}

/// Runs a server until SIGTERM or SIGINT, then drains and returns. `build` makes the
/// app with its metrics registered in the registry it is given; it runs before any
/// socket is bound, so whatever it checks fails the start cleanly.
pub fn run<F, O, B>(listeners: &Listeners, build: B) -> anyhow::Result<()>
where
    F: Functions,
    O: Ops,
    B: FnOnce(&prometheus::Registry) -> anyhow::Result<App<F, O>>,
{
    listeners.validate()?;
    crate::tokio_runtime(listeners.worker_threads)?.block_on(serve_all(listeners, build))
}

async fn serve_all<F, O, B>(listeners: &Listeners, build: B) -> anyhow::Result<()>
where
    F: Functions,
    O: Ops,
    B: FnOnce(&prometheus::Registry) -> anyhow::Result<App<F, O>>,
{
    let registry = prometheus::Registry::new();
    registry.register(Box::new(ProcessCollector::new()))?;
    let http = HttpMetrics::new(&registry)?;
    let App { functions, ops } = build(&registry)?;
    let ops = Arc::new(ops);

    let shutdown = Shutdown::on_signals()?;
    let traffic_listener = listen(listeners.traffic, "traffic").await?;
    let ops_listener = listen(listeners.ops, "ops").await?;

    let config = |name, connections| ServeConfig {
        name,
        drain: listeners.drain,
        header_read_timeout: listeners.header_read_timeout,
        connections,
    };
    let connections = http.connections();
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
                _ => ops.handle(request).await,
            };
            Ok::<_, Infallible>(response)
        }
    });
    let traffic = tokio::spawn(serve(
        traffic_listener,
        traffic_service,
        shutdown.clone(),
        config("traffic", Some(connections)),
    ));
    let ops_server = tokio::spawn(serve(
        ops_listener,
        ops_service,
        shutdown.clone(),
        config("ops", None),
    ));
    traffic.await?;
    ops_server.await?;
    drop(functions);
    tracing::info!("stopped");
    Ok(())
}
