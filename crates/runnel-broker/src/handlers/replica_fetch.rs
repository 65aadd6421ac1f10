//! Fetch from a follower (a request with a replica id): the leader's side of replication.
//! The replication rules (`runnel_replication::LeaderState::answer_fetch`) check the leader
//! epoch and the follower's last epoch, record how far the follower has durably copied (which
//! may move the high watermark and so answer waiting `acks=all` produces), and say whether
//! records follow. Records are read up to the log end, not the high watermark. A fetch with
//! nothing to copy in any of its partitions waits, up to `max_wait_ms`, for the log end of
//! one of them to move (the long poll of [`long_poll`], which consumer fetches share).
//!
//! Followers fetch sessionless (session 0, epoch -1), every partition they follow from this
//! leader in one request.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use runnel_replication::{FetchAnswer, FetchRefusal, ReplicaFetch};
use tokio::sync::watch;
use tokio::time::Instant;

use super::find_topic;
use super::long_poll::{self, PollPlan, Wanted};
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
    let mut planned = Vec::new();
    for (slot, topic) in request.topics.into_iter().enumerate() {
        let local = find_topic(broker, &topic.topic, topic.topic_id);
        let mut answered = FetchableTopicResponse::default();
        answered.topic = topic.topic;
        answered.topic_id = topic.topic_id;
        response.responses.push(answered);
        for wanted in topic.partitions {
            let fetch = ReplicaFetch {
                replica,
                broker_epoch,
                current_leader_epoch: wanted.current_leader_epoch,
                fetch_offset: wanted.fetch_offset,
                last_fetched_epoch: (version >= 12 && wanted.last_fetched_epoch >= 0)
                    .then_some(wanted.last_fetched_epoch),
            };
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
            planned.push(Planned {
                slot,
                index: wanted.partition,
                fetch,
                max_bytes: usize::try_from(wanted.partition_max_bytes).unwrap_or(0),
                target,
            });
        }
    }
    let plan = Arc::new(ReplicaPlan { max_bytes, planned });
    let answers = long_poll::answer(broker, Arc::clone(&plan), deadline).await;
    for (planned, data) in plan.planned.iter().zip(answers) {
        if let Some(topic) = response.responses.get_mut(planned.slot) {
            topic.partitions.push(data);
        }
    }
    response
}

/// One partition a follower asked for, resolved.
struct Planned {
    /// Which topic of the response its answer goes to.
    slot: usize,
    index: i32,
    fetch: ReplicaFetch,
    max_bytes: usize,
    target: Result<Arc<Partition>, ApiError>,
}

impl Wanted for Planned {
    fn index(&self) -> i32 {
        self.index
    }

    fn target(&self) -> Result<&Arc<Partition>, &ApiError> {
        self.target.as_ref()
    }
}

/// A follower's fetch waits while none of its partitions has anything for it (records, a
/// divergence, an error), so that a follower of many partitions hears of a record in any of
/// them at once.
struct ReplicaPlan {
    max_bytes: usize,
    planned: Vec<Planned>,
}

impl PollPlan for ReplicaPlan {
    type Wanted = Planned;

    fn wanted(&self) -> &[Planned] {
        &self.planned
    }

    fn channel(partition: &Partition) -> watch::Receiver<i64> {
        partition.subscribe_log_end()
    }

    fn read(
        &self,
        planned: &Planned,
        partition: &Arc<Partition>,
        bytes_before: usize,
        now_ms: i64,
    ) -> Result<PartitionData, ApiError> {
        let budget = planned
            .max_bytes
            .min(self.max_bytes.saturating_sub(bytes_before));
        read_for_replica(partition, &planned.fetch, budget, bytes_before == 0, now_ms)
    }

    fn enough(&self, answers: &[PartitionData], _bytes: usize) -> bool {
        answers.iter().any(has_news)
    }
}

/// Whether an answer gives the follower something to do.
fn has_news(data: &PartitionData) -> bool {
    data.error_code != 0
        || data.diverging_epoch.epoch >= 0
        || data
            .records
            .as_ref()
            .is_some_and(|records| !records.is_empty())
}

/// Asks the replication rules, then reads what they allow. Blocks.
fn read_for_replica(
    partition: &Partition,
    fetch: &ReplicaFetch,
    max_bytes: usize,
    at_least_one_batch: bool,
    now_ms: i64,
) -> Result<PartitionData, ApiError> {
    let (answer, slice, log_start_offset) =
        partition.answer_replica_fetch(fetch, max_bytes, at_least_one_batch, now_ms)?;
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
