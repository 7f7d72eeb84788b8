//! The compaction worker, with y-redis v0.1.6 semantics: claim tasks whose idle time passed the
//! debounce, rebuild the room from storage plus its stream, persist the full state (Yjs update
//! v2) as a new object when the stream changed it, delete the old objects only after the new
//! one is written, trim the stream by MINID and re-park the task. Runs inside `gateway serve`
//! or alone as `gateway worker`.

use crate::config::WorkerConfig;
use crate::storage::Storage;
use crate::streams::{StreamId, Streams, Task};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use yjs_core::keys;

/// Stream entries read per call while compacting.
const READ_PAGE: usize = 250;

/// Counters shown on `/health` and `/metrics`.
#[derive(Default, Debug)]
pub struct WorkerStats {
    /// Compaction rounds that ran.
    pub compactions: AtomicU64,
    /// New storage objects written.
    pub persisted: AtomicU64,
    /// Empty streams deleted.
    pub streams_deleted: AtomicU64,
    /// Failed rounds.
    pub errors: AtomicU64,
}

/// A running worker.
pub struct Worker {
    cfg: WorkerConfig,
    streams: Streams,
    storage: Storage,
    consumer: String,
    /// Counters.
    pub stats: Arc<WorkerStats>,
}

/// Why one compaction failed (the task stays claimed and is retried after the debounce).
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// Streams backend.
    #[error(transparent)]
    Stream(#[from] crate::streams::StreamError),
    /// Storage backend.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// The stored document or the stream could not be decoded.
    #[error("document: {0}")]
    Doc(String),
}

