//! Encoding responses: size prefix, the response header the API and version call for, body.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

use crate::versions::supported_versions;

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// Encodes a whole response frame. Fails only on a bug: a field set that `version` cannot carry.
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> Result<Bytes, EncodeError> {
    let mut out = start_frame();
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut out, api_key.response_header_version(version))
        .map_err(|error| EncodeError(error.to_string()))?;
    body.encode(&mut out, version)
        .map_err(|error| EncodeError(format!("{api_key:?} v{version}: {error}")))?;
    // The handlers bound what they put in a response (fetch.max.bytes); a size that does
    // not fit the prefix is refused rather than sent wrapped.
    if i32::try_from(out.len() - 4).is_err() {
        return Err(EncodeError(format!(
            "{api_key:?} v{version} response of {} bytes exceeds the 2 GiB a frame can carry",
            out.len() - 4
        )));
    }
    Ok(finish_frame(out))
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
