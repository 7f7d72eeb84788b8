//! File watching for hot reload: directories (not files, since atomic saves replace files and a
//! watch on the old inode goes silent) are watched with `notify`, and bursts of events are
//! debounced into one batch of changed paths.

use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// Quiet time that ends a burst of events.
pub const DEBOUNCE: Duration = Duration::from_millis(10);
/// Longest a burst is collected before it is handed over anyway.
pub const MAX_BURST: Duration = Duration::from_millis(250);

/// A batch of changed paths and when the first change of the batch was seen.
#[derive(Debug)]
pub struct Changes {
    /// Paths reported by the OS (files inside the watched directories).
    pub paths: BTreeSet<PathBuf>,
    /// When the first event of the batch arrived.
    pub first_seen: std::time::Instant,
}

/// Watches a set of directories and yields debounced batches.
pub struct DirWatcher {
    watcher: notify::RecommendedWatcher,
    watched: BTreeSet<PathBuf>,
    rx: mpsc::Receiver<(PathBuf, std::time::Instant)>,
}

impl DirWatcher {
    /// A watcher with no directories yet.
    pub fn new() -> notify::Result<Self> {
        let (tx, rx) = mpsc::channel(4096);
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                if matches!(ev.kind, notify::EventKind::Access(_)) {
                    return;
                }
                let now = std::time::Instant::now();
                for p in ev.paths {
                    // A full channel means a burst is already pending; dropping is harmless.
                    let _ = tx.try_send((p, now));
                }
            }
        })?;
        Ok(Self {
            watcher,
            watched: BTreeSet::new(),
            rx,
        })
    }

    /// Makes the watched set exactly the parent directories of `files`.
    pub fn watch_parents<'a>(&mut self, files: impl IntoIterator<Item = &'a Path>) {
        let want: BTreeSet<PathBuf> = files
            .into_iter()
            .filter_map(|f| {
                let p = f.parent()?;
                let p = if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                };
                std::fs::canonicalize(p).ok()
            })
            .collect();
        self.watch_dirs(want, RecursiveMode::NonRecursive);
    }

    /// Makes the watched set exactly `dirs`, watched with `mode`.
    pub fn watch_dirs(&mut self, want: BTreeSet<PathBuf>, mode: RecursiveMode) {
        for old in self.watched.difference(&want) {
            let _ = self.watcher.unwatch(old);
        }
        for new in want.difference(&self.watched) {
            if let Err(e) = self.watcher.watch(new, mode) {
                tracing::warn!(dir = %new.display(), "cannot watch: {e}");
            }
        }
        self.watched = want;
    }

    /// Waits for the next debounced batch; `None` when the watcher is gone.
    pub async fn next(&mut self) -> Option<Changes> {
        let (first, first_seen) = self.rx.recv().await?;
        let mut paths = BTreeSet::from([first]);
        let deadline = tokio::time::Instant::now() + MAX_BURST;
        loop {
            let quiet = tokio::time::Instant::now() + DEBOUNCE;
            match tokio::time::timeout_at(quiet.min(deadline), self.rx.recv()).await {
                Ok(Some((p, _))) => {
                    paths.insert(p);
                }
                Ok(None) | Err(_) => break,
            }
        }
        Some(Changes { paths, first_seen })
    }
}

/// Whether `changed` names the same file as `target` (compared through canonical parents,
/// because the file itself may not exist at the moment of the event).
pub fn same_file(changed: &Path, target: &Path) -> bool {
    let canon = |p: &Path| -> Option<PathBuf> {
        let parent = p
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Some(std::fs::canonicalize(parent).ok()?.join(p.file_name()?))
    };
    match (canon(changed), canon(target)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}
