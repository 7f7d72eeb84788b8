//! `throughput`: N connections each send M broadcast messages as fast as possible;
//! every connection receives every message (N × N × M deliveries).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Totals, counts_json, finish, ns_window, settle, wait_delivery};
use crate::clock::now_ns;
use crate::loadgen::Ctx;
use crate::loadgen::pace::Pacer;
use crate::loadgen::payload::MessageBuilder;
use crate::loadgen::progress;
use crate::loadgen::report::{Report, per_sec, r3};
use crate::loadgen::session::{SendStats, send_loop};

/// How long deliveries may stall before the run ends.
const QUIET: Duration = Duration::from_secs(2);

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let a = &ctx.args;
    let (shared, guard, opened) = super::open_all(ctx, "throughput", "connections").await;
    let n = opened.peers.len() as u64;
    let settled = !a.mode.has_join_noise() || settle(&shared, ctx.deadline).await;
    progress::note(format!(
        "throughput: {n} connections sending {} messages each, {} per write",
        a.messages, a.burst
    ));

    shared.expect.store(n * a.messages, Relaxed);
    let start_ns = now_ns();
    let mut senders = JoinSet::new();
    for (i, peer) in opened.peers.iter().enumerate() {
        let writer = peer.writer.clone();
        let shared = shared.clone();
        let builder = MessageBuilder::new(a.mode, a.size, i as u64 + 1);
        let pacer = Pacer::new(Instant::now(), 0.0, a.burst);
        let (total, deadline) = (a.messages, ctx.deadline);
        senders.spawn(
            async move { send_loop(writer, builder, total, pacer, deadline, &shared).await },
        );
    }
    let sends = collect(&mut senders).await;
    wait_delivery(&shared, n, QUIET, ctx.deadline).await;

    let stats = finish(opened.peers, &shared).await;
    drop(guard);
    let totals = Totals::of(&stats);
    let lat = shared.latency.snapshot().summary();
    let sent: u64 = sends.iter().map(|s| s.sent).sum();
    let send_errors = sends.iter().filter(|s| s.error.is_some()).count();
    let send_end = sends.iter().map(|s| s.last_ns).max().unwrap_or(start_ns);
    let send_window = ns_window(start_ns, send_end);
    let recv_window = ns_window(start_ns, shared.last_stamped_ns.load(Relaxed));
    let expected = sent * n;
    let ratio = if expected > 0 {
        totals.stamped as f64 / expected as f64
    } else {
        0.0
    };
    let send_rate = per_sec(sent, send_window);
    let recv_rate = per_sec(totals.stamped, recv_window);
    let results = json!({
        "connections": n,
        "connect_failures": counts_json(&opened.failures),
        "settled": settled,
        "sent": sent,
        "send_errors": send_errors,
        "send_s": r3(send_window),
        "sent_per_s": r3(send_rate),
        "received": totals.stamped,
        "expected_received": expected,
        "delivery_ratio": (ratio * 1e6).round() / 1e6,
        "receive_s": r3(recv_window),
        "received_per_s": r3(recv_rate),
        "latency": lat,
        "connections_lost": counts_json(&totals.lost),
    });
    let summary = format!(
        "throughput {}: {n} conns x {} msgs: sent {sent} at {send_rate:.0} msg/s, received {} / {expected} ({:.3}%) at {recv_rate:.0} msg/s, latency p50 {:.2} ms p99 {:.2} ms, {} lost, {send_errors} send errors",
        a.mode.name(),
        a.messages,
        totals.stamped,
        ratio * 100.0,
        lat.p50_ms,
        lat.p99_ms,
        totals.lost_count()
    );
    Ok(Report::new(ctx, results, summary))
}

/// Joins every sender.
pub(super) async fn collect(set: &mut JoinSet<SendStats>) -> Vec<SendStats> {
    let mut out = Vec::with_capacity(set.len());
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap_or_else(|_| SendStats {
            error: Some("task".into()),
            ..SendStats::default()
        }));
    }
    out
}
