//! ListOffsets, OffsetForLeaderEpoch and DeleteRecords: questions about and moves of a
//! partition's offsets. Each handler blocks (index scans, decoding a batch to find a record by
//! time, segment deletion) and runs on the I/O pool.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};

use super::find_partition;
use crate::broker::Broker;
use crate::error::ApiError;
use crate::partition::{last_stable_offset, Partition};

const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
const LATEST_TIERED_TIMESTAMP: i64 = -5;
const EARLIEST_PENDING_UPLOAD_TIMESTAMP: i64 = -6;

pub(crate) fn list_offsets(
    broker: &Broker,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let read_committed = request.isolation_level == 1;
    let mut response = ListOffsetsResponse::default();
    response.topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let mut topic_response = ListOffsetsTopicResponse::default();
            topic_response.partitions = topic
                .partitions
                .iter()
                .map(|wanted| {
                    let mut answer = ListOffsetsPartitionResponse::default();
                    answer.partition_index = wanted.partition_index;
                    let found = find_partition(broker, &topic.name, wanted.partition_index)
                        .and_then(|partition| {
                            let epoch = partition.serving_epoch(wanted.current_leader_epoch)?;
                            lookup(&partition, wanted.timestamp, version, read_committed)
                                .map(|found| (found, epoch))
                        });
                    match found {
                        Ok(((offset, timestamp), epoch)) => {
                            answer.offset = offset;
                            answer.timestamp = timestamp;
                            if version >= 4 && offset >= 0 {
                                answer.leader_epoch = epoch;
                            }
                        }
                        Err(error) => {
                            answer.error_code = error.error_code();
                        }
                    }
                    answer
                })
                .collect();
            topic_response.name = topic.name;
            topic_response
        })
        .collect();
    response
}

/// The (offset, timestamp) a ListOffsets query names; (-1, -1) when no record matches. A
/// search by time trusts each batch's max timestamp (validated when it was produced) and the
/// time index, and decodes at most the batches that may hold the answer. For read_committed
/// the end is the last stable offset.
fn lookup(
    partition: &Partition,
    timestamp: i64,
    version: i16,
    read_committed: bool,
) -> Result<(i64, i64), ApiError> {
    let high_watermark = partition.high_watermark();
    let high_watermark = if read_committed {
        partition.with_log(|log| Ok(last_stable_offset(log, high_watermark)))?
    } else {
        high_watermark
    };
    let none = (-1, -1);
    match timestamp {
        LATEST_TIMESTAMP => {
            partition.check_high_watermark_settled()?;
            Ok((high_watermark, -1))
        }
        EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => {
            partition.with_log(|log| Ok((log.log_start_offset(), -1)))
        }
        // No tiered storage yet: nothing is uploaded or pending, so both answer "none".
        LATEST_TIERED_TIMESTAMP | EARLIEST_PENDING_UPLOAD_TIMESTAMP => Ok(none),
        MAX_TIMESTAMP if version >= 7 => {
            partition.with_log(|log| Ok(log.max_timestamp()?.unwrap_or(none)))
        }
        timestamp if timestamp >= 0 => {
            let found = partition.with_log(|log| log.offset_for_timestamp(timestamp))?;
            match found {
                // Records above the high watermark are not yet visible to consumers.
                Some((offset, found_at)) if offset < high_watermark => Ok((offset, found_at)),
                // "None before the end" needs a known end (KIP-207).
                _ => {
                    partition.check_high_watermark_settled()?;
                    Ok(none)
                }
            }
        }
        _ => Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!("ListOffsets v{version} does not know timestamp {timestamp}"),
        )),
    }
}

pub(crate) fn offset_for_leader_epoch(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut response = OffsetForLeaderEpochResponse::default();
    response.topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let mut result = OffsetForLeaderTopicResult::default();
            result.partitions = topic
                .partitions
                .iter()
                .map(|wanted| {
                    let mut answer = EpochEndOffset::default();
                    answer.partition = wanted.partition;
                    let found = find_partition(broker, &topic.topic, wanted.partition).and_then(
                        |partition| {
                            partition.serving_epoch(wanted.current_leader_epoch)?;
                            partition
                                .with_log(|log| Ok(log.end_offset_for_epoch(wanted.leader_epoch)))
                        },
                    );
                    match found {
                        Ok((epoch, end_offset)) => {
                            answer.leader_epoch = epoch;
                            answer.end_offset = end_offset;
                        }
                        Err(error) => {
                            answer.error_code = error.error_code();
                            answer.leader_epoch = -1;
                            answer.end_offset = -1;
                        }
                    }
                    answer
                })
                .collect();
            result.topic = topic.topic;
            result
        })
        .collect();
    response
}

pub(crate) fn delete_records(
    broker: &Broker,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut response = DeleteRecordsResponse::default();
    response.topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let mut result = DeleteRecordsTopicResult::default();
            result.partitions = topic
                .partitions
                .iter()
                .map(|wanted| {
                    let mut answer = DeleteRecordsPartitionResult::default();
                    answer.partition_index = wanted.partition_index;
                    let moved = refuse_internal(&topic.name)
                        .and_then(|()| find_partition(broker, &topic.name, wanted.partition_index))
                        .and_then(|partition| {
                            let high_watermark = partition.high_watermark();
                            // -1 means "up to the high watermark", as Kafka's admin tools send it.
                            let target = if wanted.offset == -1 { high_watermark } else { wanted.offset };
                            if target < 0 || target > high_watermark {
                                return Err(ApiError::new(
                                    ResponseError::OffsetOutOfRange,
                                    format!("cannot delete records before {target}: the high watermark is {high_watermark}"),
                                ));
                            }
                            let moved = partition.with_log(|log| log.delete_records_before(target));
                            // Segments wholly below the new log start go at the next check.
                            partition.schedule_retention_check();
                            moved
                        });
                    match moved {
                        Ok(low_watermark) => answer.low_watermark = low_watermark,
                        Err(error) => {
                            answer.error_code = error.error_code();
                            answer.low_watermark = -1;
                        }
                    }
                    answer
                })
                .collect();
            result.name = topic.name;
            result
        })
        .collect();
    response
}

/// Records of internal topics are the broker's own; a client may not delete them.
fn refuse_internal(topic: &str) -> Result<(), ApiError> {
    if crate::internal_topics::is_internal(topic) {
        return Err(ApiError::new(
            ResponseError::InvalidTopicException,
            format!("Cannot delete records of internal topic {topic}"),
        ));
    }
    Ok(())
}
