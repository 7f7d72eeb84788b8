//! Presence kept in this process: the store without `[redis]`.

use super::{Count, Member};
use crate::hub::ConnId;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Every channel's members and their holders.
#[derive(Default)]
pub struct LocalStore {
    channels: Mutex<HashMap<String, Channel>>,
}

#[derive(Default)]
struct Channel {
    members: BTreeMap<String, Held>,
    connections: u64,
}

struct Held {
    data: Bytes,
    holders: HashSet<ConnId>,
}

impl LocalStore {
    /// Adds `conn` as a holder of `key`; true when the member is new. The data is stored for a
    /// new member and for a holder joining again, not for a further holder.
    pub fn join(&self, channel: &str, key: &str, conn: ConnId, data: Bytes) -> bool {
        let mut chans = self.channels.lock();
        let ch = chans.entry(channel.to_string()).or_default();
        let held = ch.members.entry(key.to_string()).or_insert_with(|| Held {
            data: Bytes::new(),
            holders: HashSet::new(),
        });
        let added = held.holders.insert(conn);
        let new = added && held.holders.len() == 1;
        if added {
            ch.connections += 1;
        }
        if new || !added {
            held.data = data;
        }
        new
    }

    /// Removes `conn` from `key`; the member when that was its last holder.
    pub fn leave(&self, channel: &str, key: &str, conn: ConnId) -> Option<Member> {
        let mut chans = self.channels.lock();
        let ch = chans.get_mut(channel)?;
        let held = ch.members.get_mut(key)?;
        if !held.holders.remove(&conn) {
            return None;
        }
        ch.connections -= 1;
        if !held.holders.is_empty() {
            return None;
        }
        let gone = ch.members.remove(key)?;
        if ch.members.is_empty() {
            chans.remove(channel);
        }
        Some(Member {
            key: key.to_string(),
            data: gone.data,
            connections: 0,
        })
    }

    /// One member.
    pub fn get(&self, channel: &str, key: &str) -> Option<Member> {
        let chans = self.channels.lock();
        let held = chans.get(channel)?.members.get(key)?;
        Some(Member {
            key: key.to_string(),
            data: held.data.clone(),
            connections: held.holders.len() as u32,
        })
    }

    /// Up to `limit` members in key order.
    pub fn list(&self, channel: &str, limit: usize) -> Vec<Member> {
        let chans = self.channels.lock();
        let Some(ch) = chans.get(channel) else {
            return Vec::new();
        };
        ch.members
            .iter()
            .take(limit)
            .map(|(k, h)| Member {
                key: k.clone(),
                data: h.data.clone(),
                connections: h.holders.len() as u32,
            })
            .collect()
    }

    /// Members and connections of a channel.
    pub fn count(&self, channel: &str) -> Count {
        let chans = self.channels.lock();
        chans.get(channel).map_or(Count::default(), |ch| Count {
            members: ch.members.len() as u64,
            connections: ch.connections,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_live_while_a_holder_does() {
        let s = LocalStore::default();
        assert!(s.join("c", "alice", 1, Bytes::from_static(b"a1")));
        assert!(!s.join("c", "alice", 2, Bytes::from_static(b"a2")));
        assert!(
            !s.join("c", "alice", 2, Bytes::from_static(b"a3")),
            "re-join"
        );
        assert!(s.join("c", "bob", 3, Bytes::new()));
        assert_eq!(
            s.count("c"),
            Count {
                members: 2,
                connections: 3
            }
        );
        let alice = s.get("c", "alice").unwrap();
        assert_eq!((&alice.data[..], alice.connections), (&b"a3"[..], 2));
        assert_eq!(s.list("c", 1).len(), 1);
        assert_eq!(s.list("c", 10)[1].key, "bob");
        assert!(s.leave("c", "alice", 9).is_none(), "not a holder");
        assert!(s.leave("c", "alice", 1).is_none());
        assert_eq!(s.leave("c", "alice", 2).unwrap().data, &b"a3"[..]);
        assert!(s.get("c", "alice").is_none());
        assert!(s.leave("c", "bob", 3).is_some());
        assert_eq!(s.count("c"), Count::default());
        assert!(s.channels.lock().is_empty());
    }
}
