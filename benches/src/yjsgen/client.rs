//! One simulated Yjs client: a task that connects, joins (SyncStep1 / SyncStep2) and reads,
//! counting and timing every delivered update, plus, for writers, a task that sends updates.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use fastwebsockets::{OpCode, WebSocketError};
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

use super::cli::Args;
use super::wire::{self, Message, Records, SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE};
use crate::client::{Writer, connect, obligation_sender};
use crate::clock::now_ns;
use crate::frame::{Masker, OP_BINARY, encode_client};
use crate::hist::{Samples, SharedHistogram};
use crate::loadgen::session::Stop;
use crate::target::Target;

/// Time to connect and sync, like `cl.connect(15000)` in `load.mjs`.
const SYNC_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a write may block past the end of sending.
const WRITE_GRACE: Duration = Duration::from_secs(5);
/// Most updates a rate writer sends at one wake-up (`load.mjs`: 1000 per tick).
const MAX_CATCH_UP: u64 = 1000;

/// Microseconds on the process clock ([`now_ns`]); send times are on this clock.
pub fn now_us() -> u64 {
    now_ns() / 1000
}

/// Counters of one client (reader and sender), summed over all clients for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Updates sent.
    pub sent: u64,
    /// Updates sent with a send time inside the measured window.
    pub sent_in_win: u64,
    /// Peer deliveries (another writer's update, first time).
    pub delivered: u64,
    /// Peer deliveries received inside the window.
    pub delivered_in_win: u64,
    /// Own updates echoed back.
    pub echoes: u64,
    /// Peer updates received again.
    pub dups: u64,
    /// Own updates echoed again.
    pub echo_dups: u64,
    /// Items from clients that are not writers of the room.
    pub foreign: u64,
    /// Connections the server closed.
    pub closes: u64,
    /// Connection errors.
    pub errors: u64,
    /// Frames that were not valid y-websocket messages.
    pub parse_errors: u64,
    /// Update payloads that were not valid Yjs updates.
    pub decode_errors: u64,
    /// Update payloads decoded.
    pub frames_decoded: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Self) {
        self.sent += o.sent;
        self.sent_in_win += o.sent_in_win;
        self.delivered += o.delivered;
        self.delivered_in_win += o.delivered_in_win;
        self.echoes += o.echoes;
        self.dups += o.dups;
        self.echo_dups += o.echo_dups;
        self.foreign += o.foreign;
        self.closes += o.closes;
        self.errors += o.errors;
        self.parse_errors += o.parse_errors;
        self.decode_errors += o.decode_errors;
        self.frames_decoded += o.frames_decoded;
    }
}

/// What other tasks see of a client while it runs.
#[derive(Default)]
pub struct Slot {
    /// Synced (the server's SyncStep2 arrived).
    pub synced: AtomicBool,
    /// The connection ended before the stop signal.
    pub closed: AtomicBool,
    /// Distinct (client, clock) pairs received from the room's writers, own echoes included.
    pub got: AtomicU64,
    /// Own updates echoed (writers).
    pub echo: AtomicU64,
    /// Updates sent (writers): the next clock.
    pub sent: AtomicU64,
    /// Wakes the sender when echoes arrive (rate 0).
    pub wake: Notify,
    /// The reader's waker for the stop signal.
    reader_stop: Mutex<Option<Waker>>,
    /// The sender's waker for the stop signal.
    sender_stop: Mutex<Option<Waker>>,
}

/// Resolves once the run stops. Each task registers its waker in its own slot, so waiting costs
/// an uncontended lock per poll instead of the shared lock of a `Notify` (readers wait on it
/// every time they go idle).
struct StopWait<'a> {
    stop: &'a Stop,
    waker: &'a Mutex<Option<Waker>>,
}

