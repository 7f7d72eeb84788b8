//! The process's stream backend, blob store and compaction worker, opened once from the
//! configuration at start (changing them needs a restart).

use crate::config::Config;
use crate::storage::Storage;
use crate::streams::{LogOptions, MemoryStreams, RedisStreams, Streams};
use crate::yredis::worker::Worker;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

/// Longest a graceful shutdown waits for queued Redis appends.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Streams, storage and (when enabled) the in-process worker.
#[derive(Clone)]
pub struct Backends {
    /// Streams (Redis or in-process).
    pub streams: Streams,
    /// Blob storage.
    pub storage: Storage,
    /// The worker running in this process, if any.
    pub worker: Option<Arc<Worker>>,
    /// The worker prefixes (for stats).
    pub prefixes: Vec<String>,
}

impl Backends {
    /// Opens streams and storage; with `run_worker` (or `[worker] enabled`) starts the worker.
    pub async fn open(cfg: &Config, run_worker: bool) -> anyhow::Result<Backends> {
        let streams = match &cfg.redis {
            Some(r) => {
                let url = r.resolved_url().map_err(anyhow::Error::msg)?;
                let s = RedisStreams::connect(&url)
                    .await
                    .with_context(|| "connecting to [redis]".to_string())?;
                tracing::info!("streams: redis");
                Streams::Redis(s)
            }
            None => {
                let dir = cfg.resolve(&cfg.streams.data_dir);
                let options = LogOptions {
                    sync_interval: Duration::from_millis(cfg.streams.sync_interval_ms),
                    rewrite_min_bytes: cfg.streams.rewrite_min_bytes,
                };
                let s = MemoryStreams::open_with(&dir, options)
                    .with_context(|| format!("opening the stream log in {}", dir.display()))?;
                tracing::info!(dir = %dir.display(), "streams: in-process, logged");
                Streams::Memory(s)
            }
        };
        let storage = Storage::open(&cfg.storage, &cfg.base_dir).context("opening [storage]")?;
        let tailer = streams.tailer().clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                tailer.sweep();
            }
        });
        let worker = if run_worker || cfg.worker.enabled {
            // The worker reads whole streams: on Redis it gets its own connection so those
            // replies never hold up the appends and reads of live rooms.
            let worker_streams = match &cfg.redis {
                Some(r) => {
                    let url = r.resolved_url().map_err(anyhow::Error::msg)?;
                    Streams::Redis(RedisStreams::connect(&url).await?)
                }
                None => streams.clone(),
            };
            let w = Worker::new(cfg.worker.clone(), worker_streams, storage.clone());
            let worker = w.clone();
            crate::supervise::spawn("compaction worker", move || worker.clone().run());
            Some(w)
        } else {
            None
        };
        Ok(Backends {
            streams,
            storage,
            worker,
            prefixes: cfg.worker.prefix.clone(),
        })
    }

    /// Flushes the stream log, or the appends queued for Redis (graceful shutdown).
    pub async fn close(&self) {
        match &self.streams {
            Streams::Memory(m) => m.close(),
            Streams::Redis(r) => {
                // Appends a client was told are on their way reach Redis before the exit.
                let queued = r.queued();
                let started = std::time::Instant::now();
                match tokio::time::timeout(FLUSH_TIMEOUT, r.flush()).await {
                    Ok(()) => tracing::info!(
                        queued,
                        ms = started.elapsed().as_millis() as u64,
                        "flushed the queued Redis appends"
                    ),
                    Err(_) => tracing::error!(
                        queued,
                        left = r.queued(),
                        "Redis appends still queued after {FLUSH_TIMEOUT:?}; exiting without them"
                    ),
                }
            }
        }
    }
}
