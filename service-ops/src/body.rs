//! Reading a request body whole, under a limit, the same way on both sides: a declared
//! length over the limit is refused before anything is read, and a body that grows past
//! it is cut off there. [`BodyReader`] adds what protects the process rather than the
//! request: a deadline for the whole body (a client that announces a body and stalls is
//! answered 408 and cut off) and a process-wide budget for buffered bytes (503 when
//! every buffer is taken). The budget is charged as bytes arrive, past a small
//! allowance, not for what a `Content-Length` announces: a head that declares 16 MiB and
//! stalls holds 64 KiB, not 16 MiB. One client address holds at most its share of the
//! budget, so one peer's bodies cannot refuse every other peer's.

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::peers::{PeerCounts, PeerHold};
use crate::{BoxError, ops};

/// What a body with a declared length reserves before its bytes arrive: enough for most
/// bodies in one go, little enough that heads alone cannot take the budget.
pub const ALLOWANCE: u64 = 64 * 1024;

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
    #[error("this client is buffering its share of request bodies ({share} bytes); retry shortly")]
    PeerBusy { share: u64 },
}

impl BodyError {
    /// 413 for a body over the limit, 400 for one that could not be read, 408 for one
    /// that did not arrive in time, 503 when the process-wide buffer is full.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge { .. } => 413,
            BodyError::Read(_) => 400,
            BodyError::Timeout(_) => 408,
            BodyError::Busy | BodyError::PeerBusy { .. } => 503,
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
            BodyError::Busy | BodyError::PeerBusy { .. } => {
                headers.insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("1"),
                );
            }
            BodyError::Read(_) => {}
        }
    }
}

/// Reads request bodies under a deadline, a process-wide budget of buffered bytes and
/// each client address's share of it.
#[derive(Clone, Debug)]
pub struct BodyReader {
    deadline: Duration,
    /// The budget, in KiB.
    budget: Arc<Semaphore>,
    total_kib: u64,
    /// KiB held per client address, when a share is set.
    peers: Option<Arc<PeerCounts>>,
}

/// A body's share of the buffer budget: hold it as long as its bytes are in memory.
#[derive(Debug)]
pub struct Reservation {
    permit: OwnedSemaphorePermit,
    peer: Option<PeerHold>,
}

impl Reservation {
    /// The bytes reserved (whole KiB).
    pub fn bytes(&self) -> u64 {
        self.permit.num_permits() as u64 * KIB
    }
}

/// A body read whole, and its share of the buffer budget: hold it as long as the bytes
/// are in memory.
#[derive(Debug)]
pub struct Buffered {
    pub bytes: Bytes,
    pub reservation: Option<Reservation>,
}

const KIB: u64 = 1024;

impl BodyReader {
    /// Bodies must arrive whole within `deadline`; at most `budget_bytes` of them are
    /// buffered at once in the process, and at most `peer_share_bytes` (0: no share)
    /// for one client address.
    pub fn new(deadline: Duration, budget_bytes: u64, peer_share_bytes: u64) -> Self {
        let kib = usize::try_from(budget_bytes / KIB)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            deadline,
            budget: Arc::new(Semaphore::new(kib)),
            total_kib: kib as u64,
            peers: (peer_share_bytes > 0).then(|| PeerCounts::new((peer_share_bytes / KIB).max(1))),
        }
    }

    /// Bytes reserved for bodies being read or held now, all clients together.
    pub fn reserved_bytes(&self) -> u64 {
        (self.total_kib - self.budget.available_permits() as u64) * KIB
    }

    /// Reads the body of the request whose head is `parts` whole: 413 past `limit`
    /// (declared or actual), 408 past the deadline, 503 past the budget or the client's
    /// share of it (the client is [`crate::server::RemoteAddr`] in the extensions).
    pub async fn read<B>(
        &self,
        parts: &http::request::Parts,
        body: B,
        limit: u64,
    ) -> Result<Buffered, BodyError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let body = Box::pin(body);
        let headers = &parts.headers;
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
        let peer = parts
            .extensions
            .get::<crate::server::RemoteAddr>()
            .map(|a| a.0.ip());
        // Up front only the allowance; the rest as it arrives.
        let mut reservation = self.reserve(None, peer, declared.min(ALLOWANCE))?;
        let capacity = usize::try_from(declared.min(ALLOWANCE)).unwrap_or(0);
        let grow = |len: u64| {
            reservation = self.reserve(reservation.take(), peer, len)?;
            Ok(())
        };
        let bytes = collect(body, limit, self.deadline, capacity, grow).await?;
        Ok(Buffered { bytes, reservation })
    }

    /// Grows `held` to cover `bytes`, or fails with [`BodyError::Busy`] (the process's
    /// budget) or [`BodyError::PeerBusy`] (the client's share).
    fn reserve(
        &self,
        held: Option<Reservation>,
        peer: Option<IpAddr>,
        bytes: u64,
    ) -> Result<Option<Reservation>, BodyError> {
        let want = bytes.div_ceil(KIB);
        let have = held.as_ref().map_or(0, |r| r.permit.num_permits() as u64);
        if want <= have {
            return Ok(held);
        }
        let more_kib = want - have;
        let more = u32::try_from(more_kib).map_err(|_| BodyError::Busy)?;
        // The client's share first: a client over it is refused without touching the
        // process's budget.
        let peer_hold = match (&self.peers, peer) {
            (Some(shares), Some(ip)) => {
                Some(shares.take(ip, more_kib).ok_or(BodyError::PeerBusy {
                    share: shares.max() * KIB,
                })?)
            }
            _ => None,
        };
        // On failure the PeerHold drops here and gives its part back.
        let extra = self
            .budget
            .clone()
            .try_acquire_many_owned(more)
            .map_err(|_| BodyError::Busy)?;
        Ok(Some(match held {
            Some(mut reservation) => {
                reservation.permit.merge(extra);
                if let Some(added) = peer_hold {
                    match &mut reservation.peer {
                        Some(hold) => hold.merge(added),
                        None => reservation.peer = Some(added),
                    }
                }
                reservation
            }
            None => Reservation {
                permit: extra,
                peer: peer_hold,
            },
        }))
    }
}

