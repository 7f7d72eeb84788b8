//! The write side of a connection: frames taken from the outbox and written to the socket
//! without ever waiting; whatever the socket does not take stays here until it is writable.

use super::codec;
use super::outbox::Outbox;
use bytes::Bytes;
use std::io::{self, IoSlice};
use tokio::net::TcpStream;

/// Batches up to this size are coalesced into one buffer before writing (one contiguous send
/// is cheaper for the kernel than many short iovecs); larger ones go out as vectored writes.
const COALESCE_BYTES: usize = 64 << 10;

/// Most frames handed to one `writev` call.
const MAX_IOV: usize = 256;

/// What [`Sender::flush`] got done.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// A batch (or nothing) was written; call again on the next wake-up.
    Idle,
    /// The socket is full: wait until it is writable, then flush again.
    Blocked,
    /// The close frame is written (or the close needs none) and the socket is shut down for
    /// writing: this connection writes nothing more.
    Done,
}

/// Bytes on their way out: a coalesced buffer, or a batch of frames for vectored writes.
#[derive(Default)]
pub struct Sender {
    buf: Vec<u8>,
    buf_at: usize,
    frames: Vec<Bytes>,
    /// First frame not fully written, and how much of it is.
    next: usize,
    next_at: usize,
    /// The close frame is queued behind the frames.
    close_queued: bool,
    done: bool,
    /// Leading bytes of `buf` that are not WebSocket output (the 101), left out of the count.
    uncounted: usize,
    /// `buf` holds the preface: free it once written rather than keep it for coalescing.
    release_buf: bool,
}

/// Bytes a connection writes before anything else: the 101 answering its upgrade (`head`
/// bytes, not WebSocket output, so not counted) followed by frames already queued for it.
#[derive(Debug, Default)]
pub struct Preface {
    /// The bytes, head first.
    pub bytes: Vec<u8>,
    /// How many leading bytes are the HTTP head.
    pub head: usize,
}

/// Bytes and write batches a flush put on the wire, for the metrics.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Bytes written.
    pub bytes: usize,
    /// Batches taken from the outbox and fully written.
    pub batches: u64,
}

impl Sender {
    /// A sender whose first write is `preface`.
    pub fn with_preface(preface: Preface) -> Self {
        Self {
            uncounted: preface.head.min(preface.bytes.len()),
            release_buf: !preface.bytes.is_empty(),
            buf: preface.bytes,
            ..Self::default()
        }
    }

