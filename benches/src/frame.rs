//! Hand-rolled WebSocket frame encoding, so many frames can be packed into one
//! buffer and written with a single system call.

/// Text frame opcode.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame opcode.
pub const OP_BINARY: u8 = 0x2;
/// Close frame opcode.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub const OP_PING: u8 = 0x9;
/// Pong frame opcode.
pub const OP_PONG: u8 = 0xA;

/// Appends the header of a final frame (FIN set) to `out`; `masked` sets the mask bit.
fn put_header(out: &mut Vec<u8>, opcode: u8, len: usize, masked: bool) {
    let mask_bit = if masked { 0x80 } else { 0 };
    out.push(0x80 | (opcode & 0x0F));
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Appends an unmasked (server → client) final frame to `out`.
pub fn encode_server(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.reserve(payload.len() + 10);
    put_header(out, opcode, payload.len(), false);
    out.extend_from_slice(payload);
}

/// Appends a masked (client → server) final frame to `out`, masked with `key`.
pub fn encode_client(out: &mut Vec<u8>, opcode: u8, payload: &[u8], key: [u8; 4]) {
    out.reserve(payload.len() + 14);
    put_header(out, opcode, payload.len(), true);
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key);
}

/// XORs `buf` with the repeating 4-byte `key`.
fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes((&*chunk).try_into().expect("8-byte chunk")) ^ wide;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// Cheap per-sender source of mask keys (splitmix64); masking keys need not be
/// cryptographic for a load generator talking to loopback.
#[derive(Debug, Clone)]
pub struct Masker(u64);

impl Masker {
    /// A masker seeded from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 4-byte key.
    pub fn next_key(&mut self) -> [u8; 4] {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) as u32).to_ne_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_header_sizes() {
        for (len, head) in [
            (0usize, 2usize),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
        ] {
            let mut out = Vec::new();
            encode_server(&mut out, OP_TEXT, &vec![b'a'; len]);
            assert_eq!(out.len(), len + head, "len {len}");
            assert_eq!(out[0], 0x81);
        }
    }

    #[test]
    fn client_mask_round_trips() {
        let payload: Vec<u8> = (0..=200u8).collect();
        let key = [1, 2, 3, 4];
        let mut out = Vec::new();
        encode_client(&mut out, OP_TEXT, &payload, key);
        assert_eq!(out[1], 0x80 | 126);
        assert_eq!(&out[4..8], &key);
        let mut body = out[8..].to_vec();
        apply_mask(&mut body, key);
        assert_eq!(body, payload);
    }
}
