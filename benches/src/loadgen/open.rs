//! Opening connections: one at a time ([`Opener::open`]) or many with bounded
//! concurrency ([`open_many`]), each getting a reader task right away.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use fastwebsockets::OpCode;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, timeout_at};

use super::cli::Mode;
use super::payload::ABLY_CHANNEL;
use super::session::{ReadStats, Shared, read_loop};
use super::token::Minter;
use crate::client::{Conn, Writer, connect, obligation_sender};
use crate::hist::Histogram;
use crate::target::Target;

/// Knows how to open a ready connection for the chosen mode.
pub struct Opener {
    target: Target,
    second: Option<Target>,
    publisher: Option<Target>,
    mode: Mode,
    minter: Option<Arc<Minter>>,
    users: Option<usize>,
}

impl Opener {
    /// An opener for `target`; `minter` is required in chat mode.
    pub fn new(
        target: Target,
        mode: Mode,
        minter: Option<Arc<Minter>>,
        users: Option<usize>,
    ) -> Self {
        Self {
            target,
            second: None,
            publisher: None,
            mode,
            minter,
            users,
        }
    }

    /// Sends odd-numbered connections to `second` (a second gateway) and the fanout
    /// publisher to `publisher`.
    pub fn with_targets(mut self, second: Option<Target>, publisher: Option<Target>) -> Self {
        self.second = second;
        self.publisher = publisher;
        self
    }

    /// Opens the fanout publisher's connection.
    pub async fn open_publisher(&self, token: Option<&str>) -> Result<Conn, String> {
        self.open_on(self.publisher.as_ref().unwrap_or(&self.target), token)
            .await
    }

    /// A fresh token for connection `i` (`None` in bare mode).
    pub fn token(&self, i: usize) -> Result<Option<String>, String> {
        let user = format!("user-{}", self.users.map_or(i, |u| i % u));
        self.token_for(&user, i as u64)
    }

    /// A fresh token for user `sub` (`None` in bare mode).
    pub fn token_for(&self, sub: &str, n: u64) -> Result<Option<String>, String> {
        match &self.minter {
            None => Ok(None),
            Some(m) => m.mint(sub, n).map(Some).map_err(|e| format!("token: {e}")),
        }
    }

    /// Opens a connection and waits until it is ready: in chat mode until the
    /// first text frame (the welcome `system_message`), in bare mode until the
    /// upgrade completes (the bare server sends nothing on connect).
    pub async fn open(&self, token: Option<&str>) -> Result<Conn, String> {
        self.open_on(&self.target, token).await
    }

    /// Opens connection number `i`: on the second gateway when there is one and `i` is odd.
    pub async fn open_nth(&self, i: usize, token: Option<&str>) -> Result<Conn, String> {
        match &self.second {
            Some(t) if i % 2 == 1 => self.open_on(t, token).await,
            _ => self.open_on(&self.target, token).await,
        }
    }

    async fn open_on(&self, target: &Target, token: Option<&str>) -> Result<Conn, String> {
        let mut conn = connect(target, token).await.map_err(|e| e.label())?;
        if self.mode == Mode::Ably {
            ably_handshake(&mut conn).await?;
        } else if self.mode == Mode::Chat {
            until_text(&mut conn, "welcome", |_| Some(Ok(()))).await?;
        }
        Ok(conn)
    }
}

/// Reads frames until a text frame that `verdict` decides on: `Some(Ok)` is what was waited
/// for, `Some(Err)` a refusal; a close or a lost connection is an error naming `what`.
async fn until_text(
    conn: &mut Conn,
    what: &str,
    verdict: impl Fn(&[u8]) -> Option<Result<(), String>>,
) -> Result<(), String> {
    let mut send_fn = obligation_sender(&conn.writer);
    loop {
        let frame = conn
            .reader
            .read_frame(&mut send_fn)
            .await
            .map_err(|_| format!("lost before {what}"))?;
        match frame.opcode {
            OpCode::Text => {
                if let Some(v) = verdict(&frame.payload) {
                    return v;
                }
            }
            OpCode::Close => return Err(format!("closed before {what}")),
            _ => {}
        }
    }
}

