//! Checking a client's batch record by record before it is stored, as Kafka's `LogValidator`
//! does, and finding records in a stored batch by time.
//!
//! What a produced batch must satisfy beyond its frame and CRC ([`RecordBatch::validate`]):
//! - the header is consistent: at least one record, `last_offset_delta = records_count - 1`;
//! - the records inside are well-formed and exactly `records_count` of them, offset deltas
//!   0, 1, 2, … (see [`crate::walk`]), decompressed within a [`DecompressionBudget`];
//! - CreateTime timestamps lie within the topic's `message.timestamp.before.max.ms` and
//!   `message.timestamp.after.max.ms` of the broker's clock (Kafka skips records stamped -1);
//! - a compacted topic's records all have keys.
//!
//! The batch's `max_timestamp` is then whatever the records say: like Kafka, the broker
//! rewrites a header that disagrees rather than refusing it ([`RecordBatch::set_max_timestamp`]),
//! so the time index and ListOffsets can trust the header without decoding.

use std::ops::ControlFlow;

use crate::batch::{RecordBatch, RecordBatchHeader, RecordError, TimestampType};
use crate::walk::{walk_records, DecompressionBudget, Deltas};

/// Kafka's "no timestamp".
pub const NO_TIMESTAMP: i64 = -1;

/// The topic's rules for the records of a produced batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPolicy {
    /// The broker's clock when the request arrived.
    pub now_ms: i64,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime timestamp may lie.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future.
    pub timestamp_after_max_ms: i64,
    /// `message.timestamp.type=LogAppendTime`: the broker stamps the batch, so the producer's
    /// timestamps are not checked.
    pub log_append_time: bool,
    /// `cleanup.policy` includes `compact`: every record needs a key.
    pub keys_required: bool,
}

/// What validation learned about a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidatedBatch {
    pub header: RecordBatchHeader,
    /// The largest record timestamp, or [`NO_TIMESTAMP`].
    pub max_timestamp: i64,
}

impl RecordPolicy {
    /// Validates one produced batch whose frame and CRC `header` already vouches for. Every
    /// failure names the rule; the caller refuses the partition's whole records set.
    pub fn validate(
        &self,
        batch: &[u8],
        header: &RecordBatchHeader,
        budget: &DecompressionBudget,
    ) -> Result<ValidatedBatch, RecordError> {
        if header.records_count < 1 {
            return Err(RecordError::Malformed(format!(
                "a batch needs at least one record; this one claims {}",
                header.records_count
            )));
        }
        if i64::from(header.last_offset_delta) != i64::from(header.records_count) - 1 {
            return Err(RecordError::Malformed(format!(
                "inconsistent batch: last offset delta {} with a count of {} records",
                header.last_offset_delta, header.records_count
            )));
        }
        if header.timestamp_type() == TimestampType::LogAppendTime {
            return Err(RecordError::Invalid(
                "a producer may not set the LogAppendTime timestamp type",
            ));
        }
        let lowest = self.now_ms.saturating_sub(self.timestamp_before_max_ms);
        let highest = self.now_ms.saturating_add(self.timestamp_after_max_ms);
        let mut max_timestamp = NO_TIMESTAMP;
        let mut failure = None;
        walk_records(batch, header, budget, false, Deltas::Contiguous, |record| {
            let out_of_range =
                record.timestamp != NO_TIMESTAMP && !(lowest..=highest).contains(&record.timestamp);
            if out_of_range && !self.log_append_time {
                failure = Some(RecordError::TimestampOutOfRange {
                    timestamp: record.timestamp,
                    offset_delta: record.offset_delta,
                    lowest,
                    highest,
                });
                return ControlFlow::Break(());
            }
            if self.keys_required && !record.has_key {
                failure = Some(RecordError::Malformed(format!(
                    "a compacted topic cannot accept a record without a key (offset delta {})",
                    record.offset_delta
                )));
                return ControlFlow::Break(());
            }
            max_timestamp = max_timestamp.max(record.timestamp);
            ControlFlow::Continue(())
        })?;
        match failure {
            Some(error) => Err(error),
            None => Ok(ValidatedBatch {
                header: *header,
                max_timestamp,
            }),
        }
    }
}

