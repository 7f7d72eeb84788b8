//! Fault policy of a plugin: what a trap does to its connection, the crash budget that disables
//! a plugin that keeps failing, and the exponential backoff between instance restarts.

use serde::Deserialize;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

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
            window_s: 60,
            backoff_ms: 10,
            backoff_max_ms: 2000,
        }
    }
}

/// Fault history of one plugin version.
#[derive(Debug, Default)]
pub struct FaultTracker {
    recent: VecDeque<Instant>,
    consecutive: u32,
    last: Option<Instant>,
    /// Set once the crash budget is spent.
    pub disabled: bool,
}

impl FaultTracker {
    /// Records a fault; returns true when this fault spent the crash budget.
    pub fn record(&mut self, policy: &FaultPolicy, now: Instant) -> bool {
        let window = Duration::from_secs(policy.window_s);
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        self.consecutive = self.consecutive.saturating_add(1);
        self.last = Some(now);
        if !self.disabled && self.recent.len() as u32 > policy.max_faults {
            self.disabled = true;
            return true;
        }
        false
    }

    /// Records a successful call: the backoff starts over.
    pub fn success(&mut self) {
        self.consecutive = 0;
    }

    /// How long a new instance must still wait before it may start.
    pub fn restart_delay(&self, policy: &FaultPolicy, now: Instant) -> Duration {
        let Some(last) = self.last else {
            return Duration::ZERO;
        };
        if self.consecutive == 0 {
            return Duration::ZERO;
        }
        let exp = (self.consecutive - 1).min(20);
        let delay = Duration::from_millis(
            policy
                .backoff_ms
                .saturating_mul(1 << exp)
                .min(policy.backoff_max_ms),
        );
        (last + delay).saturating_duration_since(now)
    }

    /// Faults inside the current window.
    pub fn recent_faults(&self) -> usize {
        self.recent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_and_backoff() {
        let p = FaultPolicy {
            max_faults: 2,
            backoff_ms: 100,
            backoff_max_ms: 250,
            ..Default::default()
        };
        let mut t = FaultTracker::default();
        let now = Instant::now();
        assert!(!t.record(&p, now));
        assert_eq!(t.restart_delay(&p, now), Duration::from_millis(100));
        assert!(!t.record(&p, now));
        assert_eq!(t.restart_delay(&p, now), Duration::from_millis(200));
        assert!(t.record(&p, now));
        assert_eq!(t.restart_delay(&p, now), Duration::from_millis(250));
        t.success();
        assert_eq!(t.restart_delay(&p, now), Duration::ZERO);
    }
}
