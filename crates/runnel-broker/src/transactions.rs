//! Transactions on this broker: the I/O shell around `runnel_group::transactions`. It owns
//! `__transaction_state` (created at first start, replayed into the coordinator at every
//! start), writes each transition there before it takes effect, writes the markers that end a
//! transaction to its partitions (the content of a WriteTxnMarkers request, which in a
//! cluster goes to the partitions' leaders), aborts transactions that outlive their timeout,
//! and checks each transactional produce against the coordinator (KIP-890: a batch whose
//! transaction does not hold its partition is refused, so a late batch cannot hang a
//! transaction that already ended).
//!
//! The coordinator's lock is held only around its own changes, never across a write: while a
//! transition, markers or a tombstone of an id are written, the coordinator keeps that id
//! busy (other requests for it get CONCURRENT_TRANSACTIONS, Kafka's pending state), and every
//! other id goes on. A write finishes only in the coordinator's tenure that began it, so a
//! write that outlived this broker's leadership of the id's partition changes nothing here.
//! The partition an id maps to is Kafka's; the coordinator is that partition's leader.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState as DescribedState,
};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use runnel_client::{ClientConfig, Connection};
use runnel_controller::MetadataImage;
use runnel_group::transactions::{
    coordinator_partition, EndOutcome, InitOutcome, Markers, TransactionCoordinator, Transition,
    TxnState, TRANSACTION_STATE_TOPIC,
};
use runnel_record::BatchBuilder;
use runnel_storage::Clock;

use crate::broker::Broker;
use crate::cluster::{broker_address, ClusterMember};
use crate::config::BrokerConfig;
use crate::coordination::Coordinated;
use crate::error::ApiError;
use crate::groups::OFFSETS_TOPIC;
use crate::handlers::produce::await_replicated_blocking;
use crate::internal_topics::{self, Replayed};
use crate::partition::Partition;
use crate::topics::Topic;

/// How long a write of the coordinator (a state, a marker) waits for the in-sync replicas.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct TransactionService {
    coordinator: Mutex<TransactionCoordinator>,
    /// Which partitions of `__transaction_state` this broker coordinates; locked only while
    /// `coordinator` is, after it.
    coordinated: Mutex<Coordinated>,
    /// Learnt from the metadata (the first FindCoordinator for a transactional id has the
    /// controller create it, as Kafka does: a cluster whose clients never use transactions
    /// has no `__transaction_state`).
    state_topic: OnceLock<Arc<Topic>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for TransactionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionService").finish_non_exhaustive()
    }
}

impl TransactionService {
    /// The coordinator starts empty, and loads each partition of `__transaction_state` this
    /// broker comes to lead ([`Self::follow_leadership`]).
    pub(crate) fn open(config: &BrokerConfig, clock: Arc<dyn Clock>) -> Self {
        TransactionService {
            coordinator: Mutex::new(TransactionCoordinator::new(
                config.transaction_max_timeout_ms,
            )),
            coordinated: Mutex::new(Coordinated::default()),
            state_topic: OnceLock::new(),
            clock,
        }
    }

    /// `__transaction_state`, once the metadata has it.
    fn state_topic(&self) -> Result<&Arc<Topic>, ApiError> {
        self.state_topic
            .get()
            .ok_or_else(|| ApiError::code(ResponseError::CoordinatorNotAvailable))
    }

