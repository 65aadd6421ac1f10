//! One connection to one broker: size-prefixed frames, correlation ids, pipelining, timeouts,
//! and for each API the version both sides speak, learnt from ApiVersions on connect (KIP-35).
//!
//! A writer task owns the socket's write half and writes whole frames from a bounded queue, so a
//! caller that gives up mid-request never leaves half a frame on the wire. A reader task owns
//! the read half: it checks each response's size before buffering it, reads the correlation id
//! and hands the body to the request waiting for it. Up to `max_in_flight` requests are on the
//! wire at once. A request that times out fails alone (its late answer is dropped when it
//! comes); a broken socket or a nonsensical answer fails every request in flight and marks the
//! connection closed for good: the [`Cluster`](crate::Cluster) opens a new one.
//!
//! Does not: retry, reconnect, or know about topics. Decoding the body happens in the caller's
//! task, not the reader's.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Message, Request, StrBytes, VersionRange,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::error::{ClientError, Result};
use crate::settings::SettingDoc;

/// A larger size prefix is a broken peer or not Kafka at all; nothing is allocated for it.
pub const RESPONSE_BYTES_MAX: usize = 100 * 1024 * 1024;
/// Answers to requests abandoned (timed out, cancelled) that are still awaited before the
/// connection is judged broken: a broker this far behind is not answering.
const ABANDONED_MAX: usize = 4096;
const SOFTWARE_NAME: &str = "runnel-client";

/// Settings shared by every connection of a client.
///
/// ```
/// use std::time::Duration;
/// use runnel_client::ClientConfig;
///
/// let mut config = ClientConfig::new("broker-1:9092, broker-2:9092");
/// config.request_timeout = Duration::from_secs(5);
/// assert_eq!(config.bootstrap, ["broker-1:9092", "broker-2:9092"]);
/// assert_eq!(config.max_in_flight, 5);
/// ```
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `HOST:PORT` of brokers to learn the cluster from; the first reachable one is used.
    pub bootstrap: Vec<String>,
    /// `client.id`, sent in every request header; brokers log it and quotas key on it
    /// (`runnel-client`).
    pub client_id: String,
    /// How long one request waits for its answer (30 s).
    pub request_timeout: Duration,
    /// How long opening a connection and exchanging ApiVersions may take (10 s).
    pub connect_timeout: Duration,
    /// Cached topic metadata older than this is refreshed before use (5 min).
    pub metadata_max_age: Duration,
    /// The wait before reconnecting to a broker after a failure (50 ms), doubling with each
    /// further failure up to `reconnect_backoff_max` (1 s).
    pub reconnect_backoff: Duration,
    /// The longest wait between reconnection attempts.
    pub reconnect_backoff_max: Duration,
    /// Requests on the wire per connection at once (5).
    pub max_in_flight: usize,
    /// The wait before retrying a retriable error (100 ms).
    pub retry_backoff: Duration,
}

impl ClientConfig {
    /// Defaults, with the brokers of a comma-separated `HOST:PORT` list.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        let bootstrap = bootstrap
            .into()
            .split(',')
            .map(str::trim)
            .filter(|address| !address.is_empty())
            .map(str::to_owned)
            .collect();
        ClientConfig {
            bootstrap,
            client_id: SOFTWARE_NAME.to_owned(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            metadata_max_age: Duration::from_secs(300),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(1),
            max_in_flight: 5,
            retry_backoff: Duration::from_millis(100),
        }
    }

