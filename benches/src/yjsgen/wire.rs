//! The y-websocket wire format as `load.mjs` speaks it: lib0 variable-length integers, sync
//! messages, the hand-encoded push update and a decoder for Yjs v1 updates that yields the
//! (client, clock, send time) of every item, like `Y.decodeUpdate` does for `load.mjs`.

/// Message type: sync (SyncStep1, SyncStep2, Update).
pub const MSG_SYNC: u64 = 0;
/// Message type: awareness.
pub const MSG_AWARENESS: u64 = 1;
/// Sync sub-type: the sender's state vector.
pub const SYNC_STEP1: u64 = 0;
/// Sync sub-type: what the receiver is missing.
pub const SYNC_STEP2: u64 = 1;
/// Sync sub-type: an incremental update.
pub const SYNC_UPDATE: u64 = 2;

/// An update with no structs and an empty delete set.
pub const EMPTY_UPDATE: [u8; 2] = [0, 0];

/// lib0 `BITS31`: the largest integer `writeAny` stores as a varInt.
const BITS31: u64 = 0x7FFF_FFFF;

/// Why a message or update could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Ran past the end of the buffer.
    Eof,
    /// A variable-length integer longer than 64 bits.
    Overflow,
    /// A content or `Any` type this decoder does not know (`Y.decodeUpdate` throws too).
    UnknownType(u8),
    /// `Any` values nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Eof => write!(f, "unexpected end of buffer"),
            DecodeError::Overflow => write!(f, "varint overflow"),
            DecodeError::UnknownType(t) => write!(f, "unknown type {t}"),
            DecodeError::TooDeep => write!(f, "values nested too deeply"),
        }
    }
}

/// Nesting limit for `Any` arrays and objects.
pub const MAX_DEPTH: u32 = 64;

// ------------------------------------------------------------------------------ encoding

/// lib0 `writeVarUint` (the gateway's own lib0 encoder).
pub use yjs_core::lib0::write_var_uint;

/// lib0 `writeVarInt` for a non-negative integer: 6 value bits and a sign bit in the first byte.
fn write_var_int(out: &mut Vec<u8>, n: u64) {
    out.push(if n > 0x3F { 0x80 } else { 0 } | (n & 0x3F) as u8);
    let mut n = n >> 6;
    while n > 0 {
        out.push(if n > 0x7F { 0x80 } else { 0 } | (n & 0x7F) as u8);
        n >>= 7;
    }
}

/// lib0 `writeAny` of a non-negative integer JS number: varInt up to 2^31 - 1, else float32 when
/// exact, else float64.
pub fn write_any_uint(out: &mut Vec<u8>, v: u64) {
    if v <= BITS31 {
        out.push(125);
        write_var_int(out, v);
    } else if (v as f32) as f64 == v as f64 {
        out.push(124);
        out.extend_from_slice(&(v as f32).to_be_bytes());
    } else {
        out.push(123);
        out.extend_from_slice(&(v as f64).to_be_bytes());
    }
}

/// The head of an update holding one item of `client` at `clock`, pushed to the end of the root
/// `Y.Array('a')`, up to and including its content's length: 1 client, 1 struct, client, clock,
/// info (content 8 = Any; 0x80 = has a left origin), then the left origin (own previous item) or,
/// for clock 0, the parent "root type 'a'".
fn push_item_head(out: &mut Vec<u8>, client: u64, clock: u64, values: u64) {
    out.extend_from_slice(&[1, 1]);
    write_var_uint(out, client);
    write_var_uint(out, clock);
    if clock == 0 {
        out.extend_from_slice(&[8, 1, 1, b'a']);
    } else {
        out.push(0x88);
        write_var_uint(out, client);
        write_var_uint(out, clock - 1);
    }
    write_var_uint(out, values);
}

/// Appends the update of one push of `value` (the send time in µs) by `client` at `clock`,
/// byte for byte what `encodePushUpdate` in `load.mjs` (and a `Y.Doc`) produces.
pub fn encode_push_update(out: &mut Vec<u8>, client: u64, clock: u64, value: u64) {
    push_item_head(out, client, clock, 1);
    write_any_uint(out, value);
    out.push(0); // empty delete set
}

