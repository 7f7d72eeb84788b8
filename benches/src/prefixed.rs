//! A reader that first yields bytes read ahead during the HTTP upgrade, then the stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// `inner` preceded by a private copy of the bytes that arrived with the upgrade.
///
/// The copy matters: hyper's leftover `Bytes` share its whole read buffer, and
/// keeping them alive costs kilobytes per connection.
pub struct Prefixed<R> {
    prefix: Option<(Box<[u8]>, usize)>,
    inner: R,
}

impl<R> Prefixed<R> {
    /// Wraps `inner`, copying `prefix` (which may be empty) out of its buffer.
    pub fn new(prefix: &[u8], inner: R) -> Self {
        let prefix = (!prefix.is_empty()).then(|| (Box::<[u8]>::from(prefix), 0));
        Self { prefix, inner }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Prefixed<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some((bytes, pos)) = &mut this.prefix {
            let n = (bytes.len() - *pos).min(buf.remaining());
            buf.put_slice(&bytes[*pos..*pos + n]);
            *pos += n;
            if *pos == bytes.len() {
                this.prefix = None;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}
