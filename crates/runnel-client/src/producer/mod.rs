//! The producer: partitioning, batching, compression, delivery with retries.
//!
//! [`Producer::send`] picks the record's partition (explicit, else the configured
//! [`Partitioner`]), appends it to that partition's open batch in a bounded buffer, and
//! returns a [`DeliveryFuture`] that resolves once the partition's leader has acknowledged
//! the record per [`Acks`], or with the error that stopped it. A sender task sends batches
//! when they are full (`batch_size`), have waited `linger`, or a [`Producer::flush`] asks;
//! up to 5 batches per partition are in flight, queued in the partition's order. The producer
//! is idempotent by default (`enable_idempotence`, with [`Acks::All`]): it gets a producer id
//! from the broker and numbers each partition's records, so the broker writes a retried batch
//! once and never out of order. When the buffer (`buffer_memory`) is full, `send` waits for
//! room: back-pressure rather than unbounded memory.
//!
//! The pieces underneath are plain data structures, tested without sockets:
//! [`partitioner`] (murmur2 as the Java client, sticky partitions for records without a key)
//! and [`accumulator`] (the per-partition batches and the memory bound). Serializers for
//! typed keys and values live in [`serde`].
//!
//! Does not (yet): transactions.
//!
//! ```no_run
//! # async fn example() -> runnel_client::Result<()> {
//! use runnel_client::producer::{Acks, ProduceRecord, Producer, ProducerConfig};
//!
//! let mut config = ProducerConfig::new("localhost:9092");
//! config.acks = Acks::All;
//! let producer = Producer::connect(config).await?;
//!
//! // Fire off records, then wait for their acknowledgements.
//! let mut deliveries = Vec::new();
//! for i in 0..100 {
//!     let record = ProduceRecord::new("orders").key(format!("customer-{i}")).value("placed");
//!     deliveries.push(producer.send(record).await?);
//! }
//! for delivery in deliveries {
//!     let metadata = delivery.await?;
//!     println!("{}-{} @ {}", metadata.topic, metadata.partition, metadata.offset);
//! }
//!
//! // Or one at a time.
//! let metadata = producer
//!     .send_and_wait(ProduceRecord::new("orders").value("hello").header("source", Some("docs")))
//!     .await?;
//! assert!(metadata.offset >= 0);
//! producer.close().await?;
//! # Ok(())
//! # }
//! ```

pub mod accumulator;
pub mod partitioner;
mod sender;
pub mod serde;
mod transaction;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use runnel_record::Compression;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use self::partitioner::{
    DefaultPartitioner, PartitionChoice, Partitioner, RoundRobinPartitioner,
};
pub use self::serde::{BytesSerializer, JsonSerializer, Serializer, StringSerializer};

use self::accumulator::{AccumulatorConfig, AccumulatorError, ProducerRecord};
use self::sender::{now_ms, Delivery, Shared};
use self::transaction::Transaction;
use crate::cluster::{Cluster, TopicMetadata};
use crate::connection::ClientConfig;
use crate::error::{ClientError, Result};
use crate::settings::SettingDoc;

/// How many replicas must have a record before the producer counts it delivered (`acks`).
///
/// ```
/// use runnel_client::producer::{Acks, ProducerConfig};
///
/// assert_eq!(Acks::default(), Acks::All);
/// assert_eq!([Acks::None, Acks::Leader, Acks::All].map(Acks::as_i16), [0, 1, -1]);
/// let mut config = ProducerConfig::new("localhost:9092");
/// config.acks = Acks::Leader; // trade durability for latency
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Acks {
    /// `acks=0`: written to the socket is delivered; no offsets come back (they are -1).
    None,
    /// `acks=1`: the partition leader has appended it.
    Leader,
    /// `acks=all` (-1): every in-sync replica has it. The default, as in Kafka 3.0+.
    #[default]
    All,
}

