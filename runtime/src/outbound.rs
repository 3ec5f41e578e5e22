//! Outbound HTTP from guests. A request leaves only if its authority is on the
//! function's allowlist, the invocation has requests left, and the destination is outside
//! this machine and its private networks. The connector is our own so that the address
//! that was vetted is the address connected to: the name is resolved once, every address
//! it has is checked, and the TCP connection goes to those addresses, never to a second
//! lookup that a rebinding name could answer differently. TLS names the host (SNI and
//! certificate check) while the socket goes to the vetted IP.

use bytes::Bytes;
use http::uri::Scheme;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Outbound requests one invocation may make: enough for any handler that calls a few
/// APIs, few enough that a guest cannot turn the runtime into a flood of connections.
pub const MAX_OUTBOUND_REQUESTS: u32 = 64;

/// Connecting (resolving, TCP, TLS, HTTP handshake) and waiting for the response head,
/// unless the guest's request options ask for less: nginx's `proxy_connect_timeout` and
/// `proxy_read_timeout`. The invocation's own timeout ends everything sooner if shorter.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What the operator decides for every function's outbound HTTP, set once at start.
#[derive(Debug, Clone, Copy)]
pub struct OutboundSettings {
    /// Refuse internal addresses even when a function's allowlist names the IP literal
    /// (like Spin's `block_private_networks`, workerd's public-only default).
    pub block_internal: bool,
    /// Outbound connections open at once, all functions together.
    pub max_connections: usize,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            block_internal: false,
            max_connections: 1024,
        }
    }
}

struct Global {
    settings: OutboundSettings,
    connections: Arc<tokio::sync::Semaphore>,
}

static GLOBAL: OnceLock<Global> = OnceLock::new();

/// Sets the process's outbound settings; the first call wins (the runtime calls it once
/// at start, before any request). Without it the defaults apply.
pub fn configure(settings: OutboundSettings) {
    let _ = GLOBAL.set(Global {
        settings,
        connections: Arc::new(tokio::sync::Semaphore::new(settings.max_connections)),
    });
}

fn global() -> &'static Global {
    GLOBAL.get_or_init(|| {
        let settings = OutboundSettings::default();
        Global {
            settings,
            connections: Arc::new(tokio::sync::Semaphore::new(settings.max_connections)),
        }
    })
}

/// Outbound connections open now, all functions together.
pub fn open_connections() -> usize {
    let global = global();
    global.settings.max_connections - global.connections.available_permits()
}

/// The allowlist and the per-invocation budget; `host` allows ports 80 and 443,
/// `host:port` that port only.
pub struct OutboundPolicy {
    allowed_hosts: Arc<[String]>,
    function: Arc<str>,
    /// Outbound requests this invocation may still make.
    remaining: u32,
}

impl OutboundPolicy {
    pub fn new(function: &Arc<str>, allowed_hosts: Arc<[String]>) -> Self {
        Self {
            allowed_hosts,
            function: function.clone(),
            remaining: MAX_OUTBOUND_REQUESTS,
        }
    }

    fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else { return false };
        let port = uri.port_u16().unwrap_or(default_port(uri));
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

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> Box<
        dyn Future<Output = wasmtime_wasi_http::Result<(http::Response<WasiBody>, IoFuture)>>
            + Send,
    > {
        drop(fut);
        let refuse = |why: &str| -> Box<dyn Future<Output = _> + Send> {
            tracing::warn!(function = %self.function, uri = %request.uri(), "outbound HTTP refused: {why}");
            Box::new(async { Err(Error::HttpRequestDenied) })
        };
        if self.remaining == 0 {
            return refuse("this invocation has used its outbound requests");
        }
        self.remaining -= 1;
        if !self.allows(request.uri()) {
            return refuse("host not allowed");
        }
        let function = self.function.clone();
        Box::new(send(request, options, function))
    }
}

fn default_port(uri: &http::Uri) -> u16 {
    if uri.scheme() == Some(&Scheme::HTTPS) {
        443
    } else {
        80
    }
}

