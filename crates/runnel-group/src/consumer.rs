//! The consumer group protocol of KIP-848 (`group.protocol=consumer`): ConsumerGroupHeartbeat
//! and ConsumerGroupDescribe, with server-side assignment.
//!
//! [`ConsumerGroups`] holds every group of type `consumer` this coordinator serves. It is a pure
//! state machine: it performs no I/O, reads no clock and draws no randomness. The time
//! (`now_ms`), a fresh uuid for server-generated member ids, the client's id and host, and a
//! view of the topics ([`TopicView`]) arrive with each call; the answer is the response message.
//! The broker shell owns the socket, the timer (it calls [`ConsumerGroups::tick`] at
//! [`ConsumerGroups::next_deadline_ms`] and when topics change) and the lock around this value.
//!
//! How a group moves, in the protocol's own words:
//!
//! - The **group epoch** goes up by one whenever membership or a subscription changes, or a
//!   subscribed topic appears, disappears or grows partitions. For each new group epoch the
//!   group's server assignor ([`crate::assignor`]) computes the **target assignment**, stamped
//!   with that epoch (the *assignment epoch*).
//! - Each member then **reconciles** on its own heartbeats, never stopping the others: it is
//!   first told to revoke the partitions it must give up (its member epoch stays put, and the
//!   rebalance timeout starts), then, once a heartbeat reports it no longer owns them, it moves
//!   to the assignment epoch and is given its new partitions, except those another member has
//!   not released yet, which it gets on a later heartbeat once they are free. A partition is
//!   therefore never given to a member while another member may still own it, and a member never
//!   stops consuming the partitions it keeps.
//! - A heartbeat's response carries the member's assignment only when it changed since the last
//!   response to that member, or when the request was a full one (a join, or every field set).
//! - A member silent for `session_timeout_ms`, or that does not revoke within its rebalance
//!   timeout, is removed and its partitions reassigned. A static member (`group.instance.id`)
//!   that leaves with epoch -2 keeps its partitions for the session timeout, so that its next
//!   incarnation, joining with the same instance id, gets them back without a rebalance.
//!
//! Deliberately not here: committed offsets (this type only answers whether a member may
//! commit, [`ConsumerGroups::validate_offset_commit`]), the classic protocol, persistence of
//! group state (after a restart, members are answered `UNKNOWN_MEMBER_ID` and rejoin), rack-aware
//! assignment, client-side assignors, and authorization.
//!
//! ```
//! use runnel_group::consumer::{ConsumerGroupConfig, ConsumerGroups, TopicView};
//! use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, GroupId, TopicName};
//! use uuid::Uuid;
//!
//! struct OneTopic;
//! impl TopicView for OneTopic {
//!     fn topic_id(&self, name: &str) -> Option<Uuid> { (name == "orders").then(|| Uuid::from_u128(7)) }
//!     fn topic_name(&self, id: Uuid) -> Option<String> { (id == Uuid::from_u128(7)).then(|| "orders".into()) }
//!     fn partition_count(&self, id: Uuid) -> Option<i32> { (id == Uuid::from_u128(7)).then_some(3) }
//!     fn topic_names(&self) -> Vec<String> { vec!["orders".into()] }
//! }
//!
//! let mut groups = ConsumerGroups::new(ConsumerGroupConfig::default());
//! let mut join = ConsumerGroupHeartbeatRequest::default();
//! join.group_id = GroupId("billing".into());
//! join.member_id = "member-1".into();
//! join.member_epoch = 0;
//! join.rebalance_timeout_ms = 30_000;
//! join.subscribed_topic_names = Some(vec![TopicName("orders".into())]);
//! join.topic_partitions = Some(vec![]);
//! let response = groups.heartbeat(0, 1, Uuid::nil(), join, &OneTopic);
//! assert_eq!(response.error_code, 0);
//! assert_eq!(response.member_epoch, 1);
//! let assignment = response.assignment.expect("a join is answered with the assignment");
//! assert_eq!(assignment.topic_partitions[0].partitions, vec![0, 1, 2]);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{
    self as describe_response, DescribedGroup,
};
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedPartitions;
use kafka_protocol::messages::consumer_group_heartbeat_response as heartbeat_response;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, GroupId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use regex::Regex;
use uuid::Uuid;

use crate::assignor::{Assignor, MemberSpec, TopicPartitionSet};

/// The member epoch a member sends to join (or rejoin) the group.
pub const JOIN_GROUP_MEMBER_EPOCH: i32 = 0;
/// The member epoch a member sends to leave the group for good.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// The member epoch a static member sends to leave temporarily, keeping its partitions.
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// ConsumerGroupDescribe v1's `member_type` of a member speaking the consumer protocol.
const MEMBER_TYPE_CONSUMER: i8 = 1;

/// Compiled regular expressions are capped, as a client chooses them.
const REGEX_SIZE_LIMIT_BYTES: usize = 1 << 20;

/// Coordinator settings for consumer groups (Kafka's `group.consumer.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupConfig {
    /// `group.consumer.session.timeout.ms`: a member silent this long is removed.
    pub session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`: told to every member in every response.
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`: members per group; a join beyond it gets
    /// GROUP_MAX_SIZE_REACHED.
    pub max_size: usize,
    /// `group.consumer.assignors`' first entry: the assignor of groups whose members name none.
    /// Must be an [`Assignor`] name ([`Assignor::from_name`] validates it).
    pub default_assignor: &'static str,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        ConsumerGroupConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            // Kafka's default is Integer.MAX_VALUE; the bound still exists and is configurable.
            max_size: i32::MAX as usize,
            default_assignor: "uniform",
        }
    }
}

