//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics, and a read-only view
//! of the broker's own configs.
//!
//! DescribeConfigs lists every config of a resource, defaults included, each with its source
//! and synonyms, as Kafka does: tools and stream libraries read defaults such as `retention.ms`.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResourceResponse;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use runnel_controller::records::ConfigResource;
use runnel_quorum::ControllerRequest;

use crate::broker::Broker;
use crate::error::ApiError;
use crate::topic_config::{
    config_def, def_by_broker_synonym, resolve_all, validate_entry, ConfigDef, ConfigSource,
    ConfigType, ResolvedConfig,
};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// One line of a DescribeConfigs answer before encoding.
struct ConfigLine {
    name: String,
    value: String,
    source: ConfigSource,
    kind: ConfigType,
    read_only: bool,
    synonyms: Vec<(String, String, ConfigSource)>,
    doc: &'static str,
}

pub(crate) fn describe_configs(
    broker: &Broker,
    version: i16,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let mut response = DescribeConfigsResponse::default();
    response.results = request
        .resources
        .into_iter()
        .map(|resource| {
            let mut result = DescribeConfigsResult::default();
            result.resource_type = resource.resource_type;
            result.resource_name = resource.resource_name.clone();
            let lines = match resource.resource_type {
                RESOURCE_TOPIC => topic_lines(broker, &resource.resource_name),
                RESOURCE_BROKER => broker_lines(broker, &resource.resource_name),
                other => Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("Describing configs of resource type {other} is not supported"),
                )),
            };
            match lines {
                Ok(lines) => {
                    let keys = resource.configuration_keys.as_ref();
                    result.configs = lines
                        .into_iter()
                        .filter(|line| {
                            keys.is_none_or(|keys| keys.iter().any(|k| k.as_str() == line.name))
                        })
                        .map(|line| {
                            encode_line(
                                line,
                                version,
                                request.include_synonyms,
                                request.include_documentation,
                            )
                        })
                        .collect();
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

fn topic_lines(broker: &Broker, name: &str) -> Result<Vec<ConfigLine>, ApiError> {
    let topic = broker.topics.get(name).ok_or_else(|| {
        ApiError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("Topic '{name}' does not exist."),
        )
    })?;
    let overrides = topic.overrides();
    Ok(resolve_all(&overrides, &broker.topics.broker_defaults())
        .into_iter()
        .map(|entry| {
            let mut synonyms = Vec::new();
            if let Some(value) = overrides.get(entry.def.name) {
                synonyms.push((
                    entry.def.name.to_string(),
                    value.clone(),
                    ConfigSource::TopicConfig,
                ));
            }
            synonyms.extend(broker_synonyms(&entry));
            ConfigLine {
                name: entry.def.name.to_string(),
                value: entry.value,
                source: entry.source,
                kind: entry.def.kind,
                read_only: false,
                synonyms,
                doc: entry.def.doc,
            }
        })
        .collect())
}

/// The broker's configs: its own settings, read-only (static), and the broker-level
/// synonyms of every topic config, which IncrementalAlterConfigs changes at runtime.
fn broker_lines(broker: &Broker, name: &str) -> Result<Vec<ConfigLine>, ApiError> {
    if name.is_empty() {
        return cluster_default_lines(broker);
    }
    if name != broker.config.node_id.to_string() {
        return Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!(
                "Broker {name} is not this broker ({})",
                broker.config.node_id
            ),
        ));
    }
    let config = &broker.config;
    let static_line = |name: &str, value: String, kind: ConfigType, doc: &'static str| ConfigLine {
        name: name.to_string(),
        value: value.clone(),
        source: ConfigSource::StaticBrokerConfig,
        kind,
        read_only: true,
        synonyms: vec![(name.to_string(), value, ConfigSource::StaticBrokerConfig)],
        doc,
    };
    let mut lines = vec![
        static_line(
            "node.id",
            config.node_id.to_string(),
            ConfigType::Int,
            "This broker's id.",
        ),
        static_line(
            "broker.id",
            config.node_id.to_string(),
            ConfigType::Int,
            "This broker's id.",
        ),
        static_line(
            "listeners",
            format!("PLAINTEXT://{}", config.listen),
            ConfigType::List,
            "Where the broker listens.",
        ),
        static_line(
            "advertised.listeners",
            format!("PLAINTEXT://{}", config.advertised()),
            ConfigType::List,
            "What clients are told to connect to.",
        ),
        static_line(
            "log.dirs",
            config.data_dir.display().to_string(),
            ConfigType::List,
            "The data directory.",
        ),
        static_line(
            "num.partitions",
            config.num_partitions.to_string(),
            ConfigType::Int,
            "Partitions of an auto-created topic.",
        ),
        static_line(
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            ConfigType::Boolean,
            "Whether Metadata and Produce create missing topics.",
        ),
        static_line(
            "default.replication.factor",
            "1".into(),
            ConfigType::Int,
            "Replicas of an auto-created topic.",
        ),
        static_line(
            "socket.request.max.bytes",
            config.request_max_bytes.to_string(),
            ConfigType::Int,
            "Largest request accepted.",
        ),
    ];
    let defaults = broker.topics.broker_defaults();
    for entry in resolve_all(&BTreeMap::new(), &defaults) {
        if lines
            .iter()
            .any(|line| line.name == entry.def.broker_synonym)
        {
            continue;
        }
        let synonyms = broker_synonyms(&entry);
        lines.push(ConfigLine {
            name: entry.def.broker_synonym.to_string(),
            value: entry.value,
            source: entry.source,
            kind: entry.def.kind,
            read_only: false,
            synonyms,
            doc: entry.def.doc,
        });
    }
    Ok(lines)
}

