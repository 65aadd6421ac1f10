//! Consumer groups on this broker: the I/O shell around the sans-IO coordinators of
//! `runnel-group`. It owns the internal `__consumer_offsets` topic (creation, replay at start,
//! appends), parks JoinGroup/SyncGroup requests until the coordinator answers them, and runs
//! the coordinators' timers.
//!
//! Classic groups (JoinGroup/SyncGroup) live in `GroupCoordinator`, KIP-848 groups
//! (ConsumerGroupHeartbeat) in `ConsumerGroups`; committed offsets of both are kept by the
//! former and written to the group's partition of `__consumer_offsets` before any commit is
//! acknowledged, once the partition's in-sync replicas all hold it.
//!
//! A group maps to a partition of `__consumer_offsets` as in Kafka, and the partition's leader
//! coordinates it: it replays the partition when it becomes leader (COORDINATOR_LOAD_IN_PROGRESS meanwhile) and forgets its
//! groups when it stops leading, so a group moves with its partition when a broker dies and
//! its committed offsets, replicated like any record, go with it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use runnel_group::consumer::{ConsumerGroupConfig, ConsumerGroups, TopicView};
use runnel_group::{
    GroupConfig, GroupCoordinator, GroupState as ClassicState, Output, PendingCommit, Token,
};
use runnel_record::BatchBuilder;
use runnel_storage::{Clock, StorageError};
use tokio::sync::{oneshot, Notify};
use uuid::Uuid;

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::coordination::Coordinated;
use crate::error::ApiError;
use crate::handlers::produce::{await_acknowledgeable, await_replicated_blocking};
use crate::internal_topics::{self, Replayed};
use crate::partition::{Appended, Partition};
use crate::topics::{Topic, TopicRegistry};

pub(crate) const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Kafka's `offsets.commit.timeout.ms`: how long a commit waits for the in-sync replicas
/// before it is answered REQUEST_TIMED_OUT.
const OFFSET_COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Commits are written as an `acks=all` produce is.
const ACKS_ALL: i16 = -1;

/// Who sent a request, as group member descriptions report it.
#[derive(Debug, Clone)]
pub(crate) struct ClientInfo {
    pub(crate) client_id: String,
    pub(crate) host: String,
}

enum Parked {
    Join(oneshot::Sender<JoinGroupResponse>),
    Sync(oneshot::Sender<SyncGroupResponse>),
}

struct GroupsState {
    classic: GroupCoordinator,
    consumer: ConsumerGroups,
    parked: HashMap<Token, Parked>,
    coordinated: Coordinated,
}

/// What writing an offset commit left to do.
enum CommitWritten {
    /// Answered: applied, or refused.
    Done(OffsetCommitResponse),
    /// Written; before it is applied and acknowledged the partition's in-sync replicas must
    /// all hold it.
    AwaitingDurable {
        partition: Arc<Partition>,
        appended: Appended,
        response: OffsetCommitResponse,
        pending: PendingCommit,
    },
}

pub(crate) struct GroupService {
    state: Mutex<GroupsState>,
    next_token: AtomicU64,
    /// Poked when a call may have moved the coordinators' next deadline earlier.
    deadline_changed: Notify,
    /// Known once the metadata has the topic (the first FindCoordinator has the controller
    /// create it).
    offsets_topic: OnceLock<Arc<Topic>>,
    clock: Arc<dyn Clock>,
    /// One per `__consumer_offsets` partition: the commits of its groups are written, made
    /// durable (held by the partition's in-sync replicas) and applied in one order, the
    /// log's.
    commit_order: Mutex<HashMap<i32, Arc<tokio::sync::Mutex<()>>>>,
    /// Set by shutdown: new JoinGroup/SyncGroup requests are turned away.
    stopping: AtomicBool,
}

impl std::fmt::Debug for GroupService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupService").finish_non_exhaustive()
    }
}

/// The topic registry as the KIP-848 coordinator sees it.
struct RegistryView<'a>(&'a TopicRegistry);

impl TopicView for RegistryView<'_> {
    fn topic_id(&self, name: &str) -> Option<Uuid> {
        self.0.get(name).map(|topic| topic.id)
    }
    fn topic_name(&self, id: Uuid) -> Option<String> {
        self.0.get_by_id(id).map(|topic| topic.name.to_string())
    }
    fn partition_count(&self, id: Uuid) -> Option<i32> {
        self.0.get_by_id(id).map(|topic| topic.partition_count())
    }
    fn topic_names(&self) -> Vec<String> {
        self.0
            .list()
            .into_iter()
            .filter(|topic| !topic.is_internal())
            .map(|topic| topic.name.to_string())
            .collect()
    }
}

