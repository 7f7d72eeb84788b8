//! The only host modules that know y-redis: the compaction [`worker`] (storage plus stream
//! into one Yjs document, y-redis v0.1.6 semantics) and the connect-time [`permission`]
//! callback. Both build on the pure `yjs-core` crate; the worker runs on a
//! [`background`] thread at low CPU priority.

pub mod background;
pub mod permission;
pub mod worker;
