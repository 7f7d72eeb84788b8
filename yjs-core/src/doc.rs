//! Document assembly from storage plus the room stream (y-redis `getDoc`, §1.5a), used
//! both to greet a joining client and to compact a room.

use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

use crate::error::{Error, Result};
use crate::merge::{Skipped, merge_updates};
use crate::presence::AwarenessStates;
use crate::protocol::{Message, sync_step1_frame, sync_step2_frame};

/// Stream updates merged (and applied) at a time.
const MERGE_CHUNK: usize = 256;

/// A document built from storage and stream entries.
#[derive(Debug)]
pub struct BuiltDoc {
    /// The document (garbage collection on, as a default `Y.Doc`).
    pub doc: Doc,
    /// Awareness states replayed from the stream's awareness frames.
    pub awareness: AwarenessStates,
    /// Whether the stream entries changed the document beyond what storage held:
    /// inserted content, deleted content (delete-only edits count, §7.5), or new pending
    /// (not yet integrable) data. Only then must compaction persist.
    pub changed: bool,
    /// Stream entries that were left out (malformed or unexpected), for logging.
    pub skipped: Vec<Skipped>,
}

/// Builds the document: every stored update (Yjs update V2, e.g. one per storage
/// reference) in one transaction, then every stream payload `m` in a second one.
///
/// Sync updates (and step 2 frames) are applied as v1 updates, awareness frames are
/// replayed into [`BuiltDoc::awareness`]; other or broken entries are skipped. An
/// unreadable stored update is an error: compacting over it would lose data.
pub fn build_doc<S, M>(stored_v2_updates: &[S], stream_messages: &[M]) -> Result<BuiltDoc>
where
    S: AsRef<[u8]>,
    M: AsRef<[u8]>,
{
    let doc = Doc::new();
    {
        let mut txn = doc.transact_mut();
        for (index, bytes) in stored_v2_updates.iter().enumerate() {
            let bad = |e: String| Error::BadStoredDoc { index, reason: e };
            let update = Update::decode_v2(bytes.as_ref()).map_err(|e| bad(e.to_string()))?;
            txn.apply_update(update).map_err(|e| bad(e.to_string()))?;
        }
    }
    let mut awareness = AwarenessStates::new();
    let mut skipped = Vec::new();
    let (before, pending_before) = {
        let txn = doc.transact();
        (txn.snapshot(), pending_summary(&txn))
    };
    let sv_before = before.state_map.clone();
    // The whole state just before the first update that starts past the stored state (rare:
    // only after Redis lost updates), to tell afterwards whether it added anything.
    let mut gap_baseline: Option<Vec<u8>> = None;
    let mut updates: Vec<(usize, &[u8])> = Vec::new();
    for (index, m) in stream_messages.iter().enumerate() {
        let outcome = match Message::parse(m.as_ref()) {
            Ok(Message::SyncUpdate(u) | Message::SyncStep2(u)) => {
                updates.push((index, u));
                Ok(())
            }
            Ok(Message::Awareness(a)) => awareness.apply_update(a),
            Ok(Message::SyncStep1(_)) => Err(Error::UnexpectedMessage(0)),
            Ok(Message::Other(t)) => Err(Error::UnexpectedMessage(t)),
            Err(e) => Err(e),
        };
        if let Err(reason) = outcome {
            skipped.push(Skipped { index, reason });
        }
    }
    // Updates are merged in chunks and each merge is applied in its own transaction: one
    // transaction over tens of thousands of updates, or one merge of all of them, is
    // superlinear in yrs. "Changed" compares snapshots (state vector and delete set) and
    // pending data, so delete-only edits count (§7.5).
    for chunk in updates.chunks(MERGE_CHUNK) {
        if let Some(merged) = merge_updates(chunk, &mut skipped) {
            let mut txn = doc.transact_mut();
            let applied = Update::decode_v1(&merged)
                .map_err(|e| e.to_string())
                .and_then(|u| {
                    if gap_baseline.is_none() && starts_past(&u, &sv_before) {
                        gap_baseline = Some(txn.encode_state_as_update_v1(&StateVector::default()));
                    }
                    txn.apply_update(u).map_err(|e| e.to_string())
                });
            if let Err(e) = applied {
                skipped.push(Skipped {
                    index: chunk[0].0,
                    reason: Error::BadUpdate(e),
                });
            }
        }
    }
    skipped.sort_by_key(|s| s.index);
    // yrs integrates blocks past a gap in a client's clocks (a "skip", when Redis lost the
    // updates in between) without moving the state vector past the gap, so such content leaves
    // the snapshot as it was: then the whole state is compared.
    let changed = {
        let txn = doc.transact();
        txn.snapshot() != before
            || pending_summary(&txn) != pending_before
            || gap_baseline
                .is_some_and(|b| txn.encode_state_as_update_v1(&StateVector::default()) != b)
    };
    Ok(BuiltDoc {
        doc,
        awareness,
        changed,
        skipped,
    })
}