impl GroupService {
    /// The coordinators start empty, and load each partition of `__consumer_offsets` this
    /// broker comes to lead ([`Self::follow_leadership`]).
    pub(crate) fn open(config: &BrokerConfig, clock: Arc<dyn Clock>) -> Self {
        let classic = GroupCoordinator::new(GroupConfig {
            group_min_session_timeout_ms: config.group_min_session_timeout_ms,
            group_max_session_timeout_ms: config.group_max_session_timeout_ms,
            group_initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            group_max_size: config.group_max_size,
            offsets_retention_ms: config.offsets_retention_minutes.saturating_mul(60_000),
            ..GroupConfig::default()
        });
        let offsets_topic = OnceLock::new();
        let consumer = ConsumerGroups::new(ConsumerGroupConfig {
            session_timeout_ms: config.group_consumer_session_timeout_ms,
            heartbeat_interval_ms: config.group_consumer_heartbeat_interval_ms,
            max_size: config.group_consumer_max_size,
            ..ConsumerGroupConfig::default()
        });
        GroupService {
            state: Mutex::new(GroupsState {
                classic,
                consumer,
                parked: HashMap::new(),
                coordinated: Coordinated::default(),
            }),
            next_token: AtomicU64::new(1),
            deadline_changed: Notify::new(),
            offsets_topic,
            clock,
            commit_order: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Answers every parked JoinGroup and SyncGroup with NOT_COORDINATOR, so clients look for
    /// the coordinator elsewhere (or after the restart), and turns new ones away.
    pub(crate) fn shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        let parked = std::mem::take(&mut self.lock().parked);
        for (_, parked) in parked {
            match parked {
                Parked::Join(reply) => {
                    let _ = reply.send(join_error(ResponseError::NotCoordinator));
                }
                Parked::Sync(reply) => {
                    let _ = reply.send(sync_error(ResponseError::NotCoordinator));
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, GroupsState> {
        // The coordinators are plain data; a panic in one is a bug that already logged itself,
        // and the state it leaves is still a valid (if unexpected) group state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn token(&self) -> Token {
        self.next_token.fetch_add(1, Ordering::Relaxed)
    }

    /// `group`'s partition of `__consumer_offsets`, once the topic exists.
    fn partition_index(&self, group: &str) -> Option<i32> {
        let topic = self.offsets_topic.get()?;
        Some(GroupCoordinator::partition_for(
            group,
            topic.partition_count(),
        ))
    }

    /// Whether this broker coordinates `group` now: the error to answer if not. Called under
    /// the state lock, so that a group cannot move away between the check and the change.
    fn check(&self, state: &GroupsState, group: &str) -> Result<(), ResponseError> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(ResponseError::NotCoordinator);
        }
        let index = self
            .partition_index(group)
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        state.coordinated.check(index)
    }

    /// In a cluster: loads the `__consumer_offsets` partitions this broker has come to lead,
    /// and forgets the groups of those it no longer leads. Called after each metadata image.
    pub(crate) fn follow_leadership(&self, broker: &Arc<Broker>) {
        let Some(topic) = broker.topics.get(OFFSETS_TOPIC) else {
            return;
        };
        let topic = Arc::clone(self.offsets_topic.get_or_init(|| topic));
        let mut state = self.lock();
        for partition in topic.partitions() {
            let index = partition.index;
            if partition.leads() {
                if state.coordinated.start_loading(index) {
                    let loader = Arc::clone(broker);
                    let partition = Arc::clone(&partition);
                    tokio::spawn(async move {
                        let loading = Arc::clone(&loader);
                        let _ = loader.io.run(move || loading.groups.load(&partition)).await;
                    });
                }
            } else if state.coordinated.resign(index) {
                self.unload(&mut state, index);
            }
        }
    }

    /// Replays one partition this broker now leads into the coordinators, up to its log end
    /// (a leader never truncates its own log, so all of it will be committed in this leader
    /// epoch or the partition moves away again). Blocks.
    fn load(&self, partition: &Partition) {
        let Some(topic) = self.offsets_topic.get() else {
            return;
        };
        let mut state = self.lock();
        if state.coordinated.check(partition.index) != Err(ResponseError::CoordinatorLoadInProgress)
        {
            return;
        }
        match replay_into(&mut state.classic, topic, partition) {
            Ok(records) => {
                if state.coordinated.finish_loading(partition.index) {
                    tracing::info!(partition = %partition.name(), records, "coordinating the groups of a partition");
                }
            }
            Err(error) => {
                // Left loading: clients retry, and the next leadership change starts over.
                tracing::error!(partition = %partition.name(), %error, "could not load group state");
            }
        }
        self.deadline_changed.notify_one();
    }

    /// Forgets the groups of partition `index`, answering their parked requests. Under the
    /// state lock.
    fn unload(&self, state: &mut GroupsState, index: i32) {
        let Some(count) = self
            .offsets_topic
            .get()
            .map(|topic| topic.partition_count())
        else {
            return;
        };
        let moved = |group: &str| GroupCoordinator::partition_for(group, count) == index;
        let out = state.classic.unload(moved);
        state.consumer.unload(moved);
        tracing::info!(
            partition = index,
            "no longer coordinating the groups of {OFFSETS_TOPIC}-{index}"
        );
        self.dispatch(state, out);
    }

    /// Carries out what the coordinator asked for. Runs under the state lock so that group
    /// metadata records reach the log in the order the coordinator produced them.
    fn dispatch(&self, state: &mut GroupsState, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Join { token, response } => {
                    if let Some(Parked::Join(reply)) = state.parked.remove(&token) {
                        let _ = reply.send(response);
                    }
                }
                Output::Sync { token, response } => {
                    if let Some(Parked::Sync(reply)) = state.parked.remove(&token) {
                        let _ = reply.send(response);
                    }
                }
                Output::Persist { group, records } => {
                    if let Err(error) = self.persist(&group, &records) {
                        tracing::error!(%group, error = ?error.message, "could not write group metadata");
                    }
                }
            }
        }
        self.deadline_changed.notify_one();
    }

    /// Appends records to the group's partition of `__consumer_offsets`. Blocks. Returns the
    /// partition and what the append did, unless there was nothing to write.
    fn persist(
        &self,
        group: &str,
        records: &[(Bytes, Option<Bytes>)],
    ) -> Result<Option<(Arc<Partition>, crate::partition::Appended)>, ApiError> {
        if records.is_empty() {
            return Ok(None);
        }
        let partition = self
            .offsets_topic
            .get()
            .and_then(|topic| {
                topic.partition(GroupCoordinator::partition_for(
                    group,
                    topic.partition_count(),
                ))
            })
            .ok_or(ApiError::code(ResponseError::CoordinatorNotAvailable))?;
        let now = self.now_ms();
        let mut batch = records
            .iter()
            .fold(BatchBuilder::new(now), |batch, (key, value)| {
                batch.record(Some(key), value.as_deref(), &[])
            })
            .build();
        let appended = partition.append(&mut batch, now)?;
        Ok(Some((partition, appended)))
    }

    /// JoinGroup: parks the request with the coordinator until the rebalance answers it.
    pub(crate) async fn join_group(
        &self,
        broker: &Arc<Broker>,
        version: i16,
        client: ClientInfo,
        request: JoinGroupRequest,
    ) -> Result<JoinGroupResponse, ApiError> {
        let answer = broker
            .io
            .run({
                let broker = Arc::clone(broker);
                move || broker.groups.start_join(version, &client, request)
            })
            .await?;
        Ok(answer
            .await
            .unwrap_or_else(|_| join_error(ResponseError::CoordinatorNotAvailable)))
    }

    /// Blocks (it may write group metadata).
    fn start_join(
        &self,
        version: i16,
        client: &ClientInfo,
        request: JoinGroupRequest,
    ) -> oneshot::Receiver<JoinGroupResponse> {
        let (reply, answer) = oneshot::channel();
        let mut state = self.lock();
        if let Err(error) = self.check(&state, &request.group_id) {
            let _ = reply.send(join_error(error));
            return answer;
        }
        if state.consumer.contains(&request.group_id) {
            // The id belongs to a KIP-848 group; a classic member cannot join it.
            let _ = reply.send(join_error(ResponseError::InconsistentGroupProtocol));
            return answer;
        }
        let token = self.token();
        state.parked.insert(token, Parked::Join(reply));
        let mut out = Vec::new();
        state.classic.join_group(
            self.now_ms(),
            token,
            version,
            &client.client_id,
            &client.host,
            Uuid::new_v4(),
            request,
            &mut out,
        );
        self.dispatch(&mut state, out);
        answer
    }

    /// SyncGroup: parks the request until the leader's assignment arrives.
    pub(crate) async fn sync_group(
        &self,
        broker: &Arc<Broker>,
        version: i16,
        request: SyncGroupRequest,
    ) -> Result<SyncGroupResponse, ApiError> {
        let answer = broker
            .io
            .run({
                let broker = Arc::clone(broker);
                move || broker.groups.start_sync(version, request)
            })
            .await?;
        Ok(answer
            .await
            .unwrap_or_else(|_| sync_error(ResponseError::CoordinatorNotAvailable)))
    }

    /// Blocks (it may write group metadata).
    fn start_sync(
        &self,
        version: i16,
        request: SyncGroupRequest,
    ) -> oneshot::Receiver<SyncGroupResponse> {
        let (reply, answer) = oneshot::channel();
        let mut state = self.lock();
        if let Err(error) = self.check(&state, &request.group_id) {
            let _ = reply.send(sync_error(error));
            return answer;
        }
        let token = self.token();
        state.parked.insert(token, Parked::Sync(reply));
        let mut out = Vec::new();
        state
            .classic
            .sync_group(self.now_ms(), token, version, request, &mut out);
        self.dispatch(&mut state, out);
        answer
    }

    pub(crate) fn heartbeat(&self, version: i16, request: HeartbeatRequest) -> HeartbeatResponse {
        let mut state = self.lock();
        if let Err(error) = self.check(&state, &request.group_id) {
            let mut response = HeartbeatResponse::default();
            response.error_code = error.code();
            return response;
        }
        let response = state.classic.heartbeat(self.now_ms(), version, request);
        self.deadline_changed.notify_one();
        response
    }

    pub(crate) fn leave_group(
        &self,
        version: i16,
        request: LeaveGroupRequest,
    ) -> LeaveGroupResponse {
        let mut state = self.lock();
        if let Err(error) = self.check(&state, &request.group_id) {
            let mut response = LeaveGroupResponse::default();
            response.error_code = error.code();
            return response;
        }
        let mut out = Vec::new();
        let response = state
            .classic
            .leave_group(self.now_ms(), version, request, &mut out);
        self.dispatch(&mut state, out);
        response
    }

    /// Validates, writes the commit to `__consumer_offsets`, waits for it to be durable as an
    /// `acks=all` produce would (held by every in-sync replica), then applies it: a commit is acknowledged, and visible to
    /// OffsetFetch, only once it is in the log as durably as the policy promises.
    pub(crate) async fn offset_commit(
        &self,
        broker: &Arc<Broker>,
        version: i16,
        request: OffsetCommitRequest,
    ) -> Result<OffsetCommitResponse, ApiError> {
        let Some(index) = self.partition_index(&request.group_id) else {
            let code = ResponseError::CoordinatorNotAvailable.code();
            return Ok(offset_commit_error(&request, code));
        };
        let order = Arc::clone(
            self.commit_order
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .entry(index)
                .or_default(),
        );
        let _order = order.lock().await;
        let written = broker
            .io
            .run({
                let broker = Arc::clone(broker);
                move || broker.groups.write_offset_commit(version, request)
            })
            .await?;
        let (partition, appended, response, pending) = match written {
            CommitWritten::Done(response) => return Ok(response),
            CommitWritten::AwaitingDurable {
                partition,
                appended,
                response,
                pending,
            } => (partition, appended, response, pending),
        };
        let durable = await_acknowledgeable(
            broker,
            &partition,
            &appended,
            ACKS_ALL,
            OFFSET_COMMIT_TIMEOUT,
        )
        .await;
        match durable {
            Ok(()) => {
                let applier = Arc::clone(broker);
                broker
                    .io
                    .run(move || applier.groups.lock().classic.apply_offset_commit(pending))
                    .await?;
                Ok(response)
            }
            Err(error) => Ok(with_commit_error(response, &error)),
        }
    }

    /// Blocks: validates and appends an offset commit, applying it at once unless an fsync
    /// must come first.
    fn write_offset_commit(&self, version: i16, mut request: OffsetCommitRequest) -> CommitWritten {
        let mut state = self.lock();
        if let Err(error) = self.check(&state, &request.group_id) {
            return CommitWritten::Done(offset_commit_error(&request, error.code()));
        }
        if state.consumer.contains(&request.group_id) {
            // A KIP-848 group: its members are fenced by member epoch, not generation.
            if let Err(code) = state.consumer.validate_offset_commit(
                &request.group_id,
                &request.member_id,
                request.generation_id_or_member_epoch,
            ) {
                return CommitWritten::Done(offset_commit_error(&request, code));
            }
            request.generation_id_or_member_epoch = -1;
            request.member_id = StrBytes::default();
            request.group_instance_id = None;
        }
        let plan = state
            .classic
            .prepare_offset_commit(self.now_ms(), version, request);
        match self.persist(&plan.group, &plan.records) {
            Ok(Some((partition, appended))) if appended.sync_required || partition.leads() => {
                CommitWritten::AwaitingDurable {
                    partition,
                    appended,
                    response: plan.response,
                    pending: plan.pending,
                }
            }
            Ok(_) => {
                state.classic.apply_offset_commit(plan.pending);
                CommitWritten::Done(plan.response)
            }
            Err(error) => CommitWritten::Done(with_commit_error(plan.response, &error)),
        }
    }

    /// Every committed offset of the groups coordinated here, as (group, (topic,
    /// partition), offset).
    pub(crate) fn committed_offsets(&self) -> Vec<(String, (String, i32), i64)> {
        self.lock().classic.all_committed_offsets()
    }

    pub(crate) fn offset_fetch(
        &self,
        version: i16,
        request: OffsetFetchRequest,
    ) -> OffsetFetchResponse {
        let state = self.lock();
        if version < 8 {
            if let Err(error) = self.check(&state, &request.group_id) {
                return offset_fetch_error(&request, error.code());
            }
        }
        let not_here: Vec<(GroupId, i16)> = request
            .groups
            .iter()
            .filter_map(|group| {
                let refused = self.check(&state, &group.group_id).err()?;
                Some((group.group_id.clone(), refused.code()))
            })
            .collect();
        // v9+ names the asking member of a KIP-848 group, which must be current (KIP-848).
        let refused: Vec<(GroupId, i16)> = request
            .groups
            .iter()
            .filter(|group| state.consumer.contains(&group.group_id))
            .filter_map(|group| {
                let member_id = group.member_id.as_deref().unwrap_or_default();
                state
                    .consumer
                    .validate_offset_fetch(&group.group_id, member_id, group.member_epoch)
                    .err()
                    .map(|code| (group.group_id.clone(), code))
            })
            .chain(not_here)
            .collect();
        let mut response = state.classic.offset_fetch(version, request);
        for group in &mut response.groups {
            if let Some((_, code)) = refused.iter().find(|(id, _)| *id == group.group_id) {
                group.error_code = *code;
                group.topics.clear();
            }
        }
        response
    }

    /// TxnOffsetCommit: the offsets go to the group's `__consumer_offsets` partition in the
    /// producer's transaction (AddOffsetsToTxn made it hold that partition; anything else is
    /// refused) and become the group's committed offsets when the transaction commits.
    /// Blocks.
    pub(crate) fn txn_offset_commit(
        &self,
        broker: &Broker,
        version: i16,
        request: TxnOffsetCommitRequest,
    ) -> TxnOffsetCommitResponse {
        let producer_id = request.producer_id.0;
        let epoch = request.producer_epoch;
        let asked: Vec<(TopicName, Vec<i32>)> = request
            .topics
            .iter()
            .map(|topic| {
                let partitions = topic.partitions.iter().map(|p| p.partition_index).collect();
                (topic.name.clone(), partitions)
            })
            .collect();
        let group_id = request.group_id.to_string();
        let partition = self.offsets_topic.get().and_then(|topic| {
            topic.partition(GroupCoordinator::partition_for(
                &group_id,
                topic.partition_count(),
            ))
        });
        let outcome = partition
            .ok_or(ApiError::code(ResponseError::CoordinatorNotAvailable))
            .and_then(|partition| {
                let mut state = self.lock();
                self.check(&state, &group_id).map_err(ApiError::code)?;
                let now = self.now_ms();
                let plan = state
                    .classic
                    .prepare_txn_offset_commit(now, version, request);
                if plan.records.is_empty() {
                    return Ok(plan.response);
                }
                let mut batch = plan
                    .records
                    .iter()
                    .fold(
                        BatchBuilder::new(now)
                            .producer(producer_id, epoch, -1)
                            .transactional(true),
                        |batch, (key, value)| batch.record(Some(key), value.as_deref(), &[]),
                    )
                    .build();
                let appended = partition.append_from_coordinator(&mut batch, now)?;
                // Not under the lock: the other groups go on while the replicas copy.
                drop(state);
                await_replicated_blocking(broker, &partition, &appended, OFFSET_COMMIT_TIMEOUT)?;
                self.lock()
                    .classic
                    .stage_transactional_offsets(producer_id, plan.pending);
                Ok(plan.response)
            });
        outcome.unwrap_or_else(|error| {
            let mut response = TxnOffsetCommitResponse::default();
            response.topics = asked
                .into_iter()
                .map(|(name, partitions)| {
                    let mut topic = txn_offset_commit_response::TxnOffsetCommitResponseTopic::default();
                    topic.name = name;
                    topic.partitions = partitions
                        .into_iter()
                        .map(|index| {
                            let mut partition =
                                txn_offset_commit_response::TxnOffsetCommitResponsePartition::default();
                            partition.partition_index = index;
                            partition.error_code = error.error_code();
                            partition
                        })
                        .collect();
                    topic
                })
                .collect();
            response
        })
    }

    /// The marker of `producer_id`'s transaction is in `__consumer_offsets`: its offsets are
    /// now committed, or dropped. Blocks.
    pub(crate) fn complete_transaction(&self, producer_id: i64, commit: bool) {
        self.lock()
            .classic
            .complete_transaction(producer_id, commit);
    }

    pub(crate) fn offset_delete(&self, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
        let mut state = self.lock();
        if let Err(error) = self.check(&state, &request.group_id) {
            let mut response = OffsetDeleteResponse::default();
            response.error_code = error.code();
            return response;
        }
        let mut out = Vec::new();
        let response = state.classic.offset_delete(request, &mut out);
        self.dispatch(&mut state, out);
        response
    }

    /// Topics deleted from the cluster: the groups coordinated here forget their committed
    /// offsets on them, through the tombstones OffsetDelete writes too, so that neither a
    /// restart nor the next coordinator of a group replays them back. Groups coordinated
    /// elsewhere are their coordinator's to clear, as it applies the same metadata image; the
    /// tombstones reach this broker's followers of `__consumer_offsets` as any record does.
    /// Blocks.
    pub(crate) fn remove_offsets_of_topics(&self, topics: &[Arc<str>]) {
        if topics.is_empty() {
            return;
        }
        let mut state = self.lock();
        let mut out = Vec::new();
        for topic in topics {
            state.classic.remove_offsets_of_topic(topic, &mut out);
        }
        self.dispatch(&mut state, out);
    }

    pub(crate) fn list_groups(
        &self,
        version: i16,
        request: ListGroupsRequest,
    ) -> ListGroupsResponse {
        let state = self.lock();
        let states: Vec<String> = request
            .states_filter
            .iter()
            .map(|s| s.to_string())
            .collect();
        let types: Vec<String> = request
            .types_filter
            .iter()
            .map(|s| s.to_lowercase())
            .collect();
        let consumer_groups = state.consumer.list();
        let mut response = state.classic.list_groups(version, request);
        response.groups.retain(|group| {
            !consumer_groups
                .iter()
                .any(|(id, _)| id.as_str() == group.group_id.as_str())
        });
        for (group_id, group_state) in consumer_groups {
            let state_ok =
                states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(group_state));
            let type_ok = types.is_empty() || types.iter().any(|t| t == "consumer");
            if !(state_ok && type_ok) {
                continue;
            }
            let mut listed = list_groups_response::ListedGroup::default();
            listed.group_id = GroupId(StrBytes::from_string(group_id));
            listed.protocol_type = StrBytes::from_static_str("consumer");
            if version >= 4 {
                listed.group_state = StrBytes::from_static_str(group_state);
            }
            if version >= 5 {
                listed.group_type = StrBytes::from_static_str("consumer");
            }
            response.groups.push(listed);
        }
        response
    }

