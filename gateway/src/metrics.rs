//! Process-wide counters and the Prometheus text rendering of `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds (seconds) of the plugin call latency histogram.
const BUCKETS: [f64; 12] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.0025, 0.005, 0.01, 0.05,
    0.25,
];

/// A fixed-bucket latency histogram.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: std::time::Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{b}\"}} {cum}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Relaxed) as f64 / 1e9;
        let labels = labels.trim_end_matches(',');
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Gateway-wide counters.
#[derive(Default)]
pub struct Metrics {
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Upgrades refused (auth, origin, plugin).
    pub upgrades_refused: AtomicU64,
    /// Messages received from clients.
    pub frames_in: AtomicU64,
    /// Frames queued to clients.
    pub frames_out: AtomicU64,
    /// Payload bytes received.
    pub bytes_in: AtomicU64,
    /// Bytes written to sockets.
    pub bytes_out: AtomicU64,
    /// Write system calls (batches) made by writers.
    pub write_batches: AtomicU64,
    /// Connections cut off for not reading fast enough.
    pub slow_consumer_drops: AtomicU64,
    /// Connections closed for protocol errors or oversize frames.
    pub protocol_closes: AtomicU64,
    /// Connections closed for sending faster than their message or byte rate.
    pub rate_limited: AtomicU64,
    /// Plugin versions swapped in by reloads.
    pub plugin_reloads: AtomicU64,
    /// Plugin reloads refused (bad wasm, failed init).
    pub plugin_reload_failures: AtomicU64,
    /// Config reloads refused (parse or validation errors).
    pub config_reload_failures: AtomicU64,
}

