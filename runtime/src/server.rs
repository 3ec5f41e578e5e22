//! The runtime as a server: the data plane on the traffic listener, the deploy API on
//! the ops listener beside `/metrics` and `/healthz`, all started, instrumented and
//! stopped by `service_ops::start` exactly like the webserver.

use service_ops::start::App;

use crate::Config;
use crate::api::Api;
use crate::control::ControlPlane;

/// Runs the runtime until SIGTERM or SIGINT, then drains and returns.
pub fn run(config: Config) -> anyhow::Result<()> {
    service_ops::start::run(&config.listen.listeners(), |prom, http| {
        // The configuration is checked and every function compiled before a socket is
        // bound (ControlPlane::start, which also hands compile garbage back to the OS).
        let control = ControlPlane::start(&config, prom)?.with_http_metrics(http.clone());
        let invoker = control.invoker();
        let token = config.token()?;
        if token.is_none() {
            tracing::warn!(
                "no --deploy-token: every local user and process can deploy; the deploy API \
                 takes changes only addressed to localhost (set a token for anything shared)"
            );
        }
        let api = Api::new(
            control,
            token,
            config.max_deploy_bytes,
            config.deploy_body_timeout,
        );
        Ok(App {
            functions: invoker,
            ops: api,
        })
    })
}
