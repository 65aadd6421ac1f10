//! The broker's internal topics, `__consumer_offsets` and `__transaction_state`: compacted,
//! and read back into their coordinators partition by partition as this broker comes to lead
//! them. Clients may read them but not write to them or delete their records.

use runnel_group::transactions::TRANSACTION_STATE_TOPIC;
use runnel_record::{decode_records, ControlType, RecordBatch, TransactionMarker};
use runnel_storage::StorageError;

use crate::error::ApiError;
use crate::groups::OFFSETS_TOPIC;
use crate::partition::Partition;
use crate::topics::Topic;

/// Largest read while replaying an internal topic at start.
const REPLAY_READ_BYTES: usize = 1 << 20;

pub(crate) fn is_internal(name: &str) -> bool {
    name == OFFSETS_TOPIC || name == TRANSACTION_STATE_TOPIC
}

/// What replaying an internal topic hands its coordinator, in log order.
pub(crate) enum Replayed<'a> {
    Record {
        key: &'a [u8],
        value: Option<&'a [u8]>,
        /// The producer whose transaction wrote it, for records written in one.
        transaction: Option<i64>,
    },
    /// The end of `producer_id`'s transaction on this partition.
    Marker { producer_id: i64, commit: bool },
}

/// Hands every record and transaction marker of one partition of `topic`, from its log start
/// to its log end, to `apply`, in log order; records without a key, and those `apply` cannot
/// read, are logged and skipped. The log end, not the high watermark: a coordinator loading
/// the partition it has just come to lead reads what it will commit as leader. Returns how many records were read.
pub(crate) fn replay_partition(
    topic: &Topic,
    partition: &Partition,
    mut apply: impl FnMut(Replayed<'_>) -> Result<(), String>,
) -> Result<usize, StorageError> {
    let name = &topic.name;
    let mut count = 0;
    let (mut offset, end) = partition
        .with_log(|log| Ok((log.log_start_offset(), log.log_end_offset())))
        .map_err(api_to_storage)?;
    while offset < end {
        let slice = partition
            .with_log(|log| log.read(offset, end, REPLAY_READ_BYTES, true))
            .map_err(api_to_storage)?;
        if slice.is_empty() {
            break;
        }
        let bytes = slice.read().map_err(|source| StorageError::Io {
            context: format!("replaying {name}-{}", partition.index),
            source,
        })?;
        let headers = RecordBatch::validate_all(&bytes).map_err(|error| {
            StorageError::Corrupt(format!("{name}-{}: {error}", partition.index))
        })?;
        let mut position = 0;
        for header in headers {
            let batch = &bytes[position..position + header.total_len()];
            position += header.total_len();
            offset = header.next_offset();
            let corrupt =
                |error| StorageError::Corrupt(format!("{name}-{}: {error}", partition.index));
            if header.is_control() {
                if let Some(marker) = TransactionMarker::parse(batch).map_err(corrupt)? {
                    let replayed = Replayed::Marker {
                        producer_id: header.producer_id,
                        commit: marker.control == ControlType::Commit,
                    };
                    if let Err(error) = apply(replayed) {
                        tracing::warn!(topic = %name, partition = partition.index, %error, "skipping an unreadable marker");
                    }
                }
                continue;
            }
            let transaction = header.is_transactional().then_some(header.producer_id);
            for record in decode_records(batch).map_err(corrupt)? {
                let Some(key) = record.key else { continue };
                let replayed = Replayed::Record {
                    key: &key,
                    value: record.value.as_deref(),
                    transaction,
                };
                if let Err(error) = apply(replayed) {
                    tracing::warn!(topic = %name, partition = partition.index, offset = record.offset, %error, "skipping an unreadable record");
                }
                count += 1;
            }
        }
    }
    Ok(count)
}

fn api_to_storage(error: ApiError) -> StorageError {
    StorageError::Corrupt(error.message.unwrap_or_else(|| format!("{:?}", error.code)))
}