    /// Every field, for the configuration reference; `tests::settings_match_the_fields` holds
    /// it to [`ClientConfig::new`].
    pub const SETTINGS: &'static [SettingDoc] = &[
        SettingDoc {
            field: "bootstrap",
            kafka: Some("bootstrap.servers"),
            kind: "list of HOST:PORT",
            default: "",
            valid: "at least one address",
            doc: "The brokers the client first asks for the cluster's metadata; it tries them in \
                  order until one answers, then talks to whichever brokers the metadata names.",
        },
        SettingDoc {
            field: "client_id",
            kafka: Some("client.id"),
            kind: "string",
            default: SOFTWARE_NAME,
            valid: "any string",
            doc: "Sent in the header of every request, so that brokers can tell clients apart \
                  in their logs and quotas.",
        },
        SettingDoc {
            field: "request_timeout",
            kafka: Some("request.timeout.ms"),
            kind: "duration",
            default: "30000 ms",
            valid: "above 0",
            doc: "How long one request waits for its answer before it fails as timed out.",
        },
        SettingDoc {
            field: "connect_timeout",
            kafka: Some("socket.connection.setup.timeout.ms"),
            kind: "duration",
            default: "10000 ms",
            valid: "above 0",
            doc: "How long opening a connection to a broker, including the ApiVersions \
                  exchange, may take.",
        },
        SettingDoc {
            field: "metadata_max_age",
            kafka: Some("metadata.max.age.ms"),
            kind: "duration",
            default: "300000 ms",
            valid: "0 or more",
            doc: "Cached metadata older than this is fetched again before it is used, so that \
                  new partitions and moved leaders are noticed without an error first.",
        },
        SettingDoc {
            field: "reconnect_backoff",
            kafka: Some("reconnect.backoff.ms"),
            kind: "duration",
            default: "50 ms",
            valid: "0 or more",
            doc: "The first wait before connecting again to a broker that failed; it doubles \
                  with each further failure.",
        },
        SettingDoc {
            field: "reconnect_backoff_max",
            kafka: Some("reconnect.backoff.max.ms"),
            kind: "duration",
            default: "1000 ms",
            valid: "0 or more",
            doc: "The ceiling of that doubling wait.",
        },
        SettingDoc {
            field: "max_in_flight",
            kafka: Some("max.in.flight.requests.per.connection"),
            kind: "int",
            default: "5",
            valid: "1 or more",
            doc: "How many requests one connection has sent and not yet had answered; more \
                  wait their turn.",
        },
        SettingDoc {
            field: "retry_backoff",
            kafka: Some("retry.backoff.ms"),
            kind: "duration",
            default: "100 ms",
            valid: "0 or more",
            doc: "The wait before a request that failed with a retriable error is tried again.",
        },
    ];
}

/// A connection to one broker whose API versions are known. Cheap to share behind an `Arc`:
/// every method takes `&self`, and concurrent requests are pipelined.
///
/// ```no_run
/// # async fn example() -> runnel_client::Result<()> {
/// use kafka_protocol::messages::{ApiKey, MetadataRequest};
/// use runnel_client::{ClientConfig, Connection};
///
/// let config = ClientConfig::new("localhost:9092");
/// let connection = Connection::connect("localhost:9092", &config).await?;
/// let version = connection.version_for(ApiKey::Metadata).expect("every broker serves Metadata");
/// let response = connection.send(MetadataRequest::default(), version).await?;
/// println!("{} brokers", response.brokers.len());
/// # Ok(())
/// # }
/// ```
pub struct Connection {
    address: String,
    client_id: StrBytes,
    request_timeout: Duration,
    /// Per API key, the highest version both the broker and this client speak.
    versions: HashMap<i16, i16>,
    shared: Arc<Shared>,
    in_flight: Arc<Semaphore>,
    frames: mpsc::Sender<Outgoing>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("address", &self.address)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// What the reader, the writer and the callers share.
struct Shared {
    address: String,
    closed: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_correlation_id: i32,
    /// Requests on the wire, by correlation id: where to deliver the response body.
    pending: HashMap<i32, oneshot::Sender<Result<Bytes>>>,
    /// Requests whose caller stopped waiting; their answers are read and dropped.
    abandoned: HashSet<i32>,
    /// Why the connection closed, once it has.
    closed_reason: Option<Failure>,
}

/// Why a connection closed.
#[derive(Debug, Clone)]
enum Failure {
    /// The socket failed, or the connection was dropped.
    Io(io::ErrorKind, String),
    /// The broker sent something no Kafka broker sends: an oversized frame, an answer to
    /// nothing asked.
    Protocol(String),
}

/// One frame for the writer; `written` hears how the write went (for requests with no answer).
struct Outgoing {
    frame: Bytes,
    written: Option<oneshot::Sender<io::Result<()>>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic elsewhere: each update is one map operation.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the connection dead and fails everything in flight (the first failure is the
    /// reason given to every later request too).
    fn close(&self, failure: Failure) {
        self.closed.store(true, Ordering::Release);
        let (failure, pending) = {
            let mut state = self.state();
            let failure = state.closed_reason.get_or_insert(failure).clone();
            state.abandoned.clear();
            (failure, std::mem::take(&mut state.pending))
        };
        tracing::debug!(broker = %self.address, ?failure, "connection closed");
        for (_, waiter) in pending {
            let _ = waiter.send(Err(self.error_for(&failure)));
        }
    }

    fn error_for(&self, failure: &Failure) -> ClientError {
        match failure {
            Failure::Io(kind, reason) => ClientError::Io {
                broker: self.address.clone(),
                source: io::Error::new(*kind, reason.clone()),
            },
            Failure::Protocol(reason) => {
                ClientError::Protocol(format!("{}: {reason}", self.address))
            }
        }
    }

    fn closed_error(&self) -> ClientError {
        let failure = self.state().closed_reason.clone().unwrap_or(Failure::Io(
            io::ErrorKind::NotConnected,
            "connection closed".to_owned(),
        ));
        self.error_for(&failure)
    }
}

/// Removes a request from the pending map if its caller stops waiting before the answer
/// (timeout, cancellation), so the answer is recognised and dropped when it comes.
struct PendingGuard<'a> {
    shared: &'a Shared,
    correlation_id: i32,
    /// Whether the frame reached the writer's queue (and so will be answered).
    queued: bool,
    done: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let overwhelmed = {
            let mut state = self.shared.state();
            if state.pending.remove(&self.correlation_id).is_some() && self.queued {
                state.abandoned.insert(self.correlation_id);
            }
            state.abandoned.len() > ABANDONED_MAX
        };
        if overwhelmed {
            self.shared.close(Failure::Io(
                io::ErrorKind::TimedOut,
                format!("over {ABANDONED_MAX} requests went unanswered"),
            ));
        }
    }
}

