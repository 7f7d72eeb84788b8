//! The `yjs-sync` protocol core: Yjs collaborative editing, wire- and storage-compatible
//! with y-redis v0.1.6 (see `shared/specs/yjs-y-redis.md`).
//!
//! The protocol core is pure and host-independent (the gateway's compaction worker uses it
//! natively); the `plugin` feature adds the wasm entry points in [`plugin`].
#![deny(unsafe_code)]

pub mod awareness;
pub mod doc;
pub mod error;
pub mod keys;
pub mod lib0;
pub mod merge;
#[cfg(feature = "plugin")]
pub mod plugin;
pub mod protocol;
