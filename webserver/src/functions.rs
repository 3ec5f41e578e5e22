//! The example functions, linked natively: the same source the wasm components are
//! built from.

use std::future::Future;
use std::pin::Pin;

pub type HandlerFuture = Pin<Box<dyn Future<Output = sdk::Result> + Send>>;
pub type Handler = fn(sdk::Request) -> HandlerFuture;

/// Every function this server routes, by the name that is its first path segment.
pub const FUNCTIONS: &[(&str, Handler)] = &[
    ("hello", |r| Box::pin(hello::handle(r))),
    ("sleep", |r| Box::pin(sleep::handle(r))),
    ("hash", |r| Box::pin(hash::handle(r))),
    ("memory", |r| Box::pin(memory::handle(r))),
];

/// The function named `name`, with its name as a `'static` label.
pub fn lookup(name: &str) -> Option<(&'static str, Handler)> {
    FUNCTIONS.iter().find(|(n, _)| *n == name).copied()
}
