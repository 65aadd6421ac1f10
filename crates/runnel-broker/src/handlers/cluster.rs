//! ApiVersions, Metadata and DescribeCluster: what a client asks before anything else. The
//! answers come from the metadata image.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, BrokerId, DescribeClusterRequest,
    DescribeClusterResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use runnel_controller::{validate_topic_name, MetadataImage, NewTopic, TopicImage};
use runnel_protocol::supported_versions;
use runnel_quorum::ControllerRequest;

use super::AUTHORIZED_OPERATIONS_OMITTED;
use crate::broker::Broker;
use crate::cluster::ClusterMember;

pub(crate) fn api_versions(version: i16, request: ApiVersionsRequest) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    if version >= 3
        && !(is_valid_software_field(&request.client_software_name)
            && is_valid_software_field(&request.client_software_version))
    {
        response.error_code = ResponseError::InvalidRequest.code();
        return response;
    }
    response.api_keys = supported_versions()
        .map(|(key, range)| {
            let mut entry = ApiVersion::default();
            entry.api_key = key as i16;
            entry.min_version = range.min;
            entry.max_version = range.max;
            entry
        })
        .collect();
    response
}

/// KIP-511: client software name and version are `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
fn is_valid_software_field(value: &str) -> bool {
    let bytes = value.as_bytes();
    let edge_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    edge_ok(bytes.first())
        && edge_ok(bytes.last())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.')
}

/// The parts of a Metadata answer besides brokers and topics. The controller id is this
/// broker's: in a cluster, clients send admin requests to the "controller", and every broker
/// forwards them to the active one, so this one, which is alive, serves as well as any.
fn metadata_response(
    broker: &Broker,
    version: i16,
    brokers: Vec<MetadataResponseBroker>,
    topics: Vec<MetadataResponseTopic>,
) -> MetadataResponse {
    let mut response = MetadataResponse::default();
    response.brokers = brokers;
    if version >= 2 {
        response.cluster_id = Some(StrBytes::from_string(broker.cluster_id.clone()));
    }
    if version >= 1 {
        response.controller_id = BrokerId(broker.config.node_id);
    }
    response.topics = topics;
    response.cluster_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    response
}

/// The unfenced brokers of the image: id, host, port and rack of each one's listener.
fn live_brokers(image: &MetadataImage) -> Vec<(i32, String, i32, Option<String>)> {
    image
        .brokers()
        .filter(|registered| !registered.registration.fenced)
        .filter_map(|registered| {
            let listener = registered.registration.listeners.first()?;
            Some((
                registered.registration.id,
                listener.host.clone(),
                i32::from(listener.port),
                registered.registration.rack.clone(),
            ))
        })
        .collect()
}

/// Metadata from the metadata image: every live broker, and each partition's leader, leader
/// epoch, replicas and ISR as the controller last published them. Missing topics are created
/// through the controller when auto-creation allows. A broker not yet a member (which the
/// binary never lets clients reach) answers from an empty image.
pub(crate) async fn metadata(
    broker: &Arc<Broker>,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    let may_create =
        broker.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let member = broker.cluster();
    if let Some(member) = member.filter(|_| may_create) {
        let image = member.image();
        for name in request
            .topics
            .iter()
            .flatten()
            .filter_map(|t| t.name.as_ref())
        {
            if image.topic_by_name(name).is_none() && validate_topic_name(name).is_ok() {
                create_by_default(member, name).await;
            }
        }
    }
    let image = member.map(|member| member.image()).unwrap_or_default();
    let topics: Vec<MetadataResponseTopic> = match request.topics {
        None => image
            .topics()
            .map(|topic| describe_image_topic(broker, &image, topic, version))
            .collect(),
        Some(requested) => requested
            .into_iter()
            .map(|wanted| {
                let found = match &wanted.name {
                    Some(name) => image.topic_by_name(name),
                    None => image.topic(wanted.topic_id),
                };
                match found {
                    Some(topic) => describe_image_topic(broker, &image, topic, version),
                    None => {
                        let mut missing = MetadataResponseTopic::default();
                        missing.topic_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
                        missing.error_code = match &wanted.name {
                            Some(name) => {
                                missing.name = Some(name.clone());
                                match validate_topic_name(name) {
                                    Err(error) => error.code.code(),
                                    Ok(()) if may_create => {
                                        ResponseError::LeaderNotAvailable.code()
                                    }
                                    Ok(()) => ResponseError::UnknownTopicOrPartition.code(),
                                }
                            }
                            None => {
                                missing.topic_id = wanted.topic_id;
                                ResponseError::UnknownTopicId.code()
                            }
                        };
                        missing
                    }
                }
            })
            .collect(),
    };
    let brokers = live_brokers(&image)
        .into_iter()
        .map(|(id, host, port, rack)| {
            let mut entry = MetadataResponseBroker::default();
            entry.node_id = BrokerId(id);
            entry.host = StrBytes::from_string(host);
            entry.port = port;
            entry.rack = rack.map(StrBytes::from_string);
            entry
        })
        .collect();
    metadata_response(broker, version, brokers, topics)
}

