//! Step 1: admission. A request is refused before it costs an instance when its declared
//! body is over the limit (413) or its function is at its concurrency limit (503 with
//! Retry-After: refuse now rather than queue without bound; the client, nginx or a load
//! balancer retries in a moment). Then its body is read, still under the limit.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use service_ops::{BoxError, body};
use tokio::sync::OwnedSemaphorePermit;

use super::Failure;
use crate::function::Function;

/// A request allowed to run: its body read whole, and its instance permit.
pub struct Admitted {
    pub request: Request<Full<Bytes>>,
    pub permit: OwnedSemaphorePermit,
}

pub async fn admit<B>(function: &Function, request: Request<B>) -> Result<Admitted, Failure>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let limits = &function.limits;
    let (mut parts, body) = request.into_parts();
    body::check_declared_length(&parts.headers, limits.max_body_bytes)?;
    let permit = function
        .permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| Failure::Concurrency(limits.max_concurrency))?;
    let body = body::read_limited(body, limits.max_body_bytes).await?;
    // The body is whole now, so its length is known: say it, as a buffering proxy
    // does. A guest then knows a bodiless request has no body without reading it
    // (wasi:http hides `Transfer-Encoding`, so without a length it cannot tell).
    parts.headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(body.len()),
    );
    // wasi:http needs an authority; HTTP/1.0 clients may send no Host.
    if parts.uri.authority().is_none() && !parts.headers.contains_key(http::header::HOST) {
        parts.headers.insert(
            http::header::HOST,
            http::HeaderValue::from_static("localhost"),
        );
    }
    Ok(Admitted {
        request: Request::from_parts(parts, Full::new(body)),
        permit,
    })
}
