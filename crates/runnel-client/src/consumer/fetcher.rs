//! Positions and fetches: starting positions of new partitions (the committed offset, else
//! `auto_offset_reset` through ListOffsets), then a Fetch to each leader of fetchable
//! partitions, records decoded by [`records_from_fetch`].
//!
//! A leader has at most one fetch out, and a fetch outlives the poll that sent it: a poll
//! returns what any leader answered, and the next poll picks up the answers that came back
//! meanwhile ([`Fetches`]). Every Fetch is a full one (session id 0, epoch -1: no KIP-227
//! fetch session), so an answer dropped on close leaves nothing behind on the broker. A
//! position moves only in a poll, and only if it is still the one the fetch was sent for, so
//! a `seek` or a revocation while a fetch is out wins and the fetched records are dropped.

use crate::wire::topic_name;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    fetch_request, list_offsets_request, BrokerId, FetchRequest, ListOffsetsRequest,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::group;
use super::records::{records_from_fetch, ConsumerRecord, FetchedRecords};
use super::subscription::{OffsetReset, PositionNeeded, Subscribed, TopicPartition};
use super::{lock, Shared};
use crate::error::{ClientError, Result};

/// ListOffsets' replica id for consumers.
const CONSUMER_REPLICA_ID: i32 = -1;
const TIMESTAMP_EARLIEST: i64 = -2;
const TIMESTAMP_LATEST: i64 = -1;
/// The wait between rounds while nothing can be fetched (no assignment yet, no leader).
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// Partition errors after which the partition's leader must be looked up again.
fn is_stale_metadata(code: ResponseError) -> bool {
    matches!(
        code,
        ResponseError::NotLeaderOrFollower
            | ResponseError::UnknownTopicOrPartition
            | ResponseError::LeaderNotAvailable
            | ResponseError::FencedLeaderEpoch
            | ResponseError::UnknownLeaderEpoch
            | ResponseError::KafkaStorageError
            | ResponseError::UnknownTopicId
            | ResponseError::InconsistentTopicId
            | ResponseError::OffsetNotAvailable
            | ResponseError::ReplicaNotAvailable
    )
}

/// The partition's leader epoch as the client's metadata last gave it (the metadata the
/// request was routed by, or newer), for the leader to check (KIP-320): a leader that has not yet learnt that epoch answers
/// UNKNOWN_LEADER_EPOCH, one that has moved past it FENCED_LEADER_EPOCH, and a deposed
/// leader that does not know it yet is not read from. -1 (no check) when unknown; request
/// versions without the field (Fetch before v9, ListOffsets before v4) leave it out.
fn known_leader_epoch(shared: &Shared, topic: &str, partition: i32) -> i32 {
    shared
        .cluster
        .known_topic(topic)
        .and_then(|known| known.partition(partition).map(|p| p.leader_epoch))
        .unwrap_or(-1)
}

pub(crate) async fn poll(shared: &Arc<Shared>, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
    let deadline = Instant::now() + timeout;
    let backoff = shared.cluster.config().retry_backoff;
    loop {
        shared.check_fatal()?;
        if shared.is_closed() {
            return Err(ClientError::Closed);
        }
        if matches!(shared.state().subscribed(), Subscribed::Nothing) {
            return Err(ClientError::InvalidArgument(
                "the consumer reads nothing: subscribe or assign first".to_owned(),
            ));
        }
        let mut wait_before_next = false;
        match update_positions(shared).await {
            Ok(()) => {}
            Err(error) if error.is_retriable() => {
                tracing::debug!(%error, "cannot look positions up yet");
                wait_before_next = true;
            }
            Err(error) => return Err(error),
        }
        let answered = take_answers(shared);
        // Before the records go to the application: the next fetches are out while it works.
        let fetching = send_fetches(shared).await;
        match answered {
            Ok(records) if !records.is_empty() => return Ok(records),
            Ok(_) => {}
            Err(error) => return Err(error),
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Ok(Vec::new());
        }
        let wait = match (wait_before_next, fetching) {
            (true, _) => backoff,
            (false, true) => remaining,
            (false, false) => IDLE_WAIT,
        };
        // A fetch answering wakes this early; a wake-up left from an answer already taken
        // only costs a pass.
        let _ = tokio::time::timeout(wait.min(remaining), shared.fetch_answered.notified()).await;
    }
}

