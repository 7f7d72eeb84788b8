//! The running gateway: the live configuration (config, auth, plugins) behind one atomic
//! pointer, the reload that replaces it without dropping connections, listeners and shutdown.

use crate::auth::Authenticator;
use crate::config::{Config, PluginConfig, RouteKind};
use crate::hub::Hub;
use crate::kv::Kv;
use crate::metrics::{Metrics, PluginMetrics};
use crate::plugin::{PluginEngine, PluginShared, PluginSlot, PluginVersion, load_component};
use anyhow::Context;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// What requests are served with; replaced as a whole on reload.
pub struct Live {
    /// The configuration.
    pub config: Arc<Config>,
    /// Auth profiles built from it.
    pub auth: Arc<Authenticator>,
    /// Loaded plugins by name.
    pub plugins: BTreeMap<String, Arc<PluginSlot>>,
}

/// The state of the configuration file as shown on `/health`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ConfigStatus {
    /// The file being served.
    pub path: Option<String>,
    /// Bumped on every configuration applied.
    pub generation: u64,
    /// Why the last reload was refused (`file:line:col: message`), if it was.
    pub last_error: Option<String>,
    #[serde(skip)]
    text_hash: Option<String>,
    /// Plugin files a refused config is waiting for: their change triggers a retry.
    #[serde(skip)]
    pending_files: Vec<PathBuf>,
}

/// Shared state every request handler sees.
pub struct App {
    live: ArcSwap<Live>,
    /// Connections and topics.
    pub hub: Arc<Hub>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Process start.
    pub started: Instant,
    /// Key for admin HTTP routes (`GATEWAY_ADMIN_KEY`); admin routes answer 503 without it.
    pub admin_key: Option<String>,
    /// Streams, storage and the compaction worker.
    pub backends: crate::backends::Backends,
    engine: PluginEngine,
    config_path: Option<PathBuf>,
    config_status: Mutex<ConfigStatus>,
    reload_lock: tokio::sync::Mutex<()>,
}

/// A started gateway.
pub struct Running {
    /// The shared state.
    pub app: Arc<App>,
    /// Bound listener addresses, in config order.
    pub addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
}

/// Outcome of one reload.
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// Plugins that now serve a new version.
    pub reloaded: Vec<String>,
    /// Plugins added or removed.
    pub added: Vec<String>,
    /// Plugins removed.
    pub removed: Vec<String>,
    /// Connections closed because their route or plugin went away.
    pub closed: usize,
    /// Errors (the affected part kept its previous state).
    pub errors: Vec<String>,
}

fn file_hash(path: &Path) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|b| hex::encode(Sha256::digest(b)))
}

impl App {
    /// Loads every plugin of `config` and builds the shared state. `config_path` is the file
    /// reloads re-read (none for configs built in memory).
    pub async fn new(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<Arc<App>> {
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(metrics.clone()));
        let auth = Arc::new(Authenticator::new(&config)?);
        let backends = crate::backends::Backends::open(&config, false).await?;
        let total: u32 = config.plugins.values().map(|p| p.max_instances).sum();
        // Room for old and new generations during reloads, and for plugins added later.
        let engine = PluginEngine::new(
            (total * 4).max(256),
            config.resolve(&config.server.cache_dir),
        )?;
        let app = App {
            live: ArcSwap::from_pointee(Live {
                config: Arc::new(config.clone()),
                auth: auth.clone(),
                plugins: BTreeMap::new(),
            }),
            hub,
            metrics,
            started: Instant::now(),
            admin_key: std::env::var("GATEWAY_ADMIN_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
            backends,
            engine,
            config_status: Mutex::new(ConfigStatus {
                path: config_path.as_ref().map(|p| p.display().to_string()),
                generation: 1,
                last_error: None,
                text_hash: config_path.as_deref().and_then(file_hash),
                pending_files: Vec::new(),
            }),
            config_path,
            reload_lock: tokio::sync::Mutex::new(()),
        };
        let mut plugins = BTreeMap::new();
        for (name, pc) in &config.plugins {
            let version = app.build_version(name, pc, &config, 1).await?;
            let slot = PluginSlot::new(
                app.new_shared(name, &auth),
                version,
                app.engine.engine.clone(),
            );
            slot.smoke_test(&slot.version())
                .await
                .with_context(|| format!("plugin '{name}'"))?;
            tracing::info!(plugin = %name, version = %&slot.version().hash[..12], "plugin loaded");
            plugins.insert(name.clone(), slot);
        }
        app.live.store(Arc::new(Live {
            config: Arc::new(config),
            auth,
            plugins,
        }));
        Ok(Arc::new(app))
    }

    /// What requests are served with right now.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// The configuration file's state.
    pub fn config_status(&self) -> ConfigStatus {
        self.config_status.lock().clone()
    }

    /// Every file whose change should trigger a reload: the config and each plugin's wasm.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let live = self.live();
        let mut v: Vec<PathBuf> = live
            .config
            .plugins
            .values()
            .map(|p| live.config.resolve(&p.wasm))
            .collect();
        v.extend(self.config_path.clone());
        v.extend(self.config_status.lock().pending_files.iter().cloned());
        v
    }