impl Acks {
    /// The `acks` field of a Produce request: 0, 1 or -1.
    pub fn as_i16(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// A producer's settings, named and defaulted as the Java producer's.
///
/// ```
/// use std::time::Duration;
/// use runnel_client::producer::{Acks, ProducerConfig};
/// use runnel_record::Compression;
///
/// let mut config = ProducerConfig::new("localhost:9092");
/// config.acks = Acks::Leader;
/// config.linger = Duration::from_millis(20);
/// config.compression = Compression::Zstd;
/// assert_eq!(config.batch_size, 1_000_000);
/// assert!(config.enable_idempotence);
/// assert_eq!(config.delivery_timeout, Duration::from_secs(120));
/// ```
#[derive(Clone)]
pub struct ProducerConfig {
    /// Brokers, timeouts and backoffs shared with the other clients. `request_timeout` is
    /// also the Produce request's `timeout_ms`.
    pub client: ClientConfig,
    /// `acks` (all).
    pub acks: Acks,
    /// `linger.ms`: how long a batch that is not full waits for more records (5 ms).
    pub linger: Duration,
    /// `batch.size`: most bytes of records one batch collects (1,000,000 as librdkafka's; the
    /// Java producer's 16 KiB holds a partition to 16 KiB per request in flight).
    pub batch_size: usize,
    /// `buffer.memory`: most bytes held by batches waiting or in flight (32 MiB); `send`
    /// waits for room beyond it.
    pub buffer_memory: usize,
    /// `compression.type` (none).
    pub compression: Compression,
    /// `max.request.size`: the largest record, as a batch of its own, `send` accepts (1 MiB).
    pub max_request_size: usize,
    /// `delivery.timeout.ms`: how long after its batch was opened a record may still be
    /// retried before it fails (120 s).
    pub delivery_timeout: Duration,
    /// `retry.backoff.ms`: the wait before resending a batch after a retriable error (100 ms).
    pub retry_backoff: Duration,
    /// `max.block.ms`: the longest `send` waits for a topic's metadata or for buffer space
    /// (60 s).
    pub max_block: Duration,
    /// `partitioner.class`: where records without an explicit partition go
    /// ([`DefaultPartitioner`], seeded at random).
    pub partitioner: Arc<dyn Partitioner>,
    /// `enable.idempotence` (on, as in the Java producer since Kafka 3.0): the broker writes
    /// each batch once, in order, however often it is retried. Takes effect with
    /// [`Acks::All`] only, as the Java producer turns it off for other acks; with it, at most
    /// 5 batches per partition are in flight.
    pub enable_idempotence: bool,
    /// `transactional.id`: makes the producer transactional (see
    /// [`Producer::init_transactions`]); a new instance with the same id fences the old
    /// one. Needs [`Acks::All`]; implies idempotence.
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms`: the coordinator aborts a transaction open longer (60 s).
    pub transaction_timeout: Duration,
}

impl fmt::Debug for ProducerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerConfig")
            .field("client", &self.client)
            .field("acks", &self.acks)
            .field("linger", &self.linger)
            .field("batch_size", &self.batch_size)
            .field("buffer_memory", &self.buffer_memory)
            .field("compression", &self.compression)
            .field("max_request_size", &self.max_request_size)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("retry_backoff", &self.retry_backoff)
            .field("max_block", &self.max_block)
            .field("enable_idempotence", &self.enable_idempotence)
            .field("transactional_id", &self.transactional_id)
            .field("transaction_timeout", &self.transaction_timeout)
            .finish_non_exhaustive()
    }
}

impl ProducerConfig {
    /// Defaults, with the brokers of a comma-separated `HOST:PORT` list.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self::with_client(ClientConfig::new(bootstrap))
    }

    /// Defaults, with these connection settings.
    pub fn with_client(client: ClientConfig) -> Self {
        let defaults = AccumulatorConfig::default();
        ProducerConfig {
            client,
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: defaults.batch_size,
            buffer_memory: defaults.buffer_memory,
            compression: Compression::None,
            max_request_size: defaults.max_request_size,
            delivery_timeout: Duration::from_secs(120),
            retry_backoff: Duration::from_millis(100),
            max_block: Duration::from_secs(60),
            partitioner: Arc::new(DefaultPartitioner::new(random_seed())),
            enable_idempotence: true,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
        }
    }

    /// Every field, for the configuration reference; `tests::settings_match_the_fields` holds
    /// it to [`ProducerConfig::with_client`].
    pub const SETTINGS: &'static [SettingDoc] = &[
        SettingDoc {
            field: "client",
            kafka: None,
            kind: "ClientConfig",
            default: "ClientConfig::new(bootstrap)",
            valid: "see the client settings",
            doc: "Brokers, timeouts and backoffs, shared with the other clients. Its \
                  request timeout is also the time the broker is given to write a Produce \
                  request.",
        },
        SettingDoc {
            field: "acks",
            kafka: Some("acks"),
            kind: "Acks",
            default: "all",
            valid: "none (0), leader (1), all (-1)",
            doc: "When the broker answers a Produce: without answering (none), once the \
                  leader appended the batch (leader), or once every in-sync replica has it \
                  (all).",
        },
        SettingDoc {
            field: "linger",
            kafka: Some("linger.ms"),
            kind: "duration",
            default: "5 ms",
            valid: "0 or more",
            doc: "How long a batch that is not yet full waits for more records before it is \
                  sent.",
        },
        SettingDoc {
            field: "batch_size",
            kafka: Some("batch.size"),
            kind: "bytes",
            default: "1000000",
            valid: "1 or more",
            doc: "The most record bytes one partition's batch collects. librdkafka's default \
                  rather than the Java producer's 16 KiB, which caps a partition at 16 KiB per \
                  request in flight.",
        },
        SettingDoc {
            field: "buffer_memory",
            kafka: Some("buffer.memory"),
            kind: "bytes",
            default: "33554432",
            valid: "at least batch_size",
            doc: "The most bytes held in batches waiting to be sent or in flight; `send` \
                  waits for room beyond it, up to max_block.",
        },
        SettingDoc {
            field: "compression",
            kafka: Some("compression.type"),
            kind: "Compression",
            default: "none",
            valid: "none, gzip, snappy, lz4, zstd",
            doc: "The codec batches are compressed with before they are sent.",
        },
        SettingDoc {
            field: "max_request_size",
            kafka: Some("max.request.size"),
            kind: "bytes",
            default: "1048576",
            valid: "1 or more",
            doc: "The largest record `send` accepts, measured as a batch of its own.",
        },
        SettingDoc {
            field: "delivery_timeout",
            kafka: Some("delivery.timeout.ms"),
            kind: "duration",
            default: "120000 ms",
            valid: "0 or more",
            doc: "How long after its batch was opened a record may still be retried; past \
                  it, the record fails.",
        },
        SettingDoc {
            field: "retry_backoff",
            kafka: Some("retry.backoff.ms"),
            kind: "duration",
            default: "100 ms",
            valid: "0 or more",
            doc: "The wait before a batch refused with a retriable error is sent again.",
        },
        SettingDoc {
            field: "max_block",
            kafka: Some("max.block.ms"),
            kind: "duration",
            default: "60000 ms",
            valid: "0 or more",
            doc: "The longest `send` waits for a topic's metadata or for buffer room before \
                  it fails.",
        },
        SettingDoc {
            field: "partitioner",
            kafka: Some("partitioner.class"),
            kind: "Arc<dyn Partitioner>",
            default: "DefaultPartitioner",
            valid: "any Partitioner",
            doc: "Picks the partition of a record that names none: keyed records by the \
                  murmur2 hash of the key, as the Java client does, the others stuck to one \
                  partition per batch (seeded at random).",
        },
        SettingDoc {
            field: "enable_idempotence",
            kafka: Some("enable.idempotence"),
            kind: "boolean",
            default: "true",
            valid: "true, false",
            doc: "Whether batches carry a producer id and sequence numbers, so that the \
                  broker writes each exactly once and in order however often it is retried. \
                  Only with acks all; at most 5 batches per partition are then in flight.",
        },
        SettingDoc {
            field: "transactional_id",
            kafka: Some("transactional.id"),
            kind: "optional string",
            default: "",
            valid: "any string",
            doc: "Makes the producer transactional (implies idempotence; needs acks all). A \
                  new producer with the same id fences the old one.",
        },
        SettingDoc {
            field: "transaction_timeout",
            kafka: Some("transaction.timeout.ms"),
            kind: "duration",
            default: "60000 ms",
            valid: "up to the broker's transaction-max-timeout-ms",
            doc: "The coordinator aborts a transaction that stays open longer than this.",
        },
    ];

    /// Whether batches carry a producer id and sequence numbers.
    pub(crate) fn idempotent(&self) -> bool {
        (self.enable_idempotence || self.transactional_id.is_some()) && self.acks == Acks::All
    }

    fn accumulator_config(&self) -> AccumulatorConfig {
        AccumulatorConfig {
            batch_size: self.batch_size,
            linger_ms: i64::try_from(self.linger.as_millis()).unwrap_or(i64::MAX),
            buffer_memory: self.buffer_memory,
            compression: self.compression,
            max_request_size: self.max_request_size,
        }
    }
}

/// A seed from the process's random hasher keys (drawn from the OS), so that producers do not
/// all stick to the same partitions.
fn random_seed() -> u64 {
    RandomState::new().hash_one(now_ms())
}

/// A record to send. The partition is chosen by the producer unless set.
///
/// ```
/// use runnel_client::producer::ProduceRecord;
///
/// let record = ProduceRecord::new("orders")
///     .key("customer-7")
///     .value(r#"{"amount_cents":1250}"#)
///     .header("trace-id", Some("abc"))
///     .header("tombstone-reason", None::<&str>)
///     .timestamp(1_700_000_000_000);
/// assert_eq!(record.partition, None);
/// assert_eq!(record.headers.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceRecord {
    /// The topic to write to.
    pub topic: String,
    /// `None`: the partitioner chooses.
    pub partition: Option<i32>,
    /// The record key; `None` is a null key, which the default partitioner spreads stickily
    /// instead of hashing.
    pub key: Option<Bytes>,
    /// `None` is a tombstone on a compacted topic.
    pub value: Option<Bytes>,
    /// Record headers in order: a name and an optional value. Names may repeat.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// CreateTime in milliseconds since the epoch; `None`: when it is sent.
    pub timestamp_ms: Option<i64>,
}

impl ProduceRecord {
    /// A record for `topic` with no key, value or headers.
    pub fn new(topic: impl Into<String>) -> Self {
        ProduceRecord {
            topic: topic.into(),
            ..Default::default()
        }
    }

    /// Sets the key, which picks the partition under the default partitioner.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the value (left unset, the record is a tombstone).
    pub fn value(mut self, value: impl Into<Bytes>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Adds a header; names may repeat, and order is kept.
    pub fn header(mut self, name: impl Into<String>, value: Option<impl Into<Bytes>>) -> Self {
        self.headers.push((name.into(), value.map(Into::into)));
        self
    }

    /// Sends to this partition, bypassing the partitioner.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// The record's CreateTime, in milliseconds since the epoch.
    pub fn timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }

    /// A record whose key and value are written by serializers (see [`serde`]).
    pub fn from_typed<K: ?Sized, V: ?Sized>(
        topic: impl Into<String>,
        key: Option<&K>,
        value: &V,
        key_serializer: &impl Serializer<K>,
        value_serializer: &impl Serializer<V>,
    ) -> Result<ProduceRecord> {
        let mut record = ProduceRecord::new(topic);
        record.key = key.map(|key| key_serializer.serialize(key)).transpose()?;
        record.value = Some(value_serializer.serialize(value)?);
        Ok(record)
    }
}

/// Where a record was stored.
///
/// ```no_run
/// # async fn example(producer: runnel_client::Producer) -> runnel_client::Result<()> {
/// use runnel_client::ProduceRecord;
///
/// let metadata = producer.send_and_wait(ProduceRecord::new("orders").value("placed")).await?;
/// println!("{}-{} at offset {}", metadata.topic, metadata.partition, metadata.offset);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The topic written to.
    pub topic: String,
    /// The partition the record landed in.
    pub partition: i32,
    /// -1 with `acks=0`, where the broker does not answer.
    pub offset: i64,
    /// The record's CreateTime, or the broker's LogAppendTime if the topic uses that.
    pub timestamp_ms: i64,
}

/// Resolves once the record is acknowledged per [`Acks`], or with the error that stopped it
/// (after retries, within `delivery_timeout`). Dropping it does not cancel the record.
///
/// ```no_run
/// # async fn example(producer: runnel_client::Producer) -> runnel_client::Result<()> {
/// use runnel_client::ProduceRecord;
///
/// // `send` returns once the record is buffered; the future resolves on acknowledgement.
/// let delivery = producer.send(ProduceRecord::new("orders").key("k").value("v")).await?;
/// match delivery.await {
///     Ok(metadata) => println!("stored at offset {}", metadata.offset),
///     Err(error) => eprintln!("lost: {error} (retriable: {})", error.is_retriable()),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct DeliveryFuture {
    receiver: oneshot::Receiver<Result<RecordMetadata>>,
    partition: i32,
}

