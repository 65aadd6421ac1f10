//! The producer's sender task: takes due batches out of the accumulator, sends them to their
//! partitions' leaders, and completes each record's delivery from the answer.
//!
//! Ordering: up to `max_in_flight` (5) batches of a partition are in flight at once, one per
//! Produce request; each request goes on its leader's connection only after the requests
//! holding the partition's earlier batches are on theirs, and a broker answers a
//! connection's requests in order, so batches reach a partition in the order they were
//! sent. If a request could not be put on its connection (no leader known, no connection
//! slot in time), the requests behind it for the same partitions are not sent either: their
//! batches go back in their places. A batch that failed with a retriable error (or was
//! split) goes back into its partition's queue in its place (by the position of its first
//! record), and the partition sends one batch at a time until that batch and every one put
//! back before it is written. Batches for partitions led by the same broker travel in one
//! Produce request; the requests to different brokers are queued side by side.
//!
//! Idempotence (the default, with acks=all): the sender gets a producer id from
//! InitProducerId and stamps each batch, when it is first sent, with the id, its epoch and the
//! sequence number of its first record (its place among the partition's records since the
//! id was taken). A retry resends the same stamp, so the broker answers a batch it already
//! has with its original offsets, and refuses (OUT_OF_ORDER_SEQUENCE_NUMBER) a batch that
//! overtook an earlier one, which then goes back in its place behind it. A partition that
//! forgot the producer (UNKNOWN_PRODUCER_ID: it expired there) has its records numbered
//! afresh from the refused batch. A batch that fails for good leaves a gap in its partition's
//! sequence, so the sender then takes a new producer id and numbers every partition afresh
//! (Java's epoch bump for idempotent producers). Without idempotence a retry can reorder: when
//! a batch fails and the batches behind it, already in flight, succeed, it lands after them;
//! the producer logs a warning when that happens, as Kafka's does with
//! `enable.idempotence=false`.
//!
//! Retries: a retriable error (a moved leader, an unknown topic, a timeout, a broken
//! connection) drops the topic's cached metadata and resends the same batch bytes after
//! `retry_backoff`, to whichever broker then leads the partition, until `delivery_timeout`
//! has passed since the batch was opened; then, or at once for any other error, every record
//! of the batch fails with the error.
//!
//! Memory: a batch's buffer memory is released once it is acknowledged or has failed for
//! good, and `send` calls blocked on a full buffer are woken.
//!
//! Too large: a batch the broker refuses with MESSAGE_TOO_LARGE (the topic's
//! `max.message.bytes` is below the producer's `batch.size`) is split in two and both halves
//! go first, in order; a single record too large fails.
//!
//! Does not: transactions.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, ProduceRequest, ProduceResponse, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use runnel_record::RecordBatch;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

use super::accumulator::{Accumulator, ReadyBatch};
use super::partitioner::StickyPartitions;
use super::{ProducerConfig, RecordMetadata};
use crate::cluster::Cluster;
use crate::connection::{Connection, PendingAnswer};
use crate::error::{ClientError, Result};
use crate::wire::topic_name;

/// The last Produce version that names topics (v13 names them by id only).
const PRODUCE_VERSION_BY_NAME_MAX: i16 = 12;

/// What the accumulator carries for each record: where its answer goes.
#[derive(Debug)]
pub(super) struct Delivery {
    pub(super) sender: oneshot::Sender<Result<RecordMetadata>>,
    /// The record's CreateTime, reported back unless the topic uses LogAppendTime.
    pub(super) timestamp_ms: i64,
    /// The flush generation the record was sent in (see [`State::generation`]).
    pub(super) generation: u64,
}

/// What the producer's handles and its sender task share.
pub(super) struct Shared {
    pub(super) cluster: Cluster,
    pub(super) config: ProducerConfig,
    /// For partitioners that answer `PartitionChoice::Sticky`.
    pub(super) sticky: StickyPartitions,
    state: Mutex<State>,
    /// Wakes the sender task: a batch was opened or filled, a flush began, the producer closed.
    pub(super) wake_sender: Notify,
    /// Buffer memory was released: `send` calls waiting on a full buffer try again.
    pub(super) memory_released: Notify,
    /// Records were completed: flushes check whether theirs are all done.
    pub(super) records_completed: Notify,
    /// The producer id batches are stamped with, and what befell the open transaction.
    identity: Mutex<IdentityState>,
}

#[derive(Default)]
struct IdentityState {
    current: Option<Identity>,
    /// Ids taken so far: each new one numbers every partition's records afresh.
    generations: u64,
    /// The first batch of the open transaction that failed for good: the transaction can
    /// only be aborted.
    transaction_failure: Option<ClientError>,
}

pub(super) struct State {
    pub(super) accumulator: Accumulator<Delivery>,
    /// No more sends; the sender task delivers what it has, then stops.
    pub(super) closed: bool,
    /// While any flush waits, the sender takes every batch, due or not.
    pub(super) flushes_in_progress: usize,
    /// Each flush starts a new generation and waits for the records of all earlier ones, so a
    /// flush waits for the records sent before it and not for those sent after.
    pub(super) generation: u64,
    /// Records sent and not yet acknowledged or failed, by generation.
    pub(super) incomplete_by_generation: BTreeMap<u64, usize>,
}

