//! Transaction markers: the control batches a transaction coordinator has written to every
//! partition of a transaction when it commits or aborts (Kafka's `EndTransactionMarker`).
//! A marker batch carries the producer's id and epoch, the transactional and control bits,
//! no sequence, and one record: key `(version i16 = 0, type i16)` with type 0 for abort and
//! 1 for commit, value `(version i16 = 0, coordinator epoch i32)`.

use crate::batch::{RecordBatch, RecordError};
use crate::records::{decode_records, BatchBuilder};

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
}

/// What a marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionMarker {
    pub control: ControlType,
    pub coordinator_epoch: i32,
}

impl TransactionMarker {
    /// The marker batch of `producer_id` at `producer_epoch`, stamped `timestamp_ms`.
    pub fn build(&self, producer_id: i64, producer_epoch: i16, timestamp_ms: i64) -> Vec<u8> {
        let kind: i16 = match self.control {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
        };
        let mut key = Vec::with_capacity(4);
        key.extend_from_slice(&0i16.to_be_bytes());
        key.extend_from_slice(&kind.to_be_bytes());
        let mut value = Vec::with_capacity(6);
        value.extend_from_slice(&0i16.to_be_bytes());
        value.extend_from_slice(&self.coordinator_epoch.to_be_bytes());
        BatchBuilder::new(timestamp_ms)
            .producer(producer_id, producer_epoch, -1)
            .transactional(true)
            .control(true)
            .record(Some(&key), Some(&value), &[])
            .build()
    }

    /// Reads the marker of one whole control batch. `Ok(None)` for a control batch without
    /// records (Kafka's cleaner leaves those) or of a control type that is not a marker.
    pub fn parse(batch: &[u8]) -> Result<Option<TransactionMarker>, RecordError> {
        let header = RecordBatch::parse_header(batch)?;
        if !header.is_control() {
            return Err(RecordError::Invalid("not a control batch"));
        }
        let records = decode_records(batch)?;
        let Some(record) = records.first() else {
            return Ok(None);
        };
        let key = record.key.as_deref().unwrap_or_default();
        if key.len() < 4 {
            return Err(RecordError::Invalid(
                "control record key shorter than 4 bytes",
            ));
        }
        let control = match i16::from_be_bytes([key[2], key[3]]) {
            0 => ControlType::Abort,
            1 => ControlType::Commit,
            _ => return Ok(None),
        };
        let value = record.value.as_deref().unwrap_or_default();
        let coordinator_epoch = if value.len() >= 6 {
            i32::from_be_bytes([value[2], value[3], value[4], value[5]])
        } else {
            -1
        };
        Ok(Some(TransactionMarker {
            control,
            coordinator_epoch,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip() {
        for control in [ControlType::Abort, ControlType::Commit] {
            let marker = TransactionMarker {
                control,
                coordinator_epoch: 3,
            };
            let batch = marker.build(9, 2, 1_000);
            let header = RecordBatch::validate(&batch).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!((header.producer_id, header.producer_epoch), (9, 2));
            assert_eq!(TransactionMarker::parse(&batch).unwrap(), Some(marker));
        }
    }

    #[test]
    fn data_batches_are_not_markers() {
        let batch = BatchBuilder::new(0).record(None, Some(b"x"), &[]).build();
        assert!(TransactionMarker::parse(&batch).is_err());
    }
}
