//! The JSON envelope: server → client rendering and client → server parsing.

use plugin_sdk::host;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::time::rfc3339_millis;

/// Every frame the server sends.
#[derive(Serialize)]
struct Envelope<'a, D: ?Sized> {
    id: &'a str,
    message_type: &'a str,
    data: &'a D,
    timestamp: &'a str,
    from_user_id: Option<&'a str>,
    to_user_id: Option<&'a str>,
}

/// Serializes an envelope with a given `id` and `timestamp` (pure; see [`stamped`]).
pub fn render<D: Serialize + ?Sized>(
    id: &str,
    timestamp: &str,
    message_type: &str,
    data: &D,
    from_user_id: Option<&str>,
    to_user_id: Option<&str>,
) -> String {
    let envelope = Envelope {
        id,
        message_type,
        data,
        timestamp,
        from_user_id,
        to_user_id,
    };
    // Serializing strings, `RawValue`s and derived structs cannot fail.
    serde_json::to_string(&envelope).unwrap_or_default()
}

/// Serializes an envelope with a fresh UUID v4 and the host's current time.
pub fn stamped<D: Serialize + ?Sized>(
    message_type: &str,
    data: &D,
    from_user_id: Option<&str>,
    to_user_id: Option<&str>,
) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let timestamp = rfc3339_millis(host::now_ms());
    render(
        &id,
        &timestamp,
        message_type,
        data,
        from_user_id,
        to_user_id,
    )
}

/// `data` of an `error` envelope.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct ClientError {
    /// Machine-readable code, e.g. `invalid_json`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl ClientError {
    /// An error with `code` and `message`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ClientError {
            code,
            message: message.into(),
        }
    }

    /// The serialized `error` envelope (server-originated, so `from_user_id` is null).
    pub fn to_frame(&self) -> String {
        stamped("error", self, None, None)
    }
}

/// A valid message from a client. `data` borrows the frame text and is forwarded verbatim
/// (`None` means absent or null, rendered as `null`).
#[derive(Debug)]
pub enum Request<'a> {
    /// `text` or `notification`: to everyone, or only to `to_user_id`'s connections.
    Chat {
        /// `"text"` or `"notification"`.
        message_type: &'static str,
        /// The payload.
        data: Option<&'a RawValue>,
        /// The recipient of a direct message.
        to_user_id: Option<String>,
    },
    /// `ping`: answered with a `pong` carrying the same data.
    Ping {
        /// The payload to echo.
        data: Option<&'a RawValue>,
    },
}

/// The fields of a client message the server looks at; anything else is ignored.
#[derive(Deserialize)]
struct Inbound<'a> {
    #[serde(borrow, default)]
    message_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    to_user_id: Option<&'a RawValue>,
}

/// Whether JSON text (already valid apart from this) has a `\uD800`-`\uDFFF` escape that is
/// not a high surrogate directly followed by a low one.
fn has_lone_surrogate(json: &str) -> bool {
    let b = json.as_bytes();
    let hex = |at: usize| {
        b.get(at..at + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u16::from_str_radix(h, 16).ok())
    };
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        if b.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        match hex(i + 2) {
            Some(0xD800..=0xDBFF) => {
                let trail = (b.get(i + 6) == Some(&b'\\') && b.get(i + 7) == Some(&b'u'))
                    .then(|| hex(i + 8))
                    .flatten();
                if !matches!(trail, Some(0xDC00..=0xDFFF)) {
                    return true;
                }
                i += 12;
            }
            Some(0xDC00..=0xDFFF) => return true,
            _ => i += 6,
        }
    }
    false
}

/// Message types only the server may send.
const SERVER_ONLY: [&str; 5] = [
    "system_message",
    "pong",
    "user_joined",
    "user_left",
    "error",
];

/// Parses and validates one client text frame.
pub fn parse_request(text: &str) -> Result<Request<'_>, ClientError> {
    let invalid = |what: &str| {
        if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
            ClientError::new("invalid_message", what)
        } else {
            ClientError::new("invalid_json", "the message is not valid JSON")
        }
    };
    // Derived struct deserializers also accept arrays; insist on an object.
    if !text.trim_start().starts_with('{') {
        return Err(invalid("the message must be a JSON object"));
    }
    let inbound: Inbound<'_> = serde_json::from_str(text)
        .map_err(|_| invalid("the message must be a JSON object with unique keys"))?;
    let message_type: String = inbound
        .message_type
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .ok_or_else(|| ClientError::new("invalid_message", "`message_type` must be a string"))?;
    let data = inbound.data;
    // `data` is forwarded verbatim, so it must be JSON every receiver can read: a `\u` escape
    // of half a surrogate pair parses loosely here but is refused by strict parsers.
    if data.is_some_and(|d| has_lone_surrogate(d.get())) {
        return Err(ClientError::new(
            "invalid_message",
            "`data` contains an unpaired UTF-16 surrogate escape",
        ));
    }
    match message_type.as_str() {
        "text" | "notification" => {
            let to_user_id = match inbound.to_user_id {
                None => None,
                Some(raw) => Some(serde_json::from_str::<String>(raw.get()).map_err(|_| {
                    ClientError::new("invalid_message", "`to_user_id` must be a string or null")
                })?),
            };
            let message_type = if message_type == "text" {
                "text"
            } else {
                "notification"
            };
            Ok(Request::Chat {
                message_type,
                data,
                to_user_id,
            })
        }
        "ping" => Ok(Request::Ping { data }),
        t if SERVER_ONLY.contains(&t) => Err(ClientError::new(
            "forbidden_type",
            format!("`{t}` messages can only be sent by the server"),
        )),
        t => Err(ClientError::new(
            "unknown_type",
            format!("unknown message_type `{}`", truncate(t, 64)),
        )),
    }
}

