//! Step 3: the guest runs. A fresh instance from the pooling allocator, the guest's
//! `wasi:http/incoming-handler`, the whole under the function's timeout; then the
//! instance is dropped (its slot goes back to the pool) and the outcome classified.

use std::sync::Arc;
use std::time::Instant;
use wasmtime::{Instance, InstancePre, Store, Trap};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};

use super::Failure;
use super::admit::Ticket;
use super::prepare::Guest;
use super::wagi::WagiHost;
use crate::function::Function;
use crate::host::{Host, Usage};

/// Runs the guest's handler to its end; `None` if it returned normally.
pub async fn run(
    function: Arc<Function>,
    pre: ProxyPre<Host>,
    guest: Guest,
    ticket: Ticket,
) -> Option<Failure> {
    let Guest {
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
    in_fresh_instance(&function, store, ticket, Host::usage, instantiate, call)
        .await
        .err()
}

/// Runs a WAGI module's `_start` to its end in a fresh instance, like [`run`]: its exit
/// code (0 when `_start` returned), or why it failed.
pub async fn run_module(
    function: Arc<Function>,
    pre: &InstancePre<WagiHost>,
    store: Store<WagiHost>,
    ticket: Ticket,
) -> Result<i32, Failure> {
    let instantiate = async |store: &mut Store<WagiHost>| pre.instantiate_async(store).await;
    let call = async |store: &mut Store<WagiHost>, instance: Instance| {
        let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
        match start.call_async(store, ()).await {
            Ok(()) => Ok(0),
            Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => Ok(exit.0),
                None => Err(e),
            },
        }
    };
    in_fresh_instance(&function, store, ticket, WagiHost::usage, instantiate, call).await
}

/// Instantiates on `store` and calls the instance, timing each step, the whole under
/// the function's timeout. Holds the instance's ticket (concurrency permit, pool slot,
/// memory reservation, body buffer) and `faas_active_instances` for as long as the
/// instance lives, also when the request is dropped mid-way (a client that goes away
/// cancels its guest). Then drops the store, so its slot goes back to the pool,
/// observes its peak memory and classifies the outcome: a timeout, a normal end with
/// `R`, or an error.
async fn in_fresh_instance<T, I, R>(
    function: &Function,
    mut store: Store<T>,
    ticket: Ticket,
    usage: fn(&T) -> Usage,
    instantiate: impl AsyncFnOnce(&mut Store<T>) -> wasmtime::Result<I>,
    call: impl AsyncFnOnce(&mut Store<T>, I) -> wasmtime::Result<R>,
) -> Result<R, Failure> {
    let _ticket = ticket;
    let metrics = function
        .metrics
        .get()
        .expect("resolved before the guest runs");
    let active = ActiveInstance::new(metrics.active_instances.clone());
    let run = async {
        let t0 = Instant::now();
        let instance = instantiate(&mut store).await?;
        metrics.init_duration.observe(t0.elapsed().as_secs_f64());
        let t1 = Instant::now();
        let value = call(&mut store, instance).await?;
        metrics.invoke_duration.observe(t1.elapsed().as_secs_f64());
        wasmtime::Result::<R>::Ok(value)
    };
    let outcome = tokio::time::timeout(function.limits.timeout, run).await;
    let usage = usage(store.data());
    drop(store);
    drop(active);
    metrics.mem_usage.observe(usage.peak_memory_bytes as f64);
    match outcome {
        Err(_elapsed) => Err(Failure::Timeout(function.limits.timeout)),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(classify(&e, usage, function)),
    }
}

fn classify(error: &wasmtime::Error, usage: Usage, function: &Function) -> Failure {
    if usage.memory_limit_hit {
        return Failure::Memory(function.limits.memory);
    }
    if error
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return Failure::Capacity;
    }
    match error.downcast_ref::<Trap>() {
        Some(trap) => Failure::Trap(trap.to_string()),
        None => Failure::Trap(format!("{error:#}")),
    }
}

/// Keeps `faas_active_instances` raised while an instance is alive.
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
