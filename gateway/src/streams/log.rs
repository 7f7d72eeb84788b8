//! The append log behind the in-process streams: every change is written here (in order,
//! under the streams lock) before its entries are delivered to anyone, and replayed on start.
//!
//! The file starts with [`MAGIC`]; then each record is `body_len: u32, crc32: u32, body`
//! (little endian, CRC-32 of the body). A body is `op: u8, key_len: u32, key, a: u64, b: u64,
//! data_len: u32, data`: `ADD` carries the entry id in `a`/`b`, `TRIM` the MINID milliseconds
//! in `a`, `DEL` nothing. Replay keeps every record up to the first one that is torn (a crash
//! mid-write) or damaged (a bad checksum), says what it dropped and saves the dropped bytes
//! beside the log. Logs written before checksums (no magic) are still read.

use super::{Entry, StreamError, StreamId};
use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const OP_ADD: u8 = 1;
const OP_TRIM: u8 = 2;
const OP_DEL: u8 = 3;

/// The first bytes of a log with checksummed records.
pub const MAGIC: &[u8; 8] = b"GWSLOG2\n";

/// Bytes in front of every record body: its length and checksum.
const HEAD: usize = 8;

/// Largest record body replay accepts (keys and data are far smaller in practice).
const MAX_BODY: usize = 1 << 30;

/// Write, sync and rewrite errors of the stream log since start (`/metrics`).
static ERRORS: AtomicU64 = AtomicU64::new(0);

/// Counts one log error.
pub fn count_error() {
    ERRORS.fetch_add(1, Relaxed);
}

/// Log errors since start.
pub fn errors() -> u64 {
    ERRORS.load(Relaxed)
}

/// One logged change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// An entry was appended.
    Add {
        /// Stream key.
        key: String,
        /// The entry.
        entry: Entry,
    },
    /// Entries with ids below `min_ms`-0 were trimmed.
    Trim {
        /// Stream key.
        key: String,
        /// MINID in milliseconds.
        min_ms: u64,
    },
    /// The stream was deleted.
    Del {
        /// Stream key.
        key: String,
    },
}

/// The size of one framed record in the log: the header, the op, the key, the two numbers
/// and the data.
pub const fn record_len(key_len: usize, data_len: usize) -> usize {
    HEAD + 1 + 4 + key_len + 8 + 8 + 4 + data_len
}

impl Record {
    /// Appends the record, framed with its length and checksum, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; HEAD]);
        self.encode_body(out);
        let body = &out[start + HEAD..];
        let len = (body.len() as u32).to_le_bytes();
        let crc = crc32fast::hash(body).to_le_bytes();
        out[start..start + 4].copy_from_slice(&len);
        out[start + 4..start + HEAD].copy_from_slice(&crc);
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let (op, key, a, b, data): (u8, &str, u64, u64, &[u8]) = match self {
            Record::Add { key, entry } => (OP_ADD, key, entry.id.ms, entry.id.seq, &entry.data),
            Record::Trim { key, min_ms } => (OP_TRIM, key, *min_ms, 0, &[]),
            Record::Del { key } => (OP_DEL, key, 0, 0, &[]),
        };
        out.push(op);
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&a.to_le_bytes());
        out.extend_from_slice(&b.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        debug_assert_eq!(out.len() - start + HEAD, record_len(key.len(), data.len()));
    }

    /// Decodes one record body (the part the checksum covers).
    fn decode_body(body: &[u8]) -> Result<Record, &'static str> {
        let mut r = body;
        let op = take(&mut r, 1)?[0];
        let klen = u32_le(take(&mut r, 4)?) as usize;
        let key = std::str::from_utf8(take(&mut r, klen)?)
            .map_err(|_| "key is not UTF-8")?
            .to_string();
        let a = u64_le(take(&mut r, 8)?);
        let b = u64_le(take(&mut r, 8)?);
        let dlen = u32_le(take(&mut r, 4)?) as usize;
        let data = take(&mut r, dlen)?;
        if !r.is_empty() {
            return Err("bytes after the record");
        }
        Ok(match op {
            OP_ADD => Record::Add {
                key,
                entry: Entry {
                    id: StreamId { ms: a, seq: b },
                    data: Bytes::copy_from_slice(data),
                },
            },
            OP_TRIM => Record::Trim { key, min_ms: a },
            OP_DEL => Record::Del { key },
            _ => return Err("unknown op"),
        })
    }
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Result<&'a [u8], &'static str> {
    if r.len() < n {
        return Err("record shorter than its fields");
    }
    let (a, b) = r.split_at(n);
    *r = b;
    Ok(a)
}

