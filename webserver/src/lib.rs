//! The traditional side of the comparison: one long-running process that links every
//! example function natively and routes `/{function}/...` to it, meant to sit behind
//! nginx. It starts, serves and is instrumented by the same code as the serverless
//! runtime (`service_ops::start`), so the two differ only in how a request is executed.

mod app;
mod config;
pub mod functions;

pub use config::Config;

/// Runs the webserver until SIGTERM or SIGINT, then drains and returns.
pub fn run(config: Config) -> anyhow::Result<()> {
    service_ops::start::run(&config.listen.listeners(), |registry, _http| {
        let bodies = config.listen.body_reader();
        bodies.register(registry)?;
        Ok(service_ops::start::App {
            functions: std::sync::Arc::new(app::App::new(
                config.max_body_bytes,
                config.timeout,
                bodies,
            )),
            ops: service_ops::start::NoOps,
        })
    })
}
