//! One bare-server connection: a fastwebsockets read half feeding the hub and a
//! writer task that drains the connection's queue into single writes.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{FragmentCollectorRead, Frame, OpCode, Role};
use tokio::io::{AsyncWriteExt, Sink};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use super::Hub;
use crate::frame::{OP_CLOSE, OP_PONG, OP_TEXT, encode_server};
use crate::prefixed::Prefixed;

/// Most frames taken from the queue per write.
const MAX_BATCH_FRAMES: usize = 1024;
/// Write buffers larger than this are released after use.
const KEEP_BUFFER_BYTES: usize = 64 * 1024;
/// Largest message a client may send.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

type Reader = FragmentCollectorRead<Prefixed<OwnedReadHalf>>;

/// Serves one upgraded connection until either side ends it.
pub(super) async fn run(rd: Prefixed<OwnedReadHalf>, wr: OwnedWriteHalf, hub: Arc<Hub>) {
    let (tx, rx) = mpsc::channel::<Bytes>(hub.queue_frames());
    let mut writer = tokio::spawn(write_loop(wr, rx));
    let id = hub.join(tx.clone(), writer.abort_handle());

    let (mut ws, _) =
        fastwebsockets::after_handshake_split::<_, Sink>(rd, tokio::io::sink(), Role::Server);
    ws.set_max_message_size(MAX_MESSAGE_BYTES);
    let mut reader = FragmentCollectorRead::new(ws);

    tokio::select! {
        _ = read_loop(&mut reader, &tx, &hub) => {}
        // The writer ended first: write error, or dropped as a slow consumer.
        _ = &mut writer => {
            hub.leave(id);
            return;
        }
    }
    hub.leave(id);
    drop(tx);
    // Let the writer flush what is still queued (such as a close echo), briefly.
    if tokio::time::timeout(Duration::from_secs(1), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// Reads frames until the client closes; each text message is broadcast.
async fn read_loop(reader: &mut Reader, tx: &mpsc::Sender<Bytes>, hub: &Hub) {
    // Pongs and close echoes go through this connection's own queue.
    let mut send_fn = |frame: Frame<'_>| {
        let opcode = match frame.opcode {
            OpCode::Close => OP_CLOSE,
            _ => OP_PONG,
        };
        let mut buf = Vec::with_capacity(frame.payload.len() + 4);
        encode_server(&mut buf, opcode, &frame.payload);
        let _ = tx.try_send(Bytes::from(buf));
        std::future::ready(Ok::<(), io::Error>(()))
    };
    loop {
        let Ok(frame) = reader.read_frame(&mut send_fn).await else {
            return;
        };
        match frame.opcode {
            OpCode::Text => {
                let mut buf = Vec::with_capacity(frame.payload.len() + 10);
                encode_server(&mut buf, OP_TEXT, &frame.payload);
                hub.broadcast(&Bytes::from(buf));
            }
            OpCode::Close => return,
            _ => {}
        }
    }
}

/// Drains everything queued and writes it with one `write` call per batch.
async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) {
    let mut batch: Vec<Bytes> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        if rx.recv_many(&mut batch, MAX_BATCH_FRAMES).await == 0 {
            break;
        }
        buf.reserve(batch.iter().map(Bytes::len).sum());
        for frame in batch.drain(..) {
            buf.extend_from_slice(&frame);
        }
        if wr.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
        if buf.capacity() > KEEP_BUFFER_BYTES {
            buf = Vec::new();
        }
    }
    let _ = wr.shutdown().await;
}
