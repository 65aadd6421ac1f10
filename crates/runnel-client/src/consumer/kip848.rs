//! KIP-848 group membership (`group.protocol=consumer`): one ConsumerGroupHeartbeat loop, the
//! coordinator assigns.
//!
//! The member joins with member epoch 0 and its subscription (topic names, or a regular
//! expression the coordinator resolves), then heartbeats every `heartbeat_interval_ms` the
//! coordinator names, reporting the partitions it owns (by topic id). A response carries the
//! member's assignment only when it changed; the member then revokes what is no longer in it
//! (committing first when auto-commit is on, then telling the listener), starts the new
//! partitions (their positions are looked up by the next poll), and heartbeats at once so the
//! coordinator can hand the revoked partitions on. Partitions the member keeps are never
//! interrupted. FENCED_MEMBER_EPOCH and UNKNOWN_MEMBER_ID mean the partitions may be someone
//! else's already: they are lost (no commit) and the member rejoins with epoch 0. Closing sends
//! epoch -1 (-2 for a static member, which keeps its partitions for the session timeout).
//!
//! ConsumerGroupHeartbeat v1 (KIP-1082): the member id is a uuid this client draws once; v0:
//! the coordinator's. Offset commits carry the member epoch where the classic protocol carries
//! the generation (see [`super::group::commit`]).
//!
//! [`HeartbeatState`] is the pure part: what the next request says and what a response or a
//! fencing error does to it. Not here: client-side assignors (KIP-848's `ClientAssignor`),
//! rack ids, and the `group.consumer.*` coordinator settings.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedTopic;
use kafka_protocol::messages::consumer_group_heartbeat_response::Assignment;
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;
use uuid::Uuid;

use super::group::{self, GROUP_BACKOFF_MAX};
use super::subscription::{Subscribed, TopicPartition};
use super::Shared;
use crate::error::{ClientError, Result};

/// The member epoch that joins (or rejoins) the group.
const JOIN_MEMBER_EPOCH: i32 = 0;
/// The member epoch that leaves for good.
const LEAVE_MEMBER_EPOCH: i32 = -1;
/// The member epoch a static member leaves with, keeping its partitions for the session timeout.
const LEAVE_STATIC_MEMBER_EPOCH: i32 = -2;

/// What the member sends to be told its partitions: topic names, or a regular expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Interest {
    Names(BTreeSet<String>),
    Regex(String),
}

/// The membership as the next heartbeat states it. Pure: no clock, no I/O.
#[derive(Debug, Clone)]
pub(crate) struct HeartbeatState {
    /// ConsumerGroupHeartbeat version; v1+ members name themselves.
    version: i16,
    member_id: String,
    member_epoch: i32,
    /// The subscription the coordinator acknowledged; sent again only when it differs.
    interest_sent: Option<Interest>,
    /// The heartbeat interval the coordinator asked for.
    pub(crate) interval: Duration,
}

impl HeartbeatState {
    /// A member about to join. v1+: `member_id` is this client's own (a fresh uuid).
    pub(crate) fn new(version: i16, member_id: String, interval: Duration) -> HeartbeatState {
        HeartbeatState {
            version,
            member_id: if version >= 1 {
                member_id
            } else {
                String::new()
            },
            member_epoch: JOIN_MEMBER_EPOCH,
            interest_sent: None,
            interval,
        }
    }

    pub(crate) fn member_id(&self) -> &str {
        &self.member_id
    }

    pub(crate) fn member_epoch(&self) -> i32 {
        self.member_epoch
    }

    /// The next heartbeat. A join (epoch 0) states everything and owns nothing; later ones
    /// restate the subscription only when it changed, and always report what is owned (the
    /// coordinator waits for that report before handing revoked partitions on).
    pub(crate) fn request(
        &self,
        group: &str,
        config: &RequestConfig<'_>,
        interest: &Interest,
        owned: Vec<OwnedTopic>,
    ) -> ConsumerGroupHeartbeatRequest {
        let joining = self.member_epoch == JOIN_MEMBER_EPOCH;
        let mut request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(crate::wire::group_id(group))
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_member_epoch(self.member_epoch)
            .with_instance_id(
                config
                    .instance_id
                    .map(|id| StrBytes::from_string(id.to_owned())),
            )
            .with_rebalance_timeout_ms(if joining {
                config.rebalance_timeout_ms
            } else {
                -1
            })
            .with_topic_partitions(Some(if joining { Vec::new() } else { owned }));
        if joining || self.interest_sent.as_ref() != Some(interest) {
            match interest {
                Interest::Names(names) => {
                    request.subscribed_topic_names = Some(
                        names
                            .iter()
                            .map(|name| TopicName(StrBytes::from_string(name.clone())))
                            .collect(),
                    );
                }
                Interest::Regex(regex) => {
                    request.subscribed_topic_regex = Some(StrBytes::from_string(regex.clone()));
                }
            }
            request.server_assignor = config
                .server_assignor
                .map(|name| StrBytes::from_string(name.to_owned()));
        }
        request
    }

