use std::net::SocketAddr;
use std::time::Duration;

/// The traditional server: the example functions linked natively, behind nginx.
#[derive(clap::Parser, Debug, Clone)]
#[command(version, about)]
pub struct Config {
    /// Address for function traffic (`/{function}/...`).
    #[arg(long, env = "WEBSERVER_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    /// Address for `/metrics` and `/healthz`.
    #[arg(long, env = "WEBSERVER_OPS_LISTEN", default_value = "127.0.0.1:8001")]
    pub ops_listen: SocketAddr,

    /// Largest request body accepted; larger ones get 413.
    #[arg(long, env = "WEBSERVER_MAX_BODY_BYTES", default_value_t = 16 << 20)]
    pub max_body_bytes: usize,

    /// Seconds in-flight requests may take to finish after SIGTERM.
    #[arg(long, env = "WEBSERVER_DRAIN_TIMEOUT_SECS", default_value_t = 30.0)]
    pub drain_timeout_secs: f64,

    /// Seconds a client may take to send its request headers.
    #[arg(
        long,
        env = "WEBSERVER_HEADER_READ_TIMEOUT_SECS",
        default_value_t = 10.0
    )]
    pub header_read_timeout_secs: f64,

    /// Tokio worker threads (default: one per core).
    #[arg(long, env = "WEBSERVER_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
}

impl Config {
    /// Checks what clap's types cannot, before anything binds.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (name, secs) in [
            ("--drain-timeout-secs", self.drain_timeout_secs),
            ("--header-read-timeout-secs", self.header_read_timeout_secs),
        ] {
            anyhow::ensure!(
                secs.is_finite() && secs > 0.0,
                "{name} must be a positive number of seconds, got {secs}"
            );
        }
        anyhow::ensure!(
            self.worker_threads != Some(0),
            "--worker-threads must be at least 1"
        );
        anyhow::ensure!(
            self.listen != self.ops_listen || self.listen.port() == 0,
            "--listen and --ops-listen must differ"
        );
        Ok(())
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.drain_timeout_secs)
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.header_read_timeout_secs)
    }
}
