//! The classic rebalance protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, and the timers
//! that drive a group without requests (session expiry, the join phase's end, the initial
//! rebalance delay, the sync deadline, offset expiry).
//!
//! The transitions follow Kafka's classic `GroupCoordinator`: a rebalance starts
//! (PreparingRebalance) when a member joins, changes its metadata, leaves or dies; it completes
//! when every member rejoined or the rebalance timeout passed, bumping the generation and
//! answering the parked joins (CompletingRebalance); the leader's SyncGroup installs its
//! assignment and answers the parked syncs (Stable). Validation errors are answered without
//! touching any other member's state.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::group::{Group, GroupState, JoinWait, Member, Parked, PendingMember};
use crate::records::{self, RecordKey};
use crate::{GroupConfig, GroupCoordinator, Output, Token};

/// A JoinGroup with its fields read once, version rules applied.
#[derive(Debug)]
struct JoinRequest {
    parked: Parked,
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
}

impl GroupCoordinator {
    /// JoinGroup. The answer is pushed to `out` as an [`Output::Join`] for `token`, at once for
    /// errors and MEMBER_ID_REQUIRED, otherwise when the rebalance completes.
    /// `member_id_seed` is a fresh uuid for the member id this call may hand out.
    #[allow(clippy::too_many_arguments)]
    pub fn join_group(
        &mut self,
        now_ms: i64,
        token: Token,
        version: i16,
        client_id: &str,
        client_host: &str,
        member_id_seed: uuid::Uuid,
        request: JoinGroupRequest,
        out: &mut Vec<Output>,
    ) {
        self.reset_sessions(now_ms);
        let group_id = request.group_id.0.to_string();
        let join = JoinRequest {
            parked: Parked { token, version },
            member_id: request.member_id.to_string(),
            group_instance_id: request
                .group_instance_id
                .filter(|_| version >= 5)
                .map(|id| id.to_string()),
            client_id: client_id.to_owned(),
            client_host: client_host.to_owned(),
            session_timeout_ms: request.session_timeout_ms,
            // v0 has no rebalance timeout: the session timeout bounds the join phase.
            rebalance_timeout_ms: if version >= 1 {
                request.rebalance_timeout_ms.max(0)
            } else {
                request.session_timeout_ms
            },
            protocol_type: request.protocol_type.to_string(),
            protocols: request
                .protocols
                .into_iter()
                .map(|p| (p.name.to_string(), p.metadata))
                .collect(),
        };
        let config = &self.config;
        let refuse = |error: ResponseError, out: &mut Vec<Output>| {
            out.push(Output::Join {
                token,
                response: join_error(version, &join.member_id, error),
            });
        };
        if group_id.is_empty() {
            return refuse(ResponseError::InvalidGroupId, out);
        }
        if join.session_timeout_ms < config.group_min_session_timeout_ms
            || join.session_timeout_ms > config.group_max_session_timeout_ms
        {
            return refuse(ResponseError::InvalidSessionTimeout, out);
        }
        if !self.groups.contains_key(&group_id) {
            // Only a member without an id creates a group; check its protocols first so a
            // refused join leaves nothing behind.
            if !join.member_id.is_empty() {
                return refuse(ResponseError::UnknownMemberId, out);
            }
            if join.protocol_type.is_empty() || join.protocols.is_empty() {
                return refuse(ResponseError::InconsistentGroupProtocol, out);
            }
            self.groups
                .insert(group_id.clone(), Group::new(group_id.clone()));
        }
        if let Some(group) = self.groups.get_mut(&group_id) {
            group.join(config, now_ms, member_id_seed, join, out);
        }
        self.refresh(&group_id);
    }

    /// SyncGroup. The answer is pushed to `out` as an [`Output::Sync`] for `token`: at once,
    /// or for a follower in CompletingRebalance, when the leader's assignment arrives.
    pub fn sync_group(
        &mut self,
        now_ms: i64,
        token: Token,
        version: i16,
        request: SyncGroupRequest,
        out: &mut Vec<Output>,
    ) {
        self.reset_sessions(now_ms);
        let group_id = request.group_id.0.to_string();
        let parked = Parked { token, version };
        match self.groups.get_mut(&group_id) {
            Some(group) => group.sync(now_ms, parked, request, out),
            None => out.push(Output::Sync {
                token,
                response: sync_error(version, ResponseError::UnknownMemberId),
            }),
        }
        self.refresh(&group_id);
    }

