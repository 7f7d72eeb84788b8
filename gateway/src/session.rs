//! A WebSocket session after the handshake: a reader that decodes client messages and hands
//! them to the plugin in order (awaiting each call, which is the connection's backpressure),
//! and a writer task that drains the outbox in batches, pings, and enforces idle and token
//! expiry.

use crate::hub::Conn;
use crate::metrics::Metrics;
use crate::plugin::{self, CallError, PluginSlot};
use crate::wire::codec::{self, Decoder, Message};
use bytes::{Bytes, BytesMut};
use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tracing::Instrument;

/// How long a closing connection waits for the peer's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long a blocked write may take once a close is scheduled.
const WRITE_GRACE: Duration = Duration::from_secs(1);
/// Read size per readiness event.
const READ_CHUNK: usize = 4096;

/// Runs an upgraded connection to its end, then reports the close to the plugin and forgets
/// the connection (topics, presence).
pub fn run(
    conn: Arc<Conn>,
    slot: Arc<PluginSlot>,
    metrics: Arc<Metrics>,
    stream: TcpStream,
    leftover: Bytes,
) -> impl std::future::Future<Output = ()> + Send {
    let span =
        tracing::info_span!("conn", id = conn.id, remote = %conn.remote, route = %conn.route);
    let inner = async move {
        let _ = stream.set_nodelay(true);
        // TCP keepalive finds peers that vanished without a FIN (a dropped NAT entry, a dead
        // host) even while the idle timeout waits on a blocked write.
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(std::time::Duration::from_secs(30))
            .with_interval(std::time::Duration::from_secs(10))
            .with_retries(3);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        // hyper's finished connection task left its waker in the socket's readiness slots,
        // which keeps that task's memory (~0.9 KiB) alive for the connection's life: put a
        // no-op waker there instead (this session waits through `readable()`/`writable()`).
        {
            let mut noop = std::task::Context::from_waker(std::task::Waker::noop());
            let _ = stream.poll_read_ready(&mut noop);
            let _ = stream.poll_write_ready(&mut noop);
        }
        let (rd, wr) = stream.into_split();
        // The writer is polled once per batch: it logs through the span instead of entering it
        // on every poll.
        let writer = tokio::spawn(write_loop(
            conn.clone(),
            wr,
            metrics.clone(),
            tracing::Span::current(),
        ));
        // The reader lives in its own allocation: inline, rustc laid this future (and the task
        // that awaits it) out at ~3 times the reader's size (measured: 2,152 vs 176 bytes).
        let reading = Box::pin(read_loop(&conn, &slot, rd, leftover, &metrics));
        let (code, reason) = reading.await;
        conn.outbox.close(code, &reason);
        tracing::debug!(code, reason = %reason, "connection closed");
        // Boxed: the plugin call and the cluster update are large futures awaited once, at
        // the end; inline they would size every idle connection's task.
        // (Each boxed in its own statement: a temporary lives to the end of its statement, so
        // `Box::pin(f).await` would still reserve room for `f` in this future.)
        let closed = Box::pin(slot.on_close(&conn, code, &reason));
        if let Err(e) = closed.await {
            tracing::warn!("on-close failed: {e}");
        }
        let forget = Box::pin(slot.shared.cluster.forget(conn.id));
        forget.await;
        let _ = writer.await;
        metrics.connections_open.fetch_sub(1, Relaxed);
    };
    inner.instrument(span)
}