    /// The coordinator, held only around its own changes (and while a partition loads).
    fn lock(&self) -> MutexGuard<'_, TransactionCoordinator> {
        // Plain data: a panic mid-call leaves a valid state (a transition at worst pending).
        self.coordinator
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn coordinated(&self) -> MutexGuard<'_, Coordinated> {
        self.coordinated
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether this broker coordinates transactional id `id` now, and in which tenure (see
    /// [`Coordinated::tenure`]): the error to answer if not. Call it holding the coordinator's
    /// lock, so that the id cannot move away meanwhile.
    fn tenure(&self, id: &str) -> Result<u64, ResponseError> {
        let Ok(topic) = self.state_topic() else {
            return Err(ResponseError::NotCoordinator);
        };
        let index = coordinator_partition(id, topic.partition_count());
        self.coordinated().tenure(index)
    }

    /// A write of `id` begun in `tenure` may change the coordinator only if this broker
    /// still coordinates `id` in that tenure. Call it holding the coordinator's lock.
    fn still_coordinating(&self, id: &str, tenure: u64) -> Result<(), ApiError> {
        match self.tenure(id) {
            Ok(now) if now == tenure => Ok(()),
            _ => Err(ApiError::new(
                ResponseError::NotCoordinator,
                format!("transactional id {id} moved to another coordinator during a write"),
            )),
        }
    }

    /// In a cluster: loads the `__transaction_state` partitions this broker has come to lead
    /// (their prepared but unfinished transactions are then finished by the timer, markers
    /// first), and forgets the ids of those it no longer leads. Called after each image.
    pub(crate) fn follow_leadership(&self, broker: &Arc<Broker>) {
        let Some(topic) = broker.topics.get(TRANSACTION_STATE_TOPIC) else {
            return;
        };
        let topic = Arc::clone(self.state_topic.get_or_init(|| topic));
        let mut coordinator = self.lock();
        for partition in topic.partitions() {
            let index = partition.index;
            if partition.leads() {
                if self.coordinated().start_loading(index) {
                    let loader = Arc::clone(broker);
                    let partition = Arc::clone(&partition);
                    // Waits for the coordinator's lock: not on the I/O pool.
                    tokio::task::spawn_blocking(move || loader.transactions.load(&partition));
                }
            } else if self.coordinated().resign(index) {
                let count = topic.partition_count();
                coordinator.unload(|id| coordinator_partition(id, count) == index);
                tracing::info!(partition = %partition.name(), "no longer coordinating the transactions of a partition");
            }
        }
    }

    /// Replays one partition this broker now leads into the coordinator, to its log end.
    /// Blocks.
    fn load(&self, partition: &Partition) {
        let Some(topic) = self.state_topic.get() else {
            return;
        };
        let mut coordinator = self.lock();
        if self.coordinated().check(partition.index)
            != Err(ResponseError::CoordinatorLoadInProgress)
        {
            return;
        }
        let replayed =
            internal_topics::replay_partition(topic, partition, |replayed| match replayed {
                Replayed::Record { key, value, .. } => coordinator
                    .replay(key, value)
                    .map_err(|error| error.to_string()),
                Replayed::Marker { .. } => Ok(()),
            });
        match replayed {
            Ok(records) => {
                if self.coordinated().finish_loading(partition.index) {
                    tracing::info!(partition = %partition.name(), records, "coordinating the transactions of a partition");
                }
            }
            Err(error) => {
                tracing::error!(partition = %partition.name(), %error, "could not load transaction state");
            }
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Appends a transition's record to its id's partition of `__transaction_state`, durably
    /// when the flush policy asks.
    fn write(&self, broker: &Broker, transition: &Transition) -> Result<(), ApiError> {
        self.write_record(broker, &transition.transactional_id, transition.record())
    }

    /// Appends one record (a state, or a tombstone) to `id`'s partition of
    /// `__transaction_state`, durably when the flush policy asks.
    fn write_record(
        &self,
        broker: &Broker,
        id: &str,
        (key, value): (bytes::Bytes, Option<bytes::Bytes>),
    ) -> Result<(), ApiError> {
        let state_topic = self.state_topic()?;
        let index = coordinator_partition(id, state_topic.partition_count());
        let partition = state_topic
            .partition(index)
            .ok_or(ApiError::code(ResponseError::CoordinatorNotAvailable))?;
        let now = self.now_ms();
        let mut batch = BatchBuilder::new(now)
            .record(Some(&key), value.as_deref(), &[])
            .build();
        let appended = partition.append(&mut batch, now)?;
        await_replicated_blocking(broker, &partition, &appended, WRITE_TIMEOUT)
    }

    /// Writes a transition the coordinator began in `tenure`, with the coordinator unlocked,
    /// then applies it; when it ends a transaction, writes the markers and the completion
    /// too. Blocks until the in-sync replicas have each write.
    fn carry_out(
        &self,
        broker: &Broker,
        transition: Transition,
        tenure: u64,
    ) -> Result<(), ApiError> {
        let written = self.write(broker, &transition);
        let markers = {
            let mut coordinator = self.lock();
            self.still_coordinating(&transition.transactional_id, tenure)?;
            if let Err(error) = written {
                coordinator.abandon(&transition);
                return Err(error);
            }
            coordinator.apply(transition)
        };
        match markers {
            Some(markers) => self.finish(broker, &markers, tenure),
            None => Ok(()),
        }
    }

    /// The markers of an ending transaction whose markers job the caller holds, then its
    /// completion. If a marker cannot be written the transaction stays in
    /// PrepareCommit/PrepareAbort and the timer tries again.
    fn finish(&self, broker: &Broker, markers: &Markers, tenure: u64) -> Result<(), ApiError> {
        let id = &markers.transactional_id;
        let now = self.now_ms();
        let written = self
            .coordinator_epoch(id)
            .and_then(|coordinator_epoch| write_markers(broker, markers, coordinator_epoch, now));
        let complete = {
            let mut coordinator = self.lock();
            self.still_coordinating(id, tenure)?;
            if let Err(error) = written {
                coordinator.markers_failed(id);
                return Err(error);
            }
            coordinator.markers_written(now, id)
        };
        match complete {
            Some(complete) => self.carry_out(broker, complete, tenure),
            None => Ok(()),
        }
    }

    /// The epoch this coordinator writes `id`'s markers in (Kafka's coordinator epoch): the
    /// leader epoch of `id`'s `__transaction_state` partition here. A coordinator that lost
    /// that partition has none, and the markers of one that lost it before are refused by the
    /// partitions its successor wrote to (`Partition::append_marker`).
    fn coordinator_epoch(&self, id: &str) -> Result<i32, ApiError> {
        let topic = self.state_topic()?;
        let index = coordinator_partition(id, topic.partition_count());
        topic
            .partition(index)
            .ok_or(ApiError::code(ResponseError::CoordinatorNotAvailable))?
            .serving_epoch(-1)
            .map_err(|_| ApiError::code(ResponseError::NotCoordinator))
    }

    /// InitProducerId with a transactional id: a producer id and a new epoch, fencing older
    /// instances; an open transaction of the id is aborted first.
    pub(crate) fn init_producer_id(
        &self,
        broker: &Broker,
        version: i16,
        request: &InitProducerIdRequest,
    ) -> Result<(i64, i16), ResponseError> {
        let id = request
            .transactional_id
            .as_deref()
            .map_or("", |id| id.as_str());
        let expected = (version >= 3).then_some((request.producer_id.0, request.producer_epoch));
        let mut allocate = || {
            broker.producer_ids.allocate().map_err(|error| {
                error.report();
                error.code()
            })
        };
        let now = self.now_ms();
        let (tenure, mut outcome) = {
            let mut coordinator = self.lock();
            let tenure = self.tenure(id)?;
            let outcome = coordinator.init_producer_id(
                now,
                id,
                request.transaction_timeout_ms,
                expected,
                &mut allocate,
            )?;
            (tenure, outcome)
        };
        if let InitOutcome::FenceFirst(fence) = outcome {
            // The open transaction is aborted at once; then the epoch is bumped again for
            // this instance, as Kafka's producer would after retrying.
            tracing::info!(
                transactional_id = id,
                "aborting the open transaction of a producer a new instance replaces"
            );
            self.carry_out(broker, fence, tenure)
                .map_err(|error| error.code)?;
            let mut coordinator = self.lock();
            self.still_coordinating(id, tenure)
                .map_err(|error| error.code)?;
            outcome = coordinator.init_producer_id(
                now,
                id,
                request.transaction_timeout_ms,
                None,
                &mut allocate,
            )?;
        }
        let InitOutcome::Write(transition) = outcome else {
            return Err(ResponseError::ConcurrentTransactions);
        };
        let answer = (transition.next.producer_id, transition.next.producer_epoch);
        self.carry_out(broker, transition, tenure)
            .map_err(|error| error.code)?;
        Ok(answer)
    }

    pub(crate) fn add_partitions(
        &self,
        broker: &Broker,
        version: i16,
        request: AddPartitionsToTxnRequest,
    ) -> AddPartitionsToTxnResponse {
        if version >= 4 {
            return self.add_partitions_batched(broker, request);
        }
        let topics = &broker.topics;
        let wanted: Vec<(String, i32)> = request
            .v3_and_below_topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|partition| (topic.name.to_string(), *partition))
            })
            .collect();
        let unknown: Vec<bool> = wanted
            .iter()
            .map(|(topic, partition)| {
                topics
                    .get(topic)
                    .and_then(|topic| topic.partition(*partition))
                    .is_none()
            })
            .collect();
        let outcome = if unknown.iter().any(|unknown| *unknown) {
            Err(ResponseError::OperationNotAttempted)
        } else {
            self.add_to_transaction(
                broker,
                &request.v3_and_below_transactional_id,
                request.v3_and_below_producer_id.0,
                request.v3_and_below_producer_epoch,
                &wanted,
            )
        };
        let mut response = AddPartitionsToTxnResponse::default();
        let mut index = 0;
        for topic in request.v3_and_below_topics {
            let mut result = AddPartitionsToTxnTopicResult::default();
            for partition in topic.partitions {
                let code = match &outcome {
                    Ok(()) => 0,
                    Err(_) if unknown[index] => ResponseError::UnknownTopicOrPartition.code(),
                    Err(code) => code.code(),
                };
                index += 1;
                let mut partition_result = AddPartitionsToTxnPartitionResult::default();
                partition_result.partition_index = partition;
                partition_result.partition_error_code = code;
                result.results_by_partition.push(partition_result);
            }
            result.name = topic.name;
            response.results_by_topic_v3_and_below.push(result);
        }
        response
    }

