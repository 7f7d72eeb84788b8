//! The Redis stream backend, laid out exactly like y-redis v0.1.6: room streams with the single
//! field `m`, the `{P}:worker` queue stream with consumer group `{P}:worker` (parking consumer
//! `pending`), and one reader connection that tails every bound stream with one blocking XREAD
//! ([`reader`]).

mod reader;
mod reply;

use crate::streams::tail::Tailer;
use crate::streams::{Entry, StreamError, StreamId, StreamStats, Task, worker_key_of};
use bytes::Bytes;
use parking_lot::Mutex;
use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use reply::{bulk, parse_entries};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Appends to the room stream and, when the stream is new, enqueues it for compaction and parks
/// the task under the `pending` consumer. Both keys are declared (Redis Cluster friendly when
/// the prefix is hash-tagged).
const ADD_MESSAGE: &str = r#"
if redis.call("EXISTS", KEYS[1]) == 0 then
  redis.call("XADD", KEYS[2], "*", "compact", KEYS[1])
  redis.call("XREADGROUP", "GROUP", KEYS[2], "pending", "STREAMS", KEYS[2], ">")
end
return redis.call("XADD", KEYS[1], "*", "m", ARGV[1])
"#;

const DEL_IF_EMPTY: &str = r#"
if redis.call("XLEN", KEYS[1]) == 0 then
  redis.call("DEL", KEYS[1])
end
return 0
"#;

/// Most appends sent to Redis in one pipeline.
const MAX_ADD_BATCH: usize = 512;
/// Appends waiting for the batcher before callers wait for room.
const ADD_QUEUE: usize = 16_384;
/// Payload bytes waiting for Redis before appends are refused (the caller's client is closed
/// with 1013 and re-sends after reconnecting) instead of growing memory while Redis is slow.
const MAX_QUEUED_BYTES: usize = 64 << 20;

/// What waits for the batcher: an append, or a flush that is answered once everything queued
/// before it was sent and answered.
enum Queued {
    Add(AddReq),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// One append waiting to be sent.
struct AddReq {
    key: String,
    worker_key: String,
    data: Bytes,
    /// Told when the append fails after the caller went on.
    on_fail: Option<super::OnFail>,
}

impl AddReq {
    fn finish(self, r: Result<StreamId, StreamError>) {
        if let (Err(e), Some(f)) = (r, self.on_fail) {
            f(e);
        }
    }
}

/// How long one blocking read waits.
const BLOCK_MS: u64 = 1000;
/// Most entries per stream per read.
const READ_COUNT: usize = 1000;

/// Streams in Redis.
pub struct RedisStreams {
    client: redis::Client,
    con: ConnectionManager,
    add_script: redis::Script,
    groups: Mutex<HashSet<String>>,
    reader_id: Mutex<Option<i64>>,
    adds: tokio::sync::mpsc::Sender<Queued>,
    /// Payload bytes of the appends queued and not yet answered by Redis.
    queued_bytes: std::sync::atomic::AtomicUsize,
    /// The value of the shared sentinel key [`SENTINEL`] this process last saw: the key gone
    /// or holding another value means Redis lost its data (see [`RedisStreams::on_data_loss`]).
    sentinel: Mutex<Option<String>>,
    on_data_loss: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// Times Redis was found to have lost its data.
    pub data_losses: std::sync::atomic::AtomicU64,
    /// Delivery of bound streams.
    pub tailer: Arc<Tailer>,
}

/// How often the sentinel key is checked.
const SENTINEL_EVERY: Duration = Duration::from_secs(1);
/// One key shared by every gateway on the Redis: written once with a random value; whoever
/// finds it gone writes a new one, and a gateway that finds a value other than the one it saw
/// knows the data was lost too.
const SENTINEL: &str = "gateway:sentinel";

/// Longest wait for one reply; past it the call fails (and the connection is re-established).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

fn rerr(e: redis::RedisError) -> StreamError {
    StreamError::Redis(e.to_string())
}

impl RedisStreams {
    /// Connects and starts the reader task.
    pub async fn connect(url: &str) -> Result<Arc<Self>, StreamError> {
        let client = redis::Client::open(url).map_err(rerr)?;
        // One connection for appends, reads and worker-queue calls, re-established in the
        // background (with backoff) whenever it breaks, so a Redis restart heals by itself.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_max_delay(2000);
        let con = tokio::time::timeout(
            Duration::from_secs(10),
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| {
            StreamError::Redis(format!(
                "connecting to {} timed out",
                crate::config::redacted_url(url)
            ))
        })?
        .map_err(rerr)?;
        let (adds, add_rx) = tokio::sync::mpsc::channel(ADD_QUEUE);
        let me = Arc::new(Self {
            client,
            con,
            adds,
            add_script: redis::Script::new(ADD_MESSAGE),
            groups: Mutex::new(HashSet::new()),
            reader_id: Mutex::new(None),
            queued_bytes: std::sync::atomic::AtomicUsize::new(0),
            sentinel: Mutex::new(None),
            on_data_loss: std::sync::OnceLock::new(),
            data_losses: std::sync::atomic::AtomicU64::new(0),
            tailer: Arc::new(Tailer::default()),
        });
        me.check_sentinel().await.map_err(rerr)?;
        let weak = Arc::downgrade(&me);
        crate::supervise::spawn("redis stream reader", move || reader::reader(weak.clone()));
        crate::supervise::spawn_once("redis append batcher", batcher(Arc::downgrade(&me), add_rx));
        let weak = Arc::downgrade(&me);
        crate::supervise::spawn("redis reader unblocker", move || {
            reader::unblocker(weak.clone())
        });
        let weak = Arc::downgrade(&me);
        crate::supervise::spawn("redis data-loss watch", move || {
            watch_sentinel(weak.clone())
        });
        Ok(me)
    }

