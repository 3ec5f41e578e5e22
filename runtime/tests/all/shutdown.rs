use localrun::examples;
use std::time::Duration;

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let dir = crate::functions_dir(&[]);
    let mut server = crate::start(dir.path(), &[]);
    let client = examples::client();
    let url = format!("{}/sleep/?min_ms=1500&max_ms=1500", server.url("traffic"));
    let requests: Vec<_> = (0..3)
        .map(|_| tokio::spawn(client.get(&url).send()))
        .collect();
    crate::wait_for_active(&client, &server, "sleep", 3).await;
    server.signal(rustix::process::Signal::TERM).unwrap();
    for request in requests {
        let response = request.await.unwrap().expect("in-flight request completes");
        assert_eq!(response.status(), 200);
    }
    let status = tokio::task::spawn_blocking(move || server.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status}");
}
