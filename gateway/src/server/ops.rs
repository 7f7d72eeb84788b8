//! Operator endpoints: `/health` (JSON) and `/metrics` (Prometheus text).

use super::request::{Body, json};
use crate::app::{App, Live};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use std::sync::atomic::Ordering::Relaxed;

pub async fn health(app: &App, live: &Live) -> Response<Body> {
    let b = &app.backends;
    let streams = b.streams.stats(&b.prefixes).await;
    let worker = b.worker.as_ref().map(|w| {
        serde_json::json!({
            "compactions": w.stats.compactions.load(Relaxed),
            "persisted": w.stats.persisted.load(Relaxed),
            "streams_deleted": w.stats.streams_deleted.load(Relaxed),
            "errors": w.stats.errors.load(Relaxed),
        })
    });
    let plugins: serde_json::Map<String, serde_json::Value> = live
        .plugins
        .iter()
        .map(|(name, slot)| (name.clone(), plugin_summary(slot)))
        .collect();
    json(
        StatusCode::OK,
        serde_json::json!({
            "status": if live.plugins.values().any(|p| p.is_disabled()) { "degraded" } else { "ok" },
            "version": crate::VERSION,
            "commit": crate::COMMIT,
            "uptime_seconds": app.started.elapsed().as_secs(),
            "config": app.config_status(),
            "connections": app.hub.len(),
            "cluster": app.cluster.health(),
            "plugins": plugins,
            "streams": streams,
            "worker": worker,
        }),
    )
}

/// One plugin's version, state and fault counters, as `/health` and the admin page show them.
pub fn plugin_summary(slot: &crate::plugin::PluginSlot) -> serde_json::Value {
    let v = slot.version();
    let s = slot.status();
    let m = &slot.shared.metrics;
    serde_json::json!({
        "version": &v.hash[..12.min(v.hash.len())],
        "generation": v.generation,
        "state": s.state,
        "last_error": s.last_error,
        "calls": m.calls.load(Relaxed),
        "traps": m.traps.load(Relaxed),
        "recent_faults": s.recent_faults,
        "reloads": s.reloads,
        "last_reload_ms": s.last_reload_ms,
    })
}

/// `/health` while the gateway drains: 503, so load balancers stop sending new clients.
pub fn draining() -> Response<Body> {
    json(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({ "status": "draining" }),
    )
}

pub async fn metrics(app: &App, live: &Live) -> Response<Body> {
    use std::fmt::Write;
    let mut text = app.metrics.render(
        live.plugins
            .iter()
            .map(|(n, s)| (n.as_str(), &s.shared.metrics, s.is_disabled())),
    );
    let _ = writeln!(
        text,
        "# HELP gateway_build_info The gateway's version and commit (always 1).\n# TYPE gateway_build_info gauge\ngateway_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        crate::VERSION,
        crate::COMMIT.unwrap_or("unknown")
    );
    let b = &app.backends;
    let st = b.streams.stats(&b.prefixes).await;
    let _ = writeln!(
        text,
        "# HELP gateway_worker_queue Compaction tasks on the worker queues.\n# TYPE gateway_worker_queue gauge\ngateway_worker_queue{{backend=\"{}\"}} {}",
        st.backend, st.worker_queue
    );
    let _ = writeln!(
        text,
        "# HELP gateway_task_panics_total Background tasks that panicked (restarted when they can be).\n# TYPE gateway_task_panics_total counter\ngateway_task_panics_total {}",
        crate::supervise::panics()
    );
    if let crate::streams::Streams::Redis(r) = &b.streams {
        let _ = writeln!(
            text,
            "# HELP gateway_redis_data_losses_total Times Redis was found to have lost its data (stream clients were asked to re-sync).\n# TYPE gateway_redis_data_losses_total counter\ngateway_redis_data_losses_total {}",
            r.data_losses.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        text,
        "# HELP gateway_stream_log_errors_total Stream log writes, syncs and rewrites that failed, and damaged logs replayed.\n# TYPE gateway_stream_log_errors_total counter\ngateway_stream_log_errors_total {}",
        crate::streams::log::errors()
    );
    let _ = writeln!(
        text,
        "# HELP gateway_bound_streams Streams tailed for local subscribers.\n# TYPE gateway_bound_streams gauge\ngateway_bound_streams {}",
        b.streams.tailer().len()
    );
    if let Some(s) = app.cluster.stats() {
        for (name, kind, help, v) in [
            (
                "bus_published_total",
                "counter",
                "Messages published to other instances.",
                &s.published,
            ),
            (
                "bus_received_total",
                "counter",
                "Messages received from other instances.",
                &s.received,
            ),
            (
                "bus_dropped_total",
                "counter",
                "Messages for other instances dropped (queue full or redis unavailable).",
                &s.dropped,
            ),
            (
                "bus_channels",
                "gauge",
                "PUB/SUB channels this instance listens on.",
                &s.channels,
            ),
            (
                "bus_connects_total",
                "counter",
                "Times the bus subscriber connection was established.",
                &s.connects,
            ),
        ] {
            let _ = writeln!(
                text,
                "# HELP gateway_{name} {help}\n# TYPE gateway_{name} {kind}\ngateway_{name} {}",
                v.load(Relaxed)
            );
        }
    }
    if let Some(w) = &b.worker {
        for (name, help, v) in [
            (
                "compactions",
                "Compaction rounds run.",
                &w.stats.compactions,
            ),
            (
                "persisted",
                "Documents written to storage.",
                &w.stats.persisted,
            ),
            (
                "streams_deleted",
                "Empty streams deleted.",
                &w.stats.streams_deleted,
            ),
            ("errors", "Failed compactions.", &w.stats.errors),
        ] {
            let _ = writeln!(
                text,
                "# HELP gateway_worker_{name}_total {help}\n# TYPE gateway_worker_{name}_total counter\ngateway_worker_{name}_total {}",
                v.load(Relaxed)
            );
        }
    }
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}
