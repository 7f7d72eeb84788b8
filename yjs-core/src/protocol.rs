//! y-protocols messages as y-websocket clients and y-redis send them.
//!
//! A frame is `varuint type` then a type-specific body:
//! - `0` sync: `varuint subtype` (0 step 1, 1 step 2, 2 update) and a varUint8Array
//!   (state vector for step 1, Yjs update v1 otherwise);
//! - `1` awareness: a varUint8Array holding an awareness update.
//!
//! Bytes after the body are ignored when parsing, as the JavaScript readers do.

use crate::awareness::parse_awareness_update;
use crate::error::{Error, Result};
use crate::lib0::{Decoder, write_var_bytes, write_var_uint};

/// Top-level message type: sync.
pub const MESSAGE_SYNC: u8 = 0;
/// Top-level message type: awareness.
pub const MESSAGE_AWARENESS: u8 = 1;
/// Sync sub-type: step 1 (state vector).
pub const SYNC_STEP1: u8 = 0;
/// Sync sub-type: step 2 (update answering a step 1).
pub const SYNC_STEP2: u8 = 1;
/// Sync sub-type: update.
pub const SYNC_UPDATE: u8 = 2;

/// One parsed frame; the payloads borrow from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// Sync step 1 with an encoded state vector.
    SyncStep1(&'a [u8]),
    /// Sync step 2 with a Yjs update (v1).
    SyncStep2(&'a [u8]),
    /// Sync update with a Yjs update (v1).
    SyncUpdate(&'a [u8]),
    /// Awareness with an encoded awareness update.
    Awareness(&'a [u8]),
    /// Any other top-level type (2 auth, 3 query-awareness, ...); the body is not read.
    Other(u64),
}

impl<'a> Message<'a> {
    /// Parses a binary frame. Unknown top-level types give `Other`, never an error.
    pub fn parse(frame: &'a [u8]) -> Result<Self> {
        let mut d = Decoder::new(frame);
        match d.read_var_uint()? {
            0 => {
                let sub = d.read_var_uint()?;
                let payload = d.read_var_bytes()?;
                match sub {
                    0 => Ok(Message::SyncStep1(payload)),
                    1 => Ok(Message::SyncStep2(payload)),
                    2 => Ok(Message::SyncUpdate(payload)),
                    other => Err(Error::UnknownSyncType(other)),
                }
            }
            1 => Ok(Message::Awareness(d.read_var_bytes()?)),
            other => Ok(Message::Other(other)),
        }
    }

    /// Encodes the frame; `Other` encodes as its bare type.
    pub fn encode(&self) -> Vec<u8> {
        let (head, payload): (&[u8], &[u8]) = match *self {
            Message::SyncStep1(p) => (&[MESSAGE_SYNC, SYNC_STEP1], p),
            Message::SyncStep2(p) => (&[MESSAGE_SYNC, SYNC_STEP2], p),
            Message::SyncUpdate(p) => (&[MESSAGE_SYNC, SYNC_UPDATE], p),
            Message::Awareness(p) => (&[MESSAGE_AWARENESS], p),
            Message::Other(t) => {
                let mut out = Vec::new();
                write_var_uint(&mut out, t);
                return out;
            }
        };
        let mut out = Vec::with_capacity(head.len() + 10 + payload.len());
        out.extend_from_slice(head);
        write_var_bytes(&mut out, payload);
        out
    }
}

/// A sync step 1 frame for an encoded state vector.
pub fn sync_step1_frame(state_vector: &[u8]) -> Vec<u8> {
    Message::SyncStep1(state_vector).encode()
}

/// A sync step 2 frame for a Yjs update (v1).
pub fn sync_step2_frame(update: &[u8]) -> Vec<u8> {
    Message::SyncStep2(update).encode()
}

/// A sync update frame for a Yjs update (v1).
pub fn sync_update_frame(update: &[u8]) -> Vec<u8> {
    Message::SyncUpdate(update).encode()
}

/// An awareness frame for an encoded awareness update.
pub fn awareness_frame(update: &[u8]) -> Vec<u8> {
    Message::Awareness(update).encode()
}

/// The stream payload `m` y-redis would XADD for a client frame, or `None` to drop it.
///
/// - Sync update and awareness frames are kept byte for byte.
/// - Sync step 2 becomes a sync update with identical framing (byte 1 set to 2), but
///   frames shorter than 4 bytes are dropped (an empty client step 2, `00 01 02 00 00`,
///   is 5 bytes and is kept).
/// - Step 1 (the server always sends the full state), unknown types and frames that do
///   not parse are dropped. y-redis checks only the first two bytes; we also require the
///   frame (and, for awareness, the awareness update) to be well-formed, so readers of the
///   stream see fewer broken entries.
pub fn to_stream_message(frame: &[u8]) -> Option<Vec<u8>> {
    match Message::parse(frame).ok()? {
        // The raw-byte checks mirror y-redis and make the in-place rewrite valid.
        Message::SyncStep2(_) if frame[..2] == [MESSAGE_SYNC, SYNC_STEP2] => {
            if frame.len() < 4 {
                return None;
            }
            let mut m = frame.to_vec();
            m[1] = SYNC_UPDATE;
            Some(m)
        }
        Message::SyncUpdate(_) if frame[..2] == [MESSAGE_SYNC, SYNC_UPDATE] => Some(frame.to_vec()),
        Message::Awareness(update) if frame[0] == MESSAGE_AWARENESS => {
            parse_awareness_update(update).ok()?;
            Some(frame.to_vec())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_client_frames_from_real_clients() {
        // y-websocket's first frame: step 1 with an empty state vector.
        assert_eq!(
            Message::parse(&[0, 0, 1, 0]),
            Ok(Message::SyncStep1(&[0][..]))
        );
        // Its empty step 2.
        assert_eq!(
            Message::parse(&[0, 1, 2, 0, 0]),
            Ok(Message::SyncStep2(&[0, 0][..]))
        );
        assert_eq!(
            Message::parse(&[0, 2, 3, 9, 8, 7]),
            Ok(Message::SyncUpdate(&[9, 8, 7][..]))
        );
        // Initial awareness: client 5, clock 0, "{}".
        let aw = [1, 6, 1, 5, 0, 2, b'{', b'}'];
        assert_eq!(Message::parse(&aw), Ok(Message::Awareness(&aw[2..])));
        assert_eq!(Message::parse(&[3]), Ok(Message::Other(3)));
        assert_eq!(Message::parse(&[2, 0, 5]), Ok(Message::Other(2)));
        assert_eq!(Message::parse(&[0xac, 0x02]), Ok(Message::Other(300)));
    }

    #[test]
    fn parse_ignores_trailing_bytes() {
        assert_eq!(
            Message::parse(&[0, 2, 1, 7, 0xff, 0xff]),
            Ok(Message::SyncUpdate(&[7][..]))
        );
    }

    #[test]
    fn parse_malformed() {
        assert_eq!(Message::parse(&[]), Err(Error::UnexpectedEnd));
        assert_eq!(Message::parse(&[0]), Err(Error::UnexpectedEnd));
        assert_eq!(Message::parse(&[0, 2]), Err(Error::UnexpectedEnd));
        assert_eq!(Message::parse(&[0, 2, 5, 1, 2]), Err(Error::UnexpectedEnd));
        assert_eq!(Message::parse(&[1, 0x80]), Err(Error::UnexpectedEnd));
        assert_eq!(Message::parse(&[0, 3, 0]), Err(Error::UnknownSyncType(3)));
        assert_eq!(Message::parse(&[0x80]), Err(Error::UnexpectedEnd));
    }

    #[test]
    fn encode_golden_and_round_trip() {
        assert_eq!(sync_step1_frame(&[0]), [0, 0, 1, 0]);
        assert_eq!(sync_step2_frame(&[0, 0]), [0, 1, 2, 0, 0]);
        assert_eq!(sync_update_frame(&[9]), [0, 2, 1, 9]);
        assert_eq!(awareness_frame(&[0]), [1, 1, 0]);
        assert_eq!(Message::Other(300).encode(), [0xac, 0x02]);
        let big = vec![7u8; 200];
        let f = sync_update_frame(&big);
        assert_eq!(&f[..4], &[0, 2, 0xc8, 0x01]);
        assert_eq!(f.len(), 204);
        for m in [
            Message::SyncStep1(&[1, 2]),
            Message::SyncStep2(&[]),
            Message::SyncUpdate(&big),
            Message::Awareness(&[0]),
            Message::Other(9),
        ] {
            assert_eq!(Message::parse(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn stream_message_rewrites_step2() {
        assert_eq!(
            to_stream_message(&[0, 1, 2, 0, 0]),
            Some(vec![0, 2, 2, 0, 0])
        );
        assert_eq!(
            to_stream_message(&[0, 1, 3, 1, 2, 3]),
            Some(vec![0, 2, 3, 1, 2, 3])
        );
    }

    #[test]
    fn stream_message_drops_short_step2_step1_and_unknown() {
        assert_eq!(to_stream_message(&[0, 1, 0]), None);
        assert_eq!(to_stream_message(&[0, 1, 1, 0]), Some(vec![0, 2, 1, 0]));
        assert_eq!(to_stream_message(&[0, 0, 1, 0]), None);
        assert_eq!(to_stream_message(&[3]), None);
        assert_eq!(to_stream_message(&[2, 0]), None);
        assert_eq!(to_stream_message(&[0, 2, 9]), None);
        assert_eq!(to_stream_message(&[]), None);
        // Non-canonical type bytes are not what y-redis accepts.
        assert_eq!(to_stream_message(&[0x80, 0x00, 2, 1, 0]), None);
    }

    #[test]
    fn stream_message_keeps_updates_and_awareness_verbatim() {
        // Short updates are not length-filtered (only step 2 is).
        assert_eq!(to_stream_message(&[0, 2, 0]), Some(vec![0, 2, 0]));
        let upd = [0, 2, 2, 0, 0, 0xaa];
        assert_eq!(to_stream_message(&upd), Some(upd.to_vec()));
        let aw = [1, 6, 1, 5, 0, 2, b'{', b'}'];
        assert_eq!(to_stream_message(&aw), Some(aw.to_vec()));
        // A broken awareness update is dropped.
        assert_eq!(to_stream_message(&[1, 3, 1, 5, 0]), None);
    }
}
