//! The consumer group state machine driven by simulated clients: no sockets, no clock.

use super::*;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as RequestPartitions;
use kafka_protocol::protocol::{Decodable, Encodable};
use proptest::prelude::*;

const GROUP: &str = "billing";
const SESSION_TIMEOUT_MS: i64 = 45_000;

/// Topics as the broker would show them.
#[derive(Debug, Default)]
struct Topics {
    by_name: BTreeMap<String, (Uuid, i32)>,
    next_id: u128,
}

impl Topics {
    fn with(topics: &[(&str, i32)]) -> Topics {
        let mut view = Topics::default();
        for &(name, partitions) in topics {
            view.create(name, partitions);
        }
        view
    }

    fn create(&mut self, name: &str, partitions: i32) -> Uuid {
        self.next_id += 1;
        let id = Uuid::from_u128(0x1000 + self.next_id);
        self.by_name.insert(name.to_string(), (id, partitions));
        id
    }

    fn delete(&mut self, name: &str) {
        self.by_name.remove(name);
    }

    fn grow(&mut self, name: &str, partitions: i32) {
        if let Some(entry) = self.by_name.get_mut(name) {
            entry.1 = partitions;
        }
    }

    fn id(&self, name: &str) -> Uuid {
        self.by_name[name].0
    }

    fn all_partitions(&self, names: &[&str]) -> BTreeSet<(Uuid, i32)> {
        names
            .iter()
            .flat_map(|name| {
                let (id, count) = self.by_name[*name];
                (0..count).map(move |p| (id, p))
            })
            .collect()
    }
}

impl TopicView for Topics {
    fn topic_id(&self, name: &str) -> Option<Uuid> {
        self.by_name.get(name).map(|(id, _)| *id)
    }
    fn topic_name(&self, id: Uuid) -> Option<String> {
        self.by_name
            .iter()
            .find(|(_, (topic, _))| *topic == id)
            .map(|(name, _)| name.clone())
    }
    fn partition_count(&self, id: Uuid) -> Option<i32> {
        self.by_name
            .values()
            .find(|(topic, _)| *topic == id)
            .map(|(_, count)| *count)
    }
    fn topic_names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }
}

/// A consumer as librdkafka runs one: it applies each assignment it is sent at once (revoking
/// what is gone, starting what is new) and reports what it owns in every heartbeat.
#[derive(Debug, Clone)]
struct Client {
    member_id: String,
    instance_id: Option<String>,
    subscription: Vec<String>,
    epoch: i32,
    owned: TopicPartitionSet,
    /// The last assignment received, which a slow client has not fully applied yet.
    latest: Option<TopicPartitionSet>,
}

impl Client {
    fn new(member_id: &str, subscription: &[&str]) -> Client {
        Client {
            member_id: member_id.to_string(),
            instance_id: None,
            subscription: subscription.iter().map(|s| s.to_string()).collect(),
            epoch: 0,
            owned: TopicPartitionSet::new(),
            latest: None,
        }
    }

    fn with_instance(mut self, instance_id: &str) -> Client {
        self.instance_id = Some(instance_id.to_string());
        self
    }

    fn join_request(&self) -> ConsumerGroupHeartbeatRequest {
        let mut request = ConsumerGroupHeartbeatRequest::default();
        request.group_id = GroupId(GROUP.into());
        request.member_id = StrBytes::from_string(self.member_id.clone());
        request.member_epoch = 0;
        request.instance_id = self.instance_id.clone().map(StrBytes::from_string);
        request.rebalance_timeout_ms = 30_000;
        request.subscribed_topic_names = Some(
            self.subscription
                .iter()
                .map(|s| TopicName(StrBytes::from_string(s.clone())))
                .collect(),
        );
        request.topic_partitions = Some(vec![]);
        request
    }

    fn heartbeat_request(&self) -> ConsumerGroupHeartbeatRequest {
        let mut request = ConsumerGroupHeartbeatRequest::default();
        request.group_id = GroupId(GROUP.into());
        request.member_id = StrBytes::from_string(self.member_id.clone());
        request.member_epoch = self.epoch;
        request.topic_partitions = Some(to_request_partitions(&self.owned));
        request
    }

    fn leave_request(&self, epoch: i32) -> ConsumerGroupHeartbeatRequest {
        let mut request = ConsumerGroupHeartbeatRequest::default();
        request.group_id = GroupId(GROUP.into());
        request.member_id = StrBytes::from_string(self.member_id.clone());
        request.member_epoch = epoch;
        request.instance_id = self.instance_id.clone().map(StrBytes::from_string);
        request
    }

    fn apply(&mut self, response: &ConsumerGroupHeartbeatResponse) {
        assert_eq!(response.error_code, 0, "{:?}", response.error_message);
        assert!(
            response.member_epoch >= self.epoch,
            "member epoch went back: {response:?}"
        );
        self.epoch = response.member_epoch;
        if let Some(member_id) = &response.member_id {
            self.member_id = member_id.to_string();
        }
        if let Some(assignment) = &response.assignment {
            self.owned = assignment
                .topic_partitions
                .iter()
                .map(|tp| (tp.topic_id, tp.partitions.iter().copied().collect()))
                .collect();
            self.latest = Some(self.owned.clone());
        }
    }

    /// A slow client starts new partitions at once but revokes later.
    fn apply_slowly(&mut self, response: &ConsumerGroupHeartbeatResponse) {
        let owned = self.owned.clone();
        self.apply(response);
        for (topic, partition) in partitions(&owned) {
            insert(&mut self.owned, topic, partition);
        }
    }

    /// Finishes revoking what the last assignment left out.
    fn catch_up(&mut self) {
        if let Some(latest) = &self.latest {
            self.owned = latest.clone();
        }
    }

