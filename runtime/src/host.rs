//! The per-request store data: a sandboxed WASI context, wasi:http state, the memory
//! limiter that also records peak use, caps on what the guest may hold in host memory,
//! and the outbound HTTP policy (`outbound`); and a WAGI module's, [`WagiHost`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::random::WasiRandomCtx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::outbound::OutboundPolicy;

/// Live resources (streams, pollables, header sets, requests, bodies ...) one instance
/// may hold at once. They live in host memory, outside the guest's `memory_mib`: a handler
/// that calls a few dozen APIs needs a few hundred, and a guest hoarding them gets a trap
/// (500) at this count instead of the host's default of a million.
pub const MAX_RESOURCES: usize = 2048;

/// The most one set of header fields the guest builds may take in host memory (wasmtime
/// counts names and values plus the map's own overhead; its default is 128 KiB). 32 KiB
/// holds four times nginx's default `proxy_buffer_size`. Each set a guest makes is
/// charged this much to the instance's memory budget (see [`Host::charge_header_set`]),
/// so header sets are bounded by the same budget as linear memory.
pub const MAX_FIELDS_BYTES: usize = 32 * 1024;

/// Random bytes one `get-random-bytes` call may ask for: more than any key, nonce or
/// seed needs, far less than wasmtime-wasi's 64 MiB, which a guest could otherwise make
/// the host allocate outside its memory budget on every call. A larger call traps.
pub const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// wasi:random with [`MAX_RANDOM_BYTES`] per call, over the instance's own random state.
#[derive(Debug)]
pub struct CappedRandom;

impl wasmtime::component::HasData for CappedRandom {
    type Data<'a> = Capped<'a>;
}

/// The instance's random state, as [`CappedRandom`] reaches it.
pub struct Capped<'a>(pub &'a mut WasiRandomCtx);

impl std::fmt::Debug for Capped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capped").finish_non_exhaustive()
    }
}

fn check_random_len(len: u64) -> wasmtime::Result<()> {
    if len > MAX_RANDOM_BYTES {
        wasmtime::bail!(
            "get-random-bytes asked for {len} bytes; one call may ask for {MAX_RANDOM_BYTES}"
        );
    }
    Ok(())
}

impl wasmtime_wasi::p2::bindings::random::random::Host for Capped<'_> {
    fn get_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        check_random_len(len)?;
        <WasiRandomCtx as wasmtime_wasi::p2::bindings::random::random::Host>::get_random_bytes(
            self.0, len,
        )
    }

    fn get_random_u64(&mut self) -> wasmtime::Result<u64> {
        <WasiRandomCtx as wasmtime_wasi::p2::bindings::random::random::Host>::get_random_u64(self.0)
    }
}

impl wasmtime_wasi::p2::bindings::random::insecure::Host for Capped<'_> {
    fn get_insecure_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        check_random_len(len)?;
        <WasiRandomCtx as wasmtime_wasi::p2::bindings::random::insecure::Host>::get_insecure_random_bytes(self.0, len)
    }

    fn get_insecure_random_u64(&mut self) -> wasmtime::Result<u64> {
        <WasiRandomCtx as wasmtime_wasi::p2::bindings::random::insecure::Host>::get_insecure_random_u64(self.0)
    }
}

impl wasmtime_wasi::p2::bindings::random::insecure_seed::Host for Capped<'_> {
    fn insecure_seed(&mut self) -> wasmtime::Result<(u64, u64)> {
        <WasiRandomCtx as wasmtime_wasi::p2::bindings::random::insecure_seed::Host>::insecure_seed(
            self.0,
        )
    }
}

