//! An Ably connection's state, kept by the host as the connection's attachment.

use super::Capability;
use super::codec::Format;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Attachments of Ably connections start with this byte.
pub const TAG: u8 = b'A';

/// What the plugin remembers about one connection between frames (and, for a connection
/// that dropped, until it resumes or its state expires).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Conn {
    /// The Ably connectionId: the host connection id, or that of the connection it resumed.
    pub id: String,
    /// The secret half of the connectionKey (`<id>!<secret>`).
    pub secret: String,
    /// The client sent CLOSE: nothing to keep for a resume.
    pub closing: bool,
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
    /// Channels where this connection is a presence member.
    pub entered: BTreeSet<String>,
    /// Inbound rate limit: tokens left and when they were counted (ms).
    pub tokens: f64,
    /// See `tokens`.
    pub tokens_at: u64,
    /// Channels whose presence member was lost while the connection was away: their next
    /// ATTACHED says "not resumed" so the client enters again.
    pub lost: BTreeSet<String>,
}

impl Conn {
    /// Takes one token of a bucket holding `rate` per second (and at most `rate`); false when
    /// the connection sends faster than that. A rate of 0 never limits.
    pub fn take_token(&mut self, now_ms: u64, rate: u64) -> bool {
        if rate == 0 {
            return true;
        }
        let rate = rate as f64;
        let elapsed = now_ms.saturating_sub(self.tokens_at) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.tokens_at = now_ms;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The connectionKey a client resumes with.
    pub fn key(&self) -> String {
        format!("{}!{}", self.id, self.secret)
    }

    /// The presence member key of this connection (`clientId:connectionId`).
    pub fn member_key(&self, client_id: &str) -> String {
        format!("{client_id}:{}", self.id)
    }

    /// Saves the attachment; false when the connection is gone.
    pub fn save(&self, conn: plugin_sdk::ConnId) -> bool {
        plugin_sdk::host::set_attachment(conn, &self.encode()).is_ok()
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket() {
        let mut c = Conn::default();
        // A fresh connection starts with a full second's worth.
        assert!((0..10).all(|_| c.take_token(1_000_000, 10)));
        assert!(!c.take_token(1_000_000, 10));
        assert!(
            c.take_token(1_000_100, 10),
            "a tenth of a second refills one"
        );
        assert!(!c.take_token(1_000_100, 10));
        assert!((0..1000).all(|_| c.take_token(5, 0)), "0 = no limit");
    }
}
