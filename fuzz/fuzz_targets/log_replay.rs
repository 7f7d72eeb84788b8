//! Stream log replay: any bytes give the records of their intact prefix, which re-encode to
//! exactly that prefix, and account for every byte; nothing panics or allocates past the input.
#![no_main]

use gateway::streams::log::{MAGIC, replay_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let r = replay_bytes(data);
    assert_eq!(r.good_bytes + r.dropped_bytes, data.len() as u64);
    assert_eq!(r.reason.is_some(), r.dropped_bytes > 0);
    if data.starts_with(MAGIC) {
        let mut again = MAGIC.to_vec();
        for rec in &r.records {
            rec.encode(&mut again);
        }
        assert_eq!(again, data[..r.good_bytes as usize]);
        // Damage after an intact prefix never costs a record of the prefix.
        let mut longer = data[..r.good_bytes as usize].to_vec();
        longer.extend_from_slice(&data[r.good_bytes as usize..]);
        longer.push(0xA5);
        assert_eq!(replay_bytes(&longer).records, r.records);
    }
});
