//! The `ably-rooms` plugin: room pub/sub over the host's cluster bus and presence, for the Ably
//! realtime protocol ([`ably`], on routes other than `/letshare`) and the LetShare JSON room
//! protocol ([`letshare`], on `/letshare`); see `README.md`.
#![forbid(unsafe_code)]

mod ably;
mod config;
mod letshare;

use plugin_sdk::{ConnId, ConnInfo, Frame, HttpRequest, HttpResponse, Member, Plugin, Reject};

/// The plugin.
pub struct AblyRooms;

impl Plugin for AblyRooms {
    fn init(config: &str) -> Result<(), String> {
        let (config, unknown) = config::Config::parse(config)?;
        for key in unknown {
            plugin_sdk::log_warn(&format!("ably-rooms: ignoring unknown config key `{key}`"));
        }
        config.install();
        Ok(())
    }

    fn on_open(conn: ConnInfo) -> Result<(), Reject> {
        if conn.route == "/letshare" {
            letshare::open(&conn)
        } else {
            ably::open(&conn)
        }
    }

    fn on_frame(conn: ConnId, attachment: Vec<u8>, frame: Frame) {
        if attachment.first() == Some(&ably::TAG) {
            ably::frame(conn, &attachment, frame);
        } else {
            letshare::frame(conn, &attachment, frame);
        }
    }

    fn on_http(request: HttpRequest) -> HttpResponse {
        if ably::serves_http(&request.path) {
            ably::http(&request)
        } else {
            HttpResponse::text(404, "not found")
        }
    }

    fn on_close(_conn: ConnId, attachment: Vec<u8>, _code: u16, _reason: String) {
        if attachment.first() == Some(&ably::TAG) {
            ably::closed(&attachment);
        }
    }

    fn on_timer(token: String) {
        if token.starts_with(ably::HEARTBEAT_TOPIC) {
            ably::heartbeat_timer(&token);
        } else if token.starts_with(ably::EXPIRY_TIMER) {
            ably::expiry_timer(&token);
        }
    }

    fn on_presence_left(channel: String, members: Vec<Member>) {
        ably::presence_left(&channel, &members);
    }
}

plugin_sdk::export_plugin!(AblyRooms);

/// Entry points for the fuzz targets in `fuzz/`: the pure decoders, without host calls.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::ably::fuzzing::{credentials, json, msgpack};
    pub use crate::letshare::fuzzing::client_frame as letshare_frame;
}
