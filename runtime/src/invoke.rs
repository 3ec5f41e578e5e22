//! One request: route, admit (body size, concurrency), run a fresh instance, classify
//! what happened, count it. Whatever the guest does, only this request is affected.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited, combinators::UnsyncBoxBody};
use service_ops::{BoxError, HttpMetrics, ops};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::{Store, Trap};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use crate::engine::EPOCH_TICK;
use crate::function::Function;
use crate::host::{Host, Usage};
use crate::metrics::FaasMetrics;
use crate::registry::Registry;

pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Label for requests that name no deployed function: keeps label values bounded.
pub const UNKNOWN_FUNCTION: &str = "(unknown)";

#[derive(Debug)]
pub struct Invoker {
    pub registry: Arc<Registry>,
    pub http: HttpMetrics,
    pub(crate) faas: FaasMetrics,
    next_request_id: AtomicU64,
}

/// How an invocation ended, for logs and `faas_errors_total{reason}`.
#[derive(Debug)]
enum Failure {
    Timeout,
    Memory(u64),
    Trap(String),
    NoResponse,
    /// The instance pool had no free slot (all functions together are at
    /// `--pool-instances`).
    Capacity,
}

impl Failure {
    fn reason(&self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Memory(_) => "memory",
            Failure::Trap(_) => "trap",
            Failure::NoResponse => "no_response",
            Failure::Capacity => "capacity",
        }
    }

    fn response(&self, function: &str, timeout: Duration) -> Response<Body> {
        let (status, message) = match self {
            Failure::Timeout => (
                504,
                format!("function {function:?} timed out after {timeout:?}"),
            ),
            Failure::Memory(limit) => (
                500,
                format!(
                    "function {function:?} exceeded its memory limit of {} MiB",
                    limit >> 20
                ),
            ),
            Failure::Trap(trap) => (500, format!("function {function:?} trapped: {trap}")),
            Failure::NoResponse => (
                500,
                format!("function {function:?} returned without a response"),
            ),
            Failure::Capacity => (
                503,
                "the runtime has no free instance slot; retry shortly".to_string(),
            ),
        };
        let response = boxed(ops::json_error(status, &message));
        if matches!(self, Failure::Capacity) {
            retry_soon(response)
        } else {
            response
        }
    }
}

/// Adds `Retry-After: 1` to a 503: the condition (a full function or pool) clears as
/// soon as running requests finish.
fn retry_soon(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("1"),
    );
    response
}

fn boxed(response: Response<Full<Bytes>>) -> Response<Body> {
    response.map(|b| b.map_err(|never| match never {}).boxed_unsync())
}

impl Invoker {
    pub fn new(registry: Arc<Registry>, http: HttpMetrics, faas: FaasMetrics) -> Self {
        Self {
            registry,
            http,
            faas,
            next_request_id: AtomicU64::new(1),
        }
    }

    /// Answers one request. Generic over the body so benchmarks can call it in-process
    /// with a ready-made body; the server passes hyper's `Incoming`.
    pub async fn handle<B>(self: Arc<Self>, request: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let start = Instant::now();
        let method = request.method().clone();
        let name = first_segment(request.uri().path());
        let (label, response) = match self.registry.get(name) {
            Some(function) => {
                let _in_flight = self.http.in_flight(&function.name);
                let response = self.clone().invoke(function.clone(), request).await;
                (function.name.clone(), response)
            }
            None => {
                let message = format!("no function named {name:?}");
                (
                    UNKNOWN_FUNCTION.into(),
                    boxed(ops::json_error(404, &message)),
                )
            }
        };
        self.http
            .observe(&label, &method, response.status().as_u16(), start.elapsed());
        response
    }

    async fn invoke<B>(
        self: Arc<Self>,
        function: Arc<Function>,
        request: Request<B>,
    ) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let name = &*function.name;
        let limits = &function.limits;
        let reject = |reason: &str, status: u16, message: String| {
            self.faas
                .rejections
                .with_label_values(&[name, reason])
                .inc();
            boxed(ops::json_error(status, &message))
        };
        let too_large = || {
            format!(
                "request body is larger than the limit of {} bytes",
                limits.max_body_bytes
            )
        };