    /// AddPartitionsToTxn v4+, the brokers' batched form (KIP-890): several transactions, each
    /// to add to, or with `verify_only` only to check (a partition leader asking, before it
    /// appends the first transactional batch of a producer, whether its transaction holds the
    /// partition). Each partition is answered on its own.
    fn add_partitions_batched(
        &self,
        broker: &Broker,
        request: AddPartitionsToTxnRequest,
    ) -> AddPartitionsToTxnResponse {
        let mut response = AddPartitionsToTxnResponse::default();
        for transaction in request.transactions {
            let wanted: Vec<(String, i32)> = transaction
                .topics
                .iter()
                .flat_map(|topic| {
                    topic
                        .partitions
                        .iter()
                        .map(|partition| (topic.name.to_string(), *partition))
                })
                .collect();
            let id = transaction.transactional_id.as_str();
            let (producer_id, epoch) = (transaction.producer_id.0, transaction.producer_epoch);
            let codes: Vec<i16> = if transaction.verify_only {
                self.verify_partitions(id, (producer_id, epoch), &wanted)
            } else {
                let code = self
                    .add_to_transaction(broker, id, producer_id, epoch, &wanted)
                    .err()
                    .map_or(0, |error| error.code());
                vec![code; wanted.len()]
            };
            let mut result = AddPartitionsToTxnResult::default();
            result.transactional_id = transaction.transactional_id;
            let mut codes = codes.into_iter();
            for topic in transaction.topics {
                let mut topic_result = AddPartitionsToTxnTopicResult::default();
                for partition in topic.partitions {
                    let mut partition_result = AddPartitionsToTxnPartitionResult::default();
                    partition_result.partition_index = partition;
                    partition_result.partition_error_code = codes.next().unwrap_or(0);
                    topic_result.results_by_partition.push(partition_result);
                }
                topic_result.name = topic.name;
                result.topic_results.push(topic_result);
            }
            response.results_by_transaction.push(result);
        }
        response
    }

