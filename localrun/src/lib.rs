//! Runs the real pieces of the comparison on 127.0.0.1 and cleans up after them.
//!
//! - [`Service`]: one of our binaries, started with `--listen 127.0.0.1:0` style flags;
//!   its addresses are read from the `NAME listening on http://ADDR` lines it prints.
//! - [`Nginx`]: a real nginx in front of the webserver, configured from the same template
//!   compose uses (`infra/nginx/templates/`), rendered into a temporary prefix.
//!
//! Everything started is killed when its handle drops, so a failing test leaves nothing
//! running.

mod nginx;
mod service;

pub use nginx::{Nginx, NginxPorts, find_nginx, render_nginx_template};
pub use service::Service;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1, for programs (nginx) that cannot bind port 0 and report the
/// port. Another process may take it before ours binds; callers retry on a bind failure.
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
