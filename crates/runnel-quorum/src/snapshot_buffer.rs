//! [`SnapshotBuffer`]: a snapshot in memory, as openraft reads it to send and writes it as
//! chunks arrive. Receiving, openraft seeks to the offset each chunk names: a peer naming an
//! offset past what has arrived, or a snapshot past [`SNAPSHOT_BYTES_MAX`], is refused here,
//! before a byte of it is allocated, instead of making the buffer zero-fill up to it.

use std::io::{self, Cursor, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// Far above the image of any cluster we hold in memory anyway.
pub(crate) const SNAPSHOT_BYTES_MAX: u64 = 1 << 30;

#[derive(Debug, Default)]
pub struct SnapshotBuffer {
    inner: Cursor<Vec<u8>>,
}

impl SnapshotBuffer {
    pub(crate) fn new(bytes: Vec<u8>) -> SnapshotBuffer {
        SnapshotBuffer {
            inner: Cursor::new(bytes),
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.inner.get_ref()
    }

    fn refuse(what: String) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, what)
    }
}

impl AsyncRead for SnapshotBuffer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotBuffer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let end = self.inner.position().saturating_add(buf.len() as u64);
        if end > SNAPSHOT_BYTES_MAX {
            return Poll::Ready(Err(Self::refuse(format!(
                "a snapshot of more than {SNAPSHOT_BYTES_MAX} bytes"
            ))));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotBuffer {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let len = self.inner.get_ref().len() as u64;
        let target = match position {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::End(delta) => len.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.inner.position().checked_add_signed(delta),
        };
        match target {
            Some(target) if target <= len => {
                Pin::new(&mut self.inner).start_seek(SeekFrom::Start(target))
            }
            _ => Err(Self::refuse(format!(
                "a snapshot chunk at {position:?}, past the {len} bytes received"
            ))),
        }
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.inner).poll_complete(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncSeekExt, AsyncWriteExt};

    #[tokio::test]
    async fn chunks_arrive_in_order_and_a_leap_ahead_is_refused() -> io::Result<()> {
        let mut buffer = SnapshotBuffer::default();
        buffer.seek(SeekFrom::Start(0)).await?;
        buffer.write_all(b"abc").await?;
        buffer.seek(SeekFrom::Start(3)).await?;
        buffer.write_all(b"def").await?;
        // A chunk sent again is fine; one past what arrived is not.
        buffer.seek(SeekFrom::Start(3)).await?;
        assert!(buffer.seek(SeekFrom::Start(1 << 40)).await.is_err());
        assert_eq!(buffer.bytes(), b"abcdef");
        Ok(())
    }
}