/// The broker-level synonyms of a topic config, the one in force first, ending with
/// Kafka's default.
fn broker_synonyms(entry: &ResolvedConfig) -> Vec<(String, String, ConfigSource)> {
    let name = entry.def.broker_synonym;
    entry
        .broker_layers
        .iter()
        .map(|(value, source)| (name.to_string(), value.clone(), *source))
        .chain([(
            name.to_string(),
            entry.def.default.to_string(),
            ConfigSource::DefaultConfig,
        )])
        .collect()
}

/// The dynamic broker configs set for every broker (DescribeConfigs of broker `""`, as in
/// Kafka: only what was set, not the values in force).
fn cluster_default_lines(broker: &Broker) -> Result<Vec<ConfigLine>, ApiError> {
    let image = broker.member()?.image();
    let set = image
        .configs(&ConfigResource::Cluster)
        .cloned()
        .unwrap_or_default();
    Ok(set
        .into_iter()
        .filter_map(|(name, value)| {
            let def = def_by_broker_synonym(&name)?;
            Some(ConfigLine {
                name: name.clone(),
                value: value.clone(),
                source: ConfigSource::DynamicDefaultBrokerConfig,
                kind: def.kind,
                read_only: false,
                synonyms: vec![(name, value, ConfigSource::DynamicDefaultBrokerConfig)],
                doc: def.doc,
            })
        })
        .collect())
}

fn encode_line(
    line: ConfigLine,
    version: i16,
    include_synonyms: bool,
    include_documentation: bool,
) -> DescribeConfigsResourceResult {
    let mut entry = DescribeConfigsResourceResult::default();
    entry.name = StrBytes::from_string(line.name);
    entry.value = Some(StrBytes::from_string(line.value));
    entry.read_only = line.read_only;
    entry.config_source = line.source as i8;
    if include_synonyms {
        entry.synonyms = line
            .synonyms
            .into_iter()
            .map(|(name, value, source)| {
                let mut synonym = DescribeConfigsSynonym::default();
                synonym.name = StrBytes::from_string(name);
                synonym.value = Some(StrBytes::from_string(value));
                synonym.source = source as i8;
                synonym
            })
            .collect();
    }
    if version >= 3 {
        entry.config_type = line.kind as i8;
        if include_documentation {
            entry.documentation = Some(StrBytes::from_static_str(line.doc));
        }
    }
    entry
}

/// The answer for one resource of an (Incremental)AlterConfigs request: the two responses'
/// resource types are distinct generated structs with the same fields.
macro_rules! resource_answer {
    ($answer:ty, $resource_type:expr, $resource_name:expr, $outcome:expr) => {{
        let mut answer = <$answer>::default();
        answer.resource_type = $resource_type;
        answer.resource_name = $resource_name;
        if let Err(error) = $outcome {
            answer.error_code = error.error_code();
            answer.error_message = error.message_str();
        }
        answer
    }};
}

