//! Every way a request can fail in the runtime, with its status, its message, and the
//! one place each is counted.

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Full};
use service_ops::body::BodyError;
use service_ops::{Mib, ops};
use std::num::NonZeroU32;
use std::time::Duration;

use super::Body;
use crate::metrics::FaasMetrics;

/// Why a request got no answer from its guest.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Refused before running: body over the limit (413, a rejection), or unreadable (400).
    #[error(transparent)]
    Body(#[from] BodyError),
    /// Refused before running: the function is at its concurrency limit (503).
    #[error("is at its limit of {0} concurrent instances")]
    Concurrency(NonZeroU32),
    /// wasi:http would not take the request (400).
    #[error("request not accepted: {0}")]
    NotAccepted(String),
    /// The instance pool had no free slot: all functions together are at
    /// `--pool-instances` (503).
    #[error("no free instance slot")]
    Capacity,
    /// The pool's free slots are other functions' reserves (503).
    #[error(
        "has taken its share of the instance pool; the free slots are reserved for other functions"
    )]
    PoolShare,
    /// The instances in flight have reserved the whole memory budget (503).
    #[error("needs {0} but the runtime's memory budget for instances is taken")]
    MemoryBudget(Mib),
    /// Past the function's timeout, spinning or waiting (504).
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// `memory.grow` past the function's cap (500).
    #[error("exceeded its memory limit of {0}")]
    Memory(Mib),
    /// Any other trap (500).
    #[error("trapped: {0}")]
    Trap(String),
    /// Returned without setting a response (500).
    #[error("returned without a response")]
    NoResponse,
    /// Answered with an error code, or a body that broke (500).
    #[error("{0}")]
    ErrorResponse(String),
    /// A WAGI module wrote something that is not a CGI response (502).
    #[error("wrote a malformed CGI response: {0}")]
    BadCgi(String),
    /// A WAGI module exited with a non-zero code and wrote nothing (500).
    #[error("exited with code {0} without a response")]
    Exit(i32),
}

impl Failure {
    /// Every `faas_errors_total{reason}` value.
    pub const ERROR_REASONS: &[&str] = &[
        "trap",
        "memory",
        "timeout",
        "no_response",
        "error_response",
        "bad_cgi",
        "exit",
    ];
    /// Every `faas_rejections_total{reason}` value.
    pub const REJECTION_REASONS: &[&str] = &[
        "body_too_large",
        "body_timeout",
        "body_buffer",
        "concurrency",
        "pool_share",
        "capacity",
        "memory_budget",
    ];

    /// The `faas_errors_total{reason}` / `faas_rejections_total{reason}` label; `None`
    /// for a request that is the client's fault and counted by the HTTP metrics alone.
    fn reason(&self) -> Option<&'static str> {
        Some(match self {
            Failure::Body(BodyError::TooLarge { .. }) => "body_too_large",
            Failure::Body(BodyError::Timeout(_)) => "body_timeout",
            Failure::Body(BodyError::Busy) => "body_buffer",
            Failure::PoolShare => "pool_share",
            Failure::MemoryBudget(_) => "memory_budget",
            Failure::Body(BodyError::Read(_)) | Failure::NotAccepted(_) => return None,
            Failure::Concurrency(_) => "concurrency",
            Failure::Capacity => "capacity",
            Failure::Timeout(_) => "timeout",
            Failure::Memory(_) => "memory",
            Failure::Trap(_) => "trap",
            Failure::NoResponse => "no_response",
            Failure::ErrorResponse(_) => "error_response",
            Failure::BadCgi(_) => "bad_cgi",
            Failure::Exit(_) => "exit",
        })
    }

    /// Refused before an instance was made (`faas_rejections_total`), rather than failed
    /// while running (`faas_errors_total`).
    fn is_rejection(&self) -> bool {
        matches!(
            self,
            Failure::Body(_)
                | Failure::Concurrency(_)
                | Failure::Capacity
                | Failure::PoolShare
                | Failure::MemoryBudget(_)
        )
    }

    pub fn status(&self) -> u16 {
        match self {
            Failure::Body(e) => e.status(),
            Failure::NotAccepted(_) => 400,
            Failure::Concurrency(_)
            | Failure::Capacity
            | Failure::PoolShare
            | Failure::MemoryBudget(_) => 503,
            Failure::Timeout(_) => 504,
            Failure::Memory(_)
            | Failure::Trap(_)
            | Failure::NoResponse
            | Failure::ErrorResponse(_)
            | Failure::Exit(_) => 500,
            Failure::BadCgi(_) => 502,
        }
    }

    /// The client's answer: a JSON error naming the function and the cause. A 503 says
    /// `Retry-After: 1`: a full function or pool clears as soon as running requests end.
    pub fn response(&self, function: &str) -> Response<Body> {
        let message = match self {
            Failure::Body(_) | Failure::NotAccepted(_) => self.to_string(),
            Failure::Capacity => "the runtime has no free instance slot; retry shortly".to_string(),
            _ => format!("function {function:?} {self}"),
        };
        let mut response = ops::json_error(self.status(), &message).map(boxed);
        if let Failure::Body(e) = self {
            e.add_headers(response.headers_mut());
        } else if self.status() == 503 {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        response
    }

    /// Counts this failure of `function`: the only code that touches
    /// `faas_rejections_total`, `faas_errors_total` and `faas_timeouts_total`.
    pub fn count(&self, faas: &FaasMetrics, function: &str, request_id: u64) {
        let Some(reason) = self.reason() else { return };
        if self.is_rejection() {
            faas.rejections.with_label_values(&[function, reason]).inc();
            return;
        }
        faas.errors.with_label_values(&[function, reason]).inc();
        if matches!(self, Failure::Timeout(_)) {
            faas.timeouts.with_label_values(&[function]).inc();
        }
        tracing::warn!(function, request_id, "invocation failed: {self}");
    }
}

fn boxed(body: Full<Bytes>) -> Body {
    body.map_err(|never| match never {}).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_where_series_are_forgotten() {
        let all = [
            Failure::Body(BodyError::TooLarge { limit: 1 }),
            Failure::Body(BodyError::Timeout(Duration::from_secs(1))),
            Failure::Body(BodyError::Busy),
            Failure::Concurrency(NonZeroU32::MIN),
            Failure::Capacity,
            Failure::PoolShare,
            Failure::MemoryBudget(Mib::new(1)),
            Failure::Timeout(Duration::from_secs(1)),
            Failure::Memory(Mib::new(1)),
            Failure::Trap(String::new()),
            Failure::NoResponse,
            Failure::ErrorResponse(String::new()),
            Failure::BadCgi(String::new()),
            Failure::Exit(1),
        ];
        for failure in all {
            let reason = failure.reason().unwrap();
            let list = match failure.is_rejection() {
                true => Failure::REJECTION_REASONS,
                false => Failure::ERROR_REASONS,
            };
            assert!(list.contains(&reason), "{reason}");
        }
    }
}