impl DeliveryFuture {
    /// The partition the record was sent to. A partition's records are answered in the order
    /// they were sent, unless a retry reordered them (see the producer's ordering rules).
    pub fn partition(&self) -> i32 {
        self.partition
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver)
            .poll(cx)
            // The sender task went away without answering: only when the runtime shut down.
            .map(|answer| answer.unwrap_or(Err(ClientError::Closed)))
    }
}

/// An async producer. Cheap to clone; clones share the buffer, the sender task and the
/// connections. Dropping the last clone lets the sender finish what is queued in the
/// background; [`Producer::close`] waits for it.
///
/// ```no_run
/// # async fn example() -> runnel_client::Result<()> {
/// use runnel_client::{ProduceRecord, Producer, ProducerConfig};
///
/// let producer = Producer::connect(ProducerConfig::new("localhost:9092")).await?;
/// producer.send(ProduceRecord::new("orders").key("customer-7").value("placed")).await?;
/// producer.flush().await?; // every record sent so far is acknowledged or failed
/// producer.close().await?;
/// # Ok(())
/// # }
/// ```
///
/// See the [module documentation](self) for more.
#[derive(Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("config", &self.handle.shared.config)
            .finish_non_exhaustive()
    }
}

struct Handle {
    shared: Arc<Shared>,
    sender: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    /// A transactional producer's transaction (None without `transactional_id`).
    transaction: Option<tokio::sync::Mutex<Transaction>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.begin_close();
    }
}

