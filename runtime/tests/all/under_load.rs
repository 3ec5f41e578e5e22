//! One function can never hurt another, nor the host: CPU-bound guests, stalled uploads,
//! a memory flood, a busy function and a connection flood each leave health checks,
//! metrics and other functions answering. The waits are bounded generously: these are
//! liveness properties, not speed targets.

use localrun::{Service, examples, read_until_close, timed_get};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Well under any guest's timeout here, well over a tick of a busy machine.
const LIVE: Duration = Duration::from_secs(1);

fn rejections(text: &str, function: &str, reason: &str) -> f64 {
    let series = format!(r#"faas_rejections_total{{function="{function}",reason="{reason}"}}"#);
    crate::sample(text, &series).unwrap_or(0.0)
}

#[tokio::test]
async fn cpu_bound_guests_do_not_stall_health_metrics_or_other_functions() {
    let dir = crate::functions_dir(&[(
        "spinner",
        artifacts::MISBEHAVE_COMPONENT,
        "timeout_secs = 8\n",
    )]);
    let server = crate::start(dir.path(), &[]);
    let client = examples::client();
    let (traffic, ops) = (server.url("traffic"), server.url("ops"));
    let spinning = 2 * std::thread::available_parallelism().map_or(2, |n| n.get());
    let spinners: Vec<_> = (0..spinning)
        .map(|_| {
            let (client, url) = (client.clone(), format!("{traffic}/spinner/loop"));
            tokio::spawn(async move { timed_get(&client, &url).await })
        })
        .collect();
    crate::wait_for_active(&client, &server, "spinner", spinning as u32).await;

    for url in [
        format!("{ops}/healthz"),
        format!("{ops}/metrics"),
        format!("{traffic}/hello/"),
    ] {
        let (status, _, took) = timed_get(&client, &url).await;
        assert_eq!(status, 200, "{url}");
        assert!(
            took < LIVE,
            "{url} took {took:?} while {spinning} guests spun"
        );
    }
    for spinner in spinners {
        let (status, _, took) = spinner.await.unwrap();
        assert_eq!(status, 504);
        assert!(took >= Duration::from_secs(8), "ended early: {took:?}");
    }
}

#[tokio::test]
async fn stalled_uploads_get_408_and_everyone_else_is_served() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &["--body-read-timeout", "2s"]);
    let client = examples::client();
    let addr = server.addr("traffic");

    // 200 clients announce a body, send ten bytes of it and stall: more than hello's
    // concurrency limit in this runtime (--max-concurrency 200 by default is per
    // function; the stalled ones must hold none of it).
    let mut stalled = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                b"POST /hello/ HTTP/1.1\r\nhost: t\r\ncontent-length: 1000\r\n\r\n0123456789",
            )
            .await
            .unwrap();
        stalled.push(stream);
    }
    let started = Instant::now();
    let (status, _, took) = timed_get(&client, &format!("{}/hello/", server.url("traffic"))).await;
    assert_eq!(status, 200);
    assert!(
        took < LIVE,
        "hello took {took:?} beside 200 stalled uploads"
    );

    for stream in &mut stalled {
        let answer = read_until_close(stream, Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
        assert!(answer.contains("not received within 2s"), "{answer:?}");
    }
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(8), "cut after {waited:?}");
    let text = crate::metrics(&client, &server).await;
    assert_eq!(rejections(&text, "hello", "body_timeout"), 200.0);
}

