use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;

use crate::Shutdown;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The address of the client a request came from, in every served request's extensions
/// (the proxy's, behind a proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// A connection's service: `inner`, with [`RemoteAddr`] added to each request.
#[derive(Debug, Clone)]
struct WithRemoteAddr<S> {
    inner: S,
    peer: SocketAddr,
}

impl<S, B> Service<http::Request<B>> for WithRemoteAddr<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut request: http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(RemoteAddr(self.peer));
        self.inner.call(request)
    }
}

/// Binds `addr` and prints `{what} listening on http://ADDR` (the real address, so port 0
/// works) on stdout, for people and for tests that start the binary. A std listener, so
/// whichever tokio runtime serves it can adopt it ([`TcpListener::from_std`]).
pub fn bind(addr: SocketAddr, what: &str) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        std::io::Error::new(e.kind(), format!("binding {what} listener on {addr}: {e}"))
    })?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    // One line, flushed at once: a test waiting for it must not wait for a buffer.
    println!("{what} listening on http://{local}");
    Ok(listener)
}

/// How a listener serves and how it stops.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Name used in logs and as the `listener` label.
    pub name: &'static str,
    /// How long in-flight requests may run after shutdown starts.
    pub drain: Duration,
    /// A client that has not sent its headers by then is dropped (slowloris guard).
    pub header_read_timeout: Duration,
    /// A client that takes no response bytes for this long is dropped (nginx's
    /// `send_timeout`): a reader that stalls cannot pin a connection and its response.
    pub write_timeout: Duration,
    /// Open connections at most; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Open connections per client address at most (0: no cap); one more from that
    /// address is answered 503 and closed.
    pub max_connections_per_peer: usize,
    /// Largest request head, in bytes: a larger one is answered 431 (at least 8192).
    pub max_head_bytes: usize,
    /// Most request headers: more are answered 431.
    pub max_headers: usize,
    /// The listener's connection metrics.
    pub metrics: ListenerMetrics,
}

/// Connection counts per listener, under the same names on both sides.
#[derive(Clone, Debug)]
pub struct ConnectionMetrics {
    open: IntGaugeVec,
    rejected: IntCounterVec,
}

impl ConnectionMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let open = IntGaugeVec::new(
            Opts::new(
                "http_server_connections_open",
                "TCP connections being served now, by listener (traffic or ops).",
            ),
            &["listener"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "http_server_connections_rejected_total",
                "TCP connections answered 503 and closed because the listener was at \
                 its connection limit, by listener.",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        Ok(Self { open, rejected })
    }

    /// The series of one listener; `accepted` counts its accepted connections, if given.
    pub fn listener(&self, name: &str, accepted: Option<IntCounter>) -> ListenerMetrics {
        ListenerMetrics {
            accepted,
            open: self.open.with_label_values(&[name]),
            rejected: self.rejected.with_label_values(&[name]),
        }
    }
}

/// One listener's connection series.
#[derive(Clone, Debug)]
pub struct ListenerMetrics {
    /// Accepted connections: with keep-alive working (nginx upstream keep-alive, a
    /// pooling client) it grows far slower than the request count.
    accepted: Option<IntCounter>,
    open: IntGauge,
    rejected: IntCounter,
}

/// Idle TCP keep-alive probes after this long: a peer that vanished without a FIN
/// (a crashed client, a dropped NAT entry) frees its connection instead of holding it.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// At most this many connections over the limit are being refused (answered 503 and
/// drained) at once; beyond that they are closed at once.
const MAX_REFUSING: usize = 256;
/// How long a refused connection is given to read its 503.
const REFUSE_LINGER: Duration = Duration::from_millis(500);

/// Serves HTTP/1.1 on `listener` until `shutdown`, then stops accepting, lets in-flight
/// requests finish (idle keep-alive connections close at once), and gives up on what
/// remains after `config.drain`.
pub async fn serve<S, B>(listener: TcpListener, service: S, shutdown: Shutdown, config: ServeConfig)
where
    S: Service<http::Request<Incoming>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_head_bytes.max(8192))
        .keep_alive(true);
    // hyper's own default is 100 headers on the stack; setting any number moves them to
    // the heap on every request, so only a number other than that is set.
    if config.max_headers != 100 {
        builder.max_headers(config.max_headers);
    }
    let slots = Arc::new(Semaphore::new(config.max_connections));
    // Open connections per client address (an IPv4 client over an IPv6 socket counted
    // as itself over IPv4), when capped.
    let peers = (config.max_connections_per_peer > 0)
        .then(|| crate::peers::PeerCounts::new(config.max_connections_per_peer as u64));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let metrics = config.metrics.clone();

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends are transient: log, back off a moment, go on.
                    tracing::warn!("{}: accept failed: {e}", config.name);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        configure(&stream);
        let admitted = match &peers {
            Some(peers) => peers.take(peer.ip().to_canonical(), 1).map(Some),
            None => Some(None),
        }
        .and_then(|held| Some((held, slots.clone().try_acquire_owned().ok()?)));
        let Some((peer_held, slot)) = admitted else {
            metrics.rejected.inc();
            if let Ok(refusal) = refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(refusal);
                });
            }
            continue;
        };
        if let Some(accepted) = &metrics.accepted {
            accepted.inc();
        }
        let mut io = TimeoutStream::new(stream);
        io.set_write_timeout(Some(config.write_timeout));
        let service = WithRemoteAddr {
            inner: service.clone(),
            peer,
        };
        let conn = builder.serve_connection(TokioIo::new(Box::pin(io)), service);
        let conn = graceful.watch(conn);
        let (name, open) = (config.name, OpenConnection::new(metrics.open.clone()));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // A client going away mid-request is routine, not an error worth more.
                tracing::debug!("{name}: connection from {peer}: {e}");
            }
            drop((open, slot, peer_held));
        });
    }

    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("{}: drained", config.name),
        () = tokio::time::sleep(config.drain) => {
            tracing::warn!("{}: drain timeout of {:?} passed, closing what remains", config.name, config.drain);
        }
    }
}

fn configure(stream: &TcpStream) {
    // Responses are small and written in one go; Nagle plus delayed ACKs would add
    // up to 40 ms to a keep-alive request that follows a small response.
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive);
}

/// Answers a connection over the limit with a 503 it can read: write it, stop writing,
/// and read what the client still sends for a moment before closing, so the close does
/// not reset the connection before the client has read the answer.
async fn refuse(mut stream: TcpStream) {
    const BODY: &str = r#"{"error":"too many connections; retry shortly"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(REFUSE_LINGER, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}

/// Keeps `http_server_connections_open` raised while a connection is served.
struct OpenConnection(IntGauge);

impl OpenConnection {
    fn new(gauge: IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Raises this process's soft limit on open files to the hard limit (a server's
/// connections are files; distributions start processes at 1024) and returns the limit
/// in force, `None` if unlimited.
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return limit.maximum,
            Err(e) => tracing::warn!("could not raise the open-files limit: {e}"),
        }
    }
    limit.current
}
