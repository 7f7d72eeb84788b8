//! The bytes on the socket: WebSocket framing ([`codec`]), the bounded per-connection queue
//! of encoded frames ([`outbox`]) and the non-blocking writer that empties it ([`sender`]).
//! Nothing here knows about plugins, topics or sessions.

pub mod codec;
pub mod outbox;
pub mod sender;
