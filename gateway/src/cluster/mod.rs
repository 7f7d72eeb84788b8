//! The cluster bus: what makes N gateways on one Redis behave as one server. Without `[redis]`
//! everything stays in this process; with it, a publish reaches the topic's members on every
//! instance through Redis PUB/SUB ([`bus`]), a frame for a connection of another instance is
//! routed to that instance's channel, and connection ids carry the node number ([`node`]).
//!
//! Delivery across instances is at-most-once, like Redis PUB/SUB itself: a message published
//! while Redis is unreachable, or while the receiving instance is reconnecting, is lost (and
//! counted). Order per publishing instance and topic is kept.

mod bus;
mod interest;
pub mod kv;
mod message;
mod node;
pub mod presence;

pub use bus::BusStats;

use crate::config::RedisConfig;
use crate::hold::Position;
use crate::hub::{ConnId, Hub, HubError, node_of};
use crate::metrics::Metrics;
use bus::RedisBus;
use bytes::Bytes;
use presence::Presence;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Arc;
use std::time::Duration;

/// Why the cluster could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Redis refused or did not answer.
    #[error("cluster bus: {0}")]
    Redis(String),
}

/// The local hub plus, with `[redis]`, the bus to the other instances.
pub struct Cluster {
    hub: Arc<Hub>,
    bus: Option<Arc<RedisBus>>,
    presence: Arc<Presence>,
    /// Redis connection and key prefix, when clustered.
    redis: Option<(ConnectionManager, String)>,
}

impl Cluster {
    /// A single instance: node 0, nothing leaves the process.
    pub fn local(metrics: Arc<Metrics>) -> Arc<Cluster> {
        Arc::new(Cluster {
            hub: Arc::new(Hub::new(metrics)),
            bus: None,
            presence: Presence::local(),
            redis: None,
        })
    }

