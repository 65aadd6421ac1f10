//! The metadata records: every change to the cluster's metadata is one of these, appended to
//! the controller quorum's Raft log and applied, in log order, to a [`crate::MetadataImage`]
//! by every controller and broker. They are the log's format on disk and on the wire
//! (serde, JSON), so fields are only ever added with defaults.
//!
//! Modelled on KRaft's records (KIP-631, KIP-966): a partition is created whole by a
//! [`PartitionRecord`] and then moved only by [`PartitionChange`]s, each of which bumps the
//! partition epoch, and the leader epoch too when the leader changes.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A broker's node id.
pub type BrokerId = i32;

/// The leader of a partition that has none (Kafka's `-1`).
pub const NO_LEADER: BrokerId = -1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A broker (re)registered; it starts fenced, with a new broker epoch.
    RegisterBroker(BrokerRegistration),
    /// A registered broker was fenced, unfenced, or began a controlled shutdown.
    BrokerChange(BrokerChange),
    Topic {
        name: String,
        id: Uuid,
    },
    /// A topic and everything under it (partitions, configs) is gone.
    RemoveTopic {
        id: Uuid,
    },
    Partition(PartitionRecord),
    PartitionChange(PartitionChange),
    /// Sets (`Some`) or removes (`None`) one dynamic config.
    Config {
        resource: ConfigResource,
        name: String,
        value: Option<String>,
    },
    /// A block of producer ids below `next_producer_id` was handed to a broker.
    ProducerIds {
        broker_id: BrokerId,
        broker_epoch: i64,
        next_producer_id: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub id: BrokerId,
    /// Unique per registration; what KIP-903 checks to tell a restarted broker from the one
    /// the leader saw caught up.
    pub epoch: i64,
    /// Unique per process start: a second process claiming a live broker's id differs here.
    pub incarnation_id: Uuid,
    pub listeners: Vec<Listener>,
    pub rack: Option<String>,
    pub fenced: bool,
    pub in_controlled_shutdown: bool,
    /// Its replicas whose disk failed, as (topic id, partition), as its heartbeats report
    /// them: they may neither lead nor be in sync. Empty at each registration.
    #[serde(default)]
    pub offline_replicas: BTreeSet<(Uuid, i32)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerChange {
    pub id: BrokerId,
    pub epoch: i64,
    pub fenced: Option<bool>,
    pub in_controlled_shutdown: Option<bool>,
    #[serde(default)]
    pub offline_replicas: Option<BTreeSet<(Uuid, i32)>>,
}

/// One partition's replication state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// In preference order: the first is the preferred leader.
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    /// KIP-966's eligible leader replicas: replicas that left the ISR while it was below
    /// `min.insync.replicas`, when the high watermark could not move, so they hold
    /// everything committed and may lead if the ISR empties.
    pub elr: Vec<BrokerId>,
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// KIP-455: replicas a reassignment adds (already in `replicas`, catching up).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<BrokerId>,
    /// Replicas a reassignment removes once every target replica is in sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<BrokerId>,
}

impl PartitionState {
    pub fn has_leader(&self) -> bool {
        self.leader != NO_LEADER
    }

    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas a reassignment moves to (all of them when none is under way).
    pub fn target_replicas(&self) -> Vec<BrokerId> {
        self.replicas
            .iter()
            .copied()
            .filter(|id| !self.removing_replicas.contains(id))
            .collect()
    }

    /// The replicas before the reassignment under way, if any.
    pub fn original_replicas(&self) -> Vec<BrokerId> {
        self.replicas
            .iter()
            .copied()
            .filter(|id| !self.adding_replicas.contains(id))
            .collect()
    }

    /// This state with `change` applied: a new leader bumps the leader epoch, every change
    /// the partition epoch.
    pub fn with_change(&self, change: &PartitionChange) -> PartitionState {
        let mut next = self.clone();
        if let Some(leader) = change.leader {
            next.leader = leader;
            next.leader_epoch += 1;
        }
        let replace = |field: &mut Vec<BrokerId>, value: &Option<Vec<BrokerId>>| {
            if let Some(value) = value {
                field.clone_from(value);
            }
        };
        replace(&mut next.isr, &change.isr);
        replace(&mut next.elr, &change.elr);
        replace(&mut next.replicas, &change.replicas);
        replace(&mut next.adding_replicas, &change.adding_replicas);
        replace(&mut next.removing_replicas, &change.removing_replicas);
        next.partition_epoch += 1;
        next
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub topic_id: Uuid,
    pub partition: i32,
    pub state: PartitionState,
}

/// What changed in one partition; `None` fields are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChange {
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader: Option<BrokerId>,
    pub isr: Option<Vec<BrokerId>>,
    pub elr: Option<Vec<BrokerId>>,
    pub replicas: Option<Vec<BrokerId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adding_replicas: Option<Vec<BrokerId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removing_replicas: Option<Vec<BrokerId>>,
}

impl PartitionChange {
    /// A change to nothing yet, for the fields to be set.
    pub fn of(topic_id: Uuid, partition: i32) -> PartitionChange {
        PartitionChange {
            topic_id,
            partition,
            leader: None,
            isr: None,
            elr: None,
            replicas: None,
            adding_replicas: None,
            removing_replicas: None,
        }
    }
}

/// What a dynamic config applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ConfigResource {
    /// The cluster-wide default for every broker.
    Cluster,
    Broker(BrokerId),
    Topic(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records are the Raft log's format: this pins their JSON so a change that would
    /// leave old logs unreadable shows up here.
    #[test]
    fn records_keep_their_json_form() -> Result<(), serde_json::Error> {
        let record = MetadataRecord::PartitionChange(PartitionChange {
            topic_id: Uuid::from_u128(1),
            partition: 2,
            leader: Some(3),
            isr: None,
            elr: Some(vec![4]),
            replicas: None,
            adding_replicas: None,
            removing_replicas: None,
        });
        let json = serde_json::to_string(&record)?;
        assert_eq!(
            json,
            r#"{"type":"PartitionChange","topic_id":"00000000-0000-0000-0000-000000000001","partition":2,"leader":3,"isr":null,"elr":[4],"replicas":null}"#
        );
        assert_eq!(serde_json::from_str::<MetadataRecord>(&json)?, record);
        Ok(())
    }
}
