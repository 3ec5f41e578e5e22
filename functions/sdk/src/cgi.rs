//! A handler as a CGI program (RFC 3875): the request comes from the CGI meta-variables
//! and stdin, the response goes to stdout as header lines, a blank line and the body.
//!
//! Built for `wasm32-wasip1` this is a WASI 0.1 command served the WAGI way (CGI over
//! WASI), by the runtime or any WAGI host; built natively it runs under any CGI server.
//! Each example's `src/main.rs` is one call to [`run`] with its handler, so the handler
//! source is the same for every ABI.

use crate::{Error, Request, Response};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use std::future::Future;
use std::io::{Read, Write};
use std::process::ExitCode;

/// Runs `handler` for the one request this process was started for, and exits. Without
/// `REQUEST_METHOD` the program was not started by a CGI host: it says so on stderr and
/// exits with 2.
pub fn run<F, Fut>(handler: F) -> ExitCode
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = crate::Result>,
{
    // A variable whose name or value is not UTF-8 cannot be a header; it is left out.
    let vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let response = match read_request(&vars, std::io::stdin().lock()) {
        Ok(request) => crate::respond(block_on(handler(request))),
        Err(Invalid::NotCgi) => {
            eprintln!(
                "REQUEST_METHOD is not set: this is a CGI program, run by a CGI or WAGI host \
                 (the runtime serves it as a function)"
            );
            return ExitCode::from(2);
        }
        Err(Invalid::Request(message)) => Error::bad_request(message).into_response(),
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(&write_response(&response))
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("writing the response to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why no request could be read.
#[derive(Debug, PartialEq, Eq)]
enum Invalid {
    /// No `REQUEST_METHOD`: not started by a CGI host.
    NotCgi,
    /// The request is malformed; the message goes back in a 400.
    Request(String),
}

/// The request the CGI variables `vars` and the body on `stdin` describe, as the other
/// backends hand it to the handler: an origin-form URI (`SCRIPT_NAME`, `PATH_INFO` or
/// WAGI's undecoded `X_RAW_PATH_INFO`, `?QUERY_STRING`), the headers (`HTTP_*`,
/// `CONTENT_TYPE`, `CONTENT_LENGTH`) and the whole body. The body is `CONTENT_LENGTH` bytes, and none without it, as RFC 3875
/// §4.2 says: a script must not read past it.
fn read_request(vars: &[(String, String)], stdin: impl Read) -> Result<Request, Invalid> {
    let var = |name: &str| {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let method = var("REQUEST_METHOD").ok_or(Invalid::NotCgi)?;
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| Invalid::Request(format!("REQUEST_METHOD {method:?} is not a method")))?;
    // WAGI hosts pass the path undecoded too, which keeps an encoded `/` or `%` intact.
    let path = match var("X_RAW_PATH_INFO") {
        Some(raw) => raw.to_string(),
        None => encode_path(var("PATH_INFO").unwrap_or("")),
    };
    let mut target = encode_path(var("SCRIPT_NAME").unwrap_or("")) + &path;
    if !target.starts_with('/') {
        target.insert(0, '/');
    }
    match var("QUERY_STRING") {
        Some(query) if !query.is_empty() => {
            target.push('?');
            target.push_str(query);
        }
        _ => {}
    }
    let uri: http::Uri = target
        .parse()
        .map_err(|e| Invalid::Request(format!("request target {target:?}: {e}")))?;
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in vars {
        let header = match name.as_str() {
            "CONTENT_TYPE" => "content-type".to_string(),
            "CONTENT_LENGTH" => "content-length".to_string(),
            _ => match name.strip_prefix("HTTP_") {
                Some(rest) if !rest.is_empty() => rest.to_ascii_lowercase().replace('_', "-"),
                _ => continue,
            },
        };
        if value.is_empty() && header == "content-length" {
            continue;
        }
        let header = http::HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| Invalid::Request(format!("{name} is not a header name")))?;
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| Invalid::Request(format!("{name} is not a header value")))?;
        builder = builder.header(header, value);
    }
    let length = match var("CONTENT_LENGTH") {
        None | Some("") => 0,
        Some(n) => n.parse::<u64>().map_err(|_| {
            Invalid::Request(format!("CONTENT_LENGTH {n:?} is not a number of bytes"))
        })?,
    };
    let mut body = Vec::new();
    stdin
        .take(length)
        .read_to_end(&mut body)
        .map_err(|e| Invalid::Request(format!("reading the body from stdin: {e}")))?;
    if (body.len() as u64) < length {
        return Err(Invalid::Request(format!(
            "the body ended after {} of its CONTENT_LENGTH {length} bytes",
            body.len()
        )));
    }
    builder
        .body(body.into())
        .map_err(|e| Invalid::Request(format!("request: {e}")))
}

/// What a URI path cannot hold as it is (besides controls and non-ASCII bytes, which
/// percent-encoding always encodes). `%` is not among them: it may be one the host left
/// encoded.
const NOT_IN_PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// `path` with every byte a URI path cannot hold percent-encoded. CGI hosts may pass
/// `PATH_INFO` decoded (RFC 3875 §4.1.5).
fn encode_path(path: &str) -> String {
    utf8_percent_encode(path, NOT_IN_PATH).to_string()
}

/// The CGI response for `response`: `Status`, the headers, a blank line, the body. The
/// host frames the body, so no `Content-Length` is written.
fn write_response(response: &Response) -> Vec<u8> {
    let status = response.status();
    let mut out = Vec::with_capacity(128 + response.body().len());
    let status_line = match status.canonical_reason() {
        Some(reason) => format!("Status: {} {reason}\n", status.as_u16()),
        None => format!("Status: {}\n", status.as_u16()),
    };
    out.extend_from_slice(status_line.as_bytes());
    for (name, value) in response.headers() {
        if name == http::header::CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(response.body());
    out
}

/// Natively: a current-thread tokio runtime, for `sdk::sleep`'s timer.
#[cfg(not(target_arch = "wasm32"))]
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("building a current-thread runtime")
        .block_on(future)
}

/// On WASI 0.1: polls in place. Nothing the SDK awaits there is pending for long
/// (`sdk::sleep` blocks in `poll_oneoff`), so a future is polled again as soon as it
/// wakes itself; one that is pending without a wake-up could never finish, which is a
/// bug in the handler, and ends the request.
#[cfg(target_arch = "wasm32")]
fn block_on<F: Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context, Poll, Wake, Waker};

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        assert!(
            flag.0.swap(false, Ordering::SeqCst),
            "the handler awaited something that cannot complete under WASI 0.1"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_request_comes_from_the_variables_and_stdin() {
        let vars = vars(&[
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("REQUEST_METHOD", "POST"),
            ("SCRIPT_NAME", "/hash"),
            ("PATH_INFO", "/a b"),
            ("QUERY_STRING", "rounds=2&x=%20"),
            ("CONTENT_TYPE", "text/plain"),
            ("CONTENT_LENGTH", "3"),
            ("HTTP_HOST", "example.com:8080"),
            ("HTTP_X_FORWARDED_FOR", "10.0.0.1"),
            ("PATH", "/usr/bin"),
        ]);
        // stdin holds more than CONTENT_LENGTH: the rest is not the request's.
        let r = read_request(&vars, &b"abcdef"[..]).unwrap();
        assert_eq!(r.method(), "POST");
        assert_eq!(r.uri(), "/hash/a%20b?rounds=2&x=%20");
        assert_eq!(r.headers()["host"], "example.com:8080");
        assert_eq!(r.headers()["x-forwarded-for"], "10.0.0.1");
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(r.headers()["content-length"], "3");
        assert_eq!(r.headers().len(), 4, "{:?}", r.headers());
        assert_eq!(&r.body()[..], b"abc");
        assert_eq!(crate::Query::of(&r).raw("rounds"), Some("2"));
    }

    #[test]
    fn a_decoded_path_is_encoded_where_a_uri_path_needs_it() {
        assert_eq!(
            encode_path("/a b\"#<>?[\\]^`{|}\u{7f}é/%41-._~!$&'()*+,;=:@"),
            "/a%20b%22%23%3C%3E%3F%5B%5C%5D%5E%60%7B%7C%7D%7F%C3%A9/%41-._~!$&'()*+,;=:@"
        );
    }

    #[test]
    fn a_wagi_hosts_raw_path_is_preferred_to_the_decoded_one() {
        let vars = vars(&[
            ("REQUEST_METHOD", "GET"),
            ("SCRIPT_NAME", "/hash"),
            ("PATH_INFO", "/a/b c"),
            ("X_RAW_PATH_INFO", "/a%2Fb%20c"),
        ]);
        let r = read_request(&vars, &b""[..]).unwrap();
        assert_eq!(r.uri(), "/hash/a%2Fb%20c");
    }

    #[test]
    fn without_content_length_there_is_no_body_and_stdin_is_not_read() {
        struct Unreadable;
        impl Read for Unreadable {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                panic!("stdin was read")
            }
        }
        let r = read_request(&vars(&[("REQUEST_METHOD", "GET")]), Unreadable).unwrap();
        assert_eq!(r.uri(), "/");
        assert!(r.body().is_empty());
    }

    #[test]
    fn a_malformed_request_says_what_is_wrong() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], ""),
            (&[("REQUEST_METHOD", "G T")], "REQUEST_METHOD \"G T\""),
            (
                &[("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "lots")],
                "CONTENT_LENGTH \"lots\"",
            ),
            (
                &[("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "10")],
                "ended after 4 of its CONTENT_LENGTH 10",
            ),
            (
                &[("REQUEST_METHOD", "GET"), ("HTTP_X_A", "bad\u{7f}value")],
                "HTTP_X_A is not a header value",
            ),
        ];
        for (pairs, want) in cases {
            let got = read_request(&vars(pairs), &b"body"[..]).unwrap_err();
            match got {
                Invalid::NotCgi => assert!(want.is_empty(), "{pairs:?}: not CGI"),
                Invalid::Request(message) => {
                    assert!(message.contains(want), "{pairs:?}: {message}")
                }
            }
        }
    }

    #[test]
    fn the_response_is_status_headers_blank_line_body() {
        let mut r = crate::json(404, &serde_json::json!({"error": "no"}));
        r.headers_mut()
            .insert("content-length", http::HeaderValue::from_static("99"));
        r.headers_mut()
            .append("x-two", http::HeaderValue::from_static("1"));
        r.headers_mut()
            .append("x-two", http::HeaderValue::from_static("2"));
        let out = write_response(&r);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Status: 404 Not Found\ncontent-type: application/json\nx-two: 1\nx-two: 2\n\n{\"error\":\"no\"}"
        );
        let mut r = crate::text(599, "odd");
        *r.status_mut() = http::StatusCode::from_u16(599).unwrap();
        assert!(write_response(&r).starts_with(b"Status: 599\ncontent-type"));
    }
}