impl Producer {
    /// Connects to the cluster and starts the sender task.
    pub async fn connect(config: ProducerConfig) -> Result<Producer> {
        let cluster = Cluster::connect(config.client.clone()).await?;
        Producer::with_cluster(cluster, config).await
    }

    /// A producer on an existing cluster view (shared with a consumer or an admin client).
    /// `config.client` is not used: the cluster's own settings are.
    pub async fn with_cluster(cluster: Cluster, mut config: ProducerConfig) -> Result<Producer> {
        if config.batch_size == 0 || config.buffer_memory == 0 || config.max_request_size == 0 {
            return Err(ClientError::InvalidArgument(format!(
                "batch_size ({}), buffer_memory ({}) and max_request_size ({}) must be positive",
                config.batch_size, config.buffer_memory, config.max_request_size
            )));
        }
        if config.transactional_id.is_some() && config.acks != Acks::All {
            return Err(ClientError::InvalidArgument(
                "a transactional producer needs acks=all".to_owned(),
            ));
        }
        config.client = cluster.config().clone();
        let transactional_id = config.transactional_id.clone();
        let shared = Arc::new(Shared::new(cluster, config, random_seed()));
        let sender = tokio::spawn(sender::run(Arc::clone(&shared)));
        Ok(Producer {
            handle: Arc::new(Handle {
                shared,
                sender: tokio::sync::Mutex::new(Some(sender)),
                transaction: transactional_id
                    .map(|id| tokio::sync::Mutex::new(Transaction::new(id))),
            }),
        })
    }

