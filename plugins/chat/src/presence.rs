//! Who is online: the host's cluster-wide presence channel [`ONLINE`] (member key = user id,
//! data = the user's [`OnlineUser`] entry) and the topics frames travel on.
//!
//! Every connection subscribes to [`ALL`] and to its user's topic ([`user_topic`]) and joins
//! its user in [`ONLINE`]. The host decides atomically, across every gateway, which connection
//! is a user's first (`join` returns true) and which is the last (`leave` returns true, or the
//! host reports the user through `on-presence-left` when the connection or its gateway died);
//! only those announce `user_joined` / `user_left`.

use plugin_sdk::{ConnId, ConnInfo, Frame, HostError, Member, Reject, host, presence};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::envelope::stamped;
use crate::time::rfc3339_millis;
use crate::user::User;

/// The topic every chat connection is subscribed to.
pub const ALL: &str = "chat:all";

/// The presence channel of online users.
pub const ONLINE: &str = "online";

/// List limit meaning "every online user".
pub const SCAN_ALL: u32 = 1_000_000;

/// The topic holding every connection of one user.
pub fn user_topic(user_id: &str) -> String {
    format!("chat:user:{user_id}")
}

/// A presence entry, as stored with the member and listed to clients.
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

    /// The entry stored with a presence member (none when unreadable).
    pub fn of(member: &Member) -> Option<Self> {
        serde_json::from_slice(&member.data).ok()
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
    let entry = OnlineUser::new(user, conn.connected_at_ms);
    host::subscribe(conn.id, ALL).map_err(refusal)?;
    host::subscribe(conn.id, &user_topic(&user.user_id)).map_err(refusal)?;
    // The attachment is written before the join: `on_close` leaves for connections that have
    // one, so a connection refused here leaves nothing behind (the host drops its topics).
    host::set_attachment(conn.id, &user.encode()).map_err(refusal)?;
    let value = serde_json::to_vec(&entry).unwrap_or_default();
    let first = presence::join(ONLINE, &user.user_id, conn.id, &value).map_err(refusal)?;
    if first {
        announce("user_joined", &user.user_id, &user.username, Some(conn.id));
    }

    let cap = Config::current().max_online_list;
    let mut online_users = scan(cap);
    let mut total = online_users.len();
    if total >= cap as usize {
        total = online_count() as usize;
    }
    include_user(&mut online_users, entry, cap as usize);
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

/// Unregisters a closing connection; announces `user_left` if it was the user's last one
/// anywhere in the cluster.
pub fn close(conn: ConnId, user: &User) {
    match presence::leave(ONLINE, &user.user_id, conn) {
        Ok(true) => announce("user_left", &user.user_id, &user.username, Some(conn)),
        Ok(false) => {}
        // Redis is away: the host removes the member with the connection and reports it
        // through `on_presence_left` when it can.
        Err(e) => plugin_sdk::log_warn(&format!("chat: presence leave failed: {e:?}")),
    }
}

/// Announces users the host removed (their last connection or their gateway went away).
pub fn left(channel: &str, members: &[Member]) {
    if channel != ONLINE {
        return;
    }
    for m in members {
        let username = OnlineUser::of(m).map_or_else(|| m.key.clone(), |u| u.username);
        announce("user_left", &m.key, &username, None);
    }
}

/// Whether a user has a connection anywhere in the cluster, and how many.
pub fn connections_of(user_id: &str) -> u32 {
    match presence::get(ONLINE, user_id) {
        Ok(Some(m)) => m.connections.max(1),
        _ => 0,
    }
}

/// How many users are online, and how many connections they have.
pub fn counts() -> (u64, u64) {
    presence::count(ONLINE).map_or((0, 0), |c| (c.members, c.connections))
}

/// How many users are online.
pub fn online_count() -> u64 {
    counts().0
}

/// Up to `limit` online users with their connection counts, in user id order.
pub fn members(limit: u32) -> Vec<(OnlineUser, u32)> {
    presence::list(ONLINE, limit)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| OnlineUser::of(&m).map(|u| (u, m.connections)))
        .collect()
}

/// Up to `limit` presence entries, in user id order.
pub fn scan(limit: u32) -> Vec<OnlineUser> {
    members(limit).into_iter().map(|(u, _)| u).collect()
}

/// Publishes `user_joined` / `user_left` to every connection but `except`.
fn announce(message_type: &str, user_id: &str, username: &str, except: Option<ConnId>) {
    let data = PresenceData { user_id, username };
    let frame = stamped(message_type, &data, Some(user_id), None);
    host::publish(ALL, &Frame::Text(frame), except);
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
    fn topics() {
        assert_eq!(user_topic("u1"), "chat:user:u1");
    }
}
