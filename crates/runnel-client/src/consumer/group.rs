//! Classic consumer group membership, as Kafka's `ConsumerCoordinator` does it: JoinGroup
//! (the leader runs the assignor), SyncGroup, heartbeats, auto-commit, and the hand-over of
//! partitions under the eager and the cooperative (KIP-429) protocols. Also the group's offset
//! requests, OffsetCommit and OffsetFetch, which a consumer assigning partitions by hand uses
//! too.
//!
//! The membership loop runs in one background task per consumer, so a slow `poll` caller does
//! not miss heartbeats. It changes the shared [`SubscriptionState`] when the group assigns or
//! revokes partitions; a fetch in flight for a partition revoked meanwhile finds it gone and
//! drops its records. Positions of revoked partitions are snapshotted and removed in one
//! critical section, so what is committed on revocation is exactly what was returned.

use crate::wire::{group_id, offset_commit_request, str_bytes, topic_name, OffsetsByTopic};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    join_group_request, leave_group_request, offset_fetch_request, sync_group_request,
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest,
    SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use super::assignor::{
    decode_assignment, encode_assignment, RebalanceProtocol, Subscription,
    CONSUMER_PROTOCOL_VERSION_MAX,
};
use super::subscription::{Subscribed, SubscriptionState, TopicPartition};
use super::Shared;
use crate::connection::Connection;
use crate::error::{ClientError, Result};

const PROTOCOL_TYPE: &str = "consumer";
/// JoinGroup answers MEMBER_ID_REQUIRED at most once per join; more is a confused coordinator.
const JOIN_ATTEMPTS_MAX: usize = 3;
pub(crate) const GROUP_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// This consumer's place in its group.
#[derive(Debug)]
pub(crate) struct Membership {
    /// Empty until the coordinator gives one.
    pub(crate) member_id: String,
    /// -1 outside a generation (not joined yet, or dropped from the group).
    pub(crate) generation: i32,
    /// Join (again) at the next chance: the subscription changed, the coordinator is
    /// rebalancing, a cooperative revocation needs its follow-up rebalance.
    pub(crate) rejoin_needed: bool,
    /// The topics of the last JoinGroup, to notice new topics matching a pattern.
    joined_topics: BTreeSet<String>,
    /// As the leader: the partition counts of the last assignment, to notice added partitions.
    assigned_partition_counts: Option<BTreeMap<String, i32>>,
}

impl Default for Membership {
    fn default() -> Self {
        Membership {
            member_id: String::new(),
            generation: -1,
            rejoin_needed: true,
            joined_topics: BTreeSet::new(),
            assigned_partition_counts: None,
        }
    }
}

/// Offsets to commit: partition, next offset to read, leader epoch.
pub(crate) type CommitOffsets = Vec<(TopicPartition, i64, Option<i32>)>;

pub(crate) fn consumed_offsets(state: &SubscriptionState) -> CommitOffsets {
    state
        .all_consumed_offsets()
        .into_iter()
        .map(|(tp, consumed)| (tp, consumed.offset, consumed.leader_epoch))
        .collect()
}

pub(crate) fn is_coordinator_error(error: &ClientError) -> bool {
    matches!(
        error.code(),
        Some(
            ResponseError::NotCoordinator
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::CoordinatorLoadInProgress
        )
    ) || matches!(error, ClientError::Io { .. } | ClientError::Timeout { .. })
}