    /// Takes a successful response to a heartbeat that stated `interest`; returns the
    /// assignment when the coordinator sent one.
    pub(crate) fn on_response(
        &mut self,
        interest: Interest,
        response: ConsumerGroupHeartbeatResponse,
    ) -> Option<Assignment> {
        if let Some(member_id) = response.member_id.filter(|id| !id.is_empty()) {
            if self.version == 0 || self.member_id.is_empty() {
                self.member_id = member_id.to_string();
            }
        }
        self.member_epoch = response.member_epoch;
        self.interest_sent = Some(interest);
        if let Ok(interval) = u64::try_from(response.heartbeat_interval_ms) {
            if interval > 0 {
                self.interval = Duration::from_millis(interval);
            }
        }
        response.assignment
    }

    /// Fenced or forgotten: rejoin with epoch 0. A v0 member forgotten by the coordinator also
    /// drops the id the coordinator gave it.
    pub(crate) fn rejoin(&mut self, code: ResponseError) {
        self.member_epoch = JOIN_MEMBER_EPOCH;
        self.interest_sent = None;
        if self.version == 0 && code == ResponseError::UnknownMemberId {
            self.member_id.clear();
        }
    }
}

/// The parts of the consumer's configuration a heartbeat states.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestConfig<'a> {
    pub(crate) instance_id: Option<&'a str>,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) server_assignor: Option<&'a str>,
}

/// Errors no retry fixes: the loop stops and `poll` reports them.
fn is_fatal(code: ResponseError) -> bool {
    matches!(
        code,
        ResponseError::FencedInstanceId
            | ResponseError::GroupAuthorizationFailed
            | ResponseError::TopicAuthorizationFailed
            | ResponseError::InvalidRequest
            | ResponseError::UnsupportedAssignor
            | ResponseError::InvalidRegularExpression
            | ResponseError::GroupMaxSizeReached
            | ResponseError::GroupIdNotFound
            | ResponseError::InconsistentGroupProtocol
            | ResponseError::UnsupportedVersion
            | ResponseError::InvalidGroupId
    )
}

fn interest(shared: &Shared) -> Interest {
    match shared.state().subscribed() {
        Subscribed::Pattern(regex) => Interest::Regex(regex.as_str().to_owned()),
        Subscribed::Topics(names) => Interest::Names(names.clone()),
        Subscribed::Nothing | Subscribed::Manual => Interest::Names(BTreeSet::new()),
    }
}

/// Topic names and ids, as Metadata last told this member.
#[derive(Debug, Default)]
struct TopicIds {
    names_by_id: HashMap<Uuid, String>,
    ids_by_name: HashMap<String, Uuid>,
}

impl TopicIds {
    /// Learns the ids of the subscribed topics (every topic, for a regular expression).
    async fn refresh(&mut self, shared: &Shared, interest: &Interest) -> Result<()> {
        let topics = match interest {
            Interest::Names(names) => {
                let names: Vec<String> = names.iter().cloned().collect();
                shared.cluster.metadata(Some(&names), false).await?
            }
            Interest::Regex(_) => shared.cluster.metadata(None, false).await?,
        };
        for topic in topics {
            if topic.error.is_none() && !topic.id.is_nil() {
                self.names_by_id.insert(topic.id, topic.name.clone());
                self.ids_by_name.insert(topic.name, topic.id);
            }
        }
        Ok(())
    }

    /// The assignment by name, or `None` when an id is unknown.
    fn resolve(&self, assignment: &BTreeMap<Uuid, Vec<i32>>) -> Option<BTreeSet<TopicPartition>> {
        let mut resolved = BTreeSet::new();
        for (id, partitions) in assignment {
            let name = self.names_by_id.get(id)?;
            resolved.extend(
                partitions
                    .iter()
                    .map(|&partition| TopicPartition::new(name.as_str(), partition)),
            );
        }
        Some(resolved)
    }
}

