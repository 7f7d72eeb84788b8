//! A WebSocket session after the handshake, in one task: it decodes client messages and hands
//! them to the plugin in order (awaiting each call, which is the connection's backpressure),
//! writes whatever the outbox holds without ever waiting on a full socket, pings, and enforces
//! idle and token expiry.

use crate::hub::Conn;
use crate::metrics::Metrics;
use crate::plugin::{self, CallError, PluginSlot};
use crate::wire::codec::{self, Decoder, Message};
use crate::wire::sender::{Flushed, Preface, Sender, Written};
use bytes::{Bytes, BytesMut};
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{Instrument, Span};

/// How long a closing connection waits for the peer's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long a blocked write may take once a close is scheduled.
const WRITE_GRACE: Duration = Duration::from_secs(1);
/// Read size per readiness event.
const READ_CHUNK: usize = 4096;

/// TCP keepalive for client sockets: it finds peers that vanished without a FIN (a dropped
/// NAT entry, a dead host) even while the idle timeout waits on a blocked write.
pub fn keepalive() -> socket2::TcpKeepalive {
    socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
        .with_retries(3)
}

/// Runs an upgraded connection to its end, then reports the close to the plugin and forgets
/// the connection (topics, presence) while the last frames and the close go out. `preface`
/// (the 101 and the first frames, when the handshake was answered here) is written first.
pub async fn run(
    conn: std::sync::Arc<Conn>,
    slot: std::sync::Arc<PluginSlot>,
    metrics: std::sync::Arc<Metrics>,
    stream: TcpStream,
    leftover: Bytes,
    preface: Preface,
) {
    // Not entered around the whole session: it is polled on every fan-out wake-up, so it
    // logs through the span and only plugin calls run inside it. Made on first use.
    let span = OnceLock::new();
    // hyper's finished connection task left its waker in the socket's readiness slots,
    // which keeps that task's memory (~0.9 KiB) alive for the connection's life: put a
    // no-op waker there instead (this session waits through `readable()`/`writable()`).
    {
        let mut noop = std::task::Context::from_waker(std::task::Waker::noop());
        let _ = stream.poll_read_ready(&mut noop);
        let _ = stream.poll_write_ready(&mut noop);
    }
    let _ = stream.set_nodelay(true);
    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive());
    let mut sender = Sender::with_preface(preface);
    let (code, reason) = drive(
        &conn,
        &slot,
        &stream,
        leftover,
        &metrics,
        &mut sender,
        &span,
    )
    .await;
    conn.outbox.close(code, &reason);
    tracing::debug!(parent: conn_span(&span, &conn), code, reason = %reason, "connection closed");
    // Boxed: awaited once, at the end; inline it would size every idle connection's task.
    let tail = Box::pin(async {
        let closed = async {
            if let Err(e) = slot.on_close(&conn, code, &reason).await {
                tracing::warn!("on-close failed: {e}");
            }
            slot.shared.cluster.forget(conn.id).await;
        };
        tokio::join!(
            closed.instrument(conn_span(&span, &conn).clone()),
            finish_writes(&conn, &stream, &mut sender, &metrics)
        );
        drain_until_end(&stream).await;
    });
    tail.await;
    metrics.connections_open.fetch_sub(1, Relaxed);
}

/// The connection's `tracing` span (id, remote address, route), made the first time the
/// connection logs or calls its plugin: one held by every idle connection would cost ~0.5 KiB
/// each in the subscriber's registry.
fn conn_span<'a>(cell: &'a OnceLock<Span>, conn: &Conn) -> &'a Span {
    cell.get_or_init(
        || tracing::info_span!("conn", id = conn.id, remote = %conn.remote, route = %conn.route),
    )
}

