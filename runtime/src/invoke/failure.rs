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
use crate::metrics::{ErrorReason, FaasMetrics, RejectionReason};
use crate::registry::Role;

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
    /// The instance's memory could not grow: the instances in flight hold the whole
    /// memory budget, or the function its fair part of it (503).
    #[error(
        "its memory (limit {0}) could not grow: the runtime's memory budget for instances, or this function's fair part of it, is taken; retry shortly"
    )]
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
    /// Its code was not in memory and could not be loaded (500).
    #[error("could not be loaded: {0}")]
    Load(String),
}

/// How a failure is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Refused before an instance was made: `faas_rejections_total`.
    Rejection(RejectionReason),
    /// Failed while it ran: `faas_errors_total`.
    Error(ErrorReason),
    /// The client's fault: counted by the HTTP metrics alone.
    ClientError,
}

impl Failure {
    /// How this failure is counted, decided for every variant in one exhaustive match.
    pub fn counted(&self) -> Counted {
        use Counted::{ClientError, Error, Rejection};
        match self {
            Failure::Body(BodyError::TooLarge { .. }) => Rejection(RejectionReason::BodyTooLarge),
            Failure::Body(BodyError::Timeout(_)) => Rejection(RejectionReason::BodyTimeout),
            Failure::Body(BodyError::Busy) => Rejection(RejectionReason::BodyBuffer),
            Failure::Body(BodyError::PeerBusy { .. }) => Rejection(RejectionReason::BodyBufferPeer),
            Failure::Body(BodyError::Read(_)) | Failure::NotAccepted(_) => ClientError,
            Failure::Concurrency(_) => Rejection(RejectionReason::Concurrency),
            Failure::PoolShare => Rejection(RejectionReason::PoolShare),
            Failure::Capacity => Rejection(RejectionReason::Capacity),
            Failure::MemoryBudget(_) => Rejection(RejectionReason::MemoryBudget),
            Failure::Timeout(_) => Error(ErrorReason::Timeout),
            Failure::Memory(_) => Error(ErrorReason::Memory),
            Failure::Trap(_) => Error(ErrorReason::Trap),
            Failure::NoResponse => Error(ErrorReason::NoResponse),
            Failure::ErrorResponse(_) => Error(ErrorReason::ErrorResponse),
            Failure::BadCgi(_) => Error(ErrorReason::BadCgi),
            Failure::Exit(_) => Error(ErrorReason::Exit),
            Failure::Load(_) => Error(ErrorReason::Load),
        }
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
            | Failure::Exit(_)
            | Failure::Load(_) => 500,
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

    /// Counts this failure of `function`'s `role` version: the only code that touches
    /// `faas_rejections_total`, `faas_errors_total` and `faas_timeouts_total`.
    pub fn count(&self, faas: &FaasMetrics, function: &str, role: Role, request_id: u64) {
        match self.counted() {
            Counted::ClientError => {}
            Counted::Rejection(reason) => {
                faas.rejections
                    .with_label_values(&[function, reason.label()])
                    .inc();
            }
            Counted::Error(reason) => {
                faas.errors
                    .with_label_values(&[function, role.label(), reason.label()])
                    .inc();
                if reason == ErrorReason::Timeout {
                    faas.timeouts.with_label_values(&[function]).inc();
                }
                tracing::warn!(function, request_id, "invocation failed: {self}");
            }
        }
    }
}

fn boxed(body: Full<Bytes>) -> Body {
    body.map_err(|never| match never {}).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reason a failure can be counted under, counted once for function `f`, then
    /// `f` forgotten: no `faas_errors_total` or `faas_rejections_total` series of `f`
    /// is left, while `g`'s stay. The reasons come from the lists the enums are made
    /// from, so a new reason is covered without touching this test.
    #[test]
    fn forgetting_a_function_removes_its_series_of_every_reason() {
        let registry = prometheus::Registry::new();
        let faas = FaasMetrics::new(&registry).unwrap();
        for function in ["f", "g"] {
            for reason in ErrorReason::ALL {
                for role in Role::ALL {
                    faas.errors
                        .with_label_values(&[function, role.label(), reason.label()])
                        .inc();
                }
            }
            for reason in RejectionReason::ALL {
                faas.rejections
                    .with_label_values(&[function, reason.label()])
                    .inc();
            }
        }
        let series = |function: &str| {
            registry
                .gather()
                .iter()
                .filter(|f| matches!(f.name(), "faas_errors_total" | "faas_rejections_total"))
                .flat_map(|f| f.get_metric().to_vec())
                .filter(|m| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == "function" && l.value() == function)
                })
                .count()
        };
        let all = ErrorReason::ALL.len() * Role::ALL.len() + RejectionReason::ALL.len();
        assert_eq!(series("f"), all);
        faas.forget_function("f");
        assert_eq!(series("f"), 0);
        assert_eq!(series("g"), all);
    }

    #[test]
    fn the_help_texts_list_every_reason() {
        let registry = prometheus::Registry::new();
        let faas = FaasMetrics::new(&registry).unwrap();
        let help = |name: &str| {
            registry
                .gather()
                .into_iter()
                .find(|f| f.name() == name)
                .map(|f| f.help().to_string())
        };
        // A family shows in `gather` once it has a series.
        faas.errors
            .with_label_values(&["f", "current", "trap"])
            .inc();
        faas.rejections.with_label_values(&["f", "capacity"]).inc();
        let errors = help("faas_errors_total").unwrap();
        for reason in ErrorReason::ALL {
            assert!(errors.contains(reason.label()), "{errors}");
        }
        let rejections = help("faas_rejections_total").unwrap();
        for reason in RejectionReason::ALL {
            assert!(rejections.contains(reason.label()), "{rejections}");
        }
    }
}
