//! Delivery batching (y-redis `mergeMessages`, §1.6): one read batch of stream payloads
//! for a room becomes at most two frames, each sent as its own WebSocket message.

use yrs::Update;
use yrs::updates::decoder::Decode;

use crate::awareness::{AwarenessEntry, merge_awareness_entries, parse_awareness_update};
use crate::error::Error;
use crate::protocol::{Message, awareness_frame, sync_update_frame};

/// A stream entry that was left out of a batch, for the caller to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Position of the entry in the input.
    pub index: usize,
    /// Why it was left out.
    pub reason: Error,
}

/// The frames to deliver for one batch, plus the entries that were left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergedBatch {
    /// A sync-update frame (all updates merged), then an awareness frame; either may be
    /// missing. Send each as a separate WebSocket frame: y-redis concatenates them into
    /// one, and y-websocket then only reads the first message (the awareness is lost).
    pub frames: Vec<Vec<u8>>,
    /// Malformed or unexpected entries.
    pub skipped: Vec<Skipped>,
}

/// Merges stream payloads `m` (y-protocols frames) of one room.
///
/// Sync updates (and, leniently, step 2 frames) are merged with `yrs::merge_updates_v1`;
/// awareness updates with [`merge_awareness_entries`] (highest clock per client, removals
/// kept). Anything else, and updates yrs cannot decode, is reported in `skipped`.
pub fn merge_batch<B: AsRef<[u8]>>(messages: &[B]) -> MergedBatch {
    let mut updates: Vec<(usize, &[u8])> = Vec::new();
    let mut awareness: Vec<AwarenessEntry> = Vec::new();
    let mut skipped = Vec::new();
    for (index, m) in messages.iter().enumerate() {
        let outcome = match Message::parse(m.as_ref()) {
            Ok(Message::SyncUpdate(u) | Message::SyncStep2(u)) => {
                updates.push((index, u));
                Ok(())
            }
            Ok(Message::Awareness(a)) => parse_awareness_update(a).map(|es| awareness.extend(es)),
            Ok(Message::SyncStep1(_)) => Err(Error::UnexpectedMessage(0)),
            Ok(Message::Other(t)) => Err(Error::UnexpectedMessage(t)),
            Err(e) => Err(e),
        };
        if let Err(reason) = outcome {
            skipped.push(Skipped { index, reason });
        }
    }
    let mut frames = Vec::new();
    if let Some(update) = merge_updates(&updates, &mut skipped) {
        frames.push(sync_update_frame(&update));
    }
    if let Some(update) = merge_awareness_entries(awareness) {
        frames.push(awareness_frame(&update));
    }
    skipped.sort_by_key(|s| s.index);
    MergedBatch { frames, skipped }
}

