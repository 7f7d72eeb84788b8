//! A small log-linear latency histogram (≈1.6 % resolution) in microseconds.

use parking_lot::Mutex;
use serde::Serialize;

const SUB: u64 = 64;
const BUCKETS: usize = (SUB as usize) * 40;

/// Log-linear histogram of microsecond values.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: u128,
    min: u64,
    max: u64,
}

/// Summary of a histogram, all values in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Summary {
    /// Number of samples.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros() as u64; // >= 6
    let mantissa = v >> (exp - 6); // in [64, 128)
    let idx = SUB + (exp - 6) * SUB + (mantissa - SUB);
    (idx as usize).min(BUCKETS - 1)
}

fn value(idx: usize) -> u64 {
    let idx = idx as u64;
    if idx < SUB {
        return idx;
    }
    let exp = (idx - SUB) / SUB + 6;
    let mantissa = (idx - SUB) % SUB + SUB;
    // Middle of the bucket.
    (mantissa << (exp - 6)) + ((1u64 << (exp - 6)) >> 1)
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Records one value in microseconds.
    pub fn record(&mut self, us: u64) {
        self.counts[index(us)] += 1;
        self.total += 1;
        self.sum += us as u128;
        self.min = self.min.min(us);
        self.max = self.max.max(us);
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1), in microseconds.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value(i).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// Percentile summary in milliseconds.
    pub fn summary(&self) -> Summary {
        let ms = |us: u64| us as f64 / 1000.0;
        if self.total == 0 {
            return Summary::default();
        }
        Summary {
            count: self.total,
            mean_ms: (self.sum as f64 / self.total as f64).round() / 1000.0,
            p50_ms: ms(self.quantile(0.50)),
            p90_ms: ms(self.quantile(0.90)),
            p99_ms: ms(self.quantile(0.99)),
            p999_ms: ms(self.quantile(0.999)),
            max_ms: ms(self.max),
        }
    }
}

/// A histogram shared by many tasks, fed through [`Samples`] buffers.
#[derive(Default)]
pub struct SharedHistogram(Mutex<Histogram>);

impl SharedHistogram {
    /// Records a batch of microsecond values under one lock.
    pub fn record_all(&self, values: &[u32]) {
        let mut h = self.0.lock();
        for &v in values {
            h.record(v as u64);
        }
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> Histogram {
        self.0.lock().clone()
    }
}

/// A per-task sample buffer that flushes into a [`SharedHistogram`] every 256 values.
pub struct Samples<'a> {
    buf: Vec<u32>,
    target: &'a SharedHistogram,
}

impl<'a> Samples<'a> {
    /// A buffer flushing into `target`.
    pub fn new(target: &'a SharedHistogram) -> Self {
        Self {
            buf: Vec::new(),
            target,
        }
    }

    /// Records one value in microseconds.
    pub fn push(&mut self, us: u64) {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(256);
        }
        self.buf.push(us.min(u32::MAX as u64) as u32);
        if self.buf.len() == 256 {
            self.flush();
        }
    }

    /// Moves buffered values into the shared histogram.
    pub fn flush(&mut self) {
        if !self.buf.is_empty() {
            self.target.record_all(&self.buf);
            self.buf.clear();
        }
    }
}

impl Drop for Samples<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_value_agree() {
        for v in [
            0u64, 1, 63, 64, 65, 127, 128, 1000, 12_345, 1_000_000, 60_000_000,
        ] {
            let back = value(index(v));
            let err = (back as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err < 0.02, "{v} -> {back}");
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 10);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.02, "{p50}");
        assert_eq!(h.quantile(1.0), 10_000);
        assert_eq!(h.summary().count, 1000);
    }
}