fn u32_le(b: &[u8]) -> u32 {
    u32::from_le_bytes(b.try_into().unwrap_or_default())
}

fn u64_le(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().unwrap_or_default())
}

/// The log file path inside `dir`.
pub fn log_path(dir: &Path) -> PathBuf {
    dir.join("streams.log")
}

/// What replay found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Every record before the first torn or damaged one.
    pub records: Vec<Record>,
    /// Byte length of the part kept.
    pub good_bytes: u64,
    /// Bytes after it that were dropped (0 for a clean log).
    pub dropped_bytes: u64,
    /// Intact records found after the damage (dropped with it: their order relative to the
    /// lost record is unknown to the streams).
    pub dropped_records: u64,
    /// Why replay stopped early.
    pub reason: Option<&'static str>,
    /// The log predates checksums (it must be rewritten before anything is appended).
    pub legacy: bool,
}

/// Replays a log held in memory (the fuzz target and tests; [`replay`] streams the file).
pub fn replay_bytes(bytes: &[u8]) -> Replayed {
    let mut out = Replayed::default();
    let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        if bytes.is_empty() {
            return out;
        }
        return replay_legacy(&mut &bytes[..]);
    };
    let mut pos = MAGIC.len();
    let mut r = rest;
    while !r.is_empty() {
        match next_record(r) {
            Ok((rec, used)) => {
                out.records.push(rec);
                pos += used;
                r = &r[used..];
            }
            Err(reason) => {
                out.reason = Some(reason);
                out.dropped_bytes = r.len() as u64;
                out.dropped_records = count_intact_after(r);
                break;
            }
        }
    }
    out.good_bytes = pos as u64;
    out
}

/// One framed record at the start of `r` and its framed length.
fn next_record(r: &[u8]) -> Result<(Record, usize), &'static str> {
    if r.len() < HEAD {
        return Err("torn record header");
    }
    let len = u32_le(&r[..4]) as usize;
    let crc = u32_le(&r[4..HEAD]);
    if len > MAX_BODY {
        return Err("record length out of range");
    }
    let Some(body) = r.get(HEAD..HEAD + len) else {
        return Err("torn record");
    };
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch");
    }
    Ok((Record::decode_body(body)?, HEAD + len))
}

/// Intact records in damaged bytes: from the first offset where a record checks out, how many
/// follow one another to the end.
fn count_intact_after(damaged: &[u8]) -> u64 {
    for start in 1..damaged.len() {
        let mut r = &damaged[start..];
        let mut n = 0;
        while let Ok((_, used)) = next_record(r) {
            n += 1;
            r = &r[used..];
        }
        if n > 0 && r.is_empty() {
            return n;
        }
    }
    0
}

/// Reads every intact record of the log at `path` (none when it does not exist). What follows
/// the first torn or damaged record is reported, logged, and saved as
/// `streams.log.dropped-<unix ms>` beside the log when it is more than a torn tail.
pub fn replay(path: &Path) -> Result<Replayed, StreamError> {
    let err = |e: std::io::Error| StreamError::Log(format!("{}: {e}", path.display()));
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Replayed::default()),
        Err(e) => return Err(err(e)),
    };
    let total = file.metadata().map_err(err)?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut head = [0u8; 8];
    let n = read_full(&mut r, &mut head).map_err(err)?;
    let replayed = if n == 8 && &head == MAGIC {
        replay_framed(&mut r, total).map_err(err)?
    } else {
        // A log from before checksums: read it whole (it is rewritten with them at once).
        let mut bytes = head[..n].to_vec();
        r.read_to_end(&mut bytes).map_err(err)?;
        replay_legacy(&mut &bytes[..])
    };
    if let Some(reason) = replayed.reason {
        report(path, &replayed, reason);
    }
    Ok(replayed)
}

