use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

use crate::Shutdown;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Binds `addr` and prints `listening on http://ADDR` (the real address, so port 0 works)
/// on stdout, for people and for tests that start the binary.
pub async fn listen(addr: SocketAddr, what: &str) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("binding {what} listener on {addr}: {e}"))
    })?;
    let local = listener.local_addr()?;
    // One line, flushed at once: a test waiting for it must not wait for a buffer.
    println!("{what} listening on http://{local}");
    Ok(listener)
}

/// How a listener serves and how it stops.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Name used in logs.
    pub name: &'static str,
    /// How long in-flight requests may run after shutdown starts.
    pub drain: Duration,
    /// A client that has not sent its headers by then is dropped (slowloris guard).
    pub header_read_timeout: Duration,
    /// Counts accepted connections, if given: with keep-alive working (nginx upstream
    /// keep-alive, a pooling client) it grows far slower than the request count.
    pub connections: Option<prometheus::IntCounter>,
}

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
        .keep_alive(true);

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
        // Responses are small and written in one go; Nagle plus delayed ACKs would add
        // up to 40 ms to a keep-alive request that follows a small response.
        let _ = stream.set_nodelay(true);
        if let Some(connections) = &config.connections {
            connections.inc();
        }
        let conn = builder.serve_connection(TokioIo::new(stream), service.clone());
        let conn = graceful.watch(conn);
        let name = config.name;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // A client going away mid-request is routine, not an error worth more.
                tracing::debug!("{name}: connection from {peer}: {e}");
            }
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
