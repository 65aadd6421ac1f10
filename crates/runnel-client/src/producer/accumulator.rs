//! The record accumulator: the producer's bounded buffer of batches, one queue per partition.
//!
//! Records are encoded into the open batch of their partition as they arrive (uncompressed);
//! a batch is sent when it is full (`batch_size`), when it has waited `linger_ms`, when the
//! buffer is exhausted, or on flush. [`Accumulator::ready`] then compresses it into a
//! magic-v2 batch ready for a Produce request, with the per-record delivery tokens in offset
//! order. Per partition, batches leave in the order their records arrived.
//!
//! Memory is reserved per record (its encoded size, plus a batch header for each new batch)
//! against `buffer_memory`, and stays reserved while the batch is in flight: the caller hands
//! it back with [`Accumulator::release`] once the batch is acknowledged or has failed for
//! good. A full buffer is back-pressure ([`AccumulatorError::BufferFull`]): the record and its
//! delivery token come back to the caller, who waits for a release and tries again.
//!
//! This is a plain data structure: no I/O, no clock (time comes in as `now_ms`), no tasks.
//! The delivery token `D` is whatever the async layer completes when the batch's response
//! arrives (a oneshot sender, say); here it is only carried.
//!
//! ```
//! use runnel_client::producer::accumulator::{Accumulator, AccumulatorConfig, ProducerRecord};
//!
//! let mut accumulator = Accumulator::new(AccumulatorConfig { linger_ms: 5, ..Default::default() });
//! let record = ProducerRecord::new(Some("key"), Some("value"));
//! accumulator.append("orders", 3, record, 1_000, "delivery #1").unwrap();
//! assert!(accumulator.ready(1_004).is_empty());
//! assert_eq!(accumulator.next_ready_ms(), Some(1_005));
//!
//! let batches = accumulator.ready(1_005);
//! assert_eq!((batches[0].topic.as_str(), batches[0].partition), ("orders", 3));
//! assert_eq!(batches[0].deliveries, ["delivery #1"]);
//! let records = runnel_record::decode_records(&batches[0].batch).unwrap();
//! assert_eq!(records[0].value.as_deref(), Some(&b"value"[..]));
//!
//! // The broker acknowledged the batch: its memory is free again.
//! accumulator.release(batches[0].memory_bytes);
//! assert_eq!(accumulator.memory_used_bytes(), 0);
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use bytes::Bytes;
use runnel_record::{decode_records, BatchBuilder, Compression, Record, RecordBatch};

/// Limits and batching settings, named and defaulted as the Java producer's, except
/// `batch.size`: librdkafka's 1,000,000 bytes rather than Java's 16 KiB, which caps a
/// partition at 16 KiB per round trip (per request in flight) and makes the broker handle
/// sixty times the requests for the same bytes. Memory is reserved per record, not per batch,
/// so a larger batch size costs nothing while batches are small.
///
/// ```
/// use runnel_client::producer::accumulator::AccumulatorConfig;
/// use runnel_record::Compression;
///
/// let config = AccumulatorConfig::default();
/// assert_eq!(config.batch_size, 1_000_000); // batch.size
/// assert_eq!(config.linger_ms, 5); // linger.ms
/// assert_eq!(config.buffer_memory, 32 * 1024 * 1024); // buffer.memory
/// assert_eq!(config.max_request_size, 1024 * 1024); // max.request.size
/// assert_eq!(config.compression, Compression::None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccumulatorConfig {
    /// `batch.size`: most bytes (uncompressed, header included) one batch collects. A record
    /// larger than this travels alone in its own batch. Default 1,000,000 (librdkafka's).
    pub batch_size: usize,
    /// `linger.ms`: how long, in milliseconds, a batch that is not full waits for more
    /// records. Default 5.
    pub linger_ms: i64,
    /// `buffer.memory`: most bytes held by queued and in-flight batches together. Default
    /// 32 MiB.
    pub buffer_memory: usize,
    /// `compression.type`, applied to each batch's records. Default none.
    pub compression: Compression,
    /// `max.request.size`: the largest record accepted (as a batch of one). Batches are also
    /// kept below it. Default 1 MiB.
    pub max_request_size: usize,
}

impl Default for AccumulatorConfig {
    fn default() -> Self {
        AccumulatorConfig {
            batch_size: 1_000_000,
            linger_ms: 5,
            buffer_memory: 32 * 1024 * 1024,
            compression: Compression::None,
            max_request_size: 1024 * 1024,
        }
    }
}

/// One record as the accumulator takes it: topic and partition are already chosen.
///
/// ```
/// use bytes::Bytes;
/// use runnel_client::producer::accumulator::ProducerRecord;
///
/// let mut record = ProducerRecord::new(None::<Bytes>, Some("hello"));
/// record.headers.push(("trace-id".to_owned(), Some(Bytes::from_static(b"abc"))));
/// record.timestamp_ms = Some(1_700_000_000_000);
/// assert_eq!(record.key, None);
/// assert_eq!(record.value.as_deref(), Some(&b"hello"[..]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// The record key, or `None` for a null key (which Kafka's partitioners and compaction
    /// treat differently from an empty one).
    pub key: Option<Bytes>,
    /// The record value, or `None` for a null value: a tombstone on a compacted topic.
    pub value: Option<Bytes>,
    /// Record headers in order: a name (UTF-8) and an optional value. Names may repeat.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// CreateTime in milliseconds since the epoch; `None` takes the `now_ms` of the append.
    pub timestamp_ms: Option<i64>,
}