/// The connection's loop until its read side ends (the peer's close, end of stream, a
/// protocol error, a plugin failure, or the close grace running out); returns the close code
/// and reason to report.
async fn drive(
    conn: &Conn,
    slot: &PluginSlot,
    io: &TcpStream,
    leftover: Bytes,
    metrics: &Metrics,
    sender: &mut Sender,
    span: &OnceLock<Span>,
) -> (u16, String) {
    let mut buf = BytesMut::from(&leftover[..]);
    drop(leftover);
    let mut dec = Decoder::new(conn.limits.max_frame_bytes, conn.limits.max_message_bytes);
    let mut rate = crate::rate::InboundRate::new(&conn.limits, std::time::Instant::now());
    let mut closing_since: Option<Instant> = None;
    // The plugin call for the frame being handled; nothing more is read until it returns.
    let mut call = None;
    let mut want_write = false;
    let ping_every = Duration::from_millis(conn.limits.ping_interval_ms.max(100));
    let idle_ms = conn.limits.idle_timeout_ms;
    let mut next_ping = Instant::now() + ping_every;
    // One timer per connection, re-armed only when it fires (not on every wake-up).
    let tick = tokio::time::sleep_until(next_tick(conn, next_ping));
    tokio::pin!(tick);
    // Kept across wake-ups (re-created only once it fired): registering and dropping a fresh
    // readiness waiter on every fan-out wake-up costs a lock each way.
    let readable = io.readable();
    tokio::pin!(readable);
    loop {
        // Write what is queued; a full socket is waited for below, alongside reading.
        if !sender.is_done() {
            let mut w = Written::default();
            let r = sender.flush(io, &conn.outbox, &mut w);
            if w.bytes > 0 {
                metrics.bytes_out.fetch_add(w.bytes as u64, Relaxed);
                metrics.write_batches.fetch_add(w.batches, Relaxed);
            }
            want_write = match r {
                Ok(Flushed::Blocked) => true,
                Ok(_) => false,
                Err(_) => {
                    conn.outbox.close(1006, "write failed");
                    sender.give_up(io);
                    false
                }
            };
        }
        if closing_since.is_none() && conn.outbox.is_closing() {
            closing_since = Some(Instant::now());
        }
        // Handle every complete message already buffered, up to the next plugin call.
        while call.is_none() {
            let msg = match dec.decode(&mut buf) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    metrics.protocol_closes.fetch_add(1, Relaxed);
                    tracing::info!(parent: conn_span(span, conn), code = e.close_code(), "closing connection: {e}");
                    conn.outbox.close(e.close_code(), &e.to_string());
                    return (e.close_code(), e.to_string());
                }
            };
            conn.last_seen_ms.store(crate::clock::now_ms(), Relaxed);
            let frame = match msg {
                Message::Text(b) => {
                    plugin::Frame::Text(String::from_utf8(b.to_vec()).unwrap_or_default())
                }
                Message::Binary(b) => plugin::Frame::Binary(b.to_vec()),
                Message::Ping(p) => {
                    conn.outbox.push(codec::encode(codec::op::PONG, &p));
                    continue;
                }
                Message::Pong => continue,
                Message::Close(code, reason) => {
                    // Echo the peer's close; a close we started is already queued.
                    conn.outbox.close(code.unwrap_or(1000), "");
                    return match conn.outbox.close_state() {
                        Some(c) if closing_since.is_some() => c,
                        _ => (code.unwrap_or(1005), reason),
                    };
                }
            };
            if closing_since.is_some() {
                continue;
            }
            let len = match &frame {
                plugin::Frame::Text(t) => t.len(),
                plugin::Frame::Binary(b) => b.len(),
            };
            if let Err(why) = rate.admit(len, std::time::Instant::now()) {
                metrics.rate_limited.fetch_add(1, Relaxed);
                tracing::info!(parent: conn_span(span, conn), code = 1008, "closing connection: {why}");
                conn.outbox.close(1008, why);
                return (1008, why.to_string());
            }
            metrics.frames_in.fetch_add(1, Relaxed);
            // Boxed so the call's state lives on the heap only while a frame is in the plugin;
            // inline it would size every idle connection's task.
            call = Some(Box::pin(
                call_frame(slot, conn, frame).instrument(conn_span(span, conn).clone()),
            ));
        }
        // Release the buffer while idle so parked connections hold no read memory.
        if buf.is_empty() && buf.capacity() > 0 {
            buf = BytesMut::new();
        }
        // Closing: blocked writes get WRITE_GRACE, the peer's close frame CLOSE_GRACE.
        let deadline = closing_since.map(|t| {
            t + if sender.is_done() {
                CLOSE_GRACE
            } else {
                WRITE_GRACE
            }
        });
        tokio::select! {
            r = &mut readable, if call.is_none() => {
                readable.set(io.readable());
                if r.is_err() {
                    return closed_reason(conn);
                }
                buf.reserve(READ_CHUNK);
                match io.try_read_buf(&mut buf) {
                    Ok(0) => return closed_reason(conn),
                    Ok(n) => { metrics.bytes_in.fetch_add(n as u64, Relaxed); }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return closed_reason(conn),
                }
            }
            r = in_flight(&mut call), if call.is_some() => {
                call = None;
                if let Err(e) = r {
                    if slot.keeps_connection(&e) {
                        tracing::warn!(
                            parent: conn_span(span, conn),
                            "plugin failed on a frame, connection kept by fault policy: {e}"
                        );
                    } else {
                        let code = match e {
                            CallError::Busy => 1013,
                            _ => 1011,
                        };
                        tracing::warn!(parent: conn_span(span, conn), code, "closing connection after plugin failure: {e}");
                        conn.outbox.close(code, "plugin error");
                        return (code, "plugin error".into());
                    }
                }
            }
            r = io.writable(), if want_write => {
                if r.is_err() {
                    conn.outbox.close(1006, "write failed");
                    sender.give_up(io);
                }
            }
            _ = conn.outbox.wake.notified() => {}
            _ = &mut tick, if closing_since.is_none() => {
                let now = crate::clock::now_ms();
                if conn.expires_at_ms.is_some_and(|e| now >= e) {
                    tracing::info!(parent: conn_span(span, conn), "token expired");
                    conn.outbox.close(4001, "token expired");
                } else if Instant::now() >= next_ping {
                    next_ping = Instant::now() + ping_every;
                    let silent = now.saturating_sub(conn.last_seen_ms.load(Relaxed));
                    if silent >= idle_ms {
                        tracing::info!(parent: conn_span(span, conn), silent_ms = silent, "idle timeout");
                        conn.outbox.close(1001, "idle timeout");
                    } else {
                        conn.outbox.push(codec::encode(codec::op::PING, b""));
                    }
                }
                tick.as_mut().reset(next_tick(conn, next_ping));
            }
            // A plugin call in flight is never cut short: only the write side gives up then.
            _ = sleep_until_opt(deadline), if call.is_none() || !sender.is_done() => {
                if sender.is_done() {
                    return closed_reason(conn);
                }
                // The peer does not read: stop writing, keep waiting for its close.
                sender.give_up(io);
            }
        }
    }
}

