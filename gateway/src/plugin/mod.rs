//! The wasm plugin host: one engine, precompiled components cached on disk, and per plugin a
//! bounded pool of reusable instances that run every call under a deadline and a memory cap.
//!
//! Inside, the arrows point down: `delivery` (stream batches, for the tailer) uses `slot` (the
//! pool and the calls, which drains fired timers), which uses `host` (the imports), `shared`
//! (what the imports act on), `timers`, `faults` and `engine`; `host` never names the slot.

mod delivery;
mod engine;
pub mod faults;
mod host;
mod shared;
mod slot;
mod timers;

pub use engine::{PluginEngine, load_component};
pub use host::MAX_TOPIC;
pub use host::{HostState, conn_info};
pub use shared::{HostServices, PluginShared, split_topic_key};
pub use slot::{CallError, PluginSlot, PluginStatus, PluginVersion};

/// Bindings generated from `plugin-sdk/wit/plugin.wit`.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../plugin-sdk/wit",
        exports: { default: async },
        imports: {
            "gateway:plugin/streams": async,
            "gateway:plugin/storage": async,
            "gateway:plugin/presence": async,
            "gateway:plugin/host.subscribe": async,
            "gateway:plugin/host.subscribe-held": async,
            "gateway:plugin/host.kv-get": async,
            "gateway:plugin/host.kv-set": async,
            "gateway:plugin/host.kv-delete": async,
            "gateway:plugin/host.kv-scan": async,
            "gateway:plugin/host.kv-count": async,
        },
    });
}

pub use bindings::gateway::plugin::types::{ConnInfo, Frame, HttpRequest, HttpResponse, Reject};