    pub(crate) fn describe_groups(
        &self,
        version: i16,
        request: DescribeGroupsRequest,
    ) -> DescribeGroupsResponse {
        let state = self.lock();
        let mut response = state.classic.describe_groups(version, request);
        // A KIP-848 group is described by ConsumerGroupDescribe; here it is "not a classic
        // group", as Kafka answers.
        for group in &mut response.groups {
            if let Err(error) = self.check(&state, &group.group_id) {
                let mut answer = describe_groups_response::DescribedGroup::default();
                answer.group_id = group.group_id.clone();
                answer.error_code = error.code();
                answer.authorized_operations = group.authorized_operations;
                *group = answer;
            } else if state.consumer.contains(&group.group_id) {
                let mut answer = describe_groups_response::DescribedGroup::default();
                answer.group_id = group.group_id.clone();
                answer.error_code = ResponseError::GroupIdNotFound.code();
                if version >= 6 {
                    answer.error_message = Some(StrBytes::from_string(format!(
                        "Group {} is not a classic group.",
                        group.group_id.as_str()
                    )));
                }
                answer.group_state = StrBytes::from_static_str("Dead");
                answer.authorized_operations = group.authorized_operations;
                *group = answer;
            }
        }
        response
    }

    pub(crate) fn delete_groups(
        &self,
        version: i16,
        request: DeleteGroupsRequest,
    ) -> DeleteGroupsResponse {
        let mut state = self.lock();
        let mut consumer_results = Vec::new();
        let mut classic_names = Vec::new();
        let mut elsewhere = Vec::new();
        for group in request.groups_names {
            if let Err(error) = self.check(&state, &group) {
                elsewhere.push((group, error.code()));
            } else if state.consumer.contains(&group) {
                let code = state.consumer.delete(&group).err().unwrap_or(0);
                consumer_results.push((group.clone(), code));
                if code == 0 {
                    // Its committed offsets live with the classic coordinator.
                    classic_names.push(group);
                }
            } else {
                classic_names.push(group);
            }
        }
        let mut out = Vec::new();
        let mut response = state.classic.delete_groups(
            version,
            DeleteGroupsRequest::default().with_groups_names(classic_names),
            &mut out,
        );
        self.dispatch(&mut state, out);
        for (group, code) in elsewhere {
            let mut result = delete_groups_response::DeletableGroupResult::default();
            result.group_id = group;
            result.error_code = code;
            response.results.push(result);
        }
        for (group, code) in consumer_results {
            match response.results.iter_mut().find(|r| r.group_id == group) {
                Some(result) => {
                    // Deleting a KIP-848 group whose offsets were never committed is fine.
                    if code != 0 || result.error_code == ResponseError::GroupIdNotFound.code() {
                        result.error_code = code;
                    }
                }
                None => {
                    let mut result = delete_groups_response::DeletableGroupResult::default();
                    result.group_id = group;
                    result.error_code = code;
                    response.results.push(result);
                }
            }
        }
        response
    }

