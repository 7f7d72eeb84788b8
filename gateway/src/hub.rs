//! Live connections and topic membership. Fan-out happens here, natively: one publish clones
//! a shared, already-encoded frame into each subscriber's bounded outbox.

use crate::config::Limits;
use crate::hold::{Holds, Position, Released, Verdict};
use crate::metrics::Metrics;
use crate::wire::outbox::{Outbox, Push};
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

/// A connection id, unique across the cluster: the instance's node number in the high 32 bits
/// (0 without `[redis]`) and a per-process sequence in the low 32 bits.
pub type ConnId = u64;

/// The node number a connection id belongs to.
pub fn node_of(id: ConnId) -> u32 {
    (id >> 32) as u32
}

/// Told when a topic gains its first local member or loses its last one (the cluster bus
/// subscribes the instance to the topic's channel only while it has local members).
pub trait TopicInterest: Send + Sync {
    /// `topic` now has local members (`true`) or none any more (`false`).
    fn changed(&self, topic: &str, interested: bool);
}

/// One WebSocket connection as the host tracks it.
pub struct Conn {
    /// Cluster-unique id.
    pub id: ConnId,
    /// The plugin handling it.
    pub plugin: Arc<str>,
    /// The route pattern that accepted it.
    pub route: Arc<str>,
    /// Upgrade request path, query and headers (lower-case names).
    pub head: crate::head::RequestHead,
    /// Peer address.
    pub remote: SocketAddr,
    /// Verified claims as JSON.
    pub claims: Option<Arc<str>>,
    /// Negotiated subprotocol.
    pub subprotocol: Option<Box<str>>,
    /// Unix ms when accepted.
    pub connected_at_ms: u64,
    /// Unix ms of the last frame from the client.
    pub last_seen_ms: AtomicU64,
    /// Bytes the plugin stored with the connection.
    pub attachment: Mutex<Bytes>,
    /// Topic keys this connection is subscribed to.
    topics: Mutex<Vec<Arc<str>>>,
    /// Frames waiting to be written.
    pub outbox: Outbox,
    /// Effective limits of its route.
    pub limits: Limits,
    /// Unix ms when the connection's token expires; the connection is closed then.
    pub expires_at_ms: Option<u64>,
}

impl Conn {
    /// How many topics the connection is subscribed to.
    pub fn topic_count(&self) -> usize {
        self.topics.lock().len()
    }
}

/// Everything needed to register a connection.
pub struct ConnSpec {
    /// The plugin handling it.
    pub plugin: Arc<str>,
    /// The route pattern.
    pub route: Arc<str>,
    /// Request path.
    pub path: String,
    /// Raw query.
    pub query: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// Peer address.
    pub remote: SocketAddr,
    /// Verified claims as JSON.
    pub claims: Option<String>,
    /// Negotiated subprotocol.
    pub subprotocol: Option<String>,
    /// Effective limits.
    pub limits: Limits,
    /// Unix ms when the token expires.
    pub expires_at_ms: Option<u64>,
}

/// Why a hub operation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HubError {
    /// No such connection.
    #[error("connection not found")]
    NotFound,
    /// The connection is at its topic limit.
    #[error("too many topics for one connection (limit {0})")]
    TooManyTopics(usize),
}

/// Most topics one connection may join.
pub const MAX_TOPICS_PER_CONN: usize = 1024;

/// The local members of one topic.
type Members = HashMap<ConnId, Arc<Conn>>;

/// Connections and topics of the whole process.
pub struct Hub {
    conns: RwLock<HashMap<ConnId, Arc<Conn>>>,
    topics: RwLock<HashMap<Arc<str>, Members>>,
    next_id: AtomicU64,
    node: u32,
    interest: OnceLock<Arc<dyn TopicInterest>>,
    metrics: Arc<Metrics>,
    holds: Holds,
    /// Live connections per peer IP address.
    per_ip: Mutex<HashMap<std::net::IpAddr, usize>>,
    /// Live connections per route (counted under the `per_ip` lock).
    per_route: Mutex<HashMap<Arc<str>, usize>>,
    /// Plugins that append to or tail streams: their clients hold stream data the backend may
    /// lose (see [`Hub::resync_stream_clients`]).
    stream_plugins: parking_lot::RwLock<std::collections::HashSet<Arc<str>>>,
}