    fn new_shared(&self, name: &str, auth: &Arc<Authenticator>) -> Arc<PluginShared> {
        Arc::new(PluginShared {
            name: Arc::from(name),
            hub: self.hub.clone(),
            kv: Kv::default(),
            auth: ArcSwap::new(auth.clone()),
            metrics: PluginMetrics::default(),
            timers: Default::default(),
            next_timer: AtomicU64::new(0),
            slot: Default::default(),
            streams: self.backends.streams.clone(),
            storage: self.backends.storage.clone(),
        })
    }

    async fn build_version(
        &self,
        name: &str,
        pc: &PluginConfig,
        cfg: &Config,
        generation: u64,
    ) -> anyhow::Result<PluginVersion> {
        let path = cfg.resolve(&pc.wasm);
        let pe = self.engine.clone();
        let (component, hash) = tokio::task::spawn_blocking(move || load_component(&pe, &path))
            .await?
            .with_context(|| format!("plugin '{name}'"))?;
        let pre = PluginSlot::link(&self.engine.engine, &component)
            .with_context(|| format!("plugin '{name}': linking"))?;
        let mut source = pc.clone();
        source.wasm = cfg.resolve(&pc.wasm);
        Ok(PluginVersion {
            generation,
            hash,
            pre,
            config_json: serde_json::to_string(&pc.config)?,
            memory_limit: (pc.memory_limit_mb << 20) as usize,
            call_timeout: Duration::from_millis(pc.call_timeout_ms),
            permits: Arc::new(Semaphore::new(pc.max_instances as usize)),
            faults: pc.faults,
            source,
        })
    }