/// Appends a sync message: type 0, `sub`, then `payload` as a varUint8Array.
pub fn write_sync_message(out: &mut Vec<u8>, sub: u64, payload: &[u8]) {
    write_var_uint(out, MSG_SYNC);
    write_var_uint(out, sub);
    write_var_uint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// The state vector of a client whose document holds its own pushes `0..sent`.
pub fn state_vector(client: u64, sent: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    if sent == 0 {
        out.push(0);
    } else {
        out.push(1);
        write_var_uint(&mut out, client);
        write_var_uint(&mut out, sent);
    }
    out
}

/// What a client whose document holds its pushes `0..sent` sends in reply to state vector `sv`
/// (`Y.encodeStateAsUpdate(doc, sv)`): its items from the clock `sv` has for it on, merged into
/// one item as a `Y.Doc` would, with the send times lost (0), like `diffSince` in `load.mjs`.
pub fn diff_since(client: u64, sent: u64, sv: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut d = Decoder::new(sv);
    let mut known = 0;
    for _ in 0..d.var_uint()? {
        let c = d.var_uint()?;
        let clock = d.var_uint()?;
        if c == client {
            known = clock;
        }
    }
    if known >= sent {
        return Ok(EMPTY_UPDATE.to_vec());
    }
    let n = sent - known;
    let mut out = Vec::with_capacity(24 + 2 * n as usize);
    push_item_head(&mut out, client, known, n);
    for _ in 0..n {
        write_any_uint(&mut out, 0);
    }
    out.push(0);
    Ok(out)
}

// ------------------------------------------------------------------------------ decoding

/// A lib0 decoder over a byte slice.
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// True while bytes are left.
    pub fn has_content(&self) -> bool {
        self.pos < self.buf.len()
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Eof)?;
        self.pos += 1;
        Ok(b)
    }

    /// `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Eof)?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Eof)?;
        self.pos = end;
        Ok(s)
    }

    /// lib0 `readVarUint`.
    pub fn var_uint(&mut self) -> Result<u64, DecodeError> {
        self.var_rest(0, 0)
    }

    /// Reads 7-bit groups into `n` from bit `shift` on, until a byte without the high bit.
    fn var_rest(&mut self, mut n: u64, mut shift: u32) -> Result<u64, DecodeError> {
        loop {
            let b = self.u8()?;
            if shift > 63 {
                return Err(DecodeError::Overflow);
            }
            n |= ((b & 0x7F) as u64) << shift;
            if b < 0x80 {
                return Ok(n);
            }
            shift += 7;
        }
    }

    /// lib0 `readVarInt`, as a JS number.
    pub fn var_int(&mut self) -> Result<f64, DecodeError> {
        let b = self.u8()?;
        let negative = b & 0x40 != 0;
        let mut n = (b & 0x3F) as u64;
        if b & 0x80 != 0 {
            n = self.var_rest(n, 6)?;
        }
        Ok(if negative { -(n as f64) } else { n as f64 })
    }

    /// lib0 `readVarUint8Array` (also the bytes of a `readVarString`).
    pub fn var_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.var_uint()?;
        self.bytes(usize::try_from(n).map_err(|_| DecodeError::Eof)?)
    }

    /// lib0 `readAny`: the value if it is a JS number (`typeof v === 'number'`), else `None`.
    pub fn any_number(&mut self) -> Result<Option<f64>, DecodeError> {
        self.any(0)
    }

    fn any(&mut self, depth: u32) -> Result<Option<f64>, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let t = self.u8()?;
        Ok(match t {
            127 | 126 | 121 | 120 => None, // undefined, null, false, true
            125 => Some(self.var_int()?),
            124 => Some(f32::from_be_bytes(self.bytes(4)?.try_into().expect("4 bytes")) as f64),
            123 => Some(f64::from_be_bytes(
                self.bytes(8)?.try_into().expect("8 bytes"),
            )),
            122 => {
                self.bytes(8)?; // bigint: typeof 'bigint'
                None
            }
            119 | 116 => {
                self.var_bytes()?; // string, Uint8Array
                None
            }
            118 => {
                for _ in 0..self.var_uint()? {
                    self.var_bytes()?;
                    self.any(depth + 1)?;
                }
                None
            }
            117 => {
                for _ in 0..self.var_uint()? {
                    self.any(depth + 1)?;
                }
                None
            }
            other => return Err(DecodeError::UnknownType(other)),
        })
    }
}

