//! `[plugins.NAME.faults]`: what a trap or deadline does to its connection, the crash budget
//! and the restart backoff. The bookkeeping that applies it is `crate::plugin::faults`.

use serde::Deserialize;

/// What a trap or deadline does to the connection whose event it was.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnFault {
    /// Close the connection with 1011.
    #[default]
    Close,
    /// Keep the connection; the event is dropped and a fresh instance serves the next one.
    Restart,
}

/// `[plugins.NAME.faults]` in `plugins.toml`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FaultPolicy {
    /// What a fault does to the affected connection.
    pub on_fault: OnFault,
    /// Faults tolerated within `window_s`; one more disables the plugin.
    pub max_faults: u32,
    /// Faults of the connections of one client address that count toward `max_faults` within
    /// `window_s`. Past it the faults are blamed on that client: its connection is closed, it
    /// is refused new connections (429) until its faults age out, and the plugin stays up.
    pub max_faults_per_client: u32,
    /// A disabled plugin is enabled again (with a fresh budget) after this many seconds;
    /// 0 keeps it disabled until a new version is loaded.
    pub cooldown_s: u64,
    /// Length of the crash-budget window.
    pub window_s: u64,
    /// First restart delay after a fault; doubles with each consecutive fault.
    pub backoff_ms: u64,
    /// Longest restart delay.
    pub backoff_max_ms: u64,
}

impl Default for FaultPolicy {
    fn default() -> Self {
        Self {
            on_fault: OnFault::Close,
            max_faults: 20,
            max_faults_per_client: 3,
            cooldown_s: 60,
            window_s: 60,
            backoff_ms: 10,
            backoff_max_ms: 2000,
        }
    }
}
