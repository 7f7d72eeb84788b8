//! WebSocket framing (RFC 6455) for the server side: decoding masked client frames into
//! whole messages under size caps, and encoding unmasked server frames once so the same
//! bytes can be shared by every recipient of a broadcast.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A complete message or control frame from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message (UTF-8 checked).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping with its payload.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// A close frame with its code (if any) and reason.
    Close(Option<u16>, String),
}

/// A violation that ends the connection, with the close code to send.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// A frame exceeds the per-frame cap.
    #[error("frame of {0} bytes exceeds the limit")]
    FrameTooLarge(u64),
    /// A fragmented message exceeds the per-message cap.
    #[error("message exceeds the limit")]
    MessageTooLarge,
    /// Text that is not UTF-8.
    #[error("invalid UTF-8 in text message")]
    InvalidUtf8,
    /// Any other framing error.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

impl ProtocolError {
    /// The close code for this error.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::FrameTooLarge(_) | Self::MessageTooLarge => 1009,
            Self::InvalidUtf8 => 1007,
            Self::Protocol(_) => 1002,
        }
    }
}

/// Frame opcodes.
pub mod op {
    /// Continuation frame.
    pub const CONT: u8 = 0x0;
    /// Text frame.
    pub const TEXT: u8 = 0x1;
    /// Binary frame.
    pub const BINARY: u8 = 0x2;
    /// Close frame.
    pub const CLOSE: u8 = 0x8;
    /// Ping frame.
    pub const PING: u8 = 0x9;
    /// Pong frame.
    pub const PONG: u8 = 0xA;
}

/// Reassembles client frames into messages.
pub struct Decoder {
    max_frame: usize,
    max_message: usize,
    partial: Option<(u8, BytesMut)>,
}

impl Decoder {
    /// A decoder with per-frame and per-message caps.
    pub fn new(max_frame: usize, max_message: usize) -> Self {
        Self {
            max_frame,
            max_message,
            partial: None,
        }
    }

    /// Takes the next message out of `buf`, or `None` when more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        loop {
            let Some((fin, opcode, payload)) = self.frame(buf)? else {
                return Ok(None);
            };
            match opcode {
                op::PING => return Ok(Some(Message::Ping(payload.freeze()))),
                op::PONG => return Ok(Some(Message::Pong)),
                op::CLOSE => return parse_close(&payload).map(Some),
                op::TEXT | op::BINARY if self.partial.is_some() => {
                    return Err(ProtocolError::Protocol(
                        "new message inside a fragmented one",
                    ));
                }
                op::TEXT | op::BINARY if fin => return finish(opcode, payload).map(Some),
                op::TEXT | op::BINARY => {
                    self.partial = Some((opcode, payload));
                }
                op::CONT => {
                    let Some((first, mut acc)) = self.partial.take() else {
                        return Err(ProtocolError::Protocol("continuation without a message"));
                    };
                    if acc.len() + payload.len() > self.max_message {
                        return Err(ProtocolError::MessageTooLarge);
                    }
                    acc.extend_from_slice(&payload);
                    if fin {
                        return finish(first, acc).map(Some);
                    }
                    self.partial = Some((first, acc));
                }
                _ => return Err(ProtocolError::Protocol("reserved opcode")),
            }
        }
    }

    fn frame(&self, buf: &mut BytesMut) -> Result<Option<(bool, u8, BytesMut)>, ProtocolError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        if b0 & 0x70 != 0 {
            return Err(ProtocolError::Protocol("reserved bits set"));
        }
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        if b1 & 0x80 == 0 {
            return Err(ProtocolError::Protocol("client frames must be masked"));
        }
        let (len, head) = match b1 & 0x7F {
            126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
            127 if buf.len() >= 10 => (
                u64::from_be_bytes(buf[2..10].try_into().unwrap_or_default()),
                10,
            ),
            126 | 127 => return Ok(None),
            n => (n as u64, 2),
        };
        if opcode >= 0x8 && (!fin || len > 125) {
            return Err(ProtocolError::Protocol("invalid control frame"));
        }
        if len > self.max_frame as u64 {
            return Err(ProtocolError::FrameTooLarge(len));
        }
        let total = head + 4 + len as usize;
        if buf.len() < total {
            // Grow with what arrives, not with what the header announces: a header alone must
            // not make the gateway allocate up to max_frame_bytes.
            buf.reserve((total - buf.len()).min(MAX_RESERVE));
            return Ok(None);
        }
        let mask = [buf[head], buf[head + 1], buf[head + 2], buf[head + 3]];
        buf.advance(head + 4);
        let mut payload = buf.split_to(len as usize);
        unmask(&mut payload, mask);
        Ok(Some((fin, opcode, payload)))
    }
}