impl ProducerRecord {
    /// A record with this key and value, no headers, stamped at append time.
    pub fn new(key: Option<impl Into<Bytes>>, value: Option<impl Into<Bytes>>) -> Self {
        ProducerRecord {
            key: key.map(Into::into),
            value: value.map(Into::into),
            headers: Vec::new(),
            timestamp_ms: None,
        }
    }
}

/// What an append did to its partition's queue.
///
/// ```
/// use runnel_client::producer::accumulator::{Accumulator, AccumulatorConfig, ProducerRecord};
///
/// let mut accumulator = Accumulator::new(AccumulatorConfig::default());
/// let record = || ProducerRecord::new(Some("k"), Some("v"));
/// let first = accumulator.append("t", 0, record(), 0, ()).unwrap();
/// assert!(first.new_batch_created && !first.batch_is_full);
/// let second = accumulator.append("t", 0, record(), 0, ()).unwrap();
/// assert!(!second.new_batch_created);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The partition now holds a full batch (this record filled it, or did not fit and closed
    /// it). A sticky partitioner should move on: call `Partitioner::on_new_batch` with this
    /// partition.
    pub batch_is_full: bool,
    /// The record opened a new batch.
    pub new_batch_created: bool,
}

/// Why a record was not taken.
///
/// ```
/// use runnel_client::producer::accumulator::{
///     Accumulator, AccumulatorConfig, AccumulatorError, ProducerRecord,
/// };
///
/// let config = AccumulatorConfig { max_request_size: 100, ..Default::default() };
/// let mut accumulator = Accumulator::new(config);
/// let huge = ProducerRecord::new(None::<&'static [u8]>, Some(vec![0u8; 1_000]));
/// let refused = accumulator.append("t", 0, huge, 0, "token").unwrap_err();
/// assert!(matches!(refused.error, AccumulatorError::RecordTooLarge { limit_bytes: 100, .. }));
/// assert!(!refused.error.is_retriable());
/// assert_eq!(refused.delivery, "token");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccumulatorError {
    /// The buffer holds too much: wait until in-flight batches are released, then retry.
    #[error("producer buffer full: the record needs {needed_bytes} bytes, {available_bytes} of buffer.memory are free")]
    BufferFull {
        /// Bytes the record would take (a new batch's header included, if it opens one).
        needed_bytes: usize,
        /// Bytes of `buffer.memory` free now.
        available_bytes: usize,
    },
    /// The record can never be sent: as a batch of its own it is larger than `limit_bytes`
    /// (`max.request.size`, or `buffer.memory` if that is smaller).
    #[error(
        "record of {size_bytes} bytes (as a batch of one) exceeds the limit of {limit_bytes} bytes"
    )]
    RecordTooLarge {
        /// The record's size as a batch of one, header included.
        size_bytes: usize,
        /// The smaller of `max.request.size` and `buffer.memory`.
        limit_bytes: usize,
    },
}

impl AccumulatorError {
    /// Whether the same record can succeed later (after memory is released).
    pub fn is_retriable(&self) -> bool {
        matches!(self, AccumulatorError::BufferFull { .. })
    }
}

/// A refused append: why, and the record and delivery token handed back for a retry or for
/// reporting the failure.
///
/// ```
/// use runnel_client::producer::accumulator::{
///     Accumulator, AccumulatorConfig, AccumulatorError, ProducerRecord,
/// };
///
/// // Room for one small batch only.
/// let config = AccumulatorConfig { buffer_memory: 100, ..Default::default() };
/// let mut accumulator = Accumulator::new(config);
/// accumulator.append("t", 0, ProducerRecord::new(Some("k"), Some("v")), 0, 1).unwrap();
/// let refused = accumulator
///     .append("t", 1, ProducerRecord::new(Some("k"), Some("v")), 0, 2)
///     .unwrap_err();
/// assert!(matches!(refused.error, AccumulatorError::BufferFull { .. }));
/// assert!(refused.error.is_retriable());
/// // The record and its token come back, to be appended again after a release.
/// assert_eq!((refused.record.key.as_deref(), refused.delivery), (Some(&b"k"[..]), 2));
/// ```
pub struct AppendError<D> {
    /// Why the record was refused.
    pub error: AccumulatorError,
    /// The record, unchanged.
    pub record: ProducerRecord,
    /// The record's delivery token, unchanged.
    pub delivery: D,
}