/// Replays framed records from a reader positioned after the magic, without holding the
/// whole log in memory; only damaged bytes are read into memory to be counted.
fn replay_framed(r: &mut impl Read, total: u64) -> std::io::Result<Replayed> {
    let mut out = Replayed {
        good_bytes: MAGIC.len() as u64,
        ..Replayed::default()
    };
    let mut body = Vec::new();
    loop {
        let mut head = [0u8; HEAD];
        let n = read_full(r, &mut head)?;
        if n == 0 {
            return Ok(out);
        }
        let len = u32_le(&head[..4]) as usize;
        let reason = if n < HEAD {
            "torn record header"
        } else if len > MAX_BODY || len as u64 > total {
            "record length out of range"
        } else {
            body.resize(len, 0);
            let got = read_full(r, &mut body)?;
            if got < len {
                body.truncate(got);
                "torn record"
            } else if crc32fast::hash(&body) != u32_le(&head[4..]) {
                "checksum mismatch"
            } else {
                match Record::decode_body(&body) {
                    Ok(rec) => {
                        out.records.push(rec);
                        out.good_bytes += (HEAD + len) as u64;
                        continue;
                    }
                    Err(e) => e,
                }
            }
        };
        let reason = Some(reason);
        out.reason = reason;
        out.dropped_bytes = total.saturating_sub(out.good_bytes);
        if reason != Some("torn record") && reason != Some("torn record header") {
            let mut damaged = head[..n].to_vec();
            damaged.extend_from_slice(&body);
            r.read_to_end(&mut damaged)?;
            out.dropped_records = count_intact_after(&damaged);
        }
        return Ok(out);
    }
}

/// Replays a log without magic or checksums (written before they existed).
fn replay_legacy(r: &mut &[u8]) -> Replayed {
    let total = r.len() as u64;
    let mut out = Replayed {
        legacy: true,
        ..Replayed::default()
    };
    while !r.is_empty() {
        match read_legacy(r) {
            Ok((rec, len)) => {
                out.records.push(rec);
                out.good_bytes += len;
            }
            Err(reason) => {
                out.reason = Some(reason);
                out.dropped_bytes = total - out.good_bytes;
                break;
            }
        }
    }
    out
}

fn read_legacy(r: &mut &[u8]) -> Result<(Record, u64), &'static str> {
    let start = *r;
    let _op = take(r, 1)?;
    let klen = u32_le(take(r, 4)?) as usize;
    take(r, klen)?;
    take(r, 16)?;
    let dlen = u32_le(take(r, 4)?) as usize;
    take(r, dlen)?;
    let len = 1 + 4 + klen + 16 + 4 + dlen;
    let rec = Record::decode_body(&start[..len])?;
    Ok((rec, len as u64))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Logs what replay dropped; saves the dropped bytes beside the log unless they are only a
/// torn tail (the normal trace of a crash mid-write).
fn report(path: &Path, replayed: &Replayed, reason: &str) {
    let torn_tail = replayed.dropped_records == 0 && reason.starts_with("torn");
    if torn_tail {
        tracing::warn!(
            file = %path.display(),
            offset = replayed.good_bytes,
            kept = replayed.records.len(),
            dropped_bytes = replayed.dropped_bytes,
            "stream log ends in a torn record ({reason}); cutting it off"
        );
        return;
    }
    count_error();
    let saved = path.with_extension(format!("log.dropped-{}", crate::clock::now_ms()));
    let copied = (|| -> std::io::Result<()> {
        let mut src = File::open(path)?;
        std::io::Seek::seek(&mut src, std::io::SeekFrom::Start(replayed.good_bytes))?;
        let mut dst = File::create(&saved)?;
        std::io::copy(&mut src, &mut dst)?;
        dst.sync_all()
    })();
    tracing::error!(
        file = %path.display(),
        offset = replayed.good_bytes,
        kept = replayed.records.len(),
        dropped_bytes = replayed.dropped_bytes,
        dropped_records = replayed.dropped_records + 1,
        saved = %if copied.is_ok() { saved.display().to_string() } else { format!("not saved: {}", copied.err().map(|e| e.to_string()).unwrap_or_default()) },
        "stream log damaged ({reason}): kept every record before it, dropped the rest"
    );
}

/// Writes `records` as a fresh log: to a temporary file, synced, then renamed over `path`, and
/// the directory synced. Returns the file opened for appending and its length.
pub fn rewrite(path: &Path, records: &[Record]) -> Result<(File, u64), StreamError> {
    let tmp = temp_path(path);
    let written = write_temp(&tmp, records, &[])?;
    install(&tmp, path)?;
    Ok((open_append(path)?, written))
}

/// The temporary file a rewrite writes before it is renamed over the log.
pub fn temp_path(path: &Path) -> PathBuf {
    path.with_extension("log.tmp")
}

