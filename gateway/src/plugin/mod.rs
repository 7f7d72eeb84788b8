//! The wasm plugin host: one engine, precompiled components cached on disk, and per plugin a
//! bounded pool of reusable instances that run every call under a deadline and a memory cap.

mod engine;
pub mod faults;
mod host;
mod slot;

pub use engine::{PluginEngine, load_component};
pub use host::HostState;
pub use slot::{CallError, PluginShared, PluginSlot, PluginStatus, PluginVersion};

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
        },
    });
}

pub use bindings::gateway::plugin::types::{ConnInfo, Frame, HttpRequest, HttpResponse, Reject};