/// Merges v1 updates; if the merge fails, drops the undecodable ones and merges the rest.
/// A single valid update is passed through unchanged.
pub(crate) fn merge_updates(
    updates: &[(usize, &[u8])],
    skipped: &mut Vec<Skipped>,
) -> Option<Vec<u8>> {
    if updates.len() > 1
        && let Ok(merged) = yrs::merge_updates_v1(updates.iter().map(|(_, u)| *u))
    {
        return Some(merged);
    }
    let mut good = Vec::with_capacity(updates.len());
    for &(index, u) in updates {
        match Update::decode_v1(u) {
            Ok(_) => good.push(u),
            Err(e) => skipped.push(Skipped {
                index,
                reason: Error::BadUpdate(e.to_string()),
            }),
        }
    }
    match good.as_slice() {
        [] => None,
        [one] => Some(one.to_vec()),
        many => yrs::merge_updates_v1(many.iter().copied()).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::awareness::encode_awareness_update;
    use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact};

    fn text_update(client: u64, s: &str) -> (Doc, Vec<u8>) {
        let doc = Doc::with_client_id(client);
        let text = doc.get_or_insert_text("t");
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, s);
        let u = txn.encode_update_v1();
        drop(txn);
        (doc, u)
    }

    fn apply_frames(doc: &Doc, frames: &[Vec<u8>]) {
        let mut txn = doc.transact_mut();
        for f in frames {
            if let Ok(Message::SyncUpdate(u)) = Message::parse(f) {
                txn.apply_update(Update::decode_v1(u).unwrap()).unwrap();
            }
        }
    }

    fn aw(client_id: u64, clock: u64, state: &str) -> Vec<u8> {
        awareness_frame(&encode_awareness_update(&[AwarenessEntry {
            client_id,
            clock,
            state: state.to_owned(),
        }]))
    }

    #[test]
    fn merge_of_concurrent_updates_equals_applying_both() {
        let (a, ua) = text_update(1, "hello");
        let (b, ub) = text_update(2, "world");
        let batch = merge_batch(&[sync_update_frame(&ua), sync_update_frame(&ub)]);
        assert!(batch.skipped.is_empty());
        assert_eq!(batch.frames.len(), 1);

        let merged = Doc::with_client_id(9);
        apply_frames(&merged, &batch.frames);
        // Each author applies the other's update directly.
        apply_frames(&a, &[sync_update_frame(&ub)]);
        apply_frames(&b, &[sync_update_frame(&ua)]);
        let text = |d: &Doc| d.get_or_insert_text("t").get_string(&d.transact());
        assert_eq!(text(&merged).len(), 10);
        assert_eq!(text(&merged), text(&a));
        assert_eq!(text(&merged), text(&b));
        let sv = |d: &Doc| d.transact().state_vector();
        assert_eq!(sv(&merged), sv(&a));
        assert_eq!(sv(&merged), sv(&b));
        // The merged update is itself a complete state: it equals both docs' full state.
        let full = |d: &Doc| {
            d.transact()
                .encode_state_as_update_v1(&StateVector::default())
        };
        let Ok(Message::SyncUpdate(m)) = Message::parse(&batch.frames[0]) else {
            panic!("update frame expected");
        };
        assert_eq!(
            Update::decode_v1(m).unwrap().state_vector(),
            Update::decode_v1(&full(&a)).unwrap().state_vector()
        );
    }

    #[test]
    fn updates_and_awareness_are_separate_frames() {
        let (_, ua) = text_update(1, "x");
        let batch = merge_batch(&[
            aw(5, 1, "{\"a\":1}"),
            sync_update_frame(&ua),
            aw(5, 2, "{\"a\":2}"),
            aw(6, 1, "null"),
        ]);
        assert!(batch.skipped.is_empty());
        assert_eq!(batch.frames.len(), 2);
        assert_eq!(
            Message::parse(&batch.frames[0]),
            Ok(Message::SyncUpdate(&ua[..]))
        );
        let want = encode_awareness_update(&[
            AwarenessEntry {
                client_id: 5,
                clock: 2,
                state: "{\"a\":2}".into(),
            },
            AwarenessEntry {
                client_id: 6,
                clock: 1,
                state: "null".into(),
            },
        ]);
        assert_eq!(batch.frames[1], awareness_frame(&want));
    }

    #[test]
    fn malformed_entries_are_skipped_not_fatal() {
        let (_, ua) = text_update(1, "ok");
        let (_, ub) = text_update(2, "fine");
        let batch = merge_batch(&[
            vec![0, 2, 3, 0xff, 0xff, 0xff], // undecodable update
            sync_update_frame(&ua),
            vec![0, 2, 9],    // truncated frame
            vec![3],          // query-awareness: unexpected
            vec![0, 0, 1, 0], // step 1: unexpected
            vec![1, 2, 1, 5], // broken awareness
            sync_update_frame(&ub),
            aw(4, 1, "{}"),
        ]);
        let idx: Vec<usize> = batch.skipped.iter().map(|s| s.index).collect();
        assert_eq!(idx, [0, 2, 3, 4, 5]);
        assert!(matches!(batch.skipped[0].reason, Error::BadUpdate(_)));
        assert_eq!(batch.skipped[2].reason, Error::UnexpectedMessage(3));
        assert_eq!(batch.frames.len(), 2);
        let doc = Doc::with_client_id(9);
        apply_frames(&doc, &batch.frames);
        let s = doc.get_or_insert_text("t").get_string(&doc.transact());
        assert_eq!(s.len(), "okfine".len());
    }

    #[test]
    fn single_or_empty_batches() {
        assert_eq!(merge_batch::<Vec<u8>>(&[]), MergedBatch::default());
        let (_, ua) = text_update(1, "x");
        let batch = merge_batch(&[vec![0, 1, 0]]); // empty step 2 payload: bad update
        assert!(batch.frames.is_empty());
        assert_eq!(batch.skipped.len(), 1);
        // Step 2 payloads in the stream are accepted like updates.
        let batch = merge_batch(&[Message::SyncStep2(&ua).encode()]);
        assert_eq!(batch.frames, [sync_update_frame(&ua)]);
        let only_aw = merge_batch(&[aw(1, 1, "null")]);
        assert_eq!(only_aw.frames, [aw(1, 1, "null")]);
    }
}