/// A request on the writer's queue: its slot, and where its answer will come.
struct Queued<'a> {
    guard: PendingGuard<'a>,
    answer: oneshot::Receiver<Result<Bytes>>,
    /// Frees the in-flight slot once the answer is in (or the caller gives up).
    _permit: OwnedSemaphorePermit,
}

impl Queued<'_> {
    /// The whole response frame body (header included) and the correlation id.
    async fn answer(mut self) -> Result<(Bytes, i32)> {
        let body = (&mut self.answer)
            .await
            // The reader dropped the sender without answering: the connection is gone.
            .unwrap_or_else(|_| Err(self.guard.shared.closed_error()));
        self.guard.done = true;
        Ok((body?, self.guard.correlation_id))
    }
}

/// A request [queued](Connection::queue) on a connection, whose answer is still to come.
pub struct PendingAnswer<'a, Req> {
    connection: &'a Connection,
    queued: Queued<'a>,
    version: i16,
    deadline: tokio::time::Instant,
    request: PhantomData<fn() -> Req>,
}

impl<Req> fmt::Debug for PendingAnswer<'_, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAnswer")
            .field("broker", &self.connection.address)
            .field("correlation_id", &self.queued.guard.correlation_id)
            .finish_non_exhaustive()
    }
}

impl<Req> PendingAnswer<'_, Req>
where
    Req: Request,
    Req::Response: Decodable,
{
    /// Waits for the answer until the request's deadline and decodes it.
    pub async fn response(self) -> Result<Req::Response> {
        let PendingAnswer {
            connection,
            queued,
            version,
            deadline,
            ..
        } = self;
        match tokio::time::timeout_at(deadline, queued.answer()).await {
            Ok(answer) => {
                let (body, correlation_id) = answer?;
                connection.decode::<Req>(body, version, correlation_id)
            }
            Err(_) => Err(connection.timeout_error::<Req>(version)),
        }
    }
}