/// Waits for CONNECTED, attaches the bench channel and waits for ATTACHED.
async fn ably_handshake(conn: &mut Conn) -> Result<(), String> {
    let action = |action: &'static [u8], what: &'static str| {
        move |p: &[u8]| {
            if p.windows(action.len()).any(|w| w == action) {
                Some(Ok(()))
            } else if p.starts_with(b"{\"action\":9") {
                Some(Err(format!("refused before {what}")))
            } else {
                None
            }
        }
    };
    until_text(conn, "CONNECTED", action(b"\"action\":4", "CONNECTED")).await?;
    let mut buf = Vec::new();
    let attach = format!("{{\"action\":10,\"channel\":\"{ABLY_CHANNEL}\"}}");
    crate::frame::encode_client(
        &mut buf,
        crate::frame::OP_TEXT,
        attach.as_bytes(),
        rand_key(),
    );
    conn.writer
        .write_raw(&buf)
        .await
        .map_err(|e| format!("io: {}", e.kind()))?;
    until_text(conn, "ATTACHED", action(b"\"action\":11", "ATTACHED")).await
}

/// A masking key for the one-off ATTACH frame.
fn rand_key() -> [u8; 4] {
    (crate::clock::now_ns() as u32).to_le_bytes()
}

/// An open connection whose reader runs in its own task.
pub struct Peer {
    /// Shared write side.
    pub writer: Writer,
    /// The reader task.
    pub reader: JoinHandle<ReadStats>,
}

/// Spawns the reader task of `conn` and returns the peer.
pub fn start_peer(conn: Conn, shared: &Arc<Shared>) -> Peer {
    let writer = conn.writer.clone();
    let shared = shared.clone();
    let reader = tokio::spawn(async move { read_loop(conn.reader, conn.writer, &shared).await });
    Peer { writer, reader }
}

/// Outcome of [`open_many`].
pub struct Opened {
    /// Connections that are open.
    pub peers: Vec<Peer>,
    /// Connect latency (start of TCP connect to ready).
    pub latency: Histogram,
    /// Failures by kind.
    pub failures: BTreeMap<String, u64>,
    /// From the first attempt to the last completion.
    pub elapsed: Duration,
    /// True if the deadline cut the phase short.
    pub timed_out: bool,
}

/// Opens connections `ids` with at most `concurrency` attempts in flight.
pub async fn open_many(
    opener: &Arc<Opener>,
    ids: Range<usize>,
    concurrency: usize,
    shared: &Arc<Shared>,
    deadline: Instant,
) -> Opened {
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    let t0 = Instant::now();
    let mut timed_out = false;
    for i in ids {
        let Ok(Ok(permit)) = timeout_at(deadline, sem.clone().acquire_owned()).await else {
            timed_out = true;
            break;
        };
        let opener = opener.clone();
        let shared = shared.clone();
        set.spawn(async move {
            let token = opener.token(i)?;
            let start = Instant::now();
            let res = timeout_at(deadline, opener.open_nth(i, token.as_deref())).await;
            let done = Instant::now();
            drop(permit);
            match res {
                Ok(Ok(conn)) => {
                    shared.connected.fetch_add(1, Relaxed);
                    Ok((start_peer(conn, &shared), done - start, done))
                }
                Ok(Err(label)) => {
                    shared.failed.fetch_add(1, Relaxed);
                    Err(label)
                }
                Err(_) => {
                    shared.failed.fetch_add(1, Relaxed);
                    Err("timeout".to_string())
                }
            }
        });
    }
    let mut out = Opened {
        peers: Vec::new(),
        latency: Histogram::new(),
        failures: BTreeMap::new(),
        elapsed: Duration::ZERO,
        timed_out,
    };
    let mut last = t0;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok((peer, latency, done))) => {
                out.latency.record(latency.as_micros() as u64);
                out.peers.push(peer);
                last = last.max(done);
            }
            Ok(Err(label)) => *out.failures.entry(label).or_default() += 1,
            Err(_) => *out.failures.entry("task".into()).or_default() += 1,
        }
    }
    out.elapsed = last - t0;
    out.timed_out |= Instant::now() >= deadline;
    out
}
