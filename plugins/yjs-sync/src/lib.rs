//! The `yjs-sync` plugin: y-websocket clients in rooms at `<route prefix>/<room>`, every update
//! and awareness change appended to the room's y-redis stream and delivered back to the room
//! (sender included) from the stream, merged per batch. The formats are in [`yjs_core`].
//!
//! Per connection the host keeps an attachment: `flags: u8` (bit 0 = may write), the room's
//! stream key as a varString, then the [`AwarenessTracker`].
#![deny(unsafe_code)]

use plugin_sdk::{
    ConnId, ConnInfo, Entry, Frame, HostError, LogLevel, Plugin, Reject, export_plugin, host,
    storage, streams,
};
use std::sync::OnceLock;
use yjs_core::doc::{build_doc, greeting_frames};
use yjs_core::keys::{DEFAULT_DOCID, DEFAULT_PREFIX, storage_prefix, stream_key};
use yjs_core::lib0::{Decoder, write_var_string};
use yjs_core::merge::merge_batch;
use yjs_core::presence::AwarenessTracker;
use yjs_core::protocol::{Message, to_stream_message};

/// Longest room name (the raw path segment).
const MAX_ROOM: usize = 512;
const FLAG_WRITE: u8 = 1;

struct Settings {
    prefix: String,
    docid: String,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

fn settings() -> &'static Settings {
    SETTINGS.get_or_init(|| Settings {
        prefix: DEFAULT_PREFIX.into(),
        docid: DEFAULT_DOCID.into(),
    })
}

fn log(level: LogLevel, msg: &str) {
    host::log(level, msg);
}

fn describe(e: &HostError) -> String {
    match e {
        HostError::NotFound => "not found".into(),
        HostError::TooLarge(m) | HostError::Invalid(m) | HostError::Unavailable(m) => m.clone(),
    }
}

/// What a connection's attachment holds.
struct Attachment {
    write: bool,
    key: String,
    tracker: AwarenessTracker,
}

impl Attachment {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![if self.write { FLAG_WRITE } else { 0 }];
        write_var_string(&mut out, &self.key);
        out.extend(self.tracker.to_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Attachment> {
        let mut d = Decoder::new(bytes);
        let flags = d.read_u8().ok()?;
        let key = d.read_var_string().ok()?.to_string();
        let (tracker, _) = AwarenessTracker::from_bytes(d.remaining()).ok()?;
        Some(Attachment {
            write: flags & FLAG_WRITE != 0,
            key: key.clone(),
            tracker,
        })
    }
}

/// The room: the raw (undecoded) path after the route's prefix, one segment.
fn room_of(info: &ConnInfo) -> Result<String, Reject> {
    let base = info.route.trim_end_matches('*').trim_end_matches('/');
    let rest = info
        .path
        .strip_prefix(base)
        .unwrap_or(&info.path)
        .trim_start_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.len() > MAX_ROOM {
        return Err(Reject::new(
            404,
            format!("expected {base}/<room> (one path segment, at most {MAX_ROOM} bytes)"),
        ));
    }
    Ok(rest.to_string())
}

/// Write access: anonymous routes and tokens without `yaccess` may write; `yaccess` other
/// than `rw` (the permission callback's answer, or a claim) means read-only.
fn may_write(info: &ConnInfo) -> bool {
    let Some(claims) = &info.claims else {
        return true;
    };
    match serde_json::from_str::<serde_json::Value>(claims) {
        Ok(v) => match v.get("yaccess").and_then(|a| a.as_str()) {
            Some(a) => a == "rw",
            None => true,
        },
        Err(_) => false,
    }
}

fn append(conn: ConnId, key: &str, m: Vec<u8>) {
    // A later failure closes the connection (1013) in the host; an immediate one here.
    if let Err(e) = streams::add_message(key, &m) {
        // The client believes the edit was sent: make it reconnect and re-sync instead of
        // silently losing it.
        log(
            LogLevel::Warn,
            &format!(
                "append to {key} failed: {}; closing so the client re-syncs",
                describe(&e)
            ),
        );
        let _ = host::close(conn, 1013, "stream unavailable, retry");
    }
}

/// Every stored object of a room. The worker writes the new object before it deletes the ones
/// it replaced: an object listed but gone when read means a compaction happened in between, so
/// the listing is read again (a few times) rather than missing its content.
fn read_stored(prefix: &str) -> Result<Vec<Vec<u8>>, HostError> {
    let mut attempt = 0;
    'list: loop {
        attempt += 1;
        let mut stored = Vec::new();
        for name in storage::list(prefix)? {
            match storage::get(&name)? {
                Some(b) => stored.push(b),
                None if attempt < 5 => continue 'list,
                None => {}
            }
        }
        return Ok(stored);
    }
}

/// The plugin.
pub struct YjsSync;

