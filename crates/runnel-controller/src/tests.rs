//! The controller's rules over a whole cluster's metadata: requests decided, their records
//! applied as the quorum would, and the image checked after each step.

use std::collections::BTreeMap;
use std::error::Error;

use kafka_protocol::error::ResponseError;
use proptest::prelude::*;
use uuid::Uuid;

use crate::records::{ConfigResource, Listener};
use crate::*;

type TestResult = Result<(), Box<dyn Error>>;

fn config() -> ControllerConfig {
    ControllerConfig {
        default_partitions: 1,
        default_replication_factor: 3,
        min_insync_replicas: 2,
        producer_id_block_size: 1000,
    }
}

/// One cluster's metadata: the image every node would build, and its log offset.
struct Cluster {
    image: MetadataImage,
    config: ControllerConfig,
    offset: u64,
    /// Each broker's replicas whose disk failed in its current life, named in its heartbeats.
    offline: BTreeMap<BrokerId, Vec<(Uuid, i32)>>,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            image: MetadataImage::default(),
            config: config(),
            offset: 0,
            offline: BTreeMap::new(),
        }
    }

    fn controller(&self) -> Controller<'_> {
        Controller {
            image: &self.image,
            config: &self.config,
        }
    }

    fn commit(&mut self, records: Vec<MetadataRecord>) -> Result<(), InconsistentRecord> {
        for record in records {
            self.offset += 1;
            self.image.apply(self.offset, &record)?;
        }
        self.check_leaders();
        Ok(())
    }

    /// Every leader may lead; no partition waits leaderless for a replica that could lead.
    fn check_leaders(&self) {
        for (topic, index, state) in self.image.partitions() {
            if state.has_leader() {
                assert!(
                    self.image.is_usable_replica(state.leader, topic.id, index),
                    "{}-{index} led by unusable {}: {state:?}",
                    topic.name,
                    state.leader
                );
            } else {
                let candidates = if state.isr.is_empty() {
                    &state.elr
                } else {
                    &state.isr
                };
                assert!(
                    !candidates
                        .iter()
                        .any(|&id| self.image.is_usable_replica(id, topic.id, index)),
                    "{}-{index} leaderless with a usable candidate: {state:?}",
                    topic.name
                );
            }
        }
    }

    fn epoch(&self, id: BrokerId) -> i64 {
        self.image
            .broker(id)
            .map_or(-1, |broker| broker.registration.epoch)
    }

    fn register(&mut self, id: BrokerId, rack: Option<&str>, data_intact: bool) -> TestResult {
        let registration = Registration {
            id,
            incarnation_id: Uuid::from_u128(self.offset as u128 * 100 + id as u128),
            previous_incarnation_id: None,
            listeners: vec![Listener {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9090 + id as u16,
            }],
            rack: rack.map(str::to_owned),
            data_intact,
        };
        let records = self.controller().register_broker(&registration, false)?;
        self.commit(records)?;
        self.offline.remove(&id);
        Ok(())
    }

    fn heartbeat(
        &mut self,
        id: BrokerId,
        want_fence: bool,
        want_shutdown: bool,
    ) -> Result<HeartbeatAnswer, Box<dyn Error>> {
        let (records, answer) = self.controller().heartbeat(&Heartbeat {
            id,
            broker_epoch: self.epoch(id),
            metadata_offset: self.offset,
            want_fence,
            want_shutdown,
            offline_replicas: self.offline.get(&id).cloned().unwrap_or_default(),
        })?;
        self.commit(records)?;
        Ok(answer)
    }

    /// Broker `id`'s replica of the partition fails, and its next heartbeat says so.
    fn disk_fails(&mut self, id: BrokerId, topic: Uuid, partition: i32) -> TestResult {
        let offline = self.offline.entry(id).or_default();
        if !offline.contains(&(topic, partition)) {
            offline.push((topic, partition));
        }
        self.heartbeat(id, false, false)?;
        Ok(())
    }

    fn start(&mut self, id: BrokerId) -> TestResult {
        self.register(id, None, true)?;
        let answer = self.heartbeat(id, false, false)?;
        assert!(!answer.fenced && answer.caught_up);
        Ok(())
    }

    fn fence(&mut self, id: BrokerId) -> TestResult {
        let records = self.controller().fence_broker(id, self.epoch(id));
        self.commit(records)?;
        Ok(())
    }

    fn create(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
    ) -> Result<Uuid, Box<dyn Error>> {
        let id = Uuid::from_u128(0xABC0 + self.offset as u128);
        let topic = NewTopic {
            name: name.into(),
            partitions,
            replication_factor,
            assignments: vec![],
            configs: vec![],
        };
        let records = self.controller().create_topic(&topic, id, 0)?;
        self.commit(records)?;
        Ok(id)
    }

    fn state(&self, topic: Uuid, partition: i32) -> PartitionState {
        self.image
            .partition(topic, partition)
            .cloned()
            .unwrap_or_else(|| panic!("no partition {topic}-{partition}"))
    }

    fn alter(
        &mut self,
        topic: Uuid,
        partition: i32,
        isr: &[BrokerId],
    ) -> Result<(), ControllerError> {
        let state = self.state(topic, partition);
        let request = AlterPartition {
            broker_id: state.leader,
            broker_epoch: self.epoch(state.leader),
            topic_id: topic,
            partition,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            new_isr: isr.iter().map(|&id| (id, self.epoch(id))).collect(),
        };
        let records = self.controller().alter_partition(&request)?;
        self.commit(records)
            .map_err(|error| ControllerError::new(ResponseError::UnknownServerError, error.0))
    }
}

