//! The Kafka wire protocol as Runnel speaks it: frames, request headers, which API versions we
//! serve, and response encoding. The message codecs themselves come from the `kafka-protocol`
//! crate, generated from Kafka's JSON schemas.
//!
//! Sans-IO: bytes in, values out, values in, bytes out. No sockets, no tokio, no clock. The
//! broker owns the connection loop and feeds it through [`FrameDecoder`] and [`parse_request`].
//!
//! ```
//! use bytes::BytesMut;
//! use runnel_protocol::FrameDecoder;
//!
//! let decoder = FrameDecoder::new(1024);
//! let mut input = BytesMut::from(&[0, 0, 0, 2, 0xab][..]);
//! assert_eq!(decoder.decode(&mut input).unwrap(), None); // one byte of two so far
//! input.extend_from_slice(&[0xcd]);
//! assert_eq!(&decoder.decode(&mut input).unwrap().unwrap()[..], &[0xab, 0xcd]);
//! ```

mod claimed_size_allocator;
mod frame;
mod frame_buf;
mod legacy_produce;
mod request;
mod response;
mod versions;

pub use claimed_size_allocator::{ClaimedSizeAllocator, LAZY_ALLOCATION_MIN_BYTES};
pub use frame::{FrameDecoder, FrameError};
pub use legacy_produce::LegacyProduceRequest;
pub use request::{parse_request, Request, RequestBody, RequestError};
pub use response::{
    encode_api_versions_fallback, encode_raw_response, encode_response, EncodeError, ResponseFrame,
    BY_REFERENCE_MIN_BYTES,
};
pub use versions::{supported_versions, PRODUCE_MIN_DECODABLE_VERSION};

pub use kafka_protocol;
