//! What one LetShare connection is: its user and, per room, whether it listens to every event
//! or to which ones. Kept in the connection's attachment (the host owns it).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A connection's state.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The verified identity (`sub` or `user_id` of the token).
    pub user: String,
    /// Rooms joined.
    pub rooms: BTreeMap<String, RoomSub>,
}

/// One room's subscription.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSub {
    /// Subscribed to `signal:all`: every event of the room reaches this connection.
    pub all: bool,
    /// Other events subscribed to.
    pub events: BTreeSet<String>,
}

impl Member {
    /// The attachment bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes an attachment; `None` when it is not one of ours.
    pub fn decode(bytes: &[u8]) -> Option<Member> {
        serde_json::from_slice(bytes).ok()
    }
}
