//! The `chat` plugin: Momentum-compatible JSON chat with broadcast, direct messages,
//! presence and an admin HTTP API. See `PROTOCOL.md` for the wire contract.
//!
//! Lasting state lives in the host: the user in each connection's attachment, topic
//! membership (`chat:all`, `chat:user:<id>`), the cluster-wide presence channel `online` and
//! the kv entry `started_at_ms`. With `[redis]` every gateway on the Redis serves one chat.
//! The only guest global is the parsed config, which `init` sets on every instance.
#![forbid(unsafe_code)]

mod admin;
mod config;
mod envelope;
mod presence;
mod time;
mod user;

use plugin_sdk::{
    ConnId, ConnInfo, Frame, HttpRequest, HttpResponse, Member, Plugin, Reject, host,
};

use config::Config;
use envelope::{ClientError, Request, parse_request, stamped};
use user::User;

/// The plugin.
pub struct Chat;

impl Plugin for Chat {
    fn init(config: &str) -> Result<(), String> {
        let (config, unknown) = Config::parse(config)?;
        for key in unknown {
            plugin_sdk::log_warn(&format!("chat: ignoring unknown config key `{key}`"));
        }
        config.install();
        admin::ensure_started_at();
        Ok(())
    }

    fn on_open(conn: ConnInfo) -> Result<(), Reject> {
        let user = User::from_claims(conn.claims.as_deref()).map_err(|e| Reject::new(401, e))?;
        presence::open(&conn, &user)
    }

    fn on_frame(conn: ConnId, attachment: Vec<u8>, frame: Frame) {
        let Some(user) = User::decode(&attachment) else {
            reply_error(
                conn,
                &ClientError::new("internal_error", "unknown connection"),
            );
            return;
        };
        match frame {
            Frame::Text(text) => {
                if let Err(e) = handle_text(conn, &user, &text) {
                    reply_error(conn, &e);
                }
            }
            Frame::Binary(_) => reply_error(
                conn,
                &ClientError::new("binary_not_supported", "only JSON text frames are accepted"),
            ),
        }
    }

    fn on_close(conn: ConnId, attachment: Vec<u8>, _code: u16, _reason: String) {
        if let Some(user) = User::decode(&attachment) {
            presence::close(conn, &user);
        }
    }

    fn on_http(request: HttpRequest) -> HttpResponse {
        admin::handle(&request)
    }

    fn on_presence_left(channel: String, members: Vec<Member>) {
        presence::left(&channel, &members);
    }
}

/// Handles one client text frame; an error goes back to the sender only.
fn handle_text(conn: ConnId, user: &User, text: &str) -> Result<(), ClientError> {
    match parse_request(text)? {
        Request::Ping { data } => {
            #[cfg(feature = "reload-test-variant")]
            let data = serde_json::json!({"variant": true, "data": data});
            let pong = stamped("pong", &data, None, None);
            let _ = host::send(conn, &Frame::Text(pong));
        }
        Request::Chat {
            message_type,
            data,
            to_user_id: None,
        } => {
            let frame = stamped(message_type, &data, Some(&user.user_id), None);
            host::publish(presence::ALL, &Frame::Text(frame), None);
        }
        Request::Chat {
            message_type,
            data,
            to_user_id: Some(to),
        } => {
            if presence::connections_of(&to) == 0 {
                return Err(ClientError::new(
                    "user_offline",
                    format!("user `{to}` is not online"),
                ));
            }
            let frame = stamped(message_type, &data, Some(&user.user_id), Some(&to));
            host::publish(&presence::user_topic(&to), &Frame::Text(frame), None);
        }
    }
    Ok(())
}

/// Sends an `error` envelope to one connection.
fn reply_error(conn: ConnId, error: &ClientError) {
    let _ = host::send(conn, &Frame::Text(error.to_frame()));
}

plugin_sdk::export_plugin!(Chat);

/// Entry points for the fuzz targets in `fuzz/`: the pure parsers, without host calls.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    use crate::envelope::{Request, parse_request, render};

    /// Parses one client text frame and renders what the server would send for it; a request
    /// that parses must render as JSON whose `message_type` is the request's.
    pub fn client_frame(text: &str) {
        match parse_request(text) {
            Ok(Request::Chat {
                message_type, data, ..
            }) => {
                let out = render("i", "t", message_type, &data, Some("u"), Some("v"));
                let v: serde_json::Value = serde_json::from_str(&out).expect("rendered JSON");
                assert_eq!(v["message_type"], message_type);
            }
            Ok(Request::Ping { data }) => {
                let out = render("i", "t", "pong", &data, None, None);
                serde_json::from_str::<serde_json::Value>(&out).expect("rendered JSON");
            }
            Err(e) => {
                let out = render("i", "t", "error", &e, None, None);
                serde_json::from_str::<serde_json::Value>(&out).expect("error JSON");
            }
        }
    }

    /// Parses admin API bodies and a connection attachment.
    pub fn admin_body(body: &[u8]) {
        let _ = crate::admin::parse_outgoing(body, true);
        let _ = crate::admin::parse_outgoing(body, false);
        let _ = crate::admin::parse_cleanup(body, 60);
        if let Some(user) = crate::user::User::decode(body) {
            assert_eq!(crate::user::User::decode(&user.encode()), Some(user));
        }
        let _ = crate::user::User::from_claims(std::str::from_utf8(body).ok());
    }
}
