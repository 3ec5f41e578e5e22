use localrun::examples;

#[tokio::test]
async fn metrics_pass_promtool_and_cover_the_faas_family() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &[]);
    let client = examples::client();
    let base = server.url("traffic");
    examples::check_all(&client, &base).await.unwrap();
    let text = crate::metrics(&client, &server).await;
    localrun::promtool_check_metrics(&text).unwrap();

    // The same HTTP names as the webserver.
    assert_eq!(
        crate::sample(
            &text,
            r#"http_server_requests_total{function="hello",method="GET",status="200"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        crate::sample(
            &text,
            r#"http_server_requests_total{function="(unknown)",method="GET",status="404"}"#
        ),
        Some(1.0)
    );
    // Two hello cases: one cold start, two invocations, two instantiations, peak memory
    // observed for each.
    assert_eq!(
        crate::sample(
            &text,
            r#"faas_invocations_total{function="hello",version="current"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        crate::sample(
            &text,
            r#"faas_coldstarts_total{function="hello",reason="first_request"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        crate::sample(
            &text,
            r#"faas_init_duration_seconds_count{function="hello"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        crate::sample(&text, r#"faas_mem_usage_bytes_count{function="hello"}"#),
        Some(2.0)
    );
    assert!(
        crate::sample(&text, r#"faas_mem_usage_bytes_sum{function="memory"}"#).unwrap()
            >= (8 << 20) as f64,
        "{text}"
    );
    assert_eq!(crate::sample(&text, "faas_functions_deployed"), Some(6.0));
    assert_eq!(
        crate::sample(
            &text,
            r#"faas_compile_duration_seconds_count{function="hello"}"#
        ),
        Some(1.0)
    );
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
    ] {
        assert!(crate::sample(&text, name).is_some(), "no {name}");
    }
    // The pool's warm slots, read from wasmtime: by default a slot keeps the pages its
    // requests touched (a few), far less than the 1 MiB it may.
    let warm = crate::sample(&text, r#"runtime_pool_warm_slots{kind="memory"}"#).unwrap();
    assert!(warm >= 1.0, "{text}");
    let kept = crate::sample(&text, r#"runtime_pool_resident_bytes{kind="memory"}"#).unwrap();
    assert!(kept > 0.0 && kept / warm < (1 << 20) as f64, "{text}");
    assert!(crate::sample(&text, r#"runtime_pool_resident_bytes{kind="table"}"#).is_some());
    // What the bench records as the measured binary's versions.
    let info = localrun::Scrape::parse(&text)
        .unwrap()
        .labels("runtime_build_info")
        .expect("runtime_build_info");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    let wasmtime = &info["wasmtime"];
    assert!(
        wasmtime.split('.').count() == 3 && wasmtime.starts_with(char::is_numeric),
        "{info:?}"
    );
}