    /// The coordinator's answer to a partition leader's `verify_only` question, for a
    /// coordinator on this broker: one error code per partition (0: the transaction holds it).
    fn verify_partitions(
        &self,
        id: &str,
        (producer_id, epoch): (i64, i16),
        partitions: &[(String, i32)],
    ) -> Vec<i16> {
        let coordinator = self.lock();
        match self.tenure(id) {
            Err(error) => vec![error.code(); partitions.len()],
            Ok(_) => partitions
                .iter()
                .map(|(topic, partition)| {
                    coordinator
                        .verify(producer_id, epoch, topic, *partition)
                        .err()
                        .map_or(0, |error| error.code())
                })
                .collect(),
        }
    }

    /// Adds partitions to `id`'s transaction, writing the change when there is one.
    fn add_to_transaction(
        &self,
        broker: &Broker,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), ResponseError> {
        let (tenure, transition) = {
            let mut coordinator = self.lock();
            let tenure = self.tenure(id)?;
            let transition =
                coordinator.add_partitions(self.now_ms(), id, producer_id, epoch, partitions)?;
            (tenure, transition)
        };
        match transition {
            Some(transition) => self
                .carry_out(broker, transition, tenure)
                .map_err(|error| error.code),
            None => Ok(()),
        }
    }

    /// AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the transaction, so
    /// that its TxnOffsetCommit records get the transaction's marker.
    pub(crate) fn add_offsets(
        &self,
        broker: &Broker,
        request: AddOffsetsToTxnRequest,
    ) -> AddOffsetsToTxnResponse {
        let mut response = AddOffsetsToTxnResponse::default();
        let Some(offsets_topic) = broker.topics.get(OFFSETS_TOPIC) else {
            response.error_code = ResponseError::CoordinatorNotAvailable.code();
            return response;
        };
        let partition = coordinator_partition(&request.group_id, offsets_topic.partition_count());
        let outcome = self.add_to_transaction(
            broker,
            &request.transactional_id,
            request.producer_id.0,
            request.producer_epoch,
            &[(OFFSETS_TOPIC.to_string(), partition)],
        );
        if let Err(code) = outcome {
            response.error_code = code.code();
        }
        response
    }

