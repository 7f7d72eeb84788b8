//! The in-process stream backend: Redis stream semantics for one gateway, made durable by the
//! append log. A dedicated writer thread writes queued records in order and only then hands
//! new entries to the tailer, so whatever a client has seen delivered survives a crash.

use super::log::{self, Record};
use super::tail::Tailer;
use super::{Entry, StreamError, StreamId, StreamStats, Task, worker_key_of};
use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Queued log bytes above which writers wait for the log to catch up.
const MAX_QUEUED_BYTES: usize = 64 << 20;
/// The log is rewritten once it is this large and at least twice the live data.
const REWRITE_MIN_BYTES: u64 = 64 << 20;

#[derive(Default)]
struct Stream {
    entries: VecDeque<Entry>,
    last: StreamId,
    bytes: usize,
}

struct TaskState {
    stream: String,
    parked_ms: u64,
}

#[derive(Default)]
struct Queue {
    tasks: BTreeMap<StreamId, TaskState>,
    last: StreamId,
}

#[derive(Default)]
struct Inner {
    streams: HashMap<String, Stream>,
    queues: HashMap<String, Queue>,
    /// Records not yet written by the log thread.
    pending: Vec<Record>,
    pending_bytes: usize,
    closed: bool,
}

impl Inner {
    fn enqueue_task(&mut self, worker_key: String, stream: &str, now: u64) {
        let q = self.queues.entry(worker_key).or_default();
        q.last = q.last.next_after(now);
        q.tasks.insert(
            q.last,
            TaskState {
                stream: stream.to_string(),
                parked_ms: now,
            },
        );
    }

    fn apply(&mut self, rec: Record) {
        match rec {
            Record::Add { key, entry } => {
                let s = self.streams.entry(key).or_default();
                if entry.id > s.last {
                    s.last = entry.id;
                    s.bytes += entry.data.len();
                    s.entries.push_back(entry);
                }
            }
            Record::Trim { key, min_ms } => {
                if let Some(s) = self.streams.get_mut(&key) {
                    s.trim(min_ms);
                }
            }
            Record::Del { key } => {
                self.streams.remove(&key);
            }
        }
    }
}

impl Stream {
    fn trim(&mut self, min_ms: u64) {
        while let Some(e) = self.entries.front() {
            if e.id.ms >= min_ms {
                break;
            }
            self.bytes -= e.data.len();
            self.entries.pop_front();
        }
    }
}

struct Shared {
    inner: Mutex<Inner>,
    wake: Condvar,
    drained: Notify,
    tailer: Arc<Tailer>,
}

/// In-process streams, optionally logged to a directory.
pub struct MemoryStreams {
    shared: Arc<Shared>,
    logged: bool,
    /// Delivery of bound streams.
    pub tailer: Arc<Tailer>,
}

fn now_ms() -> u64 {
    crate::auth::now_ms()
}