impl Worker {
    /// A worker with a fresh consumer name that counts into `stats`.
    pub fn new(
        cfg: WorkerConfig,
        streams: Streams,
        storage: Storage,
        stats: Arc<WorkerStats>,
    ) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            streams,
            storage,
            consumer: uuid::Uuid::new_v4().to_string(),
            stats,
        })
    }

    /// Claims and compacts tasks until the process ends.
    pub async fn run(self: Arc<Self>) {
        tracing::info!(
            prefixes = ?self.cfg.prefix,
            debounce_ms = self.cfg.task_debounce_ms,
            min_lifetime_ms = self.cfg.min_message_lifetime_ms,
            "compaction worker started"
        );
        let idle = Duration::from_millis(self.cfg.task_debounce_ms.clamp(50, 1000));
        loop {
            let mut worked = false;
            for prefix in &self.cfg.prefix {
                match self.round(prefix).await {
                    Ok(n) => worked |= n > 0,
                    Err(e) => {
                        self.stats.errors.fetch_add(1, Relaxed);
                        tracing::warn!(prefix = %prefix, "worker round failed: {e}");
                    }
                }
            }
            if !worked {
                tokio::time::sleep(idle).await;
            }
        }
    }

    /// One claim round for `prefix`; returns how many tasks were handled.
    pub async fn round(&self, prefix: &str) -> Result<usize, CompactError> {
        let wk = keys::worker_key(prefix);
        let tasks = self
            .streams
            .claim_tasks(
                &wk,
                &self.consumer,
                self.cfg.task_debounce_ms,
                self.cfg.try_claim_count,
            )
            .await?;
        let n = tasks.len();
        let jobs = tasks.into_iter().map(|t| {
            let wk = wk.clone();
            async move {
                if let Err(e) = self.compact(prefix, &wk, &t).await {
                    self.stats.errors.fetch_add(1, Relaxed);
                    tracing::warn!(stream = %t.stream, "compaction failed: {e}");
                }
            }
        });
        futures::future::join_all(jobs).await;
        Ok(n)
    }

    /// Reads a stream up to its newest entry at the time of the call, in pages, so that
    /// neither Redis nor this process handles one huge reply while serving live rooms.
    async fn read_all(&self, key: &str) -> Result<Vec<crate::streams::Entry>, CompactError> {
        let Some(newest) = self.streams.read_back(key, StreamId::MAX, 1).await?.pop() else {
            return Ok(Vec::new());
        };
        let mut all = Vec::new();
        let mut after = StreamId::ZERO;
        while after < newest.id {
            let page = self.streams.read(key, after, READ_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            all.extend(page);
        }
        Ok(all)
    }

    async fn compact(&self, prefix: &str, wk: &str, task: &Task) -> Result<(), CompactError> {
        self.stats.compactions.fetch_add(1, Relaxed);
        if self.streams.len(&task.stream).await? == 0 {
            self.streams.finish_empty(wk, task).await?;
            self.stats.streams_deleted.fetch_add(1, Relaxed);
            tracing::debug!(stream = %task.stream, "empty stream removed");
            return Ok(());
        }
        let (room, docid) = keys::decode_stream_key(prefix, &task.stream)
            .map_err(|e| CompactError::Doc(format!("{}: {e}", task.stream)))?;
        let started = std::time::Instant::now();
        let entries = self.read_all(&task.stream).await?;
        let (read_ms, count) = (started.elapsed().as_millis() as u64, entries.len());
        let last_id = entries.last().map_or(0, |e| e.id.ms);
        let dir = keys::storage_prefix(&room, &docid);
        let refs = self.storage.list(&dir).await?;
        let mut stored = Vec::with_capacity(refs.len());
        for r in &refs {
            if let Some(b) = self.storage.get(r).await? {
                stored.push(b);
            }
        }
        let messages: Vec<Bytes> = entries.into_iter().map(|e| e.data).collect();
        let built = tokio::task::spawn_blocking(move || {
            let built = yjs_core::doc::build_doc(&stored, &messages)
                .map_err(|e| CompactError::Doc(e.to_string()))?;
            let state = built
                .changed
                .then(|| Bytes::from(yjs_core::doc::encode_full_state_v2(&built.doc)));
            Ok::<_, CompactError>((state, built.skipped.len()))
        })
        .await
        .map_err(|e| CompactError::Doc(e.to_string()))??;
        let (state, skipped) = built;
        tracing::debug!(
            stream = %task.stream,
            entries = count,
            read_ms,
            built_ms = started.elapsed().as_millis() as u64,
            "compacted"
        );
        if skipped > 0 {
            tracing::warn!(stream = %task.stream, skipped, "stream entries skipped while compacting");
        }
        if let Some(state) = state {
            let name = keys::storage_object_name(&room, &docid, &uuid::Uuid::new_v4().to_string());
            let size = state.len();
            self.storage.put(&name, state).await?;
            self.stats.persisted.fetch_add(1, Relaxed);
            tracing::debug!(stream = %task.stream, object = %name, bytes = size, "persisted");
            for r in &refs {
                if let Err(e) = self.storage.delete(r).await {
                    tracing::warn!(object = %r, "old object not deleted: {e}");
                }
            }
        }
        let newest = last_id.max(task.id.ms);
        let min_id = newest.saturating_sub(self.cfg.min_message_lifetime_ms);
        self.streams.trim_and_requeue(wk, task, min_id).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{StorageConfig, StorageKind};
    use crate::streams::MemoryStreams;

    fn update_frame(doc: &yrs::Doc) -> Vec<u8> {
        use yrs::{ReadTxn, StateVector, Transact};
        let u = doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        yjs_core::protocol::sync_update_frame(&u)
    }

    #[tokio::test]
    async fn compacts_trims_and_deletes_old_objects() {
        use yrs::{Map, Transact};
        let streams = Streams::Memory(MemoryStreams::ephemeral());
        let storage = Storage::open(
            &StorageConfig {
                kind: StorageKind::Memory,
                ..Default::default()
            },
            std::path::Path::new("."),
        )
        .unwrap();
        let cfg = WorkerConfig {
            task_debounce_ms: 0,
            min_message_lifetime_ms: 0,
            ..Default::default()
        };
        let w = Worker::new(cfg, streams.clone(), storage.clone(), Arc::default());
        let key = keys::stream_key("y", "r 1", "index");
        let doc = yrs::Doc::new();
        let m = doc.get_or_insert_map("m");
        m.insert(&mut doc.transact_mut(), "a", 1);
        streams
            .append(&key, Bytes::from(update_frame(&doc)), None)
            .await
            .unwrap();
        // Round 1 persists; the entry is older than "now - 0" only after a tick.
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(w.round("y").await.unwrap(), 1);
        let objs = storage.list("r%201/index/").await.unwrap();
        assert_eq!(objs.len(), 1);
        // Round 2: nothing changed, the stream is trimmed to empty.
        tokio::time::sleep(Duration::from_millis(5)).await;
        w.round("y").await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        w.round("y").await.unwrap();
        assert_eq!(streams.len(&key).await.unwrap(), 0);
        let st = streams.stats(&["y".into()]).await;
        assert_eq!((st.streams, st.worker_queue), (Some(0), 0));
        // A new edit re-creates the stream and leads to exactly one (new) object.
        m.insert(&mut doc.transact_mut(), "b", 2);
        streams
            .append(&key, Bytes::from(update_frame(&doc)), None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        w.round("y").await.unwrap();
        let objs2 = storage.list("r%201/index/").await.unwrap();
        assert_eq!(objs2.len(), 1);
        assert_ne!(objs, objs2);
    }
}
