//! The buffer a response frame is encoded into, keeping large record sets by reference.
//!
//! kafka-protocol encodes into any `ByteBufMut`, a `bytes::BufMut`; implementing that trait
//! is `unsafe` by contract (it hands out uninitialised memory), so this module allows unsafe
//! code for a delegation to `BytesMut` and nothing else.

#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

use crate::response::ResponseFrame;

/// The buffer a response is encoded into: an owned tail that small fields are copied into,
/// and finished pieces before it. When the encoder puts a slice that is one of the record
/// sets expected by reference (same memory, same length), the piece is taken as it is.
pub(crate) struct FrameBuf {
    pieces: Vec<Bytes>,
    /// Bytes in `pieces` after the size prefix.
    pieces_len: usize,
    tail: BytesMut,
    by_reference: VecDeque<Bytes>,
}

impl FrameBuf {
    pub(crate) fn new(by_reference: VecDeque<Bytes>) -> Self {
        FrameBuf {
            // The first piece is the size prefix, filled in by `finish`.
            pieces: Vec::with_capacity(2 + 2 * by_reference.len()),
            pieces_len: 0,
            tail: BytesMut::with_capacity(256),
            by_reference,
        }
    }

    pub(crate) fn finish(mut self, size: i32) -> ResponseFrame {
        if !self.tail.is_empty() {
            self.pieces.push(self.tail.freeze());
        }
        let mut chunks = Vec::with_capacity(self.pieces.len() + 1);
        chunks.push(Bytes::copy_from_slice(&size.to_be_bytes()));
        chunks.append(&mut self.pieces);
        ResponseFrame { chunks }
    }

    /// The owned tail, for encoders that take only a `BytesMut`.
    pub(crate) fn tail_mut(&mut self) -> &mut BytesMut {
        &mut self.tail
    }

    /// `offset` (from the start of the body) within the tail. The encoders seek only within
    /// what they are writing now, never back into a record set already taken by reference.
    fn tail_offset(&self, offset: usize) -> usize {
        assert!(
            offset >= self.pieces_len,
            "response encoding seeks behind a finished piece"
        );
        offset - self.pieces_len
    }
}

// SAFETY: every method delegates to the tail `BytesMut`, which upholds the contract.
unsafe impl BufMut for FrameBuf {
    fn remaining_mut(&self) -> usize {
        self.tail.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, count: usize) {
        // SAFETY: the caller initialised `count` bytes of the tail's chunk_mut.
        unsafe { self.tail.advance_mut(count) }
    }

    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        self.tail.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        let expected = self
            .by_reference
            .front()
            .is_some_and(|next| next.as_ptr() == src.as_ptr() && next.len() == src.len());
        if expected {
            if let Some(records) = self.by_reference.pop_front() {
                if !self.tail.is_empty() {
                    let tail = self.tail.split().freeze();
                    self.pieces_len += tail.len();
                    self.pieces.push(tail);
                }
                self.pieces_len += records.len();
                self.pieces.push(records);
                return;
            }
        }
        self.tail.put_slice(src);
    }
}

impl ByteBufMut for FrameBuf {
    fn offset(&self) -> usize {
        self.pieces_len + self.tail.len()
    }

    fn seek(&mut self, offset: usize) {
        let offset = self.tail_offset(offset);
        self.tail.resize(offset, 0);
    }

    fn range(&mut self, range: Range<usize>) -> &mut [u8] {
        let start = self.tail_offset(range.start);
        let end = self.tail_offset(range.end);
        &mut self.tail[start..end]
    }
}
