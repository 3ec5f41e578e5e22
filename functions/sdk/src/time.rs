use std::time::Duration;

/// Waits without blocking other work: a tokio timer natively, a `wasi:clocks` pollable
/// on wasm.
pub async fn sleep(duration: Duration) {
    #[cfg(not(target_arch = "wasm32"))]
    tokio::time::sleep(duration).await;
    #[cfg(target_arch = "wasm32")]
    wstd::task::sleep(duration.into()).await;
}

/// Lets other work run. Natively a tokio yield: a handler doing long CPU work calls it
/// every few dozen microseconds of work, so it neither stalls the other requests on its worker
/// thread nor outlives its deadline (a timeout can only end a future where it yields).
/// On wasm nothing: the host preempts a running guest at its own ticks.
pub async fn yield_now() {
    #[cfg(not(target_arch = "wasm32"))]
    tokio::task::yield_now().await;
}
