//! Fetch from a follower (a request with a replica id): the leader's side of replication.
//! The replication rules (`runnel_replication::LeaderState::answer_fetch`) check the leader
//! epoch and the follower's last epoch, record how far the follower has durably copied (which
//! may move the high watermark and so answer waiting `acks=all` produces), and say whether
//! records follow. Records are read up to the log end, not the high watermark. A fetch with
//! nothing to copy in any of its partitions waits, up to `max_wait_ms`, for the log end of
//! one of them to move.
//!
//! Followers fetch sessionless (session 0, epoch -1), every partition they follow from this
//! leader in one request.

use std::sync::Arc;
use std::time::Duration;

use futures::future::select_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use runnel_replication::{FetchAnswer, FetchRefusal, ReplicaFetch};
use tokio::sync::watch;
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
    let answers = answer_all(broker, Arc::new(planned), max_bytes, deadline).await;
    for (slot, data) in answers {
        if let Some(topic) = response.responses.get_mut(slot) {
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

/// Every partition's answer, in request order. While none has anything for the follower
/// (records, a divergence, an error), waits until the log end of any of them moves, or
/// `deadline`: so that a follower of many partitions hears of a record in any of them at
/// once, and its durable position in each is recorded on every pass.
async fn answer_all(
    broker: &Arc<Broker>,
    planned: Arc<Vec<Planned>>,
    max_bytes: usize,
    deadline: Instant,
) -> Vec<(usize, PartitionData)> {
    let mut watchers: Vec<Option<watch::Receiver<i64>>> = planned
        .iter()
        .map(|planned| {
            planned
                .target
                .as_ref()
                .ok()
                .map(|partition| partition.subscribe_log_end())
        })
        .collect();
    let mut shutdown = broker.shutdown_signal();
    loop {
        for watcher in watchers.iter_mut().flatten() {
            watcher.borrow_and_update();
        }
        let pass = Arc::clone(&planned);
        let now_ms = broker.now_ms();
        let read = broker
            .io
            .run(move || read_pass(&pass, max_bytes, now_ms))
            .await;
        let answers = match read {
            Ok(answers) => answers,
            Err(error) => {
                let error = ApiError::from(error);
                return planned
                    .iter()
                    .map(|planned| (planned.slot, error_data(planned.index, &error)))
                    .collect();
            }
        };
        let news = answers.iter().any(|(_, data)| has_news(data));
        if news || Instant::now() >= deadline || watchers.iter().all(Option::is_none) {
            return answers;
        }
        let moved = select_all(
            watchers
                .iter_mut()
                .flatten()
                .map(|watcher| Box::pin(watcher.changed())),
        );
        tokio::select! {
            _ = moved => {}
            _ = tokio::time::sleep_until(deadline) => return answers,
            _ = shutdown.wait_for(|stop| *stop) => return answers,
        }
    }
}

/// One read of every partition asked, within the response's byte budget: the first
/// partition with records gets at least a whole batch, so the follower always progresses.
/// Blocks.
fn read_pass(planned: &[Planned], max_bytes: usize, now_ms: i64) -> Vec<(usize, PartitionData)> {
    let mut bytes = 0usize;
    planned
        .iter()
        .map(|planned| {
            let data = planned
                .target
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|partition| {
                    let budget = planned.max_bytes.min(max_bytes.saturating_sub(bytes));
                    read_for_replica(partition, &planned.fetch, budget, bytes == 0, now_ms)
                })
                .unwrap_or_else(|error| error_data(planned.index, &error));
            bytes += data.records.as_ref().map_or(0, |records| records.len());
            (planned.slot, data)
        })
        .collect()
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

fn error_data(index: i32, error: &ApiError) -> PartitionData {
    let mut data = PartitionData::default();
    data.partition_index = index;
    data.high_watermark = -1;
    data.error_code = error.error_code();
    data
}
