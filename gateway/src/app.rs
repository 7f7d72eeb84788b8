//! The running gateway: configuration, plugins, hub and listeners tied together, plus the
//! graceful shutdown.

use crate::auth::Authenticator;
use crate::config::Config;
use crate::hub::Hub;
use crate::kv::Kv;
use crate::metrics::{Metrics, PluginMetrics};
use crate::plugin::{PluginEngine, PluginShared, PluginSlot, PluginVersion, load_component};
use anyhow::Context;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Shared state every request handler sees.
pub struct App {
    /// The configuration being served.
    pub config: Arc<Config>,
    /// Auth profiles.
    pub auth: Arc<Authenticator>,
    /// Connections and topics.
    pub hub: Arc<Hub>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Loaded plugins by name.
    pub plugins: BTreeMap<String, Arc<PluginSlot>>,
    /// Process start.
    pub started: Instant,
    /// Key for admin HTTP routes (`GATEWAY_ADMIN_KEY`); admin routes answer 503 without it.
    pub admin_key: Option<String>,
}

/// A started gateway.
pub struct Running {
    /// The shared state.
    pub app: Arc<App>,
    /// Bound listener addresses, in config order.
    pub addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
}

impl App {
    /// Loads every plugin of `config` and builds the shared state.
    pub async fn new(config: Config) -> anyhow::Result<Arc<App>> {
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(metrics.clone()));
        let auth = Arc::new(Authenticator::new(&config)?);
        let total: u32 = config.plugins.values().map(|p| p.max_instances).sum();
        let max_mem = config
            .plugins
            .values()
            .map(|p| p.memory_limit_mb)
            .max()
            .unwrap_or(64)
            << 20;
        // Room for a second generation of every pool during reloads.
        let pe = PluginEngine::new(
            (total * 2).max(16),
            max_mem,
            config.resolve(&config.server.cache_dir),
        )?;
        let mut plugins = BTreeMap::new();
        for (name, pc) in &config.plugins {
            let path = config.resolve(&pc.wasm);
            let pe2 = pe.clone();
            let (component, hash) =
                tokio::task::spawn_blocking(move || load_component(&pe2, &path))
                    .await?
                    .with_context(|| format!("plugin '{name}'"))?;
            let pre = PluginSlot::link(&pe.engine, &component)
                .with_context(|| format!("plugin '{name}': linking"))?;
            let version = PluginVersion {
                generation: 1,
                hash,
                pre,
                config_json: serde_json::to_string(&pc.config)?,
                memory_limit: (pc.memory_limit_mb << 20) as usize,
                call_timeout: Duration::from_millis(pc.call_timeout_ms),
            };
            let shared = Arc::new(PluginShared {
                name: Arc::from(name.as_str()),
                hub: hub.clone(),
                kv: Kv::default(),
                auth: auth.clone(),
                metrics: PluginMetrics::default(),
                timers: Default::default(),
                next_timer: AtomicU64::new(0),
                slot: Default::default(),
            });
            let slot = PluginSlot::new(shared, version, pc.max_instances, pe.engine.clone());
            slot.smoke_test(&slot.version())
                .await
                .with_context(|| format!("plugin '{name}'"))?;
            tracing::info!(plugin = %name, version = %&slot.version().hash[..12], "plugin loaded");
            plugins.insert(name.clone(), slot);
        }
        Ok(Arc::new(App {
            config: Arc::new(config),
            auth,
            hub,
            metrics,
            plugins,
            started: Instant::now(),
            admin_key: std::env::var("GATEWAY_ADMIN_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
        }))
    }

    /// Binds every listener and starts serving.
    pub async fn start(self: Arc<Self>) -> anyhow::Result<Running> {
        let (stop, stop_rx) = watch::channel(false);
        let mut addrs = Vec::new();
        for addr in &self.config.server.listen {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("listen on {addr}"))?;
            let local = l.local_addr()?;
            addrs.push(local);
            tokio::spawn(crate::server::accept_loop(self.clone(), l, stop_rx.clone()));
        }
        Ok(Running {
            app: self,
            addrs,
            stop,
        })
    }
}

impl Running {
    /// Stops accepting, closes every connection with 1001 and waits for them to drain.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let conns = self.app.hub.all();
        tracing::info!(connections = conns.len(), "shutting down");
        for c in conns {
            c.outbox.close(1001, "server shutting down");
        }
        let grace = Duration::from_millis(self.app.config.server.shutdown_grace_ms);
        let deadline = Instant::now() + grace;
        while !self.app.hub.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.app.hub.len();
        if left > 0 {
            tracing::warn!(
                connections = left,
                "shutdown grace elapsed with connections still open"
            );
        }
    }
}
