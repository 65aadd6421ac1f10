//! Produce: validate each partition's records as Kafka's `LogValidator` does, give them offsets,
//! append, and acknowledge per `acks` (fsyncing first where the flush policy asks for it).
//!
//! Partitions of one request are checked first (no I/O), then validated and appended on the
//! I/O pool in jobs of about [`APPEND_JOB_BYTES`] each, run concurrently: a job per partition
//! would wake a pool thread per partition, and a producer of a thousand partitions sends a
//! thousand small batches per request. Then each partition waits for its fsync. A partition whose records fail validation is refused
//! whole, with the error Kafka gives for that case, and nothing of it is written; the other
//! partitions of the request are unaffected. Decompression for the whole request draws on one
//! budget, so a few KiB of compressed zeros cannot buy gigabytes of work.

use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{
    NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use runnel_record::{DecompressionBudget, RecordBatch, RecordBatchHeader, RecordPolicy};
use runnel_replication::AckOutcome;

use super::{ensure_topic, find_topic, node_endpoints};
use crate::broker::Broker;
use crate::cluster;
use crate::error::ApiError;
use crate::io_pool::PoolError;
use crate::partition::{Appended, Partition};
use crate::pipeline::Turn;
use crate::topic_config::TopicSettings;
use crate::topics::Topic;
use crate::transactions;

/// Records one I/O job validates and appends before the next partitions go to another job:
/// enough to amortize a thread wake-up over many small batches, small enough that a request
/// of large batches is spread over the pool.
const APPEND_JOB_BYTES: usize = 64 * 1024;

/// Returns `None` for acks=0, where the client expects no response.
///
/// Appends happen in the request's `turn`, so that appends to a partition follow the order of
/// the requests that carried them; the fsyncs that acknowledgements wait for come after the
/// turn, so they overlap with later requests' appends and one fsync covers many of them.
pub(crate) async fn produce(
    broker: &Arc<Broker>,
    version: i16,
    request: ProduceRequest,
    request_bytes: usize,
    mut turn: Turn,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let timeout = Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0));
    let budget = Arc::new(DecompressionBudget::for_request(request_bytes));
    let now_ms = broker.now_ms();
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        // Kafka creates missing topics from Metadata; Runnel also does from Produce (by name),
        // so a producer that skips the metadata round trip still lands its records.
        let topic = if topic_data.topic_id.is_nil() {
            match broker.topics.get(&topic_data.name) {
                Some(topic) => Some(topic),
                None => ensure_topic(broker, &topic_data.name).await,
            }
        } else {
            find_topic(broker, &topic_data.name, topic_data.topic_id)
        };
        let mut topic_response = TopicProduceResponse::default();
        topic_response.name = topic_data.name;
        topic_response.topic_id = topic_data.topic_id;
        topics.push((topic_response, topic, topic_data.partition_data));
    }

    let unverified = verify_transactional_batches(
        broker,
        request.transactional_id.as_deref().map(|id| id.as_str()),
        &topics,
    )
    .await;

    turn.wait().await;
    // Per topic, per partition in request order: its index and what became of it.
    let mut appended: Vec<Vec<(i32, Result<PendingAck, ApiError>)>> =
        Vec::with_capacity(topics.len());
    // Each job: the partitions it appends, with their places in `appended`.
    let mut jobs: Vec<Vec<((usize, usize), Checked)>> = Vec::new();
    let mut job_bytes = 0;
    for (topic_place, (_, topic, partitions)) in topics.iter_mut().enumerate() {
        let mut outcomes = Vec::with_capacity(partitions.len());
        for data in std::mem::take(partitions) {
            let index = data.index;
            let refused = topic
                .as_ref()
                .and_then(|topic| unverified.get(&(topic.name.to_string(), index)));
            let checked = match topic {
                Some(_) if refused.is_some() => Err(ApiError::new(
                    refused.copied().unwrap_or(ResponseError::InvalidTxnState),
                    "the transaction's coordinator does not know this partition in the transaction",
                )),
                Some(topic) => check_partition(topic, acks, data, now_ms),
                None if version >= 13 => Err(ApiError::code(ResponseError::UnknownTopicId)),
                None => Err(ApiError::code(ResponseError::UnknownTopicOrPartition)),
            };
            match checked {
                Ok(checked) => {
                    if jobs.is_empty() || job_bytes >= APPEND_JOB_BYTES {
                        jobs.push(Vec::new());
                        job_bytes = 0;
                    }
                    job_bytes += checked.records.len();
                    jobs.last_mut()
                        .expect("a job was pushed")
                        .push(((topic_place, outcomes.len()), checked));
                    // Replaced by the job's outcome below.
                    outcomes.push((
                        index,
                        Err(ApiError::code(ResponseError::UnknownServerError)),
                    ));
                }
                Err(error) => outcomes.push((index, Err(error))),
            }
        }
        appended.push(outcomes);
    }
    let finished = join_all(jobs.into_iter().map(|job| {
        let budget = Arc::clone(&budget);
        let (places, job): (Vec<_>, Vec<_>) = job.into_iter().unzip();
        let run = broker.io.run(move || {
            job.into_iter()
                .map(|checked| {
                    // A panic (a bug) fails its own partition only: the job's other
                    // partitions were or will be appended, and must be answered as such.
                    catch_unwind(AssertUnwindSafe(|| {
                        append_checked(checked, &budget, now_ms)
                    }))
                    .unwrap_or_else(|_| Err(ApiError::from(PoolError::Panicked)))
                })
                .collect::<Vec<_>>()
        });
        async move { (places, run.await) }
    }))
    .await;
    drop(turn);
    for (places, outcome) in finished {
        match outcome {
            Ok(results) => {
                for ((topic_place, place), result) in places.into_iter().zip(results) {
                    appended[topic_place][place].1 = result;
                }
            }
            Err(error) => {
                for (topic_place, place) in places {
                    appended[topic_place][place].1 = Err(ApiError::from(error));
                }
            }
        }
    }

    let responses = join_all(topics.into_iter().zip(appended).map(
        |((mut topic_response, _, _), partitions)| async move {
            topic_response.partition_responses =
                join_all(partitions.into_iter().map(|(index, appended)| async move {
                    let acknowledged = match appended {
                        Ok(pending) => acknowledge(broker, pending, acks, timeout).await,
                        Err(error) => Err(error),
                    };
                    partition_response(version, index, acknowledged)
                }))
                .await;
            topic_response
        },
    ))
    .await;
    if acks == 0 {
        return None;
    }
    let mut response = ProduceResponse::default();
    response.responses = responses;
    if version >= 10 {
        add_leader_hints(broker, &mut response);
    }
    Some(response)
}

