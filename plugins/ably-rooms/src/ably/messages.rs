//! MESSAGE from a client: checks (capability, size, clientId), ids and timestamps filled in,
//! one fan-out per format, then the ACK (or a NACK with Ably's error code).

use super::capability::Op;
use super::channel::valid_name;
use super::conn::Conn;
use super::wire::{self, action};
use super::{history, send};
use plugin_sdk::{ConnId, host};
use serde_json::{Map, Value, json};

/// The size of the `data` fields as Ably counts it (binary sent as base64 counts its bytes).
pub fn data_size(items: &[Value]) -> usize {
    items
        .iter()
        .map(|m| {
            let base64 = m
                .get("encoding")
                .and_then(Value::as_str)
                .is_some_and(|e| e.ends_with("base64"));
            match m.get("data") {
                Some(Value::String(s)) if base64 => s.len() / 4 * 3,
                Some(Value::String(s)) => s.len(),
                Some(Value::Null) | None => 0,
                Some(other) => other.to_string().len(),
            }
        })
        .sum()
}

/// Why a publish is refused: Ably code, status, message.
type Refusal = (u64, u64, &'static str);

/// Checks the clientId a message claims against the connection's.
pub fn check_client_id(item: &Map<String, Value>, mine: Option<&String>) -> Result<(), Refusal> {
    match (item.get("clientId").and_then(Value::as_str), mine) {
        (Some(given), Some(mine)) if given != mine => {
            Err((40012, 400, "mismatched clientId for this connection"))
        }
        (Some(_), None) => Err((40012, 400, "a clientId is not allowed on this connection")),
        _ => Ok(()),
    }
}

/// Publishes the messages of one MESSAGE and ACKs it.
pub fn publish(conn: ConnId, state: &Conn, channel: &str, serial: u64, msg: &Map<String, Value>) {
    let refuse = |(code, status, message): Refusal| {
        send(
            conn,
            state.format,
            &wire::nack(serial, 1, code, status, message),
        );
    };
    if !valid_name(channel) {
        return refuse((40010, 400, "invalid channel name"));
    }
    if !state.capability.allows(channel, Op::Publish) {
        return refuse((40160, 401, "publish is not allowed on this channel"));
    }
    let Some(items) = msg.get("messages").and_then(Value::as_array) else {
        return refuse((40000, 400, "MESSAGE without messages"));
    };
    if data_size(items) > wire::MAX_MESSAGE_SIZE {
        return refuse((40009, 400, "maximum message length exceeded"));
    }
    let id = state.id.clone();
    let now = host::now_ms();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(m) = item.as_object() else {
            return refuse((40000, 400, "a message must be an object"));
        };
        if let Err(r) = check_client_id(m, state.client_id.as_ref()) {
            return refuse(r);
        }
        let mut m = m.clone();
        m.remove("size");
        if let Some(c) = &state.client_id {
            m.insert("clientId".into(), c.clone().into());
        }
        m.entry("id")
            .or_insert_with(|| format!("{id}:{serial}:{i}").into());
        m.insert("connectionId".into(), id.clone().into());
        m.entry("timestamp").or_insert_with(|| now.into());
        out.push(Value::Object(m));
    }
    let message = json!({
        "action": action::MESSAGE,
        "channel": channel,
        "id": format!("{id}:{serial}"),
        "connectionId": id,
        "timestamp": now,
        "messages": out,
    });
    history::broadcast(channel, message, (!state.echo).then_some(conn));
    send(conn, state.format, &wire::ack(serial, 1));
}
