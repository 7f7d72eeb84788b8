//! Ably's REST API on the realtime listener, for backends and `Ably.Rest`: `GET /time`,
//! `POST /channels/{name}/messages` (publish), `GET /channels/{name}/messages` (history from
//! the channel's stream) and `GET /channels/{name}/presence`. Auth is a key (`Basic`) or a
//! token (`Bearer`, plain or base64 as ably-js sends it); bodies are JSON or MessagePack as
//! `Content-Type` says, answers as `Accept` asks. CORS is open, as Ably's.

use super::auth::{self, Identity};
use super::capability::Op;
use super::channel::{MAX_SYNC_MEMBERS, valid_name};
use super::codec::{self, Format};
use super::messages::{check_client_id, data_size};
use super::wire::{self, action, presence_action};
use super::{history, presence_channel};
use crate::config::Config;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use plugin_sdk::{HttpRequest, HttpResponse, host, presence};
use serde_json::{Value, json};

/// Whether the plugin serves `path` over REST.
pub fn serves(path: &str) -> bool {
    path == "/time" || path.starts_with("/channels/")
}

/// Answers one REST request.
pub fn handle(req: &HttpRequest) -> HttpResponse {
    let format = if req.header("accept").is_some_and(|a| a.contains("msgpack")) {
        Format::Msgpack
    } else {
        Format::Json
    };
    if req.method == "OPTIONS" {
        return respond(format, 204, None);
    }
    match route(req) {
        Ok((status, body)) => respond(format, status, Some(&body)),
        Err((code, status, message)) => respond(
            format,
            status as u16,
            Some(&json!({"error": wire::error_info(code, status, &message)})),
        ),
    }
}

type Failure = (u64, u64, String);

fn respond(format: Format, status: u16, body: Option<&Value>) -> HttpResponse {
    let content_type = match format {
        Format::Json => "application/json",
        Format::Msgpack => "application/x-msgpack",
    };
    HttpResponse {
        status,
        headers: vec![
            ("content-type".into(), content_type.into()),
            ("access-control-allow-origin".into(), "*".into()),
            (
                "access-control-allow-headers".into(),
                "authorization, content-type, x-ably-version, ably-agent, x-ably-lib".into(),
            ),
            (
                "access-control-allow-methods".into(),
                "GET, POST, OPTIONS".into(),
            ),
        ],
        body: body
            .map(|b| codec::encode_body(format, b))
            .unwrap_or_default(),
    }
}

fn route(req: &HttpRequest) -> Result<(u16, Value), Failure> {
    if req.path == "/time" {
        return Ok((200, json!([host::now_ms()])));
    }
    let rest = req.path.strip_prefix("/channels/").unwrap_or_default();
    let (name, what) = rest
        .rsplit_once('/')
        .ok_or((40400, 404, "not found".to_string()))?;
    let channel = auth::decode(name);
    if !valid_name(&channel) {
        return Err((40010, 400, "invalid channel name".into()));
    }
    let who = identify(req)?;
    let deny = |op: &str| {
        (
            40160,
            401,
            format!("{op} is not allowed on channel {channel}"),
        )
    };
    match (req.method.as_str(), what) {
        ("POST", "messages") => {
            if !who.capability.allows(&channel, Op::Publish) {
                return Err(deny("publish"));
            }
            publish(req, &channel, &who)
        }
        ("GET", "messages") => {
            if !who.capability.allows(&channel, Op::History) {
                return Err(deny("history"));
            }
            let params = auth::query_pairs(&req.query);
            let limit = params
                .iter()
                .find(|(k, _)| k == "limit")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(100);
            let forwards = params
                .iter()
                .any(|(k, v)| k == "direction" && v == "forwards");
            Ok((
                200,
                Value::Array(history::messages(&channel, limit, forwards)),
            ))
        }
        ("GET", "presence") => {
            if !who.capability.allows(&channel, Op::Subscribe) {
                return Err(deny("subscribe"));
            }
            let members = presence::list(&presence_channel(&channel), MAX_SYNC_MEMBERS)
                .map_err(|e| (50003, 503, format!("presence unavailable: {e:?}")))?;
            let list = members
                .iter()
                .filter_map(|m| serde_json::from_slice::<Value>(&m.data).ok())
                .map(|mut p| {
                    p["action"] = presence_action::PRESENT.into();
                    p
                })
                .collect();
            Ok((200, Value::Array(list)))
        }
        _ => Err((40400, 404, "not found".into())),
    }
}

/// The credentials of a REST request: `Authorization: Basic <base64 key>` or
/// `Bearer <token>`, else `key=` / `access_token=` in the query.
fn identify(req: &HttpRequest) -> Result<Identity, Failure> {
    let config = Config::current();
    let now = host::now_ms();
    let header = req.header("authorization").unwrap_or_default();
    if let Some(b) = header.strip_prefix("Basic ") {
        let key = B64
            .decode(b.trim())
            .ok()
            .and_then(|k| String::from_utf8(k).ok())
            .ok_or((40101, 401, "invalid Basic credentials".to_string()))?;
        return auth::authenticate(Some(&key), None, None, config, now);
    }
    if let Some(t) = header.strip_prefix("Bearer ") {
        let t = t.trim();
        // ably-js sends the token base64-encoded; other clients send it as it is.
        let decoded = B64
            .decode(t)
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .filter(|d| d.contains('.'));
        let token = decoded.as_deref().unwrap_or(t);
        return auth::authenticate(None, Some(token), None, config, now);
    }
    let params = auth::parse_query(&req.query);
    auth::authenticate(
        params.key.as_deref(),
        params.access_token.as_deref(),
        None,
        config,
        now,
    )
}

/// Publishes the body's messages as one ProtocolMessage, through the channel's history.
fn publish(req: &HttpRequest, channel: &str, who: &Identity) -> Result<(u16, Value), Failure> {
    let body_format = if req
        .header("content-type")
        .is_some_and(|c| c.contains("msgpack"))
    {
        Format::Msgpack
    } else {
        Format::Json
    };
    let items = codec::decode_messages(body_format, &req.body)
        .map_err(|_| (40000, 400, "malformed message body".to_string()))?;
    if items.is_empty() {
        return Err((40000, 400, "no messages".into()));
    }
    if data_size(&items) > wire::MAX_MESSAGE_SIZE {
        return Err((40009, 413, "maximum message length exceeded".into()));
    }
    let id = format!("rest-{}", super::resume::new_secret());
    let now = host::now_ms();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(mut m) = item else {
            return Err((40000, 400, "a message must be an object".into()));
        };
        // A key may publish as any clientId; a token with a clientId only as that one.
        if who.client_id.is_some() {
            check_client_id(&m, who.client_id.as_ref())
                .map_err(|(c, s, msg)| (c, s, msg.to_string()))?;
        }
        if let Some(c) = &who.client_id
            && c != "*"
        {
            m.insert("clientId".into(), c.clone().into());
        }
        m.remove("size");
        m.entry("id").or_insert_with(|| format!("{id}:{i}").into());
        m.entry("timestamp").or_insert_with(|| now.into());
        out.push(Value::Object(m));
    }
    let message = json!({
        "action": action::MESSAGE,
        "channel": channel,
        "id": id,
        "timestamp": now,
        "messages": out,
    });
    history::broadcast(channel, message, None);
    Ok((201, json!({"channel": channel, "messageId": id})))
}
