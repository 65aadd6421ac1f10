//! Turning one frame into a typed request, or into the reason it cannot be served.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::legacy_produce::LegacyProduceRequest;
use crate::versions::{supported_range, PRODUCE_MIN_DECODABLE_VERSION};

/// api_key i16, api_version i16, correlation_id i32: the part of every request header version.
const FIXED_HEADER_LEN: usize = 8;

/// A parsed request.
#[derive(Debug)]
pub struct Request {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub body: RequestBody,
}

impl Request {
    pub fn api_version(&self) -> i16 {
        self.header.request_api_version
    }

    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }
}

/// A request body: one of the generated messages, or a Produce below the decodable floor that
/// is parsed only far enough to be refused partition by partition.
#[derive(Debug)]
pub enum RequestBody {
    Kafka(Box<RequestKind>),
    LegacyProduce(LegacyProduceRequest),
}

/// Why a frame is not a request this broker serves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request of {0} bytes is shorter than a request header")]
    Truncated(usize),
    #[error("unknown API key {api_key}")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    #[error("{api_key:?} version {version} is not supported")]
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        reason: String,
    },
}

/// Parses a frame body (without its size prefix) into a request.
pub fn parse_request(frame: Bytes) -> Result<Request, RequestError> {
    if frame.len() < FIXED_HEADER_LEN {
        return Err(RequestError::Truncated(frame.len()));
    }
    let mut fixed = &frame[..FIXED_HEADER_LEN];
    let raw_key = fixed.get_i16();
    let version = fixed.get_i16();
    let correlation_id = fixed.get_i32();
    let api_key = ApiKey::try_from(raw_key).map_err(|()| RequestError::UnknownApiKey {
        api_key: raw_key,
        correlation_id,
    })?;
    let served = supported_range(api_key).ok_or(RequestError::UnknownApiKey {
        api_key: raw_key,
        correlation_id,
    })?;
    if version < served.min || version > served.max {
        return Err(RequestError::UnsupportedVersion {
            api_key,
            version,
            correlation_id,
        });
    }
    let malformed = |reason: String| RequestError::Malformed {
        api_key,
        version,
        correlation_id,
        reason,
    };
    let mut buf = frame;
    let header = RequestHeader::decode(&mut buf, api_key.request_header_version(version))
        .map_err(|error| malformed(format!("header: {error}")))?;
    let body = if api_key == ApiKey::Produce && version < PRODUCE_MIN_DECODABLE_VERSION {
        RequestBody::LegacyProduce(
            LegacyProduceRequest::decode(&mut buf).map_err(|error| malformed(error.to_string()))?,
        )
    } else {
        RequestBody::Kafka(
            RequestKind::decode(api_key, &mut buf, version)
                .map(Box::new)
                .map_err(|error| malformed(error.to_string()))?,
        )
    };
    Ok(Request {
        header,
        api_key,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::MetadataRequest;
    use kafka_protocol::protocol::{encode_request_header_into_buffer, Encodable, StrBytes};
    use proptest::prelude::*;

    fn frame(api_key: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        encode_request_header_into_buffer(&mut buf, &header).unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn parses_every_metadata_version() {
        for version in 0..=12 {
            let request = parse_request(frame(
                ApiKey::Metadata,
                version,
                &MetadataRequest::default(),
            ))
            .unwrap();
            assert_eq!(request.correlation_id(), 7);
            assert_eq!(request.api_version(), version);
            assert!(matches!(
                request.body,
                RequestBody::Kafka(ref body) if matches!(**body, RequestKind::Metadata(_))
            ));
        }
    }

    #[test]
    fn unknown_key_and_version_are_told_apart() {
        let mut raw = vec![0x7f, 0x00, 0, 0, 0, 0, 0, 9];
        assert_eq!(
            parse_request(Bytes::from(raw.clone())).unwrap_err(),
            RequestError::UnknownApiKey {
                api_key: 0x7f00,
                correlation_id: 9
            }
        );
        raw[0..4].copy_from_slice(&[0, 18, 0, 99]);
        assert!(matches!(
            parse_request(Bytes::from(raw)),
            Err(RequestError::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                version: 99,
                correlation_id: 9
            })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(api_key in 0i16..80, version in 0i16..20, body: Vec<u8>) {
            let mut raw = Vec::new();
            raw.extend_from_slice(&api_key.to_be_bytes());
            raw.extend_from_slice(&version.to_be_bytes());
            raw.extend_from_slice(&1i32.to_be_bytes());
            raw.extend_from_slice(&body);
            let _ = parse_request(Bytes::from(raw));
        }
    }
}