fn code<T: std::fmt::Debug>(result: Result<T, ControllerError>) -> Option<ResponseError> {
    result.err().map(|error| error.code)
}

#[test]
fn brokers_register_fenced_and_are_unfenced_once_caught_up() -> TestResult {
    let mut cluster = Cluster::new();
    cluster.register(1, None, true)?;
    let (records, answer) = cluster.controller().heartbeat(&Heartbeat {
        id: 1,
        broker_epoch: cluster.epoch(1),
        metadata_offset: 0,
        want_fence: false,
        want_shutdown: false,
        offline_replicas: Vec::new(),
    })?;
    assert!(records.is_empty() && answer.fenced && !answer.caught_up);
    let answer = cluster.heartbeat(1, false, false)?;
    assert!(!answer.fenced);
    assert!(cluster.image.is_usable(1));
    // An old epoch must register again.
    let stale = cluster.controller().heartbeat(&Heartbeat {
        id: 1,
        broker_epoch: 99,
        metadata_offset: cluster.offset,
        want_fence: false,
        want_shutdown: false,
        offline_replicas: Vec::new(),
    });
    assert_eq!(code(stale), Some(ResponseError::StaleBrokerEpoch));
    Ok(())
}

#[test]
fn a_second_process_cannot_take_a_live_brokers_id() -> TestResult {
    let mut cluster = Cluster::new();
    cluster.start(1)?;
    let impostor = Registration {
        id: 1,
        incarnation_id: Uuid::from_u128(424242),
        previous_incarnation_id: None,
        listeners: vec![],
        rack: None,
        data_intact: true,
    };
    assert_eq!(
        code(cluster.controller().register_broker(&impostor, true)),
        Some(ResponseError::DuplicateBrokerRegistration)
    );
    // Once its session expired, a restarted broker registers in a new epoch, fenced.
    let before = cluster.epoch(1);
    let records = cluster.controller().register_broker(&impostor, false)?;
    cluster.commit(records)?;
    assert!(cluster.epoch(1) > before);
    assert!(!cluster.image.is_usable(1));
    Ok(())
}

#[test]
fn a_restarted_broker_naming_its_previous_incarnation_replaces_it_at_once() -> TestResult {
    let mut cluster = Cluster::new();
    cluster.start(1)?;
    let registered = cluster
        .image
        .broker(1)
        .map(|broker| broker.registration.incarnation_id);
    let restarted = Registration {
        id: 1,
        incarnation_id: Uuid::from_u128(424242),
        previous_incarnation_id: registered,
        listeners: vec![],
        rack: None,
        data_intact: true,
    };
    // Its previous life's session is still running: only naming that life lets it in.
    let impostor = Registration {
        previous_incarnation_id: Some(Uuid::from_u128(999_999)),
        ..restarted.clone()
    };
    assert_eq!(
        code(cluster.controller().register_broker(&impostor, true)),
        Some(ResponseError::DuplicateBrokerRegistration)
    );
    let before = cluster.epoch(1);
    let records = cluster.controller().register_broker(&restarted, true)?;
    cluster.commit(records)?;
    assert!(cluster.epoch(1) > before, "a new broker epoch");
    assert!(!cluster.image.is_usable(1), "fenced until it catches up");
    Ok(())
}

