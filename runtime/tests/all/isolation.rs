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

/// A reused slot resets only what a request dirtied, which is what makes keeping memory
/// resident pay: after 20 `hello` requests with 1 MiB kept resident, each warm slot
/// keeps the few pages `hello` touched, not the whole budget. (Fails on wasmtime 50.0.1
/// without patches/: its scan finds every page dirty, and every slot keeps 1 MiB.)
#[tokio::test]
async fn a_reused_slot_keeps_only_the_pages_a_request_touched() {
    const BUDGET: f64 = 1_048_576.0;
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &["--memory-keep-resident-bytes", "1048576"]);
    let client = examples::client();
    let url = format!("{}/hello/", server.url("traffic"));
    for _ in 0..20 {
        assert_eq!(crate::status(&client, &url).await, 200);
    }
    let text = crate::metrics(&client, &server).await;
    let resident = crate::sample(&text, r#"runtime_pool_resident_bytes{kind="memory"}"#).unwrap();
    let warm = crate::sample(&text, r#"runtime_pool_warm_slots{kind="memory"}"#).unwrap();
    assert!(warm >= 1.0, "{text}");
    let per_slot = resident / warm;
    // Something is kept (memory is reset in place, not returned), and at most 16 pages.
    assert!(
        per_slot > 0.0 && per_slot <= 16.0 * 4096.0,
        "a warm slot keeps {per_slot} bytes of linear memory ({resident} in {warm} slots; \
         the budget is {BUDGET})"
    );
}

/// The kernel's side of the patch (`scripts/pagemap-scan-check`): of pages written,
/// read and never touched (and one written then swapped out, where swap is on), the
/// patched query reports exactly the written ones.
#[test]
fn the_patched_scan_reports_exactly_the_written_pages() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pagemap-scan-check");
    let out = std::process::Command::new(script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: usize = stdout
        .split_whitespace()
        .skip_while(|w| *w != "mapped,")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    let patched = stdout.lines().find(|l| l.starts_with("patched:")).unwrap();
    assert!(
        patched.contains(&format!("reports {written:>3} pages")) && !patched.contains("misses"),
        "{stdout}"
    );
}