impl Future for StopWait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.stop.is_set() {
            return Poll::Ready(());
        }
        {
            let mut w = self.waker.lock();
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
        }
        // the lock orders this check after a concurrent `Run::trigger_stop`'s flag store
        if self.stop.is_set() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Everything the client tasks of a run share.
pub struct Run {
    /// Options.
    pub args: Args,
    /// Server address and `Host` header.
    pub addr: SocketAddr,
    /// See `addr`.
    pub host: String,
    /// Client id of client 0; client `i` is `base + i`.
    pub client_id_base: u64,
    /// Room names; clients `r * clients .. (r + 1) * clients` are room `r`'s, the first
    /// `writers` of them write.
    pub rooms: Vec<String>,
    /// One per client.
    pub slots: Vec<Slot>,
    /// Measured window on the [`now_us`] clock (`u64::MAX` until the start).
    pub win_start_us: AtomicU64,
    /// See `win_start_us`; sending stops here too.
    pub win_end_us: AtomicU64,
    /// Set once the window is known: writers start.
    pub start: Stop,
    /// Ends every client's reader.
    pub stop: Stop,
    /// Writers still sending.
    pub senders_active: AtomicUsize,
    /// Peer delivery latency of updates sent inside the window.
    pub hist_peer: SharedHistogram,
    /// Echo latency likewise.
    pub hist_echo: SharedHistogram,
    /// The latest error message.
    pub last_error: Mutex<Option<String>>,
}

impl Run {
    /// Room of client `idx`.
    pub fn room_of(&self, idx: usize) -> usize {
        idx / self.args.clients
    }

    /// Whether client `idx` writes.
    pub fn is_writer(&self, idx: usize) -> bool {
        idx % self.args.clients < self.args.writers
    }

    /// Sets the stop signal and wakes every task waiting for it.
    pub fn trigger_stop(&self) {
        self.stop.trigger();
        for s in &self.slots {
            for w in [&s.reader_stop, &s.sender_stop] {
                if let Some(w) = w.lock().take() {
                    w.wake();
                }
            }
        }
    }

    fn set_error(&self, e: String) {
        *self.last_error.lock() = Some(e);
    }
}

/// Which clocks a receiver has seen from one sender: a contiguous prefix plus the ones that
/// arrived ahead of it.
#[derive(Debug, Default)]
pub struct Tracker {
    hi: u64,
    ahead: Option<BTreeSet<u64>>,
}

impl Tracker {
    /// Records `clock`; false if it was seen before.
    pub fn add(&mut self, clock: u64) -> bool {
        if clock < self.hi {
            return false;
        }
        if clock == self.hi {
            self.hi += 1;
            if let Some(a) = &mut self.ahead {
                while a.remove(&self.hi) {
                    self.hi += 1;
                }
            }
            return true;
        }
        self.ahead.get_or_insert_default().insert(clock)
    }

    /// Distinct clocks seen.
    pub fn count(&self) -> u64 {
        self.hi + self.ahead.as_ref().map_or(0, |a| a.len() as u64)
    }
}

/// What a client task hands back at the end.
pub struct ClientEnd {
    /// Counters, the sender's included.
    pub stats: Stats,
    /// Per writer of the room (by position), the distinct clocks received from it (own echoes
    /// at the client's own position); empty if the client never synced.
    pub counts: Vec<u64>,
}

/// The reading side's state.
struct Receiver<'a> {
    run: &'a Run,
    idx: usize,
    client_id: u64,
    first_writer_id: u64,
    trackers: Vec<Tracker>,
    got: u64,
    stats: Stats,
    recs: Records,
    peer: Samples<'a>,
    echo: Samples<'a>,
    synced: bool,
    replies: Vec<u8>,
    masker: Masker,
}

