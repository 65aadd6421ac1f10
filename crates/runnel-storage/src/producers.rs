//! The producer state of one partition (KIP-98 idempotence and transactions): for each
//! producer id, its epoch, the sequence numbers and offsets of its last [`BATCHES_KEPT`]
//! batches and its open transaction; the partition's open transactions (the first bounds the
//! last stable offset) and the transactions that ended in an abort (read_committed consumers
//! skip their records). It decides whether a produced batch is the next in sequence, a
//! duplicate of one already written (to be answered with its original offsets and not
//! appended again), out of order, or from an old epoch, and whether a transaction marker may
//! be written. The log rebuilds it from batch headers at open and after truncation, starting from
//! the newest snapshot at or below the log end (`<offset>.snapshot`, written at each segment
//! roll and at a clean close), so a start reads only the log after the last snapshot.
//!
//! Sans-IO: the log reads and writes the snapshot files; this module encodes and decodes them.
//! A snapshot is a cache of what the log says: one that fails its checks is ignored and the
//! log after the previous one (or the whole log) is read instead.

use std::collections::{BTreeMap, HashMap, VecDeque};

use runnel_record::{ControlType, TransactionMarker};

use crate::segment::BatchSummary;

/// Batches remembered per producer: Kafka's, and the most a producer has in flight per
/// partition (`max.in.flight.requests.per.connection` ≤ 5 with idempotence), so a retry of
/// any batch it may still be waiting for is recognised as a duplicate.
pub const BATCHES_KEPT: usize = 5;

/// Kafka's `producer.id.expiration.ms` default: a day.
pub const DEFAULT_PRODUCER_ID_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;

/// How often an appended-to partition sweeps out expired producers
/// (`producer.id.expiration.check.interval.ms`). Idle partitions are not swept: their map
/// does not grow, and an expired entry is also dropped when its producer next appears.
const EXPIRATION_SWEEP_INTERVAL_MS: i64 = 10 * 60 * 1000;

pub(crate) const SNAPSHOT_SUFFIX: &str = ".snapshot";
const SNAPSHOT_VERSION: u16 = 1;
/// version u16, crc u32, offset i64, count u32.
const SNAPSHOT_HEADER_LEN: usize = 2 + 4 + 8 + 4;
/// producer id i64, epoch i16, last timestamp i64, last append i64, coordinator epoch i32,
/// transaction first offset i64, batch count u8.
const ENTRY_FIXED_LEN: usize = 8 + 2 + 8 + 8 + 4 + 8 + 1;
/// first sequence i32, last sequence i32, base offset i64, last offset i64, max timestamp i64.
const BATCH_LEN: usize = 4 + 4 + 8 + 8 + 8;
/// producer id i64, first offset i64, last offset i64.
const ABORTED_LEN: usize = 8 + 8 + 8;

/// A transaction that ended in an abort: read_committed consumers drop the records of
/// `producer_id` from `first_offset` up to the marker at `last_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTransaction {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// One remembered batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

/// What a partition knows of one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first, all of `epoch`.
    batches: VecDeque<ProducerBatch>,
    /// The max timestamp of its latest batch, as DescribeProducers reports it.
    pub last_timestamp: i64,
    /// When the broker last appended for it (or replayed its batches at open): expiry counts
    /// from here, not from client timestamps, which may be far in the past.
    last_append_ms: i64,
    /// The epoch of the transaction coordinator that wrote its latest marker; -1 before any.
    pub coordinator_epoch: i32,
    /// The first offset of its open transaction.
    pub transaction_first_offset: Option<i64>,
}

impl ProducerEntry {
    pub fn last_sequence(&self) -> Option<i32> {
        self.batches.back().map(|batch| batch.last_sequence)
    }

    fn find_duplicate(&self, batch: &BatchSummary) -> Option<ProducerBatch> {
        if batch.producer_epoch != self.epoch {
            return None;
        }
        let last_sequence = batch.last_sequence();
        self.batches.iter().copied().find(|kept| {
            kept.first_sequence == batch.base_sequence && kept.last_sequence == last_sequence
        })
    }
}