    pub(crate) fn consumer_group_heartbeat(
        &self,
        topics: &TopicRegistry,
        client: &ClientInfo,
        version: i16,
        request: ConsumerGroupHeartbeatRequest,
    ) -> ConsumerGroupHeartbeatResponse {
        let mut state = self.lock();
        if let Err(error) = self.check(&state, &request.group_id) {
            let mut response = ConsumerGroupHeartbeatResponse::default();
            response.error_code = error.code();
            return response;
        }
        let classic_state = state.classic.group_state(&request.group_id);
        if classic_state.is_some_and(|s| !matches!(s, ClassicState::Empty | ClassicState::Dead)) {
            // Kafka converts only an empty classic group; a live one keeps its protocol.
            let mut response = ConsumerGroupHeartbeatResponse::default();
            response.error_code = ResponseError::GroupIdNotFound.code();
            response.error_message = Some(StrBytes::from_string(format!(
                "Group {} is not a consumer group.",
                request.group_id.as_str()
            )));
            return response;
        }
        let client_info = runnel_group::consumer::ClientInfo {
            client_id: &client.client_id,
            client_host: &client.host,
        };
        let response = state.consumer.heartbeat_with_client(
            self.now_ms(),
            version,
            Uuid::new_v4(),
            request,
            &RegistryView(topics),
            client_info,
        );
        self.deadline_changed.notify_one();
        response
    }

