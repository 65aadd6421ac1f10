//! The follower's side of replication: one task per followed partition fetches from the
//! leader with the Fetch API as a replica (its broker id and epoch, the leader epoch it
//! believes current, the epoch of its last record), and does what
//! `runnel_replication::follower_step` says with each answer: append and fsync, then fetch
//! from the new log end (which tells the leader all below it is durable here), or truncate
//! where the logs diverge, or wait for newer metadata.
//!
//! The task lives as long as the partition follows this leader in this epoch; the image
//! applier aborts it and starts another when either changes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use runnel_client::{ClientConfig, Connection};
use runnel_replication::{follower_step, EpochEnd, FetchAnswer, FetchRefusal, FollowerStep};
use uuid::Uuid;

use crate::broker::Broker;
use crate::error::ApiError;
use crate::partition::{LeaderPosition, Partition};

/// How long the leader holds a fetch with nothing new.
const FETCH_MAX_WAIT_MS: i32 = 500;
/// Bytes of one partition's records per fetch.
const FETCH_PARTITION_MAX_BYTES: i32 = 8 * 1024 * 1024;
/// The pause after a failed or refused fetch.
const BACKOFF: Duration = Duration::from_millis(200);

/// Copies `leader_address`'s log of `partition` in `leader_epoch` until aborted.
pub(crate) async fn run(
    broker: Arc<Broker>,
    partition: Arc<Partition>,
    topic_id: Uuid,
    leader_epoch: i32,
    leader_address: String,
) {
    let mut config = ClientConfig::new(leader_address.clone());
    config.client_id = format!("runnel-replica-{}", broker.node_id());
    config.request_timeout = Duration::from_secs(10);
    let mut connection: Option<Connection> = None;
    let mut shutdown = broker.shutdown_signal();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let open = match connection.take() {
            Some(open) if !open.is_closed() => open,
            _ => match Connection::connect(&leader_address, &config).await {
                Ok(open) => open,
                Err(error) => {
                    tracing::debug!(partition = %partition.name(), leader = %leader_address, %error, "cannot reach the leader");
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            },
        };
        let pause = tokio::select! {
            step = fetch_once(&broker, &partition, topic_id, leader_epoch, &open) => step,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        connection = Some(open);
        match pause {
            Ok(None) => {}
            Ok(Some(pause)) => tokio::time::sleep(pause).await,
            Err(error) => {
                tracing::warn!(partition = %partition.name(), error = ?error.message, "replica fetch failed");
                connection = None;
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

/// One fetch and what follows from it; returns how long to pause before the next.
async fn fetch_once(
    broker: &Arc<Broker>,
    partition: &Arc<Partition>,
    topic_id: Uuid,
    leader_epoch: i32,
    connection: &Connection,
) -> Result<Option<Duration>, ApiError> {
    let position = {
        let partition = Arc::clone(partition);
        broker
            .io
            .run(move || partition.replica_position())
            .await??
    };
    let log_end = position.log_end;
    let broker_epoch = broker
        .cluster()
        .and_then(|member| member.broker_epoch())
        .unwrap_or(-1);
    let version = connection
        .version_for(ApiKey::Fetch)
        .filter(|version| *version >= 12)
        .ok_or_else(|| {
            ApiError::new(
                ResponseError::UnsupportedVersion,
                "the leader does not serve Fetch v12+ (diverging epochs)",
            )
        })?;
    let request = replica_fetch_request(
        version,
        (broker.node_id(), broker_epoch),
        partition,
        (topic_id, leader_epoch),
        &position,
    );
    let response = connection
        .send(request, version)
        .await
        .map_err(|error| ApiError::new(ResponseError::NetworkException, error.to_string()))?;
    let (answer, records, leader_log_start) = read_answer(response)?;
    let partition = Arc::clone(partition);
    let now_ms = broker.now_ms();
    broker
        .io
        .run(move || {
            follow_answer(
                &partition,
                (answer, leader_log_start, leader_epoch),
                &records,
                log_end,
                now_ms,
            )
        })
        .await?
}

/// Does what the leader's answer calls for. Blocks.
fn follow_answer(
    partition: &Partition,
    (answer, leader_log_start, leader_epoch): (FetchAnswer, i64, i32),
    records: &[u8],
    log_end: i64,
    now_ms: i64,
) -> Result<Option<Duration>, ApiError> {
    let local_end_for = |epoch: i32| {
        partition
            .end_offset_for_epoch(epoch)
            .ok()
            .and_then(EpochEnd::from_log)
    };
    match follower_step(answer, local_end_for, log_end, partition.high_watermark()) {
        FollowerStep::Append { high_watermark } => {
            let leader = LeaderPosition {
                high_watermark,
                log_start_offset: leader_log_start,
            };
            partition.append_from_leader(records, leader, leader_epoch, now_ms)?;
            Ok(None)
        }
        FollowerStep::Truncate(truncation) => {
            tracing::info!(
                partition = %partition.name(),
                to = truncation.offset,
                "truncating to where the log diverges from the leader's"
            );
            partition.truncate_to(truncation.offset, leader_epoch, now_ms)?;
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

fn replica_fetch_request(
    version: i16,
    (broker_id, broker_epoch): (i32, i64),
    partition: &Partition,
    (topic_id, leader_epoch): (Uuid, i32),
    position: &Position,
) -> FetchRequest {
    let Position {
        log_end,
        last_epoch,
        log_start,
    } = *position;
    let mut wanted = FetchPartition::default();
    wanted.partition = partition.index;
    wanted.current_leader_epoch = leader_epoch;
    wanted.fetch_offset = log_end;
    wanted.last_fetched_epoch = last_epoch.unwrap_or(-1);
    wanted.log_start_offset = log_start;
    wanted.partition_max_bytes = FETCH_PARTITION_MAX_BYTES;
    let mut topic = FetchTopic::default();
    if version >= 13 {
        topic.topic_id = topic_id;
    } else {
        topic.topic = TopicName(StrBytes::from_string(partition.topic().to_owned()));
    }
    topic.partitions = vec![wanted];
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
    request.max_bytes = FETCH_PARTITION_MAX_BYTES;
    request.session_epoch = -1;
    request.topics = vec![topic];
    request
}

/// The leader's answer for the one partition asked, as the replication rules read it.
/// Also the records, and the leader's log start offset.
fn read_answer(response: FetchResponse) -> Result<(FetchAnswer, Bytes, i64), ApiError> {
    if response.error_code != 0 {
        return Err(ApiError::new(
            ResponseError::try_from_code(response.error_code)
                .unwrap_or(ResponseError::UnknownServerError),
            "the leader refused the fetch",
        ));
    }
    let data = response
        .responses
        .into_iter()
        .flat_map(|topic| topic.partitions)
        .next()
        .ok_or_else(|| {
            ApiError::new(
                ResponseError::UnknownServerError,
                "the leader answered without the partition",
            )
        })?;
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
    Ok((
        answer,
        data.records.unwrap_or_default(),
        data.log_start_offset,
    ))
}
