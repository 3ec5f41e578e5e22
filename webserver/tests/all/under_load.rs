//! The traditional side keeps the runtime's contract, so the comparison stays fair:
//! CPU-heavy handlers neither stall other requests nor the ops endpoints, a request past
//! its deadline gets 504, and a stalled upload gets 408.

use localrun::{examples, read_until_close, timed_get};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Well under any deadline here, well over a moment of a busy machine.
const LIVE: Duration = Duration::from_secs(1);

#[tokio::test]
async fn cpu_heavy_handlers_do_not_stall_others_and_end_at_the_deadline() {
    let server = crate::start(&["--timeout", "4s"]);
    let client = examples::client();
    let (traffic, ops) = (server.url("traffic"), server.url("ops"));
    // Each would hash 16 MiB ten million times: hours, natively too.
    let heavy = 2 * std::thread::available_parallelism().map_or(2, |n| n.get());
    let hashes: Vec<_> = (0..heavy)
        .map(|_| {
            let url = format!("{traffic}/hash/?rounds=10000000&size=16777216");
            let client = client.clone();
            tokio::spawn(async move { timed_get(&client, &url).await })
        })
        .collect();
    localrun::wait_for_sample(
        &client,
        &server,
        r#"http_server_requests_in_flight{function="hash"}"#,
        heavy as f64,
    )
    .await;
    for url in [
        format!("{ops}/healthz"),
        format!("{ops}/metrics"),
        format!("{traffic}/hello/"),
    ] {
        let (status, _, took) = timed_get(&client, &url).await;
        assert_eq!(status, 200, "{url}");
        assert!(
            took < LIVE,
            "{url} took {took:?} beside {heavy} heavy hashes"
        );
    }
    for hash in hashes {
        let (status, body, took) = hash.await.unwrap();
        assert_eq!(status, 504, "{body}");
        assert!(body.contains("timed out after 4s"), "{body}");
        assert!(took >= Duration::from_secs(4), "ended early: {took:?}");
    }
    // Cancelled, not left running: nothing is in flight any more.
    let text = localrun::metrics(&client, &server).await;
    assert_eq!(
        localrun::sample(&text, r#"http_server_requests_in_flight{function="hash"}"#),
        Some(0.0)
    );
}

#[tokio::test]
async fn stalled_uploads_get_408_and_everyone_else_is_served() {
    let server = crate::start(&["--body-read-timeout", "2s"]);
    let client = examples::client();
    let addr = server.addr("traffic");
    let mut stalled = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"POST /hash/ HTTP/1.1\r\nhost: t\r\ncontent-length: 1000\r\n\r\n0123")
            .await
            .unwrap();
        stalled.push(stream);
    }
    let (status, _, took) = timed_get(&client, &format!("{}/hello/", server.url("traffic"))).await;
    assert_eq!(status, 200);
    assert!(took < LIVE);
    for stream in &mut stalled {
        let answer = read_until_close(stream, Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    }
}

/// Heads that declare 16 MiB bodies hold what they sent, not what they declared.
#[tokio::test]
async fn heads_declaring_big_bodies_hold_only_what_arrived() {
    let server = crate::start(&["--body-read-timeout", "60s"]);
    localrun::heads_declaring_big_bodies_hold_only_what_arrived(&server).await;
}

/// A request head past `--max-request-head-bytes` (32 KiB) is answered 431.
#[tokio::test]
async fn a_64_kib_header_gets_431() {
    let server = crate::start(&[]);
    let status = localrun::answer_to_a_64_kib_header(&server).await;
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");
}
