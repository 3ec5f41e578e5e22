service_ops::listener_flags!(
    Listen,
    env_prefix = "WEBSERVER",
    traffic = "127.0.0.1:8000",
    ops = "127.0.0.1:8001"
);

/// The traditional server: the example functions linked natively, behind nginx.
#[derive(clap::Parser, Debug, Clone)]
#[command(version, about)]
pub struct Config {
    #[command(flatten)]
    pub listen: Listen,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "WEBSERVER_MAX_BODY_BYTES", default_value_t = 16 << 20)]
    pub max_body_bytes: u64,
}
