//! The admin client's partition moves: ElectLeaders (preferred or unclean),
//! AlterPartitionReassignments and ListPartitionReassignments (KIP-455), for `runnel cluster
//! elect-leaders`, `reassign` and `reassignments`. The controller decides each; any broker
//! forwards it.

use kafka_protocol::messages::{
    alter_partition_reassignments_request, elect_leaders_request,
    AlterPartitionReassignmentsRequest, BrokerId, ElectLeadersRequest,
    ListPartitionReassignmentsRequest,
};

use kafka_protocol::protocol::StrBytes;

use super::{Admin, Scope};
use crate::error::{ClientError, Result};
use crate::wire::topic_name;

/// Which leader an election picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Election {
    /// The first replica of the partition's list, if it is in sync.
    Preferred,
    /// Any live replica, in sync or not, for a partition nobody may lead: records the ISR had
    /// and it lacks are lost.
    Unclean,
}

/// One partition's answer to an election or a reassignment.
#[derive(Debug)]
pub struct PartitionOutcome {
    /// The topic's name.
    pub topic: String,
    /// The partition's index.
    pub partition: i32,
    /// Done, or the broker's error for this partition (ELECTION_NOT_NEEDED when it already
    /// has the leader asked for).
    pub result: Result<()>,
}

/// A reassignment under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionReassignment {
    /// The topic's name.
    pub topic: String,
    /// The partition's index.
    pub partition: i32,
    /// Every replica now: the target ones and those being removed.
    pub replicas: Vec<i32>,
    /// Target replicas still catching up.
    pub adding: Vec<i32>,
    /// Replicas that leave once every target replica is in sync.
    pub removing: Vec<i32>,
}

/// One partition's answer as an outcome.
fn outcome(
    topic: &str,
    partition: i32,
    error_code: i16,
    error_message: Option<StrBytes>,
) -> PartitionOutcome {
    PartitionOutcome {
        topic: topic.to_owned(),
        partition,
        result: ClientError::check(error_code, error_message.as_ref(), || {
            format!("topic {topic:?} partition {partition}")
        }),
    }
}

impl Admin {
    /// Elects leaders for `partitions` (topic, indexes), or with `None` for every partition
    /// that needs one.
    pub async fn elect_leaders(
        &self,
        election: Election,
        partitions: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<PartitionOutcome>> {
        let request = ElectLeadersRequest::default()
            .with_election_type(match election {
                Election::Preferred => 0,
                Election::Unclean => 1,
            })
            .with_topic_partitions(partitions.map(|topics| {
                topics
                    .into_iter()
                    .map(|(topic, indexes)| {
                        elect_leaders_request::TopicPartitions::default()
                            .with_topic(topic_name(&topic))
                            .with_partitions(indexes)
                    })
                    .collect()
            }))
            .with_timeout_ms(self.timeout_ms());
        let response = self
            .retrying(Scope::Cluster, || async {
                let connection = self.controller_connection().await?;
                let version = connection.version_at_least::<ElectLeadersRequest>(1)?;
                let response = connection.send(request.clone(), version).await?;
                ClientError::check(response.error_code, None, || "ElectLeaders".to_owned())?;
                Ok(response)
            })
            .await?;
        Ok(response
            .replica_election_results
            .into_iter()
            .flat_map(|topic| {
                let name = topic.topic.to_string();
                topic.partition_result.into_iter().map(move |answer| {
                    outcome(
                        &name,
                        answer.partition_id,
                        answer.error_code,
                        answer.error_message,
                    )
                })
            })
            .collect())
    }

    /// Moves each partition to its target replicas (the first preferred as leader), or with
    /// `None` cancels the move under way.
    pub async fn alter_partition_reassignments(
        &self,
        moves: Vec<(String, i32, Option<Vec<i32>>)>,
    ) -> Result<Vec<PartitionOutcome>> {
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_allow_replication_factor_change(true)
            .with_topics(
                moves
                    .into_iter()
                    .map(|(topic, partition, target)| {
                        alter_partition_reassignments_request::ReassignableTopic::default()
                            .with_name(topic_name(&topic))
                            .with_partitions(vec![
                                alter_partition_reassignments_request::ReassignablePartition::default()
                                    .with_partition_index(partition)
                                    .with_replicas(target.map(|ids| {
                                        ids.into_iter().map(BrokerId).collect()
                                    })),
                            ])
                    })
                    .collect(),
            );
        let response = self
            .retrying(Scope::Cluster, || async {
                let connection = self.controller_connection().await?;
                let version =
                    connection.version_at_least::<AlterPartitionReassignmentsRequest>(0)?;
                let response = connection.send(request.clone(), version).await?;
                ClientError::check(response.error_code, response.error_message.as_ref(), || {
                    "AlterPartitionReassignments".to_owned()
                })?;
                Ok(response)
            })
            .await?;
        Ok(response
            .responses
            .into_iter()
            .flat_map(|topic| {
                let name = topic.name.to_string();
                topic.partitions.into_iter().map(move |answer| {
                    outcome(
                        &name,
                        answer.partition_index,
                        answer.error_code,
                        answer.error_message,
                    )
                })
            })
            .collect())
    }

    /// Every reassignment under way, by topic and partition.
    pub async fn list_partition_reassignments(&self) -> Result<Vec<PartitionReassignment>> {
        let response = self
            .retrying(Scope::Cluster, || async {
                let connection = self.controller_connection().await?;
                let version =
                    connection.version_at_least::<ListPartitionReassignmentsRequest>(0)?;
                let request =
                    ListPartitionReassignmentsRequest::default().with_timeout_ms(self.timeout_ms());
                let response = connection.send(request, version).await?;
                ClientError::check(response.error_code, response.error_message.as_ref(), || {
                    "ListPartitionReassignments".to_owned()
                })?;
                Ok(response)
            })
            .await?;
        let ids = |ids: Vec<BrokerId>| ids.into_iter().map(|id| id.0).collect();
        let mut all: Vec<PartitionReassignment> = response
            .topics
            .into_iter()
            .flat_map(|topic| {
                let name = topic.name.to_string();
                topic
                    .partitions
                    .into_iter()
                    .map(move |partition| PartitionReassignment {
                        topic: name.clone(),
                        partition: partition.partition_index,
                        replicas: ids(partition.replicas),
                        adding: ids(partition.adding_replicas),
                        removing: ids(partition.removing_replicas),
                    })
            })
            .collect();
        all.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(all)
    }
}
