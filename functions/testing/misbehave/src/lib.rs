//! A test program that misbehaves on request, so tests can show the host contains it.
//! The second path segment picks the behaviour: `/misbehave/trap`, `/misbehave/loop`, ...

use sdk::{Query, Request, Result};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts calls in this instance. A fresh instance per request always answers 1; a
/// long-running server counts up.
static CALLS: AtomicU64 = AtomicU64::new(0);

pub async fn handle(request: Request) -> Result {
    let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    let path = request.uri().path().to_string();
    let action = path
        .trim_start_matches('/')
        .split('/')
        .nth(1)
        .unwrap_or_default();
    let query = Query::of(&request);
    match action {
        "counter" => Ok(sdk::json(200, &serde_json::json!({ "calls": calls }))),
        "trap" => panic!("misbehave: asked to trap"),
        "loop" => {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "oom" => {
            // Grow until the allocator fails: the host's memory cap must stop it.
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut chunk = vec![0u8; 1 << 20];
                chunk[0] = 1;
                hoard.push(std::hint::black_box(chunk));
            }
        }
        "stack" => Ok(sdk::json(
            200,
            &serde_json::json!({ "depth": recurse(query.get_in("n", u64::MAX, 0..=u64::MAX)?) }),
        )),
        "sleep" => {
            let ms = query.get_in("ms", 1000, 0..=3_600_000)?;
            sdk::sleep(std::time::Duration::from_millis(ms)).await;
            Ok(sdk::json(200, &serde_json::json!({ "slept_ms": ms })))
        }
        "env" => {
            let vars: Vec<(String, String)> = std::env::vars().collect();
            Ok(sdk::json(200, &serde_json::json!({ "env": vars })))
        }
        "file" => {
            let path = query.raw("path").unwrap_or("/etc/passwd").to_string();
            let result = std::fs::read_to_string(&path)
                .map(|s| s.len())
                .map_err(|e| e.to_string());
            Ok(sdk::json(
                200,
                &serde_json::json!({ "path": path, "read": result.is_ok(), "error": result.err() }),
            ))
        }
        "fetch" => {
            let url = query.raw("url").unwrap_or_default().to_string();
            // `times` fetches in a row (for the per-invocation cap); the last one answers.
            let times = query.get_in("times", 1u32, 1..=10_000)?;
            // `post_kib` > 0 POSTs that much instead of a GET.
            let post_kib = query.get_in("post_kib", 0usize, 0..=65536)?;
            let mut result = Err(String::new());
            let mut ok = 0;
            for _ in 0..times {
                result = fetch(&url, post_kib).await;
                ok += u32::from(result.is_ok());
            }
            Ok(sdk::json(
                200,
                &serde_json::json!({ "url": url, "status": result.as_ref().ok(), "error": result.err(), "ok": ok }),
            ))
        }
        "big" => {
            // A body far larger than one write: the host must stream it while the guest
            // is still writing.
            let kib = query.get_in("kib", 1024usize, 0..=65536)?;
            let body: String = (0..kib * 1024)
                .map(|i| (b'a' + (i % 26) as u8) as char)
                .collect();
            Ok(sdk::text(200, body))
        }
        "request" => {
            // What the handler was given: URI, host, framing headers and body.
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            Ok(sdk::json(
                200,
                &serde_json::json!({
                    "method": request.method().as_str(),
                    "uri": request.uri().to_string(),
                    "host": header("host"),
                    "content_length": header("content-length"),
                    "body": String::from_utf8_lossy(request.body()),
                }),
            ))
        }
        "print" => {
            println!("misbehave says hello on stdout");
            eprintln!("misbehave says hello on stderr");
            Ok(sdk::json(200, &serde_json::json!({ "printed": true })))
        }
        // For the log budget: `lines` numbered lines of `len` bytes each on stdout.
        "flood" => {
            let lines = query.get_in("lines", 1000usize, 0..=1_000_000)?;
            let len = query.get_in("len", 100usize, 0..=1 << 20)?;
            for i in 0..lines {
                let tag = format!("flood-line-{i} ");
                println!("{tag}{}", "x".repeat(len.saturating_sub(tag.len())));
            }
            Ok(sdk::json(200, &serde_json::json!({ "printed": lines })))
        }
        "residue" => residue(query.get_in("pages", 16usize, 1..=1024)?),
        // wasi:random's get-random-bytes asked for `bytes` at once.
        "random" => {
            let bytes = query.get_in("bytes", 16u64, 0..=1 << 30)?;
            Ok(sdk::json(
                200,
                &serde_json::json!({ "got": random_bytes(bytes) }),
            ))
        }
        other => Err(sdk::Error::new(404, format!("no behaviour {other:?}"))),
    }
}

/// Grows linear memory by `pages` fresh 64 KiB pages, counts the bytes in them that are
/// not zero (whatever an earlier instance in the same slot left behind), then fills them
/// with a pattern for the next instance to find. A sound host answers 0 every time.
#[cfg(target_arch = "wasm32")]
fn residue(pages: usize) -> Result {
    let first_page = core::arch::wasm32::memory_grow(0, pages);
    if first_page == usize::MAX {
        return Err(sdk::Error::new(500, "memory.grow refused"));
    }
    // SAFETY: `memory.grow` just added these pages to linear memory, so the range is in
    // bounds, and nothing else (the allocator included) knows of them or uses them.
    #[expect(
        unsafe_code,
        reason = "reading pages memory.grow just added, as the probe must"
    )]
    let bytes =
        unsafe { std::slice::from_raw_parts_mut((first_page << 16) as *mut u8, pages << 16) };
    let nonzero = bytes.iter().filter(|b| **b != 0).count();
    bytes.fill(0xA5);
    Ok(sdk::json(
        200,
        &serde_json::json!({ "first_page": first_page, "pages": pages, "nonzero": nonzero }),
    ))
}

#[cfg(not(target_arch = "wasm32"))]
fn residue(_pages: usize) -> Result {
    Err(sdk::Error::new(501, "residue probes wasm linear memory"))
}

#[inline(never)]
fn recurse(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    // A frame with some weight, so the stack runs out in reasonable time.
    let pad = std::hint::black_box([n; 32]);
    1 + recurse(pad[3] - 1)
}

#[cfg(target_arch = "wasm32")]
async fn fetch(url: &str, post_kib: usize) -> std::result::Result<u16, String> {
    let request = if post_kib == 0 {
        wstd::http::Request::get(url).body(wstd::http::Body::empty())
    } else {
        wstd::http::Request::post(url).body(wstd::http::Body::from(vec![b'x'; post_kib << 10]))
    }
    .map_err(|e| e.to_string())?;
    let response = wstd::http::Client::new()
        .send(request)
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(response.status().as_u16())
}

#[cfg(not(target_arch = "wasm32"))]
async fn fetch(_url: &str, _post_kib: usize) -> std::result::Result<u16, String> {
    Err("outbound HTTP is only exercised in the wasm build".into())
}

sdk::export!(handle);

#[cfg(target_arch = "wasm32")]
fn random_bytes(len: u64) -> usize {
    wasip2::random::random::get_random_bytes(len).len()
}

#[cfg(not(target_arch = "wasm32"))]
fn random_bytes(len: u64) -> usize {
    len as usize
}
