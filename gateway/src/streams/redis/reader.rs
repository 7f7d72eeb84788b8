//! The reader side: one connection that tails every bound stream with one blocking XREAD, and
//! the task that wakes it (CLIENT UNBLOCK) when a stream is bound for the first time.

use super::reply::parse_xread;
use super::{BLOCK_MS, READ_COUNT, RedisStreams};
use redis::Value;
use std::time::Duration;

/// Wakes the reader's blocking XREAD when a stream is bound for the first time.
pub async fn unblocker(me: std::sync::Weak<RedisStreams>) {
    loop {
        let tailer = match me.upgrade() {
            Some(m) => m.tailer.clone(),
            None => return,
        };
        tailer.rebound.notified().await;
        let Some(m) = me.upgrade() else { return };
        let id = *m.reader_id.lock();
        if let Some(id) = id {
            let mut con = m.con.clone();
            let _: redis::RedisResult<Value> = redis::cmd("CLIENT")
                .arg("UNBLOCK")
                .arg(id)
                .query_async(&mut con)
                .await;
        }
    }
}

/// One connection, one blocking XREAD over every bound stream.
pub async fn reader(me: std::sync::Weak<RedisStreams>) {
    let mut backoff = Duration::from_millis(100);
    'connect: loop {
        let Some(m) = me.upgrade() else { return };
        let client = m.client.clone();
        drop(m);
        let mut con = match client.get_multiplexed_async_connection().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("redis stream reader: {e}; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        con.set_response_timeout(Duration::from_millis(BLOCK_MS + 5000));
        let id: Option<i64> = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut con)
            .await
            .ok();
        backoff = Duration::from_millis(100);
        loop {
            let Some(m) = me.upgrade() else { return };
            *m.reader_id.lock() = id;
            let tailer = m.tailer.clone();
            drop(m);
            tailer.sweep();
            let cursors = tailer.cursors();
            if cursors.is_empty() {
                let _ = tokio::time::timeout(
                    Duration::from_millis(BLOCK_MS),
                    tailer.rebound.notified(),
                )
                .await;
                continue;
            }
            let mut c = redis::cmd("XREAD");
            c.arg("BLOCK")
                .arg(BLOCK_MS)
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("STREAMS");
            for (k, _) in &cursors {
                c.arg(k);
            }
            for (_, id) in &cursors {
                c.arg(id.to_string());
            }
            let v: Value = match c.query_async(&mut con).await {
                Ok(v) => v,
                Err(e) if e.to_string().contains("UNBLOCKED") => continue,
                Err(e) => {
                    tracing::warn!("redis stream reader: {e}; reconnecting");
                    tokio::time::sleep(backoff).await;
                    continue 'connect;
                }
            };
            for (key, entries) in parse_xread(&v) {
                tailer.push(&key, entries);
            }
        }
    }
}