/// The most a partial frame makes the read buffer reserve ahead of the bytes received.
const MAX_RESERVE: usize = 256 << 10;

fn finish(opcode: u8, payload: BytesMut) -> Result<Message, ProtocolError> {
    if opcode == op::TEXT {
        if std::str::from_utf8(&payload).is_err() {
            return Err(ProtocolError::InvalidUtf8);
        }
        Ok(Message::Text(payload.freeze()))
    } else {
        Ok(Message::Binary(payload.freeze()))
    }
}

fn parse_close(payload: &[u8]) -> Result<Message, ProtocolError> {
    match payload.len() {
        0 => Ok(Message::Close(None, String::new())),
        1 => Err(ProtocolError::Protocol("close frame of one byte")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !valid {
                return Err(ProtocolError::Protocol("invalid close code"));
            }
            let reason =
                std::str::from_utf8(&payload[2..]).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Message::Close(Some(code), reason.to_string()))
        }
    }
}

/// XORs the payload with the 4-byte mask.
pub fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let m64 = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().unwrap_or_default()) ^ m64;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    let rest = chunks.into_remainder();
    for (i, b) in rest.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// Encodes one unmasked server frame (header and payload in one buffer).
pub fn encode(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    out.put_u8(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.put_u8(n as u8),
        n if n <= u16::MAX as usize => {
            out.put_u8(126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(127);
            out.put_u64(n as u64);
        }
    }
    out.extend_from_slice(payload);
    out.freeze()
}

/// Encodes a close frame with a code and a reason cut to fit a control frame.
pub fn encode_close(code: u16, reason: &str) -> Bytes {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut p = Vec::with_capacity(2 + cut);
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(&reason.as_bytes()[..cut]);
    encode(op::CLOSE, &p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn a_header_alone_does_not_reserve_the_announced_size() {
        let mut d = Decoder::new(100 << 20, 100 << 20);
        let mut head = vec![0x82, 0x80 | 127];
        head.extend_from_slice(&(100u64 << 20).to_be_bytes());
        head.extend_from_slice(&[1, 2, 3, 4]);
        let mut buf = BytesMut::from(&head[..]);
        assert!(d.decode(&mut buf).unwrap().is_none());
        assert!(
            buf.capacity() < 1 << 20,
            "reserved {} bytes for a 100 MiB header",
            buf.capacity()
        );
    }

    #[test]
    fn decodes_split_and_fragmented_messages() {
        let mut d = Decoder::new(1024, 4096);
        let mut wire = client_frame(false, op::TEXT, b"hello ");
        wire.extend(client_frame(true, op::PING, b"p"));
        wire.extend(client_frame(
            true,
            op::CONT,
            b"world, this is longer than eight",
        ));
        let mut buf = BytesMut::new();
        let mut out = vec![];
        for b in wire {
            buf.put_u8(b);
            while let Some(m) = d.decode(&mut buf).unwrap() {
                out.push(m);
            }
        }
        assert_eq!(
            out,
            vec![
                Message::Ping(Bytes::from_static(b"p")),
                Message::Text(Bytes::from_static(
                    b"hello world, this is longer than eight"
                )),
            ]
        );
    }

    #[test]
    fn enforces_limits_and_rules() {
        let mut d = Decoder::new(10, 15);
        let mut buf = BytesMut::from(&client_frame(true, op::TEXT, &[b'a'; 11])[..]);
        assert_eq!(d.decode(&mut buf).unwrap_err().close_code(), 1009);
        let mut d = Decoder::new(10, 15);
        let mut w = client_frame(false, op::BINARY, &[0; 10]);
        w.extend(client_frame(true, op::CONT, &[0; 10]));
        let mut buf = BytesMut::from(&w[..]);
        assert_eq!(d.decode(&mut buf), Err(ProtocolError::MessageTooLarge));
        let mut d = Decoder::new(10, 15);
        let mut buf = BytesMut::from(&client_frame(true, op::TEXT, &[0xff, 0xfe])[..]);
        assert_eq!(d.decode(&mut buf), Err(ProtocolError::InvalidUtf8));
        let mut unmasked = BytesMut::from(&[0x81u8, 0x01, b'a'][..]);
        assert!(matches!(
            d.decode(&mut unmasked),
            Err(ProtocolError::Protocol(_))
        ));
    }

    #[test]
    fn encodes_lengths() {
        assert_eq!(&encode(op::TEXT, b"hi")[..], &[0x81, 2, b'h', b'i']);
        assert_eq!(encode(op::BINARY, &[0; 300])[1], 126);
        assert_eq!(encode(op::BINARY, &[0; 70000])[1], 127);
        assert_eq!(&encode_close(1000, "")[..], &[0x88, 2, 0x03, 0xE8]);
    }
}
