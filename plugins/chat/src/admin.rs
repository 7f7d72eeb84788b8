//! The admin HTTP API under `/ws/*` (the host has already checked the admin key).

use plugin_sdk::{Frame, HttpRequest, HttpResponse, host};
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::Config;
use crate::envelope::stamped;
use crate::presence::{self, ALL, SCAN_ALL, user_topic};

/// kv key holding the Unix milliseconds the plugin first started.
const STARTED_AT_KEY: &str = "started_at_ms";

/// Close code and reason for connections dropped by `/ws/cleanup`.
const IDLE_CLOSE: (u16, &str) = (4000, "idle");

/// Records the start time once; kv outlives instances, so uptime survives instance churn.
pub fn ensure_started_at() {
    if host::kv_get(STARTED_AT_KEY).is_none() {
        let now = host::now_ms().to_string();
        let _ = host::kv_set(STARTED_AT_KEY, now.as_bytes(), None);
    }
}

/// Routes one admin request.
pub fn handle(request: &HttpRequest) -> HttpResponse {
    let path = request.path.trim_end_matches('/');
    let route = path.strip_prefix("/ws").unwrap_or(path);
    let (method, handler): (&str, fn(&HttpRequest) -> HttpResponse) = match route {
        "/online" => ("GET", online),
        "/stats" => ("GET", stats),
        "/send" => ("POST", send),
        "/broadcast" => ("POST", broadcast),
        "/cleanup" => ("POST", cleanup),
        _ => return error(404, "not found"),
    };
    if !request.method.eq_ignore_ascii_case(method) {
        let mut response = error(405, "method not allowed");
        response.headers.push(("allow".into(), method.into()));
        return response;
    }
    handler(request)
}

/// One entry of `GET /ws/online`.
#[derive(Serialize)]
struct OnlineEntry {
    #[serde(flatten)]
    user: presence::OnlineUser,
    connections: u32,
}

/// `GET /ws/online`: every online user (cluster-wide) with their number of connections.
fn online(_: &HttpRequest) -> HttpResponse {
    let users: Vec<OnlineEntry> = presence::members(SCAN_ALL)
        .into_iter()
        .map(|(user, connections)| OnlineEntry { user, connections })
        .collect();
    HttpResponse::json(200, &json!({"count": users.len(), "users": users}))
}

/// `GET /ws/stats`: connections and distinct users (cluster-wide) and this gateway's uptime in
/// seconds.
fn stats(_: &HttpRequest) -> HttpResponse {
    let now = host::now_ms();
    let started = host::kv_get(STARTED_AT_KEY)
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok());
    if started.is_none() {
        ensure_started_at();
    }
    let (users, connections) = presence::counts();
    HttpResponse::json(
        200,
        &json!({
            "total_connections": connections,
            "unique_users": users,
            "server_uptime": now.saturating_sub(started.unwrap_or(now)) / 1000,
        }),
    )
}

/// `POST /ws/send`: a server message to every connection of one user, on any gateway.
fn send(request: &HttpRequest) -> HttpResponse {
    let message = match parse_outgoing(&request.body, true) {
        Ok(m) => m,
        Err(e) => return error(400, &e),
    };
    let to = message.to_user_id.as_deref().unwrap_or_default();
    let recipients = presence::connections_of(to);
    if recipients == 0 {
        return HttpResponse::json(
            404,
            &json!({"success": false, "recipients_count": 0, "error": format!("user `{to}` is offline")}),
        );
    }
    let frame = stamped(message.message_type, &message.data, None, Some(to));
    host::publish(&user_topic(to), &Frame::Text(frame), None);
    HttpResponse::json(
        200,
        &json!({"success": true, "recipients_count": recipients}),
    )
}

/// `POST /ws/broadcast`: a server message to every connection.
fn broadcast(request: &HttpRequest) -> HttpResponse {
    let message = match parse_outgoing(&request.body, false) {
        Ok(m) => m,
        Err(e) => return error(400, &e),
    };
    let frame = stamped(message.message_type, &message.data, None, None);
    host::publish(ALL, &Frame::Text(frame), None);
    let recipients = presence::counts().1;
    HttpResponse::json(
        200,
        &json!({
            "success": true,
            "message": format!("message broadcast to {recipients} connections"),
            "recipients_count": recipients,
        }),
    )
}

