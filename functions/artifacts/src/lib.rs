//! Paths of the example functions compiled to `wasm32-wasip2` components and to
//! `wasm32-wasip1` commands (WAGI), plus the test programs and the C example, built once
//! by this crate's build script for every test and tool that needs them.
//!
//! ```
//! let bytes = std::fs::read(artifacts::HELLO_COMPONENT).unwrap();
//! assert!(!bytes.is_empty());
//! ```

include!(concat!(env!("OUT_DIR"), "/components.rs"));

/// The path of the WASI 0.1 build of the example function `name`, if there is one.
pub fn module(name: &str) -> Option<&'static str> {
    MODULES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, path)| *path)
}

/// The path of the component named `name`, if there is one.
pub fn component(name: &str) -> Option<&'static str> {
    FUNCTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, path)| *path)
}
