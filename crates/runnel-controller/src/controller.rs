//! The controller's decisions. Each request is read against the current
//! [`MetadataImage`] and becomes either an error (and no records) or the records that carry
//! it out; the caller appends them to the quorum's log, and nothing has happened until they
//! are committed and applied. One request is decided at a time, against the image that
//! includes everything decided before it, so two requests never decide on the same state.
//!
//! Validation of config names and values is the broker's ([`Controller::set_configs`] stores
//! what it is given): the broker that forwards a request holds the config schema.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::image::{MetadataImage, TopicImage};
use crate::partition_change::{change_isr, effective_min_isr, ChangeContext};
use crate::placement::{place, Candidate};
use crate::records::{
    BrokerChange, BrokerId, BrokerRegistration, ConfigResource, Listener, MetadataRecord,
    PartitionChange, PartitionRecord, PartitionState, NO_LEADER,
};

/// Kafka's limit on topic name length.
pub const TOPIC_NAME_MAX_LEN: usize = 249;

/// The most partitions one topic may have.
pub const PARTITIONS_MAX: i32 = 100_000;

pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// The cluster's defaults, as the controllers' configuration sets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// `num.partitions`.
    pub default_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `min.insync.replicas` where neither the topic nor the cluster overrides it.
    pub min_insync_replicas: i32,
    /// How many producer ids one AllocateProducerIds hands a broker.
    pub producer_id_block_size: i64,
}

/// Whether an AlterPartition refused with `code` was certainly not applied, with the
/// partition as the leader knows it: the refusals [`Controller::alter_partition`] makes only
/// after the broker, leader and partition epochs matched (INELIGIBLE_REPLICA, as in Kafka,
/// and INVALID_REQUEST). The leader may then forget the change; after any other refusal, or
/// no answer, it keeps counting the change's joiners until newer metadata comes.
pub fn alter_partition_not_applied(code: ResponseError) -> bool {
    matches!(
        code,
        ResponseError::IneligibleReplica | ResponseError::InvalidRequest
    )
}

/// A refused request: the Kafka error code and a message for the client.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerError {
    pub code: ResponseError,
    pub message: String,
}

impl ControllerError {
    pub fn new(code: ResponseError, message: impl Into<String>) -> ControllerError {
        ControllerError {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ControllerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for ControllerError {}

type Decided<T> = Result<T, ControllerError>;

fn refuse<T>(code: ResponseError, message: impl Into<String>) -> Decided<T> {
    Err(ControllerError::new(code, message))
}

/// Kafka's topic name rules.
pub fn validate_topic_name(name: &str) -> Decided<()> {
    let invalid = |reason: String| refuse(ResponseError::InvalidTopicException, reason);
    if name.is_empty() {
        return invalid("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return invalid(format!("Topic name cannot be \"{name}\""));
    }
    if name.len() > TOPIC_NAME_MAX_LEN {
        return invalid(format!(
            "Topic name is illegal, it can't be longer than {TOPIC_NAME_MAX_LEN} characters, topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return invalid(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Refuses `name` if an existing topic's name differs from it only by '.' and '_', which
/// metric names do not tell apart.
pub fn check_topic_collision<'a>(
    name: &str,
    existing: impl IntoIterator<Item = &'a str>,
) -> Decided<()> {
    let normalised = name.replace('.', "_");
    match existing
        .into_iter()
        .find(|other| other.replace('.', "_") == normalised)
    {
        Some(other) => refuse(
            ResponseError::InvalidTopicException,
            format!("Topic '{name}' collides with existing topic '{other}': '.' and '_' are treated alike in metric names."),
        ),
        None => Ok(()),
    }
}

/// A broker asking to register (BrokerRegistration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub id: BrokerId,
    pub incarnation_id: Uuid,
    /// The incarnation this process's data directory last registered as, if any: a
    /// registration naming the one registered now replaces it at once, as it comes from the
    /// same broker restarted (its previous life is over), not from a second process with the
    /// same id. Without it a restarted broker waits out its previous life's session.
    #[serde(default)]
    pub previous_incarnation_id: Option<Uuid>,
    pub listeners: Vec<Listener>,
    pub rack: Option<String>,
    /// The broker's logs hold everything it ever reported to a leader: it shut down cleanly,
    /// or it reports only fsynced offsets. When false it leaves every ELR (KIP-966).
    pub data_intact: bool,
}

/// A broker's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub id: BrokerId,
    pub broker_epoch: i64,
    /// The offset of the metadata log the broker has applied.
    pub metadata_offset: u64,
    pub want_fence: bool,
    pub want_shutdown: bool,
    /// The replicas this broker holds whose disk failed, as (topic id, partition): every
    /// heartbeat names them all (KIP-858 reports failed log directories; a Runnel replica
    /// fails alone), so the controller moves their leadership and ISR membership away.
    #[serde(default)]
    pub offline_replicas: Vec<(Uuid, i32)>,
}

/// The controller's answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
    /// The broker has applied the metadata up to its own registration.
    pub caught_up: bool,
    pub fenced: bool,
    /// A controlled shutdown may proceed: the broker leads nothing any more.
    pub should_shut_down: bool,
}

/// A leader's ISR change (AlterPartition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartition {
    pub broker_id: BrokerId,
    pub broker_epoch: i64,
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// With each member's broker epoch (KIP-903).
    pub new_isr: Vec<(BrokerId, i64)>,
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTopic {
    pub name: String,
    /// `-1`: the cluster default.
    pub partitions: i32,
    /// `-1`: the cluster default.
    pub replication_factor: i16,
    /// Replica lists by partition index, instead of counts; empty for none.
    pub assignments: Vec<Vec<BrokerId>>,
    /// Validated by the caller.
    pub configs: Vec<(String, String)>,
}

/// A topic a broker held on its own before it joined a quorum, adopted with its id, so that
/// its partition directories (stamped with that id) stay its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptedTopic {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub configs: Vec<(String, String)>,
}

/// A change to the heartbeating broker's registration.
fn broker_change(
    heartbeat: &Heartbeat,
    fenced: Option<bool>,
    in_controlled_shutdown: Option<bool>,
) -> BrokerChange {
    BrokerChange {
        id: heartbeat.id,
        epoch: heartbeat.broker_epoch,
        fenced,
        in_controlled_shutdown,
        offline_replicas: None,
    }
}

/// The controller's decisions over one image.
#[derive(Debug, Clone, Copy)]
pub struct Controller<'a> {
    pub image: &'a MetadataImage,
    pub config: &'a ControllerConfig,
}

