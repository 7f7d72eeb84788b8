//! An Ably connection's state, kept by the host as the connection's attachment.

use super::Capability;
use super::codec::Format;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Attachments of Ably connections start with this byte.
pub const TAG: u8 = b'A';

/// What the plugin remembers about one connection between frames.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Conn {
    /// The enforced clientId, if any.
    pub client_id: Option<String>,
    /// What it may do.
    pub capability: Capability,
    /// When its token expires (ms), if it has one.
    pub expires_ms: Option<u64>,
    /// Its wire format.
    pub format: Format,
    /// Whether the connection gets its own messages back.
    pub echo: bool,
    /// Attached channels.
    pub channels: BTreeSet<String>,
}

impl Conn {
    /// The attachment bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![TAG];
        v.extend(serde_json::to_vec(self).unwrap_or_default());
        v
    }

    /// Reads an attachment written by [`Conn::encode`].
    pub fn decode(attachment: &[u8]) -> Option<Conn> {
        serde_json::from_slice(attachment.strip_prefix(&[TAG])?).ok()
    }
}
