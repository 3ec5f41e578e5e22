//! Reading a request body whole, under a limit, the same way on both sides: a declared
//! length over the limit is refused before anything is read, and a body that grows past
//! it is cut off there. [`BodyReader`] adds what protects the process rather than the
//! request: a deadline for the whole body (a client that announces a body and stalls is
//! answered 408 and cut off) and a process-wide budget for buffered bytes (503 when
//! every buffer is taken).

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{BoxError, ops};

/// Why a request body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("reading request body: {0}")]
    Read(BoxError),
    #[error("request body not received within {0:?}")]
    Timeout(Duration),
    #[error("the server is buffering its limit of request bodies; retry shortly")]
    Busy,
}

impl BodyError {
    /// 413 for a body over the limit, 400 for one that could not be read, 408 for one
    /// that did not arrive in time, 503 when the process-wide buffer is full.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge { .. } => 413,
            BodyError::Read(_) => 400,
            BodyError::Timeout(_) => 408,
            BodyError::Busy => 503,
        }
    }

    /// The answer. A 408 closes the connection (what is left of the body is never
    /// read); a 503 says when to retry.
    pub fn response(&self) -> http::Response<Full<Bytes>> {
        let mut response = ops::json_error(self.status(), &self.to_string());
        self.add_headers(response.headers_mut());
        response
    }

    /// `Connection: close` for a 408 or 413 (the rest of the body is not read), and
    /// `Retry-After: 1` for a 503.
    pub fn add_headers(&self, headers: &mut http::HeaderMap) {
        match self {
            BodyError::TooLarge { .. } | BodyError::Timeout(_) => {
                headers.insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            BodyError::Busy => {
                headers.insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("1"),
                );
            }
            BodyError::Read(_) => {}
        }
    }
}

/// Reads request bodies under a deadline and a process-wide budget of buffered bytes.
#[derive(Clone, Debug)]
pub struct BodyReader {
    deadline: Duration,
    /// The budget, in KiB.
    budget: Arc<Semaphore>,
}

/// A body read whole, and its share of the buffer budget: hold it as long as the bytes
/// are in memory.
#[derive(Debug)]
pub struct Buffered {
    pub bytes: Bytes,
    pub reservation: Option<OwnedSemaphorePermit>,
}

const KIB: u64 = 1024;

impl BodyReader {
    /// Bodies must arrive whole within `deadline`; at most `budget_bytes` of them are
    /// buffered at once in the process.
    pub fn new(deadline: Duration, budget_bytes: u64) -> Self {
        let kib = usize::try_from(budget_bytes / KIB)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            deadline,
            budget: Arc::new(Semaphore::new(kib)),
        }
    }

    /// Reads `body` whole: 413 past `limit` (declared or actual), 408 past the
    /// deadline, 503 past the budget.
    pub async fn read<B>(
        &self,
        headers: &http::HeaderMap,
        body: B,
        limit: u64,
    ) -> Result<Buffered, BodyError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let body = Box::pin(body);
        if let Err(too_large) = check_declared_length(headers, limit) {
            discard_rest(body);
            return Err(too_large);
        }
        let declared = content_length(headers).unwrap_or(0);
        if declared == 0 && body.is_end_stream() {
            return Ok(Buffered {
                bytes: Bytes::new(),
                reservation: None,
            });
        }
        let mut reservation = self.reserve(None, declared)?;
        let capacity = usize::try_from(declared).unwrap_or(0);
        // Chunked, or more than declared (hyper refuses that anyway): reserve as it grows.
        let grow = |len: u64| {
            if len > declared {
                reservation = self.reserve(reservation.take(), len)?;
            }
            Ok(())
        };
        let bytes = collect(body, limit, self.deadline, capacity, grow).await?;
        Ok(Buffered { bytes, reservation })
    }

    /// Grows `held` to cover `bytes`, or fails with [`BodyError::Busy`].
    fn reserve(
        &self,
        held: Option<OwnedSemaphorePermit>,
        bytes: u64,
    ) -> Result<Option<OwnedSemaphorePermit>, BodyError> {
        let want = bytes.div_ceil(KIB);
        let have = held.as_ref().map_or(0, |p| p.num_permits() as u64);
        if want <= have {
            return Ok(held);
        }
        let more = u32::try_from(want - have).map_err(|_| BodyError::Busy)?;
        let extra = self
            .budget
            .clone()
            .try_acquire_many_owned(more)
            .map_err(|_| BodyError::Busy)?;
        Ok(Some(match held {
            Some(mut permit) => {
                permit.merge(extra);
                permit
            }
            None => extra,
        }))
    }
}

/// How long, and how much more, a refused oversized body is read and thrown away.
const LINGER_TIME: Duration = Duration::from_secs(5);
const LINGER_BYTES: usize = 64 << 20;

