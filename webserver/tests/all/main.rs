//! The webserver as users run it: the real binary on 127.0.0.1, alone and behind a real
//! nginx, over real sockets.

mod functions;
mod metrics;
mod nginx;
mod shutdown;
mod under_load;

use localrun::Service;

/// Starts the webserver on free ports with `extra` flags.
pub fn start(extra: &[&str]) -> Service {
    let mut args = vec!["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Service::start(env!("CARGO_BIN_EXE_webserver"), &args, &["traffic", "ops"])
        .expect("webserver starts")
}
