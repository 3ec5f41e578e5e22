use localrun::examples;

#[tokio::test]
async fn every_example_function_answers_correctly() {
    let server = crate::start(&[]);
    examples::check_all(&examples::client(), &server.url("traffic"))
        .await
        .unwrap();
}

/// The webserver routes exactly the functions that are built as components, and the
/// shared cases exercise every one of them: a function added to one place and not the
/// others fails here.
#[test]
fn native_table_example_cases_and_components_agree() {
    let mut native: Vec<&str> = webserver::functions::FUNCTIONS
        .iter()
        .map(|(n, _)| *n)
        .collect();
    let mut components: Vec<&str> = artifacts::FUNCTIONS.iter().map(|(n, _)| *n).collect();
    native.sort();
    components.sort();
    assert_eq!(native, components);
    for name in components {
        assert!(
            examples::cases()
                .iter()
                .any(|c| c.function == name && c.status == 200),
            "no successful example case for {name}"
        );
    }
}

#[tokio::test]
async fn body_over_the_limit_is_413_and_the_server_carries_on() {
    let server = crate::start(&["--max-body-bytes", "1024"]);
    let client = examples::client();
    let base = server.url("traffic");
    let r = client
        .post(format!("{base}/hash/"))
        .body(vec![7u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("1024"), "{v}");
    // Chunked, so the limit is found while reading rather than from Content-Length.
    let chunks = futures_stream(vec![vec![1u8; 700], vec![2u8; 700]]);
    let r = client
        .post(format!("{base}/hash/"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Exactly at the limit is fine.
    let r = client
        .post(format!("{base}/hash/?rounds=1"))
        .body(vec![7u8; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client.get(format!("{base}/hello/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

fn futures_stream(
    chunks: Vec<Vec<u8>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::iter(chunks.into_iter().map(Ok))
}