    fn forget(&mut self) {
        self.owned.clear();
        self.latest = None;
    }

    fn owned_count(&self) -> usize {
        self.owned.values().map(BTreeSet::len).sum()
    }
}

fn to_request_partitions(set: &TopicPartitionSet) -> Vec<RequestPartitions> {
    set.iter()
        .map(|(&topic_id, partitions)| {
            let mut entry = RequestPartitions::default();
            entry.topic_id = topic_id;
            entry.partitions = partitions.iter().copied().collect();
            entry
        })
        .collect()
}

struct Harness {
    groups: ConsumerGroups,
    topics: Topics,
    now_ms: i64,
    seeds: u128,
    version: i16,
}

impl Harness {
    fn new(topics: Topics) -> Harness {
        Harness {
            groups: ConsumerGroups::new(ConsumerGroupConfig::default()),
            topics,
            now_ms: 1_000,
            seeds: 0,
            version: 1,
        }
    }

    fn send(&mut self, request: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
        self.seeds += 1;
        let client = ClientInfo {
            client_id: "rdkafka",
            client_host: "/127.0.0.1",
        };
        let response = self.groups.heartbeat_with_client(
            self.now_ms,
            self.version,
            Uuid::from_u128(self.seeds),
            request,
            &self.topics,
            client,
        );
        assert_eq!(response.heartbeat_interval_ms, 5_000);
        self.check();
        response
    }

    fn check(&self) {
        for group in self.groups.groups.values() {
            group.check_invariants();
        }
    }

    fn group(&self) -> &Group {
        &self.groups.groups[GROUP]
    }

    fn join(&mut self, client: &mut Client) -> ConsumerGroupHeartbeatResponse {
        let response = self.send(client.join_request());
        client.apply(&response);
        response
    }

    fn beat(&mut self, client: &mut Client) -> ConsumerGroupHeartbeatResponse {
        let response = self.send(client.heartbeat_request());
        client.apply(&response);
        response
    }

    fn tick(&mut self) {
        self.groups.tick(self.now_ms, &self.topics);
        self.check();
    }

    /// Heartbeats round-robin until the group is stable, checking at every step that no two
    /// clients own one partition.
    fn converge(&mut self, clients: &mut [Client]) {
        for _ in 0..10 {
            for client in clients.iter_mut() {
                self.now_ms += 100;
                self.beat(client);
            }
            for client in clients.iter_mut() {
                self.now_ms += 100;
                self.beat(client);
            }
            assert_disjoint(clients);
            if self.group().state() == GroupState::Stable {
                return;
            }
        }
        panic!("no convergence: {:#?}", self.group());
    }
}

fn assert_disjoint(clients: &[Client]) {
    let mut seen = BTreeSet::new();
    for client in clients {
        for partition in partitions(&client.owned) {
            assert!(
                seen.insert(partition),
                "{partition:?} owned twice: {clients:#?}"
            );
        }
    }
}

fn owned_union(clients: &[Client]) -> BTreeSet<(Uuid, i32)> {
    clients
        .iter()
        .flat_map(|c| partitions(&c.owned).collect::<Vec<_>>())
        .collect()
}

#[test]
fn three_members_join_one_by_one_and_converge() {
    let mut harness = Harness::new(Topics::with(&[("orders", 6), ("payments", 3)]));
    let mut clients = Vec::new();
    let mut group_epochs = vec![];
    for name in ["a", "b", "c"] {
        let mut client = Client::new(name, &["orders", "payments"]);
        let response = harness.join(&mut client);
        assert!(
            response.assignment.is_some(),
            "a join is answered with the assignment"
        );
        clients.push(client);
        harness.converge(&mut clients);
        group_epochs.push(harness.group().group_epoch);
        for client in &clients {
            assert_eq!(client.epoch, harness.group().group_epoch);
        }
    }
    assert_eq!(group_epochs, vec![1, 2, 3]);
    assert_eq!(
        clients.iter().map(Client::owned_count).collect::<Vec<_>>(),
        vec![3, 3, 3]
    );
    assert_disjoint(&clients);
    assert_eq!(
        owned_union(&clients),
        harness.topics.all_partitions(&["orders", "payments"])
    );
    assert_eq!(harness.groups.list(), vec![(GROUP.to_string(), "Stable")]);
}

#[test]
fn a_partition_moves_only_after_its_owner_reports_it_revoked() {
    let mut harness = Harness::new(Topics::with(&[("orders", 4)]));
    let orders = harness.topics.id("orders");
    let mut a = Client::new("a", &["orders"]);
    harness.join(&mut a);
    assert_eq!(a.owned_count(), 4);
    let a_epoch = a.epoch;

    let mut b = Client::new("b", &["orders"]);
    let response = harness.join(&mut b);
    assert_eq!(
        b.owned_count(),
        0,
        "every target partition of b is still owned by a"
    );
    assert_eq!(response.member_epoch, harness.group().group_epoch);
    assert_eq!(harness.group().state(), GroupState::Reconciling);

    // a learns it must give two partitions up, but keeps its epoch while it revokes.
    let before_revocation = a.owned.clone();
    let response = harness.send(a.heartbeat_request());
    assert_eq!(response.member_epoch, a_epoch);
    let to_keep: BTreeSet<i32> = response
        .assignment
        .as_ref()
        .expect("a new assignment")
        .topic_partitions[0]
        .partitions
        .iter()
        .copied()
        .collect();
    assert_eq!(to_keep.len(), 2);
    // a still commits at its epoch while revoking (commit before giving partitions up).
    assert_eq!(
        harness.groups.validate_offset_commit(GROUP, "a", a_epoch),
        Ok(())
    );

    // a has not revoked yet (still reports all four): b gets nothing, a stays put.
    let response = harness.send(a.heartbeat_request());
    assert_eq!(response.member_epoch, a_epoch);
    assert!(
        response.assignment.is_none(),
        "unchanged assignments are not resent"
    );
    harness.beat(&mut b);
    assert_eq!(b.owned_count(), 0);
    let response = harness.send(a.heartbeat_request()); // reports None: still unknown
    assert_eq!(response.member_epoch, a_epoch);

    // a revokes; its next heartbeat says so and moves it to the group epoch.
    a.owned = TopicPartitionSet::from([(orders, to_keep.clone())]);
    harness.beat(&mut a);
    assert_eq!(a.epoch, harness.group().group_epoch);
    assert_eq!(
        a.owned,
        TopicPartitionSet::from([(orders, to_keep.clone())])
    );

    // Only now does b get them.
    harness.beat(&mut b);
    let moved: BTreeSet<i32> = before_revocation[&orders]
        .difference(&to_keep)
        .copied()
        .collect();
    assert_eq!(b.owned, TopicPartitionSet::from([(orders, moved)]));
    assert_eq!(harness.group().state(), GroupState::Stable);
}