    /// Heartbeat: keeps a member's session alive and tells it whether to rejoin.
    pub fn heartbeat(
        &mut self,
        now_ms: i64,
        _version: i16,
        request: HeartbeatRequest,
    ) -> HeartbeatResponse {
        self.reset_sessions(now_ms);
        let group_id = request.group_id.0.to_string();
        let error = match self.groups.get_mut(&group_id) {
            Some(group) => group.heartbeat(now_ms, &request),
            None => Some(ResponseError::UnknownMemberId),
        };
        self.refresh(&group_id);
        let mut response = HeartbeatResponse::default();
        response.error_code = code(error);
        response
    }

    /// LeaveGroup: v0-2 name one member id, v3+ a batch of members (by member id, or by
    /// group instance id alone for an administrative removal), each with its own error.
    pub fn leave_group(
        &mut self,
        now_ms: i64,
        version: i16,
        request: LeaveGroupRequest,
        out: &mut Vec<Output>,
    ) -> LeaveGroupResponse {
        self.reset_sessions(now_ms);
        let group_id = request.group_id.0.to_string();
        let leaving: Vec<(String, Option<String>)> = if version <= 2 {
            vec![(request.member_id.to_string(), None)]
        } else {
            request
                .members
                .iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.as_ref().map(|id| id.to_string()),
                    )
                })
                .collect()
        };
        let config = &self.config;
        let errors: Vec<Option<ResponseError>> = match self.groups.get_mut(&group_id) {
            Some(group) => leaving
                .iter()
                .map(|(member_id, instance)| {
                    group.leave(config, now_ms, member_id, instance.as_deref(), out)
                })
                .collect(),
            None => vec![Some(ResponseError::UnknownMemberId); leaving.len()],
        };
        self.refresh(&group_id);

        let mut response = LeaveGroupResponse::default();
        if version <= 2 {
            response.error_code = code(errors.first().copied().flatten());
        } else {
            response.members = leaving
                .into_iter()
                .zip(errors)
                .map(|((member_id, instance), error)| {
                    let mut member = MemberResponse::default();
                    member.member_id = StrBytes::from_string(member_id);
                    member.group_instance_id = instance.map(StrBytes::from_string);
                    member.error_code = code(error);
                    member
                })
                .collect();
        }
        response
    }

    /// Time: session expiry, the end of join phases (rebalance timeout, initial delay), sync
    /// deadlines, offset expiry, and the removal of groups left with nothing.
    pub fn tick(&mut self, now_ms: i64, out: &mut Vec<Output>) {
        self.reset_sessions(now_ms);
        let due: Vec<String> = self
            .deadlines
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .map(|(_, id)| id.clone())
            .collect();
        for group_id in due {
            let config = &self.config;
            let Some(group) = self.groups.get_mut(&group_id) else {
                debug_assert!(false, "deadline index names a missing group {group_id}");
                self.deadlines.retain(|(_, id)| *id != group_id);
                continue;
            };
            group.expire(config, now_ms, out);
            if group.is_removable() {
                if let Some(group) = self.remove_group(&group_id) {
                    if group.metadata_persisted {
                        out.push(Output::Persist {
                            group: group_id.clone(),
                            records: vec![(
                                records::encode_key(&RecordKey::GroupMetadata {
                                    group: group_id.clone(),
                                }),
                                None,
                            )],
                        });
                    }
                }
            } else {
                self.refresh(&group_id);
            }
        }
    }
}