/// At most `max` characters of `s`.
fn truncate(s: &str, max: usize) -> &str {
    s.char_indices().nth(max).map_or(s, |(i, _)| &s[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpaired_surrogate_escapes_in_data_are_refused() {
        for bad in [
            r#"{"message_type":"text","data":"\uda62P"}"#,
            r#"{"message_type":"text","data":{"k\ud800":1}}"#,
            r#"{"message_type":"text","data":"\udc00"}"#,
            r#"{"message_type":"ping","data":"x\ud83d"}"#,
            r#"{"message_type":"text","data":"\ud83d\u0041"}"#,
        ] {
            let e = parse_request(bad)
                .err()
                .unwrap_or_else(|| panic!("accepted {bad}"));
            assert_eq!(e.code, "invalid_message", "{bad}");
        }
        for good in [
            r#"{"message_type":"text","data":"\ud83d\ude00 \\ud800 \u00e9"}"#,
            r#"{"message_type":"text","data":{"a":"\\","b":"\\\\u"}}"#,
        ] {
            assert!(parse_request(good).is_ok(), "{good}");
        }
    }
    use serde_json::{Value, json};

    fn code(text: &str) -> &'static str {
        parse_request(text).unwrap_err().code
    }

    #[test]
    fn render_fills_every_field() {
        let data = json!({"k": [1, 2]});
        let out = render("id-1", "ts", "text", &data, Some("alice"), None);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            json!({"id": "id-1", "message_type": "text", "data": {"k": [1, 2]}, "timestamp": "ts",
                   "from_user_id": "alice", "to_user_id": null})
        );
    }

    #[test]
    fn render_forwards_raw_data_and_null() {
        let Request::Chat { data, .. } =
            parse_request(r#"{"message_type":"text","data":{"a": "é\n"}}"#).unwrap()
        else {
            panic!()
        };
        let out = render("i", "t", "text", &data, Some("u"), Some("v"));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["data"], json!({"a": "é\n"}));
        assert_eq!(v["to_user_id"], "v");
        let none: Option<&RawValue> = None;
        let v: Value = serde_json::from_str(&render("i", "t", "pong", &none, None, None)).unwrap();
        assert_eq!(v["data"], Value::Null);
        assert_eq!(v["from_user_id"], Value::Null);
    }

    #[test]
    fn broadcast_and_direct() {
        match parse_request(r#"{"message_type":"text","data":"hi","id":"x","from_user_id":"evil"}"#)
            .unwrap()
        {
            Request::Chat {
                message_type: "text",
                data: Some(d),
                to_user_id: None,
            } => assert_eq!(d.get(), r#""hi""#),
            other => panic!("{other:?}"),
        }
        match parse_request(r#"{"message_type":"notification","to_user_id":"bob"}"#).unwrap() {
            Request::Chat {
                message_type: "notification",
                data: None,
                to_user_id: Some(to),
            } => assert_eq!(to, "bob"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_request(r#"{"message_type":"text","to_user_id":null}"#).unwrap(),
            Request::Chat {
                to_user_id: None,
                ..
            }
        ));
    }

    #[test]
    fn ping() {
        match parse_request(r#" {"data":{"n":1},"message_type":"ping"}"#).unwrap() {
            Request::Ping { data: Some(d) } => assert_eq!(d.get(), r#"{"n":1}"#),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_json() {
        assert_eq!(code("{"), "invalid_json");
        assert_eq!(code("hello"), "invalid_json");
        assert_eq!(code(""), "invalid_json");
        assert_eq!(code(r#"{"message_type":"text",}"#), "invalid_json");
    }

    #[test]
    fn bad_messages() {
        assert_eq!(code("[]"), "invalid_message");
        assert_eq!(code(r#"["text", null, null]"#), "invalid_message");
        assert_eq!(code("42"), "invalid_message");
        assert_eq!(code("{}"), "invalid_message");
        assert_eq!(code(r#"{"message_type":5}"#), "invalid_message");
        assert_eq!(code(r#"{"message_type":null}"#), "invalid_message");
        assert_eq!(
            code(r#"{"message_type":"text","to_user_id":7}"#),
            "invalid_message"
        );
        assert_eq!(
            code(r#"{"message_type":"text","message_type":"ping"}"#),
            "invalid_message"
        );
    }

    #[test]
    fn forbidden_and_unknown_types() {
        for t in SERVER_ONLY {
            assert_eq!(
                code(&format!(r#"{{"message_type":"{t}"}}"#)),
                "forbidden_type"
            );
        }
        assert_eq!(code(r#"{"message_type":"command"}"#), "unknown_type");
        assert_eq!(code(r#"{"message_type":"TEXT"}"#), "unknown_type");
        let long = "x".repeat(1000);
        let err = parse_request(&format!(r#"{{"message_type":"{long}"}}"#)).unwrap_err();
        assert!(err.message.len() < 100);
    }

    #[test]
    fn escaped_type_is_decoded() {
        assert!(matches!(
            parse_request(r#"{"message_type":"pin\u0067"}"#).unwrap(),
            Request::Ping { .. }
        ));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("ééé", 2), "éé");
        assert_eq!(truncate("ab", 5), "ab");
    }
}
