service_ops::listener_flags!(
    Listen,
    env_prefix = "WEBSERVER",
    traffic = "127.0.0.1:8000",
    ops = "127.0.0.1:8001",
    // Behind nginx, every request comes from nginx: no cap per address.
    per_peer = "0"
);

/// The traditional server: the example functions linked natively, behind nginx.
#[derive(clap::Parser, Debug, Clone)]
#[command(version, about)]
pub struct Config {
    #[command(flatten)]
    pub listen: Listen,

    /// Wall-clock deadline per request (`30s`, `500ms`, or a number of seconds), the
    /// runtime's default too: a handler still running then is dropped at its next
    /// yield and the client gets 504.
    #[arg(long, visible_alias = "timeout-secs", env = "WEBSERVER_TIMEOUT",
          default_value = "30s", value_parser = service_ops::positive_duration)]
    pub timeout: std::time::Duration,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "WEBSERVER_MAX_BODY_BYTES", default_value_t = 16 << 20)]
    pub max_body_bytes: u64,
}
