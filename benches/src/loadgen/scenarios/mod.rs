//! The scenarios and the phases they share (settling, waiting for delivery, teardown).

pub mod fanout;
pub mod idle;
pub mod storm;
pub mod sustained;
pub mod throughput;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use std::sync::Arc;

use super::Ctx;
use super::open::{Opened, Peer, open_many};
use super::progress::{self, Progress};
use super::session::{End, ReadStats, Shared};

/// How long the frame counter must stay still for the server to count as settled.
const SETTLE_QUIET: Duration = Duration::from_millis(300);
/// Longest settling phase.
const SETTLE_MAX: Duration = Duration::from_secs(15);
/// How long teardown waits for reader tasks.
const JOIN_GRACE: Duration = Duration::from_secs(3);

/// Opens the run's `--conns` connections (`what` names them in the progress line), with
/// progress reporting; returns the shared counters, the progress guard and the peers.
pub async fn open_all(
    ctx: &Ctx,
    label: &'static str,
    what: &str,
) -> (Arc<Shared>, Progress, Opened) {
    let a = &ctx.args;
    let shared = Arc::new(Shared::default());
    let guard = progress::spawn(label, shared.clone(), a.conns);
    progress::note(format!(
        "{label}: opening {} {what}, {} at a time",
        a.conns, a.concurrency
    ));
    let opened = open_many(
        &ctx.opener,
        0..a.conns,
        a.concurrency,
        &shared,
        ctx.deadline,
    )
    .await;
    (shared, guard, opened)
}

/// Waits until no frames arrive for a moment (in chat mode, after the presence
/// storm of `user_joined` messages). Returns false if it never settled.
pub async fn settle(shared: &Shared, deadline: Instant) -> bool {
    let limit = deadline.min(Instant::now() + SETTLE_MAX);
    let mut last = shared.frames.load(Relaxed);
    let mut changed = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = Instant::now();
        let frames = shared.frames.load(Relaxed);
        if frames != last {
            last = frames;
            changed = now;
        } else if now - changed >= SETTLE_QUIET {
            return true;
        }
        if now >= limit {
            return false;
        }
    }
}

/// Waits until every reader has seen the expected stamped frames (or was lost),
/// or until nothing new arrived for `quiet`, or the deadline.
pub async fn wait_delivery(shared: &Shared, readers: u64, quiet: Duration, deadline: Instant) {
    let mut last = shared.stamped.load(Relaxed);
    let mut changed = Instant::now();
    loop {
        if shared.complete.load(Relaxed) + shared.lost.load(Relaxed) >= readers {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let stamped = shared.stamped.load(Relaxed);
        if stamped != last {
            last = stamped;
            changed = now;
        } else if now - changed >= quiet {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Stops every reader, collects their figures and closes the connections.
pub async fn finish(peers: Vec<Peer>, shared: &Shared) -> Vec<ReadStats> {
    shared.stop.trigger();
    let limit = Instant::now() + JOIN_GRACE;
    let mut out = Vec::with_capacity(peers.len());
    let mut writers = Vec::with_capacity(peers.len());
    for peer in peers {
        writers.push(peer.writer);
        let abort = peer.reader.abort_handle();
        match tokio::time::timeout_at(limit, peer.reader).await {
            Ok(Ok(stats)) => out.push(stats),
            _ => abort.abort(),
        }
    }
    drop(writers);
    out
}

/// Totals over reader figures.
pub struct Totals {
    /// Data frames.
    pub frames: u64,
    /// Stamped frames.
    pub stamped: u64,
    /// Readers lost, by reason.
    pub lost: BTreeMap<String, u64>,
}

impl Totals {
    /// Sums `stats`.
    pub fn of(stats: &[ReadStats]) -> Self {
        let mut t = Totals {
            frames: 0,
            stamped: 0,
            lost: BTreeMap::new(),
        };
        for s in stats {
            t.frames += s.frames;
            t.stamped += s.stamped;
            if let End::Lost(why) = &s.end {
                *t.lost.entry(why.clone()).or_default() += 1;
            }
        }
        t
    }

    /// Number of lost readers.
    pub fn lost_count(&self) -> u64 {
        self.lost.values().sum()
    }
}

/// JSON for a failures/losses map.
pub fn counts_json(map: &BTreeMap<String, u64>) -> Value {
    json!(map)
}

/// Seconds between two [`crate::clock::now_ns`] readings.
pub fn ns_window(from: u64, to: u64) -> f64 {
    to.saturating_sub(from) as f64 / 1e9
}
