//! A cluster's health as its metadata shows it, read the same way wherever it is shown
//! (`runnel cluster health`, the web console): a broker named as a replica but not among
//! the live brokers is down; a partition whose leader is missing or down is leaderless; one
//! whose ISR is smaller than its replica set is under-replicated; a cluster that names no
//! controller is unhealthy too.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::{ClusterDescription, TopicMetadata};

/// What is wrong with a cluster, if anything.
///
/// ```
/// use runnel_client::{ClusterDescription, ClusterHealth};
///
/// let cluster = ClusterDescription { cluster_id: None, controller_id: Some(1), brokers: vec![] };
/// let health = ClusterHealth::assess(&cluster, &[]);
/// assert!(health.healthy);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterHealth {
    /// Nothing below is wrong.
    pub healthy: bool,
    /// What makes it unhealthy: `no_controller`, `nodes_down`, `leaderless_partitions`,
    /// `under_replicated_partitions`.
    pub unhealthy_reasons: Vec<&'static str>,
    /// The active controller, as the cluster names it.
    pub controller_id: Option<i32>,
    /// Every broker that is up or holds a replica.
    pub all_nodes: Vec<i32>,
    /// Brokers named as replicas that are not up (fenced, stopped, unreachable by the
    /// controller).
    pub nodes_down: Vec<i32>,
    /// Partitions whose leader is missing or down.
    pub leaderless_partitions: Vec<PartitionRef>,
    /// Partitions whose ISR is smaller than their replica set.
    pub under_replicated_partitions: Vec<UnderReplicatedPartition>,
    /// Partitions looked at.
    pub partitions: usize,
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionRef {
    /// The topic's name.
    pub topic: String,
    /// The partition's index.
    pub partition: i32,
}

/// A partition whose ISR is smaller than its replica set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnderReplicatedPartition {
    /// The topic's name.
    pub topic: String,
    /// The partition's index.
    pub partition: i32,
    /// Every replica, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The replicas in sync.
    pub isr: Vec<i32>,
}

impl ClusterHealth {
    /// Health from the live brokers and controller (`cluster`) and every partition's leader,
    /// replicas and ISR.
    pub fn assess(cluster: &ClusterDescription, topics: &[TopicMetadata]) -> ClusterHealth {
        let live: BTreeSet<i32> = cluster.brokers.iter().map(|b| b.node_id).collect();
        let mut all_nodes = live.clone();
        let mut leaderless_partitions = Vec::new();
        let mut under_replicated_partitions = Vec::new();
        let mut partitions = 0;
        for topic in topics {
            for partition in &topic.partitions {
                partitions += 1;
                all_nodes.extend(partition.replicas.iter().copied());
                if partition.leader < 0 || !live.contains(&partition.leader) {
                    leaderless_partitions.push(PartitionRef {
                        topic: topic.name.clone(),
                        partition: partition.partition,
                    });
                }
                if partition.isr.len() < partition.replicas.len() {
                    under_replicated_partitions.push(UnderReplicatedPartition {
                        topic: topic.name.clone(),
                        partition: partition.partition,
                        replicas: partition.replicas.clone(),
                        isr: partition.isr.clone(),
                    });
                }
            }
        }
        let nodes_down: Vec<i32> = all_nodes.difference(&live).copied().collect();
        let mut unhealthy_reasons = Vec::new();
        if cluster.controller_id.is_none() {
            unhealthy_reasons.push("no_controller");
        }
        if !nodes_down.is_empty() {
            unhealthy_reasons.push("nodes_down");
        }
        if !leaderless_partitions.is_empty() {
            unhealthy_reasons.push("leaderless_partitions");
        }
        if !under_replicated_partitions.is_empty() {
            unhealthy_reasons.push("under_replicated_partitions");
        }
        ClusterHealth {
            healthy: unhealthy_reasons.is_empty(),
            unhealthy_reasons,
            controller_id: cluster.controller_id,
            all_nodes: all_nodes.into_iter().collect(),
            nodes_down,
            leaderless_partitions,
            under_replicated_partitions,
            partitions,
        }
    }
}
