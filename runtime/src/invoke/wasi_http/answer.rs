//! A component's answer. The guest runs in the request's own task at first: a guest that
//! answers and returns in one go (most do) costs no spawn and no cross-thread wake-up,
//! and its body is sent whole with its length, as the webserver sends it. If it answers
//! and keeps going (a streaming body), the rest moves to its own task and the body is
//! streamed, ending in an error if the guest then fails; if the client goes away first,
//! the guest is ended there and then, freeing its instance.

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Full};
use service_ops::BoxError;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::oneshot;

use super::prepare::GuestAnswer;
use crate::function::Function;
use crate::invoke::{Body, Failure};
use crate::metrics::FaasMetrics;
use crate::registry::Role;

/// Which came first: the guest finishing, or its answer (response headers or an error).
enum First {
    Finished(Option<Failure>),
    Answered(Option<GuestAnswer>),
}

/// Waits for the guest's answer or its end and makes the HTTP response. A failure
/// returned here has not been counted yet; one that happens after the response went
/// out is counted by the task the guest finishes on.
pub async fn answer(
    guest: impl Future<Output = Option<Failure>> + Send + 'static,
    mut answer: oneshot::Receiver<GuestAnswer>,
    faas: &FaasMetrics,
    (function, role): (&Function, Role),
    request_id: u64,
) -> Result<Response<Body>, Failure> {
    let mut guest = Box::pin(guest);
    let first = tokio::select! {
        biased;
        failure = &mut guest => First::Finished(failure),
        answer = &mut answer => First::Answered(answer.ok()),
    };
    let (answered, first) = match first {
        // The guest is done; whatever it answered is in the channel.
        First::Finished(failure) => (answer.try_recv().ok(), First::Finished(failure)),
        // It answered and then yielded, most likely at an epoch tick on its way out:
        // give it its next slice before deciding it streams, so that a guest that
        // returns right after answering still has its body sent whole.
        First::Answered(answered) => {
            match std::future::poll_fn(|cx| Poll::Ready(guest.as_mut().poll(cx))).await {
                Poll::Ready(failure) => (answered, First::Finished(failure)),
                Poll::Pending => (None, First::Answered(answered)),
            }
        }
    };
    match first {
        First::Finished(failure) => match (answered.ok_or(()), failure) {
            // It has returned, so its whole body is queued already: send it with its
            // length instead of chunked.
            (Ok(Ok(response)), None) => whole(response).await.map_err(|code| {
                Failure::ErrorResponse(format!("answered with a broken body: {code:?}"))
            }),
            (Ok(Err(code)), None) => Err(Failure::ErrorResponse(format!(
                "answered with an error: {code:?}"
            ))),
            // It answered, then trapped or ran out of time or memory: nothing has been
            // sent yet, so the client hears what happened, not a cut-off body.
            (Ok(_), Some(failure)) | (Err(_), Some(failure)) => Err(failure),
            (Err(_), None) => Err(Failure::NoResponse),
        },
        // Headers are ready (or the guest dropped its outparam) and the guest is still
        // running: let it finish on its own task, which counts how it ends, and answer now.
        First::Answered(answered) => {
            let (failed_tx, failed) = oneshot::channel();
            // Dropped with a streamed response's body: if that happens before the guest
            // is done, its client has gone away and the guest is ended at once. (An
            // answer that is already complete runs its guest to the end, to count it.)
            let (client_tx, client_rx) = oneshot::channel::<()>();
            // Nothing is ever sent: the receiver resolves when the sender is dropped.
            let client_gone = async move {
                let _ = client_rx.await;
            };
            let streaming = matches!(answered, Some(Ok(_)));
            let (faas, name) = (faas.clone(), function.name().clone());
            tokio::spawn(async move {
                let failure = tokio::select! {
                    failure = &mut guest => failure,
                    () = client_gone, if streaming => {
                        tracing::debug!(function = %name, request_id, "client gone: guest ended");
                        return;
                    }
                };
                if let Some(failure) = &failure {
                    failure.count(&faas, &name, role, request_id);
                }
                let _ = failed_tx.send(failure.is_some());
            });
            match answered {
                Some(Ok(response)) => Ok(response.map(|body| {
                    Guarded {
                        body: body.map_err(BoxError::from).boxed_unsync(),
                        outcome: Some(failed),
                        _client: client_tx,
                    }
                    .boxed_unsync()
                })),
                Some(Err(code)) => Err(Failure::ErrorResponse(format!(
                    "answered with an error: {code:?}"
                ))),
                // It can no longer answer; how it ends is counted when it does, so this
                // answer is not counted again.
                None => Ok(Failure::NoResponse.response(function.name())),
            }
        }
    }
}

/// A finished guest's response with its body in one piece (and trailers, if it sent
/// any), so that hyper states its length.
async fn whole<B>(response: Response<B>) -> Result<Response<Body>, B::Error>
where
    B: http_body::Body<Data = Bytes>,
{
    let (parts, body) = response.into_parts();
    let collected = body.collect().await?;
    let trailers = collected.trailers().filter(|t| !t.is_empty()).cloned();
    let body = Full::new(collected.to_bytes());
    let body = match trailers {
        None => body.map_err(|never| match never {}).boxed_unsync(),
        Some(trailers) => body
            .with_trailers(async move { Some(Ok(trailers)) })
            .map_err(|never| match never {})
            .boxed_unsync(),
    };
    Ok(Response::from_parts(parts, body))
}

/// A streamed answer's body, ended by its guest's outcome. wasi:http ends a body cleanly
/// when its guest goes away without finishing it, so a guest that fails after its headers
/// went out (a trap, the timeout, the memory cap) would look like a complete, shorter
/// answer. Instead the body ends in an error: hyper stops without the final chunk and
/// the client knows the response is cut short.
struct Guarded {
    body: Body,
    /// Whether the guest failed; `None` once read.
    outcome: Option<oneshot::Receiver<bool>>,
    /// Held while the body is being sent; dropped early, it ends the guest.
    _client: oneshot::Sender<()>,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(None) => {}
            frame => return frame,
        }
        let Some(outcome) = this.outcome.as_mut() else {
            return Poll::Ready(None);
        };
        let failed = match Pin::new(outcome).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(failed) => failed.unwrap_or(false),
        };
        this.outcome = None;
        if failed {
            Poll::Ready(Some(Err(
                "the function failed after answering: its body is incomplete".into(),
            )))
        } else {
            Poll::Ready(None)
        }
    }
}