/// Changes a topic's overrides, or the dynamic configs of a broker (`N`) or of every broker
/// (`""`), with `change`, through the controller.
async fn alter_resource(
    broker: &Arc<Broker>,
    resource_type: i8,
    name: String,
    validate_only: bool,
    change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), ApiError> + Send + 'static,
) -> Result<(), ApiError> {
    let member = broker.member()?;
    let image = member.image();
    let resource = match resource_type {
        RESOURCE_TOPIC if image.topic_by_name(&name).is_none() => {
            return Err(ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("Topic '{name}' does not exist."),
            ))
        }
        RESOURCE_TOPIC => ConfigResource::Topic(name),
        RESOURCE_BROKER if name.is_empty() => ConfigResource::Cluster,
        RESOURCE_BROKER => match name.parse::<i32>() {
            Ok(id) if image.broker(id).is_some() => ConfigResource::Broker(id),
            _ => {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("Broker {name} is not registered with the cluster"),
                ))
            }
        },
        other => {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("Altering configs of resource type {other} is not supported"),
            ))
        }
    };
    let current = image.configs(&resource).cloned().unwrap_or_default();
    let mut next = current.clone();
    change(&mut next)?;
    for (key, value) in &next {
        match &resource {
            ConfigResource::Topic(_) => validate_entry(key, value),
            ConfigResource::Cluster | ConfigResource::Broker(_) => {
                validate_broker_entry(key, value)?;
                Ok(())
            }
        }
        .map_err(|message| ApiError::new(ResponseError::InvalidConfig, message))?;
    }
    if validate_only {
        return Ok(());
    }
    let mut changes: Vec<(String, Option<String>)> = next
        .iter()
        .filter(|(key, value)| current.get(*key) != Some(*value))
        .map(|(key, value)| (key.clone(), Some(value.clone())))
        .collect();
    changes.extend(
        current
            .keys()
            .filter(|key| !next.contains_key(*key))
            .map(|key| (key.clone(), None)),
    );
    if changes.is_empty() {
        return Ok(());
    }
    member
        .commit(ControllerRequest::SetConfigs { resource, changes })
        .await
}

/// A dynamic broker config's value, checked as its topic config's would be. A broker
/// setting that is read only at start is refused with INVALID_REQUEST, as Kafka does.
fn validate_broker_entry(name: &str, value: &str) -> Result<(), ApiError> {
    let def = def_by_broker_synonym(name).ok_or_else(|| not_dynamic(name))?;
    validate_entry(def.name, value).map_err(|message| {
        ApiError::new(
            ResponseError::InvalidConfig,
            message.replace(def.name, name),
        )
    })
}

pub(crate) async fn alter_configs(
    broker: &Arc<Broker>,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut response = AlterConfigsResponse::default();
    for resource in request.resources {
        let resource_type = resource.resource_type;
        let resource_name = resource.resource_name.clone();
        let outcome = alter_resource(
            broker,
            resource_type,
            resource_name.to_string(),
            request.validate_only,
            move |overrides| {
                let mut replacement = BTreeMap::new();
                for config in &resource.configs {
                    let value = config.value.as_ref().ok_or_else(|| {
                        ApiError::new(
                            ResponseError::InvalidConfig,
                            format!("Null value not supported for {}", config.name.as_str()),
                        )
                    })?;
                    replacement.insert(config.name.to_string(), value.to_string());
                }
                *overrides = replacement;
                Ok(())
            },
        )
        .await;
        response.responses.push(resource_answer!(
            AlterConfigsResourceResponse,
            resource_type,
            resource_name,
            outcome
        ));
    }
    response
}

pub(crate) async fn incremental_alter_configs(
    broker: &Arc<Broker>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in request.resources {
        let resource_type = resource.resource_type;
        let resource_name = resource.resource_name.clone();
        let outcome = alter_resource(
            broker,
            resource_type,
            resource_name.to_string(),
            request.validate_only,
            move |overrides| {
                for config in &resource.configs {
                    apply_operation(
                        overrides,
                        resource_type,
                        config.name.as_str(),
                        config.config_operation,
                        config.value.as_deref(),
                    )?;
                }
                Ok(())
            },
        )
        .await;
        response.responses.push(resource_answer!(
            IncrementalResourceResponse,
            resource_type,
            resource_name,
            outcome
        ));
    }
    response
}

