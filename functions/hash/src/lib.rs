//! CPU-bound work: SHA-256, chained over `rounds` rounds, each round hashing the previous
//! digest followed by the input. The input is the request body, or `size` zero bytes when
//! the body is empty. Cost grows with `rounds × input length`, and nothing waits.
//!
//! Query: `rounds` (default 1000, 1 to 10 000 000), `size` (default 1024, at most 16 MiB;
//! used only when the body is empty).

use sdk::{Query, Request, Result};
use sha2::digest::Output;
use sha2::{Digest, Sha256};

pub const DEFAULT_ROUNDS: u64 = 1000;
pub const DEFAULT_SIZE: usize = 1024;

pub async fn handle(request: Request) -> Result {
    let query = Query::of(&request);
    let rounds = query.get_in("rounds", DEFAULT_ROUNDS, 1..=10_000_000)?;
    let generated;
    let input: &[u8] = if request.body().is_empty() {
        generated = vec![0u8; query.get_in("size", DEFAULT_SIZE, 0..=16 << 20)?];
        &generated
    } else {
        request.body()
    };
    let digest = chained_sha256_yielding(input, rounds).await;
    Ok(sdk::json(
        200,
        &serde_json::json!({ "rounds": rounds, "bytes": input.len(), "sha256": format!("{digest:x}") }),
    ))
}

sdk::export!(handle);

/// `d0 = sha256(input)`, `dn = sha256(dn-1 ‖ input)`.
pub fn chained_sha256(input: &[u8], rounds: u64) -> Output<Sha256> {
    let mut digest = Sha256::digest(input);
    for _ in 1..rounds {
        let mut h = Sha256::new();
        h.update(digest);
        h.update(input);
        digest = h.finalize();
    }
    digest
}

/// Hashed between two yields: tens of microseconds of work.
const SLICE: usize = 64 << 10;

/// [`chained_sha256`], yielding after every [`SLICE`] bytes hashed: natively the other
/// requests on this worker run in between, and the deadline can end it.
async fn chained_sha256_yielding(input: &[u8], rounds: u64) -> Output<Sha256> {
    let mut digest: Option<Output<Sha256>> = None;
    let mut since_yield = 0;
    for _ in 0..rounds {
        let mut h = Sha256::new();
        if let Some(previous) = digest {
            h.update(previous);
        }
        since_yield += 32;
        for chunk in input.chunks(SLICE) {
            h.update(chunk);
            since_yield += chunk.len();
            if since_yield >= SLICE {
                since_yield = 0;
                sdk::yield_now().await;
            }
        }
        digest = Some(h.finalize());
    }
    digest.expect("at least one round")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, body: &'static [u8]) -> Request {
        sdk::http::Request::builder()
            .uri(uri)
            .body(body.into())
            .unwrap()
    }

    #[test]
    fn one_round_is_plain_sha256() {
        // FIPS 180-2 test vector.
        assert_eq!(
            format!("{:x}", chained_sha256(b"abc", 1)),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(chained_sha256(b"abc", 2), chained_sha256(b"abc", 1));
    }

    #[tokio::test]
    async fn hashes_body_or_generated_bytes() {
        let r = handle(req("/hash/?rounds=1", b"abc")).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(v["bytes"], 3);
        assert_eq!(
            v["sha256"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );

        let r = handle(req("/hash/?rounds=3&size=10", b"")).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(v["bytes"], 10);
        assert_eq!(v["rounds"], 3);
        assert_eq!(v["sha256"], format!("{:x}", chained_sha256(&[0; 10], 3)));
        // 1 MiB of input: sixteen slices a round, a yield after each.
        let r = handle(req("/hash/?rounds=5&size=1048576", b""))
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(
            v["sha256"],
            format!("{:x}", chained_sha256(&[0; 1 << 20], 5))
        );
    }

    #[tokio::test]
    async fn bad_query_is_400() {
        for uri in [
            "/hash/?rounds=0",
            "/hash/?rounds=many",
            "/hash/?size=99999999999",
        ] {
            assert_eq!(
                handle(req(uri, b"")).await.unwrap_err().status(),
                400,
                "{uri}"
            );
        }
    }
}
