//! Batches of bound streams, which the stream tailer hands to a plugin's slot through
//! [`StreamSink`]. The frames `on-stream` returns are published to the topic natively: one
//! plugin call per batch, never one per recipient.

use super::host::HostState;
use super::slot::PluginSlot;
use crate::streams::{Entry, StreamSink};
use futures::future::BoxFuture;

impl StreamSink for PluginSlot {
    fn fell_behind(&self, topic: &str, key: &str) {
        let shared = &self.shared;
        let topic_key = shared.topic_key(topic);
        let members = shared.hub.members(&topic_key);
        tracing::warn!(
            plugin = %shared.name,
            stream = %key,
            connections = members.len(),
            "stream delivery fell behind; closing the topic's connections (1013) so they re-sync"
        );
        for id in members {
            if let Some(c) = shared.hub.get(id) {
                c.outbox.close(1013, "fell behind, reconnect");
            }
        }
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
                    let members = shared.hub.members(&topic_key);
                    tracing::warn!(
                        plugin = %shared.name,
                        stream = %key,
                        connections = members.len(),
                        "on-stream failed: {e}; closing the topic's connections (1011) so they re-sync"
                    );
                    for id in members {
                        if let Some(c) = shared.hub.get(id) {
                            c.outbox.close(1011, "delivery failed, reconnect");
                        }
                    }
                }
            }
        })
    }
}
