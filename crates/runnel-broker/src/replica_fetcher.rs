//! The follower's side of replication: one fetcher task per leader this broker copies from,
//! which fetches every partition it follows there in one request (Kafka's replica fetcher
//! threads), over one connection, as a replica (its broker id and epoch, the leader epoch it
//! believes current, the epoch of its last record). For each partition's answer it does what
//! `runnel_replication::follower_step` says: append and fsync, then fetch from the new log end
//! (which tells the leader all below it is durable here), or truncate where the logs diverge,
//! or leave the partition out of the fetches for a pause (waiting for newer metadata).
//!
//! The image applier says which partitions to follow where ([`ReplicaFetchers::assign`]); a
//! fetcher lives while its leader has partitions here. A partition that stops following this
//! leader in this epoch drops out of the next fetch, and an answer for it that was already on
//! its way is refused by the partition itself (appends and truncations name the epoch).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use runnel_client::{ClientConfig, Connection};
use runnel_replication::{follower_step, EpochEnd, FetchAnswer, FetchRefusal, FollowerStep};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::broker::Broker;
use crate::cluster::Follow;
use crate::error::ApiError;
use crate::partition::{LeaderPosition, Partition};

/// How long the leader holds a fetch with nothing new.
const FETCH_MAX_WAIT_MS: i32 = 500;
/// Bytes of one partition's records per fetch.
const FETCH_PARTITION_MAX_BYTES: i32 = 8 * 1024 * 1024;
/// Bytes of records per fetch, all partitions together (the leader may cap it lower).
const FETCH_MAX_BYTES: i32 = 16 * 1024 * 1024;
/// The pause after a failed fetch, or of a partition whose fetch was refused.
const BACKOFF: Duration = Duration::from_millis(200);

/// A followed partition: topic id and index.
type PartitionKey = (Uuid, i32);

/// This broker's replica fetchers, one per leader it copies partitions from.
#[derive(Debug, Default)]
pub(crate) struct ReplicaFetchers {
    by_leader: Mutex<HashMap<i32, LeaderFetcher>>,
}

#[derive(Debug)]
struct LeaderFetcher {
    address: String,
    followed: Arc<Followed>,
    task: JoinHandle<()>,
}

/// What one fetcher copies; changed by the image applier while the fetcher runs.
#[derive(Debug, Default)]
struct Followed {
    partitions: Mutex<HashMap<PartitionKey, FollowedPartition>>,
    changed: Notify,
}

#[derive(Debug, Clone)]
struct FollowedPartition {
    partition: Arc<Partition>,
    topic_id: Uuid,
    leader_epoch: i32,
    /// Left out of fetches until then (a refused fetch, a failed append).
    paused_until: Option<Instant>,
}

impl ReplicaFetchers {
    /// Makes the fetchers copy exactly `follow`: starts one for each new leader (at the
    /// address `address_of` gives), hands each running one its new set of partitions, and
    /// stops those of leaders no longer followed or whose address changed.
    pub(crate) fn assign(
        &self,
        broker: &Arc<Broker>,
        follow: Vec<Follow>,
        address_of: impl Fn(i32) -> Option<String>,
    ) {
        let mut wanted: HashMap<i32, HashMap<PartitionKey, FollowedPartition>> = HashMap::new();
        for follow in follow {
            wanted.entry(follow.leader).or_default().insert(
                (follow.topic_id, follow.partition.index),
                FollowedPartition {
                    partition: follow.partition,
                    topic_id: follow.topic_id,
                    leader_epoch: follow.leader_epoch,
                    paused_until: None,
                },
            );
        }
        let mut by_leader = self.lock();
        by_leader.retain(|leader, fetcher| {
            let keep = wanted.contains_key(leader)
                && address_of(*leader).as_deref() == Some(fetcher.address.as_str())
                && !fetcher.task.is_finished();
            if !keep {
                fetcher.task.abort();
            }
            keep
        });
        for (leader, partitions) in wanted {
            if let Some(fetcher) = by_leader.get(&leader) {
                fetcher.followed.replace(partitions);
                continue;
            }
            let Some(address) = address_of(leader) else {
                continue;
            };
            let followed = Arc::new(Followed::default());
            followed.replace(partitions);
            let task = tokio::spawn(run(
                Arc::clone(broker),
                address.clone(),
                Arc::clone(&followed),
            ));
            by_leader.insert(
                leader,
                LeaderFetcher {
                    address,
                    followed,
                    task,
                },
            );
        }
    }