    pub(crate) fn consumer_group_describe(
        &self,
        topics: &TopicRegistry,
        version: i16,
        request: ConsumerGroupDescribeRequest,
    ) -> ConsumerGroupDescribeResponse {
        let state = self.lock();
        let elsewhere: Vec<(String, i16)> = request
            .group_ids
            .iter()
            .filter_map(|group| {
                let refused = self.check(&state, group).err()?;
                Some((group.to_string(), refused.code()))
            })
            .collect();
        let mut response = state
            .consumer
            .describe(version, request, &RegistryView(topics));
        for group in &mut response.groups {
            if let Some((_, code)) = elsewhere
                .iter()
                .find(|(id, _)| id == group.group_id.as_str())
            {
                let mut answer = consumer_group_describe_response::DescribedGroup::default();
                answer.group_id = group.group_id.clone();
                answer.error_code = *code;
                *group = answer;
            }
        }
        response
    }

    /// How long until the coordinators next need a tick. Topic changes are not pushed to the
    /// KIP-848 coordinator, so it is ticked at least every `IDLE_TICK` even without a deadline.
    pub(crate) fn next_wait(&self) -> Duration {
        const IDLE_TICK: Duration = Duration::from_millis(500);
        let state = self.lock();
        let next = [
            state.classic.next_deadline_ms(),
            state.consumer.next_deadline_ms(),
        ]
        .into_iter()
        .flatten()
        .min();
        match next {
            Some(deadline) => {
                let millis = (deadline - self.now_ms()).clamp(0, IDLE_TICK.as_millis() as i64);
                Duration::from_millis(millis as u64)
            }
            None => IDLE_TICK,
        }
    }

