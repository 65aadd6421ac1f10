//! The coordinator driven by calls with explicit times, no sockets: a harness that plays
//! clients, and one file per area (rebalances, errors, static membership, offsets, admin,
//! recovery, every response at every version).

mod admin;
mod classic;
mod errors;
mod every_version;
mod offsets;
mod replay;
mod static_membership;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::{GroupConfig, GroupCoordinator, GroupState, Output, Token};

/// Records for the shell to append, as `Output::Persist` carries them.
pub(crate) type Records = Vec<(Bytes, Option<Bytes>)>;

pub(crate) const SESSION_MS: i32 = 10_000;
pub(crate) const REBALANCE_MS: i32 = 30_000;
pub(crate) const DELAY_MS: i64 = 3_000;

pub(crate) fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

pub(crate) fn gid(value: &str) -> GroupId {
    GroupId(s(value))
}

/// A `consumer` protocol subscription (ConsumerProtocolSubscription v0) to `topics`.
pub(crate) fn subscription(topics: &[&str]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    buf.put_i32(topics.len() as i32);
    for topic in topics {
        buf.put_i16(topic.len() as i16);
        buf.put_slice(topic.as_bytes());
    }
    buf.put_i32(-1);
    buf.freeze()
}

pub(crate) fn join_request(
    group: &str,
    member_id: &str,
    instance: Option<&str>,
    protocols: &[(&str, Bytes)],
) -> JoinGroupRequest {
    let mut request = JoinGroupRequest::default();
    request.group_id = gid(group);
    request.member_id = s(member_id);
    request.group_instance_id = instance.map(s);
    request.session_timeout_ms = SESSION_MS;
    request.rebalance_timeout_ms = REBALANCE_MS;
    request.protocol_type = s("consumer");
    request.protocols = protocols
        .iter()
        .map(|(name, metadata)| {
            let mut protocol = JoinGroupRequestProtocol::default();
            protocol.name = s(name);
            protocol.metadata = metadata.clone();
            protocol
        })
        .collect();
    request
}

pub(crate) fn range() -> Vec<(&'static str, Bytes)> {
    vec![("range", subscription(&["t"]))]
}

/// Plays clients against one coordinator and keeps what it emitted.
pub(crate) struct Harness {
    pub(crate) coordinator: GroupCoordinator,
    pub(crate) out: Vec<Output>,
    next_token: Token,
    next_seed: u128,
}

/// One member as its client sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Joined {
    pub(crate) member_id: String,
    pub(crate) generation: i32,
    pub(crate) leader: String,
    pub(crate) members: Vec<String>,
}

impl Harness {
    pub(crate) fn new() -> Self {
        Harness::with_config(GroupConfig {
            group_initial_rebalance_delay_ms: DELAY_MS,
            ..GroupConfig::default()
        })
    }

    pub(crate) fn with_config(config: GroupConfig) -> Self {
        Harness {
            coordinator: GroupCoordinator::new(config),
            out: Vec::new(),
            next_token: 1,
            next_seed: 1,
        }
    }

    pub(crate) fn token(&mut self) -> Token {
        self.next_token += 1;
        self.next_token
    }

    pub(crate) fn seed(&mut self) -> uuid::Uuid {
        self.next_seed += 1;
        uuid::Uuid::from_u128(self.next_seed)
    }

    /// Sends a JoinGroup; returns its token.
    pub(crate) fn send_join(
        &mut self,
        now_ms: i64,
        version: i16,
        request: JoinGroupRequest,
    ) -> Token {
        let token = self.token();
        let seed = self.seed();
        self.coordinator.join_group(
            now_ms,
            token,
            version,
            "client",
            "/127.0.0.1",
            seed,
            request,
            &mut self.out,
        );
        token
    }

    /// The answer to a parked or immediate JoinGroup, if there is one yet.
    pub(crate) fn join_answer(&mut self, token: Token) -> Option<JoinGroupResponse> {
        let index = self
            .out
            .iter()
            .position(|o| matches!(o, Output::Join { token: t, .. } if *t == token))?;
        match self.out.remove(index) {
            Output::Join { response, .. } => Some(response),
            _ => None,
        }
    }