    /// Called when Redis is found to have lost its data (restarted empty, flushed): what was
    /// appended but not yet compacted is gone, and only clients can send it again.
    pub fn on_data_loss(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.on_data_loss.set(Box::new(f));
    }

    /// Reads the sentinel (writing it when missing); true when it was missing or changed
    /// since the last look, i.e. Redis lost its data since then.
    async fn check_sentinel(&self) -> redis::RedisResult<bool> {
        let mut con = self.con.clone();
        let (_, value): ((), String) = redis::pipe()
            .cmd("SET")
            .arg(SENTINEL)
            .arg(uuid::Uuid::new_v4().to_string())
            .arg("NX")
            .cmd("GET")
            .arg(SENTINEL)
            .query_async(&mut con)
            .await?;
        let mut seen = self.sentinel.lock();
        let lost = seen.as_ref().is_some_and(|s| *s != value);
        *seen = Some(value);
        Ok(lost)
    }

    /// Maps a failed call; the consumer groups are created again before the next use, in case
    /// Redis restarted without its data.
    fn failed(&self, e: redis::RedisError) -> StreamError {
        self.groups.lock().clear();
        rerr(e)
    }

    async fn ensure_group(&self, worker_key: &str) -> Result<(), StreamError> {
        if self.groups.lock().contains(worker_key) {
            return Ok(());
        }
        let mut con = self.con.clone();
        let r: redis::RedisResult<Value> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(worker_key)
            .arg(worker_key)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut con)
            .await;
        match r {
            Ok(_) => {}
            Err(e) if e.to_string().contains("BUSYGROUP") => {}
            Err(e) => return Err(self.failed(e)),
        }
        self.groups.lock().insert(worker_key.to_string());
        Ok(())
    }

    /// The atomic add-and-enqueue, queued (in call order, behind earlier ones) without waiting
    /// for Redis: concurrent appends from all connections go to Redis together, one pipeline
    /// per batch.
    pub async fn append(
        &self,
        key: &str,
        data: Bytes,
        on_fail: Option<super::OnFail>,
    ) -> Result<(), StreamError> {
        let worker_key = worker_key_of(key)?;
        let bytes = data.len();
        let queued = self
            .queued_bytes
            .fetch_add(bytes, std::sync::atomic::Ordering::AcqRel);
        if queued + bytes > MAX_QUEUED_BYTES && queued > 0 {
            self.queued_bytes
                .fetch_sub(bytes, std::sync::atomic::Ordering::AcqRel);
            return Err(StreamError::Redis(format!(
                "{} MiB of appends wait for Redis already; retry",
                MAX_QUEUED_BYTES >> 20
            )));
        }
        self.adds
            .send(Queued::Add(AddReq {
                key: key.to_string(),
                worker_key,
                data,
                on_fail,
            }))
            .await
            .map_err(|_| {
                self.queued_bytes
                    .fetch_sub(bytes, std::sync::atomic::Ordering::AcqRel);
                StreamError::Redis("stream backend closed".into())
            })
    }

    /// Appends queued and not yet sent to Redis.
    pub fn queued(&self) -> usize {
        ADD_QUEUE - self.adds.capacity()
    }

