//! The one error type of the protocol core. Nothing here panics on bad input.

use std::fmt;

/// Why a frame, update, key or stored document could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The input ended inside a value (truncated varuint, length past the end, ...).
    UnexpectedEnd,
    /// A varuint above 2^53 - 1, which lib0 (JavaScript numbers) cannot represent.
    IntegerOutOfRange,
    /// A varString that is not valid UTF-8 (lib0 decodes with a fatal TextDecoder).
    InvalidUtf8,
    /// A sync message (type 0) with a sub-type other than 0, 1 or 2.
    UnknownSyncType(u64),
    /// A stream entry that is neither a sync update nor an awareness frame.
    UnexpectedMessage(u64),
    /// A Yjs update that yrs could not decode or apply.
    BadUpdate(String),
    /// Stored document number `index` (Yjs update V2) is unreadable.
    BadStoredDoc {
        /// Position in the stored-updates slice.
        index: usize,
        /// What yrs reported.
        reason: String,
    },
    /// A malformed `%XX` escape or an escape that does not decode to UTF-8.
    MalformedEscape,
    /// A Redis key that does not match `^(.*):room:(.*):(.*)$` with the expected prefix.
    MalformedKey,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnexpectedEnd => f.write_str("unexpected end of input"),
            Error::IntegerOutOfRange => f.write_str("varuint out of range (> 2^53 - 1)"),
            Error::InvalidUtf8 => f.write_str("string is not valid UTF-8"),
            Error::UnknownSyncType(t) => write!(f, "unknown sync message type {t}"),
            Error::UnexpectedMessage(t) => write!(f, "unexpected message type {t}"),
            Error::BadUpdate(e) => write!(f, "bad Yjs update: {e}"),
            Error::BadStoredDoc { index, reason } => {
                write!(f, "stored document #{index} is unreadable: {reason}")
            }
            Error::MalformedEscape => f.write_str("malformed URI escape"),
            Error::MalformedKey => f.write_str("malformed room stream key"),
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;
