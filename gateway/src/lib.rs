//! The gateway: authenticates and multiplexes WebSocket and HTTP clients and runs their
//! protocol logic in hot-reloadable wasm plugins.
//!
//! Modules are declared from the top of the dependency graph to the bottom, and each one only
//! imports modules declared after it (`ARCHITECTURE.md` walks through them;
//! `tests/layering.rs` checks the order).
#![deny(missing_docs)]

/// The gateway's version (`Cargo.toml`), shown by `gateway --version`, `/health` and the
/// `gateway_build_info` metric.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The source commit, when the build set `GATEWAY_GIT_COMMIT` (the container build does).
pub const COMMIT: Option<&str> = option_env!("GATEWAY_GIT_COMMIT");

// Listeners, routes, upgrades, health and metrics; start and shutdown.
pub mod server;

// The live configuration and its reload.
pub mod app;

// One WebSocket session: the read and write loops.
pub mod session;

// The wasm plugin host.
pub mod plugin;

// Streams, storage and the compaction worker, opened from the configuration.
pub mod backends;

// Publish, per-connection delivery and node identity across gateways (Redis PUB/SUB).
pub mod cluster;

// The y-redis worker and permission callback.
pub mod yredis;

// Stream backends and the tailer.
pub mod streams;

// Blob storage.
pub mod storage;

// Plugins' key-value namespaces.
pub mod kv;

// Connections, topics and fan-out.
pub mod hub;

// The upgrade request's path, query and headers in one allocation.
pub mod head;

// Frames held back from connections catching up on a topic.
pub mod hold;

// Token buckets: per-connection message and byte rates, the upgrade rate.
pub mod rate;

// WebSocket framing and the bounded outbound queue.
pub mod wire;

// JWT verification.
pub mod auth;

// Counters and their Prometheus text.
pub mod metrics;

// File-change notification.
pub mod watch;

// The `plugins.toml` schema.
pub mod config;

// The process clock.
pub mod clock;

// Background tasks that restart after a panic, loudly.
pub mod supervise;