/// A topic of a produce request: its answer being built, the topic if it exists here, and
/// its partitions' data.
type RequestTopic = (
    TopicProduceResponse,
    Option<Arc<Topic>>,
    Vec<PartitionProduceData>,
);

/// KIP-890: the partitions whose first batch would open a transaction of its producer there,
/// and which the transaction's coordinator does not confirm, with the error to answer (see
/// `transactions::verify_before_append`).
async fn verify_transactional_batches(
    broker: &Arc<Broker>,
    transactional_id: Option<&str>,
    topics: &[RequestTopic],
) -> HashMap<(String, i32), ResponseError> {
    let mut refused = HashMap::new();
    if broker.cluster().is_none() {
        return refused;
    }
    let mut wanted: BTreeMap<(i64, i16), Vec<(String, i32)>> = BTreeMap::new();
    for (_, topic, partitions) in topics {
        let Some(topic) = topic else { continue };
        for data in partitions {
            let Some(header) = data
                .records
                .as_ref()
                .and_then(|records| RecordBatch::parse_header(records).ok())
                .filter(|header| header.is_transactional())
            else {
                continue;
            };
            let opens_one = topic.partition(data.index).is_some_and(|partition| {
                !partition.has_open_transaction(header.producer_id, header.producer_epoch)
            });
            if opens_one {
                wanted
                    .entry((header.producer_id, header.producer_epoch))
                    .or_default()
                    .push((topic.name.to_string(), data.index));
            }
        }
    }
    for (producer, partitions) in wanted {
        match transactional_id {
            Some(id) => refused
                .extend(transactions::verify_before_append(broker, id, producer, partitions).await),
            // A transactional batch needs the producer's transactional id to be checked.
            None => refused.extend(
                partitions
                    .into_iter()
                    .map(|partition| (partition, ResponseError::InvalidTxnState)),
            ),
        }
    }
    refused
}

