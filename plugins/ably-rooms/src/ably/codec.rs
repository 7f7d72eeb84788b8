//! ProtocolMessages on the wire: JSON in text frames or MessagePack in binary frames, as the
//! client's `format` asks. Inside the plugin a message is a JSON value; binary `data` from a
//! MessagePack client becomes base64 with `base64` appended to its `encoding`, as Ably itself
//! does for JSON subscribers, and every client decodes that back to bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use plugin_sdk::Frame;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

/// A connection's wire format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    /// Text frames with JSON.
    #[default]
    Json,
    /// Binary frames with MessagePack.
    Msgpack,
}

impl Format {
    /// Both formats, for fan-out.
    pub const ALL: [Format; 2] = [Format::Json, Format::Msgpack];

    /// The format named by the connect query's `format` (JSON when absent).
    pub fn from_query(format: Option<&str>) -> Option<Format> {
        match format {
            None | Some("json") => Some(Format::Json),
            Some("msgpack") => Some(Format::Msgpack),
            Some(_) => None,
        }
    }

    /// A short tag for topic names.
    pub fn tag(self) -> &'static str {
        match self {
            Format::Json => "j",
            Format::Msgpack => "m",
        }
    }

    /// Encodes one ProtocolMessage.
    pub fn encode(self, message: &Value) -> Frame {
        match self {
            Format::Json => Frame::Text(message.to_string()),
            Format::Msgpack => Frame::Binary(to_msgpack(message)),
        }
    }
}

/// Why a frame is not a ProtocolMessage.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A text frame on a MessagePack connection or the other way round.
    WrongFrameType,
    /// Not a JSON / MessagePack map.
    Malformed,
}

/// Decodes one ProtocolMessage from a client.
pub fn decode(format: Format, frame: Frame) -> Result<Map<String, Value>, DecodeError> {
    let value = match (format, frame) {
        (Format::Json, Frame::Text(t)) => parse(format, t.as_bytes())?,
        (Format::Msgpack, Frame::Binary(b)) => parse(format, &b)?,
        _ => return Err(DecodeError::WrongFrameType),
    };
    match value {
        Value::Object(mut m) => {
            binary_data_to_base64(&mut m);
            Ok(m)
        }
        _ => Err(DecodeError::Malformed),
    }
}

/// One whole JSON or MessagePack value (trailing bytes are an error).
fn parse(format: Format, bytes: &[u8]) -> Result<Value, DecodeError> {
    match format {
        Format::Json => serde_json::from_slice(bytes).map_err(|_| DecodeError::Malformed),
        Format::Msgpack => {
            let mut reader = bytes;
            let v = rmpv::decode::read_value(&mut reader).map_err(|_| DecodeError::Malformed)?;
            if !reader.is_empty() {
                return Err(DecodeError::Malformed);
            }
            from_msgpack(v, 0)
        }
    }
}

/// Decodes a REST body (one message, or a list of them) in `format`; binary `data` becomes
/// base64 as in [`decode`]. Returns the messages.
pub fn decode_messages(format: Format, body: &[u8]) -> Result<Vec<Value>, DecodeError> {
    let value = parse(format, body)?;
    let list = match value {
        Value::Array(items) => items,
        one @ Value::Object(_) => vec![one],
        _ => return Err(DecodeError::Malformed),
    };
    let mut wrapper = Map::new();
    wrapper.insert("messages".into(), Value::Array(list));
    binary_data_to_base64(&mut wrapper);
    match wrapper.remove("messages") {
        Some(Value::Array(items)) => Ok(items),
        _ => Err(DecodeError::Malformed),
    }
}

/// Encodes a REST answer body in `format`.
pub fn encode_body(format: Format, value: &Value) -> Vec<u8> {
    match format {
        Format::Json => value.to_string().into_bytes(),
        Format::Msgpack => to_msgpack(value),
    }
}

/// Marker key for binary values while converting from MessagePack (never sent anywhere).
const BIN: &str = "\u{0}bin";

/// Deepest nesting accepted.
const MAX_DEPTH: usize = 32;

fn from_msgpack(v: rmpv::Value, depth: usize) -> Result<Value, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::Malformed);
    }
    Ok(match v {
        rmpv::Value::Nil => Value::Null,
        rmpv::Value::Boolean(b) => Value::Bool(b),
        rmpv::Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(s)) => Value::from(s),
            _ => return Err(DecodeError::Malformed),
        },
        rmpv::Value::F32(f) => Number::from_f64(f64::from(f))
            .map(Value::Number)
            .unwrap_or(Value::Null),
        rmpv::Value::F64(f) => Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        rmpv::Value::String(s) => match s.into_str() {
            Some(s) => Value::String(s),
            None => return Err(DecodeError::Malformed),
        },
        rmpv::Value::Binary(b) => {
            let mut m = Map::new();
            m.insert(BIN.into(), Value::String(B64.encode(b)));
            Value::Object(m)
        }
        rmpv::Value::Array(a) => Value::Array(
            a.into_iter()
                .map(|x| from_msgpack(x, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        rmpv::Value::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                let rmpv::Value::String(k) = k else {
                    return Err(DecodeError::Malformed);
                };
                let k = k.into_str().ok_or(DecodeError::Malformed)?;
                m.insert(k, from_msgpack(v, depth + 1)?);
            }
            Value::Object(m)
        }
        rmpv::Value::Ext(_, _) => return Err(DecodeError::Malformed),
    })
}

