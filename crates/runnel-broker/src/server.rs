//! The network shell: accept connections, split bytes into frames, hand requests to the broker
//! in order, write responses in order. Everything protocol-shaped happens in `runnel-protocol`
//! and the handlers; this file moves bytes and enforces the limits a hostile or broken client
//! meets:
//!
//! - `max.connections` (connections beyond it wait to be accepted) and
//!   `max.connections.per.ip` (connections beyond it are closed at once, as Kafka does);
//! - `connections.max.idle.ms`: a connection that sends nothing, or reads no response, for
//!   that long is closed;
//! - `request-read-timeout-ms`: once a request's first byte has arrived, the rest must follow
//!   in time (a client that sends 3 bytes and waits is cut off);
//! - `queued.max.request.bytes`: the bytes of requests read but not yet answered, across all
//!   connections. A connection reserves its next request's share before reading its body, and
//!   reads nothing while the budget is used up. Its buffer grows as bytes arrive, never to
//!   what the size prefix claims;
//! - at most [`CONNECTION_IN_FLIGHT_MAX`] requests of one connection run at once, and at most
//!   one Fetch, whose answer may be as large as `fetch.max.bytes` (see `pipeline` for which
//!   requests run beside each other); answers go out in request order;
//! - accept errors (EMFILE when out of file descriptors) back off instead of spinning.

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt};
use futures::stream::{FuturesOrdered, StreamExt};
use kafka_protocol::messages::ApiKey;
use runnel_protocol::{
    encode_api_versions_fallback, encode_raw_response, encode_response, parse_request,
    FrameDecoder, RequestError, ResponseFrame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::broker::{Broker, Reply};
use crate::pipeline::{Concurrency, Turn, TurnChain};

/// Room made in a connection's buffer before each read.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// A connection's first buffer: most requests are small.
const INITIAL_BUFFER_BYTES: usize = 8 * 1024;
/// Pieces handed to one vectored write (the kernel takes at most IOV_MAX, 1024 on Linux).
const WRITE_PIECES_MAX: usize = 256;
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Connections per client address.
#[derive(Debug)]
struct PerIpCounts {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in [`PerIpCounts`], given back on drop.
struct IpSlot {
    counts: Arc<PerIpCounts>,
    ip: IpAddr,
}

impl PerIpCounts {
    fn try_register(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            counts: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Serves connections on `listener` until the broker's shutdown signal, then waits for the
/// requests in flight to finish.
pub(crate) async fn serve(broker: Arc<Broker>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(broker.config.connections_max));
    let per_ip = Arc::new(PerIpCounts {
        max: broker.config.connections_max_per_ip(),
        counts: Mutex::new(HashMap::new()),
    });
    let budget = Arc::new(RequestBudget::new(&broker.config));
    let mut shutdown = broker.shutdown_signal();
    let mut connections = JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF_MIN;
                accepted
            }
            Err(error) => {
                // Out of file descriptors, most often: retrying at once would spin.
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Some(ip_slot) = per_ip.try_register(peer.ip()) else {
            broker.metrics.connection_rejected();
            tracing::warn!(
                %peer,
                max = per_ip.max,
                "rejected connection: this address already has the configured maximum of connections (connections-max-per-ip)"
            );
            continue;
        };
        let broker = broker.clone();
        let budget = Arc::clone(&budget);
        let open = broker.metrics.connection_opened();
        connections.spawn(async move {
            let _slots = (permit, ip_slot, open);
            if let Err(error) = serve_connection(&broker, stream, peer, &budget).await {
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
    #[error("idle for longer than connections.max.idle.ms")]
    Idle,
    #[error("a request did not arrive whole within request-read-timeout-ms")]
    SlowRequest,
}

/// Requests of one connection served at once. Beyond it the connection reads nothing more
/// until the oldest is answered: the client waits, and its requests wait in its socket buffer.
const CONNECTION_IN_FLIGHT_MAX: usize = 64;

/// What requests read but not yet answered may hold, across all connections
/// (`queued.max.request.bytes`). Only bytes are counted: a count of requests would let parked
/// JoinGroups or long-poll fetches, which wait for other clients, starve every connection.
struct RequestBudget {
    bytes: Arc<Semaphore>,
}

/// One request's share of the [`RequestBudget`], given back when it is answered.
type Reservation = OwnedSemaphorePermit;

impl RequestBudget {
    fn new(config: &crate::config::BrokerConfig) -> Self {
        RequestBudget {
            bytes: Arc::new(Semaphore::new(config.queued_max_request_bytes)),
        }
    }

    /// `size` was validated against request-max-bytes, itself at most the byte budget.
    fn claim(size: usize) -> u32 {
        u32::try_from(size).unwrap_or(u32::MAX)
    }

    fn try_reserve(&self, size: usize) -> Option<Reservation> {
        self.bytes
            .clone()
            .try_acquire_many_owned(Self::claim(size))
            .ok()
    }

    async fn reserve(&self, size: usize) -> Result<Reservation, ConnectionError> {
        self.bytes
            .clone()
            .acquire_many_owned(Self::claim(size))
            .await
            .map_err(|_| ConnectionError::Shutdown)
    }
}

/// What a request's handling ends in: the frame to send back, if any.
type Answer = Result<Option<ResponseFrame>, ConnectionError>;

/// One client connection. Whole requests in the buffer start at once, as far as
/// [`Concurrency`] and the limits allow; answers are written strictly in request order.
async fn serve_connection(
    broker: &Arc<Broker>,
    mut stream: TcpStream,
    peer: SocketAddr,
    budget: &RequestBudget,
) -> Result<(), ConnectionError> {
    stream.set_nodelay(true)?;
    let idle_timeout = Duration::from_millis(broker.config.connections_max_idle_ms);
    let request_timeout = Duration::from_millis(broker.config.request_read_timeout_ms);
    let decoder = FrameDecoder::new(broker.config.request_max_bytes);
    let mut input = BytesMut::with_capacity(INITIAL_BUFFER_BYTES);
    let mut shutdown = broker.shutdown_signal();
    let mut in_flight: FuturesOrdered<BoxFuture<'_, (bool, Answer)>> = FuturesOrdered::new();
    let mut turns = TurnChain::default();
    // The request in flight runs alone: start nothing until it is answered.
    let mut exclusive_in_flight = false;
    // A Fetch's answer may be as large as fetch.max.bytes: one at a time per connection.
    let mut fetch_in_flight = false;
    // The budget reservation of the frame at the front of `input`.
    let mut reserved: Option<Reservation> = None;
    let mut stopping = false;
    let mut last_activity = Instant::now();
    // When the first byte of the frame at the front of `input` arrived.
    let mut request_started: Option<Instant> = None;
    loop {
        // Start every whole request the buffer holds, as far as the limits allow.
        let mut blocked = stopping;
        let mut awaiting_budget = None;
        while !blocked {
            if exclusive_in_flight || in_flight.len() >= CONNECTION_IN_FLIGHT_MAX {
                blocked = true;
                break;
            }
            let Some(size) = decoder.next_frame_size(&input).inspect_err(|error| {
                tracing::warn!(%peer, %error, "closing connection: bad frame");
            })?
            else {
                break;
            };
            if reserved.is_none() {
                reserved = budget.try_reserve(size);
                if reserved.is_none() {
                    awaiting_budget = Some(size);
                    break;
                }
            }
            let Some(api_key) = input.get(4..6) else {
                break;
            };
            let key = (size >= 2).then(|| i16::from_be_bytes([api_key[0], api_key[1]]));
            let concurrency = key.map_or(Concurrency::Exclusive, Concurrency::of);
            let is_fetch = key == Some(ApiKey::Fetch as i16);
            if (concurrency == Concurrency::Exclusive && !in_flight.is_empty())
                || (is_fetch && fetch_in_flight)
            {
                blocked = true;
                break;
            }
            let Some(frame) = decoder.decode(&mut input)? else {
                break;
            };
            request_started = None;
            exclusive_in_flight = concurrency == Concurrency::Exclusive;
            fetch_in_flight |= is_fetch;
            let reservation = reserved.take();
            let turn = turns.next_turn();
            in_flight.push_back(
                async move {
                    // The request's bytes count against the budget until it is answered.
                    let _reservation = reservation;
                    (is_fetch, handle_frame(broker, frame, peer, turn).await)
                }
                .boxed(),
            );
        }
        if stopping && in_flight.is_empty() {
            return Err(ConnectionError::Shutdown);
        }
        let may_read = !blocked && awaiting_budget.is_none();
        if may_read {
            // Once its budget is reserved, the frame at the front gets room for all of it at
            // once: a large request is copied into place once, not at every growth of the
            // buffer (frames split off before pin the old allocation, so each growth copies).
            let frame_rest = match reserved {
                Some(_) => decoder.missing_bytes(&input)?,
                None => None,
            };
            let room = input.capacity() - input.len();
            match frame_rest {
                Some(rest) if rest > room => input.reserve(rest),
                _ if room < READ_CHUNK_BYTES / 4 => input.reserve(READ_CHUNK_BYTES),
                _ => {}
            }
        }
        // A started frame must complete in time; a connection with nothing to do may idle
        // only so long. While requests run, the client is waiting for us, not we for it.
        if !may_read {
            // Not reading is our doing, not the client's: its partial request's clock starts
            // when we read again.
            request_started = None;
        }
        let deadline = if !may_read {
            None
        } else if !input.is_empty() {
            Some(*request_started.get_or_insert_with(Instant::now) + request_timeout)
        } else if in_flight.is_empty() {
            Some(last_activity + idle_timeout)
        } else {
            None
        };
        tokio::select! {
            biased;
            Some((was_fetch, answer)) = in_flight.next(), if !in_flight.is_empty() => {
                if in_flight.is_empty() {
                    exclusive_in_flight = false;
                }
                if was_fetch {
                    fetch_in_flight = false;
                }
                if let Some(response) = answer? {
                    write_timed(&mut stream, &response, idle_timeout).await?;
                }
                last_activity = Instant::now();
            }
            reservation = async {
                match awaiting_budget {
                    Some(size) => budget.reserve(size).await,
                    None => std::future::pending().await,
                }
            }, if awaiting_budget.is_some() => {
                reserved = Some(reservation?);
            }
            read = stream.read_buf(&mut input), if may_read => {
                if read? == 0 {
                    return Ok(());
                }
                last_activity = Instant::now();
            }
            _ = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            }, if deadline.is_some() => {
                return Err(if input.is_empty() {
                    ConnectionError::Idle
                } else {
                    tracing::warn!(%peer, buffered = input.len(), "closing connection: a request did not arrive in time");
                    ConnectionError::SlowRequest
                });
            }
            // Requests in flight are answered (long polls and parked joins return at
            // shutdown); nothing new is read.
            _ = async { shutdown.wait_for(|stop| *stop).await.is_ok() }, if !stopping => stopping = true,
        }
    }
}

/// Parses and serves one frame; the bytes to send back, if any.
async fn handle_frame(broker: &Arc<Broker>, frame: Bytes, peer: SocketAddr, turn: Turn) -> Answer {
    let request_bytes = frame.len();
    let request = match parse_request(frame) {
        Ok(request) => request,
        Err(RequestError::UnsupportedVersion {
            api_key: ApiKey::ApiVersions,
            correlation_id,
            ..
        }) => return Ok(Some(encode_api_versions_fallback(correlation_id).into())),
        Err(error) => {
            broker.metrics.request_unparsable();
            tracing::warn!(%peer, %error, "closing connection: request not served");
            return Err(error.into());
        }
    };
    let started = Instant::now();
    let correlation_id = request.correlation_id();
    let api_key = request.api_key;
    let version = request.api_version();
    tracing::trace!(%peer, ?api_key, version, correlation_id, "request");
    let reply = broker.handle(request, request_bytes, peer.ip(), turn).await;
    let answer = match &reply {
        Reply::Response(body) => {
            let frame = encode_response(correlation_id, api_key, version, body).inspect_err(
                |error| tracing::error!(%peer, %error, "bug: response does not encode"),
            )?;
            Ok(Some(frame))
        }
        Reply::Raw(body) => Ok(Some(encode_raw_response(correlation_id, body).into())),
        Reply::None => Ok(None),
        Reply::Close => Err(ConnectionError::Unanswerable),
    };
    let response = match &reply {
        Reply::Response(body) => Some(&**body),
        _ => None,
    };
    broker
        .metrics
        .request_served(api_key as i16, version, started.elapsed(), response);
    answer
}

/// Writes a response, its pieces gathered by vectored writes; a client that reads none of it
/// for the idle timeout is gone.
async fn write_timed(
    stream: &mut TcpStream,
    frame: &ResponseFrame,
    timeout: Duration,
) -> Result<(), ConnectionError> {
    tokio::time::timeout(timeout, write_frame(stream, frame))
        .await
        .map_err(|_| ConnectionError::Idle)??;
    Ok(())
}

async fn write_frame(stream: &mut TcpStream, frame: &ResponseFrame) -> std::io::Result<()> {
    let chunks = frame.chunks();
    let mut chunk = 0;
    let mut offset = 0;
    while chunk < chunks.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&chunks[chunk][offset..])
            .chain(chunks[chunk + 1..].iter().map(|piece| &piece[..]))
            .take(WRITE_PIECES_MAX)
            .map(IoSlice::new)
            .collect();
        let mut written = stream.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while chunk < chunks.len() && written >= chunks[chunk].len() - offset {
            written -= chunks[chunk].len() - offset;
            chunk += 1;
            offset = 0;
        }
        offset += written;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseKind};
    use tokio::io::AsyncReadExt;

    use super::*;

    /// A frame of many pieces, larger than the socket buffers, arrives whole and in order
    /// through short vectored writes.
    #[tokio::test]
    async fn a_frame_of_many_pieces_arrives_whole() {
        let partitions = (0..300)
            .map(|index| {
                PartitionData::default()
                    .with_partition_index(index)
                    .with_records(Some(Bytes::from(vec![
                        index as u8;
                        50_000 + index as usize
                    ])))
            })
            .collect();
        let body = ResponseKind::Fetch(FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default().with_partitions(partitions),
        ]));
        let frame = encode_response(7, ApiKey::Fetch, 12, &body).unwrap();
        assert!(frame.chunks().len() > WRITE_PIECES_MAX);

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            let mut buffer = vec![0u8; 7000];
            loop {
                // A slow reader: the writer meets a full socket buffer again and again.
                tokio::task::yield_now().await;
                match socket.read(&mut buffer).await.unwrap() {
                    0 => return received,
                    read => received.extend_from_slice(&buffer[..read]),
                }
            }
        });
        let mut stream = TcpStream::connect(address).await.unwrap();
        write_frame(&mut stream, &frame).await.unwrap();
        drop(stream);
        assert_eq!(reader.await.unwrap(), frame.to_bytes().to_vec());
    }
}
