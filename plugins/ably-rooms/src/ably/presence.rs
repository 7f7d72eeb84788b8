//! PRESENCE from a client (enter, update, leave) kept in the host's presence channel
//! `ably:pr:<name>`, keyed `clientId:connectionId`, and fanned out to everyone attached,
//! the sender included; leaves for members the host removed.

use super::capability::Op;
use super::channel::valid_name;
use super::conn::Conn;
use super::messages::data_size;
use super::wire::{self, action, presence_action};
use super::{history, presence_channel, send};
use plugin_sdk::{ConnId, Member, host, presence};
use serde_json::{Map, Value, json};

/// Applies the presence messages of one PRESENCE and ACKs it.
pub fn update(
    conn: ConnId,
    state: &mut Conn,
    channel: &str,
    serial: u64,
    msg: &Map<String, Value>,
) {
    let format = state.format;
    let refuse = |code: u64, status: u64, message: &str| {
        send(conn, format, &wire::nack(serial, 1, code, status, message));
    };
    let Some(client_id) = state.client_id.clone() else {
        return refuse(91000, 400, "presence needs a clientId");
    };
    if !valid_name(channel) {
        return refuse(40010, 400, "invalid channel name");
    }
    if !state.capability.allows(channel, Op::Presence) {
        return refuse(40160, 401, "presence is not allowed on this channel");
    }
    let Some(items) = msg.get("presence").and_then(Value::as_array) else {
        return refuse(40000, 400, "PRESENCE without presence");
    };
    if data_size(items) > wire::MAX_MESSAGE_SIZE {
        return refuse(40009, 400, "maximum message length exceeded");
    }
    let id = state.id.clone();
    let now = host::now_ms();
    let pchan = presence_channel(channel);
    let key = state.member_key(&client_id);
    let was_entered = state.entered.contains(channel);
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(p) = item.as_object() else {
            return refuse(40000, 400, "a presence message must be an object");
        };
        if let Err((code, status, message)) = super::messages::check_client_id(p, Some(&client_id))
        {
            return refuse(code, status, message);
        }
        let mut p = p.clone();
        p.remove("size");
        p.insert("clientId".into(), client_id.clone().into());
        p.insert("connectionId".into(), id.clone().into());
        p.insert("id".into(), format!("{id}:{serial}:{i}").into());
        p.insert("timestamp".into(), now.into());
        let result = match p.get("action").and_then(Value::as_u64) {
            Some(presence_action::ENTER | presence_action::UPDATE | presence_action::PRESENT) => {
                let stored = Value::Object(p.clone()).to_string();
                presence::join(&pchan, &key, conn, stored.as_bytes()).map(|new| {
                    Some(if new {
                        presence_action::ENTER
                    } else {
                        presence_action::UPDATE
                    })
                })
            }
            Some(presence_action::LEAVE) => {
                // The leave carries the member's last data when it brings none.
                if !p.contains_key("data")
                    && let Ok(Some(m)) = presence::get(&pchan, &key)
                    && let Ok(Value::Object(last)) = serde_json::from_slice::<Value>(&m.data)
                {
                    for k in ["data", "encoding"] {
                        if let Some(v) = last.get(k) {
                            p.insert(k.into(), v.clone());
                        }
                    }
                }
                presence::leave(&pchan, &key, conn).map(|was| was.then_some(presence_action::LEAVE))
            }
            _ => return refuse(40000, 400, "unknown presence action"),
        };
        match result {
            Ok(Some(a)) => {
                if a == presence_action::LEAVE {
                    state.entered.remove(channel);
                } else {
                    state.entered.insert(channel.to_string());
                }
                p.insert("action".into(), a.into());
                out.push(Value::Object(p));
            }
            Ok(None) => {}
            Err(e) => return refuse(50003, 503, &format!("presence unavailable: {e:?}")),
        }
    }
    if !out.is_empty() {
        let message = json!({
            "action": action::PRESENCE,
            "channel": channel,
            "id": format!("{id}:{serial}"),
            "connectionId": id,
            "timestamp": now,
            "presence": out,
        });
        history::broadcast(channel, message, None);
    }
    if state.entered.contains(channel) != was_entered {
        state.save(conn);
    }
    send(conn, format, &wire::ack(serial, 1));
}

/// Announces members the host removed as leaves with a fresh timestamp and an id that is not
/// prefixed by their connection id (a synthesized leave, as Ably's).
pub fn announce_left(channel: &str, members: &[Member]) {
    let now = host::now_ms();
    let leaves: Vec<Value> = members
        .iter()
        .filter_map(|m| serde_json::from_slice::<Value>(&m.data).ok())
        .enumerate()
        .map(|(i, mut p)| {
            p["action"] = presence_action::LEAVE.into();
            p["timestamp"] = now.into();
            p["id"] = format!("leave:{now}:{i}").into();
            p
        })
        .collect();
    if !leaves.is_empty() {
        history::broadcast(
            channel,
            json!({"action": action::PRESENCE, "channel": channel, "timestamp": now,
                    "presence": leaves}),
            None,
        );
    }
}
