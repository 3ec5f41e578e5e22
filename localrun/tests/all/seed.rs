//! The seed's two stacks answer every example exactly as our functions do: same statuses,
//! same JSON shapes, same 400s, the same JSON 404 for an unknown function.

use localrun::examples;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn the_php_stack_answers_every_example_like_ours() {
    let php = localrun::SeedPhp::start(4, 1).unwrap();
    assert!(
        php.fpm.version().starts_with("PHP "),
        "{}",
        php.fpm.version()
    );
    runtime().block_on(async {
        let client = examples::client();
        examples::check_all(&client, &php.url()).await.unwrap();
        // The chained hash is the same computation, not just the same shape.
        let ours = hash_of(&client, &php.url()).await;
        assert_eq!(ours, EXPECTED_HASH);
        // PHP-FPM's own status page, in OpenMetrics, for Prometheus.
        let text = client
            .get(php.fpm_metrics_url())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains("phpfpm_accepted_connections"), "{text}");
    });
}

#[test]
fn the_node_stack_answers_every_example_like_ours_and_exports_our_metrics() {
    let node = localrun::SeedNode::start().unwrap();
    assert!(node.version().starts_with("node v"), "{}", node.version());
    runtime().block_on(async {
        let client = examples::client();
        let base = node.service.url("traffic");
        examples::check_all(&client, &base).await.unwrap();
        assert_eq!(hash_of(&client, &base).await, EXPECTED_HASH);
        let text = client
            .get(format!("{}/metrics", node.service.url("ops")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // Our families pass promtool's lint (prom-client's own nodejs_* ones do not:
        // three gauges end in `_total`; they are Node's, not ours, and stay exported).
        let ours: String = text
            .lines()
            .filter(|line| {
                let name = line
                    .trim_start_matches("# HELP ")
                    .trim_start_matches("# TYPE ");
                name.starts_with("http_server_") || name.starts_with("process_")
            })
            .map(|line| format!("{line}\n"))
            .collect();
        localrun::promtool_check_metrics(&ours).unwrap();
        let scrape = localrun::Scrape::parse(&text).unwrap();
        let hellos = scrape.value(
            "http_server_requests_total",
            &[("function", "hello"), ("method", "GET"), ("status", "200")],
        );
        assert_eq!(hellos, Some(2.0), "{text}");
        assert!(
            text.contains(
                r#"http_server_request_duration_seconds_bucket{le="0.00005",function="hello""#
            ),
            "not our buckets:\n{text}"
        );
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    });
}

/// SHA-256 of 4096 zero bytes chained 500 times, as functions/hash computes it.
const EXPECTED_HASH: &str = "1bb422ac2d798d22cd8ed8354ba9799256917cd12aa624c032dec94d899e02d9";

async fn hash_of(client: &reqwest::Client, base: &str) -> String {
    let v: serde_json::Value = client
        .get(format!("{base}/hash/?rounds=500&size=4096"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["sha256"].as_str().unwrap_or_default().to_string()
}