async fn read_loop(
    conn: &Conn,
    slot: &PluginSlot,
    rd: OwnedReadHalf,
    leftover: Bytes,
    metrics: &Metrics,
) -> (u16, String) {
    let mut buf = BytesMut::from(&leftover[..]);
    drop(leftover);
    let mut dec = Decoder::new(conn.limits.max_frame_bytes, conn.limits.max_message_bytes);
    let mut rate = crate::rate::InboundRate::new(&conn.limits, std::time::Instant::now());
    let mut closing_since: Option<tokio::time::Instant> = None;
    loop {
        // Handle every complete message already buffered.
        loop {
            let msg = match dec.decode(&mut buf) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    metrics.protocol_closes.fetch_add(1, Relaxed);
                    tracing::info!(code = e.close_code(), "closing connection: {e}");
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
                tracing::info!(code = 1008, "closing connection: {why}");
                conn.outbox.close(1008, why);
                return (1008, why.to_string());
            }
            metrics.frames_in.fetch_add(1, Relaxed);
            // Boxed so the call's state lives on the heap only while a frame is in the plugin;
            // inline it would size every idle connection's task.
            let call = Box::pin(slot.on_frame(conn, &frame));
            if let Err(e) = call.await {
                if slot.keeps_connection(&e) {
                    tracing::warn!(
                        "plugin failed on a frame, connection kept by fault policy: {e}"
                    );
                    continue;
                }
                let code = match e {
                    CallError::Busy => 1013,
                    _ => 1011,
                };
                tracing::warn!(code, "closing connection after plugin failure: {e}");
                conn.outbox.close(code, "plugin error");
                return (code, "plugin error".into());
            }
        }
        // Release the buffer while idle so parked connections hold no read memory.
        if buf.is_empty() && buf.capacity() > 0 {
            buf = BytesMut::new();
        }
        if closing_since.is_none() && conn.outbox.close_state().is_some() {
            closing_since = Some(tokio::time::Instant::now());
        }
        let deadline = closing_since.map(|t| t + CLOSE_GRACE);
        tokio::select! {
            r = rd.readable() => {
                if r.is_err() {
                    return closed_reason(conn);
                }
                buf.reserve(READ_CHUNK);
                match rd.try_read_buf(&mut buf) {
                    Ok(0) => return closed_reason(conn),
                    Ok(n) => { metrics.bytes_in.fetch_add(n as u64, Relaxed); }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return closed_reason(conn),
                }
            }
            _ = conn.outbox.closing.notified(), if closing_since.is_none() => {}
            _ = sleep_until_opt(deadline) => return closed_reason(conn),
        }
    }
}

/// The close code to report when the socket ended: ours if we closed, else 1006.
fn closed_reason(conn: &Conn) -> (u16, String) {
    conn.outbox
        .close_state()
        .unwrap_or((1006, "connection lost".into()))
}

