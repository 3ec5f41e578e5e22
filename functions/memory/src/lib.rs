//! Memory-bound work: allocates `mib` MiB, writes every page so the memory is really
//! resident (not just reserved), and answers with a checksum read back from it, so the
//! work cannot be optimised away.
//!
//! Query: `mib` (default 16, 0 to 120: what fits in the runtime's default 128 MiB memory
//! limit beside the guest's stack and data, so both sides answer 400 to the same inputs).

use sdk::{Query, Request, Result};

pub const DEFAULT_MIB: usize = 16;
pub const MAX_MIB: usize = 120;
const PAGE: usize = 4096;

pub async fn handle(request: Request) -> Result {
    let mib = Query::of(&request).get_in("mib", DEFAULT_MIB, 0..=MAX_MIB)?;
    let checksum = touch(mib << 20);
    Ok(sdk::json(
        200,
        &serde_json::json!({ "mib": mib, "checksum": checksum }),
    ))
}

sdk::export!(handle);

/// Allocates `bytes`, writes one byte per page, reads them back and sums them.
pub fn touch(bytes: usize) -> u64 {
    let mut buf = vec![0u8; bytes];
    for (i, page) in buf.chunks_mut(PAGE).enumerate() {
        page[0] = (i % 251) as u8 + 1;
    }
    std::hint::black_box(&mut buf);
    buf.chunks(PAGE).map(|page| u64::from(page[0])).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str) -> Request {
        sdk::http::Request::builder()
            .uri(uri)
            .body(Default::default())
            .unwrap()
    }

    #[test]
    fn checksum_counts_every_page() {
        assert_eq!(touch(0), 0);
        assert_eq!(touch(PAGE), 1);
        // 256 pages: 1..=251 then 1..=5.
        assert_eq!(
            touch(256 * PAGE),
            (1..=251).sum::<u64>() + (1..=5).sum::<u64>()
        );
    }

    #[tokio::test]
    async fn answers_with_size_and_rejects_bad_sizes() {
        let r = handle(req("/memory/?mib=1")).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(v["mib"], 1);
        assert_eq!(v["checksum"], touch(1 << 20));
        for uri in ["/memory/?mib=121", "/memory/?mib=-3", "/memory/?mib=lots"] {
            assert_eq!(handle(req(uri)).await.unwrap_err().status(), 400, "{uri}");
        }
    }
}
