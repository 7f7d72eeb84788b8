//! Awareness updates (y-protocols): parsing, encoding and merging.
//!
//! An awareness update is `varuint n` then n × (`varuint clientID`, `varuint clock`,
//! `varString JSON(state)`). The JSON state is kept verbatim; `null` marks a removal.
//! This is the bare codec; framing and per-connection state are in `presence`.

use std::collections::HashMap;

use crate::error::Result;
use crate::lib0::{Decoder, write_var_string, write_var_uint};

/// One client's entry in an awareness update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwarenessEntry {
    /// The Yjs client id.
    pub client_id: u64,
    /// The client's awareness clock; higher wins.
    pub clock: u64,
    /// The state as JSON text, kept verbatim; `null` means the client was removed.
    pub state: String,
}

impl AwarenessEntry {
    /// Whether this entry removes the client (state `null`).
    pub fn is_removal(&self) -> bool {
        self.state.trim() == "null"
    }
}

/// Parses an awareness update (not a frame). The JSON states are not validated.
pub fn parse_awareness_update(update: &[u8]) -> Result<Vec<AwarenessEntry>> {
    let mut d = Decoder::new(update);
    let n = d.read_var_len()?;
    // Each entry takes at least 3 bytes; do not trust `n` for the allocation.
    let mut entries = Vec::with_capacity(n.min(update.len() / 3));
    for _ in 0..n {
        let client_id = d.read_var_uint()?;
        let clock = d.read_var_uint()?;
        let state = d.read_var_string()?.to_owned();
        entries.push(AwarenessEntry {
            client_id,
            clock,
            state,
        });
    }
    Ok(entries)
}

/// Encodes entries as one awareness update.
pub fn encode_awareness_update(entries: &[AwarenessEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    write_var_uint(&mut out, entries.len() as u64);
    for e in entries {
        write_var_uint(&mut out, e.client_id);
        write_var_uint(&mut out, e.clock);
        write_var_string(&mut out, &e.state);
    }
    out
}

/// Merges entries: per client the highest clock wins, the later entry on equal clocks.
/// Clients keep the order of their first appearance. `None` if there are no entries.
pub fn merge_awareness_entries<I>(entries: I) -> Option<Vec<u8>>
where
    I: IntoIterator<Item = AwarenessEntry>,
{
    let mut merged: Vec<AwarenessEntry> = Vec::new();
    let mut index: HashMap<u64, usize> = HashMap::new();
    for e in entries {
        match index.get(&e.client_id) {
            Some(&i) if merged[i].clock > e.clock => {}
            Some(&i) => merged[i] = e,
            None => {
                index.insert(e.client_id, merged.len());
                merged.push(e);
            }
        }
    }
    (!merged.is_empty()).then(|| encode_awareness_update(&merged))
}

/// Merges awareness updates (not frames) into one; malformed updates are ignored.
/// Removals are kept, unlike a y-protocols `Awareness` round trip, so peers see them.
pub fn merge_awareness<I, B>(updates: I) -> Option<Vec<u8>>
where
    I: IntoIterator<Item = B>,
    B: AsRef<[u8]>,
{
    let entries = updates
        .into_iter()
        .filter_map(|u| parse_awareness_update(u.as_ref()).ok())
        .flatten();
    merge_awareness_entries(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn entry(client_id: u64, clock: u64, state: &str) -> AwarenessEntry {
        AwarenessEntry {
            client_id,
            clock,
            state: state.to_owned(),
        }
    }

    #[test]
    fn parse_golden() {
        // client 5, clock 0, "{}" (y-websocket's first awareness update).
        let u = [1, 5, 0, 2, b'{', b'}'];
        assert_eq!(parse_awareness_update(&u), Ok(vec![entry(5, 0, "{}")]));
        assert_eq!(parse_awareness_update(&[0]), Ok(vec![]));
    }

    #[test]
    fn encode_golden_and_round_trip() {
        let es = vec![entry(300, 1, "{\"a\":1}"), entry(7, 2, "null")];
        let bytes = encode_awareness_update(&es);
        let mut want = vec![2, 0xac, 0x02, 1, 7];
        want.extend_from_slice(b"{\"a\":1}");
        want.extend_from_slice(&[7, 2, 4]);
        want.extend_from_slice(b"null");
        assert_eq!(bytes, want);
        assert_eq!(parse_awareness_update(&bytes), Ok(es));
    }

    #[test]
    fn parse_malformed() {
        assert_eq!(parse_awareness_update(&[]), Err(Error::UnexpectedEnd));
        assert_eq!(parse_awareness_update(&[1, 5]), Err(Error::UnexpectedEnd));
        assert_eq!(
            parse_awareness_update(&[1, 5, 0, 3, b'{']),
            Err(Error::UnexpectedEnd)
        );
        assert_eq!(
            parse_awareness_update(&[2, 5, 0, 0]),
            Err(Error::UnexpectedEnd)
        );
        assert_eq!(
            parse_awareness_update(&[1, 5, 0, 1, 0xff]),
            Err(Error::InvalidUtf8)
        );
        // A huge count with no entries must fail, not allocate.
        let mut u = Vec::new();
        write_var_uint(&mut u, crate::lib0::MAX_SAFE_INTEGER);
        assert_eq!(parse_awareness_update(&u), Err(Error::UnexpectedEnd));
    }

    #[test]
    fn merge_keeps_highest_clock_and_later_on_tie() {
        let a = encode_awareness_update(&[entry(1, 1, "{\"x\":1}"), entry(2, 5, "{\"y\":5}")]);
        let b = encode_awareness_update(&[entry(1, 3, "{\"x\":3}"), entry(2, 4, "{\"y\":4}")]);
        let c = encode_awareness_update(&[entry(3, 0, "{}"), entry(1, 3, "null")]);
        let merged = merge_awareness([&a, &b, &c]).unwrap();
        assert_eq!(
            parse_awareness_update(&merged),
            Ok(vec![
                entry(1, 3, "null"),
                entry(2, 5, "{\"y\":5}"),
                entry(3, 0, "{}")
            ])
        );
    }

    #[test]
    fn merge_ignores_malformed_and_empty() {
        assert_eq!(merge_awareness(Vec::<Vec<u8>>::new()), None);
        assert_eq!(merge_awareness([[0u8]]), None);
        let good = encode_awareness_update(&[entry(9, 1, "{}")]);
        let merged = merge_awareness([&[1u8, 5][..], &good]).unwrap();
        assert_eq!(merged, good);
    }
}