/// Runs `operation` against the group's coordinator, again (after backoff, with the
/// coordinator looked up afresh when it moved) while it fails retriably and the request
/// timeout allows. Membership errors (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION and the like)
/// are returned at once: they need a rejoin, not a retry.
pub(crate) async fn with_coordinator<T, F, Fut>(shared: &Shared, mut operation: F) -> Result<T>
where
    F: FnMut(Arc<Connection>) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let group = shared.group_id()?;
    let config = shared.cluster.config();
    let started = Instant::now();
    let mut backoff = config.retry_backoff;
    loop {
        let result = match shared.cluster.coordinator(group).await {
            Ok(connection) => operation(connection).await,
            Err(error) => Err(error),
        };
        match result {
            Err(error)
                if (is_coordinator_error(&error)
                    || error.code() == Some(ResponseError::UnstableOffsetCommit))
                    && started.elapsed() + backoff < config.request_timeout =>
            {
                tracing::debug!(%error, group, "retrying a group request");
                if is_coordinator_error(&error) {
                    shared.cluster.invalidate_coordinator(group);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(GROUP_BACKOFF_MAX);
            }
            result => return result,
        }
    }
}

/// The membership loop: join when needed, else heartbeat, auto-commit and watch metadata,
/// until the consumer closes or a fatal error.
pub(crate) async fn run(shared: Arc<Shared>) {
    let config = &shared.config;
    let client = shared.cluster.config().clone();
    let now = Instant::now();
    let mut next_heartbeat = now + config.heartbeat_interval;
    let mut next_auto_commit = now + config.auto_commit_interval;
    let mut next_metadata_check = now + client.metadata_max_age;
    let mut backoff = client.retry_backoff;
    loop {
        if shared.is_closed() {
            return;
        }
        let rejoin = {
            let membership = shared.membership();
            membership.rejoin_needed || membership.generation < 0
        };
        if rejoin {
            match join(&shared).await {
                Ok(()) => {
                    backoff = client.retry_backoff;
                    next_heartbeat = Instant::now() + config.heartbeat_interval;
                }
                Err(error) => {
                    if !handle_error(&shared, &error).await {
                        return;
                    }
                    tracing::debug!(%error, "joining the group failed; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(GROUP_BACKOFF_MAX);
                }
            }
            continue;
        }
        let mut wake_at = next_heartbeat.min(next_metadata_check);
        if config.enable_auto_commit {
            wake_at = wake_at.min(next_auto_commit);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake_at) => {}
            _ = shared.wake.notified() => continue,
        }
        let now = Instant::now();
        if config.enable_auto_commit && now >= next_auto_commit {
            let offsets = consumed_offsets(&shared.state());
            if let Err(error) = commit(&shared, &offsets).await {
                tracing::warn!(%error, "auto-commit failed");
            }
            next_auto_commit = now + config.auto_commit_interval;
        }
        if now >= next_metadata_check {
            if let Err(error) = check_metadata(&shared).await {
                tracing::debug!(%error, "cannot refresh the subscribed topics' metadata");
            }
            next_metadata_check = now + client.metadata_max_age;
        }
        if now >= next_heartbeat {
            match heartbeat(&shared).await {
                Ok(()) => next_heartbeat = now + config.heartbeat_interval,
                Err(error) => {
                    if !handle_error(&shared, &error).await {
                        return;
                    }
                    tracing::debug!(%error, "heartbeat failed");
                    next_heartbeat = now + client.retry_backoff;
                }
            }
        }
    }
}

/// Acts on a failed group request; false when the error is fatal (the loop stops and `poll`
/// reports it).
async fn handle_error(shared: &Shared, error: &ClientError) -> bool {
    let group = shared.config.group_id.as_deref().unwrap_or_default();
    match error.code() {
        Some(ResponseError::RebalanceInProgress) => {
            shared.membership().rejoin_needed = true;
        }
        Some(ResponseError::UnknownMemberId) => {
            lose_partitions(shared, true);
        }
        Some(ResponseError::IllegalGeneration) => {
            lose_partitions(shared, false);
        }
        Some(
            code @ (ResponseError::FencedInstanceId
            | ResponseError::GroupAuthorizationFailed
            | ResponseError::InvalidSessionTimeout
            | ResponseError::InconsistentGroupProtocol
            | ResponseError::GroupMaxSizeReached
            | ResponseError::InvalidGroupId
            | ResponseError::UnsupportedVersion),
        ) => {
            shared.set_fatal(code, error.to_string());
            return false;
        }
        _ if is_coordinator_error(error) => shared.cluster.invalidate_coordinator(group),
        _ => {}
    }
    if let ClientError::Protocol(_) | ClientError::InvalidArgument(_) = error {
        // An assignment that does not decode, a broker without the group APIs: retrying the
        // join is all that can be done, after a backoff.
        tracing::warn!(%error, "group membership error");
    }
    true
}

