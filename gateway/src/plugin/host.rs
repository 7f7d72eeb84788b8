//! The host side of the plugin imports: what a plugin may ask of the gateway.

use super::bindings::gateway::plugin::{host, storage, streams, types};
use super::slot::PluginShared;
use crate::conn::codec;
use crate::hub::HubError;
use crate::streams::StreamId;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Largest attachment a plugin may store per connection.
pub const MAX_ATTACHMENT: usize = 64 << 10;
/// Most pending timers per plugin.
pub const MAX_TIMERS: usize = 100_000;
/// Longest topic name.
pub const MAX_TOPIC: usize = 512;

/// The store's memory cap, plus the largest linear memory the instance has grown to (linear
/// memory never shrinks, so an instance that once held a large document is recycled).
pub struct TrackedLimits {
    inner: StoreLimits,
    /// Largest memory size granted so far, in bytes.
    pub peak_memory: usize,
}

impl wasmtime::ResourceLimiter for TrackedLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = self.inner.memory_growing(current, desired, maximum)?;
        if ok {
            self.peak_memory = self.peak_memory.max(desired);
        }
        Ok(ok)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// Per-instance host state.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
    /// Memory cap enforcement, remembering how far memory grew.
    pub limits: TrackedLimits,
    /// What the imports act on.
    pub shared: Arc<PluginShared>,
    /// When the running call must stop.
    pub deadline: Instant,
    /// The connection whose event is being handled, if any.
    pub current_conn: Option<u64>,
}