#[test]
fn a_single_nodes_topics_are_adopted_with_their_ids_once_it_is_unfenced() -> TestResult {
    let mut cluster = Cluster::new();
    cluster.start(2)?;
    cluster.create("theirs", 1, 1)?;
    cluster.register(1, None, true)?;
    let orders = AdoptedTopic {
        name: "orders".into(),
        id: Uuid::from_u128(77),
        partitions: 3,
        configs: vec![("cleanup.policy".into(), "compact".into())],
    };
    let adopt = |cluster: &Cluster, topics: &[AdoptedTopic]| {
        cluster
            .controller()
            .adopt_topics(1, cluster.epoch(1), topics, 5_000)
    };
    assert_eq!(
        code(adopt(&cluster, std::slice::from_ref(&orders))),
        Some(ResponseError::InvalidReplicaAssignment),
        "not while it is fenced: it could lead none of them"
    );
    let answer = cluster.heartbeat(1, false, false)?;
    assert!(!answer.fenced);
    let records = adopt(&cluster, std::slice::from_ref(&orders))?;
    cluster.commit(records)?;
    let adopted = cluster.image.topic_by_name("orders").expect("adopted");
    assert_eq!(adopted.id, orders.id, "the topic keeps its id");
    assert_eq!(cluster.state(orders.id, 2).replicas, vec![1]);
    assert_eq!(cluster.image.next_producer_id(), 5_000);
    assert_eq!(
        cluster
            .image
            .configs(&ConfigResource::Topic("orders".into()))
            .and_then(|configs| configs.get("cleanup.policy"))
            .map(String::as_str),
        Some("compact")
    );
    // A retry after a crash adopts nothing twice.
    assert_eq!(adopt(&cluster, std::slice::from_ref(&orders))?, Vec::new());
    assert_eq!(
        cluster.state(orders.id, 0).leader,
        1,
        "it leads what it brought"
    );
    // The same name under another id would hand one topic's data to the other: refused.
    let clash = AdoptedTopic {
        name: "theirs".into(),
        id: Uuid::from_u128(78),
        partitions: 1,
        configs: vec![],
    };
    assert_eq!(
        code(adopt(&cluster, &[clash])),
        Some(ResponseError::TopicAlreadyExists)
    );
    Ok(())
}

#[test]
fn topics_are_placed_on_unfenced_brokers_with_the_default_replication_factor() -> TestResult {
    let mut cluster = Cluster::new();
    for id in 1..=3 {
        cluster.start(id)?;
    }
    cluster.register(4, None, true)?; // fenced: not placed on
    let topic = cluster.create("orders", 6, -1)?;
    for partition in 0..6 {
        let state = cluster.state(topic, partition);
        assert_eq!(state.replicas.len(), 3);
        assert!(!state.replicas.contains(&4));
        assert_eq!(state.isr.len(), 3);
        assert_eq!(state.leader, state.replicas[0]);
    }
    assert_eq!(
        code(cluster.controller().create_topic(
            &NewTopic {
                name: "wide".into(),
                partitions: 1,
                replication_factor: 4,
                assignments: vec![],
                configs: vec![],
            },
            Uuid::from_u128(5),
            0
        )),
        Some(ResponseError::InvalidReplicationFactor)
    );
    assert_eq!(
        code(cluster.controller().create_topic(
            &NewTopic {
                name: "orders".into(),
                partitions: 1,
                replication_factor: 1,
                assignments: vec![],
                configs: vec![],
            },
            Uuid::from_u128(6),
            0
        )),
        Some(ResponseError::TopicAlreadyExists)
    );
    Ok(())
}

#[test]
fn manual_assignments_are_checked() -> TestResult {
    let mut cluster = Cluster::new();
    cluster.start(1)?;
    cluster.start(2)?;
    let topic = |assignments: Vec<Vec<BrokerId>>| NewTopic {
        name: "manual".into(),
        partitions: -1,
        replication_factor: -1,
        assignments,
        configs: vec![],
    };
    let id = Uuid::from_u128(77);
    for bad in [vec![vec![]], vec![vec![1, 1]], vec![vec![1, 9]]] {
        assert_eq!(
            code(cluster.controller().create_topic(&topic(bad), id, 0)),
            Some(ResponseError::InvalidReplicaAssignment)
        );
    }
    let records = cluster
        .controller()
        .create_topic(&topic(vec![vec![2, 1], vec![1]]), id, 0)?;
    cluster.commit(records)?;
    assert_eq!(cluster.state(id, 0).leader, 2);
    assert_eq!(cluster.state(id, 1).replicas, vec![1]);
    Ok(())
}

#[test]
fn a_fenced_leader_hands_over_to_the_isr_and_leads_again_only_through_it() -> TestResult {
    let mut cluster = Cluster::new();
    for id in 1..=3 {
        cluster.start(id)?;
    }
    let topic = cluster.create("t", 1, 3)?;
    let before = cluster.state(topic, 0);
    let old_leader = before.leader;
    cluster.fence(old_leader)?;
    let after = cluster.state(topic, 0);
    assert_ne!(after.leader, old_leader);
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert!(!after.isr.contains(&old_leader));
    // The old leader comes back: fenced until it heartbeats, then a follower out of sync.
    cluster.register(old_leader, None, true)?;
    cluster.heartbeat(old_leader, false, false)?;
    assert!(!cluster.state(topic, 0).isr.contains(&old_leader));
    // The new leader adds it back once it caught up.
    let mut isr = cluster.state(topic, 0).isr;
    isr.push(old_leader);
    cluster.alter(topic, 0, &isr)?;
    assert_eq!(cluster.state(topic, 0).isr.len(), 3);
    Ok(())
}

