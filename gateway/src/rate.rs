//! Token buckets: a rate with a burst, refilled continuously. Used for the per-connection
//! message and byte rates and the gateway-wide upgrade rate.

use std::time::Instant;

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes `cost` tokens if there are that many; false (and nothing taken) otherwise.
    pub fn take(&mut self, cost: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// A connection's inbound rate limits (`max_messages_per_s`, `max_bytes_per_s`; 0 = off).
#[derive(Debug, Clone)]
pub struct InboundRate {
    messages: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
}

impl InboundRate {
    /// Limits from a connection's [`crate::config::Limits`]. The byte bucket holds at least one
    /// largest message, so a message the route accepts can always get through once.
    pub fn new(limits: &crate::config::Limits, now: Instant) -> Self {
        let messages = (limits.max_messages_per_s > 0).then(|| {
            let r = f64::from(limits.max_messages_per_s);
            TokenBucket::new(r, r, now)
        });
        let bytes = (limits.max_bytes_per_s > 0).then(|| {
            let r = limits.max_bytes_per_s as f64;
            TokenBucket::new(r, r.max(limits.max_message_bytes as f64), now)
        });
        Self { messages, bytes }
    }

    /// Admits one message of `len` bytes, or says which limit it breaks.
    pub fn admit(&mut self, len: usize, now: Instant) -> Result<(), &'static str> {
        if let Some(m) = &mut self.messages
            && !m.take(1.0, now)
        {
            return Err("message rate limit exceeded");
        }
        if let Some(b) = &mut self.bytes
            && !b.take(len as f64, now)
        {
            return Err("byte rate limit exceeded");
        }
        Ok(())
    }
}

/// The gateway-wide gate in front of new WebSocket connections: the upgrade rate and the
/// number of `on-open` calls running at once.
#[derive(Debug, Default)]
pub struct UpgradeGate {
    bucket: parking_lot::Mutex<Option<(u32, TokenBucket)>>,
    opening: std::sync::atomic::AtomicUsize,
}

/// Held while one `on-open` runs.
pub struct Opening<'a>(&'a UpgradeGate);

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.0
            .opening
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl UpgradeGate {
    /// Whether one more upgrade fits `per_s` (0 = no limit; a changed rate starts a full bucket).
    pub fn admit(&self, per_s: u32, now: Instant) -> bool {
        if per_s == 0 {
            return true;
        }
        let mut b = self.bucket.lock();
        let bucket = match &mut *b {
            Some((rate, bucket)) if *rate == per_s => bucket,
            slot => {
                let r = f64::from(per_s);
                &mut slot.insert((per_s, TokenBucket::new(r, r, now))).1
            }
        };
        bucket.take(1.0, now)
    }

    /// A slot for one `on-open` among at most `max` (0 = no cap); `None` when all are taken.
    pub fn opening(&self, max: usize) -> Option<Opening<'_>> {
        let n = self
            .opening
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let guard = Opening(self);
        (max == 0 || n < max).then_some(guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills_at_its_rate_up_to_its_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5.0, t0);
        assert!((0..5).all(|_| b.take(1.0, t0)));
        assert!(!b.take(1.0, t0));
        assert!(b.take(1.0, t0 + Duration::from_millis(100)));
        assert!(!b.take(1.0, t0 + Duration::from_millis(100)));
        // A long pause saves up no more than the burst.
        let later = t0 + Duration::from_secs(60);
        assert!((0..5).all(|_| b.take(1.0, later)));
        assert!(!b.take(1.0, later));
    }

    #[test]
    fn upgrade_gate_limits_rate_and_concurrent_opens() {
        let g = UpgradeGate::default();
        let t0 = Instant::now();
        assert!((0..10).all(|_| g.admit(10, t0)));
        assert!(!g.admit(10, t0));
        assert!(g.admit(0, t0), "0 = no limit");
        let a = g.opening(2).expect("first");
        let b = g.opening(2).expect("second");
        assert!(g.opening(2).is_none());
        drop(a);
        assert!(g.opening(2).is_some());
        drop(b);
        assert!(g.opening(0).is_some());
    }

    #[test]
    fn inbound_rate_checks_messages_and_bytes() {
        let t0 = Instant::now();
        let limits = crate::config::Limits {
            max_messages_per_s: 3,
            max_bytes_per_s: 100,
            max_message_bytes: 150,
            ..Default::default()
        };
        let mut r = InboundRate::new(&limits, t0);
        assert_eq!(r.admit(150, t0), Ok(()), "one largest message fits");
        assert_eq!(r.admit(1, t0), Err("byte rate limit exceeded"));
        let mut r = InboundRate::new(&limits, t0);
        assert!((0..3).all(|_| r.admit(1, t0).is_ok()));
        assert_eq!(r.admit(1, t0), Err("message rate limit exceeded"));
        let off = InboundRate::new(&crate::config::Limits::default(), t0);
        let mut off = off;
        assert!((0..100_000).all(|_| off.admit(1 << 20, t0).is_ok()));
    }
}
