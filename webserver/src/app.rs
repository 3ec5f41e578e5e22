//! Request handling: route by first path segment, collect the body under a limit, call
//! the native handler (a panic fails that request only), count everything.

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use service_ops::{HttpMetrics, Shutdown, ops};
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use crate::functions;

/// Label for requests that name no function we have: keeps label values bounded.
pub const UNKNOWN_FUNCTION: &str = "(unknown)";

#[derive(Debug)]
pub struct App {
    metrics: HttpMetrics,
    max_body_bytes: usize,
}

impl App {
    pub fn new(metrics: HttpMetrics, max_body_bytes: usize) -> Self {
        Self {
            metrics,
            max_body_bytes,
        }
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let start = Instant::now();
        let method = request.method().clone();
        let name = function_name(request.uri().path()).to_string();
        let (label, response) = match functions::lookup(&name) {
            Some(handler) => {
                let _in_flight = self.metrics.in_flight(&name);
                (name.as_str(), self.call(handler, &name, request).await)
            }
            None => (
                UNKNOWN_FUNCTION,
                ops::json_error(404, &format!("no function named {name:?}")),
            ),
        };
        self.metrics
            .observe(label, &method, response.status().as_u16(), start.elapsed());
        response
    }

    async fn call(
        &self,
        handler: functions::Handler,
        name: &str,
        request: Request<Incoming>,
    ) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        if let Some(len) = content_length(&parts.headers)
            && len > self.max_body_bytes as u64
        {
            return too_large(self.max_body_bytes);
        }
        let body = match Limited::new(body, self.max_body_bytes).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return too_large(self.max_body_bytes);
            }
            Err(e) => return ops::json_error(400, &format!("reading request body: {e}")),
        };
        let request = sdk::Request::from_parts(parts, body);
        match AssertUnwindSafe(handler(request)).catch_unwind().await {
            Ok(result) => sdk::respond(result).map(Full::new),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(non-string panic)".into());
                tracing::error!(function = name, "handler panicked: {message}");
                ops::json_error(500, &format!("function {name:?} panicked"))
            }
        }
    }
}

fn too_large(limit: usize) -> Response<Full<Bytes>> {
    ops::json_error(
        StatusCode::PAYLOAD_TOO_LARGE.as_u16(),
        &format!("request body is larger than the limit of {limit} bytes"),
    )
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// `/hello/x?y` → `hello`; `/` → ``.
pub fn function_name(path: &str) -> &str {
    path.trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
}

pub fn traffic_service(
    app: Arc<App>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.handle(request).await) }
    })
}

pub fn ops_service(
    registry: prometheus::Registry,
    shutdown: Shutdown,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request: Request<Incoming>| {
        let response = match request.uri().path() {
            "/metrics" => ops::metrics(&registry),
            "/healthz" => ops::healthz(shutdown.is_triggered()),
            path => ops::json_error(
                404,
                &format!("no ops endpoint {path:?}; try /metrics or /healthz"),
            ),
        };
        std::future::ready(Ok::<_, Infallible>(response))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_name_is_the_first_segment() {
        assert_eq!(function_name("/hello/"), "hello");
        assert_eq!(function_name("/hello"), "hello");
        assert_eq!(function_name("/hash/a/b"), "hash");
        assert_eq!(function_name("/"), "");
        assert_eq!(function_name("//x"), "x");
    }
}
