//! Rate pacing for senders: messages go out in groups of `burst`, group `g` at
//! `g * burst / rate` seconds; a late sender catches up in one write.

use std::time::Duration;

use tokio::time::Instant;

/// Schedule of a paced sender.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    start: Instant,
    /// Messages per second; 0 means as fast as possible.
    rate: f64,
    burst: u64,
}

impl Pacer {
    /// A schedule starting at `start`.
    pub fn new(start: Instant, rate: f64, burst: u64) -> Self {
        Self {
            start,
            rate,
            burst: burst.max(1),
        }
    }

    /// Messages per write.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// True when unpaced.
    pub fn unpaced(&self) -> bool {
        self.rate <= 0.0
    }

    /// How many messages should have been sent by `now` (in total).
    pub fn due(&self, now: Instant) -> u64 {
        if self.unpaced() {
            return u64::MAX;
        }
        if now < self.start {
            return 0;
        }
        let elapsed = (now - self.start).as_secs_f64();
        let groups = (elapsed * self.rate / self.burst as f64).floor() as u64 + 1;
        groups.saturating_mul(self.burst)
    }

    /// When the group containing message index `sent` is due.
    pub fn next_at(&self, sent: u64) -> Instant {
        if self.unpaced() {
            return self.start;
        }
        let group = sent / self.burst;
        self.start + Duration::from_secs_f64(group as f64 * self.burst as f64 / self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_follow_rate() {
        let t0 = Instant::now();
        let p = Pacer::new(t0, 100.0, 10);
        assert_eq!(p.due(t0), 10);
        assert_eq!(p.due(t0 + Duration::from_millis(99)), 10);
        assert_eq!(p.due(t0 + Duration::from_millis(100)), 20);
        assert_eq!(p.next_at(10), t0 + Duration::from_millis(100));
        assert_eq!(Pacer::new(t0, 0.0, 4).due(t0), u64::MAX);
    }
}