    /// Waits until every append queued so far was sent and answered (graceful shutdown).
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.adds.send(Queued::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// One append on its own (the script is loaded again if Redis lost it).
    async fn add_one(&self, r: &AddReq) -> Result<StreamId, StreamError> {
        let mut con = self.con.clone();
        let id: String = self
            .add_script
            .key(&r.key)
            .key(&r.worker_key)
            .arg(r.data.as_ref())
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.failed(e))?;
        StreamId::parse(&id)
    }

    /// Sends a batch of appends as one pipeline of EVALSHA calls; any that fail (NOSCRIPT
    /// after a Redis restart, say) are retried one by one.
    async fn add_batch(&self, batch: Vec<AddReq>) {
        let mut groups: Vec<&str> = batch.iter().map(|r| r.worker_key.as_str()).collect();
        groups.sort_unstable();
        groups.dedup();
        for g in groups {
            if let Err(e) = self.ensure_group(g).await {
                let msg = e.to_string();
                for r in batch {
                    r.finish(Err(StreamError::Redis(msg.clone())));
                }
                return;
            }
        }
        let mut pipe = redis::pipe();
        for r in &batch {
            pipe.cmd("EVALSHA")
                .arg(self.add_script.get_hash())
                .arg(2)
                .arg(&r.key)
                .arg(&r.worker_key)
                .arg(r.data.as_ref());
        }
        let mut con = self.con.clone();
        let replies = con
            .send_packed_commands(&pipe, 0, batch.len())
            .await
            .ok()
            .filter(|v| v.len() == batch.len());
        match replies {
            Some(values) => {
                for (r, v) in batch.into_iter().zip(values) {
                    let id = bulk(&v)
                        .and_then(|b| std::str::from_utf8(b).ok())
                        .map(StreamId::parse);
                    let res = match id {
                        Some(id) => id,
                        None => self.add_one(&r).await,
                    };
                    r.finish(res);
                }
            }
            None => {
                for r in batch {
                    let res = self.add_one(&r).await;
                    r.finish(res);
                }
            }
        }
    }

    /// XADD with a MINID trim and a PEXPIRE, in one transaction: a retained log.
    pub async fn append_retained(
        &self,
        key: &str,
        data: Bytes,
        keep_ms: u64,
    ) -> Result<StreamId, StreamError> {
        let mut con = self.con.clone();
        let min_id = crate::clock::now_ms().saturating_sub(keep_ms);
        let (id,): (String,) = redis::pipe()
            .atomic()
            .cmd("XADD")
            .arg(key)
            .arg("MINID")
            .arg("~")
            .arg(min_id)
            .arg("*")
            .arg("m")
            .arg(data.as_ref())
            .cmd("PEXPIRE")
            .arg(key)
            .arg(keep_ms.max(1))
            .ignore()
            .query_async(&mut con)
            .await
            .map_err(|e| self.failed(e))?;
        StreamId::parse(&id)
    }

