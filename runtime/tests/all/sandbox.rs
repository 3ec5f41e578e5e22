//! Guests see no host files, no host environment, and reach no network address unless
//! their settings allow it.

use localrun::examples;
use std::net::SocketAddr;

/// A plain HTTP server on loopback that answers 200 "ok" to anything: what a guest
/// would like to reach.
async fn bystander() -> SocketAddr {
    answering_after(std::time::Duration::ZERO).await
}

/// A server on loopback that answers `ok` to every request `delay` after it came.
async fn answering_after(delay: std::time::Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = hyper::service::service_fn(move |_request| async move {
                tokio::time::sleep(delay).await;
                Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(b"ok"),
                )))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    addr
}

#[tokio::test]
async fn no_host_files_or_environment() {
    let dir = crate::functions_dir(&[(
        "configured",
        artifacts::MISBEHAVE_COMPONENT,
        "[env]\nGREETING = \"hi\"\n",
    )]);
    let server = crate::start(dir.path(), &[]);
    let client = examples::client();
    let base = server.url("traffic");

    let (status, v) = crate::get_json(&client, &format!("{base}/misbehave/env")).await;
    assert_eq!(status, 200);
    assert_eq!(
        v["env"],
        serde_json::json!([]),
        "the guest saw host environment: {v}"
    );
    let (_, v) = crate::get_json(&client, &format!("{base}/configured/env")).await;
    assert_eq!(v["env"], serde_json::json!([["GREETING", "hi"]]), "{v}");

    let secret = dir.path().join("misbehave.wasm");
    for path in ["/etc/passwd", secret.to_str().unwrap(), "."] {
        let (status, v) =
            crate::get_json(&client, &format!("{base}/misbehave/file?path={path}")).await;
        assert_eq!(status, 200);
        assert_eq!(v["read"], false, "the guest read {path}: {v}");
    }
}

