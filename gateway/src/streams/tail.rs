//! Delivery of bound streams: new entries of a stream bound to a topic are handed, in batches,
//! to the [`StreamSink`] that bound it (a plugin, which turns a batch into frames for the
//! topic). Batches of one stream are delivered in order, one at a time; different streams are
//! delivered concurrently. A binding is dropped once its sink is gone or no longer wants the
//! topic, or when its sink falls so far behind that [`MAX_PENDING`] entries or
//! [`MAX_PENDING_BYTES`] wait: the sink is told ([`StreamSink::fell_behind`]) and closes the
//! topic's connections, whose clients reconnect and read the stream afresh.

use super::{Entry, StreamId};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use tokio::sync::Notify;

/// Where the batches of a bound stream go. Implemented by the plugin layer.
pub trait StreamSink: Send + Sync {
    /// Whether `topic` still has local subscribers (a binding without any is dropped).
    fn wants(&self, topic: &str) -> bool;

    /// Delivers one batch of `key`'s entries, in id order, to `topic`. Failures are the sink's
    /// to handle; the next batch follows once this one has finished.
    fn deliver<'a>(&'a self, topic: &'a str, key: &'a str, batch: &'a [Entry])
    -> BoxFuture<'a, ()>;

    /// The binding of `key` to `topic` was dropped because delivery fell too far behind.
    fn fell_behind(&self, topic: &str, key: &str);
}

/// Most entries handed to one `on-stream` call.
const MAX_BATCH: usize = 1000;
/// Most entries waiting for one bound stream.
pub const MAX_PENDING: usize = 100_000;
/// Most bytes waiting for one bound stream.
pub const MAX_PENDING_BYTES: usize = 64 << 20;

#[derive(Clone)]
struct Target {
    sink: Weak<dyn StreamSink>,
    topic: String,
}

impl Target {
    /// The sink is still there and still wants the topic.
    fn usable(&self) -> bool {
        self.sink.upgrade().is_some_and(|s| s.wants(&self.topic))
    }
}

struct Binding {
    cursor: StreamId,
    targets: Vec<Target>,
    pending: Vec<Entry>,
    pending_bytes: usize,
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
    /// Binds `key` to `topic` of `sink`; entries after `after` will be delivered. Returns
    /// whether the stream was not bound before.
    pub fn bind(
        &self,
        sink: Weak<dyn StreamSink>,
        topic: &str,
        key: &str,
        after: StreamId,
    ) -> bool {
        let mut map = self.bindings.lock();
        if let Some(b) = map.get_mut(key) {
            if !b
                .targets
                .iter()
                .any(|t| Weak::ptr_eq(&t.sink, &sink) && t.topic == topic)
            {
                b.targets.push(Target {
                    sink,
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
                    sink,
                    topic: topic.to_string(),
                }],
                pending: Vec::new(),
                pending_bytes: 0,
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
                b.pending_bytes += e.data.len();
                b.pending.push(e);
            }
        }
        if b.pending.len() > MAX_PENDING || b.pending_bytes > MAX_PENDING_BYTES {
            let targets = map.remove(key).map(|b| b.targets).unwrap_or_default();
            drop(map);
            tracing::warn!(
                stream = key,
                "stream delivery fell behind; dropping the binding so its clients re-sync"
            );
            for t in targets {
                if let Some(sink) = t.sink.upgrade() {
                    sink.fell_behind(&t.topic, key);
                }
            }
            return;
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
                b.pending_bytes -= batch.iter().map(|e| e.data.len()).sum::<usize>();
                (batch, b.targets.clone())
            };
            let mut stale = false;
            for t in &targets {
                let Some(sink) = t.sink.upgrade().filter(|s| s.wants(&t.topic)) else {
                    stale = true;
                    continue;
                };
                sink.deliver(&t.topic, &key, &batch).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    /// A sink that never finishes a batch and counts what it was told.
    #[derive(Default)]
    struct Stuck {
        behind: AtomicUsize,
    }

    impl StreamSink for Stuck {
        fn wants(&self, _topic: &str) -> bool {
            true
        }
        fn deliver<'a>(&'a self, _: &'a str, _: &'a str, _: &'a [Entry]) -> BoxFuture<'a, ()> {
            Box::pin(std::future::pending())
        }
        fn fell_behind(&self, _topic: &str, _key: &str) {
            self.behind.fetch_add(1, Relaxed);
        }
    }

    #[tokio::test]
    async fn a_sink_that_falls_behind_loses_its_binding_and_is_told() {
        let tailer = Arc::new(Tailer::default());
        let sink = Arc::new(Stuck::default());
        let weak: Weak<dyn StreamSink> = Arc::downgrade(&(sink.clone() as Arc<dyn StreamSink>));
        tailer.bind(weak, "room", "y:room:a:index", StreamId::ZERO);
        let entry = |ms| Entry {
            id: StreamId { ms, seq: 0 },
            data: Bytes::from_static(b"x"),
        };
        tailer.push("y:room:a:index", (1..=MAX_PENDING as u64).map(entry));
        tokio::task::yield_now().await;
        assert!(tailer.is_bound("y:room:a:index"));
        assert_eq!(sink.behind.load(Relaxed), 0);
        // The first batch is stuck in the sink; the rest pile up until the bound.
        tailer.push(
            "y:room:a:index",
            (MAX_PENDING as u64 + 1..=MAX_PENDING as u64 + 2000).map(entry),
        );
        assert!(!tailer.is_bound("y:room:a:index"));
        assert_eq!(sink.behind.load(Relaxed), 1);
    }
}
