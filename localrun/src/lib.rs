//! Runs the real pieces of the comparison on 127.0.0.1 and cleans up after them.
//!
//! - [`Service`]: one of our binaries, started with `--listen 127.0.0.1:0` style flags;
//!   its addresses are read from the `NAME listening on http://ADDR` lines it prints.
//! - [`Nginx`]: a real nginx in front of the webserver, configured from the same template
//!   compose uses (`infra/nginx/templates/`), rendered into a temporary prefix.
//!
//! - [`SeedPhp`], [`SeedNode`]: the seed report's PHP-FPM + nginx and Node/Express stacks
//!   (`seed-stacks/`), as extra sides of the comparison.
//! - [`examples`]: what every example function must answer, checked against any base URL,
//!   so the webserver, nginx and the runtime are held to the same expectations.
//! - [`exposition`]: a `/metrics` page parsed as Prometheus reads it.
//!
//! Everything started is killed when its handle drops, so a failing test leaves nothing
//! running.

pub mod examples;
pub mod exposition;
mod nginx;
pub mod prometheus;
mod seed;
mod service;

pub use exposition::{Scrape, sample};
pub use nginx::{Nginx, NginxPorts, Site, find_nginx, render_nginx_template};
pub use seed::{PhpFpm, SeedNode, SeedPhp, find_node, find_php_fpm};
pub use service::Service;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1, for programs (nginx) that cannot bind port 0 and report the
/// port. Another process may take it before ours binds; callers retry on a bind failure.
/// A background process (an exporter, Prometheus) that dies with its owner: killed and
/// reaped on drop.
#[derive(Debug)]
pub struct Background(std::process::Child);

