//! The in-process stream backend: Redis stream semantics for one gateway, made durable by the
//! append log. Every change is written to the log (a `write` into the page cache, under the
//! streams lock, so the log order is the id order) before its entries are handed to the
//! tailer: whatever a client has seen delivered survives a crash of the process. A background
//! thread `fdatasync`s the log every `sync_interval_ms` for power loss. A write that fails
//! (a full disk) is cut back off the log and refused; a failed sync rewrites the log from
//! memory; rewrites run on their own thread while appends go on.

use super::log::{self, Record};
use super::tail::Tailer;
use super::{Entry, StreamError, StreamId, StreamStats, Task, worker_key_of};
use crate::clock::now_ms;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How the stream log is kept.
#[derive(Debug, Clone, Copy)]
pub struct LogOptions {
    /// `fdatasync` at most this often (zero: never).
    pub sync_interval: Duration,
    /// The log is rewritten once it is this large and at least twice the live data.
    pub rewrite_min_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            sync_interval: Duration::from_secs(1),
            rewrite_min_bytes: 64 << 20,
        }
    }
}

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
    log: Option<LogFile>,
    /// Retained logs (see `append_retained`) and how long each keeps entries.
    retained: HashMap<String, u64>,
    /// Retained appends since the last sweep of idle retained logs.
    since_sweep: u32,
}

/// Retained appends between two sweeps of idle retained logs.
const SWEEP_EVERY: u32 = 1024;

struct LogFile {
    file: File,
    path: PathBuf,
    /// Bytes of whole records in the file: a failed write is cut back to this.
    written: u64,
    dirty: bool,
    buf: Vec<u8>,
    rewrite_min_bytes: u64,
    /// While a rewrite runs: the records committed since its snapshot, framed, to append to
    /// the new file before it replaces the old one.
    rewriting: Option<Vec<u8>>,
    /// A failed write could not be cut off: nothing is accepted until it can.
    broken: bool,
    /// A sync failed: the page cache may have dropped what it held, so the log is rewritten
    /// from memory.
    needs_rewrite: bool,
    /// Where the rewrite thread finds the streams.
    this: Weak<Mutex<Inner>>,
    /// Rewrites started since the log was opened.
    rewrites: u64,
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

/// In-process streams, optionally logged to a directory.
pub struct MemoryStreams {
    inner: Arc<Mutex<Inner>>,
    /// Delivery of bound streams.
    pub tailer: Arc<Tailer>,
}

impl MemoryStreams {
    /// Streams that live in memory only (tests, or when durability is not wanted).
    pub fn ephemeral() -> Arc<Self> {
        Arc::new(Self {
            inner: Arc::new(Mutex::new(Inner::default())),
            tailer: Arc::new(Tailer::default()),
        })
    }

    /// Opens (or creates) the log in `dir` with default [`LogOptions`] but `sync_interval`.
    pub fn open(dir: &Path, sync_interval: Duration) -> Result<Arc<Self>, StreamError> {
        Self::open_with(
            dir,
            LogOptions {
                sync_interval,
                ..LogOptions::default()
            },
        )
    }

