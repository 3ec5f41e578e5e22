//! localrun's integration tests, one binary: the infra/ files against the real tools
//! that read them.

mod compose;
mod docs;
mod infra;
mod k8s;
mod seed;
mod setup;
