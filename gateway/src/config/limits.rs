//! Per-connection limits, with the per-route overrides.

use serde::Deserialize;

/// Per-connection limits; a route may override any field.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest single frame; larger closes with 1009.
    pub max_frame_bytes: usize,
    /// Largest reassembled message; larger closes with 1009.
    pub max_message_bytes: usize,
    /// Outbound bytes queued before the connection is cut off as a slow consumer.
    pub queue_max_bytes: usize,
    /// Outbound frames queued before the connection is cut off as a slow consumer.
    pub queue_max_frames: usize,
    /// Interval between server pings.
    pub ping_interval_ms: u64,
    /// Silence after which a connection is closed with 1001.
    pub idle_timeout_ms: u64,
    /// Messages a client may send per second (bursts of one second's worth); more closes the
    /// connection with 1008. 0 = no limit.
    pub max_messages_per_s: u32,
    /// Payload bytes a client may send per second (bursts of one second's worth, or one
    /// largest message); more closes the connection with 1008. 0 = no limit.
    pub max_bytes_per_s: u64,
    /// Most connections a route holds at once; more are refused with 503. In `[limits]` it
    /// applies to every route separately. 0 = no cap.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 << 10,
            max_message_bytes: 1 << 20,
            queue_max_bytes: 1 << 20,
            queue_max_frames: 4096,
            ping_interval_ms: 20_000,
            idle_timeout_ms: 60_000,
            max_messages_per_s: 0,
            max_bytes_per_s: 0,
            max_connections: 0,
        }
    }
}

/// Optional overrides of [`Limits`] for one route.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    max_frame_bytes: Option<usize>,
    max_message_bytes: Option<usize>,
    queue_max_bytes: Option<usize>,
    queue_max_frames: Option<usize>,
    ping_interval_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_messages_per_s: Option<u32>,
    max_bytes_per_s: Option<u64>,
    max_connections: Option<usize>,
}

impl LimitOverrides {
    /// The defaults with this route's overrides applied.
    pub fn apply(&self, base: Limits) -> Limits {
        Limits {
            max_frame_bytes: self.max_frame_bytes.unwrap_or(base.max_frame_bytes),
            max_message_bytes: self.max_message_bytes.unwrap_or(base.max_message_bytes),
            queue_max_bytes: self.queue_max_bytes.unwrap_or(base.queue_max_bytes),
            queue_max_frames: self.queue_max_frames.unwrap_or(base.queue_max_frames),
            ping_interval_ms: self.ping_interval_ms.unwrap_or(base.ping_interval_ms),
            idle_timeout_ms: self.idle_timeout_ms.unwrap_or(base.idle_timeout_ms),
            max_messages_per_s: self.max_messages_per_s.unwrap_or(base.max_messages_per_s),
            max_bytes_per_s: self.max_bytes_per_s.unwrap_or(base.max_bytes_per_s),
            max_connections: self.max_connections.unwrap_or(base.max_connections),
        }
    }
}
