//! Consumer groups on this broker: the I/O shell around the sans-IO coordinators of
//! `runnel-group`. It owns the internal `__consumer_offsets` topic (creation, replay at start,
//! appends), parks JoinGroup/SyncGroup requests until the coordinator answers them, and runs
//! the coordinators' timers.
//!
//! Classic groups (JoinGroup/SyncGroup) live in `GroupCoordinator`, KIP-848 groups
//! (ConsumerGroupHeartbeat) in `ConsumerGroups`; committed offsets of both are kept by the
//! former and written to the group's partition of `__consumer_offsets` before any commit is
//! acknowledged. On a single node this broker coordinates every group; the partition a group
//! maps to is already Kafka's, so in a cluster the coordinator becomes that partition's leader.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
use crate::error::ApiError;
use crate::internal_topics::{self, Replayed};
use crate::partition::Partition;
use crate::topics::{Topic, TopicRegistry};

pub(crate) const OFFSETS_TOPIC: &str = "__consumer_offsets";

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
}

/// What writing an offset commit left to do.
enum CommitWritten {
    /// Answered: applied, or refused.
    Done(OffsetCommitResponse),
    /// Written; the flush policy wants an fsync before it is applied and acknowledged.
    AwaitingSync {
        partition: Arc<Partition>,
        end_offset: i64,
        response: OffsetCommitResponse,
        pending: PendingCommit,
    },
}

pub(crate) struct GroupService {
    state: Mutex<GroupsState>,
    next_token: AtomicU64,
    /// Poked when a call may have moved the coordinators' next deadline earlier.
    deadline_changed: Notify,
    offsets_topic: Arc<Topic>,
    clock: Arc<dyn Clock>,
    /// One per `__consumer_offsets` partition: the commits of its groups are written, fsynced
    /// (when the flush policy asks) and applied in one order, the log's.
    commit_order: Vec<tokio::sync::Mutex<()>>,
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
    /// Creates `__consumer_offsets` on first start and replays it into the coordinators.
    pub(crate) fn open(
        topics: &TopicRegistry,
        config: &BrokerConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StorageError> {
        let offsets_topic = internal_topics::open(
            topics,
            OFFSETS_TOPIC,
            config.offsets_topic_num_partitions,
            config.offsets_topic_segment_bytes,
            clock.now_ms(),
        )?;
        let mut classic = GroupCoordinator::new(GroupConfig {
            group_min_session_timeout_ms: config.group_min_session_timeout_ms,
            group_max_session_timeout_ms: config.group_max_session_timeout_ms,
            group_initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            group_max_size: config.group_max_size,
            offsets_retention_ms: config.offsets_retention_minutes.saturating_mul(60_000),
            ..GroupConfig::default()
        });
        let replayed = internal_topics::replay(&offsets_topic, |replayed| {
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
        })?;
        tracing::info!(
            records = replayed,
            partitions = offsets_topic.partition_count(),
            "replayed {OFFSETS_TOPIC}"
        );
        let consumer = ConsumerGroups::new(ConsumerGroupConfig {
            session_timeout_ms: config.group_consumer_session_timeout_ms,
            heartbeat_interval_ms: config.group_consumer_heartbeat_interval_ms,
            max_size: config.group_consumer_max_size,
            ..ConsumerGroupConfig::default()
        });
        let commit_order = (0..offsets_topic.partition_count())
            .map(|_| tokio::sync::Mutex::new(()))
            .collect();
        Ok(GroupService {
            state: Mutex::new(GroupsState {
                classic,
                consumer,
                parked: HashMap::new(),
            }),
            next_token: AtomicU64::new(1),
            deadline_changed: Notify::new(),
            offsets_topic,
            clock,
            commit_order,
            stopping: AtomicBool::new(false),
        })
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
        let partitions = self.offsets_topic.partition_count();
        let index = GroupCoordinator::partition_for(group, partitions);
        let partition = self
            .offsets_topic
            .partition(index)
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
        if self.stopping.load(Ordering::Acquire) {
            let _ = reply.send(join_error(ResponseError::NotCoordinator));
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
        if self.stopping.load(Ordering::Acquire) {
            let _ = reply.send(sync_error(ResponseError::NotCoordinator));
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
        let mut out = Vec::new();
        let response = state
            .classic
            .leave_group(self.now_ms(), version, request, &mut out);
        self.dispatch(&mut state, out);
        response
    }

    /// Validates, writes the commit to `__consumer_offsets`, fsyncs it when the flush policy
    /// asks (as for a produce), then applies it: a commit is acknowledged, and visible to
    /// OffsetFetch, only once it is in the log as durably as the policy promises.
    pub(crate) async fn offset_commit(
        &self,
        broker: &Arc<Broker>,
        version: i16,
        request: OffsetCommitRequest,
    ) -> Result<OffsetCommitResponse, ApiError> {
        let index = GroupCoordinator::partition_for(
            &request.group_id,
            self.offsets_topic.partition_count(),
        );
        let _order = match usize::try_from(index)
            .ok()
            .and_then(|index| self.commit_order.get(index))
        {
            Some(order) => order.lock().await,
            None => return Err(ApiError::code(ResponseError::CoordinatorNotAvailable)),
        };
        let written = broker
            .io
            .run({
                let broker = Arc::clone(broker);
                move || broker.groups.write_offset_commit(version, request)
            })
            .await?;
        let (partition, end_offset, response, pending) = match written {
            CommitWritten::Done(response) => return Ok(response),
            CommitWritten::AwaitingSync {
                partition,
                end_offset,
                response,
                pending,
            } => (partition, end_offset, response, pending),
        };
        match partition.sync_to(&broker.io, end_offset).await {
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
            Ok(Some((partition, appended))) if appended.sync_required => {
                CommitWritten::AwaitingSync {
                    partition,
                    end_offset: appended.info.last_offset + 1,
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

    pub(crate) fn offset_fetch(
        &self,
        version: i16,
        request: OffsetFetchRequest,
    ) -> OffsetFetchResponse {
        let state = self.lock();
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
        let index = GroupCoordinator::partition_for(
            &request.group_id,
            self.offsets_topic.partition_count(),
        );
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
        let outcome = match self.offsets_topic.partition(index) {
            None => Err(ApiError::code(ResponseError::CoordinatorNotAvailable)),
            Some(partition) => {
                broker
                    .transactions
                    .append_transactional(&partition, producer_id, epoch, || {
                        let mut state = self.lock();
                        let now = self.now_ms();
                        let plan = state
                            .classic
                            .prepare_txn_offset_commit(now, version, request);
                        if !plan.records.is_empty() {
                            let mut batch = plan
                                .records
                                .iter()
                                .fold(
                                    BatchBuilder::new(now)
                                        .producer(producer_id, epoch, -1)
                                        .transactional(true),
                                    |batch, (key, value)| {
                                        batch.record(Some(key), value.as_deref(), &[])
                                    },
                                )
                                .build();
                            let appended = partition.append_from_coordinator(&mut batch, now)?;
                            if appended.sync_required {
                                partition.sync_to_blocking(appended.info.last_offset + 1)?;
                            }
                            state
                                .classic
                                .stage_transactional_offsets(producer_id, plan.pending);
                        }
                        Ok(plan.response)
                    })
            }
        };
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
        let mut out = Vec::new();
        let response = state.classic.offset_delete(request, &mut out);
        self.dispatch(&mut state, out);
        response
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
            if state.consumer.contains(&group.group_id) {
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
        for group in request.groups_names {
            if state.consumer.contains(&group) {
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
        self.lock()
            .consumer
            .describe(version, request, &RegistryView(topics))
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