    /// Completes when a request may have moved the next deadline earlier.
    pub(crate) async fn deadline_changed(&self) {
        self.deadline_changed.notified().await;
    }

    /// Session expiry, rebalance and initial-delay timeouts, offset expiry, KIP-848
    /// reassignment after topic changes.
    pub(crate) fn tick(&self, topics: &TopicRegistry) {
        let mut state = self.lock();
        let now = self.now_ms();
        let mut out = Vec::new();
        state.classic.tick(now, &mut out);
        state.consumer.tick(now, &RegistryView(topics));
        self.dispatch(&mut state, out);
    }
}

fn join_error(error: ResponseError) -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default();
    response.error_code = error.code();
    response
}

fn sync_error(error: ResponseError) -> SyncGroupResponse {
    let mut response = SyncGroupResponse::default();
    response.error_code = error.code();
    response
}

/// Marks every partition a commit accepted with the error that kept it from being written.
fn with_commit_error(mut response: OffsetCommitResponse, error: &ApiError) -> OffsetCommitResponse {
    for topic in &mut response.topics {
        for partition in &mut topic.partitions {
            if partition.error_code == 0 {
                partition.error_code = error.error_code();
            }
        }
    }
    response
}

fn offset_commit_error(request: &OffsetCommitRequest, code: i16) -> OffsetCommitResponse {
    let mut response = OffsetCommitResponse::default();
    response.topics = request
        .topics
        .iter()
        .map(|topic| {
            let mut answer = offset_commit_response::OffsetCommitResponseTopic::default();
            answer.name = topic.name.clone();
            answer.topic_id = topic.topic_id;
            answer.partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let mut partition =
                        offset_commit_response::OffsetCommitResponsePartition::default();
                    partition.partition_index = p.partition_index;
                    partition.error_code = code;
                    partition
                })
                .collect();
            answer
        })
        .collect();
    response
}

