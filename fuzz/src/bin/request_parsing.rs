//! One frame body, parsed as a request of whatever API and version it names: refused or
//! decoded, within memory, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runnel_protocol::{parse_request, ClaimedSizeAllocator};

#[global_allocator]
static ALLOCATOR: ClaimedSizeAllocator = ClaimedSizeAllocator;

fuzz_target!(|data: &[u8]| {
    let _ = parse_request(bytes::Bytes::copy_from_slice(data));
});
