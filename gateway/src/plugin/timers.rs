//! A plugin's pending timers. A timer that fires sends its token into a bounded channel; the
//! plugin's slot drains that channel and calls `on-timer`, so the host imports that set timers
//! never need to know the slot.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::sync::mpsc;

/// Most pending timers per plugin.
pub const MAX_TIMERS: usize = 100_000;
/// Fired timers waiting for their `on-timer` call; a full channel holds back further firings.
const FIRED_QUEUE: usize = 1024;

/// Pending timers of one plugin and the sending side of its fired-timer channel.
pub struct Timers {
    pending: Mutex<HashMap<u64, tokio::task::AbortHandle>>,
    next: AtomicU64,
    fired: mpsc::Sender<String>,
}

impl Timers {
    /// An empty set, and the receiver that yields the token of every timer as it fires.
    pub fn new() -> (Self, mpsc::Receiver<String>) {
        let (fired, rx) = mpsc::channel(FIRED_QUEUE);
        let timers = Self {
            pending: Mutex::default(),
            next: AtomicU64::new(0),
            fired,
        };
        (timers, rx)
    }

    /// Fires `token` after `delay`; returns the timer id, or 0 when the limit is reached.
    pub fn set(self: &Arc<Self>, delay: Duration, token: String) -> u64 {
        let id = self.next.fetch_add(1, Relaxed) + 1;
        let mut pending = self.pending.lock();
        if pending.len() >= MAX_TIMERS {
            return 0;
        }
        let me = Arc::downgrade(self);
        let handle = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let Some(me) = me.upgrade() else { return };
            me.pending.lock().remove(&id);
            let fired = me.fired.clone();
            drop(me);
            let _ = fired.send(token).await;
        });
        pending.insert(id, handle.abort_handle());
        id
    }

    /// Cancels a pending timer; returns whether it was still pending.
    pub fn cancel(&self, id: u64) -> bool {
        match self.pending.lock().remove(&id) {
            Some(h) => {
                h.abort();
                true
            }
            None => false,
        }
    }
}

impl Drop for Timers {
    fn drop(&mut self) {
        for (_, h) in self.pending.get_mut().drain() {
            h.abort();
        }
    }
}
