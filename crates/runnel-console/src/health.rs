//! The cluster's health for the overview page: `runnel_client::ClusterHealth`, the same
//! reading as `runnel cluster health`, with its lists cut to what a page shows.

use runnel_client::{ClusterHealth, PartitionRef, UnderReplicatedPartition};
use serde::Serialize;

/// At most this many partitions are listed per problem: a cluster that lost a broker may
/// have thousands, and the page needs the count and a few examples, not all of them.
pub(crate) const LISTED_MAX: usize = 100;

/// What is wrong, if anything, as the page shows it.
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
    pub(crate) under_replicated: Vec<UnderReplicatedPartition>,
    pub(crate) partitions: usize,
}

impl From<ClusterHealth> for Health {
    fn from(health: ClusterHealth) -> Health {
        Health {
            healthy: health.healthy,
            unhealthy_reasons: health.unhealthy_reasons,
            nodes_down: health.nodes_down,
            leaderless_count: health.leaderless_partitions.len(),
            leaderless: health
                .leaderless_partitions
                .into_iter()
                .take(LISTED_MAX)
                .collect(),
            under_replicated_count: health.under_replicated_partitions.len(),
            under_replicated: health
                .under_replicated_partitions
                .into_iter()
                .take(LISTED_MAX)
                .collect(),
            partitions: health.partitions,
        }
    }
}

#[cfg(test)]
mod tests {
    use runnel_client::{BrokerInfo, ClusterDescription, PartitionMetadata, TopicMetadata};

    use super::*;

    #[test]
    fn long_lists_are_cut_but_counted() {
        let cluster = ClusterDescription {
            cluster_id: None,
            controller_id: Some(1),
            brokers: vec![BrokerInfo {
                node_id: 1,
                host: "localhost".to_owned(),
                port: 9093,
                rack: None,
            }],
        };
        let partitions = (0..LISTED_MAX as i32 + 50)
            .map(|partition| PartitionMetadata {
                partition,
                leader: -1,
                leader_epoch: 0,
                replicas: vec![1],
                isr: Vec::new(),
                error: None,
            })
            .collect();
        let topic = TopicMetadata {
            name: "big".to_owned(),
            id: Default::default(),
            is_internal: false,
            partitions,
            error: None,
        };
        let health = Health::from(ClusterHealth::assess(&cluster, &[topic]));
        assert!(!health.healthy);
        assert_eq!(health.partitions, LISTED_MAX + 50);
        assert_eq!(health.leaderless_count, LISTED_MAX + 50);
        assert_eq!(health.leaderless.len(), LISTED_MAX);
        assert_eq!(health.under_replicated.len(), LISTED_MAX);
    }
}
