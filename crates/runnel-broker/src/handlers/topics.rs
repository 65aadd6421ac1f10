//! CreateTopics, DeleteTopics and CreatePartitions.

use std::collections::{BTreeMap, HashSet};

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

use crate::broker::Broker;
use crate::error::ApiError;
use crate::topic_config::resolve_all;

/// Replicas per partition this cluster can place: one broker, one replica.
const BROKERS_AVAILABLE: i16 = 1;

pub(crate) fn create_topics(
    broker: &Broker,
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
    let mut response = CreateTopicsResponse::default();
    response.topics = request
        .topics
        .into_iter()
        .map(|topic| {
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
                create_one(broker, topic, request.validate_only)
            };
            match outcome {
                Ok((partitions, configs, topic_id)) => {
                    if version >= 5 {
                        result.num_partitions = partitions;
                        result.replication_factor = BROKERS_AVAILABLE;
                        result.configs = Some(describe_created_configs(broker, &configs));
                    }
                    if let (Some(id), true) = (topic_id, version >= 7) {
                        result.topic_id = id;
                    }
                }
                Err(error) => {
                    result.error_code = error.error_code();
                    result.error_message = error.message_str();
                }
            }
            result
        })
        .collect();
    response
}

type Created = (i32, BTreeMap<String, String>, Option<uuid::Uuid>);

fn create_one(
    broker: &Broker,
    topic: CreatableTopic,
    validate_only: bool,
) -> Result<Created, ApiError> {
    let partitions = if topic.assignments.is_empty() {
        match topic.replication_factor {
            -1 => {}
            factor if factor < 1 => {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicationFactor,
                    "Replication factor must be larger than 0, or -1 to use the default value.",
                ))
            }
            factor if factor > BROKERS_AVAILABLE => {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicationFactor,
                    format!("Unable to replicate the partition {factor} time(s): The target replication factor of {factor} cannot be reached because only {BROKERS_AVAILABLE} broker(s) are registered."),
                ))
            }
            _ => {}
        }
        match topic.num_partitions {
            -1 => broker.config.num_partitions,
            count => count,
        }
    } else {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
            ));
        }
        check_assignments(
            broker,
            topic
                .assignments
                .iter()
                .map(|a| a.broker_ids.iter().map(|b| b.0).collect()),
        )?;
        topic.assignments.len() as i32
    };
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
        configs.insert(config.name.to_string(), value.to_string());
    }
    let created = broker.topics.create(
        &topic.name,
        partitions,
        configs.clone(),
        validate_only,
        broker.now_ms(),
    )?;
    Ok((partitions, configs, created.map(|topic| topic.id)))
}

/// Every partition's replicas must be exactly this broker.
fn check_assignments(
    broker: &Broker,
    assignments: impl Iterator<Item = Vec<i32>>,
) -> Result<(), ApiError> {
    for replicas in assignments {
        if replicas != [broker.config.node_id] {
            return Err(ApiError::new(
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "Replica assignment {replicas:?} names brokers other than the only one, {}",
                    broker.config.node_id
                ),
            ));
        }
    }
    Ok(())
}

fn describe_created_configs(
    broker: &Broker,
    overrides: &BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    resolve_all(overrides, broker.topics.broker_defaults())
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

pub(crate) fn delete_topics(
    broker: &Broker,
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
    response.responses = targets
        .into_iter()
        .map(|(name, id)| {
            let mut result = DeletableTopicResult::default();
            let topic = match &name {
                Some(name) => broker.topics.get(name),
                None => broker.topics.get_by_id(id),
            };
            let outcome = match topic {
                Some(topic) => {
                    result.name = Some(TopicName(StrBytes::from_string(topic.name.to_string())));
                    if version >= 6 {
                        result.topic_id = topic.id;
                    }
                    broker.topics.delete(&topic.name)
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
            result
        })
        .collect();
    response
}

pub(crate) fn create_partitions(
    broker: &Broker,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    response.results = request
        .topics
        .into_iter()
        .map(|topic| {
            let mut result = CreatePartitionsTopicResult::default();
            let outcome = topic
                .assignments
                .as_ref()
                .map_or(Ok(()), |assignments| {
                    check_assignments(
                        broker,
                        assignments
                            .iter()
                            .map(|a| a.broker_ids.iter().map(|b| b.0).collect()),
                    )
                })
                .and_then(|()| {
                    broker.topics.add_partitions(
                        &topic.name,
                        topic.count,
                        request.validate_only,
                        broker.now_ms(),
                    )
                });
            if let Err(error) = outcome {
                result.error_code = error.error_code();
                result.error_message = error.message_str();
            }
            result.name = topic.name;
            result
        })
        .collect();
    response
}
