//! ApiVersions, Metadata and DescribeCluster: what a client asks before anything else.

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
use runnel_controller::validate_topic_name;
use runnel_protocol::supported_versions;

use super::{find_or_create_topic, AUTHORIZED_OPERATIONS_OMITTED};
use crate::broker::Broker;
use crate::partition::LEADER_EPOCH;
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
    let mut response = MetadataResponse::default();
    response.brokers = vec![this_broker(broker)];
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
                partition.leader_epoch = LEADER_EPOCH;
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
    let mut entry = DescribeClusterBroker::default();
    entry.broker_id = BrokerId(broker.config.node_id);
    entry.host = StrBytes::from_string(broker.advertised_host.clone());
    entry.port = broker.advertised_port;
    if version >= 1 {
        response.endpoint_type = 1;
    }
    response.cluster_id = StrBytes::from_string(broker.cluster_id.clone());
    response.controller_id = BrokerId(broker.config.node_id);
    response.brokers = vec![entry];
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