impl<'a> Receiver<'a> {
    fn new(run: &'a Run, idx: usize) -> Self {
        let room = run.room_of(idx);
        let writers = run.args.writers;
        Self {
            run,
            idx,
            client_id: run.client_id_base + idx as u64,
            first_writer_id: run.client_id_base + (room * run.args.clients) as u64,
            trackers: (0..writers).map(|_| Tracker::default()).collect(),
            got: 0,
            stats: Stats::default(),
            recs: Records::default(),
            peer: Samples::new(&run.hist_peer),
            echo: Samples::new(&run.hist_echo),
            synced: false,
            replies: Vec::new(),
            masker: Masker::new(now_ns() ^ (idx as u64).wrapping_mul(0x9E37_79B9)),
        }
    }

    /// Handles one y-websocket frame received at `now` (µs); replies go to `self.replies`.
    fn on_frame(&mut self, payload: &[u8], now: u64) {
        for m in wire::Messages::new(payload) {
            match m {
                Ok(Message::Sync(SYNC_STEP1, sv)) => {
                    // answer the server's state vector with what it is missing from us
                    let sent = self.run.slots[self.idx].sent.load(Relaxed);
                    match wire::diff_since(self.client_id, sent, sv) {
                        Ok(diff) => {
                            let mut msg = Vec::with_capacity(diff.len() + 8);
                            wire::write_sync_message(&mut msg, SYNC_STEP2, &diff);
                            encode_client(
                                &mut self.replies,
                                OP_BINARY,
                                &msg,
                                self.masker.next_key(),
                            );
                        }
                        Err(_) => {
                            self.stats.parse_errors += 1;
                            break;
                        }
                    }
                }
                Ok(Message::Sync(SYNC_STEP2, _)) => self.synced = true,
                Ok(Message::Sync(SYNC_UPDATE, u)) => self.on_update(u, now),
                Ok(_) => {}
                Err(_) => {
                    self.stats.parse_errors += 1;
                    break;
                }
            }
        }
    }

    fn on_update(&mut self, u: &[u8], now: u64) {
        self.stats.frames_decoded += 1;
        if self.recs.decode(u).is_err() {
            self.stats.decode_errors += 1;
            return;
        }
        let run = self.run;
        let (ws, we) = (run.win_start_us.load(Relaxed), run.win_end_us.load(Relaxed));
        let in_win = now >= ws && now < we;
        let in_send_win = |t: f64| t >= ws as f64 && t < we as f64;
        let lat = |t: f64| (now as f64 - t).max(0.0) as u64;
        let writers = run.args.writers as u64;
        let mut echoed = false;
        for r in 0..self.recs.recs.len() {
            let rec = self.recs.recs[r];
            let pos = rec.client.wrapping_sub(self.first_writer_id);
            if pos >= writers {
                self.stats.foreign += rec.len;
                continue;
            }
            let own = rec.client == self.client_id;
            for k in 0..rec.len {
                if !self.trackers[pos as usize].add(rec.clock + k) {
                    if own {
                        self.stats.echo_dups += 1;
                    } else {
                        self.stats.dups += 1;
                    }
                    continue;
                }
                self.got += 1;
                let t = self.recs.value(&rec, k);
                if own {
                    self.stats.echoes += 1;
                    echoed = true;
                    if let Some(t) = t.filter(|t| in_send_win(*t)) {
                        self.echo.push(lat(t));
                    }
                } else {
                    self.stats.delivered += 1;
                    if in_win {
                        self.stats.delivered_in_win += 1;
                    }
                    if let Some(t) = t.filter(|t| in_send_win(*t)) {
                        self.peer.push(lat(t));
                    }
                }
            }
        }
        let slot = &run.slots[self.idx];
        slot.got.store(self.got, Relaxed);
        if echoed {
            let pos = (self.client_id - self.first_writer_id) as usize;
            slot.echo.store(self.trackers[pos].count(), Relaxed);
            if run.args.rate == 0.0 {
                slot.wake.notify_one();
            }
        }
    }
}

