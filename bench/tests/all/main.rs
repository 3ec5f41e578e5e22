//! bench's integration tests: the load engine against local test servers, and a short
//! `bench compare` run against the real runtime, webserver and nginx.

mod compare;
mod dashboards;
mod diff;
mod load;
mod rounds;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A local HTTP/1.1 server whose answer to the n-th request (counted from 0 over all
/// connections) is decided by `behaviour`; it stops when dropped.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// What the test server does with one request.
#[derive(Debug)]
pub enum Answer {
    Ok,
    Status(u16),
    /// Waits, then answers 200.
    After(Duration),
}

impl TestServer {
    pub async fn start(behaviour: fn(u64) -> Answer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_request| {
                        let n = counter.fetch_add(1, Ordering::SeqCst);
                        async move {
                            let status = match behaviour(n) {
                                Answer::Ok => 200,
                                Answer::Status(code) => code,
                                Answer::After(wait) => {
                                    tokio::time::sleep(wait).await;
                                    200
                                }
                            };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from_static(b"{}")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    pub fn url(&self, path: &str) -> http::Uri {
        format!("http://{}{path}", self.addr).parse().unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
