//! The one handler API shared by both sides of the comparison.
//!
//! A function is ordinary async Rust:
//!
//! ```
//! use sdk::{Request, Response, Error};
//!
//! pub async fn handle(_req: Request) -> Result<Response, Error> {
//!     Ok(sdk::json(200, &serde_json::json!({"message": "Hello World!"})))
//! }
//! ```
//!
//! Natively the webserver calls `handle` directly. Compiled for `wasm32-wasip2`,
//! [`export!`] turns the same function into a `wasi:http/incoming-handler` export, so the
//! artifact is a standard wasi:http component that `wasmtime serve`, Spin and our runtime
//! all run. Compiled for `wasm32-wasip1`, the crate's `src/main.rs` ([`cgi::run`]) makes
//! it a WASI 0.1 command that answers the WAGI way, CGI over WASI. The only things that
//! differ per target (timers, randomness) live behind the helpers in this crate.

pub mod cgi;
mod error;
mod query;
mod response;
mod time;

#[cfg(all(target_arch = "wasm32", target_env = "p2"))]
#[doc(hidden)]
pub mod wasm;

pub use error::{Error, respond};
pub use query::Query;
pub use response::{json, text};
pub use time::{sleep, yield_now};

pub use bytes;
pub use http;

/// A request as a handler sees it: method, URI (full path and query), headers, and the
/// whole body. Bodies are collected before the handler runs; the servers enforce their
/// size limit first.
pub type Request = http::Request<bytes::Bytes>;

/// A response as a handler returns it.
pub type Response = http::Response<bytes::Bytes>;

/// What every handler returns. An `Err` becomes a JSON error response with its status.
pub type Result<T = Response, E = Error> = std::result::Result<T, E>;

/// Uniformly random integer in `low..=high`, from the platform's secure random source
/// (the OS natively, `wasi:random` on wasm).
pub fn random_range(low: u64, high: u64) -> u64 {
    assert!(low <= high, "random_range: low > high");
    let span = high - low;
    if span == u64::MAX {
        return random_u64();
    }
    // Rejection sampling: no modulo bias, whatever the span.
    let n = span + 1;
    let zone = u64::MAX - (u64::MAX % n) - 1;
    loop {
        let r = random_u64();
        if r <= zone {
            return low + r % n;
        }
    }
}

/// 64 random bits from the platform's secure random source.
pub fn random_u64() -> u64 {
    getrandom::u64().expect("the platform random source failed")
}

/// Turns `async fn handle(Request) -> sdk::Result` into the component's
/// `wasi:http/incoming-handler` export when compiled for `wasm32-wasip2`; elsewhere it
/// expands to nothing: natively the webserver calls the function itself, and on
/// `wasm32-wasip1` the crate's binary serves it through [`cgi::run`].
#[macro_export]
macro_rules! export {
    ($handler:path) => {
        #[cfg(all(target_arch = "wasm32", target_env = "p2"))]
        #[allow(unsafe_code)] // wit-bindgen's export glue is `extern "C"` code
        mod __sdk_export {
            struct Component;

            impl $crate::wasm::Guest for Component {
                fn handle(request: $crate::wasm::IncomingRequest, out: $crate::wasm::ResponseOutparam) {
                    $crate::wasm::serve(request, out, super::handle_for_export)
                }
            }

            $crate::wasm::wasip2::http::proxy::export!(Component with_types_in $crate::wasm::wasip2);
        }

        #[cfg(all(target_arch = "wasm32", target_env = "p2"))]
        fn handle_for_export(
            request: $crate::Request,
        ) -> impl ::core::future::Future<Output = $crate::Result> {
            $handler(request)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_range_stays_in_bounds_and_covers_them() {
        let mut seen = [false; 4];
        for _ in 0..1000 {
            let v = random_range(10, 13);
            assert!((10..=13).contains(&v), "{v} out of 10..=13");
            seen[(v - 10) as usize] = true;
        }
        assert!(
            seen.iter().all(|s| *s),
            "1000 draws missed a value: {seen:?}"
        );
        assert_eq!(random_range(7, 7), 7);
    }
}