impl Connection {
    /// Opens a connection to `address` (`HOST:PORT`) and asks which API versions the broker
    /// serves, all within `config.connect_timeout`.
    pub async fn connect(address: &str, config: &ClientConfig) -> Result<Connection> {
        let what = || format!("connecting to {address}");
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| ClientError::Timeout {
                what: what(),
                after: config.connect_timeout,
            })?
            .map_err(|source| ClientError::Io {
                broker: address.to_owned(),
                source,
            })?;
        stream.set_nodelay(true).map_err(|source| ClientError::Io {
            broker: address.to_owned(),
            source,
        })?;
        let mut connection = Connection::start(address, stream, config);
        let versions =
            tokio::time::timeout(config.connect_timeout, connection.negotiate_versions())
                .await
                .map_err(|_| ClientError::Timeout {
                    what: format!("ApiVersions from {address}"),
                    after: config.connect_timeout,
                })??;
        connection.versions = versions;
        Ok(connection)
    }

    fn start(address: &str, stream: TcpStream, config: &ClientConfig) -> Connection {
        let (read_half, write_half) = stream.into_split();
        let shared = Arc::new(Shared {
            address: address.to_owned(),
            closed: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        });
        let max_in_flight = config.max_in_flight.max(1);
        let (frames, queue) = mpsc::channel(max_in_flight);
        let reader = tokio::spawn(read_responses(Arc::clone(&shared), read_half));
        let writer = tokio::spawn(write_frames(Arc::clone(&shared), write_half, queue));
        Connection {
            address: address.to_owned(),
            client_id: StrBytes::from_string(config.client_id.clone()),
            request_timeout: config.request_timeout,
            versions: HashMap::new(),
            shared,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            frames,
            reader,
            writer,
        }
    }

    /// The broker's `HOST:PORT` as this connection was opened to it.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The highest version of `api_key` that the broker serves and this client can both encode
    /// and decode; `None` if there is none (the broker does not serve the API, or only versions
    /// outside what the client speaks).
    pub fn version_for(&self, api_key: ApiKey) -> Option<i16> {
        self.versions.get(&(api_key as i16)).copied()
    }

    /// [`Connection::version_for`] `Req`'s API, or a [`ClientError::Protocol`] naming the
    /// broker when there is none, or when the best is below `floor` (the oldest request
    /// shape the caller can build).
    pub fn version_at_least<Req: Request>(&self, floor: i16) -> Result<i16> {
        let key = Req::KEY;
        match self.versions.get(&key) {
            Some(&version) if version >= floor => Ok(version),
            found => Err(ClientError::Protocol(format!(
                "{} serves no version of {} this client can use{}",
                self.address,
                api_name(key),
                match found {
                    Some(version) => format!(" (best common v{version}, need v{floor} or later)"),
                    None => String::new(),
                }
            ))),
        }
    }

    /// Whether the connection is dead (the socket failed or the broker sent nonsense).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Sends one request at `version` and awaits its response, at most `request_timeout`
    /// (including the wait for an in-flight slot).
    pub async fn send<Req>(&self, request: Req, version: i16) -> Result<Req::Response>
    where
        Req: Request + Encodable + Send,
        Req::Response: Decodable,
    {
        self.queue(request, version).await?.response().await
    }

    /// Puts `request` on the wire after every request queued before it on this connection and
    /// returns the wait for its answer, so that requests queued one after another from one
    /// task reach the broker in that order while several are in flight. Queueing and the
    /// answer together take at most `request_timeout` (the wait for an in-flight slot
    /// included).
    pub async fn queue<Req>(&self, request: Req, version: i16) -> Result<PendingAnswer<'_, Req>>
    where
        Req: Request + Encodable + Send,
        Req::Response: Decodable,
    {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        match tokio::time::timeout_at(deadline, self.enqueue(&request, version)).await {
            Ok(queued) => Ok(PendingAnswer {
                connection: self,
                queued: queued?,
                version,
                deadline,
                request: PhantomData,
            }),
            Err(_) => Err(self.timeout_error::<Req>(version)),
        }
    }

    fn timeout_error<Req: Request>(&self, version: i16) -> ClientError {
        ClientError::Timeout {
            what: format!("{} v{version} to {}", api_name(Req::KEY), self.address),
            after: self.request_timeout,
        }
    }

    /// Sends `request` and returns its whole response frame body (header included) and the
    /// correlation id it was sent with.
    async fn exchange<Req: Request>(&self, request: &Req, version: i16) -> Result<(Bytes, i32)> {
        self.enqueue(request, version).await?.answer().await
    }

    /// Takes an in-flight slot and puts `request` on the writer's queue.
    async fn enqueue<Req: Request>(&self, request: &Req, version: i16) -> Result<Queued<'_>> {
        let permit = self.acquire_slot().await?;
        let (waiter, answer) = oneshot::channel();
        let (frame, correlation_id) = {
            let mut state = self.shared.state();
            if self.is_closed() {
                drop(state);
                return Err(self.shared.closed_error());
            }
            let correlation_id = next_correlation_id(&mut state);
            let frame = self.encode(request, version, correlation_id)?;
            state.pending.insert(correlation_id, waiter);
            (frame, correlation_id)
        };
        let mut guard = PendingGuard {
            shared: &self.shared,
            correlation_id,
            queued: false,
            done: false,
        };
        let outgoing = Outgoing {
            frame,
            written: None,
        };
        if self.frames.send(outgoing).await.is_err() {
            return Err(self.shared.closed_error());
        }
        guard.queued = true;
        Ok(Queued {
            guard,
            answer,
            _permit: permit,
        })
    }

    /// For requests the broker does not answer (Produce with `acks=0`): sends `request` and
    /// returns once it is written.
    pub async fn send_no_response<Req: Request + Encodable>(
        &self,
        request: Req,
        version: i16,
    ) -> Result<()> {
        let timeout = self.request_timeout;
        let send = async {
            let _permit = self.acquire_slot().await?;
            let frame = {
                let mut state = self.shared.state();
                if self.is_closed() {
                    drop(state);
                    return Err(self.shared.closed_error());
                }
                let correlation_id = next_correlation_id(&mut state);
                self.encode(&request, version, correlation_id)?
            };
            let (written, outcome) = oneshot::channel();
            let outgoing = Outgoing {
                frame,
                written: Some(written),
            };
            if self.frames.send(outgoing).await.is_err() {
                return Err(self.shared.closed_error());
            }
            match outcome.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(source)) => Err(ClientError::Io {
                    broker: self.address.clone(),
                    source,
                }),
                Err(_) => Err(self.shared.closed_error()),
            }
        };
        tokio::time::timeout(timeout, send)
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::Timeout {
                    what: format!(
                        "writing {} v{version} to {}",
                        api_name(Req::KEY),
                        self.address
                    ),
                    after: timeout,
                })
            })
    }

    async fn acquire_slot(&self) -> Result<OwnedSemaphorePermit> {
        if self.is_closed() {
            return Err(self.shared.closed_error());
        }
        Arc::clone(&self.in_flight)
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Closed)
    }

    fn encode<Req: Request>(
        &self,
        request: &Req,
        version: i16,
        correlation_id: i32,
    ) -> Result<Bytes> {
        let encode_error = |error: &dyn fmt::Display| {
            ClientError::Protocol(format!(
                "cannot encode {} v{version}: {error}",
                api_name(Req::KEY)
            ))
        };
        let header = RequestHeader::default()
            .with_request_api_key(Req::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[0; 4]);
        header
            .encode(&mut frame, Req::header_version(version))
            .map_err(|error| encode_error(&error))?;
        request
            .encode(&mut frame, version)
            .map_err(|error| encode_error(&error))?;
        let size = i32::try_from(frame.len() - 4).map_err(|_| {
            ClientError::InvalidArgument(format!(
                "the {} request is {} bytes, over the 2 GiB a frame can hold",
                api_name(Req::KEY),
                frame.len()
            ))
        })?;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        Ok(frame.freeze())
    }

    fn decode<Req: Request>(
        &self,
        mut body: Bytes,
        version: i16,
        correlation_id: i32,
    ) -> Result<Req::Response> {
        self.decode_header::<Req>(&mut body, version, correlation_id)?;
        Req::Response::decode(&mut body, version)
            .map_err(|error| self.decode_error::<Req>(version, &error))
    }

    fn decode_header<Req: Request>(
        &self,
        body: &mut Bytes,
        version: i16,
        correlation_id: i32,
    ) -> Result<()> {
        let header = ResponseHeader::decode(body, Req::Response::header_version(version))
            .map_err(|error| self.decode_error::<Req>(version, &error))?;
        if header.correlation_id != correlation_id {
            // The reader routed the frame by this id: a mismatch is a decoding bug, not the peer.
            return Err(ClientError::Protocol(format!(
                "{} answered correlation id {} for request {correlation_id}",
                self.address, header.correlation_id
            )));
        }
        Ok(())
    }

    fn decode_error<Req: Request>(&self, version: i16, error: &dyn fmt::Display) -> ClientError {
        ClientError::Protocol(format!(
            "cannot decode the {} v{version} response from {}: {error}",
            api_name(Req::KEY),
            self.address
        ))
    }

    /// ApiVersions at the newest version this client speaks; a broker that does not know it
    /// answers UNSUPPORTED_VERSION in v0 with the versions it does know (KIP-511), and the
    /// exchange is repeated at the broker's newest (or v0).
    async fn negotiate_versions(&self) -> Result<HashMap<i16, i16>> {
        let client = client_versions(ApiKey::ApiVersions);
        let mut version = client.max;
        let response = loop {
            let request = ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str(SOFTWARE_NAME))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
            let body = self.round_trip_raw(&request, version).await?;
            let response = match ApiVersionsResponse::decode(&mut body.clone(), version) {
                Ok(response) if response.error_code == 0 => response,
                _ => ApiVersionsResponse::decode(&mut body.clone(), 0)
                    .map_err(|error| self.decode_error::<ApiVersionsRequest>(0, &error))?,
            };
            if response.error_code == ResponseError::UnsupportedVersion.code() && version > 0 {
                let broker_max = response
                    .api_keys
                    .iter()
                    .find(|key| key.api_key == ApiKey::ApiVersions as i16)
                    .map(|key| key.max_version)
                    .filter(|&max| max >= 0 && max < version);
                version = broker_max.unwrap_or(0);
                continue;
            }
            break response;
        };
        ClientError::check(response.error_code, None, || {
            format!("ApiVersions from {}", self.address)
        })?;
        let broker = response.api_keys.iter().map(|key| {
            let range = VersionRange {
                min: key.min_version,
                max: key.max_version,
            };
            (key.api_key, range)
        });
        Ok(select_versions(broker))
    }

    /// Sends `request`, returns the body after the response header.
    async fn round_trip_raw<Req: Request>(&self, request: &Req, version: i16) -> Result<Bytes> {
        let (mut body, correlation_id) = self.exchange(request, version).await?;
        // ApiVersions responses keep header v0 at every version, so an UNSUPPORTED_VERSION
        // answer is readable whatever was asked.
        self.decode_header::<Req>(&mut body, version, correlation_id)?;
        Ok(body)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
        self.shared.close(Failure::Io(
            io::ErrorKind::NotConnected,
            "the connection was dropped".to_owned(),
        ));
    }
}