/// Gives every assigned partition without a position one: its committed offset, else (or
/// after a seek to the beginning or end, or an out-of-range fetch) an offset looked up by
/// ListOffsets. A partition that needs a reset under `auto_offset_reset = None` is an
/// OFFSET_OUT_OF_RANGE error.
pub(crate) async fn update_positions(shared: &Shared) -> Result<()> {
    // Two rounds: committed offsets found in the first may leave partitions needing a reset.
    for _ in 0..2 {
        let needed = shared.state().partitions_needing_position();
        if needed.is_empty() {
            return Ok(());
        }
        let mut committed_unknown = Vec::new();
        let mut resets = Vec::new();
        for (tp, need) in needed {
            match need {
                PositionNeeded::FetchCommitted => committed_unknown.push(tp),
                PositionNeeded::Committed(offset) => {
                    let _ = shared.state().seek(&tp, offset);
                }
                PositionNeeded::Reset(reset) => resets.push((tp, reset)),
                PositionNeeded::NoOffset => {
                    return Err(ClientError::broker(
                        ResponseError::OffsetOutOfRange,
                        Some(
                            "no committed offset or the position is out of range, and auto_offset_reset is None",
                        ),
                        format!("topic {:?} partition {}", tp.topic, tp.partition),
                    ));
                }
            }
        }
        if !committed_unknown.is_empty() {
            let found = group::fetch_committed(shared, &committed_unknown).await?;
            let mut state = shared.state();
            for tp in &committed_unknown {
                state.set_committed(tp, found.get(tp).copied().flatten());
            }
        }
        if !resets.is_empty() {
            let query: Vec<(TopicPartition, i64)> = resets
                .iter()
                .map(|(tp, reset)| {
                    let timestamp = match reset {
                        OffsetReset::Earliest => TIMESTAMP_EARLIEST,
                        _ => TIMESTAMP_LATEST,
                    };
                    (tp.clone(), timestamp)
                })
                .collect();
            let found = list_offsets(shared, &query).await?;
            let mut state = shared.state();
            for (tp, reset) in resets {
                if let Some(&(offset, _)) = found.get(&tp) {
                    // A reset by `auto_offset_reset` is not pending in the state (only explicit
                    // seeks to the beginning or end and out-of-range positions are): it applies
                    // if the partition is still without a position and nothing else is pending.
                    let by_policy = state.partition(&tp).is_some_and(|partition| {
                        partition.position.is_none() && partition.pending_reset.is_none()
                    });
                    if offset >= 0 && !state.complete_reset(&tp, reset, offset) && by_policy {
                        let _ = state.seek(&tp, offset);
                    }
                }
            }
        }
    }
    Ok(())
}

