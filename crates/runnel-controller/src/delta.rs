//! What one broker must do when its metadata image moves on: which of its partitions it now
//! leads, which it follows (and whom), and which replicas it must stop and delete (Kafka's
//! `TopicsDelta.localChanges`).
//!
//! Only partitions whose state changed are listed, so a broker acts on each change once. A
//! topic deleted and created again under the same name is a different topic (another id):
//! its old replicas are deleted and the new ones created.

use uuid::Uuid;

use crate::image::MetadataImage;
use crate::records::{BrokerId, PartitionState};

/// A partition this broker holds a replica of, as the new image has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPartition {
    pub topic_id: Uuid,
    pub topic: String,
    pub partition: i32,
    pub state: PartitionState,
    /// As the previous image had it; `None` for a replica new to this broker.
    pub previous: Option<PartitionState>,
}

impl LocalPartition {
    /// The leader or its epoch changed: a role to take afresh (a new `LeaderState`, or a
    /// fetcher pointed at the new leader), not just an ISR to update.
    pub fn is_new_leadership(&self) -> bool {
        self.previous.as_ref().is_none_or(|previous| {
            previous.leader_epoch != self.state.leader_epoch || previous.leader != self.state.leader
        })
    }
}

/// A replica this broker must stop serving and delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedReplica {
    pub topic_id: Uuid,
    pub topic: String,
    pub partition: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalChanges {
    pub leaders: Vec<LocalPartition>,
    /// Includes partitions with no leader (the follower waits for one).
    pub followers: Vec<LocalPartition>,
    pub removed: Vec<RemovedReplica>,
}

impl LocalChanges {
    pub fn is_empty(&self) -> bool {
        self.leaders.is_empty() && self.followers.is_empty() && self.removed.is_empty()
    }
}

/// The changes `broker` must make going from `before` to `after`.
pub fn local_changes(
    before: &MetadataImage,
    after: &MetadataImage,
    broker: BrokerId,
) -> LocalChanges {
    let mut changes = LocalChanges::default();
    for (topic, partition, state) in after.partitions() {
        if !state.replicas.contains(&broker) {
            continue;
        }
        let previous = before
            .partition(topic.id, partition)
            .filter(|previous| previous.replicas.contains(&broker));
        if previous == Some(state) {
            continue;
        }
        let local = LocalPartition {
            topic_id: topic.id,
            topic: topic.name.clone(),
            partition,
            state: state.clone(),
            previous: previous.cloned(),
        };
        if state.leader == broker {
            changes.leaders.push(local);
        } else {
            changes.followers.push(local);
        }
    }
    for (topic, partition, state) in before.partitions() {
        if !state.replicas.contains(&broker) {
            continue;
        }
        let still_here = after
            .partition(topic.id, partition)
            .is_some_and(|now| now.replicas.contains(&broker));
        if !still_here {
            changes.removed.push(RemovedReplica {
                topic_id: topic.id,
                topic: topic.name.clone(),
                partition,
            });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{MetadataRecord, PartitionChange, PartitionRecord};

    fn image(records: &[MetadataRecord]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (offset, record) in (1..).zip(records) {
            image
                .apply(offset, record)
                .unwrap_or_else(|error| panic!("{error}"));
        }
        image
    }

    fn topic(id: u128, name: &str) -> MetadataRecord {
        MetadataRecord::Topic {
            name: name.into(),
            id: Uuid::from_u128(id),
        }
    }

    fn partition(id: u128, index: i32, replicas: &[i32]) -> MetadataRecord {
        MetadataRecord::Partition(PartitionRecord {
            topic_id: Uuid::from_u128(id),
            partition: index,
            state: PartitionState {
                replicas: replicas.to_vec(),
                isr: replicas.to_vec(),
                elr: vec![],
                leader: replicas[0],
                leader_epoch: 0,
                partition_epoch: 0,
                adding_replicas: vec![],
                removing_replicas: vec![],
            },
        })
    }

    fn names(partitions: &[LocalPartition]) -> Vec<(String, i32, bool)> {
        partitions
            .iter()
            .map(|p| (p.topic.clone(), p.partition, p.is_new_leadership()))
            .collect()
    }

    #[test]
    fn new_replicas_are_led_or_followed_and_unchanged_ones_are_not_listed() {
        let before = image(&[topic(1, "a"), partition(1, 0, &[1, 2])]);
        let mut records = vec![topic(1, "a"), partition(1, 0, &[1, 2])];
        records.extend([
            topic(2, "b"),
            partition(2, 0, &[2, 1]),
            partition(2, 1, &[3, 4]),
        ]);
        let after = image(&records);
        let changes = local_changes(&before, &after, 1);
        assert_eq!(names(&changes.leaders), vec![]);
        assert_eq!(names(&changes.followers), vec![("b".into(), 0, true)]);
        assert!(changes.removed.is_empty());
        assert!(local_changes(&after, &after, 1).is_empty());
    }

    #[test]
    fn a_leader_change_is_new_leadership_and_an_isr_change_is_not() {
        let records = vec![topic(1, "a"), partition(1, 0, &[1, 2, 3])];
        let before = image(&records);
        let change = |leader, isr: Vec<i32>| {
            MetadataRecord::PartitionChange(PartitionChange {
                leader,
                isr: Some(isr),
                ..PartitionChange::of(Uuid::from_u128(1), 0)
            })
        };
        let mut shrunk = records.clone();
        shrunk.push(change(None, vec![1, 2]));
        let after = image(&shrunk);
        let on_leader = local_changes(&before, &after, 1);
        assert_eq!(names(&on_leader.leaders), vec![("a".into(), 0, false)]);
        let mut moved = shrunk.clone();
        moved.push(change(Some(2), vec![2]));
        let after_move = image(&moved);
        assert_eq!(
            names(&local_changes(&after, &after_move, 2).leaders),
            vec![("a".into(), 0, true)]
        );
        assert_eq!(
            names(&local_changes(&after, &after_move, 1).followers),
            vec![("a".into(), 0, true)]
        );
    }

    #[test]
    fn deleted_and_recreated_topics_remove_the_old_replicas() {
        let before = image(&[topic(1, "a"), partition(1, 0, &[1])]);
        let after = image(&[
            topic(1, "a"),
            partition(1, 0, &[1]),
            MetadataRecord::RemoveTopic {
                id: Uuid::from_u128(1),
            },
            topic(9, "a"),
            partition(9, 0, &[1]),
        ]);
        let changes = local_changes(&before, &after, 1);
        assert_eq!(
            changes.removed,
            vec![RemovedReplica {
                topic_id: Uuid::from_u128(1),
                topic: "a".into(),
                partition: 0
            }]
        );
        assert_eq!(changes.leaders.len(), 1);
        assert_eq!(changes.leaders[0].topic_id, Uuid::from_u128(9));
    }
}
