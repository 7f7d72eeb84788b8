//! The set of live connections and the broadcast operation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::AbortHandle;

/// One connection as the hub sees it.
struct Peer {
    tx: mpsc::Sender<Bytes>,
    writer: AbortHandle,
}

/// Counters the server prints periodically.
#[derive(Default)]
pub struct Stats {
    /// Connections currently registered.
    pub connections: AtomicU64,
    /// Text frames received.
    pub published: AtomicU64,
    /// Frames queued for delivery.
    pub deliveries: AtomicU64,
    /// Connections dropped because their queue was full.
    pub dropped_slow: AtomicU64,
}

/// Registry of connections plus broadcast.
pub struct Hub {
    peers: RwLock<HashMap<u64, Peer>>,
    next_id: AtomicU64,
    queue_frames: usize,
    /// Server counters.
    pub stats: Stats,
}

impl Hub {
    /// A hub whose per-connection queues hold at most `queue_frames` frames.
    pub fn new(queue_frames: usize) -> Self {
        Self {
            peers: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            queue_frames: queue_frames.max(1),
            stats: Stats::default(),
        }
    }

    /// Per-connection queue capacity in frames.
    pub fn queue_frames(&self) -> usize {
        self.queue_frames
    }

    /// Registers a connection and returns its id.
    pub(super) fn join(&self, tx: mpsc::Sender<Bytes>, writer: AbortHandle) -> u64 {
        let id = self.next_id.fetch_add(1, Relaxed);
        self.peers.write().insert(id, Peer { tx, writer });
        self.stats.connections.fetch_add(1, Relaxed);
        id
    }

    /// Unregisters a connection (no-op if already dropped).
    pub(super) fn leave(&self, id: u64) {
        if self.peers.write().remove(&id).is_some() {
            self.stats.connections.fetch_sub(1, Relaxed);
        }
    }

    /// Queues `frame` (an encoded server frame) for every connection; drops the
    /// connections whose queue is full.
    pub fn broadcast(&self, frame: &Bytes) {
        let mut slow = Vec::new();
        let mut delivered = 0u64;
        {
            let peers = self.peers.read();
            for (id, peer) in peers.iter() {
                match peer.tx.try_send(frame.clone()) {
                    Ok(()) => delivered += 1,
                    Err(TrySendError::Full(_)) => slow.push(*id),
                    Err(TrySendError::Closed(_)) => {}
                }
            }
        }
        self.stats.published.fetch_add(1, Relaxed);
        self.stats.deliveries.fetch_add(delivered, Relaxed);
        if !slow.is_empty() {
            let mut peers = self.peers.write();
            for id in slow {
                if let Some(peer) = peers.remove(&id) {
                    peer.writer.abort();
                    self.stats.connections.fetch_sub(1, Relaxed);
                    self.stats.dropped_slow.fetch_add(1, Relaxed);
                }
            }
        }
    }
}