/// The partitions this member owns, by topic id, as a heartbeat reports them.
fn owned(shared: &Shared, ids: &TopicIds) -> Vec<OwnedTopic> {
    let mut by_topic: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
    for tp in shared.state().assigned_partitions() {
        if let Some(id) = ids.ids_by_name.get(&tp.topic) {
            by_topic.entry(*id).or_default().push(tp.partition);
        }
    }
    by_topic
        .into_iter()
        .map(|(topic_id, partitions)| {
            OwnedTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(partitions)
        })
        .collect()
}

/// Makes `assigned` the consumer's assignment: revokes (commit, listener) what left it, then
/// takes the rest. Partitions of topics no longer subscribed are left out (the next heartbeat
/// states the new subscription, and the coordinator takes them back). Returns whether the
/// owned set changed.
async fn apply(shared: &Shared, assigned: BTreeSet<TopicPartition>) -> bool {
    let assigned: BTreeSet<TopicPartition> = {
        let state = shared.state();
        assigned
            .into_iter()
            .filter(|tp| state.is_subscribed_to(&tp.topic))
            .collect()
    };
    let gone: Vec<TopicPartition> = shared
        .state()
        .assigned_partitions()
        .filter(|tp| !assigned.contains(*tp))
        .cloned()
        .collect();
    if !gone.is_empty() {
        let (revoked, offsets) = group::take_for_revocation(shared, &gone);
        group::finish_revocation(shared, &revoked, &offsets).await;
    }
    match shared.state().assign_from_group(assigned) {
        Ok(change) => {
            if !change.added.is_empty() {
                tracing::info!(
                    added = change.added.len(),
                    revoked = gone.len(),
                    "partitions assigned by the group"
                );
                if let Some(listener) = shared.listener() {
                    listener.on_partitions_assigned(&change.added);
                }
            }
            !gone.is_empty() || !change.added.is_empty()
        }
        Err(error) => {
            // The consumer unsubscribed meanwhile: it owns nothing now.
            tracing::debug!(%error, "assignment not taken");
            !gone.is_empty()
        }
    }
}

/// One heartbeat: sends, takes the response, applies a new assignment. Returns whether the
/// owned partitions changed (then the next heartbeat goes out at once).
async fn heartbeat(
    shared: &Shared,
    member: &mut HeartbeatState,
    ids: &mut TopicIds,
    pending: &mut Option<BTreeMap<Uuid, Vec<i32>>>,
) -> Result<bool> {
    let group = shared.group_id()?;
    let config = &shared.config;
    let interest = interest(shared);
    let request_config = RequestConfig {
        instance_id: config.group_instance_id.as_deref(),
        rebalance_timeout_ms: group::millis(config.rebalance_timeout),
        server_assignor: config.server_assignor.as_deref(),
    };
    let connection = shared.cluster.coordinator(group).await?;
    let version = connection
        .version_for(ApiKey::ConsumerGroupHeartbeat)
        .ok_or_else(|| {
            ClientError::broker(
                ResponseError::UnsupportedVersion,
                Some("the broker does not serve ConsumerGroupHeartbeat (KIP-848); use GroupProtocol::Classic"),
                format!("group {group:?}"),
            )
        })?;
    let request = member.request(group, &request_config, &interest, owned(shared, ids));
    let response = connection.send(request, version).await?;
    ClientError::check(response.error_code, response.error_message.as_ref(), || {
        format!("group {group:?}")
    })?;
    if let Some(assignment) = member.on_response(interest.clone(), response) {
        let mut by_topic: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
        for topic in assignment.topic_partitions {
            by_topic
                .entry(topic.topic_id)
                .or_default()
                .extend(topic.partitions);
        }
        *pending = Some(by_topic);
    }
    {
        let mut membership = shared.membership();
        membership.member_id = member.member_id().to_owned();
        // Commits carry the epoch; a member still joining (epoch 0) has none to commit with.
        membership.generation = if member.member_epoch() > 0 {
            member.member_epoch()
        } else {
            -1
        };
    }
    let Some(assignment) = pending.as_ref() else {
        return Ok(false);
    };
    let resolved = match ids.resolve(assignment) {
        Some(resolved) => Some(resolved),
        None => {
            ids.refresh(shared, &interest).await?;
            ids.resolve(assignment)
        }
    };
    match resolved {
        Some(resolved) => {
            *pending = None;
            Ok(apply(shared, resolved).await)
        }
        // Metadata does not name a topic yet: tried again at the next heartbeat.
        None => Ok(false),
    }
}

