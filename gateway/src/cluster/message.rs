//! What instances tell each other over Redis PUB/SUB: a publish to a topic (sent on the topic's
//! channel) or a frame or close for one connection (sent on its instance's channel).
//!
//! Layout: kind (1 byte), origin node (u32 BE), then per kind: publish = except (u64 BE, 0 =
//! none) and the encoded frame; positioned publish = except, the position (u128 BE) and the
//! encoded frame; send = connection (u64 BE) and the encoded frame; close =
//! connection (u64 BE), code (u16 BE) and the UTF-8 reason. Frames travel already encoded for
//! the wire, so the receiving instance queues the same bytes into every local outbox.

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
        at: Option<u128>,
        /// The encoded frame.
        frame: Bytes,
    },
    /// Queue `frame` on connection `conn` of the receiving instance.
    Send {
        /// The sending instance.
        origin: u32,
        /// The target connection.
        conn: ConnId,
        /// The encoded frame.
        frame: Bytes,
    },
    /// Close connection `conn` of the receiving instance.
    Close {
        /// The sending instance.
        origin: u32,
        /// The target connection.
        conn: ConnId,
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
pub fn publish(origin: u32, except: Option<ConnId>, at: Option<u128>, frame: &[u8]) -> Bytes {
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

/// A frame for connection `conn`.
pub fn send(origin: u32, conn: ConnId, frame: &[u8]) -> Bytes {
    let mut b = header(SEND, origin, conn, frame.len());
    b.put_slice(frame);
    b.freeze()
}

/// A close of connection `conn`.
pub fn close(origin: u32, conn: ConnId, code: u16, reason: &str) -> Bytes {
    let mut b = header(CLOSE, origin, conn, 2 + reason.len());
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
        SEND => Some(Message::Send {
            origin,
            conn: id,
            frame: rest,
        }),
        CLOSE if rest.len() >= 2 => Some(Message::Close {
            origin,
            conn: id,
            code: u16::from_be_bytes([rest[0], rest[1]]),
            reason: String::from_utf8_lossy(&rest[2..]).into_owned(),
        }),
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
            decode(send(1, 42, f)),
            Some(Message::Send {
                origin: 1,
                conn: 42,
                frame: Bytes::from_static(f)
            })
        );
        assert_eq!(
            decode(close(2, 5, 4000, "bye")),
            Some(Message::Close {
                origin: 2,
                conn: 5,
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