impl HostState {
    /// Fresh state: WASI with no preopened directories, no sockets, stderr captured.
    pub fn new(shared: Arc<PluginShared>, memory_limit: usize) -> Self {
        let stderr = MemoryOutputPipe::new(4096);
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            stderr,
            limits: TrackedLimits {
                inner: StoreLimitsBuilder::new()
                    .memory_size(memory_limit)
                    .instances(64)
                    .tables(64)
                    .memories(8)
                    .build(),
                peak_memory: 0,
            },
            shared,
            deadline: Instant::now(),
            current_conn: None,
        }
    }

    /// What the guest wrote to stderr (a panic message, say), formatted for an error line.
    pub fn stderr_tail(&self) -> String {
        let b = self.stderr.contents();
        let s = String::from_utf8_lossy(&b);
        let s = s.trim();
        if s.is_empty() {
            String::new()
        } else {
            let tail: String = s
                .chars()
                .rev()
                .take(300)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!(" (guest stderr: {tail})")
        }
    }

    /// Encodes a plugin frame as a server WebSocket frame (at most 64 MiB).
    pub fn encode(frame: &types::Frame) -> Result<Bytes, types::HostError> {
        let (op, data): (u8, &[u8]) = match frame {
            types::Frame::Text(s) => (codec::op::TEXT, s.as_bytes()),
            types::Frame::Binary(b) => (codec::op::BINARY, b),
        };
        if data.len() > 64 << 20 {
            return Err(types::HostError::TooLarge(
                "frame larger than 64 MiB".into(),
            ));
        }
        Ok(codec::encode(op, data))
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn hub_err(e: HubError) -> types::HostError {
    match e {
        HubError::NotFound => types::HostError::NotFound,
        HubError::TooManyTopics(_) => types::HostError::TooLarge(e.to_string()),
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn send(&mut self, conn: u64, frame: types::Frame) -> Result<(), types::HostError> {
        let bytes = Self::encode(&frame)?;
        self.shared.hub.send(conn, bytes).map_err(hub_err)
    }

    fn close(&mut self, conn: u64, code: u16, reason: String) -> Result<(), types::HostError> {
        if !matches!(code, 1000 | 1001 | 1008 | 1011 | 1012 | 1013 | 3000..=4999) {
            return Err(types::HostError::Invalid(format!(
                "close code {code} may not be sent by a plugin"
            )));
        }
        let c = self
            .shared
            .hub
            .get(conn)
            .ok_or(types::HostError::NotFound)?;
        c.outbox.close(code, &reason);
        Ok(())
    }

    fn set_attachment(&mut self, conn: u64, data: Vec<u8>) -> Result<(), types::HostError> {
        if data.len() > MAX_ATTACHMENT {
            return Err(types::HostError::TooLarge(format!(
                "attachment larger than {MAX_ATTACHMENT} bytes"
            )));
        }
        let c = self
            .shared
            .hub
            .get(conn)
            .ok_or(types::HostError::NotFound)?;
        *c.attachment.lock() = Bytes::from(data);
        Ok(())
    }

    fn connection_info(&mut self, conn: u64) -> Option<types::ConnInfo> {
        self.shared
            .hub
            .get(conn)
            .map(|c| crate::conn::conn_info(&c))
    }

    fn subscribe(&mut self, conn: u64, topic: String) -> Result<u32, types::HostError> {
        if topic.len() > MAX_TOPIC {
            return Err(types::HostError::TooLarge(format!(
                "topic longer than {MAX_TOPIC} bytes"
            )));
        }
        self.shared
            .hub
            .subscribe(conn, &self.shared.topic_key(&topic))
            .map_err(hub_err)
    }

    fn unsubscribe(&mut self, conn: u64, topic: String) -> Result<u32, types::HostError> {
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
                .hub
                .publish(&self.shared.topic_key(&topic), &b, except),
            Err(_) => 0,
        }
    }

    fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
        self.shared.kv.get(&key, crate::auth::now_ms())
    }

    fn kv_set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<(), types::HostError> {
        self.shared
            .kv
            .set(key, value, ttl_ms, crate::auth::now_ms())
            .map_err(|e| types::HostError::TooLarge(e.to_string()))
    }

    fn kv_delete(&mut self, key: String) -> bool {
        self.shared.kv.delete(&key, crate::auth::now_ms())
    }

    fn kv_scan(&mut self, prefix: String, limit: u32) -> Vec<(String, Vec<u8>)> {
        self.shared
            .kv
            .scan(&prefix, limit as usize, crate::auth::now_ms())
    }

    fn kv_count(&mut self, prefix: String) -> u64 {
        self.shared.kv.count(&prefix, crate::auth::now_ms())
    }

    fn set_timer(&mut self, delay_ms: u64, token: String) -> u64 {
        let shared = self.shared.clone();
        let id = shared.next_timer.fetch_add(1, Relaxed) + 1;
        let mut timers = shared.timers.lock();
        if timers.len() >= MAX_TIMERS {
            tracing::warn!(plugin = %shared.name, "timer limit reached; timer dropped");
            return 0;
        }
        let s2 = shared.clone();
        let handle = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
            s2.timers.lock().remove(&id);
            let slot = s2.slot.lock().upgrade();
            if let Some(slot) = slot
                && let Err(e) = slot.on_timer(&token).await
            {
                tracing::warn!(plugin = %s2.name, "timer call failed: {e}");
            }
        });
        timers.insert(id, handle.abort_handle());
        id
    }

    fn cancel_timer(&mut self, id: u64) -> bool {
        match self.shared.timers.lock().remove(&id) {
            Some(h) => {
                h.abort();
                true
            }
            None => false,
        }
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
        crate::auth::now_ms()
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

/// Largest stream key or object name a plugin may use.
pub const MAX_KEY: usize = 1024;
/// Largest stream entry or object a plugin may write.
pub const MAX_BLOB: usize = 256 << 20;

fn stream_err(e: crate::streams::StreamError) -> types::HostError {
    match e {
        crate::streams::StreamError::Invalid(m) => types::HostError::Invalid(m),
        other => types::HostError::Unavailable(other.to_string()),
    }
}

fn storage_err(e: crate::storage::StorageError) -> types::HostError {
    match e {
        crate::storage::StorageError::InvalidName(m) => types::HostError::Invalid(m),
        other => types::HostError::Unavailable(other.to_string()),
    }
}

fn check_len(what: &str, len: usize, max: usize) -> Result<(), types::HostError> {
    if len > max {
        Err(types::HostError::TooLarge(format!(
            "{what} longer than {max} bytes"
        )))
    } else {
        Ok(())
    }
}

impl streams::Host for HostState {
    async fn add_message(&mut self, key: String, data: Vec<u8>) -> Result<(), types::HostError> {
        check_len("stream key", key.len(), MAX_KEY)?;
        check_len("stream entry", data.len(), MAX_BLOB)?;
        let on_fail = self.current_conn.map(|id| {
            let hub = self.shared.hub.clone();
            Box::new(move |e: crate::streams::StreamError| {
                tracing::warn!(
                    conn = id,
                    "append failed: {e}; closing so the client re-syncs"
                );
                if let Some(c) = hub.get(id) {
                    c.outbox.close(1013, "stream unavailable, retry");
                }
            }) as crate::streams::OnFail
        });
        self.shared
            .streams
            .append(&key, Bytes::from(data), on_fail)
            .await
            .map_err(stream_err)
    }

    async fn read(
        &mut self,
        key: String,
        after: String,
        count: u32,
    ) -> Result<Vec<streams::Entry>, types::HostError> {
        check_len("stream key", key.len(), MAX_KEY)?;
        let after = StreamId::parse(&after).map_err(stream_err)?;
        let entries = self
            .shared
            .streams
            .read(&key, after, count as usize)
            .await
            .map_err(stream_err)?;
        Ok(entries
            .into_iter()
            .map(|e| streams::Entry {
                id: e.id.to_string(),
                data: e.data.to_vec(),
            })
            .collect())
    }

    async fn len(&mut self, key: String) -> Result<u64, types::HostError> {
        check_len("stream key", key.len(), MAX_KEY)?;
        self.shared.streams.len(&key).await.map_err(stream_err)
    }

    async fn bind(
        &mut self,
        topic: String,
        key: String,
        after: String,
    ) -> Result<(), types::HostError> {
        check_len("topic", topic.len(), MAX_TOPIC)?;
        check_len("stream key", key.len(), MAX_KEY)?;
        let after = StreamId::parse(&after).map_err(stream_err)?;
        self.shared
            .streams
            .tailer()
            .bind(&self.shared, &topic, &key, after);
        Ok(())
    }
}

impl storage::Host for HostState {
    async fn get(&mut self, name: String) -> Result<Option<Vec<u8>>, types::HostError> {
        check_len("object name", name.len(), MAX_KEY)?;
        self.shared
            .storage
            .get(&name)
            .await
            .map(|b| b.map(|b| b.to_vec()))
            .map_err(storage_err)
    }

    async fn put(&mut self, name: String, data: Vec<u8>) -> Result<(), types::HostError> {
        check_len("object name", name.len(), MAX_KEY)?;
        check_len("object", data.len(), MAX_BLOB)?;
        self.shared
            .storage
            .put(&name, Bytes::from(data))
            .await
            .map_err(storage_err)
    }

    async fn delete(&mut self, name: String) -> Result<(), types::HostError> {
        check_len("object name", name.len(), MAX_KEY)?;
        self.shared.storage.delete(&name).await.map_err(storage_err)
    }

    async fn list(&mut self, prefix: String) -> Result<Vec<String>, types::HostError> {
        check_len("prefix", prefix.len(), MAX_KEY)?;
        self.shared.storage.list(&prefix).await.map_err(storage_err)
    }
}