/// What the groups need to know about topics; the broker implements it.
///
/// Contract: the answers agree with each other at any one call (a name from `topic_names` has a
/// `topic_id`, whose `topic_name` is that name and whose `partition_count` is `Some`); a topic's
/// id never changes while it exists (a re-created topic has a new id); partition counts never
/// shrink. `topic_names` lists the topics a regular expression subscription may match: internal
/// topics such as `__consumer_offsets` should be left out of it.
pub trait TopicView {
    /// The id of the topic called `name`, if it exists.
    fn topic_id(&self, name: &str) -> Option<Uuid>;
    /// The name of the topic with id `id`, if it exists.
    fn topic_name(&self, id: Uuid) -> Option<String>;
    /// The number of partitions of the topic with id `id`, if it exists.
    fn partition_count(&self, id: Uuid) -> Option<i32>;
    /// Every topic a regular expression subscription may match.
    fn topic_names(&self) -> Vec<String>;
}

/// Who sent a heartbeat, as ConsumerGroupDescribe reports it: the request header's client id,
/// and the peer address as Kafka prints it (`/127.0.0.1`). Empty strings when unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientInfo<'a> {
    /// The request header's `client_id`.
    pub client_id: &'a str,
    /// The client's address, `/` followed by the IP.
    pub client_host: &'a str,
}

/// Every consumer group of this coordinator.
#[derive(Debug)]
pub struct ConsumerGroups {
    config: ConsumerGroupConfig,
    default_assignor: Assignor,
    groups: BTreeMap<String, Group>,
}

impl ConsumerGroups {
    /// No groups yet.
    ///
    /// # Panics
    ///
    /// If `config.default_assignor` names no [`Assignor`]: the broker validates its
    /// configuration before it starts.
    pub fn new(config: ConsumerGroupConfig) -> Self {
        let Some(default_assignor) = Assignor::from_name(config.default_assignor) else {
            panic!(
                "default consumer group assignor {:?} is not one of uniform, range",
                config.default_assignor
            );
        };
        ConsumerGroups {
            config,
            default_assignor,
            groups: BTreeMap::new(),
        }
    }

    /// Answers one ConsumerGroupHeartbeat (join, heartbeat, or leave) at request `version`.
    /// `member_id_seed` becomes the member id of a v0 member joining without one. Errors are in
    /// the response's `error_code`; a refused request changes nothing. ConsumerGroupDescribe
    /// then shows empty client ids and hosts: see [`Self::heartbeat_with_client`].
    pub fn heartbeat(
        &mut self,
        now_ms: i64,
        version: i16,
        member_id_seed: Uuid,
        request: ConsumerGroupHeartbeatRequest,
        topics: &dyn TopicView,
    ) -> ConsumerGroupHeartbeatResponse {
        self.heartbeat_with_client(
            now_ms,
            version,
            member_id_seed,
            request,
            topics,
            ClientInfo::default(),
        )
    }

    /// [`Self::heartbeat`], recording the sender's client id and host for
    /// ConsumerGroupDescribe.
    pub fn heartbeat_with_client(
        &mut self,
        now_ms: i64,
        version: i16,
        member_id_seed: Uuid,
        request: ConsumerGroupHeartbeatRequest,
        topics: &dyn TopicView,
        client: ClientInfo<'_>,
    ) -> ConsumerGroupHeartbeatResponse {
        let mut response = ConsumerGroupHeartbeatResponse::default();
        response.heartbeat_interval_ms = self.config.heartbeat_interval_ms;
        match self.heartbeat_or_refusal(now_ms, version, member_id_seed, &request, topics, client) {
            Ok(reply) => {
                response.member_id = Some(StrBytes::from_string(reply.member_id));
                response.member_epoch = reply.member_epoch;
                response.assignment = reply.assignment.map(|assigned| {
                    let mut assignment = heartbeat_response::Assignment::default();
                    assignment.topic_partitions = assigned
                        .into_iter()
                        .map(|(topic_id, partitions)| {
                            let mut entry = heartbeat_response::TopicPartitions::default();
                            entry.topic_id = topic_id;
                            entry.partitions = partitions.into_iter().collect();
                            entry
                        })
                        .collect();
                    assignment
                });
            }
            Err(refusal) => {
                response.error_code = refusal.error.code();
                response.error_message = Some(StrBytes::from_string(refusal.message));
            }
        }
        response
    }

