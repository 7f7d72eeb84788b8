//! The topics this instance has local members for, as the bus subscriber needs them: the whole
//! set after a (re)connect, and what changed since it last looked otherwise.

use crate::hub::TopicInterest;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::Notify;

/// Wanted topics plus the ones whose state changed since the last [`Interest::changes`].
#[derive(Default)]
pub struct Interest {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    wanted: HashSet<Arc<str>>,
    dirty: HashSet<Arc<str>>,
}

impl Interest {
    /// Every wanted topic; pending changes are folded into it.
    pub fn all(&self) -> Vec<Arc<str>> {
        let mut s = self.state.lock();
        s.dirty.clear();
        s.wanted.iter().cloned().collect()
    }

    /// Topics changed since the last call, each with whether it is wanted now.
    pub fn changes(&self) -> Vec<(Arc<str>, bool)> {
        let mut s = self.state.lock();
        let dirty = std::mem::take(&mut s.dirty);
        dirty
            .into_iter()
            .map(|t| {
                let wanted = s.wanted.contains(&t);
                (t, wanted)
            })
            .collect()
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
        let mut c = i.changes();
        c.sort();
        assert_eq!(c, vec![(Arc::from("a"), true), (Arc::from("b"), false)]);
        assert!(i.changes().is_empty());
        i.changed("c", true);
        let mut all = i.all();
        all.sort();
        assert_eq!(all, vec![Arc::from("a"), Arc::from("c")]);
        assert!(i.changes().is_empty());
    }
}