/// The items of an update: for every struct that is not a Skip, its first id and length, and for
/// `ContentAny` items the value of each element when it is a number (the send time in µs).
#[derive(Debug, Default)]
pub struct Records {
    /// One entry per struct.
    pub recs: Vec<Record>,
    /// The `ContentAny` values of all records, in order (`None`: not a number).
    pub values: Vec<Option<f64>>,
}

/// One struct of an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Creator's client id.
    pub client: u64,
    /// Clock of its first element.
    pub clock: u64,
    /// Number of clocks it covers.
    pub len: u64,
    /// For `ContentAny`, where its `len` values start in [`Records::values`]; `None` for other
    /// content and GC structs (counted without a send time).
    pub values: Option<usize>,
}

impl Records {
    /// The send time of element `k` of `rec`, if it carries one.
    pub fn value(&self, rec: &Record, k: u64) -> Option<f64> {
        rec.values
            .and_then(|start| self.values.get(start + k as usize).copied().flatten())
    }

    /// Decodes the v1 update `u` into `self` (cleared first). On error `self` is left empty,
    /// like `load.mjs`, which drops a frame `Y.decodeUpdate` throws on.
    pub fn decode(&mut self, u: &[u8]) -> Result<(), DecodeError> {
        self.recs.clear();
        self.values.clear();
        let r = self.decode_inner(u);
        if r.is_err() {
            self.recs.clear();
            self.values.clear();
        }
        r
    }

    fn decode_inner(&mut self, u: &[u8]) -> Result<(), DecodeError> {
        let mut d = Decoder::new(u);
        for _ in 0..d.var_uint()? {
            let structs = d.var_uint()?;
            let client = d.var_uint()?;
            let mut clock = d.var_uint()?;
            for _ in 0..structs {
                let info = d.u8()?;
                let (len, values) = match info & 0x1F {
                    0 => (d.var_uint()?, None), // GC
                    10 => {
                        // Skip: nothing
                        clock += d.var_uint()?;
                        continue;
                    }
                    content => {
                        if info & 0x80 != 0 {
                            d.var_uint()?; // origin
                            d.var_uint()?;
                        }
                        if info & 0x40 != 0 {
                            d.var_uint()?; // right origin
                            d.var_uint()?;
                        }
                        if info & 0xC0 == 0 {
                            // parent: a root type name or the id of the parent item
                            if d.var_uint()? == 1 {
                                d.var_bytes()?;
                            } else {
                                d.var_uint()?;
                                d.var_uint()?;
                            }
                            if info & 0x20 != 0 {
                                d.var_bytes()?; // parentSub
                            }
                        }
                        self.content(&mut d, content)?
                    }
                };
                self.recs.push(Record {
                    client,
                    clock,
                    len,
                    values,
                });
                clock += len;
            }
        }
        // delete set
        for _ in 0..d.var_uint()? {
            d.var_uint()?;
            for _ in 0..d.var_uint()? {
                d.var_uint()?;
                d.var_uint()?;
            }
        }
        Ok(())
    }

    /// Reads item content of type `content`; returns its length and, for Any, where its values
    /// start.
    fn content(
        &mut self,
        d: &mut Decoder<'_>,
        content: u8,
    ) -> Result<(u64, Option<usize>), DecodeError> {
        Ok(match content {
            1 => (d.var_uint()?, None), // Deleted
            2 => {
                // JSON: len strings
                let n = d.var_uint()?;
                for _ in 0..n {
                    d.var_bytes()?;
                }
                (n, None)
            }
            3 => {
                d.var_bytes()?; // Binary
                (1, None)
            }
            4 => (utf16_len(d.var_bytes()?), None), // String: length in UTF-16 units
            5 => {
                d.var_bytes()?; // Embed (JSON)
                (1, None)
            }
            6 => {
                d.var_bytes()?; // Format: key, JSON value
                d.var_bytes()?;
                (1, None)
            }
            7 => {
                // Type: XmlElement (3) and XmlHook (5) carry a name
                let type_ref = d.var_uint()?;
                if type_ref == 3 || type_ref == 5 {
                    d.var_bytes()?;
                }
                (1, None)
            }
            8 => {
                let n = d.var_uint()?;
                let start = self.values.len();
                for _ in 0..n {
                    let v = d.any_number()?;
                    self.values.push(v);
                }
                (n, Some(start))
            }
            9 => {
                d.var_bytes()?; // Doc: guid, options
                d.any_number()?;
                (1, None)
            }
            other => return Err(DecodeError::UnknownType(other)),
        })
    }
}