#[tokio::test]
async fn outbound_http_only_to_allowed_hosts() {
    let target = bystander().await;
    let allowed = format!(
        "allowed_outbound_hosts = [\"127.0.0.1:{}\"]\n",
        target.port()
    );
    // The same, written as Spin writes it: the scheme, and its port unless one is given.
    let spin_style = format!(
        "allowed_outbound_hosts = [\"http://127.0.0.1:{}/\"]\n",
        target.port()
    );
    let dir = crate::functions_dir(&[
        ("allowed", artifacts::MISBEHAVE_COMPONENT, &allowed),
        ("spin-style", artifacts::MISBEHAVE_COMPONENT, &spin_style),
    ]);
    let server = crate::start(dir.path(), &[]);
    let client = examples::client();
    let base = server.url("traffic");
    let url = format!("http://{target}/");

    let (status, v) = crate::get_json(&client, &format!("{base}/spin-style/fetch?url={url}")).await;
    assert_eq!(status, 200);
    assert_eq!(v["status"], 200, "allowed as http://host:port/: {v}");

    let (status, v) = crate::get_json(&client, &format!("{base}/misbehave/fetch?url={url}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        v["status"],
        serde_json::Value::Null,
        "an unconfigured guest reached {url}: {v}"
    );
    // (wstd reports the host's HttpRequestDenied to the guest as a generic I/O error.)
    assert!(!v["error"].as_str().unwrap_or_default().is_empty(), "{v}");

    let (status, v) = crate::get_json(&client, &format!("{base}/allowed/fetch?url={url}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        v["status"], 200,
        "the allowed guest could not reach {url}: {v}"
    );
    // Even allowed, one invocation makes at most 64 outbound requests.
    let (status, v) =
        crate::get_json(&client, &format!("{base}/allowed/fetch?url={url}&times=70")).await;
    assert_eq!(status, 200);
    assert_eq!(v["ok"], 64, "{v}");
    assert_eq!(v["status"], serde_json::Value::Null, "{v}");
}

/// The runtime's outbound connections, all functions together, are capped
/// (`--max-outbound-connections`): past the cap a guest's request fails at once, the
/// gauge shows what is open, and a connection given back is usable again.
#[tokio::test]
async fn outbound_connections_are_capped_for_the_whole_process() {
    let slow = answering_after(std::time::Duration::from_millis(1500)).await;
    let allowed = format!("allowed_outbound_hosts = [\"127.0.0.1:{}\"]\n", slow.port());
    let dir = crate::functions_dir(&[("allowed", artifacts::MISBEHAVE_COMPONENT, &allowed)]);
    let server = crate::start(dir.path(), &["--max-outbound-connections", "1"]);
    let client = examples::client();
    let fetch = format!("{}/allowed/fetch?url=http://{slow}/", server.url("traffic"));
    let first = {
        let (client, fetch) = (client.clone(), fetch.clone());
        tokio::spawn(async move { crate::get_json(&client, &fetch).await })
    };
    localrun::wait_for_sample(&client, &server, "runtime_outbound_connections_open", 1.0).await;
    let (status, second) = crate::get_json(&client, &fetch).await;
    assert_eq!(status, 200);
    assert_eq!(
        second["status"],
        serde_json::Value::Null,
        "past the cap: {second}"
    );
    server
        .wait_for_log(
            "--max-outbound-connections",
            std::time::Duration::from_secs(5),
        )
        .unwrap();
    let (_, first) = first.await.unwrap();
    assert_eq!(first["status"], 200, "{first}");
    // Given back with the first request's end: the next one gets through.
    localrun::wait_for_sample(&client, &server, "runtime_outbound_connections_open", 0.0).await;
    let (_, third) = crate::get_json(&client, &fetch).await;
    assert_eq!(third["status"], 200, "{third}");
}

/// An operator can refuse internal addresses for every function, even one whose
/// allowlist names the IP itself; the same function is let through without the switch.
#[tokio::test]
async fn the_operator_can_block_internal_addresses_even_when_allowed() {
    let target = bystander().await;
    let allowed = format!(
        "allowed_outbound_hosts = [\"127.0.0.1:{}\"]\n",
        target.port()
    );
    let dir = crate::functions_dir(&[("allowed", artifacts::MISBEHAVE_COMPONENT, &allowed)]);
    let client = examples::client();
    let url = format!("http://{target}/");
    for (flags, reached) in [(&[][..], true), (&["--block-internal-outbound"][..], false)] {
        let server = crate::start(dir.path(), flags);
        let base = server.url("traffic");
        let (status, v) =
            crate::get_json(&client, &format!("{base}/allowed/fetch?url={url}")).await;
        assert_eq!(status, 200);
        if reached {
            assert_eq!(v["status"], 200, "{v}");
        } else {
            assert_eq!(v["status"], serde_json::Value::Null, "reached {url}: {v}");
            let line = server
                .wait_for_log(
                    "--block-internal-outbound",
                    std::time::Duration::from_secs(10),
                )
                .unwrap();
            assert!(line.contains("127.0.0.1"), "{line}");
        }
        let text = crate::metrics(&client, &server).await;
        assert!(
            crate::sample(&text, "runtime_outbound_connections_open").is_some(),
            "no outbound connections gauge"
        );
    }
}

/// One get-random-bytes call may ask for 1 MiB (wasmtime-wasi's default is 64 MiB of
/// host memory per call, outside the memory budget): more traps that request alone.
#[tokio::test]
async fn random_bytes_are_capped_per_call() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &[]);
    let client = examples::client();
    let base = server.url("traffic");
    let (status, v) =
        crate::get_json(&client, &format!("{base}/misbehave/random?bytes=1048576")).await;
    assert_eq!(
        (status, &v["got"]),
        (200, &serde_json::json!(1048576)),
        "{v}"
    );
    let (status, v) =
        crate::get_json(&client, &format!("{base}/misbehave/random?bytes=67108864")).await;
    assert_eq!(status, 500, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("get-random-bytes"),
        "{v}"
    );
    let (status, _) = crate::get_json(&client, &format!("{base}/hello/")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn guest_output_goes_to_the_host_log_tagged() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &[]);
    let client = examples::client();
    let (status, _) = crate::get_json(
        &client,
        &format!("{}/misbehave/print", server.url("traffic")),
    )
    .await;
    assert_eq!(status, 200);
    for (stream, text) in [
        ("stdout", "misbehave says hello on stdout"),
        ("stderr", "misbehave says hello on stderr"),
    ] {
        let line = server
            .wait_for_log(text, std::time::Duration::from_secs(10))
            .unwrap();
        assert!(line.contains("function=misbehave"), "{line}");
        assert!(line.contains("request_id="), "{line}");
        assert!(line.contains(&format!("stream=\"{stream}\"")), "{line}");
    }
}

