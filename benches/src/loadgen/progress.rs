//! Once-a-second progress lines on stderr.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::session::Shared;

/// Stops the progress printer when dropped.
pub struct Progress(JoinHandle<()>);

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Prints `shared`'s counters to stderr every second until the guard is dropped.
pub fn spawn(label: &'static str, shared: Arc<Shared>, conns: usize) -> Progress {
    let start = Instant::now();
    Progress(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            eprintln!(
                "[{label} {:5.1}s] connected {}/{conns} failed {} lost {} sent {} frames {} stamped {}",
                start.elapsed().as_secs_f64(),
                shared.connected.load(Relaxed),
                shared.failed.load(Relaxed),
                shared.lost.load(Relaxed),
                shared.sent.load(Relaxed),
                shared.frames.load(Relaxed),
                shared.stamped.load(Relaxed),
            );
        }
    }))
}

/// A progress note on stderr.
pub fn note(msg: impl AsRef<str>) {
    eprintln!("{}", msg.as_ref());
}
