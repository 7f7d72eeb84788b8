//! The `yjs-sync` protocol core: Yjs collaborative editing, wire- and storage-compatible
//! with y-redis v0.1.6 (see `shared/specs/yjs-y-redis.md`).
//!
//! Everything here is pure and host-independent; wiring to the plugin SDK comes later.
#![forbid(unsafe_code)]

pub mod awareness;
pub mod doc;
pub mod error;
pub mod keys;
pub mod lib0;
pub mod merge;
pub mod protocol;