/// Anything a connection can run over: a TCP stream or TLS on one.
trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

async fn send(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    function: Arc<str>,
) -> wasmtime_wasi_http::Result<(http::Response<WasiBody>, IoFuture)> {
    let limit = |pick: fn(&RequestOptions) -> Option<Duration>| {
        options.as_ref().and_then(pick).unwrap_or(DEFAULT_TIMEOUT)
    };
    let (connect_timeout, first_byte_timeout, between_bytes_timeout) = (
        limit(|o| o.connect_timeout),
        limit(|o| o.first_byte_timeout),
        limit(|o| o.between_bytes_timeout),
    );
    let uri = request.uri().clone();
    let tls = match uri.scheme() {
        Some(s) if *s == Scheme::HTTPS => true,
        Some(s) if *s == Scheme::HTTP => false,
        _ => return Err(Error::HttpProtocolError),
    };
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
    let port = uri.port_u16().unwrap_or(default_port(&uri));

    // One of the process's outbound connections, held as long as the connection is.
    let Ok(permit) = global().connections.clone().try_acquire_owned() else {
        tracing::warn!(function = %function, uri = %uri, "outbound HTTP refused: the runtime's outbound connections are all in use (--max-outbound-connections)");
        return Err(Error::ConnectionLimitReached);
    };
    let connect = async {
        let addrs = destinations(host, port).await.inspect_err(|refusal| {
            tracing::warn!(function = %function, uri = %uri, "outbound HTTP refused: {refusal}");
        })?;
        let tcp = connect_any(&addrs).await?;
        let io: Box<dyn Io> = if tls {
            Box::new(tls_connect(host, tcp).await?)
        } else {
            Box::new(tcp)
        };
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        Ok::<_, Error>((sender, conn))
    };
    let (mut sender, conn) = tokio::time::timeout(connect_timeout, connect)
        .await
        .map_err(|_| Error::ConnectionTimeout)??;

    // On the wire the request line carries the path only (origin form); wasi:http has
    // already put the authority in the Host header.
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = http::Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)?;
    let request = request.map(|body| DrainOnDrop(Some(body)));

    // The connection must be driven while the response head is awaited; whichever ends
    // first decides, and a connection that is still open is handed back for the body.
    let mut conn = Box::pin(conn);
    let response = tokio::time::timeout(first_byte_timeout, async {
        let sent = sender.send_request(request);
        tokio::pin!(sent);
        tokio::select! {
            response = &mut sent => response.map(|r| (r, false)),
            ended = &mut conn => {
                // The connection ended first (the server answered and closed, perhaps
                // before it read the whole body): an answer it gave is still delivered.
                match (sent.await, ended) {
                    (Ok(response), _) => Ok((response, true)),
                    (Err(_), Err(e)) | (Err(e), Ok(())) => Err(e),
                }
            }
        }
    })
    .await
    .map_err(|_| Error::ConnectionReadTimeout)?;
    let (response, conn_done) = response?;
    let io: IoFuture = if conn_done {
        drop(permit);
        Box::new(async { Ok(()) })
    } else {
        Box::new(async move {
            let _open = permit;
            conn.await.map_err(Error::from)
        })
    };
    let response = response.map(|incoming| {
        Paced::new(incoming.map_err(Error::from), between_bytes_timeout).boxed_unsync()
    });
    Ok((response, io))
}

/// The request body, kept draining after the connection lets go of it. A server may
/// answer before it has read the body (a 401, a 413, or a GET whose empty chunked body
/// it never waits for) and close; the guest, still writing that body concurrently, would
/// then see its stream closed and lose a response it already has. As other HTTP clients
/// do, the rest of the body is read and discarded instead, until the guest finishes it
/// or its instance ends.
struct DrainOnDrop(Option<WasiBody>);

impl Body for DrainOnDrop {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match self.0.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0
            .as_ref()
            .map_or_else(|| http_body::SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        let Some(mut body) = self.0.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { while let Some(Ok(_)) = body.frame().await {} });
        }
    }
}

