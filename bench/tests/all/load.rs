//! The load engine against local servers whose behaviour is known exactly.

use crate::{Answer, TestServer};
use bench::load::{self, ErrorKind, LoadSpec, Progress};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn spec(url: http::Uri, rate: f64, requests: u64) -> LoadSpec {
    LoadSpec {
        url,
        method: http::Method::GET,
        body: bytes::Bytes::new(),
        rate,
        requests,
        warmup_requests: 0,
        connections: 4,
        timeout: Duration::from_secs(10),
        spread: None,
    }
}

async fn run(spec: &LoadSpec) -> load::LoadResult {
    load::run(spec, Arc::new(Progress::default()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_exactly_the_scheduled_requests_never_ahead_of_schedule() {
    let server = TestServer::start(|_| Answer::Ok).await;
    let mut spec = spec(server.url("/ok?x=1"), 200.0, 100);
    spec.warmup_requests = 20;
    let started = Instant::now();
    let progress = Arc::new(Progress::default());
    let result = load::run(&spec, progress.clone()).await.unwrap();
    let elapsed = started.elapsed();

    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        120,
        "warm-up + measured"
    );
    assert_eq!(progress.done.load(Ordering::SeqCst), 120);
    assert_eq!(result.ok, 100, "warm-up requests are not in the figures");
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    assert_eq!(result.latency.len(), 100);
    // Open loop on a fixed schedule: 120 requests 5 ms apart cannot finish in less than
    // 119 intervals (less the little the scheduler may release early), however fast the
    // server.
    assert!(
        elapsed >= Duration::from_millis(595) - load::EARLY,
        "finished in {elapsed:?}: ahead of the schedule"
    );
    assert_eq!(result.measure_start, Duration::from_millis(100));
    assert!(result.achieved_rate() > 0.0 && result.achieved_rate() <= 200.0 * 1.01);
}

/// The server stalls one request for 500 ms while requests keep falling due every 10 ms on
/// a single connection. A closed-loop tool would record one slow request; here every
/// request that had to wait behind it counts its wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_counts_against_every_request_that_waited_behind_it() {
    let server = TestServer::start(|n| {
        if n == 20 {
            Answer::After(Duration::from_millis(500))
        } else {
            Answer::Ok
        }
    })
    .await;
    let mut spec = spec(server.url("/"), 100.0, 120);
    spec.connections = 1;
    let result = run(&spec).await;

    assert_eq!(result.ok, 120);
    let slow = result
        .latency
        .iter_recorded()
        .filter(|v| v.value_iterated_to() >= 250_000)
        .map(|v| v.count_at_value())
        .sum::<u64>();
    // Requests due in the first half of the stall waited at least 250 ms: about 25.
    assert!(
        slow >= 20,
        "only {slow} requests recorded ≥ 250 ms: coordinated omission"
    );
    assert!(result.latency.max() >= 500_000, "{}", result.latency.max());
    assert!(
        result.send_lag.max() >= 250_000,
        "the queueing shows as send lag"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_responses_are_counted_by_status_and_left_out_of_latency() {
    let server = TestServer::start(|n| {
        if n % 3 == 0 {
            Answer::Status(500)
        } else if n % 3 == 1 {
            Answer::Status(404)
        } else {
            Answer::Ok
        }
    })
    .await;
    let result = run(&spec(server.url("/"), 500.0, 90)).await;
    assert_eq!(result.ok, 30);
    assert_eq!(result.errors.get(&ErrorKind::Status(500)), Some(&30));
    assert_eq!(result.errors.get(&ErrorKind::Status(404)), Some(&30));
    assert_eq!(result.latency.len(), 30);
    assert_eq!(result.completed(), 90);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_an_answer_in_time_is_a_timeout() {
    let server = TestServer::start(|_| Answer::After(Duration::from_secs(30))).await;
    let mut spec = spec(server.url("/"), 50.0, 10);
    spec.timeout = Duration::from_millis(200);
    let started = Instant::now();
    let result = run(&spec).await;
    assert_eq!(result.errors.get(&ErrorKind::Timeout), Some(&10));
    assert_eq!(result.ok, 0);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the run waited for the server instead of timing out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_a_connect_error_and_a_dropped_connection_an_io_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let result = run(&spec(format!("http://{addr}/").parse().unwrap(), 100.0, 10)).await;
    assert_eq!(result.errors.get(&ErrorKind::Connect), Some(&10));

    // Accepts, reads the request, closes without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rude = tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    let result = run(&spec(format!("http://{addr}/").parse().unwrap(), 100.0, 10)).await;
    rude.abort();
    assert_eq!(
        result.errors.get(&ErrorKind::Io),
        Some(&10),
        "{:?}",
        result.errors
    );
}

#[tokio::test]
async fn bad_specs_are_refused_before_anything_is_sent() {
    let url: http::Uri = "http://127.0.0.1:9/".parse().unwrap();
    let mut bad = spec(url.clone(), 0.0, 1);
    assert!(load::run(&bad, Arc::default()).await.is_err());
    bad = spec(url.clone(), 1.0, 0);
    assert!(load::run(&bad, Arc::default()).await.is_err());
    bad = spec(url, 1.0, 1);
    bad.connections = 0;
    assert!(load::run(&bad, Arc::default()).await.is_err());
    bad = spec("https://example.com/".parse().unwrap(), 1.0, 1);
    assert!(load::run(&bad, Arc::default()).await.is_err());
}