impl Group {
    fn join(
        &mut self,
        config: &GroupConfig,
        now_ms: i64,
        seed: uuid::Uuid,
        join: JoinRequest,
        out: &mut Vec<Output>,
    ) {
        if !self.accepts_joining_member(&join.member_id, config.group_max_size) {
            // Kafka drops a known member it turns away, so the rest of the group can move on.
            if self.has_member(&join.member_id) {
                self.remove_member_and_rebalance(config, now_ms, &join.member_id, out);
            }
            return reply_join(
                out,
                join.parked,
                join_error(
                    join.parked.version,
                    &join.member_id,
                    ResponseError::GroupMaxSizeReached,
                ),
            );
        }
        if join.member_id.is_empty() {
            self.join_new_member(config, now_ms, seed, join, out);
        } else {
            self.join_known_member(config, now_ms, join, out);
        }
    }

    /// Kafka's `acceptJoiningMember`: room is counted among members that will be in the next
    /// generation.
    fn accepts_joining_member(&self, member_id: &str, max_size: usize) -> bool {
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                self.member(member_id).is_some_and(|m| m.join.is_some())
                    || self.members.iter().filter(|m| m.join.is_some()).count() < max_size
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.has_member(member_id) || self.members.len() < max_size
            }
        }
    }

    fn join_new_member(
        &mut self,
        config: &GroupConfig,
        now_ms: i64,
        seed: uuid::Uuid,
        join: JoinRequest,
        out: &mut Vec<Output>,
    ) {
        let version = join.parked.version;
        if !self.supports_protocols(&join.protocol_type, &join.protocols) {
            return reply_join(
                out,
                join.parked,
                join_error(version, "", ResponseError::InconsistentGroupProtocol),
            );
        }
        let prefix = join.group_instance_id.as_deref().unwrap_or(&join.client_id);
        let new_member_id = format!("{prefix}-{seed}");
        if let Some(instance) = join.group_instance_id.as_deref() {
            match self.static_member_id(instance).map(str::to_owned) {
                Some(old_member_id) => self.replace_static_member(
                    config,
                    now_ms,
                    old_member_id,
                    new_member_id,
                    join,
                    out,
                ),
                None => self.add_member_and_rebalance(config, now_ms, new_member_id, join, out),
            }
        } else if version >= 4 {
            // KIP-394: hand out the id first, so a client that times out and retries does not
            // leave a defunct member behind in the rebalance.
            self.pending_members.push(PendingMember {
                member_id: new_member_id.clone(),
                deadline_ms: now_ms.saturating_add(i64::from(join.session_timeout_ms)),
            });
            reply_join(
                out,
                join.parked,
                join_error(version, &new_member_id, ResponseError::MemberIdRequired),
            );
        } else {
            self.add_member_and_rebalance(config, now_ms, new_member_id, join, out);
        }
    }

    fn join_known_member(
        &mut self,
        config: &GroupConfig,
        now_ms: i64,
        join: JoinRequest,
        out: &mut Vec<Output>,
    ) {
        let version = join.parked.version;
        let member_id = join.member_id.clone();
        if !self.supports_protocols(&join.protocol_type, &join.protocols) {
            return reply_join(
                out,
                join.parked,
                join_error(
                    version,
                    &member_id,
                    ResponseError::InconsistentGroupProtocol,
                ),
            );
        }
        if self.is_pending(&member_id) {
            return self.add_member_and_rebalance(config, now_ms, member_id, join, out);
        }
        if let Err(error) = self.validate_member(&member_id, join.group_instance_id.as_deref()) {
            return reply_join(out, join.parked, join_error(version, &member_id, error));
        }
        let unchanged = self
            .member(&member_id)
            .is_some_and(|m| m.protocols == join.protocols);
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member_and_rebalance(config, now_ms, join, out)
            }
            GroupState::CompletingRebalance if unchanged => {
                // The member probably missed its join response: send it again.
                let include_members = self.is_leader(&member_id);
                self.refresh_session(&member_id, now_ms);
                let response = self.join_success(version, &member_id, include_members, None, false);
                reply_join(out, join.parked, response);
            }
            GroupState::Stable if unchanged && !self.is_leader(&member_id) => {
                // A follower rejoining with the same metadata gets the current generation; only
                // the leader (which may have seen metadata change) or changed metadata rebalance.
                self.refresh_session(&member_id, now_ms);
                let response = self.join_success(version, &member_id, false, None, false);
                reply_join(out, join.parked, response);
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member_and_rebalance(config, now_ms, join, out)
            }
            GroupState::Empty | GroupState::Dead => reply_join(
                out,
                join.parked,
                join_error(version, &member_id, ResponseError::UnknownMemberId),
            ),
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        config: &GroupConfig,
        now_ms: i64,
        member_id: String,
        join: JoinRequest,
        out: &mut Vec<Output>,
    ) {
        if self.state == GroupState::PreparingRebalance && self.generation_id == 0 {
            self.new_member_added = true;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(join.protocol_type.clone());
        }
        self.pending_members.retain(|p| p.member_id != member_id);
        if self.leader_id.is_none() {
            self.leader_id = Some(member_id.clone());
        }
        self.members.push(Member {
            member_id,
            group_instance_id: join.group_instance_id,
            client_id: join.client_id,
            client_host: join.client_host,
            session_timeout_ms: join.session_timeout_ms,
            rebalance_timeout_ms: join.rebalance_timeout_ms,
            protocols: join.protocols,
            assignment: Bytes::new(),
            join: Some(join.parked),
            sync: None,
            session_deadline_ms: now_ms.saturating_add(i64::from(join.session_timeout_ms)),
        });
        self.maybe_prepare_rebalance(config, now_ms, out);
    }

    fn update_member_and_rebalance(
        &mut self,
        config: &GroupConfig,
        now_ms: i64,
        join: JoinRequest,
        out: &mut Vec<Output>,
    ) {
        let Some(member) = self.member_mut(&join.member_id) else {
            return;
        };
        member.protocols = join.protocols;
        member.session_timeout_ms = join.session_timeout_ms;
        member.rebalance_timeout_ms = join.rebalance_timeout_ms;
        if let Some(previous) = member.join.replace(join.parked) {
            // A retry (from another connection) supersedes the parked join.
            let response = join_error(
                previous.version,
                &join.member_id,
                ResponseError::RebalanceInProgress,
            );
            reply_join(out, previous, response);
        }
        self.maybe_prepare_rebalance(config, now_ms, out);
    }

    /// A static member rejoining without a member id: it takes over its instance's place under
    /// a new member id; the old id is fenced. In a Stable group whose protocol and this member's
    /// metadata stay the same, no rebalance: it gets the current generation and, at sync, its
    /// old assignment.
    fn replace_static_member(
        &mut self,
        config: &GroupConfig,
        now_ms: i64,
        old_member_id: String,
        new_member_id: String,
        join: JoinRequest,
        out: &mut Vec<Output>,
    ) {
        let version = join.parked.version;
        let leader_before = self.leader_id.clone();
        let Some(member) = self.member_mut(&old_member_id) else {
            return;
        };
        if let Some(parked) = member.join.take() {
            reply_join(
                out,
                parked,
                join_error(
                    parked.version,
                    &old_member_id,
                    ResponseError::FencedInstanceId,
                ),
            );
        }
        if let Some(parked) = member.sync.take() {
            reply_sync(
                out,
                parked,
                sync_error(parked.version, ResponseError::FencedInstanceId),
            );
        }
        let unchanged = member.protocols == join.protocols;
        member.member_id = new_member_id.clone();
        member.client_id = join.client_id;
        member.client_host = join.client_host;
        member.protocols = join.protocols;
        member.session_timeout_ms = join.session_timeout_ms;
        member.rebalance_timeout_ms = join.rebalance_timeout_ms;
        member.session_deadline_ms = now_ms.saturating_add(i64::from(join.session_timeout_ms));
        member.join = Some(join.parked);
        if self.leader_id.as_deref() == Some(old_member_id.as_str()) {
            self.leader_id = Some(new_member_id.clone());
        }
        for pending in &mut self.pending_sync {
            if *pending == old_member_id {
                pending.clone_from(&new_member_id);
            }
        }
        match self.state {
            GroupState::Stable if unchanged && self.select_protocol() == self.protocol_name => {
                if let Some(member) = self.member_mut(&new_member_id) {
                    member.join = None;
                }
                self.persist_metadata(out);
                // Before v9 the response names the old leader id, so a restarted leader does not
                // think it leads and reassign a Stable group; v9 says so with skip_assignment.
                let is_leader = self.is_leader(&new_member_id);
                let skip_assignment = is_leader && version >= 9;
                let leader = if version >= 9 { None } else { leader_before };
                let response = self.join_success(
                    version,
                    &new_member_id,
                    skip_assignment,
                    leader,
                    skip_assignment,
                );
                reply_join(out, join.parked, response);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(config, now_ms, out),
            _ => self.prepare_rebalance(config, now_ms, out),
        }
    }

    fn maybe_prepare_rebalance(
        &mut self,
        config: &GroupConfig,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty => {
                self.prepare_rebalance(config, now_ms, out)
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(config, now_ms, out),
            GroupState::Dead => {}
        }
    }

    fn prepare_rebalance(&mut self, config: &GroupConfig, now_ms: i64, out: &mut Vec<Output>) {
        if self.state == GroupState::CompletingRebalance {
            // The assignment being synced is void: parked syncs learn to rejoin.
            for member in &mut self.members {
                member.assignment = Bytes::new();
                if let Some(parked) = member.sync.take() {
                    reply_sync(
                        out,
                        parked,
                        sync_error(parked.version, ResponseError::RebalanceInProgress),
                    );
                }
            }
        }
        self.pending_sync.clear();
        self.sync_deadline_ms = None;
        self.rebalance_timeout_ms = self
            .members
            .iter()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0);
        if self.state == GroupState::Empty {
            let delay_ms = config.group_initial_rebalance_delay_ms;
            self.join_wait = JoinWait::Initial {
                remaining_ms: (self.rebalance_timeout_ms - delay_ms).max(0),
            };
            self.join_deadline_ms = Some(now_ms.saturating_add(delay_ms));
        } else {
            self.join_wait = JoinWait::Rebalance;
            self.join_deadline_ms = Some(now_ms.saturating_add(self.rebalance_timeout_ms));
        }
        self.state = GroupState::PreparingRebalance;
        self.state_timestamp_ms = Some(now_ms);
        self.maybe_complete_join(config, now_ms, out);
    }

    fn maybe_complete_join(&mut self, config: &GroupConfig, now_ms: i64, out: &mut Vec<Output>) {
        if self.state == GroupState::PreparingRebalance
            && self.join_wait == JoinWait::Rebalance
            && self.all_members_joined()
        {
            self.complete_join(config, now_ms, out);
        }
    }

    /// The join phase ends: dynamic members that did not rejoin are dropped, the generation
    /// moves on, and every parked join is answered (the leader's with all members' metadata).
    fn complete_join(&mut self, _config: &GroupConfig, now_ms: i64, out: &mut Vec<Output>) {
        let not_rejoined: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in not_rejoined {
            self.remove_member(&member_id, ResponseError::UnknownMemberId, out);
        }
        if !self.members.is_empty() && self.members.iter().all(|m| m.join.is_none()) {
            // Only static members that have not rejoined are left: wait for them or for their
            // sessions to expire.
            self.join_wait = JoinWait::Rebalance;
            self.join_deadline_ms = Some(now_ms.saturating_add(self.rebalance_timeout_ms));
            return;
        }
        let leader_rejoined = self
            .leader_id
            .as_deref()
            .and_then(|leader| self.member(leader))
            .is_some_and(|m| m.join.is_some());
        if !leader_rejoined {
            self.leader_id = self
                .members
                .iter()
                .find(|m| m.join.is_some())
                .map(|m| m.member_id.clone());
        }
        self.generation_id = self.generation_id.wrapping_add(1);
        self.join_deadline_ms = None;
        self.new_member_added = false;
        self.state_timestamp_ms = Some(now_ms);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader_id = None;
            self.state = GroupState::Empty;
            self.persist_metadata(out);
            return;
        }
        self.protocol_name = self.select_protocol();
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.iter().map(|m| m.member_id.clone()).collect();
        for member_id in &ids {
            let Some(member) = self.member_mut(member_id) else {
                continue;
            };
            member.session_deadline_ms =
                now_ms.saturating_add(i64::from(member.session_timeout_ms));
            if let Some(parked) = member.join.take() {
                let include_members = self.is_leader(member_id);
                let response =
                    self.join_success(parked.version, member_id, include_members, None, false);
                reply_join(out, parked, response);
            }
        }
        self.pending_sync = ids;
        self.sync_deadline_ms = Some(now_ms.saturating_add(self.rebalance_timeout_ms));
    }

    fn sync(
        &mut self,
        now_ms: i64,
        parked: Parked,
        request: SyncGroupRequest,
        out: &mut Vec<Output>,
    ) {
        let version = parked.version;
        let member_id = request.member_id.to_string();
        let instance = request
            .group_instance_id
            .as_ref()
            .filter(|_| version >= 3)
            .map(|id| id.to_string());
        let refusal = if let Err(error) = self.validate_member(&member_id, instance.as_deref()) {
            Some(error)
        } else if request.generation_id != self.generation_id {
            Some(ResponseError::IllegalGeneration)
        } else if version >= 5
            && (request
                .protocol_type
                .as_ref()
                .is_some_and(|t| self.protocol_type.as_deref() != Some(t.as_str()))
                || request
                    .protocol_name
                    .as_ref()
                    .is_some_and(|n| self.protocol_name.as_deref() != Some(n.as_str())))
        {
            Some(ResponseError::InconsistentGroupProtocol)
        } else {
            match self.state {
                GroupState::Empty => Some(ResponseError::UnknownMemberId),
                GroupState::PreparingRebalance => Some(ResponseError::RebalanceInProgress),
                GroupState::Dead => Some(ResponseError::CoordinatorNotAvailable),
                GroupState::CompletingRebalance | GroupState::Stable => None,
            }
        };
        if let Some(error) = refusal {
            return reply_sync(out, parked, sync_error(version, error));
        }
        self.mark_synced(&member_id);
        if self.state == GroupState::Stable {
            self.refresh_session(&member_id, now_ms);
            let assignment = self
                .member(&member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default();
            let response = self.sync_success(version, assignment);
            return reply_sync(out, parked, response);
        }
        // CompletingRebalance: park until the leader's assignment arrives.
        if let Some(member) = self.member_mut(&member_id) {
            if let Some(previous) = member.sync.replace(parked) {
                reply_sync(
                    out,
                    previous,
                    sync_error(previous.version, ResponseError::RebalanceInProgress),
                );
            }
        }
        if !self.is_leader(&member_id) {
            return;
        }
        // Assignments for non-members are ignored; members the leader left out get nothing.
        for member in &mut self.members {
            member.assignment = request
                .assignments
                .iter()
                .rev()
                .find(|a| a.member_id.as_str() == member.member_id)
                .map(|a| a.assignment.clone())
                .unwrap_or_default();
        }
        self.state = GroupState::Stable;
        self.state_timestamp_ms = Some(now_ms);
        self.persist_metadata(out);
        let ids: Vec<String> = self.members.iter().map(|m| m.member_id.clone()).collect();
        for member_id in ids {
            let Some(member) = self.member_mut(&member_id) else {
                continue;
            };
            if let Some(parked) = member.sync.take() {
                member.session_deadline_ms =
                    now_ms.saturating_add(i64::from(member.session_timeout_ms));
                let assignment = member.assignment.clone();
                let response = self.sync_success(parked.version, assignment);
                reply_sync(out, parked, response);
            }
        }
    }

    fn heartbeat(&mut self, now_ms: i64, request: &HeartbeatRequest) -> Option<ResponseError> {
        let member_id = request.member_id.as_str();
        let instance = request.group_instance_id.as_ref().map(|id| id.as_str());
        if let Err(error) = self.validate_member(member_id, instance) {
            return Some(error);
        }
        if request.generation_id != self.generation_id {
            return Some(ResponseError::IllegalGeneration);
        }
        match self.state {
            GroupState::Empty => Some(ResponseError::UnknownMemberId),
            GroupState::Dead => Some(ResponseError::CoordinatorNotAvailable),
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.refresh_session(member_id, now_ms);
                None
            }
            GroupState::PreparingRebalance => {
                self.refresh_session(member_id, now_ms);
                Some(ResponseError::RebalanceInProgress)
            }
        }
    }

    fn leave(
        &mut self,
        config: &GroupConfig,
        now_ms: i64,
        member_id: &str,
        group_instance_id: Option<&str>,
        out: &mut Vec<Output>,
    ) -> Option<ResponseError> {
        if member_id.is_empty() {
            // Removal by instance id alone (kafka-consumer-groups --delete-members, KIP-345).
            let current = group_instance_id
                .and_then(|instance| self.static_member_id(instance))
                .map(str::to_owned);
            return match current {
                Some(current) => {
                    self.remove_member_and_rebalance(config, now_ms, &current, out);
                    None
                }
                None => Some(ResponseError::UnknownMemberId),
            };
        }
        if self.is_pending(member_id) {
            self.pending_members.retain(|p| p.member_id != member_id);
            self.maybe_complete_join(config, now_ms, out);
            return None;
        }
        if let Err(error) = self.validate_member(member_id, group_instance_id) {
            return Some(error);
        }
        self.remove_member_and_rebalance(config, now_ms, member_id, out);
        None
    }

    /// Timers due at `now_ms`.
    fn expire(&mut self, config: &GroupConfig, now_ms: i64, out: &mut Vec<Output>) {
        let pending_before = self.pending_members.len();
        self.pending_members.retain(|p| p.deadline_ms > now_ms);
        if self.pending_members.len() != pending_before {
            self.maybe_complete_join(config, now_ms, out);
        }

        let silent: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.can_expire() && m.session_deadline_ms <= now_ms)
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in silent {
            self.remove_member_and_rebalance(config, now_ms, &member_id, out);
        }

        if self.state == GroupState::PreparingRebalance
            && self.join_deadline_ms.is_some_and(|at| at <= now_ms)
        {
            match self.join_wait {
                JoinWait::Initial { remaining_ms } if self.new_member_added && remaining_ms > 0 => {
                    // Members are still arriving: wait once more, within the rebalance timeout.
                    self.new_member_added = false;
                    let delay_ms = config.group_initial_rebalance_delay_ms.min(remaining_ms);
                    self.join_wait = JoinWait::Initial {
                        remaining_ms: (remaining_ms - delay_ms).max(0),
                    };
                    self.join_deadline_ms = Some(now_ms.saturating_add(delay_ms));
                }
                _ => self.complete_join(config, now_ms, out),
            }
        }

        if self.sync_deadline_ms.is_some_and(|at| at <= now_ms) {
            self.sync_deadline_ms = None;
            if matches!(
                self.state,
                GroupState::CompletingRebalance | GroupState::Stable
            ) && !self.pending_sync.is_empty()
            {
                // Members that got the generation but never synced hold partitions nobody reads.
                for member_id in std::mem::take(&mut self.pending_sync) {
                    self.remove_member(&member_id, ResponseError::UnknownMemberId, out);
                }
                self.prepare_rebalance(config, now_ms, out);
            }
        }

        let expired = self.expired_offsets(now_ms, config.offsets_retention_ms);
        if !expired.is_empty() {
            let records = expired
                .into_iter()
                .map(|(topic, partition)| {
                    self.offsets.remove(&(topic.clone(), partition));
                    let key = RecordKey::OffsetCommit {
                        group: self.group_id.clone(),
                        topic,
                        partition,
                    };
                    (records::encode_key(&key), None)
                })
                .collect();
            out.push(Output::Persist {
                group: self.group_id.clone(),
                records,
            });
        }
    }

    /// Removes a member and moves the group on: a rebalance, the end of the current join
    /// phase, or nothing.
    fn remove_member_and_rebalance(
        &mut self,
        config: &GroupConfig,
        now_ms: i64,
        member_id: &str,
        out: &mut Vec<Output>,
    ) {
        self.remove_member(member_id, ResponseError::UnknownMemberId, out);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(config, now_ms, out)
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(config, now_ms, out),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Removes a member only, answering its parked requests with `error`.
    fn remove_member(&mut self, member_id: &str, error: ResponseError, out: &mut Vec<Output>) {
        let Some(index) = self.members.iter().position(|m| m.member_id == member_id) else {
            return;
        };
        let member = self.members.remove(index);
        if let Some(parked) = member.join {
            reply_join(out, parked, join_error(parked.version, member_id, error));
        }
        if let Some(parked) = member.sync {
            reply_sync(out, parked, sync_error(parked.version, error));
        }
        self.pending_sync.retain(|id| id != member_id);
        if self.is_leader(member_id) {
            self.leader_id = self.members.first().map(|m| m.member_id.clone());
        }
    }

    fn mark_synced(&mut self, member_id: &str) {
        self.pending_sync.retain(|id| id != member_id);
        if self.pending_sync.is_empty() {
            self.sync_deadline_ms = None;
        }
    }

    fn refresh_session(&mut self, member_id: &str, now_ms: i64) {
        if let Some(member) = self.member_mut(member_id) {
            member.session_deadline_ms =
                now_ms.saturating_add(i64::from(member.session_timeout_ms));
        }
    }

    pub(crate) fn persist_metadata(&mut self, out: &mut Vec<Output>) {
        let key = records::encode_key(&RecordKey::GroupMetadata {
            group: self.group_id.clone(),
        });
        let value = records::encode_group_value(&self.metadata_value());
        self.metadata_persisted = true;
        out.push(Output::Persist {
            group: self.group_id.clone(),
            records: vec![(key, Some(value))],
        });
    }

    /// A successful JoinGroup answer for the current generation. `leader` overrides the leader
    /// id reported (a restarted static leader before v9).
    fn join_success(
        &self,
        version: i16,
        member_id: &str,
        include_members: bool,
        leader: Option<String>,
        skip_assignment: bool,
    ) -> JoinGroupResponse {
        let mut response = JoinGroupResponse::default();
        response.generation_id = self.generation_id;
        response.member_id = StrBytes::from_string(member_id.to_owned());
        response.protocol_name = Some(StrBytes::from_string(
            self.protocol_name.clone().unwrap_or_default(),
        ));
        if version >= 7 {
            response.protocol_type = self.protocol_type.clone().map(StrBytes::from_string);
        }
        if version >= 9 {
            response.skip_assignment = skip_assignment;
        }
        response.leader = StrBytes::from_string(
            leader
                .or_else(|| self.leader_id.clone())
                .unwrap_or_default(),
        );
        if include_members {
            let protocol = self.protocol_name.clone().unwrap_or_default();
            response.members = self
                .members
                .iter()
                .map(|m| {
                    let mut member = JoinGroupResponseMember::default();
                    member.member_id = StrBytes::from_string(m.member_id.clone());
                    if version >= 5 {
                        member.group_instance_id =
                            m.group_instance_id.clone().map(StrBytes::from_string);
                    }
                    member.metadata = m.metadata_for(&protocol);
                    member
                })
                .collect();
        }
        response
    }

    fn sync_success(&self, version: i16, assignment: Bytes) -> SyncGroupResponse {
        let mut response = SyncGroupResponse::default();
        response.assignment = assignment;
        if version >= 5 {
            response.protocol_type = self.protocol_type.clone().map(StrBytes::from_string);
            response.protocol_name = self.protocol_name.clone().map(StrBytes::from_string);
        }
        response
    }
}

pub(crate) fn reply_join(out: &mut Vec<Output>, parked: Parked, response: JoinGroupResponse) {
    out.push(Output::Join {
        token: parked.token,
        response,
    });
}

pub(crate) fn reply_sync(out: &mut Vec<Output>, parked: Parked, response: SyncGroupResponse) {
    out.push(Output::Sync {
        token: parked.token,
        response,
    });
}

/// A JoinGroup answer carrying only an error (and the member id, which MEMBER_ID_REQUIRED
/// hands out).
pub(crate) fn join_error(version: i16, member_id: &str, error: ResponseError) -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default();
    response.error_code = error.code();
    response.member_id = StrBytes::from_string(member_id.to_owned());
    // The protocol name is nullable from v7; before, an empty string stands for "none".
    if version >= 7 {
        response.protocol_name = None;
    }
    response
}

pub(crate) fn sync_error(_version: i16, error: ResponseError) -> SyncGroupResponse {
    let mut response = SyncGroupResponse::default();
    response.error_code = error.code();
    response
}

pub(crate) fn code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}
