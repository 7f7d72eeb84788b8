//! A connection's bounded outbound queue. Producers never block: a queue over its byte or frame
//! bound marks the connection as a slow consumer and schedules a close instead.

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// What happened to a pushed frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Push {
    /// The frame is queued.
    Queued,
    /// The queue overflowed: the backlog was dropped and the connection is being closed (1008).
    Overflow,
    /// The connection is closing; the frame was dropped.
    Closed,
}

struct Inner {
    frames: VecDeque<Bytes>,
    bytes: usize,
    close: Option<(u16, String)>,
}

/// Pre-encoded frames waiting for the writer, plus a pending close.
pub struct Outbox {
    inner: Mutex<Inner>,
    max_bytes: usize,
    max_frames: usize,
    /// Wakes the connection's task when frames or a close arrive.
    pub wake: Notify,
    /// Set once a close is scheduled (read without the lock).
    closing: AtomicBool,
}

impl Outbox {
    /// An empty queue with the given bounds.
    pub fn new(max_bytes: usize, max_frames: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                frames: VecDeque::new(),
                bytes: 0,
                close: None,
            }),
            max_bytes,
            max_frames,
            wake: Notify::new(),
            closing: AtomicBool::new(false),
        }
    }

    /// Queues an encoded frame, unless that would exceed the bounds.
    pub fn push(&self, frame: Bytes) -> Push {
        let mut g = self.inner.lock();
        if g.close.is_some() {
            return Push::Closed;
        }
        // A single frame larger than the byte bound is accepted into an empty queue.
        let over_bytes = g.bytes > 0 && g.bytes + frame.len() > self.max_bytes;
        if over_bytes || g.frames.len() >= self.max_frames {
            g.frames = VecDeque::new();
            g.bytes = 0;
            g.close = Some((1008, "slow consumer: outbound queue full".into()));
            self.closing.store(true, Ordering::Release);
            drop(g);
            self.wake.notify_one();
            return Push::Overflow;
        }
        let was_empty = g.frames.is_empty();
        g.bytes += frame.len();
        g.frames.push_back(frame);
        drop(g);
        if was_empty {
            self.wake.notify_one();
        }
        Push::Queued
    }

    /// Schedules a close; the first close wins. Returns whether this call scheduled it.
    pub fn close(&self, code: u16, reason: &str) -> bool {
        let mut g = self.inner.lock();
        if g.close.is_some() {
            return false;
        }
        g.close = Some((code, reason.to_string()));
        self.closing.store(true, Ordering::Release);
        drop(g);
        self.wake.notify_one();
        true
    }

    /// Whether a close is scheduled.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The scheduled close, if any.
    pub fn close_state(&self) -> Option<(u16, String)> {
        self.inner.lock().close.clone()
    }

    /// Moves every queued frame into `out`; returns the pending close, if any.
    pub fn drain(&self, out: &mut Vec<Bytes>) -> Option<(u16, String)> {
        let mut g = self.inner.lock();
        out.extend(g.frames.drain(..));
        g.bytes = 0;
        if g.frames.capacity() > 64 {
            g.frames = VecDeque::new();
        }
        g.close.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_drops_backlog_and_closes() {
        let o = Outbox::new(10, 100);
        assert_eq!(o.push(Bytes::from_static(b"12345")), Push::Queued);
        assert_eq!(o.push(Bytes::from_static(b"12345")), Push::Queued);
        assert_eq!(o.push(Bytes::from_static(b"1")), Push::Overflow);
        assert_eq!(o.push(Bytes::from_static(b"1")), Push::Closed);
        assert!(o.is_closing());
        let mut v = vec![];
        assert_eq!(o.drain(&mut v).map(|c| c.0), Some(1008));
        assert!(v.is_empty());
    }
}
