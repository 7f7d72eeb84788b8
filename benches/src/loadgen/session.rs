//! Per-connection tasks: the reader every connection runs (counting frames and
//! recording latency of stamped messages) and the stamped-message sender.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use fastwebsockets::{OpCode, WebSocketError};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::pace::Pacer;
use super::payload::{MessageBuilder, parse_stamp};
use crate::client::{Reader, Writer, obligation_sender};
use crate::clock::now_ns;
use crate::hist::{Samples, SharedHistogram};

/// A one-shot stop signal.
#[derive(Default)]
pub struct Stop {
    flag: AtomicBool,
    notify: Notify,
}

impl Stop {
    /// Signals every waiter.
    pub fn trigger(&self) {
        self.flag.store(true, Relaxed);
        self.notify.notify_waiters();
    }

    /// True once triggered.
    pub fn is_set(&self) -> bool {
        self.flag.load(Relaxed)
    }

    /// Resolves once triggered.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// Counters shared by all connections of a run (readers flush into them when idle).
#[derive(Default)]
pub struct Shared {
    /// Ends every task.
    pub stop: Stop,
    /// Connections established.
    pub connected: AtomicU64,
    /// Connection attempts that failed.
    pub failed: AtomicU64,
    /// Stamped messages sent.
    pub sent: AtomicU64,
    /// Data frames received.
    pub frames: AtomicU64,
    /// Stamped frames received.
    pub stamped: AtomicU64,
    /// Stamped frames each reader must see to count as complete (0 = not set).
    pub expect: AtomicU64,
    /// Pong frames received.
    pub pongs: AtomicU64,
    /// Readers that saw `expect` stamped frames.
    pub complete: AtomicU64,
    /// Readers ended by the server or an error before the stop signal.
    pub lost: AtomicU64,
    /// Latest receive time of a stamped frame (ns, [`now_ns`] clock).
    pub last_stamped_ns: AtomicU64,
    /// Delivery latency of stamped frames.
    pub latency: SharedHistogram,
}

/// How a reader ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// By the stop signal.
    Stopped,
    /// Lost: the server closed or an error occurred (label).
    Lost(String),
}

/// Final figures of one reader.
#[derive(Debug, Clone)]
pub struct ReadStats {
    /// Data frames received.
    pub frames: u64,
    /// Stamped frames received.
    pub stamped: u64,
    /// How it ended.
    pub end: End,
}

#[derive(Default)]
struct Acc {
    frames: u64,
    stamped: u64,
    flushed_frames: u64,
    flushed_stamped: u64,
    last_ns: u64,
    /// Cached clock reading, refreshed every [`CLOCK_EVERY`] stamped frames and
    /// whenever the reader goes idle (frames read in one go share a reading).
    clock: Option<u64>,
    clock_uses: u32,
}

/// Stamped frames that may share one clock reading.
const CLOCK_EVERY: u32 = 16;

impl Acc {
    fn now(&mut self) -> u64 {
        match self.clock {
            Some(t) if self.clock_uses < CLOCK_EVERY => {
                self.clock_uses += 1;
                t
            }
            _ => {
                let t = now_ns();
                self.clock = Some(t);
                self.clock_uses = 1;
                t
            }
        }
    }
}

impl Acc {
    fn flush(&mut self, shared: &Shared) {
        self.clock = None;
        if self.frames != self.flushed_frames {
            shared
                .frames
                .fetch_add(self.frames - self.flushed_frames, Relaxed);
            self.flushed_frames = self.frames;
        }
        if self.stamped != self.flushed_stamped {
            shared
                .stamped
                .fetch_add(self.stamped - self.flushed_stamped, Relaxed);
            shared.last_stamped_ns.fetch_max(self.last_ns, Relaxed);
            self.flushed_stamped = self.stamped;
        }
    }
}

fn error_label(e: &WebSocketError) -> String {
    match e {
        WebSocketError::UnexpectedEOF => "eof".into(),
        WebSocketError::IoError(io) => format!("io: {}", io.kind()),
        other => format!("protocol: {other}"),
    }
}

