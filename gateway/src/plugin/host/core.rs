//! The `host` interface: connections, topics, publish, key-value, timers, token checks, logs
//! and counters.

use super::{HostState, MAX_ATTACHMENT, MAX_TOPIC};
use crate::hub::{Conn, HubError};
use crate::kv::KvError;
use crate::plugin::bindings::gateway::plugin::{host, types};
use bytes::Bytes;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// The plugin's view of a connection.
pub fn conn_info(c: &Conn) -> types::ConnInfo {
    types::ConnInfo {
        id: c.id,
        route: c.route.to_string(),
        path: c.head.path().to_string(),
        query: c.head.query().to_string(),
        headers: c
            .head
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        remote_addr: c.remote.to_string(),
        claims: c.claims.as_deref().map(str::to_string),
        subprotocol: c.subprotocol.as_deref().map(str::to_string),
        connected_at_ms: c.connected_at_ms,
        last_seen_ms: c.last_seen_ms.load(Relaxed),
        attachment: c.attachment.lock().to_vec(),
    }
}

fn hub_err(e: HubError) -> types::HostError {
    match e {
        HubError::NotFound => types::HostError::NotFound,
        HubError::TooManyTopics(_) => types::HostError::TooLarge(e.to_string()),
    }
}

impl types::Host for HostState {}

impl HostState {
    /// A local connection of the calling plugin; any other is `not-found`, so a plugin can
    /// neither see nor touch another plugin's connections.
    pub(super) fn own(&self, conn: u64) -> Result<std::sync::Arc<Conn>, types::HostError> {
        self.shared
            .cluster
            .own(conn, &self.shared.name)
            .map_err(hub_err)
    }

    /// `subscribe` and `subscribe-held`: joins `topic`; when the topic is new to this gateway,
    /// returns once the other gateways' publishes reach it.
    async fn join_topic(
        &mut self,
        conn: u64,
        topic: &str,
        held: bool,
    ) -> Result<u32, types::HostError> {
        if topic.len() > MAX_TOPIC {
            return Err(types::HostError::TooLarge(format!(
                "topic longer than {MAX_TOPIC} bytes"
            )));
        }
        self.own(conn)?;
        let key = self.shared.topic_key(topic);
        let hub = &self.shared.hub;
        let n = if held {
            hub.subscribe_held(conn, &key)
        } else {
            hub.subscribe(conn, &key)
        }
        .map_err(hub_err)?;
        if n == 1 {
            let started = Instant::now();
            self.shared.cluster.subscriptions_settled().await;
            self.credit(started);
        }
        Ok(n)
    }
}

impl host::Host for HostState {
    fn send(&mut self, conn: u64, frame: types::Frame) -> Result<(), types::HostError> {
        let bytes = Self::encode(&frame)?;
        self.shared
            .cluster
            .send(conn, &self.shared.name, bytes)
            .map_err(hub_err)
    }

    fn close(&mut self, conn: u64, code: u16, reason: String) -> Result<(), types::HostError> {
        if !matches!(code, 1000 | 1001 | 1008 | 1011 | 1012 | 1013 | 3000..=4999) {
            return Err(types::HostError::Invalid(format!(
                "close code {code} may not be sent by a plugin"
            )));
        }
        self.shared
            .cluster
            .close(conn, &self.shared.name, code, &reason)
            .map_err(hub_err)
    }

    fn set_attachment(&mut self, conn: u64, data: Vec<u8>) -> Result<(), types::HostError> {
        if data.len() > MAX_ATTACHMENT {
            return Err(types::HostError::TooLarge(format!(
                "attachment larger than {MAX_ATTACHMENT} bytes"
            )));
        }
        let c = self.own(conn)?;
        *c.attachment.lock() = Bytes::from(data);
        Ok(())
    }

    fn connection_info(&mut self, conn: u64) -> Option<types::ConnInfo> {
        self.own(conn).ok().map(|c| conn_info(&c))
    }

    async fn subscribe(&mut self, conn: u64, topic: String) -> Result<u32, types::HostError> {
        self.join_topic(conn, &topic, false).await
    }

    async fn subscribe_held(&mut self, conn: u64, topic: String) -> Result<u32, types::HostError> {
        self.join_topic(conn, &topic, true).await
    }

