//! Ably ProtocolMessages in JSON (text frames) and REST bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ably_rooms::fuzzing::json(data));