    fn heartbeat_or_refusal(
        &mut self,
        now_ms: i64,
        version: i16,
        member_id_seed: Uuid,
        request: &ConsumerGroupHeartbeatRequest,
        topics: &dyn TopicView,
        client: ClientInfo<'_>,
    ) -> Result<Reply, Refusal> {
        let update = validate(version, request)?;
        let group_id = request.group_id.as_str();
        let epoch = request.member_epoch;
        if epoch == LEAVE_GROUP_MEMBER_EPOCH || epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            let Some(group) = self.groups.get_mut(group_id) else {
                return Err(group_not_found(group_id));
            };
            return group.leave(now_ms, request, topics, self.default_assignor);
        }
        let created = epoch == JOIN_GROUP_MEMBER_EPOCH && !self.groups.contains_key(group_id);
        if created {
            self.groups
                .insert(group_id.to_string(), Group::new(self.default_assignor));
        }
        let Some(group) = self.groups.get_mut(group_id) else {
            // Group state is not persisted: after a restart the members' heartbeats land here,
            // and UNKNOWN_MEMBER_ID makes them rejoin.
            return Err(group_not_found(group_id));
        };
        let context = Context {
            now_ms,
            member_id_seed,
            client,
            topics,
            config: &self.config,
            default_assignor: self.default_assignor,
        };
        let result = group.heartbeat(&context, request, update);
        if result.is_err() && created {
            self.groups.remove(group_id);
        }
        result
    }

    /// Answers one ConsumerGroupDescribe at request `version`. Unknown groups get
    /// GROUP_ID_NOT_FOUND in their entry.
    pub fn describe(
        &self,
        version: i16,
        request: ConsumerGroupDescribeRequest,
        topics: &dyn TopicView,
    ) -> ConsumerGroupDescribeResponse {
        let mut response = ConsumerGroupDescribeResponse::default();
        response.groups = request
            .group_ids
            .into_iter()
            .map(|group_id| match self.groups.get(group_id.as_str()) {
                Some(group) => group.describe(version, group_id, topics),
                None => {
                    let mut described = DescribedGroup::default();
                    described.error_code = ResponseError::GroupIdNotFound.code();
                    described.error_message = Some(StrBytes::from_string(format!(
                        "Group {} not found.",
                        group_id.as_str()
                    )));
                    described.group_id = group_id;
                    described
                }
            })
            .collect();
        response
    }

    /// Removes members silent for `session_timeout_ms` (static members that left with epoch -2
    /// included) and members that did not revoke partitions within their rebalance timeout, then
    /// reassigns; and starts a new group epoch where a subscribed topic appeared, disappeared or
    /// grew partitions. Call it at [`Self::next_deadline_ms`] and whenever topics change.
    pub fn tick(&mut self, now_ms: i64, topics: &dyn TopicView) {
        let session_timeout_ms = i64::from(self.config.session_timeout_ms);
        for group in self.groups.values_mut() {
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|member| member.deadline_ms(session_timeout_ms) <= now_ms)
                .map(|member| member.member_id.clone())
                .collect();
            for member_id in &expired {
                group.remove_member(member_id);
            }
            group.maybe_bump(topics, !expired.is_empty(), self.default_assignor);
        }
    }

    /// The earliest time at which [`Self::tick`] has a member to expire, if any member exists.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let session_timeout_ms = i64::from(self.config.session_timeout_ms);
        self.groups
            .values()
            .flat_map(|group| group.members.values())
            .map(|member| member.deadline_ms(session_timeout_ms))
            .min()
    }

    /// Whether `group` is a consumer group of this coordinator (empty ones included).
    pub fn contains(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    /// Whether an OffsetCommit (v9+) from `member_id` at `member_epoch` may commit to `group`.
    /// A member commits at its current member epoch, which stays put while it revokes, so it can
    /// commit before giving partitions up. Without group management (admin clients, assign())
    /// a commit carries an empty member id and epoch -1 and is allowed only while the group has
    /// no members. Errors: UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH (any other epoch).
    pub fn validate_offset_commit(
        &self,
        group: &str,
        member_id: &str,
        member_epoch: i32,
    ) -> Result<(), i16> {
        let Some(group) = self.groups.get(group) else {
            return if member_epoch < 0 {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId.code())
            };
        };
        if member_epoch < 0 && group.members.is_empty() {
            return Ok(());
        }
        let Some(member) = group.members.get(member_id) else {
            return Err(ResponseError::UnknownMemberId.code());
        };
        if member.member_epoch != member_epoch {
            return Err(ResponseError::StaleMemberEpoch.code());
        }
        Ok(())
    }

    /// Whether an OffsetFetch (v9+) may read `group`'s offsets: always without a member id and
    /// with a negative epoch (admin clients, older versions); otherwise as for commits.
    pub fn validate_offset_fetch(
        &self,
        group: &str,
        member_id: &str,
        member_epoch: i32,
    ) -> Result<(), i16> {
        if member_id.is_empty() && member_epoch < 0 {
            return Ok(());
        }
        let member = self
            .groups
            .get(group)
            .and_then(|group| group.members.get(member_id));
        match member {
            None => Err(ResponseError::UnknownMemberId.code()),
            Some(member) if member.member_epoch != member_epoch => {
                Err(ResponseError::StaleMemberEpoch.code())
            }
            Some(_) => Ok(()),
        }
    }

    /// (group id, state) of every consumer group, for ListGroups (type "consumer"). States:
    /// "Empty", "Assigning", "Reconciling", "Stable" ("Dead" groups are gone from here).
    pub fn list(&self) -> Vec<(String, &'static str)> {
        self.groups
            .iter()
            .map(|(group_id, group)| (group_id.clone(), group.state().name()))
            .collect()
    }

    /// Forgets every group `moved` names: another broker coordinates it now. Its members
    /// learn it from their next heartbeat (NOT_COORDINATOR) and join there.
    pub fn unload(&mut self, moved: impl Fn(&str) -> bool) {
        self.groups.retain(|group_id, _| !moved(group_id));
    }

    /// DeleteGroups: removes a group with no members (a static member that left with epoch -2
    /// still counts until its session expires). Errors: NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND.
    pub fn delete(&mut self, group: &str) -> Result<(), i16> {
        match self.groups.get(group) {
            None => Err(ResponseError::GroupIdNotFound.code()),
            Some(found) if !found.members.is_empty() => Err(ResponseError::NonEmptyGroup.code()),
            Some(_) => {
                self.groups.remove(group);
                Ok(())
            }
        }
    }
}

/// A refused heartbeat: the error code and the message sent with it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    error: ResponseError,
    message: String,
}

impl Refusal {
    fn new(error: ResponseError, message: impl Into<String>) -> Self {
        Refusal {
            error,
            message: message.into(),
        }
    }
}

fn invalid_request(message: &str) -> Refusal {
    Refusal::new(ResponseError::InvalidRequest, message)
}

fn group_not_found(group_id: &str) -> Refusal {
    Refusal::new(
        ResponseError::UnknownMemberId,
        format!("Consumer group {group_id} not found."),
    )
}

/// A successful heartbeat's answer.
#[derive(Debug)]
struct Reply {
    member_id: String,
    member_epoch: i32,
    assignment: Option<TopicPartitionSet>,
}

