//! Encoding responses: size prefix, the response header the API and version call for, body.
//! A Fetch response's large record sets stay in the buffers they were read into (see
//! [`ResponseFrame`]): the only copy of fetched bytes is the one from the page cache.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::buf::ByteBufMut;

use crate::frame_buf::FrameBuf;
use kafka_protocol::protocol::Encodable;

use crate::versions::supported_versions;

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// Encodes a whole response frame. Fails only on a bug: a field set that `version` cannot carry.
///
/// The record sets of a Fetch response of at least [`BY_REFERENCE_MIN_BYTES`] are not copied
/// into the frame: the frame refers to the buffers the broker read them into, and the network
/// layer hands all the pieces to one vectored write.
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> Result<ResponseFrame, EncodeError> {
    let mut out = FrameBuf::new(records_by_reference(body));
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut out, api_key.response_header_version(version))
        .map_err(|error| EncodeError(error.to_string()))?;
    match body {
        ResponseKind::Fetch(fetch) => fetch.encode(&mut out, version),
        // Nothing by reference: the whole body goes to the owned tail.
        other => other.encode(out.tail_mut(), version),
    }
    .map_err(|error| EncodeError(format!("{api_key:?} v{version}: {error}")))?;
    // The handlers bound what they put in a response (fetch.max.bytes); a size that does
    // not fit the prefix is refused rather than sent wrapped.
    let size = i32::try_from(out.offset()).map_err(|_| {
        EncodeError(format!(
            "{api_key:?} v{version} response of {} bytes exceeds the 2 GiB a frame can carry",
            out.offset()
        ))
    })?;
    Ok(out.finish(size))
}

/// Record sets at least this large go into a response frame by reference; smaller ones are
/// cheaper to copy than to give the kernel one more piece.
pub const BY_REFERENCE_MIN_BYTES: usize = 4096;

/// The record sets of a Fetch response worth sending by reference, in encoding order.
fn records_by_reference(body: &ResponseKind) -> VecDeque<Bytes> {
    let ResponseKind::Fetch(fetch) = body else {
        return VecDeque::new();
    };
    fetch
        .responses
        .iter()
        .flat_map(|topic| &topic.partitions)
        .filter_map(|partition| partition.records.as_ref())
        .filter(|records| records.len() >= BY_REFERENCE_MIN_BYTES)
        .cloned()
        .collect()
}

/// A response ready to write: its bytes, in order, as pieces that share memory with the
/// buffers they came from.
#[derive(Debug, Clone)]
pub struct ResponseFrame {
    pub(crate) chunks: Vec<Bytes>,
}

impl ResponseFrame {
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// Bytes on the wire, size prefix included.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.iter().all(Bytes::is_empty)
    }

    /// The frame as one buffer (a copy, unless it is one piece already).
    pub fn to_bytes(&self) -> Bytes {
        match self.chunks.as_slice() {
            [one] => one.clone(),
            chunks => chunks.concat().into(),
        }
    }
}

impl From<Bytes> for ResponseFrame {
    fn from(frame: Bytes) -> Self {
        ResponseFrame {
            chunks: vec![frame],
        }
    }
}

/// A response that its version cannot carry: always a bug in the handler that built it.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode response: {0}")]
pub struct EncodeError(String);

/// Encodes an already-encoded body (Produce v0-2) with a v0 header.
pub fn encode_raw_response(correlation_id: i32, body: &[u8]) -> Bytes {
    let mut out = start_frame();
    out.put_i32(correlation_id);
    out.put_slice(body);
    finish_frame(out)
}

