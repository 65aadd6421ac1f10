//! The coordinators, as state machines: the classic consumer-group coordinator and the groups'
//! committed offsets here, KIP-848 groups in [`consumer`], transaction coordinators in
//! [`transactions`].
//!
//! This crate owns what Kafka's classic `GroupCoordinator` owns: group states (Empty,
//! PreparingRebalance, CompletingRebalance, Stable, Dead), member ids, generations and their
//! fencing, the protocol vote, session and rebalance timeouts, the initial rebalance delay,
//! static membership, committed offsets and their expiry, and the byte format of the
//! `__consumer_offsets` records that make all of it durable ([`records`]).
//!
//! It performs no I/O and reads no clock and no randomness: time (`now_ms`) arrives with each
//! call, member ids are built from a uuid the caller passes in, and effects leave as [`Output`]s
//! (answers to parked JoinGroup/SyncGroup requests, records to append). The shell owns sockets,
//! the internal topic, timers, and which broker coordinates which group. KIP-848 groups
//! (ConsumerGroupHeartbeat, server-side assignment) are run by [`consumer::ConsumerGroups`] with
//! the [`assignor`]s; they share only the committed offsets kept here.
//!
//! Every parked request ([`Token`]) is answered exactly once, by an [`Output::Join`] or
//! [`Output::Sync`], whatever happens to its member or group afterwards.
//!
//! ```
//! use kafka_protocol::messages::{join_group_request::JoinGroupRequestProtocol, GroupId, JoinGroupRequest};
//! use kafka_protocol::protocol::StrBytes;
//! use runnel_group::{GroupConfig, GroupCoordinator, Output};
//!
//! let mut coordinator = GroupCoordinator::new(GroupConfig::default());
//! let mut request = JoinGroupRequest::default();
//! request.group_id = GroupId(StrBytes::from_static_str("orders"));
//! request.session_timeout_ms = 10_000;
//! request.rebalance_timeout_ms = 30_000;
//! request.protocol_type = StrBytes::from_static_str("consumer");
//! let mut protocol = JoinGroupRequestProtocol::default();
//! protocol.name = StrBytes::from_static_str("range");
//! request.protocols = vec![protocol];
//!
//! let mut out = Vec::new();
//! // JoinGroup v4+ without a member id: answered at once with MEMBER_ID_REQUIRED and an id.
//! coordinator.join_group(0, 1, 9, "app", "/10.0.0.1", uuid::Uuid::nil(), request.clone(), &mut out);
//! let Output::Join { response, .. } = out.pop().unwrap() else { panic!() };
//! assert_eq!(response.error_code, 79);
//!
//! // Joining with it parks the request until the initial rebalance delay has passed.
//! request.member_id = response.member_id;
//! coordinator.join_group(5, 2, 9, "app", "/10.0.0.1", uuid::Uuid::nil(), request, &mut out);
//! assert!(out.is_empty());
//! assert_eq!(coordinator.next_deadline_ms(), Some(3_005));
//! coordinator.tick(3_005, &mut out);
//! let Output::Join { token: 2, response } = &out[0] else { panic!() };
//! assert_eq!((response.error_code, response.generation_id), (0, 1));
//! ```

mod admin;
pub mod assignor;
mod classic;
pub mod consumer;
mod group;
mod offsets;
pub mod records;
pub mod transactions;
pub mod txn_log;
mod txn_offsets;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};

pub use group::{CommittedOffset, GroupState};
pub use offsets::{OffsetCommitPlan, PendingCommit};
pub use records::RecordFormatError;
pub use txn_offsets::TxnOffsetCommitPlan;

use group::Group;
use records::RecordKey;

/// The coordinator's settings, named after Kafka's broker configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub group_max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`
    pub group_initial_rebalance_delay_ms: i64,
    /// `group.max.size`
    pub group_max_size: usize,
    /// `offsets.retention.minutes`, in milliseconds.
    pub offsets_retention_ms: i64,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_max_bytes: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_initial_rebalance_delay_ms: 3_000,
            group_max_size: i32::MAX as usize,
            offsets_retention_ms: 10_080 * 60 * 1_000,
            offset_metadata_max_bytes: 4_096,
        }
    }
}

/// The deadline of work that is due now, whatever the clock says: the epoch, so that
/// `deadline - now` cannot overflow.
const IMMEDIATELY_MS: i64 = 0;

