//! What one serverless request costs the host, in-process (no sockets): a fresh instance
//! of the `hello` component from its `ProxyPre`, the guest handler, and the response
//! body, through the same `Invoker::handle` the server uses. Target: ≤ 20 µs median.
//!
//! `cargo bench -p runtime --bench instantiate`

use bytes::Bytes;
use clap::Parser;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};

fn request() -> http::Request<Full<Bytes>> {
    http::Request::get("/hello/")
        .header("host", "bench")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("hello");

    for (label, keep_resident) in [("default pooling", "0"), ("keep 1 MiB resident", "1048576")] {
        let config = runtime::Config::parse_from([
            "runtime",
            "--pool-instances",
            "64",
            "--keep-resident-bytes",
            keep_resident,
        ]);
        let prom = prometheus::Registry::new();
        let host = runtime::Runtime::new(&config, &prom).unwrap();
        let wasm = std::fs::read(artifacts::HELLO_COMPONENT).unwrap();
        host.deploy("hello", &wasm, &Default::default()).unwrap();
        let invoker = host.invoker();
        group.bench_function(format!("fresh instance + handle + body ({label})"), |b| {
            b.to_async(&tokio).iter(|| async {
                let response = invoker.clone().handle(request()).await;
                assert_eq!(response.status(), 200);
                response.into_body().collect().await.unwrap().to_bytes()
            })
        });
    }

    // The same handler linked natively, as the webserver runs it: the floor.
    group.bench_function("native handler (webserver's way)", |b| {
        b.to_async(&tokio).iter(|| async {
            let request = sdk::http::Request::get("/hello/")
                .body(Bytes::new())
                .unwrap();
            hello::handle(request).await.unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
