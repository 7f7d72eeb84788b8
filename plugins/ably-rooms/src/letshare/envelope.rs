//! The LetShare envelope: `{type, channel, event, data, timestamp, error{code, message}}`.

use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The event every member listens to, and the default of `subscribe` and `publish`.
pub const ALL_EVENT: &str = "signal:all";

/// Longest event name accepted.
const MAX_EVENT: usize = 128;

/// A client request.
#[derive(Debug, PartialEq)]
pub enum Request {
    /// Join `channel` (a room) for `event`.
    Subscribe { channel: String, event: String },
    /// Drop `event`, or leave the room for [`ALL_EVENT`].
    Unsubscribe { channel: String, event: String },
    /// Send `data` (a JSON object) to the room's other members listening to `event`.
    Publish {
        channel: String,
        event: String,
        data: Map<String, Value>,
    },
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "type")]
    kind: Option<String>,
    channel: Option<String>,
    event: Option<String>,
    data: Option<Value>,
}

/// Parses a text frame; the error text goes back in an `error` envelope.
pub fn parse(text: &str) -> Result<Request, String> {
    let raw: Raw = serde_json::from_str(text).map_err(|e| format!("invalid message: {e}"))?;
    let kind = raw.kind.ok_or("missing type")?;
    let channel = raw
        .channel
        .filter(|c| !c.is_empty())
        .ok_or("missing channel")?;
    let event = raw
        .event
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| ALL_EVENT.to_string());
    if event.len() > MAX_EVENT {
        return Err(format!("event longer than {MAX_EVENT} bytes"));
    }
    match kind.as_str() {
        "subscribe" => Ok(Request::Subscribe { channel, event }),
        "unsubscribe" => Ok(Request::Unsubscribe { channel, event }),
        "publish" => match raw.data {
            Some(Value::Object(data)) => Ok(Request::Publish {
                channel,
                event,
                data,
            }),
            _ => Err("data must be a JSON object".into()),
        },
        other => Err(format!("unknown message type `{other}`")),
    }
}

/// `subscribed`.
pub fn subscribed(room: &str, event: &str, now_ms: u64) -> String {
    json!({
        "type": "subscribed",
        "channel": room,
        "event": event,
        "data": {"status": "subscribed", "room": room, "event": event},
        "timestamp": now_ms,
    })
    .to_string()
}

/// `unsubscribed`.
pub fn unsubscribed(room: &str, event: &str, now_ms: u64) -> String {
    json!({
        "type": "unsubscribed",
        "channel": room,
        "event": event,
        "data": {"status": "unsubscribed", "room": room},
        "timestamp": now_ms,
    })
    .to_string()
}

/// `message`.
pub fn message(room: &str, event: &str, data: &Map<String, Value>, now_ms: u64) -> String {
    json!({
        "type": "message",
        "channel": room,
        "event": event,
        "data": data,
        "timestamp": now_ms,
    })
    .to_string()
}

/// `error` with code 400.
pub fn error(message: &str, now_ms: u64) -> String {
    json!({
        "type": "error",
        "error": {"code": 400, "message": message},
        "timestamp": now_ms,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(
            parse(r#"{"type":"subscribe","channel":"room"}"#),
            Ok(Request::Subscribe {
                channel: "room".into(),
                event: ALL_EVENT.into()
            })
        );
        assert_eq!(
            parse(r#"{"type":"unsubscribe","channel":"room","event":"signal:x"}"#),
            Ok(Request::Unsubscribe {
                channel: "room".into(),
                event: "signal:x".into()
            })
        );
        assert!(matches!(
            parse(r#"{"type":"publish","channel":"room","data":{"a":1}}"#),
            Ok(Request::Publish { .. })
        ));
        for bad in [
            "nope",
            r#"{"channel":"room"}"#,
            r#"{"type":"subscribe"}"#,
            r#"{"type":"publish","channel":"room","data":"text"}"#,
            r#"{"type":"publish","channel":"room"}"#,
            r#"{"type":"dance","channel":"room"}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
