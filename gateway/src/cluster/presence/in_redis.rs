//! Presence in Redis. Per channel `C` (under the cluster prefix `P`):
//! `P:presence:C:data` (hash member key -> data), `P:presence:C:count` (hash member key ->
//! holders) and `P:presence:C:holders` (hash `key\0conn` -> 1); per node `n` the set
//! `P:node:n:presence` of `C\0key\0conn`, so the holdings of a dead node can be removed.
//! Join and leave are Lua scripts, so "first holder" and "last holder" are decided atomically
//! across every gateway.

use super::{Count, Member};
use crate::hub::ConnId;
use bytes::Bytes;
use redis::aio::ConnectionManager;

/// KEYS: data, count, holders, node set. ARGV: key, holder field, data, node entry.
/// Returns 1 when the member is new to the channel. The data is stored for a new member and for
/// a holder joining again (an update), not for a further holder of an existing member.
const JOIN: &str = r#"
local new = 0
local added = redis.call("HSETNX", KEYS[3], ARGV[2], 1)
if added == 1 then
  if redis.call("HINCRBY", KEYS[2], ARGV[1], 1) == 1 then new = 1 end
  redis.call("SADD", KEYS[4], ARGV[4])
end
if new == 1 or added == 0 then
  redis.call("HSET", KEYS[1], ARGV[1], ARGV[3])
end
return new
"#;

/// KEYS: data, count, holders, node set. ARGV: key, holder field, node entry.
/// Returns {1, data} when that was the member's last holder, {0, ""} otherwise.
const LEAVE: &str = r#"
if redis.call("HDEL", KEYS[3], ARGV[2]) == 0 then return {0, ""} end
redis.call("SREM", KEYS[4], ARGV[3])
local left = redis.call("HINCRBY", KEYS[2], ARGV[1], -1)
if left <= 0 then
  local data = redis.call("HGET", KEYS[1], ARGV[1]) or ""
  redis.call("HDEL", KEYS[2], ARGV[1])
  redis.call("HDEL", KEYS[1], ARGV[1])
  return {1, data}
end
return {0, ""}
"#;

/// Most members read per HSCAN step.
const SCAN_COUNT: usize = 1000;

/// Presence calls against Redis.
pub struct RedisStore {
    con: ConnectionManager,
    prefix: String,
    join: redis::Script,
    leave: redis::Script,
}

/// The keys of one channel.
struct Keys {
    data: String,
    count: String,
    holders: String,
}

fn keys(prefix: &str, channel: &str) -> Keys {
    Keys {
        data: format!("{prefix}:presence:{channel}:data"),
        count: format!("{prefix}:presence:{channel}:count"),
        holders: format!("{prefix}:presence:{channel}:holders"),
    }
}

/// The set of holdings of node `n`.
pub fn node_set(prefix: &str, n: u32) -> String {
    format!("{prefix}:node:{n}:presence")
}

/// One holding as stored in a node set.
pub fn node_entry(channel: &str, key: &str, conn: ConnId) -> String {
    format!("{channel}\0{key}\0{conn}")
}

/// Splits a node-set entry into channel, key and connection.
pub fn parse_node_entry(entry: &str) -> Option<(&str, &str, ConnId)> {
    let mut it = entry.splitn(3, '\0');
    let (c, k, n) = (it.next()?, it.next()?, it.next()?);
    Some((c, k, n.parse().ok()?))
}

impl RedisStore {
    /// Presence under `prefix` on `con`.
    pub fn new(con: ConnectionManager, prefix: &str) -> Self {
        Self {
            con,
            prefix: prefix.to_string(),
            join: redis::Script::new(JOIN),
            leave: redis::Script::new(LEAVE),
        }
    }

    /// Adds `conn` of node `node` as a holder of `key`; true when the member is new.
    pub async fn join(
        &self,
        node: u32,
        channel: &str,
        key: &str,
        conn: ConnId,
        data: &[u8],
    ) -> redis::RedisResult<bool> {
        let k = keys(&self.prefix, channel);
        let new: i64 = self
            .join
            .key(&k.data)
            .key(&k.count)
            .key(&k.holders)
            .key(node_set(&self.prefix, node))
            .arg(key)
            .arg(format!("{key}\0{conn}"))
            .arg(data)
            .arg(node_entry(channel, key, conn))
            .invoke_async(&mut self.con.clone())
            .await?;
        Ok(new == 1)
    }