fn error_label(e: &WebSocketError) -> String {
    match e {
        WebSocketError::UnexpectedEOF => "closed by server (1006)".into(),
        WebSocketError::IoError(io) => format!("io: {io}"),
        other => format!("protocol: {other}"),
    }
}

/// How the read loop ended.
enum ReadEnd {
    /// Synced (sync phase only).
    Synced,
    /// The stop signal (or the sync deadline).
    Stopped,
    /// The server closed or an error occurred.
    Lost,
}

/// Connects client `idx`, joins its room, reports the join on `ready`, then reads until the stop
/// signal; writers also run a sender task.
pub async fn client_task(
    run: std::sync::Arc<Run>,
    idx: usize,
    ready: oneshot::Sender<Result<(), String>>,
) -> ClientEnd {
    let r = &*run;
    let mut rx = Receiver::new(r, idx);
    let deadline = Instant::now() + SYNC_TIMEOUT;
    let target = Target {
        addr: r.addr,
        host: r.host.clone(),
        path_and_query: r.args.room_path(&r.rooms[r.room_of(idx)]),
    };
    let conn = match tokio::time::timeout_at(deadline, connect(&target, None)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            rx.stats.errors += 1;
            r.set_error(e.to_string());
            let _ = ready.send(Err(e.to_string()));
            return ClientEnd {
                stats: rx.stats,
                counts: Vec::new(),
            };
        }
        Err(_) => {
            let _ = ready.send(Err("sync timeout".into()));
            return ClientEnd {
                stats: rx.stats,
                counts: Vec::new(),
            };
        }
    };
    let (mut reader, writer) = (conn.reader, conn.writer);
    // like a y-websocket provider: our state vector, asking for the server's state
    let mut first = Vec::with_capacity(16);
    wire::write_sync_message(&mut first, SYNC_STEP1, &wire::state_vector(rx.client_id, 0));
    let mut frame = Vec::with_capacity(32);
    encode_client(&mut frame, OP_BINARY, &first, rx.masker.next_key());
    let mut ready = Some(ready);
    let mut end = match writer.write_raw(&frame).await {
        Ok(()) => ReadEnd::Stopped,
        Err(e) => {
            rx.stats.errors += 1;
            r.set_error(format!("io: {e}"));
            ReadEnd::Lost
        }
    };
    let mut send_fn = obligation_sender(&writer);
    let mut stop = StopWait {
        stop: &r.stop,
        waker: &r.slots[idx].reader_stop,
    };
    let sync_sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sync_sleep);
    let mut frag: Vec<u8> = Vec::new();
    let mut sender = None;
    let mut sync_phase = true;
    while !matches!(end, ReadEnd::Lost) {
        end = loop {
            let res = if sync_phase {
                tokio::select! {
                    biased;
                    res = reader.read_frame(&mut send_fn) => res,
                    _ = &mut sync_sleep => break ReadEnd::Stopped,
                }
            } else {
                tokio::select! {
                    biased;
                    res = reader.read_frame(&mut send_fn) => res,
                    _ = &mut stop => break ReadEnd::Stopped,
                }
            };
            let f = match res {
                Ok(f) => f,
                Err(e) => {
                    if !r.stop.is_set() {
                        if !matches!(e, WebSocketError::UnexpectedEOF) {
                            rx.stats.errors += 1;
                        }
                        rx.stats.closes += 1;
                        r.set_error(error_label(&e));
                    }
                    break ReadEnd::Lost;
                }
            };
            let now = now_us();
            match f.opcode {
                OpCode::Binary | OpCode::Text | OpCode::Continuation => {
                    if f.fin && frag.is_empty() {
                        rx.on_frame(&f.payload, now);
                    } else {
                        frag.extend_from_slice(&f.payload);
                        if f.fin {
                            let whole = std::mem::take(&mut frag);
                            rx.on_frame(&whole, now);
                        }
                    }
                }
                OpCode::Close => {
                    if !r.stop.is_set() {
                        let code = f
                            .payload
                            .get(..2)
                            .map_or(1005, |b| u16::from_be_bytes([b[0], b[1]]));
                        rx.stats.closes += 1;
                        r.set_error(format!("closed by server ({code})"));
                    }
                    break ReadEnd::Lost;
                }
                _ => {}
            }
            if !rx.replies.is_empty() {
                let out = std::mem::take(&mut rx.replies);
                if let Err(e) = writer.write_raw(&out).await {
                    rx.stats.errors += 1;
                    r.set_error(format!("io: {e}"));
                    break ReadEnd::Lost;
                }
                rx.replies = out;
                rx.replies.clear();
            }
            if sync_phase && rx.synced {
                break ReadEnd::Synced;
            }
        };
        match end {
            ReadEnd::Synced => {
                sync_phase = false;
                r.slots[idx].synced.store(true, Relaxed);
                if r.is_writer(idx) {
                    r.senders_active.fetch_add(1, Relaxed);
                    sender = Some(tokio::spawn(sender_task(run.clone(), idx, writer.clone())));
                }
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            ReadEnd::Stopped => break,
            ReadEnd::Lost => {}
        }
    }
    if matches!(end, ReadEnd::Lost) {
        r.slots[idx].closed.store(true, Relaxed);
    }
    if let Some(tx) = ready.take() {
        let msg = if matches!(end, ReadEnd::Lost) {
            r.last_error
                .lock()
                .clone()
                .unwrap_or_else(|| "closed before sync".into())
        } else {
            "sync timeout".into()
        };
        let _ = tx.send(Err(msg));
    }
    if matches!(end, ReadEnd::Lost) && !sync_phase {
        // keep the task (and the sender's socket) until the run stops, like load.mjs keeps
        // the closed client in its tallies
        (&mut stop).await;
    }
    let mut stats = rx.stats;
    if let Some(h) = sender
        && let Ok(s) = h.await
    {
        stats += s;
    }
    if r.stop.is_set() {
        let _ = tokio::time::timeout(Duration::from_secs(1), writer.close()).await;
    }
    let synced = r.slots[idx].synced.load(Relaxed);
    ClientEnd {
        stats,
        counts: if synced {
            rx.trackers.iter().map(Tracker::count).collect()
        } else {
            Vec::new()
        },
    }
}

