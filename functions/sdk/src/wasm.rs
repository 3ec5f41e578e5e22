//! The wasm side of [`crate::export!`]: adapts a wasi:http incoming request to
//! [`crate::Request`], runs the handler on wstd's reactor, and sends the response.

use crate::{Request, Response};
use std::future::Future;
use wstd::http::Body;

pub use wasip2;
pub use wasip2::exports::http::incoming_handler::Guest;
pub use wasip2::http::types::{IncomingRequest, ResponseOutparam};

pub fn serve<F, Fut>(request: IncomingRequest, out: ResponseOutparam, handler: F)
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = crate::Result>,
{
    let responder = wstd::http::server::Responder::new(out);
    wstd::runtime::block_on(async move {
        let request = match wstd::http::request::try_from_incoming(request) {
            Ok(request) => request,
            Err(err) => return responder.fail(err),
        };
        let (parts, mut body) = request.into_parts();
        let body = match body.bytes_contents().await {
            Ok(body) => body,
            Err(err) => return responder.fail(err),
        };
        let response: Response = crate::respond(handler(Request::from_parts(parts, body)).await);
        let (parts, body) = response.into_parts();
        // The client going away mid-body is the host's business, not a guest failure.
        let _ = responder
            .respond(wstd::http::Response::from_parts(parts, Body::from(body)))
            .await;
    })
}
