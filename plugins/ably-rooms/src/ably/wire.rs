//! The Ably realtime protocol's JSON shapes this plugin reads and writes: ProtocolMessage
//! actions, flags and error codes (see the Ably protocol spec, TR2/TR3).

use serde_json::{Value, json};

/// ProtocolMessage actions.
pub mod action {
    /// Heartbeat (both ways; a client ping carries an `id` to echo).
    pub const HEARTBEAT: u64 = 0;
    /// Acknowledges `count` messages from `msgSerial`.
    pub const ACK: u64 = 1;
    /// Refuses `count` messages from `msgSerial`.
    pub const NACK: u64 = 2;
    /// The first server frame.
    pub const CONNECTED: u64 = 4;
    /// The client is about to drop the transport.
    pub const DISCONNECT: u64 = 5;
    /// The client closes the connection.
    pub const CLOSE: u64 = 7;
    /// The server confirms a close.
    pub const CLOSED: u64 = 8;
    /// An error: connection-wide without `channel`, else for that channel.
    pub const ERROR: u64 = 9;
    /// Attach to a channel.
    pub const ATTACH: u64 = 10;
    /// Attached.
    pub const ATTACHED: u64 = 11;
    /// Detach from a channel.
    pub const DETACH: u64 = 12;
    /// Detached.
    pub const DETACHED: u64 = 13;
    /// Presence messages.
    pub const PRESENCE: u64 = 14;
    /// Messages.
    pub const MESSAGE: u64 = 15;
    /// Presence members of a channel, sent after ATTACHED with HAS_PRESENCE.
    pub const SYNC: u64 = 16;
    /// Re-authentication with a fresh token (client to server), or a request for one.
    pub const AUTH: u64 = 17;
}

/// Presence actions.
pub mod presence_action {
    /// A member listed by SYNC.
    pub const PRESENT: u64 = 1;
    /// Entered.
    pub const ENTER: u64 = 2;
    /// Left.
    pub const LEAVE: u64 = 3;
    /// Updated its data.
    pub const UPDATE: u64 = 4;
}

/// ATTACHED flag: a SYNC follows.
pub const HAS_PRESENCE: u64 = 1;

/// Largest message (sum of its data) a client may publish; advertised in CONNECTED.
pub const MAX_MESSAGE_SIZE: usize = 65536;
/// Largest WebSocket frame; advertised in CONNECTED.
pub const MAX_FRAME_SIZE: usize = 524_288;
/// How long the server keeps a dropped connection's state; advertised in CONNECTED.
pub const CONNECTION_STATE_TTL_MS: u64 = 120_000;
/// The longest the server stays silent; advertised in CONNECTED.
pub const MAX_IDLE_INTERVAL_MS: u64 = 15_000;

/// ATTACHED flag: the backlog a `rewind` asked for follows.
pub const HAS_BACKLOG: u64 = 1 << 1;
/// ATTACHED flag: continuity kept; nothing was missed.
pub const RESUMED: u64 = 1 << 2;
/// Mode flag: may enter presence.
pub const MODE_PRESENCE: u64 = 1 << 16;
/// Mode flag: may publish.
pub const MODE_PUBLISH: u64 = 1 << 17;
/// Mode flag: receives messages.
pub const MODE_SUBSCRIBE: u64 = 1 << 18;
/// Mode flag: receives presence events.
pub const MODE_PRESENCE_SUBSCRIBE: u64 = 1 << 19;

/// An ErrorInfo.
pub fn error_info(code: u64, status: u64, message: &str) -> Value {
    json!({"code": code, "statusCode": status, "message": message})
}

/// A connection-wide ERROR (the client goes to `failed`, or renews its token for 4014x).
pub fn connection_error(code: u64, status: u64, message: &str) -> Value {
    json!({"action": action::ERROR, "error": error_info(code, status, message)})
}

/// A channel ERROR (the channel fails, the connection stays).
pub fn channel_error(channel: &str, code: u64, status: u64, message: &str) -> Value {
    json!({"action": action::ERROR, "channel": channel, "error": error_info(code, status, message)})
}

/// ACK of `count` messages from `serial`.
pub fn ack(serial: u64, count: u64) -> Value {
    json!({"action": action::ACK, "msgSerial": serial, "count": count})
}

/// NACK of `count` messages from `serial`.
pub fn nack(serial: u64, count: u64, code: u64, status: u64, message: &str) -> Value {
    json!({"action": action::NACK, "msgSerial": serial, "count": count,
           "error": error_info(code, status, message)})
}
