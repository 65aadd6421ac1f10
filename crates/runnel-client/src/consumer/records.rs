//! Turning one partition's records from a fetch response into [`ConsumerRecord`]s.
//!
//! A fetch answers with whole batches as the broker stored them, starting at the batch that
//! holds the fetch offset and possibly ending in a batch cut short by the size limits.
//! [`records_from_fetch`] walks them in order and:
//!
//! - checks each batch's CRC (Kafka's `check.crcs`, on by default) and decodes its records,
//!   decompressing if needed (every codec; output capped);
//! - drops records below the fetch offset (a fetch can start mid-batch);
//! - drops control batches (transaction markers);
//! - under `read_committed`, drops the batches of aborted transactions, known from the aborted
//!   transactions list of the response exactly as Kafka's consumer does: a producer id joins the
//!   aborted set when the walk reaches the first offset of one of its aborted transactions, and
//!   leaves it at that producer's ABORT marker;
//! - stops at a truncated last batch, which is not an error: the next fetch starts there.
//!
//! [`FetchedRecords::next_fetch_offset`] is the offset after the last whole batch walked,
//! whether or not any of its records were returned, so a position advances past markers and
//! aborted data. It does no I/O and keeps no state between calls.
//!
//! ```
//! use runnel_client::consumer::records::{records_from_fetch, IsolationLevel};
//! use runnel_record::{BatchBuilder, RecordBatch};
//!
//! let mut batch = BatchBuilder::new(1_700_000_000_000)
//!     .record(None, Some(b"first"), &[])
//!     .record(None, Some(b"second"), &[])
//!     .build();
//! RecordBatch::set_base_offset(&mut batch, 10);
//! // The consumer's position is 11: the fetch returns the batch from 10.
//! let fetched = records_from_fetch("orders", 0, 11, &batch, IsolationLevel::ReadCommitted, &[]).unwrap();
//! assert_eq!(fetched.records.len(), 1);
//! assert_eq!(fetched.records[0].offset, 11);
//! assert_eq!(fetched.records[0].value.as_deref(), Some(&b"second"[..]));
//! assert_eq!(fetched.next_fetch_offset, 12);
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use runnel_record::{decode_records, RecordBatch, RecordBatchHeader, RecordError, TimestampType};

/// Which records of transactional producers a consumer sees (Kafka's `isolation.level`).
///
/// ```
/// use runnel_client::{ConsumerConfig, IsolationLevel};
///
/// assert_eq!(IsolationLevel::default(), IsolationLevel::ReadUncommitted);
/// assert_eq!(IsolationLevel::ReadCommitted.as_i8(), 1);
/// let mut config = ConsumerConfig::new("localhost:9092");
/// config.isolation_level = IsolationLevel::ReadCommitted; // skip aborted transactions
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IsolationLevel {
    /// Everything, including records of open and aborted transactions.
    #[default]
    ReadUncommitted,
    /// Only committed records; the broker stops at the last stable offset.
    ReadCommitted,
}