/// `POST /ws/cleanup`: closes this gateway's connections idle for longer than the threshold
/// (each gateway cleans up its own; their users leave presence cluster-wide).
fn cleanup(request: &HttpRequest) -> HttpResponse {
    let idle_seconds = match parse_cleanup(&request.body, Config::current().idle_cleanup_seconds) {
        Ok(s) => s,
        Err(e) => return error(400, &e),
    };
    let now = host::now_ms();
    let idle_ms = idle_seconds.saturating_mul(1000);
    let connections = host::members(ALL);
    let mut cleaned = 0usize;
    for &conn in &connections {
        let Some(info) = host::connection_info(conn) else {
            continue;
        };
        if now.saturating_sub(info.last_seen_ms) > idle_ms
            && host::close(conn, IDLE_CLOSE.0, IDLE_CLOSE.1).is_ok()
        {
            cleaned += 1;
        }
    }
    HttpResponse::json(
        200,
        &json!({
            "cleaned_connections": cleaned,
            "remaining_connections": connections.len() - cleaned,
        }),
    )
}

/// A JSON error answer `{"error": message}`.
fn error(status: u16, message: &str) -> HttpResponse {
    HttpResponse::json(status, &json!({ "error": message }))
}

/// A validated `/ws/send` or `/ws/broadcast` body.
#[derive(Debug, PartialEq)]
pub(crate) struct Outgoing {
    message_type: &'static str,
    data: Value,
    to_user_id: Option<String>,
}

/// Parses a `/ws/send` (`direct`) or `/ws/broadcast` body.
pub(crate) fn parse_outgoing(body: &[u8], direct: bool) -> Result<Outgoing, String> {
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(body) else {
        return Err("the body must be a JSON object".into());
    };
    let message_type = match body.get("message_type") {
        Some(Value::String(t)) if t == "text" => "text",
        Some(Value::String(t)) if t == "notification" => "notification",
        Some(Value::String(t)) if t == "system_message" => "system_message",
        _ => {
            return Err(
                "`message_type` must be \"text\", \"notification\" or \"system_message\"".into(),
            );
        }
    };
    let to_user_id = if direct {
        match body.remove("to_user_id") {
            Some(Value::String(to)) if !to.is_empty() => Some(to),
            _ => return Err("`to_user_id` must be a non-empty string".into()),
        }
    } else {
        None
    };
    Ok(Outgoing {
        message_type,
        data: body.remove("data").unwrap_or(Value::Null),
        to_user_id,
    })
}

/// The idle threshold of a `/ws/cleanup` body (empty, `{}` or `null` means `default`).
pub(crate) fn parse_cleanup(body: &[u8], default: u64) -> Result<u64, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(default);
    }
    let value = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Null) => return Ok(default),
        Ok(Value::Object(map)) => map.get("idle_seconds").cloned().unwrap_or(Value::Null),
        _ => return Err("the body must be a JSON object".into()),
    };
    match value {
        Value::Null => Ok(default),
        v => v
            .as_u64()
            .ok_or_else(|| "`idle_seconds` must be a non-negative integer".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_body() {
        let m = parse_outgoing(
            br#"{"to_user_id":"bob","message_type":"notification","data":{"x":1}}"#,
            true,
        )
        .unwrap();
        assert_eq!(
            m,
            Outgoing {
                message_type: "notification",
                data: json!({"x": 1}),
                to_user_id: Some("bob".into())
            }
        );
        assert!(parse_outgoing(br#"{"message_type":"text"}"#, true).is_err());
        assert!(parse_outgoing(br#"{"to_user_id":"","message_type":"text"}"#, true).is_err());
        assert!(parse_outgoing(br#"{"to_user_id":5,"message_type":"text"}"#, true).is_err());
    }

    #[test]
    fn broadcast_body() {
        let m = parse_outgoing(br#"{"message_type":"system_message"}"#, false).unwrap();
        assert_eq!(m.message_type, "system_message");
        assert_eq!(m.data, Value::Null);
        assert_eq!(m.to_user_id, None);
        for bad in [
            &br#"{"message_type":"system"}"#[..],
            br#"{"message_type":"ping"}"#,
            br#"{"data":1}"#,
            b"[]",
            b"",
            b"{",
        ] {
            assert!(parse_outgoing(bad, false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cleanup_body() {
        assert_eq!(parse_cleanup(b"", 300), Ok(300));
        assert_eq!(parse_cleanup(b" \n", 300), Ok(300));
        assert_eq!(parse_cleanup(b"null", 300), Ok(300));
        assert_eq!(parse_cleanup(b"{}", 300), Ok(300));
        assert_eq!(parse_cleanup(br#"{"idle_seconds":null}"#, 300), Ok(300));
        assert_eq!(parse_cleanup(br#"{"idle_seconds":0}"#, 300), Ok(0));
        assert_eq!(parse_cleanup(br#"{"idle_seconds":42}"#, 300), Ok(42));
        assert!(parse_cleanup(br#"{"idle_seconds":-1}"#, 300).is_err());
        assert!(parse_cleanup(br#"{"idle_seconds":"5"}"#, 300).is_err());
        assert!(parse_cleanup(b"[1]", 300).is_err());
        assert!(parse_cleanup(b"{", 300).is_err());
    }
}
