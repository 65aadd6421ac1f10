//! Membership of a classic group under any protocol type, for members that are not
//! consumers: Kafka Connect workers join their group as `connect`, with metadata and
//! assignments of their own making. The caller drives the protocol step by step (join, the
//! leader's assignment, sync, heartbeats, leave); this module only speaks it, with the same
//! requests the consumer's membership sends.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    join_group_request, leave_group_request, sync_group_request, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Cluster;
use crate::error::{ClientError, Result};
use crate::wire::{group_id, str_bytes};

/// JoinGroup answers MEMBER_ID_REQUIRED at most once per join.
const JOIN_ATTEMPTS_MAX: usize = 3;

/// How a member takes part in its group.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// The group.
    pub group: String,
    /// The protocol type all members share, e.g. `connect`.
    pub protocol_type: String,
    /// Without a heartbeat for this long the coordinator drops the member.
    pub session_timeout: Duration,
    /// How long the coordinator waits for members to rejoin during a rebalance.
    pub rebalance_timeout: Duration,
}

/// What a join answered.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The generation joined.
    pub generation: i32,
    /// This member's id.
    pub member_id: String,
    /// The leader's id.
    pub leader_id: String,
    /// The protocol the group chose.
    pub protocol: String,
    /// Every member's id and metadata, when this member leads; empty otherwise.
    pub members: Vec<(String, Bytes)>,
}

impl Joined {
    /// Whether this member leads the generation and must assign.
    pub fn is_leader(&self) -> bool {
        self.member_id == self.leader_id
    }
}

/// A member of a classic group.
#[derive(Debug)]
pub struct GroupMember {
    cluster: Cluster,
    config: MembershipConfig,
    member_id: String,
    generation: i32,
}

fn millis(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}

impl GroupMember {
    /// A member of `config.group`, not joined yet.
    pub fn new(cluster: Cluster, config: MembershipConfig) -> GroupMember {
        GroupMember {
            cluster,
            config,
            member_id: String::new(),
            generation: -1,
        }
    }

    /// This member's id; empty before the first join.
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The generation last joined; -1 outside one.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    fn context(&self) -> String {
        format!("group {:?}", self.config.group)
    }

    /// Joins (or rejoins) with `protocols`, each a name and this member's metadata for it, in
    /// order of preference. Returns once the coordinator has formed the generation.
    pub async fn join(&mut self, protocols: &[(String, Bytes)]) -> Result<Joined> {
        let connection = self.cluster.coordinator(&self.config.group).await?;
        let version = connection.version_at_least::<JoinGroupRequest>(1)?;
        let protocols: Vec<join_group_request::JoinGroupRequestProtocol> = protocols
            .iter()
            .map(|(name, metadata)| {
                join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(str_bytes(name))
                    .with_metadata(metadata.clone())
            })
            .collect();
        let mut attempt = 0;
        let joined = loop {
            attempt += 1;
            let request = JoinGroupRequest::default()
                .with_group_id(group_id(&self.config.group))
                .with_session_timeout_ms(millis(self.config.session_timeout))
                .with_rebalance_timeout_ms(millis(self.config.rebalance_timeout))
                .with_member_id(str_bytes(&self.member_id))
                .with_protocol_type(str_bytes(&self.config.protocol_type))
                .with_protocols(protocols.clone());
            let response = connection.send(request, version).await?;
            match ResponseError::try_from_code(response.error_code) {
                None => break response,
                Some(ResponseError::MemberIdRequired) if attempt < JOIN_ATTEMPTS_MAX => {
                    self.member_id = response.member_id.to_string();
                }
                Some(ResponseError::UnknownMemberId) => {
                    self.member_id.clear();
                    return Err(ClientError::broker(
                        ResponseError::UnknownMemberId,
                        None,
                        self.context(),
                    ));
                }
                Some(code) => return Err(ClientError::broker(code, None, self.context())),
            }
        };
        self.member_id = joined.member_id.to_string();
        self.generation = joined.generation_id;
        Ok(Joined {
            generation: joined.generation_id,
            member_id: self.member_id.clone(),
            leader_id: joined.leader.to_string(),
            protocol: joined
                .protocol_name
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            members: joined
                .members
                .iter()
                .map(|m| (m.member_id.to_string(), m.metadata.clone()))
                .collect(),
        })
    }

    /// Sends the leader's `assignments` (member id, assignment; empty from followers) and
    /// returns this member's assignment.
    pub async fn sync(
        &mut self,
        protocol: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<Bytes> {
        let connection = self.cluster.coordinator(&self.config.group).await?;
        let version = connection.version_at_least::<SyncGroupRequest>(0)?;
        let mut request = SyncGroupRequest::default()
            .with_group_id(group_id(&self.config.group))
            .with_generation_id(self.generation)
            .with_member_id(str_bytes(&self.member_id))
            .with_assignments(
                assignments
                    .into_iter()
                    .map(|(member, assignment)| {
                        sync_group_request::SyncGroupRequestAssignment::default()
                            .with_member_id(str_bytes(&member))
                            .with_assignment(assignment)
                    })
                    .collect(),
            );
        if version >= 5 {
            request.protocol_type = Some(str_bytes(&self.config.protocol_type));
            request.protocol_name = Some(str_bytes(protocol));
        }
        let synced = connection.send(request, version).await?;
        ClientError::check(synced.error_code, None, || self.context())?;
        Ok(synced.assignment)
    }

    /// One heartbeat. `Err` with REBALANCE_IN_PROGRESS means: rejoin.
    pub async fn heartbeat(&self) -> Result<()> {
        let connection = self.cluster.coordinator(&self.config.group).await?;
        let version = connection.version_at_least::<HeartbeatRequest>(0)?;
        let request = HeartbeatRequest::default()
            .with_group_id(group_id(&self.config.group))
            .with_generation_id(self.generation)
            .with_member_id(str_bytes(&self.member_id));
        let response = connection.send(request, version).await?;
        ClientError::check(response.error_code, None, || self.context())
    }

    /// Leaves the group, so that it rebalances now rather than after the session timeout.
    pub async fn leave(&mut self, reason: &str) -> Result<()> {
        let member_id = std::mem::take(&mut self.member_id);
        self.generation = -1;
        if member_id.is_empty() {
            return Ok(());
        }
        let connection = self.cluster.coordinator(&self.config.group).await?;
        let version = connection.version_at_least::<LeaveGroupRequest>(0)?;
        let mut request = LeaveGroupRequest::default().with_group_id(group_id(&self.config.group));
        if version >= 3 {
            let mut member = leave_group_request::MemberIdentity::default()
                .with_member_id(str_bytes(&member_id));
            if version >= 5 {
                member.reason = Some(StrBytes::from_string(reason.to_owned()));
            }
            request.members = vec![member];
        } else {
            request.member_id = str_bytes(&member_id);
        }
        let response = connection.send(request, version).await?;
        ClientError::check(response.error_code, None, || self.context())
    }
}