/// KIP-951: each partition refused with NOT_LEADER_OR_FOLLOWER names its current leader,
/// and the response says where those leaders listen, so the producer need not ask Metadata.
fn add_leader_hints(broker: &Broker, response: &mut ProduceResponse) {
    let Some(member) = broker.cluster() else {
        return;
    };
    let refused = response.responses.iter_mut().flat_map(|topic| {
        let (name, id) = (topic.name.as_str(), topic.topic_id);
        topic
            .partition_responses
            .iter_mut()
            .filter(|p| p.error_code == ResponseError::NotLeaderOrFollower.code())
            .map(move |p| ((name, id, p.index), &mut p.current_leader))
    });
    let leaders = cluster::leader_hints(member, refused, |place, leader, epoch| {
        place.leader_id = BrokerId(leader);
        place.leader_epoch = epoch;
    });
    response.node_endpoints = node_endpoints!(NodeEndpoint, leaders);
}

/// Records appended, their acknowledgement perhaps waiting for an fsync.
struct PendingAck {
    partition: Arc<Partition>,
    appended: Appended,
    log_append_time_ms: i64,
}

struct Acknowledged {
    base_offset: i64,
    log_append_time_ms: i64,
    log_start_offset: i64,
}

/// One partition's records, checked and ready to validate and append.
struct Checked {
    partition: Arc<Partition>,
    records: Bytes,
    settings: Arc<TopicSettings>,
    log_append_time_ms: i64,
}

/// The checks of one partition's data that need no I/O: the topic takes appends, the
/// partition exists, `acks` is valid and can be met, and there are records.
fn check_partition(
    topic: &Topic,
    acks: i16,
    data: PartitionProduceData,
    now_ms: i64,
) -> Result<Checked, ApiError> {
    if topic.is_internal() {
        return Err(ApiError::new(
            ResponseError::InvalidTopicException,
            format!("Cannot append to internal topic {}", topic.name),
        ));
    }
    let partition = topic
        .partition(data.index)
        .ok_or(ApiError::code(ResponseError::UnknownTopicOrPartition))?;
    if !matches!(acks, -1..=1) {
        return Err(ApiError::new(
            ResponseError::InvalidRequiredAcks,
            format!("acks must be -1, 0 or 1, got {acks}"),
        ));
    }
    let settings = topic.settings();
    partition.check_produce(acks)?;
    let records = data
        .records
        .filter(|records| !records.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                ResponseError::InvalidRecord,
                "produce request carries no records",
            )
        })?;
    let log_append_time_ms = if settings.log_append_time { now_ms } else { -1 };
    Ok(Checked {
        partition,
        records,
        settings,
        log_append_time_ms,
    })
}

/// Validates and appends one partition's records; a transactional batch only if its
/// transaction holds the partition. Blocks: call it on the I/O pool.
fn append_checked(
    checked: Checked,
    budget: &DecompressionBudget,
    now_ms: i64,
) -> Result<PendingAck, ApiError> {
    let Checked {
        partition,
        records,
        settings,
        log_append_time_ms,
    } = checked;
    let mut batches = validate_records(&records, &settings, now_ms, budget)?;
    let appended = partition.append(&mut batches, now_ms)?;
    if !appended.info.duplicate {
        partition
            .traffic
            .appended(batches.len(), appended.info.records);
    }
    Ok(PendingAck {
        partition,
        appended,
        log_append_time_ms,
    })
}