    /// XREVRANGE key (before - COUNT n.
    pub async fn read_back(
        &self,
        key: &str,
        before: StreamId,
        count: usize,
    ) -> Result<Vec<Entry>, StreamError> {
        let mut con = self.con.clone();
        let end = if before == StreamId::MAX {
            "+".to_string()
        } else {
            format!("({before}")
        };
        let v: Value = redis::cmd("XREVRANGE")
            .arg(key)
            .arg(end)
            .arg("-")
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut con)
            .await
            .map_err(|e| self.failed(e))?;
        parse_entries(&v, "m")
    }

    /// XRANGE key (after + COUNT n.
    pub async fn read(
        &self,
        key: &str,
        after: StreamId,
        count: usize,
    ) -> Result<Vec<Entry>, StreamError> {
        let mut con = self.con.clone();
        let mut c = redis::cmd("XRANGE");
        c.arg(key).arg(format!("({after}")).arg("+");
        if count > 0 {
            c.arg("COUNT").arg(count);
        }
        let v: Value = c.query_async(&mut con).await.map_err(|e| self.failed(e))?;
        parse_entries(&v, "m")
    }

    /// XLEN.
    pub async fn len(&self, key: &str) -> Result<u64, StreamError> {
        let mut con = self.con.clone();
        redis::cmd("XLEN")
            .arg(key)
            .query_async(&mut con)
            .await
            .map_err(|e| self.failed(e))
    }

    /// XAUTOCLAIM `{P}:worker` `{P}:worker` consumer min-idle 0 COUNT n.
    pub async fn claim_tasks(
        &self,
        worker_key: &str,
        consumer: &str,
        min_idle_ms: u64,
        count: u32,
    ) -> Result<Vec<Task>, StreamError> {
        self.ensure_group(worker_key).await?;
        let mut con = self.con.clone();
        let v: Value = redis::cmd("XAUTOCLAIM")
            .arg(worker_key)
            .arg(worker_key)
            .arg(consumer)
            .arg(min_idle_ms)
            .arg("0")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut con)
            .await
            .map_err(|e| self.failed(e))?;
        let items = match &v {
            Value::Array(a) if a.len() >= 2 => &a[1],
            _ => return Ok(Vec::new()),
        };
        Ok(parse_entries(items, "compact")?
            .into_iter()
            .filter_map(|e| {
                String::from_utf8(e.data.to_vec())
                    .ok()
                    .filter(|s| !s.is_empty())
                    .map(|stream| Task { id: e.id, stream })
            })
            .collect())
    }

    /// MULTI: delete the stream if empty; XDEL + XACK the task.
    pub async fn finish_empty(&self, worker_key: &str, task: &Task) -> Result<(), StreamError> {
        let mut con = self.con.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("EVAL")
            .arg(DEL_IF_EMPTY)
            .arg(1)
            .arg(&task.stream)
            .ignore();
        drop_task(&mut pipe, worker_key, task);
        pipe.query_async::<()>(&mut con)
            .await
            .map_err(|e| self.failed(e))
    }

    /// MULTI: XTRIM MINID, re-enqueue and park the task, XDEL + XACK the old one.
    pub async fn trim_and_requeue(
        &self,
        worker_key: &str,
        task: &Task,
        min_id_ms: u64,
    ) -> Result<(), StreamError> {
        let mut con = self.con.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XTRIM")
            .arg(&task.stream)
            .arg("MINID")
            .arg(min_id_ms)
            .ignore()
            .cmd("XADD")
            .arg(worker_key)
            .arg("*")
            .arg("compact")
            .arg(&task.stream)
            .ignore()
            .cmd("XREADGROUP")
            .arg("GROUP")
            .arg(worker_key)
            .arg("pending")
            .arg("COUNT")
            .arg(50)
            .arg("STREAMS")
            .arg(worker_key)
            .arg(">")
            .ignore();
        drop_task(&mut pipe, worker_key, task);
        pipe.query_async::<()>(&mut con)
            .await
            .map_err(|e| self.failed(e))
    }

    /// Worker queue lengths.
    pub async fn stats(&self, prefixes: &[String]) -> StreamStats {
        let mut total = 0;
        for p in prefixes {
            total += self.len(&format!("{p}:worker")).await.unwrap_or(0);
        }
        StreamStats {
            backend: "redis",
            streams: None,
            worker_queue: total,
        }
    }
}

/// Adds XDEL + XACK of a finished task to a pipeline (the XACK keeps no dangling PEL entry
/// on Redis 6.2, where XAUTOCLAIM does not purge deleted ids).
fn drop_task(pipe: &mut redis::Pipeline, worker_key: &str, task: &Task) {
    let id = task.id.to_string();
    pipe.cmd("XDEL")
        .arg(worker_key)
        .arg(&id)
        .ignore()
        .cmd("XACK")
        .arg(worker_key)
        .arg(worker_key)
        .arg(&id)
        .ignore();
}

/// Collects appends and sends them in pipelines.
/// Checks the sentinel key every second; when it is gone or changed, Redis lost its data: the
/// consumer groups are made again before the next use and the data-loss callback runs.
async fn watch_sentinel(me: std::sync::Weak<RedisStreams>) {
    loop {
        tokio::time::sleep(SENTINEL_EVERY).await;
        let Some(m) = me.upgrade() else { return };
        if let Ok(true) = m.check_sentinel().await {
            m.groups.lock().clear();
            m.data_losses
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(
                "redis lost its data (restarted empty or flushed): updates not yet compacted are gone; asking clients to re-sync"
            );
            if let Some(f) = m.on_data_loss.get() {
                f();
            }
        }
    }
}

async fn batcher(me: std::sync::Weak<RedisStreams>, mut rx: tokio::sync::mpsc::Receiver<Queued>) {
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::new();
        let mut flush = None;
        match first {
            Queued::Add(r) => batch.push(r),
            Queued::Flush(done) => flush = Some(done),
        }
        while flush.is_none() && batch.len() < MAX_ADD_BATCH {
            match rx.try_recv() {
                Ok(Queued::Add(r)) => batch.push(r),
                Ok(Queued::Flush(done)) => flush = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let Some(m) = me.upgrade() else { return };
            let bytes: usize = batch.iter().map(|r| r.data.len()).sum();
            m.add_batch(batch).await;
            m.queued_bytes
                .fetch_sub(bytes, std::sync::atomic::Ordering::AcqRel);
        }
        if let Some(done) = flush {
            let _ = done.send(());
        }
    }
}