/// A produced batch the log must not append, and why; the broker answers each with the
/// Kafka error its name gives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    /// INVALID_PRODUCER_EPOCH: a newer instance of the producer has written since.
    #[error("producer {producer_id} has epoch {epoch}, older than the partition's {current}")]
    InvalidEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    /// OUT_OF_ORDER_SEQUENCE_NUMBER: a batch in between is missing.
    #[error(
        "producer {producer_id} sent sequence {sequence} but the partition expects {expected}"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        sequence: i32,
        expected: i32,
    },
    /// UNKNOWN_PRODUCER_ID: the partition has no state for the producer (it expired) and the
    /// batch does not start its sequence.
    #[error(
        "producer {producer_id} is unknown to this partition (expired?) and sent sequence \
         {sequence}, not 0"
    )]
    UnknownProducer { producer_id: i64, sequence: i32 },
    /// INVALID_TXN_STATE: a batch outside a transaction while the producer has one open.
    #[error("producer {producer_id} has a transaction open and sent a non-transactional batch")]
    InvalidTxnState { producer_id: i64 },
    /// TRANSACTION_COORDINATOR_FENCED: a marker from a coordinator older than one that
    /// already wrote here.
    #[error(
        "a marker for producer {producer_id} comes from coordinator epoch {coordinator_epoch}, \
         older than {current}"
    )]
    CoordinatorFenced {
        producer_id: i64,
        coordinator_epoch: i32,
        current: i32,
    },
}

/// What to do with a produced batch of an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// The next in sequence: append it.
    Append,
    /// Already written: answer with these offsets, write nothing.
    Duplicate(ProducerBatch),
}

/// Every producer of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
    last_sweep_ms: i64,
    /// Open transactions: first offset → producer id.
    open: BTreeMap<i64, i64>,
    /// Aborted transactions, by the offset of their marker.
    aborted: Vec<AbortedTransaction>,
}

