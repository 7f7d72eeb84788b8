//! Presence: who is in a channel, cluster-wide. Members are keys with data, held by one or more
//! connections; the first holder's `join` and the last holder's `leave` say so to the caller
//! (who announces them). What nobody left explicitly (a connection that closed while holding a
//! member, a gateway that died) is removed by the host and reported as [`Left`] events, once
//! per member cluster-wide. In process ([`local`]) without `[redis]`, in Redis ([`in_redis`])
//! with it; every instance remembers its own holdings so it can clean up after a connection
//! and register them again after Redis lost them.

mod in_redis;
mod local;

use crate::hub::ConnId;
use bytes::Bytes;
use in_redis::RedisStore;
use local::LocalStore;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The longest a closed connection's presence may linger.
pub const MAX_LINGER: Duration = Duration::from_secs(300);

/// One member of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member key.
    pub key: String,
    /// The data it last joined with.
    pub data: Bytes,
    /// Connections holding it, cluster-wide (0 for a member that is gone).
    pub connections: u32,
}

/// Sizes of a channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// Distinct members.
    pub members: u64,
    /// Connections holding them.
    pub connections: u64,
}

/// Members the host removed from a channel (namespaced channel key).
#[derive(Debug)]
pub struct Left {
    /// The channel key (`plugin` + 0x1f + channel).
    pub channel: String,
    /// The members that are gone.
    pub members: Vec<Member>,
}

/// Why a presence call failed.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    /// Redis refused or did not answer.
    #[error("presence unavailable: {0}")]
    Unavailable(String),
}

fn unavailable(e: redis::RedisError) -> PresenceError {
    PresenceError::Unavailable(e.to_string())
}

/// Events waiting for the plugins before the producers wait.
const EVENT_QUEUE: usize = 1024;

enum Store {
    Local(LocalStore),
    Redis(RedisStore),
}

/// A holding of this instance: channel, member key, data.
type Holding = (Arc<str>, Arc<str>, Bytes);

/// The presence service of one instance.
pub struct Presence {
    node: u32,
    store: Store,
    held: Mutex<HashMap<ConnId, Vec<Holding>>>,
    /// How long each connection's holdings outlive it (connections that asked for it).
    lingers: Mutex<HashMap<ConnId, Duration>>,
    events: mpsc::Sender<Left>,
    receiver: Mutex<Option<mpsc::Receiver<Left>>>,
}

impl Presence {
    fn with_store(node: u32, store: Store) -> Arc<Self> {
        let (events, rx) = mpsc::channel(EVENT_QUEUE);
        Arc::new(Self {
            node,
            store,
            held: Mutex::default(),
            lingers: Mutex::default(),
            events,
            receiver: Mutex::new(Some(rx)),
        })
    }

    /// Presence in this process.
    pub fn local() -> Arc<Self> {
        Self::with_store(0, Store::Local(LocalStore::default()))
    }

    /// Presence in Redis for node `node`.
    pub fn redis(node: u32, con: redis::aio::ConnectionManager, prefix: &str) -> Arc<Self> {
        Self::with_store(node, Store::Redis(RedisStore::new(con, prefix)))
    }

    /// The events of members the host removed; handed out once.
    pub fn take_events(&self) -> Option<mpsc::Receiver<Left>> {
        self.receiver.lock().take()
    }

    /// Adds local connection `conn` as a holder of `key`; true when the member is new
    /// cluster-wide.
    pub async fn join(
        &self,
        channel: &str,
        key: &str,
        conn: ConnId,
        data: Bytes,
    ) -> Result<bool, PresenceError> {
        let new = match &self.store {
            Store::Local(s) => s.join(channel, key, conn, data.clone()),
            Store::Redis(s) => s
                .join(self.node, channel, key, conn, &data)
                .await
                .map_err(unavailable)?,
        };
        let mut held = self.held.lock();
        let list = held.entry(conn).or_default();
        match list
            .iter_mut()
            .find(|(c, k, _)| &**c == channel && &**k == key)
        {
            Some(h) => h.2 = data,
            None => list.push((Arc::from(channel), Arc::from(key), data)),
        }
        Ok(new)
    }

