//! Property tests for the y-redis names in `yjs_core::keys`: `encodeURIComponent` and
//! `decodeURIComponent` against small reference implementations written from the JavaScript
//! spec, and stream keys that always split back into the room and docid they were built from.

use proptest::prelude::*;
use yjs_core::keys::{
    decode_stream_key, decode_uri_component, encode_uri_component, storage_object_name,
    storage_prefix, stream_key,
};

/// The characters JavaScript's `encodeURIComponent` leaves as they are.
fn unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()".contains(c)
}

/// `encodeURIComponent` from the spec: unreserved characters verbatim, every UTF-8 byte of any
/// other code point as `%XX` with upper-case hex.
fn reference_encode(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if unreserved(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// `decodeURIComponent` from the spec: `%` must be followed by two hex digits (either case);
/// the bytes must form UTF-8. `None` where JavaScript throws `URIError`.
fn reference_decode(s: &str) -> Option<String> {
    let mut bytes = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            let hi = chars.next()?.to_digit(16)?;
            let lo = chars.next()?.to_digit(16)?;
            bytes.push((hi * 16 + lo) as u8);
        } else {
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    String::from_utf8(bytes).ok()
}

/// Strings heavy in what makes escapes interesting: `%`, hex digits of both cases, ASCII that
/// is and is not reserved, and multi-byte code points.
fn escape_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("%".to_string()),
        "[0-9a-fA-FgG]",
        (0u8..=255).prop_map(|b| format!("%{b:02X}")),
        (0u8..=255).prop_map(|b| format!("%{b:02x}")),
        any::<char>().prop_map(|c| c.to_string()),
        Just(":room:".to_string()),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

/// Key prefixes: anything without the line terminators that JavaScript's `.` does not match,
/// biased towards `:` and `room`, which the key parser has to see past.
fn prefix() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("y".to_string()),
        Just(":".to_string()),
        Just("room".to_string()),
        Just(":room:".to_string()),
        Just("%".to_string()),
        any::<char>().prop_map(|c| c.to_string()),
    ];
    proptest::collection::vec(piece, 0..6)
        .prop_map(|v| v.concat())
        .prop_filter("no line terminators", |p| {
            !p.contains(['\n', '\r', '\u{2028}', '\u{2029}'])
        })
}

/// Rooms and docids: arbitrary strings, plus the ones that look like key syntax.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        escape_soup(),
        Just(String::new()),
        Just("room".to_string()),
        Just(":room:".to_string()),
        Just("index".to_string()),
        Just("a\nb\u{2028}".to_string()),
    ]
}

proptest! {
    #[test]
    fn encode_matches_the_spec(s in any::<String>()) {
        prop_assert_eq!(encode_uri_component(&s), reference_encode(&s));
    }

    #[test]
    fn encode_output_is_unreserved_or_escapes(s in name()) {
        let enc = encode_uri_component(&s);
        let b = enc.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                prop_assert!(i + 3 <= b.len(), "truncated escape in {:?}", enc);
                let hex = &b[i + 1..i + 3];
                prop_assert!(
                    hex.iter().all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c)),
                    "escape {:?} in {:?} is not upper-case hex", hex, enc
                );
                i += 3;
            } else {
                prop_assert!(unreserved(b[i] as char), "{:?} left {:?} unescaped", s, b[i] as char);
                i += 1;
            }
        }
        // Nothing that must be escaped survives, so the result is a single path segment and
        // key field.
        prop_assert!(!enc.contains([':', '/', '\n', '\r']));
    }

    #[test]
    fn decode_inverts_encode(s in name()) {
        prop_assert_eq!(decode_uri_component(&encode_uri_component(&s)).ok(), Some(s));
    }

    #[test]
    fn decode_accepts_lower_case_escapes(s in name()) {
        // Lower-casing an encoding only touches the hex digits of escapes: unreserved letters
        // change too, so compare against the lower-cased original for those.
        let enc = encode_uri_component(&s);
        let mut lowered = String::new();
        let mut rest = enc.as_str();
        while let Some(i) = rest.find('%') {
            lowered.push_str(&rest[..i]);
            lowered.push_str(&rest[i..i + 3].to_ascii_lowercase());
            rest = &rest[i + 3..];
        }
        lowered.push_str(rest);
        prop_assert_eq!(decode_uri_component(&lowered).ok(), Some(s));
    }

    #[test]
    fn decode_matches_the_spec(s in escape_soup()) {
        prop_assert_eq!(decode_uri_component(&s).ok(), reference_decode(&s), "input {:?}", s);
    }

    #[test]
    fn stream_keys_split_back(p in prefix(), room in name(), docid in name()) {
        let key = stream_key(&p, &room, &docid);
        prop_assert_eq!(
            decode_stream_key(&p, &key).ok(),
            Some((room.clone(), docid.clone())),
            "key {:?}", key
        );
    }

    #[test]
    fn stream_keys_belong_to_one_prefix(
        p in prefix(),
        other in prefix(),
        room in name(),
        docid in name(),
    ) {
        prop_assume!(p != other);
        let key = stream_key(&p, &room, &docid);
        prop_assert!(decode_stream_key(&other, &key).is_err(), "{:?} parsed under {:?}", key, other);
    }

    #[test]
    fn prefixes_with_line_terminators_never_parse(
        a in prefix(),
        t in prop::sample::select(vec!['\n', '\r', '\u{2028}', '\u{2029}']),
        room in name(),
        docid in name(),
    ) {
        // y-redis's regex cannot match across a line terminator, so such keys are refused.
        let p = format!("{a}{t}");
        prop_assert!(decode_stream_key(&p, &stream_key(&p, &room, &docid)).is_err());
    }

    #[test]
    fn storage_names_have_three_segments(room in name(), docid in name(), uuid in "[0-9a-f-]{1,36}") {
        let name = storage_object_name(&room, &docid, &uuid);
        let prefix = storage_prefix(&room, &docid);
        prop_assert!(name.starts_with(&prefix));
        let parts: Vec<&str> = name.split('/').collect();
        prop_assert_eq!(parts.len(), 3, "{:?}", name);
        prop_assert_eq!(decode_uri_component(parts[0]).ok(), Some(room));
        prop_assert_eq!(decode_uri_component(parts[1]).ok(), Some(docid));
        prop_assert_eq!(parts[2], uuid.as_str());
    }
}