    /// The cluster this producer sends to.
    pub fn cluster(&self) -> &Cluster {
        &self.handle.shared.cluster
    }

    /// The settings it runs with (`client` being the cluster's own).
    pub fn config(&self) -> &ProducerConfig {
        &self.handle.shared.config
    }

    /// Partitions and batches the record; waits for buffer space when the buffer is full
    /// (back-pressure), at most `max_block`. The future resolves when the broker acknowledges
    /// per `acks`, or with the error after retries or `delivery_timeout`.
    ///
    /// Fails at once, without sending, if the producer is closed
    /// ([`ClientError::Closed`]), the record cannot fit a request or the buffer, or names a
    /// partition the topic lacks ([`ClientError::InvalidArgument`]), or the topic's metadata
    /// cannot be had within `max_block`.
    pub async fn send(&self, record: ProduceRecord) -> Result<DeliveryFuture> {
        let shared = &self.handle.shared;
        // A send with cached metadata and buffer room never waits; a loop of them would keep
        // the sender task (and everything else on a current-thread runtime) from running.
        tokio::task::consume_budget().await;
        if shared.state().closed {
            return Err(ClientError::Closed);
        }
        let (partition, partition_count) = self.choose_partition(&record).await?;
        if self.handle.transaction.is_some() {
            self.add_to_transaction(&record.topic, partition).await?;
        }
        let ProduceRecord {
            topic,
            key,
            value,
            headers,
            timestamp_ms,
            ..
        } = record;
        let mut pending = ProducerRecord {
            key,
            value,
            headers,
            timestamp_ms,
        };
        let (answer, receiver) = oneshot::channel();
        let mut delivery = Delivery {
            sender: answer,
            timestamp_ms: 0,
            generation: 0,
        };
        // Read the clock for max_block only once a send has to wait: most never do.
        let mut blocked_until = None;
        // Registered for buffer releases only after a send found the buffer full (registering
        // takes the Notify's lock: too dear for every record); the append is then tried once
        // more before waiting, so a release in between is not missed.
        let mut released = std::pin::pin!(shared.memory_released.notified());
        let mut registered = false;
        loop {
            let now = now_ms();
            let appended = {
                let mut state = shared.state();
                if state.closed {
                    return Err(ClientError::Closed);
                }
                let generation = state.generation;
                delivery.timestamp_ms = pending.timestamp_ms.unwrap_or(now);
                delivery.generation = generation;
                let appended = state
                    .accumulator
                    .append(&topic, partition, pending, now, delivery);
                if appended.is_ok() {
                    *state
                        .incomplete_by_generation
                        .entry(generation)
                        .or_default() += 1;
                }
                appended
            };
            match appended {
                Ok(outcome) => {
                    if outcome.batch_is_full {
                        shared
                            .config
                            .partitioner
                            .on_new_batch(&topic, partition_count, partition);
                        shared
                            .sticky
                            .on_new_batch(&topic, partition_count, partition);
                    }
                    if outcome.batch_is_full || outcome.new_batch_created {
                        shared.wake_sender.notify_one();
                    }
                    return Ok(DeliveryFuture {
                        receiver,
                        partition,
                    });
                }
                Err(refused) => match refused.error {
                    AccumulatorError::BufferFull { .. } => {
                        pending = refused.record;
                        delivery = refused.delivery;
                        // The accumulator now counts as exhausted: the sender sends everything.
                        shared.wake_sender.notify_one();
                        if !registered {
                            released.as_mut().enable();
                            registered = true;
                            continue;
                        }
                        let until = *blocked_until.get_or_insert_with(|| {
                            tokio::time::Instant::now() + shared.config.max_block
                        });
                        if tokio::time::timeout_at(until, released.as_mut())
                            .await
                            .is_err()
                        {
                            return Err(ClientError::Timeout {
                                what: format!("buffer space for a record to topic {topic:?}"),
                                after: shared.config.max_block,
                            });
                        }
                        // Spent: the next wait needs a fresh registration.
                        released.set(shared.memory_released.notified());
                        registered = false;
                    }
                    AccumulatorError::RecordTooLarge { .. } => {
                        return Err(ClientError::InvalidArgument(format!(
                            "a record to topic {topic:?}: {}",
                            refused.error
                        )));
                    }
                },
            }
        }
    }

