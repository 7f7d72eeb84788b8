//! Decoding of Redis stream replies (XRANGE, XREAD, XAUTOCLAIM) into entries.

use crate::streams::{Entry, StreamError, StreamId};
use bytes::Bytes;
use redis::Value;

pub fn bulk(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// `[[id, [field, value, ...]], ...]` -> entries holding `field` (nil entries are skipped).
pub fn parse_entries(v: &Value, field: &str) -> Result<Vec<Entry>, StreamError> {
    let Value::Array(items) = v else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let Value::Array(pair) = it else { continue };
        if pair.len() < 2 {
            continue;
        }
        let Some(id) = bulk(&pair[0]).and_then(|b| std::str::from_utf8(b).ok()) else {
            continue;
        };
        let id = StreamId::parse(id)?;
        let Value::Array(fields) = &pair[1] else {
            continue;
        };
        let mut data = None;
        for kv in fields.chunks(2) {
            if kv.len() == 2 && bulk(&kv[0]) == Some(field.as_bytes()) {
                data = bulk(&kv[1]).map(Bytes::copy_from_slice);
            }
        }
        // An entry without the field still advances the reader; its payload is empty.
        out.push(Entry {
            id,
            data: data.unwrap_or_default(),
        });
    }
    Ok(out)
}

/// XREAD reply (RESP2 array or RESP3 map) -> per-stream entries.
pub fn parse_xread(v: &Value) -> Vec<(String, Vec<Entry>)> {
    let mut out = Vec::new();
    let mut one = |k: &Value, e: &Value| {
        if let Some(key) = bulk(k).and_then(|b| String::from_utf8(b.to_vec()).ok())
            && let Ok(entries) = parse_entries(e, "m")
        {
            out.push((key, entries));
        }
    };
    match v {
        Value::Array(streams) => {
            for s in streams {
                if let Value::Array(pair) = s
                    && pair.len() == 2
                {
                    one(&pair[0], &pair[1]);
                }
            }
        }
        Value::Map(m) => {
            for (k, e) in m {
                one(k, e);
            }
        }
        _ => {}
    }
    out
}
