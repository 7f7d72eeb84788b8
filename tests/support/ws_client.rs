//! [`WsClient`]: a connected WebSocket with bounded receives, plus [`WsSender`] and [`msg_type`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use fastwebsockets::{Frame, Payload, WebSocketError};
use hyper::header::HeaderMap;
use serde_json::Value;
use tokio::sync::mpsc;

use super::TIMEOUT;
use super::ws::{WsEvent, WsReader, WsWriter, reader_loop};

/// A WebSocket client whose socket is read by a background task into a channel, so every
/// receive can be bounded by a timeout without corrupting the stream.
pub struct WsClient {
    pub(super) writer: Arc<tokio::sync::Mutex<WsWriter>>,
    pub(super) rx: mpsc::UnboundedReceiver<WsEvent>,
    pub(super) tx: mpsc::UnboundedSender<WsEvent>,
    pub(super) paused_reader: Option<WsReader>,
    pub(super) reader_task: Option<tokio::task::JoinHandle<()>>,
    /// Set once a close or disconnect event has been received.
    pub ended: Option<WsEvent>,
    /// Response headers of the upgrade.
    pub response_headers: HeaderMap,
}

/// A cloneable, `Send + Sync` handle that writes to a [`WsClient`]'s socket (for tasks that
/// send while another borrow of the client reads).
#[derive(Clone)]
pub struct WsSender {
    writer: Arc<tokio::sync::Mutex<WsWriter>>,
}

impl WsSender {
    /// Writes one text frame, bounded by [`TIMEOUT`].
    pub async fn send_text(&self, text: &str) -> Result<(), WebSocketError> {
        let frame = Frame::text(Payload::Owned(text.as_bytes().to_vec()));
        let mut w = self.writer.lock().await;
        match tokio::time::timeout(TIMEOUT, w.write_frame(frame)).await {
            Ok(r) => r,
            Err(_) => Err(WebSocketError::IoError(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "write timed out",
            ))),
        }
    }
}

impl WsClient {
    /// Sends `text` and expects the same text back as the next message.
    pub async fn expect_echo(&mut self, who: &str, text: &str) {
        self.send_text(text).await;
        match self.recv().await {
            WsEvent::Text(t) => assert_eq!(t, text, "{who}: echo"),
            other => panic!("{who}: expected the echo of {text:?}, got {other:?}"),
        }
    }

    /// A handle that writes to this client's socket.
    pub fn sender(&self) -> WsSender {
        WsSender {
            writer: self.writer.clone(),
        }
    }

    /// Starts reading the socket (only needed for clients connected with `paused`).
    pub fn resume(&mut self) {
        if let Some(reader) = self.paused_reader.take() {
            let task = tokio::spawn(reader_loop(reader, self.writer.clone(), self.tx.clone()));
            self.reader_task = Some(task);
        }
    }