#[tokio::test]
async fn a_memory_flood_is_refused_within_the_budget_and_the_runtime_lives() {
    let dir = crate::functions_dir(&[]);
    // 768 MiB for all instances: six of memory's 128 MiB at once.
    let server = crate::start(
        dir.path(),
        // No reserve per function: this is the budget's test; fairness has its own.
        &[
            "--max-total-memory-mib",
            "768",
            "--max-memory-mib",
            "2048",
            "--memory-reserve-mib",
            "0",
        ],
    );
    let client = examples::client();
    let traffic = server.url("traffic");

    let flood: Vec<_> = (0..64)
        .map(|_| {
            let (client, url) = (client.clone(), format!("{traffic}/memory/?mib=120"));
            tokio::spawn(async move { crate::get_json(&client, &url).await })
        })
        .collect();
    let mut answered = [0; 2];
    for request in flood {
        let (status, body) = request.await.unwrap();
        match status {
            200 => answered[0] += 1,
            503 => {
                answered[1] += 1;
                // Refused as its memory grew past the budget, or, with the instances
                // now holding only what they use, by memory's share of the pool first.
                let error = body["error"].as_str().unwrap();
                assert!(
                    error.contains("memory budget") || error.contains("share of the instance pool"),
                    "{error}"
                );
            }
            _ => panic!("memory?mib=120: {status} {body}"),
        }
    }
    assert!(answered[0] >= 5, "{answered:?}");

    // A function whose limit alone is over the budget could never get an instance: its
    // deploy is refused, saying why.
    let deploy = crate::Deployer::new(&server, None)
        .put_file("hog", artifacts::MEMORY_COMPONENT, "?memory_mib=1024")
        .await;
    assert_eq!(deploy.status(), 400);
    let error = deploy.text().await.unwrap();
    assert!(
        error.contains("from 1 to 768") && error.contains("budget"),
        "{error}"
    );

    // Alive, and never resident past the budget plus the runtime's own ~100 MiB.
    let (status, _) = crate::get_json(&client, &format!("{traffic}/hello/")).await;
    assert_eq!(status, 200);
    let peak = peak_rss_mib(&server);
    assert!(peak < 768 + 256, "peak RSS {peak} MiB");
    let text = crate::metrics(&client, &server).await;
    assert_eq!(
        rejections(&text, "memory", "memory_budget") + rejections(&text, "memory", "pool_share"),
        f64::from(answered[1])
    );
    assert_eq!(
        crate::sample(&text, "runtime_memory_budget_bytes"),
        Some(768.0 * 1048576.0)
    );
    assert_eq!(
        crate::sample(&text, "runtime_memory_reserved_bytes"),
        Some(0.0)
    );
}

/// Header sets a guest makes live in host memory, outside its linear memory; each is
/// charged to the memory budget (32 KiB, the most one may hold). Eight instances that
/// each fill 2,000 of them (62 MiB each, about 500 MiB together) under a 128 MiB budget:
/// those past the budget are refused, the process stays far below what they asked for,
/// and serves on.
#[tokio::test]
async fn header_sets_are_charged_to_the_memory_budget() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(
        dir.path(),
        &[
            "--max-total-memory-mib",
            "128",
            "--memory-mib",
            "64",
            "--memory-reserve-mib",
            "0",
        ],
    );
    let client = examples::client();
    let traffic = server.url("traffic");
    let url = format!("{traffic}/plain-wasi/hoard-headers");
    let refused = crate::refused_by_memory_budget(&client, &url, 8, |body| {
        let body = String::from_utf8_lossy(body);
        assert!(body.contains("held 2000"), "{body}");
    })
    .await;
    // 128 MiB holds at most two hoards of 62 MiB.
    assert!(refused >= 6, "{refused} of 8 refused");
    let (status, _) = crate::get_json(&client, &format!("{traffic}/hello/")).await;
    assert_eq!(status, 200);
    let peak = peak_rss_mib(&server);
    assert!(peak < 128 + 256, "peak RSS {peak} MiB");
    let text = crate::metrics(&client, &server).await;
    assert_eq!(
        rejections(&text, "plain-wasi", "memory_budget"),
        f64::from(refused)
    );
}

/// Instances hold the memory they use, not their function's whole limit, and one
/// function's waiting requests cannot take the budget the others need: with the
/// Kubernetes settings (a 640 MiB budget, 128 MiB per function), reserving each
/// instance's whole limit would let 5 requests waiting in `sleep` refuse every other
/// function.
#[tokio::test]
async fn waiting_requests_cannot_starve_the_memory_budget() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(
        dir.path(),
        // The default pool (1000 slots): memory is what is tested, not the pool.
        &[
            "--max-total-memory-mib",
            "640",
            "--memory-mib",
            "128",
            "--pool-instances",
            "1000",
        ],
    );
    let client = examples::client();
    let traffic = server.url("traffic");
    let mut sleepers = Vec::new();
    for held in [5, 50] {
        while sleepers.len() < held {
            let (client, url) = (
                client.clone(),
                format!("{traffic}/sleep/?min_ms=8000&max_ms=8000"),
            );
            sleepers.push(tokio::spawn(
                async move { crate::get_json(&client, &url).await },
            ));
        }
        localrun::wait_for_sample(
            &client,
            &server,
            r#"faas_active_instances{function="sleep"}"#,
            held as f64,
        )
        .await;
        let (status, _, took) = timed_get(&client, &format!("{traffic}/hello/")).await;
        assert_eq!(status, 200, "hello with {held} sleeping");
        assert!(took < LIVE, "hello took {took:?} with {held} sleeping");
        let (status, text) = localrun::post_hash(&client, &server, 1024).await;
        assert_eq!(status, 200, "hash with {held} sleeping: {text}");
        let text = crate::metrics(&client, &server).await;
        // What the sleepers hold is what their instances use, a few MiB each, far
        // from 50 × 128 MiB.
        let reserved = crate::sample(&text, "runtime_memory_reserved_bytes").unwrap();
        assert!(
            reserved <= (held as f64) * 4.0 * 1048576.0,
            "{reserved} bytes reserved by {held} sleepers"
        );
        assert_eq!(rejections(&text, "hello", "memory_budget"), 0.0);
        assert_eq!(rejections(&text, "hash", "memory_budget"), 0.0);
    }
    for sleeper in sleepers {
        let (status, body) = sleeper.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
}