impl Shared {
    pub(super) fn new(cluster: Cluster, config: ProducerConfig, seed: u64) -> Shared {
        let accumulator = Accumulator::new(config.accumulator_config());
        Shared {
            cluster,
            config,
            sticky: StickyPartitions::new(seed),
            state: Mutex::new(State {
                accumulator,
                closed: false,
                flushes_in_progress: 0,
                generation: 0,
                incomplete_by_generation: BTreeMap::new(),
            }),
            wake_sender: Notify::new(),
            memory_released: Notify::new(),
            records_completed: Notify::new(),
            identity: Mutex::new(IdentityState::default()),
        }
    }

    fn identities(&self) -> MutexGuard<'_, IdentityState> {
        self.identity.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn identity(&self) -> Option<Identity> {
        self.identities().current
    }

    /// Batches are stamped with this producer id and epoch from now on.
    pub(super) fn set_identity(&self, producer_id: i64, epoch: i16) {
        let mut identities = self.identities();
        identities.generations += 1;
        identities.current = Some(Identity {
            producer_id,
            epoch,
            generation: identities.generations,
            transactional: self.config.transactional_id.is_some(),
        });
        self.wake_sender.notify_one();
    }

    /// A batch failed for good. If it was stamped with the current id, its sequence numbers
    /// are a gap the broker will not let later batches past: an idempotent producer takes a
    /// new id (Java's epoch bump); a transactional one can only abort its transaction.
    fn failed_for_good(&self, stamp: Option<Stamp>, error: &ClientError) {
        let mut identities = self.identities();
        let current = identities.current;
        let of_current =
            stamp.is_some_and(|stamp| current.is_some_and(|c| c.generation == stamp.generation));
        if !of_current {
            return;
        }
        if self.config.transactional_id.is_some() {
            identities
                .transaction_failure
                .get_or_insert_with(|| duplicate(error));
        } else {
            identities.current = None;
        }
    }

    /// The failure that dooms the open transaction, if one did; clears it.
    pub(super) fn take_transaction_failure(&self) -> Option<ClientError> {
        self.identities().transaction_failure.take()
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent: appends are all-or-nothing.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses further sends and lets the sender task finish what is queued, then stop.
    pub(super) fn begin_close(&self) {
        self.state().closed = true;
        self.wake_sender.notify_one();
        // Sends waiting for buffer space see `closed` and give up.
        self.memory_released.notify_waiters();
    }

    /// Completes every record of `batch` with `outcome`, then returns its memory and counts
    /// its records done.
    fn complete(&self, batch: ReadyBatch<Delivery>, outcome: Result<Acknowledged>) {
        let ReadyBatch {
            topic,
            partition,
            deliveries,
            memory_bytes,
            ..
        } = batch;
        // Usually every record of a batch is of one generation: count them in runs.
        let mut done_by_generation: Vec<(u64, usize)> = Vec::with_capacity(1);
        let mut count = |generation: u64| match done_by_generation.last_mut() {
            Some((last, count)) if *last == generation => *count += 1,
            _ => done_by_generation.push((generation, 1)),
        };
        match &outcome {
            Ok(acknowledged) => {
                for (index, delivery) in deliveries.into_iter().enumerate() {
                    count(delivery.generation);
                    let offset = if acknowledged.base_offset >= 0 {
                        acknowledged.base_offset + index as i64
                    } else {
                        -1
                    };
                    let timestamp_ms = if acknowledged.log_append_time_ms != -1 {
                        acknowledged.log_append_time_ms
                    } else {
                        delivery.timestamp_ms
                    };
                    // The caller may have stopped waiting; that is their choice.
                    let _ = delivery.sender.send(Ok(RecordMetadata {
                        topic: topic.clone(),
                        partition,
                        offset,
                        timestamp_ms,
                    }));
                }
            }
            Err(error) => {
                tracing::debug!(%topic, partition, %error, records = deliveries.len(), "delivery failed");
                for delivery in deliveries {
                    count(delivery.generation);
                    let _ = delivery.sender.send(Err(duplicate(error)));
                }
            }
        }
        {
            let mut state = self.state();
            state.accumulator.release(memory_bytes);
            for (generation, done) in done_by_generation {
                let remaining = state
                    .incomplete_by_generation
                    .get_mut(&generation)
                    .expect("every delivered record was counted when it was appended");
                *remaining -= done;
                if *remaining == 0 {
                    state.incomplete_by_generation.remove(&generation);
                }
            }
        }
        self.memory_released.notify_waiters();
        self.records_completed.notify_waiters();
    }
}

/// The wall clock in milliseconds since the epoch: record timestamps and batch ages.
pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// A partition's answer to a batch.
#[derive(Debug, Clone, Copy)]
struct Acknowledged {
    /// -1 when the broker does not answer (acks=0).
    base_offset: i64,
    /// -1 unless the topic stamps LogAppendTime.
    log_append_time_ms: i64,
}

/// The producer id and epoch an idempotent producer stamps its batches with, and which
/// of the sender's successive ids it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    producer_id: i64,
    epoch: i16,
    generation: u64,
    /// Batches belong to the producer's open transaction.
    transactional: bool,
}

/// What a batch was stamped with when it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    generation: u64,
    sequence: i32,
}

/// A batch on its way, and what befell its earlier tries.
struct Attempt {
    batch: ReadyBatch<Delivery>,
    /// The place of the batch's first record among every record sent to the partition: the
    /// batch's place in the partition's order, kept through retries and splits.
    first_record: u64,
    /// The idempotent producer's stamp, from its first send; kept through retries.
    stamp: Option<Stamp>,
    /// Not to be sent again before this (retry backoff).
    retry_at: Option<Instant>,
    /// Why the last try failed.
    last_error: Option<ClientError>,
}