    pub(crate) fn end_txn(&self, broker: &Broker, request: EndTxnRequest) -> EndTxnResponse {
        let mut response = EndTxnResponse::default();
        response.producer_id = ProducerId(-1);
        response.producer_epoch = -1;
        let begun = {
            let mut coordinator = self.lock();
            self.tenure(&request.transactional_id).and_then(|tenure| {
                let outcome = coordinator.end_transaction(
                    self.now_ms(),
                    &request.transactional_id,
                    request.producer_id.0,
                    request.producer_epoch,
                    request.committed,
                )?;
                Ok((tenure, outcome))
            })
        };
        let outcome = begun.and_then(|(tenure, outcome)| match outcome {
            EndOutcome::Write(transition) => self
                .carry_out(broker, transition, tenure)
                .map_err(|error| error.code),
            EndOutcome::AlreadyDone => Ok(()),
        });
        if let Err(code) = outcome {
            response.error_code = code.code();
        }
        response
    }

    pub(crate) fn describe(
        &self,
        request: DescribeTransactionsRequest,
    ) -> DescribeTransactionsResponse {
        let coordinator = self.lock();
        let mut response = DescribeTransactionsResponse::default();
        response.transaction_states = request
            .transactional_ids
            .into_iter()
            .map(|id| {
                let mut state = DescribedState::default();
                let here = self.tenure(&id);
                match coordinator.describe(&id).filter(|_| here.is_ok()) {
                    Some(metadata) => {
                        state.transaction_state = StrBytes::from_static_str(metadata.state.name());
                        state.transaction_timeout_ms = metadata.timeout_ms;
                        state.transaction_start_time_ms = metadata.start_ms;
                        state.producer_id = ProducerId(metadata.producer_id);
                        state.producer_epoch = metadata.producer_epoch;
                        let mut by_topic: Vec<TopicData> = Vec::new();
                        for (topic, partition) in &metadata.partitions {
                            match by_topic.last_mut() {
                                Some(last) if last.topic.as_str() == topic => {
                                    last.partitions.push(*partition)
                                }
                                _ => {
                                    let mut data = TopicData::default();
                                    data.topic = TopicName(StrBytes::from_string(topic.clone()));
                                    data.partitions = vec![*partition];
                                    by_topic.push(data);
                                }
                            }
                        }
                        state.topics = by_topic;
                    }
                    None => {
                        state.error_code = here
                            .err()
                            .unwrap_or(ResponseError::TransactionalIdNotFound)
                            .code();
                        state.producer_id = ProducerId(-1);
                        state.producer_epoch = -1;
                        state.transaction_start_time_ms = -1;
                    }
                }
                state.transactional_id = id;
                state
            })
            .collect();
        response
    }

    pub(crate) fn list(&self, request: ListTransactionsRequest) -> ListTransactionsResponse {
        let mut response = ListTransactionsResponse::default();
        let mut states = Vec::new();
        for name in &request.state_filters {
            match TxnState::from_name(name) {
                Some(state) => states.push(state),
                None => response.unknown_state_filters.push(name.clone()),
            }
        }
        let pattern = match request
            .transactional_id_pattern
            .as_deref()
            .filter(|pattern| !pattern.is_empty())
            .map(|pattern| regex::Regex::new(&format!("^(?:{pattern})$")))
            .transpose()
        {
            Ok(pattern) => pattern,
            Err(_) => {
                response.error_code = ResponseError::InvalidRegularExpression.code();
                return response;
            }
        };
        let now = self.now_ms();
        let coordinator = self.lock();
        response.transaction_states = coordinator
            .list()
            .into_iter()
            .filter(|(_, metadata)| states.is_empty() || states.contains(&metadata.state))
            .filter(|(_, metadata)| {
                request.producer_id_filters.is_empty()
                    || request
                        .producer_id_filters
                        .contains(&ProducerId(metadata.producer_id))
            })
            .filter(|(_, metadata)| {
                // Transactions running longer than the filter (KIP-994); -1 is none.
                request.duration_filter < 0
                    || (metadata.state == TxnState::Ongoing
                        && now.saturating_sub(metadata.start_ms) > request.duration_filter)
            })
            .filter(|(id, _)| pattern.as_ref().is_none_or(|pattern| pattern.is_match(id)))
            .map(|(id, metadata)| {
                let mut state = ListedState::default();
                state.transactional_id = TransactionalId(StrBytes::from_string(id.to_string()));
                state.producer_id = ProducerId(metadata.producer_id);
                state.transaction_state = StrBytes::from_static_str(metadata.state.name());
                state
            })
            .collect();
        response
    }