impl ProducerStates {
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every producer not expired at `now_ms`, for DescribeProducers.
    pub fn active(
        &self,
        now_ms: i64,
        expiration_ms: i64,
    ) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers
            .iter()
            .filter(move |(_, entry)| !is_expired(entry, now_ms, expiration_ms))
            .map(|(id, entry)| (*id, entry))
    }

    /// The first offset of the oldest open transaction: consumers reading committed data
    /// stop below it.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.open.keys().next().copied()
    }

    /// The aborted transactions with records in `from..to`, for a read_committed fetch.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTransaction> {
        let start = self
            .aborted
            .partition_point(|aborted| aborted.last_offset < from);
        self.aborted[start..]
            .iter()
            .filter(|aborted| aborted.first_offset < to)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions wholly below the log start: no record of theirs is left.
    pub(crate) fn forget_aborted_before(&mut self, log_start_offset: i64) {
        let gone = self
            .aborted
            .partition_point(|aborted| aborted.last_offset < log_start_offset);
        self.aborted.drain(..gone);
    }

    /// Whether `producer_id` may still write at `epoch` (not fenced by a newer one).
    pub(crate) fn check_epoch(&self, producer_id: i64, epoch: i16) -> Result<(), ProducerError> {
        match self.producers.get(&producer_id) {
            Some(entry) if epoch < entry.epoch => Err(ProducerError::InvalidEpoch {
                producer_id,
                epoch,
                current: entry.epoch,
            }),
            _ => Ok(()),
        }
    }

    /// Whether a transaction marker of `producer_id` at `epoch` may be written: the epoch is
    /// not older than the producer's, nor the coordinator older than the last that wrote one.
    pub(crate) fn check_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        marker: &TransactionMarker,
    ) -> Result<(), ProducerError> {
        self.check_epoch(producer_id, epoch)?;
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if marker.coordinator_epoch < entry.coordinator_epoch {
            return Err(ProducerError::CoordinatorFenced {
                producer_id,
                coordinator_epoch: marker.coordinator_epoch,
                current: entry.coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Kafka's rules for a batch a client produced, checked before it is written. An expired
    /// producer is forgotten here first.
    pub(crate) fn check(
        &mut self,
        batch: &BatchSummary,
        now_ms: i64,
        expiration_ms: i64,
    ) -> Result<SequenceCheck, ProducerError> {
        let producer_id = batch.producer_id;
        let sequence = batch.base_sequence;
        if self
            .producers
            .get(&producer_id)
            .is_some_and(|entry| is_expired(entry, now_ms, expiration_ms))
        {
            self.producers.remove(&producer_id);
        }
        let Some(entry) = self.producers.get(&producer_id) else {
            if sequence != 0 {
                return Err(ProducerError::UnknownProducer {
                    producer_id,
                    sequence,
                });
            }
            return Ok(SequenceCheck::Append);
        };
        if batch.producer_epoch < entry.epoch {
            return Err(ProducerError::InvalidEpoch {
                producer_id,
                epoch: batch.producer_epoch,
                current: entry.epoch,
            });
        }
        if let Some(duplicate) = entry.find_duplicate(batch) {
            return Ok(SequenceCheck::Duplicate(duplicate));
        }
        if entry.transaction_first_offset.is_some() && !batch.is_transactional() {
            return Err(ProducerError::InvalidTxnState { producer_id });
        }
        // A new epoch starts its sequence at 0; within an epoch each batch follows the last
        // (an entry with no batch yet, made by a transaction marker, expects 0 too).
        let expected = match entry.last_sequence() {
            Some(last) if batch.producer_epoch == entry.epoch => next_sequence(last),
            _ => 0,
        };
        if sequence != expected {
            return Err(ProducerError::OutOfOrderSequence {
                producer_id,
                sequence,
                expected,
            });
        }
        Ok(SequenceCheck::Append)
    }

    /// Takes in a batch that is now in the log: appended by this leader after [`Self::check`],
    /// replicated, or read back at open; `marker` is what a control batch says. Batches
    /// without a producer id are ignored.
    pub(crate) fn record(
        &mut self,
        batch: &BatchSummary,
        marker: Option<TransactionMarker>,
        now_ms: i64,
    ) {
        if !batch.has_producer() {
            return;
        }
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: batch.producer_epoch,
                batches: VecDeque::new(),
                last_timestamp: batch.max_timestamp,
                last_append_ms: now_ms,
                coordinator_epoch: -1,
                transaction_first_offset: None,
            });
        if entry.epoch != batch.producer_epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp = batch.max_timestamp;
        entry.last_append_ms = entry.last_append_ms.max(now_ms);
        if batch.is_control() {
            // A transaction marker ends the producer's transaction.
            let Some(marker) = marker else {
                return;
            };
            entry.coordinator_epoch = marker.coordinator_epoch;
            if let Some(first_offset) = entry.transaction_first_offset.take() {
                self.open.remove(&first_offset);
                if marker.control == ControlType::Abort {
                    self.aborted.push(AbortedTransaction {
                        producer_id: batch.producer_id,
                        first_offset,
                        last_offset: batch.base_offset,
                    });
                }
            }
            return;
        }
        if batch.is_transactional() && entry.transaction_first_offset.is_none() {
            entry.transaction_first_offset = Some(batch.base_offset);
            self.open.insert(batch.base_offset, batch.producer_id);
        }
        entry.batches.push_back(ProducerBatch {
            first_sequence: batch.base_sequence,
            last_sequence: batch.last_sequence(),
            base_offset: batch.base_offset,
            last_offset: batch.last_offset,
            max_timestamp: batch.max_timestamp,
        });
        if entry.batches.len() > BATCHES_KEPT {
            entry.batches.pop_front();
        }
    }

    /// Forgets producers idle for `expiration_ms` (none with an open transaction), at most
    /// once per sweep interval.
    pub(crate) fn sweep_expired(&mut self, now_ms: i64, expiration_ms: i64) {
        if now_ms.saturating_sub(self.last_sweep_ms) < EXPIRATION_SWEEP_INTERVAL_MS {
            return;
        }
        self.last_sweep_ms = now_ms;
        self.producers
            .retain(|_, entry| !is_expired(entry, now_ms, expiration_ms));
    }

    /// The snapshot of this state as of `offset` (everything below it taken in).
    pub(crate) fn encode_snapshot(&self, offset: i64) -> Vec<u8> {
        let mut body = Vec::with_capacity(
            8 + 4 + self.producers.len() * (ENTRY_FIXED_LEN + BATCHES_KEPT * BATCH_LEN),
        );
        body.extend_from_slice(&offset.to_be_bytes());
        body.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let entry = &self.producers[id];
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&entry.epoch.to_be_bytes());
            body.extend_from_slice(&entry.last_timestamp.to_be_bytes());
            body.extend_from_slice(&entry.last_append_ms.to_be_bytes());
            body.extend_from_slice(&entry.coordinator_epoch.to_be_bytes());
            body.extend_from_slice(&entry.transaction_first_offset.unwrap_or(-1).to_be_bytes());
            body.push(entry.batches.len() as u8);
            for batch in &entry.batches {
                body.extend_from_slice(&batch.first_sequence.to_be_bytes());
                body.extend_from_slice(&batch.last_sequence.to_be_bytes());
                body.extend_from_slice(&batch.base_offset.to_be_bytes());
                body.extend_from_slice(&batch.last_offset.to_be_bytes());
                body.extend_from_slice(&batch.max_timestamp.to_be_bytes());
            }
        }
        body.extend_from_slice(&(self.aborted.len() as u32).to_be_bytes());
        for aborted in &self.aborted {
            body.extend_from_slice(&aborted.producer_id.to_be_bytes());
            body.extend_from_slice(&aborted.first_offset.to_be_bytes());
            body.extend_from_slice(&aborted.last_offset.to_be_bytes());
        }
        let mut bytes = Vec::with_capacity(6 + body.len());
        bytes.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        bytes.extend_from_slice(&body);
        bytes
    }

    /// Reads a snapshot written by [`Self::encode_snapshot`] at `offset`. Every count is
    /// checked against the bytes present before anything is allocated for it.
    pub(crate) fn decode_snapshot(bytes: &[u8], offset: i64) -> Result<Self, String> {
        if bytes.len() < SNAPSHOT_HEADER_LEN {
            return Err(format!("{} bytes is too short for a snapshot", bytes.len()));
        }
        let mut reader = Reader { bytes, at: 0 };
        let version = reader.u16()?;
        if version != SNAPSHOT_VERSION {
            return Err(format!(
                "snapshot version {version} is not {SNAPSHOT_VERSION}"
            ));
        }
        let crc = reader.u32()?;
        if crc32c::crc32c(&bytes[6..]) != crc {
            return Err("snapshot checksum mismatch".to_string());
        }
        let stored_offset = reader.i64()?;
        if stored_offset != offset {
            return Err(format!(
                "snapshot holds offset {stored_offset}, its name says {offset}"
            ));
        }
        let count = reader.u32()? as usize;
        if count > reader.remaining() / ENTRY_FIXED_LEN {
            return Err(format!("snapshot claims {count} producers"));
        }
        let mut producers = HashMap::with_capacity(count);
        for _ in 0..count {
            let id = reader.i64()?;
            let epoch = reader.i16()?;
            let last_timestamp = reader.i64()?;
            let last_append_ms = reader.i64()?;
            let coordinator_epoch = reader.i32()?;
            let transaction_first_offset = Some(reader.i64()?).filter(|offset| *offset >= 0);
            let batch_count = usize::from(reader.u8()?);
            if batch_count > BATCHES_KEPT {
                return Err(format!(
                    "snapshot claims {batch_count} batches for one producer"
                ));
            }
            let mut batches = VecDeque::with_capacity(batch_count);
            for _ in 0..batch_count {
                batches.push_back(ProducerBatch {
                    first_sequence: reader.i32()?,
                    last_sequence: reader.i32()?,
                    base_offset: reader.i64()?,
                    last_offset: reader.i64()?,
                    max_timestamp: reader.i64()?,
                });
            }
            let entry = ProducerEntry {
                epoch,
                batches,
                last_timestamp,
                last_append_ms,
                coordinator_epoch,
                transaction_first_offset,
            };
            if producers.insert(id, entry).is_some() {
                return Err(format!("snapshot lists producer {id} twice"));
            }
        }
        let aborted_count = reader.u32()? as usize;
        if aborted_count > reader.remaining() / ABORTED_LEN {
            return Err(format!(
                "snapshot claims {aborted_count} aborted transactions"
            ));
        }
        let mut aborted = Vec::with_capacity(aborted_count);
        for _ in 0..aborted_count {
            aborted.push(AbortedTransaction {
                producer_id: reader.i64()?,
                first_offset: reader.i64()?,
                last_offset: reader.i64()?,
            });
        }
        if aborted
            .windows(2)
            .any(|pair| pair[0].last_offset > pair[1].last_offset)
        {
            return Err("snapshot's aborted transactions are out of order".to_string());
        }
        let open = producers
            .iter()
            .filter_map(|(id, entry)| Some((entry.transaction_first_offset?, *id)))
            .collect();
        if reader.remaining() != 0 {
            return Err(format!(
                "{} bytes after the last producer",
                reader.remaining()
            ));
        }
        Ok(ProducerStates {
            producers,
            last_sweep_ms: 0,
            open,
            aborted,
        })
    }
}

