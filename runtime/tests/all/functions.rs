use localrun::examples;

#[tokio::test]
async fn every_example_function_answers_correctly() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &[]);
    examples::check_all(&examples::client(), &server.url("traffic"))
        .await
        .unwrap();
}

/// A component written against the plain wasip2 bindings, with no SDK, runs unchanged.
#[tokio::test]
async fn a_component_built_without_the_sdk_runs_unchanged() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &[]);
    let url = format!("{}/plain-wasi/some/path?x=1", server.url("traffic"));
    let response = examples::client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        "plain wasi says hi to /plain-wasi/some/path?x=1\n"
    );
}

/// A body much larger than the guest's writes is streamed whole, while the guest is
/// still producing it.
#[tokio::test]
async fn large_response_bodies_stream_whole() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &[]);
    let url = format!("{}/misbehave/big?kib=4096", server.url("traffic"));
    let response = examples::client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), 4096 * 1024);
    assert!(
        body.iter()
            .enumerate()
            .all(|(i, b)| *b == b'a' + (i % 26) as u8),
        "body corrupted"
    );
}