#[test]
fn a_member_reporting_no_partitions_with_none_is_still_waited_for() {
    let mut harness = Harness::new(Topics::with(&[("orders", 2)]));
    let mut a = Client::new("a", &["orders"]);
    harness.join(&mut a);
    let mut b = Client::new("b", &["orders"]);
    harness.join(&mut b);
    let mut request = a.heartbeat_request();
    request.topic_partitions = None;
    let response = harness.send(request.clone());
    assert_eq!(
        response
            .assignment
            .map(|a| a.topic_partitions[0].partitions.len()),
        Some(1)
    );
    harness.send(request);
    harness.beat(&mut b);
    assert_eq!(b.owned_count(), 0);
}

#[test]
fn session_expiry_reassigns_a_dead_members_partitions() {
    let mut harness = Harness::new(Topics::with(&[("orders", 6)]));
    let mut clients = vec![Client::new("a", &["orders"]), Client::new("b", &["orders"])];
    for client in clients.iter_mut() {
        harness.join(client);
    }
    harness.converge(&mut clients);
    let epoch_before = harness.group().group_epoch;
    let b_deadline = harness.group().members["b"].last_heartbeat_ms + SESSION_TIMEOUT_MS;

    // a keeps heartbeating every 5 s; b is silent.
    while harness.now_ms < b_deadline - 1 {
        harness.now_ms = (harness.now_ms + 5_000).min(b_deadline - 1);
        harness.beat(&mut clients[0]);
        harness.tick();
    }
    assert!(harness.group().members.contains_key("b"));
    assert_eq!(harness.groups.next_deadline_ms(), Some(b_deadline));
    harness.now_ms = b_deadline;
    harness.tick();
    assert!(!harness.group().members.contains_key("b"));
    assert_eq!(harness.group().group_epoch, epoch_before + 1);

    let response = harness.beat(&mut clients[0]);
    assert!(response.assignment.is_some());
    assert_eq!(clients[0].owned_count(), 6);
    assert_eq!(clients[0].epoch, epoch_before + 1);

    // b's zombie heartbeat is refused and it rejoins.
    let response = harness.send(clients[1].heartbeat_request());
    assert_eq!(response.error_code, ResponseError::UnknownMemberId.code());
}

#[test]
fn a_member_that_does_not_revoke_within_its_rebalance_timeout_is_removed() {
    let mut harness = Harness::new(Topics::with(&[("orders", 4)]));
    let mut a = Client::new("a", &["orders"]);
    harness.join(&mut a);
    let mut b = Client::new("b", &["orders"]);
    harness.join(&mut b);
    harness.send(a.heartbeat_request()); // told to revoke; never does
    let deadline = harness.group().members["a"]
        .revocation_deadline_ms
        .expect("revoking");
    assert_eq!(deadline, harness.now_ms + 30_000);
    assert_eq!(harness.groups.next_deadline_ms(), Some(deadline));
    harness.now_ms = deadline - 1;
    harness.send(a.heartbeat_request()); // heartbeats alone do not keep a non-revoking member
    harness.now_ms = deadline;
    harness.tick();
    assert!(!harness.group().members.contains_key("a"));
    harness.beat(&mut b);
    assert_eq!(b.owned_count(), 4);
}

#[test]
fn a_static_member_leaving_temporarily_gets_its_partitions_back() {
    let mut harness = Harness::new(Topics::with(&[("orders", 6)]));
    let mut clients = vec![
        Client::new("s-1", &["orders"]).with_instance("host-1"),
        Client::new("d", &["orders"]),
    ];
    for client in clients.iter_mut() {
        harness.join(client);
    }
    harness.converge(&mut clients);
    let static_partitions = clients[0].owned.clone();
    let epoch = harness.group().group_epoch;

    let response = harness.send(clients[0].leave_request(LEAVE_GROUP_STATIC_MEMBER_EPOCH));
    assert_eq!(
        (response.error_code, response.member_epoch),
        (0, LEAVE_GROUP_STATIC_MEMBER_EPOCH)
    );
    assert_eq!(
        harness.group().group_epoch,
        epoch,
        "a temporary leave is no rebalance"
    );

    // The other member carries on with its own partitions only.
    harness.now_ms += 10_000;
    let response = harness.beat(&mut clients[1]);
    assert!(response.assignment.is_none());
    assert_eq!(clients[1].owned_count(), 3);

    // The restarted process, new member id, same instance id.
    harness.now_ms += 10_000;
    let mut restarted = Client::new("s-2", &["orders"]).with_instance("host-1");
    harness.join(&mut restarted);
    assert_eq!(restarted.owned, static_partitions);
    assert_eq!(restarted.epoch, epoch);
    assert_eq!(harness.group().group_epoch, epoch);
    assert!(!harness.group().members.contains_key("s-1"));
    assert_eq!(harness.group().state(), GroupState::Stable);

    // The old incarnation is fenced.
    let mut old = clients[0].heartbeat_request();
    old.instance_id = Some("host-1".into());
    assert_eq!(
        harness.send(old).error_code,
        ResponseError::UnknownMemberId.code()
    );
}

