//! The WAGI executor: WASI 0.1 core modules served the WAGI way (CGI over WASI): the request goes in as
//! CGI/1.1 environment variables (RFC 3875) and the body on stdin, `_start` runs in a
//! fresh instance, and what the module wrote to stdout is read as a CGI response:
//! header lines (`Content-Type`, `Status`, `Location`, any other), a blank line, the
//! body. stderr goes to the log as a component's does. The sandbox is the same: no
//! preopened directories, no sockets, no host environment beyond the CGI variables and
//! the function's `[env]`.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use wasmtime::{Instance, InstancePre, Store};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;

use super::admit::Ticket;
use super::instance::{in_fresh_instance, yield_at_every_tick};
use super::{Body, Failure};
use crate::function::Function;
use crate::host::{ChargedOutput, LogStream, MemoryLimiter, WagiHost};
use crate::metrics::InvocationMetrics;

/// The most a module may write to stdout, headers and body together (and at most its
/// `memory_mib`): host memory, charged to the memory budget as it fills. A module that
/// writes more gets a failed write, and its client a 502.
pub const MAX_OUTPUT_BYTES: usize = 16 << 20;

/// Runs `function`'s module for `request` and turns its output into the answer.
pub(super) async fn serve(
    function: &Function,
    metrics: &InvocationMetrics,
    pre: &InstancePre<WagiHost>,
    request: Request<Full<Bytes>>,
    mut ticket: Ticket,
    request_id: u64,
) -> Result<Response<Body>, Failure> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let output_limit = MAX_OUTPUT_BYTES.min(function.limits.memory.bytes_usize());
    let limiter = MemoryLimiter::new(function.limits.memory.bytes_usize(), ticket.take_memory());
    let stdout = ChargedOutput::new(output_limit, limiter.charge());
    let mut wasi = WasiCtx::builder();
    let cgi = cgi_env(function.name(), &parts, body.len());
    if let Some(why) = unpassable_path(&cgi) {
        return Err(Failure::NotAccepted(why));
    }
    wasi.envs(&environment(&function.env, cgi));
    wasi.arg(&**function.name());
    wasi.max_random_size(crate::host::MAX_RANDOM_BYTES);
    wasi.stdin(MemoryInputPipe::new(body));
    wasi.stdout(stdout.clone());
    let [_, stderr] = LogStream::pair(
        function.name(),
        &function.version,
        request_id,
        function.limits.log_budget_bytes,
    );
    wasi.stderr(stderr);
    let host = WagiHost::new(wasi.build_p1(), limiter);
    let mut store = Store::new(pre.module().engine(), host);
    store.limiter(|host| host.limiter());
    yield_at_every_tick(&mut store);
    let exit = run(function, metrics, pre, store, ticket).await;
    if stdout.refused() {
        return Err(Failure::MemoryBudget(function.limits.memory));
    }
    let exit = exit?;
    let output = stdout.contents();
    if output.is_empty() && exit != 0 {
        return Err(Failure::Exit(exit));
    }
    // The pipe takes writes up to its limit and refuses the rest: a full pipe is a
    // response cut short, whatever the module did about the failed write.
    if output.len() >= output_limit {
        return Err(Failure::BadCgi(format!(
            "the response reached the {output_limit}-byte limit on stdout and was cut short"
        )));
    }
    if exit != 0 {
        tracing::warn!(function = %function.name(), request_id, exit, "module exited non-zero after writing a response");
    }
    let (status, headers, body) = parse_response(&output).map_err(Failure::BadCgi)?;
    let mut response = Response::new(
        Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// Runs the module's `_start` to its end in a fresh instance: its exit code (0 when
/// `_start` returned), or why it failed.
async fn run(
    function: &Function,
    metrics: &InvocationMetrics,
    pre: &InstancePre<WagiHost>,
    store: Store<WagiHost>,
    ticket: Ticket,
) -> Result<i32, Failure> {
    let instantiate = async |store: &mut Store<WagiHost>| pre.instantiate_async(store).await;
    let call = async |store: &mut Store<WagiHost>, instance: Instance| {
        let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
        match start.call_async(store, ()).await {
            Ok(()) => Ok(0),
            Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => Ok(exit.0),
                None => Err(e),
            },
        }
    };
    in_fresh_instance(
        function,
        metrics,
        store,
        ticket,
        WagiHost::usage,
        instantiate,
        call,
    )
    .await
}