    /// The timer's work: aborts transactions past their timeout (fencing their producers),
    /// finishes transactions whose markers could not all be written (a restart, a disk
    /// error), and forgets ids idle for `transactional.id.expiration.ms` (a tombstone in
    /// `__transaction_state` first). Blocks until the in-sync replicas have each write: not
    /// on the I/O pool.
    pub(crate) fn tick(&self, broker: &Broker) {
        let now = self.now_ms();
        let (aborts, unfinished, idle) = {
            let mut coordinator = self.lock();
            let mut aborts = Vec::new();
            for id in coordinator.expired(now) {
                let Ok(tenure) = self.tenure(&id) else {
                    continue;
                };
                if let Some(abort) = coordinator.abort_expired(now, &id) {
                    aborts.push((abort, tenure));
                }
            }
            // An id is here only while its partition is loaded; should one not be, it is
            // freed at once rather than left busy.
            let mut unfinished = Vec::new();
            for markers in coordinator.take_unfinished() {
                match self.tenure(&markers.transactional_id) {
                    Ok(tenure) => unfinished.push((markers, tenure)),
                    Err(_) => coordinator.markers_failed(&markers.transactional_id),
                }
            }
            let mut idle = Vec::new();
            let expiration_ms = broker.config.transactional_id_expiration_ms;
            for id in coordinator.take_idle(now, expiration_ms) {
                match self.tenure(&id) {
                    Ok(tenure) => idle.push((id, tenure)),
                    Err(_) => coordinator.release(&id),
                }
            }
            (aborts, unfinished, idle)
        };
        for (abort, tenure) in aborts {
            let id = abort.transactional_id.clone();
            tracing::info!(transactional_id = %id, "aborting a transaction that outlived its timeout");
            if let Err(error) = self.carry_out(broker, abort, tenure) {
                tracing::warn!(transactional_id = %id, error = ?error.message, "could not abort a timed-out transaction yet");
            }
        }
        for (markers, tenure) in unfinished {
            if let Err(error) = self.finish(broker, &markers, tenure) {
                tracing::warn!(transactional_id = %markers.transactional_id, error = ?error.message, "could not finish a transaction yet");
            }
        }
        for (id, tenure) in idle {
            let written = self.write_record(broker, &id, TransactionCoordinator::tombstone(&id));
            let mut coordinator = self.lock();
            if self.still_coordinating(&id, tenure).is_err() {
                continue;
            }
            match written {
                Ok(()) => {
                    tracing::info!(transactional_id = %id, "forgetting an idle transactional id");
                    coordinator.forget(&id);
                }
                Err(error) => {
                    coordinator.release(&id);
                    tracing::warn!(transactional_id = %id, error = ?error.message, "could not expire a transactional id yet")
                }
            }
        }
    }
}

/// Writes one marker per partition of the transaction: itself into the partitions this broker
/// leads, with a WriteTxnMarkers request to the leader of each other one.
/// A partition of a topic deleted since needs none. Fails, for the timer to try again, unless
/// every marker is in its partition as durably as an `acks=all` produce. Blocks.
fn write_markers(
    broker: &Broker,
    markers: &Markers,
    coordinator_epoch: i32,
    now_ms: i64,
) -> Result<(), ApiError> {
    let mut elsewhere: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
    for (topic, index) in &markers.partitions {
        let Some(partition) = broker
            .topics
            .get(topic)
            .and_then(|topic| topic.partition(*index))
        else {
            tracing::warn!(%topic, partition = index, "no marker for a partition that no longer exists");
            continue;
        };
        if partition.leads() {
            write_marker(
                broker,
                &partition,
                (markers.producer_id, markers.producer_epoch),
                (markers.commit, coordinator_epoch),
                now_ms,
            )?;
        } else {
            let leader = broker
                .member()?
                .image()
                .topic_by_name(topic)
                .and_then(|image| image.partitions.get(index))
                .map(|state| state.leader)
                .filter(|&leader| leader >= 0)
                .ok_or_else(|| {
                    ApiError::new(
                        ResponseError::NotLeaderOrFollower,
                        format!("{topic}-{index} has no leader to take a marker"),
                    )
                })?;
            elsewhere
                .entry(leader)
                .or_default()
                .push((topic.clone(), *index));
        }
    }
    for (leader, partitions) in elsewhere {
        let member = broker.member()?;
        let to = (leader, partitions.as_slice());
        broker.block_on(send_markers(broker, member, to, markers, coordinator_epoch))??;
    }
    Ok(())
}