    pub(crate) fn sync_answer(&mut self, token: Token) -> Option<SyncGroupResponse> {
        let index = self
            .out
            .iter()
            .position(|o| matches!(o, Output::Sync { token: t, .. } if *t == token))?;
        match self.out.remove(index) {
            Output::Sync { response, .. } => Some(response),
            _ => None,
        }
    }

    /// Takes every Persist output, in order.
    pub(crate) fn persisted(&mut self) -> Vec<(String, Records)> {
        let mut taken = Vec::new();
        self.out.retain(|o| match o {
            Output::Persist { group, records } => {
                taken.push((group.clone(), records.clone()));
                false
            }
            _ => true,
        });
        taken
    }

    /// A v9 member's first join: MEMBER_ID_REQUIRED, then the join that parks. Returns the
    /// member id and the parked token.
    pub(crate) fn join_new(&mut self, now_ms: i64, group: &str) -> (String, Token) {
        self.join_new_with(now_ms, group, range())
    }

    pub(crate) fn join_new_with(
        &mut self,
        now_ms: i64,
        group: &str,
        protocols: Vec<(&str, Bytes)>,
    ) -> (String, Token) {
        let token = self.send_join(now_ms, 9, join_request(group, "", None, &protocols));
        let response = self.join_answer(token).expect("MEMBER_ID_REQUIRED at once");
        assert_eq!(response.error_code, 79, "MEMBER_ID_REQUIRED");
        let member_id = response.member_id.to_string();
        let token = self.send_join(now_ms, 9, join_request(group, &member_id, None, &protocols));
        (member_id, token)
    }

    /// Rejoin of a known member with the same metadata.
    pub(crate) fn rejoin(&mut self, now_ms: i64, group: &str, member_id: &str) -> Token {
        self.send_join(now_ms, 9, join_request(group, member_id, None, &range()))
    }

    pub(crate) fn joined(&mut self, token: Token) -> Joined {
        let response = self
            .join_answer(token)
            .unwrap_or_else(|| panic!("join {token} not answered; outputs: {:?}", self.out));
        assert_eq!(response.error_code, 0, "join {token}: {response:?}");
        Joined {
            member_id: response.member_id.to_string(),
            generation: response.generation_id,
            leader: response.leader.to_string(),
            members: response
                .members
                .iter()
                .map(|m| m.member_id.to_string())
                .collect(),
        }
    }

    pub(crate) fn send_sync(
        &mut self,
        now_ms: i64,
        group: &str,
        member_id: &str,
        generation: i32,
        assignments: &[(&str, &[u8])],
    ) -> Token {
        let token = self.token();
        let mut request = SyncGroupRequest::default();
        request.group_id = gid(group);
        request.member_id = s(member_id);
        request.generation_id = generation;
        request.assignments = assignments
            .iter()
            .map(|(member, bytes)| {
                let mut assignment = SyncGroupRequestAssignment::default();
                assignment.member_id = s(member);
                assignment.assignment = Bytes::copy_from_slice(bytes);
                assignment
            })
            .collect();
        self.coordinator
            .sync_group(now_ms, token, 5, request, &mut self.out);
        token
    }

    pub(crate) fn heartbeat(
        &mut self,
        now_ms: i64,
        group: &str,
        member_id: &str,
        generation: i32,
    ) -> i16 {
        let mut request = HeartbeatRequest::default();
        request.group_id = gid(group);
        request.member_id = s(member_id);
        request.generation_id = generation;
        self.coordinator.heartbeat(now_ms, 4, request).error_code
    }

    pub(crate) fn leave(
        &mut self,
        now_ms: i64,
        group: &str,
        member_id: &str,
    ) -> LeaveGroupResponse {
        let mut request = LeaveGroupRequest::default();
        request.group_id = gid(group);
        let mut member = MemberIdentity::default();
        member.member_id = s(member_id);
        request.members = vec![member];
        self.coordinator
            .leave_group(now_ms, 5, request, &mut self.out)
    }