/// A module's whole environment, each name once: the function's `[env]` and the
/// request's variables. The request's meta-variables (`REQUEST_METHOD`, ...) describe
/// the request and win over `[env]`; a variable from a header (`HTTP_*`) never replaces
/// one that `[env]` sets, so a client cannot change a function's configuration.
fn environment(
    config: &[(String, String)],
    request: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let configured = |name: &str| config.iter().any(|(n, _)| n == name);
    let request: Vec<_> = request
        .into_iter()
        .filter(|(name, _)| !(name.starts_with("HTTP_") && configured(name)))
        .collect();
    let mut env: Vec<_> = config
        .iter()
        .filter(|(name, _)| !request.iter().any(|(n, _)| n == name))
        .cloned()
        .collect();
    env.extend(request);
    env
}

/// The CGI/1.1 meta-variables for a request to function `name` (served at `/{name}/...`),
/// whose body is `content_length` bytes.
pub fn cgi_env(
    name: &str,
    parts: &http::request::Parts,
    content_length: usize,
) -> Vec<(String, String)> {
    let script = format!("/{name}");
    let path = parts.uri.path();
    let raw_path_info = match path.strip_prefix(&script).unwrap_or(path) {
        "" => "/",
        rest => rest,
    };
    // As RFC 3875 and WAGI have it: PATH_INFO decoded, the raw form beside it (WAGI's
    // X_RAW_PATH_INFO), where an encoded `/` or `%` stays what it was.
    let path_info = percent_encoding::percent_decode_str(raw_path_info)
        .decode_utf8_lossy()
        .into_owned();
    let query = parts.uri.query().unwrap_or("");
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(parts.uri.host())
        .unwrap_or("localhost");
    let (server_name, server_port) = match host.rsplit_once(':') {
        // `name:port`, or `[v6]:port`; a bare v6 literal has colons but no port.
        Some((name, port))
            if port.parse::<u16>().is_ok() && (!name.contains(':') || name.ends_with(']')) =>
        {
            (name.to_string(), port.to_string())
        }
        _ => (host.to_string(), "80".to_string()),
    };
    let mut env = vec![
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        (
            "SERVER_SOFTWARE".into(),
            format!("serverless-vs-server-runtime/{}", env!("CARGO_PKG_VERSION")),
        ),
        ("SERVER_PROTOCOL".into(), format!("{:?}", parts.version)),
        ("SERVER_NAME".into(), server_name),
        ("SERVER_PORT".into(), server_port),
        ("REQUEST_METHOD".into(), parts.method.to_string()),
        (
            "X_FULL_URL".into(),
            format!(
                "http://{host}{path}{}{query}",
                if query.is_empty() { "" } else { "?" }
            ),
        ),
        ("X_MATCHED_ROUTE".into(), format!("{script}/...")),
        ("SCRIPT_NAME".into(), script),
        ("PATH_TRANSLATED".into(), path_info.clone()),
        ("PATH_INFO".into(), path_info),
        ("X_RAW_PATH_INFO".into(), raw_path_info.to_string()),
        ("QUERY_STRING".into(), query.to_string()),
        ("CONTENT_LENGTH".into(), content_length.to_string()),
    ];
    if let Some(service_ops::RemoteAddr(peer)) = parts.extensions.get() {
        let ip = peer.ip().to_canonical().to_string();
        env.push(("REMOTE_ADDR".into(), ip.clone()));
        // No reverse lookup: RFC 3875 lets REMOTE_HOST be the address.
        env.push(("REMOTE_HOST".into(), ip));
    }
    if let Some(kind) = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        env.push(("CONTENT_TYPE".into(), kind.to_string()));
    }
    for (name, value) in &parts.headers {
        // `Proxy` would become HTTP_PROXY, which HTTP clients read as their proxy
        // setting ("httpoxy"): a request must never set it. A name with `_` is left
        // out as nginx and Apache leave it out: `X_Forwarded_For` would become the same
        // HTTP_X_FORWARDED_FOR a proxy sets from `X-Forwarded-For`, and could spoof it.
        if name == http::header::CONTENT_TYPE
            || name == http::header::CONTENT_LENGTH
            || name.as_str() == "proxy"
            || name.as_str().contains('_')
        {
            continue;
        }
        // A value that is not text cannot be an environment variable; it is left out.
        let Ok(value) = value.to_str() else { continue };
        let var = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        match env.iter_mut().find(|(k, _)| *k == var) {
            // A header sent twice: one variable, its values joined as HTTP does.
            Some((_, existing)) => {
                existing.push_str(", ");
                existing.push_str(value);
            }
            None => env.push((var, value.to_string())),
        }
    }
    env
}

