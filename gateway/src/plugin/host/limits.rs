//! The store's memory cap, remembering how far linear memory grew.

use wasmtime::{StoreLimits, StoreLimitsBuilder};

/// The store's memory cap, plus the largest linear memory the instance has grown to (linear
/// memory never shrinks, so an instance that once held a large document is recycled).
pub struct TrackedLimits {
    inner: StoreLimits,
    /// Largest memory size granted so far, in bytes.
    pub peak_memory: usize,
}

impl TrackedLimits {
    /// Limits for one instance: `memory_limit` bytes of linear memory in all.
    pub fn new(memory_limit: usize) -> Self {
        Self {
            inner: StoreLimitsBuilder::new()
                .memory_size(memory_limit)
                .instances(64)
                .tables(64)
                .memories(8)
                .build(),
            peak_memory: 0,
        }
    }
}

impl wasmtime::ResourceLimiter for TrackedLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = self.inner.memory_growing(current, desired, maximum)?;
        if ok {
            self.peak_memory = self.peak_memory.max(desired);
        }
        Ok(ok)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}
