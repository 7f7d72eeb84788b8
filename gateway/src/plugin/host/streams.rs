//! The `streams` interface: appends, range reads, lengths and bindings of streams to topics.

use super::{HostState, MAX_BLOB, MAX_KEY, MAX_TOPIC, check_len};
use crate::plugin::bindings::gateway::plugin::{streams, types};
use crate::streams::StreamId;
use bytes::Bytes;
use std::time::Instant;

/// The longest a retained log keeps entries (a week).
const MAX_KEEP_MS: u64 = 7 * 24 * 3600 * 1000;

/// Stream entries as the plugin sees them.
fn to_wit(entries: Vec<crate::streams::Entry>) -> Vec<streams::Entry> {
    entries
        .into_iter()
        .map(|e| streams::Entry {
            id: e.id.to_string(),
            data: e.data.to_vec(),
        })
        .collect()
}

fn stream_err(e: crate::streams::StreamError) -> types::HostError {
    match e {
        crate::streams::StreamError::Invalid(m) => types::HostError::Invalid(m),
        other => types::HostError::Unavailable(other.to_string()),
    }
}

impl streams::Host for HostState {
    async fn add_message(&mut self, key: String, data: Vec<u8>) -> Result<(), types::HostError> {
        self.check_stream_key(&key)?;
        let started = Instant::now();
        let current_conn = self.current_conn;
        let shared = self.shared.clone();
        shared.hub.mark_stream_plugin(&shared.name);
        let r = async move {
            check_len("stream key", key.len(), MAX_KEY)?;
            check_len("stream entry", data.len(), MAX_BLOB)?;
            let on_fail = current_conn.map(|id| {
                let hub = shared.hub.clone();
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
            shared
                .streams
                .append(&key, Bytes::from(data), on_fail)
                .await
                .map_err(stream_err)
        }
        .await;
        self.credit(started);
        r
    }

    async fn append(
        &mut self,
        key: String,
        data: Vec<u8>,
        keep_ms: u64,
    ) -> Result<String, types::HostError> {
        self.check_stream_key(&key)?;
        let started = Instant::now();
        let shared = self.shared.clone();
        let r = async move {
            check_len("stream key", key.len(), MAX_KEY)?;
            check_len("stream entry", data.len(), MAX_BLOB)?;
            if keep_ms == 0 || keep_ms > MAX_KEEP_MS {
                return Err(types::HostError::Invalid(format!(
                    "keep-ms must be 1..={MAX_KEEP_MS}"
                )));
            }
            let id = shared
                .streams
                .append_retained(&key, Bytes::from(data), keep_ms)
                .await
                .map_err(stream_err)?;
            Ok(id.to_string())
        }
        .await;
        self.credit(started);
        r
    }

    async fn read_back(
        &mut self,
        key: String,
        before: String,
        count: u32,
    ) -> Result<Vec<streams::Entry>, types::HostError> {
        self.check_stream_key(&key)?;
        let started = Instant::now();
        let shared = self.shared.clone();
        let r = async move {
            check_len("stream key", key.len(), MAX_KEY)?;
            let before = if before == "+" {
                StreamId::MAX
            } else {
                StreamId::parse(&before).map_err(stream_err)?
            };
            let entries = shared
                .streams
                .read_back(&key, before, count.clamp(1, 1000) as usize)
                .await
                .map_err(stream_err)?;
            Ok(to_wit(entries))
        }
        .await;
        self.credit(started);
        r
    }

    async fn read(
        &mut self,
        key: String,
        after: String,
        count: u32,
    ) -> Result<Vec<streams::Entry>, types::HostError> {
        self.check_stream_key(&key)?;
        let started = Instant::now();
        let shared = self.shared.clone();
        let r = async move {
            check_len("stream key", key.len(), MAX_KEY)?;
            let after = StreamId::parse(&after).map_err(stream_err)?;
            let entries = shared
                .streams
                .read(&key, after, count as usize)
                .await
                .map_err(stream_err)?;
            Ok(to_wit(entries))
        }
        .await;
        self.credit(started);
        r
    }

    async fn len(&mut self, key: String) -> Result<u64, types::HostError> {
        self.check_stream_key(&key)?;
        let started = Instant::now();
        let shared = self.shared.clone();
        let r = async move {
            check_len("stream key", key.len(), MAX_KEY)?;
            shared.streams.len(&key).await.map_err(stream_err)
        }
        .await;
        self.credit(started);
        r
    }

    async fn bind(
        &mut self,
        topic: String,
        key: String,
        after: String,
    ) -> Result<(), types::HostError> {
        self.check_stream_key(&key)?;
        check_len("topic", topic.len(), MAX_TOPIC)?;
        check_len("stream key", key.len(), MAX_KEY)?;
        let after = StreamId::parse(&after).map_err(stream_err)?;
        self.shared.hub.mark_stream_plugin(&self.shared.name);
        self.shared
            .streams
            .tailer()
            .bind(self.shared.sink.clone(), &topic, &key, after);
        Ok(())
    }
}
