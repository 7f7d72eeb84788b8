//! Echo plugin: sends every message back to its sender, and counts them.

use plugin_sdk::{ConnInfo, Frame, HttpRequest, HttpResponse, Plugin, Reject, export_plugin, host};

struct Echo;

impl Plugin for Echo {
    fn on_open(conn: ConnInfo) -> Result<(), Reject> {
        let _ = host::send(conn.id, &Frame::text("hello"));
        Ok(())
    }

    fn on_frame(conn: u64, _attachment: Vec<u8>, frame: Frame) {
        host::counter_add("echoed", 1);
        let _ = host::send(conn, &frame);
    }

    fn on_http(_request: HttpRequest) -> HttpResponse {
        HttpResponse::text(200, "echo plugin")
    }
}

export_plugin!(Echo);