/// The answer to an ApiVersions request of a version we do not know: a v0 response carrying
/// UNSUPPORTED_VERSION and our ranges, so the client can retry with one we serve.
pub fn encode_api_versions_fallback(correlation_id: i32) -> Bytes {
    let response = ApiVersionsResponse::default()
        .with_error_code(UNSUPPORTED_VERSION)
        .with_api_keys(
            supported_versions()
                .map(|(key, range)| {
                    ApiVersion::default()
                        .with_api_key(key as i16)
                        .with_min_version(range.min)
                        .with_max_version(range.max)
                })
                .collect(),
        );
    let mut out = start_frame();
    out.put_i32(correlation_id);
    // v0 carries only fields every version has; encoding cannot fail.
    let _ = response.encode(&mut out, 0);
    finish_frame(out)
}

fn start_frame() -> BytesMut {
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    out
}

/// Writes the size prefix. Responses are small or checked by the caller against i32.
fn finish_frame(mut out: BytesMut) -> Bytes {
    let size = i32::try_from(out.len() - 4).unwrap_or(i32::MAX);
    out[..4].copy_from_slice(&size.to_be_bytes());
    out.freeze()
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::messages::{FetchResponse, ProducerId, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;

    use super::*;
    use crate::versions::supported_range;

    /// What the frame must hold: everything encoded into one plain buffer.
    fn reference_encoding(correlation_id: i32, version: i16, body: &ResponseKind) -> Vec<u8> {
        let mut out = start_frame();
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut out, ApiKey::Fetch.response_header_version(version))
            .unwrap();
        body.encode(&mut out, version).unwrap();
        finish_frame(out).to_vec()
    }

    fn fetch_response(partitions: &[(Option<usize>, i16)]) -> FetchResponse {
        let partitions = partitions
            .iter()
            .enumerate()
            .map(|(index, &(records, error_code))| {
                PartitionData::default()
                    .with_partition_index(index as i32)
                    .with_error_code(error_code)
                    .with_high_watermark(index as i64 * 7)
                    .with_aborted_transactions(Some(vec![
                        AbortedTransaction::default().with_producer_id(ProducerId(index as i64))
                    ]))
                    .with_records(records.map(|len| {
                        Bytes::from((0..len).map(|byte| (byte % 251) as u8).collect::<Vec<_>>())
                    }))
            })
            .collect();
        FetchResponse::default()
            .with_throttle_time_ms(3)
            .with_responses(vec![FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("topic")))
                .with_partitions(partitions)])
    }

    proptest! {
        /// Whatever goes by reference, the pieces put together are byte for byte what one
        /// buffer would hold, at every Fetch version served; and large record sets are the
        /// very buffers the broker read, not copies.
        #[test]
        fn fetch_frames_by_reference_equal_the_plain_encoding(
            partitions in prop::collection::vec(
                (prop::option::of(prop_oneof![0usize..100, 4000usize..20_000]), 0i16..3),
                0..12,
            ),
            correlation_id in any::<i32>(),
        ) {
            let range = supported_range(ApiKey::Fetch).unwrap();
            for version in range.min..=range.max {
                let body = ResponseKind::Fetch(fetch_response(&partitions));
                let frame = encode_response(correlation_id, ApiKey::Fetch, version, &body).unwrap();
                prop_assert_eq!(
                    frame.to_bytes().to_vec(),
                    reference_encoding(correlation_id, version, &body)
                );
                let ResponseKind::Fetch(fetch) = &body else { unreachable!() };
                for records in fetch.responses[0].partitions.iter().filter_map(|p| p.records.as_ref()) {
                    let shared = frame.chunks().iter().any(|chunk| chunk.as_ptr() == records.as_ptr());
                    prop_assert_eq!(shared, records.len() >= BY_REFERENCE_MIN_BYTES);
                }
            }
        }
    }

    #[test]
    fn other_responses_are_one_piece_after_the_size_prefix() {
        let body = ResponseKind::ApiVersions(ApiVersionsResponse::default());
        let frame = encode_response(9, ApiKey::ApiVersions, 3, &body).unwrap();
        assert_eq!(frame.chunks().len(), 2, "size prefix and body");
        assert_eq!(
            frame.len(),
            4 + i32::from_be_bytes(frame.to_bytes()[..4].try_into().unwrap()) as usize
        );
    }
}
