//! A plugin's key-value namespace as the cluster sees it: in this process without `[redis]`,
//! in Redis with it, so every gateway reads what any of them wrote. In Redis each entry is a
//! string `{P}:kv:{plugin}:{key}` with native expiry (`PX`), and the sorted set
//! `{P}:kv:{plugin}` indexes the keys for `scan` and `count` (lexicographic ranges); index
//! entries of expired keys are dropped by the scans that meet them. Every call is one Redis
//! round trip or a few (a scan reads 1,000 keys per step); there is no local cache, so a read
//! sees the latest write from any gateway.

use crate::kv::{Kv, KvError, check};
use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Drops index entries (ARGV[2..]) whose data key (ARGV[1] .. key) does not exist, checked in
/// the script so a key written again meanwhile keeps its entry.
const PRUNE: &str = r#"
local n = 0
for i = 2, #ARGV do
  if redis.call("EXISTS", ARGV[1] .. ARGV[i]) == 0 then
    n = n + redis.call("ZREM", KEYS[1], ARGV[i])
  end
end
return n
"#;

/// Keys read per scan step.
const SCAN_BATCH: usize = 1000;

/// A plugin's key-value namespace.
pub enum PluginKv {
    /// In this process.
    Local(Kv),
    /// In Redis, shared by every gateway.
    Redis(RedisKv),
}

/// One plugin's namespace in Redis.
pub struct RedisKv {
    con: ConnectionManager,
    data: String,
    index: String,
    failing: AtomicBool,
    plugin: String,
    prune: redis::Script,
}

impl PluginKv {
    /// The live value of `key` (none when missing, expired, or Redis is unavailable).
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self {
            PluginKv::Local(kv) => kv.get(key, crate::clock::now_ms()),
            PluginKv::Redis(r) => {
                let v = redis::cmd("GET")
                    .arg(r.data_key(key))
                    .query_async(&mut r.con.clone())
                    .await;
                r.observe(v).flatten()
            }
        }
    }

    /// Writes `key`, expiring after `ttl_ms` when given.
    pub async fn set(&self, key: &str, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<(), KvError> {
        match self {
            PluginKv::Local(kv) => kv.set(key.to_string(), value, ttl_ms, crate::clock::now_ms()),
            PluginKv::Redis(r) => {
                check(key, &value)?;
                let mut pipe = redis::pipe();
                pipe.atomic();
                let set = pipe.cmd("SET").arg(r.data_key(key)).arg(value);
                if let Some(ttl) = ttl_ms {
                    set.arg("PX").arg(ttl.max(1));
                }
                set.ignore();
                pipe.cmd("ZADD").arg(&r.index).arg(0).arg(key).ignore();
                let res = pipe.query_async::<()>(&mut r.con.clone()).await;
                match res {
                    Ok(()) => {
                        r.observe::<()>(Ok(()));
                        Ok(())
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        r.observe::<()>(Err(e));
                        Err(KvError::Unavailable(msg))
                    }
                }
            }
        }
    }

    /// Deletes `key`; whether it existed.
    pub async fn delete(&self, key: &str) -> bool {
        match self {
            PluginKv::Local(kv) => kv.delete(key, crate::clock::now_ms()),
            PluginKv::Redis(r) => {
                let res: redis::RedisResult<(i64,)> = redis::pipe()
                    .atomic()
                    .cmd("DEL")
                    .arg(r.data_key(key))
                    .cmd("ZREM")
                    .arg(&r.index)
                    .arg(key)
                    .ignore()
                    .query_async(&mut r.con.clone())
                    .await;
                r.observe(res).is_some_and(|(n,)| n > 0)
            }
        }
    }

    /// Up to `limit` live entries whose key starts with `prefix`, in key order.
    pub async fn scan(&self, prefix: &str, limit: usize) -> Vec<(String, Vec<u8>)> {
        match self {
            PluginKv::Local(kv) => kv.scan(prefix, limit, crate::clock::now_ms()),
            PluginKv::Redis(r) => {
                let res = r.walk(prefix, limit, true).await;
                r.observe(res).unwrap_or_default()
            }
        }
    }

    /// How many live entries have keys starting with `prefix`.
    pub async fn count(&self, prefix: &str) -> u64 {
        match self {
            PluginKv::Local(kv) => kv.count(prefix, crate::clock::now_ms()),
            PluginKv::Redis(r) => {
                let res = r.walk(prefix, usize::MAX, false).await;
                r.observe(res).map_or(0, |v| v.len() as u64)
            }
        }
    }
}

