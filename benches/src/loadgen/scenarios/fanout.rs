//! `fanout`: N subscribers and one publisher sending K stamped broadcast messages
//! at a controlled rate (or in bursts); subscribers measure delivery latency.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde_json::json;
use tokio::time::{Instant, timeout_at};

use super::{Totals, counts_json, finish, ns_window, settle, wait_delivery};
use crate::loadgen::Ctx;
use crate::loadgen::open::start_peer;
use crate::loadgen::pace::Pacer;
use crate::loadgen::payload::MessageBuilder;
use crate::loadgen::progress;
use crate::loadgen::report::{Report, per_sec, r3};
use crate::loadgen::session::{Shared, send_loop};
use crate::loadgen::sys::{cpu_seconds, self_cpu_seconds};

/// How long deliveries may stall before the run ends.
const QUIET: Duration = Duration::from_secs(2);

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let a = &ctx.args;
    let (shared, guard, opened) = super::open_all(ctx, "fanout", "subscribers").await;
    let subs = opened.peers.len() as u64;
    if subs == 0 {
        return Err(anyhow!("no subscriber connected: {:?}", opened.failures));
    }

    // The publisher reads too (it receives its own broadcasts), into its own counters.
    let pub_shared = Arc::new(Shared::default());
    let token = ctx
        .opener
        .token_for("publisher", u64::MAX)
        .map_err(|e| anyhow!(e))?;
    let conn = timeout_at(ctx.deadline, ctx.opener.open_publisher(token.as_deref()))
        .await
        .context("publisher connect timed out")?
        .map_err(|e| anyhow!("publisher connect: {e}"))?;
    let publisher = start_peer(conn, &pub_shared);

    let settled = !a.mode.has_join_noise() || settle(&shared, ctx.deadline).await;
    let noise_frames = shared.frames.load(Relaxed);
    progress::note(format!(
        "fanout: {subs} subscribers ready; publishing {} messages at {} msg/s, {} per write",
        a.messages,
        if a.rate > 0.0 {
            a.rate.to_string()
        } else {
            "max".into()
        },
        a.burst
    ));

    shared.expect.store(a.messages, Relaxed);
    // CPU of the server and of this tool over the publish and delivery, so the cost per
    // delivery does not depend on how fast the tool can read.
    let cpu_before = (a.server_pid.and_then(cpu_seconds), self_cpu_seconds());
    let pacer = Pacer::new(Instant::now(), a.rate, a.burst);
    let builder = MessageBuilder::new(a.mode, a.size, 0xF00D);
    let sent = send_loop(
        publisher.writer.clone(),
        builder,
        a.messages,
        pacer,
        ctx.deadline,
        &shared,
    )
    .await;
    wait_delivery(&shared, subs, QUIET, ctx.deadline).await;
    let cpu_after = (a.server_pid.and_then(cpu_seconds), self_cpu_seconds());

    let stats = finish(opened.peers, &shared).await;
    finish(vec![publisher], &pub_shared).await;
    drop(guard);
    let totals = Totals::of(&stats);
    let lat = shared.latency.snapshot().summary();
    let expected = sent.sent * subs;
    let ratio = if expected > 0 {
        totals.stamped as f64 / expected as f64
    } else {
        0.0
    };
    let window = ns_window(sent.first_ns, shared.last_stamped_ns.load(Relaxed));
    let deliveries_per_s = per_sec(totals.stamped, window);
    let publish_window = ns_window(sent.first_ns, sent.last_ns);
    let publish_rate = per_sec(sent.sent, publish_window);
    let used = |b: Option<f64>, a: Option<f64>| b.zip(a).map(|(b, a)| a - b);
    let server_cpu = used(cpu_before.0, cpu_after.0);
    let load_cpu = used(cpu_before.1, cpu_after.1);
    let per_delivery_us = |cpu: Option<f64>| {
        cpu.filter(|_| totals.stamped > 0)
            .map(|c| r3(c * 1e6 / totals.stamped as f64))
    };
    let results = json!({
        "subscribers": subs,
        "server_cpu_s": server_cpu.map(r3),
        "server_cpu_us_per_delivery": per_delivery_us(server_cpu),
        "load_cpu_s": load_cpu.map(r3),
        "load_cpu_us_per_delivery": per_delivery_us(load_cpu),
        "connect_failures": counts_json(&opened.failures),
        "settled": settled,
        "presence_frames_before_publish": noise_frames,
        "published": sent.sent,
        "publish_error": sent.error,
        "publish_s": r3(publish_window),
        "publish_rate": r3(publish_rate),
        "deliveries": totals.stamped,
        "expected_deliveries": expected,
        "delivery_ratio": (ratio * 1e6).round() / 1e6,
        "delivery_window_s": r3(window),
        "deliveries_per_s": r3(deliveries_per_s),
        "latency": lat,
        "subscribers_lost": counts_json(&totals.lost),
    });
    let summary = format!(
        "fanout {}: 1 -> {subs}, {} msgs at {:.0} msg/s -> {} / {expected} delivered ({:.3}%), {:.0} deliveries/s, latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms, {} subscribers lost; CPU per delivery: server {} us, load tool {} us",
        a.mode.name(),
        sent.sent,
        publish_rate,
        totals.stamped,
        ratio * 100.0,
        deliveries_per_s,
        lat.p50_ms,
        lat.p99_ms,
        lat.max_ms,
        totals.lost_count(),
        per_delivery_us(server_cpu).map_or("n/a".into(), |v| format!("{v:.3}")),
        per_delivery_us(load_cpu).map_or("n/a".into(), |v| format!("{v:.3}")),
    );
    Ok(Report::new(ctx, results, summary))
}
