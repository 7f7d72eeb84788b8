//! `sustained`: N connections each send R messages per second for D seconds;
//! reports the achieved rate, delivery latency and errors.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::throughput::collect;
use super::{Totals, counts_json, finish, ns_window, settle, wait_delivery};
use crate::clock::now_ns;
use crate::loadgen::Ctx;
use crate::loadgen::pace::Pacer;
use crate::loadgen::payload::MessageBuilder;
use crate::loadgen::progress;
use crate::loadgen::report::{Report, per_sec, r3};
use crate::loadgen::session::send_loop;

/// How long deliveries may stall after sending ends before the run ends.
const QUIET: Duration = Duration::from_secs(1);

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let a = &ctx.args;
    let (shared, guard, opened) = super::open_all(ctx, "sustained", "connections").await;
    let n = opened.peers.len() as u64;
    let settled = !a.mode.has_join_noise() || settle(&shared, ctx.deadline).await;
    let noise = shared.frames.load(Relaxed);
    let rate = if a.rate > 0.0 { a.rate } else { 1.0 };
    progress::note(format!(
        "sustained: {n} connections x {rate} msg/s for {} s",
        a.duration
    ));

    let start = Instant::now();
    let start_ns = now_ns();
    let end_at = (start + Duration::from_secs_f64(a.duration)).min(ctx.deadline);
    let mut senders = JoinSet::new();
    for (i, peer) in opened.peers.iter().enumerate() {
        // Spread the senders' schedules over one period.
        let offset = Duration::from_secs_f64(i as f64 / n.max(1) as f64 / rate);
        let pacer = Pacer::new(start + offset, rate, a.burst);
        let writer = peer.writer.clone();
        let shared = shared.clone();
        let builder = MessageBuilder::new(a.mode, a.size, i as u64 + 1);
        senders.spawn(
            async move { send_loop(writer, builder, u64::MAX, pacer, end_at, &shared).await },
        );
    }
    let sends = collect(&mut senders).await;
    let sent: u64 = sends.iter().map(|s| s.sent).sum();
    let send_window = ns_window(start_ns, now_ns()).min(a.duration.max(1e-9));
    shared.expect.store(sent * n, Relaxed);
    wait_delivery(&shared, n, QUIET, ctx.deadline).await;

    let stats = finish(opened.peers, &shared).await;
    drop(guard);
    let totals = Totals::of(&stats);
    let lat = shared.latency.snapshot().summary();
    let send_errors: Vec<_> = sends.iter().filter_map(|s| s.error.clone()).collect();
    let expected = sent * n;
    let ratio = if expected > 0 {
        totals.stamped as f64 / expected as f64
    } else {
        0.0
    };
    let target_rate = rate * n as f64;
    let achieved = per_sec(sent, send_window);
    let delivered_rate = per_sec(totals.stamped, send_window);
    let errors =
        opened.failures.values().sum::<u64>() + totals.lost_count() + send_errors.len() as u64;
    let results = json!({
        "connections": n,
        "connect_failures": counts_json(&opened.failures),
        "settled": settled,
        "presence_frames_before_send": noise,
        "target_send_rate": r3(target_rate),
        "sent": sent,
        "send_s": r3(send_window),
        "achieved_send_rate": r3(achieved),
        "received": totals.stamped,
        "expected_received": expected,
        "delivery_ratio": (ratio * 1e6).round() / 1e6,
        "received_per_s": r3(delivered_rate),
        "latency": lat,
        "send_errors": send_errors,
        "connections_lost": counts_json(&totals.lost),
        "errors": errors,
    });
    let summary = format!(
        "sustained {}: {n} conns x {rate} msg/s for {:.1} s: sent {achieved:.0}/{target_rate:.0} msg/s, delivered {:.3}% ({delivered_rate:.0}/s), latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms, {errors} errors",
        a.mode.name(),
        send_window,
        ratio * 100.0,
        lat.p50_ms,
        lat.p99_ms,
        lat.max_ms
    );
    Ok(Report::new(ctx, results, summary))
}
