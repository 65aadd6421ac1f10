//! [`MetadataImage`]: the cluster's metadata as of one offset of the quorum's log, built by
//! applying [`MetadataRecord`]s in order. Controllers decide on it; brokers serve Metadata
//! from it and take partition roles from it; a Raft snapshot is it, serialized.
//!
//! Applying is deterministic and total over the records a controller writes: every replica
//! of the log that applies the same records holds the same image. A record that does not fit
//! the image (a change to a topic that does not exist) means the controller that wrote it
//! broke an invariant; [`MetadataImage::apply`] refuses it without changing anything, and the
//! caller stops rather than serve metadata that diverges from its peers'.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::records::{
    BrokerChange, BrokerId, BrokerRegistration, ConfigResource, MetadataRecord, PartitionChange,
    PartitionState,
};

/// A record the image cannot apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InconsistentRecord(pub String);

impl std::fmt::Display for InconsistentRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "metadata record does not fit the image: {}", self.0)
    }
}

impl std::error::Error for InconsistentRecord {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredBroker {
    pub registration: BrokerRegistration,
    /// The log offset of the registration: the broker is unfenced only once its own image
    /// has caught up to it.
    pub registered_at: u64,
}

impl RegisteredBroker {
    /// May lead and join ISRs.
    pub fn is_usable(&self) -> bool {
        !self.registration.fenced && !self.registration.in_controlled_shutdown
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub partitions: BTreeMap<i32, PartitionState>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// The log offset of the last record applied.
    offset: u64,
    brokers: BTreeMap<BrokerId, RegisteredBroker>,
    topics: BTreeMap<Uuid, TopicImage>,
    topic_ids: BTreeMap<String, Uuid>,
    #[serde(with = "pairs")]
    configs: BTreeMap<ConfigResource, BTreeMap<String, String>>,
    /// Broker epochs are never reused, whatever registers or leaves.
    next_broker_epoch: i64,
    /// Producer ids below this were handed out.
    next_producer_id: i64,
}

impl MetadataImage {
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn broker(&self, id: BrokerId) -> Option<&RegisteredBroker> {
        self.brokers.get(&id)
    }

    pub fn brokers(&self) -> impl Iterator<Item = &RegisteredBroker> {
        self.brokers.values()
    }

    /// The broker epoch the next registration gets.
    pub fn next_broker_epoch(&self) -> i64 {
        self.next_broker_epoch
    }

    pub fn is_usable(&self, id: BrokerId) -> bool {
        self.brokers
            .get(&id)
            .is_some_and(RegisteredBroker::is_usable)
    }

    /// Broker `id`'s replica of the partition is on a disk that failed (its heartbeats say).
    pub fn is_replica_offline(&self, id: BrokerId, topic_id: Uuid, partition: i32) -> bool {
        self.brokers.get(&id).is_some_and(|broker| {
            broker
                .registration
                .offline_replicas
                .contains(&(topic_id, partition))
        })
    }

    /// Broker `id` may lead the partition and be in its ISR: usable, its replica online.
    pub fn is_usable_replica(&self, id: BrokerId, topic_id: Uuid, partition: i32) -> bool {
        self.is_usable(id) && !self.is_replica_offline(id, topic_id, partition)
    }

    pub fn topic(&self, id: Uuid) -> Option<&TopicImage> {
        self.topics.get(&id)
    }

    pub fn topic_by_name(&self, name: &str) -> Option<&TopicImage> {
        self.topic_ids.get(name).and_then(|id| self.topics.get(id))
    }

    pub fn topics(&self) -> impl Iterator<Item = &TopicImage> {
        self.topics.values()
    }

    pub fn partition(&self, topic_id: Uuid, partition: i32) -> Option<&PartitionState> {
        self.topics.get(&topic_id)?.partitions.get(&partition)
    }

    /// Every partition, with its topic.
    pub fn partitions(&self) -> impl Iterator<Item = (&TopicImage, i32, &PartitionState)> {
        self.topics.values().flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(move |(&index, state)| (topic, index, state))
        })
    }

    /// A dynamic config, if set.
    pub fn config(&self, resource: &ConfigResource, name: &str) -> Option<&str> {
        self.configs.get(resource)?.get(name).map(String::as_str)
    }