    /// Removes `conn` of node `node` from `key`; the member when that was its last holder.
    pub async fn leave(
        &self,
        node: u32,
        channel: &str,
        key: &str,
        conn: ConnId,
    ) -> redis::RedisResult<Option<Member>> {
        let k = keys(&self.prefix, channel);
        let (gone, data): (i64, Vec<u8>) = self
            .leave
            .key(&k.data)
            .key(&k.count)
            .key(&k.holders)
            .key(node_set(&self.prefix, node))
            .arg(key)
            .arg(format!("{key}\0{conn}"))
            .arg(node_entry(channel, key, conn))
            .invoke_async(&mut self.con.clone())
            .await?;
        Ok((gone == 1).then(|| Member {
            key: key.to_string(),
            data: Bytes::from(data),
            connections: 0,
        }))
    }

    /// One member.
    pub async fn get(&self, channel: &str, key: &str) -> redis::RedisResult<Option<Member>> {
        let k = keys(&self.prefix, channel);
        let (data, holders): (Option<Vec<u8>>, Option<u32>) = redis::pipe()
            .hget(&k.data, key)
            .hget(&k.count, key)
            .query_async(&mut self.con.clone())
            .await?;
        Ok(data.map(|d| Member {
            key: key.to_string(),
            data: Bytes::from(d),
            connections: holders.unwrap_or(0),
        }))
    }

    /// Up to `limit` members, sorted by key.
    pub async fn list(&self, channel: &str, limit: usize) -> redis::RedisResult<Vec<Member>> {
        let k = keys(&self.prefix, channel);
        let mut con = self.con.clone();
        let mut found: Vec<(String, Vec<u8>)> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<(String, Vec<u8>)>) = redis::cmd("HSCAN")
                .arg(&k.data)
                .arg(cursor)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut con)
                .await?;
            found.extend(page);
            cursor = next;
            if cursor == 0 || found.len() >= limit {
                break;
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.truncate(limit);
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let counts: Vec<Option<u32>> = redis::cmd("HMGET")
            .arg(&k.count)
            .arg(found.iter().map(|(key, _)| key).collect::<Vec<_>>())
            .query_async(&mut con)
            .await?;
        Ok(found
            .into_iter()
            .zip(counts)
            .map(|((key, data), n)| Member {
                key,
                data: Bytes::from(data),
                connections: n.unwrap_or(0),
            })
            .collect())
    }

    /// Members and connections of a channel.
    pub async fn count(&self, channel: &str) -> redis::RedisResult<Count> {
        let k = keys(&self.prefix, channel);
        let (members, connections): (u64, u64) = redis::pipe()
            .hlen(&k.data)
            .hlen(&k.holders)
            .query_async(&mut self.con.clone())
            .await?;
        Ok(Count {
            members,
            connections,
        })
    }

    /// Removes every holding of dead node `n`; returns the members that are gone with it, per
    /// channel.
    pub async fn remove_node(&self, n: u32) -> redis::RedisResult<Vec<(String, Member)>> {
        let set = node_set(&self.prefix, n);
        let mut con = self.con.clone();
        let entries: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&set)
            .query_async(&mut con)
            .await?;
        let mut gone = Vec::new();
        for e in &entries {
            let Some((channel, key, conn)) = parse_node_entry(e) else {
                continue;
            };
            if let Some(m) = self.leave(n, channel, key, conn).await? {
                gone.push((channel.to_string(), m));
            }
        }
        redis::cmd("DEL")
            .arg(&set)
            .query_async::<()>(&mut con)
            .await?;
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_entries_round_trip() {
        let e = node_entry("chat\u{1f}users", "u:1", 42);
        assert_eq!(parse_node_entry(&e), Some(("chat\u{1f}users", "u:1", 42)));
        assert_eq!(parse_node_entry("x\0y"), None);
    }
}