/// A replica whose disk failed, named in its broker's heartbeats, gives up its leadership
/// and ISR place while the broker goes on serving its other partitions; a partition with no
/// other replica waits leaderless, and is led again by that replica once it restarts healthy.
#[test]
fn a_replica_reported_offline_hands_over_and_a_lone_one_waits_for_its_restart() -> TestResult {
    let mut cluster = Cluster::new();
    for id in 1..=3 {
        cluster.start(id)?;
    }
    let replicated = cluster.create("replicated", 2, 3)?;
    let failed = cluster.state(replicated, 0).leader;
    let other = cluster.state(replicated, 1);
    cluster.disk_fails(failed, replicated, 0)?;
    let moved = cluster.state(replicated, 0);
    assert_ne!(moved.leader, failed);
    assert!(
        moved.leader >= 0 && !moved.isr.contains(&failed),
        "{moved:?}"
    );
    assert_eq!(
        cluster.state(replicated, 1),
        other,
        "its other partition is untouched"
    );
    // Named again in every heartbeat: nothing more changes.
    let offset = cluster.offset;
    cluster.heartbeat(failed, false, false)?;
    assert_eq!(cluster.offset, offset);
    // The new leader cannot take it back into the ISR.
    let mut isr = moved.isr.clone();
    isr.push(failed);
    assert_eq!(
        code(cluster.alter(replicated, 0, &isr)),
        Some(ResponseError::IneligibleReplica)
    );
    // Never elected while offline, even with every other replica gone.
    for id in (1..=3).filter(|&id| id != failed) {
        cluster.fence(id)?;
    }
    assert!(!cluster.state(replicated, 0).has_leader());

    let alone = cluster.create("alone", 1, 1)?;
    let only = cluster.state(alone, 0).leader;
    cluster.disk_fails(only, alone, 0)?;
    let waiting = cluster.state(alone, 0);
    assert!(
        !waiting.has_leader() && waiting.elr == vec![only],
        "{waiting:?}"
    );
    // Restarted with the disk still failing: not elected.
    cluster.register(only, None, true)?;
    cluster.disk_fails(only, alone, 0)?;
    assert!(!cluster.state(alone, 0).has_leader());
    // Restarted healthy, even having lost unflushed data: the only replica leads again.
    cluster.register(only, None, false)?;
    cluster.heartbeat(only, false, false)?;
    assert_eq!(cluster.state(alone, 0).leader, only);
    Ok(())
}

#[test]
fn alter_partition_is_fenced_by_epochs() -> TestResult {
    let mut cluster = Cluster::new();
    for id in 1..=3 {
        cluster.start(id)?;
    }
    let topic = cluster.create("t", 1, 3)?;
    let state = cluster.state(topic, 0);
    let follower = state.replicas[1];
    let request = AlterPartition {
        broker_id: state.leader,
        broker_epoch: cluster.epoch(state.leader),
        topic_id: topic,
        partition: 0,
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        new_isr: state
            .isr
            .iter()
            .filter(|&&id| id != follower)
            .map(|&id| (id, cluster.epoch(id)))
            .collect(),
    };
    let attempt = |change: &dyn Fn(&mut AlterPartition)| {
        let mut request = request.clone();
        change(&mut request);
        code(cluster.controller().alter_partition(&request))
    };
    assert_eq!(
        attempt(&|r| r.broker_epoch += 1),
        Some(ResponseError::StaleBrokerEpoch)
    );
    assert_eq!(
        attempt(&|r| r.leader_epoch -= 1),
        Some(ResponseError::FencedLeaderEpoch)
    );
    assert_eq!(
        attempt(&|r| r.partition_epoch += 1),
        Some(ResponseError::InvalidUpdateVersion)
    );
    assert_eq!(
        attempt(&|r| r.partition = 5),
        Some(ResponseError::UnknownTopicOrPartition)
    );
    assert_eq!(
        attempt(&|r| r.topic_id = Uuid::nil()),
        Some(ResponseError::UnknownTopicId)
    );
    assert_eq!(
        attempt(&|r| r.broker_id = follower),
        Some(ResponseError::StaleBrokerEpoch),
        "the follower's epoch differs from the leader's"
    );
    assert_eq!(
        attempt(&|r| r.new_isr.retain(|&(id, _)| id == follower)),
        Some(ResponseError::InvalidRequest),
        "the leader must stay in its ISR"
    );
    // The refusals made before the epochs matched may follow an applied attempt of the same
    // change; the ones made after say nothing was applied.
    for code in [
        ResponseError::StaleBrokerEpoch,
        ResponseError::FencedLeaderEpoch,
        ResponseError::InvalidUpdateVersion,
        ResponseError::UnknownTopicOrPartition,
        ResponseError::UnknownTopicId,
    ] {
        assert!(!alter_partition_not_applied(code), "{code:?}");
    }
    assert!(alter_partition_not_applied(ResponseError::InvalidRequest));
    assert!(alter_partition_not_applied(
        ResponseError::IneligibleReplica
    ));
    cluster.alter(
        topic,
        0,
        &request
            .new_isr
            .iter()
            .map(|&(id, _)| id)
            .collect::<Vec<_>>(),
    )?;
    // KIP-903: a replica whose broker restarted since the leader saw it cannot rejoin on
    // the strength of its previous life.
    let restarted_epoch = cluster.epoch(follower);
    cluster.register(follower, None, true)?;
    cluster.heartbeat(follower, false, false)?;
    let state = cluster.state(topic, 0);
    let mut rejoin: Vec<(BrokerId, i64)> = state
        .isr
        .iter()
        .map(|&id| (id, cluster.epoch(id)))
        .collect();
    rejoin.push((follower, restarted_epoch));
    let request = AlterPartition {
        broker_id: state.leader,
        broker_epoch: cluster.epoch(state.leader),
        topic_id: topic,
        partition: 0,
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        new_isr: rejoin,
    };
    assert_eq!(
        code(cluster.controller().alter_partition(&request)),
        Some(ResponseError::IneligibleReplica)
    );
    Ok(())
}

