//! Simulated I/O wait, as the seed's `usleep(rand(100, 1000) * 1000)`: the request spends
//! its time waiting, not computing, so it shows what each side pays per request in flight.
//!
//! Query: `min_ms` and `max_ms` (defaults 100 and 1000, at most 60 000); the wait is
//! uniform in `min_ms..=max_ms`.

use sdk::{Error, Query, Request, Result};
use std::time::Duration;

pub const DEFAULT_MIN_MS: u64 = 100;
pub const DEFAULT_MAX_MS: u64 = 1000;
pub const LIMIT_MS: u64 = 60_000;

pub async fn handle(request: Request) -> Result {
    let query = Query::of(&request);
    let min = query.get_in("min_ms", DEFAULT_MIN_MS, 0..=LIMIT_MS)?;
    let max = query.get_in("max_ms", DEFAULT_MAX_MS.max(min), 0..=LIMIT_MS)?;
    if min > max {
        return Err(Error::bad_request(format!(
            "min_ms ({min}) is greater than max_ms ({max})"
        )));
    }
    let ms = sdk::random_range(min, max);
    sdk::sleep(Duration::from_millis(ms)).await;
    Ok(sdk::json(200, &serde_json::json!({ "slept_ms": ms })))
}

sdk::export!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    fn get(uri: &str) -> Request {
        sdk::http::Request::builder()
            .uri(uri)
            .body(Default::default())
            .unwrap()
    }

    fn slept(r: &sdk::Response) -> u64 {
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        v["slept_ms"].as_u64().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn default_bounds_are_the_seeds() {
        for _ in 0..50 {
            let ms = slept(&handle(get("/sleep/")).await.unwrap());
            assert!((DEFAULT_MIN_MS..=DEFAULT_MAX_MS).contains(&ms), "{ms}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bounds_come_from_the_query_and_the_wait_happens() {
        let start = tokio::time::Instant::now();
        let ms = slept(&handle(get("/sleep/?min_ms=5&max_ms=5")).await.unwrap());
        assert_eq!(ms, 5);
        assert_eq!(start.elapsed(), Duration::from_millis(5));
        // A min above the default max moves the default max up with it.
        let ms = slept(&handle(get("/sleep/?min_ms=2000")).await.unwrap());
        assert_eq!(ms, 2000);
    }

    #[tokio::test]
    async fn bad_bounds_are_400() {
        for uri in [
            "/sleep/?min_ms=abc",
            "/sleep/?max_ms=-1",
            "/sleep/?min_ms=10&max_ms=5",
            "/sleep/?max_ms=60001",
        ] {
            let e = handle(get(uri)).await.unwrap_err();
            assert_eq!(e.status(), 400, "{uri}: {e}");
        }
    }
}
