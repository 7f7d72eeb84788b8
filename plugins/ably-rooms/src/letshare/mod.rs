//! The LetShare JSON room protocol (the Go `letshare_server`'s wire format): `subscribe` /
//! `subscribed`, `unsubscribe` / `unsubscribed`, `publish` / `message` (never echoed to the
//! sender) and `error`. Event `signal:all` reaches members listening to `signal:all`; any other
//! event reaches members listening to it or to `signal:all`. `data.from` is always the
//! identity of the verified token.
//!
//! Rooms live in the host: topic `ls:all:<room>` holds connections listening to every event,
//! `ls:ev:<room>:<event>` those listening to one event but not to all (so nobody is in two topics
//! a message goes to), and the presence channel `ls:room:<room>` counts a room's connections
//! across every gateway for the member cap. Publishing is one or two host `publish` calls.

mod envelope;
mod member;
mod room_name;

use crate::config::Config;
use envelope::{ALL_EVENT, Request};
use member::{Member, RoomSub};
use plugin_sdk::{ConnId, ConnInfo, Frame, HostError, Reject, host, presence};

fn all_topic(room: &str) -> String {
    format!("ls:all:{room}")
}

fn event_topic(room: &str, event: &str) -> String {
    format!("ls:ev:{room}:{event}")
}

fn presence_channel(room: &str) -> String {
    format!("ls:room:{room}")
}

/// Accepts a connection whose token names a user (`sub` or `user_id`).
pub fn open(conn: &ConnInfo) -> Result<(), Reject> {
    let claims: serde_json::Value = conn
        .claims
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_default();
    let user = ["sub", "user_id"]
        .iter()
        .find_map(|k| claims.get(*k).and_then(|v| v.as_str()))
        .filter(|u| !u.is_empty())
        .ok_or_else(|| Reject::new(401, "the token names no user (sub or user_id)"))?;
    let member = Member {
        user: user.to_string(),
        ..Default::default()
    };
    host::set_attachment(conn.id, &member.encode())
        .map_err(|e| Reject::new(500, format!("cannot register the connection: {e:?}")))
}

/// Handles one frame.
pub fn frame(conn: ConnId, attachment: &[u8], frame: Frame) {
    let Some(mut member) = Member::decode(attachment) else {
        return reply_error(conn, "unknown connection");
    };
    let text = match frame {
        Frame::Text(t) => t,
        Frame::Binary(_) => return reply_error(conn, "binary frames are not supported"),
    };
    let result = match envelope::parse(&text) {
        Ok(Request::Subscribe { channel, event }) => subscribe(conn, &mut member, &channel, &event),
        Ok(Request::Unsubscribe { channel, event }) => {
            unsubscribe(conn, &mut member, &channel, &event)
        }
        Ok(Request::Publish {
            channel,
            event,
            mut data,
        }) => {
            if !member.rooms.contains_key(&channel) {
                Err(format!("not subscribed to room {channel}"))
            } else {
                data.insert("from".into(), member.user.clone().into());
                let msg = Frame::Text(envelope::message(&channel, &event, &data, host::now_ms()));
                host::publish(&all_topic(&channel), &msg, Some(conn));
                if event != ALL_EVENT {
                    host::publish(&event_topic(&channel, &event), &msg, Some(conn));
                }
                Ok(())
            }
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        reply_error(conn, &e);
    }
}

fn subscribe(conn: ConnId, member: &mut Member, room: &str, event: &str) -> Result<(), String> {
    room_name::check(room)?;
    let cfg = Config::current();
    if !member.rooms.contains_key(room) {
        if member.rooms.len() >= cfg.max_rooms_per_connection {
            return Err(format!(
                "too many rooms for one connection (at most {})",
                cfg.max_rooms_per_connection
            ));
        }
        join_room(conn, member, room, cfg.max_room_members)?;
        member.rooms.insert(room.to_string(), RoomSub::default());
    }
    let sub = member.rooms.get_mut(room).expect("joined above");
    if event == ALL_EVENT {
        if !sub.all {
            host::subscribe(conn, &all_topic(room)).map_err(host_error)?;
            for e in &sub.events {
                let _ = host::unsubscribe(conn, &event_topic(room, e));
            }
            sub.all = true;
        }
    } else if !sub.events.contains(event) {
        if sub.events.len() >= cfg.max_events_per_room {
            return Err(format!(
                "too many events in one room (at most {})",
                cfg.max_events_per_room
            ));
        }
        if !sub.all {
            host::subscribe(conn, &event_topic(room, event)).map_err(host_error)?;
        }
        sub.events.insert(event.to_string());
    }
    save(conn, member)?;
    send(conn, envelope::subscribed(room, event, host::now_ms()));
    Ok(())
}

/// Counts the connection in the room (cluster-wide); refuses it past the cap.
fn join_room(conn: ConnId, member: &Member, room: &str, cap: u64) -> Result<(), String> {
    let channel = presence_channel(room);
    let key = conn.to_string();
    presence::join(&channel, &key, conn, member.user.as_bytes()).map_err(host_error)?;
    let count = presence::count(&channel).map_err(host_error)?;
    if count.members > cap {
        let _ = presence::leave(&channel, &key, conn);
        return Err(format!("房间已满，最多支持{cap}个用户"));
    }
    Ok(())
}

fn unsubscribe(conn: ConnId, member: &mut Member, room: &str, event: &str) -> Result<(), String> {
    let Some(sub) = member.rooms.get_mut(room) else {
        return Err(format!("not subscribed to room {room}"));
    };
    if event != ALL_EVENT {
        if sub.events.remove(event) && !sub.all {
            let _ = host::unsubscribe(conn, &event_topic(room, event));
        }
    } else {
        let sub = member.rooms.remove(room).unwrap_or_default();
        if sub.all {
            let _ = host::unsubscribe(conn, &all_topic(room));
        } else {
            for e in &sub.events {
                let _ = host::unsubscribe(conn, &event_topic(room, e));
            }
        }
        let _ = presence::leave(&presence_channel(room), &conn.to_string(), conn);
    }
    save(conn, member)?;
    send(conn, envelope::unsubscribed(room, event, host::now_ms()));
    Ok(())
}

fn save(conn: ConnId, member: &Member) -> Result<(), String> {
    host::set_attachment(conn, &member.encode()).map_err(host_error)
}

fn host_error(e: HostError) -> String {
    match e {
        HostError::Unavailable(m) => format!("service unavailable, retry: {m}"),
        HostError::TooLarge(m) | HostError::Invalid(m) => m,
        HostError::NotFound => "connection gone".into(),
    }
}

fn send(conn: ConnId, text: String) {
    let _ = host::send(conn, &Frame::Text(text));
}

fn reply_error(conn: ConnId, message: &str) {
    send(conn, envelope::error(message, host::now_ms()));
}

/// Entry points for the fuzz targets in `fuzz/`: the pure parsers, without host calls.
#[cfg(fuzzing)]
pub(crate) mod fuzzing {
    use super::{envelope, member::Member, room_name};

    /// Parses a client frame, a room name and an attachment.
    pub fn client_frame(text: &str) {
        if let Ok(
            envelope::Request::Subscribe { channel, .. }
            | envelope::Request::Unsubscribe { channel, .. }
            | envelope::Request::Publish { channel, .. },
        ) = envelope::parse(text)
        {
            let _ = room_name::check(&channel);
        }
        if let Some(m) = Member::decode(text.as_bytes()) {
            assert_eq!(Member::decode(&m.encode()), Some(m));
        }
    }
}
