//! The Ably realtime protocol for the unmodified `ably` client (JSON or MessagePack): key and
//! token auth with capabilities, CONNECTED with connectionDetails, heartbeats, re-auth,
//! attach/detach, messages with ACK/NACK and `echo`, presence with SYNC for late attachers,
//! close.
//!
//! A channel is two host topics, `ably:j:<name>` and `ably:m:<name>` (attached connections
//! speaking JSON and MessagePack), and the presence channel `ably:pr:<name>` (members keyed
//! `clientId:connectionId`, data = the member's last presence message). A message is encoded
//! once per format and fanned out by the host, across gateways too.

mod auth;
mod capability;
mod channel;
mod codec;
mod conn;
mod history;
mod messages;
mod presence;
mod rest;
mod resume;
mod token;
mod wire;

pub use capability::Capability;
pub use conn::TAG;

use crate::config::Config;
use codec::{DecodeError, Format};
use conn::Conn;
use plugin_sdk::{ConnId, ConnInfo, Frame, Reject, host};
pub use rest::{handle as http, serves as serves_http};
pub use resume::closed;
use serde_json::{Map, Value, json};
use wire::action;

/// Prefix of the per-gateway topics of connections that asked for protocol heartbeats
/// (browsers); the topic name is also the token of the timer that sends them.
pub const HEARTBEAT_TOPIC: &str = "ably:heartbeat:";
/// How often they go out: well inside `maxIdleInterval`.
const HEARTBEAT_EVERY_MS: u64 = wire::MAX_IDLE_INTERVAL_MS * 2 / 3;

/// The topic of a channel's attached connections speaking `format`.
fn topic(format: Format, channel: &str) -> String {
    format!("ably:{}:{channel}", format.tag())
}

/// The host presence channel of an Ably channel.
fn presence_channel(channel: &str) -> String {
    format!("ably:pr:{channel}")
}

/// Sends one ProtocolMessage to one connection.
fn send(conn: ConnId, format: Format, message: &Value) {
    let _ = host::send(conn, &format.encode(message));
}

/// Sends one ProtocolMessage to every attached connection of `channel`, on every gateway; with
/// the `position` of the message in the channel's history when it has one.
fn fan_out(channel: &str, message: &Value, except: Option<ConnId>, position: Option<&str>) {
    for format in Format::ALL {
        let (topic, frame) = (topic(format, channel), format.encode(message));
        match position {
            Some(at) => host::publish_at(&topic, &frame, except, at),
            None => host::publish(&topic, &frame, except),
        };
    }
}

/// A connection-wide ERROR, then close: the client ends in `failed` (or renews its token).
fn fail(conn: ConnId, format: Format, code: u64, status: u64, message: &str) {
    send(conn, format, &wire::connection_error(code, status, message));
    let _ = host::close(conn, 1000, "connection failed");
}

/// The heartbeat topic of this gateway for `format` (a connection id carries its gateway's
/// node number above bit 32, so each gateway's timer reaches its own connections only).
fn heartbeat_topic(conn: ConnId, format: Format) -> String {
    format!("{HEARTBEAT_TOPIC}{}:{}", format.tag(), conn >> 32)
}

/// Accepts the upgrade in every case, as Ably does: bad credentials get an ERROR and a close,
/// so the client ends in `failed` instead of retrying.
pub fn open(info: &ConnInfo) -> Result<(), Reject> {
    let params = auth::parse_query(&info.query);
    let Some(format) = Format::from_query(params.format.as_deref()) else {
        fail(
            info.id,
            Format::Json,
            40000,
            400,
            "format must be json or msgpack",
        );
        return Ok(());
    };
    let config = Config::current();
    let identity = match auth::authenticate(
        params.key.as_deref(),
        params.access_token.as_deref(),
        params.client_id.as_deref(),
        config,
        host::now_ms(),
    ) {
        Ok(identity) => identity,
        Err((code, status, message)) => {
            fail(info.id, format, code, status, &message);
            return Ok(());
        }
    };
    let mut state = Conn {
        id: info.id.to_string(),
        secret: resume::new_secret(),
        client_id: identity.client_id,
        capability: identity.capability,
        expires_ms: identity.expires_ms,
        format,
        echo: params.echo,
        ..Default::default()
    };
    let resumed = params
        .resume
        .as_deref()
        .map(|key| resume::resume(info.id, &mut state, key));
    host::set_attachment(info.id, &state.encode())
        .map_err(|e| Reject::new(500, format!("cannot register the connection: {e:?}")))?;
    let _ = plugin_sdk::presence::linger(info.id, resume::PRESENCE_LINGER_MS);
    // The first heartbeat subscriber on this gateway starts the timer; it stops by itself when
    // the last one has gone.
    if params.heartbeats {
        let topic = heartbeat_topic(info.id, format);
        if matches!(host::subscribe(info.id, &topic), Ok(1)) {
            host::set_timer(HEARTBEAT_EVERY_MS, &topic);
        }
    }
    arm_expiry(info.id, state.expires_ms);
    let mut connected = connected(&state);
    if let Some(Err((code, message))) = resumed {
        // A new connection: ably-js resets its msgSerial and re-attaches its channels.
        connected["error"] = wire::error_info(code, 400, message);
    }
    send(info.id, format, &connected);
    Ok(())
}

