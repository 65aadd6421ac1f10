//! ElectLeaders, AlterPartitionReassignments and ListPartitionReassignments: an operator
//! moving leaderships and replicas. Each partition's change goes to the active controller
//! (preferred or unclean election, KIP-455 reassignment or its cancellation).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ElectLeadersRequest, ElectLeadersResponse, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use runnel_controller::MetadataImage;
use runnel_quorum::ControllerRequest;

use crate::broker::Broker;
use crate::error::ApiError;

const ELECTION_PREFERRED: i8 = 0;
const ELECTION_UNCLEAN: i8 = 1;

/// The partitions a request names, by topic; every partition of the image that could use
/// it when the request names none (`null`), as Kafka does.
fn elect_targets(
    image: Option<&MetadataImage>,
    request: &ElectLeadersRequest,
) -> Vec<(TopicName, Vec<i32>)> {
    if let Some(named) = &request.topic_partitions {
        return named
            .iter()
            .map(|topic| (topic.topic.clone(), topic.partitions.clone()))
            .collect();
    }
    let Some(image) = image else {
        return Vec::new();
    };
    image
        .topics()
        .filter_map(|topic| {
            let partitions: Vec<i32> = topic
                .partitions
                .iter()
                .filter(|(_, state)| match request.election_type {
                    ELECTION_UNCLEAN => !state.has_leader(),
                    _ => state.replicas.first() != Some(&state.leader),
                })
                .map(|(&index, _)| index)
                .collect();
            (!partitions.is_empty()).then(|| {
                (
                    TopicName(StrBytes::from_string(topic.name.clone())),
                    partitions,
                )
            })
        })
        .collect()
}

pub(crate) async fn elect_leaders(
    broker: &Arc<Broker>,
    version: i16,
    request: ElectLeadersRequest,
) -> ElectLeadersResponse {
    let mut response = ElectLeadersResponse::default();
    let election_type = if version >= 1 {
        request.election_type
    } else {
        ELECTION_PREFERRED
    };
    if !matches!(election_type, ELECTION_PREFERRED | ELECTION_UNCLEAN) {
        response.error_code = ResponseError::InvalidRequest.code();
        return response;
    }
    let image = broker.cluster().map(|member| member.image());
    for (topic, partitions) in elect_targets(image.as_deref(), &request) {
        let mut result = ReplicaElectionResult::default();
        for partition in partitions {
            let name = topic.to_string();
            let decision = if election_type == ELECTION_UNCLEAN {
                ControllerRequest::ElectUnclean {
                    topic: name,
                    partition,
                }
            } else {
                ControllerRequest::ElectPreferred {
                    topic: name,
                    partition,
                }
            };
            let outcome = match broker.member() {
                Ok(member) => member.commit(decision).await,
                Err(error) => Err(error),
            };
            let mut answer = PartitionResult::default();
            answer.partition_id = partition;
            if let Err(error) = outcome {
                answer.error_code = error.error_code();
                answer.error_message = error.message_str();
            }
            result.partition_result.push(answer);
        }
        result.topic = topic;
        response.replica_election_results.push(result);
    }
    response
}

pub(crate) async fn alter_partition_reassignments(
    broker: &Arc<Broker>,
    version: i16,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    // KIP-860: from v1 a client may forbid moves that change the replica count.
    let allow_factor_change = version < 1 || request.allow_replication_factor_change;
    let mut response = AlterPartitionReassignmentsResponse::default();
    if version >= 1 {
        response.allow_replication_factor_change = request.allow_replication_factor_change;
    }
    for topic in request.topics {
        let mut answered = ReassignableTopicResponse::default();
        for partition in topic.partitions {
            let target: Option<Vec<i32>> = partition
                .replicas
                .map(|replicas| replicas.iter().map(|id| id.0).collect());
            let outcome = reassign(
                broker,
                &topic.name,
                partition.partition_index,
                target,
                allow_factor_change,
            )
            .await;
            let mut answer = ReassignablePartitionResponse::default();
            answer.partition_index = partition.partition_index;
            if let Err(error) = outcome {
                answer.error_code = error.error_code();
                answer.error_message = error.message_str();
            }
            answered.partitions.push(answer);
        }
        answered.name = topic.name;
        response.responses.push(answered);
    }
    response
}

async fn reassign(
    broker: &Arc<Broker>,
    topic: &str,
    partition: i32,
    target: Option<Vec<i32>>,
    allow_factor_change: bool,
) -> Result<(), ApiError> {
    let member = broker.member()?;
    if let (Some(replicas), false) = (&target, allow_factor_change) {
        let current = member
            .image()
            .topic_by_name(topic)
            .and_then(|t| t.partitions.get(&partition))
            .map(|state| state.original_replicas().len());
        if current.is_some_and(|count| count != replicas.len()) {
            return Err(ApiError::new(
                ResponseError::InvalidReplicationFactor,
                "The reassignment changes the replication factor, which the request forbids.",
            ));
        }
    }
    member
        .commit(ControllerRequest::Reassign {
            topic: topic.to_owned(),
            partition,
            target,
        })
        .await
}

pub(crate) fn list_partition_reassignments(
    broker: &Broker,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let mut response = ListPartitionReassignmentsResponse::default();
    let Some(member) = broker.cluster() else {
        return response;
    };
    let image = member.image();
    let ids = |ids: &[i32]| ids.iter().map(|&id| BrokerId(id)).collect::<Vec<_>>();
    for topic in image.topics() {
        let wanted = match &request.topics {
            None => None,
            Some(named) => match named.iter().find(|t| t.name.as_str() == topic.name) {
                Some(named) => Some(&named.partition_indexes),
                None => continue,
            },
        };
        let partitions: Vec<OngoingPartitionReassignment> = topic
            .partitions
            .iter()
            .filter(|(index, state)| {
                state.is_reassigning() && wanted.is_none_or(|wanted| wanted.contains(index))
            })
            .map(|(&index, state)| {
                let mut ongoing = OngoingPartitionReassignment::default();
                ongoing.partition_index = index;
                ongoing.replicas = ids(&state.replicas);
                ongoing.adding_replicas = ids(&state.adding_replicas);
                ongoing.removing_replicas = ids(&state.removing_replicas);
                ongoing
            })
            .collect();
        if !partitions.is_empty() {
            let mut ongoing = OngoingTopicReassignment::default();
            ongoing.name = TopicName(StrBytes::from_string(topic.name.clone()));
            ongoing.partitions = partitions;
            response.topics.push(ongoing);
        }
    }
    response
}