#[test]
fn a_static_member_that_does_not_come_back_loses_its_partitions_after_the_session_timeout() {
    let mut harness = Harness::new(Topics::with(&[("orders", 4)]));
    let mut clients = vec![
        Client::new("s-1", &["orders"]).with_instance("host-1"),
        Client::new("d", &["orders"]),
    ];
    for client in clients.iter_mut() {
        harness.join(client);
    }
    harness.converge(&mut clients);
    harness.send(clients[0].leave_request(LEAVE_GROUP_STATIC_MEMBER_EPOCH));
    assert_eq!(
        harness.groups.delete(GROUP),
        Err(ResponseError::NonEmptyGroup.code())
    );
    let left_at = harness.now_ms;
    while harness.now_ms < left_at + SESSION_TIMEOUT_MS {
        harness.now_ms += 5_000;
        harness.tick();
        harness.beat(&mut clients[1]);
    }
    assert!(!harness.group().members.contains_key("s-1"));
    assert!(!harness.group().static_members.contains_key("host-1"));
    assert_eq!(clients[1].owned_count(), 4);
}

#[test]
fn the_same_static_member_rejoining_with_its_member_id_keeps_its_partitions() {
    let mut harness = Harness::new(Topics::with(&[("orders", 4)]));
    let mut clients = vec![
        Client::new("s-1", &["orders"]).with_instance("host-1"),
        Client::new("d", &["orders"]),
    ];
    for client in clients.iter_mut() {
        harness.join(client);
    }
    harness.converge(&mut clients);
    let owned = clients[0].owned.clone();
    harness.send(clients[0].leave_request(LEAVE_GROUP_STATIC_MEMBER_EPOCH));
    clients[0].epoch = 0;
    clients[0].owned.clear();
    harness.join(&mut clients[0]);
    assert_eq!(clients[0].owned, owned);
    assert_eq!(clients[0].epoch, harness.group().group_epoch);
}

#[test]
fn leaving_reassigns_at_once() {
    let mut harness = Harness::new(Topics::with(&[("orders", 4)]));
    let mut clients = vec![Client::new("a", &["orders"]), Client::new("b", &["orders"])];
    for client in clients.iter_mut() {
        harness.join(client);
    }
    harness.converge(&mut clients);
    let epoch = harness.group().group_epoch;
    let response = harness.send(clients[1].leave_request(LEAVE_GROUP_MEMBER_EPOCH));
    assert_eq!(
        (response.error_code, response.member_epoch),
        (0, LEAVE_GROUP_MEMBER_EPOCH)
    );
    assert_eq!(response.member_id.as_deref(), Some("b"));
    assert_eq!(harness.group().group_epoch, epoch + 1);
    harness.beat(&mut clients[0]);
    assert_eq!(clients[0].owned_count(), 4);

    harness.send(clients[0].leave_request(LEAVE_GROUP_MEMBER_EPOCH));
    assert_eq!(harness.groups.list(), vec![(GROUP.to_string(), "Empty")]);
    assert_eq!(harness.groups.delete(GROUP), Ok(()));
    assert!(!harness.groups.contains(GROUP));
    assert_eq!(
        harness.groups.delete(GROUP),
        Err(ResponseError::GroupIdNotFound.code())
    );
}

#[test]
fn a_v0_join_gets_a_member_id_from_the_seed() {
    let mut harness = Harness::new(Topics::with(&[("orders", 1)]));
    harness.version = 0;
    let mut client = Client::new("", &["orders"]);
    let response = harness.join(&mut client);
    assert_eq!(
        response.member_id.as_deref(),
        Some(Uuid::from_u128(1).to_string().as_str())
    );
    harness.beat(&mut client);
    assert_eq!(client.owned_count(), 1);
}

#[test]
fn the_assignment_is_sent_on_join_on_change_and_on_full_requests_only() {
    let mut harness = Harness::new(Topics::with(&[("orders", 2)]));
    let mut a = Client::new("a", &["orders"]);
    assert!(harness.join(&mut a).assignment.is_some());
    assert!(harness.beat(&mut a).assignment.is_none());
    let mut full = a.heartbeat_request();
    full.rebalance_timeout_ms = 30_000;
    full.subscribed_topic_names = Some(vec![TopicName("orders".into())]);
    assert!(harness.send(full).assignment.is_some());
    assert!(harness.beat(&mut a).assignment.is_none());
}

#[test]
fn a_member_one_epoch_behind_is_tolerated_when_it_owns_no_more_than_it_was_given() {
    let mut harness = Harness::new(Topics::with(&[("orders", 2), ("payments", 2)]));
    let mut a = Client::new("a", &["orders"]);
    harness.join(&mut a);
    let old_epoch = a.epoch;
    // The subscription grows: the response with the new epoch is "lost".
    let mut request = a.heartbeat_request();
    request.subscribed_topic_names = Some(vec![
        TopicName("orders".into()),
        TopicName("payments".into()),
    ]);
    let response = harness.send(request);
    assert!(response.member_epoch > old_epoch);
    let response = harness.send(a.heartbeat_request());
    assert_eq!(response.error_code, 0);
    assert_eq!(response.member_epoch, old_epoch + 1);
    // Owning something it was never given at that epoch is fenced.
    let mut request = a.heartbeat_request();
    request.topic_partitions = Some(to_request_partitions(&TopicPartitionSet::from([(
        Uuid::from_u128(99),
        BTreeSet::from([0]),
    )])));
    assert_eq!(
        harness.send(request).error_code,
        ResponseError::FencedMemberEpoch.code()
    );
}