    /// [`Producer::send`], then waits for the acknowledgement.
    pub async fn send_and_wait(&self, record: ProduceRecord) -> Result<RecordMetadata> {
        self.send(record).await?.await
    }

    /// Sends every batch at once, linger or not, and waits until every record sent before
    /// this call is acknowledged or has failed (records sent meanwhile may be sent early, but
    /// are not waited for). Failures are reported by the records' own futures.
    pub async fn flush(&self) -> Result<()> {
        let shared = &self.handle.shared;
        let last_generation = {
            let mut state = shared.state();
            state.generation += 1;
            state.flushes_in_progress += 1;
            state.generation - 1
        };
        let _in_progress = FlushInProgress(shared);
        shared.wake_sender.notify_one();
        loop {
            let completed = shared.records_completed.notified();
            tokio::pin!(completed);
            completed.as_mut().enable();
            let done = shared
                .state()
                .incomplete_by_generation
                .range(..=last_generation)
                .next()
                .is_none();
            if done {
                return Ok(());
            }
            completed.await;
        }
    }

    /// Refuses further sends ([`ClientError::Closed`]), sends everything queued, waits until
    /// every record is acknowledged or has failed, and stops the sender task. Calling it
    /// again, or from a clone, waits for the same.
    pub async fn close(&self) -> Result<()> {
        self.handle.shared.begin_close();
        let mut sender = self.handle.sender.lock().await;
        if let Some(task) = sender.take() {
            task.await.map_err(|error| {
                ClientError::Protocol(format!("the producer's sender task failed: {error}"))
            })?;
        }
        Ok(())
    }

