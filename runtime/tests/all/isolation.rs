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