#[test]
fn fenced_members_rejoin_with_epoch_zero() {
    let mut harness = Harness::new(Topics::with(&[("orders", 2)]));
    let mut a = Client::new("a", &["orders"]);
    harness.join(&mut a);
    let mut request = a.heartbeat_request();
    request.member_epoch = a.epoch + 5;
    let response = harness.send(request);
    assert_eq!(response.error_code, ResponseError::FencedMemberEpoch.code());
    let epoch = harness.group().group_epoch;
    a.owned.clear();
    a.epoch = 0;
    harness.join(&mut a);
    assert_eq!(a.owned_count(), 2);
    assert_eq!(
        harness.group().group_epoch,
        epoch,
        "a rejoin with the same subscription is no rebalance"
    );
}

#[test]
fn every_error_path_is_refused_without_touching_the_group() {
    let mut harness = Harness::new(Topics::with(&[("orders", 2)]));
    let mut clients = vec![
        Client::new("a", &["orders"]).with_instance("host-a"),
        Client::new("b", &["orders"]),
    ];
    for client in clients.iter_mut() {
        harness.join(client);
    }
    harness.converge(&mut clients);
    let a = clients[0].clone();
    assert_eq!(a.epoch, 2);
    let snapshot = format!("{:?}", harness.group());

    type Edit = fn(&mut ConsumerGroupHeartbeatRequest);
    let join = Client::new("x", &["orders"]).join_request();
    let beat = a.heartbeat_request();
    let cases: Vec<(&str, ConsumerGroupHeartbeatRequest, Edit, ResponseError)> = vec![
        (
            "empty group id",
            join.clone(),
            |r| r.group_id = GroupId("".into()),
            ResponseError::InvalidRequest,
        ),
        (
            "v1 join without member id",
            join.clone(),
            |r| r.member_id = "".into(),
            ResponseError::InvalidRequest,
        ),
        (
            "heartbeat without member id",
            beat.clone(),
            |r| r.member_id = "".into(),
            ResponseError::InvalidRequest,
        ),
        (
            "join without subscription",
            join.clone(),
            |r| r.subscribed_topic_names = None,
            ResponseError::InvalidRequest,
        ),
        (
            "join without rebalance timeout",
            join.clone(),
            |r| r.rebalance_timeout_ms = -1,
            ResponseError::InvalidRequest,
        ),
        (
            "negative rebalance timeout",
            beat.clone(),
            |r| r.rebalance_timeout_ms = -7,
            ResponseError::InvalidRequest,
        ),
        (
            "join owning partitions",
            join.clone(),
            |r| r.topic_partitions = Some(vec![RequestPartitions::default()]),
            ResponseError::InvalidRequest,
        ),
        (
            "join without owned partitions",
            join.clone(),
            |r| r.topic_partitions = None,
            ResponseError::InvalidRequest,
        ),
        (
            "epoch below -2",
            beat.clone(),
            |r| r.member_epoch = -3,
            ResponseError::InvalidRequest,
        ),
        (
            "static leave without instance id",
            beat.clone(),
            |r| r.member_epoch = -2,
            ResponseError::InvalidRequest,
        ),
        (
            "empty instance id",
            join.clone(),
            |r| r.instance_id = Some("".into()),
            ResponseError::InvalidRequest,
        ),
        (
            "empty rack id",
            join.clone(),
            |r| r.rack_id = Some("".into()),
            ResponseError::InvalidRequest,
        ),
        (
            "unknown assignor",
            join.clone(),
            |r| r.server_assignor = Some("sticky".into()),
            ResponseError::UnsupportedAssignor,
        ),
        (
            "bad regex",
            join.clone(),
            |r| r.subscribed_topic_regex = Some("orders(".into()),
            ResponseError::InvalidRegularExpression,
        ),
        (
            "unknown member",
            beat.clone(),
            |r| r.member_id = "ghost".into(),
            ResponseError::UnknownMemberId,
        ),
        (
            "unknown member leaving",
            beat.clone(),
            |r| {
                r.member_id = "ghost".into();
                r.member_epoch = -1
            },
            ResponseError::UnknownMemberId,
        ),
        (
            "epoch ahead",
            beat.clone(),
            |r| r.member_epoch += 1,
            ResponseError::FencedMemberEpoch,
        ),
        (
            "epoch behind",
            beat.clone(),
            |r| {
                r.member_epoch -= 1;
                r.topic_partitions = Some(to_request_partitions(&TopicPartitionSet::from([(
                    Uuid::from_u128(99),
                    BTreeSet::from([0]),
                )])))
            },
            ResponseError::FencedMemberEpoch,
        ),
        (
            "previous epoch owning unknown partitions",
            beat.clone(),
            |r| {
                r.member_epoch -= 1;
                r.topic_partitions = None
            },
            ResponseError::FencedMemberEpoch,
        ),
        (
            "live instance id taken",
            join.clone(),
            |r| r.instance_id = Some("host-a".into()),
            ResponseError::UnreleasedInstanceId,
        ),
        (
            "instance id of another member",
            beat.clone(),
            |r| {
                r.member_id = "a".into();
                r.instance_id = Some("host-z".into())
            },
            ResponseError::UnknownMemberId,
        ),
        (
            "static leave for another member",
            beat.clone(),
            |r| {
                r.member_id = "x".into();
                r.member_epoch = -2;
                r.instance_id = Some("host-a".into())
            },
            ResponseError::FencedInstanceId,
        ),
    ];
    for (name, mut request, edit, error) in cases {
        edit(&mut request);
        let response = harness.send(request);
        assert_eq!(
            response.error_code,
            error.code(),
            "{name}: {:?}",
            response.error_message
        );
        assert!(response.error_message.is_some(), "{name}");
        assert_eq!(response.assignment, None, "{name}");
        assert_eq!(
            format!("{:?}", harness.group()),
            snapshot,
            "{name} changed the group"
        );
    }

    // Heartbeats to a group that does not exist (say, after a restart): rejoin.
    let mut request = beat.clone();
    request.group_id = GroupId("elsewhere".into());
    assert_eq!(
        harness.send(request).error_code,
        ResponseError::UnknownMemberId.code()
    );
    let mut request = join.clone();
    request.group_id = GroupId("new-group".into());
    request.server_assignor = Some("sticky".into());
    assert_eq!(
        harness.send(request).error_code,
        ResponseError::UnsupportedAssignor.code()
    );
    assert!(!harness.groups.contains("new-group") && !harness.groups.contains("elsewhere"));
}

