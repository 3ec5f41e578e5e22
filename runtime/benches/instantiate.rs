//! What one serverless request costs the host, in-process (no sockets): a fresh instance
//! of a component from its `ProxyPre`, the guest handler, and the response body, through
//! the same `service_ops::traffic::Traffic` front and `Invoker` the server uses.
//! Target: ≤ 20 µs median for `hello` (docs/performance.md has the figures). Beside it, the same `hello` built for WASI 0.1 and
//! served the WAGI way (a fresh instance from its `InstancePre`, `_start`, the CGI
//! response parsed from stdout), and `hello` written in C: what each ABI costs.
//!
//! `cargo bench -p runtime --bench instantiate`
//!
//! It runs on a current-thread tokio runtime: one request at a time on a multi-threaded
//! runtime would mostly measure waking a parked worker thread, which a loaded server
//! never does.

use bytes::Bytes;
use clap::Parser;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};

fn request(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(path)
        .header("host", "bench")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("instance per request");

    let variants: [(&str, &[&str]); 3] = [
        (
            "wasmtime default pooling",
            &["--keep-resident-bytes", "0", "--decommit-batch-size", "1"],
        ),
        ("runtime defaults", &[]),
        (
            "linear memory returned to the OS",
            &["--memory-keep-resident-bytes", "0"],
        ),
    ];
    for (label, flags) in variants {
        // Steady state: Cranelift's code from the start, not Winch's while it compiles.
        let mut args = vec![
            "runtime",
            "--pool-instances",
            "64",
            "--baseline-compile=false",
        ];
        args.extend_from_slice(flags);
        let config = runtime::Config::parse_from(args);
        let prom = prometheus::Registry::new();
        let control = runtime::ControlPlane::start(&config, &prom).unwrap();
        for (name, path) in [
            ("hello", artifacts::HELLO_COMPONENT),
            ("plain-wasi", artifacts::PLAIN_WASI_COMPONENT),
            ("hello-wagi", artifacts::HELLO_MODULE),
            ("hello-c", artifacts::HELLO_C_MODULE),
        ] {
            control
                .deploy(
                    runtime::name::FunctionName::parse(name).unwrap(),
                    &std::fs::read(path).unwrap(),
                    Default::default(),
                    runtime::store::Placement::Current,
                )
                .unwrap();
        }
        let http = service_ops::HttpMetrics::new(&prom).unwrap();
        let traffic = service_ops::traffic::Traffic::new(control.invoker(), http);
        for (what, path) in [
            ("hello (sdk)", "/hello/"),
            ("plain wasip2 handler, no sdk", "/plain-wasi/"),
            ("hello (sdk) as a WASI 0.1 module, WAGI", "/hello-wagi/"),
            ("hello in C, WASI 0.1, WAGI", "/hello-c/"),
        ] {
            group.bench_function(format!("{what}, {label}"), |b| {
                b.to_async(&tokio).iter(|| async {
                    let response = traffic.handle(request(path)).await;
                    assert_eq!(response.status(), 200);
                    response.into_body().collect().await.unwrap().to_bytes()
                })
            });
        }
    }

    // The same handler linked natively, as the webserver runs it: the floor.
    group.bench_function("hello, native (webserver's way)", |b| {
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