    /// Removes local connection `conn` from `key`; true when that was the member's last holder.
    pub async fn leave(
        &self,
        channel: &str,
        key: &str,
        conn: ConnId,
    ) -> Result<bool, PresenceError> {
        self.forget_holding(conn, channel, key);
        Ok(self.remove(channel, key, conn).await?.is_some())
    }

    async fn remove(
        &self,
        channel: &str,
        key: &str,
        conn: ConnId,
    ) -> Result<Option<Member>, PresenceError> {
        match &self.store {
            Store::Local(s) => Ok(s.leave(channel, key, conn)),
            Store::Redis(s) => s
                .leave(self.node, channel, key, conn)
                .await
                .map_err(unavailable),
        }
    }

    fn forget_holding(&self, conn: ConnId, channel: &str, key: &str) {
        let mut held = self.held.lock();
        if let Some(list) = held.get_mut(&conn) {
            list.retain(|(c, k, _)| !(&**c == channel && &**k == key));
            if list.is_empty() {
                held.remove(&conn);
            }
        }
    }

    /// One member.
    pub async fn get(&self, channel: &str, key: &str) -> Result<Option<Member>, PresenceError> {
        match &self.store {
            Store::Local(s) => Ok(s.get(channel, key)),
            Store::Redis(s) => s.get(channel, key).await.map_err(unavailable),
        }
    }

    /// Up to `limit` members in key order.
    pub async fn list(&self, channel: &str, limit: usize) -> Result<Vec<Member>, PresenceError> {
        match &self.store {
            Store::Local(s) => Ok(s.list(channel, limit)),
            Store::Redis(s) => s.list(channel, limit).await.map_err(unavailable),
        }
    }

    /// Members and connections of a channel.
    pub async fn count(&self, channel: &str) -> Result<Count, PresenceError> {
        match &self.store {
            Store::Local(s) => Ok(s.count(channel)),
            Store::Redis(s) => s.count(channel).await.map_err(unavailable),
        }
    }

    /// Keeps what `conn` holds for `linger` after it closes (capped at [`MAX_LINGER`]; zero
    /// removes it at once, the default). Another connection joining the same member meanwhile
    /// takes it over, so a client that comes back in time never shows as having left.
    pub fn set_linger(&self, conn: ConnId, linger: Duration) {
        let mut lingers = self.lingers.lock();
        if linger.is_zero() {
            lingers.remove(&conn);
        } else {
            lingers.insert(conn, linger.min(MAX_LINGER));
        }
    }

