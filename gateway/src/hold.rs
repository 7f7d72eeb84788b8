//! Holds: frames kept back from a connection that is catching up on a topic. A plugin that
//! replays a retained log to a connection subscribes it "held", replays, then releases with the
//! position it replayed up to: held frames at or before it are dropped (the replay had them),
//! later ones go out in position order, so the connection sees every message once, in order.
//! After the release the hold stays a fence for [`MAX_HOLD`]: a frame of another gateway whose
//! append the replay saw but whose publish arrives late is still dropped. Only positioned
//! publishes are held. A hold nobody releases ends by itself after [`MAX_HOLD`], and one that
//! overflows closes its connection rather than lose frames quietly.

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// A connection id (the hub's).
type ConnId = u64;

/// A position in a retained log: a stream id `ms-seq` as one ordered number.
pub type Position = u128;

/// Parses a stream id (`ms-seq`, or `ms`) as a position.
pub fn position(id: &str) -> Option<Position> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Some((u128::from(ms.parse::<u64>().ok()?) << 64) | u128::from(seq.parse::<u64>().ok()?))
}

/// The longest a hold lasts when nobody releases it.
pub const MAX_HOLD: Duration = Duration::from_secs(5);
/// Most frames one hold keeps.
const MAX_FRAMES: usize = 10_000;

struct Hold {
    topic: Arc<str>,
    since: Instant,
    frames: Vec<(Position, Bytes)>,
    overflowed: bool,
    /// Released: frames at or before this position are dropped until the hold lapses.
    fence: Option<Position>,
}

/// What a publish should do with a frame for one member.
pub enum Verdict {
    /// Deliver it now.
    Deliver,
    /// Kept back, or dropped behind a fence.
    Held,
    /// The hold overflowed: close the connection.
    Overflow,
}

/// What a release hands back: the frames to deliver, or an overflow.
pub enum Released {
    /// Deliver these, in this order.
    Frames(Vec<Bytes>),
    /// Frames were lost while held: close the connection so its client recovers.
    Overflowed,
}

/// Every hold of this process.
#[derive(Default)]
pub struct Holds {
    by_conn: Mutex<HashMap<ConnId, Vec<Hold>>>,
    count: AtomicUsize,
}

impl Holds {
    /// Whether any hold exists (one atomic load: the fan-out's fast path).
    pub fn any(&self) -> bool {
        self.count.load(Relaxed) > 0
    }

    /// Whether some connection holds `topic` (one scan over the holds, which also drops those
    /// that lapsed); the fan-out asks once per publish, and only when [`Holds::any`].
    pub fn topic_held(&self, topic: &str) -> bool {
        let mut map = self.by_conn.lock();
        let mut found = false;
        let mut lapsed = 0;
        map.retain(|_, list| {
            list.retain(|h| {
                let keep = h.since.elapsed() <= MAX_HOLD;
                if !keep {
                    lapsed += 1;
                }
                found |= keep && &*h.topic == topic;
                keep
            });
            !list.is_empty()
        });
        self.count.fetch_sub(lapsed, Relaxed);
        found
    }

    /// Starts holding positioned frames of `topic` for `conn`.
    pub fn start(&self, conn: ConnId, topic: &str) {
        let mut map = self.by_conn.lock();
        let list = map.entry(conn).or_default();
        if list.iter().any(|h| &*h.topic == topic) {
            return;
        }
        list.push(Hold {
            topic: Arc::from(topic),
            since: Instant::now(),
            frames: Vec::new(),
            overflowed: false,
            fence: None,
        });
        self.count.fetch_add(1, Relaxed);
    }

    /// Offers a positioned frame of `topic` for `conn` to its hold, if it has one.
    pub fn offer(&self, conn: ConnId, topic: &str, at: Position, frame: &Bytes) -> Verdict {
        let mut map = self.by_conn.lock();
        let Some(list) = map.get_mut(&conn) else {
            return Verdict::Deliver;
        };
        let Some(i) = list.iter().position(|h| &*h.topic == topic) else {
            return Verdict::Deliver;
        };
        let h = &mut list[i];
        if h.since.elapsed() > MAX_HOLD {
            // A fence that served its time, or a hold never released (the plugin failed
            // mid-replay): let the frames flow again.
            list.swap_remove(i);
            if list.is_empty() {
                map.remove(&conn);
            }
            self.count.fetch_sub(1, Relaxed);
            return Verdict::Deliver;
        }
        if let Some(fence) = h.fence {
            return if at <= fence {
                Verdict::Held
            } else {
                Verdict::Deliver
            };
        }
        if h.frames.len() >= MAX_FRAMES {
            let first = !h.overflowed;
            h.overflowed = true;
            return if first {
                Verdict::Overflow
            } else {
                Verdict::Held
            };
        }
        h.frames.push((at, frame.clone()));
        Verdict::Held
    }