impl Background {
    /// Spawns `command` as it is set up (arguments, stdio).
    pub fn spawn(command: &mut std::process::Command) -> std::io::Result<Self> {
        command.spawn().map(Self)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts TCP connections on `addr`, or `timeout` passes.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("nothing accepted connections on {addr} within {timeout:?}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// One of the workspace's binaries, for an integration test: `cargo test --workspace`
/// builds every package's binaries into the target directory above the test's own
/// `deps/` directory. Panics with the command to run when it is not there.
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("a test binary lives in target/PROFILE/deps")
        .join(name);
    assert!(
        path.is_file(),
        "{} is not built: run the workspace tests (scripts/test, or cargo test --workspace), which build it",
        path.display()
    );
    path
}

/// Where to find a command: on PATH, else in the sbin directories Debian uses.
pub fn find_program(name: &str) -> Option<std::path::PathBuf> {
    program_dirs()
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Where programs are looked for: PATH, then the sbin directories Debian uses.
fn program_dirs() -> impl Iterator<Item = std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .collect::<Vec<_>>()
        .into_iter()
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/bin"].map(std::path::PathBuf::from))
}

fn promtool_path() -> anyhow::Result<std::path::PathBuf> {
    find_program("promtool").ok_or_else(|| {
        anyhow::anyhow!("promtool not found: install it with `apt-get install -y prometheus` (scripts/test does it as root)")
    })
}

/// Runs `promtool ARGS` in `dir` and fails with promtool's output unless it succeeds.
pub fn promtool(dir: &std::path::Path, args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new(promtool_path()?)
        .args(args)
        .current_dir(dir)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "promtool {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Runs `promtool check metrics` on `exposition` and fails with promtool's complaints.
pub fn promtool_check_metrics(exposition: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut child = std::process::Command::new(promtool_path()?)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(exposition.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Fetches `service`'s `/metrics` from its ops listener.
pub async fn metrics(client: &reqwest::Client, service: &Service) -> String {
    let url = format!("{}/metrics", service.url("ops"));
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// Polls `service`'s `/metrics` until the sample `series` (see [`sample`]) is `value`:
/// the readiness signal tests wait on instead of sleeping. Panics after 30 s.
pub async fn wait_for_sample(
    client: &reqwest::Client,
    service: &Service,
    series: &str,
    value: f64,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while sample(&metrics(client, service).await, series) != Some(value) {
        assert!(Instant::now() < deadline, "never saw {series} at {value}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// GETs `url`: the status, the body as text and how long the whole answer took.
pub async fn timed_get(client: &reqwest::Client, url: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (status, body, started.elapsed())
}

/// What `from` sends until it closes (or `limit` passes), as text: for raw HTTP
/// exchanges a client library would not allow (stalled bodies, odd heads).
pub async fn read_until_close<R>(from: &mut R, limit: Duration) -> String
where
    R: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(limit, from.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Stops a master process (nginx, PHP-FPM) that stops its own workers on SIGTERM; kills
/// it if it has not exited within 5 seconds.
fn terminate_master(child: &mut std::process::Child) {
    use wait_timeout::ChildExt;
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if let Ok(Some(_)) = child.wait_timeout(Duration::from_secs(5)) {
        return;
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A TCP connection to `addr` from `source` (any 127.x.y.z address: one machine's tests
/// can be several clients, as a server that counts per client address sees them).
pub async fn connect_from(
    source: std::net::Ipv4Addr,
    addr: SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(addr).await
}

/// A client that announced a body and sent only part of it: a connection from `source`
/// (any 127.x.y.z address, so tests can act as several clients) to `addr`, that sent
/// `POST path` with `Content-Length: declared` and the first `sent` bytes of the body,
/// and is kept open, sending nothing more.
pub async fn stalled_upload(
    source: std::net::Ipv4Addr,
    addr: SocketAddr,
    path: &str,
    declared: u64,
    sent: usize,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = connect_from(source, addr)
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr} from {source}: {e}"));
    let head = format!("POST {path} HTTP/1.1\r\nhost: t\r\ncontent-length: {declared}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("the head");
    stream
        .write_all(&vec![b'x'; sent])
        .await
        .expect("the body's start");
    stream
}

/// Either server's answer to heads that declare 16 MiB bodies and send 200 KiB of them:
/// each holds what arrived (`http_server_request_body_buffered_bytes`), not what it
/// declared, so 17 of them (272 MiB declared, over the default 256 MiB budget) leave room
/// for a 1 KiB `POST /hash/`, which must get 200.
pub async fn heads_declaring_big_bodies_hold_only_what_arrived(service: &Service) {
    let client = examples::client();
    let addr = service.addr("traffic");
    let mut stalled = Vec::new();
    for _ in 0..17 {
        let source = std::net::Ipv4Addr::LOCALHOST;
        stalled.push(stalled_upload(source, addr, "/hash/", 16 << 20, 200 << 10).await);
    }
    wait_for_sample(
        &client,
        service,
        "http_server_request_body_buffered_bytes",
        (17 * (200 << 10)) as f64,
    )
    .await;
    let (status, text) = post_hash(&client, service, 1024).await;
    assert_eq!(status, 200, "{text}");
    drop(stalled);
}

/// `POST /hash/?rounds=1` with a body of `bytes` bytes: the status and the answer's text.
pub async fn post_hash(client: &reqwest::Client, service: &Service, bytes: usize) -> (u16, String) {
    let answer = client
        .post(format!("{}/hash/?rounds=1", service.url("traffic")))
        .body(vec![b'a'; bytes])
        .send()
        .await
        .expect("POST /hash/");
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap_or_default())
}

/// What either server answers to a request whose one header is 64 KiB long (nginx
/// refuses a header line over 8 KiB): its status line. The head is sent while the
/// answer is read, as a server may answer before it has read all of it.
pub async fn answer_to_a_64_kib_header(service: &Service) -> String {
    use tokio::io::AsyncWriteExt;
    let stream = tokio::net::TcpStream::connect(service.addr("traffic"))
        .await
        .expect("connecting");
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "GET /hello/ HTTP/1.1\r\nhost: t\r\nconnection: close\r\nx-big: {}\r\n\r\n",
        "x".repeat(64 << 10)
    );
    let sending = tokio::spawn(async move {
        let _ = write.write_all(head.as_bytes()).await;
        write
    });
    let answer = read_until_close(&mut read, Duration::from_secs(10)).await;
    drop(sending.await);
    answer.lines().next().unwrap_or_default().to_string()
}
