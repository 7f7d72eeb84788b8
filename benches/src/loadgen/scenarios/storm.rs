//! `storm`: open N connections as fast as possible with concurrency C.

use serde_json::json;

use super::{Totals, counts_json, finish};
use crate::loadgen::Ctx;
use crate::loadgen::report::{Report, per_sec, r3};

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let a = &ctx.args;
    let (shared, guard, opened) = super::open_all(ctx, "storm", "connections").await;
    let ok = opened.peers.len() as u64;
    let failed: u64 = opened.failures.values().sum();
    let secs = opened.elapsed.as_secs_f64();
    let lat = opened.latency.summary();
    let stats = finish(opened.peers, &shared).await;
    drop(guard);
    let totals = Totals::of(&stats);
    let rate = per_sec(ok, secs);
    let results = json!({
        "attempted": ok + failed,
        "connected": ok,
        "failed": failed,
        "failures": counts_json(&opened.failures),
        "elapsed_s": r3(secs),
        "connects_per_s": r3(rate),
        "connect_latency": lat,
        "frames_received": totals.frames,
        "lost_during_storm": counts_json(&totals.lost),
    });
    let summary = format!(
        "storm {}: {ok}/{} connected in {secs:.2} s = {rate:.0} conn/s, connect p50 {:.1} ms p99 {:.1} ms max {:.1} ms, {failed} failed",
        a.mode.name(),
        a.conns,
        lat.p50_ms,
        lat.p99_ms,
        lat.max_ms
    );
    Ok(Report::new(ctx, results, summary))
}