    /// Ends the hold of `conn` on `topic`: frames after `after`, in position order; the hold
    /// becomes a fence at `after` for what is left of [`MAX_HOLD`].
    pub fn release(&self, conn: ConnId, topic: &str, after: Position) -> Released {
        let mut map = self.by_conn.lock();
        let Some(h) = map
            .get_mut(&conn)
            .and_then(|list| list.iter_mut().find(|h| &*h.topic == topic))
        else {
            return Released::Frames(Vec::new());
        };
        if h.fence.is_some() {
            return Released::Frames(Vec::new());
        }
        h.fence = Some(after);
        h.since = Instant::now();
        if h.overflowed {
            return Released::Overflowed;
        }
        let mut frames = std::mem::take(&mut h.frames);
        frames.sort_by_key(|(at, _)| *at);
        Released::Frames(
            frames
                .into_iter()
                .filter(|(at, _)| *at > after)
                .map(|(_, f)| f)
                .collect(),
        )
    }

    /// Drops the hold of `conn` on `topic` (it unsubscribed), if any.
    pub fn drop_topic(&self, conn: ConnId, topic: &str) {
        let _ = self.take(conn, topic);
    }

    /// Drops every hold of `conn` (it closed).
    pub fn drop_conn(&self, conn: ConnId) {
        if let Some(list) = self.by_conn.lock().remove(&conn) {
            self.count.fetch_sub(list.len(), Relaxed);
        }
    }

    fn take(&self, conn: ConnId, topic: &str) -> Option<Hold> {
        let mut map = self.by_conn.lock();
        let list = map.get_mut(&conn)?;
        let i = list.iter().position(|h| &*h.topic == topic)?;
        let h = list.swap_remove(i);
        if list.is_empty() {
            map.remove(&conn);
        }
        self.count.fetch_sub(1, Relaxed);
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_sorts_and_drops_what_the_replay_had() {
        let h = Holds::default();
        assert!(!h.any());
        h.start(1, "t");
        assert!(h.any());
        let f = |s: &'static str| Bytes::from_static(s.as_bytes());
        for (at, s) in [(5, "five"), (3, "three"), (7, "seven")] {
            assert!(matches!(h.offer(1, "t", at, &f(s)), Verdict::Held));
        }
        assert!(matches!(h.offer(1, "other", 9, &f("x")), Verdict::Deliver));
        assert!(matches!(h.offer(2, "t", 9, &f("x")), Verdict::Deliver));
        let Released::Frames(out) = h.release(1, "t", 3) else {
            panic!("no overflow")
        };
        assert_eq!(out, [f("five"), f("seven")]);
        // Released, it fences: a late frame the replay had is dropped, newer ones flow.
        assert!(h.any());
        assert!(matches!(h.offer(1, "t", 2, &f("late")), Verdict::Held));
        assert!(matches!(h.offer(1, "t", 8, &f("new")), Verdict::Deliver));
        h.drop_topic(1, "t");
        assert!(!h.any());
        h.start(3, "u");
        assert!(h.topic_held("u"));
        assert!(!h.topic_held("t"));
        h.drop_conn(3);
        assert_eq!(position("5-2"), Some((5 << 64) | 2));
        assert!(position("5-2") > position("5-1"));
        assert!(position("6") > position("5-99"));
        assert_eq!(position("x"), None);
    }

    #[test]
    fn overflow_and_cleanup() {
        let h = Holds::default();
        h.start(1, "t");
        let b = Bytes::from_static(b"x");
        for i in 0..MAX_FRAMES as u128 {
            h.offer(1, "t", i, &b);
        }
        assert!(matches!(h.offer(1, "t", 0, &b), Verdict::Overflow));
        assert!(matches!(h.offer(1, "t", 0, &b), Verdict::Held));
        assert!(matches!(h.release(1, "t", 0), Released::Overflowed));
        h.drop_conn(1); // the hub closes such a connection
        h.start(2, "a");
        h.start(2, "b");
        h.drop_conn(2);
        assert!(!h.any());
    }
}