/// One marker into a partition this broker leads, as durably as an
/// `acks=all` produce: `producer`'s transaction committed or not, from the coordinator of
/// `coordinator_epoch`. At a `__consumer_offsets` partition the group coordinator then
/// installs (or drops) the offsets committed in the transaction. Blocks.
pub(crate) fn write_marker(
    broker: &Broker,
    partition: &Arc<Partition>,
    producer: (i64, i16),
    (commit, coordinator_epoch): (bool, i32),
    now_ms: i64,
) -> Result<(), ApiError> {
    let producer_id = producer.0;
    let appended = partition.append_marker(producer, commit, coordinator_epoch, now_ms)?;
    await_replicated_blocking(broker, partition, &appended, WRITE_TIMEOUT)?;
    if partition.topic() == OFFSETS_TOPIC {
        broker.groups.complete_transaction(producer_id, commit);
    }
    Ok(())
}

/// WriteTxnMarkers to broker `leader` for `partitions`, which it leads; any partition it
/// refuses fails the whole.
async fn send_markers(
    broker: &Broker,
    member: &ClusterMember,
    (leader, partitions): (i32, &[(String, i32)]),
    markers: &Markers,
    coordinator_epoch: i32,
) -> Result<(), ApiError> {
    let unreachable = |why: String| ApiError::new(ResponseError::NetworkException, why);
    let (connection, version) = connect_to_broker(
        broker,
        &member.image(),
        leader,
        (ApiKey::WriteTxnMarkers, 0),
        WRITE_TIMEOUT * 2,
    )
    .await
    .map_err(unreachable)?;
    let mut marker = write_txn_markers_request::WritableTxnMarker::default();
    marker.producer_id = ProducerId(markers.producer_id);
    marker.producer_epoch = markers.producer_epoch;
    marker.transaction_result = markers.commit;
    marker.coordinator_epoch = coordinator_epoch;
    marker.topics = by_topic(partitions)
        .into_iter()
        .map(|(name, indexes)| {
            let mut topic = write_txn_markers_request::WritableTxnMarkerTopic::default();
            topic.name = TopicName(StrBytes::from_string(name.to_owned()));
            topic.partition_indexes = indexes;
            topic
        })
        .collect();
    let mut request = WriteTxnMarkersRequest::default();
    request.markers = vec![marker];
    let response = connection
        .send(request, version)
        .await
        .map_err(|error| unreachable(error.to_string()))?;
    let refused = response
        .markers
        .iter()
        .flat_map(|marker| &marker.topics)
        .flat_map(|topic| topic.partitions.iter().map(move |p| (topic, p)))
        .find(|(_, partition)| partition.error_code != 0);
    match refused {
        None => Ok(()),
        Some((topic, partition)) => Err(ApiError::new(
            ResponseError::try_from_code(partition.error_code)
                .unwrap_or(ResponseError::UnknownServerError),
            format!(
                "broker {leader} refused the marker for {}-{}",
                topic.name.as_str(),
                partition.partition_index
            ),
        )),
    }
}

/// KIP-890 in a cluster: before a partition leader appends a transactional batch that would
/// start a transaction in the partition (none of that producer is open there), it asks the
/// transactional id's coordinator whether the transaction holds the partition
/// (AddPartitionsToTxn v4, `verify_only`), so that a batch retried after its transaction
/// ended cannot open one that nothing would ever end. Returns the partitions refused. A
/// coordinator that cannot be asked makes NOT_ENOUGH_REPLICAS, which producers retry, as
/// Kafka answers clients that predate the check.
pub(crate) async fn verify_before_append(
    broker: &Arc<Broker>,
    transactional_id: &str,
    producer: (i64, i16),
    partitions: Vec<(String, i32)>,
) -> Vec<((String, i32), ResponseError)> {
    let codes = match ask_coordinator(broker, transactional_id, producer, &partitions).await {
        Ok(codes) => codes,
        Err(error) => {
            tracing::debug!(transactional_id, error = ?error.message, "cannot verify a transaction with its coordinator");
            vec![ResponseError::NotEnoughReplicas.code(); partitions.len()]
        }
    };
    partitions
        .into_iter()
        .zip(codes)
        .filter(|(_, code)| *code != 0)
        .map(|(partition, code)| {
            let error = match ResponseError::try_from_code(code) {
                Some(
                    error @ (ResponseError::InvalidTxnState
                    | ResponseError::InvalidProducerEpoch
                    | ResponseError::ProducerFenced
                    | ResponseError::InvalidProducerIdMapping),
                ) => error,
                _ => ResponseError::NotEnoughReplicas,
            };
            (partition, error)
        })
        .collect()
}

