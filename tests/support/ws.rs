//! WebSocket connect: [`ws_connect`], its options, errors and events, and the background reader.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use fastwebsockets::{FragmentCollectorRead, Frame, OpCode, Role, WebSocketError};
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpSocket;
use tokio::sync::mpsc;

use super::TIMEOUT;
use super::ws_client::WsClient;

/// Options for [`ws_connect`].
#[derive(Debug, Default, Clone)]
pub struct WsOptions {
    /// Extra request headers (e.g. `authorization`, `origin`, `sec-websocket-protocol`).
    pub headers: Vec<(String, String)>,
    /// `SO_RCVBUF` for the client socket (set before connecting).
    pub recv_buffer: Option<u32>,
    /// Do not read the socket until [`WsClient::resume`] (a deliberately slow consumer).
    pub paused: bool,
    /// Connect from this loopback address (e.g. 127.0.0.2) instead of 127.0.0.1.
    pub source: Option<std::net::IpAddr>,
}

impl WsOptions {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// Why a WebSocket connect failed.
#[derive(Debug)]
pub enum WsConnectError {
    /// The server answered the upgrade request with something other than 101.
    Rejected {
        status: u16,
        headers: HeaderMap,
        body: Vec<u8>,
    },
    /// Transport or protocol failure (or timeout).
    Failed(String),
}

impl std::fmt::Display for WsConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsConnectError::Rejected { status, body, .. } => write!(
                f,
                "upgrade rejected with {status}: {}",
                String::from_utf8_lossy(body)
            ),
            WsConnectError::Failed(e) => write!(f, "connect failed: {e}"),
        }
    }
}

impl WsConnectError {
    /// The rejection status and JSON body; panics for other failures or non-JSON bodies.
    pub fn rejection_json(&self) -> (u16, Value) {
        match self {
            WsConnectError::Rejected { status, body, .. } => {
                let json = serde_json::from_slice(body).unwrap_or_else(|e| {
                    panic!(
                        "rejection body ({status}) is not JSON ({e}): {:?}",
                        String::from_utf8_lossy(body)
                    )
                });
                (*status, json)
            }
            WsConnectError::Failed(e) => panic!("expected an HTTP rejection, got failure: {e}"),
        }
    }
}

/// What the reader task saw.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame from the server (`code` is `None` for an empty close payload).
    Close {
        code: Option<u16>,
        reason: String,
    },
    /// The connection ended without a close frame (EOF, reset, protocol error).
    Disconnected(String),
}

pub(super) type WsReader = FragmentCollectorRead<ReadHalf<TokioIo<Upgraded>>>;
pub(super) type WsWriter = fastwebsockets::WebSocketWrite<WriteHalf<TokioIo<Upgraded>>>;

/// Connects and upgrades, bounded by [`TIMEOUT`].
pub async fn ws_connect(
    addr: SocketAddr,
    path_and_query: &str,
    opts: WsOptions,
) -> Result<WsClient, WsConnectError> {
    tokio::time::timeout(TIMEOUT, ws_connect_inner(addr, path_and_query, opts))
        .await
        .map_err(|_| WsConnectError::Failed(format!("no upgrade within {TIMEOUT:?}")))?
}

async fn ws_connect_inner(
    addr: SocketAddr,
    path_and_query: &str,
    opts: WsOptions,
) -> Result<WsClient, WsConnectError> {
    let fail = |e: &dyn std::fmt::Display| WsConnectError::Failed(e.to_string());
    let socket = TcpSocket::new_v4().map_err(|e| fail(&e))?;
    if let Some(size) = opts.recv_buffer {
        socket.set_recv_buffer_size(size).map_err(|e| fail(&e))?;
    }
    if let Some(ip) = opts.source {
        socket
            .bind(std::net::SocketAddr::new(ip, 0))
            .map_err(|e| fail(&e))?;
    }
    let stream = socket.connect(addr).await.map_err(|e| fail(&e))?;
    stream.set_nodelay(true).map_err(|e| fail(&e))?;

    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| fail(&e))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });

    let mut req = hyper::Request::builder()
        .method("GET")
        .uri(path_and_query)
        .header("host", addr.to_string())
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header(
            "sec-websocket-key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("sec-websocket-version", "13");
    for (k, v) in &opts.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req.body(Full::new(Bytes::new())).map_err(|e| fail(&e))?;
    let mut resp = sender.send_request(req).await.map_err(|e| fail(&e))?;
    let status = resp.status().as_u16();
    if status != 101 {
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default();
        return Err(WsConnectError::Rejected {
            status,
            headers,
            body,
        });
    }
    let response_headers = resp.headers().clone();
    let upgraded = hyper::upgrade::on(&mut resp).await.map_err(|e| fail(&e))?;
    let (read, write) = tokio::io::split(TokioIo::new(upgraded));
    let (ws_read, ws_write) = fastwebsockets::after_handshake_split(read, write, Role::Client);
    let reader = FragmentCollectorRead::new(ws_read);
    let (tx, rx) = mpsc::unbounded_channel();
    let mut client = WsClient {
        writer: Arc::new(tokio::sync::Mutex::new(ws_write)),
        rx,
        tx,
        paused_reader: Some(reader),
        reader_task: None,
        ended: None,
        response_headers,
    };
    if !opts.paused {
        client.resume();
    }
    Ok(client)
}

pub(super) async fn reader_loop(
    mut reader: WsReader,
    writer: Arc<tokio::sync::Mutex<WsWriter>>,
    tx: mpsc::UnboundedSender<WsEvent>,
) {
    // Obligated sends (pong for ping, close echo) go through the shared writer. Their failures
    // are ignored so that a server close frame is still reported when the socket is gone.
    let mut send_fn = |frame: Frame<'static>| {
        let writer = writer.clone();
        async move {
            let _ = writer.lock().await.write_frame(frame).await;
            Ok::<(), WebSocketError>(())
        }
    };
    loop {
        let event = match reader.read_frame(&mut send_fn).await {
            Ok(frame) => match frame.opcode {
                OpCode::Text => WsEvent::Text(String::from_utf8_lossy(&frame.payload).into_owned()),
                OpCode::Binary => WsEvent::Binary(frame.payload.to_vec()),
                OpCode::Close => {
                    let payload: &[u8] = &frame.payload;
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    let reason = payload
                        .get(2..)
                        .map(|r| String::from_utf8_lossy(r).into_owned())
                        .unwrap_or_default();
                    WsEvent::Close { code, reason }
                }
                OpCode::Ping | OpCode::Pong | OpCode::Continuation => continue,
            },
            Err(e) => WsEvent::Disconnected(e.to_string()),
        };
        let last = matches!(event, WsEvent::Close { .. } | WsEvent::Disconnected(_));
        if tx.send(event).is_err() || last {
            break;
        }
    }
}