/// Why the decoded PATH_INFO in `env` cannot be handed to a module, if it cannot: a NUL
/// ends a C string early, and CR or LF would let a request write lines into whatever the
/// module puts its path in (its response headers, a log).
fn unpassable_path(env: &[(String, String)]) -> Option<String> {
    let (_, path) = env.iter().find(|(name, _)| name == "PATH_INFO")?;
    path.contains(['\0', '\r', '\n']).then(|| {
        "the decoded path has a NUL, CR or LF character, which a CGI module cannot be given"
            .to_string()
    })
}

/// A CGI response: header lines, a blank line, the body. `Status: NNN reason` sets the
/// status; `Location` alone means 302; a document needs `Content-Type`. The error says
/// what is wrong, for the 502 the client gets.
pub fn parse_response(output: &Bytes) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    if output.is_empty() {
        return Err("the module wrote nothing to stdout".into());
    }
    // httparse reads header lines as HTTP/1 does (either line ending, up to the first
    // blank line) and stops there, so a large body is not searched.
    let mut lines = [httparse::EMPTY_HEADER; MAX_CGI_HEADERS];
    const NO_BLANK_LINE: &str =
        "no blank line ends the headers (a CGI response is headers, a blank line, then the body)";
    let (head_len, lines) = match httparse::parse_headers(output, &mut lines) {
        Ok(httparse::Status::Complete(parsed)) => parsed,
        Ok(httparse::Status::Partial) => return Err(NO_BLANK_LINE.into()),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(format!("more than {MAX_CGI_HEADERS} header lines"));
        }
        // Most often a module that wrote its body alone: say that, not what the parser
        // tripped on.
        Err(_) if !has_blank_line(output) => return Err(NO_BLANK_LINE.into()),
        Err(e) => return Err(format!("the headers are not NAME: VALUE lines ({e})")),
    };
    let mut status = None;
    let mut headers = HeaderMap::new();
    for line in lines.iter() {
        let value = std::str::from_utf8(line.value)
            .map_err(|_| format!("the value of {} is not UTF-8", truncate(line.name)))?
            .trim();
        if line.name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or_default();
            let code = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| format!("Status {:?} is not a status code", truncate(value)))?;
            // 1xx are interim answers (and 101 switches protocols): a CGI response is
            // the final one.
            if code.is_informational() {
                return Err(format!(
                    "Status {} is informational; a CGI response must be final (200 and up)",
                    code.as_u16()
                ));
            }
            status = Some(code);
            continue;
        }
        let header = HeaderName::from_bytes(line.name.as_bytes())
            .map_err(|_| format!("{:?} is not a header name", truncate(line.name)))?;
        // The runtime frames the body itself.
        if matches!(
            header.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            continue;
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("the value of {header} is not a header value"))?;
        headers.append(header, value);
    }
    let status = match status {
        Some(status) => status,
        None if headers.contains_key(http::header::LOCATION) => StatusCode::FOUND,
        None if headers.contains_key(http::header::CONTENT_TYPE) => StatusCode::OK,
        None => return Err("no Content-Type, Location or Status header".into()),
    };
    // The body is a view of the output, not a copy of it.
    Ok((status, headers, output.slice(head_len..)))
}

/// Whether `output` has a blank line anywhere (read only when its head does not parse).
fn has_blank_line(output: &[u8]) -> bool {
    output.windows(2).any(|w| w == b"\n\n") || output.windows(4).any(|w| w == b"\r\n\r\n")
}

