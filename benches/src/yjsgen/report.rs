//! The result line of `yjs-load`: the JSON object `load.mjs` prints (same fields) and its
//! one-line human summary.

use serde_json::{Value, json};

use super::cli::num;
use crate::hist::Histogram;
use crate::loadgen::sys;

/// A reading of one server process.
#[derive(Debug, Clone)]
pub struct Proc {
    pid: u32,
    cpu_s: Option<f64>,
    rss_kb: Option<u64>,
    hwm_kb: Option<u64>,
}

/// Reads CPU time, RSS and peak RSS of `pids`.
pub fn read_procs(pids: &[u32]) -> Vec<Proc> {
    pids.iter()
        .map(|&pid| Proc {
            pid,
            cpu_s: sys::cpu_seconds(pid),
            rss_kb: sys::rss_kib(pid),
            hwm_kb: sys::hwm_kib(pid),
        })
        .collect()
}

/// Rounds to `d` decimals, as `+v.toFixed(d)` does.
pub fn round(v: f64, d: i32) -> f64 {
    let m = 10f64.powi(d);
    (v * m).round() / m
}

/// `server[]`: per process, CPU cores over `secs` and RSS before / after / peak.
pub fn summarize_procs(before: &[Proc], after: &[Proc], secs: f64) -> Vec<Value> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| match (b.cpu_s, a.cpu_s, b.rss_kb, a.rss_kb) {
            (Some(c0), Some(c1), Some(r0), Some(r1)) => json!({
                "pid": a.pid,
                "cpu_cores": num(round((c1 - c0) / secs.max(1e-9), 3)),
                "rss_kb_before": r0,
                "rss_kb_after": r1,
                "rss_kb_peak": a.hwm_kb,
            }),
            _ => json!({ "pid": a.pid, "error": format!("cannot read /proc/{}", a.pid) }),
        })
        .collect()
}

/// Milliseconds with 2 decimals, `null` when there is no value.
fn ms(us: Option<u64>) -> Value {
    us.map_or(Value::Null, |us| num(round(us as f64 / 1000.0, 2)))
}

/// `latency_ms` / `echo_latency_ms`: p50, p99 (and p999), max; nulls when empty.
pub fn latency(h: &Histogram) -> Value {
    let q = |q: f64| (h.count() > 0).then(|| h.quantile(q));
    let max = (h.count() > 0).then(|| (h.summary().max_ms * 1000.0).round() as u64);
    json!({
        "p50": ms(q(0.5)),
        "p99": ms(q(0.99)),
        "p999": ms(q(0.999)),
        "max": ms(max),
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The one-line summary of `load.mjs`' `human()`.
pub fn human(r: &Value) -> String {
    if let Some(e) = r.get("error") {
        return format!("{}: ERROR {}", text(&r["test"]), text(e));
    }
    let x = &r["results"];
    let srv: Vec<String> = x["server"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| match s.get("error") {
                    Some(e) => text(e),
                    None => format!(
                        "server cpu {} cores, rss {} kB",
                        text(&s["cpu_cores"]),
                        text(&s["rss_kb_after"])
                    ),
                })
                .collect()
        })
        .unwrap_or_default();
    let busy: Vec<String> = x["client_event_loop_utilization"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    let mut s = format!(
        "{} {}: sent {}/s, delivered {}/s, ratio {}, lost {}, latency p50 {} p99 {} max {} ms, echo p50 {} p99 {} ms, client cpu {} cores (busy {}){}, other cpu {} cores, closes {}, errors {}",
        text(&r["test"]),
        text(&r["target"]),
        text(&x["updates_sent_per_s"]),
        text(&x["deliveries_per_s"]),
        text(&x["delivery_ratio"]),
        text(&x["lost"]),
        text(&x["latency_ms"]["p50"]),
        text(&x["latency_ms"]["p99"]),
        text(&x["latency_ms"]["max"]),
        text(&x["echo_latency_ms"]["p50"]),
        text(&x["echo_latency_ms"]["p99"]),
        text(&x["client_cpu_cores"]),
        busy.join("/"),
        if srv.is_empty() {
            String::new()
        } else {
            format!(", {}", srv.join("; "))
        },
        text(&x["other_cpu_cores"]),
        text(&x["closes"]),
        text(&x["errors"]),
    );
    let (synced, clients) = (x["synced"].as_u64(), x["clients"].as_u64());
    if let (Some(a), Some(b)) = (synced, clients)
        && a < b
    {
        s.push_str(&format!(", only {a}/{b} synced"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line() {
        let r = json!({
            "test": "latency", "target": "gateway",
            "results": {
                "updates_sent_per_s": 200, "deliveries_per_s": 800, "delivery_ratio": 1, "lost": 0,
                "latency_ms": {"p50": 0.31, "p99": 1.2, "max": 3.5},
                "echo_latency_ms": {"p50": 0.3, "p99": 1.1, "max": 2},
                "client_cpu_cores": 0.05, "client_event_loop_utilization": [0.02, 0.03],
                "server": [{"pid": 1, "cpu_cores": 0.1, "rss_kb_after": 1000}, {"pid": 2, "error": "cannot read /proc/2"}],
                "other_cpu_cores": 0.01, "closes": 0, "errors": 0, "synced": 40, "clients": 50
            }
        });
        assert_eq!(
            human(&r),
            "latency gateway: sent 200/s, delivered 800/s, ratio 1, lost 0, latency p50 0.31 p99 1.2 max 3.5 ms, echo p50 0.3 p99 1.1 ms, client cpu 0.05 cores (busy 0.02/0.03), server cpu 0.1 cores, rss 1000 kB; cannot read /proc/2, other cpu 0.01 cores, closes 0, errors 0, only 40/50 synced"
        );
        assert_eq!(
            human(&json!({"test": "load", "error": "no client synced: x"})),
            "load: ERROR no client synced: x"
        );
        assert_eq!(ms(Some(1234)), json!(1.23));
        assert_eq!(ms(None), Value::Null);
    }
}
