//! The bytes on the socket: WebSocket framing ([`codec`]) and the bounded per-connection queue
//! of encoded frames waiting for the writer ([`outbox`]). Nothing here knows about plugins,
//! topics or sessions.

pub mod codec;
pub mod outbox;