/// What one invocation used, read from its store before the store is dropped.
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    pub peak_memory_bytes: usize,
    pub memory_limit_hit: bool,
    /// A growth was refused because the process's memory budget (or the function's
    /// fair part of it) had no room.
    pub memory_budget_hit: bool,
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
    version: Arc<str>,
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
        let [stdout, stderr] = LogStream::pair(
            &self.function,
            &self.version,
            self.request_id,
            self.log_budget,
        );
        wasi.stdout(stdout);
        wasi.stderr(stderr);
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
        version: &Arc<str>,
        request_id: u64,
        env: Arc<[(String, String)]>,
        allowed_hosts: Arc<[String]>,
        memory: (usize, Option<crate::admission::MemoryCharge>),
        log_budget: usize,
    ) -> Self {
        Self {
            table: {
                let mut table = ResourceTable::new();
                table.set_max_capacity(MAX_RESOURCES);
                table
            },
            wasi: None,
            random: None,
            sandbox: Sandbox {
                function: function.clone(),
                version: version.clone(),
                request_id,
                env,
                log_budget,
            },
            http: {
                let mut http = WasiHttpCtx::new();
                http.set_field_size_limit(MAX_FIELDS_BYTES);
                http
            },
            hooks: OutboundPolicy::new(function, allowed_hosts),
            limiter: MemoryLimiter::new(memory.0, memory.1),
        }
    }

    pub fn limiter(&mut self) -> &mut MemoryLimiter {
        &mut self.limiter
    }

    /// Charges a header set the guest is making (its most, [`MAX_FIELDS_BYTES`]) to the
    /// instance's memory budget, as linear memory is charged; a trap when the budget
    /// has no room (the request fails like any growth refused by the budget).
    pub fn charge_header_set(&mut self) -> wasmtime::Result<()> {
        if let Some(charge) = &self.limiter.charge
            && !lock(charge).grow(0, MAX_FIELDS_BYTES)
        {
            self.limiter.usage.memory_budget_hit = true;
            wasmtime::bail!(
                "the memory budget has no room for another header set ({} KiB each)",
                MAX_FIELDS_BYTES >> 10
            );
        }
        Ok(())
    }

    /// The guest's wasi:random state, capped per call (see `engine::linker`).
    pub fn capped_random(&mut self) -> Capped<'_> {
        Capped(self.random())
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

/// A WAGI instance's store data (a WASI 0.1 core module served the WAGI way): its WASI
/// 0.1 context, with the CGI variables, stdin and the stdout pipe, and the memory limiter.
pub struct WagiHost {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
}

impl std::fmt::Debug for WagiHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WagiHost")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl WagiHost {
    /// `wasi`, its linear memory limited by `limiter`.
    pub fn new(wasi: WasiP1Ctx, limiter: MemoryLimiter) -> Self {
        Self { wasi, limiter }
    }

    pub fn usage(&self) -> Usage {
        self.limiter.usage()
    }

    pub fn limiter(&mut self) -> &mut MemoryLimiter {
        &mut self.limiter
    }

    pub fn wasi(&mut self) -> &mut WasiP1Ctx {
        &mut self.wasi
    }
}

/// Caps linear memory, charges its growth to the process's memory budget, and records
/// the peak. A denied `memory.grow` returns -1 to the guest (its allocator then usually
/// aborts); `memory_limit_hit` and `memory_budget_hit` let the host name the cause
/// instead of reporting a bare trap.
#[derive(Debug)]
pub struct MemoryLimiter {
    limit: usize,
    usage: Usage,
    /// The instance's charge against the budget, grown with its memories (none in
    /// tests and tools that run without a budget).
    charge: Option<SharedCharge>,
}

/// An instance's charge against the memory budget, shared by what grows with it: its
/// linear memories (the limiter) and, for a WAGI module, its output ([`ChargedOutput`]).
pub type SharedCharge = Arc<std::sync::Mutex<crate::admission::MemoryCharge>>;

