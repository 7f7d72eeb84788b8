//! `idle`: open N connections, hold them, and read the server's RSS before and after.

use std::time::Duration;

use serde_json::json;
use std::sync::atomic::Ordering::Relaxed;
use tokio::time::Instant;

use crate::frame::{Masker, OP_PING, encode_client};
use crate::loadgen::open::Peer;

use super::{Totals, counts_json, finish, settle};
use crate::loadgen::Ctx;
use crate::loadgen::progress;
use crate::loadgen::report::{Report, r3};
use crate::loadgen::session::Shared;
use crate::loadgen::sys::{cpu_seconds, rss_kib, self_rss_kib};

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let a = &ctx.args;
    let pid = a.server_pid;
    if pid.is_none() {
        progress::note("idle: no --server-pid given; only the load tool's own memory is reported");
    }
    let server_before = pid.and_then(rss_kib);
    if let (Some(p), None) = (pid, server_before) {
        anyhow::bail!("cannot read /proc/{p}/status");
    }
    let client_before = self_rss_kib();
    let (shared, guard, opened) = super::open_all(ctx, "idle", "connections").await;
    let n = opened.peers.len() as u64;
    let settled = !a.mode.has_join_noise() || settle(&shared, ctx.deadline).await;
    let pongs = if a.ping {
        Some(ping_all(&opened.peers, &shared, ctx.deadline).await)
    } else {
        None
    };
    let hold = Duration::from_secs_f64(a.duration);
    progress::note(format!("idle: {n} open, holding {:.1} s", a.duration));
    let cpu_before = pid.and_then(cpu_seconds);
    let held = Instant::now();
    let _ = tokio::time::timeout_at(ctx.deadline, tokio::time::sleep(hold)).await;
    let held_s = held.elapsed().as_secs_f64();
    // The server's CPU while holding idle connections (its pings and timers), in % of one core.
    let idle_cpu_pct = cpu_before
        .zip(pid.and_then(cpu_seconds))
        .map(|(b, a)| r3((a - b) * 100.0 / held_s));
    let server_after = pid.and_then(rss_kib);
    let client_after = self_rss_kib();

    let stats = finish(opened.peers, &shared).await;
    drop(guard);
    let totals = Totals::of(&stats);
    let per_conn = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(a)) if n > 0 => Some(r3((a as f64 - b as f64) / n as f64)),
        _ => None,
    };
    let server_per = per_conn(server_before, server_after);
    let client_per = per_conn(client_before, client_after);
    let results = json!({
        "connected": n,
        "connect_failures": counts_json(&opened.failures),
        "settled": settled,
        "server_pid": pid,
        "server_rss_before_kib": server_before,
        "server_rss_after_kib": server_after,
        "server_kib_per_conn": server_per,
        "server_idle_cpu_pct": idle_cpu_pct,
        "client_rss_before_kib": client_before,
        "client_rss_after_kib": client_after,
        "client_kib_per_conn": client_per,
        "pongs": pongs,
        "frames_received": totals.frames,
        "lost_while_idle": counts_json(&totals.lost),
    });
    let fmt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.2} KiB"));
    let summary = format!(
        "idle {}: {n}/{} connections held; server RSS {} -> {} KiB = {} per connection (load tool {} per connection), server CPU while idle {}% of a core, {} lost",
        a.mode.name(),
        a.conns,
        server_before.map_or("n/a".into(), |v| v.to_string()),
        server_after.map_or("n/a".into(), |v| v.to_string()),
        fmt(server_per),
        fmt(client_per),
        idle_cpu_pct.map_or("n/a".into(), |v| format!("{v:.2}")),
        totals.lost_count()
    );
    Ok(Report::new(ctx, results, summary))
}

/// Sends one ping on every connection and waits (bounded) for the pongs.
async fn ping_all(peers: &[Peer], shared: &Shared, deadline: Instant) -> u64 {
    let mut masker = Masker::new(0x9196);
    for peer in peers {
        let mut frame = Vec::with_capacity(16);
        encode_client(&mut frame, OP_PING, b"idle", masker.next_key());
        let _ = peer.writer.write_raw(&frame).await;
    }
    let limit = deadline.min(Instant::now() + Duration::from_secs(10));
    while shared.pongs.load(Relaxed) < peers.len() as u64 && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shared.pongs.load(Relaxed)
}