async fn sleep_until_opt(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn write_loop(
    conn: Arc<Conn>,
    mut wr: OwnedWriteHalf,
    metrics: Arc<Metrics>,
    span: tracing::Span,
) {
    let ping_every = Duration::from_millis(conn.limits.ping_interval_ms.max(100));
    let idle_ms = conn.limits.idle_timeout_ms;
    let mut frames: Vec<Bytes> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut next_ping = tokio::time::Instant::now() + ping_every;
    // One timer per connection, re-armed only when it fires (not on every wake-up).
    let tick = tokio::time::sleep_until(next_tick(&conn, next_ping));
    tokio::pin!(tick);
    loop {
        let close = conn.outbox.drain(&mut frames);
        if !frames.is_empty() {
            // Small batches are copied into one buffer (one contiguous send is cheaper for the
            // kernel than many short iovecs); large ones go out as vectored writes.
            let size: usize = frames.iter().map(Bytes::len).sum();
            let r = if frames.len() == 1 {
                write_buf(&conn, &mut wr, &frames[0]).await
            } else if size <= COALESCE_BYTES {
                buf.clear();
                for f in &frames {
                    buf.extend_from_slice(f);
                }
                write_buf(&conn, &mut wr, &buf).await
            } else {
                write_frames(&conn, &mut wr, &frames).await
            };
            frames.clear();
            if frames.capacity() > 256 {
                frames = Vec::new();
            }
            if buf.capacity() > COALESCE_BYTES {
                buf = Vec::new();
            }
            match r {
                Ok(bytes) => {
                    metrics.bytes_out.fetch_add(bytes as u64, Relaxed);
                    metrics.write_batches.fetch_add(1, Relaxed);
                }
                Err(_) => {
                    conn.outbox.close(1006, "write failed");
                    return;
                }
            }
        }
        if let Some((code, reason)) = close {
            let fin = Box::pin(finish_close(&mut wr, code, &reason));
            fin.await;
            return;
        }
        tokio::select! {
            _ = conn.outbox.wake.notified() => {}
            _ = &mut tick => {
                let now = crate::clock::now_ms();
                if conn.expires_at_ms.is_some_and(|e| now >= e) {
                    tracing::info!(parent: &span, "token expired");
                    conn.outbox.close(4001, "token expired");
                } else if tokio::time::Instant::now() >= next_ping {
                    next_ping = tokio::time::Instant::now() + ping_every;
                    let silent = now.saturating_sub(conn.last_seen_ms.load(Relaxed));
                    if silent >= idle_ms {
                        tracing::info!(parent: &span, silent_ms = silent, "idle timeout");
                        conn.outbox.close(1001, "idle timeout");
                    } else {
                        conn.outbox.push(codec::encode(codec::op::PING, b""));
                    }
                }
                tick.as_mut().reset(next_tick(&conn, next_ping));
            }
        }
    }
}

/// Sends our close frame (unless the socket is gone) and shuts the socket down, each bounded by
/// `WRITE_GRACE`.
async fn finish_close(wr: &mut OwnedWriteHalf, code: u16, reason: &str) {
    if code != 1006 {
        let f = codec::encode_close(code, reason);
        let _ = tokio::time::timeout(WRITE_GRACE, wr.write_all(&f)).await;
    }
    let _ = tokio::time::timeout(WRITE_GRACE, wr.shutdown()).await;
}

/// The next time the writer must look at the clock: the next ping, or the token's expiry.
fn next_tick(conn: &Conn, next_ping: tokio::time::Instant) -> tokio::time::Instant {
    match conn.expires_at_ms {
        Some(exp) => {
            let left = exp.saturating_sub(crate::clock::now_ms());
            next_ping.min(tokio::time::Instant::now() + Duration::from_millis(left))
        }
        None => next_ping,
    }
}

/// Batches up to this size are coalesced into one buffer before writing.
const COALESCE_BYTES: usize = 64 << 10;

/// Most frames handed to one `writev` call.
const MAX_IOV: usize = 256;

/// Writes a batch of encoded frames with vectored writes (one system call per `MAX_IOV` frames
/// when the socket keeps up), giving up shortly after a close is scheduled if the peer is not
/// reading.
async fn write_frames(
    conn: &Conn,
    wr: &mut OwnedWriteHalf,
    frames: &[Bytes],
) -> std::io::Result<usize> {
    let mut total = 0;
    // On the heap: an iovec array in the future would cost every idle connection its size.
    let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(frames.len().min(MAX_IOV));
    for chunk in frames.chunks(MAX_IOV) {
        iov.clear();
        iov.extend(chunk.iter().map(|f| IoSlice::new(f)));
        let mut bufs = &mut iov[..];
        while !bufs.is_empty() {
            match wr.try_write_vectored(bufs) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    total += n;
                    IoSlice::advance_slices(&mut bufs, n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let wait = Box::pin(wait_writable(conn, wr));
                    wait.await?
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(total)
}

/// Writes one buffer, waiting for the socket only when it is full.
async fn write_buf(conn: &Conn, wr: &mut OwnedWriteHalf, data: &[u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < data.len() {
        match wr.try_write(&data[done..]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            // Boxed: a full socket is rare, and the timer inside would size every idle writer.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let wait = Box::pin(wait_writable(conn, wr));
                wait.await?
            }
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Waits until the socket takes more bytes; once a close is scheduled, waits at most
/// `WRITE_GRACE`.
async fn wait_writable(conn: &Conn, wr: &OwnedWriteHalf) -> std::io::Result<()> {
    if conn.outbox.close_state().is_some() {
        return tokio::time::timeout(WRITE_GRACE, wr.writable())
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
    }
    tokio::select! {
        r = wr.writable() => r,
        _ = conn.outbox.closing.notified() => {
            tokio::time::timeout(WRITE_GRACE, wr.writable())
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
        }
    }
}
