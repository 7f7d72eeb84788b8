//! `storm`: open N connections as fast as possible with concurrency C.

use serde_json::json;

use super::{Totals, counts_json, finish};
use crate::loadgen::Ctx;
use crate::loadgen::report::{Report, per_sec, r3};
use crate::loadgen::sys::{cpu_seconds, self_cpu_seconds};

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let a = &ctx.args;
    let cpu = || (a.server_pid.and_then(cpu_seconds), self_cpu_seconds());
    let cpu_before = cpu();
    let (shared, guard, opened) = super::open_all(ctx, "storm", "connections").await;
    let cpu_after = cpu();
    let ok = opened.peers.len() as u64;
    // CPU per accepted connection (handshake, token, greeting): a figure that does not depend
    // on how fast the tool connects.
    let per_conn_us = |b: Option<f64>, a: Option<f64>| {
        b.zip(a)
            .filter(|_| ok > 0)
            .map(|(b, a)| r3((a - b) * 1e6 / ok as f64))
    };
    let server_us = per_conn_us(cpu_before.0, cpu_after.0);
    let load_us = per_conn_us(cpu_before.1, cpu_after.1);
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
        "server_cpu_us_per_conn": server_us,
        "load_cpu_us_per_conn": load_us,
        "frames_received": totals.frames,
        "lost_during_storm": counts_json(&totals.lost),
    });
    let summary = format!(
        "storm {}: {ok}/{} connected in {secs:.2} s = {rate:.0} conn/s, connect p50 {:.1} ms p99 {:.1} ms max {:.1} ms, {failed} failed, server CPU {} µs per connection",
        a.mode.name(),
        a.conns,
        lat.p50_ms,
        lat.p99_ms,
        lat.max_ms,
        server_us.map_or("n/a".into(), |v| format!("{v:.1}")),
    );
    Ok(Report::new(ctx, results, summary))
}