/// KIP-966 end to end: the ISR shrinks to nothing as brokers fail; the last replicas out
/// stay eligible, and the partition leads again as soon as one of them is back, but not
/// with a broker that lost unflushed data, nor with one that was never in sync.
#[test]
fn kip_966_the_last_replicas_in_sync_lead_again_after_a_total_outage() -> TestResult {
    let mut cluster = Cluster::new();
    for id in 1..=3 {
        cluster.start(id)?;
    }
    let topic = cluster.create("t", 1, 3)?; // min.insync.replicas = 2
    let replicas = cluster.state(topic, 0).replicas;
    let (a, b, c) = (replicas[0], replicas[1], replicas[2]);
    cluster.fence(c)?; // ISR {a, b}: still at min ISR, c is not eligible.
    assert!(cluster.state(topic, 0).elr.is_empty());
    cluster.fence(b)?; // ISR {a}: b left below min ISR, so it is eligible.
    assert_eq!(cluster.state(topic, 0).elr, vec![b]);
    cluster.fence(a)?; // ISR empty, leaderless.
    let state = cluster.state(topic, 0);
    assert_eq!((state.leader, state.isr.len()), (NO_LEADER, 0));
    assert_eq!(state.elr.len(), 2);
    // c comes back first: never eligible, so the partition stays leaderless.
    cluster.register(c, None, true)?;
    cluster.heartbeat(c, false, false)?;
    assert_eq!(cluster.state(topic, 0).leader, NO_LEADER);
    // a comes back, but lost unflushed data: it leaves the ELR.
    cluster.register(a, None, false)?;
    cluster.heartbeat(a, false, false)?;
    let state = cluster.state(topic, 0);
    assert_eq!((state.leader, state.elr.clone()), (NO_LEADER, vec![b]));
    // b comes back: it leads.
    cluster.register(b, None, true)?;
    cluster.heartbeat(b, false, false)?;
    let state = cluster.state(topic, 0);
    assert_eq!((state.leader, state.isr.clone()), (b, vec![b]));
    Ok(())
}

#[test]
fn a_controlled_shutdown_moves_leadership_away_before_it_is_allowed() -> TestResult {
    let mut cluster = Cluster::new();
    for id in 1..=3 {
        cluster.start(id)?;
    }
    let topic = cluster.create("t", 3, 3)?;
    let answer = cluster.heartbeat(1, false, true)?;
    assert!(!answer.should_shut_down);
    for partition in 0..3 {
        let state = cluster.state(topic, partition);
        assert_ne!(state.leader, 1);
        assert!(!state.isr.contains(&1));
    }
    assert!(cluster.heartbeat(1, false, true)?.should_shut_down);
    Ok(())
}

#[test]
fn preferred_leaders_are_elected_back() -> TestResult {
    let mut cluster = Cluster::new();
    for id in 1..=3 {
        cluster.start(id)?;
    }
    let topic = cluster.create("t", 1, 3)?;
    let preferred = cluster.state(topic, 0).replicas[0];
    assert_eq!(
        code(cluster.controller().elect_preferred("t", 0)),
        Some(ResponseError::ElectionNotNeeded)
    );
    cluster.fence(preferred)?;
    assert_eq!(
        code(cluster.controller().elect_preferred("t", 0)),
        Some(ResponseError::PreferredLeaderNotAvailable)
    );
    cluster.start(preferred)?;
    let mut isr = cluster.state(topic, 0).isr;
    isr.push(preferred);
    cluster.alter(topic, 0, &isr)?;
    let record = cluster.controller().elect_preferred("t", 0)?;
    cluster.commit(vec![record])?;
    assert_eq!(cluster.state(topic, 0).leader, preferred);
    Ok(())
}