    /// Re-reads the config file and every plugin's wasm and applies what changed. A config that
    /// fails to parse or validate, or whose plugins fail to load, is refused as a whole and the
    /// previous one keeps serving; a wasm that fails to load keeps its previous version.
    /// `since` is when the triggering file change was seen, for the latency log.
    pub async fn reload(&self, since: Instant) -> ReloadReport {
        let _guard = self.reload_lock.lock().await;
        let mut report = ReloadReport::default();
        let cur = self.live();
        let mut next_cfg = None;
        if let Some(path) = &self.config_path {
            let hash = file_hash(path);
            let changed = hash != self.config_status.lock().text_hash;
            tracing::debug!(changed, "config file checked");
            if changed {
                match Config::load(path)
                    .map_err(anyhow::Error::from)
                    .and_then(|c| {
                        let auth = Authenticator::new(&c)?;
                        Ok((c, auth))
                    }) {
                    Ok((c, auth)) => next_cfg = Some((c, Arc::new(auth), hash)),
                    Err(e) => {
                        let msg = format!("{e:#}");
                        tracing::error!("config rejected, previous config keeps serving: {msg}");
                        self.metrics
                            .config_reload_failures
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let mut st = self.config_status.lock();
                        st.last_error = Some(msg.clone());
                        // Forget the served file's hash: whatever comes next is read again,
                        // even if it is the old text restored.
                        st.text_hash = None;
                        report.errors.push(msg);
                    }
                }
            }
        }
        let config_changed = next_cfg.is_some();
        let (cfg, auth) = match &next_cfg {
            Some((c, a, _)) => (Arc::new(c.clone()), a.clone()),
            None => (cur.config.clone(), cur.auth.clone()),
        };
        // Build every new or changed plugin version before touching what serves.
        let mut swaps = Vec::new();
        let mut plugins = BTreeMap::new();
        for (name, pc) in &cfg.plugins {
            let path = cfg.resolve(&pc.wasm);
            let existing = cur.plugins.get(name);
            let mut wanted = pc.clone();
            wanted.wasm = path.clone();
            if let Some(slot) = existing {
                let v = slot.version();
                if v.source == wanted && file_hash(&path).as_deref() == Some(v.hash.as_str()) {
                    plugins.insert(name.clone(), slot.clone());
                    continue;
                }
            }
            let generation = existing.map_or(1, |s| s.version().generation + 1);
            let built = match self.build_version(name, pc, &cfg, generation).await {
                Ok(v) => match existing {
                    Some(slot) => slot
                        .smoke_test(&v)
                        .await
                        .map(|_| v)
                        .map_err(anyhow::Error::from),
                    None => Ok(v),
                },
                Err(e) => Err(e),
            };
            match (built, existing) {
                (Ok(v), Some(slot)) => {
                    swaps.push((slot.clone(), v));
                    plugins.insert(name.clone(), slot.clone());
                }
                (Ok(v), None) => {
                    let slot = PluginSlot::new(
                        self.new_shared(name, &auth),
                        v,
                        self.engine.engine.clone(),
                    );
                    match slot.smoke_test(&slot.version()).await {
                        Ok(()) => {
                            report.added.push(name.clone());
                            plugins.insert(name.clone(), slot);
                        }
                        Err(e) => report.errors.push(format!("plugin '{name}': {e}")),
                    }
                }
                (Err(e), existing) => {
                    let msg = format!("{e:#}");
                    tracing::error!(plugin = %name, "reload failed, previous version keeps serving: {msg}");
                    self.metrics
                        .plugin_reload_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if let Some(slot) = existing {
                        slot.set_error(format!("reload failed: {msg}"));
                        plugins.insert(name.clone(), slot.clone());
                    }
                    report.errors.push(msg);
                }
            }
        }
        if config_changed && !report.errors.is_empty() {
            // A new config is all or nothing.
            let msg = format!("config rejected: {}", report.errors.join("; "));
            tracing::error!("{msg}; previous config keeps serving");
            let mut st = self.config_status.lock();
            st.last_error = Some(msg);
            st.text_hash = None;
            // Retry when one of the new config's plugin files changes.
            st.pending_files = cfg.plugins.values().map(|p| cfg.resolve(&p.wasm)).collect();
            return report;
        }
        let latency = since.elapsed();
        for (slot, v) in swaps {
            tracing::info!(
                plugin = %slot.shared.name,
                generation = v.generation,
                version = %&v.hash[..12],
                latency_ms = latency.as_secs_f64() * 1000.0,
                "plugin reloaded: new events use the new version"
            );
            report.reloaded.push(slot.shared.name.to_string());
            slot.swap(v, Some(latency));
        }
        self.metrics.plugin_reloads.fetch_add(
            report.reloaded.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        report.removed = cur
            .plugins
            .keys()
            .filter(|k| !plugins.contains_key(*k))
            .cloned()
            .collect();
        for slot in plugins.values() {
            slot.shared.auth.store(auth.clone());
        }
        self.live.store(Arc::new(Live {
            config: cfg.clone(),
            auth,
            plugins,
        }));
        if let Some((_, _, hash)) = next_cfg {
            let mut st = self.config_status.lock();
            st.generation += 1;
            st.last_error = None;
            st.text_hash = hash;
            st.pending_files.clear();
            if cur.config.server.listen != cfg.server.listen {
                tracing::warn!("listener changes take effect after a restart");
            }
            tracing::info!(
                generation = st.generation,
                latency_ms = latency.as_secs_f64() * 1000.0,
                "config applied"
            );
        }
        // Connections whose route or plugin is gone are told to reconnect elsewhere.
        for conn in self.hub.all() {
            let kept = cfg.routes.iter().any(|r| {
                r.kind == RouteKind::Websocket
                    && *r.path == *conn.route
                    && *r.plugin == *conn.plugin
            }) && cfg.plugins.contains_key(&*conn.plugin);
            if !kept
                && conn
                    .outbox
                    .close(1012, "route removed by a configuration change")
            {
                report.closed += 1;
            }
        }
        report
    }

    /// Binds every listener and starts serving.
    pub async fn start(self: Arc<Self>) -> anyhow::Result<Running> {
        let (stop, stop_rx) = watch::channel(false);
        let mut addrs = Vec::new();
        for addr in &self.live().config.server.listen {
            let l = listen(*addr).with_context(|| format!("listen on {addr}"))?;
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

    /// Watches the config file and plugin files and reloads on change, until the app is dropped.
    pub fn spawn_watcher(self: &Arc<Self>) -> anyhow::Result<()> {
        let mut watcher = crate::watch::DirWatcher::new()?;
        let files = self.watched_files();
        watcher.watch_parents(files.iter().map(PathBuf::as_path));
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(changes) = watcher.next().await {
                let Some(app) = weak.upgrade() else { return };
                let files = app.watched_files();
                let relevant = changes
                    .paths
                    .iter()
                    .any(|p| files.iter().any(|f| crate::watch::same_file(p, f)));
                if relevant {
                    let report = app.reload(changes.first_seen).await;
                    tracing::debug!(?report, "reload finished");
                    let files = app.watched_files();
                    watcher.watch_parents(files.iter().map(PathBuf::as_path));
                }
            }
        });
        Ok(())
    }
}

/// Binds a listener with a backlog deep enough for connect storms (tokio's default is 1,024).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
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
        let grace = Duration::from_millis(self.app.live().config.server.shutdown_grace_ms);
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
