use localrun::examples;
use std::time::Duration;

/// Polls the ops endpoint until `sleep` has `n` requests in flight.
async fn wait_in_flight(client: &reqwest::Client, server: &localrun::Service, n: u32) {
    let series = r#"http_server_requests_in_flight{function="sleep"}"#;
    localrun::wait_for_sample(client, server, series, f64::from(n)).await;
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let mut server = crate::start(&["--drain-timeout-secs", "30"]);
    let client = examples::client();
    let url = format!("{}/sleep/?min_ms=1500&max_ms=1500", server.url("traffic"));
    let requests: Vec<_> = (0..5)
        .map(|_| tokio::spawn(client.get(&url).send()))
        .collect();
    wait_in_flight(&client, &server, 5).await;

    server.signal(rustix::process::Signal::TERM).unwrap();
    for request in requests {
        let response = request.await.unwrap().expect("in-flight request completes");
        assert_eq!(response.status(), 200);
        let v: serde_json::Value = response.json().await.unwrap();
        assert_eq!(v["slept_ms"], 1500);
    }
    let status = tokio::task::spawn_blocking(move || server.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn drain_is_bounded_and_new_connections_are_refused() {
    let mut server = crate::start(&["--drain-timeout-secs", "0.5"]);
    let client = examples::client();
    let traffic = server.addr("traffic");
    let url = format!("http://{traffic}/sleep/?min_ms=30000&max_ms=30000");
    let stuck = tokio::spawn(client.get(&url).send());
    wait_in_flight(&client, &server, 1).await;

    server.signal(rustix::process::Signal::TERM).unwrap();
    let status = tokio::task::spawn_blocking(move || server.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        stuck.await.unwrap().is_err(),
        "a request longer than the drain is cut off"
    );
    assert!(
        std::net::TcpStream::connect(traffic).is_err(),
        "listener closed"
    );
}
