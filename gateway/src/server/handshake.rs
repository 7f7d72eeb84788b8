//! The first request on a new connection, read without hyper: a plain WebSocket upgrade is
//! answered here (the 101 and the plugin's first frames leave in one write, and the session
//! runs in the connection's first task); anything else goes to hyper with the bytes already
//! read in front of the socket ([`Prefixed`]).

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::request::Body;

/// The most header lines a request read here may carry; more goes to hyper (which allows 100).
const MAX_HEADERS: usize = 64;
/// A request head longer than this goes to hyper, which has its own limits and errors.
const MAX_HEAD_BYTES: usize = 16 << 10;
/// First read size: a browser's upgrade with a token in the query fits.
const FIRST_READ: usize = 4096;

/// What the first request on a connection turned out to be.
pub enum First {
    /// A WebSocket upgrade (GET, HTTP/1.1, `Connection: upgrade`, `Upgrade: websocket`, no
    /// body), with the bytes that followed its head.
    Upgrade(Box<Request<()>>, Bytes),
    /// Anything else, or a head this reader does not take: every byte read so far, for hyper.
    Other(Bytes),
    /// The peer closed, failed or sent nothing complete in time: nothing to answer.
    Gone,
}

/// Reads the first request head off `stream`, giving up after `timeout`.
pub async fn read_first(stream: &TcpStream, timeout: Duration) -> First {
    match tokio::time::timeout(timeout, read_head(stream)).await {
        Ok(first) => first,
        Err(_) => First::Gone,
    }
}

async fn read_head(stream: &TcpStream) -> First {
    let mut buf = BytesMut::with_capacity(FIRST_READ);
    loop {
        match stream.try_read_buf(&mut buf) {
            Ok(0) => return First::Gone,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if stream.readable().await.is_err() {
                    return First::Gone;
                }
                continue;
            }
            Err(_) => return First::Gone,
        }
        match parse(&buf) {
            Parsed::Upgrade(req, n) => {
                let rest = Bytes::copy_from_slice(&buf[n..]);
                return First::Upgrade(req, rest);
            }
            Parsed::Other => return First::Other(buf.freeze()),
            Parsed::Partial if buf.len() >= MAX_HEAD_BYTES => return First::Other(buf.freeze()),
            Parsed::Partial => {
                if buf.capacity() == buf.len() {
                    buf.reserve(buf.len());
                }
            }
        }
    }
}

enum Parsed {
    /// A complete upgrade head of this many bytes.
    Upgrade(Box<Request<()>>, usize),
    Other,
    Partial,
}

fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    if req.method != Some("GET") || req.version != Some(1) {
        return Parsed::Other;
    }
    let (mut connection, mut upgrade) = (false, false);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            connection |= has_token(h.value, b"upgrade");
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(h.value, b"websocket");
        } else if h.name.eq_ignore_ascii_case("content-length") {
            if h.value != b"0" {
                return Parsed::Other;
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Other;
        }
    }
    if !(connection && upgrade) {
        return Parsed::Other;
    }
    let mut b = Request::builder()
        .method(hyper::Method::GET)
        .uri(req.path.unwrap_or("/"));
    for h in req.headers.iter() {
        b = b.header(h.name, h.value);
    }
    match b.body(()) {
        Ok(r) => Parsed::Upgrade(Box::new(r), n),
        // A target or header hyper's types refuse: let hyper answer it.
        Err(_) => Parsed::Other,
    }
}

/// Whether a comma-separated header value lists `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&c| c == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// The `Sec-WebSocket-Accept` value for a client's key (RFC 6455, 4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    use base64::Engine;
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(key);
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// The 101 response head for an accepted upgrade.
pub fn switching_protocols(key: &[u8], subprotocol: Option<&str>) -> Vec<u8> {
    let mut head = Vec::with_capacity(160);
    head.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: ",
    );
    head.extend_from_slice(accept_key(key).as_bytes());
    if let Some(p) = subprotocol {
        head.extend_from_slice(b"\r\nsec-websocket-protocol: ");
        head.extend_from_slice(p.as_bytes());
    }
    head.extend_from_slice(b"\r\n\r\n");
    head
}

/// Writes a complete response on a connection that then closes (a refused upgrade).
pub async fn respond_and_close(stream: &mut TcpStream, resp: Response<Body>) {
    let (parts, body) = resp.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(never) => match never {},
    };
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    for (k, v) in &parts.headers {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\nconnection: close\r\n\r\n");
    out.extend_from_slice(&body);
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}

/// A socket with bytes already read off it put back in front, for hyper.
pub struct Prefixed {
    prefix: Bytes,
    io: TokioIo<TcpStream>,
}

impl Prefixed {
    /// `stream`, reading `prefix` first.
    pub fn new(prefix: Bytes, stream: TcpStream) -> Self {
        Self {
            prefix,
            io: TokioIo::new(stream),
        }
    }

    /// The socket and whatever of the prefix hyper did not read.
    pub fn into_parts(self) -> (TcpStream, Bytes) {
        (self.io.into_inner(), self.prefix)
    }
}

impl Read for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn only_plain_upgrades_are_taken() {
        let up = b"GET /ws?token=x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\nrest";
        match parse(up) {
            Parsed::Upgrade(r, n) => {
                assert_eq!(r.uri().path(), "/ws");
                assert_eq!(r.uri().query(), Some("token=x"));
                assert_eq!(r.headers()["sec-websocket-key"], "k");
                assert_eq!(&up[n..], b"rest");
            }
            _ => panic!("an upgrade"),
        }
        assert!(matches!(parse(&up[..40]), Parsed::Partial));
        let plain = b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(matches!(parse(plain), Parsed::Other));
        let post = b"POST /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert!(matches!(parse(post), Parsed::Other));
        let body = b"GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\nabc";
        assert!(matches!(parse(body), Parsed::Other));
        let http10 = b"GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert!(matches!(parse(http10), Parsed::Other));
        assert!(matches!(
            parse(b"\x16\x03\x01garbage\r\n\r\n"),
            Parsed::Other
        ));
    }

    #[test]
    fn switching_protocols_head() {
        let h = switching_protocols(b"dGhlIHNhbXBsZSBub25jZQ==", Some("chat"));
        let h = String::from_utf8(h).unwrap();
        assert!(h.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(h.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(h.ends_with("sec-websocket-protocol: chat\r\n\r\n"));
    }
}