/// Whether `update` starts past `sv` for some client: it follows a gap in that client's clocks.
fn starts_past(update: &Update, sv: &StateVector) -> bool {
    update
        .state_vector_lower()
        .iter()
        .any(|(client, &clock)| clock > sv.get(client))
}

/// What is pending (blocks waiting for missing predecessors, deletes of unknown items),
/// compared before and after the stream transaction.
type PendingSummary = Option<(StateVector, StateVector, StateVector, Vec<u8>)>;

fn pending_summary<T: ReadTxn>(txn: &T) -> PendingSummary {
    if !txn.has_missing_updates() {
        return None;
    }
    let store = ReadTxn::store(txn);
    let (blocks_lower, blocks_upper, missing) = match store.pending_update() {
        Some(p) => (
            p.update.state_vector_lower(),
            p.update.state_vector(),
            p.missing.clone(),
        ),
        None => Default::default(),
    };
    let ds = store
        .pending_ds()
        .map(|ds| ds.encode_v1())
        .unwrap_or_default();
    Some((blocks_lower, blocks_upper, missing, ds))
}

/// The encoded (v1) state vector of the document, as sent in sync step 1 and stored as
/// Postgres `sv`.
pub fn state_vector_v1(doc: &Doc) -> Vec<u8> {
    doc.transact().state_vector().encode_v1()
}

/// The full document state as a Yjs update V2 (the storage format, §1.7), including
/// pending data.
///
/// yrs 0.28 can write an unreadable V2 update for a document that holds edits whose
/// predecessors never arrived (e.g. lost with a Redis that restarted empty), so the result
/// is checked and, when it does not decode, the state goes through V1 and is re-encoded.
pub fn encode_full_state_v2(doc: &Doc) -> Vec<u8> {
    let txn = doc.transact();
    let v2 = txn.encode_state_as_update_v2(&StateVector::default());
    if Update::decode_v2(&v2).is_ok() {
        return v2;
    }
    let v1 = txn.encode_state_as_update_v1(&StateVector::default());
    match Update::decode_v1(&v1) {
        Ok(update) => update.encode_v2(),
        Err(_) => v2,
    }
}

/// The full document state as a Yjs update v1 (the server's step 2 payload).
pub fn encode_full_state_v1(doc: &Doc) -> Vec<u8> {
    doc.transact()
        .encode_state_as_update_v1(&StateVector::default())
}