#[test]
fn a_full_group_refuses_new_members_but_not_known_ones() {
    let mut harness = Harness::new(Topics::with(&[("orders", 2)]));
    harness.groups = ConsumerGroups::new(ConsumerGroupConfig {
        max_size: 2,
        ..ConsumerGroupConfig::default()
    });
    let mut clients = vec![Client::new("a", &["orders"]), Client::new("b", &["orders"])];
    for client in clients.iter_mut() {
        harness.join(client);
    }
    let epoch = harness.group().group_epoch;
    let response = harness.send(Client::new("c", &["orders"]).join_request());
    assert_eq!(
        response.error_code,
        ResponseError::GroupMaxSizeReached.code()
    );
    assert_eq!(harness.group().group_epoch, epoch);
    clients[0].epoch = 0;
    clients[0].owned.clear();
    harness.join(&mut clients[0]);
    harness.converge(&mut clients);
}

#[test]
fn regex_subscriptions_follow_topics_created_later() {
    let mut harness = Harness::new(Topics::with(&[("orders-eu", 2), ("payments", 2)]));
    let mut a = Client::new("a", &[]);
    let mut request = a.join_request();
    request.subscribed_topic_names = None;
    request.subscribed_topic_regex = Some("orders-.*".into());
    let response = harness.send(request);
    a.apply(&response);
    assert_eq!(
        a.owned.keys().copied().collect::<Vec<_>>(),
        vec![harness.topics.id("orders-eu")]
    );
    let epoch = harness.group().group_epoch;

    // "orders" alone does not match the whole name pattern; "orders-us" does.
    harness.topics.create("orders", 1);
    harness.tick();
    assert_eq!(harness.group().group_epoch, epoch);
    let orders_us = harness.topics.create("orders-us", 3);
    harness.tick();
    assert_eq!(harness.group().group_epoch, epoch + 1);
    harness.beat(&mut a);
    assert_eq!(a.owned.get(&orders_us).map(BTreeSet::len), Some(3));
    assert_eq!(a.owned_count(), 5);
}

#[test]
fn partition_growth_and_topic_deletion_start_new_epochs() {
    let mut harness = Harness::new(Topics::with(&[("orders", 2), ("payments", 2)]));
    let mut clients = vec![
        Client::new("a", &["orders", "payments"]),
        Client::new("b", &["orders", "payments"]),
    ];
    for client in clients.iter_mut() {
        harness.join(client);
    }
    harness.converge(&mut clients);
    let epoch = harness.group().group_epoch;
    harness.tick();
    assert_eq!(harness.group().group_epoch, epoch, "nothing changed");
    let payments = harness.topics.id("payments");

    harness.topics.grow("orders", 6);
    harness.tick();
    assert_eq!(harness.group().group_epoch, epoch + 1);
    harness.converge(&mut clients);
    assert_eq!(
        owned_union(&clients),
        harness.topics.all_partitions(&["orders", "payments"])
    );
    assert_eq!(
        clients.iter().map(Client::owned_count).collect::<Vec<_>>(),
        vec![4, 4]
    );

    // A deleted topic's partitions are dropped without waiting for anyone to revoke them.
    harness.topics.delete("payments");
    harness.tick();
    assert_eq!(harness.group().group_epoch, epoch + 2);
    for client in clients.iter_mut() {
        harness.beat(client);
        assert!(!client.owned.contains_key(&payments));
    }
    harness.converge(&mut clients);
    assert_eq!(clients[0].epoch, epoch + 2);
    assert_eq!(
        owned_union(&clients),
        harness.topics.all_partitions(&["orders"])
    );
}

#[test]
fn the_range_assignor_is_used_when_members_ask_for_it() {
    let mut harness = Harness::new(Topics::with(&[("orders", 4)]));
    let mut a = Client::new("a", &["orders"]);
    let mut request = a.join_request();
    request.server_assignor = Some("range".into());
    a.apply(&harness.send(request));
    let mut b = Client::new("b", &["orders"]);
    harness.join(&mut b);
    let mut clients = vec![a, b];
    harness.converge(&mut clients);
    let orders = harness.topics.id("orders");
    assert_eq!(
        clients[0].owned,
        TopicPartitionSet::from([(orders, BTreeSet::from([0, 1]))])
    );
    assert_eq!(
        clients[1].owned,
        TopicPartitionSet::from([(orders, BTreeSet::from([2, 3]))])
    );
    let described = harness
        .groups
        .describe(1, describe_request(&[GROUP]), &harness.topics);
    assert_eq!(described.groups[0].assignor_name.as_str(), "range");
}

fn describe_request(groups: &[&str]) -> ConsumerGroupDescribeRequest {
    let mut request = ConsumerGroupDescribeRequest::default();
    request.group_ids = groups
        .iter()
        .map(|g| GroupId(StrBytes::from_string(g.to_string())))
        .collect();
    request
}