    /// Opens (or creates) the log in `dir`, replays it (and rewrites it compactly), and starts
    /// the sync thread. Every replayed stream gets a compaction task. Blocking.
    pub fn open_with(dir: &Path, options: LogOptions) -> Result<Arc<Self>, StreamError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StreamError::Log(format!("{}: {e}", dir.display())))?;
        let path = log::log_path(dir);
        // A rewrite the last process did not finish: the log it was to replace is intact.
        let _ = std::fs::remove_file(log::temp_path(&path));
        let started = Instant::now();
        let mut replayed = log::replay(&path)?;
        let count = replayed.records.len();
        let mut inner = Inner::default();
        for r in std::mem::take(&mut replayed.records) {
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
        // A clean log is appended to where it ends (a torn tail or damage is cut off first:
        // replay saved damaged bytes aside); only a log without checksums, or none at all, is
        // written afresh. A nearly full disk can thus still start the gateway.
        let (file, written) = if replayed.legacy || !path.exists() {
            log::rewrite(&path, &snapshot_records(snapshot(&inner)))?
        } else {
            let file = log::open_append(&path)?;
            if replayed.dropped_bytes > 0 {
                file.set_len(replayed.good_bytes)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| StreamError::Log(format!("{}: {e}", path.display())))?;
            }
            (file, replayed.good_bytes)
        };
        tracing::info!(
            dir = %dir.display(),
            records = count,
            streams = keys.len(),
            ms = started.elapsed().as_millis() as u64,
            "stream log replayed"
        );
        let inner = Arc::new_cyclic(|this| {
            inner.log = Some(LogFile {
                file,
                path,
                written,
                dirty: false,
                buf: Vec::with_capacity(4096),
                rewrite_min_bytes: options.rewrite_min_bytes,
                rewriting: None,
                broken: false,
                needs_rewrite: false,
                rewrites: 0,
                this: this.clone(),
            });
            Mutex::new(inner)
        });
        if !options.sync_interval.is_zero() {
            let weak = Arc::downgrade(&inner);
            let interval = options.sync_interval;
            std::thread::Builder::new()
                .name("stream-log-sync".into())
                .spawn(move || syncer(weak, interval))
                .map_err(|e| StreamError::Log(e.to_string()))?;
        }
        Ok(Arc::new(Self {
            inner,
            tailer: Arc::new(Tailer::default()),
        }))
    }

    /// Syncs the log to disk (graceful shutdown).
    pub fn close(&self) {
        let log = self.inner.lock();
        if let Some(l) = log.log.as_ref()
            && let Err(e) = l.file.sync_data()
        {
            log::count_error();
            tracing::error!(file = %l.path.display(), "stream log sync failed at shutdown: {e}");
        }
    }

    /// Logs a change (when logged), then applies it. A failed write is an error and changes
    /// nothing: nothing is delivered that is not logged, and the part of the record that did
    /// reach the file is cut off again. The log is rewritten only after the change is applied,
    /// so the rewrite's snapshot includes it.
    fn commit(&self, inner: &mut Inner, rec: Record) -> Result<(), StreamError> {
        if let Some(log) = inner.log.as_mut() {
            if log.broken {
                log.file
                    .set_len(log.written)
                    .map_err(|e| StreamError::Log(format!("log unusable: {e}")))?;
                log.broken = false;
            }
            log.buf.clear();
            rec.encode(&mut log.buf);
            if let Err(e) = log.file.write_all(&log.buf) {
                log::count_error();
                tracing::error!(file = %log.path.display(), "stream log write failed: {e}");
                if let Err(t) = log.file.set_len(log.written) {
                    tracing::error!(file = %log.path.display(), "cannot cut the failed write off the stream log: {t}");
                    log.broken = true;
                }
                return Err(StreamError::Log(e.to_string()));
            }
            log.written += log.buf.len() as u64;
            log.dirty = true;
            if let Some(pending) = log.rewriting.as_mut() {
                pending.extend_from_slice(&log.buf);
            }
        }
        inner.apply(rec);
        if inner
            .log
            .as_ref()
            .is_some_and(|l| l.written > l.rewrite_min_bytes)
        {
            maybe_rewrite(inner, false);
        }
        Ok(())
    }

    /// Appends an entry, enqueueing a compaction task when the stream is new.
    pub async fn add_message(&self, key: &str, data: Bytes) -> Result<StreamId, StreamError> {
        let wk = worker_key_of(key)?;
        let mut inner = self.inner.lock();
        let now = now_ms();
        let last = inner.streams.get(key).map(|s| s.last);
        let id = last.unwrap_or_default().next_after(now);
        let entry = Entry { id, data };
        self.commit(
            &mut inner,
            Record::Add {
                key: key.to_string(),
                entry: entry.clone(),
            },
        )?;
        if last.is_none() {
            inner.enqueue_task(wk, key, now);
        }
        self.tailer.push(key, [entry]);
        Ok(id)
    }

    /// Appends an entry to a retained log (no compaction task), drops its entries older than
    /// `keep_ms`, and now and then deletes retained logs that saw no append for their `keep_ms`.
    pub fn append_retained(
        &self,
        key: &str,
        data: Bytes,
        keep_ms: u64,
    ) -> Result<StreamId, StreamError> {
        let mut inner = self.inner.lock();
        let now = now_ms();
        let last = inner.streams.get(key).map(|s| s.last).unwrap_or_default();
        let entry = Entry {
            id: last.next_after(now),
            data,
        };
        let id = entry.id;
        self.commit(
            &mut inner,
            Record::Add {
                key: key.to_string(),
                entry,
            },
        )?;
        let min_ms = now.saturating_sub(keep_ms);
        if inner
            .streams
            .get(key)
            .and_then(|s| s.entries.front())
            .is_some_and(|e| e.id.ms < min_ms)
        {
            self.commit(
                &mut inner,
                Record::Trim {
                    key: key.to_string(),
                    min_ms,
                },
            )?;
        }
        inner.retained.insert(key.to_string(), keep_ms);
        inner.since_sweep += 1;
        if inner.since_sweep >= SWEEP_EVERY {
            inner.since_sweep = 0;
            let idle: Vec<String> = inner
                .retained
                .iter()
                .filter(|(k, keep)| {
                    inner
                        .streams
                        .get(*k)
                        .is_none_or(|s| s.last.ms.saturating_add(**keep) < now)
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in idle {
                inner.retained.remove(&k);
                self.commit(&mut inner, Record::Del { key: k })?;
            }
        }
        Ok(id)
    }

    /// Entries before `before`, newest first, at most `count`.
    pub fn read_back(&self, key: &str, before: StreamId, count: usize) -> Vec<Entry> {
        let inner = self.inner.lock();
        let Some(s) = inner.streams.get(key) else {
            return Vec::new();
        };
        let end = s.entries.partition_point(|e| e.id < before);
        s.entries.range(..end).rev().take(count).cloned().collect()
    }

    /// Entries after `after`, at most `count` (0 = all).
    pub fn read(&self, key: &str, after: StreamId, count: usize) -> Vec<Entry> {
        let inner = self.inner.lock();
        let Some(s) = inner.streams.get(key) else {
            return Vec::new();
        };
        let start = s.entries.partition_point(|e| e.id <= after);
        let n = if count == 0 { usize::MAX } else { count };
        s.entries.range(start..).take(n).cloned().collect()
    }

    /// Entry count.
    pub fn len(&self, key: &str) -> u64 {
        self.inner
            .lock()
            .streams
            .get(key)
            .map_or(0, |s| s.entries.len() as u64)
    }

    /// Claims due tasks (idle at least `min_idle_ms`), resetting their idle time.
    pub fn claim_tasks(&self, worker_key: &str, min_idle_ms: u64, count: u32) -> Vec<Task> {
        let mut inner = self.inner.lock();
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
        let mut inner = self.inner.lock();
        if inner
            .streams
            .get(&task.stream)
            .is_some_and(|s| s.entries.is_empty())
        {
            self.commit(
                &mut inner,
                Record::Del {
                    key: task.stream.clone(),
                },
            )?;
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
        let mut inner = self.inner.lock();
        if inner.streams.contains_key(&task.stream) {
            self.commit(
                &mut inner,
                Record::Trim {
                    key: task.stream.clone(),
                    min_ms: min_id_ms,
                },
            )?;
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
        let inner = self.inner.lock();
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

/// The live streams, copied under the lock: one key per stream and the entries (cheap
/// `Bytes` clones), so that the lock is held as briefly as possible.
type Snapshot = Vec<(String, StreamId, Vec<Entry>)>;

fn snapshot(inner: &Inner) -> Snapshot {
    inner
        .streams
        .iter()
        .map(|(k, s)| (k.clone(), s.last, s.entries.iter().cloned().collect()))
        .collect()
}

/// The records that recreate a snapshot.
fn snapshot_records(snapshot: Snapshot) -> Vec<Record> {
    let mut out = Vec::new();
    for (key, last, entries) in snapshot {
        if entries.is_empty() {
            // Keep an existing-but-empty stream (and its last id) alive across restarts: an
            // add followed by a trim to nothing.
            out.push(Record::Add {
                key: key.clone(),
                entry: Entry {
                    id: last,
                    data: Bytes::new(),
                },
            });
            out.push(Record::Trim {
                key,
                min_ms: last.ms + 1,
            });
            continue;
        }
        for entry in entries {
            out.push(Record::Add {
                key: key.clone(),
                entry,
            });
        }
    }
    out
}

/// The bytes the live streams take in a freshly written log.
fn live_log_bytes(inner: &Inner) -> u64 {
    inner
        .streams
        .iter()
        .map(|(k, s)| {
            let records = s.entries.len().max(1) as u64;
            records * log::record_len(k.len(), 0) as u64 + s.bytes as u64
        })
        .sum()
}

/// Starts a rewrite of the log from the live entries once it is mostly garbage (trimmed or
/// deleted), or at once when `force`d. The snapshot is taken here, under the lock; the records
/// are framed and written on their own thread, and what is committed meanwhile is appended
/// before the new file replaces the log.
fn maybe_rewrite(inner: &mut Inner, force: bool) {
    let live = live_log_bytes(inner);
    let Some(log) = inner.log.as_ref() else {
        return;
    };
    if log.rewriting.is_some() || (!force && live * 2 > log.written) {
        return;
    }
    let before = log.written;
    let snapshot = snapshot(inner);
    let log = inner.log.as_mut().expect("checked above");
    let (path, this) = (log.path.clone(), log.this.clone());
    log.rewriting = Some(Vec::new());
    log.needs_rewrite = false;
    log.rewrites += 1;
    tracing::info!(before, live, "stream log rewrite started");
    let spawned = std::thread::Builder::new()
        .name("stream-log-rewrite".into())
        .spawn(move || rewrite(this, path, snapshot, before));
    if let Err(e) = spawned {
        tracing::error!("cannot start the stream log rewrite: {e}");
        log.rewriting = None;
    }
}

/// The rewrite thread: writes the snapshot to the temporary file, then, under the lock, adds
/// what was committed meanwhile and renames it over the log.
fn rewrite(this: Weak<Mutex<Inner>>, path: PathBuf, snapshot: Snapshot, before: u64) {
    let tmp = log::temp_path(&path);
    let records = snapshot_records(snapshot);
    let written = log::write_temp(&tmp, &records, &[]);
    drop(records);
    let Some(inner) = this.upgrade() else {
        let _ = std::fs::remove_file(&tmp);
        return;
    };
    let mut g = inner.lock();
    let Some(log) = g.log.as_mut() else { return };
    let pending = log.rewriting.take().unwrap_or_default();
    let installed = written.and_then(|w| {
        // The handle is opened before the rename and follows the file through it.
        let mut f = log::open_append(&tmp)?;
        f.write_all(&pending)
            .and_then(|()| f.sync_data())
            .map_err(|e| StreamError::Log(format!("{}: {e}", tmp.display())))?;
        log::install(&tmp, &path)?;
        Ok((f, w + pending.len() as u64))
    });
    match installed {
        Ok((f, after)) => {
            log.file = f;
            log.written = after;
            log.broken = false;
            tracing::info!(before, after, "stream log rewritten");
        }
        Err(e) => {
            log::count_error();
            log.needs_rewrite = true;
            let _ = std::fs::remove_file(&tmp);
            tracing::error!("stream log rewrite failed (the old log stays): {e}");
        }
    }
}

/// `fdatasync`s the log every `interval` while something was written; a failed sync is
/// counted, logged and answered with a rewrite from memory.
fn syncer(inner: Weak<Mutex<Inner>>, interval: Duration) {
    loop {
        std::thread::sleep(interval);
        let Some(inner) = inner.upgrade() else { return };
        let file = {
            let mut g = inner.lock();
            if g.log.as_ref().is_some_and(|l| l.needs_rewrite) {
                maybe_rewrite(&mut g, true);
            }
            match g.log.as_mut() {
                Some(l) if l.dirty => {
                    l.dirty = false;
                    l.file.try_clone().ok().map(|f| (f, l.path.clone()))
                }
                _ => None,
            }
        };
        if let Some((f, path)) = file
            && let Err(e) = f.sync_data()
        {
            log::count_error();
            tracing::error!(file = %path.display(), "stream log sync failed, rewriting it from memory: {e}");
            if let Some(l) = inner.lock().log.as_mut() {
                l.needs_rewrite = true;
            }
        }
        drop(inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_entries_are_not_rewritten_until_they_are_garbage() {
        let dir = std::env::temp_dir().join(format!("gw-memlog-{}", uuid::Uuid::new_v4()));
        let options = LogOptions {
            sync_interval: Duration::ZERO,
            rewrite_min_bytes: 4096,
        };
        let s = MemoryStreams::open_with(&dir, options).unwrap();
        let rewrites = || s.inner.lock().log.as_ref().unwrap().rewrites;
        // Framing outweighs 8-byte payloads: the log is far more than twice the data, yet
        // every record is live.
        let key = "y:room:a-rather-long-room-name:index";
        for i in 0..1000u64 {
            s.add_message(key, Bytes::from(i.to_le_bytes().to_vec()))
                .await
                .unwrap();
        }
        assert_eq!(rewrites(), 0, "a log without garbage is not rewritten");
        // Trimmed to nothing: the log is all garbage now, and the next write rewrites it.
        let task = s.claim_tasks("y:worker", 0, 1).pop().unwrap();
        s.trim_and_requeue("y:worker", &task, u64::MAX)
            .await
            .unwrap();
        assert_eq!(rewrites(), 1);
        assert_eq!(s.len(key), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn retained_logs_return_ids_read_backwards_and_trim() {
        let s = MemoryStreams::ephemeral();
        let ids: Vec<StreamId> = (0..5)
            .map(|i| {
                s.append_retained("ably:h:c", Bytes::from(vec![i]), 60_000)
                    .unwrap()
            })
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow");
        let back = s.read_back("ably:h:c", StreamId::MAX, 3);
        assert_eq!(
            back.iter().map(|e| e.data[0]).collect::<Vec<_>>(),
            [4, 3, 2]
        );
        let older = s.read_back("ably:h:c", ids[2], 10);
        assert_eq!(older.iter().map(|e| e.data[0]).collect::<Vec<_>>(), [1, 0]);
        assert_eq!(s.read("ably:h:c", ids[3], 0).len(), 1);
        // Nothing is queued for compaction, and a key of any shape is accepted.
        assert_eq!(s.stats(&["ably".into()]).worker_queue, 0);
        // A keep of 1 ms drops what came before (once a millisecond has passed).
        std::thread::sleep(std::time::Duration::from_millis(3));
        s.append_retained("ably:h:c", Bytes::from_static(b"z"), 1)
            .unwrap();
        assert_eq!(s.len("ably:h:c"), 1);
    }
}
