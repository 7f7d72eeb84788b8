//! Delivery of bound streams to plugins: entries of a stream bound to a topic are handed to the
//! plugin's `on-stream` in batches (one call per batch, never per recipient) and the frames it
//! returns are published to the topic. Batches of one stream are delivered in order, one at a
//! time; different streams are delivered concurrently.

use super::{Entry, StreamId};
use crate::plugin::{HostState, PluginShared};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// Most entries handed to one `on-stream` call.
const MAX_BATCH: usize = 1000;

#[derive(Clone)]
struct Target {
    shared: Arc<PluginShared>,
    topic: String,
}

impl Target {
    /// The topic still has local subscribers and the plugin is still loaded.
    fn usable(&self) -> bool {
        self.shared
            .hub
            .topic_len(&self.shared.topic_key(&self.topic))
            > 0
            && self.shared.slot.lock().upgrade().is_some()
    }
}

struct Binding {
    cursor: StreamId,
    targets: Vec<Target>,
    pending: Vec<Entry>,
    busy: bool,
}

/// Bound streams and their delivery state.
#[derive(Default)]
pub struct Tailer {
    bindings: Mutex<HashMap<String, Binding>>,
    /// Signalled when a stream is bound for the first time (the Redis reader re-reads its set).
    pub rebound: Notify,
}

impl Tailer {
    /// Binds `key` to a plugin topic; entries after `after` will be delivered. Returns whether
    /// the stream was not bound before.
    pub fn bind(
        &self,
        shared: &Arc<PluginShared>,
        topic: &str,
        key: &str,
        after: StreamId,
    ) -> bool {
        let mut map = self.bindings.lock();
        if let Some(b) = map.get_mut(key) {
            if !b
                .targets
                .iter()
                .any(|t| Arc::ptr_eq(&t.shared, shared) && t.topic == topic)
            {
                b.targets.push(Target {
                    shared: shared.clone(),
                    topic: topic.to_string(),
                });
            }
            return false;
        }
        map.insert(
            key.to_string(),
            Binding {
                cursor: after,
                targets: vec![Target {
                    shared: shared.clone(),
                    topic: topic.to_string(),
                }],
                pending: Vec::new(),
                busy: false,
            },
        );
        drop(map);
        self.rebound.notify_one();
        true
    }

    /// Whether `key` is bound.
    pub fn is_bound(&self, key: &str) -> bool {
        self.bindings.lock().contains_key(key)
    }

    /// Every bound stream with the id after which it is read.
    pub fn cursors(&self) -> Vec<(String, StreamId)> {
        self.bindings
            .lock()
            .iter()
            .map(|(k, b)| (k.clone(), b.cursor))
            .collect()
    }

    /// Queues new entries of `key` (in id order) for delivery; entries at or before the
    /// stream's cursor are ignored.
    pub fn push(self: &Arc<Self>, key: &str, entries: impl IntoIterator<Item = Entry>) {
        let mut map = self.bindings.lock();
        let Some(b) = map.get_mut(key) else {
            return;
        };
        for e in entries {
            if e.id > b.cursor {
                b.cursor = e.id;
                b.pending.push(e);
            }
        }
        if !b.busy && !b.pending.is_empty() {
            b.busy = true;
            let me = self.clone();
            let key = key.to_string();
            tokio::spawn(async move { me.deliver(key).await });
        }
    }

    async fn deliver(self: Arc<Self>, key: String) {
        loop {
            let (batch, targets) = {
                let mut map = self.bindings.lock();
                let Some(b) = map.get_mut(&key) else {
                    return;
                };
                if b.pending.is_empty() {
                    b.busy = false;
                    return;
                }
                let n = b.pending.len().min(MAX_BATCH);
                let batch: Vec<Entry> = b.pending.drain(..n).collect();
                (batch, b.targets.clone())
            };
            let mut stale = false;
            for t in &targets {
                let slot = t.shared.slot.lock().upgrade();
                let Some(slot) = slot.filter(|_| t.usable()) else {
                    stale = true;
                    continue;
                };
                match slot.on_stream(&t.topic, &key, &batch).await {
                    Ok(frames) => {
                        let topic = t.shared.topic_key(&t.topic);
                        for bytes in frames.iter().filter_map(|f| HostState::encode(f).ok()) {
                            t.shared.hub.publish(&topic, &bytes, None);
                        }
                    }
                    Err(e) => {
                        // The batch never reached the room: close its connections so their
                        // clients reconnect and re-sync instead of silently missing it.
                        let topic = t.shared.topic_key(&t.topic);
                        let members = t.shared.hub.members(&topic);
                        tracing::warn!(
                            plugin = %t.shared.name,
                            stream = %key,
                            connections = members.len(),
                            "on-stream failed: {e}; closing the topic's connections (1011) so they re-sync"
                        );
                        for id in members {
                            if let Some(c) = t.shared.hub.get(id) {
                                c.outbox.close(1011, "delivery failed, reconnect");
                            }
                        }
                    }
                }
            }
            if stale {
                let mut map = self.bindings.lock();
                if let Some(b) = map.get_mut(&key) {
                    b.targets.retain(Target::usable);
                    if b.targets.is_empty() {
                        map.remove(&key);
                        return;
                    }
                }
            }
        }
    }

    /// Drops topics without local subscribers and streams without topics.
    pub fn sweep(&self) {
        let mut map = self.bindings.lock();
        map.retain(|_, b| {
            if b.busy {
                return true;
            }
            b.targets.retain(Target::usable);
            !b.targets.is_empty()
        });
    }

    /// How many streams are bound.
    pub fn len(&self) -> usize {
        self.bindings.lock().len()
    }

    /// Whether no stream is bound.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
