//! The network shell: accept connections, split bytes into frames, hand requests to the broker
//! in order, write responses in order. Everything protocol-shaped happens in `runnel-protocol`
//! and the handlers; this file only moves bytes and enforces limits.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use runnel_protocol::{
    encode_api_versions_fallback, encode_raw_response, encode_response, parse_request,
    FrameDecoder, RequestError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::broker::{Broker, Reply};
use kafka_protocol::messages::ApiKey;

const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Serves connections on `listener` until the broker's shutdown signal, then waits for the
/// requests in flight to finish.
pub(crate) async fn serve(broker: Arc<Broker>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(broker.config.connections_max));
    let mut shutdown = broker.shutdown_signal();
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let broker = broker.clone();
        connections.spawn(async move {
            let _permit = permit;
            if let Err(error) = serve_connection(&broker, stream, peer).await {
                tracing::debug!(%peer, %error, "connection closed");
            }
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Frame(#[from] runnel_protocol::FrameError),
    #[error("{0}")]
    Request(#[from] RequestError),
    #[error("{0}")]
    Encode(#[from] runnel_protocol::EncodeError),
    #[error("broker is shutting down")]
    Shutdown,
    #[error("no handler could answer")]
    Unanswerable,
}

/// One client connection: requests are answered one at a time, in the order they arrived, as
/// Kafka does; pipelined requests simply wait in the read buffer.
async fn serve_connection(
    broker: &Broker,
    mut stream: TcpStream,
    peer: SocketAddr,
) -> Result<(), ConnectionError> {
    stream.set_nodelay(true)?;
    let mut decoder = FrameDecoder::new(broker.config.request_max_bytes);
    let mut input = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let mut shutdown = broker.shutdown_signal();
    loop {
        while let Some(frame) = decoder.decode(&mut input).inspect_err(|error| {
            tracing::warn!(%peer, %error, "closing connection: bad frame");
        })? {
            let request = match parse_request(frame) {
                Ok(request) => request,
                Err(RequestError::UnsupportedVersion {
                    api_key: ApiKey::ApiVersions,
                    correlation_id,
                    ..
                }) => {
                    stream
                        .write_all(&encode_api_versions_fallback(correlation_id))
                        .await?;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%peer, %error, "closing connection: request not served");
                    return Err(error.into());
                }
            };
            let correlation_id = request.correlation_id();
            let api_key = request.api_key;
            let version = request.api_version();
            tracing::trace!(%peer, ?api_key, version, correlation_id, "request");
            match broker.handle(request, peer.ip()).await {
                Reply::Response(body) => {
                    let frame = encode_response(correlation_id, api_key, version, &body)
                        .inspect_err(
                            |error| tracing::error!(%peer, %error, "bug: response does not encode"),
                        )?;
                    stream.write_all(&frame).await?;
                }
                Reply::Raw(body) => {
                    stream
                        .write_all(&encode_raw_response(correlation_id, &body))
                        .await?;
                }
                Reply::None => {}
                Reply::Close => return Err(ConnectionError::Unanswerable),
            }
        }
        if input.capacity() - input.len() < READ_BUFFER_BYTES / 4 {
            input.reserve(READ_BUFFER_BYTES);
        }
        let read = tokio::select! {
            read = stream.read_buf(&mut input) => read?,
            _ = shutdown.wait_for(|stop| *stop) => return Err(ConnectionError::Shutdown),
        };
        if read == 0 {
            return Ok(());
        }
    }
}
