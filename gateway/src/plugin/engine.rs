//! The process-wide wasmtime engine: pooling allocator, epoch ticker and the on-disk cache of
//! precompiled components.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; the granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The component file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a valid component for this host.
    #[error("{path}: {message}")]
    Compile {
        /// The file.
        path: String,
        /// The compiler's message.
        message: String,
    },
}

/// The engine and the settings derived from the configuration.
#[derive(Clone)]
pub struct PluginEngine {
    /// The wasmtime engine every plugin runs on.
    pub engine: Engine,
    cache_dir: PathBuf,
}

impl PluginEngine {
    /// Builds the engine with room for `instances` live instances; per-plugin memory caps are
    /// enforced per store, under the pool's 4 GiB per-memory ceiling.
    pub fn new(instances: u32, cache_dir: PathBuf) -> anyhow::Result<Self> {
        let max_memory: u64 = 4 << 30;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 2)
            .total_tables(instances * 8)
            .total_stacks(instances)
            .max_core_instances_per_component(16)
            .max_memories_per_component(2)
            .max_tables_per_component(8)
            .max_memory_size(max_memory as usize)
            .max_unused_warm_slots(instances.min(64));
        let mut cfg = Config::new();
        cfg.epoch_interruption(true)
            .concurrency_support(false)
            .max_wasm_stack(1 << 20)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&cfg)?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(e) = weak.upgrade() {
                    e.increment_epoch();
                    drop(e);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;
        Ok(Self { engine, cache_dir })
    }

    fn cache_path(&self, hash: &str) -> PathBuf {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        self.cache_dir
            .join(format!("{hash}-{:016x}.cwasm", h.finish()))
    }
}

/// Reads a component, compiling it unless a precompiled copy for this engine is cached.
/// Blocking: call from `spawn_blocking`. Returns the component and its content hash.
pub fn load_component(pe: &PluginEngine, path: &Path) -> Result<(Component, String), LoadError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: shown.clone(),
        source,
    })?;
    let hash = hex::encode(Sha256::digest(&bytes));
    let cached = pe.cache_path(&hash);
    if cached.exists() {
        // SAFETY: the cache holds only files this host wrote with `precompile_component` for an
        // engine with the same compatibility hash (part of the file name); they are written to a
        // temporary name and renamed, so a partially written file is never loaded.
        match unsafe { Component::deserialize_file(&pe.engine, &cached) } {
            Ok(c) => return Ok((c, hash)),
            Err(e) => {
                tracing::warn!(file = %cached.display(), "ignoring unusable cache entry: {e}")
            }
        }
    }
    let compile_err = |e: wasmtime::Error| LoadError::Compile {
        path: shown.clone(),
        message: format!("{e:#}"),
    };
    let started = std::time::Instant::now();
    let artifact = pe
        .engine
        .precompile_component(&bytes)
        .map_err(compile_err)?;
    tracing::info!(file = %shown, ms = started.elapsed().as_millis() as u64, "compiled plugin");
    if std::fs::create_dir_all(&pe.cache_dir).is_ok() {
        let tmp = cached.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, &artifact).is_ok() && std::fs::rename(&tmp, &cached).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    // SAFETY: `artifact` was produced just now by this engine's `precompile_component`.
    let component =
        unsafe { Component::deserialize(&pe.engine, &artifact) }.map_err(compile_err)?;
    Ok((component, hash))
}
