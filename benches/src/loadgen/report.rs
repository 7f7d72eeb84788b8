//! The result of a run: one JSON object plus a one-line summary.

use serde_json::{Value, json};

use super::Ctx;

/// What the tool prints on stdout.
pub struct Report {
    /// The machine-readable result.
    pub json: Value,
    /// One human-readable line.
    pub summary: String,
}

impl Report {
    /// A report for `ctx` with scenario-specific `results`.
    pub fn new(ctx: &Ctx, results: Value, summary: String) -> Self {
        let a = &ctx.args;
        let json = json!({
            "test": a.test.name(),
            "mode": a.mode.name(),
            "url": a.url,
            "params": {
                "conns": a.conns,
                "concurrency": a.concurrency,
                "messages": a.messages,
                "rate": a.rate,
                "burst": a.burst,
                "duration_s": a.duration,
                "size": a.size,
                "timeout_s": a.timeout,
                "threads": a.threads,
                "users": a.users,
                "ping": a.ping,
            },
            "timed_out": ctx.timed_out(),
            "results": results,
        });
        Self { json, summary }
    }
}

/// Rounds to 3 decimals for display in JSON.
pub fn r3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Rate per second, 0 when the window is empty.
pub fn per_sec(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}
