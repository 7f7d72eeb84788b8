//! lib0 binary encoding as used by y-protocols: varuint, varUint8Array and varString.
//!
//! A varuint is little-endian base-128: 7 value bits per byte, the high bit set on every
//! byte but the last. lib0 numbers are JavaScript numbers, so values above 2^53 - 1 are
//! rejected when reading (lib0 throws "integer out of range" there too). Non-canonical
//! encodings with extra zero groups (`80 00`) are accepted, as lib0 does.

use crate::error::{Error, Result};

/// The largest integer a lib0 (JavaScript) reader accepts: 2^53 - 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Appends `n` as a varuint.
pub fn write_var_uint(out: &mut Vec<u8>, mut n: u64) {
    while n > 0x7f {
        out.push(0x80 | (n & 0x7f) as u8);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends a varUint8Array: the varuint length, then the bytes.
pub fn write_var_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_var_uint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a varString: a varUint8Array of the UTF-8 bytes.
pub fn write_var_string(out: &mut Vec<u8>, s: &str) {
    write_var_bytes(out, s.as_bytes());
}

/// A read cursor over a byte slice; every read checks bounds and returns an error.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The unread rest of the input.
    pub fn remaining(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Whether everything has been read.
    pub fn is_at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Reads one byte.
    pub fn read_u8(&mut self) -> Result<u8> {
        let b = *self.buf.get(self.pos).ok_or(Error::UnexpectedEnd)?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads a varuint (at most 2^53 - 1).
    pub fn read_var_uint(&mut self) -> Result<u64> {
        let mut value: u64 = 0;
        let mut shift: u32 = 0;
        loop {
            let b = self.read_u8()?;
            let bits = u64::from(b & 0x7f);
            if bits != 0 {
                // Any set bit at or beyond bit 53 is out of range for lib0.
                if shift >= 53 || bits > (MAX_SAFE_INTEGER >> shift) {
                    return Err(Error::IntegerOutOfRange);
                }
                value |= bits << shift;
            }
            if b < 0x80 {
                return Ok(value);
            }
            shift = shift.saturating_add(7);
        }
    }

    /// Reads a varuint that is used as a length or count.
    pub fn read_var_len(&mut self) -> Result<usize> {
        usize::try_from(self.read_var_uint()?).map_err(|_| Error::UnexpectedEnd)
    }

    /// Reads a varUint8Array, borrowing the bytes.
    pub fn read_var_bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.read_var_len()?;
        if len > self.buf.len() - self.pos {
            return Err(Error::UnexpectedEnd);
        }
        let bytes = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(bytes)
    }

    /// Reads a varString, borrowing it; invalid UTF-8 is an error.
    pub fn read_var_string(&mut self) -> Result<&'a str> {
        std::str::from_utf8(self.read_var_bytes()?).map_err(|_| Error::InvalidUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var_uint(n: u64) -> Vec<u8> {
        let mut v = Vec::new();
        write_var_uint(&mut v, n);
        v
    }

    #[test]
    fn varuint_golden_bytes() {
        assert_eq!(var_uint(0), [0x00]);
        assert_eq!(var_uint(1), [0x01]);
        assert_eq!(var_uint(127), [0x7f]);
        assert_eq!(var_uint(128), [0x80, 0x01]);
        assert_eq!(var_uint(300), [0xac, 0x02]);
        assert_eq!(var_uint(16_383), [0xff, 0x7f]);
        assert_eq!(var_uint(16_384), [0x80, 0x80, 0x01]);
        assert_eq!(var_uint(0xffff_ffff), [0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(
            var_uint(MAX_SAFE_INTEGER),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]
        );
    }

    #[test]
    fn varuint_round_trip() {
        let mut n = 0u64;
        while n <= MAX_SAFE_INTEGER {
            for v in [n.saturating_sub(1), n, n + 1]
                .into_iter()
                .filter(|v| *v <= MAX_SAFE_INTEGER)
            {
                let bytes = var_uint(v);
                let mut d = Decoder::new(&bytes);
                assert_eq!(d.read_var_uint(), Ok(v));
                assert!(d.is_at_end());
            }
            n = n * 2 + 1;
        }
    }

    #[test]
    fn varuint_non_canonical_is_accepted() {
        let mut d = Decoder::new(&[0x80, 0x80, 0x00, 0x05]);
        assert_eq!(d.read_var_uint(), Ok(0));
        assert_eq!(d.position(), 3);
        assert_eq!(d.read_var_uint(), Ok(5));
        // Many zero groups: still zero, no overflow of the shift.
        let mut long = vec![0x80; 40];
        long.push(0x00);
        assert_eq!(Decoder::new(&long).read_var_uint(), Ok(0));
    }

    #[test]
    fn varuint_truncated() {
        assert_eq!(Decoder::new(&[]).read_var_uint(), Err(Error::UnexpectedEnd));
        assert_eq!(
            Decoder::new(&[0x80]).read_var_uint(),
            Err(Error::UnexpectedEnd)
        );
        assert_eq!(
            Decoder::new(&[0xff, 0xff, 0xff]).read_var_uint(),
            Err(Error::UnexpectedEnd)
        );
    }

    #[test]
    fn varuint_out_of_range() {
        // 2^53 exactly.
        let bytes = var_uint(MAX_SAFE_INTEGER + 1);
        assert_eq!(
            Decoder::new(&bytes).read_var_uint(),
            Err(Error::IntegerOutOfRange)
        );
        let bytes = var_uint(u64::MAX);
        assert_eq!(
            Decoder::new(&bytes).read_var_uint(),
            Err(Error::IntegerOutOfRange)
        );
        let mut huge = vec![0xff; 12];
        huge.push(0x01);
        assert_eq!(
            Decoder::new(&huge).read_var_uint(),
            Err(Error::IntegerOutOfRange)
        );
    }

    #[test]
    fn var_bytes_and_string() {
        let mut v = Vec::new();
        write_var_bytes(&mut v, &[1, 2, 3]);
        write_var_string(&mut v, "null");
        write_var_string(&mut v, "ä");
        assert_eq!(v, [3, 1, 2, 3, 4, b'n', b'u', b'l', b'l', 2, 0xc3, 0xa4]);
        let mut d = Decoder::new(&v);
        assert_eq!(d.read_var_bytes(), Ok(&[1u8, 2, 3][..]));
        assert_eq!(d.read_var_string(), Ok("null"));
        assert_eq!(d.read_var_string(), Ok("ä"));
        assert!(d.is_at_end());
        assert_eq!(d.read_u8(), Err(Error::UnexpectedEnd));
    }

    #[test]
    fn var_bytes_length_past_end() {
        assert_eq!(
            Decoder::new(&[4, 1, 2, 3]).read_var_bytes(),
            Err(Error::UnexpectedEnd)
        );
        // A huge length must not overflow the bounds check.
        let mut v = var_uint(MAX_SAFE_INTEGER);
        v.push(0);
        assert_eq!(Decoder::new(&v).read_var_bytes(), Err(Error::UnexpectedEnd));
        // Empty array is fine.
        let mut d = Decoder::new(&[0]);
        assert_eq!(d.read_var_bytes(), Ok(&[][..]));
        assert_eq!(d.remaining(), &[] as &[u8]);
    }

    #[test]
    fn var_string_invalid_utf8() {
        assert_eq!(
            Decoder::new(&[2, 0xc3, 0x28]).read_var_string(),
            Err(Error::InvalidUtf8)
        );
        assert_eq!(
            Decoder::new(&[1, 0xff]).read_var_string(),
            Err(Error::InvalidUtf8)
        );
    }
}
