//! Step 1: admission. The body is read first, whole, under the function's size limit
//! (413), the process's body deadline (408) and its body buffer (503), and only then is
//! anything reserved for the instance, so a client that stalls its upload holds no
//! instance. Then the instance must fit: the function's concurrency limit, its share of
//! the pool, and the process's memory budget (each 503 with Retry-After: refuse now
//! rather than queue without bound; the client, nginx or a load balancer retries in a
//! moment).

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use service_ops::BoxError;
use tokio::sync::OwnedSemaphorePermit;

use super::{Failure, Shared};
use crate::admission::{MemoryCharge, NoSlot, PoolSlot};
use crate::function::Function;

/// A request allowed to run: its body read whole, and what its instance holds.
pub struct Admitted {
    pub request: Request<Full<Bytes>>,
    pub ticket: Ticket,
}

/// What one instance holds while it lives, given back when dropped: its function's
/// concurrency permit, its pool slot, its memory charge (handed to the instance's
/// limiter, which grows it) and its body's buffer.
pub struct Ticket {
    _concurrency: OwnedSemaphorePermit,
    _slot: PoolSlot,
    memory: Option<MemoryCharge>,
    _body: Option<service_ops::body::Reservation>,
}

impl Ticket {
    /// The memory charge, for the instance's store (which then holds it as long as the
    /// instance lives).
    pub fn take_memory(&mut self) -> Option<MemoryCharge> {
        self.memory.take()
    }
}

pub async fn admit<B>(
    function: &Function,
    request: Request<B>,
    shared: &Shared,
    deployed: usize,
) -> Result<Admitted, Failure>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let limits = &function.limits;
    let (mut parts, body) = request.into_parts();
    let body = shared
        .bodies
        .read(&parts, body, limits.max_body_bytes)
        .await?;
    let concurrency = function
        .permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| Failure::Concurrency(limits.max_concurrency))?;
    let slot = shared
        .pool
        .take(function.name(), deployed)
        .map_err(|no| match no {
            NoSlot::Full => Failure::Capacity,
            NoSlot::Reserved => Failure::PoolShare,
        })?;
    // Charged as the instance's memories grow, by its store's limiter.
    let memory = shared.memory.charge(function.name(), deployed);
    // The body is whole now, so its length is known: say it, as a buffering proxy
    // does. A guest then knows a bodiless request has no body without reading it
    // (wasi:http hides `Transfer-Encoding`, so without a length it cannot tell).
    parts.headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(body.bytes.len()),
    );
    // wasi:http needs an authority; HTTP/1.0 clients may send no Host.
    if parts.uri.authority().is_none() && !parts.headers.contains_key(http::header::HOST) {
        parts.headers.insert(
            http::header::HOST,
            http::HeaderValue::from_static("localhost"),
        );
    }
    Ok(Admitted {
        request: Request::from_parts(parts, Full::new(body.bytes)),
        ticket: Ticket {
            _concurrency: concurrency,
            _slot: slot,
            memory: Some(memory),
            _body: body.reservation,
        },
    })
}