impl IsolationLevel {
    /// The `isolation_level` field of a Fetch or ListOffsets request.
    pub fn as_i8(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// One record, as the application receives it.
///
/// ```
/// use runnel_client::consumer::records::{records_from_fetch, IsolationLevel};
/// use runnel_record::{BatchBuilder, RecordBatch, TimestampType};
///
/// let mut batch = BatchBuilder::new(1_700_000_000_000)
///     .record(Some(b"customer-7"), Some(b"placed"), &[(b"trace-id", Some(b"abc"))])
///     .build();
/// RecordBatch::set_base_offset(&mut batch, 41);
/// RecordBatch::set_partition_leader_epoch(&mut batch, 2);
/// let isolation = IsolationLevel::ReadUncommitted;
/// let fetched = records_from_fetch("orders", 3, 41, &batch, isolation, &[])?;
///
/// let record = &fetched.records[0];
/// assert_eq!((&*record.topic, record.partition, record.offset), ("orders", 3, 41));
/// assert_eq!(record.key.as_deref(), Some(&b"customer-7"[..]));
/// assert_eq!(record.headers[0].0, "trace-id");
/// assert_eq!(record.timestamp, 1_700_000_000_000);
/// assert_eq!(record.timestamp_type, TimestampType::CreateTime);
/// assert_eq!(record.leader_epoch, Some(2));
/// # Ok::<(), runnel_record::RecordError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Shared by every record of one fetch.
    pub topic: Arc<str>,
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Milliseconds since the epoch; the broker's when `timestamp_type` is LogAppendTime.
    pub timestamp: i64,
    /// Whether `timestamp` is the producer's CreateTime or the broker's LogAppendTime (the
    /// topic's `message.timestamp.type`).
    pub timestamp_type: TimestampType,
    /// The record key; `None` for a null key.
    pub key: Option<Bytes>,
    /// The record value; `None` for a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Record headers in the order the producer wrote them.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// The leader epoch the record was appended under, if the producer's broker recorded one.
    pub leader_epoch: Option<i32>,
}

/// The records of one partition's fetch, and where the next fetch starts.
///
/// ```
/// use runnel_client::consumer::records::{records_from_fetch, IsolationLevel};
/// use runnel_record::{BatchBuilder, RecordBatch};
///
/// let mut first = BatchBuilder::new(0).record(None, Some(b"a"), &[]).build();
/// let mut second = BatchBuilder::new(0).record(None, Some(b"b"), &[]).build();
/// RecordBatch::set_base_offset(&mut first, 0);
/// RecordBatch::set_base_offset(&mut second, 1);
/// // The fetch's size limit cut the second batch short.
/// let mut bytes = first.to_vec();
/// bytes.extend_from_slice(&second[..second.len() / 2]);
///
/// let fetched = records_from_fetch("t", 0, 0, &bytes, IsolationLevel::ReadUncommitted, &[])?;
/// assert_eq!(fetched.records.len(), 1);
/// assert!(fetched.truncated);
/// assert_eq!(fetched.next_fetch_offset, 1); // the next fetch starts at the cut batch
/// # Ok::<(), runnel_record::RecordError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecords {
    /// In offset order.
    pub records: Vec<ConsumerRecord>,
    /// The offset after the last whole batch walked (at least the fetch offset): the
    /// partition's next position.
    pub next_fetch_offset: i64,
    /// The leader epoch of the last whole batch walked, when it has one: the epoch that goes
    /// with `next_fetch_offset`.
    pub leader_epoch: Option<i32>,
    /// Whether the bytes ended inside a batch (the fetch's size limit cut it). With no records
    /// and an unchanged offset, that batch is larger than the fetch may return.
    pub truncated: bool,
}

/// Kafka's `RecordBatch.NO_PARTITION_LEADER_EPOCH`.
const NO_PARTITION_LEADER_EPOCH: i32 = -1;
/// Kafka's `RecordBatch.NO_PRODUCER_ID`; like Kafka's `hasProducerId`, anything at or below
/// it means no producer id.
const NO_PRODUCER_ID: i64 = -1;
/// The control record type of a transaction's ABORT marker (COMMIT is 1).
const CONTROL_TYPE_ABORT: i16 = 0;

