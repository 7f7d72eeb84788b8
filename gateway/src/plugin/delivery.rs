//! Batches of bound streams, which the stream tailer hands to a plugin's slot through
//! [`StreamSink`]. The frames `on-stream` returns are published to the topic natively: one
//! plugin call per batch, never one per recipient.

use super::host::HostState;
use super::slot::PluginSlot;
use crate::streams::{Entry, StreamSink};
use futures::future::BoxFuture;

impl StreamSink for PluginSlot {
    fn fell_behind(&self, topic: &str, key: &str) {
        self.close_topic(
            topic,
            key,
            1013,
            "fell behind, reconnect",
            "delivery fell behind",
        );
    }

    fn wants(&self, topic: &str) -> bool {
        self.shared.hub.topic_len(&self.shared.topic_key(topic)) > 0
    }

    fn deliver<'a>(
        &'a self,
        topic: &'a str,
        key: &'a str,
        batch: &'a [Entry],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let shared = &self.shared;
            let topic_key = shared.topic_key(topic);
            match self.on_stream(topic, key, batch).await {
                Ok(frames) => {
                    for bytes in frames.iter().filter_map(|f| HostState::encode(f).ok()) {
                        shared.hub.publish(&topic_key, &bytes, None);
                    }
                }
                Err(e) => {
                    // The batch never reached the room: close its connections so their clients
                    // reconnect and re-sync instead of silently missing it.
                    let why = format!("on-stream failed: {e}");
                    self.close_topic(topic, key, 1011, "delivery failed, reconnect", &why);
                }
            }
        })
    }
}

impl PluginSlot {
    /// Closes every local connection of `topic` with `code`, so their clients reconnect and
    /// read `key` afresh.
    fn close_topic(&self, topic: &str, key: &str, code: u16, reason: &str, why: &str) {
        let shared = &self.shared;
        let members = shared.hub.members(&shared.topic_key(topic));
        tracing::warn!(
            plugin = %shared.name,
            stream = %key,
            connections = members.len(),
            "{why}; closing the topic's connections ({code}) so they re-sync"
        );
        for id in members {
            if let Some(c) = shared.hub.get(id) {
                c.outbox.close(code, reason);
            }
        }
    }
}
