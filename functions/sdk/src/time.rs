use std::time::Duration;

/// Waits without blocking other work: a tokio timer natively, a `wasi:clocks` pollable
/// on WASI 0.2. On WASI 0.1 the instance serves one request and has nothing else to
/// do, so it blocks in `poll_oneoff`, which the host waits on without a thread.
pub async fn sleep(duration: Duration) {
    #[cfg(not(target_arch = "wasm32"))]
    tokio::time::sleep(duration).await;
    #[cfg(all(target_arch = "wasm32", target_env = "p2"))]
    wstd::task::sleep(duration.into()).await;
    #[cfg(all(target_arch = "wasm32", not(target_env = "p2")))]
    std::thread::sleep(duration);
}

/// Lets other work run. Natively a tokio yield: a handler doing long CPU work calls it
/// every few dozen microseconds of work, so it neither stalls the other requests on its worker
/// thread nor outlives its deadline (a timeout can only end a future where it yields).
/// On wasm nothing: the host preempts a running guest at its own ticks.
pub async fn yield_now() {
    #[cfg(not(target_arch = "wasm32"))]
    tokio::task::yield_now().await;
}