/// A partition's queue in the sender: its batches waiting, in the partition's order, and those
/// in flight.
#[derive(Default)]
struct PartitionQueue {
    waiting: VecDeque<Attempt>,
    in_flight: usize,
    /// Records taken out of the accumulator for the partition so far (numbers the batches).
    records_taken: u64,
    /// Batches were put back (to be retried, or split): until the batch holding the record
    /// before this one succeeds, the partition sends one batch at a time, so that nothing
    /// overtakes them. Zero when nothing was put back.
    careful_until_record: u64,
    /// The end of the furthest batch written so far: a batch put back below it was overtaken.
    written_up_to: u64,
    /// The end of the furthest batch written or failed for good: a batch that starts beyond
    /// it has an earlier one still unresolved.
    settled_up_to: u64,
    /// The record that sequence 0 stands for under the identity of this generation.
    sequence_base: Option<(u64, u64)>,
    /// Settled once the request holding the partition's latest batch in flight is on its
    /// connection, or known not to be: the next request for the partition waits for that.
    queued_before: Option<watch::Receiver<Queued>>,
}

/// What a dispatch tells the dispatches behind it, on a watch channel: it sends `NotSent` if a
/// batch of its did not reach its connection (no leader, no connection slot in time), and
/// otherwise closes the channel once its requests are on their connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queued {
    Pending,
    NotSent,
}

impl PartitionQueue {
    /// Stamps the batch for `identity` unless it already carries this identity's stamp:
    /// a retry resends the bytes the broker may already have.
    fn stamp(&mut self, attempt: &mut Attempt, identity: Identity) {
        if attempt
            .stamp
            .is_some_and(|stamp| stamp.generation == identity.generation)
        {
            return;
        }
        let base = match self.sequence_base {
            Some((generation, base)) if generation == identity.generation => base,
            _ => {
                // Every record before the unsettled ones is written or given up: sequence 0
                // stands for the first unsettled record.
                let base = self.settled_up_to.min(attempt.first_record);
                self.sequence_base = Some((identity.generation, base));
                base
            }
        };
        // Sequences wrap from i32::MAX to 0.
        let sequence = ((attempt.first_record - base) % (1 << 31)) as i32;
        let mut bytes = bytes::BytesMut::from(std::mem::take(&mut attempt.batch.batch));
        RecordBatch::set_producer(
            &mut bytes,
            identity.producer_id,
            identity.epoch,
            sequence,
            identity.transactional,
        );
        attempt.batch.batch = bytes.freeze();
        attempt.stamp = Some(Stamp {
            generation: identity.generation,
            sequence,
        });
    }

    fn settle(&mut self, attempt: &Attempt) {
        let end = attempt.first_record + attempt.batch.record_count as u64;
        self.settled_up_to = self.settled_up_to.max(end);
    }

    /// Puts `attempt` back among the waiting batches, in its place; the partition sends one
    /// batch at a time until it and those before it are written.
    fn put_back(&mut self, attempt: Attempt) {
        let end = attempt.first_record + attempt.batch.record_count as u64;
        self.careful_until_record = self.careful_until_record.max(end);
        if attempt.first_record < self.written_up_to {
            warn_reordered(&attempt.batch.topic, attempt.batch.partition);
        }
        let place = self
            .waiting
            .partition_point(|waiting| waiting.first_record < attempt.first_record);
        self.waiting.insert(place, attempt);
    }
}

/// A batch and the id of its topic, on its way to the partition's leader.
struct Routed {
    attempt: Attempt,
    /// Nil from brokers older than Metadata v10; then topics go by name.
    topic_id: uuid::Uuid,
}

/// Batches sent together as one request per leader: at most one batch per partition, each
/// partition's batches in later rounds than its earlier ones, and about `max_request_size`
/// bytes (one batch at least).
struct Round {
    attempts: Vec<Attempt>,
    bytes: usize,
    /// The signals of the rounds holding these partitions' previous batches.
    after: Vec<watch::Receiver<Queued>>,
    /// This round's signal, for the rounds behind it.
    queued: watch::Sender<Queued>,
}

impl Default for Round {
    fn default() -> Self {
        Round {
            attempts: Vec::new(),
            bytes: 0,
            after: Vec::new(),
            queued: watch::channel(Queued::Pending).0,
        }
    }
}

struct Completion {
    attempt: Attempt,
    outcome: Outcome,
}

enum Outcome {
    /// The broker's answer, or why the request failed.
    Answered(Result<Acknowledged>),
    /// Not sent, because a batch ahead of it in its partition was not: it goes back in its
    /// place, behind that one.
    HeldBack,
}