/// Everything a heartbeat needs besides the request and the group.
struct Context<'a> {
    now_ms: i64,
    member_id_seed: Uuid,
    client: ClientInfo<'a>,
    topics: &'a dyn TopicView,
    config: &'a ConsumerGroupConfig,
    default_assignor: Assignor,
}

/// A subscription by regular expression, as the client wrote it and compiled to match whole
/// topic names (Kafka matches with `Pattern.matches`).
#[derive(Debug, Clone)]
struct TopicRegex {
    pattern: String,
    regex: Regex,
}

impl TopicRegex {
    fn compile(pattern: &str) -> Result<TopicRegex, Refusal> {
        regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(REGEX_SIZE_LIMIT_BYTES)
            .build()
            .map(|regex| TopicRegex { pattern: pattern.to_string(), regex })
            .map_err(|error| {
                Refusal::new(
                    ResponseError::InvalidRegularExpression,
                    format!("SubscribedTopicRegex {pattern:?} is not a valid regular expression: {error}"),
                )
            })
    }
}

/// The parts of a request that `validate` parsed.
#[derive(Debug)]
struct ParsedRequest {
    /// None: unchanged; Some(None): no regex any more (an empty string); Some(Some): new regex.
    regex: Option<Option<TopicRegex>>,
    assignor: Option<Assignor>,
}

/// The request checks Kafka makes before touching any group.
fn validate(
    version: i16,
    request: &ConsumerGroupHeartbeatRequest,
) -> Result<ParsedRequest, Refusal> {
    let epoch = request.member_epoch;
    if request.group_id.is_empty() {
        return Err(invalid_request("GroupId can't be empty."));
    }
    // v1 (KIP-1082): the client generates its member id; v0 joins without one.
    if (version >= 1 || epoch != JOIN_GROUP_MEMBER_EPOCH) && request.member_id.is_empty() {
        return Err(invalid_request("MemberId can't be empty."));
    }
    if request.instance_id.as_ref().is_some_and(|id| id.is_empty()) {
        return Err(invalid_request("InstanceId can't be empty."));
    }
    if request.rack_id.as_ref().is_some_and(|id| id.is_empty()) {
        return Err(invalid_request("RackId can't be empty."));
    }
    if request.rebalance_timeout_ms < -1 {
        return Err(invalid_request(
            "RebalanceTimeoutMs must be -1 (unchanged) or positive.",
        ));
    }
    match epoch {
        JOIN_GROUP_MEMBER_EPOCH => {
            if request.rebalance_timeout_ms == -1 {
                return Err(invalid_request(
                    "RebalanceTimeoutMs must be provided in first request.",
                ));
            }
            if !request.topic_partitions.as_ref().is_some_and(Vec::is_empty) {
                return Err(invalid_request(
                    "TopicPartitions must be empty when (re-)joining.",
                ));
            }
            if request.subscribed_topic_names.is_none() && request.subscribed_topic_regex.is_none()
            {
                return Err(invalid_request(
                    "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.",
                ));
            }
        }
        LEAVE_GROUP_STATIC_MEMBER_EPOCH if request.instance_id.is_none() => {
            return Err(invalid_request("InstanceId can't be null."));
        }
        epoch if epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH => {
            return Err(invalid_request("MemberEpoch is invalid."));
        }
        _ => {}
    }
    let assignor = match request.server_assignor.as_deref() {
        None => None,
        Some(name) => match Assignor::from_name(name) {
            Some(assignor) => Some(assignor),
            None => {
                return Err(Refusal::new(
                    ResponseError::UnsupportedAssignor,
                    format!(
                    "ServerAssignor {name} is not supported. Supported assignors: uniform, range."
                ),
                ))
            }
        },
    };
    let regex = match request.subscribed_topic_regex.as_deref() {
        None => None,
        Some("") => Some(None),
        Some(pattern) => Some(Some(TopicRegex::compile(pattern)?)),
    };
    Ok(ParsedRequest { regex, assignor })
}

/// Where a member is in reconciling its assignment with the target (Kafka's `MemberState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemberState {
    /// It owns what it was given at its member epoch.
    Stable,
    /// It must first revoke `pending_revocation`; it stays at its member epoch meanwhile.
    UnrevokedPartitions,
    /// It is at the assignment epoch, waiting for partitions other members still hold.
    UnreleasedPartitions,
}

#[derive(Debug, Clone)]
struct Member {
    member_id: String,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    rebalance_timeout_ms: i32,
    subscribed_topic_names: BTreeSet<String>,
    subscribed_topic_regex: Option<TopicRegex>,
    server_assignor: Option<Assignor>,
    state: MemberState,
    member_epoch: i32,
    previous_member_epoch: i32,
    /// What the member was given and may consume (pending revocations excluded).
    assigned: TopicPartitionSet,
    /// What the member was told to give up and has not yet reported released.
    pending_revocation: TopicPartitionSet,
    /// When it must have revoked `pending_revocation`.
    revocation_deadline_ms: Option<i64>,
    last_heartbeat_ms: i64,
    /// The assignment in the last response to this member, so that unchanged ones are not sent.
    last_sent_assignment: Option<TopicPartitionSet>,
}

impl Member {
    fn new(member_id: String, now_ms: i64) -> Member {
        Member {
            member_id,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: 0,
            subscribed_topic_names: BTreeSet::new(),
            subscribed_topic_regex: None,
            server_assignor: None,
            state: MemberState::Stable,
            member_epoch: 0,
            previous_member_epoch: 0,
            assigned: TopicPartitionSet::new(),
            pending_revocation: TopicPartitionSet::new(),
            revocation_deadline_ms: None,
            last_heartbeat_ms: now_ms,
            last_sent_assignment: None,
        }
    }

    /// When the member is removed unless it heartbeats (or revokes) first.
    fn deadline_ms(&self, session_timeout_ms: i64) -> i64 {
        let session_deadline_ms = self.last_heartbeat_ms.saturating_add(session_timeout_ms);
        self.revocation_deadline_ms
            .map_or(session_deadline_ms, |deadline| {
                deadline.min(session_deadline_ms)
            })
    }