#[test]
fn describe_reports_members_assignments_and_unknown_groups() {
    let mut harness = Harness::new(Topics::with(&[("orders", 2)]));
    let mut a = Client::new("a", &["orders"]).with_instance("host-a");
    let mut request = a.join_request();
    request.rack_id = Some("rack-1".into());
    a.apply(&harness.send(request));
    let mut b = Client::new("b", &["orders"]);
    harness.join(&mut b);

    let response = harness
        .groups
        .describe(1, describe_request(&[GROUP, "nope"]), &harness.topics);
    let group = &response.groups[0];
    assert_eq!(group.error_code, 0);
    assert_eq!(group.group_state.as_str(), "Reconciling");
    assert_eq!((group.group_epoch, group.assignment_epoch), (2, 2));
    assert_eq!(group.assignor_name.as_str(), "uniform");
    let member_a = &group.members[0];
    assert_eq!(member_a.member_id.as_str(), "a");
    assert_eq!(member_a.instance_id.as_deref(), Some("host-a"));
    assert_eq!(member_a.rack_id.as_deref(), Some("rack-1"));
    assert_eq!(
        (member_a.client_id.as_str(), member_a.client_host.as_str()),
        ("rdkafka", "/127.0.0.1")
    );
    assert_eq!(member_a.member_epoch, 1);
    assert_eq!(member_a.member_type, 1);
    assert_eq!(
        member_a.subscribed_topic_names,
        vec![TopicName("orders".into())]
    );
    assert_eq!(
        member_a.assignment.topic_partitions[0].partitions,
        vec![0, 1]
    );
    assert_eq!(
        member_a.assignment.topic_partitions[0].topic_name.as_str(),
        "orders"
    );
    assert_eq!(
        member_a.target_assignment.topic_partitions[0]
            .partitions
            .len(),
        1
    );
    assert_eq!(group.members[1].assignment.topic_partitions, vec![]);

    let missing = &response.groups[1];
    assert_eq!(missing.error_code, ResponseError::GroupIdNotFound.code());
    assert_eq!(missing.group_id.as_str(), "nope");

    let v0 = harness
        .groups
        .describe(0, describe_request(&[GROUP]), &harness.topics);
    assert_eq!(
        v0.groups[0].members[0].member_type, -1,
        "v0 has no member type"
    );
}

#[test]
fn offset_commits_and_fetches_are_checked_against_member_epochs() {
    let mut harness = Harness::new(Topics::with(&[("orders", 2)]));
    assert_eq!(
        harness.groups.validate_offset_commit("nobody", "", -1),
        Ok(())
    );
    assert_eq!(
        harness.groups.validate_offset_commit("nobody", "a", 3),
        Err(ResponseError::UnknownMemberId.code())
    );
    let mut a = Client::new("a", &["orders"]);
    harness.join(&mut a);
    let groups = &harness.groups;
    assert_eq!(groups.validate_offset_commit(GROUP, "a", a.epoch), Ok(()));
    assert_eq!(
        groups.validate_offset_commit(GROUP, "a", a.epoch - 1),
        Err(ResponseError::StaleMemberEpoch.code())
    );
    assert_eq!(
        groups.validate_offset_commit(GROUP, "a", a.epoch + 1),
        Err(ResponseError::StaleMemberEpoch.code())
    );
    assert_eq!(
        groups.validate_offset_commit(GROUP, "z", a.epoch),
        Err(ResponseError::UnknownMemberId.code())
    );
    assert_eq!(
        groups.validate_offset_commit(GROUP, "", -1),
        Err(ResponseError::UnknownMemberId.code())
    );
    assert_eq!(
        groups.validate_offset_fetch(GROUP, "", -1),
        Ok(()),
        "admin clients read offsets of live groups"
    );
    assert_eq!(groups.validate_offset_fetch(GROUP, "a", a.epoch), Ok(()));
    assert_eq!(
        groups.validate_offset_fetch(GROUP, "a", 0),
        Err(ResponseError::StaleMemberEpoch.code())
    );
    assert_eq!(
        groups.validate_offset_fetch(GROUP, "z", 1),
        Err(ResponseError::UnknownMemberId.code())
    );
    harness.send(a.leave_request(LEAVE_GROUP_MEMBER_EPOCH));
    assert_eq!(harness.groups.validate_offset_commit(GROUP, "", -1), Ok(()));
}

#[test]
fn every_response_encodes_at_every_version() {
    let mut harness = Harness::new(Topics::with(&[("orders", 3), ("payments", 1)]));
    let mut a = Client::new("a", &["orders", "payments"]).with_instance("host-a");
    let mut request = a.join_request();
    request.rack_id = Some("rack".into());
    a.apply(&harness.send(request));
    let mut b = Client::new("b", &[]);
    let mut request = b.join_request();
    request.subscribed_topic_names = None;
    request.subscribed_topic_regex = Some("pay.*".into());
    let joined = harness.send(request);
    b.apply(&joined);
    let error = harness.send(Client::new("", &[]).join_request());
    let left = harness.send(a.leave_request(LEAVE_GROUP_STATIC_MEMBER_EPOCH));
    for version in 0..=1 {
        for response in [&joined, &error, &left] {
            let mut buffer = Vec::new();
            response
                .encode(&mut buffer, version)
                .expect("heartbeat response encodes");
            let decoded =
                ConsumerGroupHeartbeatResponse::decode(&mut bytes::Bytes::from(buffer), version)
                    .expect("heartbeat response decodes");
            assert_eq!(&decoded, response);
        }
        let described =
            harness
                .groups
                .describe(version, describe_request(&[GROUP, "nope"]), &harness.topics);
        assert_eq!(described.groups[0].members.len(), 2);
        let mut buffer = Vec::new();
        described
            .encode(&mut buffer, version)
            .expect("describe response encodes");
        let decoded =
            ConsumerGroupDescribeResponse::decode(&mut bytes::Bytes::from(buffer), version)
                .expect("describe response decodes");
        assert_eq!(decoded, described);
    }
}

