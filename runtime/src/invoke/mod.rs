//! The data plane: one request, in the order it happens. Each step has its own file:
//!
//! 1. [`admit`]: refuse what must not run (413 body, 503 concurrency) and read the body;
//! 2. [`prepare`]: the per-request host state, store and deadline;
//! 3. [`guest`]: a fresh instance runs the guest's handler under the deadline;
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

pub use failure::Failure;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use service_ops::BoxError;
use service_ops::traffic::Functions;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::function::Function;
use crate::metrics::FaasMetrics;
use crate::registry::Registry;

pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Runs requests against the deployed functions.
#[derive(Debug)]
pub struct Invoker {
    registry: Arc<Registry>,
    faas: FaasMetrics,
    next_request_id: AtomicU64,
}

impl Invoker {
    pub fn new(registry: Arc<Registry>, faas: FaasMetrics) -> Self {
        Self {
            registry,
            faas,
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
        let admitted = admit::admit(function, request).await?;
        let prepared = prepare::prepare(function, admitted.request, request_id)?;
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
        let run = guest::run(function.clone(), prepared.guest, admitted.permit);
        answer::answer(run, prepared.answer, &self.faas, function, request_id).await
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
