//! The runtime as a server: the data plane on the traffic listener, the deploy API on
//! the ops listener beside `/metrics` and `/healthz`, all started, instrumented and
//! stopped by `service_ops::start` exactly like the webserver.

use service_ops::start::App;

use crate::api::Api;
use crate::control::ControlPlane;
use crate::{Config, heap};

/// Runs the runtime until SIGTERM or SIGINT, then drains and returns.
pub fn run(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    service_ops::start::run(&config.listen.listeners(), |prom| {
        // Every function is compiled and checked before a socket is bound.
        let control = ControlPlane::start(&config, prom)?;
        let invoker = control.invoker();
        let api = Api::new(
            control,
            config.deploy_token.clone(),
            config.max_deploy_bytes,
        );
        heap::release_free_memory();
        Ok(App {
            functions: invoker,
            ops: api,
        })
    })
}
