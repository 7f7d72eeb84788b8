//! The Yjs protocol core: y-protocols sync and awareness messages, Yjs document assembly
//! and delivery batching, and the y-redis v0.1.6 Redis key and storage object naming
//! (see `shared/specs/yjs-y-redis.md`), wire- and storage-compatible with y-redis.
//!
//! Pure and host-independent: no I/O, no async runtime, no wasm; only `yrs` and std. The
//! `yjs-sync` wasm plugin and the gateway's y-redis compaction worker both use it, so they
//! share one implementation of the formats.
//!
//! Modules only import modules listed before them: [`error`], [`lib0`], [`keys`],
//! [`awareness`] (the update codec), [`protocol`] (frames), [`presence`] (removal frame,
//! per-connection tracker, joined states), [`merge`] (delivery batches), [`doc`].
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod error;
pub mod lib0;

pub mod keys;

pub mod awareness;
pub mod protocol;

pub mod presence;

pub mod merge;

pub mod doc;
