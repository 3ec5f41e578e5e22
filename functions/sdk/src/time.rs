use std::time::Duration;

/// Waits without blocking other work: a tokio timer natively, a `wasi:clocks` pollable
/// on wasm.
pub async fn sleep(duration: Duration) {
    #[cfg(not(target_arch = "wasm32"))]
    tokio::time::sleep(duration).await;
    #[cfg(target_arch = "wasm32")]
    wstd::task::sleep(duration.into()).await;
}