#[test]
fn partitions_configs_deletion_and_producer_ids() -> TestResult {
    let mut cluster = Cluster::new();
    cluster.start(1)?;
    cluster.start(2)?;
    cluster.create("t", 2, 2)?;
    assert_eq!(
        code(cluster.controller().create_partitions("t", 2, &[], 0)),
        Some(ResponseError::InvalidPartitions)
    );
    let records = cluster.controller().create_partitions("t", 5, &[], 0)?;
    cluster.commit(records)?;
    let topic = cluster.image.topic_by_name("t").map(|t| t.partitions.len());
    assert_eq!(topic, Some(5));

    let resource = ConfigResource::Topic("t".into());
    let records = cluster.controller().set_configs(
        &resource,
        &[("min.insync.replicas".into(), Some("1".into()))],
    )?;
    cluster.commit(records)?;
    assert_eq!(
        cluster.image.config(&resource, "min.insync.replicas"),
        Some("1")
    );
    assert_eq!(
        code(
            cluster
                .controller()
                .set_configs(&ConfigResource::Topic("nope".into()), &[])
        ),
        Some(ResponseError::UnknownTopicOrPartition)
    );

    let (record, first, count) = cluster
        .controller()
        .allocate_producer_ids(1, cluster.epoch(1))?;
    cluster.commit(vec![record])?;
    let (_, second, _) = cluster
        .controller()
        .allocate_producer_ids(2, cluster.epoch(2))?;
    assert_eq!((first, count, second), (0, 1000, 1000));
    assert_eq!(
        code(cluster.controller().allocate_producer_ids(1, 12345)),
        Some(ResponseError::StaleBrokerEpoch)
    );

    let record = cluster.controller().delete_topic("t")?;
    cluster.commit(vec![record])?;
    assert!(cluster.image.topic_by_name("t").is_none());
    assert_eq!(cluster.image.configs(&resource), None);
    assert_eq!(
        code(cluster.controller().delete_topic("t")),
        Some(ResponseError::UnknownTopicOrPartition)
    );
    Ok(())
}

fn manual_topic(cluster: &mut Cluster, replicas: &[BrokerId]) -> Result<Uuid, Box<dyn Error>> {
    let id = Uuid::from_u128(0x5EA);
    let topic = NewTopic {
        name: "r".into(),
        partitions: -1,
        replication_factor: -1,
        assignments: vec![replicas.to_vec()],
        configs: vec![],
    };
    let records = cluster.controller().create_topic(&topic, id, 0)?;
    cluster.commit(records)?;
    Ok(id)
}

/// KIP-455: the target replicas join, and once all are in sync the removed ones leave and
/// a leader outside the target hands over.
#[test]
fn a_reassignment_completes_once_every_target_replica_is_in_sync() -> TestResult {
    let mut cluster = Cluster::new();
    for id in 1..=4 {
        cluster.start(id)?;
    }
    let topic = manual_topic(&mut cluster, &[1, 2, 3])?;
    let records = cluster.controller().reassign("r", 0, Some(&[2, 3, 4]))?;
    cluster.commit(records)?;
    let state = cluster.state(topic, 0);
    assert_eq!(state.replicas, vec![2, 3, 4, 1]);
    assert_eq!(
        (
            state.adding_replicas.clone(),
            state.removing_replicas.clone()
        ),
        (vec![4], vec![1])
    );
    assert_eq!(
        state.leader, 1,
        "the old leader leads until the move completes"
    );
    assert_eq!(cluster.controller().reassignments().len(), 1);
    // Broker 4 catches up; the leader adds it to the ISR, which completes the move.
    cluster.alter(topic, 0, &[1, 2, 3, 4])?;
    let state = cluster.state(topic, 0);
    assert_eq!(state.replicas, vec![2, 3, 4]);
    assert_eq!(state.isr, vec![2, 3, 4]);
    assert_eq!(state.leader, 2);
    assert!(!state.is_reassigning());
    assert!(cluster.controller().reassignments().is_empty());
    Ok(())
}