/// The sender task. Returns once the producer is closed and every record has been completed.
pub(super) async fn run(shared: Arc<Shared>) {
    // Unbounded, but never holds more than the batches taken out of the accumulator, which
    // `buffer_memory` bounds.
    let (completions_tx, mut completions) = mpsc::unbounded_channel::<Completion>();
    let mut partitions: HashMap<(String, i32), PartitionQueue> = HashMap::new();
    // Batches out of the accumulator and not yet completed: in flight or waiting here.
    let mut batches_held = 0usize;
    let mut requests_in_flight = 0usize;
    let delivery_timeout_ms =
        i64::try_from(shared.config.delivery_timeout.as_millis()).unwrap_or(i64::MAX);
    let idempotent = shared.config.idempotent();
    let max_in_flight = if idempotent {
        // The broker remembers a producer's last 5 batches per partition: a retry of any
        // batch in flight must be among them to be recognised.
        shared.config.client.max_in_flight.clamp(1, 5)
    } else {
        shared.config.client.max_in_flight.max(1)
    };
    let transactional = shared.config.transactional_id.is_some();
    let mut identity_retry_at: Option<Instant> = None;
    loop {
        let now = now_ms();
        let (ready, next_ready_ms, closed) = {
            let mut state = shared.state();
            let ready = if state.closed || state.flushes_in_progress > 0 {
                state.accumulator.drain_all()
            } else {
                state.accumulator.ready(now)
            };
            (ready, state.accumulator.next_ready_ms(), state.closed)
        };
        batches_held += ready.len();
        for batch in ready {
            let queue = partitions
                .entry((batch.topic.clone(), batch.partition))
                .or_default();
            let first_record = queue.records_taken;
            queue.records_taken += batch.record_count as u64;
            queue.waiting.push_back(Attempt {
                batch,
                first_record,
                stamp: None,
                retry_at: None,
                last_error: None,
            });
        }

        let instant = Instant::now();
        // A transactional producer's id comes from init_transactions, never from here.
        if idempotent
            && !transactional
            && shared.identity().is_none()
            && identity_retry_at.is_none_or(|at| at <= instant)
            && partitions.values().any(|queue| !queue.waiting.is_empty())
        {
            match init_producer_id(&shared).await {
                Ok((producer_id, epoch)) => {
                    tracing::debug!(producer_id, epoch, "idempotent producer id");
                    shared.set_identity(producer_id, epoch);
                    identity_retry_at = None;
                }
                Err(error) => {
                    tracing::debug!(%error, "no producer id yet; retrying");
                    identity_retry_at = Some(Instant::now() + shared.config.retry_backoff);
                }
            }
        }
        let identity = shared.identity();
        let mut next_retry: Option<Instant> = None;
        let mut rounds: Vec<Round> = Vec::new();
        for queue in partitions.values_mut() {
            let mut round = 0;
            loop {
                let limit = if queue.careful_until_record > 0 {
                    1
                } else {
                    max_in_flight
                };
                if queue.in_flight >= limit {
                    break;
                }
                let Some(front) = queue.waiting.front() else {
                    break;
                };
                if front.batch.created_ms.saturating_add(delivery_timeout_ms) <= now {
                    let mut attempt = queue.waiting.pop_front().expect("front exists");
                    let error = attempt
                        .last_error
                        .take()
                        .unwrap_or_else(|| ClientError::Timeout {
                            what: format!(
                                "delivery of {} records to {}-{}",
                                attempt.batch.record_count,
                                attempt.batch.topic,
                                attempt.batch.partition
                            ),
                            after: shared.config.delivery_timeout,
                        });
                    queue.settle(&attempt);
                    shared.failed_for_good(attempt.stamp, &error);
                    shared.complete(attempt.batch, Err(error));
                    batches_held -= 1;
                    continue;
                }
                if let Some(retry_at) = front.retry_at.filter(|&at| at > instant) {
                    next_retry = Some(next_retry.map_or(retry_at, |next| next.min(retry_at)));
                    break;
                }
                let mut attempt = queue.waiting.pop_front().expect("front exists");
                if idempotent {
                    let Some(identity) = identity else {
                        queue.waiting.push_front(attempt);
                        // Come back when the next InitProducerId may go (at once after a reset).
                        let at = identity_retry_at.unwrap_or(instant);
                        next_retry = Some(next_retry.map_or(at, |next| next.min(at)));
                        break;
                    };
                    queue.stamp(&mut attempt, identity);
                }
                queue.in_flight += 1;
                let bytes = attempt.batch.batch.len();
                while rounds.get(round).is_some_and(|existing| {
                    existing.bytes > 0
                        && existing.bytes.saturating_add(bytes) > shared.config.max_request_size
                }) {
                    round += 1;
                }
                if rounds.len() == round {
                    rounds.push(Round::default());
                }
                let this_round = &mut rounds[round];
                this_round.bytes += bytes;
                this_round.attempts.push(attempt);
                // Wait for the request that holds the partition's previous batch.
                if let Some(previous) = queue.queued_before.take() {
                    this_round.after.push(previous);
                }
                queue.queued_before = Some(this_round.queued.subscribe());
                round += 1;
            }
        }
        for round in rounds {
            requests_in_flight += round.attempts.len();
            tokio::spawn(dispatch(Arc::clone(&shared), round, completions_tx.clone()));
        }

        if closed && batches_held == 0 && next_ready_ms.is_none() {
            debug_assert_eq!(requests_in_flight, 0);
            return;
        }

        let mut deadline = next_retry;
        if let Some(ready_ms) = next_ready_ms {
            // At least a millisecond: the accumulator's clock is the wall clock, which may
            // step; never spin on it.
            let wait_ms = ready_ms.saturating_sub(now_ms()).max(1);
            let at = Instant::now() + std::time::Duration::from_millis(wait_ms as u64);
            deadline = Some(deadline.map_or(at, |deadline| deadline.min(at)));
        }
        tokio::select! {
            () = shared.wake_sender.notified() => {}
            Some(completion) = completions.recv() => {
                let mut next = Some(completion);
                while let Some(completion) = next {
                    requests_in_flight -= 1;
                    match handle_completion(&shared, &mut partitions, completion, delivery_timeout_ms) {
                        Handled::Completed => batches_held -= 1,
                        Handled::Requeued => {}
                        Handled::Split => batches_held += 1,
                    }
                    next = completions.try_recv().ok();
                }
            }
            () = sleep_until(deadline), if deadline.is_some() => {}
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }
}

fn warn_reordered(topic: &str, partition: i32) {
    tracing::warn!(
        %topic,
        partition,
        "a batch was written while an earlier one of the partition waits for a retry: the \
         partition's records are out of send order (set max_in_flight to 1 to keep order across \
         retries until idempotence is served)"
    );
}

/// What became of a batch whose request was answered.
enum Handled {
    /// Delivered or failed for good: the sender no longer holds it.
    Completed,
    /// Queued again for a retry.
    Requeued,
    /// Queued again as two batches.
    Split,
}

/// Completes the batch, queues it again for a retry, or splits it.
fn handle_completion(
    shared: &Shared,
    partitions: &mut HashMap<(String, i32), PartitionQueue>,
    completion: Completion,
    delivery_timeout_ms: i64,
) -> Handled {
    let Completion {
        mut attempt,
        outcome,
    } = completion;
    let in_time = attempt.batch.created_ms.saturating_add(delivery_timeout_ms) > now_ms();
    let key = (attempt.batch.topic.clone(), attempt.batch.partition);
    let queue = partitions.entry(key).or_default();
    queue.in_flight -= 1;
    if queue.in_flight == 0 {
        // Every earlier request of the partition is answered (or was never sent): the next
        // one waits for nothing, and a NotSent from the past must not hold it back.
        queue.queued_before = None;
    }
    let outcome = match outcome {
        Outcome::Answered(outcome) => outcome,
        Outcome::HeldBack => {
            queue.put_back(attempt);
            return Handled::Requeued;
        }
    };
    let outcome = match outcome {
        // Written before, so long ago that the broker no longer has its offsets.
        Err(error) if error.code() == Some(ResponseError::DuplicateSequenceNumber) => {
            Ok(Acknowledged {
                base_offset: -1,
                log_append_time_ms: -1,
            })
        }
        other => other,
    };
    match outcome {
        Ok(acknowledged) => {
            let end = attempt.first_record + attempt.batch.record_count as u64;
            queue.written_up_to = queue.written_up_to.max(end);
            queue.settle(&attempt);
            let earlier_waiting = queue
                .waiting
                .front()
                .is_some_and(|waiting| waiting.first_record < attempt.first_record);
            if earlier_waiting {
                warn_reordered(&attempt.batch.topic, attempt.batch.partition);
            }
            // Back to several in flight once everything put back is written: no batch below
            // the mark still waits.
            let careful = queue.careful_until_record;
            if end >= careful
                && !queue
                    .waiting
                    .iter()
                    .any(|waiting| waiting.first_record < careful)
            {
                queue.careful_until_record = 0;
            }
            shared.complete(attempt.batch, Ok(acknowledged));
            Handled::Completed
        }
        // Too large for the topic's max.message.bytes: send it again as two halves, first
        // half first, ahead of the partition's other batches. A single record fails.
        Err(error) if error.code() == Some(ResponseError::MessageTooLarge) => {
            match attempt.batch.split() {
                Ok((first, second)) => {
                    tracing::debug!(
                        topic = %first.topic,
                        partition = first.partition,
                        records = first.record_count + second.record_count,
                        "splitting a batch the broker found too large"
                    );
                    let second_record = attempt.first_record + first.record_count as u64;
                    for (batch, first_record) in
                        [(first, attempt.first_record), (second, second_record)]
                    {
                        queue.put_back(Attempt {
                            batch,
                            first_record,
                            // Restamped when sent: the halves' sequences follow the split.
                            stamp: None,
                            retry_at: None,
                            last_error: None,
                        });
                    }
                    Handled::Split
                }
                Err(batch) => {
                    let attempt = Attempt { batch, ..attempt };
                    queue.settle(&attempt);
                    shared.failed_for_good(attempt.stamp, &error);
                    shared.complete(attempt.batch, Err(error));
                    Handled::Completed
                }
            }
        }
        // Refused for its sequence while an earlier batch of the partition is unresolved (it
        // failed and waits for its retry, or this request overtook it): behind it, in place.
        Err(error)
            if in_time
                && attempt.stamp.is_some()
                && matches!(
                    error.code(),
                    Some(
                        ResponseError::OutOfOrderSequenceNumber | ResponseError::UnknownProducerId
                    )
                )
                && attempt.first_record > queue.settled_up_to =>
        {
            attempt.retry_at = Some(Instant::now() + shared.config.retry_backoff);
            attempt.last_error = Some(error);
            queue.put_back(attempt);
            Handled::Requeued
        }
        // The partition forgot this producer (it expired there), and everything before this
        // batch is settled: number the partition's records afresh from it.
        Err(error)
            if in_time
                && attempt.stamp.is_some()
                && error.code() == Some(ResponseError::UnknownProducerId) =>
        {
            tracing::debug!(
                topic = %attempt.batch.topic,
                partition = attempt.batch.partition,
                "the partition forgot this producer; its sequence starts again"
            );
            if let Some(stamp) = attempt.stamp.take() {
                queue.sequence_base = Some((stamp.generation, attempt.first_record));
            }
            attempt.last_error = Some(error);
            queue.put_back(attempt);
            Handled::Requeued
        }
        Err(error) if error.is_retriable() && in_time => {
            tracing::debug!(
                topic = %attempt.batch.topic,
                partition = attempt.batch.partition,
                %error,
                "retrying a batch"
            );
            shared.cluster.invalidate(&attempt.batch.topic);
            attempt.retry_at = Some(Instant::now() + shared.config.retry_backoff);
            attempt.last_error = Some(error);
            queue.put_back(attempt);
            Handled::Requeued
        }
        Err(error) => {
            queue.settle(&attempt);
            shared.failed_for_good(attempt.stamp, &error);
            shared.complete(attempt.batch, Err(error));
            Handled::Completed
        }
    }
}

/// A producer id and epoch for an idempotent producer, from any broker.
async fn init_producer_id(shared: &Shared) -> Result<(i64, i16)> {
    let connection = shared.cluster.any_connection().await?;
    let version = connection.version_at_least::<InitProducerIdRequest>(0)?;
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(i32::MAX)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response = connection.send(request, version).await?;
    ClientError::check(response.error_code, None, || "InitProducerId".to_string())?;
    Ok((response.producer_id.0, response.producer_epoch))
}

/// Finds each batch's leader and sends one Produce request per leader; reports each batch's
/// outcome as soon as its leader answers. The requests go on their connections once those
/// holding the partitions' earlier batches are on theirs (the round's `after` settled); then
/// its `queued` signal settles, for the requests behind these.
async fn dispatch(
    shared: Arc<Shared>,
    round: Round,
    completions: mpsc::UnboundedSender<Completion>,
) {
    let Round {
        attempts,
        after,
        queued,
        ..
    } = round;
    let mut held_back = false;
    for mut earlier in after {
        // Returns once the earlier dispatch has sent NotSent or is gone.
        let _ = earlier.changed().await;
        held_back |= *earlier.borrow() == Queued::NotSent;
    }
    if held_back {
        // Sending these now would put them ahead of a batch that did not go out.
        queued.send_replace(Queued::NotSent);
        for attempt in attempts {
            let _ = completions.send(Completion {
                attempt,
                outcome: Outcome::HeldBack,
            });
        }
        return;
    }
    let mut not_sent = false;
    let mut by_leader: BTreeMap<i32, (Arc<Connection>, Vec<Routed>)> = BTreeMap::new();
    for attempt in attempts {
        let topic = attempt.batch.topic.as_str();
        let partition = attempt.batch.partition;
        let routed = async {
            let topic_id = shared.cluster.topic(topic).await?.id;
            let (leader, connection) = shared.cluster.leader_connection(topic, partition).await?;
            Ok::<_, ClientError>((leader, connection, topic_id))
        }
        .await;
        match routed {
            Ok((leader, connection, topic_id)) => by_leader
                .entry(leader)
                .or_insert_with(|| (connection, Vec::new()))
                .1
                .push(Routed { attempt, topic_id }),
            Err(error) => {
                not_sent = true;
                let _ = completions.send(Completion {
                    attempt,
                    outcome: Outcome::Answered(Err(error)),
                });
            }
        }
    }
    let (connections, attempt_groups): (Vec<Arc<Connection>>, Vec<Vec<Routed>>) =
        by_leader.into_values().unzip();
    // Each leader's request on its own connection, side by side: a busy broker does not hold
    // back the others.
    let started = futures::future::join_all(
        connections
            .iter()
            .zip(&attempt_groups)
            .map(|(connection, attempts)| start_produce(&shared, connection, attempts)),
    )
    .await;
    not_sent |= started.iter().any(Result::is_err);
    // The requests behind these may go (or, if a batch did not go out, be held back).
    if not_sent {
        queued.send_replace(Queued::NotSent);
    }
    drop(queued);
    let requests = connections.iter().zip(attempt_groups).zip(started).map(
        |((connection, attempts), started)| {
            let completions = &completions;
            async move {
                let outcomes = match started {
                    Ok(started) => started.outcomes(connection.address(), &attempts).await,
                    Err(error) => attempts.iter().map(|_| Err(duplicate(&error))).collect(),
                };
                for (Routed { attempt, .. }, outcome) in attempts.into_iter().zip(outcomes) {
                    let _ = completions.send(Completion {
                        attempt,
                        outcome: Outcome::Answered(outcome),
                    });
                }
            }
        },
    );
    futures::future::join_all(requests).await;
}

/// A Produce request on its connection.
enum Started<'a> {
    /// Its answer is to come.
    Answer {
        pending: PendingAnswer<'a, ProduceRequest>,
        by_id: bool,
    },
    /// Written with `acks=0`: no answer comes.
    Written,
}