/// The coordinator's codes for `partitions`, from this broker's own coordinator or over the
/// wire.
async fn ask_coordinator(
    broker: &Arc<Broker>,
    transactional_id: &str,
    producer: (i64, i16),
    partitions: &[(String, i32)],
) -> Result<Vec<i16>, ApiError> {
    let unavailable = |why: String| ApiError::new(ResponseError::CoordinatorNotAvailable, why);
    let member = broker
        .cluster()
        .ok_or_else(|| unavailable("not in a cluster".into()))?;
    let image = member.image();
    let state_topic = image
        .topic_by_name(TRANSACTION_STATE_TOPIC)
        .ok_or_else(|| unavailable(format!("no {TRANSACTION_STATE_TOPIC} yet")))?;
    let index = coordinator_partition(
        transactional_id,
        i32::try_from(state_topic.partitions.len()).unwrap_or(i32::MAX),
    );
    let leader = state_topic
        .partitions
        .get(&index)
        .map(|state| state.leader)
        .filter(|&leader| leader >= 0)
        .ok_or_else(|| unavailable(format!("{TRANSACTION_STATE_TOPIC}-{index} has no leader")))?;
    if leader == broker.node_id() {
        let id = transactional_id.to_owned();
        let asked = partitions.to_vec();
        return broker
            .blocking_until_replicated(move |broker| {
                broker.transactions.verify_partitions(&id, producer, &asked)
            })
            .await;
    }
    // v4 is the batched form that carries `verify_only`.
    let (connection, version) = connect_to_broker(
        broker,
        &image,
        leader,
        (ApiKey::AddPartitionsToTxn, 4),
        WRITE_TIMEOUT,
    )
    .await
    .map_err(unavailable)?;
    let mut transaction = add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default();
    transaction.transactional_id =
        TransactionalId(StrBytes::from_string(transactional_id.to_owned()));
    transaction.producer_id = ProducerId(producer.0);
    transaction.producer_epoch = producer.1;
    transaction.verify_only = true;
    transaction.topics = by_topic(partitions)
        .into_iter()
        .map(|(name, indexes)| {
            let mut topic = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
            topic.name = TopicName(StrBytes::from_string(name.to_owned()));
            topic.partitions = indexes;
            topic
        })
        .collect();
    let mut request = AddPartitionsToTxnRequest::default();
    request.transactions = vec![transaction];
    let response = connection
        .send(request, version)
        .await
        .map_err(|error| unavailable(error.to_string()))?;
    if response.error_code != 0 {
        return Ok(vec![response.error_code; partitions.len()]);
    }
    let answered: HashMap<(String, i32), i16> = response
        .results_by_transaction
        .into_iter()
        .flat_map(|result| result.topic_results)
        .flat_map(|topic| {
            let name = topic.name.to_string();
            topic
                .results_by_partition
                .into_iter()
                .map(move |partition| {
                    (
                        (name.clone(), partition.partition_index),
                        partition.partition_error_code,
                    )
                })
        })
        .collect();
    Ok(partitions
        .iter()
        .map(|partition| {
            answered
                .get(partition)
                .copied()
                .unwrap_or(ResponseError::UnknownServerError.code())
        })
        .collect())
}

/// A connection to broker `id` for `api` at `min_version` or later, and the version to use.
async fn connect_to_broker(
    broker: &Broker,
    image: &MetadataImage,
    id: i32,
    (api, min_version): (ApiKey, i16),
    request_timeout: Duration,
) -> Result<(Connection, i16), String> {
    let address =
        broker_address(image, id).ok_or_else(|| format!("broker {id} is not registered"))?;
    let mut config = ClientConfig::new(address.clone());
    config.client_id = format!("runnel-broker-{}", broker.node_id());
    config.request_timeout = request_timeout;
    let connection = Connection::connect(&address, &config)
        .await
        .map_err(|error| error.to_string())?;
    let version = connection
        .version_for(api)
        .filter(|version| *version >= min_version)
        .ok_or_else(|| format!("broker {id} does not serve {api:?} v{min_version} or later"))?;
    Ok((connection, version))
}

/// Partitions grouped by topic, as the requests between brokers list them.
fn by_topic(partitions: &[(String, i32)]) -> BTreeMap<&str, Vec<i32>> {
    let mut grouped: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        grouped.entry(topic).or_default().push(*partition);
    }
    grouped
}
