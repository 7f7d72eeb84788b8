//! The running gateway's state: the live configuration (config, auth, plugins) behind one
//! atomic pointer, and the reload that replaces it without dropping connections. Listeners and
//! shutdown are `crate::server`'s.

use crate::auth::Authenticator;
use crate::cluster::Cluster;
use crate::config::{Config, PluginConfig, RouteKind};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::plugin::{HostServices, PluginEngine, PluginSlot, PluginVersion, load_component};
use anyhow::Context;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

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
    /// The bus to the other instances (node 0 and local only without `[redis]`).
    pub cluster: Arc<Cluster>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Process start.
    pub started: Instant,
    /// Key for admin HTTP routes (`GATEWAY_ADMIN_KEY`); admin routes answer 503 without it.
    pub admin_key: Option<String>,
    /// Streams, storage and the compaction worker.
    pub backends: crate::backends::Backends,
    /// Set when shutdown begins: `/health` answers 503 and new connections are refused.
    pub draining: std::sync::atomic::AtomicBool,
    /// The upgrade rate and the `on-open` calls running at once.
    pub upgrades: crate::rate::UpgradeGate,
    engine: PluginEngine,
    config_path: Option<PathBuf>,
    config_status: Mutex<ConfigStatus>,
    reload_lock: tokio::sync::Mutex<()>,
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

/// A changed config file, ready to apply.
struct NextConfig {
    config: Config,
    auth: Arc<Authenticator>,
    hash: Option<String>,
}