    /// Joins the cluster on `redis` (claims a node number, starts the heartbeat and the bus), or
    /// stays local without it.
    pub async fn open(
        redis: Option<&RedisConfig>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let Some(cfg) = redis else {
            return Ok(Self::local(metrics));
        };
        let err = |e: redis::RedisError| ClusterError::Redis(e.to_string());
        let url = cfg.resolved_url().map_err(ClusterError::Redis)?;
        let client = redis::Client::open(url.as_str()).map_err(err)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(5))
            .set_max_delay(2000);
        let mut con = tokio::time::timeout(
            Duration::from_secs(10),
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| ClusterError::Redis("connecting to redis timed out".into()))?
        .map_err(err)?;
        let prefix = cfg.cluster_prefix.clone();
        let n = node::claim(&mut con, &prefix).await.map_err(err)?;
        tracing::info!(node = n, prefix = %prefix, "joined the cluster");
        let presence = Presence::redis(n, con.clone(), &prefix);
        {
            let (con, prefix, presence) = (con.clone(), prefix.clone(), presence.clone());
            crate::supervise::spawn("cluster heartbeat", move || {
                node::heartbeat(con.clone(), prefix.clone(), n, presence.clone())
            });
        }
        {
            let (con, prefix, presence) = (con.clone(), prefix.clone(), presence.clone());
            crate::supervise::spawn("cluster reaper", move || {
                node::reaper(con.clone(), prefix.clone(), n, presence.clone())
            });
        }
        let hub = Arc::new(Hub::with_node(metrics, n));
        let bus = RedisBus::start(n, &prefix, client, con.clone(), hub.clone());
        Ok(Arc::new(Cluster {
            hub,
            bus: Some(bus),
            presence,
            redis: Some((con, prefix)),
        }))
    }

    /// The local connections and topics.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Plugin `plugin`'s key-value namespace: in Redis when clustered, else in this process.
    pub fn kv(&self, plugin: &str) -> kv::PluginKv {
        match &self.redis {
            Some((con, prefix)) => {
                kv::PluginKv::Redis(kv::RedisKv::new(con.clone(), prefix, plugin))
            }
            None => kv::PluginKv::Local(crate::kv::Kv::default()),
        }
    }

    /// Cluster-wide presence.
    pub fn presence(&self) -> &Arc<Presence> {
        &self.presence
    }

    /// Forgets a closed connection: its topics here, and the presence it still held (reported
    /// to the plugins as left members).
    pub async fn forget(&self, conn: ConnId) {
        self.hub.remove(conn);
        self.presence.conn_closed(conn).await;
    }

    /// This instance's node number (0 when alone).
    pub fn node(&self) -> u32 {
        self.hub.node()
    }

    /// With `[redis]`, waits until the bus receives every topic that gained its first local
    /// member so far (at most a second; not at all while Redis is unreachable).
    pub async fn subscriptions_settled(&self) {
        if let Some(bus) = &self.bus {
            bus.subscriptions_settled().await;
        }
    }

    /// Bus counters, when clustered.
    pub fn stats(&self) -> Option<&BusStats> {
        self.bus.as_ref().map(|b| &b.stats)
    }

    /// Queues `frame` to every member of `topic` on every instance except `except`. Returns the
    /// number of local recipients; members on other instances are reached through one Redis
    /// `PUBLISH` and are not counted.
    pub fn publish(&self, topic: &str, frame: &Bytes, except: Option<ConnId>) -> u32 {
        self.publish_at(topic, frame, except, None)
    }

    /// Like [`Cluster::publish`], for a frame at position `at` of a retained log (connections
    /// catching up on the topic hold it until they are released; see [`crate::hold`]).
    pub fn publish_at(
        &self,
        topic: &str,
        frame: &Bytes,
        except: Option<ConnId>,
        at: Option<Position>,
    ) -> u32 {
        let n = self.hub.publish_at(topic, frame, except, at);
        if let Some(bus) = &self.bus {
            bus.publish(topic, frame, except, at);
        }
        n
    }

    /// Queues `frame` on connection `conn` of plugin `plugin`, on whichever instance holds it.
    /// A connection of another plugin is `NotFound`; one of another instance is checked there
    /// (the frame is dropped if it is gone or not the plugin's).
    pub fn send(&self, conn: ConnId, plugin: &str, frame: Bytes) -> Result<(), HubError> {
        match &self.bus {
            Some(bus) if node_of(conn) != self.node() => {
                bus.send(node_of(conn), conn, plugin, &frame);
                Ok(())
            }
            _ => {
                let c = self.own(conn, plugin)?;
                self.hub.deliver(&c, frame);
                Ok(())
            }
        }
    }

    /// Closes connection `conn` of plugin `plugin`, on whichever instance holds it.
    pub fn close(
        &self,
        conn: ConnId,
        plugin: &str,
        code: u16,
        reason: &str,
    ) -> Result<(), HubError> {
        match &self.bus {
            Some(bus) if node_of(conn) != self.node() => {
                bus.close(node_of(conn), conn, plugin, code, reason);
                Ok(())
            }
            _ => {
                self.own(conn, plugin)?.outbox.close(code, reason);
                Ok(())
            }
        }
    }

    /// A local connection of plugin `plugin`.
    pub fn own(&self, conn: ConnId, plugin: &str) -> Result<Arc<crate::hub::Conn>, HubError> {
        self.hub
            .get(conn)
            .filter(|c| *c.plugin == *plugin)
            .ok_or(HubError::NotFound)
    }

    /// `/health`'s view of the cluster.
    pub fn health(&self) -> serde_json::Value {
        use std::sync::atomic::Ordering::Relaxed;
        match &self.bus {
            None => serde_json::json!({ "mode": "local", "node": 0 }),
            Some(b) => serde_json::json!({
                "mode": "redis",
                "node": self.node(),
                "channels": b.stats.channels.load(Relaxed),
                "topics": self.hub.topic_count(),
                "published": b.stats.published.load(Relaxed),
                "received": b.stats.received.load(Relaxed),
                "dropped": b.stats.dropped.load(Relaxed),
                "queued_bytes": b.queued_bytes(),
                "connects": b.stats.connects.load(Relaxed),
            }),
        }
    }
}