impl<D> fmt::Debug for AppendError<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppendError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<D> fmt::Display for AppendError<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl<D> std::error::Error for AppendError<D> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// A batch to send: encoded and compressed, base offset 0, no producer id.
///
/// ```
/// use runnel_client::producer::accumulator::{Accumulator, AccumulatorConfig, ProducerRecord};
///
/// let mut accumulator = Accumulator::new(AccumulatorConfig::default());
/// for n in 0..3 {
///     accumulator.append("t", 2, ProducerRecord::new(Some("k"), Some("v")), 10, n).unwrap();
/// }
/// let [batch] = <[_; 1]>::try_from(accumulator.drain_all()).unwrap();
/// assert_eq!((batch.topic.as_str(), batch.partition, batch.record_count), ("t", 2, 3));
/// assert_eq!(batch.deliveries, [0, 1, 2]);
/// assert_eq!(batch.created_ms, 10);
/// assert_eq!(runnel_record::decode_records(&batch.batch).unwrap().len(), 3);
/// ```
#[derive(Debug)]
pub struct ReadyBatch<D> {
    /// The topic the batch is for.
    pub topic: String,
    /// The partition the batch is for.
    pub partition: i32,
    /// One whole magic-v2 record batch, as a Produce request's `records` carries it.
    pub batch: Bytes,
    /// How many records the batch holds.
    pub record_count: usize,
    /// One token per record, in offset order: record `i` gets offset `base_offset + i`.
    pub deliveries: Vec<D>,
    /// When the batch was opened.
    pub created_ms: i64,
    /// Buffer memory the batch holds; pass it to [`Accumulator::release`] once the batch is
    /// acknowledged or has failed for good.
    pub memory_bytes: usize,
}

impl<D> ReadyBatch<D> {
    /// Splits a batch the broker refused as too large (MESSAGE_TOO_LARGE) into two, the first
    /// and second halves of its records in order, each with its deliveries and a share of the
    /// buffer memory, as the Java producer does; the records keep their timestamps, keys,
    /// values, headers and the batch's codec. `Err(self)` for a single record (nothing smaller
    /// can be sent) or bytes that do not decode as the batch's records.
    pub fn split(self) -> Result<(ReadyBatch<D>, ReadyBatch<D>), ReadyBatch<D>> {
        if self.record_count < 2 || self.deliveries.len() != self.record_count {
            return Err(self);
        }
        let Ok(header) = RecordBatch::validate(&self.batch) else {
            return Err(self);
        };
        let records = match decode_records(&self.batch) {
            Ok(records) if records.len() == self.record_count => records,
            _ => return Err(self),
        };
        let codec = header.compression();
        let build = |records: &[Record]| -> Bytes {
            let base_timestamp = records.first().map_or(0, |record| record.timestamp);
            let mut builder = BatchBuilder::new(base_timestamp).compression(codec);
            for record in records {
                builder.push_record(
                    record.timestamp,
                    record.key.as_deref(),
                    record.value.as_deref(),
                    &record.headers,
                );
            }
            Bytes::from(builder.build())
        };
        let half = records.len() / 2;
        let mut first_deliveries = self.deliveries;
        let second_deliveries = first_deliveries.split_off(half);
        let first_memory = self.memory_bytes / 2;
        let first = ReadyBatch {
            topic: self.topic.clone(),
            partition: self.partition,
            batch: build(&records[..half]),
            record_count: half,
            deliveries: first_deliveries,
            created_ms: self.created_ms,
            memory_bytes: first_memory,
        };
        let second = ReadyBatch {
            topic: self.topic,
            partition: self.partition,
            batch: build(&records[half..]),
            record_count: records.len() - half,
            deliveries: second_deliveries,
            created_ms: self.created_ms,
            memory_bytes: self.memory_bytes - first_memory,
        };
        Ok((first, second))
    }
}

/// The producer's buffer: per-partition queues of batches. See the module documentation.
///
/// `D` is the delivery token carried for each record. Batches wait for `linger.ms` unless
/// they fill up first:
///
/// ```
/// use runnel_client::producer::accumulator::{Accumulator, AccumulatorConfig, ProducerRecord};
///
/// let config = AccumulatorConfig { linger_ms: 100, batch_size: 200, ..Default::default() };
/// let mut accumulator = Accumulator::new(config);
/// let mut full = false;
/// let mut n = 0;
/// while !full {
///     let record = ProducerRecord::new(Some("key"), Some("a value of some length"));
///     full = accumulator.append("t", 0, record, 0, n).unwrap().batch_is_full;
///     n += 1;
/// }
/// // The last record did not fit: it opened a new batch and closed the full one, which is
/// // due at once instead of after 100 ms.
/// assert_eq!(accumulator.next_ready_ms(), Some(0));
/// let batches = accumulator.ready(0);
/// assert_eq!(batches.len(), 1);
/// assert_eq!(batches[0].record_count, n - 1);
/// // The new batch lingers.
/// assert_eq!(accumulator.next_ready_ms(), Some(100));
/// accumulator.release(batches[0].memory_bytes);
/// ```
#[derive(Debug)]
pub struct Accumulator<D> {
    config: AccumulatorConfig,
    /// Ordered maps, so batches come out of `ready` in a reproducible order.
    queues_by_topic: BTreeMap<String, BTreeMap<i32, VecDeque<OpenBatch<D>>>>,
    queued_batches: usize,
    queued_memory_bytes: usize,
    in_flight_memory_bytes: usize,
    /// An append was refused for lack of memory since the last drain: send everything.
    exhausted: bool,
}

#[derive(Debug)]
struct OpenBatch<D> {
    builder: BatchBuilder,
    deliveries: Vec<D>,
    created_ms: i64,
    /// A record did not fit; nothing more goes in.
    closed: bool,
}

impl<D> OpenBatch<D> {
    fn memory_bytes(&self) -> usize {
        self.builder.uncompressed_len()
    }
}