/// Creates a topic with the cluster's defaults (auto-creation); another request creating it
/// first is no failure.
pub(crate) async fn create_by_default(member: &ClusterMember, name: &str) {
    let request = ControllerRequest::CreateTopic {
        topic: NewTopic {
            name: name.to_owned(),
            partitions: -1,
            replication_factor: -1,
            assignments: Vec::new(),
            configs: Vec::new(),
        },
        validate_only: false,
    };
    if let Err(error) = member.commit(request).await {
        tracing::debug!(topic = name, error = ?error.message, "auto-creation did not create the topic");
    }
}

/// A topic as the image describes it: replicas on fenced brokers, or on a disk their broker
/// reported failed, are offline. This broker adds what only it knows until its next
/// heartbeat tells the controller: its own replicas whose disk just failed are offline, and
/// a partition it leads on such a replica has no leader.
fn describe_image_topic(
    broker: &Broker,
    image: &MetadataImage,
    topic: &TopicImage,
    version: i16,
) -> MetadataResponseTopic {
    let mut answer = MetadataResponseTopic::default();
    answer.name = Some(TopicName(StrBytes::from_string(topic.name.clone())));
    if version >= 10 {
        answer.topic_id = topic.id;
    }
    answer.is_internal = crate::internal_topics::is_internal(&topic.name);
    answer.topic_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    let this = broker.node_id();
    let held = broker.topics.get(&topic.name);
    let offline_here = |index: i32| {
        held.as_ref()
            .and_then(|held| held.partition(index))
            .is_some_and(|partition| partition.is_offline())
    };
    let ids = |ids: &[i32]| ids.iter().map(|&id| BrokerId(id)).collect::<Vec<_>>();
    answer.partitions = topic
        .partitions
        .iter()
        .map(|(&index, state)| {
            let mut partition = MetadataResponsePartition::default();
            partition.partition_index = index;
            partition.leader_id = BrokerId(state.leader);
            if version >= 7 {
                partition.leader_epoch = state.leader_epoch;
            }
            partition.replica_nodes = ids(&state.replicas);
            partition.isr_nodes = ids(&state.isr);
            let offline: Vec<i32> = state
                .replicas
                .iter()
                .copied()
                .filter(|&id| {
                    image
                        .broker(id)
                        .is_none_or(|registered| registered.registration.fenced)
                        || image.is_replica_offline(id, topic.id, index)
                        || (id == this && offline_here(index))
                })
                .collect();
            let leads_offline = state.leader == this && offline.contains(&this);
            partition.offline_replicas = ids(&offline);
            if leads_offline {
                partition.leader_id = BrokerId(-1);
            }
            if !state.has_leader() || leads_offline {
                partition.error_code = ResponseError::LeaderNotAvailable.code();
            }
            partition
        })
        .collect();
    answer
}

pub(crate) fn describe_cluster(
    broker: &Broker,
    version: i16,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default();
    // Endpoint type 1 is brokers; 2 (controllers) is for KRaft controller listeners.
    if request.endpoint_type > 1 {
        response.error_code = ResponseError::UnsupportedEndpointType.code();
        response.error_message = Some(StrBytes::from_static_str(
            "This broker has no separate controller endpoints",
        ));
        return response;
    }
    let entry = |id: i32, host: String, port: i32, rack: Option<String>| {
        let mut entry = DescribeClusterBroker::default();
        entry.broker_id = BrokerId(id);
        entry.host = StrBytes::from_string(host);
        entry.port = port;
        entry.rack = rack.map(StrBytes::from_string);
        entry
    };
    let image = broker
        .cluster()
        .map(|member| member.image())
        .unwrap_or_default();
    let brokers = live_brokers(&image)
        .into_iter()
        .map(|(id, host, port, rack)| entry(id, host, port, rack))
        .collect();
    if version >= 1 {
        response.endpoint_type = 1;
    }
    response.cluster_id = StrBytes::from_string(broker.cluster_id.clone());
    // As in Metadata: any live broker forwards admin requests to the active controller.
    response.controller_id = BrokerId(broker.config.node_id);
    response.brokers = brokers;
    response.cluster_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_fields_follow_kip_511() {
        assert!(is_valid_software_field("librdkafka"));
        assert!(is_valid_software_field("2.0.2"));
        assert!(!is_valid_software_field(""));
        assert!(!is_valid_software_field("-x"));
        assert!(!is_valid_software_field("a b"));
    }
}