/// The CONNECTED message of a connection (also the answer to AUTH).
fn connected(state: &Conn) -> Value {
    json!({
        "action": action::CONNECTED,
        "connectionId": state.id,
        "connectionDetails": {
            "clientId": state.client_id,
            "connectionKey": state.key(),
            "maxMessageSize": wire::MAX_MESSAGE_SIZE,
            "maxFrameSize": wire::MAX_FRAME_SIZE,
            "maxInboundRate": Config::current().max_inbound_rate,
            "connectionStateTtl": wire::CONNECTION_STATE_TTL_MS,
            "maxIdleInterval": wire::MAX_IDLE_INTERVAL_MS,
            "serverId": "gateway",
        },
    })
}

/// Prefix of the timer that closes a connection when its token expires.
pub const EXPIRY_TIMER: &str = "ably:expiry:";

/// Arms the expiry timer of a token connection (the check on each message covers the case of
/// a refused timer).
fn arm_expiry(conn: ConnId, expires_ms: Option<u64>) {
    if let Some(at) = expires_ms {
        let delay = at.saturating_sub(host::now_ms()).max(1);
        host::set_timer(delay, &format!("{EXPIRY_TIMER}{conn}"));
    }
}

/// An expiry timer fired: closes the connection with 40142 unless AUTH extended its token
/// (ably-js then renews its token and reconnects).
pub fn expiry_timer(token: &str) {
    let Some(conn) = token
        .strip_prefix(EXPIRY_TIMER)
        .and_then(|c| c.parse::<ConnId>().ok())
    else {
        return;
    };
    let Some(info) = host::connection_info(conn) else {
        return;
    };
    if let Some(state) = Conn::decode(&info.attachment)
        && state.expires_ms.is_some_and(|e| e <= host::now_ms())
    {
        fail(conn, state.format, 40142, 401, "token expired");
    }
}

/// Sends a HEARTBEAT to every connection of `topic` (one of this gateway's heartbeat topics),
/// and re-arms the timer while there are any.
pub fn heartbeat_timer(topic: &str) {
    let format = if topic.starts_with(&format!("{HEARTBEAT_TOPIC}m:")) {
        Format::Msgpack
    } else {
        Format::Json
    };
    let frame = format.encode(&json!({"action": action::HEARTBEAT}));
    if host::publish(topic, &frame, None) > 0 {
        host::set_timer(HEARTBEAT_EVERY_MS, topic);
    }
}

/// Handles one ProtocolMessage.
pub fn frame(conn: ConnId, attachment: &[u8], frame: Frame) {
    let Some(mut state) = Conn::decode(attachment) else {
        return;
    };
    let msg: Map<String, Value> = match codec::decode(state.format, frame) {
        Ok(m) => m,
        Err(DecodeError::WrongFrameType) => {
            return fail(
                conn,
                state.format,
                40000,
                400,
                "frame type does not match the connection's format",
            );
        }
        Err(DecodeError::Malformed) => {
            return fail(conn, state.format, 40000, 400, "malformed protocol message");
        }
    };
    if let Some(expires) = state.expires_ms
        && expires <= host::now_ms()
    {
        return fail(conn, state.format, 40142, 401, "token expired");
    }
    let channel = msg
        .get("channel")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let serial = msg.get("msgSerial").and_then(Value::as_u64);
    let action = msg.get("action").and_then(Value::as_u64);
    if let (Some(s), Some(action::MESSAGE | action::PRESENCE)) = (serial, action) {
        let rate = Config::current().max_inbound_rate;
        if rate > 0 {
            let allowed = state.take_token(host::now_ms(), rate);
            state.save(conn);
            if !allowed {
                return send(
                    conn,
                    state.format,
                    &wire::nack(s, 1, 42910, 429, "rate limit exceeded: too many messages"),
                );
            }
        }
    }
    match action {
        Some(action::HEARTBEAT) => {
            let mut reply = json!({"action": action::HEARTBEAT});
            if let Some(id) = msg.get("id") {
                reply["id"] = id.clone();
            }
            send(conn, state.format, &reply);
        }
        Some(action::CLOSE) => {
            // An explicit close: presence leaves at once and nothing is kept for a resume.
            state.closing = true;
            state.save(conn);
            let _ = plugin_sdk::presence::linger(conn, 0);
            send(conn, state.format, &json!({"action": action::CLOSED}));
            let _ = host::close(conn, 1000, "closed");
        }
        Some(action::DISCONNECT) => {
            let _ = host::close(conn, 1000, "disconnected");
        }
        Some(action::AUTH) => reauth(conn, &mut state, &msg),
        Some(action::ATTACH) => channel::attach(conn, &mut state, &channel, &msg),
        Some(action::DETACH) => channel::detach(conn, &mut state, &channel),
        Some(action::MESSAGE) => match serial {
            Some(s) => messages::publish(conn, &state, &channel, s, &msg),
            None => fail(conn, state.format, 40000, 400, "MESSAGE without msgSerial"),
        },
        Some(action::PRESENCE) => match serial {
            Some(s) => presence::update(conn, &mut state, &channel, s, &msg),
            None => fail(conn, state.format, 40000, 400, "PRESENCE without msgSerial"),
        },
        // Anything else that expects an ACK (annotations, objects) is refused; the rest is
        // ignored, as the client ignores actions it does not know.
        Some(_) | None => {
            if let Some(s) = serial {
                send(
                    conn,
                    state.format,
                    &wire::nack(s, 1, 40000, 400, "unsupported action"),
                );
            }
        }
    }
}

