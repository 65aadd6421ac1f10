//! Length-prefixed frames: a big-endian i32 size, then that many bytes.
//!
//! The size is checked against the limit before a single byte of the body is buffered, so a
//! client cannot make the broker allocate what it merely claims.

use bytes::{Buf, Bytes, BytesMut};

const SIZE_PREFIX_LEN: usize = 4;

/// Why a connection's byte stream cannot be framed. The connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame size {size} exceeds the limit of {limit} bytes (socket.request.max.bytes)")]
    TooLarge { size: usize, limit: usize },
    #[error("frame size {0} is negative")]
    NegativeSize(i32),
}

/// Splits an input buffer into whole frames.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    frame_max_bytes: usize,
}

impl FrameDecoder {
    pub fn new(frame_max_bytes: usize) -> Self {
        FrameDecoder { frame_max_bytes }
    }

    /// The body size the frame at the front of `input` claims, checked against the limit,
    /// once its 4-byte prefix has arrived. Nothing is reserved for it: the caller's buffer grows
    /// as bytes arrive, never to what a client merely claims.
    pub fn next_frame_size(&self, input: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = input.get(..SIZE_PREFIX_LEN) else {
            return Ok(None);
        };
        let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        let size = usize::try_from(size).map_err(|_| FrameError::NegativeSize(size))?;
        if size > self.frame_max_bytes {
            return Err(FrameError::TooLarge {
                size,
                limit: self.frame_max_bytes,
            });
        }
        Ok(Some(size))
    }

    /// How many bytes the frame at the front of `input` still lacks, once its size prefix has
    /// arrived (and passed the limit).
    pub fn missing_bytes(&self, input: &[u8]) -> Result<Option<usize>, FrameError> {
        Ok(self
            .next_frame_size(input)?
            .map(|size| (SIZE_PREFIX_LEN + size).saturating_sub(input.len())))
    }

    /// Takes the next whole frame's body off the front of `input`, if it has all arrived.
    pub fn decode(&self, input: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(size) = self.next_frame_size(input)? else {
            return Ok(None);
        };
        if input.len() < SIZE_PREFIX_LEN + size {
            return Ok(None);
        }
        input.advance(SIZE_PREFIX_LEN);
        Ok(Some(input.split_to(size).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn oversized_frame_is_refused_before_buffering() {
        let decoder = FrameDecoder::new(100);
        let mut input = BytesMut::from(&0x7fff_ffffi32.to_be_bytes()[..]);
        assert_eq!(
            decoder.decode(&mut input),
            Err(FrameError::TooLarge {
                size: 0x7fff_ffff,
                limit: 100
            })
        );
        assert!(input.capacity() < 1000);
    }

    #[test]
    fn a_claimed_size_reserves_nothing() {
        let decoder = FrameDecoder::new(100 << 20);
        let mut input = BytesMut::from(&(100i32 << 20).to_be_bytes()[..]);
        input.extend_from_slice(b"abc");
        assert_eq!(decoder.next_frame_size(&input), Ok(Some(100 << 20)));
        assert_eq!(decoder.missing_bytes(&input), Ok(Some((100 << 20) - 3)));
        assert_eq!(decoder.missing_bytes(&input[..3]), Ok(None));
        assert_eq!(decoder.decode(&mut input), Ok(None));
        assert!(input.capacity() < 1000, "capacity {}", input.capacity());
    }

    #[test]
    fn negative_size_is_refused() {
        let decoder = FrameDecoder::new(100);
        let mut input = BytesMut::from(&(-5i32).to_be_bytes()[..]);
        assert_eq!(
            decoder.decode(&mut input),
            Err(FrameError::NegativeSize(-5))
        );
    }

    proptest! {
        #[test]
        fn frames_survive_any_split(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 1..10), split in 1usize..40) {
            let mut wire = Vec::new();
            for body in &bodies {
                wire.extend_from_slice(&(body.len() as i32).to_be_bytes());
                wire.extend_from_slice(body);
            }
            let decoder = FrameDecoder::new(1000);
            let mut input = BytesMut::new();
            let mut frames = Vec::new();
            for chunk in wire.chunks(split) {
                input.extend_from_slice(chunk);
                while let Some(frame) = decoder.decode(&mut input).unwrap() {
                    frames.push(frame.to_vec());
                }
            }
            prop_assert_eq!(frames, bodies);
        }
    }
}
