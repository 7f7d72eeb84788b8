//! y-protocols and lib0: sync/awareness messages from clients, stream messages, merging.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yjs_core::lib0::Decoder;
use yjs_core::protocol::{Message, to_stream_message};

fuzz_target!(|data: &[u8]| {
    // A message that parses re-encodes to bytes that parse to the same message.
    if let Ok(m) = Message::parse(data) {
        let bytes = m.encode();
        let again = Message::parse(&bytes).expect("an encoded message parses");
        assert_eq!(again.encode(), bytes);
    }
    let _ = to_stream_message(data);
    // lib0 primitives read to the end without panicking.
    let mut d = Decoder::new(data);
    while !d.is_at_end() {
        if d.read_var_bytes().is_err() && d.read_var_uint().is_err() {
            break;
        }
    }
    // Merging a batch of stream messages (the worker's path) never panics.
    let parts: Vec<&[u8]> = data.split(|b| *b == 0xFF).collect();
    let _ = yjs_core::merge::merge_batch(&parts);
});