    /// Every partition this member may still own: no other member may be given these.
    fn held(&self) -> impl Iterator<Item = (Uuid, i32)> + '_ {
        partitions(&self.assigned).chain(partitions(&self.pending_revocation))
    }
}

fn partitions(set: &TopicPartitionSet) -> impl Iterator<Item = (Uuid, i32)> + '_ {
    set.iter().flat_map(|(&topic, partitions)| {
        partitions.iter().map(move |&partition| (topic, partition))
    })
}

fn contains(set: &TopicPartitionSet, topic: Uuid, partition: i32) -> bool {
    set.get(&topic)
        .is_some_and(|partitions| partitions.contains(&partition))
}

fn insert(set: &mut TopicPartitionSet, topic: Uuid, partition: i32) {
    set.entry(topic).or_default().insert(partition);
}

fn is_subset(owned: &TopicPartitionSet, of: &TopicPartitionSet) -> bool {
    partitions(owned).all(|(topic, partition)| contains(of, topic, partition))
}

fn owned_from_request(owned: &[OwnedPartitions]) -> TopicPartitionSet {
    let mut set = TopicPartitionSet::new();
    for entry in owned {
        set.entry(entry.topic_id)
            .or_default()
            .extend(entry.partitions.iter().copied());
    }
    set.retain(|_, partitions| !partitions.is_empty());
    set
}

/// How a heartbeat with epoch 0 found its member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// A member not in the group before: the group epoch moves.
    New,
    /// A known member (a heartbeat, or a rejoin with the same member id).
    Known,
    /// A static member's new incarnation took over its predecessor's place and partitions.
    Replaced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
}

impl GroupState {
    fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::Assigning => "Assigning",
            GroupState::Reconciling => "Reconciling",
            GroupState::Stable => "Stable",
        }
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug)]
struct Group {
    group_epoch: i32,
    /// The group epoch the target assignment was computed for.
    assignment_epoch: i32,
    /// The assignor that computed the target assignment.
    assignor: Assignor,
    target: BTreeMap<String, TopicPartitionSet>,
    members: BTreeMap<String, Member>,
    /// instance id -> member id, for static members.
    static_members: BTreeMap<String, String>,
    /// partition -> the member that holds it (assigned or pending revocation). At most one.
    holders: BTreeMap<(Uuid, i32), String>,
    /// Partition counts of the subscribed topics the target assignment was computed from.
    subscribed_partition_counts: BTreeMap<Uuid, i32>,
}

impl Group {
    fn new(assignor: Assignor) -> Group {
        Group {
            group_epoch: 0,
            assignment_epoch: 0,
            assignor,
            target: BTreeMap::new(),
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            holders: BTreeMap::new(),
            subscribed_partition_counts: BTreeMap::new(),
        }
    }

    fn state(&self) -> GroupState {
        if self.members.is_empty() {
            GroupState::Empty
        } else if self.group_epoch != self.assignment_epoch {
            GroupState::Assigning
        } else if self.members.values().any(|member| {
            member.member_epoch != self.assignment_epoch || member.state != MemberState::Stable
        }) {
            GroupState::Reconciling
        } else {
            GroupState::Stable
        }
    }

    fn heartbeat(
        &mut self,
        context: &Context<'_>,
        request: &ConsumerGroupHeartbeatRequest,
        update: ParsedRequest,
    ) -> Result<Reply, Refusal> {
        let epoch = request.member_epoch;
        let (member_id, arrival) = self.find_or_add_member(context, request)?;
        let Some(member) = self.members.get_mut(&member_id) else {
            unreachable!("find_or_add_member returns a member of the group");
        };
        member.last_heartbeat_ms = context.now_ms;
        member.client_id = context.client.client_id.to_string();
        member.client_host = context.client.client_host.to_string();
        if epoch == JOIN_GROUP_MEMBER_EPOCH
            && member.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH
        {
            // The same static member back after a temporary leave.
            member.member_epoch = 0;
            member.state = MemberState::Stable;
        }
        if request.rebalance_timeout_ms >= 0 {
            member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        }
        if let Some(rack_id) = &request.rack_id {
            member.rack_id = Some(rack_id.to_string());
        }
        let mut subscription_changed = arrival == Arrival::New;
        if let Some(names) = &request.subscribed_topic_names {
            let names: BTreeSet<String> = names.iter().map(|name| name.to_string()).collect();
            subscription_changed |= names != member.subscribed_topic_names;
            member.subscribed_topic_names = names;
        }
        if let Some(regex) = update.regex {
            let old = member
                .subscribed_topic_regex
                .as_ref()
                .map(|r| r.pattern.as_str());
            subscription_changed |= regex.as_ref().map(|r| r.pattern.as_str()) != old;
            member.subscribed_topic_regex = regex;
        }
        if let Some(assignor) = update.assignor {
            subscription_changed |= member.server_assignor != Some(assignor);
            member.server_assignor = Some(assignor);
        }

        self.maybe_bump(
            context.topics,
            subscription_changed,
            context.default_assignor,
        );

        let owned = if epoch == JOIN_GROUP_MEMBER_EPOCH {
            Some(TopicPartitionSet::new())
        } else {
            request.topic_partitions.as_deref().map(owned_from_request)
        };
        self.reconcile(&member_id, owned.as_ref(), context.now_ms, context.topics);

        let full_request = epoch == JOIN_GROUP_MEMBER_EPOCH
            || (request.rebalance_timeout_ms != -1
                && (request.subscribed_topic_names.is_some()
                    || request.subscribed_topic_regex.is_some())
                && request.topic_partitions.is_some());
        let Some(member) = self.members.get_mut(&member_id) else {
            unreachable!("reconcile keeps the member");
        };
        let assignment =
            if full_request || member.last_sent_assignment.as_ref() != Some(&member.assigned) {
                member.last_sent_assignment = Some(member.assigned.clone());
                Some(member.assigned.clone())
            } else {
                None
            };
        Ok(Reply {
            member_id,
            member_epoch: member.member_epoch,
            assignment,
        })
    }

