//! Reading a request body whole, under a limit, the same way on both sides: a declared
//! length over the limit is refused before anything is read, and a body that grows past
//! it is cut off there.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};

use crate::{BoxError, ops};

/// Why a request body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("reading request body: {0}")]
    Read(BoxError),
}

impl BodyError {
    /// 413 for a body over the limit, 400 for one that could not be read.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge { .. } => 413,
            BodyError::Read(_) => 400,
        }
    }

    pub fn response(&self) -> http::Response<Full<Bytes>> {
        ops::json_error(self.status(), &self.to_string())
    }
}

/// Refuses a request whose `Content-Length` already says it is over `limit`.
pub fn check_declared_length(headers: &http::HeaderMap, limit: u64) -> Result<(), BodyError> {
    match content_length(headers) {
        Some(len) if len > limit => Err(BodyError::TooLarge { limit }),
        _ => Ok(()),
    }
}

/// Reads `body` whole, failing once it passes `limit` bytes.
pub async fn read_limited<B>(body: B, limit: u64) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, cap).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge { limit }),
        Err(e) => Err(BodyError::Read(e)),
    }
}

/// [`check_declared_length`], then [`read_limited`].
pub async fn read_body<B>(
    headers: &http::HeaderMap,
    body: B,
    limit: u64,
) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    check_declared_length(headers, limit)?;
    read_limited(body, limit).await
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

    fn headers(length: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::CONTENT_LENGTH, length.parse().unwrap());
        h
    }

    #[tokio::test]
    async fn limits_declared_and_actual_length() {
        let ok = read_body(&headers("3"), Full::new(Bytes::from("abc")), 3).await;
        assert_eq!(ok.unwrap(), "abc");
        let declared = read_body(&headers("4"), Full::new(Bytes::new()), 3).await;
        assert!(matches!(declared, Err(BodyError::TooLarge { limit: 3 })));
        // No Content-Length (chunked): cut off when it grows past the limit.
        let chunks =
            futures_util::stream::iter(["ab", "cd"].map(|c| {
                Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(c)))
            }));
        let grown = read_limited(StreamBody::new(chunks), 3).await.unwrap_err();
        assert_eq!(grown.status(), 413);
        assert_eq!(
            grown.to_string(),
            "request body is larger than the limit of 3 bytes"
        );
    }
}