impl Controller<'_> {
    /// A partition by topic name, or UNKNOWN_TOPIC_OR_PARTITION.
    fn named_partition(
        &self,
        name: &str,
        partition: i32,
    ) -> Decided<(&TopicImage, &PartitionState)> {
        self.image
            .topic_by_name(name)
            .and_then(|topic| Some((topic, topic.partitions.get(&partition)?)))
            .ok_or_else(|| {
                ControllerError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("Partition {name}-{partition} does not exist."),
                )
            })
    }

    fn min_isr(&self, topic: &str) -> i32 {
        self.image
            .config(
                &ConfigResource::Topic(topic.to_owned()),
                MIN_INSYNC_REPLICAS,
            )
            .or_else(|| {
                self.image
                    .config(&ConfigResource::Cluster, MIN_INSYNC_REPLICAS)
            })
            .and_then(|value| value.parse().ok())
            .unwrap_or(self.config.min_insync_replicas)
    }

    fn change(
        &self,
        topic: &TopicImage,
        partition: i32,
        state: &PartitionState,
        usable: &dyn Fn(BrokerId) -> bool,
        target_isr: &[BrokerId],
        drop_from_elr: &[BrokerId],
    ) -> Option<MetadataRecord> {
        // A replica on a failed disk is never usable, whatever the caller allows.
        let usable =
            |id: BrokerId| usable(id) && !self.image.is_replica_offline(id, topic.id, partition);
        let context = ChangeContext {
            topic_id: topic.id,
            partition,
            state,
            min_isr: effective_min_isr(self.min_isr(&topic.name), state.replicas.len()),
            usable: &usable,
        };
        change_isr(&context, target_isr, drop_from_elr).map(MetadataRecord::PartitionChange)
    }

    /// Broker `id` may no longer lead or be in sync: it leaves every ISR (joining the ELR
    /// where the rules say so, unless `lost_data`), and its partitions get new leaders.
    fn leave_partitions(&self, id: BrokerId, lost_data: bool) -> Vec<MetadataRecord> {
        self.leave_partitions_where(id, lost_data, |_, _| true)
    }

    /// [`Self::leave_partitions`] for the partitions `chosen` picks, by topic id and index.
    fn leave_partitions_where(
        &self,
        id: BrokerId,
        lost_data: bool,
        chosen: impl Fn(Uuid, i32) -> bool,
    ) -> Vec<MetadataRecord> {
        let usable = |other: BrokerId| other != id && self.image.is_usable(other);
        // The only replica of a partition stays eligible whatever it lost: no other copy
        // holds more, and leaving it would strand the partition for good.
        let loses_eligibility = |state: &PartitionState| lost_data && state.replicas != [id];
        self.image
            .partitions()
            .filter(|(topic, index, state)| {
                (state.isr.contains(&id)
                    || state.leader == id
                    || (loses_eligibility(state) && state.elr.contains(&id)))
                    && chosen(topic.id, *index)
            })
            .flat_map(|(topic, index, state)| {
                let target: Vec<BrokerId> =
                    state.isr.iter().copied().filter(|&r| r != id).collect();
                let drop_from_elr: &[BrokerId] = if loses_eligibility(state) { &[id] } else { &[] };
                let change = self.change(topic, index, state, &usable, &target, drop_from_elr);
                self.with_completion(topic, index, state, change)
            })
            .collect()
    }

    /// `change` (if any), then the completion of the reassignment under way if the partition
    /// as it leaves it has every target replica in sync: a reassignment completes on
    /// whichever change gets it there, as in KRaft.
    fn with_completion(
        &self,
        topic: &TopicImage,
        partition: i32,
        state: &PartitionState,
        change: Option<MetadataRecord>,
    ) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        let mut after = state.clone();
        if let Some(MetadataRecord::PartitionChange(change)) = change {
            after = state.with_change(&change);
            records.push(MetadataRecord::PartitionChange(change));
        }
        records.extend(
            self.completion(topic, partition, &after)
                .map(MetadataRecord::PartitionChange),
        );
        records
    }

    /// Broker `id` became usable: leaderless partitions it could lead elect again, except
    /// those whose replica here is `offline`.
    fn join_partitions(
        &self,
        id: BrokerId,
        offline: &BTreeSet<(Uuid, i32)>,
    ) -> Vec<MetadataRecord> {
        let usable = |other: BrokerId| other == id || self.image.is_usable(other);
        self.image
            .partitions()
            .filter(|(topic, index, state)| {
                !state.has_leader()
                    && (state.isr.contains(&id) || state.elr.contains(&id))
                    && !offline.contains(&(topic.id, *index))
            })
            .flat_map(|(topic, index, state)| {
                let change = self.change(topic, index, state, &usable, &state.isr, &[]);
                self.with_completion(topic, index, state, change)
            })
            .collect()
    }

    /// Registers a broker, fenced, with a new broker epoch. `session_alive`: the broker
    /// already registered under this id has been heard from within its session timeout. A
    /// retry of a registration already made (same incarnation) needs no records: the
    /// broker's current epoch answers it.
    pub fn register_broker(
        &self,
        request: &Registration,
        session_alive: bool,
    ) -> Decided<Vec<MetadataRecord>> {
        if request.id < 0 {
            return refuse(
                ResponseError::InvalidRequest,
                format!("Broker id {} is negative.", request.id),
            );
        }
        if let Some(existing) = self.image.broker(request.id) {
            if existing.registration.incarnation_id == request.incarnation_id {
                return Ok(Vec::new());
            }
            let restarted =
                request.previous_incarnation_id == Some(existing.registration.incarnation_id);
            if session_alive && !existing.registration.fenced && !restarted {
                return refuse(
                    ResponseError::DuplicateBrokerRegistration,
                    format!(
                        "Another broker is registered with id {} and heartbeating (incarnation {}).",
                        request.id, existing.registration.incarnation_id
                    ),
                );
            }
        }
        // The new incarnation starts fenced, whatever the previous one was.
        let mut records = self.leave_partitions(request.id, !request.data_intact);
        records.push(MetadataRecord::RegisterBroker(BrokerRegistration {
            id: request.id,
            epoch: self.image.next_broker_epoch(),
            incarnation_id: request.incarnation_id,
            listeners: request.listeners.clone(),
            rack: request.rack.clone(),
            fenced: true,
            in_controlled_shutdown: false,
            offline_replicas: BTreeSet::new(),
        }));
        Ok(records)
    }

    /// A heartbeat: unfences a broker that has caught up with the metadata, fences one that
    /// asks, and starts a controlled shutdown.
    pub fn heartbeat(
        &self,
        heartbeat: &Heartbeat,
    ) -> Decided<(Vec<MetadataRecord>, HeartbeatAnswer)> {
        let Some(broker) = self
            .image
            .broker(heartbeat.id)
            .filter(|broker| broker.registration.epoch == heartbeat.broker_epoch)
        else {
            return refuse(
                ResponseError::StaleBrokerEpoch,
                format!(
                    "Broker {} is not registered with epoch {}: register again.",
                    heartbeat.id, heartbeat.broker_epoch
                ),
            );
        };
        let registration = &broker.registration;
        let caught_up = heartbeat.metadata_offset >= broker.registered_at;
        let change = |fenced: Option<bool>, in_controlled_shutdown: Option<bool>| {
            MetadataRecord::BrokerChange(broker_change(heartbeat, fenced, in_controlled_shutdown))
        };
        let mut records = Vec::new();
        let mut fenced = registration.fenced;
        if heartbeat.want_shutdown && !registration.in_controlled_shutdown {
            records.push(change(None, Some(true)));
            records.extend(self.leave_partitions(heartbeat.id, false));
        } else if heartbeat.want_fence && !registration.fenced {
            records.push(change(Some(true), None));
            records.extend(self.leave_partitions(heartbeat.id, false));
            fenced = true;
        } else if !heartbeat.want_fence && !heartbeat.want_shutdown {
            let offline: BTreeSet<(Uuid, i32)> =
                heartbeat.offline_replicas.iter().copied().collect();
            if offline != registration.offline_replicas {
                records.push(MetadataRecord::BrokerChange(BrokerChange {
                    offline_replicas: Some(offline.clone()),
                    ..broker_change(heartbeat, None, None)
                }));
            }
            // A broker in controlled shutdown stays out until it registers again.
            if registration.fenced && caught_up && !registration.in_controlled_shutdown {
                records.push(change(Some(false), None));
                records.extend(self.join_partitions(heartbeat.id, &offline));
                fenced = false;
            }
            // A replica whose disk failed can neither serve nor catch up: it leaves the ISR
            // and its leadership moves, as a fenced broker's do. It stays eligible (ELR) as
            // a fenced one does (what it held below the high watermark was fsynced, and
            // recovery checks every batch's checksum when it opens again), but is not elected
            // while it is reported offline. Disjoint from the partitions joined above, which
            // leave out the offline ones.
            records.extend(
                self.leave_partitions_where(heartbeat.id, false, |topic, index| {
                    offline.contains(&(topic, index))
                }),
            );
        }
        let leads_nothing = !self
            .image
            .partitions()
            .any(|(_, _, state)| state.leader == heartbeat.id);
        let should_shut_down =
            registration.in_controlled_shutdown && records.is_empty() && leads_nothing;
        Ok((
            records,
            HeartbeatAnswer {
                caught_up,
                fenced,
                should_shut_down,
            },
        ))
    }

    /// Fences a broker whose session expired in `broker_epoch`; nothing if it has registered
    /// again since or is fenced already.
    pub fn fence_broker(&self, id: BrokerId, broker_epoch: i64) -> Vec<MetadataRecord> {
        let Some(broker) = self.image.broker(id) else {
            return Vec::new();
        };
        if broker.registration.epoch != broker_epoch || broker.registration.fenced {
            return Vec::new();
        }
        let mut records = vec![MetadataRecord::BrokerChange(BrokerChange {
            id,
            epoch: broker_epoch,
            fenced: Some(true),
            in_controlled_shutdown: None,
            offline_replicas: None,
        })];
        records.extend(self.leave_partitions(id, false));
        records
    }

    /// A leader's ISR change, and the completion of a reassignment it allows. No records:
    /// the partition already has that ISR, and the answer is its current state. Refusals
    /// come in two kinds (see [`alter_partition_not_applied`]): after the broker, leader and
    /// partition epochs were checked, the change itself is wrong and nothing was applied;
    /// before, the partition is not as the leader knows it, perhaps because an earlier
    /// attempt of the same change was applied.
    pub fn alter_partition(&self, request: &AlterPartition) -> Decided<Vec<MetadataRecord>> {
        let registered = self.image.broker(request.broker_id);
        if registered.is_none_or(|broker| broker.registration.epoch != request.broker_epoch) {
            return refuse(
                ResponseError::StaleBrokerEpoch,
                format!(
                    "Broker {} is not registered with epoch {}.",
                    request.broker_id, request.broker_epoch
                ),
            );
        }
        let Some(topic) = self.image.topic(request.topic_id) else {
            return refuse(
                ResponseError::UnknownTopicId,
                format!("No topic with id {}.", request.topic_id),
            );
        };
        let Some(state) = topic.partitions.get(&request.partition) else {
            return refuse(
                ResponseError::UnknownTopicOrPartition,
                format!(
                    "Topic {} has no partition {}.",
                    topic.name, request.partition
                ),
            );
        };
        let name = format!("{}-{}", topic.name, request.partition);
        if state.leader != request.broker_id {
            return refuse(
                ResponseError::NotLeaderOrFollower,
                format!(
                    "Broker {} does not lead {name}; {} does.",
                    request.broker_id, state.leader
                ),
            );
        }
        if request.leader_epoch != state.leader_epoch {
            return refuse(
                ResponseError::FencedLeaderEpoch,
                format!(
                    "{name} is in leader epoch {}, not {}.",
                    state.leader_epoch, request.leader_epoch
                ),
            );
        }
        if request.partition_epoch != state.partition_epoch {
            return refuse(
                ResponseError::InvalidUpdateVersion,
                format!(
                    "{name} is in partition epoch {}, not {}.",
                    state.partition_epoch, request.partition_epoch
                ),
            );
        }
        let target: Vec<BrokerId> = request.new_isr.iter().map(|&(id, _)| id).collect();
        let mut distinct = target.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != target.len() || !target.contains(&request.broker_id) {
            return refuse(
                ResponseError::InvalidRequest,
                format!(
                    "The ISR {target:?} for {name} repeats a replica or leaves out its leader."
                ),
            );
        }
        for &(id, epoch) in &request.new_isr {
            if state.isr.contains(&id) {
                continue;
            }
            let eligible = state.replicas.contains(&id)
                && self
                    .image
                    .broker(id)
                    .is_some_and(|broker| broker.is_usable() && broker.registration.epoch == epoch)
                && !self
                    .image
                    .is_replica_offline(id, topic.id, request.partition);
            if !eligible {
                return refuse(
                    ResponseError::IneligibleReplica,
                    format!(
                        "Replica {id} (broker epoch {epoch}) cannot join the ISR of {name}: not a replica, not registered in that epoch, fenced, shutting down, or on a failed disk."
                    ),
                );
            }
        }
        let usable = |id: BrokerId| self.image.is_usable(id);
        let change = self.change(topic, request.partition, state, &usable, &target, &[]);
        Ok(self.with_completion(topic, request.partition, state, change))
    }

    /// The change that gives a partition a new replica set (and reassignment state), with
    /// the ISR, ELR and leader following through the one set of election rules: members
    /// outside the new replicas drop out, and a leader outside them hands over.
    fn reshape(
        &self,
        topic: &TopicImage,
        partition: i32,
        state: &PartitionState,
        replicas: Vec<BrokerId>,
        adding: Vec<BrokerId>,
        removing: Vec<BrokerId>,
    ) -> PartitionChange {
        let mut shaped = state.clone();
        shaped.replicas = replicas;
        shaped.adding_replicas = adding;
        shaped.removing_replicas = removing;
        let target_isr: Vec<BrokerId> = state
            .isr
            .iter()
            .copied()
            .filter(|id| shaped.replicas.contains(id))
            .collect();
        let usable = |id: BrokerId| self.image.is_usable(id);
        let elected = match self.change(topic, partition, &shaped, &usable, &target_isr, &[]) {
            Some(MetadataRecord::PartitionChange(change)) => change,
            _ => PartitionChange::of(topic.id, partition),
        };
        // Dropping a replica bumps the leader epoch even when the leader stays, as KRaft
        // does, so the removed replica's fetches in the old epoch are fenced.
        let dropped = state
            .replicas
            .iter()
            .any(|id| !shaped.replicas.contains(id));
        let leader = elected
            .leader
            .or((dropped && state.has_leader()).then_some(state.leader));
        PartitionChange {
            leader,
            replicas: (shaped.replicas != state.replicas).then(|| shaped.replicas.clone()),
            adding_replicas: (shaped.adding_replicas != state.adding_replicas)
                .then(|| shaped.adding_replicas.clone()),
            removing_replicas: (shaped.removing_replicas != state.removing_replicas)
                .then(|| shaped.removing_replicas.clone()),
            ..elected
        }
    }

    /// The change that completes the reassignment under way, once every target replica is
    /// in sync (KIP-455's rule; KRaft waits only for the adding replicas, so a kept replica
    /// that is out of sync holds a move here): the replicas become the target, and a leader
    /// outside it hands over.
    fn completion(
        &self,
        topic: &TopicImage,
        partition: i32,
        state: &PartitionState,
    ) -> Option<PartitionChange> {
        if !state.is_reassigning() {
            return None;
        }
        let target = state.target_replicas();
        if !target.iter().all(|id| state.isr.contains(id)) {
            return None;
        }
        Some(self.reshape(topic, partition, state, target, Vec::new(), Vec::new()))
    }

    /// AlterPartitionReassignments for one partition (KIP-455): `Some(target)` starts a
    /// reassignment to those replicas (replacing one under way), `None` cancels the one under
    /// way. The target replicas join first; the removed ones leave once every target replica
    /// is in sync. As KRaft lists them, the replicas are the targets then the ones leaving,
    /// so a cancelled reassignment keeps the targets first.
    pub fn reassign(
        &self,
        name: &str,
        partition: i32,
        target: Option<&[BrokerId]>,
    ) -> Decided<Vec<MetadataRecord>> {
        let (topic, state) = self.named_partition(name, partition)?;
        let original = state.original_replicas();
        let target: Vec<BrokerId> = match target {
            Some(target) => {
                self.check_assignment(partition, target)?;
                target.to_vec()
            }
            None if state.is_reassigning() => original.clone(),
            None => {
                return refuse(
                    ResponseError::NoReassignmentInProgress,
                    format!("No reassignment of {name}-{partition} is in progress."),
                )
            }
        };
        let removing: Vec<BrokerId> = original
            .iter()
            .copied()
            .filter(|id| !target.contains(id))
            .collect();
        let adding: Vec<BrokerId> = target
            .iter()
            .copied()
            .filter(|id| !original.contains(id))
            .collect();
        let replicas: Vec<BrokerId> = target.iter().chain(&removing).copied().collect();
        // As KRaft refuses a revert that would need one: a move that drops every replica
        // that may lead (the ISR, or with it empty the ELR; say, cancelling a move whose new
        // replicas took over the leadership) would leave only replicas that may lack
        // committed records.
        let eligible = if state.isr.is_empty() {
            &state.elr
        } else {
            &state.isr
        };
        if !eligible.is_empty() && !eligible.iter().any(|id| replicas.contains(id)) {
            return refuse(
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "Moving {name}-{partition} to {target:?} would drop every replica that may lead ({eligible:?}) and need an unclean leader election."
                ),
            );
        }
        let change = self.reshape(topic, partition, state, replicas, adding, removing);
        let change = (change != PartitionChange::of(topic.id, partition))
            .then_some(MetadataRecord::PartitionChange(change));
        Ok(self.with_completion(topic, partition, state, change))
    }

    /// ListPartitionReassignments: every partition with a reassignment under way.
    pub fn reassignments(&self) -> Vec<(String, i32, PartitionState)> {
        self.image
            .partitions()
            .filter(|(_, _, state)| state.is_reassigning())
            .map(|(topic, index, state)| (topic.name.clone(), index, state.clone()))
            .collect()
    }

    fn usable_candidates(&self) -> Vec<Candidate> {
        self.image
            .brokers()
            .filter(|broker| broker.is_usable())
            .map(|broker| Candidate {
                id: broker.registration.id,
                rack: broker.registration.rack.clone(),
            })
            .collect()
    }

    /// Replica lists for `count` new partitions from `first`, placed or as given.
    fn replica_lists(
        &self,
        first: i32,
        count: i32,
        replication_factor: i16,
        assignments: &[Vec<BrokerId>],
        start: usize,
    ) -> Decided<Vec<Vec<BrokerId>>> {
        if !assignments.is_empty() {
            for (index, replicas) in (first..).zip(assignments) {
                self.check_assignment(index, replicas)?;
            }
            return Ok(assignments.to_vec());
        }
        if replication_factor <= 0 {
            return refuse(
                ResponseError::InvalidReplicationFactor,
                "Replication factor must be larger than 0, or -1 to use the default value.",
            );
        }
        let candidates = self.usable_candidates();
        let wanted = replication_factor as usize;
        if wanted > candidates.len() {
            return refuse(
                ResponseError::InvalidReplicationFactor,
                format!(
                    "Unable to replicate the partition {wanted} time(s): the target replication factor of {wanted} cannot be reached because only {} broker(s) are registered and unfenced.",
                    candidates.len()
                ),
            );
        }
        Ok(place(&candidates, first, count, wanted, start))
    }

    fn check_assignment(&self, index: i32, replicas: &[BrokerId]) -> Decided<()> {
        let invalid = |message: String| refuse(ResponseError::InvalidReplicaAssignment, message);
        if replicas.is_empty() {
            return invalid(format!("The assignment of partition {index} is empty."));
        }
        for (at, id) in replicas.iter().enumerate() {
            if replicas[..at].contains(id) {
                return invalid(format!(
                    "The assignment of partition {index} names broker {id} more than once."
                ));
            }
            if self.image.broker(*id).is_none() {
                return invalid(format!(
                    "The assignment of partition {index} names broker {id}, which is not registered."
                ));
            }
        }
        if !replicas.iter().any(|&id| self.image.is_usable(id)) {
            return invalid(format!(
                "Every broker in the assignment of partition {index} is fenced or shutting down."
            ));
        }
        Ok(())
    }

    fn new_partition(
        &self,
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<BrokerId>,
    ) -> MetadataRecord {
        let isr: Vec<BrokerId> = replicas
            .iter()
            .copied()
            .filter(|&id| self.image.is_usable(id))
            .collect();
        MetadataRecord::Partition(PartitionRecord {
            topic_id,
            partition,
            state: PartitionState {
                leader: isr.first().copied().unwrap_or(NO_LEADER),
                isr,
                elr: Vec::new(),
                replicas,
                leader_epoch: 0,
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            },
        })
    }

    /// Creates a topic with id `id`; `start` spreads where its partitions lead.
    pub fn create_topic(
        &self,
        topic: &NewTopic,
        id: Uuid,
        start: usize,
    ) -> Decided<Vec<MetadataRecord>> {
        validate_topic_name(&topic.name)?;
        if self.image.topic_by_name(&topic.name).is_some() {
            return refuse(
                ResponseError::TopicAlreadyExists,
                format!("Topic '{}' already exists.", topic.name),
            );
        }
        check_topic_collision(&topic.name, self.image.topics().map(|t| t.name.as_str()))?;
        if self.image.topic(id).is_some() {
            return refuse(
                ResponseError::TopicAlreadyExists,
                format!("A topic with id {id} already exists."),
            );
        }
        let (partitions, replication_factor) = if topic.assignments.is_empty() {
            let partitions = match topic.partitions {
                -1 => self.config.default_partitions,
                n => n,
            };
            let replication_factor = match topic.replication_factor {
                -1 => self.config.default_replication_factor,
                n => n,
            };
            (partitions, replication_factor)
        } else {
            if topic.partitions != -1 || topic.replication_factor != -1 {
                return refuse(
                    ResponseError::InvalidRequest,
                    "Both a replica assignment and a partition count or replication factor were given.",
                );
            }
            let partitions = i32::try_from(topic.assignments.len()).unwrap_or(i32::MAX);
            (partitions, -1)
        };
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return refuse(
                ResponseError::InvalidPartitions,
                format!("Number of partitions must be between 1 and {PARTITIONS_MAX}, got {partitions}."),
            );
        }
        let lists =
            self.replica_lists(0, partitions, replication_factor, &topic.assignments, start)?;
        let mut records = vec![MetadataRecord::Topic {
            name: topic.name.clone(),
            id,
        }];
        records.extend(
            (0..)
                .zip(lists)
                .map(|(index, replicas)| self.new_partition(id, index, replicas)),
        );
        records.extend(
            topic
                .configs
                .iter()
                .map(|(name, value)| MetadataRecord::Config {
                    resource: ConfigResource::Topic(topic.name.clone()),
                    name: name.clone(),
                    value: Some(value.clone()),
                }),
        );
        Ok(records)
    }

    pub fn delete_topic(&self, name: &str) -> Decided<MetadataRecord> {
        match self.image.topic_by_name(name) {
            Some(topic) => Ok(MetadataRecord::RemoveTopic { id: topic.id }),
            None => refuse(
                ResponseError::UnknownTopicOrPartition,
                format!("Topic '{name}' does not exist."),
            ),
        }
    }

    /// Grows a topic to `total` partitions, placed like the existing ones or as given.
    pub fn create_partitions(
        &self,
        name: &str,
        total: i32,
        assignments: &[Vec<BrokerId>],
        start: usize,
    ) -> Decided<Vec<MetadataRecord>> {
        let Some(topic) = self.image.topic_by_name(name) else {
            return refuse(
                ResponseError::UnknownTopicOrPartition,
                format!("Topic '{name}' does not exist."),
            );
        };
        let current = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        if total <= current || total > PARTITIONS_MAX {
            return refuse(
                ResponseError::InvalidPartitions,
                format!(
                    "Topic currently has {current} partitions, {total} would not be an increase."
                ),
            );
        }
        let adding = total - current;
        if !assignments.is_empty() && assignments.len() != adding as usize {
            return refuse(
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "{} assignments given for {adding} new partitions.",
                    assignments.len()
                ),
            );
        }
        let replication_factor = topic.partitions.values().next().map_or(1, |state| {
            i16::try_from(state.replicas.len()).unwrap_or(i16::MAX)
        });
        let lists = self.replica_lists(current, adding, replication_factor, assignments, start)?;
        Ok((current..)
            .zip(lists)
            .map(|(index, replicas)| self.new_partition(topic.id, index, replicas))
            .collect())
    }

    /// Sets (`Some`) or removes (`None`) dynamic configs of one resource.
    pub fn set_configs(
        &self,
        resource: &ConfigResource,
        changes: &[(String, Option<String>)],
    ) -> Decided<Vec<MetadataRecord>> {
        match resource {
            ConfigResource::Topic(name) if self.image.topic_by_name(name).is_none() => {
                return refuse(
                    ResponseError::UnknownTopicOrPartition,
                    format!("Topic '{name}' does not exist."),
                )
            }
            ConfigResource::Broker(id) if self.image.broker(*id).is_none() => {
                return refuse(
                    ResponseError::InvalidRequest,
                    format!("Broker {id} is not registered."),
                )
            }
            _ => {}
        }
        Ok(changes
            .iter()
            .map(|(name, value)| MetadataRecord::Config {
                resource: resource.clone(),
                name: name.clone(),
                value: value.clone(),
            })
            .collect())
    }

    /// Refuses a request from a broker's earlier life (or one never registered).
    fn check_broker_epoch(&self, broker_id: BrokerId, broker_epoch: i64) -> Decided<()> {
        if self
            .image
            .broker(broker_id)
            .is_none_or(|broker| broker.registration.epoch != broker_epoch)
        {
            return refuse(
                ResponseError::StaleBrokerEpoch,
                format!("Broker {broker_id} is not registered with epoch {broker_epoch}."),
            );
        }
        Ok(())
    }

    /// Hands a broker the next block of producer ids: `(record, first id, count)`.
    pub fn allocate_producer_ids(
        &self,
        broker_id: BrokerId,
        broker_epoch: i64,
    ) -> Decided<(MetadataRecord, i64, i64)> {
        self.check_broker_epoch(broker_id, broker_epoch)?;
        let first = self.image.next_producer_id();
        let count = self.config.producer_id_block_size;
        let Some(next) = first.checked_add(count) else {
            return refuse(
                ResponseError::UnknownServerError,
                "Producer ids are exhausted.",
            );
        };
        let record = MetadataRecord::ProducerIds {
            broker_id,
            broker_epoch,
            next_producer_id: next,
        };
        Ok((record, first, count))
    }

    /// Adopts what a broker held on its own (a single node before it joined a quorum): its
    /// topics, with their ids, each partition on that broker alone, and its producer ids, so
    /// that the cluster never hands out one its logs already know. Topics the cluster already
    /// has under the same id were adopted before (a retry); a topic the cluster has under
    /// another id is refused: adopting either would hand one topic's data to the other.
    pub fn adopt_topics(
        &self,
        broker_id: BrokerId,
        broker_epoch: i64,
        topics: &[AdoptedTopic],
        next_producer_id: i64,
    ) -> Decided<Vec<MetadataRecord>> {
        self.check_broker_epoch(broker_id, broker_epoch)?;
        let mut records = Vec::new();
        for topic in topics {
            match (self.image.topic(topic.id), self.image.topic_by_name(&topic.name)) {
                (Some(known), _) if known.name == topic.name => continue,
                (_, Some(known)) => {
                    return refuse(
                        ResponseError::TopicAlreadyExists,
                        format!(
                            "Topic '{}' exists in the cluster with id {}, but broker {broker_id} holds it with id {}.",
                            topic.name, known.id, topic.id
                        ),
                    )
                }
                _ => {}
            }
            let new_topic = NewTopic {
                name: topic.name.clone(),
                partitions: -1,
                replication_factor: -1,
                assignments: (0..topic.partitions).map(|_| vec![broker_id]).collect(),
                configs: topic.configs.clone(),
            };
            // Refused while the broker is fenced: it adopts once unfenced, and leads at once.
            records.extend(self.create_topic(&new_topic, topic.id, 0)?);
        }
        if next_producer_id > self.image.next_producer_id() {
            records.push(MetadataRecord::ProducerIds {
                broker_id,
                broker_epoch,
                next_producer_id,
            });
        }
        Ok(records)
    }

    /// Moves leadership of a partition back to its preferred (first) replica
    /// (ElectLeaders, PREFERRED).
    pub fn elect_preferred(&self, name: &str, partition: i32) -> Decided<MetadataRecord> {
        let (topic, state) = self.named_partition(name, partition)?;
        let preferred = state.replicas.first().copied().unwrap_or(NO_LEADER);
        if state.leader == preferred {
            return refuse(
                ResponseError::ElectionNotNeeded,
                format!("Broker {preferred} already leads {name}-{partition}."),
            );
        }
        if !state.isr.contains(&preferred) || !self.image.is_usable(preferred) {
            return refuse(
                ResponseError::PreferredLeaderNotAvailable,
                format!("Preferred replica {preferred} of {name}-{partition} is out of sync, fenced or shutting down."),
            );
        }
        Ok(MetadataRecord::PartitionChange(PartitionChange {
            leader: Some(preferred),
            ..PartitionChange::of(topic.id, partition)
        }))
    }

    /// ElectLeaders, UNCLEAN: an operator's last resort for a partition left without a
    /// leader because no replica in its ISR or ELR is usable. The first usable replica
    /// leads, alone in the ISR, and the ELR is cleared: records it lacks are lost, which is
    /// why the controller never does this by itself.
    pub fn elect_unclean(&self, name: &str, partition: i32) -> Decided<Vec<MetadataRecord>> {
        let (topic, state) = self.named_partition(name, partition)?;
        if state.has_leader() {
            return refuse(
                ResponseError::ElectionNotNeeded,
                format!("Broker {} leads {name}-{partition}.", state.leader),
            );
        }
        // A clean election first, if the ISR or ELR can give one after all.
        let usable = |id: BrokerId| self.image.is_usable(id);
        if let Some(MetadataRecord::PartitionChange(change)) =
            self.change(topic, partition, state, &usable, &state.isr, &[])
        {
            if change.leader.is_some_and(|leader| leader != NO_LEADER) {
                return Ok(self.with_completion(
                    topic,
                    partition,
                    state,
                    Some(MetadataRecord::PartitionChange(change)),
                ));
            }
        }
        let Some(chosen) = state
            .replicas
            .iter()
            .copied()
            .find(|&id| self.image.is_usable_replica(id, topic.id, partition))
        else {
            return refuse(
                ResponseError::EligibleLeadersNotAvailable,
                format!("No replica of {name}-{partition} is registered, unfenced and not shutting down."),
            );
        };
        let change = PartitionChange {
            leader: Some(chosen),
            isr: Some(vec![chosen]),
            elr: Some(Vec::new()),
            ..PartitionChange::of(topic.id, partition)
        };
        Ok(self.with_completion(
            topic,
            partition,
            state,
            Some(MetadataRecord::PartitionChange(change)),
        ))
    }
}