/// Reads until the stop signal, the server closing, or an error.
pub async fn read_loop(mut reader: Reader, writer: Writer, shared: &Shared) -> ReadStats {
    let mut send_fn = obligation_sender(&writer);
    let mut samples = Samples::new(&shared.latency);
    let mut acc = Acc::default();
    let end = loop {
        if shared.stop.is_set() {
            break End::Stopped;
        }
        // Biased: the stop branch (which flushes counters) is polled only when
        // no frame is ready, i.e. when this reader is about to go idle.
        let res = tokio::select! {
            biased;
            r = reader.read_frame(&mut send_fn) => r,
            _ = async { acc.flush(shared); shared.stop.wait().await } => break End::Stopped,
        };
        let frame = match res {
            Ok(f) => f,
            Err(e) => break End::Lost(error_label(&e)),
        };
        match frame.opcode {
            OpCode::Text | OpCode::Binary => {
                acc.frames += 1;
                if let Some((_seq, t)) = parse_stamp(&frame.payload) {
                    let now = acc.now();
                    samples.push(now.saturating_sub(t) / 1000);
                    acc.stamped += 1;
                    acc.last_ns = now;
                    if acc.stamped == shared.expect.load(Relaxed) {
                        shared.complete.fetch_add(1, Relaxed);
                    }
                }
                if acc.frames - acc.flushed_frames >= 1024 {
                    acc.flush(shared);
                }
            }
            OpCode::Pong => {
                shared.pongs.fetch_add(1, Relaxed);
            }
            OpCode::Close => {
                let code = frame
                    .payload
                    .get(..2)
                    .map_or(1005, |b| u16::from_be_bytes([b[0], b[1]]));
                break End::Lost(format!("closed {code}"));
            }
            _ => {}
        }
    };
    acc.flush(shared);
    if end != End::Stopped {
        shared.lost.fetch_add(1, Relaxed);
    }
    ReadStats {
        frames: acc.frames,
        stamped: acc.stamped,
        end,
    }
}

/// Result of one sender.
#[derive(Debug, Clone, Default)]
pub struct SendStats {
    /// Messages written.
    pub sent: u64,
    /// Write error, if any.
    pub error: Option<String>,
    /// When the first write started and the last one ended ([`now_ns`] clock).
    pub first_ns: u64,
    /// See `first_ns`.
    pub last_ns: u64,
}

/// Most messages put in one write when catching up.
const MAX_CATCH_UP: u64 = 256;
/// How long a write may block past the sender's end time.
const WRITE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Sends `total` stamped messages on `pacer`'s schedule, stopping at `end_at`
/// or on the stop signal.
pub async fn send_loop(
    writer: Writer,
    mut builder: MessageBuilder,
    total: u64,
    pacer: Pacer,
    end_at: Instant,
    shared: &Shared,
) -> SendStats {
    let mut stats = SendStats::default();
    let mut buf = Vec::new();
    loop {
        if stats.sent >= total || shared.stop.is_set() {
            break;
        }
        let now = Instant::now();
        if now >= end_at {
            break;
        }
        let due = pacer.due(now).min(total);
        if due <= stats.sent {
            let at = pacer.next_at(stats.sent).min(end_at);
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = shared.stop.wait() => break,
            }
            continue;
        }
        let cap = if pacer.unpaced() {
            pacer.burst()
        } else {
            pacer.burst().max(MAX_CATCH_UP)
        };
        let n = (due - stats.sent).min(cap);
        buf.clear();
        for k in 0..n {
            builder.append_frame(&mut buf, stats.sent + k);
        }
        if stats.first_ns == 0 {
            stats.first_ns = now_ns();
        }
        let limit = end_at.max(now) + WRITE_GRACE;
        let write = tokio::time::timeout_at(limit, writer.write_raw(&buf));
        match write.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                stats.error = Some(format!("io: {}", e.kind()));
                break;
            }
            Err(_) => {
                stats.error = Some("write timeout".into());
                break;
            }
        }
        stats.last_ns = now_ns();
        stats.sent += n;
        shared.sent.fetch_add(n, Relaxed);
        if pacer.unpaced() {
            tokio::task::yield_now().await;
        }
    }
    stats
}
