//! The append log behind the in-process streams: every change is written here (by one writer
//! thread, in order) before its entries are delivered to anyone, and replayed on start.
//!
//! Record layout (little endian): `op: u8, key_len: u32, key, a: u64, b: u64, data_len: u32,
//! data`. `ADD` carries the entry id in `a`/`b`, `TRIM` the MINID milliseconds in `a`, `DEL`
//! nothing. A torn record at the end (a crash mid-write) is cut off on replay.

use super::{Entry, StreamError, StreamId};
use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

const OP_ADD: u8 = 1;
const OP_TRIM: u8 = 2;
const OP_DEL: u8 = 3;

/// One logged change.
#[derive(Clone, Debug)]
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

impl Record {
    /// Appends the encoded record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
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
    }

    /// Encoded size.
    #[cfg(test)]
    pub fn encoded_len(&self) -> usize {
        let (key, data) = match self {
            Record::Add { key, entry } => (key.len(), entry.data.len()),
            Record::Trim { key, .. } | Record::Del { key } => (key.len(), 0),
        };
        1 + 4 + key + 16 + 4 + data
    }
}

/// The log file path inside `dir`.
pub fn log_path(dir: &Path) -> PathBuf {
    dir.join("streams.log")
}

/// Reads every complete record of the log at `path` (none when it does not exist); returns
/// them and the byte length of the complete part.
pub fn replay(path: &Path) -> Result<(Vec<Record>, u64), StreamError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(StreamError::Log(format!("{}: {e}", path.display()))),
    };
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut records = Vec::new();
    let mut good = 0u64;
    loop {
        match read_record(&mut r) {
            Ok(Some((rec, len))) => {
                records.push(rec);
                good += len;
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(file = %path.display(), offset = good, "stream log ends in a torn record ({e}); cutting it off");
                break;
            }
        }
    }
    Ok((records, good))
}

fn read_record(r: &mut impl Read) -> std::io::Result<Option<(Record, u64)>> {
    let mut op = [0u8; 1];
    if r.read(&mut op)? == 0 {
        return Ok(None);
    }
    let mut u32b = [0u8; 4];
    r.read_exact(&mut u32b)?;
    let klen = u32::from_le_bytes(u32b) as usize;
    if klen > 1 << 20 {
        return Err(std::io::Error::other("key length out of range"));
    }
    let mut key = vec![0u8; klen];
    r.read_exact(&mut key)?;
    let key = String::from_utf8(key).map_err(std::io::Error::other)?;
    let mut u64b = [0u8; 8];
    r.read_exact(&mut u64b)?;
    let a = u64::from_le_bytes(u64b);
    r.read_exact(&mut u64b)?;
    let b = u64::from_le_bytes(u64b);
    r.read_exact(&mut u32b)?;
    let dlen = u32::from_le_bytes(u32b) as usize;
    let mut data = vec![0u8; dlen];
    r.read_exact(&mut data)?;
    let len = (1 + 4 + klen + 16 + 4 + dlen) as u64;
    let rec = match op[0] {
        OP_ADD => Record::Add {
            key,
            entry: Entry {
                id: StreamId { ms: a, seq: b },
                data: Bytes::from(data),
            },
        },
        OP_TRIM => Record::Trim { key, min_ms: a },
        OP_DEL => Record::Del { key },
        other => return Err(std::io::Error::other(format!("unknown op {other}"))),
    };
    Ok(Some((rec, len)))
}

/// Writes `records` as a fresh log: to a temporary file, synced, then renamed over `path`.
pub fn rewrite(path: &Path, records: &[Record]) -> Result<File, StreamError> {
    let err = |e: std::io::Error| StreamError::Log(format!("{}: {e}", path.display()));
    let tmp = path.with_extension("log.tmp");
    {
        let mut f = File::create(&tmp).map_err(err)?;
        let mut buf = Vec::with_capacity(1 << 20);
        for r in records {
            r.encode(&mut buf);
            if buf.len() >= 1 << 20 {
                f.write_all(&buf).map_err(err)?;
                buf.clear();
            }
        }
        f.write_all(&buf).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
    OpenOptions::new().append(true).open(path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_tail() {
        let dir = std::env::temp_dir().join(format!("gw-log-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = log_path(&dir);
        let recs = vec![
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
        ];
        let mut f = rewrite(&p, &recs).unwrap();
        f.write_all(&[OP_ADD, 9, 0]).unwrap();
        drop(f);
        let (back, good) = replay(&p).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(
            good,
            recs.iter().map(|r| r.encoded_len() as u64).sum::<u64>()
        );
        match &back[0] {
            Record::Add { entry, .. } => assert_eq!(entry.id, StreamId { ms: 7, seq: 1 }),
            _ => panic!("first record should be an add"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
