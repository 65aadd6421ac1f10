//! Committed offsets: OffsetCommit (in two phases, so nothing is acknowledged before it is
//! written), OffsetFetch (one group before v8, batched groups from v8), OffsetDelete, the
//! removal of a deleted topic's offsets from every group, and the committed positions the
//! broker reports for lag.
//!
//! A commit is checked against the group as Kafka checks it: generation -1 commits are for
//! groups that only store offsets (simple consumers, `assign()`), everything else must come from
//! a current member of the current generation. Expiry lives with the other timers in
//! `classic.rs`; what expires when is the group's business (`group.rs`).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use bytes::Bytes;

use crate::classic::code;
use crate::group::{CommittedOffset, Group, GroupState};
use crate::records::{self, OffsetCommitValue, RecordKey};
use crate::{GroupCoordinator, Output};

/// Offsets validated and encoded, waiting for their records to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCommit {
    group: String,
    offsets: Vec<((String, i32), CommittedOffset)>,
}

impl PendingCommit {
    pub(crate) fn new(group: String, offsets: Vec<((String, i32), CommittedOffset)>) -> Self {
        PendingCommit { group, offsets }
    }

    /// Whether there is anything to apply.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    pub(crate) fn group(&self) -> &str {
        &self.group
    }

    pub(crate) fn offsets(&self) -> impl Iterator<Item = &((String, i32), CommittedOffset)> {
        self.offsets.iter()
    }
}

/// What `prepare_offset_commit` decided: the answer to send once `records` are written, and
/// the change to apply then.
#[derive(Debug, Clone)]
pub struct OffsetCommitPlan {
    pub response: OffsetCommitResponse,
    /// Offset commit records for the group's __consumer_offsets partition; empty when every
    /// partition was refused.
    pub records: Vec<(Bytes, Option<Bytes>)>,
    pub pending: PendingCommit,
    pub group: String,
}

impl GroupCoordinator {
    /// Validates (group exists or is created as an empty "simple" group for generation -1
    /// commits, generation/member fencing, metadata size), builds the response and the records
    /// to write. The shell appends `plan.records` then calls `apply_offset_commit(plan.pending)`;
    /// on a write failure it drops `pending` and answers every partition with its own error
    /// instead.
    pub fn prepare_offset_commit(
        &mut self,
        now_ms: i64,
        version: i16,
        request: OffsetCommitRequest,
    ) -> OffsetCommitPlan {
        self.prepare_commit(now_ms, version, request, true)
    }