/// Writes `records` and then the already-framed `tail` to `tmp`, synced; returns its length.
pub fn write_temp(tmp: &Path, records: &[Record], tail: &[u8]) -> Result<u64, StreamError> {
    let err = |e: std::io::Error| StreamError::Log(format!("{}: {e}", tmp.display()));
    let mut f = File::create(tmp).map_err(err)?;
    let mut buf = Vec::with_capacity(1 << 20);
    buf.extend_from_slice(MAGIC);
    let mut written = 0u64;
    for r in records {
        r.encode(&mut buf);
        if buf.len() >= 1 << 20 {
            f.write_all(&buf).map_err(err)?;
            written += buf.len() as u64;
            buf.clear();
        }
    }
    buf.extend_from_slice(tail);
    f.write_all(&buf).map_err(err)?;
    written += buf.len() as u64;
    f.sync_all().map_err(err)?;
    Ok(written)
}

/// Appends already-framed bytes to a temporary log and syncs it.
pub fn append_temp(tmp: &Path, tail: &[u8]) -> Result<(), StreamError> {
    let err = |e: std::io::Error| StreamError::Log(format!("{}: {e}", tmp.display()));
    let mut f = OpenOptions::new().append(true).open(tmp).map_err(err)?;
    f.write_all(tail).map_err(err)?;
    f.sync_all().map_err(err)
}

/// Renames `tmp` over `path` and syncs the directory, so the rename survives a power loss.
pub fn install(tmp: &Path, path: &Path) -> Result<(), StreamError> {
    let err = |e: std::io::Error| StreamError::Log(format!("{}: {e}", path.display()));
    std::fs::rename(tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
    }
    Ok(())
}

/// Opens the log for appending.
pub fn open_append(path: &Path) -> Result<File, StreamError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| StreamError::Log(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<Record> {
        vec![
            Record::Add {
                key: "y:room:a:index".into(),
                entry: Entry {
                    id: StreamId { ms: 7, seq: 1 },
                    data: Bytes::from_static(b"\x00\x02\x01\x00"),
                },
            },
            Record::Trim {
                key: "y:room:a:index".into(),
                min_ms: 5,
            },
            Record::Del {
                key: "y:room:a:index".into(),
            },
        ]
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gw-log-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn round_trip_and_torn_tail() {
        let dir = temp_dir();
        let p = log_path(&dir);
        let recs = records();
        let (mut f, len) = rewrite(&p, &recs).unwrap();
        f.write_all(&[9, 0, 0, 0, 1]).unwrap();
        drop(f);
        let back = replay(&p).unwrap();
        assert_eq!(back.records, recs);
        assert_eq!(back.good_bytes, len);
        assert_eq!(back.dropped_bytes, 5);
        assert_eq!(back.reason, Some("torn record header"));
        // A torn tail is not saved aside: it is the normal trace of a crash mid-write.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damage_in_the_middle_keeps_what_came_before_and_saves_the_rest() {
        let dir = temp_dir();
        let p = log_path(&dir);
        let recs = records();
        rewrite(&p, &recs).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        let first = {
            let mut one = Vec::new();
            recs[0].encode(&mut one);
            one.len()
        };
        // Flip a byte inside the second record's body.
        bytes[MAGIC.len() + first + HEAD + 3] ^= 0x40;
        std::fs::write(&p, &bytes).unwrap();
        let back = replay(&p).unwrap();
        assert_eq!(back.records, recs[..1]);
        assert_eq!(back.reason, Some("checksum mismatch"));
        assert_eq!(back.dropped_records, 1, "the third record is intact");
        assert_eq!(
            back.dropped_bytes,
            (bytes.len() - MAGIC.len() - first) as u64
        );
        let saved: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("dropped"))
            .collect();
        assert_eq!(saved.len(), 1);
        assert_eq!(
            std::fs::read(saved[0].path()).unwrap(),
            bytes[MAGIC.len() + first..]
        );
        assert_eq!(replay_bytes(&bytes), Replayed { ..back });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn logs_without_checksums_are_still_read() {
        let mut legacy = Vec::new();
        for r in records() {
            r.encode_body(&mut legacy);
        }
        let back = replay_bytes(&legacy);
        assert_eq!(back.records, records());
        assert_eq!(back.reason, None);
        legacy.push(OP_ADD);
        assert_eq!(replay_bytes(&legacy).records, records());
    }
}