        let (mut parts, body) = request.into_parts();
        if let Some(len) = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            && len > limits.max_body_bytes
        {
            return reject("body_too_large", 413, too_large());
        }
        // Beyond the concurrency limit: refuse now rather than queue without bound; the
        // client (or nginx, or a load balancer) retries after a moment.
        let Ok(permit) = function.permits.clone().try_acquire_owned() else {
            return retry_soon(reject(
                "concurrency",
                503,
                format!(
                    "function {name:?} is at its limit of {} concurrent instances",
                    limits.max_concurrency
                ),
            ));
        };
        let body = match Limited::new(body, limits.max_body_bytes as usize)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return reject("body_too_large", 413, too_large());
            }
            Err(e) => return boxed(ops::json_error(400, &format!("reading request body: {e}"))),
        };
        // The body is whole now, so its length is known: say it, as a buffering proxy
        // does. A guest then knows a bodiless request has no body without reading it
        // (wasi:http hides `Transfer-Encoding`, so without a length it cannot tell).
        parts.headers.insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(body.len()),
        );
        let mut guest_request = Request::from_parts(parts, Full::new(body));
        // wasi:http needs an authority; HTTP/1.0 clients may send no Host.
        if guest_request.uri().authority().is_none()
            && !guest_request.headers().contains_key(http::header::HOST)
        {
            guest_request.headers_mut().insert(
                http::header::HOST,
                http::HeaderValue::from_static("localhost"),
            );
        }

        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let host = Host::new(
            &function.name,
            request_id,
            function.env.clone(),
            function.allowed_hosts.clone(),
            limits.memory_bytes as usize,
        );
        let mut store = Store::new(function.pre.engine(), host);
        store.limiter(|host| host.limiter());
        // A guest spinning in wasm is stopped by the epoch deadline (a trap); a guest
        // waiting on the host (a timer, a stream) by the tokio timeout below.
        let ticks = (limits.timeout.as_nanos() / EPOCH_TICK.as_nanos()) as u64 + 1;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();

        let (tx, rx) = tokio::sync::oneshot::channel();
        let prepared = (|| {
            let incoming = store
                .data_mut()
                .http()
                .new_incoming_request(Scheme::Http, guest_request)?;
            let out = store.data_mut().http().new_response_outparam(tx)?;
            wasmtime::Result::<_>::Ok((incoming, out))
        })();
        let (incoming, out) = match prepared {
            Ok(v) => v,
            Err(e) => {
                return boxed(ops::json_error(
                    400,
                    &format!("request not accepted: {e:#}"),
                ));
            }
        };

        if function.cold.swap(false, Ordering::Relaxed) {
            self.faas.coldstarts.with_label_values(&[name]).inc();
            tracing::info!(function = name, request_id, "cold start");
        }
        let metrics = function
            .metrics
            .get_or_init(|| self.faas.for_function(name));
        metrics.invocations.inc();
        let active = ActiveInstance::new(metrics.active_instances.clone());

        let timeout = limits.timeout;
        let memory_limit = limits.memory_bytes;
        let invoker = self.clone();
        let function = function.clone();
        // The guest runs in this request's task at first: a guest that answers and
        // returns in one go (most do) costs no spawn and no cross-thread wake-up. If it
        // answers and keeps going (a streaming body), the rest moves to its own task.
        let guest = async move {
            let _permit = permit;
            let fname = &*function.name;
            let metrics = function
                .metrics
                .get()
                .expect("resolved before the guest runs");
            let run = async {
                let t0 = Instant::now();
                let proxy = function.pre.instantiate_async(&mut store).await?;
                metrics.init_duration.observe(t0.elapsed().as_secs_f64());
                let t1 = Instant::now();
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, out)
                    .await?;
                metrics.invoke_duration.observe(t1.elapsed().as_secs_f64());
                wasmtime::Result::<()>::Ok(())
            };
            let outcome = tokio::time::timeout(timeout, run).await;
            let usage = store.data().usage();
            // Drop the instance before reporting: its memory slot goes back to the pool.
            drop(store);
            drop(active);
            let failure = match outcome {
                Err(_elapsed) => Some(Failure::Timeout),
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(classify(&e, usage, memory_limit)),
            };
            metrics.mem_usage.observe(usage.peak_memory_bytes as f64);
            if let Some(failure) = &failure {
                let faas = &invoker.faas;
                faas.errors
                    .with_label_values(&[fname, failure.reason()])
                    .inc();
                if matches!(failure, Failure::Timeout) {
                    faas.timeouts.with_label_values(&[fname]).inc();
                }
                tracing::warn!(
                    function = fname,
                    request_id,
                    "invocation failed: {failure:?}"
                );
            }
            failure
        };
        let mut guest = Box::pin(guest);
        let mut rx = rx;
        let first = tokio::select! {
            biased;
            failure = &mut guest => First::Finished(failure),
            answer = &mut rx => First::Answered(answer.ok()),
        };
        let (answer, outcome) = match first {
            // Headers are ready and the guest is still running: let it finish the body
            // on its own task, and answer now.
            First::Answered(answer) => {
                let (failed, outcome) = tokio::sync::oneshot::channel();
                tokio::spawn(async move {
                    let _ = failed.send(guest.await.is_some());
                });
                (answer, Some(outcome))
            }
            // The guest is done; whatever it answered is in the channel.
            First::Finished(failure) => match (rx.try_recv(), failure) {
                (Ok(answer), None) => (Some(answer), None),
                // It answered, then trapped or ran out of time or memory: nothing has
                // been sent yet, so the client hears what happened, not a cut-off body.
                (Ok(_), Some(failure)) => return failure.response(name, timeout),
                (Err(_), failure) => {
                    let failure = failure.unwrap_or_else(|| {
                        self.faas
                            .errors
                            .with_label_values(&[name, "no_response"])
                            .inc();
                        Failure::NoResponse
                    });
                    return failure.response(name, timeout);
                }
            },
        };
        let broken = |what: String| {
            self.faas
                .errors
                .with_label_values(&[name, "error_response"])
                .inc();
            boxed(ops::json_error(500, &format!("function {name:?} {what}")))
        };
        match (answer, outcome) {
            // The guest has returned, so its whole body is queued already: send it with
            // its length (as the webserver does) instead of chunked.
            (Some(Ok(response)), None) => match whole(response).await {
                Ok(response) => response,
                Err(code) => broken(format!("answered with a broken body: {code:?}")),
            },
            (Some(Ok(response)), Some(outcome)) => response.map(|body| {
                Guarded {
                    body: body.map_err(BoxError::from).boxed_unsync(),
                    outcome: Some(outcome),
                }
                .boxed_unsync()
            }),
            (Some(Err(code)), _) => broken(format!("answered with an error: {code:?}")),
            // The sender went away without an answer while the guest was still running:
            // it cannot answer any more. (Its own outcome is counted when it ends.)
            (None, _) => Failure::NoResponse.response(name, timeout),
        }
    }
}

