use localrun::examples;

/// The same handler code keeps a global call counter. In the runtime every request gets
/// a fresh instance, so it always answers 1; linked natively into one long-running
/// process (as the webserver does with its functions) it counts up.
#[tokio::test]
async fn every_request_gets_a_fresh_instance() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &[]);
    let client = examples::client();
    let url = format!("{}/misbehave/counter", server.url("traffic"));
    for _ in 0..10 {
        let (status, v) = crate::get_json(&client, &url).await;
        assert_eq!(status, 200);
        assert_eq!(v["calls"], 1, "state survived between requests: {v}");
    }

    let mut native = Vec::new();
    for _ in 0..3 {
        let request = sdk::http::Request::builder()
            .uri("/misbehave/counter")
            .body(Default::default())
            .unwrap();
        let response = misbehave::handle(request).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        native.push(v["calls"].as_u64().unwrap());
    }
    assert!(
        native.windows(2).all(|w| w[1] == w[0] + 1),
        "native calls should count up: {native:?}"
    );
}

/// What one request writes into linear memory is never visible to the next request in
/// the same pool slot: with one slot, every request reuses it, and each must find the
/// pages it grows zeroed. Checked with the default (linear memory returned to the OS)
/// and with every page kept resident (`--memory-keep-resident-bytes`: reset in place,
/// through PAGEMAP_SCAN where the kernel has it).
#[tokio::test]
async fn one_requests_memory_is_never_seen_by_the_next_in_the_same_slot() {
    let dir = crate::functions_dir(&[]);
    let client = examples::client();
    for keep_resident in [None, Some("67108864")] {
        let mut flags = vec!["--pool-instances", "1"];
        if let Some(bytes) = keep_resident {
            flags.extend(["--memory-keep-resident-bytes", bytes]);
        }
        let server = crate::start(dir.path(), &flags);
        let url = format!("{}/misbehave/residue?pages=64", server.url("traffic"));
        let mut first_pages = Vec::new();
        for i in 0..5 {
            let (status, v) = crate::get_json(&client, &url).await;
            assert_eq!(status, 200, "{v}");
            assert_eq!(
                v["nonzero"], 0,
                "request {i} (keep-resident {keep_resident:?}) found an earlier request's bytes: {v}"
            );
            first_pages.push(v["first_page"].as_u64().unwrap());
        }
        // The same address range every time: what one wrote, the next read.
        first_pages.dedup();
        assert_eq!(first_pages.len(), 1, "{first_pages:?}");
    }
}