/// The records in `records` (one partition's `records` field of a Fetch response) from
/// `fetch_offset` on, in order. `aborted` is the response's `aborted_transactions` as
/// (producer id, first offset) pairs; it matters only under
/// [`IsolationLevel::ReadCommitted`].
///
/// A batch that fails its CRC or does not decode is an error when it is the first whole batch;
/// after earlier whole batches the walk stops before it and returns what came before, so the
/// next fetch, starting at the bad batch, reports it. Never panics, whatever the bytes.
///
/// ```
/// use runnel_client::consumer::records::{records_from_fetch, IsolationLevel};
/// use runnel_record::BatchBuilder;
///
/// let mut batch = BatchBuilder::new(0).record(None, Some(b"x"), &[]).build();
/// let last = batch.len() - 1;
/// batch[last] ^= 0xff; // damage in the records: the CRC no longer matches
/// assert!(records_from_fetch("t", 0, 0, &batch, IsolationLevel::ReadUncommitted, &[]).is_err());
/// ```
pub fn records_from_fetch(
    topic: &str,
    partition: i32,
    fetch_offset: i64,
    records: &[u8],
    isolation: IsolationLevel,
    aborted: &[(i64, i64)],
) -> Result<FetchedRecords, RecordError> {
    let topic: Arc<str> = Arc::from(topic);
    let mut fetched = FetchedRecords {
        records: Vec::new(),
        next_fetch_offset: fetch_offset,
        leader_epoch: None,
        truncated: false,
    };
    let mut aborted_transactions = aborted.to_vec();
    // By first offset, then producer id, so the walk can take them in order.
    aborted_transactions
        .sort_unstable_by_key(|&(producer_id, first_offset)| (first_offset, producer_id));
    let mut aborted_transactions = aborted_transactions.into_iter().peekable();
    let mut aborted_producers: BTreeSet<i64> = BTreeSet::new();
    let mut rest = records;
    let mut whole_batches = 0usize;
    while !rest.is_empty() {
        let header = match RecordBatch::parse_header(rest) {
            Ok(header) => header,
            Err(RecordError::Truncated { .. }) => {
                fetched.truncated = true;
                break;
            }
            Err(error) => return stop_or_fail(fetched, whole_batches, error),
        };
        let (batch, after) = rest.split_at(header.total_len());
        if let Err(error) = RecordBatch::validate(batch) {
            return stop_or_fail(fetched, whole_batches, error);
        }
        match take_batch(
            &topic,
            partition,
            fetch_offset,
            batch,
            &header,
            isolation,
            &mut aborted_transactions,
            &mut aborted_producers,
            &mut fetched.records,
        ) {
            Ok(()) => {}
            Err(error) => return stop_or_fail(fetched, whole_batches, error),
        }
        whole_batches += 1;
        fetched.next_fetch_offset = fetched.next_fetch_offset.max(header.next_offset());
        if header.partition_leader_epoch != NO_PARTITION_LEADER_EPOCH {
            fetched.leader_epoch = Some(header.partition_leader_epoch);
        }
        rest = after;
    }
    Ok(fetched)
}

fn stop_or_fail(
    fetched: FetchedRecords,
    whole_batches: usize,
    error: RecordError,
) -> Result<FetchedRecords, RecordError> {
    if whole_batches == 0 {
        Err(error)
    } else {
        Ok(fetched)
    }
}

/// Adds one whole, CRC-checked batch's returnable records to `out`. On error `out` is as it was.
#[allow(clippy::too_many_arguments)]
fn take_batch(
    topic: &Arc<str>,
    partition: i32,
    fetch_offset: i64,
    batch: &[u8],
    header: &RecordBatchHeader,
    isolation: IsolationLevel,
    aborted_transactions: &mut std::iter::Peekable<std::vec::IntoIter<(i64, i64)>>,
    aborted_producers: &mut BTreeSet<i64>,
    out: &mut Vec<ConsumerRecord>,
) -> Result<(), RecordError> {
    if isolation == IsolationLevel::ReadCommitted && header.producer_id > NO_PRODUCER_ID {
        // Transactions that began at or before this batch's end are now in progress.
        while let Some(&(producer_id, _)) = aborted_transactions
            .peek()
            .filter(|&&(_, first_offset)| first_offset <= header.last_offset())
        {
            aborted_producers.insert(producer_id);
            aborted_transactions.next();
        }
        if header.is_control() {
            if is_abort_marker(batch)? {
                aborted_producers.remove(&header.producer_id);
            }
        } else if header.is_transactional() && aborted_producers.contains(&header.producer_id) {
            return Ok(());
        }
    }
    if header.is_control() || header.last_offset() < fetch_offset {
        return Ok(());
    }
    let leader_epoch = (header.partition_leader_epoch != NO_PARTITION_LEADER_EPOCH)
        .then_some(header.partition_leader_epoch);
    let timestamp_type = header.timestamp_type();
    let decoded = decode_records(batch)?;
    out.extend(
        decoded
            .into_iter()
            .filter(|record| record.offset >= fetch_offset)
            .map(|record| ConsumerRecord {
                topic: Arc::clone(topic),
                partition,
                offset: record.offset,
                timestamp: record.timestamp,
                timestamp_type,
                key: record.key.map(Bytes::from),
                value: record.value.map(Bytes::from),
                headers: record
                    .headers
                    .into_iter()
                    .map(|(name, value)| (name, value.map(Bytes::from)))
                    .collect(),
                leader_epoch,
            }),
    );
    Ok(())
}