    /// The member a non-leave heartbeat speaks for, after Kafka's fencing checks; joins add it.
    fn find_or_add_member(
        &mut self,
        context: &Context<'_>,
        request: &ConsumerGroupHeartbeatRequest,
    ) -> Result<(String, Arrival), Refusal> {
        let epoch = request.member_epoch;
        let instance_id = request.instance_id.as_deref();
        if epoch != JOIN_GROUP_MEMBER_EPOCH {
            let member_id = request.member_id.as_str();
            let Some(member) = self.members.get(member_id) else {
                return Err(Refusal::new(
                    ResponseError::UnknownMemberId,
                    format!("Member {member_id} is not a member of the group."),
                ));
            };
            if let Some(instance_id) = instance_id {
                match self.static_members.get(instance_id) {
                    None => {
                        return Err(Refusal::new(
                            ResponseError::UnknownMemberId,
                            format!("Instance id {instance_id} is unknown."),
                        ))
                    }
                    Some(holder) if holder != member_id => {
                        return Err(Refusal::new(
                            ResponseError::FencedInstanceId,
                            format!("Static member {member_id} with instance id {instance_id} was fenced by member {holder}."),
                        ))
                    }
                    Some(_) => {}
                }
            }
            // A member one epoch behind is accepted if it owns no more than it was given: the
            // response that moved it forward may have been lost.
            let tolerated = epoch == member.previous_member_epoch
                && request
                    .topic_partitions
                    .as_deref()
                    .is_some_and(|owned| is_subset(&owned_from_request(owned), &member.assigned));
            if epoch > member.member_epoch || (epoch < member.member_epoch && !tolerated) {
                return Err(Refusal::new(
                    ResponseError::FencedMemberEpoch,
                    format!(
                        "The member epoch {epoch} does not match the one known by the group coordinator ({}). \
                         The member must abandon all its partitions and rejoin.",
                        member.member_epoch
                    ),
                ));
            }
            return Ok((member_id.to_string(), Arrival::Known));
        }

        let member_id = if request.member_id.is_empty() {
            context.member_id_seed.to_string()
        } else {
            request.member_id.to_string()
        };
        if let Some(instance_id) = instance_id {
            if let Some(holder) = self.static_members.get(instance_id).cloned() {
                if holder == member_id {
                    return Ok((member_id, Arrival::Known));
                }
                let released = self.members.get(&holder).is_some_and(|previous| {
                    previous.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH
                });
                if !released || self.members.contains_key(&member_id) {
                    return Err(Refusal::new(
                        ResponseError::UnreleasedInstanceId,
                        format!(
                            "Static member {member_id} with instance id {instance_id} cannot join the group \
                             because the instance id is owned by member {holder}."
                        ),
                    ));
                }
                self.replace_static_member(&holder, &member_id);
                return Ok((member_id, Arrival::Replaced));
            }
        }
        if let Some(member) = self.members.get_mut(&member_id) {
            if let Some(instance_id) = instance_id {
                // A known member that now names an instance id becomes static.
                if let Some(old) = member.instance_id.replace(instance_id.to_string()) {
                    self.static_members.remove(&old);
                }
                self.static_members
                    .insert(instance_id.to_string(), member_id.clone());
            }
            return Ok((member_id, Arrival::Known));
        }
        if self.members.len() >= context.config.max_size {
            return Err(Refusal::new(
                ResponseError::GroupMaxSizeReached,
                format!(
                    "The consumer group has reached its maximum capacity of {} members.",
                    context.config.max_size
                ),
            ));
        }
        let mut member = Member::new(member_id.clone(), context.now_ms);
        if let Some(instance_id) = instance_id {
            member.instance_id = Some(instance_id.to_string());
            self.static_members
                .insert(instance_id.to_string(), member_id.clone());
        }
        self.members.insert(member_id.clone(), member);
        Ok((member_id, Arrival::New))
    }

    /// The new incarnation of a static member takes its predecessor's place: its partitions and
    /// its target assignment, with no new group epoch.
    fn replace_static_member(&mut self, previous_id: &str, member_id: &str) {
        let Some(mut member) = self.members.remove(previous_id) else {
            return;
        };
        debug_assert!(
            member.pending_revocation.is_empty(),
            "a temporary leave releases revocations"
        );
        member.member_id = member_id.to_string();
        member.member_epoch = 0;
        member.previous_member_epoch = 0;
        member.state = MemberState::Stable;
        member.revocation_deadline_ms = None;
        member.last_sent_assignment = None;
        for partition in member.held() {
            self.holders.insert(partition, member_id.to_string());
        }
        if let Some(target) = self.target.remove(previous_id) {
            self.target.insert(member_id.to_string(), target);
        }
        if let Some(instance_id) = &member.instance_id {
            self.static_members
                .insert(instance_id.clone(), member_id.to_string());
        }
        self.members.insert(member_id.to_string(), member);
    }

