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
