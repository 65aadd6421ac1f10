//! CreateTopics, DeleteTopics and CreatePartitions: forwarded to the active controller,
//! answered once this broker has applied the change (so the client's next Metadata shows it).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use runnel_controller::NewTopic;
use runnel_quorum::ControllerRequest;

use crate::broker::Broker;
use crate::cluster::ClusterMember;
use crate::error::ApiError;
use crate::topic_config::{resolve_all, validate_entry};

pub(crate) async fn create_topics(
    broker: &Arc<Broker>,
    version: i16,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let duplicates: HashSet<TopicName> = request
        .topics
        .iter()
        .filter(|topic| !seen.insert(topic.name.clone()))
        .map(|topic| topic.name.clone())
        .collect();
    let validate_only = request.validate_only;
    let mut response = CreateTopicsResponse::default();
    for topic in request.topics {
        let name = topic.name.clone();
        let mut result = CreatableTopicResult::default();
        result.name = name.clone();
        let outcome = if duplicates.contains(&name) {
            Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!(
                    "Create topics request from client contains duplicate topic '{}'",
                    name.as_str()
                ),
            ))
        } else {
            match parse_creatable(topic) {
                Ok(wanted) => match broker.member() {
                    Ok(member) => create_in_cluster(member, wanted, validate_only).await,
                    Err(error) => Err(error),
                },
                Err(error) => Err(error),
            }
        };
        match outcome {
            Ok(created) => {
                if version >= 5 {
                    result.num_partitions = created.partitions;
                    result.replication_factor = created.replication_factor;
                    result.configs = Some(describe_created_configs(broker, &created.configs));
                }
                if let (Some(id), true) = (created.topic_id, version >= 7) {
                    result.topic_id = id;
                }
            }
            Err(error) => {
                result.error_code = error.error_code();
                result.error_message = error.message_str();
            }
        }
        response.topics.push(result);
    }
    response
}

/// A CreateTopics entry, checked for what needs no cluster state.
struct WantedTopic {
    name: String,
    /// `-1`: the default.
    partitions: i32,
    /// `-1`: the default.
    replication_factor: i16,
    /// Replica lists by partition, instead of counts; empty for none.
    assignments: Vec<Vec<i32>>,
    configs: BTreeMap<String, String>,
}

/// What a created (or validated) topic is.
struct Created {
    partitions: i32,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
    topic_id: Option<uuid::Uuid>,
}

fn parse_creatable(topic: CreatableTopic) -> Result<WantedTopic, ApiError> {
    if topic.assignments.is_empty() {
        if topic.replication_factor < 1 && topic.replication_factor != -1 {
            return Err(ApiError::new(
                ResponseError::InvalidReplicationFactor,
                "Replication factor must be larger than 0, or -1 to use the default value.",
            ));
        }
    } else if topic.num_partitions != -1 || topic.replication_factor != -1 {
        return Err(ApiError::new(
            ResponseError::InvalidRequest,
            "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
        ));
    }
    let mut configs = BTreeMap::new();
    for config in topic.configs {
        let value = config.value.ok_or_else(|| {
            ApiError::new(
                ResponseError::InvalidConfig,
                format!(
                    "Null value not supported for topic configs: {}",
                    config.name.as_str()
                ),
            )
        })?;
        validate_entry(&config.name, &value)
            .map_err(|message| ApiError::new(ResponseError::InvalidConfig, message))?;
        configs.insert(config.name.to_string(), value.to_string());
    }
    Ok(WantedTopic {
        name: topic.name.to_string(),
        partitions: topic.num_partitions,
        replication_factor: topic.replication_factor,
        assignments: topic
            .assignments
            .iter()
            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
            .collect(),
        configs,
    })
}

/// Asks the controller to create the topic, and waits until this broker knows it.
async fn create_in_cluster(
    member: &ClusterMember,
    wanted: WantedTopic,
    validate_only: bool,
) -> Result<Created, ApiError> {
    let new_topic = NewTopic {
        name: wanted.name.clone(),
        partitions: wanted.partitions,
        replication_factor: wanted.replication_factor,
        assignments: wanted.assignments,
        configs: wanted
            .configs
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
    };
    member
        .commit(ControllerRequest::CreateTopic {
            topic: new_topic,
            validate_only,
        })
        .await?;
    let image = member.image();
    let topic = image.topic_by_name(&wanted.name);
    Ok(Created {
        partitions: topic.map_or(wanted.partitions, |t| t.partitions.len() as i32),
        replication_factor: topic
            .and_then(|t| t.partitions.values().next())
            .map_or(wanted.replication_factor, |p| p.replicas.len() as i16),
        configs: wanted.configs,
        topic_id: topic.filter(|_| !validate_only).map(|t| t.id),
    })
}

fn describe_created_configs(
    broker: &Broker,
    overrides: &BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    resolve_all(overrides, &broker.topics.broker_defaults())
        .into_iter()
        .map(|entry| {
            let mut config = CreatableTopicConfigs::default();
            config.name = StrBytes::from_static_str(entry.def.name);
            config.value = Some(StrBytes::from_string(entry.value));
            config.config_source = entry.source as i8;
            config
        })
        .collect()
}

pub(crate) async fn delete_topics(
    broker: &Arc<Broker>,
    version: i16,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    // v6 names topics by name or id; earlier versions by name only.
    let targets: Vec<(Option<TopicName>, uuid::Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|name| (Some(name), uuid::Uuid::nil()))
            .collect()
    };
    let mut response = DeleteTopicsResponse::default();
    for (name, id) in targets {
        let mut result = DeletableTopicResult::default();
        let image = broker
            .cluster()
            .map(|member| member.image())
            .unwrap_or_default();
        let found = match &name {
            Some(name) => image.topic_by_name(name),
            None => image.topic(id),
        }
        .map(|topic| (topic.name.clone(), topic.id));
        let outcome = match found {
            Some((found_name, found_id)) => {
                result.name = Some(TopicName(StrBytes::from_string(found_name.clone())));
                if version >= 6 {
                    result.topic_id = found_id;
                }
                match broker.member() {
                    Ok(member) => {
                        member
                            .commit(ControllerRequest::DeleteTopic { name: found_name })
                            .await
                    }
                    Err(error) => Err(error),
                }
            }
            None => {
                result.name = name.clone();
                if version >= 6 {
                    result.topic_id = id;
                }
                Err(ApiError::code(if name.is_some() {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    ResponseError::UnknownTopicId
                }))
            }
        };
        if let Err(error) = outcome {
            result.error_code = error.error_code();
            if version >= 5 {
                result.error_message = error.message_str();
            }
        }
        response.responses.push(result);
    }
    response
}

pub(crate) async fn create_partitions(
    broker: &Arc<Broker>,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let validate_only = request.validate_only;
    let mut response = CreatePartitionsResponse::default();
    for topic in request.topics {
        let mut result = CreatePartitionsTopicResult::default();
        let assignments: Vec<Vec<i32>> = topic
            .assignments
            .iter()
            .flatten()
            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
            .collect();
        let name = topic.name.to_string();
        let outcome = match broker.member() {
            Ok(member) => {
                member
                    .commit(ControllerRequest::CreatePartitions {
                        name,
                        total: topic.count,
                        assignments,
                        validate_only,
                    })
                    .await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = outcome {
            result.error_code = error.error_code();
            result.error_message = error.message_str();
        }
        result.name = topic.name;
        response.results.push(result);
    }
    response
}
