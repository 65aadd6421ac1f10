//! Fetch: read whole batches below the high watermark, long-polling until `min_bytes` have
//! arrived or `max_wait_ms` has passed. Waiting costs nothing: the fetch sleeps on the
//! partitions' high-watermark channels, woken by the append (or fsync) that moves one. Reads
//! run on the I/O pool.
//!
//! A response carries at most `min(request max_bytes, fetch.max.bytes)` bytes of records,
//! except that the first partition with data returns one whole batch even if it is larger
//! (KIP-74), so a consumer always progresses. A request with `max_bytes <= 0`, or one naming a
//! partition a thousand times, gets no more.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use super::long_poll::{self, PollPlan, Wanted};
use super::{find_topic, node_endpoints};
use crate::broker::Broker;
use crate::cluster;
use crate::error::ApiError;
use crate::fetch_sessions::{Answered, Begun, WantedPartition};
use crate::partition::{last_stable_offset, Partition};
use crate::topics::Topic;

const READ_COMMITTED: i8 = 1;

/// The partitions a fetch asked for, resolved once, in request order.
struct FetchPlan {
    version: i16,
    isolation_level: i8,
    max_bytes: usize,
    min_bytes: usize,
    /// Each topic of the response and how many of `partitions` (in order) are its.
    topics: Vec<(TopicName, Uuid, usize)>,
    partitions: Vec<PlannedPartition>,
}

struct PlannedPartition {
    index: i32,
    fetch_offset: i64,
    partition_max_bytes: usize,
    target: Result<Arc<Partition>, ApiError>,
}

impl Wanted for PlannedPartition {
    fn index(&self) -> i32 {
        self.index
    }

    fn target(&self) -> Result<&Arc<Partition>, &ApiError> {
        self.target.as_ref()
    }
}

impl PollPlan for FetchPlan {
    type Wanted = PlannedPartition;

    fn wanted(&self) -> &[PlannedPartition] {
        &self.partitions
    }

    fn channel(partition: &Partition) -> watch::Receiver<i64> {
        partition.subscribe_high_watermark()
    }

    fn read(
        &self,
        planned: &PlannedPartition,
        partition: &Arc<Partition>,
        bytes_before: usize,
        _now_ms: i64,
    ) -> Result<PartitionData, ApiError> {
        read_partition(
            self,
            partition,
            planned,
            self.max_bytes.saturating_sub(bytes_before),
            bytes_before == 0,
        )
    }

    fn enough(&self, answers: &[PartitionData], bytes: usize) -> bool {
        bytes >= self.min_bytes || answers.iter().any(|data| data.error_code != 0)
    }
}

pub(crate) async fn fetch(
    broker: &Arc<Broker>,
    version: i16,
    request: FetchRequest,
) -> FetchResponse {
    // Requests before v7 carry session id 0 and epoch -1: sessionless.
    let begun = match broker.fetch_sessions.begin(&request, broker.now_ms()) {
        Ok(begun) => begun,
        Err(error) => return session_error(error),
    };
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let plan = Arc::new(plan(broker, version, &request, &begun.wanted));
    let answers = long_poll::answer(broker, Arc::clone(&plan), deadline).await;
    finish(broker, &plan, &begun, answers)
}

/// Resolves topics and partitions and the byte limits, without touching the disk. `wanted`
/// (the request's partitions, or its session's) is grouped into topics as it runs.
fn plan(
    broker: &Broker,
    version: i16,
    request: &FetchRequest,
    wanted: &[WantedPartition],
) -> FetchPlan {
    let request_max_bytes = usize::try_from(request.max_bytes).unwrap_or(0);
    let mut topics: Vec<(TopicName, Uuid, usize)> = Vec::new();
    let mut partitions = Vec::with_capacity(wanted.len());
    let mut topic: Option<Arc<Topic>> = None;
    for wanted in wanted {
        match topics.last_mut() {
            Some((name, id, count)) if *name == wanted.topic && *id == wanted.topic_id => {
                *count += 1
            }
            _ => {
                topic = find_topic(broker, &wanted.topic, wanted.topic_id);
                topics.push((wanted.topic.clone(), wanted.topic_id, 1));
            }
        }
        let target = match &topic {
            Some(topic) => topic
                .partition(wanted.partition)
                .ok_or(ApiError::code(ResponseError::UnknownTopicOrPartition))
                .and_then(|partition| {
                    partition.serving_epoch(wanted.current_leader_epoch)?;
                    Ok(partition)
                }),
            None => Err(ApiError::code(if version >= 13 {
                ResponseError::UnknownTopicId
            } else {
                ResponseError::UnknownTopicOrPartition
            })),
        };
        partitions.push(PlannedPartition {
            index: wanted.partition,
            fetch_offset: wanted.fetch_offset,
            partition_max_bytes: usize::try_from(wanted.partition_max_bytes).unwrap_or(0),
            target,
        });
    }
    FetchPlan {
        version,
        isolation_level: request.isolation_level,
        max_bytes: request_max_bytes.min(broker.config.fetch_max_bytes),
        min_bytes: request.min_bytes.max(0) as usize,
        topics,
        partitions,
    }
}

