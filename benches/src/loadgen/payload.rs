//! Stamped test messages: built straight into masked frames, recognised by their
//! `"seq":` and `"t":` fields whatever envelope the server wraps them in.

use std::io::Write;
use std::sync::LazyLock;

use memchr::memmem::Finder;

use super::cli::Mode;
use crate::clock::now_ns;
use crate::frame::{Masker, OP_TEXT, encode_client};

static SEQ: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"seq\":"));
static T: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"t\":"));

/// The channel every connection attaches in ably mode.
pub const ABLY_CHANNEL: &str = "bench";

/// Builds stamped messages of a fixed size and encodes them as client frames.
pub struct MessageBuilder {
    mode: Mode,
    size: usize,
    scratch: Vec<u8>,
    masker: Masker,
}

impl MessageBuilder {
    /// Messages for `mode`, padded to `size` payload bytes where possible.
    pub fn new(mode: Mode, size: usize, seed: u64) -> Self {
        Self {
            mode,
            size,
            scratch: Vec::with_capacity(size + 64),
            masker: Masker::new(seed),
        }
    }

    /// The payload of message `seq`, stamped with the current time.
    pub fn payload(&mut self, seq: u64) -> &[u8] {
        let s = &mut self.scratch;
        s.clear();
        let tail: &[u8] = match self.mode {
            Mode::Chat => {
                s.extend_from_slice(b"{\"message_type\":\"text\",\"data\":{");
                b"\"}}"
            }
            Mode::Bare => {
                s.push(b'{');
                b"\"}"
            }
            Mode::Ably => {
                // A MESSAGE whose msgSerial is the message number (one sender per connection).
                let _ = write!(
                    s,
                    "{{\"action\":15,\"channel\":\"{ABLY_CHANNEL}\",\"msgSerial\":{seq},\"messages\":[{{\"name\":\"m\",\"data\":{{"
                );
                b"\"}}]}"
            }
        };
        // In ably mode `--size` is the size of the message's data (an object, `{...}`), as Ably
        // counts a message's size; otherwise the size of the whole frame payload.
        let data_start = s.len() - 1;
        let _ = write!(s, "\"seq\":{seq},\"t\":{},\"pad\":\"", now_ns());
        let used = match self.mode {
            Mode::Ably => s.len() - data_start + 2,
            _ => s.len() + tail.len(),
        };
        let pad = self.size.saturating_sub(used);
        s.resize(s.len() + pad, b'x');
        s.extend_from_slice(tail);
        &self.scratch
    }

    /// Appends message `seq` as a masked text frame to `out`.
    pub fn append_frame(&mut self, out: &mut Vec<u8>, seq: u64) {
        let key = self.masker.next_key();
        self.payload(seq);
        encode_client(out, OP_TEXT, &self.scratch, key);
    }
}

/// Parses leading ASCII digits; returns the value and how many digits were read.
fn parse_digits(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut n = 0;
    for &c in b.iter().take(20) {
        if !c.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
        n += 1;
    }
    (n > 0).then_some((v, n))
}

/// Extracts `(seq, t)` from a stamped message, or `None` for any other frame.
pub fn parse_stamp(payload: &[u8]) -> Option<(u64, u64)> {
    // Fast path: the bare server echoes our payload verbatim.
    let i = if payload.starts_with(b"{\"seq\":") {
        7
    } else {
        SEQ.find(payload)? + 6
    };
    let (seq, digits) = parse_digits(&payload[i..])?;
    let rest = &payload[i + digits..];
    // Fast path: `"t":` follows `"seq":N,` in what we send.
    let j = if rest.starts_with(b",\"t\":") {
        5
    } else {
        T.find(rest)? + 4
    };
    let (t, _) = parse_digits(&rest[j..])?;
    Some((seq, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_round_trip() {
        for mode in [Mode::Chat, Mode::Bare, Mode::Ably] {
            let mut b = MessageBuilder::new(mode, 100, 1);
            let p = b.payload(42).to_vec();
            assert!(
                p.len() == 100 || mode == Mode::Ably,
                "{mode:?}: {}",
                p.len()
            );
            if mode == Mode::Ably {
                let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
                assert_eq!(v["messages"][0]["data"].to_string().len(), 100);
            }
            let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
            let data = match mode {
                Mode::Chat => &v["data"],
                Mode::Bare => &v,
                Mode::Ably => {
                    assert_eq!(v["msgSerial"], 42);
                    &v["messages"][0]["data"]
                }
            };
            assert_eq!(data["seq"], 42);
            let (seq, t) = parse_stamp(&p).unwrap();
            assert_eq!(seq, 42);
            assert_eq!(data["t"].as_u64().unwrap(), t);
        }
    }

    #[test]
    fn parses_inside_server_envelope() {
        let env = br#"{"id":"x","message_type":"text","data":{"seq":7,"t":123456,"pad":"xx"},"timestamp":"t","from_user_id":"u","to_user_id":null}"#;
        assert_eq!(parse_stamp(env), Some((7, 123456)));
        assert_eq!(
            parse_stamp(br#"{"message_type":"user_joined","data":{"t":1}}"#),
            None
        );
    }
}