/// Counters kept per plugin.
#[derive(Default)]
pub struct PluginMetrics {
    /// Calls into the plugin.
    pub calls: AtomicU64,
    /// Calls that trapped (including deadline interrupts).
    pub traps: AtomicU64,
    /// Calls interrupted by the deadline.
    pub timeouts: AtomicU64,
    /// Faults blamed on a client that spent its share of the crash budget.
    pub blamed_faults: AtomicU64,
    /// Instances created.
    pub instantiations: AtomicU64,
    /// Call latency.
    pub latency: Histogram,
    /// Counters the plugin added with `counter-add`.
    pub custom: parking_lot::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Metrics {
    /// Renders the gateway counters followed by each plugin's.
    pub fn render<'a>(
        &self,
        plugins: impl Iterator<Item = (&'a str, &'a PluginMetrics, bool)>,
    ) -> String {
        let mut out = String::with_capacity(4096);
        let g = |out: &mut String, name: &str, kind: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Relaxed)
            );
        };
        g(
            &mut out,
            "gateway_connections_open",
            "gauge",
            "WebSocket connections open now.",
            &self.connections_open,
        );
        g(
            &mut out,
            "gateway_connections_total",
            "counter",
            "WebSocket connections accepted.",
            &self.connections_total,
        );
        g(
            &mut out,
            "gateway_upgrades_refused_total",
            "counter",
            "WebSocket upgrades refused.",
            &self.upgrades_refused,
        );
        g(
            &mut out,
            "gateway_frames_in_total",
            "counter",
            "Messages received from clients.",
            &self.frames_in,
        );
        g(
            &mut out,
            "gateway_frames_out_total",
            "counter",
            "Frames queued to clients.",
            &self.frames_out,
        );
        g(
            &mut out,
            "gateway_bytes_in_total",
            "counter",
            "Payload bytes received from clients.",
            &self.bytes_in,
        );
        g(
            &mut out,
            "gateway_bytes_out_total",
            "counter",
            "Bytes written to client sockets.",
            &self.bytes_out,
        );
        g(
            &mut out,
            "gateway_write_batches_total",
            "counter",
            "Socket writes (each may carry many frames).",
            &self.write_batches,
        );
        g(
            &mut out,
            "gateway_slow_consumer_drops_total",
            "counter",
            "Connections cut off as slow consumers.",
            &self.slow_consumer_drops,
        );
        g(
            &mut out,
            "gateway_protocol_closes_total",
            "counter",
            "Connections closed for protocol violations or oversize messages.",
            &self.protocol_closes,
        );
        g(
            &mut out,
            "gateway_rate_limited_total",
            "counter",
            "Connections closed (1008) for sending faster than max_messages_per_s or max_bytes_per_s.",
            &self.rate_limited,
        );
        g(
            &mut out,
            "gateway_plugin_reloads_total",
            "counter",
            "Plugin versions swapped in by hot reload.",
            &self.plugin_reloads,
        );
        g(
            &mut out,
            "gateway_plugin_reload_failures_total",
            "counter",
            "Plugin reloads refused.",
            &self.plugin_reload_failures,
        );
        g(
            &mut out,
            "gateway_config_reload_failures_total",
            "counter",
            "Config reloads refused.",
            &self.config_reload_failures,
        );
        let plugins: Vec<_> = plugins.collect();
        let fam = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        fam(
            &mut out,
            "gateway_plugin_disabled",
            "gauge",
            "1 when a plugin spent its crash budget.",
        );
        for (p, _, disabled) in &plugins {
            let _ = writeln!(
                out,
                "gateway_plugin_disabled{{plugin=\"{p}\"}} {}",
                u8::from(*disabled)
            );
        }
        fam(
            &mut out,
            "gateway_plugin_calls_total",
            "counter",
            "Calls into plugins.",
        );
        for (p, m, _) in &plugins {
            let _ = writeln!(
                out,
                "gateway_plugin_calls_total{{plugin=\"{p}\"}} {}",
                m.calls.load(Relaxed)
            );
        }
        fam(
            &mut out,
            "gateway_plugin_traps_total",
            "counter",
            "Plugin calls that trapped or ran past their deadline.",
        );
        for (p, m, _) in &plugins {
            let _ = writeln!(
                out,
                "gateway_plugin_traps_total{{plugin=\"{p}\"}} {}",
                m.traps.load(Relaxed)
            );
        }
        fam(
            &mut out,
            "gateway_plugin_timeouts_total",
            "counter",
            "Plugin calls interrupted by their deadline.",
        );
        for (p, m, _) in &plugins {
            let _ = writeln!(
                out,
                "gateway_plugin_timeouts_total{{plugin=\"{p}\"}} {}",
                m.timeouts.load(Relaxed)
            );
        }
        fam(
            &mut out,
            "gateway_plugin_blamed_faults_total",
            "counter",
            "Plugin faults blamed on a client past its share of the crash budget (not counted against the plugin).",
        );
        for (p, m, _) in &plugins {
            let _ = writeln!(
                out,
                "gateway_plugin_blamed_faults_total{{plugin=\"{p}\"}} {}",
                m.blamed_faults.load(Relaxed)
            );
        }
        fam(
            &mut out,
            "gateway_plugin_instantiations_total",
            "counter",
            "Plugin instances created.",
        );
        for (p, m, _) in &plugins {
            let _ = writeln!(
                out,
                "gateway_plugin_instantiations_total{{plugin=\"{p}\"}} {}",
                m.instantiations.load(Relaxed)
            );
        }
        fam(
            &mut out,
            "gateway_plugin_call_seconds",
            "histogram",
            "Plugin call latency.",
        );
        for (p, m, _) in &plugins {
            m.latency.render(
                &mut out,
                "gateway_plugin_call_seconds",
                &format!("plugin=\"{p}\","),
            );
        }
        fam(
            &mut out,
            "gateway_plugin_counter_total",
            "counter",
            "Counters added by plugins.",
        );
        for (p, m, _) in &plugins {
            for (k, v) in m.custom.lock().iter() {
                let _ = writeln!(
                    out,
                    "gateway_plugin_counter_total{{plugin=\"{p}\",name=\"{}\"}} {v}",
                    k.replace(['"', '\\', '\n'], "_")
                );
            }
        }
        out
    }
}