/// The buffer's use at scrape time, as `http_server_request_body_buffered_bytes`.
#[derive(Debug)]
struct BufferCollector {
    reader: BodyReader,
    gauge: prometheus::IntGauge,
}

impl prometheus::core::Collector for BufferCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.gauge
            .set(i64::try_from(self.reader.reserved_bytes()).unwrap_or(i64::MAX));
        self.gauge.collect()
    }
}

impl BodyReader {
    /// Exposes the bytes reserved for request bodies now on `registry`.
    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        let gauge = prometheus::IntGauge::new(
            "http_server_request_body_buffered_bytes",
            "Bytes of the request-body buffer budget reserved now: what bodies being read \
             or held have received, plus a small allowance per body being read.",
        )?;
        registry.register(Box::new(BufferCollector {
            reader: self.clone(),
            gauge,
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

    /// A request head from `peer` with `Content-Length: length` (none if empty).
    fn head_from(peer: &str, length: &str) -> http::request::Parts {
        let mut request = http::Request::new(());
        if !length.is_empty() {
            request
                .headers_mut()
                .insert(http::header::CONTENT_LENGTH, length.parse().unwrap());
        }
        request.extensions_mut().insert(crate::server::RemoteAddr(
            format!("{peer}:4000").parse().unwrap(),
        ));
        request.into_parts().0
    }

    fn head(length: &str) -> http::request::Parts {
        head_from("10.0.0.1", length)
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

    /// Lets the spawned readers run until `done`, failing after a bounded number of turns
    /// (never a wall-clock wait).
    async fn settle(done: impl Fn() -> bool) {
        for _ in 0..10_000 {
            if done() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the readers did not get there");
    }

    fn reader(budget_bytes: u64) -> BodyReader {
        BodyReader::new(Duration::from_secs(10), budget_bytes, 0)
    }

    #[tokio::test]
    async fn limits_declared_and_actual_length() {
        let r = reader(1 << 20);
        let ok = r.read(&head("3"), Full::new(Bytes::from("abc")), 3).await;
        assert_eq!(ok.unwrap().bytes, "abc");
        let declared = r.read(&head("4"), Full::new(Bytes::new()), 3).await;
        assert!(matches!(declared, Err(BodyError::TooLarge { limit: 3 })));
        // No Content-Length (chunked): cut off when it grows past the limit.
        let grown = r
            .read(&head(""), chunked(["ab", "cd"]), 3)
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
        let r = BodyReader::new(Duration::from_secs(5), 1 << 20, 0);
        let stalled = StreamBody::new(futures_util::stream::pending::<
            Result<http_body::Frame<Bytes>, Infallible>,
        >());
        let started = tokio::time::Instant::now();
        let err = r.read(&head("10"), stalled, 100).await.unwrap_err();
        assert_eq!(err.status(), 408);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(err.response().headers()["connection"], "close");
        // Its reservation was given back: the whole budget is free again.
        assert_eq!(r.budget.available_permits(), 1024);
        assert_eq!(r.reserved_bytes(), 0);
    }

    #[tokio::test]
    async fn a_declared_length_reserves_only_the_allowance_until_bytes_arrive() {
        // 2 MiB of budget; sixteen heads that each declare 16 MiB and stall.
        let r = reader(2 << 20);
        let mut stalled = Vec::new();
        for _ in 0..16 {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<
                Result<http_body::Frame<Bytes>, Infallible>,
            >();
            let frames = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|frame| (frame, rx))
            });
            let r = r.clone();
            let reading = tokio::spawn(async move {
                r.read(&head("16777216"), StreamBody::new(frames), 32 << 20)
                    .await
            });
            stalled.push((tx, reading));
        }
        settle(|| r.reserved_bytes() == 16 * ALLOWANCE).await;
        // What they hold is the allowance each, 1 MiB together, not the 256 MiB declared
        // (which would not fit the 2 MiB budget).
        assert_eq!(r.reserved_bytes(), 16 * ALLOWANCE);
        // Bytes that arrive are charged as they arrive.
        let (tx, reading) = stalled.pop().unwrap();
        tx.send(Ok(http_body::Frame::data(Bytes::from(vec![0; 100 * 1024]))))
            .unwrap();
        settle(|| r.reserved_bytes() == 15 * ALLOWANCE + 100 * 1024).await;
        assert_eq!(r.reserved_bytes(), 15 * ALLOWANCE + 100 * 1024);
        drop(tx);
        // The stream ended short of its declared length: hyper would fail it; here it is
        // what was sent, and its reservation goes with it.
        drop(reading.await.unwrap());
        assert_eq!(r.reserved_bytes(), 15 * ALLOWANCE);
        for (tx, reading) in stalled {
            drop(tx);
            drop(reading.await.unwrap());
        }
        assert_eq!(r.reserved_bytes(), 0);
    }

    #[tokio::test]
    async fn one_client_address_holds_at_most_its_share() {
        // 1 MiB of budget, 256 KiB per client address.
        let r = BodyReader::new(Duration::from_secs(10), 1 << 20, 256 << 10);
        let body = |kib: usize| Full::new(Bytes::from(vec![1; kib * 1024]));
        let greedy = "10.0.0.66";
        let first = r
            .read(&head_from(greedy, "204800"), body(200), 1 << 20)
            .await
            .unwrap();
        let over = r
            .read(&head_from(greedy, "102400"), body(100), 1 << 20)
            .await
            .unwrap_err();
        assert!(
            matches!(over, BodyError::PeerBusy { share: 262144 }),
            "{over}"
        );
        assert_eq!(over.status(), 503);
        assert_eq!(over.response().headers()["retry-after"], "1");
        assert!(over.to_string().contains("this client"), "{over}");
        // Refused whole: its part of the share and of the budget were given back.
        assert_eq!(r.reserved_bytes(), 200 * 1024);
        // Another address is not held back by the first one's share.
        let other = r
            .read(&head_from("10.0.0.7", "204800"), body(200), 1 << 20)
            .await
            .unwrap();
        drop(first);
        let again = r
            .read(&head_from(greedy, "102400"), body(100), 1 << 20)
            .await
            .unwrap();
        drop((other, again));
        assert_eq!(r.reserved_bytes(), 0);
        assert_eq!(r.peers.as_ref().unwrap().addresses(), 0);
    }

    #[tokio::test]
    async fn the_buffer_budget_is_shared_and_given_back() {
        let r = reader(8 * 1024);
        let held = r
            .read(
                &head("6144"),
                Full::new(Bytes::from(vec![1; 6144])),
                1 << 20,
            )
            .await
            .unwrap();
        assert_eq!(held.reservation.as_ref().unwrap().bytes(), 6144);
        // Declared: refused once the bytes do not fit. Chunked: refused as it grows.
        let declared = r
            .read(
                &head("4096"),
                Full::new(Bytes::from(vec![2; 4096])),
                1 << 20,
            )
            .await;
        assert!(matches!(declared, Err(BodyError::Busy)));
        let big = || chunked([vec![b'x'; 1500], vec![b'y'; 1500]]);
        let grown = r.read(&head(""), big(), 1 << 20).await;
        let busy = grown.unwrap_err();
        assert_eq!(busy.status(), 503);
        assert_eq!(busy.response().headers()["retry-after"], "1");
        drop(held);
        let fits = r.read(&head(""), big(), 1 << 20).await;
        assert_eq!(fits.unwrap().bytes.len(), 3000);
        // A bodiless request reserves nothing.
        let empty = r.read(&head(""), Full::new(Bytes::new()), 0).await;
        assert!(empty.unwrap().reservation.is_none());
    }
}
