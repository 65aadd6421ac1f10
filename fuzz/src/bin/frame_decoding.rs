//! A byte stream, split into reads of a size the first byte picks, through the frame decoder
//! and the request parser: every frame is refused or whole, never larger than the limit, and
//! nothing panics.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use runnel_protocol::{parse_request, ClaimedSizeAllocator, FrameDecoder};

#[global_allocator]
static ALLOCATOR: ClaimedSizeAllocator = ClaimedSizeAllocator;

const FRAME_MAX_BYTES: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&read_size, stream)) = data.split_first() else {
        return;
    };
    let decoder = FrameDecoder::new(FRAME_MAX_BYTES);
    let mut input = BytesMut::new();
    for read in stream.chunks(usize::from(read_size).max(1)) {
        input.extend_from_slice(read);
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= FRAME_MAX_BYTES);
                    let _ = parse_request(frame);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
