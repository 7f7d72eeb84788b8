//! The `ably-rooms` plugin: room pub/sub over the host's cluster bus and presence. This first
//! part serves the LetShare JSON room protocol ([`letshare`]); see `README.md`.
#![forbid(unsafe_code)]

mod config;
mod letshare;

use plugin_sdk::{ConnId, ConnInfo, Frame, Plugin, Reject};

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
        letshare::open(&conn)
    }

    fn on_frame(conn: ConnId, attachment: Vec<u8>, frame: Frame) {
        letshare::frame(conn, &attachment, frame);
    }
}

plugin_sdk::export_plugin!(AblyRooms);