fn is_expired(entry: &ProducerEntry, now_ms: i64, expiration_ms: i64) -> bool {
    entry.transaction_first_offset.is_none()
        && now_ms.saturating_sub(entry.last_append_ms) >= expiration_ms
}

/// The sequence after `last`: sequences wrap from `i32::MAX` to 0.
fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

/// `<offset>.snapshot`, zero-padded like segment names so they sort by offset.
pub(crate) fn snapshot_name(offset: i64) -> String {
    format!("{offset:020}{SNAPSHOT_SUFFIX}")
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let end = self.at + N;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| "snapshot truncated".to_string())?;
        self.at = end;
        let mut array = [0u8; N];
        array.copy_from_slice(slice);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        self.take().map(u16::from_be_bytes)
    }

    fn i16(&mut self) -> Result<i16, String> {
        self.take().map(i16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.take().map(u32::from_be_bytes)
    }

    fn i32(&mut self) -> Result<i32, String> {
        self.take().map(i32::from_be_bytes)
    }

    fn i64(&mut self) -> Result<i64, String> {
        self.take().map(i64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(
        producer_id: i64,
        epoch: i16,
        sequence: i32,
        records: i32,
        offset: i64,
    ) -> BatchSummary {
        BatchSummary {
            base_offset: offset,
            last_offset: offset + i64::from(records) - 1,
            len: 100,
            max_timestamp: 1_000,
            records: records as u64,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence: sequence,
            last_offset_delta: records - 1,
            attributes: 0,
        }
    }

    const NOW: i64 = 1_000_000;
    const EXPIRY: i64 = DEFAULT_PRODUCER_ID_EXPIRATION_MS;

    fn append(
        states: &mut ProducerStates,
        batch: &BatchSummary,
    ) -> Result<SequenceCheck, ProducerError> {
        let verdict = states.check(batch, NOW, EXPIRY)?;
        if verdict == SequenceCheck::Append {
            states.record(batch, None, NOW);
        }
        Ok(verdict)
    }

    #[test]
    fn sequences_follow_each_other_and_duplicates_get_their_original_offsets() {
        let mut states = ProducerStates::default();
        assert_eq!(
            append(&mut states, &batch(7, 0, 0, 3, 0)),
            Ok(SequenceCheck::Append)
        );
        assert_eq!(
            append(&mut states, &batch(7, 0, 3, 2, 3)),
            Ok(SequenceCheck::Append)
        );
        // A retry of the first batch, whatever offset the log would give it now.
        let verdict = append(&mut states, &batch(7, 0, 0, 3, 99));
        assert!(
            matches!(verdict, Ok(SequenceCheck::Duplicate(kept)) if kept.base_offset == 0 && kept.last_offset == 2)
        );
        assert_eq!(
            append(&mut states, &batch(7, 0, 6, 1, 5)),
            Err(ProducerError::OutOfOrderSequence {
                producer_id: 7,
                sequence: 6,
                expected: 5
            })
        );
        // A retry overlapping a written batch without matching it is out of order too.
        assert!(matches!(
            append(&mut states, &batch(7, 0, 1, 2, 5)),
            Err(ProducerError::OutOfOrderSequence { .. })
        ));
    }

    #[test]
    fn only_the_last_five_batches_are_recognised_as_duplicates() {
        let mut states = ProducerStates::default();
        for sequence in 0..6 {
            append(&mut states, &batch(1, 0, sequence, 1, i64::from(sequence))).unwrap();
        }
        assert!(matches!(
            append(&mut states, &batch(1, 0, 1, 1, 9)),
            Ok(SequenceCheck::Duplicate(_))
        ));
        assert!(matches!(
            append(&mut states, &batch(1, 0, 0, 1, 9)),
            Err(ProducerError::OutOfOrderSequence { .. })
        ));
    }

    #[test]
    fn epochs_fence_older_instances_and_restart_sequences() {
        let mut states = ProducerStates::default();
        append(&mut states, &batch(1, 3, 0, 2, 0)).unwrap();
        assert_eq!(
            append(&mut states, &batch(1, 2, 2, 1, 2)),
            Err(ProducerError::InvalidEpoch {
                producer_id: 1,
                epoch: 2,
                current: 3
            })
        );
        assert!(matches!(
            append(&mut states, &batch(1, 4, 2, 1, 2)),
            Err(ProducerError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(
            append(&mut states, &batch(1, 4, 0, 1, 2)),
            Ok(SequenceCheck::Append)
        );
        assert_eq!(states.get(1).map(|entry| entry.epoch), Some(4));
    }

    #[test]
    fn an_unknown_or_expired_producer_must_start_at_sequence_zero() {
        let mut states = ProducerStates::default();
        assert_eq!(
            append(&mut states, &batch(5, 0, 8, 1, 0)),
            Err(ProducerError::UnknownProducer {
                producer_id: 5,
                sequence: 8
            })
        );
        append(&mut states, &batch(5, 0, 0, 1, 0)).unwrap();
        let later = NOW + EXPIRY;
        assert_eq!(
            states.check(&batch(5, 0, 1, 1, 1), later, EXPIRY),
            Err(ProducerError::UnknownProducer {
                producer_id: 5,
                sequence: 1
            })
        );
        assert!(states.get(5).is_none(), "the expired producer is forgotten");
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        let mut states = ProducerStates::default();
        let mut first = batch(2, 0, 0, 1, 0);
        first.base_sequence = i32::MAX - 1;
        first.last_offset_delta = 1;
        states.record(&first, None, NOW);
        assert_eq!(
            states.get(2).and_then(ProducerEntry::last_sequence),
            Some(i32::MAX)
        );
        assert_eq!(
            append(&mut states, &batch(2, 0, 0, 1, 2)),
            Ok(SequenceCheck::Append)
        );
    }

    #[test]
    fn sweeps_forget_idle_producers_but_not_open_transactions() {
        let mut states = ProducerStates::default();
        states.record(&batch(1, 0, 0, 1, 0), None, NOW);
        let mut transactional = batch(2, 0, 0, 1, 1);
        transactional.attributes = runnel_record::TRANSACTIONAL_BIT;
        states.record(&transactional, None, NOW);
        states.sweep_expired(NOW + EXPIRY, EXPIRY);
        assert!(states.get(1).is_none());
        assert_eq!(
            states
                .get(2)
                .and_then(|entry| entry.transaction_first_offset),
            Some(1)
        );
        assert_eq!(states.active(NOW + EXPIRY, EXPIRY).count(), 1);
    }

    fn marker_batch(producer_id: i64, epoch: i16, offset: i64) -> BatchSummary {
        let mut marker = batch(producer_id, epoch, -1, 1, offset);
        marker.attributes = runnel_record::TRANSACTIONAL_BIT | runnel_record::CONTROL_BIT;
        marker
    }

    fn transactional(producer_id: i64, sequence: i32, offset: i64) -> BatchSummary {
        let mut batch = batch(producer_id, 0, sequence, 1, offset);
        batch.attributes = runnel_record::TRANSACTIONAL_BIT;
        batch
    }

    const COMMIT: TransactionMarker = TransactionMarker {
        control: ControlType::Commit,
        coordinator_epoch: 0,
    };
    const ABORT: TransactionMarker = TransactionMarker {
        control: ControlType::Abort,
        coordinator_epoch: 0,
    };

    #[test]
    fn transactions_bound_the_stable_offset_and_aborts_are_listed() {
        let mut states = ProducerStates::default();
        states.record(&transactional(1, 0, 10), None, NOW);
        states.record(&transactional(2, 0, 11), None, NOW);
        states.record(&transactional(1, 1, 12), None, NOW);
        assert_eq!(states.first_unstable_offset(), Some(10));
        assert!(matches!(
            states.check(&batch(1, 0, 2, 1, 13), NOW, EXPIRY),
            Err(ProducerError::InvalidTxnState { producer_id: 1 })
        ));
        states.record(&marker_batch(1, 0, 13), Some(ABORT), NOW);
        assert_eq!(states.first_unstable_offset(), Some(11));
        states.record(&marker_batch(2, 0, 14), Some(COMMIT), NOW);
        assert_eq!(states.first_unstable_offset(), None);
        let aborted = AbortedTransaction {
            producer_id: 1,
            first_offset: 10,
            last_offset: 13,
        };
        assert_eq!(states.aborted_between(0, 11), vec![aborted]);
        assert_eq!(states.aborted_between(13, 20), vec![aborted]);
        assert!(states.aborted_between(14, 20).is_empty());
        assert!(states.aborted_between(0, 10).is_empty());
        // A marker of an older epoch, or from an older coordinator, is refused.
        states.record(&transactional(1, 2, 15), None, NOW);
        let mut newer = marker_batch(1, 3, 16);
        newer.producer_epoch = 3;
        states.record(
            &newer,
            Some(TransactionMarker {
                coordinator_epoch: 5,
                ..ABORT
            }),
            NOW,
        );
        assert!(matches!(
            states.check_marker(1, 2, &COMMIT),
            Err(ProducerError::InvalidEpoch { .. })
        ));
        assert!(matches!(
            states.check_marker(1, 3, &COMMIT),
            Err(ProducerError::CoordinatorFenced { .. })
        ));
        let snapshot = ProducerStates::decode_snapshot(&states.encode_snapshot(17), 17).unwrap();
        assert_eq!(snapshot.aborted, states.aborted);
        assert_eq!(snapshot.open, states.open);
        states.forget_aborted_before(14);
        assert_eq!(states.aborted_between(0, 100).len(), 1);
    }

    #[test]
    fn snapshots_round_trip_and_refuse_damage() {
        let mut states = ProducerStates::default();
        for producer in 0..20 {
            for sequence in 0..7 {
                states.record(
                    &batch(producer, 1, sequence, 1, i64::from(sequence)),
                    None,
                    NOW,
                );
            }
        }
        let bytes = states.encode_snapshot(42);
        let decoded = ProducerStates::decode_snapshot(&bytes, 42).unwrap();
        assert_eq!(decoded.producers, states.producers);
        assert!(ProducerStates::decode_snapshot(&bytes, 41).is_err());
        for cut in 0..bytes.len() {
            assert!(ProducerStates::decode_snapshot(&bytes[..cut], 42).is_err());
        }
        let mut flipped = bytes.clone();
        flipped[30] ^= 1;
        assert!(ProducerStates::decode_snapshot(&flipped, 42).is_err());
    }
}