fn not_dynamic(name: &str) -> ApiError {
    ApiError::new(
        ResponseError::InvalidRequest,
        format!(
            "Cannot update {name} dynamically: only the topic defaults (log.retention.ms, \
             message.max.bytes, ...) change at runtime; set it on the command line or in the \
             config file"
        ),
    )
}

/// The definition of config `name` of a resource of `resource_type`: a topic config, or the
/// topic config a dynamic broker config is the default of.
fn def_of(resource_type: i8, name: &str) -> Result<&'static ConfigDef, ApiError> {
    match resource_type {
        RESOURCE_BROKER => def_by_broker_synonym(name).ok_or_else(|| not_dynamic(name)),
        _ => config_def(name).ok_or_else(|| {
            ApiError::new(
                ResponseError::InvalidConfig,
                format!("Unknown topic config name: {name}"),
            )
        }),
    }
}

/// One IncrementalAlterConfigs operation on the configs of a resource of `resource_type`.
fn apply_operation(
    overrides: &mut BTreeMap<String, String>,
    resource_type: i8,
    name: &str,
    operation: i8,
    value: Option<&str>,
) -> Result<(), ApiError> {
    let def = def_of(resource_type, name)?;
    let value_required = || {
        value.ok_or_else(|| {
            ApiError::new(
                ResponseError::InvalidConfig,
                format!("Null value not supported for {name}"),
            )
        })
    };
    match operation {
        OP_SET => {
            overrides.insert(name.to_string(), value_required()?.to_string());
        }
        OP_DELETE => {
            overrides.remove(name);
        }
        OP_APPEND | OP_SUBTRACT => {
            if def.kind != ConfigType::List {
                return Err(ApiError::new(
                    ResponseError::InvalidConfig,
                    format!("Config {name} is not a list: APPEND and SUBTRACT do not apply"),
                ));
            }
            let current = overrides.get(name).map_or(def.default, String::as_str);
            let mut items: Vec<String> = current
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            for item in value_required()?.split(',').map(str::trim) {
                if operation == OP_APPEND {
                    if !items.iter().any(|existing| existing == item) {
                        items.push(item.to_string());
                    }
                } else {
                    items.retain(|existing| existing != item);
                }
            }
            overrides.insert(name.to_string(), items.join(","));
        }
        other => {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("Unknown config operation {other} for {name}"),
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_operations() {
        let mut overrides = BTreeMap::new();
        apply_operation(
            &mut overrides,
            RESOURCE_TOPIC,
            "retention.ms",
            OP_SET,
            Some("10"),
        )
        .unwrap();
        apply_operation(
            &mut overrides,
            RESOURCE_TOPIC,
            "cleanup.policy",
            OP_APPEND,
            Some("compact"),
        )
        .unwrap();
        assert_eq!(overrides["cleanup.policy"], "delete,compact");
        apply_operation(
            &mut overrides,
            RESOURCE_TOPIC,
            "cleanup.policy",
            OP_SUBTRACT,
            Some("delete"),
        )
        .unwrap();
        assert_eq!(overrides["cleanup.policy"], "compact");
        apply_operation(
            &mut overrides,
            RESOURCE_TOPIC,
            "retention.ms",
            OP_DELETE,
            None,
        )
        .unwrap();
        assert!(!overrides.contains_key("retention.ms"));
        assert_eq!(
            apply_operation(
                &mut overrides,
                RESOURCE_TOPIC,
                "retention.ms",
                OP_APPEND,
                Some("1")
            )
            .unwrap_err()
            .code,
            ResponseError::InvalidConfig
        );
    }

    #[test]
    fn broker_operations_take_only_dynamic_broker_configs() {
        let mut configs = BTreeMap::new();
        apply_operation(
            &mut configs,
            RESOURCE_BROKER,
            "log.retention.ms",
            OP_SET,
            Some("10"),
        )
        .unwrap();
        assert_eq!(configs["log.retention.ms"], "10");
        let refused = apply_operation(
            &mut configs,
            RESOURCE_BROKER,
            "num.io.threads",
            OP_SET,
            Some("3"),
        )
        .unwrap_err();
        assert_eq!(refused.code, ResponseError::InvalidRequest);
        assert!(validate_broker_entry("log.retention.ms", "soon").is_err());
        assert!(validate_broker_entry("log.retention.ms", "-1").is_ok());
    }
}
