//! One plugin: its current version, a bounded pool of reusable instances, and the calls into
//! them. A call that traps or runs past its deadline discards its instance only.

use super::bindings::gateway::plugin::streams::Entry as StreamEntry;
use super::bindings::gateway::plugin::types::{ConnInfo, Frame, HttpRequest, HttpResponse, Reject};
use super::bindings::{Plugin, PluginPre};
use super::faults::{Fault, FaultTracker};
use super::host::HostState;
use super::shared::{HostServices, PluginShared};
use super::timers::Timers;
use crate::config::{FaultPolicy, OnFault};
use crate::hub::Conn;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store;
use wasmtime::component::Linker;

/// Longest a call waits for a free instance before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Instances are recycled after this many calls to bound guest heap growth.
const MAX_CALLS_PER_INSTANCE: u32 = 100_000;
/// Instances whose linear memory grew past this are recycled after the call (linear memory
/// never shrinks; the pooling allocator returns a recycled instance's pages).
const RECYCLE_MEMORY_BYTES: usize = 64 << 20;

/// Why a plugin call failed.
#[derive(Debug, thiserror::Error, Clone)]
pub enum CallError {
    /// The guest trapped (panic, out of bounds, out of memory).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The call ran past its deadline and was interrupted.
    #[error("plugin call exceeded its {0} ms deadline")]
    Timeout(u64),
    /// Every instance stayed busy for too long.
    #[error("plugin busy: no instance free")]
    Busy,
    /// A new instance failed to start or its `init` failed.
    #[error("plugin failed to start: {0}")]
    Init(String),
    /// The plugin spent its crash budget and is disabled until a new version loads.
    #[error("plugin disabled after repeated faults")]
    Disabled,
}

/// A loaded version of a plugin.
pub struct PluginVersion {
    /// Bumped on every successful load.
    pub generation: u64,
    /// SHA-256 of the component file.
    pub hash: String,
    /// Pre-linked component.
    pub pre: PluginPre<HostState>,
    /// The `config` table as JSON, handed to `init`.
    pub config_json: String,
    /// Linear memory cap per instance.
    pub memory_limit: usize,
    /// The environment variables the plugin sees (`env` in its config, read at load).
    pub env: Vec<(String, String)>,
    /// Prefixes of the stream keys the plugin may use.
    pub stream_prefixes: Arc<[String]>,
    /// Where its storage names live in the store.
    pub storage_root: Arc<str>,
    /// Budget of one call.
    pub call_timeout: Duration,
    /// Bounds how many instances run at once.
    pub permits: Arc<Semaphore>,
    /// What faults do.
    pub faults: FaultPolicy,
    /// The `plugins.toml` entry this version was built from (with the resolved wasm path).
    pub source: crate::config::PluginConfig,
}

/// Health of a plugin as shown on `/health`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PluginStatus {
    /// `running`, or `disabled` once the crash budget is spent.
    pub state: &'static str,
    /// The last error (trap, init failure, failed reload), if any.
    pub last_error: Option<String>,
    /// Faults inside the current crash-budget window.
    pub recent_faults: usize,
    /// Successful reloads since start.
    pub reloads: u64,
    /// Milliseconds from file change to the new version serving, for the last reload.
    pub last_reload_ms: Option<f64>,
}

#[derive(Default)]
struct SlotState {
    last_error: Option<String>,
    faults: FaultTracker,
    reloads: u64,
    last_reload_ms: Option<f64>,
}

struct Instance {
    store: Store<HostState>,
    bindings: Plugin,
    generation: u64,
    calls: u32,
}

struct Lease {
    inst: Instance,
    _permit: OwnedSemaphorePermit,
    timeout_ms: u64,
    policy: FaultPolicy,
}

/// A plugin with its instance pool.
pub struct PluginSlot {
    /// State shared with host imports.
    pub shared: Arc<PluginShared>,
    version: ArcSwap<PluginVersion>,
    idle: Mutex<Vec<Instance>>,
    state: Mutex<SlotState>,
    engine: wasmtime::Engine,
}

