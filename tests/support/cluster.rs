//! Gateways sharing one real `redis-server`: [`GatewayPair`] and [`settled`], the wait for a
//! gateway's bus subscriptions to match its local topics.

use std::time::Duration;

use super::configs::chat_config;
use super::gateway::Gateway;
use super::process::GatewayBuilder;
use super::redis::RedisServer;

/// `config` plus a `[redis]` section pointing at `redis`.
pub fn with_redis(config: &str, redis: &RedisServer) -> String {
    format!("{config}\n[redis]\nurl = \"{}\"\n", redis.url())
}

/// Two chat gateways on one Redis, sharing a JWT secret.
pub struct GatewayPair {
    /// The first gateway.
    pub a: Gateway,
    /// The second gateway.
    pub b: Gateway,
    /// Their Redis.
    pub redis: RedisServer,
}

impl GatewayPair {
    /// Starts Redis and two gateways with the chat config.
    pub fn chat() -> GatewayPair {
        let redis = RedisServer::start();
        let secret = format!(
            "cluster-test-secret-{}-{}-0123456789abcdef",
            std::process::id(),
            redis.addr.port()
        );
        let cfg = with_redis(&chat_config(None), &redis);
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