/// The membership loop: heartbeat, auto-commit, until the consumer closes or a fatal error.
pub(crate) async fn run(shared: Arc<Shared>) {
    let config = &shared.config;
    let client = shared.cluster.config().clone();
    let mut member = HeartbeatState::new(
        1,
        Uuid::new_v4().simple().to_string(),
        config.heartbeat_interval,
    );
    let mut version_known = false;
    let mut ids = TopicIds::default();
    let mut pending = None;
    let mut next_auto_commit = Instant::now() + config.auto_commit_interval;
    let mut backoff = client.retry_backoff;
    loop {
        if shared.is_closed() {
            return;
        }
        if !version_known {
            // A v0 coordinator names the member; learn which before the first join.
            if let Ok(group) = shared.group_id() {
                if let Ok(connection) = shared.cluster.coordinator(group).await {
                    if let Some(version) = connection.version_for(ApiKey::ConsumerGroupHeartbeat) {
                        let id = member.member_id().to_owned();
                        member = HeartbeatState::new(version, id, member.interval);
                        version_known = true;
                    }
                }
            }
        }
        shared.membership().rejoin_needed = false;
        let mut next_heartbeat = Instant::now();
        match heartbeat(&shared, &mut member, &mut ids, &mut pending).await {
            // Revoked partitions are reported at once, so the coordinator can hand them on.
            Ok(true) => backoff = client.retry_backoff,
            Ok(false) => {
                backoff = client.retry_backoff;
                next_heartbeat = Instant::now() + member.interval;
            }
            Err(error) => match error.code() {
                Some(
                    code @ (ResponseError::FencedMemberEpoch | ResponseError::UnknownMemberId),
                ) => {
                    tracing::info!(%error, "fenced from the group; rejoining");
                    group::lose_partitions(&shared, false);
                    member.rejoin(code);
                    pending = None;
                }
                Some(code) if is_fatal(code) => {
                    shared.set_fatal(code, error.to_string());
                    return;
                }
                _ => {
                    if group::is_coordinator_error(&error) {
                        shared
                            .cluster
                            .invalidate_coordinator(config.group_id.as_deref().unwrap_or_default());
                    }
                    tracing::debug!(%error, "heartbeat failed; trying again");
                    next_heartbeat = Instant::now() + backoff;
                    backoff = (backoff * 2).min(GROUP_BACKOFF_MAX);
                }
            },
        }
        loop {
            let mut wake_at = next_heartbeat;
            if config.enable_auto_commit {
                wake_at = wake_at.min(next_auto_commit);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake_at) => {}
                // The subscription changed, or a commit found the epoch stale: tell the
                // coordinator now.
                _ = shared.wake.notified() => break,
            }
            let now = Instant::now();
            if config.enable_auto_commit && now >= next_auto_commit {
                if member.member_epoch() > 0 {
                    let offsets = group::consumed_offsets(&shared.state());
                    if let Err(error) = group::commit(&shared, &offsets).await {
                        tracing::warn!(%error, "auto-commit failed");
                    }
                }
                next_auto_commit = now + config.auto_commit_interval;
            }
            if Instant::now() >= next_heartbeat {
                break;
            }
        }
    }
}