/// A streamed answer's body, ended by its guest's outcome. wasi:http ends a body cleanly
/// when its guest goes away without finishing it, so a guest that fails after its headers
/// went out (a trap, the timeout, the memory cap) would look like a complete, shorter
/// answer. Instead the body ends in an error: hyper stops without the final chunk and
/// the client knows the response is cut short.
struct Guarded {
    body: Body,
    /// Whether the guest failed; `None` once read.
    outcome: Option<tokio::sync::oneshot::Receiver<bool>>,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(None) => {}
            frame => return frame,
        }
        let Some(outcome) = this.outcome.as_mut() else {
            return Poll::Ready(None);
        };
        let failed = match std::pin::Pin::new(outcome).poll(cx) {
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

/// Which came first: the guest finishing, or its answer (response headers or an error).
enum First<A> {
    Finished(Option<Failure>),
    Answered(Option<A>),
}

/// Keeps `faas_active_instances` raised while an instance is alive, also when the
/// request is dropped mid-way (a client that goes away cancels its guest).
struct ActiveInstance(prometheus::IntGauge);

impl ActiveInstance {
    fn new(gauge: prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for ActiveInstance {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn classify(error: &wasmtime::Error, usage: Usage, memory_limit: u64) -> Failure {
    if usage.memory_limit_hit {
        return Failure::Memory(memory_limit);
    }
    if error
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return Failure::Capacity;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Failure::Timeout,
        Some(trap) => Failure::Trap(trap.to_string()),
        None => Failure::Trap(format!("{error:#}")),
    }
}

/// `/hello/x?y` → `hello`.
pub fn first_segment(path: &str) -> &str {
    path.trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
}
