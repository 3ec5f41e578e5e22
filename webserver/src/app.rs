//! Request handling: the shared front routes by name and counts; here the body is read
//! under the limit and the native handler called under the deadline (a panic or a
//! timeout fails that request only).

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response};
use http_body_util::Full;
use service_ops::traffic::Functions;
use service_ops::{BoxError, body, ops};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use crate::functions::{self, Handler};

#[derive(Debug)]
pub struct App {
    max_body_bytes: u64,
    timeout: Duration,
    bodies: body::BodyReader,
}

impl App {
    pub fn new(max_body_bytes: u64, timeout: Duration, bodies: body::BodyReader) -> Self {
        Self {
            max_body_bytes,
            timeout,
            bodies,
        }
    }
}

impl Functions for App {
    type Function = (&'static str, Handler);
    type Label = &'static str;
    type Body = Full<Bytes>;

    fn lookup(&self, name: &str) -> Option<Self::Function> {
        functions::lookup(name)
    }

    fn label((name, _): &Self::Function) -> &'static str {
        name
    }

    async fn call<B>(
        self: Arc<Self>,
        (name, handler): Self::Function,
        request: Request<B>,
    ) -> Response<Full<Bytes>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let body = match self.bodies.read(&parts, body, self.max_body_bytes).await {
            Ok(body) => body,
            Err(e) => return e.response(),
        };
        // The body's share of the buffer budget is held until the handler is done.
        let _reservation = body.reservation;
        let request = sdk::Request::from_parts(parts, body.bytes);
        let run = AssertUnwindSafe(handler(request)).catch_unwind();
        match tokio::time::timeout(self.timeout, run).await {
            Err(_elapsed) => {
                let timeout = self.timeout;
                tracing::warn!(function = name, "handler timed out after {timeout:?}");
                ops::json_error(
                    504,
                    &format!("function {name:?} timed out after {timeout:?}"),
                )
            }
            Ok(Ok(result)) => sdk::respond(result).map(Full::new),
            Ok(Err(panic)) => {
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