impl Started<'_> {
    /// The outcome for each batch of the request, in the order of `attempts`.
    async fn outcomes(self, broker: &str, attempts: &[Routed]) -> Vec<Result<Acknowledged>> {
        match self {
            Started::Answer { pending, by_id } => match pending.response().await {
                Ok(response) => attempts
                    .iter()
                    .map(|routed| outcome(&response, by_id, routed, broker))
                    .collect(),
                Err(error) => attempts.iter().map(|_| Err(duplicate(&error))).collect(),
            },
            Started::Written => {
                let unanswered = Acknowledged {
                    base_offset: -1,
                    log_append_time_ms: -1,
                };
                attempts.iter().map(|_| Ok(unanswered)).collect()
            }
        }
    }
}

/// Puts one Produce request with a batch per partition on `connection`.
async fn start_produce<'a>(
    shared: &Shared,
    connection: &'a Connection,
    attempts: &[Routed],
) -> Result<Started<'a>> {
    let mut version = connection.version_for(ApiKey::Produce).ok_or_else(|| {
        ClientError::Protocol(format!(
            "{} serves no Produce version this client speaks",
            connection.address()
        ))
    })?;
    if attempts.iter().any(|routed| routed.topic_id.is_nil()) {
        version = version.min(PRODUCE_VERSION_BY_NAME_MAX);
    }
    let by_id = version > PRODUCE_VERSION_BY_NAME_MAX;
    let mut topic_data: Vec<TopicProduceData> = Vec::new();
    for Routed { attempt, topic_id } in attempts {
        let batch = &attempt.batch;
        let partition_data = PartitionProduceData::default()
            .with_index(batch.partition)
            .with_records(Some(batch.batch.clone()));
        match topic_data
            .iter_mut()
            .find(|data| data.name.0.as_str() == batch.topic)
        {
            Some(data) => data.partition_data.push(partition_data),
            None => {
                let mut data = TopicProduceData::default()
                    .with_name(topic_name(&batch.topic))
                    .with_partition_data(vec![partition_data]);
                if by_id {
                    data.topic_id = *topic_id;
                }
                topic_data.push(data);
            }
        }
    }
    let acks = shared.config.acks.as_i16();
    let timeout_ms =
        i32::try_from(shared.config.client.request_timeout.as_millis()).unwrap_or(i32::MAX);
    // A transactional producer names its transactional id, with which the partition's leader
    // asks the transaction's coordinator whether the transaction holds the partition (KIP-890).
    let transactional_id = shared
        .config
        .transactional_id
        .as_ref()
        .map(|id| TransactionalId(StrBytes::from_string(id.clone())));
    let request = ProduceRequest::default()
        .with_transactional_id(transactional_id)
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(topic_data);
    if acks == 0 {
        connection.send_no_response(request, version).await?;
        return Ok(Started::Written);
    }
    let pending = connection.queue(request, version).await?;
    Ok(Started::Answer { pending, by_id })
}

