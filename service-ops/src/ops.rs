//! The ops endpoints both servers answer on their ops listener.

use bytes::Bytes;
use http_body_util::Full;
use prometheus::{Encoder, Registry, TextEncoder};

/// `/metrics`: everything in `registry`, in the Prometheus text format.
pub fn metrics(registry: &Registry) -> http::Response<Full<Bytes>> {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&registry.gather(), &mut body) {
        Ok(()) => response(200, encoder.format_type(), body),
        Err(e) => response(
            500,
            "text/plain; charset=utf-8",
            format!("encoding metrics: {e}\n").into_bytes(),
        ),
    }
}

/// `/healthz`: 200 while serving, 503 once shutdown has started (so a load balancer stops
/// sending new work during the drain).
pub fn healthz(shutting_down: bool) -> http::Response<Full<Bytes>> {
    if shutting_down {
        response(503, "text/plain; charset=utf-8", b"draining\n".to_vec())
    } else {
        response(200, "text/plain; charset=utf-8", b"ok\n".to_vec())
    }
}

/// `/readyz`: what a load balancer's readiness check asks: 200 while serving and
/// `ready`, 503 with the reason while draining or not ready. `/healthz` stays the
/// liveness check: a server that is up but not ready must not be restarted for it.
pub fn readyz(shutting_down: bool, ready: Result<(), String>) -> http::Response<Full<Bytes>> {
    match (shutting_down, ready) {
        (true, _) => response(503, "text/plain; charset=utf-8", b"draining\n".to_vec()),
        (false, Err(why)) => response(
            503,
            "text/plain; charset=utf-8",
            format!("{why}\n").into_bytes(),
        ),
        (false, Ok(())) => response(200, "text/plain; charset=utf-8", b"ready\n".to_vec()),
    }
}

/// A JSON error body, `{"error": message}`, as every endpoint of ours answers errors.
pub fn json_error(status: u16, message: &str) -> http::Response<Full<Bytes>> {
    let body =
        serde_json::to_vec(&serde_json::json!({ "error": message })).expect("a string serialises");
    response(status, "application/json", body)
}

pub fn response(status: u16, content_type: &str, body: Vec<u8>) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static status and header are valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(r: http::Response<Full<Bytes>>) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn json_error_escapes() {
        let r = json_error(404, "no function \"x\\y\"\n");
        assert_eq!(r.status(), 404);
        assert_eq!(body(r).await, r#"{"error":"no function \"x\\y\"\n"}"#);
    }

    #[tokio::test]
    async fn readyz_reports_draining_and_why_it_is_not_ready() {
        assert_eq!(readyz(false, Ok(())).status(), 200);
        assert_eq!(readyz(true, Ok(())).status(), 503);
        let not = readyz(false, Err("the store sync is behind".into()));
        assert_eq!(not.status(), 503);
        let body = http_body_util::BodyExt::collect(not.into_body())
            .await
            .unwrap();
        assert_eq!(&body.to_bytes()[..], b"the store sync is behind\n");
    }

    #[tokio::test]
    async fn healthz_reports_draining() {
        assert_eq!(healthz(false).status(), 200);
        assert_eq!(healthz(true).status(), 503);
    }
}