#[tokio::test]
async fn a_guest_cannot_flood_the_host_log() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &["--log-budget-bytes", "10000"]);
    let client = examples::client();
    let traffic = server.url("traffic");
    // A line longer than 4 KiB is cut and marked.
    let (status, _) = crate::get_json(
        &client,
        &format!("{traffic}/misbehave/flood?lines=1&len=10000"),
    )
    .await;
    assert_eq!(status, 200);
    let line = server
        .wait_for_log("flood-line-0 ", std::time::Duration::from_secs(10))
        .unwrap();
    assert!(line.contains("[line cut]"), "{line}");
    assert!(line.len() < 4096 + 300, "{} bytes", line.len());
    // 1000 lines of 100 bytes against 10000 bytes: the first ones go out, then one line
    // says the budget is spent, and the rest is dropped.
    let (status, _) = crate::get_json(
        &client,
        &format!("{traffic}/misbehave/flood?lines=1000&len=100"),
    )
    .await;
    assert_eq!(status, 200);
    let spent = server
        .wait_for_log(
            "log budget of 10000 bytes",
            std::time::Duration::from_secs(10),
        )
        .unwrap();
    assert!(spent.contains("function=misbehave"), "{spent}");
    assert!(
        server
            .wait_for_log("flood-line-999 ", std::time::Duration::from_millis(500))
            .is_err(),
        "a line past the budget reached the log"
    );
    // The next invocation has a budget of its own.
    let (status, _) = crate::get_json(&client, &format!("{traffic}/misbehave/print")).await;
    assert_eq!(status, 200);
    server
        .wait_for_log(
            "misbehave says hello on stdout",
            std::time::Duration::from_secs(10),
        )
        .unwrap();
}

#[tokio::test]
async fn an_allowed_name_that_leads_inside_is_refused() {
    let target = bystander().await;
    let by_name = format!(
        "allowed_outbound_hosts = [\"localhost:{}\"]\n",
        target.port()
    );
    let dir = crate::functions_dir(&[("byname", artifacts::MISBEHAVE_COMPONENT, &by_name)]);
    let server = crate::start(dir.path(), &[]);
    let client = examples::client();
    let url = format!("http://localhost:{}/", target.port());
    let (status, v) = crate::get_json(
        &client,
        &format!("{}/byname/fetch?url={url}", server.url("traffic")),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["status"], serde_json::Value::Null, "reached {url}: {v}");
    let line = server
        .wait_for_log("an internal address", std::time::Duration::from_secs(10))
        .unwrap();
    assert!(line.contains("localhost resolves to"), "{line}");
}

/// What a guest holds in host memory, outside its `memory_mib`, is capped too: live
/// resources per instance and the size of one header set. Past either cap the instance
/// traps and fails alone, saying which cap it hit; the host carries on.
#[tokio::test]
async fn a_guest_cannot_pin_host_memory_with_resources_or_headers() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &[]);
    let client = examples::client();
    let base = server.url("traffic");

    for (path, cause) in [
        ("hoard-resources", "resource table has no free keys"),
        ("big-header", "total size of fields exceeds limit"),
    ] {
        let (status, v) = crate::get_json(&client, &format!("{base}/plain-wasi/{path}")).await;
        assert_eq!(status, 500, "{path}: {v}");
        let error = v["error"].as_str().unwrap_or_default();
        assert!(error.contains("trapped"), "{path}: {v}");
        server
            .wait_for_log(cause, std::time::Duration::from_secs(10))
            .unwrap();
    }

    // The next instance starts with an empty table.
    let ok = client
        .get(format!("{base}/plain-wasi/fine"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

/// A server may answer before it has read the request body (a 401 or 413, say) and
/// close. The guest, still sending its body, must get that answer, not a reset.
#[tokio::test]
async fn an_early_answer_reaches_a_guest_still_sending_its_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            // Read the head only, answer at once, close: the body is never read.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = stream
                .write_all(
                    b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            // Then close as nginx does (lingering): stop writing, discard what still
            // comes for a moment, so that no reset destroys the answer in flight.
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 65536];
            let linger = tokio::time::sleep(std::time::Duration::from_secs(2));
            tokio::pin!(linger);
            loop {
                tokio::select! {
                    n = stream.read(&mut sink) => if n.unwrap_or(0) == 0 { break },
                    () = &mut linger => break,
                }
            }
        }
    });
    let allowed = format!(
        "allowed_outbound_hosts = [\"127.0.0.1:{}\"]\n",
        target.port()
    );
    let dir = crate::functions_dir(&[("allowed", artifacts::MISBEHAVE_COMPONENT, &allowed)]);
    let server = crate::start(dir.path(), &[]);
    let client = examples::client();
    let url = format!("http://{target}/");
    let (status, v) = crate::get_json(
        &client,
        &format!(
            "{}/allowed/fetch?url={url}&post_kib=4096",
            server.url("traffic")
        ),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], 401, "the guest lost the answer: {v}");
}