impl RecordBatch {
    /// The offset and timestamp of the first record of a stored `batch` whose timestamp
    /// satisfies `wanted`, searching from offset `from`. Stops decoding at the match.
    pub fn find_record(
        batch: &[u8],
        from: i64,
        budget: &DecompressionBudget,
        mut wanted: impl FnMut(i64) -> bool,
    ) -> Result<Option<(i64, i64)>, RecordError> {
        let header = RecordBatch::parse_header(batch)?;
        let mut found = None;
        walk_records(
            batch,
            &header,
            budget,
            false,
            Deltas::Increasing,
            |record| {
                let offset = header
                    .base_offset
                    .saturating_add(i64::from(record.offset_delta));
                if offset >= from && wanted(record.timestamp) {
                    found = Some((offset, record.timestamp));
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            },
        )?;
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchBuilder, Compression, BATCH_HEADER_LEN};
    use proptest::prelude::*;

    const NOW: i64 = 1_700_000_000_000;

    fn policy() -> RecordPolicy {
        RecordPolicy {
            now_ms: NOW,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            log_append_time: false,
            keys_required: false,
        }
    }

    fn check(batch: &[u8]) -> Result<ValidatedBatch, RecordError> {
        let header = RecordBatch::validate(batch)?;
        policy().validate(
            batch,
            &header,
            &DecompressionBudget::for_request(batch.len()),
        )
    }

    /// Rewrites header fields and fixes the CRC, as a lying client would.
    fn forge(batch: &mut [u8], at: usize, bytes: &[u8]) {
        batch[at..at + bytes.len()].copy_from_slice(bytes);
        RecordBatch::set_max_timestamp(
            batch,
            i64::from_be_bytes(batch[35..43].try_into().unwrap()),
        );
    }

    fn two_records(codec: Compression) -> Vec<u8> {
        BatchBuilder::new(NOW)
            .compression(codec)
            .record(Some(b"k"), Some(b"v"), &[(b"h".as_slice(), None)])
            .record_at(NOW + 5, None, Some(b"w"), &[])
            .build()
    }

    const CODECS: [Compression; 5] = Compression::ALL;

    #[test]
    fn well_formed_batches_pass_with_their_max_timestamp() {
        for codec in CODECS {
            let validated = check(&two_records(codec)).unwrap();
            assert_eq!(validated.max_timestamp, NOW + 5, "{codec}");
        }
    }

    #[test]
    fn a_lying_record_count_is_refused() {
        for codec in CODECS {
            for claimed in [0i32, 1, 3, i32::MAX] {
                let mut batch = two_records(codec);
                forge(&mut batch, 57, &claimed.to_be_bytes());
                forge(&mut batch, 23, &(claimed.saturating_sub(1)).to_be_bytes());
                assert!(check(&batch).is_err(), "{codec} claiming {claimed}");
            }
        }
    }

    #[test]
    fn a_lying_last_offset_delta_is_refused() {
        let mut batch = two_records(Compression::None);
        forge(&mut batch, 23, &5i32.to_be_bytes());
        let error = check(&batch).unwrap_err();
        assert!(error.to_string().contains("last offset delta 5"), "{error}");
    }

    #[test]
    fn timestamps_out_of_range_are_refused_unless_the_broker_stamps() {
        let future = BatchBuilder::new(NOW + 3_600_001)
            .record(None, Some(b"v"), &[])
            .build();
        assert!(matches!(
            check(&future),
            Err(RecordError::TimestampOutOfRange { .. })
        ));
        let header = RecordBatch::validate(&future).unwrap();
        let stamped = RecordPolicy {
            log_append_time: true,
            ..policy()
        };
        let budget = DecompressionBudget::for_request(future.len());
        assert!(stamped.validate(&future, &header, &budget).is_ok());
        let old = BatchBuilder::new(NOW - 10)
            .record(None, Some(b"v"), &[])
            .build();
        let strict = RecordPolicy {
            timestamp_before_max_ms: 5,
            ..policy()
        };
        let header = RecordBatch::validate(&old).unwrap();
        assert!(strict.validate(&old, &header, &budget).is_err());
        // Kafka's "no timestamp" is never out of range.
        let none = BatchBuilder::new(-1).record(None, Some(b"v"), &[]).build();
        assert_eq!(check(&none).unwrap().max_timestamp, NO_TIMESTAMP);
    }

    #[test]
    fn compacted_topics_need_keys() {
        let batch = two_records(Compression::Lz4);
        let header = RecordBatch::validate(&batch).unwrap();
        let compacted = RecordPolicy {
            keys_required: true,
            ..policy()
        };
        let budget = DecompressionBudget::for_request(batch.len());
        let error = compacted.validate(&batch, &header, &budget).unwrap_err();
        assert!(error.to_string().contains("without a key"), "{error}");
    }

    #[test]
    fn decompression_bombs_stop_at_the_budget() {
        let zeros = vec![0u8; 64 << 20];
        for codec in [Compression::Gzip, Compression::Zstd] {
            let mut bomb = BatchBuilder::new(NOW)
                .compression(codec)
                .record(None, Some(&zeros), &[])
                .build();
            assert!(bomb.len() < 256 << 10, "{codec}: {}", bomb.len());
            // Claim many records so the walk keeps decompressing.
            forge(&mut bomb, 57, &i32::MAX.to_be_bytes());
            forge(&mut bomb, 23, &(i32::MAX - 1).to_be_bytes());
            let header = RecordBatch::validate(&bomb).unwrap();
            let budget = DecompressionBudget::new(1 << 20);
            let error = policy().validate(&bomb, &header, &budget).unwrap_err();
            assert!(
                matches!(error, RecordError::DecompressedTooLarge { .. }),
                "{codec}: {error}"
            );
        }
    }

    #[test]
    fn header_max_timestamp_is_not_trusted() {
        let mut batch = two_records(Compression::Snappy);
        RecordBatch::set_max_timestamp(&mut batch, NOW + 1_000);
        assert_eq!(check(&batch).unwrap().max_timestamp, NOW + 5);
    }

    #[test]
    fn find_record_stops_at_the_first_match() {
        let mut batch = BatchBuilder::new(NOW)
            .compression(Compression::Zstd)
            .record_at(NOW, None, Some(b"a"), &[])
            .record_at(NOW + 10, None, Some(b"b"), &[])
            .record_at(NOW + 20, None, Some(b"c"), &[])
            .build();
        RecordBatch::set_base_offset(&mut batch, 100);
        let budget = DecompressionBudget::for_stored_batch();
        let at_least = |target: i64| move |timestamp: i64| timestamp >= target;
        assert_eq!(
            RecordBatch::find_record(&batch, 0, &budget, at_least(NOW + 5)).unwrap(),
            Some((101, NOW + 10))
        );
        assert_eq!(
            RecordBatch::find_record(&batch, 102, &budget, at_least(NOW)).unwrap(),
            Some((102, NOW + 20))
        );
        assert_eq!(
            RecordBatch::find_record(&batch, 0, &budget, at_least(NOW + 21)).unwrap(),
            None
        );
    }

    proptest! {
        #[test]
        fn garbage_records_never_panic(
            tail: Vec<u8>,
            count in any::<i32>(),
            codec in 0i16..5,
        ) {
            let mut batch = BatchBuilder::new(NOW).record(None, Some(b"v"), &[]).build();
            batch.truncate(BATCH_HEADER_LEN);
            batch.extend_from_slice(&tail);
            let length = (batch.len() - crate::LOG_OVERHEAD) as i32;
            batch[8..12].copy_from_slice(&length.to_be_bytes());
            batch[21..23].copy_from_slice(&codec.to_be_bytes());
            batch[23..27].copy_from_slice(&count.wrapping_sub(1).to_be_bytes());
            batch[57..61].copy_from_slice(&count.to_be_bytes());
            RecordBatch::set_max_timestamp(&mut batch, NOW);
            if let Ok(header) = RecordBatch::validate(&batch) {
                let _ = policy().validate(&batch, &header, &DecompressionBudget::new(1 << 20));
            }
        }
    }
}