impl PluginSlot {
    /// Loads plugin `name` with a first version; its timers and bound streams are delivered to
    /// this slot for as long as it lives.
    pub fn new(
        name: &str,
        services: HostServices,
        version: PluginVersion,
        engine: wasmtime::Engine,
    ) -> Arc<Self> {
        let (timers, fired) = Timers::new();
        let slot = Arc::new_cyclic(|me: &Weak<PluginSlot>| {
            let sink: Weak<dyn crate::streams::StreamSink> = me.clone();
            Self {
                shared: Arc::new(PluginShared::new(name, services, timers, sink)),
                version: ArcSwap::from_pointee(version),
                idle: Mutex::new(Vec::new()),
                state: Mutex::new(SlotState::default()),
                engine,
            }
        });
        spawn_timer_loop(Arc::downgrade(&slot), fired);
        slot
    }

    /// Links a component against the host imports and WASI (no files, no sockets).
    pub fn link(
        engine: &wasmtime::Engine,
        component: &wasmtime::component::Component,
    ) -> anyhow::Result<PluginPre<HostState>> {
        let mut linker: Linker<HostState> = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Plugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)?;
        let pre = linker.instantiate_pre(component)?;
        Ok(PluginPre::new(pre)?)
    }

    /// The current version.
    pub fn version(&self) -> Arc<PluginVersion> {
        self.version.load_full()
    }

    /// Current health.
    pub fn status(&self) -> PluginStatus {
        let policy = self.version.load().faults;
        let mut s = self.state.lock();
        let disabled = s
            .faults
            .is_disabled(&policy, Instant::now(), &self.shared.name);
        PluginStatus {
            state: if disabled { "disabled" } else { "running" },
            last_error: s.last_error.clone(),
            recent_faults: s.faults.recent_faults(),
            reloads: s.reloads,
            last_reload_ms: s.last_reload_ms,
        }
    }

    /// Whether the crash budget is spent (and the cool-down has not passed yet).
    pub fn is_disabled(&self) -> bool {
        let policy = self.version.load().faults;
        self.state
            .lock()
            .faults
            .is_disabled(&policy, Instant::now(), &self.shared.name)
    }

    /// Whether connections from `client` are refused because they spent its share of the
    /// crash budget.
    pub fn blames(&self, client: IpAddr) -> bool {
        let policy = self.version.load().faults;
        self.state
            .lock()
            .faults
            .blames(&policy, Instant::now(), client)
    }

    /// Makes `v` the version new events use; running calls finish on the old one, whose
    /// idle instances are dropped. Faults and errors start over.
    pub fn swap(&self, v: PluginVersion, latency: Option<Duration>) {
        self.version.store(Arc::new(v));
        self.idle.lock().clear();
        let mut s = self.state.lock();
        s.faults = FaultTracker::default();
        s.last_error = None;
        s.reloads += 1;
        s.last_reload_ms = latency.map(|d| d.as_secs_f64() * 1000.0);
    }

    /// Records an error that did not come from a call (a failed reload, say).
    pub fn set_error(&self, msg: String) {
        self.state.lock().last_error = Some(msg);
    }

    /// Whether a connection survives this call failure under the plugin's fault policy.
    pub fn keeps_connection(&self, e: &CallError) -> bool {
        matches!(e, CallError::Trap(_) | CallError::Timeout(_))
            && self.version.load().faults.on_fault == OnFault::Restart
            && !self.is_disabled()
    }

    /// Starts a throwaway instance of `version` and runs `init`: a smoke test before serving.
    pub async fn smoke_test(&self, version: &PluginVersion) -> Result<(), CallError> {
        self.instantiate(version).await.map(drop)
    }

    async fn instantiate(&self, v: &PluginVersion) -> Result<Instance, CallError> {
        let mut store = Store::new(
            &self.engine,
            HostState::new(
                self.shared.clone(),
                v.memory_limit,
                &v.env,
                v.stream_prefixes.clone(),
                v.storage_root.clone(),
            ),
        );
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_callback(|ctx| {
            Ok(if Instant::now() >= ctx.data().deadline {
                wasmtime::UpdateDeadline::Interrupt
            } else {
                wasmtime::UpdateDeadline::Yield(1)
            })
        });
        store.data_mut().deadline = Instant::now() + v.call_timeout;
        store.set_epoch_deadline(1);
        let bindings = v
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| CallError::Init(format!("{e:#}")))?;
        self.shared.metrics.instantiations.fetch_add(1, Relaxed);
        match bindings.call_init(&mut store, &v.config_json).await {
            Ok(Ok(())) => Ok(Instance {
                store,
                bindings,
                generation: v.generation,
                calls: 0,
            }),
            Ok(Err(msg)) => Err(CallError::Init(format!("init refused the config: {msg}"))),
            Err(e) => Err(CallError::Init(format!(
                "init trapped: {e:#}{}",
                store.data().stderr_tail()
            ))),
        }
    }

    async fn acquire(&self) -> Result<Lease, CallError> {
        if self.is_disabled() {
            return Err(CallError::Disabled);
        }
        let v = self.version.load_full();
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, v.permits.clone().acquire_owned())
            .await
            .map_err(|_| CallError::Busy)?
            .map_err(|_| CallError::Busy)?;
        let reuse = {
            let mut idle = self.idle.lock();
            idle.retain(|i| i.generation == v.generation);
            idle.pop()
        };
        let mut inst = match reuse {
            Some(i) => i,
            None => {
                let delay = self
                    .state
                    .lock()
                    .faults
                    .restart_delay(&v.faults, Instant::now());
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                match self.instantiate(&v).await {
                    Ok(i) => i,
                    Err(e) => {
                        self.record_error(&e);
                        return Err(e);
                    }
                }
            }
        };
        inst.store.data_mut().deadline = Instant::now() + v.call_timeout;
        inst.store.data_mut().current_conn = None;
        inst.store.set_epoch_deadline(1);
        inst.calls += 1;
        Ok(Lease {
            inst,
            _permit: permit,
            timeout_ms: v.call_timeout.as_millis() as u64,
            policy: v.faults,
        })
    }

    /// Returns the instance after a call; a fault is recorded against `client`, the address of
    /// the connection the call was made for (if any).
    fn release<R>(
        &self,
        lease: Lease,
        started: Instant,
        r: wasmtime::Result<R>,
        client: Option<IpAddr>,
    ) -> Result<R, CallError> {
        let m = &self.shared.metrics;
        m.calls.fetch_add(1, Relaxed);
        m.latency.observe(started.elapsed());
        match r {
            Ok(v) => {
                self.state.lock().faults.success();
                let current = self.version.load().generation == lease.inst.generation;
                let small = lease.inst.store.data().limits.peak_memory <= RECYCLE_MEMORY_BYTES;
                if current && small && lease.inst.calls < MAX_CALLS_PER_INSTANCE {
                    self.idle.lock().push(lease.inst);
                }
                Ok(v)
            }
            Err(e) => {
                m.traps.fetch_add(1, Relaxed);
                let err = match e.downcast_ref::<wasmtime::Trap>() {
                    Some(wasmtime::Trap::Interrupt) => {
                        m.timeouts.fetch_add(1, Relaxed);
                        CallError::Timeout(lease.timeout_ms)
                    }
                    _ => CallError::Trap(format!("{e}{}", lease.inst.store.data().stderr_tail())),
                };
                let fault = {
                    let mut s = self.state.lock();
                    s.last_error = Some(err.to_string());
                    s.faults.record(&lease.policy, Instant::now(), client)
                };
                match fault {
                    Fault::Blamed => tracing::warn!(
                        plugin = %self.shared.name,
                        client = ?client,
                        "{err}; instance discarded; blamed on the client, which is refused until its faults age out"
                    ),
                    _ => tracing::warn!(plugin = %self.shared.name, "{err}; instance discarded"),
                }
                match fault {
                    Fault::Spent => self.disable(),
                    Fault::Blamed => {
                        m.blamed_faults.fetch_add(1, Relaxed);
                    }
                    Fault::Counted => {}
                }
                Err(err)
            }
        }
    }

    fn record_error(&self, e: &CallError) {
        self.state.lock().last_error = Some(e.to_string());
    }

    /// Crash budget spent: drop the instances and close the plugin's connections with 1011.
    fn disable(&self) {
        self.idle.lock().clear();
        let conns: Vec<_> = self
            .shared
            .hub
            .all()
            .into_iter()
            .filter(|c| c.plugin == self.shared.name)
            .collect();
        tracing::error!(
            plugin = %self.shared.name,
            connections = conns.len(),
            cooldown_s = self.version.load().faults.cooldown_s,
            "crash budget spent: plugin disabled until its cool-down passes or a new version is loaded"
        );
        for c in conns {
            c.outbox.close(1011, "plugin disabled");
        }
    }

    /// Asks the plugin whether to accept a connection.
    pub async fn on_open(&self, info: &ConnInfo) -> Result<Result<(), Reject>, CallError> {
        let mut l = self.acquire().await?;
        let t = Instant::now();
        l.inst.store.data_mut().current_conn = Some(info.id);
        let r = l.inst.bindings.call_on_open(&mut l.inst.store, info).await;
        self.release(
            l,
            t,
            r,
            info.remote_addr.parse::<SocketAddr>().ok().map(|a| a.ip()),
        )
    }

    /// Delivers one message.
    pub async fn on_frame(&self, conn: &Conn, frame: &Frame) -> Result<(), CallError> {
        let att = conn.attachment.lock().clone();
        let mut l = self.acquire().await?;
        l.inst.store.data_mut().current_conn = Some(conn.id);
        let t = Instant::now();
        let r = l
            .inst
            .bindings
            .call_on_frame(&mut l.inst.store, conn.id, &att, frame)
            .await;
        self.release(l, t, r, Some(conn.remote.ip()))
    }

    /// Reports a closed connection.
    pub async fn on_close(&self, conn: &Conn, code: u16, reason: &str) -> Result<(), CallError> {
        let att = conn.attachment.lock().clone();
        let mut l = self.acquire().await?;
        l.inst.store.data_mut().current_conn = Some(conn.id);
        let t = Instant::now();
        let r = l
            .inst
            .bindings
            .call_on_close(&mut l.inst.store, conn.id, &att, code, reason)
            .await;
        self.release(l, t, r, Some(conn.remote.ip()))
    }

    /// Hands an HTTP request to the plugin.
    pub async fn on_http(&self, req: &HttpRequest) -> Result<HttpResponse, CallError> {
        let mut l = self.acquire().await?;
        let t = Instant::now();
        let r = l.inst.bindings.call_on_http(&mut l.inst.store, req).await;
        self.release(l, t, r, None)
    }

    /// Hands a batch of stream entries to the plugin; returns the frames to publish.
    pub async fn on_stream(
        &self,
        topic: &str,
        key: &str,
        entries: &[crate::streams::Entry],
    ) -> Result<Vec<Frame>, CallError> {
        let list: Vec<StreamEntry> = entries
            .iter()
            .map(|e| StreamEntry {
                id: e.id.to_string(),
                data: e.data.to_vec(),
            })
            .collect();
        let mut l = self.acquire().await?;
        let t = Instant::now();
        let r = l
            .inst
            .bindings
            .call_on_stream(&mut l.inst.store, topic, key, &list)
            .await;
        self.release(l, t, r, None)
    }

    /// Fires a timer.
    pub async fn on_timer(&self, token: &str) -> Result<(), CallError> {
        let mut l = self.acquire().await?;
        let t = Instant::now();
        let r = l
            .inst
            .bindings
            .call_on_timer(&mut l.inst.store, token)
            .await;
        self.release(l, t, r, None)
    }
}

impl PluginSlot {
    /// Reports members of `channel` (the plugin's own name, without namespace) that the host
    /// removed.
    pub async fn on_presence_left(
        &self,
        channel: &str,
        members: Vec<crate::cluster::presence::Member>,
    ) -> Result<(), CallError> {
        let members: Vec<_> = members.into_iter().map(super::host::member).collect();
        let mut l = self.acquire().await?;
        let t = Instant::now();
        let r = l
            .inst
            .bindings
            .call_on_presence_left(&mut l.inst.store, channel, &members)
            .await;
        self.release(l, t, r, None)
    }
}

/// Calls `on-timer` for every token that arrives, each in its own task, until the slot or the
/// channel is gone.
fn spawn_timer_loop(slot: Weak<PluginSlot>, mut fired: mpsc::Receiver<String>) {
    tokio::spawn(async move {
        while let Some(token) = fired.recv().await {
            let Some(slot) = slot.upgrade() else { return };
            tokio::spawn(async move {
                if let Err(e) = slot.on_timer(&token).await {
                    tracing::warn!(plugin = %slot.shared.name, "timer call failed: {e}");
                }
            });
        }
    });
}