impl<D> Accumulator<D> {
    /// An empty buffer with these limits.
    pub fn new(config: AccumulatorConfig) -> Self {
        Accumulator {
            config,
            queues_by_topic: BTreeMap::new(),
            queued_batches: 0,
            queued_memory_bytes: 0,
            in_flight_memory_bytes: 0,
            exhausted: false,
        }
    }

    /// The limits it was built with.
    pub fn config(&self) -> &AccumulatorConfig {
        &self.config
    }

    /// Most bytes a batch collects before it is full.
    fn batch_limit(&self) -> usize {
        self.config.batch_size.min(self.config.max_request_size)
    }

    /// Adds `record` to the open batch of `topic`/`partition`, or to a new one if there is
    /// none or it has no room. `now_ms` stamps a record without a timestamp and dates a new
    /// batch for `linger_ms`.
    #[expect(
        clippy::result_large_err,
        reason = "a refused append hands the record back; it is moved, never copied byte by byte"
    )]
    pub fn append(
        &mut self,
        topic: &str,
        partition: i32,
        record: ProducerRecord,
        now_ms: i64,
        delivery: D,
    ) -> Result<AppendOutcome, AppendError<D>> {
        let timestamp = record.timestamp_ms.unwrap_or(now_ms);
        let key = record.key.as_deref();
        let value = record.value.as_deref();
        let headers = record.headers.as_slice();

        let fresh = BatchBuilder::new(timestamp).compression(self.config.compression);
        let alone_bytes =
            fresh.uncompressed_len() + fresh.record_encoded_len(timestamp, key, value, headers);
        let limit_bytes = self.config.max_request_size.min(self.config.buffer_memory);
        if alone_bytes > limit_bytes {
            return Err(AppendError {
                error: AccumulatorError::RecordTooLarge {
                    size_bytes: alone_bytes,
                    limit_bytes,
                },
                record,
                delivery,
            });
        }

        let batch_limit = self.batch_limit();
        let available_bytes = self.config.buffer_memory - self.memory_used_bytes();
        let queue = queue_mut(&mut self.queues_by_topic, topic, partition);

        // Whether this append completes a batch: the signal a sticky partitioner moves on by
        // (KIP-480). Only the append that fills or closes a batch reports it, not every append
        // while a full batch waits for the sender, or null-key records would hop partitions on
        // almost every send in a tight loop.
        let mut closed_previous = false;
        if let Some(open) = queue.back_mut().filter(|batch| !batch.closed) {
            let record_bytes = open
                .builder
                .record_encoded_len(timestamp, key, value, headers);
            if open.memory_bytes() + record_bytes <= batch_limit {
                if record_bytes > available_bytes {
                    self.exhausted = true;
                    return Err(AppendError {
                        error: AccumulatorError::BufferFull {
                            needed_bytes: record_bytes,
                            available_bytes,
                        },
                        record,
                        delivery,
                    });
                }
                open.builder.push_record(timestamp, key, value, headers);
                open.deliveries.push(delivery);
                let batch_is_full = open.memory_bytes() >= batch_limit;
                self.queued_memory_bytes += record_bytes;
                return Ok(AppendOutcome {
                    batch_is_full,
                    new_batch_created: false,
                });
            }
            // No room: the batch is complete, and can be sent without waiting for linger.
            open.closed = true;
            closed_previous = true;
        }

        if alone_bytes > available_bytes {
            self.exhausted = true;
            return Err(AppendError {
                error: AccumulatorError::BufferFull {
                    needed_bytes: alone_bytes,
                    available_bytes,
                },
                record,
                delivery,
            });
        }
        let mut builder = fresh;
        builder.push_record(timestamp, key, value, headers);
        debug_assert_eq!(builder.uncompressed_len(), alone_bytes);
        queue.push_back(OpenBatch {
            builder,
            deliveries: vec![delivery],
            created_ms: now_ms,
            closed: false,
        });
        let batch_is_full = alone_bytes >= batch_limit || closed_previous;
        self.queued_batches += 1;
        self.queued_memory_bytes += alone_bytes;
        Ok(AppendOutcome {
            batch_is_full,
            new_batch_created: true,
        })
    }

    /// Takes out the batches due by `now_ms`, encoded: full ones, those that lingered
    /// `linger_ms`, and all of them if an append was refused for lack of memory. Per partition
    /// they come in append order, and a batch is only taken after those before it.
    pub fn ready(&mut self, now_ms: i64) -> Vec<ReadyBatch<D>> {
        let drain_everything = std::mem::take(&mut self.exhausted);
        self.take_batches(|accumulator, batch, queue_len| {
            drain_everything || accumulator.is_sendable(batch, queue_len, now_ms)
        })
    }

    /// Takes out every batch, due or not: for `flush()` and for closing the producer.
    pub fn drain_all(&mut self) -> Vec<ReadyBatch<D>> {
        self.exhausted = false;
        self.take_batches(|_, _, _| true)
    }

    /// When [`ready`](Self::ready) will next return something: the earliest time a queued
    /// batch becomes due (a time at or before now means at once), or `None` when nothing is
    /// queued.
    pub fn next_ready_ms(&self) -> Option<i64> {
        self.queues_by_topic
            .values()
            .flat_map(BTreeMap::values)
            .filter_map(|queue| {
                let front = queue.front()?;
                Some(if self.exhausted || self.is_full(front, queue.len()) {
                    front.created_ms
                } else {
                    front.created_ms.saturating_add(self.config.linger_ms)
                })
            })
            .min()
    }

    /// Returns the memory of a batch taken out by `ready` or `drain_all`
    /// ([`ReadyBatch::memory_bytes`]), once it is acknowledged or has failed for good.
    ///
    /// # Panics
    /// If more is released than batches taken out hold: a bug in the caller.
    pub fn release(&mut self, bytes: usize) {
        assert!(
            bytes <= self.in_flight_memory_bytes,
            "released {bytes} bytes but only {} are in flight",
            self.in_flight_memory_bytes
        );
        self.in_flight_memory_bytes -= bytes;
    }

    /// No batch is queued (batches taken out but not released do not count).
    pub fn is_empty(&self) -> bool {
        self.queued_batches == 0
    }

    /// Buffer memory held by queued and in-flight batches.
    pub fn memory_used_bytes(&self) -> usize {
        self.queued_memory_bytes + self.in_flight_memory_bytes
    }

    fn is_full(&self, batch: &OpenBatch<D>, queue_len: usize) -> bool {
        batch.closed || queue_len > 1 || batch.memory_bytes() >= self.batch_limit()
    }

    fn is_sendable(&self, batch: &OpenBatch<D>, queue_len: usize, now_ms: i64) -> bool {
        self.is_full(batch, queue_len)
            || now_ms >= batch.created_ms.saturating_add(self.config.linger_ms)
    }

    fn take_batches(
        &mut self,
        mut due: impl FnMut(&Self, &OpenBatch<D>, usize) -> bool,
    ) -> Vec<ReadyBatch<D>> {
        let mut taken = Vec::new();
        let mut queues_by_topic = std::mem::take(&mut self.queues_by_topic);
        for (topic, queues) in &mut queues_by_topic {
            for (&partition, queue) in queues.iter_mut() {
                while let Some(front) = queue.front() {
                    if !due(self, front, queue.len()) {
                        break;
                    }
                    let Some(batch) = queue.pop_front() else {
                        break;
                    };
                    taken.push(self.finish(topic, partition, batch));
                }
            }
        }
        self.queues_by_topic = queues_by_topic;
        taken
    }

    fn finish(&mut self, topic: &str, partition: i32, batch: OpenBatch<D>) -> ReadyBatch<D> {
        let memory_bytes = batch.memory_bytes();
        let record_count = batch.deliveries.len();
        debug_assert_eq!(batch.builder.record_count() as usize, record_count);
        self.queued_batches -= 1;
        self.queued_memory_bytes -= memory_bytes;
        self.in_flight_memory_bytes += memory_bytes;
        ReadyBatch {
            topic: topic.to_owned(),
            partition,
            batch: Bytes::from(batch.builder.build()),
            record_count,
            deliveries: batch.deliveries,
            created_ms: batch.created_ms,
            memory_bytes,
        }
    }
}

