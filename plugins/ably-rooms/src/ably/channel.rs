//! ATTACH and DETACH: capability checks, the attach modes, topic membership and the presence
//! SYNC a late attacher gets.

use super::capability::Op;
use super::conn::Conn;
use super::history::{self, Continuity};
use super::wire::{self, action, presence_action};
use super::{Format, presence_channel, send, topic};
use plugin_sdk::{ConnId, host, presence};
use serde_json::{Map, Value, json};

/// Most channels one connection may attach.
const MAX_CHANNELS: usize = 200;
/// Longest channel name (bytes).
const MAX_CHANNEL_NAME: usize = 256;
/// Most presence members listed by one SYNC.
pub const MAX_SYNC_MEMBERS: u32 = 10_000;

/// Whether `name` can be a channel.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_CHANNEL_NAME && !name.contains(['\0', '\n'])
}

/// The mode flags `capability` grants on `channel`.
fn modes(state: &Conn, channel: &str) -> u64 {
    let c = &state.capability;
    let mut m = 0;
    if c.allows(channel, Op::Presence) {
        m |= wire::MODE_PRESENCE;
    }
    if c.allows(channel, Op::Publish) {
        m |= wire::MODE_PUBLISH;
    }
    if c.allows(channel, Op::Subscribe) {
        m |= wire::MODE_SUBSCRIBE | wire::MODE_PRESENCE_SUBSCRIBE;
    }
    m
}

/// ATTACH: ATTACHED with the granted modes, then SYNC when the channel has members.
pub fn attach(conn: ConnId, state: &mut Conn, channel: &str, msg: &Map<String, Value>) {
    let format = state.format;
    if !valid_name(channel) {
        return send(
            conn,
            format,
            &wire::channel_error(channel, 40010, 400, "invalid channel name"),
        );
    }
    if !state.capability.allows_any(channel) {
        return send(
            conn,
            format,
            &wire::channel_error(
                channel,
                40160,
                401,
                &format!("channel denied access based on given capability: {channel}"),
            ),
        );
    }
    let mut granted = modes(state, channel);
    // Modes the client asked for narrow what it gets (`channels.get(name, {modes})`).
    let requested = msg.get("flags").and_then(Value::as_u64).unwrap_or(0) & MODE_MASK;
    if requested != 0 {
        granted &= requested;
    }
    let subscribed = granted & wire::MODE_SUBSCRIBE != 0;
    if !state.channels.contains(channel) && state.channels.len() >= MAX_CHANNELS {
        return send(
            conn,
            format,
            &wire::channel_error(channel, 90021, 400, "too many channels on one connection"),
        );
    }
    let t = topic(format, channel);
    // A resume or a rewind replays history: hold live frames meanwhile, so each message
    // arrives once and in order whether it came from the replay or live.
    let replaying = msg
        .get("channelSerial")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
        || msg.get("params").and_then(|p| p.get("rewind")).is_some();
    let held = subscribed && replaying;
    let joined = if held {
        host::subscribe_held(conn, &t).is_ok()
    } else if subscribed {
        host::subscribe(conn, &t).is_ok()
    } else {
        let _ = host::unsubscribe(conn, &t);
        true
    };
    if !joined {
        return send(
            conn,
            format,
            &wire::channel_error(channel, 50000, 500, "cannot attach"),
        );
    }
    let was_lost = state.lost.remove(channel);
    if state.channels.insert(channel.to_string()) || was_lost {
        state.save(conn);
    }
    // What the client missed since its channelSerial (a resume, or a re-attach), or what
    // `rewind` asks for.
    let serial = msg
        .get("channelSerial")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let params = msg.get("params").filter(|p| p.is_object());
    let rewind = params.and_then(|p| p.get("rewind")).and_then(Value::as_str);
    let mut flags = granted;
    let backlog = match (serial, rewind) {
        (Some(s), _) => match history::since(channel, s) {
            Continuity::Kept(missed) => {
                if !was_lost {
                    flags |= wire::RESUMED;
                }
                missed
            }
            Continuity::Lost => Vec::new(),
        },
        (None, Some(r)) => match history::rewind(channel, r) {
            Some(found) => {
                if !found.is_empty() {
                    flags |= wire::HAS_BACKLOG;
                }
                found
            }
            None => {
                if held {
                    let _ = host::release(conn, &t, "0");
                }
                return send(
                    conn,
                    format,
                    &wire::channel_error(channel, 40000, 400, "invalid rewind parameter"),
                );
            }
        },
        (None, None) => Vec::new(),
    };
    let members = if granted & wire::MODE_PRESENCE_SUBSCRIBE != 0 {
        presence::list(&presence_channel(channel), MAX_SYNC_MEMBERS).unwrap_or_default()
    } else {
        Vec::new()
    };
    if !members.is_empty() {
        flags |= wire::HAS_PRESENCE;
    }
    let latest = backlog
        .last()
        .and_then(|m| m["channelSerial"].as_str().map(str::to_string))
        .or_else(|| history::latest(channel));
    send(
        conn,
        format,
        &history::attached(channel, flags, latest, params),
    );
    if !members.is_empty() {
        let present: Vec<Value> = members
            .iter()
            .filter_map(|m| serde_json::from_slice::<Value>(&m.data).ok())
            .map(|mut p| {
                p["action"] = presence_action::PRESENT.into();
                p
            })
            .collect();
        // One page: an empty cursor after the colon ends the sync.
        send(
            conn,
            format,
            &json!({"action": action::SYNC, "channel": channel, "channelSerial": "sync:",
                    "presence": present}),
        );
    }
    if subscribed {
        history::replay(conn, format, &backlog);
    }
    if held {
        // Live frames held since the subscription: those the replay already had are dropped,
        // the rest follow it. Without a replay, everything held goes out.
        let upto = backlog
            .last()
            .and_then(|m| m["channelSerial"].as_str().map(str::to_string))
            .or_else(|| {
                (flags & wire::RESUMED != 0)
                    .then(|| serial.map(str::to_string))
                    .flatten()
            })
            .unwrap_or_else(|| "0".to_string());
        let _ = host::release(conn, &t, &upto);
    }
}

/// All mode bits a client may request.
const MODE_MASK: u64 =
    wire::MODE_PRESENCE | wire::MODE_PUBLISH | wire::MODE_SUBSCRIBE | wire::MODE_PRESENCE_SUBSCRIBE;

/// DETACH: leave the topics (presence entered on the channel stays until a leave or the
/// connection ends, as Ably's does not; ably-js leaves before detaching).
pub fn detach(conn: ConnId, state: &mut Conn, channel: &str) {
    for format in Format::ALL {
        let _ = host::unsubscribe(conn, &topic(format, channel));
    }
    if state.channels.remove(channel) {
        state.save(conn);
    }
    send(
        conn,
        state.format,
        &json!({"action": action::DETACHED, "channel": channel}),
    );
}
