//! The traffic listener's front, the same on both sides: `/{function}/...` is routed by
//! its first path segment, an unknown name is a JSON 404 counted under the bounded
//! `(unknown)` label, and every request is counted and timed in [`HttpMetrics`] whatever
//! runs it. Only [`Functions::call`] differs between a native handler and a wasm guest.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use crate::{BoxError, HttpMetrics, ops};

/// Label for requests that name no function: keeps label values bounded.
pub const UNKNOWN_FUNCTION: &str = "(unknown)";

/// `/hello/x?y` → `hello`; `/` → ``.
pub fn function_name(path: &str) -> &str {
    path.trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
}

/// What a server runs functions with: the webserver's linked handlers, the runtime's
/// deployed components.
pub trait Functions: Send + Sync + 'static {
    /// One function, as found by name.
    type Function: Send;
    /// Its name as a metric label, cheap to hold across the call (`&'static str`,
    /// `Arc<str>`): the function's own name, so label values stay bounded by what exists.
    type Label: AsRef<str> + Send;
    type Body: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static;

    fn lookup(&self, name: &str) -> Option<Self::Function>;

    fn label(function: &Self::Function) -> Self::Label;

    /// Runs `function` for `request`; every failure is a response, never a panic.
    fn call<B>(
        self: Arc<Self>,
        function: Self::Function,
        request: Request<B>,
    ) -> impl Future<Output = Response<Self::Body>> + Send
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>;
}

/// A response of the traffic listener: our own (404) or the function's.
pub type TrafficBody<F> = Either<Full<Bytes>, <F as Functions>::Body>;

/// Routes and counts traffic for `F`.
#[derive(Debug)]
pub struct Traffic<F> {
    functions: Arc<F>,
    metrics: HttpMetrics,
}

impl<F> Clone for Traffic<F> {
    fn clone(&self) -> Self {
        Self {
            functions: self.functions.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<F: Functions> Traffic<F> {
    pub fn new(functions: Arc<F>, metrics: HttpMetrics) -> Self {
        Self { functions, metrics }
    }

    /// Answers one request. Generic over the body so benchmarks can call it in-process
    /// with a ready-made body; the server passes hyper's `Incoming`.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<TrafficBody<F>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let start = Instant::now();
        let method = request.method().clone();
        let name = function_name(request.uri().path());
        match self.functions.lookup(name) {
            Some(function) => {
                let label = F::label(&function);
                let _in_flight = self.metrics.in_flight(label.as_ref());
                let response = self.functions.clone().call(function, request).await;
                let status = response.status().as_u16();
                self.metrics
                    .observe(label.as_ref(), &method, status, start.elapsed());
                response.map(Either::Right)
            }
            None => {
                let message = format!("no function named {name:?}");
                let response = ops::json_error(404, &message);
                self.metrics
                    .observe(UNKNOWN_FUNCTION, &method, 404, start.elapsed());
                response.map(Either::Left)
            }
        }
    }
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