fn peak_rss_mib(server: &Service) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024
}

#[tokio::test]
async fn a_busy_function_cannot_take_the_pool_from_the_others() {
    let dir = crate::functions_dir(&[]);
    let functions = artifacts::FUNCTIONS.len() + artifacts::TEST_PROGRAMS.len();
    // A pool of one slot per function plus three: each function's reserve is one, so
    // sleep alone may take 3 + 1 of them.
    let pool = functions + 3;
    let server = crate::start(
        dir.path(),
        &["--pool-instances", &pool.to_string(), "--pool-reserve", "1"],
    );
    let client = examples::client();
    let traffic = server.url("traffic");

    let sleepers: Vec<_> = (0..pool)
        .map(|_| {
            let url = format!("{traffic}/sleep/?min_ms=3000&max_ms=3000");
            let client = client.clone();
            tokio::spawn(async move { crate::get_json(&client, &url).await })
        })
        .collect();
    crate::wait_for_active(&client, &server, "sleep", 4).await;
    let (status, body) = crate::get_json(&client, &format!("{traffic}/hello/")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = crate::get_json(&client, &format!("{traffic}/hash/?rounds=1")).await;
    assert_eq!(status, 200, "{body}");

    let mut statuses = Vec::new();
    for sleeper in sleepers {
        let (status, body) = sleeper.await.unwrap();
        if status == 503 {
            let error = body["error"].as_str().unwrap();
            assert!(error.contains("share of the instance pool"), "{error}");
        }
        statuses.push(status);
    }
    statuses.sort();
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    assert_eq!(ok, 4, "{statuses:?}");
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 503),
        "{statuses:?}"
    );
    let text = crate::metrics(&client, &server).await;
    assert_eq!(rejections(&text, "sleep", "pool_share"), (pool - 4) as f64);
}