fn next_correlation_id(state: &mut State) -> i32 {
    let id = state.next_correlation_id;
    state.next_correlation_id = if id == i32::MAX { 0 } else { id + 1 };
    id
}

async fn write_frames(
    shared: Arc<Shared>,
    mut socket: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Outgoing>,
) {
    while let Some(outgoing) = queue.recv().await {
        let result = socket.write_all(&outgoing.frame).await;
        let failed = result
            .as_ref()
            .err()
            .map(|error| Failure::Io(error.kind(), format!("write failed: {error}")));
        if let Some(written) = outgoing.written {
            let _ = written.send(result);
        }
        if let Some(failure) = failed {
            shared.close(failure);
            return;
        }
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
    }
}

async fn read_responses(shared: Arc<Shared>, mut socket: OwnedReadHalf) {
    let failure = loop {
        if let Err(failure) = read_one(&shared, &mut socket).await {
            break failure;
        }
    };
    shared.close(failure);
}

/// Reads one response frame and delivers it; `Err` closes the connection.
async fn read_one(shared: &Shared, socket: &mut OwnedReadHalf) -> std::result::Result<(), Failure> {
    let io_failure = |error: io::Error| {
        let reason = if error.kind() == io::ErrorKind::UnexpectedEof {
            "the broker closed the connection".to_owned()
        } else {
            format!("read failed: {error}")
        };
        Failure::Io(error.kind(), reason)
    };
    let mut size = [0u8; 4];
    socket.read_exact(&mut size).await.map_err(io_failure)?;
    let size = i32::from_be_bytes(size);
    let size_bytes = usize::try_from(size)
        .ok()
        .filter(|&size| (4..=RESPONSE_BYTES_MAX).contains(&size))
        .ok_or_else(|| {
            Failure::Protocol(format!(
                "a {size}-byte response frame (4 to {RESPONSE_BYTES_MAX} bytes allowed)"
            ))
        })?;
    let mut body = vec![0u8; size_bytes];
    socket.read_exact(&mut body).await.map_err(io_failure)?;
    let correlation_id = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let mut state = shared.state();
    if let Some(waiter) = state.pending.remove(&correlation_id) {
        drop(state);
        let _ = waiter.send(Ok(Bytes::from(body)));
        return Ok(());
    }
    if state.abandoned.remove(&correlation_id) {
        return Ok(());
    }
    Err(Failure::Protocol(format!(
        "a response with unexpected correlation id {correlation_id}"
    )))
}

