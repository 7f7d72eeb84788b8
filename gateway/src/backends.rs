//! The process's stream backend, blob store and compaction worker, opened once from the
//! configuration at start (changing them needs a restart).

use crate::config::{Config, StorageKind};
use crate::storage::Storage;
use crate::streams::{LogOptions, MemoryStreams, RedisStreams, Streams};
use crate::yredis::worker::{Worker, WorkerStats};
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
    pub worker: Option<Arc<WorkerHandle>>,
    /// The worker prefixes (for stats).
    pub prefixes: Vec<String>,
}

/// The compaction worker running in this process: its counters, and its thread, which stops
/// once the last clone of [`Backends`] is dropped.
pub struct WorkerHandle {
    /// Counters for `/health` and `/metrics`.
    pub stats: Arc<WorkerStats>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts the worker on its low-priority thread (see `yredis::background`). On Redis it gets
/// its own connection, made on that thread, so the replies of whole-stream reads are parsed
/// there and never hold up the appends and reads of live rooms; likewise its own S3 or GCS
/// client, so that no connection the serving side reuses is driven by that thread.
fn start_worker(
    cfg: &Config,
    redis_url: Option<String>,
    streams: Streams,
    storage: Storage,
) -> anyhow::Result<WorkerHandle> {
    let storage = match cfg.storage.kind {
        StorageKind::S3 | StorageKind::Gcs => {
            Storage::open(&cfg.storage, &cfg.base_dir).context("opening [storage]")?
        }
        // Files need no client; memory must be the same store.
        StorageKind::Fs | StorageKind::Memory => storage,
    };
    let cfg = cfg.worker.clone();
    let stats = Arc::new(WorkerStats::default());
    let priority = cfg.cpu_priority;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let counters = stats.clone();
    let task = async move {
        let streams = match redis_url {
            None => streams,
            Some(url) => loop {
                match RedisStreams::connect(&url).await {
                    Ok(s) => break Streams::Redis(s),
                    Err(e) => {
                        tracing::warn!("compaction worker: connecting to [redis]: {e}; retrying");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            },
        };
        let worker = Worker::new(cfg, streams, storage, counters);
        crate::supervise::spawn("compaction worker", move || worker.clone().run());
        let _ = stopped.await;
    };
    crate::yredis::background::spawn("compaction", priority, task)
        .context("starting the compaction worker's thread")?;
    Ok(WorkerHandle { stats, _stop: stop })
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
            let redis_url = match &cfg.redis {
                Some(r) => Some(r.resolved_url().map_err(anyhow::Error::msg)?),
                None => None,
            };
            Some(Arc::new(start_worker(
                cfg,
                redis_url,
                streams.clone(),
                storage.clone(),
            )?))
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
