//! The topics this instance has local members for, as the bus subscriber needs them: the whole
//! set after a (re)connect, and what changed since it last looked otherwise.

use crate::hub::TopicInterest;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Wanted topics plus the ones whose state changed since the last [`Interest::changes`], and
/// how far the subscriber has caught up with them.
pub struct Interest {
    state: Mutex<State>,
    changed: Notify,
    /// The last change version the subscriber has applied (Redis acknowledged it).
    applied: watch::Sender<u64>,
}

impl Default for Interest {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            changed: Notify::new(),
            applied: watch::Sender::new(0),
        }
    }
}

#[derive(Default)]
struct State {
    wanted: HashSet<Arc<str>>,
    dirty: HashSet<Arc<str>>,
    /// Bumped on every change.
    version: u64,
}

impl Interest {
    /// Every wanted topic, and the version it reflects; pending changes are folded into it.
    pub fn all(&self) -> (Vec<Arc<str>>, u64) {
        let mut s = self.state.lock();
        s.dirty.clear();
        (s.wanted.iter().cloned().collect(), s.version)
    }

    /// Topics changed since the last call, each with whether it is wanted now, and the version
    /// they bring the subscriber to.
    pub fn changes(&self) -> (Vec<(Arc<str>, bool)>, u64) {
        let mut s = self.state.lock();
        let dirty = std::mem::take(&mut s.dirty);
        let list = dirty
            .into_iter()
            .map(|t| {
                let wanted = s.wanted.contains(&t);
                (t, wanted)
            })
            .collect();
        (list, s.version)
    }

    /// The subscriber applied everything up to `version`.
    pub fn applied(&self, version: u64) {
        self.applied.send_if_modified(|v| {
            let newer = version > *v;
            if newer {
                *v = version;
            }
            newer
        });
    }

    /// Waits (at most `limit`) until the subscriber has applied every change made so far, so
    /// a topic that just gained its first local member receives what is published after this
    /// returns.
    pub async fn settled(&self, limit: Duration) {
        let target = self.state.lock().version;
        let mut rx = self.applied.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|v| *v >= target)).await;
    }

    /// Waits until something changed (returns at once if it did since the last wait).
    pub async fn wait(&self) {
        self.changed.notified().await;
    }
}

impl TopicInterest for Interest {
    fn changed(&self, topic: &str, interested: bool) {
        let mut s = self.state.lock();
        let changed = if interested {
            !s.wanted.contains(topic) && s.wanted.insert(Arc::from(topic))
        } else {
            s.wanted.remove(topic)
        };
        if changed {
            s.version += 1;
            s.dirty.insert(Arc::from(topic));
            drop(s);
            self.changed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_changes() {
        let i = Interest::default();
        i.changed("a", true);
        i.changed("b", true);
        i.changed("b", false);
        i.changed("a", true);
        let (mut c, version) = i.changes();
        assert_eq!(version, 3, "a repeated wish is not a change");
        c.sort();
        assert_eq!(c, vec![(Arc::from("a"), true), (Arc::from("b"), false)]);
        assert!(i.changes().0.is_empty());
        i.changed("c", true);
        let mut all = i.all().0;
        all.sort();
        assert_eq!(all, vec![Arc::from("a"), Arc::from("c")]);
        assert!(i.changes().0.is_empty());
    }
}