/// Per API key, the highest version in both the broker's range and this client's.
pub(crate) fn select_versions(
    broker: impl IntoIterator<Item = (i16, VersionRange)>,
) -> HashMap<i16, i16> {
    broker
        .into_iter()
        .filter_map(|(key, broker_range)| {
            let api = ApiKey::try_from(key).ok()?;
            let common = broker_range.intersect(&client_versions(api));
            (!common.is_empty()).then_some((key, common.max))
        })
        .collect()
}

/// The versions of `api` this client can use: the API's valid range narrowed to what the
/// generated request and response codecs both handle (kafka-protocol 0.18's OffsetFetch and
/// OffsetCommit response schemas reach v10, their request schemas v9).
pub fn client_versions(api: ApiKey) -> VersionRange {
    match api {
        ApiKey::Produce => codec_versions::<ProduceRequest>(),
        ApiKey::Fetch => codec_versions::<FetchRequest>(),
        ApiKey::ListOffsets => codec_versions::<ListOffsetsRequest>(),
        ApiKey::Metadata => codec_versions::<MetadataRequest>(),
        ApiKey::OffsetCommit => codec_versions::<OffsetCommitRequest>(),
        ApiKey::OffsetFetch => codec_versions::<OffsetFetchRequest>(),
        ApiKey::FindCoordinator => codec_versions::<FindCoordinatorRequest>(),
        ApiKey::JoinGroup => codec_versions::<JoinGroupRequest>(),
        ApiKey::Heartbeat => codec_versions::<HeartbeatRequest>(),
        ApiKey::LeaveGroup => codec_versions::<LeaveGroupRequest>(),
        ApiKey::SyncGroup => codec_versions::<SyncGroupRequest>(),
        ApiKey::DescribeGroups => codec_versions::<DescribeGroupsRequest>(),
        ApiKey::ListGroups => codec_versions::<ListGroupsRequest>(),
        ApiKey::ApiVersions => codec_versions::<ApiVersionsRequest>(),
        ApiKey::CreateTopics => codec_versions::<CreateTopicsRequest>(),
        ApiKey::DeleteTopics => codec_versions::<DeleteTopicsRequest>(),
        ApiKey::DeleteRecords => codec_versions::<DeleteRecordsRequest>(),
        ApiKey::InitProducerId => codec_versions::<InitProducerIdRequest>(),
        ApiKey::OffsetForLeaderEpoch => codec_versions::<OffsetForLeaderEpochRequest>(),
        ApiKey::AddPartitionsToTxn => codec_versions::<AddPartitionsToTxnRequest>(),
        ApiKey::AddOffsetsToTxn => codec_versions::<AddOffsetsToTxnRequest>(),
        ApiKey::EndTxn => codec_versions::<EndTxnRequest>(),
        ApiKey::TxnOffsetCommit => codec_versions::<TxnOffsetCommitRequest>(),
        ApiKey::DescribeConfigs => codec_versions::<DescribeConfigsRequest>(),
        ApiKey::AlterConfigs => codec_versions::<AlterConfigsRequest>(),
        ApiKey::DescribeLogDirs => codec_versions::<DescribeLogDirsRequest>(),
        ApiKey::CreatePartitions => codec_versions::<CreatePartitionsRequest>(),
        ApiKey::DeleteGroups => codec_versions::<DeleteGroupsRequest>(),
        ApiKey::IncrementalAlterConfigs => codec_versions::<IncrementalAlterConfigsRequest>(),
        ApiKey::OffsetDelete => codec_versions::<OffsetDeleteRequest>(),
        ApiKey::DescribeCluster => codec_versions::<DescribeClusterRequest>(),
        ApiKey::DescribeProducers => codec_versions::<DescribeProducersRequest>(),
        ApiKey::DescribeTransactions => codec_versions::<DescribeTransactionsRequest>(),
        ApiKey::ListTransactions => codec_versions::<ListTransactionsRequest>(),
        ApiKey::ConsumerGroupHeartbeat => codec_versions::<ConsumerGroupHeartbeatRequest>(),
        ApiKey::ConsumerGroupDescribe => codec_versions::<ConsumerGroupDescribeRequest>(),
        ApiKey::SaslHandshake => codec_versions::<SaslHandshakeRequest>(),
        ApiKey::SaslAuthenticate => codec_versions::<SaslAuthenticateRequest>(),
        ApiKey::DescribeAcls => codec_versions::<DescribeAclsRequest>(),
        ApiKey::CreateAcls => codec_versions::<CreateAclsRequest>(),
        ApiKey::DeleteAcls => codec_versions::<DeleteAclsRequest>(),
        ApiKey::ElectLeaders => codec_versions::<ElectLeadersRequest>(),
        ApiKey::AlterPartitionReassignments => {
            codec_versions::<AlterPartitionReassignmentsRequest>()
        }
        ApiKey::ListPartitionReassignments => codec_versions::<ListPartitionReassignmentsRequest>(),
        // Sent by brokers' transaction coordinators to other brokers.
        ApiKey::WriteTxnMarkers => codec_versions::<WriteTxnMarkersRequest>(),
        ApiKey::DescribeClientQuotas => codec_versions::<DescribeClientQuotasRequest>(),
        ApiKey::AlterClientQuotas => codec_versions::<AlterClientQuotasRequest>(),
        ApiKey::DescribeTopicPartitions => codec_versions::<DescribeTopicPartitionsRequest>(),
        // Broker-to-broker, controller and share-group APIs: never sent by this client.
        _ => VersionRange { min: 0, max: -1 },
    }
}

