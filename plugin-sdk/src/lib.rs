//! Write gateway plugins in plain Rust.
//!
//! A plugin is a type implementing [`Plugin`], exported with [`export_plugin!`] from a
//! `cdylib` crate built for `wasm32-wasip2`. The host owns all lasting state (connections,
//! attachments, topics, key-value entries, timers); instances are pooled and may be replaced
//! at any time, so keep nothing important in globals.
//!
//! ```ignore
//! use plugin_sdk::{export_plugin, host, Frame, Plugin};
//!
//! struct Echo;
//! impl Plugin for Echo {
//!     fn on_frame(conn: u64, _attachment: Vec<u8>, frame: Frame) {
//!         let _ = host::send(conn, &frame);
//!     }
//! }
//! export_plugin!(Echo);
//! ```
#![deny(unsafe_code)]

extern crate self as plugin_sdk;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// Raw bindings generated from `wit/plugin.wit`.
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "::plugin_sdk::bindings",
        runtime_path: "::plugin_sdk::__wit_bindgen::rt",
    });
}

pub use bindings::gateway::plugin::host;
pub use bindings::gateway::plugin::host::LogLevel;
pub use bindings::gateway::plugin::presence;
pub use bindings::gateway::plugin::presence::{Member, PresenceCount};
pub use bindings::gateway::plugin::storage;
pub use bindings::gateway::plugin::streams;
pub use bindings::gateway::plugin::streams::Entry;
pub use bindings::gateway::plugin::types::{
    ConnId, ConnInfo, Frame, HostError, HttpRequest, HttpResponse, Reject,
};

/// The event handlers of a plugin. Every method has a harmless default.
pub trait Plugin {
    /// Receives the plugin's `config` table from `plugins.toml` as JSON; an error stops loading.
    fn init(config: &str) -> Result<(), String> {
        let _ = config;
        Ok(())
    }
    /// Accepts or refuses a WebSocket upgrade; frames sent here arrive right after the handshake.
    fn on_open(conn: ConnInfo) -> Result<(), Reject> {
        let _ = conn;
        Ok(())
    }
    /// Handles one message from a connection, with the connection's attachment.
    fn on_frame(conn: ConnId, attachment: Vec<u8>, frame: Frame) {
        let _ = (conn, attachment, frame);
    }
    /// Runs once when a connection ends, with the close code and reason.
    fn on_close(conn: ConnId, attachment: Vec<u8>, code: u16, reason: String) {
        let _ = (conn, attachment, code, reason);
    }
    /// Answers a request on one of the plugin's HTTP routes.
    fn on_http(request: HttpRequest) -> HttpResponse {
        let _ = request;
        HttpResponse::text(404, "not found")
    }
    /// Runs when a timer set with [`host::set_timer`] fires.
    fn on_timer(token: String) {
        let _ = token;
    }
    /// Turns a batch of new entries of a stream bound with [`streams::bind`] into frames that the
    /// host publishes to `topic`.
    fn on_stream(topic: String, key: String, entries: Vec<Entry>) -> Vec<Frame> {
        let _ = (topic, key, entries);
        Vec::new()
    }
    /// Runs when the host removed presence members nobody left explicitly (their last
    /// connection closed, or their gateway died); once per member cluster-wide.
    fn on_presence_left(channel: String, members: Vec<Member>) {
        let _ = (channel, members);
    }
}

impl Frame {
    /// A text frame.
    pub fn text(s: impl Into<String>) -> Self {
        Frame::Text(s.into())
    }
    /// A text frame holding `value` serialized as JSON.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Self {
        Frame::Text(serde_json::to_string(value).unwrap_or_else(|_| "null".into()))
    }
}

impl HttpResponse {
    /// A response with a `text/plain` body.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: body.into().into_bytes(),
        }
    }
    /// A response with `value` serialized as a JSON body.
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> Self {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }
}

impl Reject {
    /// Refuses an upgrade with `status` and a reason.
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Reject {
            status,
            reason: reason.into(),
        }
    }
}

impl HttpRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Writes an info-level log line through the host.
pub fn log_info(message: &str) {
    host::log(LogLevel::Info, message);
}

/// Writes a warn-level log line through the host.
pub fn log_warn(message: &str) {
    host::log(LogLevel::Warn, message);
}

/// Exports a [`Plugin`] implementation as the component's entry points.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __GatewayPluginExports;

        impl $crate::bindings::Guest for __GatewayPluginExports {
            fn init(config: String) -> Result<(), String> {
                <$plugin as $crate::Plugin>::init(&config)
            }
            fn on_open(conn: $crate::ConnInfo) -> Result<(), $crate::Reject> {
                <$plugin as $crate::Plugin>::on_open(conn)
            }
            fn on_frame(conn: $crate::ConnId, attachment: Vec<u8>, frame: $crate::Frame) {
                <$plugin as $crate::Plugin>::on_frame(conn, attachment, frame)
            }
            fn on_close(conn: $crate::ConnId, attachment: Vec<u8>, code: u16, reason: String) {
                <$plugin as $crate::Plugin>::on_close(conn, attachment, code, reason)
            }
            fn on_http(request: $crate::HttpRequest) -> $crate::HttpResponse {
                <$plugin as $crate::Plugin>::on_http(request)
            }
            fn on_timer(token: String) {
                <$plugin as $crate::Plugin>::on_timer(token)
            }
            fn on_stream(
                topic: String,
                key: String,
                entries: Vec<$crate::Entry>,
            ) -> Vec<$crate::Frame> {
                <$plugin as $crate::Plugin>::on_stream(topic, key, entries)
            }
            fn on_presence_left(channel: String, members: Vec<$crate::Member>) {
                <$plugin as $crate::Plugin>::on_presence_left(channel, members)
            }
        }

        $crate::bindings::__export_plugin_world!(__GatewayPluginExports with_types_in $crate::bindings);
    };
}
