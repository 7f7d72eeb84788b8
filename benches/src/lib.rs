//! Benchmark tooling for the gateway: a bare native broadcast server used as the
//! baseline (`bare-server`), a WebSocket load generator (`load`) and a Yjs load generator
//! (`yjs-load`, a port of `benches/yjs/load.mjs`).
//!
//! The binaries are thin wrappers around the modules here.

pub mod bare;
pub mod client;
pub mod clock;
pub mod frame;
pub mod hist;
pub mod loadgen;
pub mod prefixed;
pub mod target;
pub mod yjsgen;