    /// Stops every fetcher (this broker follows nothing any more, or shuts down).
    pub(crate) fn stop_all(&self) {
        for (_, fetcher) in self.lock().drain() {
            fetcher.task.abort();
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<i32, LeaderFetcher>> {
        self.by_leader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Followed {
    fn lock(&self) -> MutexGuard<'_, HashMap<PartitionKey, FollowedPartition>> {
        self.partitions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The new set; a partition still followed in the same epoch keeps its pause.
    fn replace(&self, mut partitions: HashMap<PartitionKey, FollowedPartition>) {
        let mut current = self.lock();
        for (key, wanted) in &mut partitions {
            if let Some(kept) = current
                .get(key)
                .filter(|kept| kept.leader_epoch == wanted.leader_epoch)
            {
                wanted.paused_until = kept.paused_until;
            }
        }
        *current = partitions;
        drop(current);
        // A permit if the fetcher is not waiting now: it sees the change on its next wait.
        self.changed.notify_one();
    }

    /// The partitions to fetch now, in an order that starts one further each round, so
    /// that a response cut short by its byte limit does not starve the same partitions.
    fn due(&self, now: Instant, round: usize) -> Vec<FollowedPartition> {
        let mut due: Vec<FollowedPartition> = self
            .lock()
            .values()
            .filter(|followed| followed.paused_until.is_none_or(|until| until <= now))
            .cloned()
            .collect();
        due.sort_by_key(|followed| (followed.topic_id, followed.partition.index));
        if !due.is_empty() {
            let start = round % due.len();
            due.rotate_left(start);
        }
        due
    }

    /// When the first paused partition is due again.
    fn next_resume(&self) -> Option<Instant> {
        self.lock()
            .values()
            .filter_map(|followed| followed.paused_until)
            .min()
    }

    /// Whether the partition is still followed here in this epoch.
    fn follows(&self, followed: &FollowedPartition) -> bool {
        self.lock()
            .get(&(followed.topic_id, followed.partition.index))
            .is_some_and(|current| current.leader_epoch == followed.leader_epoch)
    }

    fn pause(&self, followed: &FollowedPartition, pause: Duration) {
        if let Some(current) = self
            .lock()
            .get_mut(&(followed.topic_id, followed.partition.index))
            .filter(|current| current.leader_epoch == followed.leader_epoch)
        {
            current.paused_until = Some(Instant::now() + pause);
        }
    }
}

/// Copies from the leader at `leader_address` what `followed` names, until aborted.
async fn run(broker: Arc<Broker>, leader_address: String, followed: Arc<Followed>) {
    let mut config = ClientConfig::new(leader_address.clone());
    config.client_id = format!("runnel-replica-{}", broker.node_id());
    config.request_timeout = Duration::from_secs(10);
    let mut connection: Option<Connection> = None;
    let mut shutdown = broker.shutdown_signal();
    for round in 0usize.. {
        if *shutdown.borrow() {
            return;
        }
        let due = followed.due(Instant::now(), round);
        if due.is_empty() {
            let wake = followed
                .next_resume()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                _ = followed.changed.notified() => {}
                _ = tokio::time::sleep_until(wake) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            continue;
        }
        let open = match connection.take() {
            Some(open) if !open.is_closed() => open,
            _ => match Connection::connect(&leader_address, &config).await {
                Ok(open) => open,
                Err(error) => {
                    tracing::debug!(leader = %leader_address, %error, "cannot reach the leader");
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            },
        };
        let fetched = tokio::select! {
            fetched = fetch_once(&broker, &followed, due, &open) => fetched,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        match fetched {
            Ok(()) => connection = Some(open),
            Err(error) => {
                tracing::warn!(leader = %leader_address, error = ?error.message, "replica fetch failed");
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

/// One fetch of the `due` partitions and what follows from each answer.
async fn fetch_once(
    broker: &Arc<Broker>,
    followed: &Arc<Followed>,
    due: Vec<FollowedPartition>,
    connection: &Connection,
) -> Result<(), ApiError> {
    let version = connection
        .version_for(ApiKey::Fetch)
        .filter(|version| *version >= 12)
        .ok_or_else(|| {
            ApiError::new(
                ResponseError::UnsupportedVersion,
                "the leader does not serve Fetch v12+ (diverging epochs)",
            )
        })?;
    let positioned = {
        let due = due.clone();
        broker
            .io
            .run(move || {
                due.into_iter()
                    .map(|followed| {
                        let position = followed.partition.replica_position();
                        (followed, position)
                    })
                    .collect::<Vec<_>>()
            })
            .await?
    };
    let mut asked = Vec::with_capacity(positioned.len());
    for (partition, position) in positioned {
        match position {
            Ok(position) => asked.push((partition, position)),
            Err(error) => {
                tracing::debug!(partition = %partition.partition.name(), error = ?error.message, "cannot read this replica's position");
                followed.pause(&partition, BACKOFF);
            }
        }
    }
    if asked.is_empty() {
        return Ok(());
    }
    let broker_epoch = broker
        .cluster()
        .and_then(|member| member.broker_epoch())
        .unwrap_or(-1);
    let request = replica_fetch_request(version, (broker.node_id(), broker_epoch), &asked);
    let response = connection
        .send(request, version)
        .await
        .map_err(|error| ApiError::new(ResponseError::NetworkException, error.to_string()))?;
    let mut answers = read_answers(response, version)?;
    let now_ms = broker.now_ms();
    // Each partition on its own thread of the I/O pool: their appends fsync in parallel.
    let steps = asked.into_iter().map(|(partition, position)| {
        let answer = answers.remove(&answer_key(version, &partition));
        let followed = Arc::clone(followed);
        async move {
            let Some(answer) = answer else {
                followed.pause(&partition, BACKOFF);
                return;
            };
            let job = {
                let (followed, partition) = (Arc::clone(&followed), partition.clone());
                move || {
                    if !followed.follows(&partition) {
                        return Ok(None);
                    }
                    follow_answer(&partition, answer, position.log_end, now_ms)
                }
            };
            match broker.io.run(job).await {
                Ok(Ok(None)) => {}
                Ok(Ok(Some(pause))) => followed.pause(&partition, pause),
                Ok(Err(error)) => {
                    if followed.follows(&partition) {
                        tracing::warn!(partition = %partition.partition.name(), error = ?error.message, "could not follow the leader's answer");
                    }
                    followed.pause(&partition, BACKOFF);
                }
                Err(error) => {
                    tracing::warn!(partition = %partition.partition.name(), %error, "could not follow the leader's answer");
                    followed.pause(&partition, BACKOFF);
                }
            }
        }
    });
    join_all(steps).await;
    Ok(())
}

/// One partition's part of the leader's answer, as the replication rules read it.
struct PartitionAnswer {
    answer: FetchAnswer,
    records: Bytes,
    leader_log_start: i64,
}

/// Does what the leader's answer calls for. Blocks.
fn follow_answer(
    followed: &FollowedPartition,
    answer: PartitionAnswer,
    log_end: i64,
    now_ms: i64,
) -> Result<Option<Duration>, ApiError> {
    let FollowedPartition {
        partition,
        leader_epoch,
        ..
    } = followed;
    let local_end_for = |epoch: i32| {
        partition
            .end_offset_for_epoch(epoch)
            .ok()
            .and_then(EpochEnd::from_log)
    };
    match follower_step(
        answer.answer,
        local_end_for,
        log_end,
        partition.high_watermark(),
    ) {
        FollowerStep::Append { high_watermark } => {
            let leader = LeaderPosition {
                high_watermark,
                log_start_offset: answer.leader_log_start,
            };
            partition.append_from_leader(&answer.records, leader, *leader_epoch, now_ms)?;
            Ok(None)
        }
        FollowerStep::Truncate(truncation) => {
            tracing::info!(
                partition = %partition.name(),
                to = truncation.offset,
                "truncating to where the log diverges from the leader's"
            );
            partition.truncate_to(truncation.offset, *leader_epoch, now_ms)?;
            Ok(None)
        }
        FollowerStep::AwaitMetadata | FollowerStep::Retry => Ok(Some(BACKOFF)),
        FollowerStep::Reset => {
            tracing::warn!(
                partition = %partition.name(),
                log_end,
                "the leader cannot serve this replica's log end; waiting for newer metadata"
            );
            Ok(Some(Duration::from_secs(1)))
        }
    }
}

/// Where this replica's log stands, for its next fetch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Position {
    pub log_end: i64,
    pub last_epoch: Option<i32>,
    pub log_start: i64,
}

/// How a partition is named in a Fetch of `version`: by topic id from v13, by name before.
type AnswerKey = (Uuid, String, i32);

fn answer_key(version: i16, followed: &FollowedPartition) -> AnswerKey {
    if version >= 13 {
        (followed.topic_id, String::new(), followed.partition.index)
    } else {
        (
            Uuid::nil(),
            followed.partition.topic().to_owned(),
            followed.partition.index,
        )
    }
}

fn replica_fetch_request(
    version: i16,
    (broker_id, broker_epoch): (i32, i64),
    asked: &[(FollowedPartition, Position)],
) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (followed, position) in asked {
        let mut wanted = FetchPartition::default();
        wanted.partition = followed.partition.index;
        wanted.current_leader_epoch = followed.leader_epoch;
        wanted.fetch_offset = position.log_end;
        wanted.last_fetched_epoch = position.last_epoch.unwrap_or(-1);
        wanted.log_start_offset = position.log_start;
        wanted.partition_max_bytes = FETCH_PARTITION_MAX_BYTES;
        let same_topic = topics.last().is_some_and(|topic| {
            if version >= 13 {
                topic.topic_id == followed.topic_id
            } else {
                topic.topic.0.as_str() == followed.partition.topic()
            }
        });
        if !same_topic {
            let mut topic = FetchTopic::default();
            if version >= 13 {
                topic.topic_id = followed.topic_id;
            } else {
                topic.topic =
                    TopicName(StrBytes::from_string(followed.partition.topic().to_owned()));
            }
            topics.push(topic);
        }
        if let Some(topic) = topics.last_mut() {
            topic.partitions.push(wanted);
        }
    }
    let mut request = FetchRequest::default();
    if version >= 15 {
        let mut replica = ReplicaState::default();
        replica.replica_id = BrokerId(broker_id);
        replica.replica_epoch = broker_epoch;
        request.replica_state = replica;
    } else {
        request.replica_id = BrokerId(broker_id);
    }
    request.max_wait_ms = FETCH_MAX_WAIT_MS;
    request.min_bytes = 1;
    request.max_bytes = FETCH_MAX_BYTES;
    request.session_epoch = -1;
    request.topics = topics;
    request
}

/// The leader's answer for each partition asked, as the replication rules read it.
fn read_answers(
    response: FetchResponse,
    version: i16,
) -> Result<HashMap<AnswerKey, PartitionAnswer>, ApiError> {
    if response.error_code != 0 {
        return Err(ApiError::new(
            ResponseError::try_from_code(response.error_code)
                .unwrap_or(ResponseError::UnknownServerError),
            "the leader refused the fetch",
        ));
    }
    let mut answers = HashMap::new();
    for topic in response.responses {
        for data in topic.partitions {
            let key = if version >= 13 {
                (topic.topic_id, String::new(), data.partition_index)
            } else {
                (Uuid::nil(), topic.topic.0.to_string(), data.partition_index)
            };
            answers.insert(key, read_partition_answer(data));
        }
    }
    Ok(answers)
}

fn read_partition_answer(data: PartitionData) -> PartitionAnswer {
    let answer = match ResponseError::try_from_code(data.error_code) {
        None => {
            if data.diverging_epoch.epoch >= 0 {
                FetchAnswer::Diverging {
                    end: EpochEnd {
                        epoch: data.diverging_epoch.epoch,
                        end_offset: data.diverging_epoch.end_offset,
                    },
                    high_watermark: data.high_watermark,
                }
            } else {
                FetchAnswer::Records {
                    high_watermark: data.high_watermark,
                }
            }
        }
        Some(ResponseError::FencedLeaderEpoch) => {
            FetchAnswer::Refused(FetchRefusal::FencedLeaderEpoch)
        }
        Some(ResponseError::UnknownLeaderEpoch) => {
            FetchAnswer::Refused(FetchRefusal::UnknownLeaderEpoch)
        }
        Some(ResponseError::OffsetOutOfRange) => {
            FetchAnswer::Refused(FetchRefusal::OffsetOutOfRange)
        }
        Some(_) => FetchAnswer::Refused(FetchRefusal::NotAReplica),
    };
    PartitionAnswer {
        answer,
        records: data.records.unwrap_or_default(),
        leader_log_start: data.log_start_offset,
    }
}