/// What `response` says about `attempt`'s partition.
fn outcome(
    response: &ProduceResponse,
    by_id: bool,
    routed: &Routed,
    broker: &str,
) -> Result<Acknowledged> {
    let topic = routed.attempt.batch.topic.as_str();
    let partition = routed.attempt.batch.partition;
    let answer = response
        .responses
        .iter()
        .filter(|answer| {
            if by_id {
                answer.topic_id == routed.topic_id
            } else {
                answer.name.0.as_str() == topic
            }
        })
        .flat_map(|answer| &answer.partition_responses)
        .find(|answer| answer.index == partition)
        .ok_or_else(|| {
            ClientError::Protocol(format!(
                "the Produce response from {broker} does not answer for {topic}-{partition}"
            ))
        })?;
    ClientError::check(answer.error_code, answer.error_message.as_ref(), || {
        format!("{topic}-{partition}")
    })?;
    Ok(Acknowledged {
        base_offset: answer.base_offset,
        log_append_time_ms: answer.log_append_time_ms,
    })
}

/// The same error again, for each record of a failed batch (I/O errors keep their kind and
/// text).
fn duplicate(error: &ClientError) -> ClientError {
    match error {
        ClientError::Broker {
            code,
            message,
            context,
        } => ClientError::Broker {
            code: *code,
            message: message.clone(),
            context: context.clone(),
        },
        ClientError::Io { broker, source } => ClientError::Io {
            broker: broker.clone(),
            source: io::Error::new(source.kind(), source.to_string()),
        },
        ClientError::Timeout { what, after } => ClientError::Timeout {
            what: what.clone(),
            after: *after,
        },
        ClientError::Protocol(reason) => ClientError::Protocol(reason.clone()),
        ClientError::NoBrokers(reason) => ClientError::NoBrokers(reason.clone()),
        ClientError::Closed => ClientError::Closed,
        ClientError::InvalidArgument(reason) => ClientError::InvalidArgument(reason.clone()),
        ClientError::ProducerFenced(reason) => ClientError::ProducerFenced(reason.clone()),
        ClientError::TransactionAbortable(reason) => {
            ClientError::TransactionAbortable(reason.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };

    use super::*;

    fn routed(topic: &str, partition: i32, topic_id: uuid::Uuid) -> Routed {
        Routed {
            attempt: Attempt {
                first_record: 0,
                stamp: None,
                batch: ReadyBatch {
                    topic: topic.to_owned(),
                    partition,
                    batch: bytes::Bytes::new(),
                    record_count: 0,
                    deliveries: Vec::new(),
                    created_ms: 0,
                    memory_bytes: 0,
                },
                retry_at: None,
                last_error: None,
            },
            topic_id,
        }
    }

    fn response(by_id: Option<uuid::Uuid>, partitions: &[(i32, i16, i64)]) -> ProduceResponse {
        let mut topic = TopicProduceResponse::default();
        match by_id {
            Some(id) => topic.topic_id = id,
            None => topic.name = topic_name("orders"),
        }
        topic.partition_responses = partitions
            .iter()
            .map(|&(index, error_code, base_offset)| {
                let mut answer = PartitionProduceResponse::default();
                answer.index = index;
                answer.error_code = error_code;
                answer.base_offset = base_offset;
                answer.log_append_time_ms = -1;
                answer
            })
            .collect();
        let mut response = ProduceResponse::default();
        response.responses = vec![topic];
        response
    }

    #[test]
    fn answers_are_found_by_topic_name_or_by_topic_id() {
        let id = uuid::Uuid::from_u128(7);
        let by_name = response(None, &[(0, 0, 40), (1, 6, -1)]);
        let ok = outcome(
            &by_name,
            false,
            &routed("orders", 0, uuid::Uuid::nil()),
            "b:1",
        )
        .unwrap();
        assert_eq!(ok.base_offset, 40);
        let error = outcome(
            &by_name,
            false,
            &routed("orders", 1, uuid::Uuid::nil()),
            "b:1",
        )
        .unwrap_err();
        assert_eq!(error.code(), Some(ResponseError::NotLeaderOrFollower));
        assert!(error.to_string().starts_with("orders-1: "), "{error}");
        assert!(error.is_retriable());

        let by_id = response(Some(id), &[(2, 0, 9)]);
        assert_eq!(
            outcome(&by_id, true, &routed("orders", 2, id), "b:1")
                .unwrap()
                .base_offset,
            9
        );
        let other_topic = routed("orders", 2, uuid::Uuid::from_u128(8));
        let missing = outcome(&by_id, true, &other_topic, "b:1").unwrap_err();
        assert!(
            matches!(&missing, ClientError::Protocol(message) if message.contains("b:1") && message.contains("orders-2")),
            "{missing}"
        );
    }

    #[test]
    fn batches_are_stamped_once_per_identity_with_their_place_in_the_sequence() {
        let mut queue = PartitionQueue::default();
        let first = Identity {
            producer_id: 7,
            epoch: 0,
            generation: 1,
            transactional: false,
        };
        let attempt = |first_record: u64, stamp: Option<Stamp>| {
            let mut attempt = Attempt {
                first_record,
                stamp,
                ..routed("orders", 0, uuid::Uuid::nil()).attempt
            };
            attempt.batch.batch = runnel_record::BatchBuilder::new(0)
                .record(None, Some(b"a"), &[])
                .record(None, Some(b"b"), &[])
                .record(None, Some(b"c"), &[])
                .build()
                .into();
            attempt.batch.record_count = 3;
            attempt
        };
        let header = |attempt: &Attempt| RecordBatch::validate(&attempt.batch.batch).unwrap();
        let mut a = attempt(0, None);
        queue.stamp(&mut a, first);
        let mut b = attempt(3, None);
        queue.stamp(&mut b, first);
        assert_eq!((header(&a).producer_id, header(&a).base_sequence), (7, 0));
        assert_eq!(header(&b).base_sequence, 3);
        // A retry keeps its stamp, even if the partition's numbering moved on since.
        queue.sequence_base = Some((1, 2));
        queue.stamp(&mut b, first);
        assert_eq!(header(&b).base_sequence, 3);
        // A new id numbers from the first record not yet settled.
        queue.settled_up_to = 3;
        let second = Identity {
            producer_id: 8,
            generation: 2,
            ..first
        };
        queue.stamp(&mut b, second);
        assert_eq!((header(&b).producer_id, header(&b).base_sequence), (8, 0));
        // Sequences wrap after i32::MAX.
        let mut far = attempt(3 + (1 << 31) + 5, None);
        queue.stamp(&mut far, second);
        assert_eq!(header(&far).base_sequence, 5);
    }

    #[test]
    fn batches_put_back_take_their_place_in_the_partition_order() {
        let mut queue = PartitionQueue::default();
        let place = |first_record: u64| Attempt {
            first_record,
            ..routed("orders", 0, uuid::Uuid::nil()).attempt
        };
        queue.waiting.push_back(place(30));
        queue.waiting.push_back(place(40));
        // Failures come back in any order: the batch of records 10.. before that of 20..,
        // and both before the batches never sent.
        queue.put_back(place(20));
        queue.put_back(place(10));
        queue.put_back(place(0));
        let order: Vec<u64> = queue.waiting.iter().map(|a| a.first_record).collect();
        assert_eq!(order, [0, 10, 20, 30, 40]);
        // One batch at a time until the batch ending furthest along is written.
        assert_eq!(queue.careful_until_record, 20);
    }

    #[test]
    fn duplicated_errors_keep_kind_code_and_text() {
        let errors = [
            ClientError::broker(ResponseError::NotLeaderOrFollower, Some("moved"), "t-0"),
            ClientError::Io {
                broker: "b:1".to_owned(),
                source: io::Error::new(io::ErrorKind::ConnectionReset, "reset"),
            },
            ClientError::Timeout {
                what: "Produce".to_owned(),
                after: std::time::Duration::from_secs(1),
            },
            ClientError::Protocol("p".to_owned()),
            ClientError::Closed,
        ];
        for error in &errors {
            let copy = duplicate(error);
            assert_eq!(copy.to_string(), error.to_string());
            assert_eq!(copy.is_retriable(), error.is_retriable());
            assert_eq!(copy.code(), error.code());
        }
    }
}