/// Why a destination was not connected to.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("resolving {host}: {reason}")]
    Dns { host: String, reason: String },
    #[error("{host} has no address")]
    NoAddress { host: String },
    #[error("{host} resolves to {ip}, an internal address (allow the IP itself to mean it)")]
    Internal { host: String, ip: IpAddr },
    #[error("{ip} is an internal address, refused for every function (--block-internal-outbound)")]
    Blocked { ip: IpAddr },
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Dns { reason, .. } => Error::DnsError {
                rcode: Some(reason),
                info_code: None,
            },
            Refusal::NoAddress { .. } => Error::DestinationNotFound,
            Refusal::Internal { .. } | Refusal::Blocked { .. } => Error::DestinationIpProhibited,
        }
    }
}

/// The addresses to connect to. An allowed IP literal is taken as meant, unless the
/// operator blocks internal addresses for everyone. A name is resolved once and refused
/// if any address it has is loopback, private, link-local (cloud metadata,
/// 169.254.169.254), shared, multicast, unspecified or reserved.
async fn destinations(host: &str, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        if global().settings.block_internal && is_internal(ip) {
            return Err(Refusal::Blocked { ip });
        }
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Refusal::Dns {
            host: host.to_string(),
            reason: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Refusal::NoAddress {
            host: host.to_string(),
        });
    }
    if let Some(addr) = addrs.iter().find(|a| is_internal(a.ip())) {
        return Err(Refusal::Internal {
            host: host.to_string(),
            ip: addr.ip(),
        });
    }
    Ok(addrs)
}

/// The first of the vetted addresses that accepts, in resolver order.
async fn connect_any(addrs: &[SocketAddr]) -> Result<TcpStream, Error> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
        Some(e) => Error::Connect(e),
        None => Error::DestinationNotFound,
    })
}

/// TLS to `host` over a connection already made to a vetted address: the name is what
/// the certificate must match (and the SNI sent), the public web roots what it must
/// chain to.
async fn tls_connect(
    host: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    });
    let name = server_name(host)?;
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(Error::Tls)
}

/// The name a certificate must match: a DNS name, or an IP for an IP literal (with or
/// without brackets).
fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, Error> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    rustls::pki_types::ServerName::try_from(literal.to_string())
        .map_err(|_| Error::HttpRequestUriInvalid)
}

/// Loopback, private, link-local, shared (CGNAT), multicast, unspecified, reserved,
/// documentation or benchmarking; for IPv6 also site-local, NAT64's local-use prefix and
/// Teredo, and an IPv4 address embedded in IPv6 (mapped, compatible, NAT64's well-known
/// prefix, 6to4) is checked as that IPv4 address.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                // IETF protocol assignments (192.0.0.0/24), documentation (TEST-NET-1,
                // -2, -3), benchmarking (198.18.0.0/15).
                || (a, b, c) == (192, 0, 0)
                || (a, b, c) == (192, 0, 2)
                || (a, b, c) == (198, 51, 100)
                || (a, b, c) == (203, 0, 113)
                || (a == 198 && (b & 0xfe) == 18)
                || a >= 240
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                std::net::Ipv4Addr::new(a, b, c, d)
            };
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            if v6.is_loopback() || v6.is_unspecified() {
                return true;
            }
            // ::a.b.c.d (IPv4-compatible, deprecated): the IPv4 address it carries.
            if segments[..6] == [0; 6] {
                return is_internal(IpAddr::V4(embedded(segments[6], segments[7])));
            }
            // NAT64's well-known prefix 64:ff9b::/96: the IPv4 address it translates to.
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_internal(IpAddr::V4(embedded(segments[6], segments[7])));
            }
            // 6to4, 2002:AABB:CCDD::/48: the IPv4 address of the tunnel's end.
            if segments[0] == 0x2002 {
                return is_internal(IpAddr::V4(embedded(segments[1], segments[2])));
            }
            let first = segments[0];
            v6.is_multicast()
                // Unique local fc00::/7, link-local fe80::/10, site-local fec0::/10.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                // NAT64 local use 64:ff9b:1::/48: translates to whatever the network has.
                || segments[..3] == [0x64, 0xff9b, 1]
                // Teredo 2001::/32: a tunnel whose far end the address alone does not tell.
                || segments[..2] == [0x2001, 0]
                // Documentation 2001:db8::/32.
                || segments[..2] == [0x2001, 0xdb8]
        }
    }
}

