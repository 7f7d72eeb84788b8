//! Gateways sharing one real `redis-server`: [`GatewayPair`] and [`settled`], the wait for a
//! gateway's bus subscriptions to match its local topics.

use std::time::Duration;

use super::gateway::Gateway;
use super::paths::{repo_root, shared_cache_dir, toml_path};
use super::process::GatewayBuilder;
use super::redis::RedisServer;

/// `config` plus a `[redis]` section pointing at `redis`.
pub fn with_redis(config: &str, redis: &RedisServer) -> String {
    format!("{config}\n[redis]\nurl = \"{}\"\n", redis.url())
}

/// The shipped `plugins.toml`, made to run in a test: one listener on a free port, the shared
/// compile cache, plugin paths made absolute (data directories stay relative to the test's
/// own directory).
pub fn shipped_config() -> String {
    let path = repo_root().join("plugins.toml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let dist = repo_root().join("dist").join("plugins");
    let dist = toml_path(&dist);
    let dist = &dist[1..dist.len() - 1];
    text.lines()
        .map(|line| {
            if line.starts_with("listen = ") {
                "listen = [\"127.0.0.1:0\"]".to_string()
            } else if line.starts_with("cache_dir = ") {
                format!("cache_dir = {}", toml_path(&shared_cache_dir()))
            } else {
                line.replace("wasm = \"dist/plugins", &format!("wasm = \"{dist}"))
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Two gateways with the shipped `plugins.toml` plus `[redis] url`, sharing a JWT secret.
pub struct GatewayPair {
    /// The first gateway.
    pub a: Gateway,
    /// The second gateway.
    pub b: Gateway,
    /// Their Redis.
    pub redis: RedisServer,
}

impl GatewayPair {
    /// Starts Redis and two gateways with the shipped config (chat on `/ws`, Yjs on `/yjs/*`).
    pub fn chat() -> GatewayPair {
        let redis = RedisServer::start();
        let secret = format!(
            "cluster-test-secret-{}-{}-0123456789abcdef",
            std::process::id(),
            redis.addr.port()
        );
        let cfg = with_redis(&shipped_config(), &redis);
        let a = GatewayBuilder::new(cfg.clone()).jwt_secret(&secret).start();
        let b = GatewayBuilder::new(cfg).jwt_secret(&secret).start();
        GatewayPair { a, b, redis }
    }
}

/// Waits until `gw`'s bus listens on every topic with local members (its own channel plus one
/// per topic); at once for a gateway without `[redis]`. Cross-gateway delivery is at-most-once:
/// what is published before a gateway subscribed a topic does not reach it.
pub async fn settled(gw: &Gateway) {
    gw.wait_health("bus subscriptions", Duration::from_secs(10), |h| {
        let c = &h["cluster"];
        c["mode"] == "local" || c["channels"].as_u64() == c["topics"].as_u64().map(|t| t + 1)
    })
    .await;
}
