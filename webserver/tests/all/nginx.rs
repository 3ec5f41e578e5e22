use localrun::{Nginx, examples};

#[tokio::test]
async fn every_example_function_answers_through_nginx() {
    let server = crate::start(&[]);
    let nginx = Nginx::start(server.addr("traffic"), 1).unwrap();
    let client = examples::client();
    examples::check_all(&client, &nginx.url()).await.unwrap();

    // Each request below is a new client connection to nginx, yet nginx reuses its
    // upstream keep-alive connections: the webserver accepts far fewer connections than
    // it answers requests. (Without `keepalive` upstream it would accept one per request.)
    let connections = async || {
        let text = localrun::metrics(&client, &server).await;
        localrun::sample(&text, "http_server_connections_total").unwrap()
    };
    let before = connections().await;
    for _ in 0..50 {
        let r = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("{}/hello/", nginx.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let after = connections().await;
    assert!(
        after - before < 10.0,
        "50 requests opened {} upstream connections: keep-alive is not working",
        after - before
    );

    let status = client.get(nginx.stub_status_url()).send().await.unwrap();
    assert_eq!(status.status(), 200);
    let text = status.text().await.unwrap();
    assert!(text.starts_with("Active connections:"), "{text}");
}

#[test]
fn template_renders_every_variable() {
    let text = localrun::render_nginx_template(
        "127.0.0.1:9999".parse().unwrap(),
        localrun::NginxPorts {
            traffic: 1234,
            status: 5678,
        },
    )
    .unwrap();
    assert!(text.contains("server 127.0.0.1:9999;"), "{text}");
    assert!(text.contains("listen 127.0.0.1:1234;"), "{text}");
    assert!(text.contains("listen 127.0.0.1:5678;"), "{text}");
    // nginx's own variables are left alone.
    assert!(text.contains("$host"), "{text}");
}
