//! One plugin: its current version, a bounded pool of reusable instances, and the calls into
//! them. A call that traps or runs past its deadline discards its instance only.

use super::bindings::{Plugin, PluginPre};
use super::host::HostState;
use super::{ConnInfo, Frame, HttpRequest, HttpResponse, Reject};
use crate::hub::{Conn, Hub};
use crate::kv::Kv;
use crate::metrics::PluginMetrics;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store;
use wasmtime::component::Linker;

/// Longest a call waits for a free instance before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Instances are recycled after this many calls to bound guest heap growth.
const MAX_CALLS_PER_INSTANCE: u32 = 100_000;

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
    /// Budget of one call.
    pub call_timeout: Duration,
}

/// Health of a plugin as shown on `/health`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PluginStatus {
    /// `running` or `failed`.
    pub state: &'static str,
    /// The last error (trap, init failure), if any.
    pub last_error: Option<String>,
}

/// What host imports need, shared by every instance and version of a plugin.
pub struct PluginShared {
    /// Plugin name.
    pub name: Arc<str>,
    /// Connections and topics.
    pub hub: Arc<Hub>,
    /// Host-owned key-value namespace.
    pub kv: Kv,
    /// Auth profiles for `verify-token`.
    pub auth: Arc<crate::auth::Authenticator>,
    /// Counters.
    pub metrics: PluginMetrics,
    /// Pending timers.
    pub timers: Mutex<std::collections::HashMap<u64, tokio::task::AbortHandle>>,
    /// Next timer id.
    pub next_timer: AtomicU64,
    /// The slot, for timers that call back into the plugin.
    pub slot: Mutex<Weak<PluginSlot>>,
}

impl PluginShared {
    /// The hub key of a plugin topic (topics are namespaced per plugin).
    pub fn topic_key(&self, topic: &str) -> String {
        format!("{}\u{1f}{topic}", self.name)
    }
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
}

/// A plugin with its instance pool.
pub struct PluginSlot {
    /// State shared with host imports.
    pub shared: Arc<PluginShared>,
    version: ArcSwap<PluginVersion>,
    idle: Mutex<Vec<Instance>>,
    permits: Arc<Semaphore>,
    status: Mutex<PluginStatus>,
    engine: wasmtime::Engine,
}

impl PluginSlot {
    /// Wraps a first version; `max_instances` bounds the pool.
    pub fn new(
        shared: Arc<PluginShared>,
        version: PluginVersion,
        max_instances: u32,
        engine: wasmtime::Engine,
    ) -> Arc<Self> {
        let slot = Arc::new(Self {
            shared,
            version: ArcSwap::from_pointee(version),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max_instances as usize)),
            status: Mutex::new(PluginStatus {
                state: "running",
                last_error: None,
            }),
            engine,
        });
        *slot.shared.slot.lock() = Arc::downgrade(&slot);
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
        self.status.lock().clone()
    }

    /// Starts a throwaway instance of `version` and runs `init`: a smoke test before serving.
    pub async fn smoke_test(&self, version: &PluginVersion) -> Result<(), CallError> {
        self.instantiate(version).await.map(drop)
    }

    async fn instantiate(&self, v: &PluginVersion) -> Result<Instance, CallError> {
        let mut store = Store::new(
            &self.engine,
            HostState::new(self.shared.clone(), v.memory_limit),
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
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| CallError::Busy)?
            .map_err(|_| CallError::Busy)?;
        let v = self.version.load();
        let reuse = {
            let mut idle = self.idle.lock();
            idle.retain(|i| i.generation == v.generation);
            idle.pop()
        };
        let mut inst = match reuse {
            Some(i) => i,
            None => match self.instantiate(&v).await {
                Ok(i) => i,
                Err(e) => {
                    self.record_error(&e);
                    return Err(e);
                }
            },
        };
        inst.store.data_mut().deadline = Instant::now() + v.call_timeout;
        inst.store.set_epoch_deadline(1);
        inst.calls += 1;
        Ok(Lease {
            inst,
            _permit: permit,
            timeout_ms: v.call_timeout.as_millis() as u64,
        })
    }

    fn release<R>(
        &self,
        lease: Lease,
        started: Instant,
        r: wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let m = &self.shared.metrics;
        m.calls.fetch_add(1, Relaxed);
        m.latency.observe(started.elapsed());
        match r {
            Ok(v) => {
                if lease.inst.calls < MAX_CALLS_PER_INSTANCE {
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
                self.record_error(&err);
                tracing::warn!(plugin = %self.shared.name, "{err}; instance discarded");
                Err(err)
            }
        }
    }

    fn record_error(&self, e: &CallError) {
        self.status.lock().last_error = Some(e.to_string());
    }

    /// Asks the plugin whether to accept a connection.
    pub async fn on_open(&self, info: &ConnInfo) -> Result<Result<(), Reject>, CallError> {
        let mut l = self.acquire().await?;
        let t = Instant::now();
        let r = l.inst.bindings.call_on_open(&mut l.inst.store, info).await;
        self.release(l, t, r)
    }

    /// Delivers one message.
    pub async fn on_frame(&self, conn: &Conn, frame: &Frame) -> Result<(), CallError> {
        let att = conn.attachment.lock().clone();
        let mut l = self.acquire().await?;
        let t = Instant::now();
        let r = l
            .inst
            .bindings
            .call_on_frame(&mut l.inst.store, conn.id, &att, frame)
            .await;
        self.release(l, t, r)
    }

    /// Reports a closed connection.
    pub async fn on_close(&self, conn: &Conn, code: u16, reason: &str) -> Result<(), CallError> {
        let att = conn.attachment.lock().clone();
        let mut l = self.acquire().await?;
        let t = Instant::now();
        let r = l
            .inst
            .bindings
            .call_on_close(&mut l.inst.store, conn.id, &att, code, reason)
            .await;
        self.release(l, t, r)
    }

    /// Hands an HTTP request to the plugin.
    pub async fn on_http(&self, req: &HttpRequest) -> Result<HttpResponse, CallError> {
        let mut l = self.acquire().await?;
        let t = Instant::now();
        let r = l.inst.bindings.call_on_http(&mut l.inst.store, req).await;
        self.release(l, t, r)
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
        self.release(l, t, r)
    }
}