    /// Every dynamic config set on `resource`.
    pub fn configs(&self, resource: &ConfigResource) -> Option<&BTreeMap<String, String>> {
        self.configs.get(resource)
    }

    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    /// Applies the record at log offset `offset`; on error the image is unchanged.
    pub fn apply(
        &mut self,
        offset: u64,
        record: &MetadataRecord,
    ) -> Result<(), InconsistentRecord> {
        let inconsistent = |what: String| Err(InconsistentRecord(what));
        match record {
            MetadataRecord::RegisterBroker(registration) => {
                if registration.epoch < self.next_broker_epoch {
                    return inconsistent(format!(
                        "broker {} registers with epoch {}, below the next epoch {}",
                        registration.id, registration.epoch, self.next_broker_epoch
                    ));
                }
                self.next_broker_epoch = registration.epoch + 1;
                self.brokers.insert(
                    registration.id,
                    RegisteredBroker {
                        registration: registration.clone(),
                        registered_at: offset,
                    },
                );
            }
            MetadataRecord::BrokerChange(change) => self.apply_broker_change(change)?,
            MetadataRecord::Topic { name, id } => {
                if self.topic_ids.contains_key(name) || self.topics.contains_key(id) {
                    return inconsistent(format!("topic {name} ({id}) exists"));
                }
                self.topic_ids.insert(name.clone(), *id);
                self.topics.insert(
                    *id,
                    TopicImage {
                        name: name.clone(),
                        id: *id,
                        partitions: BTreeMap::new(),
                    },
                );
            }
            MetadataRecord::RemoveTopic { id } => {
                let Some(topic) = self.topics.remove(id) else {
                    return inconsistent(format!("removing unknown topic {id}"));
                };
                self.topic_ids.remove(&topic.name);
                self.configs.remove(&ConfigResource::Topic(topic.name));
            }
            MetadataRecord::Partition(record) => {
                let Some(topic) = self.topics.get_mut(&record.topic_id) else {
                    return inconsistent(format!("partition of unknown topic {}", record.topic_id));
                };
                if topic.partitions.contains_key(&record.partition) {
                    return inconsistent(format!(
                        "partition {}-{} exists",
                        topic.name, record.partition
                    ));
                }
                topic
                    .partitions
                    .insert(record.partition, record.state.clone());
            }
            MetadataRecord::PartitionChange(change) => self.apply_partition_change(change)?,
            MetadataRecord::Config {
                resource,
                name,
                value,
            } => match value {
                Some(value) => {
                    self.configs
                        .entry(resource.clone())
                        .or_default()
                        .insert(name.clone(), value.clone());
                }
                None => {
                    if let Some(configs) = self.configs.get_mut(resource) {
                        configs.remove(name);
                        if configs.is_empty() {
                            self.configs.remove(resource);
                        }
                    }
                }
            },
            MetadataRecord::ProducerIds {
                next_producer_id, ..
            } => {
                if *next_producer_id <= self.next_producer_id {
                    return inconsistent(format!(
                        "producer ids moving back from {} to {next_producer_id}",
                        self.next_producer_id
                    ));
                }
                self.next_producer_id = *next_producer_id;
            }
        }
        self.offset = offset;
        Ok(())
    }

    fn apply_broker_change(&mut self, change: &BrokerChange) -> Result<(), InconsistentRecord> {
        let Some(broker) = self.brokers.get_mut(&change.id) else {
            return Err(InconsistentRecord(format!(
                "change to unregistered broker {}",
                change.id
            )));
        };
        if broker.registration.epoch != change.epoch {
            return Err(InconsistentRecord(format!(
                "change to broker {} in epoch {}, registered in {}",
                change.id, change.epoch, broker.registration.epoch
            )));
        }
        if let Some(fenced) = change.fenced {
            broker.registration.fenced = fenced;
        }
        if let Some(shutting_down) = change.in_controlled_shutdown {
            broker.registration.in_controlled_shutdown = shutting_down;
        }
        if let Some(offline) = &change.offline_replicas {
            broker.registration.offline_replicas = offline.clone();
        }
        Ok(())
    }

    fn apply_partition_change(
        &mut self,
        change: &PartitionChange,
    ) -> Result<(), InconsistentRecord> {
        let Some(state) = self
            .topics
            .get_mut(&change.topic_id)
            .and_then(|topic| topic.partitions.get_mut(&change.partition))
        else {
            return Err(InconsistentRecord(format!(
                "change to unknown partition {}-{}",
                change.topic_id, change.partition
            )));
        };
        let next = state.with_change(change);
        check_partition(&next).map_err(InconsistentRecord)?;
        *state = next;
        Ok(())
    }
}