fn lock(charge: &SharedCharge) -> std::sync::MutexGuard<'_, crate::admission::MemoryCharge> {
    charge.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryLimiter {
    pub fn new(limit: usize, charge: Option<crate::admission::MemoryCharge>) -> Self {
        Self {
            limit,
            usage: Usage::default(),
            charge: charge.map(|c| Arc::new(std::sync::Mutex::new(c))),
        }
    }

    /// The instance's charge, for what else grows with it.
    pub fn charge(&self) -> Option<SharedCharge> {
        self.charge.clone()
    }

    pub fn usage(&self) -> Usage {
        self.usage
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.usage.memory_limit_hit = true;
            return Ok(false);
        }
        if let Some(charge) = &self.charge
            && !lock(charge).grow(current, desired)
        {
            self.usage.memory_budget_hit = true;
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

/// Guest stdout/stderr, line by line, into the host log with the function's name and the
/// request id, within the invocation's budget: a line is cut at [`MAX_LINE`] bytes, and
/// once the budget is spent one last line says so and the rest is dropped.
#[derive(Clone)]
pub struct LogStream {
    function: Arc<str>,
    version: Arc<str>,
    request_id: u64,
    stream: &'static str,
    /// Bytes this invocation may still log, shared by its streams.
    budget: Arc<AtomicUsize>,
    limit: usize,
}

impl LogStream {
    /// The guest's stdout and stderr, sharing one budget for both streams and every
    /// handle the guest opens on them.
    pub fn pair(
        function: &Arc<str>,
        version: &Arc<str>,
        request_id: u64,
        log_budget: usize,
    ) -> [LogStream; 2] {
        let budget = Arc::new(AtomicUsize::new(log_budget));
        ["stdout", "stderr"].map(|stream| LogStream {
            function: function.clone(),
            version: version.clone(),
            request_id,
            stream,
            budget: budget.clone(),
            limit: log_budget,
        })
    }
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
        let text = if cut {
            format!("{text} [line cut]")
        } else {
            text.into_owned()
        };
        tracing::info!(
            target: "guest",
            function = %s.function,
            request_id = s.request_id,
            stream = s.stream,
            "{text}"
        );
        crate::logs::global().push(&s.function, &s.version, s.request_id, s.stream, text);
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

/// A WAGI module's stdout: kept in memory up to a limit, and charged to the instance's
/// memory budget as it fills, like its linear memory. A write the budget has no room
/// for traps, and the request fails with 503 `memory_budget`.
#[derive(Clone)]
pub struct ChargedOutput(Arc<std::sync::Mutex<Output>>);

struct Output {
    bytes: Vec<u8>,
    limit: usize,
    charge: Option<SharedCharge>,
    refused: bool,
}

impl ChargedOutput {
    pub fn new(limit: usize, charge: Option<SharedCharge>) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Output {
            bytes: Vec::new(),
            limit,
            charge,
            refused: false,
        })))
    }

    fn output(&self) -> std::sync::MutexGuard<'_, Output> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the module wrote.
    pub fn contents(&self) -> bytes::Bytes {
        bytes::Bytes::from(std::mem::take(&mut self.output().bytes))
    }

    /// Whether a write was refused for want of room in the memory budget.
    pub fn refused(&self) -> bool {
        self.output().refused
    }

    /// Takes what of `bytes` fits the limit, if the budget has room for it: how many
    /// bytes it took, or `None` if the budget refused them (remembered).
    fn take(&self, bytes: &[u8]) -> Option<usize> {
        let mut output = self.output();
        let held = output.bytes.len();
        // Full: no more bytes will ever be taken (the caller sees a response cut short).
        let take = bytes.len().min(output.limit - held);
        if take > 0
            && let Some(charge) = &output.charge
            && !lock(charge).grow(held, held + take)
        {
            output.refused = true;
            return None;
        }
        output.bytes.extend_from_slice(&bytes[..take]);
        Some(take)
    }
}

impl wasmtime_wasi::cli::IsTerminal for ChargedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for ChargedOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    /// Written synchronously, as wasmtime's own memory pipe is: the default adapter hands
    /// every write to a task, too slow for a module that writes line by line.
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }
}

impl wasmtime_wasi::p2::OutputStream for ChargedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), wasmtime_wasi::p2::StreamError> {
        use wasmtime_wasi::p2::StreamError;
        match self.take(&bytes) {
            Some(taken) if taken == bytes.len() => Ok(()),
            // More than `check_write` allowed: what wasmtime's memory pipe does too.
            Some(_) => Err(StreamError::Trap(wasmtime::format_err!(
                "write beyond the output's limit"
            ))),
            None => Err(StreamError::Trap(wasmtime::format_err!(
                "the memory budget has no room for more output"
            ))),
        }
    }

    fn flush(&mut self) -> Result<(), wasmtime_wasi::p2::StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, wasmtime_wasi::p2::StreamError> {
        let output = self.output();
        match output.limit - output.bytes.len() {
            0 => Err(wasmtime_wasi::p2::StreamError::Closed),
            room => Ok(room),
        }
    }
}

// What `#[async_trait]` would write for `async fn ready(&mut self) {}`: always ready.
impl wasmtime_wasi::p2::Pollable for ChargedOutput {
    fn ready<'life0, 'async_trait>(
        &'life0 mut self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(std::future::ready(()))
    }
}

impl tokio::io::AsyncWrite for ChargedOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.take(buf).ok_or_else(|| {
                std::io::Error::other("the memory budget has no room for more output")
            }),
        )
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
