//! The wasi:http executor: a component's `wasi:http/incoming-handler` serves the request.
//! [`prepare`] makes the instance's host state, store and handler arguments; the handler
//! is called in a fresh instance ([`super::instance`]); [`answer`] turns whichever comes
//! first, the guest's response or its end, into the HTTP answer.

mod answer;
mod prepare;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use std::sync::Arc;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};

use super::admit::Ticket;
use super::instance::in_fresh_instance;
use super::{Body, Failure};
use crate::function::Function;
use crate::host::Host;
use crate::metrics::{FaasMetrics, InvocationMetrics};

/// Serves `request` with `function`'s component `pre`, holding `ticket` while its
/// instance lives.
pub(super) async fn serve(
    function: &Arc<Function>,
    pre: &ProxyPre<Host>,
    request: Request<Full<Bytes>>,
    mut ticket: Ticket,
    request_id: u64,
    faas: &FaasMetrics,
    metrics: Arc<InvocationMetrics>,
) -> Result<Response<Body>, Failure> {
    let prepared = prepare::prepare(function, pre, request, request_id, ticket.take_memory())?;
    let role = metrics.role;
    let run = run(
        function.clone(),
        metrics,
        pre.clone(),
        prepared.guest,
        ticket,
    );
    answer::answer(run, prepared.answer, faas, (function, role), request_id).await
}

/// Runs the guest's handler to its end; `None` if it returned normally. Owns what it
/// uses: a guest that streams its body finishes on a task of its own.
async fn run(
    function: Arc<Function>,
    metrics: Arc<InvocationMetrics>,
    pre: ProxyPre<Host>,
    guest: prepare::Guest,
    ticket: Ticket,
) -> Option<Failure> {
    let prepare::Guest {
        store,
        request,
        response_out,
    } = guest;
    let instantiate = async |store: &mut Store<Host>| pre.instantiate_async(store).await;
    let call = async |store: &mut Store<Host>, proxy: Proxy| {
        proxy
            .wasi_http_incoming_handler()
            .call_handle(store, request, response_out)
            .await
    };
    in_fresh_instance(
        &function,
        &metrics,
        store,
        ticket,
        Host::usage,
        instantiate,
        call,
    )
    .await
    .err()
}