#[test]
#[should_panic(expected = "not one of uniform, range")]
fn an_unknown_default_assignor_is_a_configuration_bug() {
    ConsumerGroups::new(ConsumerGroupConfig {
        default_assignor: "sticky",
        ..ConsumerGroupConfig::default()
    });
}

/// One step of a random run.
#[derive(Debug, Clone)]
enum Step {
    Join(usize),
    Beat(usize),
    Leave(usize),
    StaticLeave(usize),
    /// A heartbeat that reports not having revoked yet (the client is slow).
    SlowBeat(usize),
    Wait(i64),
    Grow(i32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0..5usize).prop_map(Step::Join),
        6 => (0..5usize).prop_map(Step::Beat),
        1 => (0..5usize).prop_map(Step::Leave),
        1 => (0..5usize).prop_map(Step::StaticLeave),
        2 => (0..5usize).prop_map(Step::SlowBeat),
        1 => (1_000..60_000i64).prop_map(Step::Wait),
        1 => (1..4i32).prop_map(Step::Grow),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever members do, epochs only increase, no partition is ever owned by two live
    /// members, and once everyone heartbeats the group converges on a complete assignment.
    #[test]
    fn epochs_only_increase_and_ownership_stays_exclusive(steps in proptest::collection::vec(step(), 1..80)) {
        let mut harness = Harness::new(Topics::with(&[("orders", 5), ("payments", 2)]));
        let mut clients: Vec<Client> = (0..5)
            .map(|i| {
                let client = Client::new(&format!("m{i}"), &["orders", "payments"]);
                if i % 2 == 0 { client.with_instance(&format!("host-{i}")) } else { client }
            })
            .collect();
        let mut incarnations = [0usize; 5];
        let mut joined = [false; 5];
        let mut last_group_epoch = 0;
        for step in steps {
            match step {
                Step::Join(i) if !joined[i] => {
                    incarnations[i] += 1;
                    clients[i].member_id = format!("m{i}-{}", incarnations[i]);
                    clients[i].epoch = 0;
                    clients[i].forget();
                    let response = harness.send(clients[i].join_request());
                    if response.error_code == 0 {
                        clients[i].apply(&response);
                        joined[i] = true;
                    }
                }
                Step::Beat(i) | Step::SlowBeat(i) if joined[i] => {
                    if matches!(step, Step::Beat(_)) {
                        clients[i].catch_up();
                    }
                    let mut request = clients[i].heartbeat_request();
                    if matches!(step, Step::SlowBeat(_)) {
                        request.topic_partitions = None;
                    }
                    let response = harness.send(request);
                    if response.error_code == 0 {
                        if matches!(step, Step::SlowBeat(_)) {
                            clients[i].apply_slowly(&response);
                        } else {
                            clients[i].apply(&response);
                        }
                    } else {
                        prop_assert!(
                            response.error_code == ResponseError::UnknownMemberId.code()
                                || response.error_code == ResponseError::FencedMemberEpoch.code(),
                            "{:?}", response
                        );
                        joined[i] = false;
                        clients[i].forget();
                    }
                }
                Step::Leave(i) | Step::StaticLeave(i) if joined[i] => {
                    let epoch = if matches!(step, Step::Leave(_)) || clients[i].instance_id.is_none() {
                        LEAVE_GROUP_MEMBER_EPOCH
                    } else {
                        LEAVE_GROUP_STATIC_MEMBER_EPOCH
                    };
                    harness.send(clients[i].leave_request(epoch));
                    joined[i] = false;
                    clients[i].forget();
                }
                Step::Wait(ms) => {
                    harness.now_ms += ms;
                    harness.tick();
                }
                Step::Grow(more) => {
                    let count = harness.topics.by_name["orders"].1 + more;
                    harness.topics.grow("orders", count);
                    harness.tick();
                }
                _ => {}
            }
            // Clients the group no longer knows are zombies: they will be fenced on their next
            // heartbeat, and their ownership no longer counts.
            let group = harness.groups.groups.get(GROUP);
            for i in 0..5 {
                if joined[i] && !group.is_some_and(|g| g.members.contains_key(&clients[i].member_id)) {
                    joined[i] = false;
                    clients[i].forget();
                }
            }
            if let Some(group) = group {
                prop_assert!(group.group_epoch >= last_group_epoch);
                last_group_epoch = group.group_epoch;
                for i in (0..5).filter(|&i| joined[i]) {
                    prop_assert!(clients[i].epoch <= group.members[&clients[i].member_id].member_epoch);
                }
            }
            let live: Vec<Client> = (0..5).filter(|&i| joined[i]).map(|i| clients[i].clone()).collect();
            assert_disjoint(&live);
        }

        // Liveness: with everyone heartbeating, members that left for good or temporarily expire,
        // the group converges, and every partition is owned.
        let mut live: Vec<Client> = (0..5).filter(|&i| joined[i]).map(|i| clients[i].clone()).collect();
        for client in live.iter_mut() {
            client.catch_up();
        }
        if !live.is_empty() {
            for _ in 0..12 {
                harness.now_ms += 5_000;
                for client in live.iter_mut() {
                    harness.beat(client);
                }
                harness.tick();
            }
            harness.converge(&mut live);
            prop_assert_eq!(owned_union(&live), harness.topics.all_partitions(&["orders", "payments"]));
        }
    }
}