fn session_error(error: ResponseError) -> FetchResponse {
    let mut response = FetchResponse::default();
    response.error_code = error.code();
    response
}

/// The response from the answers of the last pass, in request order: all of them, or for an
/// incremental fetch session those with news. Records what the session's client now knows.
fn finish(
    broker: &Broker,
    plan: &FetchPlan,
    begun: &Begun,
    answers: Vec<PartitionData>,
) -> FetchResponse {
    let answered: Vec<Answered> = answers
        .iter()
        .map(|data| {
            let has_records = data.records.as_ref().is_some_and(|r| !r.is_empty());
            Answered {
                high_watermark: data.high_watermark,
                log_start_offset: data.log_start_offset,
                newsworthy: data.error_code != 0 || has_records,
                has_records,
            }
        })
        .collect();
    let finished =
        match broker
            .fetch_sessions
            .finish(begun.session, &begun.wanted, &answered, broker.now_ms())
        {
            Ok(finished) => finished,
            Err(error) => return session_error(error),
        };
    let mut answers = answers.into_iter().zip(finished.include);
    let mut response = FetchResponse::default();
    response.session_id = finished.session_id;
    response.responses = plan
        .topics
        .iter()
        .filter_map(|(name, id, count)| {
            let partitions: Vec<PartitionData> = answers
                .by_ref()
                .take(*count)
                .filter_map(|(data, include)| include.then_some(data))
                .collect();
            (!partitions.is_empty()).then(|| {
                let mut topic_response = FetchableTopicResponse::default();
                topic_response.topic = name.clone();
                topic_response.topic_id = *id;
                topic_response.partitions = partitions;
                topic_response
            })
        })
        .collect();
    if plan.version >= 12 {
        add_leader_hints(broker, plan.version, &mut response);
    }
    response
}

/// KIP-951: each partition refused with NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH names
/// its current leader, and from v16 the response says where those leaders listen.
fn add_leader_hints(broker: &Broker, version: i16, response: &mut FetchResponse) {
    let Some(member) = broker.cluster() else {
        return;
    };
    let moved = [
        ResponseError::NotLeaderOrFollower.code(),
        ResponseError::FencedLeaderEpoch.code(),
    ];
    let refused = response.responses.iter_mut().flat_map(|topic| {
        let (name, id) = (topic.topic.as_str(), topic.topic_id);
        topic
            .partitions
            .iter_mut()
            .filter(move |p| moved.contains(&p.error_code))
            .map(move |p| ((name, id, p.partition_index), &mut p.current_leader))
    });
    let leaders = cluster::leader_hints(member, refused, |place, leader, epoch| {
        place.leader_id = BrokerId(leader);
        place.leader_epoch = epoch;
    });
    if version >= 16 {
        response.node_endpoints = node_endpoints!(NodeEndpoint, leaders);
    }
}

fn read_partition(
    plan: &FetchPlan,
    partition: &Partition,
    planned: &PlannedPartition,
    bytes_left: usize,
    first_with_data: bool,
) -> Result<PartitionData, ApiError> {
    let high_watermark = partition.high_watermark();
    let limit = bytes_left.min(planned.partition_max_bytes);
    let read_committed = plan.isolation_level == READ_COMMITTED;
    let (slice, log_start_offset, last_stable_offset, aborted) = partition.with_log(|log| {
        let last_stable_offset = last_stable_offset(log, high_watermark);
        // read_committed stops below the oldest open transaction, and is told which
        // transactions in what it reads were aborted, so that it drops their records.
        let upper = if read_committed {
            last_stable_offset
        } else {
            high_watermark
        };
        let slice = log.read(planned.fetch_offset, upper, limit, first_with_data)?;
        let aborted = if read_committed {
            log.producers()
                .aborted_between(planned.fetch_offset, upper)
                .into_iter()
                .map(|aborted| {
                    let mut entry = AbortedTransaction::default();
                    entry.producer_id = ProducerId(aborted.producer_id);
                    entry.first_offset = aborted.first_offset;
                    entry
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok((slice, log.log_start_offset(), last_stable_offset, aborted))
    })?;
    // The copy happens outside the partition lock: appends need not wait for it.
    let records = partition.read_slice(&slice)?;
    partition
        .traffic
        .fetched(records.len(), crate::metrics::offsets_spanned(&records));
    let mut data = empty_partition(planned.index);
    data.high_watermark = high_watermark;
    data.last_stable_offset = last_stable_offset;
    if plan.version >= 5 {
        data.log_start_offset = log_start_offset;
    }
    if read_committed {
        data.aborted_transactions = Some(aborted);
    }
    data.records = Some(records);
    Ok(data)
}

fn empty_partition(index: i32) -> PartitionData {
    let mut data = PartitionData::default();
    data.partition_index = index;
    data.high_watermark = -1;
    data
}
