//! What every example function must answer, as data: one list of cases, checked against
//! whichever side serves them (webserver, nginx in front of it, the runtime).

use anyhow::{Context, ensure};
use serde_json::Value;

/// One request and what its answer must be.
#[derive(Debug, Clone)]
pub struct Case {
    pub function: &'static str,
    pub method: &'static str,
    /// Path and query, e.g. `/hash/?rounds=1`.
    pub target: &'static str,
    pub body: &'static [u8],
    pub status: u16,
    /// Checks the JSON body; `Err` says what is wrong.
    pub check: fn(&Value) -> Result<(), String>,
}

fn field_eq(v: &Value, name: &str, want: Value) -> Result<(), String> {
    if v[name] == want {
        Ok(())
    } else {
        Err(format!("{name} should be {want}, body is {v}"))
    }
}

fn error_mentions(v: &Value, what: &str) -> Result<(), String> {
    match v["error"].as_str() {
        Some(e) if e.contains(what) => Ok(()),
        _ => Err(format!(
            "expected an error mentioning {what:?}, body is {v}"
        )),
    }
}

/// The checksum `memory` answers for `mib` MiB: one byte per 4 KiB page, `i % 251 + 1`.
pub fn memory_checksum(mib: u64) -> u64 {
    (0..mib * 256).map(|i| i % 251 + 1).sum()
}

/// Every case, covering each example function's success and its input errors.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            function: "hello",
            method: "GET",
            target: "/hello/",
            body: b"",
            status: 200,
            check: |v| field_eq(v, "message", "Hello World!".into()),
        },
        Case {
            function: "hello",
            method: "GET",
            target: "/hello",
            body: b"",
            status: 200,
            check: |v| {
                if *v == serde_json::json!({"message": "Hello World!"}) {
                    Ok(())
                } else {
                    Err(format!("{v}"))
                }
            },
        },
        Case {
            function: "sleep",
            method: "GET",
            target: "/sleep/?min_ms=20&max_ms=40",
            body: b"",
            status: 200,
            check: |v| match v["slept_ms"].as_u64() {
                Some(ms) if (20..=40).contains(&ms) => Ok(()),
                _ => Err(format!("slept_ms should be in 20..=40, body is {v}")),
            },
        },
        Case {
            function: "sleep",
            method: "GET",
            target: "/sleep/?min_ms=50&max_ms=10",
            body: b"",
            status: 400,
            check: |v| error_mentions(v, "min_ms"),
        },
        Case {
            function: "hash",
            method: "POST",
            target: "/hash/?rounds=1",
            body: b"abc",
            status: 200,
            // FIPS 180-2 SHA-256 test vector.
            check: |v| {
                field_eq(
                    v,
                    "sha256",
                    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
                )
            },
        },
        Case {
            function: "hash",
            method: "GET",
            target: "/hash/?rounds=500&size=4096",
            body: b"",
            status: 200,
            check: |v| {
                field_eq(v, "bytes", 4096.into()).and_then(|()| field_eq(v, "rounds", 500.into()))
            },
        },
        Case {
            function: "hash",
            method: "GET",
            target: "/hash/?rounds=zero",
            body: b"",
            status: 400,
            check: |v| error_mentions(v, "rounds"),
        },
        Case {
            function: "memory",
            method: "GET",
            target: "/memory/?mib=8",
            body: b"",
            status: 200,
            check: |v| field_eq(v, "checksum", memory_checksum(8).into()),
        },
        // The largest size both sides serve, and one past it: the same 400 on both,
        // where the native side used to allocate what the sandbox never could.
        Case {
            function: "memory",
            method: "GET",
            target: "/memory/?mib=120",
            body: b"",
            status: 200,
            check: |v| field_eq(v, "checksum", memory_checksum(120).into()),
        },
        Case {
            function: "memory",
            method: "GET",
            target: "/memory/?mib=121",
            body: b"",
            status: 400,
            check: |v| error_mentions(v, "mib"),
        },
        Case {
            function: "memory",
            method: "GET",
            target: "/memory/?mib=100000",
            body: b"",
            status: 400,
            check: |v| error_mentions(v, "mib"),
        },
    ]
}

/// A request to a function that does not exist must be a JSON 404.
pub const UNKNOWN_TARGET: &str = "/no-such-function/";

/// Sends every case to `base` (e.g. `http://127.0.0.1:8000`) and checks each answer,
/// then checks the JSON 404 for an unknown function. The error names the failing case.
pub async fn check_all(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for case in cases() {
        let url = format!("{base}{}", case.target);
        let method = reqwest::Method::from_bytes(case.method.as_bytes())?;
        let response = client
            .request(method, &url)
            .body(case.body)
            .send()
            .await
            .with_context(|| format!("{} {url}", case.method))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = response.text().await?;
        ensure!(
            status == case.status,
            "{} {url}: status {status}, want {}; body {text}",
            case.method,
            case.status
        );
        ensure!(
            content_type.starts_with("application/json"),
            "{} {url}: content-type {content_type:?}",
            case.method
        );
        let json: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} {url}: body {text:?}", case.method))?;
        (case.check)(&json).map_err(|e| anyhow::anyhow!("{} {url}: {e}", case.method))?;
    }
    let url = format!("{base}{UNKNOWN_TARGET}");
    let response = client.get(&url).send().await?;
    ensure!(
        response.status() == 404,
        "GET {url}: status {}, want 404",
        response.status()
    );
    let json: Value = response
        .json()
        .await
        .with_context(|| format!("GET {url}: not JSON"))?;
    ensure!(
        json["error"].is_string(),
        "GET {url}: no error field in {json}"
    );
    Ok(())
}

/// A client that never goes through a proxy from the environment: tests talk to loopback.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("building an HTTP client")
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_checksum_matches_the_functions_definition() {
        // 256 pages: 1..=251 then 1..=5.
        assert_eq!(
            super::memory_checksum(1),
            (1..=251).sum::<u64>() + (1..=5).sum::<u64>()
        );
    }
}