fn codec_versions<Req: Request>() -> VersionRange {
    let key = ApiKey::try_from(Req::KEY);
    let valid = key.map_or(Req::VERSIONS, |key| key.valid_versions());
    valid
        .intersect(&Req::VERSIONS)
        .intersect(&<Req::Response as Message>::VERSIONS)
}

/// `Metadata`, `ApiVersions`: the API's name for messages.
pub(crate) fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(api) => format!("{api:?}"),
        Err(()) => format!("API {key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_match_the_fields() {
        // Destructured without `..`: a new field fails to compile here until it is listed.
        let ClientConfig {
            bootstrap: _,
            client_id,
            request_timeout,
            connect_timeout,
            metadata_max_age,
            reconnect_backoff,
            reconnect_backoff_max,
            max_in_flight,
            retry_backoff,
        } = ClientConfig::new("h:1");
        let ms = |d: Duration| Some(SettingDoc::millis(d));
        let actual = [
            ("bootstrap", None),
            ("client_id", Some(client_id)),
            ("request_timeout", ms(request_timeout)),
            ("connect_timeout", ms(connect_timeout)),
            ("metadata_max_age", ms(metadata_max_age)),
            ("reconnect_backoff", ms(reconnect_backoff)),
            ("reconnect_backoff_max", ms(reconnect_backoff_max)),
            ("max_in_flight", Some(max_in_flight.to_string())),
            ("retry_backoff", ms(retry_backoff)),
        ];
        let problems = SettingDoc::mismatches(ClientConfig::SETTINGS, &actual);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    fn range(min: i16, max: i16) -> VersionRange {
        VersionRange { min, max }
    }

    #[test]
    fn the_highest_version_both_speak_wins() {
        let metadata = ApiKey::Metadata as i16;
        let fetch = ApiKey::Fetch as i16;
        let selected = select_versions([(metadata, range(0, 9)), (fetch, range(0, 99))]);
        assert_eq!(selected[&metadata], 9, "the broker's max when lower");
        assert_eq!(
            selected[&fetch],
            client_versions(ApiKey::Fetch).max,
            "the client's max when lower"
        );
    }

    #[test]
    fn an_api_without_a_common_version_is_absent() {
        let produce = ApiKey::Produce as i16;
        // kafka-protocol 0.18 encodes Produce from v3.
        let selected = select_versions([(produce, range(0, 2)), (9999, range(0, 3))]);
        assert!(selected.is_empty());
    }

    #[test]
    fn client_versions_stop_where_a_codec_does() {
        let offset_fetch = client_versions(ApiKey::OffsetFetch);
        assert_eq!(offset_fetch.max, 9, "the request schema stops at v9");
        let offset_commit = client_versions(ApiKey::OffsetCommit);
        assert_eq!(offset_commit.max, 9);
        assert_eq!(client_versions(ApiKey::ListOffsets).min, 1);
        assert_eq!(client_versions(ApiKey::Produce).min, 3);
        assert!(client_versions(ApiKey::BrokerHeartbeat).is_empty());
    }

    #[test]
    fn every_client_range_is_inside_both_codecs() {
        for api in ApiKey::iter() {
            let client = client_versions(api);
            if client.is_empty() {
                continue;
            }
            let valid = api.valid_versions();
            assert!(
                client.min >= valid.min && client.max <= valid.max,
                "{api:?}: {client} outside {valid}"
            );
        }
    }

    #[test]
    fn config_splits_the_bootstrap_list() {
        let config = ClientConfig::new(" a:1 ,, b:2,");
        assert_eq!(config.bootstrap, ["a:1", "b:2"]);
        assert_eq!(config.request_timeout, Duration::from_secs(30));
    }
}
