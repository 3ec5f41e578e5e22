use localrun::examples;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_guest_waiting_past_its_timeout_gets_504() {
    let dir = crate::functions_dir(&[(
        "slow",
        artifacts::MISBEHAVE_COMPONENT,
        "timeout_secs = 0.3\n",
    )]);
    let server = crate::start(dir.path(), &[]);
    let client = examples::client();
    let start = Instant::now();
    let (status, v) = crate::get_json(
        &client,
        &format!("{}/slow/sleep?ms=30000", server.url("traffic")),
    )
    .await;
    assert_eq!(status, 504, "{v}");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "the timeout did not cut the wait short"
    );
    // Under the limit is fine.
    let (status, _) = crate::get_json(
        &client,
        &format!("{}/slow/sleep?ms=10", server.url("traffic")),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn over_concurrency_is_503_with_retry_after() {
    let dir = crate::functions_dir(&[(
        "single",
        artifacts::MISBEHAVE_COMPONENT,
        "max_concurrency = 1\n",
    )]);
    let server = crate::start(dir.path(), &[]);
    let client = examples::client();
    let base = server.url("traffic");
    let busy = tokio::spawn(client.get(format!("{base}/single/sleep?ms=2000")).send());
    crate::wait_for_active(&client, &server, "single", 1).await;
    let response = client
        .get(format!("{base}/single/counter"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    // Other functions are not affected by one function's limit.
    assert_eq!(crate::status(&client, format!("{base}/hello/")).await, 200);
    assert_eq!(busy.await.unwrap().unwrap().status(), 200);
    // With the instance free again, the function answers.
    assert_eq!(
        crate::status(&client, format!("{base}/single/counter")).await,
        200
    );
    let text = crate::metrics(&client, &server).await;
    assert_eq!(
        crate::sample(
            &text,
            r#"faas_rejections_total{function="single",reason="concurrency"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &["--max-body-bytes", "1024"]);
    let client = examples::client();
    let url = format!("{}/hash/?rounds=1", server.url("traffic"));
    assert_eq!(
        client
            .post(&url)
            .body(vec![1u8; 1025])
            .send()
            .await
            .unwrap()
            .status(),
        413
    );
    assert_eq!(
        client
            .post(&url)
            .body(vec![1u8; 1024])
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// With every pool slot taken (all functions together), a new request is a 503 that
/// says so, not a trap.
#[tokio::test]
async fn a_full_instance_pool_is_503_not_a_trap() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &["--pool-instances", "1"]);
    let client = examples::client();
    let base = server.url("traffic");
    let busy = tokio::spawn(client.get(format!("{base}/misbehave/sleep?ms=2000")).send());
    crate::wait_for_active(&client, &server, "misbehave", 1).await;
    let response = client.get(format!("{base}/hello/")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let v: serde_json::Value = response.json().await.unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no free instance slot"),
        "{v}"
    );
    assert_eq!(busy.await.unwrap().unwrap().status(), 200);
    assert_eq!(crate::status(&client, format!("{base}/hello/")).await, 200);
}