/// Length of a UTF-8 string in UTF-16 code units (JS `string.length`).
fn utf16_len(b: &[u8]) -> u64 {
    if b.is_ascii() {
        return b.len() as u64;
    }
    String::from_utf8_lossy(b).encode_utf16().count() as u64
}

/// One message of a y-websocket frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// Sync message `sub` (SyncStep1, SyncStep2, Update, ...) with its payload.
    Sync(u64, &'a [u8]),
    /// Awareness update (skipped).
    Awareness,
}

/// Iterates the messages of one frame; stops at the first message type it does not know (what
/// `load.mjs` does: Hocuspocus/y-sweet extras end the frame).
pub struct Messages<'a> {
    d: Decoder<'a>,
    done: bool,
}

impl<'a> Messages<'a> {
    /// The messages of `frame`.
    pub fn new(frame: &'a [u8]) -> Self {
        Self {
            d: Decoder::new(frame),
            done: false,
        }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || !self.d.has_content() {
            return None;
        }
        let r = (|| {
            Ok(match self.d.var_uint()? {
                MSG_SYNC => {
                    let sub = self.d.var_uint()?;
                    Some(Message::Sync(sub, self.d.var_bytes()?))
                }
                MSG_AWARENESS => {
                    self.d.var_bytes()?;
                    Some(Message::Awareness)
                }
                _ => None,
            })
        })();
        match r {
            Ok(Some(m)) => Some(Ok(m)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// What `Y.Doc` (yjs 13.6.33) emits for `arr.push([v])` by client 3000000001 at clocks
    /// 0, 1, 2, ..., printed with node.
    const YJS_PUSHES: &[(u64, &str)] = &[
        (0, "010181bcc1960b0008010161017d0000"),
        (1, "010181bcc1960b018881bcc1960b00017d0100"),
        (63, "010181bcc1960b028881bcc1960b01017d3f00"),
        (64, "010181bcc1960b038881bcc1960b02017d800100"),
        (127, "010181bcc1960b048881bcc1960b03017dbf0100"),
        (128, "010181bcc1960b058881bcc1960b04017d800200"),
        (8191, "010181bcc1960b068881bcc1960b05017dbf7f00"),
        (8192, "010181bcc1960b078881bcc1960b06017d80800100"),
        (65535, "010181bcc1960b088881bcc1960b07017dbfff0700"),
        (2147483647, "010181bcc1960b098881bcc1960b08017dbfffffff0f00"),
        (2147483648, "010181bcc1960b0a8881bcc1960b09017c4f00000000"),
        (
            2147483649,
            "010181bcc1960b0b8881bcc1960b0a017b41e000000020000000",
        ),
        (123456789, "010181bcc1960b0c8881bcc1960b0b017d95b4de7500"),
    ];

    #[test]
    fn push_update_matches_yjs_bytes() {
        for (clock, (v, want)) in YJS_PUSHES.iter().enumerate() {
            let mut out = Vec::new();
            encode_push_update(&mut out, 3_000_000_001, clock as u64, *v);
            assert_eq!(hex(&out), *want, "value {v}");
        }
    }

    #[test]
    fn push_update_round_trips() {
        let mut recs = Records::default();
        for (clock, t) in [
            (0u64, 0u64),
            (1, 1),
            (7, 1_234_567),
            (300, 2_147_483_647),
            (301, 2_147_483_648),
            (302, 5_000_000_001),
        ] {
            let mut u = Vec::new();
            encode_push_update(&mut u, 987_654_321, clock, t);
            recs.decode(&u).unwrap();
            assert_eq!(
                recs.recs,
                vec![Record {
                    client: 987_654_321,
                    clock,
                    len: 1,
                    values: Some(0)
                }]
            );
            assert_eq!(recs.value(&recs.recs[0], 0), Some(t as f64), "time {t}");
        }
    }

    #[test]
    fn decodes_merged_update_with_other_content() {
        // Y.mergeUpdates of client 9 pushing 1000, 1001, 'x' to 'a' and inserting "héllo😀"
        // into text 't' (yjs 13.6.33).
        let u = unhex(
            "0104090008010161017da80f880900017da90f88090101770178040101740a68c3a96c6c6ff09f988000",
        );
        let mut recs = Records::default();
        recs.decode(&u).unwrap();
        let got: Vec<(u64, u64, u64)> = recs
            .recs
            .iter()
            .map(|r| (r.client, r.clock, r.len))
            .collect();
        assert_eq!(got, vec![(9, 0, 1), (9, 1, 1), (9, 2, 1), (9, 3, 7)]);
        assert_eq!(recs.value(&recs.recs[0], 0), Some(1000.0));
        assert_eq!(recs.value(&recs.recs[1], 0), Some(1001.0));
        assert_eq!(recs.value(&recs.recs[2], 0), None); // a string
        assert_eq!(recs.value(&recs.recs[3], 0), None); // text
        // truncated: an error and no records
        assert!(recs.decode(&u[..u.len() - 3]).is_err());
        assert!(recs.recs.is_empty());
    }

    #[test]
    fn state_vector_and_diff() {
        assert_eq!(state_vector(7, 0), vec![0]);
        assert_eq!(state_vector(7, 5), vec![1, 7, 5]);
        // Y.encodeStateAsUpdate of a doc of client 7 with 5 pushes of 0, against these vectors
        assert_eq!(
            hex(&diff_since(7, 5, &[1, 7, 2]).unwrap()),
            "01010702880701037d007d007d0000"
        );
        assert_eq!(
            hex(&diff_since(7, 5, &[0]).unwrap()),
            "0101070008010161057d007d007d007d007d0000"
        );
        assert_eq!(diff_since(7, 5, &[1, 7, 5]).unwrap(), EMPTY_UPDATE);
        assert_eq!(diff_since(7, 0, &[0]).unwrap(), EMPTY_UPDATE);
        assert!(diff_since(7, 5, &[2, 7]).is_err());
    }

    #[test]
    fn parses_sync_messages() {
        // SyncStep1 (empty state vector) + SyncStep2 (empty update) + awareness, then an unknown
        // type that ends the frame
        let mut f = Vec::new();
        write_sync_message(&mut f, SYNC_STEP1, &[0]);
        write_sync_message(&mut f, SYNC_STEP2, &EMPTY_UPDATE);
        f.extend_from_slice(&[1, 3, 1, 2, 3]);
        let mut u = Vec::new();
        encode_push_update(&mut u, 5, 0, 42);
        write_sync_message(&mut f, SYNC_UPDATE, &u);
        f.extend_from_slice(&[3, 0, 0]);
        let msgs: Vec<_> = Messages::new(&f).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            msgs,
            vec![
                Message::Sync(SYNC_STEP1, &[0][..]),
                Message::Sync(SYNC_STEP2, &EMPTY_UPDATE[..]),
                Message::Awareness,
                Message::Sync(SYNC_UPDATE, &u[..]),
            ]
        );
        // a truncated message is an error
        let mut it = Messages::new(&[0, 2, 5, 1]);
        assert!(matches!(it.next(), Some(Err(DecodeError::Eof))));
        assert!(it.next().is_none());
    }

    #[test]
    fn var_int_matches_lib0() {
        for v in [0u64, 1, 63, 64, 8191, 8192, BITS31] {
            let mut out = Vec::new();
            write_var_int(&mut out, v);
            assert_eq!(Decoder::new(&out).var_int().unwrap(), v as f64);
        }
        assert_eq!(Decoder::new(&[0x41]).var_int().unwrap(), -1.0);
    }

    #[test]
    fn push_updates_apply_to_a_yrs_doc() {
        use yrs::updates::decoder::Decode;
        use yrs::{Array, Doc, ReadTxn, Transact, Update};
        let doc = Doc::new();
        let arr = doc.get_or_insert_array("a");
        let times = [5u64, 64, 2_147_483_647, 2_147_483_648, 3_000_000_001];
        for (clock, t) in times.iter().enumerate() {
            let mut u = Vec::new();
            encode_push_update(&mut u, 42, clock as u64, *t);
            let update = Update::decode_v1(&u).expect("valid v1 update");
            doc.transact_mut().apply_update(update).expect("applies");
        }
        let txn = doc.transact();
        let got: Vec<f64> = arr
            .iter(&txn)
            .map(|v| match v {
                yrs::Out::Any(yrs::Any::Number(yrs::Number::Int(n))) => n as f64,
                yrs::Out::Any(yrs::Any::Number(yrs::Number::Float(n))) => n,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(got, times.iter().map(|t| *t as f64).collect::<Vec<_>>());
        assert_eq!(
            txn.state_vector().get(&yrs::ClientID::new(42)),
            times.len() as u32
        );
    }
}