impl Plugin for YjsSync {
    fn init(config: &str) -> Result<(), String> {
        let v: serde_json::Value =
            serde_json::from_str(config).map_err(|e| format!("config: {e}"))?;
        let get = |k: &str, d: &str| -> Result<String, String> {
            match v.get(k) {
                None => Ok(d.to_string()),
                Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(_) => Err(format!("config.{k} must be a non-empty string")),
            }
        };
        let s = Settings {
            prefix: get("prefix", DEFAULT_PREFIX)?,
            docid: get("docid", DEFAULT_DOCID)?,
        };
        if let Some(obj) = v.as_object()
            && let Some(k) = obj
                .keys()
                .find(|k| !matches!(k.as_str(), "prefix" | "docid"))
        {
            return Err(format!("unknown config key '{k}' (known: prefix, docid)"));
        }
        let _ = SETTINGS.set(s);
        Ok(())
    }

    fn on_open(info: ConnInfo) -> Result<(), Reject> {
        let room = room_of(&info)?;
        let cfg = settings();
        let key = stream_key(&cfg.prefix, &room, &cfg.docid);
        let unavailable = |what: &str, e: HostError| {
            log(
                LogLevel::Error,
                &format!("{what} for {key}: {}", describe(&e)),
            );
            Reject::new(503, format!("{what} unavailable"))
        };
        // Subscribe before reading: an entry delivered from now on reaches this connection,
        // and any earlier one is in what is read below.
        host::subscribe(info.id, &key).map_err(|e| unavailable("subscribe", e))?;
        // The stream before storage: the compaction worker stores entries before it trims them,
        // so whatever is trimmed after this read is in the storage read next.
        let entries = streams::read(&key, "0", 0).map_err(|e| unavailable("stream", e))?;
        let stored = read_stored(&storage_prefix(&room, &cfg.docid))
            .map_err(|e| unavailable("storage", e))?;
        let last = entries
            .last()
            .map(|e| e.id.clone())
            .unwrap_or_else(|| "0".into());
        let messages: Vec<&[u8]> = entries.iter().map(|e| e.data.as_slice()).collect();
        let built = build_doc(&stored, &messages).map_err(|e| {
            log(LogLevel::Error, &format!("document {key} unreadable: {e}"));
            Reject::new(500, "document unreadable")
        })?;
        for f in greeting_frames(&built) {
            host::send(info.id, &Frame::Binary(f)).map_err(|e| unavailable("send", e))?;
        }
        streams::bind(&key, &key, &last).map_err(|e| unavailable("stream", e))?;
        let att = Attachment {
            write: may_write(&info),
            key: key.clone(),
            tracker: AwarenessTracker::default(),
        };
        host::set_attachment(info.id, &att.encode()).map_err(|e| unavailable("attachment", e))?;
        Ok(())
    }

    fn on_frame(conn: ConnId, attachment: Vec<u8>, frame: Frame) {
        let Some(mut att) = Attachment::decode(&attachment) else {
            let _ = host::close(conn, 1011, "connection state lost");
            return;
        };
        let Frame::Binary(bytes) = frame else {
            log(LogLevel::Info, "text frame on a Yjs connection; closing");
            let _ = host::close(conn, 1008, "binary y-protocols frames only");
            return;
        };
        let msg = match Message::parse(&bytes) {
            Ok(m) => m,
            Err(e) => {
                log(LogLevel::Info, &format!("malformed frame ({e}); closing"));
                let _ = host::close(conn, 1008, "malformed y-protocols frame");
                return;
            }
        };
        match msg {
            // The server already sent the full state; y-redis ignores the client's step 1.
            Message::SyncStep1(_) => {}
            Message::SyncStep2(_) | Message::SyncUpdate(_) => {
                if att.write
                    && let Some(m) = to_stream_message(&bytes)
                {
                    append(conn, &att.key, m);
                }
            }
            Message::Awareness(_) => {
                if !att.write {
                    return;
                }
                let Some(m) = to_stream_message(&bytes) else {
                    log(LogLevel::Debug, "malformed awareness update dropped");
                    return;
                };
                let before = att.tracker;
                att.tracker.observe_frame(&bytes);
                if att.tracker != before {
                    let _ = host::set_attachment(conn, &att.encode());
                }
                append(conn, &att.key, m);
            }
            Message::Other(t) => {
                log(LogLevel::Debug, &format!("message type {t} ignored"));
            }
        }
    }

    fn on_close(_conn: ConnId, attachment: Vec<u8>, _code: u16, _reason: String) {
        let Some(att) = Attachment::decode(&attachment) else {
            return;
        };
        if att.write
            && let Some(removal) = att.tracker.removal_frame()
            && let Err(e) = streams::add_message(&att.key, &removal)
        {
            log(
                LogLevel::Warn,
                &format!(
                    "awareness removal for {} not appended: {}",
                    att.key,
                    describe(&e)
                ),
            );
        }
    }

    fn on_stream(_topic: String, key: String, entries: Vec<Entry>) -> Vec<Frame> {
        let batch = merge_batch(
            &entries
                .iter()
                .map(|e| e.data.as_slice())
                .collect::<Vec<_>>(),
        );
        if !batch.skipped.is_empty() {
            log(
                LogLevel::Debug,
                &format!("{}: {} stream entries skipped", key, batch.skipped.len()),
            );
        }
        batch.frames.into_iter().map(Frame::Binary).collect()
    }
}

export_plugin!(YjsSync);