/// Hands one client frame to the plugin.
async fn call_frame(slot: &PluginSlot, conn: &Conn, frame: plugin::Frame) -> Result<(), CallError> {
    slot.on_frame(conn, &frame).await
}

/// Waits for the plugin call in flight (the select arm is disabled when there is none).
async fn in_flight<F: Future + ?Sized>(call: &mut Option<Pin<Box<F>>>) -> F::Output {
    match call {
        Some(f) => f.as_mut().await,
        None => std::future::pending().await,
    }
}

/// After the read side ended: writes what is left and the close frame, then shuts the socket
/// down, giving a blocked socket at most `WRITE_GRACE`.
async fn finish_writes(conn: &Conn, io: &TcpStream, sender: &mut Sender, metrics: &Metrics) {
    let give_up_at = Instant::now() + WRITE_GRACE;
    loop {
        let mut w = Written::default();
        let r = sender.flush(io, &conn.outbox, &mut w);
        metrics.bytes_out.fetch_add(w.bytes as u64, Relaxed);
        metrics.write_batches.fetch_add(w.batches, Relaxed);
        match r {
            Ok(Flushed::Blocked) => {
                match tokio::time::timeout_at(give_up_at, io.writable()).await {
                    Ok(Ok(())) => {}
                    _ => break,
                }
            }
            // The outbox is closed: the batches left end in the close.
            Ok(Flushed::Idle) => {}
            Ok(Flushed::Done) | Err(_) => break,
        }
    }
    sender.give_up(io);
}

/// After the close went out, reads and discards what the peer still sends until it closes its
/// side (or CLOSE_GRACE passes): closing a socket with unread input makes the kernel send a
/// reset, which can destroy the close frame before the peer reads it.
async fn drain_until_end(io: &TcpStream) {
    let give_up_at = Instant::now() + CLOSE_GRACE;
    let mut sink = [0u8; 4096];
    // A peer that keeps sending after the close gets the reset after 256 KiB.
    let mut reads_left = 64;
    loop {
        match io.try_read(&mut sink) {
            Ok(0) => return,
            Ok(_) if reads_left == 0 => return,
            Ok(_) => reads_left -= 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                match tokio::time::timeout_at(give_up_at, io.readable()).await {
                    Ok(Ok(())) => {}
                    _ => return,
                }
            }
            Err(_) => return,
        }
    }
}

/// The close code to report when the socket ended: ours if we closed, else 1006.
fn closed_reason(conn: &Conn) -> (u16, String) {
    conn.outbox
        .close_state()
        .unwrap_or((1006, "connection lost".into()))
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        // Boxed: only a closing connection waits here; inline, the timer would size every
        // idle connection's future.
        Some(t) => {
            let sleep = Box::pin(tokio::time::sleep_until(t));
            sleep.await
        }
        None => std::future::pending().await,
    }
}

/// The next time the loop must look at the clock: the next ping, or the token's expiry.
fn next_tick(conn: &Conn, next_ping: Instant) -> Instant {
    match conn.expires_at_ms {
        Some(exp) => {
            let left = exp.saturating_sub(crate::clock::now_ms());
            next_ping.min(Instant::now() + Duration::from_millis(left))
        }
        None => next_ping,
    }
}