    /// The record's partition and the topic's partition count.
    async fn choose_partition(&self, record: &ProduceRecord) -> Result<(i32, i32)> {
        let shared = &self.handle.shared;
        let topic = record.topic.as_str();
        if topic.is_empty() {
            return Err(ClientError::InvalidArgument(
                "a record needs a topic".to_owned(),
            ));
        }
        let mut metadata = self.topic_metadata(topic, true).await?;
        if let Some(partition) = record.partition {
            if partition_count(&metadata) <= partition {
                // The topic may have grown since the metadata was cached.
                shared.cluster.invalidate(topic);
                metadata = self.topic_metadata(topic, false).await?;
            }
            let count = partition_count(&metadata);
            if !(0..count).contains(&partition) {
                return Err(ClientError::InvalidArgument(format!(
                    "partition {partition} of topic {topic:?}, which has {count} partitions"
                )));
            }
            return Ok((partition, count));
        }
        let count = partition_count(&metadata);
        let key = record.key.as_deref();
        match shared.config.partitioner.partition(topic, key, count) {
            PartitionChoice::Partition(partition) if (0..count).contains(&partition) => {
                Ok((partition, count))
            }
            PartitionChoice::Partition(partition) => Err(ClientError::InvalidArgument(format!(
                "the partitioner chose partition {partition} of topic {topic:?}, which has {count} partitions"
            ))),
            PartitionChoice::Sticky => Ok((shared.sticky.partition(topic, count), count)),
        }
    }

    /// The topic's metadata, cached or fresh. With `allow_stale`, metadata invalidated by
    /// the sender (after a failed send) is used as it is, as the Java producer partitions with
    /// stale metadata: `send` does not wait on a broker that is down. A topic the cluster does
    /// not know is asked for with auto-creation allowed, as Kafka's producer does, and waited
    /// for (within `max_block`) while the broker reports a retriable error for it or cannot
    /// be reached.
    async fn topic_metadata(&self, topic: &str, allow_stale: bool) -> Result<Arc<TopicMetadata>> {
        let shared = &self.handle.shared;
        if allow_stale {
            if let Some(metadata) = shared.cluster.known_topic(topic) {
                if partition_count(&metadata) > 0 {
                    return Ok(metadata);
                }
            }
        }
        let error = match shared.cluster.topic(topic).await {
            Ok(metadata) if partition_count(&metadata) > 0 => return Ok(metadata),
            Ok(_) => ClientError::broker(
                ResponseError::LeaderNotAvailable,
                Some("the topic has no partitions yet"),
                format!("topic {topic:?}"),
            ),
            Err(error) if error.is_retriable() => error,
            Err(error) => return Err(error),
        };
        tracing::debug!(topic, %error, "asking for the topic's metadata, auto-creation allowed");
        let deadline = tokio::time::Instant::now() + shared.config.max_block;
        let names = [topic.to_owned()];
        loop {
            // A broker that cannot be reached is waited for too, as Java's producer waits for
            // metadata up to max.block.ms.
            let error = match shared.cluster.metadata(Some(&names), true).await {
                Ok(all) => {
                    let found = all.into_iter().find(|metadata| metadata.name == topic);
                    let code = match found {
                        Some(metadata)
                            if metadata.error.is_none() && partition_count(&metadata) > 0 =>
                        {
                            return Ok(Arc::new(metadata));
                        }
                        Some(metadata) => {
                            metadata.error.unwrap_or(ResponseError::LeaderNotAvailable)
                        }
                        None => ResponseError::UnknownTopicOrPartition,
                    };
                    ClientError::broker(code, None, format!("topic {topic:?}"))
                }
                Err(error) => error,
            };
            if !error.is_retriable()
                || tokio::time::Instant::now() + shared.config.retry_backoff >= deadline
            {
                return Err(error);
            }
            tokio::time::sleep(shared.config.retry_backoff).await;
        }
    }
}