    /// Writes one frame.
    pub async fn send_frame(&self, frame: Frame<'static>) -> Result<(), WebSocketError> {
        let mut w = self.writer.lock().await;
        match tokio::time::timeout(TIMEOUT, w.write_frame(frame)).await {
            Ok(r) => r,
            Err(_) => Err(WebSocketError::IoError(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "write timed out",
            ))),
        }
    }

    /// Sends a text frame; panics if the write fails.
    pub async fn send_text(&self, text: &str) {
        self.send_frame(Frame::text(Payload::Owned(text.as_bytes().to_vec())))
            .await
            .expect("send text frame");
    }

    /// Sends a binary frame; panics if the write fails.
    pub async fn send_binary(&self, data: &[u8]) {
        self.send_frame(Frame::binary(Payload::Owned(data.to_vec())))
            .await
            .expect("send binary frame");
    }

    /// Sends `value` as a JSON text frame.
    pub async fn send_json(&self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends a close frame with `code`.
    pub async fn close(&self, code: u16) {
        let _ = self.send_frame(Frame::close(code, b"bye")).await;
    }

    /// The next event, bounded by [`TIMEOUT`]; panics on timeout.
    pub async fn recv(&mut self) -> WsEvent {
        self.recv_within(TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("no WebSocket event within {TIMEOUT:?}"))
    }

    /// The next event within `timeout`, or `None`.
    pub async fn recv_within(&mut self, timeout: Duration) -> Option<WsEvent> {
        if let Some(end) = &self.ended {
            return Some(end.clone());
        }
        assert!(
            self.paused_reader.is_none(),
            "recv on a paused client: call resume() first"
        );
        match tokio::time::timeout(timeout, self.rx.recv()).await {
            Ok(Some(ev)) => {
                if matches!(ev, WsEvent::Close { .. } | WsEvent::Disconnected(_)) {
                    self.ended = Some(ev.clone());
                }
                Some(ev)
            }
            Ok(None) => {
                let ev = WsEvent::Disconnected("reader ended".into());
                self.ended = Some(ev.clone());
                Some(ev)
            }
            Err(_) => None,
        }
    }

    /// The next event, which must be a text frame.
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            WsEvent::Text(t) => t,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next event, which must be a JSON text frame.
    pub async fn recv_json(&mut self) -> Value {
        let text = self.recv_text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}"))
    }

    /// The next JSON message, which must have `message_type`.
    pub async fn recv_type(&mut self, message_type: &str) -> Value {
        let msg = self.recv_json().await;
        assert_eq!(
            msg_type(&msg),
            message_type,
            "expected a {message_type} message, got {msg}"
        );
        msg
    }

    /// Reads until a frame whose `message_type` is `message_type`; returns it and the skipped ones.
    pub async fn recv_until_type(&mut self, message_type: &str) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + TIMEOUT;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = self.recv_within(left).await.unwrap_or_else(|| {
                panic!("no {message_type} within {TIMEOUT:?}; skipped {skipped:?}")
            });
            match ev {
                WsEvent::Text(t) => {
                    let v: Value = serde_json::from_str(&t)
                        .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {t}"));
                    if msg_type(&v) == message_type {
                        return (v, skipped);
                    }
                    skipped.push(v);
                }
                other => panic!("waiting for {message_type}, got {other:?}; skipped {skipped:?}"),
            }
        }
    }

    /// Reads (discarding data frames) until the connection ends; returns the close code, or
    /// `None` when it ended without a close frame. Bounded by `timeout`.
    pub async fn expect_end_within(&mut self, timeout: Duration) -> (Option<u16>, Vec<WsEvent>) {
        let deadline = Instant::now() + timeout;
        let mut data = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_within(left).await {
                Some(WsEvent::Close { code, .. }) => return (code, data),
                Some(WsEvent::Disconnected(_)) => return (None, data),
                Some(ev) => data.push(ev),
                None => panic!(
                    "connection did not end within {timeout:?}; received {} frame(s), last: {:?}",
                    data.len(),
                    data.last()
                ),
            }
        }
    }

    /// Reads until a close frame arrives and returns its code; panics on EOF without close.
    pub async fn expect_close(&mut self) -> u16 {
        self.expect_close_reason().await.0
    }

    /// Reads until a close frame arrives and returns its code and reason.
    pub async fn expect_close_reason(&mut self) -> (u16, String) {
        let (_, data) = self.expect_end_within(TIMEOUT).await;
        match &self.ended {
            Some(WsEvent::Close {
                code: Some(code),
                reason,
            }) => (*code, reason.clone()),
            other => {
                panic!("connection ended without a close code ({other:?}); frames before: {data:?}")
            }
        }
    }
}

impl Drop for WsClient {
    fn drop(&mut self) {
        if let Some(task) = self.reader_task.take() {
            task.abort();
        }
    }
}

/// `message_type` of a chat envelope (`""` when missing).
pub fn msg_type(v: &Value) -> &str {
    v.get("message_type").and_then(Value::as_str).unwrap_or("")
}
