//! Ably connect queries, JWTs, capabilities and channel names.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        ably_rooms::fuzzing::credentials(text);
    }
});