#[tokio::test]
async fn a_connection_flood_is_refused_cleanly_and_ops_still_answers() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &["--max-connections", "20"]);
    let client = examples::client();
    let addr = server.addr("traffic");

    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    localrun::wait_for_sample(
        &client,
        &server,
        r#"http_server_connections_open{listener="traffic"}"#,
        20.0,
    )
    .await;
    for _ in 0..5 {
        let mut extra = TcpStream::connect(addr).await.unwrap();
        extra
            .write_all(b"GET /hello/ HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .unwrap();
        let answer = read_until_close(&mut extra, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
        assert!(answer.contains("retry-after: 1"), "{answer:?}");
        assert!(answer.contains("too many connections"), "{answer:?}");
    }
    let (status, _, took) = timed_get(&client, &format!("{}/healthz", server.url("ops"))).await;
    assert_eq!(status, 200);
    assert!(took < LIVE);

    drop(held);
    localrun::wait_for_sample(
        &client,
        &server,
        r#"http_server_connections_open{listener="traffic"}"#,
        0.0,
    )
    .await;
    let (status, _) = crate::get_json(&client, &format!("{}/hello/", server.url("traffic"))).await;
    assert_eq!(status, 200);
    let text = crate::metrics(&client, &server).await;
    assert_eq!(
        crate::sample(
            &text,
            r#"http_server_connections_rejected_total{listener="traffic"}"#
        ),
        Some(5.0)
    );
}

#[tokio::test]
async fn a_guest_whose_client_went_away_is_ended_then_not_at_its_timeout() {
    let dir = crate::functions_dir(&[(
        "streamer",
        artifacts::PLAIN_WASI_COMPONENT,
        "timeout_secs = 60\nmax_concurrency = 1\n",
    )]);
    let server = crate::start(dir.path(), &[]);
    let client = examples::client();
    let url = format!("{}/streamer/spin-after-answering", server.url("traffic"));

    // It answers, sends the start of its body, and spins: the client reads the headers
    // and the first chunk, then goes away.
    let mut response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"plain wasi says hi"), "{first:?}");
    crate::wait_for_active(&client, &server, "streamer", 1).await;
    let gone = Instant::now();
    drop(response);
    // The fresh client above kept no other connection: dropping the response closes it.
    crate::wait_for_active(&client, &server, "streamer", 0).await;
    let ended = gone.elapsed();
    assert!(
        ended < Duration::from_secs(10),
        "ended {ended:?} after its client left"
    );
    // Its only instance is free again.
    let (status, _) = crate::get_json(&client, &format!("{}/hello/", server.url("traffic"))).await;
    assert_eq!(status, 200);
    let again = client.get(&url).send().await.unwrap();
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn a_client_still_sending_an_oversized_body_reads_its_413() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &["--max-body-bytes", "1048576"]);
    // 32 MiB: more than loopback's socket buffers hold, so the client is still sending
    // long after the 413 went out.
    const CHUNKS: usize = 512;
    for declared in [true, false] {
        let stream = TcpStream::connect(server.addr("traffic")).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let head = if declared {
            format!(
                "POST /hello/ HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n",
                CHUNKS << 16
            )
        } else {
            "POST /hello/ HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n".into()
        };
        write.write_all(head.as_bytes()).await.unwrap();
        let sender = tokio::spawn(async move {
            let chunk = vec![b'x'; 1 << 16];
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            let piece = if declared { &chunk } else { &framed };
            let mut sent = 0;
            while sent < CHUNKS && write.write_all(piece).await.is_ok() {
                sent += 1;
            }
            sent
        });
        let answer = read_until_close(&mut read, Duration::from_secs(10)).await;
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "declared {declared}: {answer:?}"
        );
        assert!(
            answer.contains("larger than the limit of 1048576 bytes"),
            "{answer:?}"
        );
        // The server read (and threw away) the rest instead of resetting the connection
        // under the client's feet.
        assert_eq!(sender.await.unwrap(), CHUNKS, "declared {declared}");
    }
}

#[tokio::test]
async fn stalled_deploy_uploads_cannot_take_the_ops_port() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(
        dir.path(),
        // No cap per address: every connection here is 127.0.0.1's, and what is tested
        // is how the deploy API answers them (the cap has its own test).
        &[
            "--deploy-token",
            "t",
            "--deploy-body-timeout",
            "1s",
            "--ops-max-connections-per-peer",
            "0",
        ],
    );
    let client = examples::client();
    let ops = server.addr("ops");
    // Uploads that stall without the token are answered 401 at once, not read (what
    // they send is discarded for a few seconds, so they read the 401, not a reset)...
    let mut unauthenticated = Vec::new();
    for _ in 0..60 {
        let mut stream = TcpStream::connect(ops).await.unwrap();
        stream
            .write_all(
                b"PUT /functions/x HTTP/1.1\r\nhost: t\r\ncontent-length: 100000\r\n\r\nwasm",
            )
            .await
            .unwrap();
        unauthenticated.push(stream);
    }
    // ...and with the token, a stalled upload is cut at --deploy-body-timeout.
    let mut stalled = TcpStream::connect(ops).await.unwrap();
    stalled
        .write_all(b"PUT /functions/x HTTP/1.1\r\nhost: t\r\nauthorization: Bearer t\r\ncontent-length: 100000\r\n\r\nwasm")
        .await
        .unwrap();
    let (status, _, took) = timed_get(&client, &format!("{}/healthz", server.url("ops"))).await;
    assert_eq!(status, 200);
    assert!(took < LIVE);
    for stream in &mut unauthenticated {
        let answer = read_until_close(stream, Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer:?}");
    }
    let answer = read_until_close(&mut stalled, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("not received within 1s"), "{answer:?}");
}

/// Heads that declare 16 MiB bodies hold what they sent, not what they declared.
#[tokio::test]
async fn heads_declaring_big_bodies_hold_only_what_arrived() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &["--body-read-timeout", "60s"]);
    localrun::heads_declaring_big_bodies_hold_only_what_arrived(&server).await;
    let text = localrun::metrics(&examples::client(), &server).await;
    assert_eq!(rejections(&text, "hash", "body_buffer"), 0.0);
}