/// The member is out of its generation: its partitions may be someone else's already, so they
/// are dropped without a commit.
pub(crate) fn lose_partitions(shared: &Shared, forget_member_id: bool) {
    let lost: Vec<TopicPartition> = {
        let mut state = shared.state();
        let lost: Vec<TopicPartition> = state.assigned_partitions().cloned().collect();
        state.revoke(&lost);
        lost
    };
    {
        let mut membership = shared.membership();
        membership.generation = -1;
        membership.rejoin_needed = true;
        if forget_member_id {
            membership.member_id.clear();
        }
    }
    if !lost.is_empty() {
        tracing::info!(
            partitions = lost.len(),
            "partitions lost: out of the group generation"
        );
        if let Some(listener) = shared.listener() {
            listener.on_partitions_lost(&lost);
        }
    }
}

/// Removes `partitions` from the assignment and returns their positions, in one critical
/// section: nothing read after the snapshot can be returned to the application.
pub(crate) fn take_for_revocation(
    shared: &Shared,
    partitions: &[TopicPartition],
) -> (Vec<TopicPartition>, CommitOffsets) {
    let mut state = shared.state();
    let offsets = consumed_offsets(&state)
        .into_iter()
        .filter(|(tp, _, _)| partitions.contains(tp))
        .collect();
    let revoked = state.revoke(partitions);
    (revoked, offsets)
}

/// Commits (if auto-commit is on) and tells the listener, for partitions just revoked.
pub(crate) async fn finish_revocation(
    shared: &Shared,
    revoked: &[TopicPartition],
    offsets: &CommitOffsets,
) {
    if shared.config.enable_auto_commit && !offsets.is_empty() {
        if let Err(error) = commit(shared, offsets).await {
            tracing::warn!(%error, "committing revoked partitions failed");
        }
    }
    if !revoked.is_empty() {
        if let Some(listener) = shared.listener() {
            listener.on_partitions_revoked(revoked);
        }
    }
}

/// The topics to send in JoinGroup: those named, or those among all topics matching the
/// pattern.
async fn subscribed_topics(shared: &Shared) -> Result<BTreeSet<String>> {
    let pattern = matches!(shared.state().subscribed(), Subscribed::Pattern(_));
    if !pattern {
        return Ok(shared.state().subscribed_topics(std::iter::empty()));
    }
    let all = shared.cluster.metadata(None, false).await?;
    let names = all
        .iter()
        .filter(|topic| topic.error.is_none() && !topic.is_internal)
        .map(|topic| topic.name.as_str());
    Ok(shared.state().subscribed_topics(names))
}

/// Rejoins when a pattern now matches other topics, or (as the leader) when a subscribed
/// topic's partition count changed.
async fn check_metadata(shared: &Shared) -> Result<()> {
    let topics = subscribed_topics(shared).await?;
    let joined = {
        let membership = shared.membership();
        (
            membership.joined_topics.clone(),
            membership.assigned_partition_counts.clone(),
        )
    };
    if topics != joined.0 {
        tracing::info!("the subscribed topics changed; rejoining the group");
        shared.membership().rejoin_needed = true;
        return Ok(());
    }
    if let Some(assigned) = joined.1 {
        let names: Vec<String> = assigned.keys().cloned().collect();
        let counts = partition_counts(shared, &names).await?;
        if counts != assigned {
            tracing::info!("subscribed topics gained partitions; rejoining the group");
            shared.membership().rejoin_needed = true;
        }
    }
    Ok(())
}

