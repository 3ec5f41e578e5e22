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

/// A guest that has returned by the time its response goes out has its body sent whole,
/// with its length, as the webserver sends it (not chunked).
#[tokio::test]
async fn a_finished_guests_response_says_its_length() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &[]);
    for path in ["hello/", "plain-wasi/x"] {
        let url = format!("{}/{path}", server.url("traffic"));
        let response = examples::client().get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let length = response.headers().get("content-length").cloned();
        assert!(
            response.headers().get("transfer-encoding").is_none(),
            "{path}: {:?}",
            response.headers()
        );
        let body = response.bytes().await.unwrap();
        assert_eq!(
            length.as_ref().and_then(|v| v.to_str().ok()),
            Some(body.len().to_string().as_str()),
            "{path}"
        );
    }
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

/// A chunked request body (no Content-Length from the client; wasi:http strips
/// Transfer-Encoding before the guest sees the headers) reaches the handler like a
/// sized one.
#[tokio::test]
async fn chunked_and_sized_request_bodies_reach_the_handler_alike() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &[]);
    let sized = format!("{}/hash/?rounds=1", server.url("traffic"));
    let response = examples::client()
        .post(&sized)
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let want: serde_json::Value = response.json().await.unwrap();

    let body = raw_exchange(
        server.addr("traffic"),
        b"POST /hash/?rounds=1 HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\
          Connection: close\r\n\r\n1\r\na\r\n2\r\nbc\r\n0\r\n\r\n",
    )
    .await;
    let got: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        got, want,
        "a chunked body hashed differently from a sized one"
    );
}

/// The handler gets what it gets natively: an origin-form URI and `Host`. And as the
/// runtime reads the whole body before the guest runs, it tells the guest its length,
/// as a buffering proxy does: `Content-Length: 0` on a bodiless request (which lets the
/// SDK skip reading an empty body), the real length on a chunked one.
#[tokio::test]
async fn the_guest_gets_origin_form_uri_host_and_the_length_of_its_body() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &[]);
    let url = format!("{}/misbehave/request?x=1", server.url("traffic"));
    let seen: serde_json::Value = examples::client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The URI in origin form and the authority as `Host`, as hyper gives them natively.
    let host = server.addr("traffic").to_string();
    assert_eq!(
        seen,
        serde_json::json!({
            "method": "GET",
            "uri": "/misbehave/request?x=1",
            "host": host,
            "content_length": "0",
            "body": "",
        })
    );

    let body = raw_exchange(
        server.addr("traffic"),
        b"PUT /misbehave/request HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\
          Connection: close\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n",
    )
    .await;
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        seen,
        serde_json::json!({
            "method": "PUT",
            "uri": "/misbehave/request",
            "host": "test",
            "content_length": "5",
            "body": "abcde",
        })
    );
}

/// Sends `request` as raw bytes on a new connection (it must ask to close it) and
/// returns the body of a 200 answer, de-chunked if it came chunked.
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_string();
    }
    // size CRLF data CRLF ... 0 CRLF CRLF
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// Deploys `functions` (name, component, settings TOML) into a runtime with a store and
/// checks them with the examples' shared cases.
async fn check_language(functions: &[(&str, &str, &str)]) {
    let store = tempfile::tempdir().unwrap();
    let (server, ops) = crate::start_with_store(store.path(), &["--max-memory-mib", "512"]);
    for (name, path, settings) in functions {
        // As the CLI's `deploy --settings NAME.toml` sends them.
        let settings = runtime::limits::Settings::parse(settings).unwrap();
        let query = runtime::api::settings_to_query(&settings);
        ops.deploy(name, path, &format!("?{query}")).await;
    }
    examples::check_all(&examples::client(), &server.url("traffic"))
        .await
        .unwrap();
}

/// The examples written in JavaScript (the seed's own Node handlers, through
/// componentize-js) answer exactly as the Rust ones do.
#[tokio::test]
async fn the_javascript_examples_answer_like_the_rust_ones() {
    check_language(artifacts::JS_FUNCTIONS).await;
}

/// And those written in Python, through componentize-py.
#[tokio::test]
async fn the_python_examples_answer_like_the_rust_ones() {
    check_language(artifacts::PYTHON_FUNCTIONS).await;
}

/// The `wasi:http/incoming-handler@0.2.x` versions a component exports (any nesting).
fn handler_versions(path: &str) -> std::collections::BTreeSet<String> {
    let bytes = std::fs::read(path).unwrap();
    let mut versions = std::collections::BTreeSet::new();
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let wasmparser::Payload::ComponentExportSection(exports) = payload.unwrap() {
            for export in exports {
                if let Some(version) = export
                    .unwrap()
                    .name
                    .name
                    .strip_prefix("wasi:http/incoming-handler@")
                {
                    versions.insert(version.to_string());
                }
            }
        }
    }
    versions
}

/// Components that export different WASI 0.2 patch versions of the handler (whatever
/// their toolchain was built against) load and answer side by side, unchanged.
#[tokio::test]
async fn components_exporting_other_wasi_patch_versions_answer() {
    let components = [
        ("rust", artifacts::HELLO_COMPONENT),
        ("js", artifacts::HELLO_JS_COMPONENT),
        ("python", artifacts::HELLO_PYTHON_COMPONENT),
    ];
    let versions: Vec<_> = components
        .iter()
        .map(|(_, path)| handler_versions(path))
        .collect();
    assert_eq!(versions[1], ["0.2.10".to_string()].into());
    assert_eq!(versions[2], ["0.2.0".to_string()].into());
    assert!(
        versions[0]
            .iter()
            .all(|v| v.starts_with("0.2.") && v != "0.2.0" && v != "0.2.10"),
        "{versions:?}"
    );
    let store = tempfile::tempdir().unwrap();
    let (server, ops) = crate::start_with_store(store.path(), &[]);
    for (name, path) in components {
        ops.deploy(name, path, "").await;
        let (status, body) = crate::get_json(
            &examples::client(),
            &format!("{}/{name}/", server.url("traffic")),
        )
        .await;
        assert_eq!(
            (status, body["message"].as_str()),
            (200, Some("Hello World!")),
            "{name}"
        );
    }
}

/// A component that imports what the host does not have is refused at deploy with a 422
/// that names the import, and nothing changes.
#[tokio::test]
async fn a_component_importing_what_the_host_lacks_is_refused_naming_the_import() {
    use wasm_encoder::{
        Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection, InstanceType,
    };
    let mut types = ComponentTypeSection::new();
    let mut instance = InstanceType::new();
    instance
        .ty()
        .function()
        .params::<_, wasm_encoder::ComponentValType>([])
        .result(None);
    instance.export("run", ComponentTypeRef::Func(0));
    types.instance(&instance);
    let mut imports = ComponentImportSection::new();
    imports.import("acme:db/query@1.0.0", ComponentTypeRef::Instance(0));
    let mut component = Component::new();
    component.section(&types).section(&imports);
    let wasm = component.finish();

    let store = tempfile::tempdir().unwrap();
    let (server, ops) = crate::start_with_store(store.path(), &[]);
    let r = ops.put("lacking", wasm, "").await;
    assert_eq!(r.status(), 422);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("acme:db/query@1.0.0"),
        "{v}"
    );
    assert_eq!(ops.get("lacking").await.0, 404);
    drop(server);
}
