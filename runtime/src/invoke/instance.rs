//! What every ABI's guest runs in: a fresh instance from the pooling allocator, on a
//! store that yields at every epoch tick, the whole under the function's timeout while
//! the request's ticket is held; then the instance is dropped (its slot goes back to the
//! pool) and the outcome classified. `wasi_http` and `wagi` say what is called in it.

use std::time::Instant;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::Failure;
use super::admit::Ticket;
use crate::function::Function;
use crate::host::Usage;
use crate::metrics::InvocationMetrics;

/// Instantiates on `store` and calls the instance, timing each step, the whole under
/// the function's timeout. Holds the instance's ticket (concurrency permit, pool slot,
/// memory reservation, body buffer) and `faas_active_instances` for as long as the
/// instance lives, also when the request is dropped mid-way (a client that goes away
/// cancels its guest). Then drops the store, so its slot goes back to the pool,
/// observes its peak memory and classifies the outcome: a timeout, a normal end with
/// `R`, or an error.
pub(super) async fn in_fresh_instance<T, I, R>(
    function: &Function,
    metrics: &InvocationMetrics,
    mut store: Store<T>,
    ticket: Ticket,
    usage: fn(&T) -> Usage,
    instantiate: impl AsyncFnOnce(&mut Store<T>) -> wasmtime::Result<I>,
    call: impl AsyncFnOnce(&mut Store<T>, I) -> wasmtime::Result<R>,
) -> Result<R, Failure> {
    let _ticket = ticket;
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
    if usage.memory_budget_hit {
        return Failure::MemoryBudget(function.limits.memory);
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

/// A guest running in wasm yields to the scheduler at every epoch tick, so a CPU-bound
/// guest never holds a worker thread for longer than a tick: the other requests on that
/// worker run in between, and the tokio timeout in [`in_fresh_instance`], which also ends a guest that
/// waits on the host (a timer, a stream), ends it on time. Tokio's own yield, not
/// wasmtime's: tokio runs a task that yielded that way only after polling its I/O and
/// timers, so new connections are accepted and deadlines fire even while every worker
/// has a spinning guest (with wasmtime's plain self-wake, sockets were polled only every
/// 61 turns: ~0.5 s with two spinning).
pub(super) fn yield_at_every_tick<T>(store: &mut Store<T>) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| {
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(tokio::task::yield_now()),
        ))
    });
}
