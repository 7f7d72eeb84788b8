//! Shared harness for the integration tests: spawns a real `gateway` process on 127.0.0.1:0,
//! talks to it over real sockets (HTTP/1.1 and WebSocket) and mints tokens.
//!
//! Every wait is bounded by a timeout; timeouts are failure bounds, never assertions about speed.
#![allow(dead_code)] // every test binary uses its own subset of the harness

use std::time::Duration;

mod cluster;
mod configs;
mod gateway;
mod http;
mod paths;
mod process;
mod prom;
mod redis;
mod tokens;
mod ws;
mod ws_client;

// Each test binary uses its own subset of these re-exports (as with `dead_code` above).
#[allow(unused_imports)]
pub use cluster::{GatewayPair, settled, shipped_config, with_redis};
#[allow(unused_imports)]
pub use configs::{CHAT_PLUGIN, CHAT_ROUTES, DEFAULT_AUTH, chat_config, replace_file};
#[allow(unused_imports)]
pub use gateway::Gateway;
#[allow(unused_imports)]
pub use http::{HttpResponse, http_request};
#[allow(unused_imports)]
pub use paths::{fixture, gateway_bin, plugin_wasm, repo_root, unique_temp_dir};
#[allow(unused_imports)]
pub use process::{GatewayBuilder, parse_listening_line};
#[allow(unused_imports)]
pub use prom::Metrics;
#[allow(unused_imports)]
pub use redis::RedisServer;
#[allow(unused_imports)]
pub use tokens::{
    alg_none, decode_payload, es256, hs256, now_millis, now_secs, rs256, user_claims, with_payload,
};
#[allow(unused_imports)]
pub use ws::{WsConnectError, WsEvent, WsOptions, ws_connect};
#[allow(unused_imports)]
pub use ws_client::{WsClient, WsSender, msg_type};

/// Upper bound for any single expected event (a frame, a response, a close).
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for the gateway to start listening (it may compile plugins on a cold cache).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);

/// Admin key given to gateways started with an admin key.
pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

/// Log text without terminal colours.
pub fn plain(logs: &str) -> String {
    let mut out = String::with_capacity(logs.len());
    let mut chars = logs.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// Resident set size of a process in KiB (0 when it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
