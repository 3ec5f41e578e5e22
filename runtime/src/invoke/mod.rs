//! The data plane: one request, in the order it happens. Each step has its own file:
//!
//! 1. [`admit`]: read the body (413 too large, 408 too slow, 503 no buffer), then refuse
//!    what must not run (503: the function's concurrency, its pool share, the memory
//!    budget);
//! 2. [`prepare`]: the per-request host state, store and deadline;
//! 3. [`guest`]: a fresh instance runs the guest's handler under the deadline (a WASI
//!    0.1 module's `_start` instead, with the request and response as CGI: [`wagi`]);
//! 4. [`answer`]: whichever comes first, the guest's response or its end, becomes the
//!    HTTP answer;
//!
//! and [`failure`], the one type every way of failing goes through, which is also the
//! only code that counts `faas_errors_total`, `faas_timeouts_total` and
//! `faas_rejections_total`. Whatever the guest does, only its own request is affected.

mod admit;
mod answer;
mod failure;
mod guest;
mod prepare;
pub mod wagi;

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
use crate::function::Function;
use crate::metrics::FaasMetrics;
use crate::registry::Registry;

pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Runs requests against the deployed functions.
#[derive(Debug)]
pub struct Invoker {
    registry: Arc<Registry>,
    faas: FaasMetrics,
    shared: Shared,
    next_request_id: AtomicU64,
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
    pub fn new(registry: Arc<Registry>, faas: FaasMetrics, shared: Shared) -> Self {
        Self {
            registry,
            faas,
            shared,
            next_request_id: AtomicU64::new(1),
        }
    }

    /// Runs `function` for `request`.
    pub async fn invoke<B>(&self, function: Arc<Function>, request: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        match self.run(&function, request, request_id).await {
            Ok(response) => response,
            Err(failure) => {
                failure.count(&self.faas, function.name(), request_id);
                failure.response(function.name())
            }
        }
    }

    async fn run<B>(
        &self,
        function: &Arc<Function>,
        request: Request<B>,
        request_id: u64,
    ) -> Result<Response<Body>, Failure>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let admitted = admit::admit(function, request, &self.shared, self.registry.len()).await?;
        let metrics = function
            .metrics
            .get_or_init(|| self.faas.for_function(function.name()));
        if function.cold.swap(false, Ordering::Relaxed) {
            self.faas
                .coldstarts
                .with_label_values(&[&**function.name()])
                .inc();
            tracing::info!(function = %function.name(), request_id, "cold start");
        }
        metrics.invocations.inc();
        match &function.code {
            crate::function::Code::Http(pre) => {
                let prepared = prepare::prepare(function, pre, admitted.request, request_id)?;
                let run = guest::run(
                    function.clone(),
                    pre.clone(),
                    prepared.guest,
                    admitted.ticket,
                );
                answer::answer(run, prepared.answer, &self.faas, function, request_id).await
            }
            crate::function::Code::Wagi(pre) => {
                wagi::serve(function, pre, admitted.request, admitted.ticket, request_id).await
            }
        }
    }
}

impl Functions for Invoker {
    type Function = Arc<Function>;
    type Label = Arc<str>;
    type Body = Body;

    fn lookup(&self, name: &str) -> Option<Arc<Function>> {
        self.registry.get(name)
    }

    fn label(function: &Arc<Function>) -> Arc<str> {
        function.name().clone()
    }

    async fn call<B>(
        self: Arc<Self>,
        function: Arc<Function>,
        request: Request<B>,
    ) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.invoke(function, request).await
    }
}