/// Identifies a request the shell has parked (JoinGroup/SyncGroup answered later).
pub type Token = u64;

/// An effect for the shell to carry out, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The answer to the JoinGroup parked under `token`, encoded at that request's version.
    Join {
        token: Token,
        response: JoinGroupResponse,
    },
    /// The answer to the SyncGroup parked under `token`, encoded at that request's version.
    Sync {
        token: Token,
        response: SyncGroupResponse,
    },
    /// Records for the __consumer_offsets partition of `group` (key bytes, value bytes or None =
    /// tombstone), to be appended by the shell. Group metadata changes (rebalance completed,
    /// group emptied, deleted) and offset expiry produce these.
    Persist {
        group: String,
        records: Vec<(Bytes, Option<Bytes>)>,
    },
}

/// The classic group coordinator for every group this broker coordinates.
#[derive(Debug)]
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
    /// (deadline, group id) for every group with something timed to do.
    deadlines: BTreeSet<(i64, String)>,
    /// Set by `replay`: some restored group's sessions start at the next call with a time.
    sessions_need_reset: bool,
    /// Offsets committed in transactions that have not ended yet.
    transactional_offsets: txn_offsets::TransactionalOffsets,
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> Self {
        GroupCoordinator {
            config,
            groups: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            sessions_need_reset: false,
            transactional_offsets: Default::default(),
        }
    }

    /// Which __consumer_offsets partition holds `group`: Java's
    /// `Utils.abs(groupId.hashCode()) % partitions` (String.hashCode over UTF-16 code units;
    /// Utils.abs maps i32::MIN to 0).
    pub fn partition_for(group: &str, partitions: i32) -> i32 {
        transactions::coordinator_partition(group, partitions)
    }

    /// Whether a classic group (possibly one that only holds offsets) exists under this id.
    pub fn group_exists(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    /// The state of a group, if it exists.
    pub fn group_state(&self, group: &str) -> Option<GroupState> {
        self.groups.get(group).map(|g| g.state)
    }

    /// The earliest time `tick` has work to do. It may lie in the past (after `replay` it is 0
    /// until the first tick): tick at once then. Never negative.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        // Timestamps read back from the log may be anything; a deadline before the epoch is
        // just "now".
        self.deadlines
            .first()
            .map(|(at, _)| (*at).max(IMMEDIATELY_MS))
    }

    /// Recovery: replays one record read from __consumer_offsets (later records win; None =
    /// tombstone). After replay, restored groups' members get fresh session deadlines from the
    /// `now_ms` of the first call that carries one (normally the first tick).
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RecordFormatError> {
        let key = records::decode_key(key)?;
        let group_id = key.group().to_owned();
        match (key, value) {
            (
                RecordKey::OffsetCommit {
                    topic, partition, ..
                },
                Some(value),
            ) => {
                let value = records::decode_offset_value(value)?;
                let group = self
                    .groups
                    .entry(group_id.clone())
                    .or_insert_with(|| Group::new(group_id.clone()));
                group.offsets.insert(
                    (topic, partition),
                    CommittedOffset {
                        offset: value.offset,
                        leader_epoch: value.leader_epoch,
                        metadata: value.metadata,
                        commit_timestamp_ms: value.commit_timestamp_ms,
                    },
                );
            }
            (
                RecordKey::OffsetCommit {
                    topic, partition, ..
                },
                None,
            ) => {
                if let Some(group) = self.groups.get_mut(&group_id) {
                    group.offsets.remove(&(topic, partition));
                }
            }
            (RecordKey::GroupMetadata { .. }, Some(value)) => {
                let value = records::decode_group_value(value)?;
                let group = self
                    .groups
                    .entry(group_id.clone())
                    .or_insert_with(|| Group::new(group_id.clone()));
                group.restore(value);
                self.sessions_need_reset |= !group.members.is_empty();
            }
            (RecordKey::GroupMetadata { .. }, None) => {
                if let Some(group) = self.groups.get_mut(&group_id) {
                    let offsets = std::mem::take(&mut group.offsets);
                    let indexed = group.indexed_deadline_ms;
                    *group = Group::new(group_id.clone());
                    group.offsets = offsets;
                    group.indexed_deadline_ms = indexed;
                }
            }
        }
        if self
            .groups
            .get(&group_id)
            .is_some_and(|g| g.members.is_empty() && g.offsets.is_empty() && !g.metadata_persisted)
        {
            self.remove_group(&group_id);
        }
        self.refresh(&group_id);
        Ok(())
    }

    /// Forgets every group `moved` names: this broker no longer leads its partition of
    /// `__consumer_offsets`, so another coordinates it, from the log. Requests parked in those
    /// groups are answered NOT_COORDINATOR, which sends their clients to FindCoordinator; offsets
    /// of open transactions are dropped too (the new coordinator replays them with the rest).
    pub fn unload(&mut self, moved: impl Fn(&str) -> bool) -> Vec<Output> {
        let leaving: Vec<String> = self.groups.keys().filter(|id| moved(id)).cloned().collect();
        let mut out = Vec::new();
        for id in leaving {
            let Some(group) = self.remove_group(&id) else {
                continue;
            };
            for member in group.members {
                if let Some(parked) = member.join {
                    let response = classic::join_error(
                        parked.version,
                        &member.member_id,
                        ResponseError::NotCoordinator,
                    );
                    classic::reply_join(&mut out, parked, response);
                }
                if let Some(parked) = member.sync {
                    let response =
                        classic::sync_error(parked.version, ResponseError::NotCoordinator);
                    classic::reply_sync(&mut out, parked, response);
                }
            }
        }
        for staged in self.transactional_offsets.values_mut() {
            staged.retain(|pending| !moved(pending.group()));
        }
        self.transactional_offsets
            .retain(|_, staged| !staged.is_empty());
        out
    }

    /// Gives restored members their first session deadline.
    fn reset_sessions(&mut self, now_ms: i64) {
        if !std::mem::take(&mut self.sessions_need_reset) {
            return;
        }
        let ids: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.sessions_need_reset)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            if let Some(group) = self.groups.get_mut(&id) {
                group.sessions_need_reset = false;
                for member in &mut group.members {
                    member.session_deadline_ms =
                        now_ms.saturating_add(i64::from(member.session_timeout_ms));
                }
            }
            self.refresh(&id);
        }
    }

    /// Re-files the group under its current deadline.
    fn refresh(&mut self, group_id: &str) {
        let retention_ms = self.config.offsets_retention_ms;
        let (old, new) = match self.groups.get_mut(group_id) {
            Some(group) => {
                let new = group.next_deadline_ms(retention_ms);
                let old = std::mem::replace(&mut group.indexed_deadline_ms, new);
                (old, new)
            }
            None => return,
        };
        if old == new {
            return;
        }
        if let Some(old) = old {
            self.deadlines.remove(&(old, group_id.to_owned()));
        }
        if let Some(new) = new {
            self.deadlines.insert((new, group_id.to_owned()));
        }
    }

    /// Drops a group from memory (its records have been dealt with by the caller).
    fn remove_group(&mut self, group_id: &str) -> Option<Group> {
        let group = self.groups.remove(group_id)?;
        if let Some(at) = group.indexed_deadline_ms {
            self.deadlines.remove(&(at, group_id.to_owned()));
        }
        Some(group)
    }
}