    fn release(&mut self, conn: u64, topic: String, after: String) -> Result<(), types::HostError> {
        self.own(conn)?;
        let after = crate::hold::position(&after)
            .ok_or_else(|| types::HostError::Invalid(format!("bad position '{after}'")))?;
        self.shared
            .hub
            .release(conn, &self.shared.topic_key(&topic), after)
            .map_err(hub_err)
    }

    fn publish_at(
        &mut self,
        topic: String,
        frame: types::Frame,
        except: Option<u64>,
        position: String,
    ) -> u32 {
        let at = crate::hold::position(&position);
        match Self::encode(&frame) {
            Ok(b) => self
                .shared
                .cluster
                .publish_at(&self.shared.topic_key(&topic), &b, except, at),
            Err(_) => 0,
        }
    }

    fn unsubscribe(&mut self, conn: u64, topic: String) -> Result<u32, types::HostError> {
        self.own(conn)?;
        self.shared
            .hub
            .unsubscribe(conn, &self.shared.topic_key(&topic))
            .map_err(hub_err)
    }

    fn members(&mut self, topic: String) -> Vec<u64> {
        self.shared.hub.members(&self.shared.topic_key(&topic))
    }

    fn publish(&mut self, topic: String, frame: types::Frame, except: Option<u64>) -> u32 {
        match Self::encode(&frame) {
            Ok(b) => self
                .shared
                .cluster
                .publish(&self.shared.topic_key(&topic), &b, except),
            Err(_) => 0,
        }
    }

    async fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
        let started = Instant::now();
        let r = self.shared.clone().kv.get(&key).await;
        self.credit(started);
        r
    }

    async fn kv_set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<(), types::HostError> {
        let started = Instant::now();
        let r = self.shared.clone().kv.set(&key, value, ttl_ms).await;
        self.credit(started);
        r.map_err(|e| match e {
            KvError::TooLarge(m) => types::HostError::TooLarge(m),
            KvError::Unavailable(m) => types::HostError::Unavailable(m),
        })
    }

    async fn kv_delete(&mut self, key: String) -> bool {
        let started = Instant::now();
        let r = self.shared.clone().kv.delete(&key).await;
        self.credit(started);
        r
    }

    async fn kv_scan(&mut self, prefix: String, limit: u32) -> Vec<(String, Vec<u8>)> {
        let started = Instant::now();
        let r = self.shared.clone().kv.scan(&prefix, limit as usize).await;
        self.credit(started);
        r
    }

    async fn kv_count(&mut self, prefix: String) -> u64 {
        let started = Instant::now();
        let r = self.shared.clone().kv.count(&prefix).await;
        self.credit(started);
        r
    }

    fn set_timer(&mut self, delay_ms: u64, token: String) -> u64 {
        let id = self
            .shared
            .timers
            .set(Duration::from_millis(delay_ms), token);
        if id == 0 {
            tracing::warn!(plugin = %self.shared.name, "timer limit reached; timer dropped");
        }
        id
    }

    fn cancel_timer(&mut self, id: u64) -> bool {
        self.shared.timers.cancel(id)
    }

    fn verify_token(&mut self, token: String, profile: String) -> Result<String, String> {
        let auth = self.shared.auth.load();
        let v = auth
            .profile(&profile)
            .ok_or_else(|| format!("no auth profile '{profile}'"))?;
        v.verify(&token)
            .map(|c| serde_json::Value::Object(c).to_string())
            .map_err(|e| e.to_string())
    }

    fn log(&mut self, level: host::LogLevel, message: String) {
        let p = &*self.shared.name;
        match level {
            host::LogLevel::Trace => tracing::trace!(plugin = p, "{message}"),
            host::LogLevel::Debug => tracing::debug!(plugin = p, "{message}"),
            host::LogLevel::Info => tracing::info!(plugin = p, "{message}"),
            host::LogLevel::Warn => tracing::warn!(plugin = p, "{message}"),
            host::LogLevel::Error => tracing::error!(plugin = p, "{message}"),
        }
    }

    fn now_ms(&mut self) -> u64 {
        crate::clock::now_ms()
    }

    fn counter_add(&mut self, name: String, value: u64) {
        if name.len() <= 128 {
            let mut m = self.shared.metrics.custom.lock();
            if m.len() < 256 || m.contains_key(&name) {
                *m.entry(name).or_default() += value;
            }
        }
    }
}
