//! Applies a plugin's fault policy: the crash budget that disables a plugin that keeps failing
//! (and enables it again after a cool-down), the share of it one client address may spend, and
//! the exponential backoff between instance restarts.

use crate::config::FaultPolicy;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Client addresses tracked at most; past it, faults of new addresses count toward the plugin.
const MAX_CLIENTS: usize = 4096;

/// What one fault did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Counted toward the crash budget, which is not spent.
    Counted,
    /// Counted, and it spent the budget: the plugin is disabled now.
    Spent,
    /// Blamed on its client, which spent its own share; the budget is untouched.
    Blamed,
}

/// Fault history of one plugin version.
#[derive(Debug, Default)]
pub struct FaultTracker {
    recent: VecDeque<Instant>,
    by_client: HashMap<IpAddr, VecDeque<Instant>>,
    consecutive: u32,
    last: Option<Instant>,
    /// When the crash budget was spent, while the plugin is disabled.
    pub disabled_at: Option<Instant>,
}

fn prune(times: &mut VecDeque<Instant>, window: Duration, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) > window)
    {
        times.pop_front();
    }
}

impl FaultTracker {
    /// Records a fault of a call made for a connection from `client` (when there is one).
    pub fn record(&mut self, policy: &FaultPolicy, now: Instant, client: Option<IpAddr>) -> Fault {
        let window = Duration::from_secs(policy.window_s);
        self.consecutive = self.consecutive.saturating_add(1);
        self.last = Some(now);
        if let Some(ip) = client {
            if self.by_client.len() >= MAX_CLIENTS && !self.by_client.contains_key(&ip) {
                self.by_client.retain(|_, t| {
                    prune(t, window, now);
                    !t.is_empty()
                });
            }
            if self.by_client.len() < MAX_CLIENTS || self.by_client.contains_key(&ip) {
                let times = self.by_client.entry(ip).or_default();
                prune(times, window, now);
                times.push_back(now);
                if times.len() as u32 > policy.max_faults_per_client {
                    return Fault::Blamed;
                }
            }
        }
        prune(&mut self.recent, window, now);
        self.recent.push_back(now);
        if self.disabled_at.is_none() && self.recent.len() as u32 > policy.max_faults {
            self.disabled_at = Some(now);
            return Fault::Spent;
        }
        Fault::Counted
    }

    /// Whether `client` spent its share of the budget and is refused until its faults age out.
    pub fn blames(&mut self, policy: &FaultPolicy, now: Instant, client: IpAddr) -> bool {
        let window = Duration::from_secs(policy.window_s);
        match self.by_client.get_mut(&client) {
            Some(times) => {
                prune(times, window, now);
                times.len() as u32 > policy.max_faults_per_client
            }
            None => false,
        }
    }

    /// Whether the plugin is disabled; once the cool-down has passed it is enabled again with
    /// a fresh budget (returns false and says so in the log).
    pub fn is_disabled(&mut self, policy: &FaultPolicy, now: Instant, plugin: &str) -> bool {
        let Some(at) = self.disabled_at else {
            return false;
        };
        if policy.cooldown_s > 0 && now.duration_since(at) >= Duration::from_secs(policy.cooldown_s)
        {
            self.disabled_at = None;
            self.recent.clear();
            tracing::warn!(
                plugin,
                cooldown_s = policy.cooldown_s,
                "plugin enabled again after its cool-down"
            );
            return false;
        }
        true
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
        assert_eq!(t.record(&p, now, None), Fault::Counted);
        assert_eq!(t.restart_delay(&p, now), Duration::from_millis(100));
        assert_eq!(t.record(&p, now, None), Fault::Counted);
        assert_eq!(t.restart_delay(&p, now), Duration::from_millis(200));
        assert_eq!(t.record(&p, now, None), Fault::Spent);
        assert_eq!(t.restart_delay(&p, now), Duration::from_millis(250));
        t.success();
        assert_eq!(t.restart_delay(&p, now), Duration::ZERO);
        assert!(t.is_disabled(&p, now, "p"));
        let later = now + Duration::from_secs(p.cooldown_s);
        assert!(
            !t.is_disabled(&p, later, "p"),
            "enabled after the cool-down"
        );
        assert_eq!(
            t.record(&p, later, None),
            Fault::Counted,
            "with a fresh budget"
        );
    }

    #[test]
    fn one_client_cannot_spend_the_budget() {
        let p = FaultPolicy {
            max_faults: 5,
            max_faults_per_client: 2,
            ..Default::default()
        };
        let mut t = FaultTracker::default();
        let now = Instant::now();
        let bad: IpAddr = [10, 0, 0, 1].into();
        assert_eq!(t.record(&p, now, Some(bad)), Fault::Counted);
        assert_eq!(t.record(&p, now, Some(bad)), Fault::Counted);
        assert!(!t.blames(&p, now, bad));
        for _ in 0..100 {
            assert_eq!(t.record(&p, now, Some(bad)), Fault::Blamed);
        }
        assert!(t.blames(&p, now, bad));
        assert!(!t.is_disabled(&p, now, "p"));
        // Faults from many addresses still spend it.
        let spent = (2..10u8)
            .map(|i| t.record(&p, now, Some([10, 0, 0, i].into())))
            .any(|f| f == Fault::Spent);
        assert!(spent);
        // The blame ages out with the window.
        let later = now + Duration::from_secs(p.window_s + 1);
        assert!(!t.blames(&p, later, bad));
    }
}
