//! The Redis side of the cluster bus: one publisher task that pipelines `PUBLISH` commands from
//! a byte-bounded queue, and one subscriber connection that listens on this instance's channel
//! and on the channels of topics with local members, re-established (and re-subscribed) after
//! every break.

use super::interest::Interest;
use super::message::{self, Message};
use crate::hold::Position;
use crate::hub::{ConnId, Hub};
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;
use tokio::sync::Notify;

/// Bytes of messages waiting to be published before new ones are dropped.
const MAX_QUEUED_BYTES: usize = 16 << 20;
/// Most `PUBLISH` commands in one pipeline.
const MAX_BATCH: usize = 512;
/// How often the subscriber connection is pinged, and how long a reply may take.
const PING_EVERY: Duration = Duration::from_secs(5);
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for a new subscriber connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a new topic's first subscriber waits for Redis to confirm the SUBSCRIBE.
const SETTLE_LIMIT: Duration = Duration::from_secs(1);

/// Most channels named in one SUBSCRIBE or UNSUBSCRIBE.
const SUBSCRIBE_CHUNK: usize = 1024;

/// Counters shown on `/health` and `/metrics`.
#[derive(Default, Debug)]
pub struct BusStats {
    /// Messages published to Redis.
    pub published: AtomicU64,
    /// Messages received from other instances.
    pub received: AtomicU64,
    /// Messages dropped: queue full, or Redis refused the batch.
    pub dropped: AtomicU64,
    /// Channels the subscriber connection listens on now.
    pub channels: AtomicU64,
    /// Times the subscriber connection was (re-)established.
    pub connects: AtomicU64,
}

struct Outgoing {
    channel: String,
    payload: Bytes,
}

/// The instance's connections to the cluster bus.
pub struct RedisBus {
    node: u32,
    topic_prefix: String,
    node_prefix: String,
    client: redis::Client,
    con: ConnectionManager,
    hub: Arc<Hub>,
    interest: Arc<Interest>,
    queue: Mutex<VecDeque<Outgoing>>,
    queued_bytes: AtomicUsize,
    wake: Notify,
    /// Counters.
    pub stats: BusStats,
}

impl RedisBus {
    /// Starts the publisher and subscriber tasks for node `node` of the cluster under `prefix`.
    pub fn start(
        node: u32,
        prefix: &str,
        client: redis::Client,
        con: ConnectionManager,
        hub: Arc<Hub>,
    ) -> Arc<Self> {
        let interest = Arc::new(Interest::default());
        hub.set_interest(interest.clone());
        let bus = Arc::new(Self {
            node,
            topic_prefix: format!("{prefix}:bus:t:"),
            node_prefix: format!("{prefix}:bus:n:"),
            client,
            con,
            hub,
            interest,
            queue: Mutex::new(VecDeque::new()),
            queued_bytes: AtomicUsize::new(0),
            wake: Notify::new(),
            stats: BusStats::default(),
        });
        let b = bus.clone();
        crate::supervise::spawn("cluster bus publisher", move || b.clone().publisher());
        let b = bus.clone();
        crate::supervise::spawn("cluster bus subscriber", move || b.clone().subscriber());
        bus
    }

    /// Waits (briefly) until Redis has confirmed the subscriptions of every topic that gained
    /// local members so far; returns at once while the subscriber is disconnected.
    pub async fn subscriptions_settled(&self) {
        if self.stats.channels.load(Relaxed) > 0 {
            self.interest.settled(SETTLE_LIMIT).await;
        }
    }

    /// Publishes `frame` (at position `at` of a retained log, if it has one) to the other
    /// instances' members of `topic`.
    pub fn publish(&self, topic: &str, frame: &[u8], except: Option<ConnId>, at: Option<Position>) {
        let channel = format!("{}{topic}", self.topic_prefix);
        self.enqueue(channel, message::publish(self.node, except, at, frame));
    }

    /// Sends `frame` to connection `conn` (of plugin `plugin`) of node `node`.
    pub fn send(&self, node: u32, conn: ConnId, plugin: &str, frame: &[u8]) {
        let channel = format!("{}{node}", self.node_prefix);
        self.enqueue(channel, message::send(self.node, conn, plugin, frame));
    }

    /// Closes connection `conn` (of plugin `plugin`) of node `node`.
    pub fn close(&self, node: u32, conn: ConnId, plugin: &str, code: u16, reason: &str) {
        let channel = format!("{}{node}", self.node_prefix);
        self.enqueue(
            channel,
            message::close(self.node, conn, plugin, code, reason),
        );
    }