/// AUTH with a fresh token: same clientId, new capability and expiry, answered by CONNECTED.
fn reauth(conn: ConnId, state: &mut Conn, msg: &Map<String, Value>) {
    let token = msg
        .get("auth")
        .and_then(|a| a.get("accessToken"))
        .and_then(Value::as_str);
    let Some(token) = token else {
        return fail(
            conn,
            state.format,
            40000,
            400,
            "AUTH without auth.accessToken",
        );
    };
    match auth::authenticate(
        None,
        Some(token),
        state.client_id.as_deref(),
        Config::current(),
        host::now_ms(),
    ) {
        Ok(id) if id.client_id == state.client_id => {
            state.capability = id.capability;
            state.expires_ms = id.expires_ms;
            arm_expiry(conn, state.expires_ms);
            state.save(conn);
            send(conn, state.format, &connected(state));
        }
        Ok(_) => fail(
            conn,
            state.format,
            40102,
            401,
            "a new token cannot change the clientId",
        ),
        Err((code, status, message)) => fail(conn, state.format, code, status, &message),
    }
}

/// Announces members the host removed (their connection closed or their gateway died).
pub fn presence_left(channel: &str, members: &[plugin_sdk::Member]) {
    if let Some(name) = channel.strip_prefix("ably:pr:") {
        presence::announce_left(name, members);
    }
}

/// Entry points for the fuzz targets in `fuzz/`: the pure decoders, without host calls.
#[cfg(fuzzing)]
pub(crate) mod fuzzing {
    use super::codec::{self, Format};
    use super::{auth, capability::Capability, channel, token};
    use plugin_sdk::Frame;
    use serde_json::Value;

    /// Decodes a ProtocolMessage; one that decodes must survive an encode/decode round trip
    /// unchanged.
    pub fn protocol_message(format: Format, bytes: &[u8]) {
        let frame = match format {
            Format::Json => match std::str::from_utf8(bytes) {
                Ok(t) => Frame::Text(t.to_string()),
                Err(_) => return,
            },
            Format::Msgpack => Frame::Binary(bytes.to_vec()),
        };
        if let Ok(message) = codec::decode(format, frame) {
            let value = Value::Object(message);
            let again = codec::decode(format, format.encode(&value)).expect("re-decodes");
            assert_eq!(Value::Object(again), value);
        }
        let _ = codec::decode_messages(format, bytes);
    }

    /// Parses connect queries, tokens, capabilities and channel names.
    pub fn credentials(text: &str) {
        let _ = auth::parse_query(text);
        let _ = auth::decode(text);
        let _ = channel::valid_name(text);
        if let Some(jwt) = token::parse(text) {
            let _ = jwt.verify("secret", 1_700_000_000);
        }
        if let Ok(v) = serde_json::from_str::<Value>(text) {
            if let Ok(cap) = Capability::parse(&v) {
                let _ = cap.intersect(&Capability::all());
                let _ = cap.allows_any(text);
            }
            // Whatever the claims, a token signed with the key verifies or is refused for
            // its claims, never for its signature.
            let signed = token::sign("app.key", "secret", &v);
            let jwt = token::parse(&signed).expect("a signed token parses");
            assert_ne!(
                jwt.verify("secret", 0).err(),
                Some(token::TokenError::BadSignature)
            );
        }
    }

    /// The JSON format.
    pub fn json(bytes: &[u8]) {
        protocol_message(Format::Json, bytes);
    }

    /// The MessagePack format.
    pub fn msgpack(bytes: &[u8]) {
        protocol_message(Format::Msgpack, bytes);
    }
}
