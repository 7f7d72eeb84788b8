//! A channel's recent messages and presence events, kept in the host stream `ably:h:<name>`
//! for `history_seconds`: every broadcast is appended there first, and its stream id becomes
//! the `channelSerial` clients see. Attaching with a `channelSerial` replays what came after
//! it (resume); `rewind` replays the last messages; REST history reads it backwards.

use super::wire::action;
use super::{Format, fan_out, send};
use crate::config::Config;
use plugin_sdk::{ConnId, Entry, host, streams};
use serde_json::{Value, json};

/// Most entries one replay or rewind sends.
pub const MAX_REPLAY: u32 = 1000;

/// The stream of a channel.
pub fn key(channel: &str) -> String {
    format!("ably:h:{channel}")
}

/// How long entries are kept (ms).
pub fn keep_ms() -> u64 {
    Config::current().history_seconds.max(1) * 1000
}

/// Appends `message` (a MESSAGE or PRESENCE) to the channel's history, stamps it with its
/// channelSerial and fans it out. If the history is unavailable the message still goes out,
/// without a serial: live delivery never waits on history.
pub fn broadcast(channel: &str, mut message: Value, except: Option<ConnId>) {
    match streams::append(&key(channel), message.to_string().as_bytes(), keep_ms()) {
        Ok(id) => {
            message["channelSerial"] = id.clone().into();
            fan_out(channel, &message, except, Some(&id));
        }
        Err(e) => {
            host::log(
                plugin_sdk::LogLevel::Warn,
                &format!("ably-rooms: history of {channel} unavailable: {e:?}"),
            );
            fan_out(channel, &message, except, None);
        }
    }
}

/// A stream entry as the ProtocolMessage it stored, with its channelSerial.
pub fn message_of(entry: &Entry) -> Option<Value> {
    let mut v: Value = serde_json::from_slice(&entry.data).ok()?;
    v["channelSerial"] = entry.id.clone().into();
    Some(v)
}

/// The stream id (`ms-seq`) a channelSerial names, if it is one.
fn parse_serial(serial: &str) -> Option<(u64, u64)> {
    let (ms, seq) = serial.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// What an attach with a channelSerial found.
pub enum Continuity {
    /// Everything after the serial, oldest first: the client misses nothing.
    Kept(Vec<Value>),
    /// Some of what came after the serial is gone (or the serial is not ours).
    Lost,
}

/// Everything after `serial` on `channel`, if history still covers it.
pub fn since(channel: &str, serial: &str) -> Continuity {
    let Some((ms, _)) = parse_serial(serial) else {
        return Continuity::Lost;
    };
    let key = key(channel);
    let Ok(entries) = streams::read(&key, serial, MAX_REPLAY + 1) else {
        return Continuity::Lost;
    };
    if entries.len() > MAX_REPLAY as usize {
        return Continuity::Lost;
    }
    // Nothing after the serial can have expired yet when the serial itself is that young;
    // otherwise the oldest entry kept must not be newer than it.
    let young = ms.saturating_add(keep_ms()) > host::now_ms();
    let covered = young
        || streams::read(&key, "0", 1)
            .ok()
            .and_then(|oldest| oldest.first().map(|e| e.id.clone()))
            .and_then(|id| parse_serial(&id))
            .is_some_and(|oldest| Some(oldest) <= parse_serial(serial));
    if !covered {
        return Continuity::Lost;
    }
    Continuity::Kept(entries.iter().filter_map(message_of).collect())
}

/// The newest channelSerial of `channel`, if it has history.
pub fn latest(channel: &str) -> Option<String> {
    streams::read_back(&key(channel), "+", 1)
        .ok()?
        .first()
        .map(|e| e.id.clone())
}

/// The messages a `rewind` parameter asks for (`"10"` = the last ten, `"2m"` / `"30s"` = those
/// of the last two minutes / thirty seconds), oldest first; `None` for a value that is neither.
pub fn rewind(channel: &str, param: &str) -> Option<Vec<Value>> {
    let key = key(channel);
    let entries = if let Ok(n) = param.parse::<u32>() {
        let mut back = streams::read_back(&key, "+", n.clamp(1, MAX_REPLAY)).ok()?;
        back.reverse();
        back
    } else {
        let (num, unit) = param.split_at(param.len().checked_sub(1)?);
        let seconds: u64 = num.parse().ok()?;
        let span_ms = match unit {
            "s" => seconds * 1000,
            "m" => seconds * 60_000,
            _ => return None,
        };
        let from = host::now_ms().saturating_sub(span_ms);
        streams::read(&key, &format!("{}-0", from.saturating_sub(1)), MAX_REPLAY).ok()?
    };
    Some(
        entries
            .iter()
            .filter_map(message_of)
            .filter(|m| m["action"] == action::MESSAGE)
            .collect(),
    )
}

/// Sends replayed ProtocolMessages to one connection.
pub fn replay(conn: ConnId, format: Format, messages: &[Value]) {
    for m in messages {
        send(conn, format, m);
    }
}

/// Messages for REST history, newest first unless `forwards`, at most `limit`.
pub fn messages(channel: &str, limit: u32, forwards: bool) -> Vec<Value> {
    let key = key(channel);
    let limit = limit.clamp(1, MAX_REPLAY);
    let entries: Vec<Entry> = if forwards {
        streams::read(&key, "0", MAX_REPLAY).unwrap_or_default()
    } else {
        streams::read_back(&key, "+", MAX_REPLAY).unwrap_or_default()
    };
    let mut out = Vec::new();
    for pm in entries.iter().filter_map(message_of) {
        if pm["action"] != action::MESSAGE {
            continue;
        }
        let mut items: Vec<Value> = pm["messages"].as_array().cloned().unwrap_or_default();
        for (i, m) in items.iter_mut().enumerate() {
            let parent = pm["id"].as_str().unwrap_or_default();
            if m.get("id").is_none() {
                m["id"] = format!("{parent}:{i}").into();
            }
            for k in ["connectionId", "timestamp"] {
                if m.get(k).is_none() && pm.get(k).is_some() {
                    m[k] = pm[k].clone();
                }
            }
        }
        if !forwards {
            items.reverse();
        }
        out.extend(items);
        if out.len() >= limit as usize {
            out.truncate(limit as usize);
            break;
        }
    }
    out
}

/// The presence message of an ATTACHED reply with backlog flags.
pub fn attached(
    channel: &str,
    flags: u64,
    serial: Option<String>,
    params: Option<&Value>,
) -> Value {
    let mut v = json!({"action": action::ATTACHED, "channel": channel, "flags": flags});
    if let Some(s) = serial {
        v["channelSerial"] = s.into();
    }
    if let Some(p) = params {
        v["params"] = p.clone();
    }
    v
}