    fn leave(
        &mut self,
        now_ms: i64,
        request: &ConsumerGroupHeartbeatRequest,
        topics: &dyn TopicView,
        default_assignor: Assignor,
    ) -> Result<Reply, Refusal> {
        let member_id = request.member_id.as_str();
        if let Some(instance_id) = request.instance_id.as_deref() {
            match self.static_members.get(instance_id) {
                None => {
                    return Err(Refusal::new(
                        ResponseError::UnknownMemberId,
                        format!("Instance id {instance_id} is unknown."),
                    ))
                }
                Some(holder) if holder != member_id => {
                    return Err(Refusal::new(
                        ResponseError::FencedInstanceId,
                        format!("Static member {member_id} with instance id {instance_id} was fenced by member {holder}."),
                    ))
                }
                Some(_) => {}
            }
        } else if !self.members.contains_key(member_id) {
            return Err(Refusal::new(
                ResponseError::UnknownMemberId,
                format!("Member {member_id} is not a member of the group."),
            ));
        }
        if request.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            self.leave_temporarily(member_id, now_ms);
        } else {
            self.remove_member(member_id);
            self.maybe_bump(topics, true, default_assignor);
        }
        Ok(Reply {
            member_id: member_id.to_string(),
            member_epoch: request.member_epoch,
            assignment: None,
        })
    }

    /// A static member's epoch -2: it keeps its assignment (nobody else gets its partitions) until
    /// it rejoins or its session expires; what it was revoking is released, as it consumes nothing.
    fn leave_temporarily(&mut self, member_id: &str, now_ms: i64) {
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        for partition in partitions(&member.pending_revocation) {
            self.holders.remove(&partition);
        }
        member.pending_revocation.clear();
        member.revocation_deadline_ms = None;
        member.state = MemberState::Stable;
        if member.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            member.previous_member_epoch = member.member_epoch;
        }
        member.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
        member.last_heartbeat_ms = now_ms;
    }

    /// Removes a member and frees what it held; the caller starts a new group epoch.
    fn remove_member(&mut self, member_id: &str) {
        let Some(member) = self.members.remove(member_id) else {
            return;
        };
        for partition in member.held() {
            self.holders.remove(&partition);
        }
        if let Some(instance_id) = &member.instance_id {
            if self
                .static_members
                .get(instance_id)
                .is_some_and(|holder| holder == member_id)
            {
                self.static_members.remove(instance_id);
            }
        }
        self.target.remove(member_id);
    }

    /// Starts a new group epoch, and computes its target assignment, if `force` or if the
    /// subscribed topics or the group's assignor changed since the last one.
    fn maybe_bump(&mut self, topics: &dyn TopicView, force: bool, default_assignor: Assignor) {
        let (subscriptions, partition_counts) = self.resolve_subscriptions(topics);
        let assignor = self.preferred_assignor(default_assignor);
        if !force
            && partition_counts == self.subscribed_partition_counts
            && assignor == self.assignor
        {
            return;
        }
        let specs: BTreeMap<String, MemberSpec> = subscriptions
            .into_iter()
            .map(|(member_id, subscribed_topic_ids)| {
                let current = self.target.get(&member_id).cloned().unwrap_or_default();
                (
                    member_id,
                    MemberSpec {
                        subscribed_topic_ids,
                        current,
                    },
                )
            })
            .collect();
        self.target = assignor.assign(&specs, &partition_counts);
        self.group_epoch += 1;
        self.assignment_epoch = self.group_epoch;
        self.assignor = assignor;
        self.subscribed_partition_counts = partition_counts;
    }

    /// Each member's subscribed topic ids, and the partition counts of all of them.
    fn resolve_subscriptions(
        &self,
        topics: &dyn TopicView,
    ) -> (BTreeMap<String, BTreeSet<Uuid>>, BTreeMap<Uuid, i32>) {
        // Members usually share one regular expression: match it against the topics once.
        let mut matched: BTreeMap<&str, Vec<Uuid>> = BTreeMap::new();
        let mut all_names: Option<Vec<String>> = None;
        let mut partition_counts = BTreeMap::new();
        let mut subscriptions = BTreeMap::new();
        for (member_id, member) in &self.members {
            let mut ids: BTreeSet<Uuid> = member
                .subscribed_topic_names
                .iter()
                .filter_map(|name| topics.topic_id(name))
                .collect();
            if let Some(regex) = &member.subscribed_topic_regex {
                let found = matched.entry(regex.pattern.as_str()).or_insert_with(|| {
                    all_names
                        .get_or_insert_with(|| topics.topic_names())
                        .iter()
                        .filter(|name| regex.regex.is_match(name))
                        .filter_map(|name| topics.topic_id(name))
                        .collect()
                });
                ids.extend(found.iter().copied());
            }
            ids.retain(|&id| match topics.partition_count(id) {
                Some(count) => {
                    partition_counts.insert(id, count);
                    true
                }
                None => false,
            });
            subscriptions.insert(member_id.clone(), ids);
        }
        (subscriptions, partition_counts)
    }

    /// The assignor most members ask for (ties to the first by name), else the default.
    fn preferred_assignor(&self, default_assignor: Assignor) -> Assignor {
        let mut votes: BTreeMap<Assignor, usize> = BTreeMap::new();
        for assignor in self
            .members
            .values()
            .filter_map(|member| member.server_assignor)
        {
            *votes.entry(assignor).or_default() += 1;
        }
        let mut best = None;
        for (assignor, count) in votes {
            if best.is_none_or(|(_, best_count)| count > best_count) {
                best = Some((assignor, count));
            }
        }
        best.map_or(default_assignor, |(assignor, _)| assignor)
    }

    /// Moves a member towards the target assignment, given what it reports owning (None: not
    /// reported in this heartbeat).
    fn reconcile(
        &mut self,
        member_id: &str,
        owned: Option<&TopicPartitionSet>,
        now_ms: i64,
        topics: &dyn TopicView,
    ) {
        // At most two rounds: a member told to revoke what it already reports not owning (a
        // rejoining one owns nothing) moves on at once.
        for _ in 0..2 {
            let Some(member) = self.members.get_mut(member_id) else {
                return;
            };
            match member.state {
                MemberState::UnrevokedPartitions => {
                    let still_owns = owned.is_none_or(|owned| {
                        partitions(&member.pending_revocation)
                            .any(|(topic, partition)| contains(owned, topic, partition))
                    });
                    if still_owns {
                        return;
                    }
                    for partition in partitions(&member.pending_revocation) {
                        self.holders.remove(&partition);
                    }
                    member.pending_revocation.clear();
                    member.revocation_deadline_ms = None;
                }
                MemberState::Stable if member.member_epoch == self.assignment_epoch => return,
                MemberState::Stable | MemberState::UnreleasedPartitions => {}
            }
            self.advance(member_id, now_ms, topics);
        }
    }

    /// The next step towards the target: revoke first, then take the epoch and the free
    /// partitions.
    fn advance(&mut self, member_id: &str, now_ms: i64, topics: &dyn TopicView) {
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        debug_assert!(member.pending_revocation.is_empty());
        let empty = TopicPartitionSet::new();
        let target = self.target.get(member_id).unwrap_or(&empty);
        let mut kept = TopicPartitionSet::new();
        let mut revoked = TopicPartitionSet::new();
        let mut gone = Vec::new();
        for (topic, partition) in partitions(&member.assigned) {
            if contains(target, topic, partition) {
                insert(&mut kept, topic, partition);
            } else if topics
                .partition_count(topic)
                .is_some_and(|count| partition < count)
            {
                insert(&mut revoked, topic, partition);
            } else {
                // Its topic was deleted: nobody can be given it, nothing to wait for.
                gone.push((topic, partition));
            }
        }
        for partition in gone {
            self.holders.remove(&partition);
        }
        if !revoked.is_empty() {
            member.assigned = kept;
            member.pending_revocation = revoked;
            member.state = MemberState::UnrevokedPartitions;
            member.revocation_deadline_ms =
                Some(now_ms.saturating_add(i64::from(member.rebalance_timeout_ms)));
            return;
        }
        let mut unreleased = false;
        for (topic, partition) in partitions(target) {
            if contains(&kept, topic, partition) {
                continue;
            }
            match self.holders.get(&(topic, partition)) {
                Some(holder) if holder != member_id => unreleased = true,
                _ => {
                    self.holders
                        .insert((topic, partition), member_id.to_string());
                    insert(&mut kept, topic, partition);
                }
            }
        }
        member.assigned = kept;
        member.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
        if member.member_epoch != self.assignment_epoch {
            member.previous_member_epoch = member.member_epoch;
            member.member_epoch = self.assignment_epoch;
        }
    }

    fn describe(&self, version: i16, group_id: GroupId, topics: &dyn TopicView) -> DescribedGroup {
        let to_assignment = |set: &TopicPartitionSet| {
            let mut assignment = describe_response::Assignment::default();
            assignment.topic_partitions = set
                .iter()
                .map(|(&topic_id, partitions)| {
                    let mut entry = describe_response::TopicPartitions::default();
                    entry.topic_id = topic_id;
                    entry.topic_name = TopicName(StrBytes::from_string(
                        topics.topic_name(topic_id).unwrap_or_default(),
                    ));
                    entry.partitions = partitions.iter().copied().collect();
                    entry
                })
                .collect();
            assignment
        };
        let mut described = DescribedGroup::default();
        described.group_id = group_id;
        described.group_state = StrBytes::from_static_str(self.state().name());
        described.group_epoch = self.group_epoch;
        described.assignment_epoch = self.assignment_epoch;
        described.assignor_name = StrBytes::from_static_str(self.assignor.name());
        described.members = self
            .members
            .values()
            .map(|member| {
                let mut described = describe_response::Member::default();
                described.member_id = StrBytes::from_string(member.member_id.clone());
                described.instance_id = member.instance_id.clone().map(StrBytes::from_string);
                described.rack_id = member.rack_id.clone().map(StrBytes::from_string);
                described.member_epoch = member.member_epoch;
                described.client_id = StrBytes::from_string(member.client_id.clone());
                described.client_host = StrBytes::from_string(member.client_host.clone());
                described.subscribed_topic_names = member
                    .subscribed_topic_names
                    .iter()
                    .map(|name| TopicName(StrBytes::from_string(name.clone())))
                    .collect();
                described.subscribed_topic_regex = member
                    .subscribed_topic_regex
                    .as_ref()
                    .map(|regex| StrBytes::from_string(regex.pattern.clone()));
                described.assignment = to_assignment(&member.assigned);
                described.target_assignment = to_assignment(
                    self.target
                        .get(&member.member_id)
                        .unwrap_or(&TopicPartitionSet::new()),
                );
                if version >= 1 {
                    described.member_type = MEMBER_TYPE_CONSUMER;
                }
                described
            })
            .collect();
        described
    }

    /// The bookkeeping agrees with itself; tests call it after every step.
    #[cfg(test)]
    fn check_invariants(&self) {
        let mut held = BTreeMap::new();
        for member in self.members.values() {
            assert!(
                member.member_epoch <= self.assignment_epoch,
                "member epoch ahead of the group"
            );
            for partition in member.held() {
                assert!(
                    held.insert(partition, member.member_id.clone()).is_none(),
                    "{partition:?} held twice"
                );
            }
            assert_eq!(
                member.state == MemberState::UnrevokedPartitions,
                !member.pending_revocation.is_empty(),
                "{}",
                member.member_id
            );
            if let Some(instance_id) = &member.instance_id {
                assert_eq!(
                    self.static_members.get(instance_id),
                    Some(&member.member_id)
                );
            }
        }
        assert_eq!(held, self.holders);
        assert!(self.assignment_epoch <= self.group_epoch);
        assert!(self
            .target
            .keys()
            .all(|member_id| self.members.contains_key(member_id)));
        assert_eq!(
            self.static_members.len(),
            self.members
                .values()
                .filter(|m| m.instance_id.is_some())
                .count()
        );
    }
}

#[cfg(test)]
mod tests;
