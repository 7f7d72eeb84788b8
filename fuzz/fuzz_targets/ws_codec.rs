//! The WebSocket decoder: any bytes, split anywhere, decode to the same messages (or the same
//! error) as when they arrive at once, and nothing panics.
#![no_main]

use bytes::BytesMut;
use gateway::wire::codec::{Decoder, Message, ProtocolError};
use libfuzzer_sys::fuzz_target;

/// Caps small enough that the fuzzer reaches them.
const MAX_FRAME: usize = 4096;
const MAX_MESSAGE: usize = 8192;

fn decode_all(chunks: &[&[u8]]) -> (Vec<Message>, Option<ProtocolError>) {
    let mut decoder = Decoder::new(MAX_FRAME, MAX_MESSAGE);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|input: &[u8]| {
    // The first byte picks the split points: chunks of 1..=16 bytes in a repeating pattern.
    let Some((&seed, data)) = input.split_first() else {
        return;
    };
    let whole = decode_all(&[data]);
    let mut chunks = Vec::new();
    let mut rest = data;
    let mut step = seed as usize;
    while !rest.is_empty() {
        let n = (step % 16 + 1).min(rest.len());
        let (a, b) = rest.split_at(n);
        chunks.push(a);
        rest = b;
        step = step.wrapping_mul(31).wrapping_add(7);
    }
    let split = decode_all(&chunks);
    assert_eq!(whole, split, "splitting the input changed what was decoded");
});