    /// Bytes waiting to be published.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Relaxed)
    }

    fn enqueue(&self, channel: String, payload: Bytes) {
        let size = channel.len() + payload.len();
        if self.queued_bytes.load(Relaxed) + size > MAX_QUEUED_BYTES {
            self.stats.dropped.fetch_add(1, Relaxed);
            return;
        }
        self.queued_bytes.fetch_add(size, Relaxed);
        self.queue.lock().push_back(Outgoing { channel, payload });
        self.wake.notify_one();
    }

    fn take_batch(&self) -> Vec<Outgoing> {
        let mut q = self.queue.lock();
        let n = q.len().min(MAX_BATCH);
        let batch: Vec<Outgoing> = q.drain(..n).collect();
        drop(q);
        let size: usize = batch
            .iter()
            .map(|o| o.channel.len() + o.payload.len())
            .sum();
        self.queued_bytes.fetch_sub(size, Relaxed);
        batch
    }

    /// Sends queued messages in pipelines, in queue order, so order per publisher and topic
    /// holds. A batch Redis refuses is dropped (at-most-once), and the failure is logged once
    /// per outage.
    async fn publisher(self: Arc<Self>) {
        let mut con = self.con.clone();
        let mut failing = false;
        loop {
            let batch = self.take_batch();
            if batch.is_empty() {
                self.wake.notified().await;
                continue;
            }
            let mut pipe = redis::pipe();
            for o in &batch {
                pipe.cmd("PUBLISH")
                    .arg(&o.channel)
                    .arg(&o.payload[..])
                    .ignore();
            }
            match pipe.query_async::<()>(&mut con).await {
                Ok(()) => {
                    self.stats.published.fetch_add(batch.len() as u64, Relaxed);
                    if failing {
                        failing = false;
                        tracing::info!("cluster bus: publishing to redis again");
                    }
                }
                Err(e) => {
                    self.stats.dropped.fetch_add(batch.len() as u64, Relaxed);
                    if !failing {
                        failing = true;
                        tracing::warn!(
                            "cluster bus: publishing failed ({e}); messages for other instances are dropped until redis answers"
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Keeps one subscriber connection alive, with backoff between attempts.
    async fn subscriber(self: Arc<Self>) {
        let mut failing = false;
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.listen(&mut failing).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    if !failing {
                        failing = true;
                        tracing::warn!(
                            "cluster bus: subscriber connection lost ({e}); reconnecting"
                        );
                    }
                }
            }
            self.stats.channels.store(0, Relaxed);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// One subscriber connection: subscribes to everything wanted, then follows interest
    /// changes and delivers messages until the connection breaks.
    async fn listen(&self, failing: &mut bool) -> Result<(), redis::RedisError> {
        let timeout = || redis::RedisError::from((redis::ErrorKind::IoError, "timed out"));
        let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| timeout())??;
        let (mut sink, mut stream) = pubsub.split();
        let mut subscribed: HashSet<Arc<str>> = HashSet::new();
        sink.subscribe(format!("{}{}", self.node_prefix, self.node))
            .await?;
        let (all, version) = self.interest.all();
        for chunk in all.chunks(SUBSCRIBE_CHUNK) {
            let channels: Vec<String> = chunk.iter().map(|t| self.channel(t)).collect();
            sink.subscribe(channels).await?;
        }
        subscribed.extend(all);
        self.interest.applied(version);
        self.stats.connects.fetch_add(1, Relaxed);
        self.stats
            .channels
            .store(subscribed.len() as u64 + 1, Relaxed);
        if *failing {
            *failing = false;
            tracing::info!(
                channels = subscribed.len() + 1,
                "cluster bus: subscribed again"
            );
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else {
                        return Err(redis::RedisError::from((redis::ErrorKind::IoError, "connection closed")));
                    };
                    self.deliver(msg.get_channel_name(), Bytes::copy_from_slice(msg.get_payload_bytes()));
                }
                _ = self.interest.wait() => self.follow_interest(&mut sink, &mut subscribed).await?,
                _ = ping.tick() => {
                    tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>())
                        .await
                        .map_err(|_| timeout())??;
                    self.follow_interest(&mut sink, &mut subscribed).await?;
                }
            }
        }
    }

    /// Subscribes to topics that gained local members and unsubscribes from those that lost
    /// their last one.
    async fn follow_interest(
        &self,
        sink: &mut redis::aio::PubSubSink,
        subscribed: &mut HashSet<Arc<str>>,
    ) -> Result<(), redis::RedisError> {
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        let (changes, version) = self.interest.changes();
        for (topic, wanted) in changes {
            match (wanted, subscribed.contains(&topic)) {
                (true, false) => {
                    add.push(self.channel(&topic));
                    subscribed.insert(topic);
                }
                (false, true) => {
                    remove.push(self.channel(&topic));
                    subscribed.remove(&topic);
                }
                _ => {}
            }
        }
        for chunk in add.chunks(SUBSCRIBE_CHUNK) {
            sink.subscribe(chunk).await?;
        }
        for chunk in remove.chunks(SUBSCRIBE_CHUNK) {
            sink.unsubscribe(chunk).await?;
        }
        self.interest.applied(version);
        self.stats
            .channels
            .store(subscribed.len() as u64 + 1, Relaxed);
        Ok(())
    }

    fn channel(&self, topic: &str) -> String {
        format!("{}{topic}", self.topic_prefix)
    }

    /// Hands a message from another instance to the local hub.
    fn deliver(&self, channel: &str, payload: Bytes) {
        let Some(msg) = message::decode(payload) else {
            tracing::debug!(channel, "cluster bus: ignoring a foreign message");
            return;
        };
        match msg {
            Message::Publish {
                origin,
                except,
                at,
                frame,
            } => {
                if origin == self.node {
                    return; // delivered locally when it was published
                }
                if let Some(topic) = channel.strip_prefix(&self.topic_prefix) {
                    self.stats.received.fetch_add(1, Relaxed);
                    self.hub.publish_at(topic, &frame, except, at);
                }
            }
            Message::Send {
                conn,
                plugin,
                frame,
                ..
            } => {
                self.stats.received.fetch_add(1, Relaxed);
                if let Some(c) = self.hub.get(conn).filter(|c| *c.plugin == *plugin) {
                    self.hub.deliver(&c, frame);
                }
            }
            Message::Close {
                conn,
                plugin,
                code,
                reason,
                ..
            } => {
                self.stats.received.fetch_add(1, Relaxed);
                if let Some(c) = self.hub.get(conn).filter(|c| *c.plugin == *plugin) {
                    c.outbox.close(code, &reason);
                }
            }
        }
    }
}