fn offset_fetch_error(request: &OffsetFetchRequest, code: i16) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    response.error_code = code;
    // Before v2 the error travels with each partition asked for.
    response.topics = request
        .topics
        .iter()
        .flatten()
        .map(|topic| {
            let mut answer = offset_fetch_response::OffsetFetchResponseTopic::default();
            answer.name = topic.name.clone();
            answer.partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    let mut partition =
                        offset_fetch_response::OffsetFetchResponsePartition::default();
                    partition.partition_index = index;
                    partition.committed_offset = -1;
                    partition.error_code = code;
                    partition
                })
                .collect();
            answer
        })
        .collect();
    response
}

/// Replays one partition of `__consumer_offsets` into the classic coordinator, which keeps
/// every group's committed offsets. Returns how many records were read. Blocks.
fn replay_into(
    classic: &mut GroupCoordinator,
    topic: &Topic,
    partition: &Partition,
) -> Result<usize, StorageError> {
    internal_topics::replay_partition(topic, partition, |replayed| {
        let read = match replayed {
            Replayed::Record {
                key,
                value,
                transaction: None,
            } => classic.replay(key, value),
            Replayed::Record {
                key,
                value,
                transaction: Some(producer_id),
            } => classic.replay_transactional(producer_id, key, value),
            Replayed::Marker {
                producer_id,
                commit,
            } => {
                classic.complete_transaction(producer_id, commit);
                Ok(())
            }
        };
        read.map_err(|error| error.to_string())
    })
}
