//! This instance's node number and its heartbeat: a random number claimed with `SET NX` on
//! `{prefix}:node:{n}`, refreshed every 5 s with a 15 s expiry and listed in the set
//! `{prefix}:nodes`. Every instance also looks for nodes whose heartbeat expired; the one that
//! removes a dead node from the set removes its presence holdings too.

use super::presence::Presence;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::Duration;

/// How often the heartbeat key is refreshed.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// How long a heartbeat key lives without a refresh.
pub const HEARTBEAT_TTL_S: u64 = 15;
/// Node numbers are below this, so connection ids (`node << 32 | seq`) stay below 2^52 and
/// survive a round trip through a JavaScript number.
const NODE_LIMIT: u32 = 1 << 20;

/// The heartbeat key of node `n`.
pub fn node_key(prefix: &str, n: u32) -> String {
    format!("{prefix}:node:{n}")
}

/// The set listing every node that registered.
pub fn nodes_key(prefix: &str) -> String {
    format!("{prefix}:nodes")
}

/// Claims a free node number.
pub async fn claim(con: &mut ConnectionManager, prefix: &str) -> redis::RedisResult<u32> {
    let started = crate::clock::now_ms();
    for _ in 0..32 {
        let n = (uuid::Uuid::new_v4().as_u128() % u128::from(NODE_LIMIT - 1)) as u32 + 1;
        let ok: Option<String> = redis::cmd("SET")
            .arg(node_key(prefix, n))
            .arg(started)
            .arg("NX")
            .arg("EX")
            .arg(HEARTBEAT_TTL_S)
            .query_async(con)
            .await?;
        if ok.is_some() {
            redis::cmd("SADD")
                .arg(nodes_key(prefix))
                .arg(n)
                .query_async::<()>(con)
                .await?;
            return Ok(n);
        }
    }
    Err(redis::RedisError::from((
        redis::ErrorKind::ClientError,
        "no free node number after 32 tries",
    )))
}

/// Refreshes node `n`'s heartbeat forever; a failure is logged once per outage. When the key
/// was gone (Redis lost its data, or this node was taken for dead), the node registers its
/// presence holdings again.
pub async fn heartbeat(
    mut con: ConnectionManager,
    prefix: String,
    n: u32,
    presence: Arc<Presence>,
) {
    let key = node_key(&prefix, n);
    let nodes = nodes_key(&prefix);
    let mut failing = false;
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        let r: redis::RedisResult<(Option<String>,)> = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(crate::clock::now_ms())
            .arg("EX")
            .arg(HEARTBEAT_TTL_S)
            .arg("GET")
            .cmd("SADD")
            .arg(&nodes)
            .arg(n)
            .ignore()
            .query_async(&mut con)
            .await;
        match r {
            Ok((previous,)) => {
                if failing {
                    failing = false;
                    tracing::info!(node = n, "cluster heartbeat: redis answers again");
                }
                if previous.is_none() {
                    match presence.reassert().await {
                        Ok(k) => tracing::warn!(
                            node = n,
                            holdings = k,
                            "cluster heartbeat: this node's key was gone; presence registered again"
                        ),
                        Err(e) => tracing::warn!(node = n, "presence not registered again: {e}"),
                    }
                }
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(node = n, "cluster heartbeat failed: {e}");
            }
            Err(_) => {}
        }
    }
}

/// Every `HEARTBEAT_EVERY`, removes nodes whose heartbeat expired and their presence holdings.
/// `SREM` decides which instance does it, so each dead node is cleaned up (and its members'
/// leaves reported) once.
pub async fn reaper(mut con: ConnectionManager, prefix: String, me: u32, presence: Arc<Presence>) {
    let nodes = nodes_key(&prefix);
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tick.tick().await;
        let Ok(members) = redis::cmd("SMEMBERS")
            .arg(&nodes)
            .query_async::<Vec<u32>>(&mut con)
            .await
        else {
            continue; // the heartbeat logs outages
        };
        for n in members.into_iter().filter(|&n| n != me) {
            let alive: redis::RedisResult<bool> = redis::cmd("EXISTS")
                .arg(node_key(&prefix, n))
                .query_async(&mut con)
                .await;
            if !matches!(alive, Ok(false)) {
                continue;
            }
            let claimed: redis::RedisResult<i64> = redis::cmd("SREM")
                .arg(&nodes)
                .arg(n)
                .query_async(&mut con)
                .await;
            if claimed != Ok(1) {
                continue;
            }
            match presence.remove_node(n).await {
                Ok(k) => tracing::warn!(
                    node = n,
                    members_gone = k,
                    "node died; its presence removed"
                ),
                Err(e) => tracing::warn!(node = n, "dead node's presence not removed: {e}"),
            }
        }
    }
}
