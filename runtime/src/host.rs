//! The per-request store data: a sandboxed WASI context, wasi:http state, the memory
//! limiter that also records peak use, and the hooks that police outbound HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::random::WasiRandomCtx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// What one invocation used, read from its store before the store is dropped.
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    pub peak_memory_bytes: usize,
    pub memory_limit_hit: bool,
}

pub struct Host {
    table: ResourceTable,
    /// Built on the guest's first call into the rest of WASI (environment, clocks,
    /// stdio, filesystem, sockets): most handlers only use wasi:http and wasi:io, which
    /// need the table alone, and building a context seeds three random generators.
    wasi: Option<WasiCtx>,
    /// wasi:random on its own, also built on first use: Rust's std asks for a seed the
    /// first time a guest makes a `HashMap`, and that should not build the rest.
    random: Option<WasiRandomCtx>,
    sandbox: Sandbox,
    http: WasiHttpCtx,
    hooks: OutboundPolicy,
    limiter: MemoryLimiter,
}

/// What a request's WASI context is built from.
struct Sandbox {
    function: Arc<str>,
    request_id: u64,
    env: Arc<[(String, String)]>,
    log_budget: usize,
}

impl Sandbox {
    fn build(&self) -> WasiCtx {
        let mut wasi = WasiCtx::builder();
        // No preopened directories, no host environment, no sockets (the builder's
        // defaults deny every address), no stdin. Only the configured env.
        wasi.envs(&self.env);
        // One budget for both streams and every handle the guest opens on them.
        let budget = Arc::new(AtomicUsize::new(self.log_budget));
        let stream = |name| LogStream {
            function: self.function.clone(),
            request_id: self.request_id,
            stream: name,
            budget: budget.clone(),
            limit: self.log_budget,
        };
        wasi.stdout(stream("stdout"));
        wasi.stderr(stream("stderr"));
        wasi.build()
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl Host {
    pub fn new(
        function: &Arc<str>,
        request_id: u64,
        env: Arc<[(String, String)]>,
        allowed_hosts: Arc<[String]>,
        memory_limit: usize,
        log_budget: usize,
    ) -> Self {
        Self {
            table: ResourceTable::new(),
            wasi: None,
            random: None,
            sandbox: Sandbox {
                function: function.clone(),
                request_id,
                env,
                log_budget,
            },
            http: WasiHttpCtx::new(),
            hooks: OutboundPolicy {
                allowed_hosts,
                function: function.clone(),
                remaining: MAX_OUTBOUND_REQUESTS,
            },
            limiter: MemoryLimiter {
                limit: memory_limit,
                usage: Usage::default(),
            },
        }
    }

    pub fn limiter(&mut self) -> &mut MemoryLimiter {
        &mut self.limiter
    }

    /// The guest's wasi:random state (see `engine::linker`).
    pub fn random(&mut self) -> &mut WasiRandomCtx {
        self.random.get_or_insert_with(WasiRandomCtx::default)
    }

    pub fn usage(&self) -> Usage {
        self.limiter.usage
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let sandbox = &self.sandbox;
        WasiCtxView {
            ctx: self.wasi.get_or_insert_with(|| sandbox.build()),
            table: &mut self.table,
        }
    }
}

/// wasi:io (streams, pollables, errors) needs only the resource table; the linker wires
/// it here so that an HTTP body's streams never build the WASI context.
impl wasmtime_wasi_io::IoView for Host {
    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Caps linear memory and records the peak. A denied `memory.grow` returns -1 to the
/// guest (its allocator then usually aborts); `memory_limit_hit` lets the host name the
/// cause instead of reporting a bare trap.
#[derive(Debug)]
pub struct MemoryLimiter {
    limit: usize,
    usage: Usage,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.usage.memory_limit_hit = true;
            return Ok(false);
        }
        self.usage.peak_memory_bytes = self.usage.peak_memory_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Outbound requests one invocation may make: enough for any handler that calls a few
/// APIs, few enough that a guest cannot turn the runtime into a flood of connections.
pub const MAX_OUTBOUND_REQUESTS: u32 = 64;

/// Outbound HTTP: refused unless the request's authority is on the function's allowlist
/// (`host` allows ports 80 and 443, `host:port` that port only), and then unless the
/// name leads outside this machine and its private networks ([`vet_destination`]).
struct OutboundPolicy {
    allowed_hosts: Arc<[String]>,
    function: Arc<str>,
    /// Outbound requests this invocation may still make.
    remaining: u32,
}

impl OutboundPolicy {
    fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else { return false };
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        self.allowed_hosts.iter().any(|allowed| {
            // `HOST:PORT` that port only; a bare `HOST` (or `[v6]`) the web's default
            // ports only, 80 and 443, not every port the host has open.
            match crate::limits::split_host_port(allowed) {
                Some((h, Some(p))) => h.eq_ignore_ascii_case(host) && p == port,
                Some((h, None)) => h.eq_ignore_ascii_case(host) && matches!(port, 80 | 443),
                None => false,
            }
        })
    }
}

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                )>,
            > + Send,
    > {
        drop(fut);
        if self.remaining == 0 {
            tracing::warn!(function = %self.function, uri = %request.uri(), "outbound HTTP refused: this invocation has used its outbound requests");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        self.remaining -= 1;
        if !self.allows(request.uri()) {
            tracing::warn!(function = %self.function, uri = %request.uri(), "outbound HTTP refused: host not allowed");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let function = self.function.clone();
        Box::new(async move {
            use http_body_util::BodyExt;
            if let Err(refused) = vet_destination(request.uri()).await {
                tracing::warn!(function = %function, uri = %request.uri(), "outbound HTTP refused: {refused}");
                return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
            }
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// An allowed *name* must not lead into this machine or its private networks: the
/// name is resolved and refused if any address it has is loopback, private, link-local
/// (cloud metadata, 169.254.169.254), shared, multicast or unspecified. An allow entry
/// that is itself an IP literal is taken as meant. (The connection resolves the name
/// again; a rebinding name with a zero TTL could still race this check. Connecting to
/// the vetted address needs a connector of our own: the hardening issue's next step.)
async fn vet_destination(uri: &http::Uri) -> Result<(), String> {
    let host = uri.host().unwrap_or_default();
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if literal.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("resolving {host}: {e}"))?;
    for addr in addrs {
        if is_internal(addr.ip()) {
            return Err(format!(
                "{host} resolves to {}, an internal address (allow the IP itself to mean it)",
                addr.ip()
            ));
        }
    }
    Ok(())
}

/// Loopback, private, link-local, shared (CGNAT), multicast, unspecified or reserved.
fn is_internal(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Guest stdout/stderr, line by line, into the host log with the function's name and the
/// request id, within the invocation's budget: a line is cut at [`MAX_LINE`] bytes, and
/// once the budget is spent one last line says so and the rest is dropped.
#[derive(Clone)]
struct LogStream {
    function: Arc<str>,
    request_id: u64,
    stream: &'static str,
    /// Bytes this invocation may still log, shared by its streams.
    budget: Arc<AtomicUsize>,
    limit: usize,
}

/// The longest line written to the host log; longer ones are cut and marked.
const MAX_LINE: usize = 4096;

impl wasmtime_wasi::cli::IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            stream: self.clone(),
            buf: Vec::new(),
        })
    }
}

struct LineWriter {
    stream: LogStream,
    buf: Vec<u8>,
}

impl LineWriter {
    fn emit(&self, line: &[u8]) {
        let s = &self.stream;
        let line = match line.iter().rposition(|b| !matches!(b, b'\r' | b'\n')) {
            Some(end) => &line[..=end],
            None => &line[..0],
        };
        let cut = line.len() > MAX_LINE;
        let shown = &line[..line.len().min(MAX_LINE)];
        // Take the line's bytes from the budget; the line that finds it spent says so.
        let cost = shown.len() + 1;
        let left = s
            .budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                (left > 0).then(|| left.saturating_sub(cost))
            });
        match left {
            Ok(left) if left >= cost => {}
            Ok(_) => {
                tracing::warn!(
                    target: "guest",
                    function = %s.function,
                    request_id = s.request_id,
                    stream = s.stream,
                    "log budget of {} bytes for this invocation used up: the rest of its output is dropped",
                    s.limit
                );
                return;
            }
            Err(_) => return,
        }
        let text = String::from_utf8_lossy(shown);
        tracing::info!(
            target: "guest",
            function = %s.function,
            request_id = s.request_id,
            stream = s.stream,
            "{text}{}",
            if cut { " [line cut]" } else { "" }
        );
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.buf.extend_from_slice(data);
        while let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            self.emit(&line);
        }
        // A guest that never prints a newline must not grow the host's memory forever.
        if self.buf.len() > MAX_LINE {
            let line = std::mem::take(&mut self.buf);
            self.emit(&line);
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            self.emit(&line);
        }
    }
}

#[cfg(test)]
mod outbound_tests {
    use super::{OutboundPolicy, is_internal};

    #[test]
    fn a_bare_host_allows_the_web_ports_only() {
        let policy = OutboundPolicy {
            allowed_hosts: ["api.example.com", "[::1]", "x.com:8080"]
                .map(String::from)
                .into(),
            function: "f".into(),
            remaining: 1,
        };
        let allows = |uri: &str| policy.allows(&uri.parse().unwrap());
        assert!(allows("https://api.example.com/"));
        assert!(allows("http://API.example.com:80/"));
        assert!(!allows("http://api.example.com:6379/"));
        assert!(allows("http://[::1]/"));
        assert!(!allows("http://[::1]:22/"));
        assert!(allows("http://x.com:8080/"));
        assert!(!allows("https://x.com/"));
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }
}