async fn partition_counts(shared: &Shared, topics: &[String]) -> Result<BTreeMap<String, i32>> {
    if topics.is_empty() {
        return Ok(BTreeMap::new());
    }
    let metadata = shared.cluster.metadata(Some(topics), false).await?;
    Ok(metadata
        .into_iter()
        .filter(|topic| topic.error.is_none())
        .map(|topic| {
            let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
            (topic.name, count)
        })
        .collect())
}

/// One rebalance: prepare (eager: revoke all), JoinGroup, assign if leader, SyncGroup, apply.
async fn join(shared: &Shared) -> Result<()> {
    let group = shared.group_id()?;
    let config = &shared.config;
    let protocol = config.rebalance_protocol();
    shared.membership().rejoin_needed = false;

    if protocol == RebalanceProtocol::Eager {
        let all: Vec<TopicPartition> = shared.state().assigned_partitions().cloned().collect();
        if !all.is_empty() {
            let (revoked, offsets) = take_for_revocation(shared, &all);
            let in_generation = shared.membership().generation >= 0;
            let offsets = if in_generation { offsets } else { Vec::new() };
            finish_revocation(shared, &revoked, &offsets).await;
        }
    }

    let topics = subscribed_topics(shared).await?;
    let (owned, generation, mut member_id) = {
        let membership = shared.membership();
        let owned = match protocol {
            RebalanceProtocol::Cooperative => shared.state().owned_partitions(),
            RebalanceProtocol::Eager => Vec::new(),
        };
        (owned, membership.generation, membership.member_id.clone())
    };
    let subscription = Subscription {
        topics: topics.iter().cloned().collect(),
        owned,
        generation,
        user_data: None,
        rack: None,
    };
    let metadata = subscription
        .encode(CONSUMER_PROTOCOL_VERSION_MAX)
        .map_err(|error| ClientError::InvalidArgument(error.to_string()))?;
    let protocols: Vec<join_group_request::JoinGroupRequestProtocol> = config
        .assignors
        .iter()
        .map(|assignor| {
            join_group_request::JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str(assignor.name()))
                .with_metadata(metadata.clone())
        })
        .collect();

    let connection = shared.cluster.coordinator(group).await?;
    let version = connection.version_at_least::<JoinGroupRequest>(1)?;
    let context = || format!("group {group:?}");
    let mut attempt = 0;
    let joined = loop {
        attempt += 1;
        let mut request = JoinGroupRequest::default()
            .with_group_id(group_id(group))
            .with_session_timeout_ms(millis(config.session_timeout))
            .with_rebalance_timeout_ms(millis(config.rebalance_timeout))
            .with_member_id(str_bytes(&member_id))
            .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
            .with_protocols(protocols.clone());
        if version >= 5 {
            request.group_instance_id = config.group_instance_id.as_deref().map(str_bytes);
        }
        let response = connection.send(request, version).await?;
        match ResponseError::try_from_code(response.error_code) {
            None => break response,
            Some(ResponseError::MemberIdRequired) if attempt < JOIN_ATTEMPTS_MAX => {
                member_id = response.member_id.to_string();
                shared.membership().member_id = member_id.clone();
            }
            Some(code) => return Err(ClientError::broker(code, None, context())),
        }
    };
    let member_id = joined.member_id.to_string();
    let generation = joined.generation_id;
    let protocol_name = joined
        .protocol_name
        .as_ref()
        .map(|name| name.to_string())
        .unwrap_or_default();
    {
        let mut membership = shared.membership();
        membership.member_id = member_id.clone();
        membership.generation = generation;
        membership.joined_topics = topics;
        membership.assigned_partition_counts = None;
    }
    tracing::debug!(group, %member_id, generation, protocol = %protocol_name, leader = %joined.leader, "joined");

    let assignments = if joined.leader.as_str() == member_id && !joined.skip_assignment {
        lead(shared, &protocol_name, &joined.members).await?
    } else {
        Vec::new()
    };

    let sync_version = connection.version_at_least::<SyncGroupRequest>(0)?;
    let mut request = SyncGroupRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id(generation)
        .with_member_id(str_bytes(&member_id))
        .with_assignments(assignments);
    if sync_version >= 3 {
        request.group_instance_id = config.group_instance_id.as_deref().map(str_bytes);
    }
    if sync_version >= 5 {
        request.protocol_type = Some(StrBytes::from_static_str(PROTOCOL_TYPE));
        request.protocol_name = Some(str_bytes(&protocol_name));
    }
    let synced = connection.send(request, sync_version).await?;
    ClientError::check(synced.error_code, None, context)?;
    let assigned = decode_assignment(&synced.assignment).map_err(|error| {
        ClientError::Protocol(format!(
            "group {group:?} sent an unreadable assignment: {error}"
        ))
    })?;
    let assigned: BTreeSet<TopicPartition> = assigned
        .into_iter()
        .flat_map(|(topic, partitions)| {
            partitions
                .into_iter()
                .map(move |partition| TopicPartition::new(topic.clone(), partition))
        })
        .collect();
    apply_assignment(shared, protocol, assigned, generation).await;
    Ok(())
}