/// The frames a joining client gets (§1.9): sync step 1 with the server's state vector,
/// sync step 2 with the full state (not a diff), then all awareness states if any.
pub fn greeting_frames(built: &BuiltDoc) -> Vec<Vec<u8>> {
    let mut frames = vec![
        sync_step1_frame(&state_vector_v1(&built.doc)),
        sync_step2_frame(&encode_full_state_v1(&built.doc)),
    ];
    frames.extend(built.awareness.frame());
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::awareness::{AwarenessEntry, encode_awareness_update};
    use crate::presence::removal_frame;
    use crate::protocol::{awareness_frame, sync_update_frame};
    use yrs::{GetString, Map, Text, TransactionMut};

    fn text_of(doc: &Doc) -> String {
        doc.get_or_insert_text("t").get_string(&doc.transact())
    }

    /// A client doc with an update producer that records v1 update frames.
    struct Client {
        doc: Doc,
        frames: Vec<Vec<u8>>,
    }

    impl Client {
        fn new(id: u64) -> Self {
            Client {
                doc: Doc::with_client_id(id),
                frames: Vec::new(),
            }
        }
        fn edit(&mut self, f: impl FnOnce(&mut TransactionMut, &yrs::TextRef)) {
            let text = self.doc.get_or_insert_text("t");
            let mut txn = self.doc.transact_mut();
            f(&mut txn, &text);
            self.frames.push(sync_update_frame(&txn.encode_update_v1()));
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
    fn many_small_updates_and_a_broken_one() {
        let mut c = Client::new(7);
        for i in 0..20_000 {
            c.edit(|txn, t| t.insert(txn, i, "x"));
        }
        let mut frames = c.frames.clone();
        frames.insert(5, vec![0, 2, 3, 0xff, 0xff, 0xff]);
        let built = build_doc::<Vec<u8>, Vec<u8>>(&[], &frames).unwrap();
        assert!(built.changed);
        assert_eq!(text_of(&built.doc), "x".repeat(20_000));
        assert_eq!(built.skipped.len(), 1);
        assert_eq!(built.skipped[0].index, 5);
    }

    #[test]
    fn empty_inputs() {
        let built = build_doc::<Vec<u8>, Vec<u8>>(&[], &[]).unwrap();
        assert!(!built.changed);
        assert!(built.awareness.is_empty());
        let frames = greeting_frames(&built);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0], [0, 0, 1, 0]);
        assert_eq!(frames[1], [0, 1, 2, 0, 0]);
    }

    #[test]
    fn stream_only_counts_as_change_and_greets() {
        let mut c = Client::new(1);
        c.edit(|txn, t| t.insert(txn, 0, "hello"));
        let mut stream = c.frames.clone();
        stream.push(aw(1, 0, "{}")); // ignored by y-protocols (new client, clock 0)
        stream.push(aw(1, 1, "{\"user\":\"a\"}"));
        stream.push(aw(2, 3, "{\"user\":\"b\"}"));
        stream.push(removal_frame(2, 3));
        let built = build_doc::<Vec<u8>, _>(&[], &stream).unwrap();
        assert!(built.changed);
        assert!(built.skipped.is_empty());
        assert_eq!(text_of(&built.doc), "hello");
        let frames = greeting_frames(&built);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[2], aw(1, 1, "{\"user\":\"a\"}"));
        // Step 2 carries the full state: a fresh client converges from it.
        let Ok(Message::SyncStep2(full)) = Message::parse(&frames[1]) else {
            panic!("step 2 expected");
        };
        let fresh = Doc::with_client_id(50);
        fresh
            .transact_mut()
            .apply_update(Update::decode_v1(full).unwrap())
            .unwrap();
        assert_eq!(text_of(&fresh), "hello");
        let Ok(Message::SyncStep1(sv)) = Message::parse(&frames[0]) else {
            panic!("step 1 expected");
        };
        assert_eq!(
            StateVector::decode_v1(sv).unwrap(),
            c.doc.transact().state_vector()
        );
    }

    #[test]
    fn storage_round_trip_and_replayed_stream_is_unchanged() {
        let mut c = Client::new(1);
        c.edit(|txn, t| t.insert(txn, 0, "abc"));
        let first = build_doc::<Vec<u8>, _>(&[], &c.frames).unwrap();
        let stored = encode_full_state_v2(&first.doc);
        // Same stream again over the compacted state: nothing new.
        let again = build_doc(std::slice::from_ref(&stored), &c.frames).unwrap();
        assert!(!again.changed);
        assert_eq!(text_of(&again.doc), "abc");
        // Two storage references merge.
        let mut d = Client::new(2);
        d.edit(|txn, t| t.insert(txn, 0, "xyz"));
        let other = encode_full_state_v2(&build_doc::<Vec<u8>, _>(&[], &d.frames).unwrap().doc);
        let both = build_doc::<_, Vec<u8>>(&[stored, other], &[]).unwrap();
        assert!(!both.changed);
        assert_eq!(text_of(&both.doc).len(), 6);
    }

    #[test]
    fn delete_only_edit_counts_as_change() {
        let mut c = Client::new(1);
        c.edit(|txn, t| t.insert(txn, 0, "hello world"));
        let stored = encode_full_state_v2(&build_doc::<Vec<u8>, _>(&[], &c.frames).unwrap().doc);
        c.frames.clear();
        c.edit(|txn, t| t.remove_range(txn, 5, 6));
        let built = build_doc(&[&stored], &c.frames).unwrap();
        assert_eq!(text_of(&built.doc), "hello");
        // The state vector is unchanged: only the delete set tells.
        assert_eq!(
            built.doc.transact().state_vector(),
            Update::decode_v2(&stored).unwrap().state_vector()
        );
        assert!(built.changed);
        // Once compacted, replaying the same delete changes nothing (no needless persist).
        let compacted = encode_full_state_v2(&built.doc);
        let again = build_doc(&[&compacted], &c.frames).unwrap();
        assert!(!again.changed);
        assert_eq!(text_of(&again.doc), "hello");
    }

    #[test]
    fn client_step2_reaches_the_doc_through_the_stream() {
        // An offline client answers the server's step 1 with its step 2.
        let mut c = Client::new(4);
        c.edit(|txn, t| t.insert(txn, 0, "offline"));
        let step2 = sync_step2_frame(&encode_full_state_v1(&c.doc));
        let m = crate::protocol::to_stream_message(&step2).unwrap();
        assert_eq!(m[1], 2);
        assert_eq!(m[2..], step2[2..]);
        let built = build_doc::<Vec<u8>, _>(&[], &[m]).unwrap();
        assert!(built.changed);
        assert_eq!(text_of(&built.doc), "offline");
    }

    #[test]
    fn pending_edits_whose_history_was_lost_survive_storage() {
        // Two clients share "before"; the stream that held it is lost (Redis restarted empty)
        // and only their later edits reach the stream. Those stay pending and must be stored
        // readably, so the next compaction does not fail on them.
        let a = Doc::with_client_id(1);
        let b = Doc::with_client_id(2);
        let insert = |doc: &Doc, key: &str, v: i64| {
            let map = doc.get_or_insert_map("map");
            let mut txn = doc.transact_mut();
            map.insert(&mut txn, key, v);
            txn.encode_update_v1()
        };
        let before = insert(&a, "before", 1);
        b.transact_mut()
            .apply_update(Update::decode_v1(&before).unwrap())
            .unwrap();
        let after_a = insert(&a, "after", 2);
        let after_b = insert(&b, "after-bob", 3);
        for stream in [
            vec![after_a.clone()],
            vec![after_a.clone(), after_b.clone()],
        ] {
            let frames: Vec<_> = stream.iter().map(|u| sync_update_frame(u)).collect();
            let built = build_doc::<Vec<u8>, _>(&[], &frames).unwrap();
            assert!(built.changed);
            let stored = encode_full_state_v2(&built.doc);
            let again = build_doc(&[&stored], &frames).unwrap();
            assert!(
                !again.changed,
                "replaying the stream over storage changes nothing"
            );
            // Once the lost history arrives (a client re-syncs), everything integrates.
            let healed = build_doc(&[&stored], &[sync_update_frame(&before)]).unwrap();
            assert!(!healed.doc.transact().has_missing_updates());
            let map = healed.doc.get_or_insert_map("map");
            assert_eq!(map.len(&healed.doc.transact()), stream.len() as u32 + 1);
        }
    }

    #[test]
    fn pending_edits_over_a_non_empty_stored_doc_count_as_change() {
        // Storage holds a's first edits; the stream lost the middle ones (Redis restarted
        // empty) and holds only later edits, which stay pending over the stored state.
        let a = Doc::with_client_id(1);
        let map = a.get_or_insert_map("map");
        let edit = |i: i64| {
            let mut txn = a.transact_mut();
            map.insert(&mut txn, format!("k{i}"), i);
            txn.encode_update_v1()
        };
        let first: Vec<_> = (0..10).map(edit).collect();
        let lost_edits: Vec<_> = (10..20).map(edit).collect();
        let later: Vec<_> = (20..30).map(edit).collect();
        let stored = {
            let frames: Vec<_> = first.iter().map(|u| sync_update_frame(u)).collect();
            encode_full_state_v2(&build_doc::<Vec<u8>, _>(&[], &frames).unwrap().doc)
        };
        let frames: Vec<_> = later.iter().map(|u| sync_update_frame(u)).collect();
        let built = build_doc(&[&stored], &frames).unwrap();
        let len = |d: &Doc| d.get_or_insert_map("map").len(&d.transact());
        assert!(built.changed, "edits past the gap must be persisted");
        // The state vector stays at the gap, so a client re-syncing sends the lost edits.
        let sv = built.doc.transact().state_vector();
        assert_eq!(sv.get(&yrs::block::ClientID::new(1)), 10);
        let stored_again = encode_full_state_v2(&built.doc);
        let again = build_doc(&[&stored_again], &[] as &[Vec<u8>]).unwrap();
        assert_eq!(
            len(&again.doc),
            len(&built.doc),
            "stored with the edits past the gap"
        );
        assert!(
            !build_doc(&[&stored_again], &frames).unwrap().changed,
            "replaying the stream over storage changes nothing"
        );
        let lost: Vec<_> = lost_edits.iter().map(|u| sync_update_frame(u)).collect();
        let healed = build_doc(&[&stored_again], &lost).unwrap();
        assert!(healed.changed);
        assert_eq!(len(&healed.doc), 30, "every edit once the lost ones arrive");
    }

    #[test]
    fn map_overwrite_and_pending_updates_count_as_change() {
        let doc = Doc::with_client_id(3);
        let map = doc.get_or_insert_map("m");
        let u1 = {
            let mut txn = doc.transact_mut();
            map.insert(&mut txn, "a", 1);
            txn.encode_update_v1()
        };
        let u2 = {
            let mut txn = doc.transact_mut();
            map.insert(&mut txn, "a", 2);
            txn.encode_update_v1()
        };
        // u2 without u1: cannot integrate, stays pending, but must not be lost.
        let built = build_doc::<Vec<u8>, _>(&[], &[sync_update_frame(&u2)]).unwrap();
        assert!(built.changed);
        let stored = encode_full_state_v2(&built.doc);
        // Replaying the same pending update over storage that already holds it: no change.
        let again = build_doc(&[&stored], &[sync_update_frame(&u2)]).unwrap();
        assert!(!again.changed);
        // Once u1 arrives everything integrates.
        let done = build_doc(&[&stored], &[sync_update_frame(&u1)]).unwrap();
        assert!(done.changed);
        let m = done.doc.get_or_insert_map("m");
        assert_eq!(
            m.get(&done.doc.transact(), "a")
                .map(|v| v.to_string(&done.doc.transact())),
            Some("2".to_owned())
        );
    }

    #[test]
    fn bad_entries_are_skipped_bad_storage_is_an_error() {
        let mut c = Client::new(1);
        c.edit(|txn, t| t.insert(txn, 0, "ok"));
        let stream = vec![
            vec![0, 2, 3, 0xff, 0xff, 0xff],
            c.frames[0].clone(),
            vec![9],
            vec![1, 1],
        ];
        let built = build_doc::<Vec<u8>, _>(&[], &stream).unwrap();
        assert_eq!(text_of(&built.doc), "ok");
        let idx: Vec<usize> = built.skipped.iter().map(|s| s.index).collect();
        assert_eq!(idx, [0, 2, 3]);
        let err = build_doc::<_, Vec<u8>>(&[vec![0xff, 0xff]], &[]).unwrap_err();
        assert!(matches!(err, Error::BadStoredDoc { index: 0, .. }));
    }

    #[test]
    fn large_document_assembles() {
        // About 1 MB of text in 1 KiB edits, half compacted into storage.
        let mut c = Client::new(7);
        let chunk = "lorem ipsum dolor sit amet ".repeat(38); // 1026 bytes
        for i in 0..1024 {
            c.edit(|txn, t| t.insert(txn, (i * chunk.len()) as u32, &chunk));
        }
        let (old, new) = c.frames.split_at(512);
        let stored = encode_full_state_v2(&build_doc::<Vec<u8>, _>(&[], old).unwrap().doc);
        let built = build_doc(&[stored], new).unwrap();
        assert!(built.changed);
        assert_eq!(text_of(&built.doc).len(), 1024 * chunk.len());
        let frames = greeting_frames(&built);
        assert!(frames[1].len() > 1024 * chunk.len());
        let v2 = encode_full_state_v2(&built.doc);
        assert_eq!(
            text_of(&build_doc::<_, Vec<u8>>(&[v2], &[]).unwrap().doc).len(),
            1024 * chunk.len()
        );
    }
}