/// Waits for what the acknowledgement needs, then answers with where the records went.
async fn acknowledge(
    broker: &Arc<Broker>,
    pending: PendingAck,
    acks: i16,
    timeout: Duration,
) -> Result<Acknowledged, ApiError> {
    let PendingAck {
        partition,
        appended,
        log_append_time_ms,
    } = pending;
    await_acknowledgeable(broker, &partition, &appended, acks, timeout).await?;
    Ok(Acknowledged {
        base_offset: appended.info.base_offset,
        log_append_time_ms,
        log_start_offset: appended.log_start_offset,
    })
}

/// Waits until an append may be acknowledged with `acks`: for the fsync the flush policy asks,
/// and for `acks=all` in a cluster, for the high watermark to pass the records (which needs
/// this leader's own fsync too, unless replicas count their page cache). The coordinators'
/// writes to their internal topics wait here as an `acks=all` produce does.
pub(crate) async fn await_acknowledgeable(
    broker: &Arc<Broker>,
    partition: &Arc<Partition>,
    appended: &Appended,
    acks: i16,
    timeout: Duration,
) -> Result<(), ApiError> {
    let end_offset = appended.info.last_offset + 1;
    let leader_fsync = partition.leads_with_fsync();
    if appended.sync_required || (leader_fsync && acks == -1) {
        partition.sync_to(&broker.io, end_offset).await?;
    } else if leader_fsync {
        // Answered before the fsync, but consumers see the records only once the high
        // watermark passes them, which needs it.
        let syncing = Arc::clone(partition);
        let broker = Arc::clone(broker);
        tokio::spawn(async move {
            let _ = syncing.sync_to(&broker.io, end_offset).await;
        });
    }
    if acks == -1 {
        wait_replicated(
            broker,
            partition,
            appended.leader_epoch,
            end_offset,
            timeout,
        )
        .await?;
    }
    Ok(())
}

/// [`await_acknowledgeable`] with `acks=all`, for the coordinators' writes (the transaction
/// coordinator, TxnOffsetCommit, markers). Blocks: on the runtime's blocking threads
/// ([`Broker::blocking_until_replicated`]), never on the I/O pool, whose threads answer the
/// follower fetches this waits for.
pub(crate) fn await_replicated_blocking(
    broker: &Broker,
    partition: &Partition,
    appended: &Appended,
    timeout: Duration,
) -> Result<(), ApiError> {
    let end_offset = appended.info.last_offset + 1;
    if appended.sync_required || partition.leads_with_fsync() {
        partition.sync_to_blocking(end_offset)?;
    }
    broker.block_on(wait_replicated(
        broker,
        partition,
        appended.leader_epoch,
        end_offset,
        timeout,
    ))?
}

/// Waits, up to `timeout`, until every in-sync replica holds the records appended in
/// `epoch` below `end_offset` (a delayed produce: woken by each move of the high watermark).
async fn wait_replicated(
    broker: &Broker,
    partition: &Partition,
    epoch: i32,
    end_offset: i64,
    timeout: Duration,
) -> Result<(), ApiError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut high_watermark = partition.subscribe_high_watermark();
    let mut shutdown = broker.shutdown_signal();
    loop {
        high_watermark.borrow_and_update();
        match partition.ack_outcome(epoch, end_offset)? {
            AckOutcome::Acknowledged => return Ok(()),
            AckOutcome::NotEnoughReplicasAfterAppend => {
                return Err(ApiError::new(
                    ResponseError::NotEnoughReplicasAfterAppend,
                    "the records were written, but the ISR shrank below min.insync.replicas",
                ))
            }
            AckOutcome::Waiting => {}
        }
        let timed_out = || {
            ApiError::new(
                ResponseError::RequestTimedOut,
                "the in-sync replicas did not copy the records within the request's timeout",
            )
        };
        tokio::select! {
            changed = high_watermark.changed() => {
                if changed.is_err() {
                    return Err(timed_out());
                }
            }
            _ = tokio::time::sleep_until(deadline) => return Err(timed_out()),
            _ = shutdown.wait_for(|stop| *stop) => return Err(timed_out()),
        }
    }
}