#[test]
fn a_reassignment_can_be_cancelled_and_a_reorder_completes_at_once() -> TestResult {
    let mut cluster = Cluster::new();
    for id in 1..=4 {
        cluster.start(id)?;
    }
    let topic = manual_topic(&mut cluster, &[1, 2, 3])?;
    assert_eq!(
        code(cluster.controller().reassign("r", 0, None)),
        Some(ResponseError::NoReassignmentInProgress)
    );
    assert_eq!(
        code(cluster.controller().reassign("r", 0, Some(&[1, 9]))),
        Some(ResponseError::InvalidReplicaAssignment)
    );
    assert_eq!(
        code(cluster.controller().reassign("r", 5, Some(&[1]))),
        Some(ResponseError::UnknownTopicOrPartition)
    );
    let records = cluster.controller().reassign("r", 0, Some(&[2, 3, 4]))?;
    cluster.commit(records)?;
    let records = cluster.controller().reassign("r", 0, None)?;
    cluster.commit(records)?;
    let state = cluster.state(topic, 0);
    // Back to the original replicas, in the order the reassignment listed them (as KRaft
    // reverts: the targets kept first).
    assert_eq!(state.replicas, vec![2, 3, 1]);
    assert!(!state.is_reassigning());
    // The same replicas in another order: every target replica is in sync already.
    let records = cluster.controller().reassign("r", 0, Some(&[3, 2, 1]))?;
    cluster.commit(records)?;
    let state = cluster.state(topic, 0);
    assert_eq!((state.replicas.clone(), state.leader), (vec![3, 2, 1], 1));
    assert!(!state.is_reassigning());
    let record = cluster.controller().elect_preferred("r", 0)?;
    cluster.commit(vec![record])?;
    assert_eq!(cluster.state(topic, 0).leader, 3);
    Ok(())
}

/// Cancelling a move whose new replica took over the leadership would drop every in-sync
/// replica: refused, as KRaft refuses a revert that needs an unclean election.
#[test]
fn a_move_that_drops_every_replica_that_may_lead_is_refused() -> TestResult {
    let mut cluster = Cluster::new();
    for id in 1..=4 {
        cluster.start(id)?;
    }
    let topic = manual_topic(&mut cluster, &[1, 2, 3])?;
    cluster.alter(topic, 0, &[1])?;
    let records = cluster.controller().reassign("r", 0, Some(&[2, 3, 4]))?;
    cluster.commit(records)?;
    cluster.alter(topic, 0, &[1, 4])?;
    cluster.fence(1)?;
    let state = cluster.state(topic, 0);
    assert_eq!((state.leader, state.isr.clone()), (4, vec![4]));
    assert_eq!(
        code(cluster.controller().reassign("r", 0, None)),
        Some(ResponseError::InvalidReplicaAssignment)
    );
    Ok(())
}

/// An unclean election is an operator's choice, never the controller's: only a leaderless
/// partition, and only with a usable replica, gets one.
#[test]
fn an_unclean_election_revives_a_partition_only_on_request() -> TestResult {
    let mut cluster = Cluster::new();
    for id in 1..=3 {
        cluster.start(id)?;
    }
    let topic = cluster.create("t", 1, 3)?;
    assert_eq!(
        code(cluster.controller().elect_unclean("t", 0)),
        Some(ResponseError::ElectionNotNeeded)
    );
    // Every in-sync replica comes back having lost unflushed data: nobody may lead.
    for id in 1..=3 {
        cluster.fence(id)?;
    }
    for id in 1..=3 {
        cluster.register(id, None, false)?;
        cluster.heartbeat(id, false, false)?;
    }
    assert_eq!(cluster.state(topic, 0).leader, NO_LEADER);
    let records = cluster.controller().elect_unclean("t", 0)?;
    cluster.commit(records)?;
    let state = cluster.state(topic, 0);
    assert!(state.has_leader());
    assert_eq!(state.isr, vec![state.leader]);
    assert!(state.elr.is_empty());
    Ok(())
}

#[test]
fn names_are_checked_as_kafka_does() {
    assert_eq!(
        code(validate_topic_name("")),
        Some(ResponseError::InvalidTopicException)
    );
    assert_eq!(
        code(validate_topic_name("..")),
        Some(ResponseError::InvalidTopicException)
    );
    assert_eq!(
        code(validate_topic_name("a/b")),
        Some(ResponseError::InvalidTopicException)
    );
    assert_eq!(
        code(validate_topic_name(&"x".repeat(TOPIC_NAME_MAX_LEN + 1))),
        Some(ResponseError::InvalidTopicException)
    );
    assert_eq!(validate_topic_name("a.b_c-1"), Ok(()));
    assert_eq!(
        code(check_topic_collision("a.b", ["a_b"])),
        Some(ResponseError::InvalidTopicException)
    );
}