/// Leaves the group (epoch -1; a static member -2, keeping its partitions for the session
/// timeout), so the coordinator reassigns now rather than after the session timeout.
pub(crate) async fn leave(shared: &Shared) -> Result<()> {
    let group = shared.group_id()?;
    let member_id = std::mem::take(&mut shared.membership().member_id);
    shared.membership().generation = -1;
    if member_id.is_empty() {
        return Ok(());
    }
    let connection = shared.cluster.coordinator(group).await?;
    let Some(version) = connection.version_for(ApiKey::ConsumerGroupHeartbeat) else {
        return Ok(());
    };
    let instance_id = shared.config.group_instance_id.as_deref();
    let request = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(crate::wire::group_id(group))
        .with_member_id(StrBytes::from_string(member_id))
        .with_member_epoch(if instance_id.is_some() {
            LEAVE_STATIC_MEMBER_EPOCH
        } else {
            LEAVE_MEMBER_EPOCH
        })
        .with_instance_id(instance_id.map(|id| StrBytes::from_string(id.to_owned())));
    let response = connection.send(request, version).await?;
    ClientError::check(response.error_code, response.error_message.as_ref(), || {
        format!("group {group:?}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: RequestConfig<'static> = RequestConfig {
        instance_id: None,
        rebalance_timeout_ms: 30_000,
        server_assignor: None,
    };

    fn names(names: &[&str]) -> Interest {
        Interest::Names(names.iter().map(|n| (*n).to_owned()).collect())
    }

    fn owned_topic(id: u128, partitions: &[i32]) -> OwnedTopic {
        OwnedTopic::default()
            .with_topic_id(Uuid::from_u128(id))
            .with_partitions(partitions.to_vec())
    }

    fn response(member_id: &str, epoch: i32) -> ConsumerGroupHeartbeatResponse {
        ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from_string(member_id.to_owned())))
            .with_member_epoch(epoch)
            .with_heartbeat_interval_ms(300)
    }

    #[test]
    fn a_join_states_everything_and_owns_nothing() {
        let member = HeartbeatState::new(1, "m-1".into(), Duration::from_secs(3));
        let join = member.request("g", &CONFIG, &names(&["t"]), vec![owned_topic(7, &[0])]);
        assert_eq!(join.member_id.as_str(), "m-1");
        assert_eq!(join.member_epoch, 0);
        assert_eq!(join.rebalance_timeout_ms, 30_000);
        assert_eq!(join.topic_partitions, Some(vec![]));
        let subscribed: Vec<&str> = join
            .subscribed_topic_names
            .iter()
            .flatten()
            .map(|n| n.0.as_str())
            .collect();
        assert_eq!(subscribed, ["t"]);
        assert_eq!(join.server_assignor, None);
    }

    #[test]
    fn later_heartbeats_report_what_is_owned_and_restate_only_changes() {
        let mut member = HeartbeatState::new(1, "m-1".into(), Duration::from_secs(3));
        assert!(member
            .on_response(names(&["t"]), response("m-1", 3))
            .is_none());
        assert_eq!(member.interval, Duration::from_millis(300));
        let next = member.request("g", &CONFIG, &names(&["t"]), vec![owned_topic(7, &[0, 2])]);
        assert_eq!(next.member_epoch, 3);
        assert_eq!(next.rebalance_timeout_ms, -1);
        assert_eq!(next.subscribed_topic_names, None);
        assert_eq!(next.topic_partitions, Some(vec![owned_topic(7, &[0, 2])]));

        let changed = member.request("g", &CONFIG, &Interest::Regex("t.*".into()), vec![]);
        assert_eq!(changed.subscribed_topic_regex.as_deref(), Some("t.*"));
        assert_eq!(changed.subscribed_topic_names, None);
    }

    #[test]
    fn v0_takes_the_coordinators_member_id_and_drops_it_when_forgotten() {
        let mut member = HeartbeatState::new(0, "ignored".into(), Duration::from_secs(3));
        assert_eq!(
            member
                .request("g", &CONFIG, &names(&["t"]), vec![])
                .member_id
                .as_str(),
            ""
        );
        member.on_response(names(&["t"]), response("server-given", 1));
        assert_eq!(member.member_id(), "server-given");
        member.rejoin(ResponseError::FencedMemberEpoch);
        assert_eq!(
            (member.member_id(), member.member_epoch()),
            ("server-given", 0)
        );
        member.rejoin(ResponseError::UnknownMemberId);
        assert_eq!(member.member_id(), "");
    }

    #[test]
    fn a_v1_member_keeps_its_own_id_across_a_rejoin() {
        let mut member = HeartbeatState::new(1, "mine".into(), Duration::from_secs(3));
        member.on_response(names(&["t"]), response("mine", 4));
        member.rejoin(ResponseError::UnknownMemberId);
        let rejoin = member.request("g", &CONFIG, &names(&["t"]), vec![owned_topic(7, &[1])]);
        assert_eq!(
            (rejoin.member_id.as_str(), rejoin.member_epoch),
            ("mine", 0)
        );
        assert!(rejoin.subscribed_topic_names.is_some());
        assert_eq!(rejoin.topic_partitions, Some(vec![]));
    }

    #[test]
    fn assignments_resolve_only_when_every_topic_id_is_known() {
        let mut ids = TopicIds::default();
        ids.names_by_id.insert(Uuid::from_u128(7), "t".into());
        let mut assignment = BTreeMap::from([(Uuid::from_u128(7), vec![1, 0])]);
        assert_eq!(
            ids.resolve(&assignment),
            Some(BTreeSet::from([
                TopicPartition::new("t", 0),
                TopicPartition::new("t", 1)
            ]))
        );
        assignment.insert(Uuid::from_u128(8), vec![0]);
        assert_eq!(ids.resolve(&assignment), None);
    }
}
