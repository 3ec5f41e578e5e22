//! The serverless side of the comparison: a wasi:http function host.
//!
//! Where things happen:
//!
//! - [`server`]: the two listeners (function traffic; ops with the deploy API), started
//!   by the same code as the webserver's;
//! - [`control`]: the control plane, every change to what is deployed (deploy, restore,
//!   delete, tier-up), through [`loader`] (compilation and the compiled-code cache) into
//!   the [`registry`], kept durable by the [`store`]; [`api`] is its HTTP face;
//! - [`invoke`]: the data plane: admission, then one executor per ABI (wasi:http, WAGI)
//!   over one runner of fresh instances, with one failure type that is also where
//!   failures are counted;
//! - [`resident`]: which functions have their code in memory: loaded by a first request,
//!   the least recently used unloaded past `--max-loaded-functions`;
//! - [`name`]: a function's name, checked once where it enters;
//! - [`admission`]: what all functions share and none may take whole (instance memory,
//!   pool slots);
//! - [`engine`] (wasmtime's configuration), [`host`] (what a guest can reach),
//!   [`limits`], [`metrics`].

// Public: what the tests, the benchmarks and the CLI reach (the deploy query, settings
// and limits, names, the store's records and digests); the rest is the runtime's own.
mod admission;
pub mod api;
mod cli;
mod compiler;
mod config;
mod control;
mod engine;
mod function;
mod heap;
mod host;
mod invoke;
pub mod limits;
mod loader;
mod logs;
mod metrics;
pub mod name;
mod outbound;
mod registry;
mod resident;
mod secret;
mod server;
pub mod store;
mod tier_up;

pub use cli::{Cli, Command};
pub use config::{Config, ConfigError};
pub use control::ControlPlane;
pub use server::run;
