//! Requests whose array counts claim far more elements than their bytes can hold must fail to
//! parse, not abort the process.

use bytes::Bytes;
use runnel_protocol::{parse_request, ClaimedSizeAllocator, RequestError};

#[global_allocator]
static ALLOCATOR: ClaimedSizeAllocator = ClaimedSizeAllocator;

fn request(api_key: i16, version: i16, body: &[u8]) -> Bytes {
    let mut raw = Vec::new();
    raw.extend_from_slice(&api_key.to_be_bytes());
    raw.extend_from_slice(&version.to_be_bytes());
    raw.extend_from_slice(&1i32.to_be_bytes());
    raw.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    raw.extend_from_slice(body);
    Bytes::from(raw)
}

#[test]
fn metadata_claiming_two_billion_topics_is_malformed() {
    let parsed = parse_request(request(3, 1, &0x7fff_fff0i32.to_be_bytes()));
    assert!(matches!(parsed, Err(RequestError::Malformed { .. })));
}

#[test]
fn flexible_produce_claiming_four_billion_topics_is_malformed() {
    // Produce v9: header v2 adds a tagged-field count; body: transactional id (compact, null),
    // acks, timeout, then the compact topic array length as an unsigned varint near u32::MAX.
    let mut body = vec![0u8]; // tagged fields of the header
    body.push(0); // null transactional id
    body.extend_from_slice(&(-1i16).to_be_bytes());
    body.extend_from_slice(&1000i32.to_be_bytes());
    body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    let parsed = parse_request(request(0, 9, &body));
    assert!(matches!(parsed, Err(RequestError::Malformed { .. })));
}
