//! Streams with Redis stream semantics: the in-process backend (memory plus an append log)
//! when the gateway runs alone, Redis when `[redis]` is configured. Both offer the operations
//! y-redis needs: the atomic add-and-enqueue, range reads, the worker queue with XAUTOCLAIM
//! debouncing, and MINID trims. The [`tail::Tailer`] hands new entries of bound streams to
//! whoever bound them, through the [`StreamSink`] trait.

mod id;
pub mod log;
mod memory;
mod redis;
pub mod tail;

pub use id::StreamId;
pub use memory::{LogOptions, MemoryStreams};
pub use redis::RedisStreams;
pub use tail::StreamSink;

use bytes::Bytes;
use std::sync::Arc;

/// Why a stream operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(String),
    /// The stream log could not be written or read.
    #[error("stream log: {0}")]
    Log(String),
    /// The key or id is malformed.
    #[error("invalid: {0}")]
    Invalid(String),
}

/// One stream entry (the `m` field).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its id.
    pub id: StreamId,
    /// Its payload.
    pub data: Bytes,
}

/// A compaction task from a worker queue: which stream to compact.
#[derive(Clone, Debug)]
pub struct Task {
    /// The task's id in the worker stream.
    pub id: StreamId,
    /// The room stream to compact.
    pub stream: String,
}

/// Numbers for `/health`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StreamStats {
    /// `memory` or `redis`.
    pub backend: &'static str,
    /// Live room streams (memory backend only; Redis would need a key scan).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams: Option<u64>,
    /// Tasks on the worker queues of the configured prefixes.
    pub worker_queue: u64,
}

/// The worker queue key of a room stream key: `{P}:room:{room}:{doc}` -> `{P}:worker`.
pub fn worker_key_of(stream: &str) -> Result<String, StreamError> {
    match stream.rfind(":room:") {
        Some(i) if stream[i + 6..].contains(':') => Ok(format!("{}:worker", &stream[..i])),
        _ => Err(StreamError::Invalid(format!(
            "'{stream}' is not a room stream key ({{prefix}}:room:{{room}}:{{doc}})"
        ))),
    }
}

/// Called when a queued append fails after the caller went on.
pub type OnFail = Box<dyn FnOnce(StreamError) + Send + Sync>;

/// The configured stream backend.
#[derive(Clone)]
pub enum Streams {
    /// In-process.
    Memory(Arc<MemoryStreams>),
    /// Redis.
    Redis(Arc<RedisStreams>),
}

impl Streams {
    /// Appends `data` to `key` and enqueues the stream for compaction if it is new (the y-redis
    /// add-and-enqueue). Returns once the append is queued in order (Redis appends are
    /// pipelined); a later failure is reported to `on_fail`.
    pub async fn append(
        &self,
        key: &str,
        data: Bytes,
        on_fail: Option<OnFail>,
    ) -> Result<(), StreamError> {
        match self {
            Streams::Memory(m) => m.add_message(key, data).await.map(drop),
            Streams::Redis(r) => r.append(key, data, on_fail).await,
        }
    }

    /// Appends `data` to a retained log `key` (no compaction task), dropping entries older than
    /// `keep_ms` and the whole key after `keep_ms` without appends; returns the entry's id once
    /// the backend has it.
    pub async fn append_retained(
        &self,
        key: &str,
        data: Bytes,
        keep_ms: u64,
    ) -> Result<StreamId, StreamError> {
        match self {
            Streams::Memory(m) => m.append_retained(key, data, keep_ms),
            Streams::Redis(r) => r.append_retained(key, data, keep_ms).await,
        }
    }

    /// Entries with ids less than `before`, newest first, at most `count`.
    pub async fn read_back(
        &self,
        key: &str,
        before: StreamId,
        count: usize,
    ) -> Result<Vec<Entry>, StreamError> {
        match self {
            Streams::Memory(m) => Ok(m.read_back(key, before, count)),
            Streams::Redis(r) => r.read_back(key, before, count).await,
        }
    }

    /// Entries with ids greater than `after`, at most `count` (0 = all).
    pub async fn read(
        &self,
        key: &str,
        after: StreamId,
        count: usize,
    ) -> Result<Vec<Entry>, StreamError> {
        match self {
            Streams::Memory(m) => Ok(m.read(key, after, count)),
            Streams::Redis(r) => r.read(key, after, count).await,
        }
    }

    /// Number of entries (0 when the stream does not exist).
    pub async fn len(&self, key: &str) -> Result<u64, StreamError> {
        match self {
            Streams::Memory(m) => Ok(m.len(key)),
            Streams::Redis(r) => r.len(key).await,
        }
    }

    /// Claims up to `count` tasks of `worker_key` idle for at least `min_idle_ms`.
    pub async fn claim_tasks(
        &self,
        worker_key: &str,
        consumer: &str,
        min_idle_ms: u64,
        count: u32,
    ) -> Result<Vec<Task>, StreamError> {
        match self {
            Streams::Memory(m) => Ok(m.claim_tasks(worker_key, min_idle_ms, count)),
            Streams::Redis(r) => {
                r.claim_tasks(worker_key, consumer, min_idle_ms, count)
                    .await
            }
        }
    }

    /// Deletes `stream` if it is empty and drops the task (the next add re-enqueues it).
    pub async fn finish_empty(&self, worker_key: &str, task: &Task) -> Result<(), StreamError> {
        match self {
            Streams::Memory(m) => m.finish_empty(worker_key, task).await,
            Streams::Redis(r) => r.finish_empty(worker_key, task).await,
        }
    }

    /// Trims entries older than `min_id_ms`, then replaces the task with a fresh parked one.
    pub async fn trim_and_requeue(
        &self,
        worker_key: &str,
        task: &Task,
        min_id_ms: u64,
    ) -> Result<(), StreamError> {
        match self {
            Streams::Memory(m) => m.trim_and_requeue(worker_key, task, min_id_ms).await,
            Streams::Redis(r) => r.trim_and_requeue(worker_key, task, min_id_ms).await,
        }
    }

    /// Numbers for `/health`.
    pub async fn stats(&self, prefixes: &[String]) -> StreamStats {
        match self {
            Streams::Memory(m) => m.stats(prefixes),
            Streams::Redis(r) => r.stats(prefixes).await,
        }
    }

    /// The tailer that delivers bound streams to plugins.
    pub fn tailer(&self) -> &Arc<tail::Tailer> {
        match self {
            Streams::Memory(m) => &m.tailer,
            Streams::Redis(r) => &r.tailer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_key_from_stream_key() {
        assert_eq!(worker_key_of("y:room:a%3Ab:index").unwrap(), "y:worker");
        assert_eq!(worker_key_of("a:b:room:r:index").unwrap(), "a:b:worker");
        assert!(worker_key_of("y:rooms").is_err());
        assert!(worker_key_of("y:room:noindex").is_err());
    }
}