/// One client address that fills its share of the body buffer gets 503 for more, while
/// another address's bodies are read.
#[tokio::test]
async fn one_client_cannot_take_the_whole_body_buffer() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(
        dir.path(),
        &[
            "--body-read-timeout",
            "60s",
            "--max-body-buffer-mib",
            "64",
            "--max-body-buffer-per-peer-mib",
            "8",
        ],
    );
    let client = examples::client();
    let addr = server.addr("traffic");
    let greedy = std::net::Ipv4Addr::new(127, 0, 0, 2);
    // 3 MiB each: the third passes the 8 MiB share once its bytes arrive.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(localrun::stalled_upload(greedy, addr, "/hash/", 16 << 20, 3 << 20).await);
    }
    localrun::wait_for_sample(
        &client,
        &server,
        "http_server_request_body_buffered_bytes",
        (6 << 20) as f64,
    )
    .await;
    let mut third = localrun::stalled_upload(greedy, addr, "/hash/", 16 << 20, 3 << 20).await;
    let answer = read_until_close(&mut third, Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(answer.contains("this client"), "{answer:?}");
    // Another address (the client library's, 127.0.0.1) is served.
    let (status, text) = localrun::post_hash(&client, &server, 1 << 20).await;
    assert_eq!(status, 200, "{text}");
    drop(held);
}

/// One client address holds at most `--max-connections-per-peer` traffic connections:
/// its next one gets 503 and closes, while another client's `hello` is served.
#[tokio::test]
async fn one_client_cannot_hold_every_connection() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &["--max-connections-per-peer", "10"]);
    let client = examples::client();
    let addr = server.addr("traffic");
    let greedy = std::net::Ipv4Addr::new(127, 0, 0, 3);
    let connect_from = |ip| async move { localrun::connect_from(ip, addr).await.unwrap() };
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(connect_from(greedy).await);
    }
    localrun::wait_for_sample(
        &client,
        &server,
        r#"http_server_connections_open{listener="traffic"}"#,
        10.0,
    )
    .await;
    let mut extra = connect_from(greedy).await;
    extra
        .write_all(b"GET /hello/ HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_close(&mut extra, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    // Another address (the client library's, 127.0.0.1) is served meanwhile.
    let (status, _) = crate::get_json(&client, &format!("{}/hello/", server.url("traffic"))).await;
    assert_eq!(status, 200);
    drop(held);
}

/// A client that holds idle ops connections, reopening them as they are closed, cannot
/// take the liveness probe's place: it holds its share of the ops listener, no more.
#[tokio::test]
async fn idle_ops_connections_cannot_starve_the_probe() {
    let dir = crate::functions_dir(&[]);
    // Closed after 2 s idle, so the flood must keep reopening, as a real one would.
    let server = crate::start(dir.path(), &["--header-read-timeout", "2s"]);
    let client = examples::client();
    let ops = server.addr("ops");
    let attacker = std::net::Ipv4Addr::new(127, 0, 0, 4);
    let flood = tokio::spawn(async move {
        let mut held: Vec<TcpStream> = Vec::new();
        let until = Instant::now() + Duration::from_secs(8);
        while Instant::now() < until {
            // Drop those the server closed (a read of 0 bytes) and open new ones.
            held.retain(|s| {
                let mut buf = [0u8; 256];
                match s.try_read(&mut buf) {
                    Ok(0) => false,
                    // It answered something (a 408) before closing: read on next turn.
                    Ok(_) => true,
                    Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                }
            });
            while held.len() < 64 {
                match localrun::connect_from(attacker, ops).await {
                    Ok(stream) => held.push(stream),
                    Err(_) => break,
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let probe = format!("{}/healthz", server.url("ops"));
    let until = Instant::now() + Duration::from_secs(8);
    let mut probes = 0;
    while Instant::now() < until {
        // As kubelet does: a new connection for every probe.
        let fresh = examples::client();
        let (status, _, _) = timed_get(&fresh, &probe).await;
        assert_eq!(status, 200, "the probe was refused after {probes} answers");
        probes += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    flood.await.unwrap();
    assert!(probes > 10);
    let text = crate::metrics(&client, &server).await;
    // The flood's connections past its share were refused.
    assert!(
        crate::sample(
            &text,
            r#"http_server_connections_rejected_total{listener="ops"}"#
        )
        .unwrap_or(0.0)
            > 0.0
    );
}

/// A request head past `--max-request-head-bytes` (32 KiB) is answered 431; the limit
/// is a flag.
#[tokio::test]
async fn a_64_kib_header_gets_431() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &[]);
    let status = localrun::answer_to_a_64_kib_header(&server).await;
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");
    let roomy = crate::start(dir.path(), &["--max-request-head-bytes", "131072"]);
    let status = localrun::answer_to_a_64_kib_header(&roomy).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
}