fn take_bin(v: &mut Value) -> Option<String> {
    let m = v.as_object_mut()?;
    if m.len() != 1 {
        return None;
    }
    match m.remove(BIN)? {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// Turns binary `data` of the messages and presence messages into base64 with `encoding`
/// extended, and any other binary value into a plain base64 string.
fn binary_data_to_base64(message: &mut Map<String, Value>) {
    for list in ["messages", "presence"] {
        let Some(Value::Array(items)) = message.get_mut(list) else {
            continue;
        };
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(data) = item.get_mut("data")
                && let Some(b64) = take_bin(data)
            {
                *data = Value::String(b64);
                let encoding = match item.get("encoding").and_then(Value::as_str) {
                    Some(e) if !e.is_empty() => format!("{e}/base64"),
                    _ => "base64".to_string(),
                };
                item.insert("encoding".into(), Value::String(encoding));
            }
        }
    }
    strip_bins(message);
}

fn strip_bins(m: &mut Map<String, Value>) {
    for v in m.values_mut() {
        strip_value(v);
    }
}

fn strip_value(v: &mut Value) {
    if let Some(b) = take_bin(v) {
        *v = Value::String(b);
        return;
    }
    match v {
        Value::Array(a) => a.iter_mut().for_each(strip_value),
        Value::Object(m) => strip_bins(m),
        _ => {}
    }
}

fn to_msgpack(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_value(&mut out, v);
    out
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    use rmp::encode;
    // Writing into a Vec cannot fail.
    match v {
        Value::Null => {
            let _ = encode::write_nil(out);
        }
        Value::Bool(b) => {
            let _ = encode::write_bool(out, *b);
        }
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                let _ = encode::write_uint(out, u);
            } else if let Some(i) = n.as_i64() {
                let _ = encode::write_sint(out, i);
            } else {
                let _ = encode::write_f64(out, n.as_f64().unwrap_or(0.0));
            }
        }
        Value::String(s) => {
            let _ = encode::write_str(out, s);
        }
        Value::Array(a) => {
            let _ = encode::write_array_len(out, a.len() as u32);
            for x in a {
                write_value(out, x);
            }
        }
        Value::Object(m) => {
            let _ = encode::write_map_len(out, m.len() as u32);
            for (k, x) in m {
                let _ = encode::write_str(out, k);
                write_value(out, x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn packed(v: &rmpv::Value) -> Frame {
        let mut b = Vec::new();
        rmpv::encode::write_value(&mut b, v).unwrap();
        Frame::Binary(b)
    }

    #[test]
    fn msgpack_round_trip_and_binary_data() {
        let msg = rmpv::Value::Map(vec![
            ("action".into(), 15.into()),
            ("channel".into(), "c".into()),
            (
                "messages".into(),
                rmpv::Value::Array(vec![rmpv::Value::Map(vec![
                    ("name".into(), "n".into()),
                    ("data".into(), rmpv::Value::Binary(vec![0, 1, 255])),
                ])]),
            ),
        ]);
        let m = decode(Format::Msgpack, packed(&msg)).unwrap();
        assert_eq!(m["messages"][0]["data"], json!("AAH/"));
        assert_eq!(m["messages"][0]["encoding"], json!("base64"));
        let Frame::Binary(b) = Format::Msgpack.encode(&Value::Object(m.clone())) else {
            panic!("binary frame expected")
        };
        let back = decode(Format::Msgpack, Frame::Binary(b)).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(
            decode(Format::Json, Frame::Text("[1]".into())),
            Err(DecodeError::Malformed)
        );
        assert_eq!(
            decode(Format::Json, Frame::Binary(vec![0x80])),
            Err(DecodeError::WrongFrameType)
        );
        // Trailing bytes, truncated input and non-string keys.
        assert!(decode(Format::Msgpack, Frame::Binary(vec![0x80, 0x80])).is_err());
        assert!(decode(Format::Msgpack, Frame::Binary(vec![0x81])).is_err());
        assert!(decode(Format::Msgpack, Frame::Binary(vec![0x81, 0x01, 0x01])).is_err());
        // Nesting deeper than the limit.
        let mut deep = vec![0x91; 100];
        deep.push(0xc0);
        let mut framed = vec![0x81, 0xa1, b'x'];
        framed.extend(deep);
        assert!(decode(Format::Msgpack, Frame::Binary(framed)).is_err());
    }
}
