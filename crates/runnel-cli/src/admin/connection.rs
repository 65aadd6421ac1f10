//! One blocking connection to one broker: size-prefixed frames, correlation ids, and for each
//! API the highest version both sides speak, learnt from ApiVersions before anything else
//! (KIP-35). Requests go one at a time; nothing is pipelined.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Message, Request, StrBytes, VersionRange,
};

use super::AdminError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may wait for its answer (also sent as ListOffsets' `timeout_ms`).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A larger size prefix is a broken peer or not Kafka at all; nothing is allocated for it.
const RESPONSE_BYTES_MAX: usize = 100 * 1024 * 1024;
const CLIENT_ID: &str = "runnel-cli";

/// A connection whose API versions are known.
#[derive(Debug)]
pub(crate) struct BrokerConnection {
    address: String,
    stream: TcpStream,
    correlation_id: i32,
    /// The versions the broker advertised, by API key.
    broker_versions: HashMap<i16, VersionRange>,
}

impl BrokerConnection {
    /// Connects to `address` (`HOST:PORT`) and asks which API versions the broker serves.
    pub(crate) fn connect(address: &str) -> Result<Self, AdminError> {
        let connect_error = |source| AdminError::Connect {
            address: address.to_owned(),
            source,
        };
        let mut last_error = io::Error::new(
            io::ErrorKind::NotFound,
            "the host name resolves to no address",
        );
        let mut stream = None;
        for socket_address in address.to_socket_addrs().map_err(connect_error)? {
            match TcpStream::connect_timeout(&socket_address, CONNECT_TIMEOUT) {
                Ok(connected) => {
                    stream = Some(connected);
                    break;
                }
                Err(error) => last_error = error,
            }
        }
        let stream = stream.ok_or_else(|| connect_error(last_error))?;
        let configure = |stream: &TcpStream| {
            stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
            stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
            stream.set_nodelay(true)
        };
        configure(&stream).map_err(connect_error)?;
        let mut connection = BrokerConnection {
            address: address.to_owned(),
            stream,
            correlation_id: 0,
            broker_versions: HashMap::new(),
        };
        connection.negotiate_versions()?;
        Ok(connection)
    }

    /// The highest version of `Req` that the broker serves and the generated codecs can both
    /// encode and decode, no lower than `floor` (the oldest request shape the caller builds).
    pub(crate) fn version<Req: Request>(&self, floor: i16) -> Result<i16, AdminError> {
        let api = api_key(Req::KEY);
        let broker = self
            .broker_versions
            .get(&Req::KEY)
            .copied()
            .ok_or_else(|| AdminError::UnsupportedApi {
                address: self.address.clone(),
                api,
            })?;
        let client = client_versions::<Req>(floor);
        common_version(broker, client).ok_or_else(|| AdminError::NoCommonVersion {
            address: self.address.clone(),
            api,
            broker,
            client,
        })
    }

    /// Sends `request` at `version` (from [`Self::version`]) and decodes the answer.
    pub(crate) fn send<Req: Request>(
        &mut self,
        version: i16,
        request: &Req,
    ) -> Result<Req::Response, AdminError> {
        let mut body = self.round_trip(version, request)?;
        Req::Response::decode(&mut body, version)
            .map_err(|error| self.decode_error::<Req>(version, &error))
    }

    fn negotiate_versions(&mut self) -> Result<(), AdminError> {
        let client = client_versions::<ApiVersionsRequest>(0);
        let mut version = client.max;
        let response = loop {
            let request = if version >= 3 {
                ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
                    .with_client_software_version(StrBytes::from_static_str(env!(
                        "CARGO_PKG_VERSION"
                    )))
            } else {
                ApiVersionsRequest::default()
            };
            let body = self.round_trip(version, &request)?;
            let response = match ApiVersionsResponse::decode(&mut body.clone(), version) {
                Ok(response) if response.error_code == 0 => response,
                // A broker that does not know this version answers in v0 with the versions it
                // does know (KIP-511).
                _ => ApiVersionsResponse::decode(&mut body.clone(), 0)
                    .map_err(|error| self.decode_error::<ApiVersionsRequest>(0, &error))?,
            };
            let unsupported = ResponseError::UnsupportedVersion.code();
            let broker_max = response
                .api_keys
                .iter()
                .find(|key| key.api_key == ApiKey::ApiVersions as i16)
                .map(|key| key.max_version);
            match broker_max {
                Some(broker_max)
                    if response.error_code == unsupported
                        && broker_max < version
                        && broker_max >= client.min =>
                {
                    version = broker_max;
                }
                _ => break response,
            }
        };
        AdminError::check(
            ApiKey::ApiVersions,
            || self.address.clone(),
            response.error_code,
            None,
        )?;
        self.broker_versions = response
            .api_keys
            .iter()
            .map(|key| {
                let range = VersionRange {
                    min: key.min_version,
                    max: key.max_version,
                };
                (key.api_key, range)
            })
            .collect();
        Ok(())
    }

    /// Writes one request frame and returns the body of its response, header removed.
    fn round_trip<Req: Request>(
        &mut self,
        version: i16,
        request: &Req,
    ) -> Result<Bytes, AdminError> {
        let frame = self.encode(version, request)?;
        let io_error = |source| AdminError::Io {
            address: self.address.clone(),
            source,
        };
        self.stream.write_all(&frame).map_err(io_error)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).map_err(io_error)?;
        let size = i32::from_be_bytes(size);
        let size_bytes = usize::try_from(size)
            .ok()
            .filter(|&size| size <= RESPONSE_BYTES_MAX)
            .ok_or_else(|| AdminError::ResponseTooLarge {
                address: self.address.clone(),
                size_bytes: i64::from(size),
                limit_bytes: RESPONSE_BYTES_MAX,
            })?;
        let mut body = vec![0u8; size_bytes];
        self.stream.read_exact(&mut body).map_err(io_error)?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, Req::Response::header_version(version))
            .map_err(|error| self.decode_error::<Req>(version, &error))?;
        if header.correlation_id != self.correlation_id {
            return Err(AdminError::CorrelationMismatch {
                address: self.address.clone(),
                expected: self.correlation_id,
                received: header.correlation_id,
            });
        }
        Ok(body)
    }

    fn encode<Req: Request>(
        &mut self,
        version: i16,
        request: &Req,
    ) -> Result<BytesMut, AdminError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(Req::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let encode_error = |error: anyhow::Error| AdminError::Encode {
            api: api_key(Req::KEY),
            version,
            reason: error.to_string(),
        };
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[0; 4]);
        header
            .encode(&mut frame, Req::header_version(version))
            .map_err(encode_error)?;
        request.encode(&mut frame, version).map_err(encode_error)?;
        let size = i32::try_from(frame.len() - 4)
            .map_err(|_| encode_error(anyhow::anyhow!("the request exceeds 2 GiB")))?;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        Ok(frame)
    }

    fn decode_error<Req: Request>(&self, version: i16, error: &anyhow::Error) -> AdminError {
        AdminError::Decode {
            address: self.address.clone(),
            api: api_key(Req::KEY),
            version,
            reason: format!("{error:#}"),
        }
    }
}