/// Caps checked when a connection is admitted (0 = no cap).
#[derive(Debug, Clone, Copy, Default)]
pub struct Admission {
    /// Most connections in this process.
    pub max_total: usize,
    /// Most connections from one IP address.
    pub max_per_ip: usize,
    /// Most connections on the connection's route.
    pub max_per_route: usize,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The process holds `max_total` connections.
    Full,
    /// The peer's address holds `max_per_ip` connections.
    TooManyFromIp,
    /// The route holds `max_per_route` connections.
    RouteFull,
}

impl Hub {
    /// An empty hub of a process that is not part of a cluster (node 0).
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self::with_node(metrics, 0)
    }

    /// An empty hub whose connection ids carry node number `node`.
    pub fn with_node(metrics: Arc<Metrics>, node: u32) -> Self {
        Self {
            conns: RwLock::default(),
            topics: RwLock::default(),
            next_id: AtomicU64::new((u64::from(node) << 32) | 1),
            node,
            interest: OnceLock::new(),
            metrics,
            holds: Holds::default(),
            per_ip: Mutex::default(),
            per_route: Mutex::default(),
            stream_plugins: parking_lot::RwLock::default(),
        }
    }

    /// This instance's node number (0 when not clustered).
    pub fn node(&self) -> u32 {
        self.node
    }

    /// Sets who is told about topics gaining their first or losing their last local member
    /// (once; later calls are ignored).
    pub fn set_interest(&self, interest: Arc<dyn TopicInterest>) {
        let _ = self.interest.set(interest);
    }

    fn interest_changed(&self, topic: &str, interested: bool) {
        if let Some(i) = self.interest.get() {
            i.changed(topic, interested);
        }
    }

    /// How many topics have local members.
    pub fn topic_count(&self) -> usize {
        self.topics.read().len()
    }

    /// Registers a new connection if `caps` allow it (counted exactly, under one lock).
    pub fn admit(&self, spec: ConnSpec, caps: Admission) -> Result<Arc<Conn>, Refused> {
        let ip = spec.remote.ip();
        {
            let mut per_ip = self.per_ip.lock();
            if caps.max_total > 0 && self.len() >= caps.max_total {
                return Err(Refused::Full);
            }
            let mut per_route = self.per_route.lock();
            let on_route = per_route.get(&spec.route).copied().unwrap_or(0);
            if caps.max_per_route > 0 && on_route >= caps.max_per_route {
                return Err(Refused::RouteFull);
            }
            let n = per_ip.entry(ip).or_default();
            if caps.max_per_ip > 0 && *n >= caps.max_per_ip {
                if *n == 0 {
                    per_ip.remove(&ip);
                }
                return Err(Refused::TooManyFromIp);
            }
            *n += 1;
            *per_route.entry(spec.route.clone()).or_default() += 1;
        }
        Ok(self.insert(spec))
    }

    /// Registers a connection whose admission was counted; its outbox accepts frames at once.
    fn insert(&self, spec: ConnSpec) -> Arc<Conn> {
        let id = self.next_id.fetch_add(1, Relaxed);
        let now = crate::clock::now_ms();
        let conn = Arc::new(Conn {
            id,
            plugin: spec.plugin,
            route: spec.route,
            head: crate::head::RequestHead::new(&spec.path, &spec.query, &spec.headers),
            remote: spec.remote,
            claims: spec.claims.map(Arc::from),
            subprotocol: spec.subprotocol.map(String::into_boxed_str),
            connected_at_ms: now,
            last_seen_ms: AtomicU64::new(now),
            attachment: Mutex::new(Bytes::new()),
            topics: Mutex::new(Vec::new()),
            outbox: Outbox::new(spec.limits.queue_max_bytes, spec.limits.queue_max_frames),
            limits: spec.limits,
            expires_at_ms: spec.expires_at_ms,
        });
        self.conns.write().insert(id, conn.clone());
        conn
    }

    /// Forgets a connection and all its subscriptions.
    pub fn remove(&self, id: ConnId) {
        let Some(conn) = self.conns.write().remove(&id) else {
            return;
        };
        {
            let mut per_ip = self.per_ip.lock();
            let ip = conn.remote.ip();
            if let Some(n) = per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&ip);
                }
            }
            let mut per_route = self.per_route.lock();
            if let Some(n) = per_route.get_mut(&conn.route) {
                *n -= 1;
                if *n == 0 {
                    per_route.remove(&conn.route);
                }
            }
        }
        if self.holds.any() {
            self.holds.drop_conn(id);
        }
        let topics = std::mem::take(&mut *conn.topics.lock());
        if topics.is_empty() {
            return;
        }
        let mut map = self.topics.write();
        for t in topics {
            if let Some(m) = map.get_mut(&t) {
                m.remove(&id);
                if m.is_empty() {
                    map.remove(&t);
                    self.interest_changed(&t, false);
                }
            }
        }
    }

    /// A connection by id.
    pub fn get(&self, id: ConnId) -> Option<Arc<Conn>> {
        self.conns.read().get(&id).cloned()
    }

    /// Notes that `plugin` appends to or tails streams.
    pub fn mark_stream_plugin(&self, plugin: &str) {
        if !self.stream_plugins.read().contains(plugin) {
            self.stream_plugins.write().insert(Arc::from(plugin));
        }
    }

    /// The stream backend lost data: closes every connection of a plugin that uses streams
    /// with 1013, so its client reconnects and sends the state the backend no longer has (a
    /// Yjs client re-syncs). Returns how many were closed.
    pub fn resync_stream_clients(&self) -> usize {
        let plugins = self.stream_plugins.read().clone();
        let mut closed = 0;
        for c in self.all() {
            if plugins.contains(c.plugin.as_ref())
                && c.outbox.close(1013, "stream data lost, re-sync")
            {
                closed += 1;
            }
        }
        closed
    }

    /// Every live connection.
    pub fn all(&self) -> Vec<Arc<Conn>> {
        self.conns.read().values().cloned().collect()
    }

    /// Up to `limit` live connections (in no particular order) and how many there are in all,
    /// for the admin page: the copy stays bounded however many connections are open.
    pub fn sample(&self, limit: usize) -> (usize, Vec<Arc<Conn>>) {
        let conns = self.conns.read();
        (conns.len(), conns.values().take(limit).cloned().collect())
    }

    /// Up to `limit` topic keys with their local member counts (in no particular order) and how
    /// many topics have local members in all.
    pub fn topic_sample(&self, limit: usize) -> (usize, Vec<(Arc<str>, usize)>) {
        let topics = self.topics.read();
        let list = topics
            .iter()
            .take(limit)
            .map(|(k, m)| (k.clone(), m.len()))
            .collect();
        (topics.len(), list)
    }

    /// Number of live connections.
    pub fn len(&self) -> usize {
        self.conns.read().len()
    }

    /// Whether no connection is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues an encoded frame on a connection, applying the slow-consumer policy.
    pub fn deliver(&self, conn: &Conn, frame: Bytes) -> bool {
        let ok = self.push(conn, frame);
        if ok {
            self.metrics.frames_out.fetch_add(1, Relaxed);
        }
        ok
    }

    fn push(&self, conn: &Conn, frame: Bytes) -> bool {
        match conn.outbox.push(frame) {
            Push::Queued => true,
            Push::Overflow => {
                self.metrics.slow_consumer_drops.fetch_add(1, Relaxed);
                tracing::warn!(conn = conn.id, remote = %conn.remote, "slow consumer: outbound queue full, closing with 1008");
                false
            }
            Push::Closed => false,
        }
    }

    /// Adds a connection to a topic; returns the topic's local member count afterwards.
    pub fn subscribe(&self, id: ConnId, topic: &str) -> Result<u32, HubError> {
        let conn = self.get(id).ok_or(HubError::NotFound)?;
        let mut ct = conn.topics.lock();
        let mut map = self.topics.write();
        let key: Arc<str> = match map.get_key_value(topic) {
            Some((k, _)) => k.clone(),
            None => Arc::from(topic),
        };
        let members = map.entry(key.clone()).or_default();
        if members.insert(id, conn.clone()).is_none() {
            if ct.len() >= MAX_TOPICS_PER_CONN {
                members.remove(&id);
                if members.is_empty() {
                    map.remove(topic);
                }
                return Err(HubError::TooManyTopics(MAX_TOPICS_PER_CONN));
            }
            ct.push(key);
        }
        let n = map.get(topic).map_or(0, |m| m.len() as u32);
        if n == 1 {
            self.interest_changed(topic, true);
        }
        Ok(n)
    }

    /// Subscribes like [`Hub::subscribe`], holding positioned frames of the topic for this
    /// connection until [`Hub::release`] (see [`crate::hold`]).
    pub fn subscribe_held(&self, id: ConnId, topic: &str) -> Result<u32, HubError> {
        self.holds.start(id, topic);
        let r = self.subscribe(id, topic);
        if r.is_err() {
            self.holds.drop_topic(id, topic);
        }
        r
    }

    /// Ends a hold: queues the held frames positioned after `after`, in position order. A hold
    /// that overflowed closes the connection with 1013 instead (its client recovers).
    pub fn release(&self, id: ConnId, topic: &str, after: Position) -> Result<(), HubError> {
        let conn = self.get(id).ok_or(HubError::NotFound)?;
        match self.holds.release(id, topic, after) {
            Released::Frames(frames) => {
                for f in frames {
                    self.deliver(&conn, f);
                }
            }
            Released::Overflowed => {
                conn.outbox.close(1013, "too much to catch up, reconnect");
            }
        }
        Ok(())
    }

    /// Removes a connection from a topic; returns how many local members remain.
    pub fn unsubscribe(&self, id: ConnId, topic: &str) -> Result<u32, HubError> {
        let conn = self.get(id).ok_or(HubError::NotFound)?;
        if self.holds.any() {
            self.holds.drop_topic(id, topic);
        }
        let mut ct = conn.topics.lock();
        ct.retain(|t| &**t != topic);
        let mut map = self.topics.write();
        let remaining = match map.get_mut(topic) {
            Some(m) => {
                m.remove(&id);
                m.len() as u32
            }
            None => return Ok(0),
        };
        if remaining == 0 {
            map.remove(topic);
            self.interest_changed(topic, false);
        }
        Ok(remaining)
    }

    /// The local members of a topic.
    pub fn members(&self, topic: &str) -> Vec<ConnId> {
        self.topics
            .read()
            .get(topic)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    /// How many local connections a topic has.
    pub fn topic_len(&self, topic: &str) -> usize {
        self.topics.read().get(topic).map_or(0, |m| m.len())
    }

    /// Queues one shared frame to every member of a topic except `except`; returns the count.
    pub fn publish(&self, topic: &str, frame: &Bytes, except: Option<ConnId>) -> u32 {
        self.publish_at(topic, frame, except, None)
    }

    /// Like [`Hub::publish`], for a frame at position `at` of a retained log: members holding
    /// the topic keep it back until they are released (see [`crate::hold`]).
    pub fn publish_at(
        &self,
        topic: &str,
        frame: &Bytes,
        except: Option<ConnId>,
        at: Option<Position>,
    ) -> u32 {
        let map = self.topics.read();
        let Some(members) = map.get(topic) else {
            return 0;
        };
        let holding = at.filter(|_| self.holds.any() && self.holds.topic_held(topic));
        let mut n = 0;
        for (id, conn) in members {
            if Some(*id) == except {
                continue;
            }
            if let Some(at) = holding {
                match self.holds.offer(*id, topic, at, frame) {
                    Verdict::Deliver => {}
                    Verdict::Held => continue,
                    Verdict::Overflow => {
                        conn.outbox.close(1013, "too much to catch up, reconnect");
                        continue;
                    }
                }
            }
            if self.push(conn, frame.clone()) {
                n += 1;
            }
        }
        self.metrics.frames_out.fetch_add(n as u64, Relaxed);
        n
    }
}
