//! ApiVersions, Metadata and DescribeCluster: what a client asks before anything else. A
//! one-node broker describes itself; in a cluster, the answers come from the metadata image.

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

use super::{find_or_create_topic, AUTHORIZED_OPERATIONS_OMITTED};
use crate::broker::Broker;
use crate::cluster::ClusterMember;
use crate::topics::Topic;

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

pub(crate) fn metadata(
    broker: &Broker,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    // Before v4 the request had no flag and creation was implied.
    let may_create =
        broker.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let topics: Vec<MetadataResponseTopic> = match request.topics {
        None => broker
            .topics
            .list()
            .iter()
            .map(|t| describe_topic(broker, t, version))
            .collect(),
        Some(requested) => requested
            .into_iter()
            .map(|wanted| match wanted.name {
                Some(name) => topic_by_name(broker, &name, may_create, version),
                None => match broker.topics.get_by_id(wanted.topic_id) {
                    Some(topic) => describe_topic(broker, &topic, version),
                    None => {
                        let mut missing = MetadataResponseTopic::default();
                        missing.topic_id = wanted.topic_id;
                        missing.error_code = ResponseError::UnknownTopicId.code();
                        missing
                    }
                },
            })
            .collect(),
    };
    metadata_response(broker, version, vec![this_broker(broker)], topics)
}

/// The parts of a Metadata answer both kinds of broker give alike. The controller id is this
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

/// Metadata in a cluster, from the metadata image: every live broker, and each partition's
/// leader, leader epoch, replicas and ISR as the controller last published them. Missing
/// topics are created through the controller when auto-creation allows.
pub(crate) async fn metadata_in_cluster(
    broker: &Arc<Broker>,
    member: &ClusterMember,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    let may_create =
        broker.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    if may_create {
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
    let image = member.image();
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

fn topic_by_name(
    broker: &Broker,
    name: &TopicName,
    may_create: bool,
    version: i16,
) -> MetadataResponseTopic {
    if let Some(topic) = broker.topics.get(name) {
        return describe_topic(broker, &topic, version);
    }
    let mut answer = MetadataResponseTopic::default();
    answer.name = Some(name.clone());
    answer.topic_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    if let Err(error) = validate_topic_name(name) {
        answer.error_code = error.code.code();
        return answer;
    }
    if !may_create {
        answer.error_code = ResponseError::UnknownTopicOrPartition.code();
        return answer;
    }
    match find_or_create_topic(broker, name) {
        Some(topic) => describe_topic(broker, &topic, version),
        None => {
            answer.error_code = ResponseError::LeaderNotAvailable.code();
            answer
        }
    }
}

fn describe_topic(broker: &Broker, topic: &Topic, version: i16) -> MetadataResponseTopic {
    let node = BrokerId(broker.config.node_id);
    let mut answer = MetadataResponseTopic::default();
    answer.name = Some(TopicName(StrBytes::from_string(topic.name.to_string())));
    if version >= 10 {
        answer.topic_id = topic.id;
    }
    answer.is_internal = topic.is_internal();
    answer.topic_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    answer.partitions = topic
        .partitions()
        .iter()
        .map(|held| {
            let mut partition = MetadataResponsePartition::default();
            partition.partition_index = held.index;
            partition.replica_nodes = vec![node];
            if held.is_offline() {
                // Its only replica's disk failed: no leader, as Kafka reports it.
                partition.error_code = ResponseError::LeaderNotAvailable.code();
                partition.leader_id = BrokerId(-1);
                partition.offline_replicas = vec![node];
                return partition;
            }
            partition.leader_id = node;
            if version >= 7 {
                partition.leader_epoch = held.serving_epoch(-1).unwrap_or(-1);
            }
            partition.isr_nodes = vec![node];
            partition
        })
        .collect();
    answer
}

fn this_broker(broker: &Broker) -> MetadataResponseBroker {
    let mut entry = MetadataResponseBroker::default();
    entry.node_id = BrokerId(broker.config.node_id);
    entry.host = StrBytes::from_string(broker.advertised_host.clone());
    entry.port = broker.advertised_port;
    entry.rack = broker.config.rack.clone().map(StrBytes::from_string);
    entry
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
    let (brokers, controller_id) = match broker.cluster() {
        None => (
            vec![entry(
                broker.config.node_id,
                broker.advertised_host.clone(),
                broker.advertised_port,
                broker.config.rack.clone(),
            )],
            broker.config.node_id,
        ),
        Some(member) => {
            let brokers = live_brokers(&member.image())
                .into_iter()
                .map(|(id, host, port, rack)| entry(id, host, port, rack))
                .collect();
            (brokers, broker.config.node_id)
        }
    };
    if version >= 1 {
        response.endpoint_type = 1;
    }
    response.cluster_id = StrBytes::from_string(broker.cluster_id.clone());
    response.controller_id = BrokerId(controller_id);
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