fn api_key(key: i16) -> ApiKey {
    // Only generated request types reach here, and each carries its own, known key.
    ApiKey::try_from(key).expect("a generated request's API key is known to kafka-protocol")
}

/// The versions of `Req` this client can send: the API's range, narrowed to what the generated
/// request and response codecs both handle (in kafka-protocol 0.18 the OffsetFetch and
/// OffsetCommit response schemas reach v10, their request schemas v9), from `floor` up.
pub(crate) fn client_versions<Req: Request>(floor: i16) -> VersionRange {
    let range = api_key(Req::KEY)
        .valid_versions()
        .intersect(&Req::VERSIONS)
        .intersect(&<Req::Response as Message>::VERSIONS);
    VersionRange {
        min: range.min.max(floor),
        max: range.max,
    }
}

/// The highest version in both ranges.
pub(crate) fn common_version(broker: VersionRange, client: VersionRange) -> Option<i16> {
    let common = broker.intersect(&client);
    (!common.is_empty()).then_some(common.max)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{ListOffsetsRequest, OffsetFetchRequest};

    use super::*;

    fn range(min: i16, max: i16) -> VersionRange {
        VersionRange { min, max }
    }

    #[test]
    fn the_highest_common_version_wins() {
        assert_eq!(common_version(range(0, 9), range(2, 6)), Some(6));
        assert_eq!(common_version(range(0, 4), range(2, 6)), Some(4));
        assert_eq!(common_version(range(7, 9), range(2, 6)), None);
    }

    #[test]
    fn client_versions_stop_where_a_codec_does() {
        let offset_fetch = client_versions::<OffsetFetchRequest>(2);
        assert_eq!((offset_fetch.min, offset_fetch.max), (2, 9));
        let list_offsets = client_versions::<ListOffsetsRequest>(0);
        assert_eq!(
            list_offsets.min, 1,
            "kafka-protocol 0.18 encodes ListOffsets from v1"
        );
    }
}