/// Kafka's `LogValidator` for one partition's records set, before anything is written: every
/// batch framed and checksummed, its header consistent, its records walked (decompressed
/// within `budget`). Returns the bytes to append: the batches as sent, rebuilt with the topic's
/// codec where it differs, stamped with the broker's time for LogAppendTime topics, and with a
/// max timestamp that is the records' true maximum. Blocks (decompression): call it on the I/O
/// pool.
fn validate_records(
    records: &Bytes,
    settings: &TopicSettings,
    now_ms: i64,
    budget: &DecompressionBudget,
) -> Result<Vec<u8>, ApiError> {
    let headers = RecordBatch::validate_all(records)?;
    let policy = RecordPolicy {
        now_ms,
        timestamp_before_max_ms: settings.timestamp_before_max_ms,
        timestamp_after_max_ms: settings.timestamp_after_max_ms,
        log_append_time: settings.log_append_time,
        keys_required: settings.keys_required,
    };
    let mut stored = Vec::with_capacity(records.len());
    let mut position = 0;
    for header in &headers {
        let batch = &records[position..position + header.total_len()];
        position += header.total_len();
        check_header(header, settings.max_message_bytes)?;
        let validated = policy.validate(batch, header, budget)?;
        let start = stored.len();
        match settings.compression {
            Some(codec) if codec != header.compression() => {
                stored.extend(RecordBatch::recompress(batch, codec, budget)?);
                check_size(stored.len() - start, settings.max_message_bytes)?;
            }
            _ => stored.extend_from_slice(batch),
        }
        let batch = &mut stored[start..];
        if settings.log_append_time {
            RecordBatch::set_log_append_time(batch, now_ms);
        } else if validated.max_timestamp != header.max_timestamp {
            RecordBatch::set_max_timestamp(batch, validated.max_timestamp);
        }
    }
    Ok(stored)
}

/// The checks of a batch header that need no records: size, and what clients may not send.
fn check_header(header: &RecordBatchHeader, max_message_bytes: usize) -> Result<(), ApiError> {
    check_size(header.total_len(), max_message_bytes)?;
    if header.is_control() {
        return Err(ApiError::new(
            ResponseError::InvalidRecord,
            "clients may not produce control batches",
        ));
    }
    if header.is_transactional() && header.producer_id < 0 {
        return Err(ApiError::new(
            ResponseError::InvalidRecord,
            "a transactional batch needs a producer id",
        ));
    }
    if header.producer_id >= 0 && (header.base_sequence < 0 || header.producer_epoch < 0) {
        return Err(ApiError::new(
            ResponseError::InvalidRecord,
            format!(
                "a batch of producer {} needs a sequence and an epoch, got {} and {}",
                header.producer_id, header.base_sequence, header.producer_epoch
            ),
        ));
    }
    Ok(())
}

fn check_size(batch_bytes: usize, max_message_bytes: usize) -> Result<(), ApiError> {
    if batch_bytes > max_message_bytes {
        return Err(ApiError::new(
            ResponseError::MessageTooLarge,
            format!(
                "record batch of {batch_bytes} bytes exceeds max.message.bytes ({max_message_bytes})"
            ),
        ));
    }
    Ok(())
}

fn partition_response(
    version: i16,
    index: i32,
    result: Result<Acknowledged, ApiError>,
) -> PartitionProduceResponse {
    let mut response = PartitionProduceResponse::default();
    response.index = index;
    match result {
        Ok(appended) => {
            response.base_offset = appended.base_offset;
            response.log_append_time_ms = appended.log_append_time_ms;
            if version >= 5 {
                response.log_start_offset = appended.log_start_offset;
            }
        }
        Err(error) => {
            response.error_code = error.error_code();
            if version >= 8 {
                response.error_message = error.message_str();
            }
            response.base_offset = -1;
        }
    }
    response
}
