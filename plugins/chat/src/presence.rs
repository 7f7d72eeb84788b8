//! Who is online: topics, `online:<user_id>` entries and join/leave announcements.
//!
//! Every connection subscribes to [`ALL`] and to its user's topic ([`user_topic`]). The host
//! counts subscribers atomically, so the connection that brings a user's topic to 1 is the
//! user's first and the one that brings it to 0 is the last; only those touch the user's
//! `online:<user_id>` entry and announce `user_joined` / `user_left`.

use plugin_sdk::{ConnId, ConnInfo, Frame, HostError, Reject, host};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::envelope::stamped;
use crate::time::rfc3339_millis;
use crate::user::User;

/// The topic every chat connection is subscribed to.
pub const ALL: &str = "chat:all";

/// Key prefix of the per-user presence entries.
const ONLINE_PREFIX: &str = "online:";

/// Scan limit meaning "every online user".
pub const SCAN_ALL: u32 = 1_000_000;

/// The topic holding every connection of one user.
pub fn user_topic(user_id: &str) -> String {
    format!("chat:user:{user_id}")
}

/// The presence entry key of one user.
fn online_key(user_id: &str) -> String {
    format!("{ONLINE_PREFIX}{user_id}")
}

/// A presence entry, as stored in kv and listed to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineUser {
    /// The user's id.
    pub user_id: String,
    /// The user's display name.
    pub username: String,
    /// RFC 3339 time the user's first current connection opened.
    pub connected_at: String,
}

impl OnlineUser {
    fn new(user: &User, connected_at_ms: u64) -> Self {
        OnlineUser {
            user_id: user.user_id.clone(),
            username: user.username.clone(),
            connected_at: rfc3339_millis(connected_at_ms),
        }
    }
}

/// `data` of `user_joined` and `user_left`.
#[derive(Serialize)]
struct PresenceData<'a> {
    user_id: &'a str,
    username: &'a str,
}

/// `data` of the `system_message` greeting a new connection.
#[derive(Serialize)]
struct Welcome<'a> {
    message: &'static str,
    connection_id: String,
    user_id: &'a str,
    online_users: Vec<OnlineUser>,
    online_count: usize,
}

/// Registers a new connection: topics, attachment, presence, greeting.
pub fn open(conn: &ConnInfo, user: &User) -> Result<(), Reject> {
    let topic = user_topic(&user.user_id);
    host::subscribe(conn.id, ALL).map_err(refusal)?;
    // The attachment is written last: `on_close` only unregisters connections that have one.
    let registered = host::subscribe(conn.id, &topic)
        .and_then(|count| host::set_attachment(conn.id, &user.encode()).map(|()| count));
    let count = match registered {
        Ok(count) => count,
        Err(e) => {
            let _ = host::unsubscribe(conn.id, &topic);
            let _ = host::unsubscribe(conn.id, ALL);
            return Err(refusal(e));
        }
    };
    if count == 1 {
        register(user, conn.connected_at_ms);
        announce("user_joined", user, conn.id);
    }

    let cap = Config::current().max_online_list;
    let mut online_users = scan(cap);
    let mut total = online_users.len();
    if total >= cap as usize {
        total = online_count() as usize;
    }
    include_user(
        &mut online_users,
        OnlineUser::new(user, conn.connected_at_ms),
        cap as usize,
    );
    let welcome = Welcome {
        message: "Connected successfully",
        connection_id: conn.id.to_string(),
        user_id: &user.user_id,
        online_count: total.max(online_users.len()),
        online_users,
    };
    let _ = host::send(
        conn.id,
        &Frame::Text(stamped("system_message", &welcome, None, None)),
    );
    Ok(())
}

/// Unregisters a closing connection; announces `user_left` if it was the user's last one.
pub fn close(conn: ConnId, user: &User) {
    let _ = host::unsubscribe(conn, ALL);
    let topic = user_topic(&user.user_id);
    let others = |conn: ConnId| host::members(&topic).into_iter().find(|&c| c != conn);
    let remaining = match host::unsubscribe(conn, &topic) {
        Ok(n) => n > 0,
        Err(_) => others(conn).is_some(),
    };
    if remaining {
        return;
    }
    host::kv_delete(&online_key(&user.user_id));
    // A new connection of this user may have subscribed after our unsubscribe and written its
    // entry before our delete: then it is online after all, so restore the entry and stay quiet.
    // (A connection subscribing after this check writes its entry after our delete.)
    if let Some(other) = others(conn) {
        let since =
            host::connection_info(other).map_or_else(host::now_ms, |info| info.connected_at_ms);
        register(user, since);
        return;
    }
    announce("user_left", user, conn);
}

/// How many users are online (one presence entry each).
pub fn online_count() -> u64 {
    host::kv_count(ONLINE_PREFIX)
}

/// Up to `limit` presence entries, in user id order.
pub fn scan(limit: u32) -> Vec<OnlineUser> {
    host::kv_scan(ONLINE_PREFIX, limit)
        .into_iter()
        .filter_map(|(_, value)| serde_json::from_slice(&value).ok())
        .collect()
}

/// Writes the user's presence entry.
fn register(user: &User, connected_at_ms: u64) {
    let entry = OnlineUser::new(user, connected_at_ms);
    let value = serde_json::to_vec(&entry).unwrap_or_default();
    if let Err(e) = host::kv_set(&online_key(&user.user_id), &value, None) {
        plugin_sdk::log_warn(&format!("chat: cannot store presence: {e:?}"));
    }
}

/// Publishes `user_joined` / `user_left` for `user` to every connection but `except`.
fn announce(message_type: &str, user: &User, except: ConnId) {
    let data = PresenceData {
        user_id: &user.user_id,
        username: &user.username,
    };
    let frame = stamped(message_type, &data, Some(&user.user_id), None);
    host::publish(ALL, &Frame::Text(frame), Some(except));
}

/// Makes sure `me` is in a list capped at `cap` entries, replacing the last entry if full.
fn include_user(users: &mut Vec<OnlineUser>, me: OnlineUser, cap: usize) {
    if cap == 0 || users.iter().any(|u| u.user_id == me.user_id) {
        return;
    }
    users.truncate(cap - 1);
    users.push(me);
}

/// Maps a failed host call during `on_open` to a refused upgrade.
fn refusal(e: HostError) -> Reject {
    let status = match e {
        HostError::Unavailable(_) => 503,
        HostError::TooLarge(_) | HostError::Invalid(_) => 400,
        HostError::NotFound => 500,
    };
    Reject::new(status, format!("cannot register the connection: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> OnlineUser {
        OnlineUser {
            user_id: id.into(),
            username: id.into(),
            connected_at: "t".into(),
        }
    }

    #[test]
    fn include_user_keeps_cap() {
        let mut list = vec![entry("a"), entry("b")];
        include_user(&mut list, entry("b"), 2);
        assert_eq!(list, vec![entry("a"), entry("b")]);
        include_user(&mut list, entry("z"), 2);
        assert_eq!(list, vec![entry("a"), entry("z")]);
        include_user(&mut list, entry("y"), 5);
        assert_eq!(list.len(), 3);
        let mut empty = Vec::new();
        include_user(&mut empty, entry("a"), 0);
        assert!(empty.is_empty());
    }

    #[test]
    fn keys_and_topics() {
        assert_eq!(user_topic("u1"), "chat:user:u1");
        assert_eq!(online_key("u1"), "online:u1");
    }
}
