//! The `presence` interface: cluster-wide members of a channel, held by this plugin's
//! connections.

use super::{HostState, MAX_ATTACHMENT, MAX_KEY, MAX_TOPIC, check_len};
use crate::cluster::presence::{Count, Member, PresenceError};
use crate::plugin::PluginShared;
use crate::plugin::bindings::gateway::plugin::{presence, types};
use bytes::Bytes;
use std::time::Instant;

fn unavailable(e: PresenceError) -> types::HostError {
    types::HostError::Unavailable(e.to_string())
}

/// The plugin's view of a member.
pub fn member(m: Member) -> presence::Member {
    presence::Member {
        key: m.key,
        data: m.data.to_vec(),
        connections: m.connections,
    }
}

fn check_names(channel: &str, key: &str) -> Result<(), types::HostError> {
    check_len("presence channel", channel.len(), MAX_TOPIC)?;
    check_len("member key", key.len(), MAX_KEY)?;
    if channel.contains('\0') || key.contains('\0') {
        return Err(types::HostError::Invalid(
            "presence channels and member keys may not contain NUL".into(),
        ));
    }
    Ok(())
}

/// A live connection of this plugin on this gateway, or `not-found`.
fn own_local_conn(shared: &PluginShared, conn: u64) -> Result<(), types::HostError> {
    shared
        .cluster
        .own(conn, &shared.name)
        .map(drop)
        .map_err(|_| types::HostError::NotFound)
}

impl presence::Host for HostState {
    async fn join(
        &mut self,
        channel: String,
        key: String,
        conn: u64,
        data: Vec<u8>,
    ) -> Result<bool, types::HostError> {
        let started = Instant::now();
        let shared = self.shared.clone();
        let r = async move {
            check_names(&channel, &key)?;
            check_len("member data", data.len(), MAX_ATTACHMENT)?;
            own_local_conn(&shared, conn)?;
            shared
                .cluster
                .presence()
                .join(&shared.topic_key(&channel), &key, conn, Bytes::from(data))
                .await
                .map_err(unavailable)
        }
        .await;
        self.credit(started);
        r
    }

    async fn linger(&mut self, conn: u64, ms: u32) -> Result<(), types::HostError> {
        own_local_conn(&self.shared, conn)?;
        self.shared
            .cluster
            .presence()
            .set_linger(conn, std::time::Duration::from_millis(u64::from(ms)));
        Ok(())
    }

    async fn leave(
        &mut self,
        channel: String,
        key: String,
        conn: u64,
    ) -> Result<bool, types::HostError> {
        let started = Instant::now();
        let shared = self.shared.clone();
        let r = async move {
            check_names(&channel, &key)?;
            shared
                .cluster
                .presence()
                .leave(&shared.topic_key(&channel), &key, conn)
                .await
                .map_err(unavailable)
        }
        .await;
        self.credit(started);
        r
    }

    async fn get(
        &mut self,
        channel: String,
        key: String,
    ) -> Result<Option<presence::Member>, types::HostError> {
        let started = Instant::now();
        let shared = self.shared.clone();
        let r = async move {
            check_names(&channel, &key)?;
            let m = shared
                .cluster
                .presence()
                .get(&shared.topic_key(&channel), &key)
                .await
                .map_err(unavailable)?;
            Ok(m.map(member))
        }
        .await;
        self.credit(started);
        r
    }

    async fn list(
        &mut self,
        channel: String,
        limit: u32,
    ) -> Result<Vec<presence::Member>, types::HostError> {
        let started = Instant::now();
        let shared = self.shared.clone();
        let r = async move {
            check_names(&channel, "")?;
            let list = shared
                .cluster
                .presence()
                .list(&shared.topic_key(&channel), limit as usize)
                .await
                .map_err(unavailable)?;
            Ok(list.into_iter().map(member).collect())
        }
        .await;
        self.credit(started);
        r
    }

    async fn count(
        &mut self,
        channel: String,
    ) -> Result<presence::PresenceCount, types::HostError> {
        let started = Instant::now();
        let shared = self.shared.clone();
        let r = async move {
            check_names(&channel, "")?;
            let Count {
                members,
                connections,
            } = shared
                .cluster
                .presence()
                .count(&shared.topic_key(&channel))
                .await
                .map_err(unavailable)?;
            Ok(presence::PresenceCount {
                members,
                connections,
            })
        }
        .await;
        self.credit(started);
        r
    }
}
