//! Awareness state that needs y-protocols framing: the y-redis removal frame, the
//! per-connection tracker that learns a client's id to announce its removal on disconnect,
//! and the awareness states a joining client is greeted with.

use std::collections::BTreeMap;

use crate::awareness::{AwarenessEntry, encode_awareness_update, parse_awareness_update};
use crate::error::Result;
use crate::lib0::{Decoder, write_var_uint};
use crate::protocol::{Message, awareness_frame};

/// The awareness frame y-redis appends when a connection closes:
/// `[1, varUint8Array([1, clientID, lastClock + 1, "null"])]`.
pub fn removal_frame(client_id: u64, last_clock: u64) -> Vec<u8> {
    let update = encode_awareness_update(&[AwarenessEntry {
        client_id,
        clock: last_clock.saturating_add(1),
        state: "null".to_owned(),
    }]);
    awareness_frame(&update)
}

/// Per-connection awareness identity, learned the y-redis way (§1.8): the first awareness
/// frame with exactly one entry fixes the client id; later single-entry frames for that id
/// advance the clock. Frames with several entries (relayed peers) are ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AwarenessTracker {
    /// The connection's client id and the highest clock it has sent, once known.
    pub seen: Option<(u64, u64)>,
}

impl AwarenessTracker {
    /// Looks at a frame the connection sent; anything but a valid awareness frame is ignored.
    pub fn observe_frame(&mut self, frame: &[u8]) {
        if let Ok(Message::Awareness(update)) = Message::parse(frame) {
            self.observe_update(update);
        }
    }

    /// Looks at an awareness update (the body of an awareness frame).
    pub fn observe_update(&mut self, update: &[u8]) {
        let Ok(entries) = parse_awareness_update(update) else {
            return;
        };
        let [entry] = entries.as_slice() else {
            return;
        };
        match &mut self.seen {
            None => self.seen = Some((entry.client_id, entry.clock)),
            // y-redis keeps the last clock; the maximum is the same for well-behaved
            // clients and never lets a stale frame lower the removal clock.
            Some((id, clock)) if *id == entry.client_id => *clock = (*clock).max(entry.clock),
            Some(_) => {}
        }
    }

    /// The removal frame to append on disconnect, if a client id was learned.
    pub fn removal_frame(&self) -> Option<Vec<u8>> {
        self.seen.map(|(id, clock)| removal_frame(id, clock))
    }

    /// Serializes the tracker (for a connection attachment): `0`, or `1, id, clock` varuints.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self.seen {
            None => out.push(0),
            Some((id, clock)) => {
                out.push(1);
                write_var_uint(&mut out, id);
                write_var_uint(&mut out, clock);
            }
        }
        out
    }

    /// Reads what [`AwarenessTracker::to_bytes`] wrote; returns the tracker and bytes used.
    pub fn from_bytes(bytes: &[u8]) -> Result<(Self, usize)> {
        let mut d = Decoder::new(bytes);
        let seen = match d.read_u8()? {
            0 => None,
            _ => Some((d.read_var_uint()?, d.read_var_uint()?)),
        };
        Ok((AwarenessTracker { seen }, d.position()))
    }
}

/// The awareness states a y-protocols `Awareness` (without a local state) would hold after
/// applying updates in order, as y-redis does when a client joins (§1.8).
///
/// y-protocols rule: an entry applies if its clock is greater than the known one (0 for an
/// unknown client, so a new client's clock-0 state is ignored), or if it is a removal with
/// an equal clock of a client that has a state. Removed clients keep their clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwarenessStates {
    clients: BTreeMap<u64, (u64, Option<String>)>,
}

impl AwarenessStates {
    /// No clients.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one awareness update; a malformed update changes nothing.
    pub fn apply_update(&mut self, update: &[u8]) -> Result<()> {
        for e in parse_awareness_update(update)? {
            self.apply_entry(e);
        }
        Ok(())
    }

    fn apply_entry(&mut self, e: AwarenessEntry) {
        let removal = e.is_removal();
        let (clock, has_state) = match self.clients.get(&e.client_id) {
            Some((clock, state)) => (*clock, state.is_some()),
            None => (0, false),
        };
        if clock < e.clock || (clock == e.clock && removal && has_state) {
            let state = (!removal).then_some(e.state);
            self.clients.insert(e.client_id, (e.clock, state));
        }
    }

    /// The current (non-removed) states as (client id, clock, JSON), by client id.
    pub fn states(&self) -> impl Iterator<Item = (u64, u64, &str)> {
        self.clients
            .iter()
            .filter_map(|(id, (clock, s))| s.as_deref().map(|s| (*id, *clock, s)))
    }

    /// Whether no client has a state.
    pub fn is_empty(&self) -> bool {
        self.states().next().is_none()
    }