/// The queue of one partition, created on first use; allocates the topic name only then.
fn queue_mut<'a, D>(
    queues_by_topic: &'a mut BTreeMap<String, BTreeMap<i32, VecDeque<OpenBatch<D>>>>,
    topic: &str,
    partition: i32,
) -> &'a mut VecDeque<OpenBatch<D>> {
    if !queues_by_topic.contains_key(topic) {
        queues_by_topic.insert(topic.to_owned(), BTreeMap::new());
    }
    queues_by_topic
        .get_mut(topic)
        .expect("inserted above")
        .entry(partition)
        .or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config() -> AccumulatorConfig {
        AccumulatorConfig {
            batch_size: 1_000,
            linger_ms: 10,
            buffer_memory: 10_000,
            compression: Compression::None,
            max_request_size: 5_000,
        }
    }

    fn value(len: usize) -> ProducerRecord {
        ProducerRecord::new(None::<Bytes>, Some(vec![b'v'; len]))
    }

    #[test]
    fn a_batch_too_large_splits_into_halves_that_keep_every_record() {
        let mut accumulator = Accumulator::new(AccumulatorConfig {
            compression: Compression::Lz4,
            ..config()
        });
        for id in 0..5u32 {
            let mut record = ProducerRecord::new(
                Some(Bytes::from(format!("k{id}"))),
                Some(vec![b'v'; 20 + id as usize]),
            );
            record.headers = vec![("h".to_string(), Some(Bytes::from(vec![id as u8])))];
            record.timestamp_ms = Some(1_000 + i64::from(id));
            accumulator.append("t", 3, record, 100, id).unwrap();
        }
        let mut batches = accumulator.ready(110);
        let whole = batches.remove(0);
        let original = decode_records(&whole.batch).unwrap();
        let memory = whole.memory_bytes;
        let (first, second) = whole.split().unwrap_or_else(|_| panic!("splits"));
        assert_eq!((first.record_count, second.record_count), (2, 3));
        assert_eq!(
            (first.deliveries.clone(), second.deliveries.clone()),
            (vec![0, 1], vec![2, 3, 4])
        );
        assert_eq!(first.memory_bytes + second.memory_bytes, memory);
        assert_eq!((first.partition, second.created_ms), (3, 100));
        for half in [&first, &second] {
            let header = RecordBatch::validate(&half.batch).unwrap();
            assert_eq!(header.compression(), Compression::Lz4, "the codec is kept");
        }
        let mut rejoined = decode_records(&first.batch).unwrap();
        let second_records = decode_records(&second.batch).unwrap();
        rejoined.extend(second_records);
        let strip = |records: Vec<runnel_record::Record>| {
            records
                .into_iter()
                .map(|r| (r.timestamp, r.key, r.value, r.headers))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(rejoined), strip(original));

        // One record cannot be split.
        let (single, _) = first
            .split()
            .unwrap_or_else(|_| panic!("two records split"));
        assert!(single.split().is_err());
    }

    #[test]
    fn a_batch_waits_for_linger_then_goes() {
        let mut accumulator = Accumulator::new(config());
        assert_eq!(accumulator.next_ready_ms(), None);
        let outcome = accumulator.append("t", 0, value(10), 100, 1).unwrap();
        assert_eq!(
            outcome,
            AppendOutcome {
                batch_is_full: false,
                new_batch_created: true
            }
        );
        let outcome = accumulator.append("t", 0, value(10), 105, 2).unwrap();
        assert!(!outcome.new_batch_created);
        assert_eq!(accumulator.next_ready_ms(), Some(110));
        assert!(accumulator.ready(109).is_empty());
        let batches = accumulator.ready(110);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].deliveries, [1, 2]);
        assert_eq!(batches[0].record_count, 2);
        assert_eq!(batches[0].created_ms, 100);
        assert!(accumulator.is_empty());
        assert_eq!(accumulator.next_ready_ms(), None);
        assert_eq!(accumulator.memory_used_bytes(), batches[0].memory_bytes);
        accumulator.release(batches[0].memory_bytes);
        assert_eq!(accumulator.memory_used_bytes(), 0);
    }

    #[test]
    fn only_the_append_that_completes_a_batch_reports_it() {
        // Regression: while a closed batch waited for the sender, every later append reported
        // a full batch, so the sticky partitioner hopped partitions on almost every record.
        let mut accumulator = Accumulator::new(config());
        let full: Vec<bool> = (0..30)
            .map(|id| {
                accumulator
                    .append("t", 0, value(100), 0, id)
                    .unwrap()
                    .batch_is_full
            })
            .collect();
        // Eight 100-byte records fill a 1000-byte batch: three batches complete in 30 records,
        // each reported once, by the record that closes it.
        let reports = full.iter().filter(|full| **full).count();
        assert_eq!(reports, 3, "{full:?}");
        assert!(
            full.windows(2).all(|pair| !(pair[0] && pair[1])),
            "{full:?}"
        );
    }

    #[test]
    fn a_full_batch_goes_at_once_and_the_next_record_starts_another() {
        let mut accumulator = Accumulator::new(config());
        let mut outcomes = Vec::new();
        for id in 0..12 {
            outcomes.push(accumulator.append("t", 0, value(100), 0, id).unwrap());
        }
        // 61 + 9 * ~106 fits in 1000; the tenth record closes the batch.
        let first_new = outcomes
            .iter()
            .skip(1)
            .position(|o| o.new_batch_created)
            .unwrap()
            + 1;
        assert!(outcomes[first_new].batch_is_full);
        assert!(outcomes[..first_new].iter().all(|o| !o.batch_is_full));
        assert_eq!(accumulator.next_ready_ms(), Some(0));
        let batches = accumulator.ready(0);
        assert_eq!(batches.len(), 1, "the open second batch waits for linger");
        assert_eq!(
            batches[0].deliveries,
            (0..first_new as u64).collect::<Vec<_>>()
        );
        assert!(batches[0].memory_bytes <= 1_000);
        assert_eq!(
            RecordBatch::validate(&batches[0].batch)
                .unwrap()
                .records_count as usize,
            first_new
        );
        let rest = accumulator.drain_all();
        assert_eq!(
            rest[0].deliveries,
            (first_new as u64..12).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_record_larger_than_batch_size_goes_alone() {
        let mut accumulator = Accumulator::new(config());
        accumulator.append("t", 0, value(10), 0, 1).unwrap();
        let outcome = accumulator.append("t", 0, value(2_000), 0, 2).unwrap();
        assert_eq!(
            outcome,
            AppendOutcome {
                batch_is_full: true,
                new_batch_created: true
            }
        );
        accumulator.append("t", 0, value(10), 0, 3).unwrap();
        let batches = accumulator.ready(0);
        let deliveries: Vec<_> = batches.iter().map(|b| b.deliveries.clone()).collect();
        assert_eq!(
            deliveries,
            [vec![1], vec![2]],
            "the third, in an open batch, lingers"
        );
        assert!(batches[1].memory_bytes > 2_000);
        assert_eq!(accumulator.ready(10)[0].deliveries, [3]);
    }

    #[test]
    fn too_large_records_are_refused_and_handed_back() {
        let mut accumulator = Accumulator::new(config());
        let refused = accumulator.append("t", 0, value(5_000), 0, 7).unwrap_err();
        assert!(matches!(
            refused.error,
            AccumulatorError::RecordTooLarge { limit_bytes: 5_000, size_bytes } if size_bytes > 5_000
        ));
        assert!(!refused.error.is_retriable());
        let AccumulatorError::RecordTooLarge { size_bytes, .. } = refused.error else {
            unreachable!()
        };
        assert_eq!(
            refused.to_string(),
            format!(
                "record of {size_bytes} bytes (as a batch of one) exceeds the limit of 5000 bytes"
            )
        );
        assert_eq!((refused.delivery, refused.record), (7, value(5_000)));
        assert!(accumulator.is_empty());
        assert_eq!(accumulator.memory_used_bytes(), 0);
    }

    #[test]
    fn a_full_buffer_pushes_back_until_memory_is_released() {
        let mut accumulator = Accumulator::new(AccumulatorConfig {
            linger_ms: 1_000_000,
            ..config()
        });
        let mut id = 0;
        let refused = loop {
            match accumulator.append("t", id % 4, value(500), 0, id) {
                Ok(_) => id += 1,
                Err(refused) => break refused,
            }
        };
        assert!(refused.error.is_retriable());
        assert!(accumulator.memory_used_bytes() <= 10_000);
        // Exhaustion makes everything due, whatever the linger.
        assert_eq!(accumulator.next_ready_ms(), Some(0));
        let batches = accumulator.ready(1);
        assert!(accumulator.is_empty());
        assert_eq!(
            batches.iter().map(|b| b.record_count).sum::<usize>(),
            id as usize
        );
        // Still in flight: still no room.
        let refused = accumulator
            .append("t", 0, refused.record, 2, refused.delivery)
            .unwrap_err();
        for batch in &batches {
            accumulator.release(batch.memory_bytes);
        }
        accumulator
            .append("t", 0, refused.record, 3, refused.delivery)
            .unwrap();
        assert_eq!(accumulator.drain_all()[0].deliveries, [id]);
    }

    #[test]
    fn drain_all_takes_open_batches_of_every_partition() {
        let mut accumulator = Accumulator::new(config());
        accumulator.append("b", 1, value(1), 0, 1).unwrap();
        accumulator.append("a", 2, value(1), 0, 2).unwrap();
        accumulator.append("a", 0, value(1), 0, 3).unwrap();
        let batches = accumulator.drain_all();
        let order: Vec<_> = batches
            .iter()
            .map(|b| (b.topic.as_str(), b.partition))
            .collect();
        assert_eq!(order, [("a", 0), ("a", 2), ("b", 1)]);
        assert!(accumulator.is_empty());
        assert!(accumulator.drain_all().is_empty());
    }

    #[test]
    fn records_without_a_timestamp_take_the_append_time() {
        let mut accumulator = Accumulator::new(config());
        let mut stamped = value(1);
        stamped.timestamp_ms = Some(42);
        accumulator.append("t", 0, value(1), 1_000, ()).unwrap();
        accumulator.append("t", 0, stamped, 1_003, ()).unwrap();
        let batch = &accumulator.drain_all()[0];
        let records = decode_records(&batch.batch).unwrap();
        assert_eq!(records[0].timestamp, 1_000);
        assert_eq!(records[1].timestamp, 42);
        let header = RecordBatch::validate(&batch.batch).unwrap();
        assert_eq!(
            (header.base_timestamp, header.max_timestamp),
            (1_000, 1_000)
        );
    }

    #[test]
    fn batches_are_compressed_with_the_configured_codec() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut accumulator = Accumulator::new(AccumulatorConfig {
                compression: codec,
                ..config()
            });
            for id in 0..5 {
                accumulator.append("t", 0, value(100), 0, id).unwrap();
            }
            let batch = &accumulator.drain_all()[0];
            let header = RecordBatch::validate(&batch.batch).unwrap();
            assert_eq!(header.compression(), codec);
            assert!(batch.batch.len() < batch.memory_bytes, "{codec}");
            assert_eq!(decode_records(&batch.batch).unwrap().len(), 5);
        }
    }

    #[test]
    #[should_panic(expected = "in flight")]
    fn releasing_more_than_in_flight_is_a_bug() {
        let mut accumulator = Accumulator::<()>::new(config());
        accumulator.release(1);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Append {
            topic: usize,
            partition: i32,
            record: ProducerRecord,
        },
        Tick(i64),
        Ready,
        Release,
    }

    fn record() -> impl Strategy<Value = ProducerRecord> {
        (
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
            proptest::option::of(prop_oneof![
                8 => proptest::collection::vec(0u8..4, 0..400),
                1 => proptest::collection::vec(0u8..4, 900..3_000),
            ]),
            proptest::collection::vec(
                (
                    "[a-z]{1,6}",
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
                ),
                0..3,
            ),
            proptest::option::of(0i64..1_000_000),
        )
            .prop_map(|(key, value, headers, timestamp_ms)| ProducerRecord {
                key: key.map(Bytes::from),
                value: value.map(Bytes::from),
                headers: headers
                    .into_iter()
                    .map(|(name, value)| (name, value.map(Bytes::from)))
                    .collect(),
                timestamp_ms,
            })
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            8 => (0usize..2, 0i32..3, record())
                .prop_map(|(topic, partition, record)| Step::Append { topic, partition, record }),
            2 => (0i64..8).prop_map(Step::Tick),
            2 => Just(Step::Ready),
            1 => Just(Step::Release),
        ]
    }

    const TOPICS: [&str; 2] = ["alpha", "beta"];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn every_record_is_delivered_once_in_order_and_memory_returns(
            steps in proptest::collection::vec(step(), 1..120),
            batch_size in 100usize..3_000,
            linger_ms in 0i64..20,
            buffer_memory in 2_000usize..20_000,
            codec in proptest::sample::select(vec![
                Compression::None, Compression::Gzip, Compression::Snappy,
                Compression::Lz4, Compression::Zstd,
            ]),
        ) {
            let config = AccumulatorConfig {
                batch_size,
                linger_ms,
                buffer_memory,
                compression: codec,
                max_request_size: 2_500,
            };
            let mut accumulator = Accumulator::new(config.clone());
            let mut now_ms = 0i64;
            let mut next_id = 0u64;
            // Every accepted record, by delivery id: where it went and what it was.
            let mut appended: Vec<Option<(usize, i32, ProducerRecord, i64)>> = Vec::new();
            let mut delivered = vec![false; 0];
            let mut in_flight: Vec<ReadyBatch<u64>> = Vec::new();
            let mut last_id_by_partition = BTreeMap::new();

            let mut check = |batches: Vec<ReadyBatch<u64>>,
                             appended: &Vec<Option<(usize, i32, ProducerRecord, i64)>>,
                             delivered: &mut Vec<bool>,
                             in_flight: &mut Vec<ReadyBatch<u64>>|
             -> Result<(), TestCaseError> {
                for batch in batches {
                    prop_assert_eq!(batch.record_count, batch.deliveries.len());
                    prop_assert!(batch.record_count >= 1);
                    prop_assert!(
                        batch.memory_bytes <= config.batch_size.min(config.max_request_size)
                            || batch.record_count == 1,
                        "batch of {} records holds {} bytes", batch.record_count, batch.memory_bytes
                    );
                    let header = RecordBatch::validate(&batch.batch).unwrap();
                    prop_assert_eq!(header.compression(), codec);
                    let records = decode_records(&batch.batch).unwrap();
                    prop_assert_eq!(records.len(), batch.record_count);
                    for (decoded, &id) in records.iter().zip(&batch.deliveries) {
                        let (topic, partition, record, timestamp) =
                            appended[id as usize].clone().unwrap();
                        prop_assert_eq!(TOPICS[topic], batch.topic.as_str());
                        prop_assert_eq!(partition, batch.partition);
                        prop_assert!(!delivered[id as usize], "delivered twice: {}", id);
                        delivered[id as usize] = true;
                        let last = last_id_by_partition.insert((topic, partition), id);
                        prop_assert!(last < Some(id), "out of order on {:?}", (topic, partition));
                        prop_assert_eq!(decoded.key.as_deref(), record.key.as_deref());
                        prop_assert_eq!(decoded.value.as_deref(), record.value.as_deref());
                        prop_assert_eq!(decoded.timestamp, timestamp);
                        let headers: Vec<_> = record
                            .headers
                            .iter()
                            .map(|(name, value)| (name.clone(), value.as_ref().map(|v| v.to_vec())))
                            .collect();
                        prop_assert_eq!(&decoded.headers, &headers);
                    }
                    in_flight.push(batch);
                }
                Ok(())
            };

            for step in steps {
                match step {
                    Step::Append { topic, partition, record } => {
                        let id = next_id;
                        next_id += 1;
                        appended.push(None);
                        delivered.push(false);
                        let timestamp = record.timestamp_ms.unwrap_or(now_ms);
                        let mut attempt = accumulator.append(TOPICS[topic], partition, record.clone(), now_ms, id);
                        if let Err(AppendError { error: AccumulatorError::BufferFull { .. }, record, delivery }) = attempt {
                            // Back-pressure: what is due goes out, acknowledgements free memory.
                            let batches = accumulator.ready(now_ms);
                            check(batches, &appended, &mut delivered, &mut in_flight)?;
                            for batch in in_flight.drain(..) {
                                accumulator.release(batch.memory_bytes);
                            }
                            attempt = accumulator.append(TOPICS[topic], partition, record, now_ms, delivery);
                            prop_assert!(
                                !matches!(&attempt, Err(e) if e.error.is_retriable()),
                                "still full with nothing in flight and the buffer drained"
                            );
                        }
                        match attempt {
                            Ok(_) => appended[id as usize] = Some((topic, partition, record, timestamp)),
                            Err(refused) => {
                                prop_assert!(
                                    matches!(refused.error, AccumulatorError::RecordTooLarge { .. }),
                                    "{}", refused.error
                                );
                                prop_assert_eq!(refused.delivery, id);
                            }
                        }
                        prop_assert!(accumulator.memory_used_bytes() <= config.buffer_memory);
                    }
                    Step::Tick(ms) => now_ms += ms,
                    Step::Ready => {
                        let due = accumulator.next_ready_ms();
                        let batches = accumulator.ready(now_ms);
                        prop_assert_eq!(!batches.is_empty(), due.is_some_and(|due| due <= now_ms));
                        check(batches, &appended, &mut delivered, &mut in_flight)?;
                    }
                    Step::Release => {
                        for batch in in_flight.drain(..) {
                            accumulator.release(batch.memory_bytes);
                        }
                    }
                }
            }
            let batches = accumulator.drain_all();
            check(batches, &appended, &mut delivered, &mut in_flight)?;
            prop_assert!(accumulator.is_empty());
            for batch in in_flight.drain(..) {
                accumulator.release(batch.memory_bytes);
            }
            prop_assert_eq!(accumulator.memory_used_bytes(), 0);
            for (id, record) in appended.iter().enumerate() {
                prop_assert_eq!(record.is_some(), delivered[id], "record {}", id);
            }
        }
    }
}
