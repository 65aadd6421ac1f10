//! Fetch from a follower (a request with a replica id): the leader's side of replication.
//! The replication rules (`runnel_replication::LeaderState::answer_fetch`) check the leader
//! epoch and the follower's last epoch, record how far the follower has durably copied (which
//! may move the high watermark and so answer waiting `acks=all` produces), and say whether
//! records follow. Records are read up to the log end, not the high watermark. A fetch with
//! nothing to copy waits, up to `max_wait_ms`, for the log end to move.
//!
//! Followers fetch sessionless (session 0, epoch -1), one partition per request.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use runnel_replication::{FetchAnswer, FetchRefusal, ReplicaFetch};
use tokio::time::Instant;

use super::find_topic;
use crate::broker::Broker;
use crate::error::ApiError;
use crate::partition::{not_leader, Partition};

/// The fetching replica's broker id and registration epoch, if the request is a follower's.
pub(crate) fn replica_of(version: i16, request: &FetchRequest) -> Option<(i32, i64)> {
    let (id, epoch) = if version >= 15 {
        (
            request.replica_state.replica_id.0,
            request.replica_state.replica_epoch,
        )
    } else {
        (request.replica_id.0, -1)
    };
    (id >= 0).then_some((id, epoch))
}

pub(crate) async fn replica_fetch(
    broker: &Arc<Broker>,
    version: i16,
    request: FetchRequest,
    (replica, broker_epoch): (i32, i64),
) -> FetchResponse {
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let max_bytes = usize::try_from(request.max_bytes)
        .unwrap_or(0)
        .min(broker.config.fetch_max_bytes);
    let mut response = FetchResponse::default();
    for topic in request.topics {
        let local = find_topic(broker, &topic.topic, topic.topic_id);
        let mut answered = FetchableTopicResponse::default();
        answered.topic = topic.topic.clone();
        answered.topic_id = topic.topic_id;
        for wanted in topic.partitions {
            let fetch = ReplicaFetch {
                replica,
                broker_epoch,
                current_leader_epoch: wanted.current_leader_epoch,
                fetch_offset: wanted.fetch_offset,
                last_fetched_epoch: (version >= 12 && wanted.last_fetched_epoch >= 0)
                    .then_some(wanted.last_fetched_epoch),
            };
            let partition_max_bytes = usize::try_from(wanted.partition_max_bytes)
                .unwrap_or(0)
                .min(max_bytes);
            let target = match &local {
                Some(topic) => topic
                    .partition(wanted.partition)
                    .ok_or(ApiError::code(ResponseError::UnknownTopicOrPartition)),
                None => Err(ApiError::code(if version >= 13 {
                    ResponseError::UnknownTopicId
                } else {
                    ResponseError::UnknownTopicOrPartition
                })),
            };
            let data = match target {
                Ok(partition) => {
                    answer_one(broker, partition, fetch, partition_max_bytes, deadline)
                        .await
                        .unwrap_or_else(|error| error_data(wanted.partition, &error))
                }
                Err(error) => error_data(wanted.partition, &error),
            };
            answered.partitions.push(data);
        }
        response.responses.push(answered);
    }
    response
}

/// One partition's answer, waiting for new records while there are none.
async fn answer_one(
    broker: &Arc<Broker>,
    partition: Arc<Partition>,
    fetch: ReplicaFetch,
    max_bytes: usize,
    deadline: Instant,
) -> Result<PartitionData, ApiError> {
    let mut log_end = partition.subscribe_log_end();
    let mut shutdown = broker.shutdown_signal();
    loop {
        log_end.borrow_and_update();
        let reader = Arc::clone(&partition);
        let now_ms = broker.now_ms();
        let data = broker
            .io
            .run(move || read_for_replica(&reader, &fetch, max_bytes, now_ms))
            .await??;
        let nothing_new = data.error_code == 0
            && data.diverging_epoch.epoch < 0
            && data
                .records
                .as_ref()
                .is_none_or(|records| records.is_empty());
        if !nothing_new || Instant::now() >= deadline {
            return Ok(data);
        }
        tokio::select! {
            _ = log_end.changed() => {}
            _ = tokio::time::sleep_until(deadline) => return Ok(data),
            _ = shutdown.wait_for(|stop| *stop) => return Ok(data),
        }
    }
}

/// Asks the replication rules, then reads what they allow. Blocks.
fn read_for_replica(
    partition: &Partition,
    fetch: &ReplicaFetch,
    max_bytes: usize,
    now_ms: i64,
) -> Result<PartitionData, ApiError> {
    let (answer, slice, log_start_offset) =
        partition.answer_replica_fetch(fetch, max_bytes, now_ms)?;
    let mut data = PartitionData::default();
    data.partition_index = partition.index;
    data.log_start_offset = log_start_offset;
    data.high_watermark = partition.high_watermark();
    data.last_stable_offset = data.high_watermark;
    match answer {
        FetchAnswer::Records { .. } => {
            if let Some(slice) = slice {
                data.records = Some(partition.read_slice(&slice)?);
            }
        }
        FetchAnswer::Diverging { end, .. } => {
            let mut diverging = EpochEndOffset::default();
            diverging.epoch = end.epoch;
            diverging.end_offset = end.end_offset;
            data.diverging_epoch = diverging;
        }
        FetchAnswer::Refused(refusal) => {
            let error = match refusal {
                FetchRefusal::FencedLeaderEpoch => ResponseError::FencedLeaderEpoch,
                FetchRefusal::UnknownLeaderEpoch => ResponseError::UnknownLeaderEpoch,
                FetchRefusal::NotAReplica => return Err(not_leader()),
                FetchRefusal::OffsetOutOfRange => ResponseError::OffsetOutOfRange,
            };
            data.error_code = error.code();
        }
    }
    Ok(data)
}

fn error_data(index: i32, error: &ApiError) -> PartitionData {
    let mut data = PartitionData::default();
    data.partition_index = index;
    data.high_watermark = -1;
    data.error_code = error.error_code();
    data
}