/// The tokio instant of a time on the [`now_us`] clock.
fn instant_at(us: f64) -> Instant {
    let (now_i, now) = (Instant::now(), now_us() as f64);
    if us <= now {
        now_i
    } else {
        now_i + Duration::from_secs_f64((us - now) / 1e6)
    }
}

/// Appends `n` update frames of `client` at clocks `clock..` stamped `t`; `update` and `msg`
/// are scratch buffers.
#[allow(clippy::too_many_arguments)]
fn encode_updates(
    buf: &mut Vec<u8>,
    (update, msg): (&mut Vec<u8>, &mut Vec<u8>),
    masker: &mut Masker,
    client: u64,
    clock: u64,
    n: u64,
    t: u64,
) {
    for k in 0..n {
        update.clear();
        wire::encode_push_update(update, client, clock + k, t);
        msg.clear();
        wire::write_sync_message(msg, SYNC_UPDATE, update);
        encode_client(buf, OP_BINARY, msg, masker.next_key());
    }
}

/// Sends writer `idx`'s updates from the start of sending (warm-up included) to the end of the
/// window: at `--rate` per second, spread evenly over writers, or (rate 0) keeping `--window`
/// un-echoed updates in flight.
async fn sender_task(run: std::sync::Arc<Run>, idx: usize, writer: Writer) -> Stats {
    let r = &*run;
    let mut stats = Stats::default();
    let finish = |stats: Stats| {
        r.senders_active.fetch_sub(1, Relaxed);
        stats
    };
    tokio::select! {
        _ = r.start.wait() => {}
        _ = r.stop.wait() => return finish(stats),
    }
    let a = &r.args;
    let (ws, we) = (r.win_start_us.load(Relaxed), r.win_end_us.load(Relaxed));
    let send_start = ws as f64 - a.warmup * 1e6;
    let end_at = instant_at(we as f64);
    let slot = &r.slots[idx];
    let client = r.client_id_base + idx as u64;
    let mut masker = Masker::new(now_ns() ^ client.rotate_left(17));
    let mut buf = Vec::with_capacity(4096);
    let (mut update, mut msg) = (Vec::with_capacity(48), Vec::with_capacity(64));
    let mut sent = 0u64;
    let mut stop = StopWait {
        stop: &r.stop,
        waker: &slot.sender_stop,
    };
    let end_sleep = tokio::time::sleep_until(end_at);
    tokio::pin!(end_sleep);
    let mut ticker = None;
    let (period, first_due) = if a.rate > 0.0 {
        // writer w of all W starts at w/W of a period, so the sends are spread evenly
        let total = (a.rooms * a.writers) as f64;
        let w = (r.room_of(idx) * a.writers + idx % a.clients) as f64;
        let period = 1e6 / a.rate;
        let first_due = send_start + period * w / total;
        let mut iv = tokio::time::interval_at(
            instant_at(first_due),
            Duration::from_secs_f64(period / 1e6).max(Duration::from_micros(1)),
        );
        iv.set_missed_tick_behavior(MissedTickBehavior::Skip);
        ticker = Some(iv);
        (period, first_due)
    } else {
        (0.0, send_start)
    };
    if a.rate == 0.0 {
        tokio::select! {
            _ = tokio::time::sleep_until(instant_at(send_start)) => {}
            _ = &mut stop => return finish(stats),
        }
    }
    loop {
        if let Some(iv) = &mut ticker {
            tokio::select! {
                biased;
                _ = iv.tick() => {}
                _ = &mut end_sleep => break,
                _ = &mut stop => break,
            }
        }
        let now = now_us();
        if now >= we {
            break;
        }
        let n = if a.rate > 0.0 {
            let due = if (now as f64) < first_due {
                0
            } else {
                ((now as f64 - first_due) / period).floor() as u64 + 1
            };
            due.min(a.max_updates)
                .saturating_sub(sent)
                .min(MAX_CATCH_UP)
        } else {
            let in_flight = sent.saturating_sub(slot.echo.load(Relaxed));
            a.window
                .saturating_sub(in_flight)
                .min(a.max_updates.saturating_sub(sent))
        };
        if n == 0 {
            if a.rate == 0.0 {
                tokio::select! {
                    biased;
                    _ = slot.wake.notified() => {}
                    _ = &mut end_sleep => break,
                    _ = &mut stop => break,
                }
            }
            continue;
        }
        buf.clear();
        encode_updates(
            &mut buf,
            (&mut update, &mut msg),
            &mut masker,
            client,
            sent,
            n,
            now,
        );
        match tokio::time::timeout_at(end_at + WRITE_GRACE, writer.write_raw(&buf)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                stats.errors += 1;
                r.set_error(format!("write: {e}"));
                break;
            }
            Err(_) => {
                stats.errors += 1;
                r.set_error("write timeout".into());
                break;
            }
        }
        sent += n;
        slot.sent.store(sent, Relaxed);
        stats.sent += n;
        if now >= ws && now < we {
            stats.sent_in_win += n;
        }
    }
    finish(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_counts_distinct_clocks() {
        let mut t = Tracker::default();
        assert!(t.add(0));
        assert!(!t.add(0));
        assert!(t.add(2));
        assert!(!t.add(2));
        assert_eq!(t.count(), 2);
        assert!(t.add(1));
        assert_eq!(t.count(), 3);
        assert_eq!(t.hi, 3);
        assert!(t.ahead.as_ref().unwrap().is_empty());
    }
}
