//! Step 3: the guest runs. A fresh instance from the pooling allocator, the guest's
//! `wasi:http/incoming-handler`, the whole under the function's timeout; then the
//! instance is dropped (its slot goes back to the pool) and the outcome classified.

use std::sync::Arc;
use std::time::Instant;
use wasmtime::Trap;

use super::Failure;
use super::admit::Ticket;
use super::prepare::Guest;
use crate::function::Function;
use crate::host::Usage;

/// Runs the guest to its end; `None` if it returned normally. Holds the instance's
/// ticket (concurrency permit, pool slot, memory reservation, body buffer) and
/// `faas_active_instances` for as long as the instance lives,
/// also when the request is dropped mid-way (a client that goes away cancels its guest).
pub async fn run(function: Arc<Function>, guest: Guest, ticket: Ticket) -> Option<Failure> {
    let _ticket = ticket;
    let metrics = function
        .metrics
        .get()
        .expect("resolved before the guest runs");
    let active = ActiveInstance::new(metrics.active_instances.clone());
    let Guest {
        mut store,
        request,
        response_out,
    } = guest;
    let limits = &function.limits;
    let run = async {
        let t0 = Instant::now();
        let crate::function::Code::Http(pre) = &function.code else {
            unreachable!("a WAGI module runs through run_module");
        };
        let proxy = pre.instantiate_async(&mut store).await?;
        metrics.init_duration.observe(t0.elapsed().as_secs_f64());
        let t1 = Instant::now();
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, request, response_out)
            .await?;
        metrics.invoke_duration.observe(t1.elapsed().as_secs_f64());
        wasmtime::Result::<()>::Ok(())
    };
    let outcome = tokio::time::timeout(limits.timeout, run).await;
    let usage = store.data().usage();
    // Drop the instance before reporting: its memory slot goes back to the pool.
    drop(store);
    drop(active);
    settle(outcome, usage, &function).err()
}

/// Runs a WAGI module's `_start` to its end in a fresh instance, like [`run`]: its exit
/// code (0 when `_start` returned), or why it failed.
pub async fn run_module(
    function: Arc<Function>,
    pre: &wasmtime::InstancePre<super::wagi::WagiHost>,
    mut store: wasmtime::Store<super::wagi::WagiHost>,
    ticket: Ticket,
) -> Result<i32, Failure> {
    let _ticket = ticket;
    let metrics = function
        .metrics
        .get()
        .expect("resolved before the guest runs");
    let active = ActiveInstance::new(metrics.active_instances.clone());
    let limits = &function.limits;
    let run = async {
        let t0 = Instant::now();
        let instance = pre.instantiate_async(&mut store).await?;
        metrics.init_duration.observe(t0.elapsed().as_secs_f64());
        let t1 = Instant::now();
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        let exit = match start.call_async(&mut store, ()).await {
            Ok(()) => 0,
            Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => exit.0,
                None => return Err(e),
            },
        };
        metrics.invoke_duration.observe(t1.elapsed().as_secs_f64());
        wasmtime::Result::<i32>::Ok(exit)
    };
    let outcome = tokio::time::timeout(limits.timeout, run).await;
    let usage = store.data().usage();
    drop(store);
    drop(active);
    settle(outcome, usage, &function)
}

/// Once the instance is gone: its peak memory observed, and its outcome (a timeout, a
/// normal end with `T`, or an error) classified.
fn settle<T>(
    outcome: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
    usage: Usage,
    function: &Function,
) -> Result<T, Failure> {
    if let Some(metrics) = function.metrics.get() {
        metrics.mem_usage.observe(usage.peak_memory_bytes as f64);
    }
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