impl RedisKv {
    /// Plugin `plugin`'s namespace under the cluster prefix.
    pub fn new(con: ConnectionManager, prefix: &str, plugin: &str) -> Self {
        Self {
            con,
            data: format!("{prefix}:kv:{plugin}:"),
            index: format!("{prefix}:kv:{plugin}"),
            failing: AtomicBool::new(false),
            plugin: plugin.to_string(),
            prune: redis::Script::new(PRUNE),
        }
    }

    fn data_key(&self, key: &str) -> String {
        format!("{}{key}", self.data)
    }

    /// Logs the first failure of an outage and the recovery.
    fn observe<T>(&self, r: redis::RedisResult<T>) -> Option<T> {
        match r {
            Ok(v) => {
                if self.failing.swap(false, Relaxed) {
                    tracing::info!(plugin = %self.plugin, "key-value store: redis answers again");
                }
                Some(v)
            }
            Err(e) => {
                if !self.failing.swap(true, Relaxed) {
                    tracing::warn!(plugin = %self.plugin, "key-value store unavailable: {e}");
                }
                None
            }
        }
    }

    /// Walks the index over `prefix` in key order, dropping entries whose key expired, until
    /// `limit` live entries were found; with `values`, reads them too.
    async fn walk(
        &self,
        prefix: &str,
        limit: usize,
        values: bool,
    ) -> redis::RedisResult<Vec<(String, Vec<u8>)>> {
        let mut con = self.con.clone();
        let mut out = Vec::new();
        let mut min: Vec<u8> = if prefix.is_empty() {
            b"-".to_vec()
        } else {
            [b"[", prefix.as_bytes()].concat()
        };
        let max: Vec<u8> = if prefix.is_empty() {
            b"+".to_vec()
        } else {
            // 0xff never occurs in UTF-8, so it sorts after every key with this prefix.
            [b"[", prefix.as_bytes(), b"\xff"].concat()
        };
        while out.len() < limit {
            let keys: Vec<String> = redis::cmd("ZRANGEBYLEX")
                .arg(&self.index)
                .arg(&min)
                .arg(&max)
                .arg("LIMIT")
                .arg(0)
                .arg(SCAN_BATCH)
                .query_async(&mut con)
                .await?;
            let Some(last) = keys.last() else { break };
            min = [b"(", last.as_bytes()].concat();
            let found: Vec<Option<Vec<u8>>> = if values {
                let names: Vec<String> = keys.iter().map(|k| self.data_key(k)).collect();
                redis::cmd("MGET").arg(names).query_async(&mut con).await?
            } else {
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.exists(self.data_key(k));
                }
                let exists: Vec<bool> = pipe.query_async(&mut con).await?;
                exists.into_iter().map(|e| e.then(Vec::new)).collect()
            };
            let mut stale = Vec::new();
            let n = keys.len();
            for (k, v) in keys.into_iter().zip(found) {
                match v {
                    Some(v) if out.len() < limit => out.push((k, v)),
                    Some(_) => {}
                    None => stale.push(k),
                }
            }
            if !stale.is_empty() {
                self.prune
                    .key(&self.index)
                    .arg(&self.data)
                    .arg(stale)
                    .invoke_async::<()>(&mut con)
                    .await?;
            }
            if n < SCAN_BATCH {
                break;
            }
        }
        Ok(out)
    }
}