    /// Whether the close has been written and the socket shut down (or writing was given up).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Writes what is pending, or else one batch taken from the outbox, until the socket is
    /// full or the batch is written; once the outbox's close is reached, writes the close frame
    /// (none for 1006) and shuts the socket down for writing. A write error is returned as is.
    pub fn flush(
        &mut self,
        io: &TcpStream,
        outbox: &Outbox,
        out: &mut Written,
    ) -> io::Result<Flushed> {
        if self.done {
            return Ok(Flushed::Done);
        }
        loop {
            if self.buf_at < self.buf.len() {
                match io.try_write(&self.buf[self.buf_at..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        self.buf_at += n;
                        let skip = n.min(self.uncounted);
                        self.uncounted -= skip;
                        out.bytes += n - skip;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
                    Err(e) => return Err(e),
                }
                continue;
            }
            if self.next < self.frames.len() {
                let end = self.frames.len().min(self.next + MAX_IOV);
                let first = &self.frames[self.next][self.next_at..];
                let r = if end - self.next == 1 {
                    io.try_write(first)
                } else {
                    // On the heap while writing only: an iovec array in the connection's
                    // future would cost every idle connection its size.
                    let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(end - self.next);
                    iov.push(IoSlice::new(first));
                    iov.extend(
                        self.frames[self.next + 1..end]
                            .iter()
                            .map(|f| IoSlice::new(f)),
                    );
                    io.try_write_vectored(&iov)
                };
                let n = match r {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
                    Err(e) => return Err(e),
                };
                out.bytes += n;
                self.advance(n);
                continue;
            }
            // Everything pending is written.
            if self.close_queued {
                self.finish(io);
                return Ok(Flushed::Done);
            }
            if !self.buf.is_empty() || !self.frames.is_empty() {
                // One batch per call: frames pushed meanwhile have woken the connection, and
                // the next wake-up takes them all in one batch.
                out.batches += 1;
                self.reset();
                return Ok(Flushed::Idle);
            }
            let close = outbox.drain(&mut self.frames);
            if let Some((code, reason)) = close {
                if code == 1006 {
                    // The socket is gone or broken: nothing more to say on it.
                    if self.frames.is_empty() {
                        self.finish(io);
                        return Ok(Flushed::Done);
                    }
                } else {
                    self.frames.push(codec::encode_close(code, &reason));
                }
                self.close_queued = true;
            }
            match self.frames.len() {
                0 => return Ok(Flushed::Idle),
                1 => {}
                _ => {
                    let size: usize = self.frames.iter().map(Bytes::len).sum();
                    if size <= COALESCE_BYTES {
                        for f in &self.frames {
                            self.buf.extend_from_slice(f);
                        }
                        self.frames.clear();
                    }
                }
            }
        }
    }

    /// Stops writing without the close frame (the peer is not reading, or writing failed),
    /// shutting the socket down for writing.
    pub fn give_up(&mut self, io: &TcpStream) {
        if !self.done {
            self.finish(io);
        }
    }

    fn finish(&mut self, io: &TcpStream) {
        let _ = socket2::SockRef::from(io).shutdown(std::net::Shutdown::Write);
        self.reset();
        self.done = true;
    }

    /// Marks `n` more bytes of the frame batch as written.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let left = self.frames[self.next].len() - self.next_at;
            if n >= left {
                n -= left;
                self.next += 1;
                self.next_at = 0;
            } else {
                self.next_at += n;
                n = 0;
            }
        }
    }

    /// Empties the written batch, releasing storage a large batch grew.
    fn reset(&mut self) {
        self.buf.clear();
        self.buf_at = 0;
        self.frames.clear();
        self.next = 0;
        self.next_at = 0;
        if self.frames.capacity() > 256 {
            self.frames = Vec::new();
        }
        if self.buf.capacity() > COALESCE_BYTES || self.release_buf {
            self.buf = Vec::new();
            self.release_buf = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn writes_batches_in_order_then_the_close() {
        let (mut client, server) = pair().await;
        let outbox = Outbox::new(1 << 20, 10_000);
        let mut s = Sender::default();
        let mut w = Written::default();
        assert_eq!(s.flush(&server, &outbox, &mut w).unwrap(), Flushed::Idle);
        outbox.push(Bytes::from_static(b"one"));
        outbox.push(Bytes::from_static(b"two"));
        assert_eq!(s.flush(&server, &outbox, &mut w).unwrap(), Flushed::Idle);
        outbox.push(Bytes::from(vec![b'x'; 100_000]));
        outbox.push(Bytes::from_static(b"end"));
        outbox.close(1000, "bye");
        let mut got = Vec::new();
        // The big frame may not fit the socket at once: keep flushing while the peer reads.
        loop {
            match s.flush(&server, &outbox, &mut w).unwrap() {
                Flushed::Done => break,
                Flushed::Blocked => {
                    let mut chunk = vec![0u8; 65536];
                    let n = client.read(&mut chunk).await.unwrap();
                    got.extend_from_slice(&chunk[..n]);
                }
                Flushed::Idle => {}
            }
        }
        client.read_to_end(&mut got).await.unwrap();
        let close = codec::encode_close(1000, "bye");
        assert_eq!(&got[..6], b"onetwo");
        assert!(got[6..100_006].iter().all(|&b| b == b'x'));
        assert_eq!(&got[100_006..100_009], b"end");
        assert_eq!(&got[100_009..], &close[..]);
        assert_eq!(w.bytes, got.len());
        assert!(s.is_done());
        assert_eq!(s.flush(&server, &outbox, &mut w).unwrap(), Flushed::Done);
    }

    #[tokio::test]
    async fn a_1006_close_writes_no_close_frame() {
        let (mut client, server) = pair().await;
        let outbox = Outbox::new(1 << 20, 10_000);
        outbox.push(Bytes::from_static(b"last"));
        outbox.close(1006, "write failed");
        let mut s = Sender::default();
        let mut w = Written::default();
        while s.flush(&server, &outbox, &mut w).unwrap() != Flushed::Done {}
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        // The frames queued before the failure still go out if the socket takes them.
        assert_eq!(got, b"last");
    }

    #[tokio::test]
    async fn blocked_socket_keeps_the_rest_for_later() {
        let (mut client, server) = pair().await;
        const FRAME: usize = 256 << 10;
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        let outbox = Outbox::new(64 << 20, 10_000);
        for _ in 0..64 {
            outbox.push(Bytes::from(vec![7u8; FRAME]));
        }
        outbox.close(1000, "");
        let mut s = Sender::default();
        let mut w = Written::default();
        let mut blocked = 0;
        loop {
            match s.flush(&server, &outbox, &mut w).unwrap() {
                Flushed::Done => break,
                Flushed::Blocked => {
                    blocked += 1;
                    server.writable().await.unwrap();
                }
                Flushed::Idle => {}
            }
        }
        // 16 MiB does not fit the socket buffers at once: the rest waited in the sender.
        assert!(blocked > 0);
        let got = reader.await.unwrap();
        let close = codec::encode_close(1000, "");
        assert_eq!(got.len(), 64 * FRAME + close.len());
        assert!(got[..64 * FRAME].iter().all(|&b| b == 7));
        assert_eq!(&got[64 * FRAME..], &close[..]);
        assert_eq!(w.bytes, got.len());
    }
}