/// Whether a control batch is an ABORT marker: its first record's key is
/// `version: i16, type: i16` (Kafka's `ControlRecordType`).
fn is_abort_marker(batch: &[u8]) -> Result<bool, RecordError> {
    let records = decode_records(batch)?;
    let Some(first) = records.first() else {
        return Ok(false);
    };
    match first.key.as_deref() {
        Some([version_high, version_low, type_high, type_low, ..]) => {
            if i16::from_be_bytes([*version_high, *version_low]) < 0 {
                return Err(RecordError::Invalid(
                    "control record key has a negative version",
                ));
            }
            Ok(i16::from_be_bytes([*type_high, *type_low]) == CONTROL_TYPE_ABORT)
        }
        _ => Err(RecordError::Invalid("control record key is too short")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use runnel_record::{BatchBuilder, BATCH_HEADER_LEN};
    use std::io::Write;

    const TIMESTAMP: i64 = 1_700_000_000_000;
    const GZIP: i16 = 1;
    const TIMESTAMP_LOG_APPEND: i16 = 0x08;
    const TRANSACTIONAL: i16 = 0x10;
    const CONTROL: i16 = 0x20;
    const COMMIT: i16 = 1;

    /// One batch as a broker would serve it, built field by field.
    #[derive(Debug, Clone)]
    struct Batch {
        base_offset: i64,
        /// Keys default to `k<index>`, with a `trace` header holding the value.
        records: Vec<(Option<Vec<u8>>, Vec<u8>)>,
        attributes: i16,
        producer_id: i64,
        leader_epoch: i32,
    }

    fn data(base_offset: i64, values: &[&str]) -> Batch {
        Batch {
            base_offset,
            records: values
                .iter()
                .map(|v| (None, v.as_bytes().to_vec()))
                .collect(),
            attributes: 0,
            producer_id: -1,
            leader_epoch: 0,
        }
    }

    fn transactional(producer_id: i64, base_offset: i64, values: &[&str]) -> Batch {
        Batch {
            attributes: TRANSACTIONAL,
            producer_id,
            ..data(base_offset, values)
        }
    }

    /// A transaction marker: one control record whose key is version 0 and the marker type,
    /// and whose value is version 0 and a coordinator epoch.
    fn marker(producer_id: i64, offset: i64, control_type: i16) -> Batch {
        let mut key = vec![0, 0];
        key.extend_from_slice(&control_type.to_be_bytes());
        Batch {
            base_offset: offset,
            records: vec![(Some(key), vec![0, 0, 0, 0, 0, 0])],
            attributes: TRANSACTIONAL | CONTROL,
            producer_id,
            leader_epoch: 0,
        }
    }

    impl Batch {
        fn gzip(mut self) -> Batch {
            self.attributes |= GZIP;
            self
        }

        fn encode(&self) -> Vec<u8> {
            let mut builder = BatchBuilder::new(TIMESTAMP);
            for (index, (key, value)) in self.records.iter().enumerate() {
                let timestamp = TIMESTAMP + index as i64;
                builder = match key {
                    Some(key) => builder.record_at(timestamp, Some(key), Some(value), &[]),
                    None => builder.record_at(
                        timestamp,
                        Some(format!("k{index}").as_bytes()),
                        Some(value),
                        &[(b"trace".as_slice(), Some(value.as_slice()))],
                    ),
                };
            }
            let plain = builder.build();
            let mut section = plain[BATCH_HEADER_LEN..].to_vec();
            if self.attributes & 0x07 == GZIP {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(&section).unwrap();
                section = encoder.finish().unwrap();
            }
            let count = self.records.len() as i32;
            let mut out = Vec::new();
            out.extend_from_slice(&self.base_offset.to_be_bytes());
            out.extend_from_slice(&((BATCH_HEADER_LEN - 12 + section.len()) as i32).to_be_bytes());
            out.extend_from_slice(&self.leader_epoch.to_be_bytes());
            out.push(2);
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&self.attributes.to_be_bytes());
            out.extend_from_slice(&(count - 1).to_be_bytes());
            out.extend_from_slice(&TIMESTAMP.to_be_bytes());
            out.extend_from_slice(&(TIMESTAMP + i64::from(count) - 1).to_be_bytes());
            out.extend_from_slice(&self.producer_id.to_be_bytes());
            out.extend_from_slice(&0i16.to_be_bytes());
            out.extend_from_slice(&(-1i32).to_be_bytes());
            out.extend_from_slice(&count.to_be_bytes());
            out.extend_from_slice(&section);
            let crc = crc32c::crc32c(&out[21..]);
            out[17..21].copy_from_slice(&crc.to_be_bytes());
            out
        }
    }

    fn fetch(batches: &[Batch]) -> Vec<u8> {
        batches.iter().flat_map(Batch::encode).collect()
    }

    fn read(
        bytes: &[u8],
        fetch_offset: i64,
        isolation: IsolationLevel,
        aborted: &[(i64, i64)],
    ) -> FetchedRecords {
        records_from_fetch("t", 3, fetch_offset, bytes, isolation, aborted).unwrap()
    }

    fn offsets(fetched: &FetchedRecords) -> Vec<i64> {
        fetched.records.iter().map(|r| r.offset).collect()
    }

    fn values(fetched: &FetchedRecords) -> Vec<String> {
        fetched
            .records
            .iter()
            .map(|r| String::from_utf8(r.value.as_deref().unwrap_or_default().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn records_come_out_whole_and_in_order() {
        let bytes = fetch(&[data(0, &["a", "b"]), data(2, &["c"])]);
        let fetched = read(&bytes, 0, IsolationLevel::ReadUncommitted, &[]);
        assert_eq!(offsets(&fetched), [0, 1, 2]);
        assert_eq!(values(&fetched), ["a", "b", "c"]);
        assert_eq!(fetched.next_fetch_offset, 3);
        assert!(!fetched.truncated);
        let first = &fetched.records[0];
        assert_eq!((&*first.topic, first.partition), ("t", 3));
        assert_eq!(first.key.as_deref(), Some(&b"k0"[..]));
        assert_eq!(
            first.headers,
            [("trace".to_owned(), Some(Bytes::from_static(b"a")))]
        );
        assert_eq!(
            (first.timestamp, first.timestamp_type),
            (TIMESTAMP, TimestampType::CreateTime)
        );
        assert_eq!(fetched.records[1].timestamp, TIMESTAMP + 1);
        assert_eq!(first.leader_epoch, Some(0));
    }

    #[test]
    fn a_fetch_starting_mid_batch_skips_the_records_before_it() {
        let bytes = fetch(&[data(10, &["a", "b", "c", "d", "e"]), data(15, &["f"])]);
        let fetched = read(&bytes, 12, IsolationLevel::ReadUncommitted, &[]);
        assert_eq!(offsets(&fetched), [12, 13, 14, 15]);
        assert_eq!(fetched.next_fetch_offset, 16);
        // A batch wholly below the fetch offset is passed over.
        let fetched = read(&bytes, 15, IsolationLevel::ReadUncommitted, &[]);
        assert_eq!(values(&fetched), ["f"]);
    }

    #[test]
    fn compressed_batches_are_read_from_mid_batch_too() {
        let bytes = fetch(&[
            data(0, &["a", "b", "c"]).gzip(),
            data(3, &["d", "e"]).gzip(),
        ]);
        let fetched = read(&bytes, 1, IsolationLevel::ReadCommitted, &[]);
        assert_eq!(values(&fetched), ["b", "c", "d", "e"]);
        assert_eq!(offsets(&fetched), [1, 2, 3, 4]);
        assert_eq!(fetched.next_fetch_offset, 5);
    }

    #[test]
    fn control_batches_are_skipped_but_advance_the_position() {
        let bytes = fetch(&[transactional(7, 0, &["a", "b"]), marker(7, 2, COMMIT)]);
        for isolation in [
            IsolationLevel::ReadUncommitted,
            IsolationLevel::ReadCommitted,
        ] {
            let fetched = read(&bytes, 0, isolation, &[]);
            assert_eq!(values(&fetched), ["a", "b"]);
            assert_eq!(fetched.next_fetch_offset, 3);
        }
        // A fetch holding only a marker returns nothing and still moves past it.
        let fetched = read(
            &fetch(&[marker(7, 2, COMMIT)]),
            2,
            IsolationLevel::ReadCommitted,
            &[],
        );
        assert!(fetched.records.is_empty());
        assert_eq!(fetched.next_fetch_offset, 3);
    }

    /// Producer 7 aborts a transaction at 0-2 (marker at 5) and commits another at 7-8;
    /// producer 8 commits at 3-4 (marker at 6); a non-transactional batch sits at 10.
    fn interleaved_transactions() -> Vec<u8> {
        fetch(&[
            transactional(7, 0, &["aborted-1", "aborted-2", "aborted-3"]),
            transactional(8, 3, &["committed-1", "committed-2"]),
            marker(7, 5, CONTROL_TYPE_ABORT),
            marker(8, 6, COMMIT),
            transactional(7, 7, &["committed-3", "committed-4"]),
            marker(7, 9, COMMIT),
            data(10, &["plain"]),
        ])
    }

    #[test]
    fn read_committed_skips_aborted_transactions() {
        let bytes = interleaved_transactions();
        // The broker's list; producer 9's transaction lies beyond this fetch.
        let aborted = [(9, 100), (7, 0)];
        let fetched = read(&bytes, 0, IsolationLevel::ReadCommitted, &aborted);
        assert_eq!(
            values(&fetched),
            [
                "committed-1",
                "committed-2",
                "committed-3",
                "committed-4",
                "plain"
            ]
        );
        assert_eq!(fetched.next_fetch_offset, 11);

        let fetched = read(&bytes, 0, IsolationLevel::ReadUncommitted, &aborted);
        assert_eq!(fetched.records.len(), 8);
        assert_eq!(values(&fetched)[0], "aborted-1");
    }

    #[test]
    fn an_aborted_transaction_starting_mid_fetch_is_skipped_from_its_first_offset() {
        // Producer 7 commits at 0, then aborts a transaction starting at 2.
        let bytes = fetch(&[
            transactional(7, 0, &["kept"]),
            marker(7, 1, COMMIT),
            transactional(7, 2, &["dropped"]),
            marker(7, 3, CONTROL_TYPE_ABORT),
        ]);
        let fetched = read(&bytes, 0, IsolationLevel::ReadCommitted, &[(7, 2)]);
        assert_eq!(values(&fetched), ["kept"]);
        assert_eq!(fetched.next_fetch_offset, 4);
    }

    #[test]
    fn an_all_aborted_fetch_still_moves_the_position() {
        let bytes = fetch(&[
            transactional(7, 40, &["x", "y"]),
            marker(7, 42, CONTROL_TYPE_ABORT),
        ]);
        let fetched = read(&bytes, 40, IsolationLevel::ReadCommitted, &[(7, 40)]);
        assert!(fetched.records.is_empty());
        assert_eq!(fetched.next_fetch_offset, 43);
    }

    #[test]
    fn a_truncated_tail_ends_the_fetch_without_error() {
        let first = data(0, &["a", "b"]).encode();
        let second = data(2, &["c", "d"]).gzip().encode();
        let whole = [first.clone(), second.clone()].concat();
        for cut in 1..second.len() {
            let fetched = read(
                &whole[..first.len() + cut],
                0,
                IsolationLevel::ReadUncommitted,
                &[],
            );
            assert_eq!(values(&fetched), ["a", "b"], "cut {cut}");
            assert_eq!(fetched.next_fetch_offset, 2);
            assert!(fetched.truncated);
        }
        // Only part of the first batch: nothing yet, the position stays.
        let fetched = read(
            &first[..first.len() - 1],
            0,
            IsolationLevel::ReadUncommitted,
            &[],
        );
        assert!(fetched.records.is_empty() && fetched.truncated);
        assert_eq!(fetched.next_fetch_offset, 0);
        // No bytes at all.
        let fetched = read(&[], 5, IsolationLevel::ReadUncommitted, &[]);
        assert_eq!(
            (
                fetched.records.len(),
                fetched.next_fetch_offset,
                fetched.truncated
            ),
            (0, 5, false)
        );
    }

    #[test]
    fn a_corrupt_batch_fails_the_fetch_only_when_nothing_came_before_it() {
        let first = data(0, &["a"]).encode();
        let mut corrupt = data(1, &["b"]).encode();
        *corrupt.last_mut().unwrap() ^= 1;
        let error = records_from_fetch("t", 0, 1, &corrupt, IsolationLevel::ReadUncommitted, &[])
            .unwrap_err();
        assert!(matches!(error, RecordError::CorruptCrc { .. }), "{error}");
        // After a good batch: return it, stop at the bad one, which the next fetch reports.
        let fetched = read(
            &[first, corrupt].concat(),
            0,
            IsolationLevel::ReadUncommitted,
            &[],
        );
        assert_eq!(values(&fetched), ["a"]);
        assert_eq!(fetched.next_fetch_offset, 1);
    }

    #[test]
    fn old_message_formats_are_an_error() {
        let mut batch = data(0, &["a"]).encode();
        batch[16] = 1;
        assert_eq!(
            records_from_fetch("t", 0, 0, &batch, IsolationLevel::ReadUncommitted, &[]),
            Err(RecordError::UnsupportedMagic(1))
        );
    }

    #[test]
    fn leader_epochs_and_log_append_time_come_from_the_batch() {
        let mut batch = data(0, &["a", "b"]);
        batch.leader_epoch = 4;
        batch.attributes |= TIMESTAMP_LOG_APPEND;
        let mut no_epoch = data(2, &["c"]);
        no_epoch.leader_epoch = -1;
        let fetched = read(
            &fetch(&[batch, no_epoch]),
            0,
            IsolationLevel::ReadUncommitted,
            &[],
        );
        let first = &fetched.records[0];
        assert_eq!(first.leader_epoch, Some(4));
        // LogAppendTime: every record has the batch's max timestamp.
        assert_eq!(
            (first.timestamp_type, first.timestamp),
            (TimestampType::LogAppendTime, TIMESTAMP + 1)
        );
        assert_eq!(fetched.records[2].leader_epoch, None);
        // The batch without an epoch does not erase the last known one.
        assert_eq!(fetched.leader_epoch, Some(4));
        assert_eq!(IsolationLevel::ReadCommitted.as_i8(), 1);
    }

    fn any_batch() -> impl Strategy<Value = Batch> {
        (
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 1..4),
            0i64..3,
            any::<bool>(),
            prop_oneof![
                Just(0i16),
                Just(TRANSACTIONAL),
                Just(TRANSACTIONAL | CONTROL)
            ],
            0i16..2,
        )
            .prop_map(|(values, producer_id, gzip, kind, control_type)| {
                if kind & CONTROL != 0 {
                    return marker(producer_id, 0, control_type);
                }
                let batch = Batch {
                    base_offset: 0,
                    records: values.into_iter().map(|value| (None, value)).collect(),
                    attributes: kind,
                    producer_id: if kind == 0 { -1 } else { producer_id },
                    leader_epoch: 1,
                };
                if gzip {
                    batch.gzip()
                } else {
                    batch
                }
            })
    }

    /// Consecutive batches from offset 0.
    fn any_log() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any_batch(), 0..6).prop_map(|mut batches| {
            let mut offset = 0;
            for batch in &mut batches {
                batch.base_offset = offset;
                offset += batch.records.len() as i64;
            }
            fetch(&batches)
        })
    }

    proptest! {
        #[test]
        fn garbage_never_panics(
            bytes: Vec<u8>,
            fetch_offset: i64,
            committed: bool,
            aborted in proptest::collection::vec(any::<(i64, i64)>(), 0..4),
        ) {
            let isolation = if committed { IsolationLevel::ReadCommitted } else { IsolationLevel::ReadUncommitted };
            let _ = records_from_fetch("t", 0, fetch_offset, &bytes, isolation, &aborted);
        }

        #[test]
        fn flipped_bytes_never_panic(
            log in any_log(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = log;
            if !bytes.is_empty() {
                for (index, xor) in flips {
                    let at = index.index(bytes.len());
                    bytes[at] ^= xor;
                }
            }
            let _ = records_from_fetch("t", 0, 0, &bytes, IsolationLevel::ReadCommitted, &[(0, 0), (1, 2)]);
        }

        #[test]
        fn any_cut_returns_a_prefix_and_never_goes_backwards(
            log in any_log(),
            cut in any::<prop::sample::Index>(),
            fetch_offset in 0i64..12,
            committed: bool,
        ) {
            let isolation = if committed { IsolationLevel::ReadCommitted } else { IsolationLevel::ReadUncommitted };
            let aborted = [(1, 0), (2, 3)];
            let whole = records_from_fetch("t", 0, fetch_offset, &log, isolation, &aborted).unwrap();
            prop_assert!(!whole.truncated);
            let cut = if log.is_empty() { 0 } else { cut.index(log.len()) };
            let part = records_from_fetch("t", 0, fetch_offset, &log[..cut], isolation, &aborted).unwrap();
            prop_assert!(part.next_fetch_offset >= fetch_offset);
            prop_assert!(part.next_fetch_offset <= whole.next_fetch_offset);
            prop_assert_eq!(&whole.records[..part.records.len()], &part.records[..]);
            prop_assert!(part.records.iter().all(|r| r.offset >= fetch_offset && r.offset < part.next_fetch_offset));
        }
    }
}