impl Group {
    /// Installs a group metadata record read back from the log: a group with members is Stable
    /// in the recorded generation, one without is Empty.
    fn restore(&mut self, value: records::GroupMetadataValue) {
        let offsets = std::mem::take(&mut self.offsets);
        let indexed = self.indexed_deadline_ms;
        *self = Group::new(std::mem::take(&mut self.group_id));
        self.offsets = offsets;
        self.indexed_deadline_ms = indexed;
        self.metadata_persisted = true;
        self.protocol_type = Some(value.protocol_type).filter(|t| !t.is_empty());
        self.generation_id = value.generation;
        self.protocol_name = value.protocol;
        self.leader_id = value.leader;
        self.state_timestamp_ms = Some(value.current_state_timestamp_ms).filter(|&ts| ts >= 0);
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members = value
            .members
            .into_iter()
            .map(|m| group::Member {
                member_id: m.member_id,
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols: vec![(protocol.clone(), m.subscription)],
                assignment: m.assignment,
                join: None,
                sync: None,
                session_deadline_ms: i64::MAX,
            })
            .collect();
        if self.members.is_empty() {
            self.state = GroupState::Empty;
        } else {
            self.state = GroupState::Stable;
            self.sessions_need_reset = true;
            if self
                .leader_id
                .as_deref()
                .is_none_or(|l| !self.has_member(l))
            {
                self.leader_id = self.members.first().map(|m| m.member_id.clone());
            }
        }
    }
}