    /// One awareness update with every current state, or `None` if there are none.
    pub fn encode_states(&self) -> Option<Vec<u8>> {
        let entries: Vec<AwarenessEntry> = self
            .states()
            .map(|(client_id, clock, s)| AwarenessEntry {
                client_id,
                clock,
                state: s.to_owned(),
            })
            .collect();
        (!entries.is_empty()).then(|| encode_awareness_update(&entries))
    }

    /// The awareness frame with every current state, or `None` if there are none.
    pub fn frame(&self) -> Option<Vec<u8>> {
        self.encode_states().map(|u| awareness_frame(&u))
    }
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
    fn removal_frame_golden() {
        assert_eq!(
            removal_frame(5, 3),
            [1, 8, 1, 5, 4, 4, b'n', b'u', b'l', b'l']
        );
        assert_eq!(
            removal_frame(300, 127),
            [1, 10, 1, 0xac, 0x02, 0x80, 0x01, 4, b'n', b'u', b'l', b'l']
        );
    }

    #[test]
    fn tracker_learns_first_single_entry_client() {
        let mut t = AwarenessTracker::default();
        assert_eq!(t.removal_frame(), None);
        // Multi-entry frames (relayed peers) teach nothing.
        t.observe_frame(&awareness_frame(&encode_awareness_update(&[
            entry(1, 4, "{}"),
            entry(2, 4, "{}"),
        ])));
        assert_eq!(t.seen, None);
        // Non-awareness and malformed frames are ignored.
        t.observe_frame(&[0, 2, 2, 0, 0]);
        t.observe_frame(&[1, 2, 1, 5]);
        assert_eq!(t.seen, None);
        t.observe_frame(&awareness_frame(&encode_awareness_update(&[entry(
            7, 0, "{}",
        )])));
        assert_eq!(t.seen, Some((7, 0)));
        t.observe_update(&encode_awareness_update(&[entry(7, 2, "{\"u\":1}")]));
        assert_eq!(t.seen, Some((7, 2)));
        // Another client's single-entry frame (a relayed peer) does not take over.
        t.observe_update(&encode_awareness_update(&[entry(8, 9, "{}")]));
        assert_eq!(t.seen, Some((7, 2)));
        // A stale clock never lowers it.
        t.observe_update(&encode_awareness_update(&[entry(7, 1, "{}")]));
        assert_eq!(t.seen, Some((7, 2)));
        assert_eq!(t.removal_frame(), Some(removal_frame(7, 2)));
    }

    #[test]
    fn tracker_bytes_round_trip() {
        for t in [
            AwarenessTracker::default(),
            AwarenessTracker {
                seen: Some((u64::from(u32::MAX), 300)),
            },
        ] {
            let b = t.to_bytes();
            assert_eq!(AwarenessTracker::from_bytes(&b), Ok((t, b.len())));
        }
        assert_eq!(AwarenessTracker::from_bytes(&[]), Err(Error::UnexpectedEnd));
        assert_eq!(
            AwarenessTracker::from_bytes(&[1, 5]),
            Err(Error::UnexpectedEnd)
        );
    }

    #[test]
    fn states_follow_y_protocols_rules() {
        let mut s = AwarenessStates::new();
        // A new client's clock-0 state is ignored by y-protocols.
        s.apply_update(&encode_awareness_update(&[entry(1, 0, "{}")]))
            .unwrap();
        assert!(s.is_empty());
        assert_eq!(s.frame(), None);
        s.apply_update(&encode_awareness_update(&[entry(1, 2, "{\"a\":2}")]))
            .unwrap();
        s.apply_update(&encode_awareness_update(&[entry(1, 1, "{\"a\":1}")]))
            .unwrap();
        s.apply_update(&encode_awareness_update(&[entry(2, 1, "{\"b\":1}")]))
            .unwrap();
        assert_eq!(
            s.states().collect::<Vec<_>>(),
            [(1, 2, "{\"a\":2}"), (2, 1, "{\"b\":1}")]
        );
        // Equal-clock removal of a present client applies; then an equal-clock state does not.
        s.apply_update(&encode_awareness_update(&[entry(2, 1, "null")]))
            .unwrap();
        s.apply_update(&encode_awareness_update(&[entry(2, 1, "{\"b\":1}")]))
            .unwrap();
        assert_eq!(s.states().collect::<Vec<_>>(), [(1, 2, "{\"a\":2}")]);
        // A higher clock brings it back.
        s.apply_update(&encode_awareness_update(&[entry(2, 2, "{\"b\":2}")]))
            .unwrap();
        assert_eq!(
            s.encode_states(),
            Some(encode_awareness_update(&[
                entry(1, 2, "{\"a\":2}"),
                entry(2, 2, "{\"b\":2}")
            ]))
        );
        assert_eq!(
            s.frame(),
            Some(awareness_frame(&s.encode_states().unwrap()))
        );
        assert_eq!(s.apply_update(&[1]), Err(Error::UnexpectedEnd));
    }
}