/// As the leader: runs the chosen assignor over every member's subscription.
async fn lead(
    shared: &Shared,
    protocol_name: &str,
    members: &[kafka_protocol::messages::join_group_response::JoinGroupResponseMember],
) -> Result<Vec<sync_group_request::SyncGroupRequestAssignment>> {
    let assignor = shared
        .config
        .assignors
        .iter()
        .find(|assignor| assignor.name() == protocol_name)
        .ok_or_else(|| {
            ClientError::Protocol(format!(
                "the coordinator chose assignor {protocol_name:?}, which this consumer did not offer"
            ))
        })?;
    let mut subscriptions = BTreeMap::new();
    for member in members {
        match Subscription::decode(&member.metadata) {
            Ok(subscription) => {
                subscriptions.insert(member.member_id.to_string(), subscription);
            }
            Err(error) => {
                // Left out of the assignment; it gets nothing and rejoins.
                tracing::warn!(member = %member.member_id.as_str(), %error, "unreadable subscription");
            }
        }
    }
    let topics: Vec<String> = subscriptions
        .values()
        .flat_map(|s| s.topics.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let counts = partition_counts(shared, &topics).await?;
    let assignment = assignor.assign(&counts, &subscriptions);
    shared.membership().assigned_partition_counts = Some(counts);
    tracing::debug!(
        assignor = protocol_name,
        ?assignment,
        "assigned the group's partitions"
    );
    Ok(subscriptions
        .keys()
        .map(|member_id| {
            let partitions = assignment.get(member_id).cloned().unwrap_or_default();
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(str_bytes(member_id))
                .with_assignment(encode_assignment(&partitions))
        })
        .collect())
}

/// Takes the SyncGroup assignment. Cooperative: partitions no longer assigned are revoked
/// (committed first) and, if there were any, the member rejoins for the follow-up rebalance;
/// the listener hears only what moved. Eager: everything was revoked before joining.
async fn apply_assignment(
    shared: &Shared,
    protocol: RebalanceProtocol,
    assigned: BTreeSet<TopicPartition>,
    generation: i32,
) {
    let mut revoked_any = false;
    if protocol == RebalanceProtocol::Cooperative {
        let gone: Vec<TopicPartition> = shared
            .state()
            .assigned_partitions()
            .filter(|tp| !assigned.contains(*tp))
            .cloned()
            .collect();
        if !gone.is_empty() {
            let (revoked, offsets) = take_for_revocation(shared, &gone);
            finish_revocation(shared, &revoked, &offsets).await;
            revoked_any = true;
        }
    }
    let change = shared.state().assign_from_group(assigned);
    match change {
        Ok(change) => {
            tracing::info!(
                generation,
                added = change.added.len(),
                "partitions assigned by the group"
            );
            let added = match protocol {
                RebalanceProtocol::Cooperative => change.added,
                RebalanceProtocol::Eager => shared.state().assigned_partitions().cloned().collect(),
            };
            if let Some(listener) = shared.listener() {
                listener.on_partitions_assigned(&added);
            }
        }
        Err(error) => {
            // The subscription changed while the group was assigning: rejoin with the new one.
            tracing::info!(%error, "assignment does not match the subscription; rejoining");
            revoked_any = true;
        }
    }
    if revoked_any {
        shared.membership().rejoin_needed = true;
    }
}

async fn heartbeat(shared: &Shared) -> Result<()> {
    let group = shared.group_id()?;
    let (generation, member_id) = {
        let membership = shared.membership();
        (membership.generation, membership.member_id.clone())
    };
    let connection = shared.cluster.coordinator(group).await?;
    let version = connection.version_at_least::<HeartbeatRequest>(0)?;
    let mut request = HeartbeatRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id(generation)
        .with_member_id(str_bytes(&member_id));
    if version >= 3 {
        request.group_instance_id = shared.config.group_instance_id.as_deref().map(str_bytes);
    }
    let response = connection.send(request, version).await?;
    ClientError::check(response.error_code, None, || format!("group {group:?}"))
}

/// LeaveGroup, so the group rebalances now rather than after the session timeout. Static
/// members (with a `group_instance_id`) stay, as in Kafka: their restart should not rebalance.
pub(crate) async fn leave(shared: &Shared) -> Result<()> {
    let group = shared.group_id()?;
    let member_id = std::mem::take(&mut shared.membership().member_id);
    shared.membership().generation = -1;
    if member_id.is_empty() || shared.config.group_instance_id.is_some() {
        return Ok(());
    }
    let connection = shared.cluster.coordinator(group).await?;
    let version = connection.version_at_least::<LeaveGroupRequest>(0)?;
    let mut request = LeaveGroupRequest::default().with_group_id(group_id(group));
    if version >= 3 {
        let mut member =
            leave_group_request::MemberIdentity::default().with_member_id(str_bytes(&member_id));
        if version >= 5 {
            member.reason = Some(StrBytes::from_static_str("the consumer is closing"));
        }
        request.members = vec![member];
    } else {
        request.member_id = str_bytes(&member_id);
    }
    let response = connection.send(request, version).await?;
    ClientError::check(response.error_code, None, || format!("group {group:?}"))
}

/// Commits `offsets` with this member's generation (a consumer assigning by hand commits
/// outside any generation), retrying while the coordinator moves. A membership error marks the
/// consumer for a rejoin and is returned.
pub(crate) async fn commit(
    shared: &Shared,
    offsets: &[(TopicPartition, i64, Option<i32>)],
) -> Result<()> {
    let group = shared.group_id()?;
    if offsets.is_empty() {
        return Ok(());
    }
    // Per topic: partition, offset, leader epoch.
    let mut by_topic = OffsetsByTopic::new();
    for (tp, offset, epoch) in offsets {
        by_topic
            .entry(tp.topic.as_str())
            .or_default()
            .push((tp.partition, *offset, *epoch));
    }
    let grouped = matches!(
        shared.state().subscribed(),
        Subscribed::Topics(_) | Subscribed::Pattern(_)
    );
    let result = with_coordinator(shared, |connection| {
        let by_topic = &by_topic;
        async move {
            let (generation, member_id) = if grouped {
                let membership = shared.membership();
                (membership.generation, membership.member_id.clone())
            } else {
                (-1, String::new())
            };
            let version = connection.version_at_least::<OffsetCommitRequest>(2)?;
            let mut request =
                offset_commit_request(group, generation, &member_id, by_topic, version);
            if version >= 7 && grouped {
                request.group_instance_id =
                    shared.config.group_instance_id.as_deref().map(str_bytes);
            }
            let response = connection.send(request, version).await?;
            let mut first_error = None;
            let mut state = shared.state();
            for topic in response.topics {
                let name = topic.name.0.as_str();
                for partition in topic.partitions {
                    let index = partition.partition_index;
                    match ClientError::check(partition.error_code, None, || {
                        format!("group {group:?} commit of {name}-{index}")
                    }) {
                        Ok(()) => {
                            let tp = TopicPartition::new(name, index);
                            let committed = by_topic
                                .get(name)
                                .and_then(|ps| ps.iter().find(|p| p.0 == index))
                                .map(|p| p.1);
                            if committed.is_some() {
                                state.set_committed(&tp, committed);
                            }
                        }
                        Err(error) => {
                            first_error.get_or_insert(error);
                        }
                    }
                }
            }
            first_error.map_or(Ok(()), Err)
        }
    })
    .await;
    if let Err(error) = &result {
        if grouped
            && matches!(
                error.code(),
                Some(
                    ResponseError::RebalanceInProgress
                        | ResponseError::IllegalGeneration
                        | ResponseError::UnknownMemberId
                )
            )
        {
            shared.membership().rejoin_needed = true;
            shared.wake.notify_one();
        }
    }
    result
}

/// The group's committed offsets of `partitions` (`None`: none committed).
pub(crate) async fn fetch_committed(
    shared: &Shared,
    partitions: &[TopicPartition],
) -> Result<HashMap<TopicPartition, Option<i64>>> {
    let group = shared.group_id()?;
    if partitions.is_empty() {
        return Ok(HashMap::new());
    }
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic
            .entry(tp.topic.as_str())
            .or_default()
            .push(tp.partition);
    }
    with_coordinator(shared, |connection| {
        let by_topic = &by_topic;
        async move {
            let version = connection.version_at_least::<OffsetFetchRequest>(1)?;
            let mut request = OffsetFetchRequest::default();
            if version >= 8 {
                request.groups = vec![offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(group_id(group))
                    .with_topics(Some(
                        by_topic
                            .iter()
                            .map(|(topic, indexes)| {
                                offset_fetch_request::OffsetFetchRequestTopics::default()
                                    .with_name(topic_name(topic))
                                    .with_partition_indexes(indexes.clone())
                            })
                            .collect(),
                    ))];
            } else {
                request.group_id = group_id(group);
                request.topics = Some(
                    by_topic
                        .iter()
                        .map(|(topic, indexes)| {
                            offset_fetch_request::OffsetFetchRequestTopic::default()
                                .with_name(topic_name(topic))
                                .with_partition_indexes(indexes.clone())
                        })
                        .collect(),
                );
            }
            if version >= 7 {
                request.require_stable = true;
            }
            let response = connection.send(request, version).await?;
            let context = || format!("committed offsets of group {group:?}");
            let mut found = HashMap::new();
            let mut take = |topic: &str, partition: i32, offset: i64, error_code: i16| {
                ClientError::check(error_code, None, || {
                    format!("group {group:?} committed offset of {topic}-{partition}")
                })?;
                found.insert(
                    TopicPartition::new(topic, partition),
                    (offset >= 0).then_some(offset),
                );
                Ok::<_, ClientError>(())
            };
            if version >= 8 {
                let answered = response
                    .groups
                    .into_iter()
                    .find(|g| g.group_id.0.as_str() == group)
                    .ok_or_else(|| {
                        ClientError::Protocol(format!(
                            "OffsetFetch from {} does not answer for group {group:?}",
                            connection.address()
                        ))
                    })?;
                ClientError::check(answered.error_code, None, context)?;
                for topic in answered.topics {
                    for p in topic.partitions {
                        take(
                            topic.name.0.as_str(),
                            p.partition_index,
                            p.committed_offset,
                            p.error_code,
                        )?;
                    }
                }
            } else {
                if version >= 2 {
                    ClientError::check(response.error_code, None, context)?;
                }
                for topic in response.topics {
                    for p in topic.partitions {
                        take(
                            topic.name.0.as_str(),
                            p.partition_index,
                            p.committed_offset,
                            p.error_code,
                        )?;
                    }
                }
            }
            Ok(found)
        }
    })
    .await
}

pub(crate) fn millis(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}