    /// Connection `conn` closed: what it still holds is removed, at once or after its linger,
    /// and the members that are gone with it are reported.
    pub async fn conn_closed(self: &Arc<Self>, conn: ConnId) {
        let linger = self.lingers.lock().remove(&conn);
        match linger {
            Some(d) if self.held.lock().contains_key(&conn) => {
                // Holdings stay registered (and are re-asserted after a Redis loss) meanwhile.
                let me = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    me.release(conn).await;
                });
            }
            _ => self.release(conn).await,
        }
    }

    /// Removes what `conn` holds and reports the members that are gone with it.
    async fn release(&self, conn: ConnId) {
        let Some(list) = self.held.lock().remove(&conn) else {
            return;
        };
        let mut gone: Vec<(String, Member)> = Vec::new();
        for (channel, key, _) in list {
            match self.remove(&channel, &key, conn).await {
                Ok(Some(m)) => gone.push((channel.to_string(), m)),
                Ok(None) => {}
                Err(e) => tracing::warn!(conn, channel = %channel, "presence not removed: {e}"),
            }
        }
        self.report(gone).await;
    }

    /// Hands removed members to the plugins, grouped by channel.
    async fn report(&self, gone: Vec<(String, Member)>) {
        let mut by_channel: Vec<Left> = Vec::new();
        for (channel, m) in gone {
            match by_channel.iter_mut().find(|l| l.channel == channel) {
                Some(l) => l.members.push(m),
                None => by_channel.push(Left {
                    channel,
                    members: vec![m],
                }),
            }
        }
        for l in by_channel {
            let _ = self.events.send(l).await;
        }
    }

    /// Removes the holdings of dead node `n` (Redis only) and reports the members gone with it.
    pub async fn remove_node(&self, n: u32) -> Result<usize, PresenceError> {
        let Store::Redis(s) = &self.store else {
            return Ok(0);
        };
        let gone = s.remove_node(n).await.map_err(unavailable)?;
        let count = gone.len();
        self.report(gone).await;
        Ok(count)
    }

    /// Registers every holding of this instance again (after Redis lost them).
    pub async fn reassert(&self) -> Result<usize, PresenceError> {
        let Store::Redis(s) = &self.store else {
            return Ok(0);
        };
        let all: Vec<(ConnId, Holding)> = self
            .held
            .lock()
            .iter()
            .flat_map(|(conn, list)| list.iter().map(move |h| (*conn, h.clone())))
            .collect();
        for (conn, (channel, key, data)) in &all {
            s.join(self.node, channel, key, *conn, data)
                .await
                .map_err(unavailable)?;
        }
        Ok(all.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closing_a_connection_reports_what_it_alone_held() {
        let p = Presence::local();
        let mut rx = p.take_events().unwrap();
        assert!(
            p.join("c", "alice", 1, Bytes::from_static(b"a"))
                .await
                .unwrap()
        );
        assert!(!p.join("c", "alice", 2, Bytes::new()).await.unwrap());
        assert!(
            p.join("c", "bob", 1, Bytes::from_static(b"b"))
                .await
                .unwrap()
        );
        assert!(p.join("d", "bob", 1, Bytes::new()).await.unwrap());
        assert!(!p.leave("c", "alice", 2).await.unwrap());
        assert!(p.join("c", "alice", 2, Bytes::new()).await.is_ok());
        p.conn_closed(1).await;
        let mut got = [rx.recv().await.unwrap(), rx.recv().await.unwrap()];
        got.sort_by(|a, b| a.channel.cmp(&b.channel));
        assert_eq!(got[0].channel, "c");
        assert_eq!(
            got[0]
                .members
                .iter()
                .map(|m| m.key.as_str())
                .collect::<Vec<_>>(),
            ["bob"],
            "alice is still held by connection 2"
        );
        assert_eq!(got[1].channel, "d");
        assert_eq!(p.count("c").await.unwrap().members, 1);
        p.conn_closed(1).await; // nothing left: no event
        assert!(p.leave("c", "alice", 2).await.unwrap());
        p.conn_closed(2).await;
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_lingering_member_is_taken_over_or_removed_later() {
        let p = Presence::local();
        let mut rx = p.take_events().unwrap();
        p.join("c", "alice", 1, Bytes::from_static(b"a"))
            .await
            .unwrap();
        p.join("c", "bob", 2, Bytes::from_static(b"b"))
            .await
            .unwrap();
        p.set_linger(1, Duration::from_millis(300));
        p.set_linger(2, Duration::from_millis(300));
        p.conn_closed(1).await;
        p.conn_closed(2).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rx.try_recv().is_err(), "nobody left yet");
        assert_eq!(p.count("c").await.unwrap().members, 2);
        // Alice comes back on connection 3 and keeps her data.
        assert!(!p.join("c", "alice", 3, Bytes::new()).await.unwrap());
        let left = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            left.members
                .iter()
                .map(|m| m.key.as_str())
                .collect::<Vec<_>>(),
            ["bob"]
        );
        let alice = p.get("c", "alice").await.unwrap().unwrap();
        assert_eq!(alice.data, Bytes::from_static(b"a"));
        assert_eq!(alice.connections, 1);
    }
}