    /// [`Self::prepare_offset_commit`]; `check_member` false skips the member and
    /// generation checks (a transactional commit that names no member, as before KIP-447).
    pub(crate) fn prepare_commit(
        &mut self,
        now_ms: i64,
        version: i16,
        request: OffsetCommitRequest,
        check_member: bool,
    ) -> OffsetCommitPlan {
        self.reset_sessions(now_ms);
        let group_id = request.group_id.0.to_string();
        let group_error = match self.groups.get_mut(&group_id) {
            Some(group) if check_member => group.check_commit(now_ms, version, &request),
            Some(group) if group.state == GroupState::Dead => {
                Some(ResponseError::CoordinatorNotAvailable)
            }
            Some(_) => None,
            // Kafka creates the group only for commits that do not claim a generation.
            None if request.generation_id_or_member_epoch < 0 || !check_member => None,
            None => Some(ResponseError::IllegalGeneration),
        };
        self.refresh(&group_id);

        let mut response = OffsetCommitResponse::default();
        let mut records = Vec::new();
        let mut offsets = Vec::new();
        for topic in request.topics {
            let mut topic_response = OffsetCommitResponseTopic::default();
            if version <= 9 {
                topic_response.name = topic.name.clone();
            }
            for partition in topic.partitions {
                let metadata = partition
                    .committed_metadata
                    .map(|m| m.to_string())
                    .unwrap_or_default();
                let error = group_error.or_else(|| {
                    (metadata.encode_utf16().count() > self.config.offset_metadata_max_bytes)
                        .then_some(ResponseError::OffsetMetadataTooLarge)
                });
                if error.is_none() {
                    let committed = CommittedOffset {
                        offset: partition.committed_offset,
                        leader_epoch: if version >= 6 {
                            partition.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata,
                        commit_timestamp_ms: now_ms,
                    };
                    records.push(offset_record(
                        &group_id,
                        &topic.name.0,
                        partition.partition_index,
                        &committed,
                    ));
                    offsets.push((
                        (topic.name.0.to_string(), partition.partition_index),
                        committed,
                    ));
                }
                let mut partition_response = OffsetCommitResponsePartition::default();
                partition_response.partition_index = partition.partition_index;
                partition_response.error_code = code(error);
                topic_response.partitions.push(partition_response);
            }
            response.topics.push(topic_response);
        }
        OffsetCommitPlan {
            response,
            records,
            pending: PendingCommit {
                group: group_id.clone(),
                offsets,
            },
            group: group_id,
        }
    }

    /// Installs offsets whose records were written. Creates the group if it is gone (a simple
    /// group, or one removed while the write was in flight): the log holds the offsets now, so
    /// memory must too.
    pub fn apply_offset_commit(&mut self, pending: PendingCommit) {
        if pending.offsets.is_empty() {
            return;
        }
        let group_id = pending.group;
        let group = self
            .groups
            .entry(group_id.clone())
            .or_insert_with(|| Group::new(group_id.clone()));
        for (key, committed) in pending.offsets {
            group.offsets.insert(key, committed);
        }
        self.refresh(&group_id);
    }

    /// OffsetFetch: single group (v<8) and batched groups (v8+); topics None = all committed.
    /// Unknown groups and partitions answer offset -1 without error.
    pub fn offset_fetch(&self, version: i16, request: OffsetFetchRequest) -> OffsetFetchResponse {
        let mut response = OffsetFetchResponse::default();
        if version < 8 {
            let requested = request.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|t| (t.name, t.partition_indexes))
                    .collect::<Vec<_>>()
            });
            let group_id = request.group_id.0.to_string();
            let stable = request.require_stable;
            response.topics = self
                .fetch_group(&group_id, requested)
                .into_iter()
                .map(|(name, partitions)| {
                    let mut topic = OffsetFetchResponseTopic::default();
                    topic.partitions = partitions
                        .into_iter()
                        .map(|(index, committed)| {
                            let mut partition = OffsetFetchResponsePartition::default();
                            partition.partition_index = index;
                            if stable && self.has_unstable_offset(&group_id, &name, index) {
                                partition.error_code = ResponseError::UnstableOffsetCommit.code();
                                partition.committed_offset = -1;
                                return partition;
                            }
                            partition.committed_offset = committed.offset;
                            if version >= 5 {
                                partition.committed_leader_epoch = committed.leader_epoch;
                            }
                            partition.metadata = Some(StrBytes::from_string(committed.metadata));
                            partition
                        })
                        .collect();
                    topic.name = name;
                    topic
                })
                .collect();
            return response;
        }
        response.groups = request
            .groups
            .into_iter()
            .map(|group_request| {
                let requested = group_request.topics.map(|topics| {
                    topics
                        .into_iter()
                        .map(|t| (t.name, t.partition_indexes))
                        .collect::<Vec<_>>()
                });
                let mut group = OffsetFetchResponseGroup::default();
                let group_id = group_request.group_id.0.to_string();
                group.topics = self
                    .fetch_group(&group_id, requested)
                    .into_iter()
                    .map(|(name, partitions)| {
                        let mut topic = OffsetFetchResponseTopics::default();
                        topic.partitions = partitions
                            .into_iter()
                            .map(|(index, committed)| {
                                let mut partition = OffsetFetchResponsePartitions::default();
                                partition.partition_index = index;
                                if request.require_stable
                                    && self.has_unstable_offset(&group_id, &name, index)
                                {
                                    partition.error_code =
                                        ResponseError::UnstableOffsetCommit.code();
                                    partition.committed_offset = -1;
                                    return partition;
                                }
                                partition.committed_offset = committed.offset;
                                partition.committed_leader_epoch = committed.leader_epoch;
                                partition.metadata =
                                    Some(StrBytes::from_string(committed.metadata));
                                partition
                            })
                            .collect();
                        if version <= 9 {
                            topic.name = name;
                        }
                        topic
                    })
                    .collect();
                group.group_id = group_request.group_id;
                group
            })
            .collect();
        response
    }

    /// The committed offsets of one group, per topic: the requested partitions (-1 where none
    /// is committed), or every committed one.
    fn fetch_group(
        &self,
        group_id: &str,
        requested: Option<Vec<(TopicName, Vec<i32>)>>,
    ) -> Vec<(TopicName, Vec<(i32, CommittedOffset)>)> {
        let group = self.groups.get(group_id);
        let unknown = CommittedOffset {
            offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: -1,
        };
        match requested {
            Some(topics) => topics
                .into_iter()
                .map(|(name, partitions)| {
                    let partitions = partitions
                        .into_iter()
                        .map(|index| {
                            let committed = group
                                .and_then(|g| g.offsets.get(&(name.0.to_string(), index)))
                                .cloned()
                                .unwrap_or_else(|| unknown.clone());
                            (index, committed)
                        })
                        .collect();
                    (name, partitions)
                })
                .collect(),
            None => {
                let mut topics: Vec<(TopicName, Vec<(i32, CommittedOffset)>)> = Vec::new();
                for ((topic, index), committed) in group.iter().flat_map(|g| g.offsets.iter()) {
                    match topics.last_mut() {
                        Some((name, partitions)) if name.0.as_str() == topic => {
                            partitions.push((*index, committed.clone()));
                        }
                        _ => topics.push((
                            TopicName(StrBytes::from_string(topic.clone())),
                            vec![(*index, committed.clone())],
                        )),
                    }
                }
                topics
            }
        }
    }

    /// OffsetDelete: an Empty group's offsets can all go; a live consumer group's only for
    /// topics none of its members subscribes to (GROUP_SUBSCRIBED_TO_TOPIC otherwise).
    pub fn offset_delete(
        &mut self,
        request: OffsetDeleteRequest,
        out: &mut Vec<Output>,
    ) -> OffsetDeleteResponse {
        let group_id = request.group_id.0.to_string();
        let mut response = OffsetDeleteResponse::default();
        let Some(group) = self.groups.get_mut(&group_id) else {
            response.error_code = ResponseError::GroupIdNotFound.code();
            return response;
        };
        let subscribed = match group.state {
            GroupState::Empty => Some(Vec::new()),
            GroupState::Dead => {
                response.error_code = ResponseError::GroupIdNotFound.code();
                return response;
            }
            _ if group.protocol_type.as_deref() == Some("consumer") => group.subscribed_topics(),
            _ => {
                response.error_code = ResponseError::NonEmptyGroup.code();
                return response;
            }
        };
        let mut records = Vec::new();
        for topic in request.topics {
            let name = topic.name.0.to_string();
            // Unknown subscriptions count as subscribed to everything: never delete under a
            // live consumer.
            let in_use = subscribed
                .as_ref()
                .is_none_or(|topics| topics.contains(&name));
            let mut topic_response = OffsetDeleteResponseTopic::default();
            topic_response.name = topic.name;
            for partition in topic.partitions {
                let index = partition.partition_index;
                let mut partition_response = OffsetDeleteResponsePartition::default();
                partition_response.partition_index = index;
                if in_use {
                    partition_response.error_code = ResponseError::GroupSubscribedToTopic.code();
                } else if group.offsets.remove(&(name.clone(), index)).is_some() {
                    let key = RecordKey::OffsetCommit {
                        group: group_id.clone(),
                        topic: name.clone(),
                        partition: index,
                    };
                    records.push((records::encode_key(&key), None));
                }
                topic_response.partitions.push(partition_response);
            }
            response.topics.push(topic_response);
        }
        if !records.is_empty() {
            out.push(Output::Persist {
                group: group_id.clone(),
                records,
            });
        }
        self.refresh(&group_id);
        response
    }

    /// `topic` was deleted from the cluster: every group forgets its committed offsets on it,
    /// with a tombstone for each in the group's `__consumer_offsets` partition, as Kafka's
    /// `onPartitionsDeleted` writes them. Without the tombstones a replay (a restart, or the
    /// broker that coordinates the group next) would bring the offsets back, and a topic
    /// created again under the name would be read from them instead of from its reset point.
    /// Every partition of the name goes, also any committed beyond the topic's partition count
    /// (commits are not checked against the metadata), which a topic created again with more
    /// partitions would otherwise inherit.
    ///
    /// Groups are left as they are otherwise, members and all: one left with neither offsets
    /// nor members goes at the next `tick`, as after OffsetDelete and as Kafka's offset-expiry
    /// pass removes it. Offsets held aside in open transactions are not touched (Kafka drops
    /// those too): replaying a tombstone here leaves them, and what the coordinator holds must
    /// stay what replaying its log rebuilds.
    pub fn remove_offsets_of_topic(&mut self, topic: &str, out: &mut Vec<Output>) {
        let holding: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, group)| group.offsets.keys().any(|(name, _)| name == topic))
            .map(|(id, _)| id.clone())
            .collect();
        for group_id in holding {
            let Some(group) = self.groups.get_mut(&group_id) else {
                continue;
            };
            let partitions: Vec<i32> = group
                .offsets
                .keys()
                .filter(|(name, _)| name == topic)
                .map(|(_, partition)| *partition)
                .collect();
            let records = partitions
                .into_iter()
                .map(|partition| {
                    group.offsets.remove(&(topic.to_owned(), partition));
                    let key = RecordKey::OffsetCommit {
                        group: group_id.clone(),
                        topic: topic.to_owned(),
                        partition,
                    };
                    (records::encode_key(&key), None)
                })
                .collect();
            out.push(Output::Persist {
                group: group_id.clone(),
                records,
            });
            self.refresh(&group_id);
        }
    }

    /// Every group's committed offsets, as (group, (topic, partition), offset): what lag
    /// metrics are computed from.
    pub fn all_committed_offsets(&self) -> Vec<(String, (String, i32), i64)> {
        self.groups
            .iter()
            .flat_map(|(group, g)| {
                g.offsets
                    .iter()
                    .map(move |(key, committed)| (group.clone(), key.clone(), committed.offset))
            })
            .collect()
    }

    /// Committed offsets of a group, for lag reporting: (topic, partition) -> (offset,
    /// leader_epoch, metadata).
    pub fn committed_offsets(&self, group: &str) -> Vec<((String, i32), CommittedOffset)> {
        self.groups
            .get(group)
            .map(|g| {
                g.offsets
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Group {
    /// Kafka's commit checks, in its order. On success a member's commit also counts as a
    /// sign of life.
    fn check_commit(
        &mut self,
        now_ms: i64,
        version: i16,
        request: &OffsetCommitRequest,
    ) -> Option<ResponseError> {
        let member_id = request.member_id.as_str();
        let instance = request
            .group_instance_id
            .as_ref()
            .filter(|_| version >= 7)
            .map(|id| id.as_str());
        let generation = request.generation_id_or_member_epoch;
        if self.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        if self.is_static_member_fenced(member_id, instance) {
            return Some(ResponseError::FencedInstanceId);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return None;
        }
        if !self.has_member(member_id) {
            return Some(ResponseError::UnknownMemberId);
        }
        if generation != self.generation_id {
            return Some(ResponseError::IllegalGeneration);
        }
        match self.state {
            // A member with the new generation has not synced yet: its assignment may change.
            GroupState::CompletingRebalance => Some(ResponseError::RebalanceInProgress),
            // During PreparingRebalance commits are still taken (the heartbeat tells the member
            // to rejoin), so a member can commit what it consumed before giving partitions up.
            _ => {
                if let Some(member) = self.member_mut(member_id) {
                    member.session_deadline_ms =
                        now_ms.saturating_add(i64::from(member.session_timeout_ms));
                }
                None
            }
        }
    }
}

fn offset_record(
    group: &str,
    topic: &str,
    partition: i32,
    committed: &CommittedOffset,
) -> (Bytes, Option<Bytes>) {
    let key = RecordKey::OffsetCommit {
        group: group.to_owned(),
        topic: topic.to_owned(),
        partition,
    };
    let value = OffsetCommitValue {
        offset: committed.offset,
        leader_epoch: committed.leader_epoch,
        metadata: committed.metadata.clone(),
        commit_timestamp_ms: committed.commit_timestamp_ms,
        expire_timestamp_ms: None,
    };
    (
        records::encode_key(&key),
        Some(records::encode_offset_value(&value)),
    )
}