impl MemoryStreams {
    /// Streams that live in memory only (tests, or when durability is not wanted).
    pub fn ephemeral() -> Arc<Self> {
        let tailer = Arc::new(Tailer::default());
        Arc::new(Self {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner::default()),
                wake: Condvar::new(),
                drained: Notify::new(),
                tailer: tailer.clone(),
            }),
            logged: false,
            tailer,
        })
    }

    /// Opens (or creates) the log in `dir`, replays it, and starts the writer thread. Every
    /// replayed stream gets a compaction task. Blocking.
    pub fn open(dir: &Path, sync_interval: Duration) -> Result<Arc<Self>, StreamError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StreamError::Log(format!("{}: {e}", dir.display())))?;
        let path = log::log_path(dir);
        let started = Instant::now();
        let (records, _) = log::replay(&path)?;
        let replayed = records.len();
        let mut inner = Inner::default();
        for r in records {
            inner.apply(r);
        }
        inner
            .streams
            .retain(|_, s| !s.entries.is_empty() || s.last != StreamId::ZERO);
        let now = now_ms();
        let keys: Vec<String> = inner.streams.keys().cloned().collect();
        for k in &keys {
            if let Ok(wk) = worker_key_of(k) {
                inner.enqueue_task(wk, k, now);
            }
        }
        let file = log::rewrite(&path, &snapshot(&inner))?;
        tracing::info!(
            dir = %dir.display(),
            records = replayed,
            streams = keys.len(),
            ms = started.elapsed().as_millis() as u64,
            "stream log replayed"
        );
        let tailer = Arc::new(Tailer::default());
        let shared = Arc::new(Shared {
            inner: Mutex::new(inner),
            wake: Condvar::new(),
            drained: Notify::new(),
            tailer: tailer.clone(),
        });
        let handle = tokio::runtime::Handle::current();
        let s2 = shared.clone();
        std::thread::Builder::new()
            .name("stream-log".into())
            .spawn(move || writer(s2, file, path, sync_interval, handle))
            .map_err(|e| StreamError::Log(e.to_string()))?;
        Ok(Arc::new(Self {
            shared,
            logged: true,
            tailer,
        }))
    }

    /// Stops the writer thread after it has written everything queued.
    pub fn close(&self) {
        self.shared.inner.lock().closed = true;
        self.shared.wake.notify_one();
    }

    /// Waits until everything queued so far is written (tests, shutdown).
    pub async fn flush(&self) {
        loop {
            let notified = self.shared.drained.notified();
            if self.shared.inner.lock().pending.is_empty() {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }

    fn record(&self, inner: &mut Inner, rec: Record, deliver: Option<(&str, Entry)>) {
        if self.logged {
            inner.pending_bytes += rec.encoded_len();
            inner.pending.push(rec);
            self.shared.wake.notify_one();
        } else if let Some((key, e)) = deliver {
            self.tailer.push(key, [e]);
        }
    }

    /// Appends an entry, enqueueing a compaction task when the stream is new.
    pub async fn add_message(&self, key: &str, data: Bytes) -> Result<StreamId, StreamError> {
        let wk = worker_key_of(key)?;
        let full = {
            let mut inner = self.shared.inner.lock();
            let now = now_ms();
            if !inner.streams.contains_key(key) {
                inner.enqueue_task(wk, key, now);
                inner.streams.insert(key.to_string(), Stream::default());
            }
            let s = inner.streams.get_mut(key).expect("just inserted");
            let id = s.last.next_after(now);
            s.last = id;
            s.bytes += data.len();
            let entry = Entry { id, data };
            s.entries.push_back(entry.clone());
            self.record(
                &mut inner,
                Record::Add {
                    key: key.to_string(),
                    entry: entry.clone(),
                },
                Some((key, entry)),
            );
            (inner.pending_bytes > MAX_QUEUED_BYTES, id)
        };
        if full.0 {
            self.flush().await;
        }
        Ok(full.1)
    }

    /// Entries after `after`, at most `count` (0 = all).
    pub fn read(&self, key: &str, after: StreamId, count: usize) -> Vec<Entry> {
        let inner = self.shared.inner.lock();
        let Some(s) = inner.streams.get(key) else {
            return Vec::new();
        };
        let start = s.entries.partition_point(|e| e.id <= after);
        let n = if count == 0 { usize::MAX } else { count };
        s.entries.range(start..).take(n).cloned().collect()
    }

    /// Entry count.
    pub fn len(&self, key: &str) -> u64 {
        self.shared
            .inner
            .lock()
            .streams
            .get(key)
            .map_or(0, |s| s.entries.len() as u64)
    }

    /// Claims due tasks (idle at least `min_idle_ms`), resetting their idle time.
    pub fn claim_tasks(&self, worker_key: &str, min_idle_ms: u64, count: u32) -> Vec<Task> {
        let mut inner = self.shared.inner.lock();
        let now = now_ms();
        let Some(q) = inner.queues.get_mut(worker_key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (id, t) in q.tasks.iter_mut() {
            if out.len() >= count as usize {
                break;
            }
            if now.saturating_sub(t.parked_ms) >= min_idle_ms {
                t.parked_ms = now;
                out.push(Task {
                    id: *id,
                    stream: t.stream.clone(),
                });
            }
        }
        out
    }

    /// Deletes the stream if empty and drops the task.
    pub async fn finish_empty(&self, worker_key: &str, task: &Task) -> Result<(), StreamError> {
        let mut inner = self.shared.inner.lock();
        if inner
            .streams
            .get(&task.stream)
            .is_some_and(|s| s.entries.is_empty())
        {
            inner.streams.remove(&task.stream);
            self.record(
                &mut inner,
                Record::Del {
                    key: task.stream.clone(),
                },
                None,
            );
        }
        if let Some(q) = inner.queues.get_mut(worker_key) {
            q.tasks.remove(&task.id);
        }
        Ok(())
    }

    /// Trims below `min_id_ms` and replaces the task with a freshly parked one.
    pub async fn trim_and_requeue(
        &self,
        worker_key: &str,
        task: &Task,
        min_id_ms: u64,
    ) -> Result<(), StreamError> {
        let mut inner = self.shared.inner.lock();
        if let Some(s) = inner.streams.get_mut(&task.stream) {
            s.trim(min_id_ms);
            self.record(
                &mut inner,
                Record::Trim {
                    key: task.stream.clone(),
                    min_ms: min_id_ms,
                },
                None,
            );
        }
        let removed = inner
            .queues
            .get_mut(worker_key)
            .and_then(|q| q.tasks.remove(&task.id))
            .is_some();
        if removed {
            inner.enqueue_task(worker_key.to_string(), &task.stream, now_ms());
        }
        Ok(())
    }

    /// Numbers for `/health`.
    pub fn stats(&self, prefixes: &[String]) -> StreamStats {
        let inner = self.shared.inner.lock();
        let worker_queue = prefixes
            .iter()
            .filter_map(|p| inner.queues.get(&format!("{p}:worker")))
            .map(|q| q.tasks.len() as u64)
            .sum();
        StreamStats {
            backend: "memory",
            streams: Some(inner.streams.len() as u64),
            worker_queue,
        }
    }
}

fn snapshot(inner: &Inner) -> Vec<Record> {
    let mut out = Vec::new();
    for (k, s) in &inner.streams {
        for e in &s.entries {
            out.push(Record::Add {
                key: k.clone(),
                entry: e.clone(),
            });
        }
        if s.entries.is_empty() {
            // Keep an existing-but-empty stream (and its last id) alive across restarts: an
            // add followed by a trim to nothing.
            out.push(Record::Add {
                key: k.clone(),
                entry: Entry {
                    id: s.last,
                    data: Bytes::new(),
                },
            });
            out.push(Record::Trim {
                key: k.clone(),
                min_ms: s.last.ms + 1,
            });
        }
    }
    out
}

fn writer(
    shared: Arc<Shared>,
    mut file: File,
    path: PathBuf,
    sync_interval: Duration,
    rt: tokio::runtime::Handle,
) {
    let _guard = rt.enter();
    let mut buf = Vec::with_capacity(1 << 20);
    let mut written: u64 = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let mut last_sync = Instant::now();
    let mut dirty = false;
    loop {
        let (batch, closed) = {
            let mut inner = shared.inner.lock();
            while inner.pending.is_empty() && !inner.closed {
                let wait = if dirty && !sync_interval.is_zero() {
                    sync_interval
                } else {
                    Duration::from_secs(3600)
                };
                if shared.wake.wait_for(&mut inner, wait).timed_out() {
                    break;
                }
            }
            inner.pending_bytes = 0;
            (std::mem::take(&mut inner.pending), inner.closed)
        };
        if !batch.is_empty() {
            buf.clear();
            for r in &batch {
                r.encode(&mut buf);
            }
            if let Err(e) = file.write_all(&buf) {
                // Nothing is delivered that is not logged: keep retrying, loudly.
                tracing::error!(file = %path.display(), "stream log write failed: {e}; retrying");
                std::thread::sleep(Duration::from_millis(100));
                let mut inner = shared.inner.lock();
                let later = std::mem::take(&mut inner.pending);
                inner.pending = batch;
                inner.pending.extend(later);
                continue;
            }
            written += buf.len() as u64;
            dirty = true;
            for r in batch {
                if let Record::Add { key, entry } = r {
                    shared.tailer.push(&key, [entry]);
                }
            }
            shared.drained.notify_waiters();
        }
        if dirty && !sync_interval.is_zero() && last_sync.elapsed() >= sync_interval {
            let _ = file.sync_data();
            last_sync = Instant::now();
            dirty = false;
        }
        if written > REWRITE_MIN_BYTES {
            let (records, live) = {
                let inner = shared.inner.lock();
                let live: usize = inner.streams.values().map(|s| s.bytes).sum();
                if (live as u64) * 2 > written {
                    (None, live)
                } else {
                    (Some(snapshot(&inner)), live)
                }
            };
            if let Some(records) = records {
                match log::rewrite(&path, &records) {
                    Ok(f) => {
                        tracing::info!(before = written, live, "stream log rewritten");
                        file = f;
                        written = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    }
                    Err(e) => tracing::error!("stream log rewrite failed: {e}"),
                }
            }
        }
        if closed && shared.inner.lock().pending.is_empty() {
            let _ = file.sync_data();
            return;
        }
    }
}