/// A response body that fails with `ConnectionReadTimeout` when the gap between two
/// frames (or before the first) exceeds the guest's `between_bytes_timeout`.
struct Paced<B> {
    inner: B,
    gap: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<B> Paced<B> {
    fn new(inner: B, gap: Duration) -> Self {
        Self {
            inner,
            gap,
            deadline: Box::pin(tokio::time::sleep(gap)),
        }
    }
}

impl<B: Body<Data = Bytes, Error = Error> + Unpin> Body for Paced<B> {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            let next = tokio::time::Instant::now() + this.gap;
            this.deadline.as_mut().reset(next);
            return Poll::Ready(frame);
        }
        ready!(this.deadline.as_mut().poll(cx));
        Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_is_vetted_on_every_address_it_has() {
        // `localhost` resolves to loopback: refused, naming the address.
        let refusal = destinations("localhost", 80).await.unwrap_err();
        assert!(
            matches!(refusal, Refusal::Internal { ref host, ip } if host == "localhost" && ip.is_loopback()),
            "{refusal:?}"
        );
        assert!(matches!(
            Error::from(refusal),
            Error::DestinationIpProhibited
        ));
        // An IP literal (v4, or v6 in brackets) is connected to as written.
        assert_eq!(
            destinations("127.0.0.1", 8080).await.unwrap(),
            vec!["127.0.0.1:8080".parse().unwrap()]
        );
        assert_eq!(
            destinations("[::1]", 443).await.unwrap(),
            vec!["[::1]:443".parse().unwrap()]
        );
        // A name that does not resolve is a DNS error, not a connection to something else.
        let refusal = destinations("no-such-host.invalid", 80).await.unwrap_err();
        assert!(matches!(refusal, Refusal::Dns { .. }), "{refusal:?}");
    }

    #[test]
    fn a_bare_host_allows_the_web_ports_only() {
        let policy = OutboundPolicy::new(
            &"f".into(),
            ["api.example.com", "[::1]", "x.com:8080"]
                .map(String::from)
                .into(),
        );
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
            // NAT64, 6to4, Teredo, IPv4-compatible, site-local, IETF assignments,
            // benchmarking: an IPv4 address carried in IPv6 is judged as IPv4.
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "64:ff9b:1:abcd::808:808",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "::127.0.0.1",
            "::10.0.0.1",
            "fec0::1",
            "192.0.0.1",
            "192.0.0.170",
            "198.18.0.1",
            "198.19.255.254",
            "192.0.2.1",
            "2001:db8::1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "100.128.0.1",
            // Public IPv4 behind the same embeddings stays public.
            "64:ff9b::808:808",
            "2002:808:808::1",
            "198.20.0.1",
            "192.0.1.1",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn tls_names_the_host_not_the_address() {
        use rustls::pki_types::ServerName;
        assert_eq!(
            server_name("example.com").unwrap(),
            ServerName::try_from("example.com").unwrap()
        );
        assert_eq!(
            server_name("[::1]").unwrap(),
            ServerName::from(std::net::Ipv6Addr::LOCALHOST)
        );
        assert!(server_name("bad name").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_times_out_between_frames() {
        /// One frame, then silence.
        struct OneThenStall(bool);
        impl Body for OneThenStall {
            type Data = Bytes;
            type Error = Error;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
                if std::mem::replace(&mut self.0, true) {
                    Poll::Pending
                } else {
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"first")))))
                }
            }
        }
        let mut paced = Paced::new(OneThenStall(false), Duration::from_secs(5));
        let frame = paced.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "first");
        // Nothing more arrives: after the gap, a read timeout, not a hang.
        let stalled = paced.frame().await.unwrap();
        assert!(matches!(stalled, Err(Error::ConnectionReadTimeout)));
    }
}
