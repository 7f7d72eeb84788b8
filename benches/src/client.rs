//! WebSocket client connections: the handshake through
//! `fastwebsockets::handshake::client`, then a raw socket split into a
//! fastwebsockets read half and a shared writer for batched, pre-encoded frames.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Role, WebSocketError, WebSocketRead};
use http_body_util::Empty;
use hyper::Request;
use hyper::header::{CONNECTION, HOST, UPGRADE};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncWriteExt, Sink};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::frame::{Masker, encode_client};
use crate::prefixed::Prefixed;
use crate::target::Target;

/// The read side of a client connection.
pub type Reader = WebSocketRead<Prefixed<OwnedReadHalf>>;

/// Why a connection attempt failed (a short, stable label for reports).
#[derive(Debug)]
pub enum ConnectError {
    /// TCP connect failed.
    Tcp(io::Error),
    /// The server answered the upgrade with this HTTP status.
    Status(u16),
    /// Any other handshake failure.
    Handshake(String),
}

impl ConnectError {
    /// A label suitable for counting failures by kind.
    pub fn label(&self) -> String {
        match self {
            ConnectError::Tcp(e) => format!("tcp: {}", e.kind()),
            ConnectError::Status(s) => format!("http {s}"),
            ConnectError::Handshake(_) => "handshake".to_string(),
        }
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Tcp(e) => write!(f, "tcp connect: {e}"),
            ConnectError::Status(s) => write!(f, "upgrade refused with HTTP {s}"),
            ConnectError::Handshake(e) => write!(f, "handshake: {e}"),
        }
    }
}

/// Runs hyper's connection futures on tokio.
struct SpawnExecutor;

impl<F> hyper::rt::Executor<F> for SpawnExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(fut);
    }
}

/// The write side of a client connection, shared by the sending task and the
/// reader (which answers pings and close frames).
#[derive(Clone)]
pub struct Writer(Arc<tokio::sync::Mutex<OwnedWriteHalf>>);

impl Writer {
    /// Writes already-encoded (masked) frames in one go.
    pub async fn write_raw(&self, buf: &[u8]) -> io::Result<()> {
        self.0.lock().await.write_all(buf).await
    }

    /// Sends a close frame with status 1000 and shuts the write side down.
    pub async fn close(&self) {
        let mut buf = Vec::with_capacity(8);
        encode_client(
            &mut buf,
            0x8,
            &1000u16.to_be_bytes(),
            [0x5a, 0x17, 0x3c, 0x9e],
        );
        let mut w = self.0.lock().await;
        let _ = w.write_all(&buf).await;
        let _ = w.shutdown().await;
    }
}

/// An open client WebSocket.
pub struct Conn {
    /// The read side.
    pub reader: Reader,
    /// The write side.
    pub writer: Writer,
}

/// How many loopback source addresses connections are spread over (127.0.0.1, .2, ...): one
/// address has ~28,000 ephemeral ports towards one server port.
pub static SOURCES: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);

static NEXT_SOURCE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn tcp_connect(addr: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    use std::sync::atomic::Ordering::Relaxed;
    let sources = SOURCES.load(Relaxed).max(1) as usize;
    if sources == 1 {
        return TcpStream::connect(addr).await;
    }
    let n = NEXT_SOURCE.fetch_add(1, Relaxed) % sources;
    let socket = tokio::net::TcpSocket::new_v4()?;
    // Let connect() pick the port (IP_BIND_ADDRESS_NO_PORT): bind() alone treats ports in
    // TIME_WAIT as taken, so a second storm within a minute stalled on port exhaustion, while
    // connect() may reuse them on loopback (tcp_tw_reuse).
    {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: a valid socket descriptor and a c_int option of the right size.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1 + n as u8], 0)))?;
    socket.connect(addr).await
}

/// Opens a WebSocket to `target`, passing `token` as the `token` query parameter.
pub async fn connect(target: &Target, token: Option<&str>) -> Result<Conn, ConnectError> {
    let tcp = tcp_connect(target.addr).await.map_err(ConnectError::Tcp)?;
    let _ = tcp.set_nodelay(true);
    let req = Request::get(target.with_token(token))
        .header(HOST, target.host.as_str())
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ConnectError::Handshake(e.to_string()))?;
    let (ws, _response) = fastwebsockets::handshake::client(&SpawnExecutor, req, tcp)
        .await
        .map_err(|e| match e {
            WebSocketError::InvalidStatusCode(s) => ConnectError::Status(s),
            other => ConnectError::Handshake(other.to_string()),
        })?;
    // Take the raw socket back so frames can be batched into single writes.
    let upgraded = ws.into_inner().into_inner();
    let parts = upgraded
        .downcast::<TokioIo<TcpStream>>()
        .map_err(|_| ConnectError::Handshake("unexpected upgraded stream type".into()))?;
    let (rd, wr) = parts.io.into_inner().into_split();
    let rd = Prefixed::new(&parts.read_buf, rd);
    drop(parts.read_buf);
    let (reader, _) =
        fastwebsockets::after_handshake_split::<_, Sink>(rd, tokio::io::sink(), Role::Client);
    Ok(Conn {
        reader,
        writer: Writer(Arc::new(tokio::sync::Mutex::new(wr))),
    })
}

/// The future returned by [`obligation_sender`].
pub type SendFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// A `send_fn` for `read_frame` that answers pings and close frames through `writer`.
pub fn obligation_sender(writer: &Writer) -> impl FnMut(Frame<'_>) -> SendFuture + use<> {
    let writer = writer.clone();
    let mut masker = Masker::new(crate::clock::now_ns() ^ 0xA5A5_5A5A);
    move |frame: Frame<'_>| {
        let mut buf = Vec::with_capacity(frame.payload.len() + 14);
        let opcode = match frame.opcode {
            OpCode::Pong => 0xA,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Continuation => 0x0,
        };
        encode_client(&mut buf, opcode, &frame.payload, masker.next_key());
        let writer = writer.clone();
        Box::pin(async move { writer.write_raw(&buf).await })
    }
}
