//! Applies a plugin's fault policy: the crash budget that disables a plugin that keeps failing,
//! and the exponential backoff between instance restarts.

use crate::config::FaultPolicy;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

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
