//! yjs-sync
