//! What a wasi:http component's instance needs before it runs: its host state (sandboxed WASI,
//! wasi:http, the memory limiter), a new store that yields at every epoch tick, and the request
//! and response-outparam resources the handler is called with.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::sync::oneshot;
use wasmtime::Store;
use wasmtime::component::Resource;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

use crate::function::Function;
use crate::host::Host;
use crate::invoke::Failure;

/// What the guest sends back through its response outparam.
pub type GuestAnswer = Result<hyper::Response<HyperOutgoingBody>, ErrorCode>;

/// A store ready to instantiate, and the handler's arguments.
pub struct Guest {
    pub store: Store<Host>,
    pub request: Resource<HostIncomingRequest>,
    pub response_out: Resource<HostResponseOutparam>,
}

pub struct Prepared {
    pub guest: Guest,
    /// Where the guest's response arrives.
    pub answer: oneshot::Receiver<GuestAnswer>,
}

pub fn prepare(
    function: &Function,
    pre: &ProxyPre<Host>,
    request: Request<Full<Bytes>>,
    request_id: u64,
    charge: Option<crate::admission::MemoryCharge>,
) -> Result<Prepared, Failure> {
    let limits = &function.limits;
    let host = Host::new(
        function.name(),
        &function.version,
        request_id,
        function.env.clone(),
        function.allowed_hosts.clone(),
        (limits.memory.bytes_usize(), charge),
        limits.log_budget_bytes,
    );
    let mut store = Store::new(pre.engine(), host);
    store.limiter(|host| host.limiter());
    crate::invoke::instance::yield_at_every_tick(&mut store);
    let (tx, answer) = oneshot::channel();
    let resources = || {
        let mut http = store.data_mut().http();
        let request = http.new_incoming_request(Scheme::Http, request)?;
        let response_out = http.new_response_outparam(tx)?;
        wasmtime::Result::<_>::Ok((request, response_out))
    };
    let (request, response_out) =
        resources().map_err(|e| Failure::NotAccepted(format!("{e:#}")))?;
    Ok(Prepared {
        guest: Guest {
            store,
            request,
            response_out,
        },
        answer,
    })
}
