//! The gateway: authenticates and multiplexes WebSocket and HTTP clients and runs their
//! protocol logic in hot-reloadable wasm plugins.
#![deny(missing_docs)]

pub mod app;
pub mod auth;
pub mod backends;
pub mod config;
pub mod conn;
pub mod dev;
pub mod hub;
pub mod kv;
pub mod metrics;
pub mod plugin;
pub mod scaffold;
pub mod server;
pub mod storage;
pub mod streams;
pub mod watch;
pub mod worker;
