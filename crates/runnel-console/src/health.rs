//! The cluster's health as its metadata shows it, for the overview page: the same reading as
//! `runnel cluster health` (a broker named as a replica but not among the live brokers is
//! down; a partition whose leader is missing or down is leaderless; one whose ISR is smaller
//! than its replica set is under-replicated; no controller is unhealthy too). It is a few
//! lines, kept here rather than shared with the CLI so that the console depends on the client
//! alone.

use std::collections::BTreeSet;

use runnel_client::{BrokerInfo, TopicMetadata};
use serde::Serialize;

/// At most this many partitions are listed per problem: a cluster that lost a broker may
/// have thousands, and the page needs the count and a few examples, not all of them.
pub(crate) const LISTED_MAX: usize = 100;

/// What is wrong, if anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Health {
    pub(crate) healthy: bool,
    /// `no_controller`, `nodes_down`, `leaderless_partitions`, `under_replicated_partitions`.
    pub(crate) unhealthy_reasons: Vec<&'static str>,
    /// Brokers named as replicas that are not live.
    pub(crate) nodes_down: Vec<i32>,
    pub(crate) leaderless_count: usize,
    /// The first [`LISTED_MAX`] leaderless partitions.
    pub(crate) leaderless: Vec<PartitionRef>,
    pub(crate) under_replicated_count: usize,
    /// The first [`LISTED_MAX`] under-replicated partitions.
    pub(crate) under_replicated: Vec<UnderReplicated>,
    pub(crate) partitions: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PartitionRef {
    pub(crate) topic: String,
    pub(crate) partition: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct UnderReplicated {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) replicas: Vec<i32>,
    pub(crate) isr: Vec<i32>,
}

/// Health from the live brokers, the controller and every partition's leader, replicas and
/// ISR.
pub(crate) fn assess(
    live_brokers: &[BrokerInfo],
    controller_id: Option<i32>,
    topics: &[TopicMetadata],
) -> Health {
    let live: BTreeSet<i32> = live_brokers.iter().map(|broker| broker.node_id).collect();
    let mut named = BTreeSet::new();
    let mut health = Health {
        healthy: true,
        unhealthy_reasons: Vec::new(),
        nodes_down: Vec::new(),
        leaderless_count: 0,
        leaderless: Vec::new(),
        under_replicated_count: 0,
        under_replicated: Vec::new(),
        partitions: 0,
    };
    for topic in topics {
        for partition in &topic.partitions {
            health.partitions += 1;
            named.extend(partition.replicas.iter().copied());
            if partition.leader < 0 || !live.contains(&partition.leader) {
                health.leaderless_count += 1;
                if health.leaderless.len() < LISTED_MAX {
                    health.leaderless.push(PartitionRef {
                        topic: topic.name.clone(),
                        partition: partition.partition,
                    });
                }
            }
            if partition.isr.len() < partition.replicas.len() {
                health.under_replicated_count += 1;
                if health.under_replicated.len() < LISTED_MAX {
                    health.under_replicated.push(UnderReplicated {
                        topic: topic.name.clone(),
                        partition: partition.partition,
                        replicas: partition.replicas.clone(),
                        isr: partition.isr.clone(),
                    });
                }
            }
        }
    }
    health.nodes_down = named.difference(&live).copied().collect();
    if controller_id.is_none() {
        health.unhealthy_reasons.push("no_controller");
    }
    if !health.nodes_down.is_empty() {
        health.unhealthy_reasons.push("nodes_down");
    }
    if health.leaderless_count > 0 {
        health.unhealthy_reasons.push("leaderless_partitions");
    }
    if health.under_replicated_count > 0 {
        health.unhealthy_reasons.push("under_replicated_partitions");
    }
    health.healthy = health.unhealthy_reasons.is_empty();
    health
}

#[cfg(test)]
mod tests {
    use runnel_client::PartitionMetadata;

    use super::*;

    fn broker(node_id: i32) -> BrokerInfo {
        BrokerInfo {
            node_id,
            host: "localhost".to_owned(),
            port: 9092 + node_id,
            rack: None,
        }
    }

    fn partition(partition: i32, leader: i32, replicas: &[i32], isr: &[i32]) -> PartitionMetadata {
        PartitionMetadata {
            partition,
            leader,
            leader_epoch: 0,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            error: None,
        }
    }

    fn topic(name: &str, partitions: Vec<PartitionMetadata>) -> TopicMetadata {
        TopicMetadata {
            name: name.to_owned(),
            id: Default::default(),
            is_internal: false,
            partitions,
            error: None,
        }
    }

    #[test]
    fn every_replica_up_led_and_in_sync_is_healthy() {
        let topics = [topic(
            "orders",
            vec![
                partition(0, 1, &[1, 2, 3], &[1, 2, 3]),
                partition(1, 2, &[2, 3, 1], &[2, 3, 1]),
            ],
        )];
        let health = assess(&[broker(1), broker(2), broker(3)], Some(1), &topics);
        assert!(health.healthy, "{health:?}");
        assert!(health.unhealthy_reasons.is_empty());
        assert_eq!(health.partitions, 2);
    }

    #[test]
    fn a_missing_broker_is_down_and_its_partitions_suffer() {
        // Broker 3 is gone: partition 0 lost a follower, partition 1 its leader.
        let topics = [topic(
            "orders",
            vec![
                partition(0, 1, &[1, 2, 3], &[1, 2]),
                partition(1, 3, &[3, 1], &[3]),
                partition(2, -1, &[3], &[]),
            ],
        )];
        let health = assess(&[broker(1), broker(2)], Some(1), &topics);
        assert!(!health.healthy);
        assert_eq!(
            health.unhealthy_reasons,
            [
                "nodes_down",
                "leaderless_partitions",
                "under_replicated_partitions"
            ]
        );
        assert_eq!(health.nodes_down, [3]);
        assert_eq!(health.leaderless_count, 2);
        assert_eq!(
            health.leaderless,
            [
                PartitionRef {
                    topic: "orders".to_owned(),
                    partition: 1
                },
                PartitionRef {
                    topic: "orders".to_owned(),
                    partition: 2
                }
            ]
        );
        assert_eq!(health.under_replicated_count, 3);
        assert_eq!(health.under_replicated[0].isr, [1, 2]);
    }

    #[test]
    fn no_controller_is_unhealthy() {
        let health = assess(&[broker(1)], None, &[]);
        assert!(!health.healthy);
        assert_eq!(health.unhealthy_reasons, ["no_controller"]);
    }

    #[test]
    fn long_lists_are_cut_but_counted() {
        let partitions = (0..LISTED_MAX as i32 + 50)
            .map(|p| partition(p, -1, &[1], &[]))
            .collect();
        let health = assess(&[broker(1)], Some(1), &[topic("big", partitions)]);
        assert_eq!(health.leaderless_count, LISTED_MAX + 50);
        assert_eq!(health.leaderless.len(), LISTED_MAX);
        assert_eq!(health.under_replicated.len(), LISTED_MAX);
    }
}
