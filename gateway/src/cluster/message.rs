//! What instances tell each other over Redis PUB/SUB: a publish to a topic (sent on the topic's
//! channel) or a frame or close for one connection (sent on its instance's channel).
//!
//! Layout: kind (1 byte), origin node (u32 BE), then per kind: publish = except (u64 BE, 0 =
//! none) and the encoded frame; positioned publish = except, the position (u128 BE) and the
//! encoded frame; send = connection (u64 BE), the sending plugin's name (u8 length + UTF-8)
//! and the encoded frame; close = connection (u64 BE), the plugin's name, code (u16 BE) and
//! the UTF-8 reason. The receiver acts only on a connection of that plugin. Frames travel already encoded for
//! the wire, so the receiving instance queues the same bytes into every local outbox.

use crate::hold::Position;
use crate::hub::ConnId;
use bytes::{BufMut, Bytes, BytesMut};

const PUBLISH: u8 = 1;
const SEND: u8 = 2;
const CLOSE: u8 = 3;
const PUBLISH_AT: u8 = 4;
const HEADER: usize = 1 + 4 + 8;

/// A decoded bus message.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// Deliver `frame` to the local members of the channel's topic except `except`.
    Publish {
        /// The instance that published it.
        origin: u32,
        /// The connection left out, if any.
        except: Option<ConnId>,
        /// Its position in a retained log, if it has one (see `crate::hold`).
        at: Option<Position>,
        /// The encoded frame.
        frame: Bytes,
    },
    /// Queue `frame` on connection `conn` of the receiving instance.
    Send {
        /// The sending instance.
        origin: u32,
        /// The target connection.
        conn: ConnId,
        /// The plugin that sent it (the connection must be one of its own).
        plugin: String,
        /// The encoded frame.
        frame: Bytes,
    },
    /// Close connection `conn` of the receiving instance.
    Close {
        /// The sending instance.
        origin: u32,
        /// The target connection.
        conn: ConnId,
        /// The plugin that closes it (the connection must be one of its own).
        plugin: String,
        /// WebSocket close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
}

fn header(kind: u8, origin: u32, id: u64, extra: usize) -> BytesMut {
    let mut b = BytesMut::with_capacity(HEADER + extra);
    b.put_u8(kind);
    b.put_u32(origin);
    b.put_u64(id);
    b
}

/// A publish of `frame` by node `origin`.
pub fn publish(origin: u32, except: Option<ConnId>, at: Option<Position>, frame: &[u8]) -> Bytes {
    let mut b = match at {
        None => header(PUBLISH, origin, except.unwrap_or(0), frame.len()),
        Some(at) => {
            let mut b = header(PUBLISH_AT, origin, except.unwrap_or(0), 16 + frame.len());
            b.put_u128(at);
            b
        }
    };
    b.put_slice(frame);
    b.freeze()
}

/// Plugin names longer than this are cut (plugin names are short config keys).
const MAX_PLUGIN_NAME: usize = 255;

fn put_plugin(b: &mut BytesMut, plugin: &str) {
    let name = &plugin.as_bytes()[..plugin.len().min(MAX_PLUGIN_NAME)];
    b.put_u8(name.len() as u8);
    b.put_slice(name);
}

fn take_plugin(rest: &Bytes) -> Option<(String, Bytes)> {
    let n = usize::from(*rest.first()?);
    let name = std::str::from_utf8(rest.get(1..1 + n)?).ok()?.to_string();
    Some((name, rest.slice(1 + n..)))
}

/// A frame for connection `conn` of plugin `plugin`.
pub fn send(origin: u32, conn: ConnId, plugin: &str, frame: &[u8]) -> Bytes {
    let mut b = header(SEND, origin, conn, 1 + plugin.len() + frame.len());
    put_plugin(&mut b, plugin);
    b.put_slice(frame);
    b.freeze()
}

/// A close of connection `conn` of plugin `plugin`.
pub fn close(origin: u32, conn: ConnId, plugin: &str, code: u16, reason: &str) -> Bytes {
    let mut b = header(CLOSE, origin, conn, 1 + plugin.len() + 2 + reason.len());
    put_plugin(&mut b, plugin);
    b.put_u16(code);
    b.put_slice(reason.as_bytes());
    b.freeze()
}

/// Decodes a message; `None` when it is not one of ours.
pub fn decode(payload: Bytes) -> Option<Message> {
    if payload.len() < HEADER {
        return None;
    }
    let kind = payload[0];
    let origin = u32::from_be_bytes(payload[1..5].try_into().ok()?);
    let id = u64::from_be_bytes(payload[5..13].try_into().ok()?);
    let rest = payload.slice(HEADER..);
    match kind {
        PUBLISH => Some(Message::Publish {
            origin,
            except: (id != 0).then_some(id),
            at: None,
            frame: rest,
        }),
        PUBLISH_AT if rest.len() >= 16 => Some(Message::Publish {
            origin,
            except: (id != 0).then_some(id),
            at: Some(u128::from_be_bytes(rest[..16].try_into().ok()?)),
            frame: rest.slice(16..),
        }),
        SEND => {
            let (plugin, frame) = take_plugin(&rest)?;
            Some(Message::Send {
                origin,
                conn: id,
                plugin,
                frame,
            })
        }
        CLOSE => {
            let (plugin, rest) = take_plugin(&rest)?;
            (rest.len() >= 2).then(|| Message::Close {
                origin,
                conn: id,
                plugin,
                code: u16::from_be_bytes([rest[0], rest[1]]),
                reason: String::from_utf8_lossy(&rest[2..]).into_owned(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let f = b"\x81\x02hi";
        assert_eq!(
            decode(publish(7, Some((3 << 32) | 9), None, f)),
            Some(Message::Publish {
                origin: 7,
                except: Some((3 << 32) | 9),
                at: None,
                frame: Bytes::from_static(f)
            })
        );
        assert_eq!(
            decode(publish(7, None, Some((5 << 64) | 2), f)),
            Some(Message::Publish {
                origin: 7,
                except: None,
                at: Some((5 << 64) | 2),
                frame: Bytes::from_static(f)
            })
        );
        assert_eq!(
            decode(send(1, 42, "chat", f)),
            Some(Message::Send {
                origin: 1,
                conn: 42,
                plugin: "chat".into(),
                frame: Bytes::from_static(f)
            })
        );
        assert_eq!(
            decode(close(2, 5, "ably-rooms", 4000, "bye")),
            Some(Message::Close {
                origin: 2,
                conn: 5,
                plugin: "ably-rooms".into(),
                code: 4000,
                reason: "bye".into()
            })
        );
    }

    #[test]
    fn rejects_foreign_payloads() {
        assert_eq!(decode(Bytes::from_static(b"hello")), None);
        assert_eq!(decode(Bytes::from_static(&[9; 20])), None);
        assert_eq!(
            decode(Bytes::from_static(&[3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1])),
            None
        );
    }
}
