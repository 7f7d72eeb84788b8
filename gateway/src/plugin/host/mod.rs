//! The host side of the plugin imports: what a plugin may ask of the gateway. [`HostState`] is
//! the per-instance state; each WIT interface is implemented in its own file.

mod core;
mod limits;
mod presence;
pub use presence::member;
mod storage;
mod streams;

pub use self::core::conn_info;
pub use limits::TrackedLimits;

use super::bindings::gateway::plugin::types;
use super::shared::PluginShared;
use crate::wire::codec;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Largest attachment a plugin may store per connection.
pub const MAX_ATTACHMENT: usize = 64 << 10;
/// Longest topic name.
pub const MAX_TOPIC: usize = 512;
/// Largest stream key or object name a plugin may use.
pub const MAX_KEY: usize = 1024;
/// Largest stream entry or object a plugin may write.
pub const MAX_BLOB: usize = 256 << 20;

/// Per-instance host state.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
    /// Memory cap enforcement, remembering how far memory grew.
    pub limits: TrackedLimits,
    /// What the imports act on.
    pub shared: Arc<PluginShared>,
    /// When the running call must stop.
    pub deadline: Instant,
    /// The connection whose event is being handled, if any.
    pub current_conn: Option<u64>,
    /// Prefixes of the stream keys this plugin may use.
    pub stream_prefixes: std::sync::Arc<[String]>,
    /// Where this plugin's storage names live in the store.
    pub storage_root: std::sync::Arc<str>,
}

impl HostState {
    /// Fresh state: WASI with no preopened directories, no sockets, stderr captured and only
    /// the environment variables in `env`.
    pub fn new(
        shared: Arc<PluginShared>,
        memory_limit: usize,
        env: &[(String, String)],
        stream_prefixes: Arc<[String]>,
        storage_root: Arc<str>,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(4096);
        let wasi = WasiCtx::builder()
            .envs(env)
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            stderr,
            limits: TrackedLimits::new(memory_limit),
            shared,
            deadline: Instant::now(),
            current_conn: None,
            stream_prefixes,
            storage_root,
        }
    }

    /// Refuses a stream key outside the plugin's `stream_prefixes`.
    pub fn check_stream_key(&self, key: &str) -> Result<(), types::HostError> {
        if self
            .stream_prefixes
            .iter()
            .any(|p| key.starts_with(p.as_str()))
        {
            Ok(())
        } else {
            Err(types::HostError::Invalid(format!(
                "stream key outside this plugin's namespace (stream_prefixes {:?})",
                self.stream_prefixes
            )))
        }
    }

    /// Moves the call's deadline out by the time spent since `since` waiting on a backend
    /// (Redis, storage): a slow backend never counts as the plugin running too long.
    pub fn credit(&mut self, since: Instant) {
        self.deadline += since.elapsed();
    }

    /// What the guest wrote to stderr (a panic message, say), formatted for an error line.
    pub fn stderr_tail(&self) -> String {
        let b = self.stderr.contents();
        let s = String::from_utf8_lossy(&b);
        let s = s.trim();
        if s.is_empty() {
            String::new()
        } else {
            let tail: String = s
                .chars()
                .rev()
                .take(300)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!(" (guest stderr: {tail})")
        }
    }

    /// Encodes a plugin frame as a server WebSocket frame (at most 64 MiB).
    pub fn encode(frame: &types::Frame) -> Result<Bytes, types::HostError> {
        let (op, data): (u8, &[u8]) = match frame {
            types::Frame::Text(s) => (codec::op::TEXT, s.as_bytes()),
            types::Frame::Binary(b) => (codec::op::BINARY, b),
        };
        if data.len() > 64 << 20 {
            return Err(types::HostError::TooLarge(
                "frame larger than 64 MiB".into(),
            ));
        }
        Ok(codec::encode(op, data))
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn check_len(what: &str, len: usize, max: usize) -> Result<(), types::HostError> {
    if len > max {
        Err(types::HostError::TooLarge(format!(
            "{what} longer than {max} bytes"
        )))
    } else {
        Ok(())
    }
}
