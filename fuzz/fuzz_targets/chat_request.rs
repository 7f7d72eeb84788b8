//! The chat plugin's client frames and admin API bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        chat::fuzzing::client_frame(text);
    }
    chat::fuzzing::admin_body(data);
});