#[derive(Debug, Clone)]
enum Event {
    /// A broker restarts (re-registers, possibly having lost unflushed data) and heartbeats.
    Restart {
        broker: usize,
        data_intact: bool,
    },
    Fence {
        broker: usize,
    },
    /// The leader of a partition drops a follower from, or adds a replica to, its ISR.
    Shrink {
        partition: i32,
        broker: usize,
    },
    Expand {
        partition: i32,
        broker: usize,
    },
    Shutdown {
        broker: usize,
    },
    /// A reassignment of a partition to three of the four brokers.
    Reassign {
        partition: i32,
        without: usize,
        reverse: bool,
    },
    Cancel {
        partition: i32,
    },
    /// A broker's replica of a partition is on a disk that fails.
    DiskFails {
        partition: i32,
        broker: usize,
    },
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (0usize..4, any::<bool>()).prop_map(|(broker, data_intact)| Event::Restart {
            broker,
            data_intact
        }),
        (0usize..4).prop_map(|broker| Event::Fence { broker }),
        (0i32..4, 0usize..4).prop_map(|(partition, broker)| Event::Shrink { partition, broker }),
        (0i32..4, 0usize..4).prop_map(|(partition, broker)| Event::Expand { partition, broker }),
        (0usize..4).prop_map(|broker| Event::Shutdown { broker }),
        (0i32..4, 0usize..4, any::<bool>()).prop_map(|(partition, without, reverse)| {
            Event::Reassign {
                partition,
                without,
                reverse,
            }
        }),
        (0i32..4).prop_map(|partition| Event::Cancel { partition }),
        (0i32..4, 0usize..4).prop_map(|(partition, broker)| Event::DiskFails { partition, broker }),
    ]
}

proptest! {
    /// Whatever brokers fail, restart and shut down, and whatever ISR changes leaders ask
    /// for: every record applies, every leader is usable, no partition waits leaderless
    /// with a usable candidate (checked in `commit`), and a new leader gets a new epoch.
    #[test]
    fn the_image_keeps_its_invariants_through_any_history(
        events in proptest::collection::vec(event(), 1..60)
    ) {
        let mut cluster = Cluster::new();
        for id in 1..=4 {
            prop_assert!(cluster.start(id).is_ok());
        }
        let topic = cluster.create("t", 4, 3);
        prop_assert!(topic.is_ok());
        let topic = topic.unwrap_or_default();
        for event in events {
            let before: Vec<PartitionState> = (0..4).map(|p| cluster.state(topic, p)).collect();
            let result = match event {
                Event::Restart { broker, data_intact } => {
                    let id = broker as i32 + 1;
                    cluster
                        .register(id, None, data_intact)
                        .and_then(|()| cluster.heartbeat(id, false, false).map(drop))
                }
                Event::Fence { broker } => cluster.fence(broker as i32 + 1),
                Event::DiskFails { partition, broker } => {
                    cluster.disk_fails(broker as i32 + 1, topic, partition)
                }
                Event::Shutdown { broker } => cluster.heartbeat(broker as i32 + 1, false, true).map(drop),
                Event::Shrink { partition, broker } => {
                    let state = cluster.state(topic, partition);
                    let isr: Vec<BrokerId> =
                        state.isr.iter().copied().filter(|&id| id != broker as i32 + 1).collect();
                    if state.has_leader() {
                        // Refusals (dropping the leader) are fine; applying must not fail.
                        if let Err(error) = cluster.alter(topic, partition, &isr) {
                            prop_assert_ne!(error.code, ResponseError::UnknownServerError, "{}", error);
                        }
                    }
                    Ok(())
                }
                Event::Expand { partition, broker } => {
                    let state = cluster.state(topic, partition);
                    let mut isr = state.isr.clone();
                    isr.push(broker as i32 + 1);
                    if state.has_leader() {
                        if let Err(error) = cluster.alter(topic, partition, &isr) {
                            prop_assert_ne!(error.code, ResponseError::UnknownServerError, "{}", error);
                        }
                    }
                    Ok(())
                }
                Event::Reassign { partition, without, reverse } => {
                    // Three of the four brokers, in either order.
                    let mut target: Vec<BrokerId> =
                        (1..=4).filter(|&id| id != without as i32 + 1).collect();
                    if reverse {
                        target.reverse();
                    }
                    match cluster.controller().reassign("t", partition, Some(&target)) {
                        Ok(records) => cluster.commit(records).map_err(|error| error.0.into()),
                        Err(error) => {
                            prop_assert_ne!(error.code, ResponseError::UnknownServerError, "{}", error);
                            Ok(())
                        }
                    }
                }
                Event::Cancel { partition } => match cluster.controller().reassign("t", partition, None) {
                    Ok(records) => cluster.commit(records).map_err(|error| error.0.into()),
                    Err(error) => {
                        prop_assert!(
                            matches!(
                                error.code,
                                ResponseError::NoReassignmentInProgress
                                    | ResponseError::InvalidReplicaAssignment
                            ),
                            "{}",
                            error
                        );
                        Ok(())
                    }
                },
            };
            prop_assert!(result.is_ok(), "{:?}", result.err().map(|e| e.to_string()));
            for (partition, old) in (0..4).zip(before) {
                let new = cluster.state(topic, partition);
                // One event may take a partition through several leaders (a restart
                // leaves, then rejoins), so: a new leader means a new epoch, never an old one.
                prop_assert!(new.leader_epoch >= old.leader_epoch);
                if new.leader != old.leader {
                    prop_assert!(new.leader_epoch > old.leader_epoch, "{:?} -> {:?}", old, new);
                }
                prop_assert!(new.partition_epoch >= old.partition_epoch);
            }
        }
    }
}