    pub(crate) fn commit(
        &mut self,
        now_ms: i64,
        group: &str,
        member_id: &str,
        generation: i32,
        offsets: &[(&str, i32, i64)],
    ) -> Vec<i16> {
        let request = commit_request(group, member_id, generation, offsets);
        let plan = self.coordinator.prepare_offset_commit(now_ms, 9, request);
        self.coordinator.apply_offset_commit(plan.pending);
        plan.response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect()
    }

    pub(crate) fn state(&self, group: &str) -> Option<GroupState> {
        self.coordinator.group_state(group)
    }

    pub(crate) fn describe(&self, group: &str) -> describe_groups_response::DescribedGroup {
        let mut request = DescribeGroupsRequest::default();
        request.groups = vec![gid(group)];
        self.coordinator
            .describe_groups(5, request)
            .groups
            .remove(0)
    }

    pub(crate) fn tick(&mut self, now_ms: i64) {
        self.coordinator.tick(now_ms, &mut self.out);
    }

    /// Three members joined within the initial delay, the leader synced `assignments`;
    /// returns (leader, followers..., generation) at time 10_000, group Stable.
    pub(crate) fn stable_group(&mut self, group: &str) -> (Vec<String>, i32) {
        let (a, ta) = self.join_new(0, group);
        let (b, tb) = self.join_new(1_000, group);
        let (c, tc) = self.join_new(2_000, group);
        self.tick(3_000);
        self.tick(6_000);
        let ja = self.joined(ta);
        let jb = self.joined(tb);
        let jc = self.joined(tc);
        assert_eq!(ja.leader, a);
        let generation = ja.generation;
        let sb = self.send_sync(6_100, group, &b, generation, &[]);
        let sa = self.send_sync(
            6_200,
            group,
            &a,
            generation,
            &[(a.as_str(), b"A"), (b.as_str(), b"B"), (c.as_str(), b"C")],
        );
        let sc = self.send_sync(6_300, group, &c, generation, &[]);
        for token in [sa, sb, sc] {
            assert_eq!(self.sync_answer(token).map(|r| r.error_code), Some(0));
        }
        assert_eq!(jb.generation, generation);
        assert_eq!(jc.generation, generation);
        self.persisted();
        assert_eq!(self.state(group), Some(GroupState::Stable));
        (vec![a, b, c], generation)
    }
}

pub(crate) fn commit_request(
    group: &str,
    member_id: &str,
    generation: i32,
    offsets: &[(&str, i32, i64)],
) -> OffsetCommitRequest {
    let mut request = OffsetCommitRequest::default();
    request.group_id = gid(group);
    request.member_id = s(member_id);
    request.generation_id_or_member_epoch = generation;
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset) in offsets {
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = *partition;
        p.committed_offset = *offset;
        p.committed_leader_epoch = 4;
        p.committed_metadata = Some(s("meta"));
        match topics.iter_mut().find(|t| t.name.0.as_str() == *topic) {
            Some(t) => t.partitions.push(p),
            None => {
                let mut t = OffsetCommitRequestTopic::default();
                t.name = TopicName(s(topic));
                t.partitions.push(p);
                topics.push(t);
            }
        }
    }
    request.topics = topics;
    request
}

#[test]
fn partition_for_matches_java_string_hash_code() {
    // "my-group".hashCode() by hand: s[0]*31^(n-1) + ... + s[n-1], in wrapping i32.
    let by_hand = "my-group"
        .chars()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
    assert_eq!(by_hand, -1_906_497_762);
    assert_eq!(
        GroupCoordinator::partition_for("my-group", 50),
        1_906_497_762 % 50
    );
    // Known Java values: "hello".hashCode() == 99162322; "polygenelubricants".hashCode() is
    // Integer.MIN_VALUE, which Utils.abs maps to 0.
    assert_eq!(
        GroupCoordinator::partition_for("hello", 50),
        99_162_322 % 50
    );
    assert_eq!(GroupCoordinator::partition_for("polygenelubricants", 50), 0);
    assert_eq!(GroupCoordinator::partition_for("", 50), 0);
    // Outside the BMP, String.hashCode runs over UTF-16 surrogates: "😀" is 0xD83D, 0xDE00.
    assert_eq!(
        GroupCoordinator::partition_for("😀", 1_000_000),
        (0xD83D * 31 + 0xDE00) % 1_000_000
    );
}
