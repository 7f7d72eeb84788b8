//! Resuming a connection: when a socket drops (no CLOSE), its state is kept in the host's
//! key-value store for `connectionStateTtl`, so a reconnect with `resume=<connectionKey>`, on
//! any gateway, gets the same connectionId, its presence members back, and the messages it
//! missed when it re-attaches with its channelSerials. Presence members of a dropped socket
//! linger 15 s (the host's `linger`) so a quick resume never shows as a leave.

use super::conn::Conn;
use super::presence_channel;
use super::wire::CONNECTION_STATE_TTL_MS;
use plugin_sdk::{ConnId, host, presence};

/// How long a dropped connection's presence members stay before they leave.
pub const PRESENCE_LINGER_MS: u32 = 15_000;

fn kv_key(id: &str) -> String {
    format!("ably:resume:{id}")
}

/// A fresh connectionKey secret: 128 random bits in hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 16];
    // WASI random; on the (impossible) failure the key is still unique, only guessable.
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A connection ended: unless the client closed it, keep its state for a resume.
pub fn closed(attachment: &[u8]) {
    let Some(state) = Conn::decode(attachment) else {
        return;
    };
    if state.closing {
        return;
    }
    let _ = host::kv_set(
        &kv_key(&state.id),
        &state.encode(),
        Some(CONNECTION_STATE_TTL_MS),
    );
}

/// Why a resume failed: the Ably error code and message the new connection's CONNECTED
/// carries.
pub type Failure = (u64, &'static str);

/// Takes over the connection `key` names for the new connection `conn` (whose freshly
/// authenticated state is `state`): same connectionId, channels and presence members. The
/// saved state is consumed, so a key resumes once.
pub fn resume(conn: ConnId, state: &mut Conn, key: &str) -> Result<(), Failure> {
    let (id, secret) = key
        .split_once('!')
        .ok_or((80018, "invalid connection key"))?;
    let saved = host::kv_get(&kv_key(id)).ok_or((80008, "connection state expired"))?;
    let old = Conn::decode(&saved).ok_or((80018, "invalid connection key"))?;
    if !super::auth::same_secret(&old.secret, secret) {
        return Err((80018, "invalid connection key"));
    }
    if old.client_id != state.client_id {
        return Err((80018, "the connection belongs to another clientId"));
    }
    // Whoever deletes the saved state first owns it.
    if !host::kv_delete(&kv_key(id)) {
        return Err((80008, "connection state expired"));
    }
    state.id = old.id;
    state.secret = old.secret;
    state.channels = old.channels;
    state.lost = old.lost;
    if let Some(client_id) = state.client_id.clone() {
        let member = state.member_key(&client_id);
        for channel in old.entered {
            let pchan = presence_channel(&channel);
            match presence::get(&pchan, &member) {
                Ok(Some(m)) if presence::join(&pchan, &member, conn, &m.data).is_ok() => {
                    state.entered.insert(channel);
                }
                // Gone (its linger ran out): the next ATTACHED says so and the client enters
                // again by itself.
                _ => {
                    state.lost.insert(channel);
                }
            }
        }
    }
    Ok(())
}
