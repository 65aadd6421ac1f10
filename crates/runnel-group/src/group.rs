//! One classic group's state: its members, generation, protocol, parked requests, deadlines
//! and committed offsets, with the small queries the coordinator asks of it. The transitions
//! themselves (join, sync, leave, expiry) live in `classic.rs`; this file holds data and
//! answers questions, and changes nothing on its own.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::records::{self, GroupMetadataValue, MemberMetadataValue};
use crate::Token;

/// The classic group states, as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name DescribeGroups and ListGroups report.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// One committed offset, as stored and as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    /// -1 when the committer did not say.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// A request the shell parked, with the version its answer must be encoded at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parked {
    pub(crate) token: Token,
    pub(crate) version: i16,
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    /// (protocol name, metadata) in the member's order of preference.
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
    /// A JoinGroup waiting for the rebalance to complete: the member has rejoined.
    pub(crate) join: Option<Parked>,
    /// A SyncGroup waiting for the leader's assignment.
    pub(crate) sync: Option<Parked>,
    pub(crate) session_deadline_ms: i64,
}

impl Member {
    /// Whether the session timer can evict the member now: a member with a parked request is
    /// waiting on the group, not silent (Kafka's `hasSatisfiedHeartbeat`).
    pub(crate) fn can_expire(&self) -> bool {
        self.join.is_none() && self.sync.is_none()
    }

    pub(crate) fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    pub(crate) fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }
}

/// A member id handed out with MEMBER_ID_REQUIRED that has not joined with it yet.
#[derive(Debug, Clone)]
pub(crate) struct PendingMember {
    pub(crate) member_id: String,
    pub(crate) deadline_ms: i64,
}

/// The wait before a rebalance completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinWait {
    /// Kafka's DelayedJoin: completes once every member rejoined, or at the deadline.
    Rebalance,
    /// Kafka's InitialDelayedJoin (a group leaving Empty): completes only at the deadline, which
    /// moves by up to another initial delay while new members keep arriving, within `remaining_ms`.
    Initial { remaining_ms: i64 },
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) group_id: String,
    pub(crate) state: GroupState,
    /// When the group entered its state (Kafka's currentStateTimestamp); offsets of an Empty
    /// group expire relative to it. None when restored from a record that lacks it.
    pub(crate) state_timestamp_ms: Option<i64>,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) generation_id: i32,
    pub(crate) leader_id: Option<String>,
    /// In join order: the first member becomes leader when one is needed.
    pub(crate) members: Vec<Member>,
    pub(crate) pending_members: Vec<PendingMember>,
    /// Members that got the generation's join response but have not synced yet.
    pub(crate) pending_sync: Vec<String>,
    /// PreparingRebalance: when the join phase ends at the latest, and how.
    pub(crate) join_deadline_ms: Option<i64>,
    pub(crate) join_wait: JoinWait,
    /// The rebalance timeout fixed when the rebalance started (max over members).
    pub(crate) rebalance_timeout_ms: i64,
    pub(crate) new_member_added: bool,
    /// CompletingRebalance/Stable: when members still in `pending_sync` are evicted.
    pub(crate) sync_deadline_ms: Option<i64>,
    pub(crate) offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// Whether a group metadata record for this group is live in the log (so removal needs a
    /// tombstone).
    pub(crate) metadata_persisted: bool,
    /// Restored from the log: members' session deadlines start at the next call that has a time.
    pub(crate) sessions_need_reset: bool,
    /// The deadline under which the coordinator's index holds this group.
    pub(crate) indexed_deadline_ms: Option<i64>,
}

impl Group {
    pub(crate) fn new(group_id: String) -> Self {
        Group {
            group_id,
            state: GroupState::Empty,
            state_timestamp_ms: None,
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader_id: None,
            members: Vec::new(),
            pending_members: Vec::new(),
            pending_sync: Vec::new(),
            join_deadline_ms: None,
            join_wait: JoinWait::Rebalance,
            rebalance_timeout_ms: 0,
            new_member_added: false,
            sync_deadline_ms: None,
            offsets: BTreeMap::new(),
            metadata_persisted: false,
            sessions_need_reset: false,
            indexed_deadline_ms: None,
        }
    }