/// The invariants of one partition's state, checked on every change.
pub(crate) fn check_partition(state: &PartitionState) -> Result<(), String> {
    let in_replicas = |ids: &[BrokerId]| ids.iter().all(|id| state.replicas.contains(id));
    if !in_replicas(&state.isr) || !in_replicas(&state.elr) {
        return Err(format!("ISR or ELR outside the replicas: {state:?}"));
    }
    if state.isr.iter().any(|id| state.elr.contains(id)) {
        return Err(format!("a replica in both ISR and ELR: {state:?}"));
    }
    if state.has_leader() && !state.isr.contains(&state.leader) {
        return Err(format!("a leader outside the ISR: {state:?}"));
    }
    if !in_replicas(&state.adding_replicas)
        || !in_replicas(&state.removing_replicas)
        || state
            .adding_replicas
            .iter()
            .any(|id| state.removing_replicas.contains(id))
    {
        return Err(format!(
            "a reassignment inconsistent with the replicas: {state:?}"
        ));
    }
    Ok(())
}

/// A map with keys JSON cannot use as object keys, as a list of pairs.
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter())
    }

    pub(super) fn deserialize<'de, K, V, D>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::PartitionRecord;

    fn registration(id: BrokerId, epoch: i64) -> MetadataRecord {
        MetadataRecord::RegisterBroker(BrokerRegistration {
            id,
            epoch,
            incarnation_id: Uuid::from_u128(id as u128),
            listeners: vec![],
            rack: None,
            fenced: true,
            in_controlled_shutdown: false,
            offline_replicas: Default::default(),
        })
    }

    #[test]
    fn partition_changes_bump_the_partition_epoch_and_leader_changes_the_leader_epoch(
    ) -> Result<(), InconsistentRecord> {
        let id = Uuid::from_u128(7);
        let mut image = MetadataImage::default();
        image.apply(1, &registration(1, 0))?;
        image.apply(
            2,
            &MetadataRecord::Topic {
                name: "t".into(),
                id,
            },
        )?;
        image.apply(
            3,
            &MetadataRecord::Partition(PartitionRecord {
                topic_id: id,
                partition: 0,
                state: PartitionState {
                    replicas: vec![1, 2],
                    isr: vec![1, 2],
                    elr: vec![],
                    leader: 1,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    adding_replicas: vec![],
                    removing_replicas: vec![],
                },
            }),
        )?;
        let change = |leader, isr: Vec<BrokerId>| {
            MetadataRecord::PartitionChange(PartitionChange {
                topic_id: id,
                partition: 0,
                leader,
                isr: Some(isr),
                ..PartitionChange::of(id, 0)
            })
        };
        image.apply(4, &change(None, vec![1]))?;
        let state = image.partition(id, 0).cloned();
        assert_eq!(
            state.map(|s| (s.leader_epoch, s.partition_epoch)),
            Some((0, 1))
        );
        // A leader outside the ISR is refused, and nothing changes.
        let before = image.clone();
        assert!(image.apply(5, &change(Some(2), vec![1])).is_err());
        assert_eq!(image, before);
        image.apply(5, &change(Some(2), vec![2]))?;
        let state = image.partition(id, 0).cloned();
        assert_eq!(
            state.map(|s| (s.leader_epoch, s.partition_epoch)),
            Some((1, 2))
        );
        assert_eq!(image.offset(), 5);
        Ok(())
    }

    #[test]
    fn broker_epochs_never_repeat() -> Result<(), InconsistentRecord> {
        let mut image = MetadataImage::default();
        image.apply(1, &registration(1, 0))?;
        image.apply(2, &registration(2, 1))?;
        assert!(image.apply(3, &registration(1, 1)).is_err());
        assert_eq!(image.next_broker_epoch(), 2);
        Ok(())
    }

    #[test]
    fn an_image_survives_its_json_round_trip() -> Result<(), Box<dyn std::error::Error>> {
        let mut image = MetadataImage::default();
        image.apply(1, &registration(3, 0))?;
        image.apply(
            2,
            &MetadataRecord::Config {
                resource: ConfigResource::Topic("t".into()),
                name: "retention.ms".into(),
                value: Some("1000".into()),
            },
        )?;
        let json = serde_json::to_string(&image)?;
        assert_eq!(serde_json::from_str::<MetadataImage>(&json)?, image);
        Ok(())
    }
}