/// A slot and the version it will serve once the reload is committed.
type Swap = (Arc<PluginSlot>, PluginVersion);

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
        let cluster = Cluster::open(config.redis.as_ref(), metrics.clone()).await?;
        let hub = cluster.hub().clone();
        let auth = Arc::new(Authenticator::new(&config)?);
        let backends = crate::backends::Backends::open(&config, false).await?;
        if let crate::streams::Streams::Redis(r) = &backends.streams {
            let hub = hub.clone();
            r.on_data_loss(move || {
                let closed = hub.resync_stream_clients();
                tracing::warn!(closed, "closed stream clients with 1013 so they re-sync");
            });
        }
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
            cluster,
            metrics,
            started: Instant::now(),
            admin_key: std::env::var("GATEWAY_ADMIN_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
            backends,
            draining: std::sync::atomic::AtomicBool::new(false),
            upgrades: crate::rate::UpgradeGate::default(),
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
                name,
                app.services(&auth),
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
        let app = Arc::new(app);
        if let Some(rx) = app.cluster.presence().take_events() {
            crate::supervise::spawn_once(
                "presence events",
                presence_events(Arc::downgrade(&app), rx),
            );
        }
        Ok(app)
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

    fn services(&self, auth: &Arc<Authenticator>) -> HostServices {
        HostServices {
            hub: self.hub.clone(),
            cluster: self.cluster.clone(),
            auth: auth.clone(),
            streams: self.backends.streams.clone(),
            storage: self.backends.storage.clone(),
        }
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
            env: pc
                .env
                .iter()
                .filter_map(|k| Some((k.clone(), std::env::var(k).ok()?)))
                .collect(),
            stream_prefixes: pc
                .stream_prefixes
                .clone()
                .unwrap_or_else(|| vec![format!("{name}:")])
                .into(),
            storage_root: pc
                .storage_root
                .clone()
                .unwrap_or_else(|| format!("{name}/"))
                .into(),
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
        let next_cfg = self.read_changed_config(&mut report);
        let (cfg, auth) = match &next_cfg {
            Some(n) => (Arc::new(n.config.clone()), n.auth.clone()),
            None => (cur.config.clone(), cur.auth.clone()),
        };
        // Build every new or changed plugin version before touching what serves.
        let (plugins, swaps) = self.prepare_plugins(&cur, &cfg, &auth, &mut report).await;
        if next_cfg.is_some() && !report.errors.is_empty() {
            self.refuse_config(&cfg, &report);
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
        self.metrics
            .plugin_reloads
            .fetch_add(report.reloaded.len() as u64, Relaxed);
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
        if let Some(next) = next_cfg {
            self.mark_applied(&cur.config, &cfg, next.hash, latency);
        }
        report.closed = self.close_orphans(&cfg);
        report
    }

    /// The config file, parsed, validated and with its auth profiles built, if it changed since
    /// it was last applied. A refused file is recorded in the status and the report.
    fn read_changed_config(&self, report: &mut ReloadReport) -> Option<NextConfig> {
        let path = self.config_path.as_ref()?;
        let hash = file_hash(path);
        let changed = hash != self.config_status.lock().text_hash;
        tracing::debug!(changed, "config file checked");
        if !changed {
            return None;
        }
        let loaded = Config::load(path)
            .map_err(anyhow::Error::from)
            .and_then(|c| Ok((Authenticator::new(&c)?, c)));
        match loaded {
            Ok((auth, config)) => Some(NextConfig {
                config,
                auth: Arc::new(auth),
                hash,
            }),
            Err(e) => {
                let msg = format!("{e:#}");
                tracing::error!("config rejected, previous config keeps serving: {msg}");
                self.metrics.config_reload_failures.fetch_add(1, Relaxed);
                let mut st = self.config_status.lock();
                st.last_error = Some(msg.clone());
                // Forget the served file's hash: whatever comes next is read again, even if it
                // is the old text restored.
                st.text_hash = None;
                report.errors.push(msg);
                None
            }
        }
    }

    /// The plugins `cfg` asks for: unchanged slots kept, new slots loaded and smoke-tested, and
    /// for changed plugins a new version (smoke-tested) to swap in. Failures go to `report`;
    /// a plugin whose new version fails keeps its old one.
    async fn prepare_plugins(
        &self,
        cur: &Live,
        cfg: &Config,
        auth: &Arc<Authenticator>,
        report: &mut ReloadReport,
    ) -> (BTreeMap<String, Arc<PluginSlot>>, Vec<Swap>) {
        let mut swaps = Vec::new();
        let mut plugins = BTreeMap::new();
        for (name, pc) in &cfg.plugins {
            let existing = cur.plugins.get(name);
            if let Some(slot) = existing
                && Self::is_current(slot, pc, cfg)
            {
                plugins.insert(name.clone(), slot.clone());
                continue;
            }
            let generation = existing.map_or(1, |s| s.version().generation + 1);
            let built = match self.build_version(name, pc, cfg, generation).await {
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
                    let slot =
                        PluginSlot::new(name, self.services(auth), v, self.engine.engine.clone());
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
                    self.metrics.plugin_reload_failures.fetch_add(1, Relaxed);
                    if let Some(slot) = existing {
                        slot.set_error(format!("reload failed: {msg}"));
                        plugins.insert(name.clone(), slot.clone());
                    }
                    report.errors.push(msg);
                }
            }
        }
        (plugins, swaps)
    }

    /// Whether `slot` already serves `pc`: same settings and the same wasm file contents.
    fn is_current(slot: &PluginSlot, pc: &PluginConfig, cfg: &Config) -> bool {
        let path = cfg.resolve(&pc.wasm);
        let mut wanted = pc.clone();
        wanted.wasm = path.clone();
        let v = slot.version();
        v.source == wanted && file_hash(&path).as_deref() == Some(v.hash.as_str())
    }

    /// A new config is all or nothing: record why it was refused, and retry when one of its
    /// plugin files changes.
    fn refuse_config(&self, cfg: &Config, report: &ReloadReport) {
        let msg = format!("config rejected: {}", report.errors.join("; "));
        tracing::error!("{msg}; previous config keeps serving");
        let mut st = self.config_status.lock();
        st.last_error = Some(msg);
        st.text_hash = None;
        st.pending_files = cfg.plugins.values().map(|p| cfg.resolve(&p.wasm)).collect();
    }

    /// Records a new config as the one serving.
    fn mark_applied(&self, old: &Config, new: &Config, hash: Option<String>, latency: Duration) {
        let mut st = self.config_status.lock();
        st.generation += 1;
        st.last_error = None;
        st.text_hash = hash;
        st.pending_files.clear();
        if old.server.listen != new.server.listen {
            tracing::warn!("listener changes take effect after a restart");
        }
        tracing::info!(
            generation = st.generation,
            latency_ms = latency.as_secs_f64() * 1000.0,
            "config applied"
        );
    }

    /// Tells connections whose route or plugin is gone to reconnect elsewhere (1012); returns
    /// how many were closed.
    fn close_orphans(&self, cfg: &Config) -> usize {
        let mut closed = 0;
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
                closed += 1;
            }
        }
        closed
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

/// Hands members the host removed from presence to the plugin whose channel they were in, one
/// batch at a time and in order.
async fn presence_events(
    app: std::sync::Weak<App>,
    mut rx: tokio::sync::mpsc::Receiver<crate::cluster::presence::Left>,
) {
    while let Some(left) = rx.recv().await {
        let Some(app) = app.upgrade() else { return };
        let Some((plugin, channel)) = left.channel.split_once('\u{1f}') else {
            continue;
        };
        let Some(slot) = app.live().plugins.get(plugin).cloned() else {
            continue;
        };
        if let Err(e) = slot.on_presence_left(channel, left.members).await {
            tracing::warn!(plugin, channel, "on-presence-left failed: {e}");
        }
    }
}