/// Header lines a CGI response may have: more than any real response sends, few enough
/// to parse on the stack.
const MAX_CGI_HEADERS: usize = 64;

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(80) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(output: &[u8]) -> Result<(StatusCode, HeaderMap, Bytes), String> {
        parse_response(&Bytes::copy_from_slice(output))
    }

    #[test]
    fn the_first_blank_line_of_either_kind_ends_the_headers() {
        let (_, _, body) = parse(b"Content-Type: a/b\n\nx\r\n\r\ny").unwrap();
        assert_eq!(&body[..], b"x\r\n\r\ny");
        let (_, _, body) = parse(b"Content-Type: a/b\r\n\r\nx\n\ny").unwrap();
        assert_eq!(&body[..], b"x\n\ny");
    }

    #[test]
    fn a_response_with_too_many_header_lines_is_refused() {
        let mut output = "Content-Type: a/b\n".repeat(MAX_CGI_HEADERS);
        output.push_str("\nbody");
        assert!(parse(output.as_bytes()).is_ok());
        let output = format!("X-A: 1\n{output}");
        let err = parse(output.as_bytes()).unwrap_err();
        assert!(err.contains("more than 64 header lines"), "{err}");
    }

    #[test]
    fn cgi_responses_parse_and_bad_ones_say_why() {
        let (status, headers, body) =
            parse(b"Content-Type: text/plain\r\nX-A: 1\r\n\r\nhello\n").unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello\n"[..]));
        assert_eq!(headers["x-a"], "1");
        let (status, _, _) =
            parse(b"Status: 418 I'm a teapot\nContent-Type: text/plain\n\n").unwrap();
        assert_eq!(status, 418);
        let (status, headers, _) = parse(b"Location: /elsewhere\n\n").unwrap();
        assert_eq!(status, StatusCode::FOUND);
        assert_eq!(headers["location"], "/elsewhere");
        let (_, headers, _) = parse(b"Content-Type: a/b\nContent-Length: 999\n\nxy").unwrap();
        assert!(headers.get("content-length").is_none());
        for (bad, why) in [
            (&b""[..], "wrote nothing"),
            (b"hello world", "no blank line"),
            (b"Content-Type text/plain\n\n", "are not NAME: VALUE lines"),
            (
                b"Bad Name: 1\nContent-Type: a/b\n\n",
                "are not NAME: VALUE lines",
            ),
            (b"X-A: \xff\nContent-Type: a/b\n\n", "is not UTF-8"),
            (b"Status: abc\n\n", "is not a status code"),
            (b"Status: 99\n\n", "is not a status code"),
            (b"X-Only: 1\n\n", "no Content-Type"),
            // Interim statuses cannot be a CGI response.
            (b"Status: 101 Switching Protocols\n\n", "is informational"),
            (b"Status: 100\nContent-Type: a/b\n\n", "is informational"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        // 30,000 header lines: refused with a reason (the client gets 502), no panic.
        let mut many = String::new();
        for i in 0..30_000 {
            many.push_str(&format!("X-H{i}: v\n"));
        }
        many.push_str("Content-Type: a/b\n\nbody");
        let err = parse(many.as_bytes()).unwrap_err();
        assert!(err.contains("more than 64 header lines"), "{err}");
    }

    #[test]
    fn a_header_with_an_underscore_cannot_pose_as_a_proxy_header() {
        let request = Request::get("/f/")
            .header("X_Forwarded_For", "evil")
            .header("x-real", "fine")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let env: std::collections::HashMap<_, _> = cgi_env("f", &parts, 0).into_iter().collect();
        assert!(!env.contains_key("HTTP_X_FORWARDED_FOR"), "{env:?}");
        assert_eq!(env["HTTP_X_REAL"], "fine");
    }

    #[test]
    fn a_path_with_nul_cr_or_lf_is_not_passed_on() {
        for (path, refused) in [
            ("/f/a%00b", true),
            ("/f/a%0d%0ab", true),
            ("/f/a%0ab", true),
            ("/f/a%20b", false),
            ("/f/a%2Fb", false),
        ] {
            let request = Request::get(path).body(()).unwrap();
            let (parts, ()) = request.into_parts();
            let env = cgi_env("f", &parts, 0);
            assert_eq!(unpassable_path(&env).is_some(), refused, "{path}");
        }
    }

    #[test]
    fn the_request_becomes_cgi_variables() {
        let mut request = Request::post("/echo/a/b?x=1&y=2")
            .header("host", "example.com:8080")
            .header("content-type", "text/plain")
            .header("x-thing", "one")
            .header("x-thing", "two")
            .body(())
            .unwrap();
        request.extensions_mut().insert(service_ops::RemoteAddr(
            "[::ffff:10.1.2.3]:5555".parse().unwrap(),
        ));
        let (parts, ()) = request.into_parts();
        let env: std::collections::HashMap<_, _> = cgi_env("echo", &parts, 5).into_iter().collect();
        assert_eq!(env["REQUEST_METHOD"], "POST");
        assert_eq!(env["SCRIPT_NAME"], "/echo");
        assert_eq!(env["PATH_INFO"], "/a/b");
        assert_eq!(env["QUERY_STRING"], "x=1&y=2");
        assert_eq!(env["SERVER_NAME"], "example.com");
        assert_eq!(env["SERVER_PORT"], "8080");
        assert_eq!(env["CONTENT_TYPE"], "text/plain");
        assert_eq!(env["CONTENT_LENGTH"], "5");
        assert_eq!(env["HTTP_X_THING"], "one, two");
        assert_eq!(env["HTTP_HOST"], "example.com:8080");
        assert!(!env.contains_key("HTTP_CONTENT_TYPE"));
        // WAGI's own variables, and the client's address (IPv4-mapped shown as IPv4).
        assert_eq!(
            env["X_FULL_URL"],
            "http://example.com:8080/echo/a/b?x=1&y=2"
        );
        assert_eq!(env["X_MATCHED_ROUTE"], "/echo/...");
        assert_eq!(env["X_RAW_PATH_INFO"], "/a/b");
        assert_eq!(env["PATH_TRANSLATED"], "/a/b");
        assert_eq!(env["REMOTE_ADDR"], "10.1.2.3");
        assert_eq!(env["REMOTE_HOST"], "10.1.2.3");
    }

    #[test]
    fn a_request_cannot_set_configuration_or_a_proxy() {
        let (parts, ()) = Request::get("/f/")
            .header("proxy", "http://evil:8080")
            .header("x-mode", "evil")
            .header("x-other", "fine")
            .body(())
            .unwrap()
            .into_parts();
        let config = [
            ("HTTP_X_MODE".to_string(), "configured".to_string()),
            ("REQUEST_METHOD".to_string(), "configured".to_string()),
            ("GREETING".to_string(), "hi".to_string()),
        ];
        let env = environment(&config, cgi_env("f", &parts, 0));
        let get = |name: &str| {
            let found: Vec<_> = env.iter().filter(|(n, _)| n == name).collect();
            assert!(found.len() <= 1, "{name} set twice: {env:?}");
            found.first().map(|(_, v)| v.as_str())
        };
        assert_eq!(get("HTTP_PROXY"), None);
        assert_eq!(get("HTTP_X_MODE"), Some("configured"));
        assert_eq!(get("HTTP_X_OTHER"), Some("fine"));
        assert_eq!(get("REQUEST_METHOD"), Some("GET"));
        assert_eq!(get("GREETING"), Some("hi"));
    }

    #[test]
    fn path_info_is_decoded_and_its_raw_form_kept() {
        let (parts, ()) = Request::get("/f/a%20b/c%2Fd/%FF")
            .body(())
            .unwrap()
            .into_parts();
        let env: std::collections::HashMap<_, _> = cgi_env("f", &parts, 0).into_iter().collect();
        assert_eq!(env["PATH_INFO"], "/a b/c/d/\u{fffd}");
        assert_eq!(env["X_RAW_PATH_INFO"], "/a%20b/c%2Fd/%FF");
        assert_eq!(env["X_FULL_URL"], "http://localhost/f/a%20b/c%2Fd/%FF");
        assert!(
            !env.contains_key("REMOTE_ADDR"),
            "no connection, no address"
        );
        let (parts, ()) = Request::get("/f").body(()).unwrap().into_parts();
        let env: std::collections::HashMap<_, _> = cgi_env("f", &parts, 0).into_iter().collect();
        assert_eq!(
            (env["PATH_INFO"].as_str(), env["X_RAW_PATH_INFO"].as_str()),
            ("/", "/")
        );
    }
}