/// Reads and discards what a client still sends of a body that will not be used (too
/// large, or refused before it was read), for a bounded time and size, in the
/// background (nginx's lingering close): closing a connection with unread data makes
/// the kernel reset it, and a client still uploading would often see the reset instead
/// of the answer that was sent before it. The connection closes after.
pub fn discard_rest<B>(mut body: std::pin::Pin<Box<B>>)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
{
    tokio::spawn(async move {
        let drain = async {
            let mut discarded = 0;
            while let Some(Ok(frame)) = body.frame().await {
                discarded += frame.data_ref().map_or(0, |d| d.len());
                if discarded > LINGER_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    });
}

/// Refuses a request whose `Content-Length` already says it is over `limit`.
pub fn check_declared_length(headers: &http::HeaderMap, limit: u64) -> Result<(), BodyError> {
    match content_length(headers) {
        Some(len) if len > limit => Err(BodyError::TooLarge { limit }),
        _ => Ok(()),
    }
}

/// Reads `body` whole within `deadline`, failing once it passes `limit` bytes, with no
/// budget of its own (the deploy API's reader, on the ops listener's own connection
/// limit). What a client still sends of a body over the limit is discarded, bounded.
pub async fn read_limited<B>(body: B, limit: u64, deadline: Duration) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    collect(Box::pin(body), limit, deadline, 0, |_| Ok(())).await
}

/// Reads `body` whole within `deadline`, failing once it passes `limit` bytes and telling
/// `grow` each new length first (it may refuse it); what a client still sends of a body
/// over the limit is discarded, bounded ([`discard_rest`]).
async fn collect<B>(
    mut body: std::pin::Pin<Box<B>>,
    limit: u64,
    deadline: Duration,
    capacity: usize,
    mut grow: impl FnMut(u64) -> Result<(), BodyError>,
) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let read = async {
        let mut buf = BytesMut::with_capacity(capacity);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Read(e.into()))?;
            if let Ok(data) = frame.into_data() {
                let len = (buf.len() + data.len()) as u64;
                if len > limit {
                    return Err(BodyError::TooLarge { limit });
                }
                grow(len)?;
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf.freeze())
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(Err(too_large @ BodyError::TooLarge { .. })) => {
            discard_rest(body);
            Err(too_large)
        }
        Ok(read) => read,
        Err(_elapsed) => Err(BodyError::Timeout(deadline)),
    }
}

/// The request's `Content-Length`, if it has a valid one.
fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;
    use std::convert::Infallible;

    fn headers(length: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::CONTENT_LENGTH, length.parse().unwrap());
        h
    }

    fn chunked<C: Into<Bytes>>(
        chunks: impl IntoIterator<Item = C>,
    ) -> impl http_body::Body<Data = Bytes, Error = Infallible> {
        let frames: Vec<_> = chunks
            .into_iter()
            .map(|c| Ok(http_body::Frame::data(c.into())))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn reader(budget_bytes: u64) -> BodyReader {
        BodyReader::new(Duration::from_secs(10), budget_bytes)
    }

    #[tokio::test]
    async fn limits_declared_and_actual_length() {
        let r = reader(1 << 20);
        let ok = r
            .read(&headers("3"), Full::new(Bytes::from("abc")), 3)
            .await;
        assert_eq!(ok.unwrap().bytes, "abc");
        let declared = r.read(&headers("4"), Full::new(Bytes::new()), 3).await;
        assert!(matches!(declared, Err(BodyError::TooLarge { limit: 3 })));
        // No Content-Length (chunked): cut off when it grows past the limit.
        let grown = r
            .read(&http::HeaderMap::new(), chunked(["ab", "cd"]), 3)
            .await
            .unwrap_err();
        assert_eq!(grown.status(), 413);
        assert_eq!(
            grown.to_string(),
            "request body is larger than the limit of 3 bytes"
        );
        assert_eq!(grown.response().headers()["connection"], "close");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_gets_408_at_the_deadline() {
        let r = BodyReader::new(Duration::from_secs(5), 1 << 20);
        let stalled = StreamBody::new(futures_util::stream::pending::<
            Result<http_body::Frame<Bytes>, Infallible>,
        >());
        let started = tokio::time::Instant::now();
        let err = r.read(&headers("10"), stalled, 100).await.unwrap_err();
        assert_eq!(err.status(), 408);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(err.response().headers()["connection"], "close");
        // Its reservation was given back: the whole budget is free again.
        assert_eq!(r.budget.available_permits(), 1024);
    }

    #[tokio::test]
    async fn the_buffer_budget_is_shared_and_given_back() {
        let r = reader(8 * 1024);
        let held = r
            .read(
                &headers("6144"),
                Full::new(Bytes::from(vec![1; 6144])),
                1 << 20,
            )
            .await
            .unwrap();
        assert_eq!(held.reservation.as_ref().unwrap().num_permits(), 6);
        // Declared: refused before reading. Chunked: refused as it grows past the rest.
        let declared = r
            .read(&headers("4096"), Full::new(Bytes::new()), 1 << 20)
            .await;
        assert!(matches!(declared, Err(BodyError::Busy)));
        let big = || chunked([vec![b'x'; 1500], vec![b'y'; 1500]]);
        let grown = r.read(&http::HeaderMap::new(), big(), 1 << 20).await;
        let busy = grown.unwrap_err();
        assert_eq!(busy.status(), 503);
        assert_eq!(busy.response().headers()["retry-after"], "1");
        drop(held);
        let fits = r.read(&http::HeaderMap::new(), big(), 1 << 20).await;
        assert_eq!(fits.unwrap().bytes.len(), 3000);
        // A bodiless request reserves nothing.
        let empty = r
            .read(&http::HeaderMap::new(), Full::new(Bytes::new()), 0)
            .await;
        assert!(empty.unwrap().reservation.is_none());
    }
}
