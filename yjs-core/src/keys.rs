//! Redis key and S3 object names in the y-redis v0.1.6 layout (§1.2, §1.7).
//!
//! The room is the **raw, undecoded** URL path segment: y-redis takes it from uWS
//! `getParameter`, which does not percent-decode. So a client connecting to `/a%20b` is in
//! room `a%20b`, whose stream key is `y:room:a%2520b:index`. Callers must pass the raw
//! segment (not e.g. an axum `Path` value, which is decoded).

use crate::error::{Error, Result};

/// The docid y-redis uses for every WebSocket room.
pub const DEFAULT_DOCID: &str = "index";

/// The default key prefix (`REDIS_PREFIX`).
pub const DEFAULT_PREFIX: &str = "y";

/// JavaScript `encodeURIComponent`: keeps `A-Z a-z 0-9 - _ . ! ~ * ' ( )`, writes every
/// other UTF-8 byte as upper-case `%XX`.
pub fn encode_uri_component(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
    out
}

/// JavaScript `decodeURIComponent`: decodes every `%XX` (either hex case); a `%` without two
/// hex digits, or escapes that do not form UTF-8, are an error (JS throws `URIError`).
pub fn decode_uri_component(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |j: usize| {
                bytes
                    .get(j)
                    .and_then(|c| (*c as char).to_digit(16))
                    .ok_or(Error::MalformedEscape)
            };
            out.push((hex(i + 1)? * 16 + hex(i + 2)?) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    // Literal characters are whole code points, so any invalid sequence comes from escapes.
    String::from_utf8(out).map_err(|_| Error::MalformedEscape)
}

/// The room stream key `{prefix}:room:{enc(room)}:{enc(docid)}`.
pub fn stream_key(prefix: &str, room: &str, docid: &str) -> String {
    format!(
        "{prefix}:room:{}:{}",
        encode_uri_component(room),
        encode_uri_component(docid)
    )
}

/// The worker queue stream (and consumer group) name `{prefix}:worker`.
pub fn worker_key(prefix: &str) -> String {
    format!("{prefix}:worker")
}

/// Splits a stream key back into (room, docid), like y-redis's
/// `^(.*):room:(.*):(.*)$` (greedy, `.` not matching line terminators) followed by
/// `decodeURIComponent`. The first group must equal `prefix`.
pub fn decode_stream_key(prefix: &str, key: &str) -> Result<(String, String)> {
    if key.contains(['\n', '\r', '\u{2028}', '\u{2029}']) {
        return Err(Error::MalformedKey);
    }
    // Greedy group 1: the last ":room:" (matches may overlap) that leaves a ':' after it.
    const SEP: &str = ":room:";
    let mut end = key.len();
    let (head, rest) = loop {
        let i = key[..end].rfind(SEP).ok_or(Error::MalformedKey)?;
        let rest = &key[i + SEP.len()..];
        if rest.contains(':') {
            break (&key[..i], rest);
        }
        // Allow an overlapping earlier match: search up to this match's last byte.
        end = i + SEP.len() - 1;
    };
    if head != prefix {
        return Err(Error::MalformedKey);
    }
    // Greedy group 2: up to the last ':'.
    let (room, docid) = rest.rsplit_once(':').ok_or(Error::MalformedKey)?;
    Ok((decode_uri_component(room)?, decode_uri_component(docid)?))
}

/// The S3 listing prefix of a document's objects: `enc(room)/enc(docid)/`.
pub fn storage_prefix(room: &str, docid: &str) -> String {
    format!(
        "{}/{}/",
        encode_uri_component(room),
        encode_uri_component(docid)
    )
}

/// An S3 object name `enc(room)/enc(docid)/<uuid>`; `uuid` is a fresh UUIDv4 per persist.
pub fn storage_object_name(room: &str, docid: &str, uuid: &str) -> String {
    format!("{}{uuid}", storage_prefix(room, docid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_golden() {
        assert_eq!(
            encode_uri_component("ä/:x y!*'()"),
            "%C3%A4%2F%3Ax%20y!*'()"
        );
        assert_eq!(encode_uri_component("AZaz09-_.!~*'()"), "AZaz09-_.!~*'()");
        assert_eq!(
            encode_uri_component("#?&=+,;$@%"),
            "%23%3F%26%3D%2B%2C%3B%24%40%25"
        );
        assert_eq!(encode_uri_component("€😀"), "%E2%82%AC%F0%9F%98%80");
        assert_eq!(encode_uri_component(""), "");
    }

    #[test]
    fn decode_round_trip_and_errors() {
        for s in ["ä/:x y!*'()", "plain", "", "a%20b", "€😀:room:x"] {
            assert_eq!(
                decode_uri_component(&encode_uri_component(s)).as_deref(),
                Ok(s)
            );
        }
        assert_eq!(decode_uri_component("%c3%a4").as_deref(), Ok("ä"));
        assert_eq!(decode_uri_component("a+b").as_deref(), Ok("a+b"));
        assert_eq!(decode_uri_component("ä%21").as_deref(), Ok("ä!"));
        for bad in [
            "%",
            "%2",
            "%G0",
            "%C3",
            "%C3%28",
            "%FF",
            "%C3ä",
            "%ED%A0%80",
        ] {
            assert_eq!(
                decode_uri_component(bad),
                Err(Error::MalformedEscape),
                "{bad}"
            );
        }
    }

    #[test]
    fn key_names() {
        assert_eq!(
            stream_key("y", "my-room", DEFAULT_DOCID),
            "y:room:my-room:index"
        );
        assert_eq!(
            stream_key("ytests", "ä/:x y!*'()", "index"),
            "ytests:room:%C3%A4%2F%3Ax%20y!*'():index"
        );
        assert_eq!(worker_key("y"), "y:worker");
        assert_eq!(
            storage_object_name(
                "ä/:x y!*'()",
                "index",
                "0b6e4f0e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
            ),
            "%C3%A4%2F%3Ax%20y!*'()/index/0b6e4f0e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
        );
        assert_eq!(storage_prefix("a b", "d/1"), "a%20b/d%2F1/");
    }

    #[test]
    fn raw_path_segment_is_encoded_again() {
        // `/a%20b` is room "a%20b" (undecoded), so its '%' is escaped in the key.
        assert_eq!(stream_key("y", "a%20b", "index"), "y:room:a%2520b:index");
        assert_eq!(
            decode_stream_key("y", "y:room:a%2520b:index"),
            Ok(("a%20b".into(), "index".into()))
        );
    }

    #[test]
    fn decode_stream_key_regex_semantics() {
        let room = "ä/:x y!*'()";
        let key = stream_key("y", room, "index");
        assert_eq!(
            decode_stream_key("y", &key),
            Ok((room.into(), "index".into()))
        );
        // Prefixes may contain ':' and even ':room:'.
        let key = stream_key("a:room:b", "r", "d");
        assert_eq!(
            decode_stream_key("a:room:b", &key),
            Ok(("r".into(), "d".into()))
        );
        // Greedy: a later ":room:" without a following ':' is not group 1's end.
        assert_eq!(
            decode_stream_key("y", "y:room:a:room:b"),
            Ok(("a:room".into(), "b".into()))
        );
        // Greedy group 2 takes up to the last ':'.
        assert_eq!(
            decode_stream_key("y", "y:room:a:b:c"),
            Ok(("a:b".into(), "c".into()))
        );
        assert_eq!(
            decode_stream_key("y", "y:room::"),
            Ok((String::new(), String::new()))
        );
        // Overlapping ":room:" matches: group 1 is "y:room" here, so prefix "y" fails.
        assert_eq!(
            decode_stream_key("y", "y:room:room:x:index"),
            Err(Error::MalformedKey)
        );
        assert_eq!(
            decode_stream_key("y:room", "y:room:room:x:index"),
            Ok(("x".into(), "index".into()))
        );
    }

    #[test]
    fn decode_stream_key_errors() {
        assert_eq!(
            decode_stream_key("x", "y:room:a:index"),
            Err(Error::MalformedKey)
        );
        assert_eq!(decode_stream_key("y", "y:worker"), Err(Error::MalformedKey));
        assert_eq!(decode_stream_key("y", "y:room:a"), Err(Error::MalformedKey));
        assert_eq!(
            decode_stream_key("y", "y\n:room:a:b"),
            Err(Error::MalformedKey)
        );
        assert_eq!(
            decode_stream_key("y", "y:room:%ZZ:index"),
            Err(Error::MalformedEscape)
        );
    }
}
