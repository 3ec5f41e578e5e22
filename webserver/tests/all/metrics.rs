use localrun::examples;

#[tokio::test]
async fn metrics_pass_promtool_and_count_requests_by_function() {
    let server = crate::start(&[]);
    let client = examples::client();
    let base = server.url("traffic");
    examples::check_all(&client, &base).await.unwrap();
    for _ in 0..3 {
        client.get(format!("{base}/hello/")).send().await.unwrap();
    }

    let ops = server.url("ops");
    let text = localrun::metrics(&client, &server).await;
    localrun::promtool_check_metrics(&text).unwrap();

    // 2 hello cases in check_all, plus 3 above.
    for (series, value) in [
        (
            r#"http_server_requests_total{function="hello",method="GET",status="200"}"#,
            5.0,
        ),
        (
            r#"http_server_requests_total{function="hash",method="GET",status="400"}"#,
            1.0,
        ),
        (
            r#"http_server_requests_total{function="(unknown)",method="GET",status="404"}"#,
            1.0,
        ),
        (
            r#"http_server_request_duration_seconds_bucket{function="sleep",method="GET",status="200",le="0.00005"}"#,
            0.0,
        ),
        (r#"http_server_requests_in_flight{function="hello"}"#, 0.0),
    ] {
        assert_eq!(
            localrun::sample(&text, series),
            Some(value),
            "{series} in\n{text}"
        );
    }
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_threads",
        "process_start_time_seconds",
    ] {
        assert!(
            localrun::sample(&text, name).is_some(),
            "no {name} sample in\n{text}"
        );
    }
    // The runtime's build info is the runtime's: the webserver does not claim one.
    assert!(
        localrun::Scrape::parse(&text)
            .unwrap()
            .labels("runtime_build_info")
            .is_none()
    );

    let health = client.get(format!("{ops}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let missing = client.get(format!("{ops}/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}