/// ListOffsets for each partition at its timestamp (-2 earliest, -1 latest), from the
/// partitions' leaders: (offset, timestamp) by partition; offset -1 when no record is that
/// late. Retries while leaders move, within the request timeout.
pub(crate) async fn list_offsets(
    shared: &Shared,
    query: &[(TopicPartition, i64)],
) -> Result<HashMap<TopicPartition, (i64, i64)>> {
    let config = shared.cluster.config();
    let started = Instant::now();
    let mut backoff = config.retry_backoff;
    loop {
        match list_offsets_once(shared, query).await {
            Err(error)
                if error.is_retriable() && started.elapsed() + backoff < config.request_timeout =>
            {
                tracing::debug!(%error, "retrying ListOffsets");
                for (tp, _) in query {
                    shared.cluster.invalidate(&tp.topic);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            result => return result,
        }
    }
}

async fn list_offsets_once(
    shared: &Shared,
    query: &[(TopicPartition, i64)],
) -> Result<HashMap<TopicPartition, (i64, i64)>> {
    let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, i64)>> = BTreeMap::new();
    for (tp, timestamp) in query {
        let leader = shared.cluster.leader(&tp.topic, tp.partition).await?;
        by_leader
            .entry(leader)
            .or_default()
            .push((tp.clone(), *timestamp));
    }
    let answers = join_all(
        by_leader
            .into_iter()
            .map(|(leader, partitions)| list_offsets_on(shared, leader, partitions)),
    )
    .await;
    let mut found = HashMap::new();
    for answer in answers {
        found.extend(answer?);
    }
    Ok(found)
}

async fn list_offsets_on(
    shared: &Shared,
    leader: i32,
    partitions: Vec<(TopicPartition, i64)>,
) -> Result<Vec<(TopicPartition, (i64, i64))>> {
    let connection = shared.cluster.connection(leader).await?;
    let version = connection.version_at_least::<ListOffsetsRequest>(1)?;
    let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for (tp, timestamp) in &partitions {
        by_topic
            .entry(tp.topic.as_str())
            .or_default()
            .push((tp.partition, *timestamp));
    }
    let mut request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(CONSUMER_REPLICA_ID))
        .with_topics(
            by_topic
                .iter()
                .map(|(topic, partitions)| {
                    list_offsets_request::ListOffsetsTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|&(partition, timestamp)| {
                                    list_offsets_request::ListOffsetsPartition::default()
                                        .with_partition_index(partition)
                                        .with_current_leader_epoch(known_leader_epoch(
                                            shared, topic, partition,
                                        ))
                                        .with_timestamp(timestamp)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    if version >= 2 {
        request.isolation_level = shared.config.isolation_level.as_i8();
    }
    if version >= 10 {
        request.timeout_ms =
            i32::try_from(shared.cluster.config().request_timeout.as_millis()).unwrap_or(i32::MAX);
    }
    let response = connection.send(request, version).await?;
    let mut answers = Vec::with_capacity(partitions.len());
    for topic in response.topics {
        let name = topic.name.0.as_str();
        for partition in topic.partitions {
            let index = partition.partition_index;
            if let Err(error) = ClientError::check(partition.error_code, None, || {
                format!("topic {name:?} partition {index}")
            }) {
                if error.code().is_some_and(is_stale_metadata) {
                    shared.cluster.invalidate(name);
                }
                return Err(error);
            }
            answers.push((
                TopicPartition::new(name, index),
                (partition.offset, partition.timestamp),
            ));
        }
    }
    Ok(answers)
}

/// A partition's part of a fetch answer, waiting for a poll: only if the partition's position
/// is still `fetch_offset` then does it move, and are the records returned.
pub(crate) struct FetchedPartition {
    tp: TopicPartition,
    fetch_offset: i64,
    fetched: FetchedRecords,
}

/// What one leader's fetch brought: its partitions' records, and the first error a partition
/// had that retrying will not fix.
type LeaderAnswer = Result<(Vec<FetchedPartition>, Option<ClientError>)>;

/// The fetches out, at most one per leader, and the answers that came back since the last
/// poll. A fetch outlives the poll that sent it, as the Java client's do: a leader with
/// nothing new holds its fetch for `fetch_max_wait`, and must not hold back the records of
/// the others.
#[derive(Default)]
pub(crate) struct Fetches {
    in_flight: HashMap<i32, JoinHandle<()>>,
    answered: Vec<LeaderAnswer>,
}

impl Fetches {
    /// Stops every fetch out and forgets what came back (the consumer closes).
    pub(crate) fn cancel(&mut self) {
        for (_, fetch) in self.in_flight.drain() {
            fetch.abort();
        }
        self.answered.clear();
    }
}

/// Applies the answers that came back: the records of every partition whose position was
/// still the one fetched and that is not paused, in the order the answers arrived, per partition in offset order.
/// An error only when no partition returned records (a partition whose bytes do not decode
/// keeps its position and fails the next fetch again).
fn take_answers(shared: &Shared) -> Result<Vec<ConsumerRecord>> {
    let answered = std::mem::take(&mut lock(&shared.fetches).answered);
    let mut records = Vec::new();
    let mut first_error = None;
    let mut state = shared.state();
    for answer in answered {
        match answer {
            Ok((partitions, error)) => {
                for FetchedPartition {
                    tp,
                    fetch_offset,
                    fetched,
                } in partitions
                {
                    // A partition paused since is fetched again from there once resumed.
                    if state.position(&tp) == Some(fetch_offset)
                        && !state.is_paused(&tp)
                        && state.update_position(
                            &tp,
                            fetched.next_fetch_offset,
                            fetched.leader_epoch,
                        )
                    {
                        records.extend(fetched.records);
                    }
                }
                if let Some(error) = error {
                    first_error.get_or_insert(error);
                }
            }
            Err(error) if error.is_retriable() => {
                tracing::debug!(%error, "fetch failed; trying again");
            }
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) if records.is_empty() => Err(error),
        _ => Ok(records),
    }
}

/// Sends a fetch to every leader of fetchable partitions that has none out. Returns whether
/// any fetch is out.
async fn send_fetches(shared: &Arc<Shared>) -> bool {
    let fetchable: Vec<(TopicPartition, i64)> = shared
        .state()
        .fetchable_partitions()
        .map(|(tp, position)| (tp.clone(), position))
        .collect();
    let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, i64)>> = BTreeMap::new();
    for (tp, position) in fetchable {
        match shared.cluster.leader(&tp.topic, tp.partition).await {
            Ok(leader) => by_leader.entry(leader).or_default().push((tp, position)),
            Err(error) => tracing::debug!(%error, partition = %tp, "no leader to fetch from"),
        }
    }
    let mut fetches = lock(&shared.fetches);
    for (leader, partitions) in by_leader {
        if fetches.in_flight.contains_key(&leader) {
            continue;
        }
        let task_shared = Arc::clone(shared);
        // The fetch's own entry is removed by the fetch, under the lock held here until the
        // entry is in.
        let fetch = tokio::spawn(async move {
            let max_wait = task_shared.config.fetch_max_wait;
            let answer = fetch_from(&task_shared, leader, partitions, max_wait).await;
            {
                let mut fetches = lock(&task_shared.fetches);
                fetches.in_flight.remove(&leader);
                fetches.answered.push(answer);
            }
            task_shared.fetch_answered.notify_one();
        });
        fetches.in_flight.insert(leader, fetch);
    }
    !fetches.in_flight.is_empty()
}

/// Fetches `partitions` from `leader`, waiting up to `max_wait` for records; updates the
/// partitions' high watermarks and what the errors say (a reset, stale metadata) right away.
async fn fetch_from(
    shared: &Shared,
    leader: i32,
    partitions: Vec<(TopicPartition, i64)>,
    max_wait: Duration,
) -> LeaderAnswer {
    let config = &shared.config;
    let connection = shared.cluster.connection(leader).await?;
    let version = connection.version_at_least::<FetchRequest>(4)?;
    let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for (tp, position) in &partitions {
        by_topic
            .entry(tp.topic.as_str())
            .or_default()
            .push((tp.partition, *position));
    }
    // Fetch v13+ names topics by id (KIP-516).
    let mut names_by_id = HashMap::new();
    let mut topics = Vec::with_capacity(by_topic.len());
    for (topic, positions) in &by_topic {
        let mut fetch_topic = fetch_request::FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(
                positions
                    .iter()
                    .map(|&(partition, position)| {
                        fetch_request::FetchPartition::default()
                            .with_partition(partition)
                            .with_current_leader_epoch(known_leader_epoch(shared, topic, partition))
                            .with_fetch_offset(position)
                            .with_partition_max_bytes(config.max_partition_fetch_bytes)
                    })
                    .collect(),
            );
        if version >= 13 {
            let metadata = shared.cluster.topic(topic).await?;
            if metadata.id.is_nil() {
                return Err(ClientError::Protocol(format!(
                    "{} serves Fetch v{version}, which names topics by id, but its metadata gives topic {topic:?} none",
                    connection.address()
                )));
            }
            fetch_topic.topic_id = metadata.id;
            names_by_id.insert(metadata.id, (*topic).to_owned());
        }
        topics.push(fetch_topic);
    }
    let request = FetchRequest::default()
        .with_max_wait_ms(i32::try_from(max_wait.as_millis()).unwrap_or(i32::MAX))
        .with_min_bytes(config.fetch_min_bytes)
        .with_max_bytes(config.fetch_max_bytes)
        .with_isolation_level(config.isolation_level.as_i8())
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics);
    let response = match connection.send(request, version).await {
        Ok(response) => response,
        Err(error) => {
            for topic in by_topic.keys() {
                shared.cluster.invalidate(topic);
            }
            return Err(error);
        }
    };
    if version >= 7 {
        ClientError::check(response.error_code, None, || {
            format!("Fetch from {}", connection.address())
        })?;
    }
    let mut records = Vec::new();
    let mut first_error = None;
    for topic in response.responses {
        let name = if version >= 13 {
            match names_by_id.get(&topic.topic_id) {
                Some(name) => name.clone(),
                None => continue,
            }
        } else {
            topic.topic.0.to_string()
        };
        let Some(positions) = by_topic.get(name.as_str()) else {
            continue;
        };
        for partition in topic.partitions {
            let index = partition.partition_index;
            let Some(&(_, fetch_offset)) = positions.iter().find(|(p, _)| *p == index) else {
                continue;
            };
            let tp = TopicPartition::new(name.as_str(), index);
            match ResponseError::try_from_code(partition.error_code) {
                None => {}
                Some(ResponseError::OffsetOutOfRange) => {
                    let mut state = shared.state();
                    if state.position(&tp) == Some(fetch_offset) {
                        tracing::info!(partition = %tp, offset = fetch_offset, "fetch offset out of range; resetting");
                        state.offset_out_of_range(&tp);
                    }
                    continue;
                }
                Some(code) if is_stale_metadata(code) => {
                    shared.cluster.invalidate(&name);
                    continue;
                }
                Some(code) => {
                    first_error.get_or_insert(ClientError::broker(
                        code,
                        None,
                        format!("fetching topic {name:?} partition {index}"),
                    ));
                    continue;
                }
            }
            let bytes = partition.records.unwrap_or_default();
            let aborted: Vec<(i64, i64)> = partition
                .aborted_transactions
                .unwrap_or_default()
                .iter()
                .map(|aborted| (aborted.producer_id.0, aborted.first_offset))
                .collect();
            let fetched = match records_from_fetch(
                &name,
                index,
                fetch_offset,
                &bytes,
                config.isolation_level,
                &aborted,
            ) {
                Ok(fetched) => fetched,
                Err(error) => {
                    first_error.get_or_insert(ClientError::Protocol(format!(
                        "topic {name:?} partition {index} at offset {fetch_offset}: {error}"
                    )));
                    continue;
                }
            };
            shared
                .state()
                .update_high_watermark(&tp, partition.high_watermark);
            records.push(FetchedPartition {
                tp,
                fetch_offset,
                fetched,
            });
        }
    }
    Ok((records, first_error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_changes_are_stale_metadata_and_data_errors_are_not() {
        assert!(is_stale_metadata(ResponseError::NotLeaderOrFollower));
        assert!(is_stale_metadata(ResponseError::UnknownTopicId));
        assert!(!is_stale_metadata(ResponseError::OffsetOutOfRange));
        assert!(!is_stale_metadata(ResponseError::TopicAuthorizationFailed));
    }
}