fn partition_count(metadata: &TopicMetadata) -> i32 {
    i32::try_from(metadata.partitions.len()).unwrap_or(i32::MAX)
}

/// Ends a flush's effect on the sender when the flush returns or is cancelled.
struct FlushInProgress<'a>(&'a Shared);

impl Drop for FlushInProgress<'_> {
    fn drop(&mut self) {
        self.0.state().flushes_in_progress -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_match_the_fields() {
        // Destructured without `..`: a new field fails to compile here until it is listed.
        let ProducerConfig {
            client: _,
            acks,
            linger,
            batch_size,
            buffer_memory,
            compression,
            max_request_size,
            delivery_timeout,
            retry_backoff,
            max_block,
            partitioner: _,
            enable_idempotence,
            transactional_id,
            transaction_timeout,
        } = ProducerConfig::new("h:1");
        let ms = |d: Duration| Some(SettingDoc::millis(d));
        let acks = match acks {
            Acks::None => "none",
            Acks::Leader => "leader",
            Acks::All => "all",
        };
        let actual = [
            ("client", None),
            ("acks", Some(acks.to_owned())),
            ("linger", ms(linger)),
            ("batch_size", Some(batch_size.to_string())),
            ("buffer_memory", Some(buffer_memory.to_string())),
            ("compression", Some(compression.to_string())),
            ("max_request_size", Some(max_request_size.to_string())),
            ("delivery_timeout", ms(delivery_timeout)),
            ("retry_backoff", ms(retry_backoff)),
            ("max_block", ms(max_block)),
            ("partitioner", None),
            ("enable_idempotence", Some(enable_idempotence.to_string())),
            (
                "transactional_id",
                Some(transactional_id.unwrap_or_default()),
            ),
            ("transaction_timeout", ms(transaction_timeout)),
        ];
        let problems = SettingDoc::mismatches(ProducerConfig::SETTINGS, &actual);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn acks_map_to_the_wire_values() {
        assert_eq!(
            [Acks::None, Acks::Leader, Acks::All].map(Acks::as_i16),
            [0, 1, -1]
        );
        assert_eq!(Acks::default(), Acks::All);
    }

    #[test]
    fn config_defaults_are_the_java_producers_but_for_the_batch_size() {
        let config = ProducerConfig::new("a:1");
        assert_eq!(config.acks, Acks::All);
        assert_eq!(config.linger, Duration::from_millis(5));
        assert_eq!(config.batch_size, 1_000_000);
        assert_eq!(config.buffer_memory, 32 * 1024 * 1024);
        assert_eq!(config.max_request_size, 1024 * 1024);
        assert_eq!(config.compression, Compression::None);
        assert_eq!(config.delivery_timeout, Duration::from_secs(120));
        assert_eq!(config.retry_backoff, Duration::from_millis(100));
        let accumulator = config.accumulator_config();
        assert_eq!(accumulator.linger_ms, 5);
        assert!(format!("{config:?}").contains("batch_size: 1000000"));
    }

    #[test]
    fn records_are_built_field_by_field() {
        let record = ProduceRecord::new("t")
            .key("k")
            .value(vec![1u8, 2])
            .header("h", Some("v"))
            .header("n", None::<Bytes>)
            .partition(3)
            .timestamp(42);
        assert_eq!(
            record,
            ProduceRecord {
                topic: "t".to_owned(),
                partition: Some(3),
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::from_static(&[1, 2])),
                headers: vec![
                    ("h".to_owned(), Some(Bytes::from_static(b"v"))),
                    ("n".to_owned(), None)
                ],
                timestamp_ms: Some(42),
            }
        );
    }

    #[test]
    fn typed_records_serialize_key_and_value() {
        let record = ProduceRecord::from_typed(
            "t",
            None::<&str>,
            &[1, 2, 3],
            &StringSerializer,
            &JsonSerializer,
        )
        .unwrap();
        assert_eq!(record.key, None);
        assert_eq!(record.value.as_deref(), Some(&b"[1,2,3]"[..]));
        let record = ProduceRecord::from_typed(
            "t",
            Some(&b"raw"[..]),
            "text",
            &BytesSerializer,
            &StringSerializer,
        )
        .unwrap();
        assert_eq!(record.key.as_deref(), Some(&b"raw"[..]));
        assert_eq!(record.value.as_deref(), Some(&b"text"[..]));
    }
}
