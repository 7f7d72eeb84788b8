//! Awareness updates: parse, re-encode, merge, and the trackers the plugin keeps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yjs_core::awareness::{encode_awareness_update, merge_awareness, parse_awareness_update};
use yjs_core::presence::{AwarenessStates, AwarenessTracker};

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = parse_awareness_update(data) {
        let bytes = encode_awareness_update(&entries);
        let again = parse_awareness_update(&bytes).expect("an encoded update parses");
        assert_eq!(encode_awareness_update(&again), bytes);
        let _ = merge_awareness([data, &bytes[..]]);
    }
    let mut states = AwarenessStates::new();
    let _ = states.apply_update(data);
    let _ = states.states().count();
    let mut tracker = AwarenessTracker::default();
    tracker.observe_frame(data);
    let bytes = tracker.to_bytes();
    let (back, _) = AwarenessTracker::from_bytes(&bytes).expect("tracker bytes read back");
    assert_eq!(back.to_bytes(), bytes);
    let _ = AwarenessTracker::from_bytes(data);
});