    pub(crate) fn member(&self, member_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.member_id == member_id)
    }

    pub(crate) fn member_mut(&mut self, member_id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.member_id == member_id)
    }

    pub(crate) fn has_member(&self, member_id: &str) -> bool {
        self.member(member_id).is_some()
    }

    pub(crate) fn is_pending(&self, member_id: &str) -> bool {
        self.pending_members
            .iter()
            .any(|p| p.member_id == member_id)
    }

    pub(crate) fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    /// The member id currently holding a static instance id.
    pub(crate) fn static_member_id(&self, group_instance_id: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|m| m.group_instance_id.as_deref() == Some(group_instance_id))
            .map(|m| m.member_id.as_str())
    }

    /// Kafka's `validateCurrentMember`: a static instance id held by another member id is
    /// fenced; otherwise the member id must be known.
    pub(crate) fn validate_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), kafka_protocol::error::ResponseError> {
        use kafka_protocol::error::ResponseError;
        if let Some(instance) = group_instance_id {
            if let Some(current) = self.static_member_id(instance) {
                return if current == member_id {
                    Ok(())
                } else {
                    Err(ResponseError::FencedInstanceId)
                };
            }
        }
        if self.has_member(member_id) {
            Ok(())
        } else {
            Err(ResponseError::UnknownMemberId)
        }
    }

    /// Kafka's `isStaticMemberFenced`, for offset commits.
    pub(crate) fn is_static_member_fenced(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> bool {
        group_instance_id
            .and_then(|instance| self.static_member_id(instance))
            .is_some_and(|current| current != member_id)
    }

    /// Whether a member with these protocols may join (Kafka's `supportsProtocols`): an empty
    /// group takes any non-empty type and list; otherwise the type must match and one protocol
    /// must be supported by every current member.
    pub(crate) fn supports_protocols(
        &self,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
    ) -> bool {
        if self.state == GroupState::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members.iter().filter(|m| m.supports(name)).count() == self.members.len()
            })
    }

    /// The protocol every member supports that most members prefer (Kafka's `selectProtocol`:
    /// each member votes for its first supported candidate). Ties go to the protocol the
    /// earliest-joined voter preferred, so the choice is deterministic.
    pub(crate) fn select_protocol(&self) -> Option<String> {
        let first = self.members.first()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.members.iter().all(|m| m.supports(name)))
            .collect();
        let mut votes: Vec<(&str, usize)> = Vec::new();
        for member in &self.members {
            let Some(vote) = member
                .protocols
                .iter()
                .map(|(name, _)| name.as_str())
                .find(|name| candidates.contains(name))
            else {
                continue;
            };
            match votes.iter_mut().find(|(name, _)| *name == vote) {
                Some((_, count)) => *count += 1,
                None => votes.push((vote, 1)),
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, best_count)| count > best_count) {
                best = Some((name, count));
            }
        }
        // No common protocol can only follow members changing their lists on rejoin; fall back to
        // the first member's preference rather than stall the group.
        best.map(|(name, _)| name.to_owned())
            .or_else(|| first.protocols.first().map(|(name, _)| name.clone()))
    }

    /// Whether every member has rejoined and no handed-out member id is still outstanding
    /// (Kafka's `hasAllMembersJoined`).
    pub(crate) fn all_members_joined(&self) -> bool {
        self.members.iter().all(|m| m.join.is_some()) && self.pending_members.is_empty()
    }

    /// Whether nothing keeps the group: no members, no outstanding member ids, no offsets.
    pub(crate) fn is_removable(&self) -> bool {
        self.state == GroupState::Empty
            && self.members.is_empty()
            && self.pending_members.is_empty()
            && self.offsets.is_empty()
    }

    /// The topics the group's members subscribe to, for a `consumer` group; None when unknown
    /// (any unreadable subscription makes it unknown, which callers treat as "subscribed").
    pub(crate) fn subscribed_topics(&self) -> Option<Vec<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let mut topics = Vec::new();
        for member in &self.members {
            let metadata = match &self.protocol_name {
                Some(protocol) => member.metadata_for(protocol),
                None => member.protocols.first().map(|(_, m)| m.clone())?,
            };
            topics.extend(records::subscription_topics(&metadata)?);
        }
        topics.sort();
        topics.dedup();
        Some(topics)
    }

    /// The group's metadata record value, with the given assignments (Kafka writes the
    /// assignment being installed, not the one in memory, at sync time).
    pub(crate) fn metadata_value(&self) -> GroupMetadataValue {
        let protocol = self.protocol_name.clone();
        GroupMetadataValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation_id,
            protocol: protocol.clone(),
            leader: self.leader_id.clone(),
            current_state_timestamp_ms: self.state_timestamp_ms.unwrap_or(-1),
            members: self
                .members
                .iter()
                .map(|m| MemberMetadataValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: protocol
                        .as_deref()
                        .map(|p| m.metadata_for(p))
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// The earliest time at which `tick` has something to do for this group.
    pub(crate) fn next_deadline_ms(&self, offsets_retention_ms: i64) -> Option<i64> {
        if self.sessions_need_reset {
            return Some(crate::IMMEDIATELY_MS);
        }
        let mut deadline: Option<i64> = None;
        let mut consider = |at: Option<i64>| {
            if let Some(at) = at {
                deadline = Some(deadline.map_or(at, |d| d.min(at)));
            }
        };
        if self.state == GroupState::PreparingRebalance {
            consider(self.join_deadline_ms);
        }
        consider(self.sync_deadline_ms);
        for member in &self.members {
            if member.can_expire() {
                consider(Some(member.session_deadline_ms));
            }
        }
        for pending in &self.pending_members {
            consider(Some(pending.deadline_ms));
        }
        consider(self.offsets_expiry_ms(offsets_retention_ms));
        if self.is_removable() {
            consider(Some(
                self.state_timestamp_ms.unwrap_or(crate::IMMEDIATELY_MS),
            ));
        }
        deadline
    }

    /// When the first committed offset expires (Kafka 2.1+ semantics): offsets of an Empty
    /// group with a protocol type expire `retention` after the group became Empty; offsets of a
    /// simple group (no protocol type) `retention` after their commit. Groups with members keep
    /// their offsets.
    pub(crate) fn offsets_expiry_ms(&self, retention_ms: i64) -> Option<i64> {
        if self.state != GroupState::Empty || self.offsets.is_empty() {
            return None;
        }
        let has_protocol = self.protocol_type.as_deref().is_some_and(|t| !t.is_empty());
        match (has_protocol, self.state_timestamp_ms) {
            (true, Some(empty_since)) => Some(empty_since.saturating_add(retention_ms)),
            _ => self
                .offsets
                .values()
                .map(|o| o.commit_timestamp_ms.saturating_add(retention_ms))
                .min(),
        }
    }

    /// The offsets that have expired at `now_ms`.
    pub(crate) fn expired_offsets(&self, now_ms: i64, retention_ms: i64) -> Vec<(String, i32)> {
        if self.state != GroupState::Empty {
            return Vec::new();
        }
        let has_protocol = self.protocol_type.as_deref().is_some_and(|t| !t.is_empty());
        self.offsets
            .iter()
            .filter(|(_, offset)| {
                let base = match (has_protocol, self.state_timestamp_ms) {
                    (true, Some(empty_since)) => empty_since,
                    _ => offset.commit_timestamp_ms,
                };
                now_ms.saturating_sub(base) >= retention_ms
            })
            .map(|(key, _)| key.clone())
            .collect()
    }
}
