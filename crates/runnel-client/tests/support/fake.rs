//! A scripted fake broker's side of the wire, for what the real one never does (answers
//! late, out of order, oversized) and for looking at exactly what the client sends: whole
//! frames, request headers, and ApiVersions answered in the v0 layout.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A fake broker on a fresh port running `script` on its one connection.
pub async fn fake_broker<F, Fut>(script: F) -> String
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        script(stream).await;
    });
    address
}

/// One request: its API key, version, correlation id, and the whole frame body (header
/// included).
pub struct RawRequest {
    pub api_key: i16,
    pub version: i16,
    pub correlation_id: i32,
    pub body: Bytes,
}

impl RawRequest {
    /// The request's body, past its header.
    pub fn decode<T: Decodable + HeaderVersion>(&self) -> T {
        let mut body = self.body.clone();
        RequestHeader::decode(&mut body, T::header_version(self.version)).expect("request header");
        T::decode(&mut body, self.version).expect("request body")
    }
}

pub async fn read_request(stream: &mut TcpStream) -> Option<RawRequest> {
    let size = stream.read_i32().await.ok()?;
    let mut body = vec![0u8; usize::try_from(size).ok()?];
    stream.read_exact(&mut body).await.ok()?;
    let mut header = &body[..];
    let api_key = header.get_i16();
    let version = header.get_i16();
    let correlation_id = header.get_i32();
    Some(RawRequest {
        api_key,
        version,
        correlation_id,
        body: Bytes::from(body),
    })
}

pub async fn write_frame(stream: &mut TcpStream, body: &[u8]) {
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    stream.write_all(&frame).await.expect("write");
}

/// Writes `response`, in `version`, as the answer to request `correlation_id`.
pub async fn answer<T: Encodable + HeaderVersion>(
    stream: &mut TcpStream,
    correlation_id: i32,
    version: i16,
    response: &T,
) {
    let mut body = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut body, T::header_version(version))
        .expect("header");
    response.encode(&mut body, version).expect("body");
    write_frame(stream, &body).await;
}

/// An ApiVersions answer in v0 layout: first UNSUPPORTED_VERSION (so the client falls back to
/// v0), then `served`, the highest version of each API.
pub async fn answer_api_versions(stream: &mut TcpStream, served: &[(ApiKey, i16)]) {
    for error in [ResponseError::UnsupportedVersion.code(), 0] {
        let request = read_request(stream).await.expect("ApiVersions");
        assert_eq!(request.api_key, ApiKey::ApiVersions as i16);
        let response = ApiVersionsResponse::default()
            .with_error_code(error)
            .with_api_keys(
                served
                    .iter()
                    .map(|&(key, max)| {
                        ApiVersion::default()
                            .with_api_key(key as i16)
                            .with_min_version(0)
                            .with_max_version(max)
                    })
                    .collect(),
            );
        let mut body = BytesMut::new();
        body.put_i32(request.correlation_id);
        response.encode(&mut body, 0).expect("encode");
        write_frame(stream, &body).await;
    }
}
