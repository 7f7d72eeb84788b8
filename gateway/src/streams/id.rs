//! Redis stream ids: `<ms>-<seq>`.

use super::StreamError;
use std::fmt;

/// A stream entry id, ordered like Redis orders them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl StreamId {
    /// The id before every entry (`0-0`).
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    /// The id after every entry (Redis `+`).
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    /// Parses `ms-seq`, `ms` (seq 0) or `0`.
    pub fn parse(s: &str) -> Result<StreamId, StreamError> {
        let bad = || StreamError::Invalid(format!("bad stream id '{s}'"));
        let (ms, seq) = match s.split_once('-') {
            Some((a, b)) => (a, b),
            None => (s, "0"),
        };
        Ok(StreamId {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }

    /// The next id for a stream whose last id is `self`, at time `now_ms` (Redis `*`).
    pub fn next_after(self, now_ms: u64) -> StreamId {
        if now_ms > self.ms {
            StreamId { ms: now_ms, seq: 0 }
        } else {
            StreamId {
                ms: self.ms,
                seq: self.seq + 1,
            }
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_order() {
        let a = StreamId::parse("5-1").unwrap();
        assert_eq!(a, StreamId { ms: 5, seq: 1 });
        assert_eq!(StreamId::parse("0").unwrap(), StreamId::ZERO);
        assert!(StreamId::parse("x-1").is_err());
        assert!(StreamId::parse("5-1").unwrap() < StreamId::parse("6-0").unwrap());
        assert_eq!(a.next_after(3), StreamId { ms: 5, seq: 2 });
        assert_eq!(a.next_after(9), StreamId { ms: 9, seq: 0 });
        assert_eq!(a.to_string(), "5-1");
    }
}
