//! The data plane: one request, in the order it happens.
//!
//! 1. [`admit`]: read the body (413 too large, 408 too slow, 503 no buffer), then refuse
//!    what must not run (503: the function's concurrency, its pool share, the memory
//!    budget);
//! 2. its code, loaded first if it is not in memory ([`crate::resident`]): a cold start;
//! 3. the function's ABI serves it, each in its own executor over the one runner of
//!    fresh instances ([`instance`]: the ticket held, timing, the timeout, epoch ticks,
//!    the outcome classified): [`wasi_http`] calls a component's
//!    `wasi:http/incoming-handler`, [`wagi`] runs a WASI 0.1 module's `_start` with the
//!    request and response as CGI;
//!
//! and [`failure`], the one type every way of failing goes through, which is also the
//! only code that counts `faas_errors_total`, `faas_timeouts_total` and
//! `faas_rejections_total`. Whatever the guest does, only its own request is affected.

mod admit;
mod failure;
mod instance;
pub mod wagi;
mod wasi_http;

pub use failure::Failure;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use service_ops::BoxError;
use service_ops::body::BodyReader;
use service_ops::traffic::Functions;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::admission::{MemoryBudget, PoolShares};
use crate::function::Code;
use crate::metrics::FaasMetrics;
use crate::registry::{CanaryWatch, Registry, Routed};
use crate::resident::Resident;

pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Runs requests against the deployed functions.
#[derive(Debug)]
pub struct Invoker {
    registry: Arc<Registry>,
    resident: Arc<Resident>,
    faas: FaasMetrics,
    shared: Shared,
    next_request_id: AtomicU64,
    /// Told when a canary's error rate passes its threshold (the control plane ends it).
    canary_alarm: std::sync::OnceLock<Alarm>,
}

/// What is done when a canary of the named function fails too often.
pub type CanaryAlarm = Box<dyn Fn(Arc<str>, Arc<CanaryWatch>) + Send + Sync>;

struct Alarm(CanaryAlarm);

impl std::fmt::Debug for Alarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Alarm")
    }
}

/// What every request draws on, whichever its function: the process's body buffer,
/// instance memory and pool slots.
#[derive(Debug)]
pub struct Shared {
    pub bodies: BodyReader,
    pub memory: Arc<MemoryBudget>,
    pub pool: Arc<PoolShares>,
}

impl Invoker {
    pub fn new(
        registry: Arc<Registry>,
        resident: Arc<Resident>,
        faas: FaasMetrics,
        shared: Shared,
    ) -> Self {
        Self {
            registry,
            resident,
            faas,
            shared,
            next_request_id: AtomicU64::new(1),
            canary_alarm: std::sync::OnceLock::new(),
        }
    }

    /// Sets what is done when a canary fails past its threshold (once; later calls are
    /// ignored).
    pub fn on_canary_failing(&self, alarm: CanaryAlarm) {
        let _ = self.canary_alarm.set(Alarm(alarm));
    }

    /// Runs `routed`'s version of its function for `request`. A canary's answer is
    /// tallied: a 5xx, whoever made it, counts against it.
    pub async fn invoke<B>(&self, routed: Routed, request: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let function = &routed.function;
        let response = match self.run(&routed, request, request_id).await {
            Ok(response) => response,
            Err(failure) => {
                failure.count(&self.faas, function.name(), routed.role, request_id);
                failure.response(function.name())
            }
        };
        if let Some(watch) = routed.watch
            && watch.record(response.status().is_server_error())
        {
            let (requests, failures) = watch.tally();
            tracing::warn!(
                function = %function.name(),
                version = watch.version,
                requests,
                failures,
                "the canary's error rate is past its threshold; ending it"
            );
            if let Some(alarm) = self.canary_alarm.get() {
                (alarm.0)(function.name().clone(), watch);
            }
        }
        response
    }

    async fn run<B>(
        &self,
        routed: &Routed,
        request: Request<B>,
        request_id: u64,
    ) -> Result<Response<Body>, Failure>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let function = &routed.function;
        let admitted = admit::admit(function, request, &self.shared, self.registry.len()).await?;
        let (ready, loaded) = self
            .resident
            .code(function, request_id)
            .await
            .map_err(|e| Failure::Load(e.to_string()))?;
        if loaded.is_some() {
            let compiled = ready.compiled;
            self.faas.count_ready(
                function.name(),
                compiled.result(),
                compiled.seconds,
                compiled.cache_set_aside,
            );
        }
        let metrics = function.metrics(&self.faas, routed.role);
        if let Some(reason) = function.take_cold_start() {
            let reason = reason.label();
            self.faas
                .coldstarts
                .with_label_values(&[&**function.name(), reason])
                .inc();
            if let Some(loaded) = loaded {
                self.faas
                    .load_duration
                    .with_label_values(&[reason])
                    .observe(loaded.seconds);
            }
            tracing::info!(function = %function.name(), request_id, reason, "cold start");
        }
        metrics.invocations.inc();
        match &*ready.code {
            Code::Http(pre) => {
                let (request, ticket) = (admitted.request, admitted.ticket);
                wasi_http::serve(
                    function, pre, request, ticket, request_id, &self.faas, metrics,
                )
                .await
            }
            Code::Wagi(pre) => {
                let (request, ticket) = (admitted.request, admitted.ticket);
                wagi::serve(function, &metrics, pre, request, ticket, request_id).await
            }
        }
    }
}

impl Functions for Invoker {
    type Function = Routed;
    type Label = Arc<str>;
    type Body = Body;

    fn lookup(&self, name: &str) -> Option<Routed> {
        self.registry.pick(name)
    }

    fn label(routed: &Routed) -> Arc<str> {
        routed.function.name().clone()
    }

    async fn call<B>(self: Arc<Self>, function: Routed, request: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.invoke(function, request).await
    }
}
