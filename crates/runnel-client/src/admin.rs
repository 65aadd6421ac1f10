//! The admin client: topics, configs, offsets, groups and the cluster, over the Admin APIs every
//! Kafka-compatible cluster serves.
//!
//! Each call routes its requests where Kafka's own admin client does: topic creation and
//! deletion to the controller, ListOffsets and DeleteRecords to each partition's leader, group
//! requests to the group's coordinator, ListGroups to every broker. Retriable errors (a leader
//! moving, a coordinator loading or moving, a broken connection) are retried a few times with
//! `retry_backoff`, doubling, after dropping the stale metadata or coordinator; anything else is
//! returned as it came. Every Kafka error code becomes a [`ClientError::Broker`] naming the
//! topic, partition or group it is about.
//!
//! Does not: create ACLs, reassign partitions, or manage transactions.

mod reassignments;
mod transactions;

pub use reassignments::{Election, PartitionOutcome, PartitionReassignment};
pub use transactions::{ProducerDescription, TransactionDescription, TransactionListing};

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures::future::try_join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    consumer_group_describe_response, create_partitions_request, create_topics_request,
    delete_records_request, delete_topics_request, describe_configs_request,
    describe_groups_response, incremental_alter_configs_request, list_offsets_request,
    offset_delete_request, offset_fetch_request, BrokerId, ConsumerGroupDescribeRequest,
    ConsumerProtocolAssignment, CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest,
    DeleteRecordsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    DescribeGroupsRequest, IncrementalAlterConfigsRequest, ListGroupsRequest, ListOffsetsRequest,
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::{Decodable, Message, StrBytes};

use crate::cluster::{BrokerInfo, Cluster, TopicMetadata};
use crate::connection::{ClientConfig, Connection};
use crate::consumer::IsolationLevel;
use crate::error::{ClientError, Result};
use crate::wire::{group_id, offset_commit_request, topic_name, OffsetsByTopic};

/// Tries per operation, the first included.
const RETRY_ATTEMPTS_MAX: u32 = 6;
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// DescribeConfigs and IncrementalAlterConfigs resource type of a topic.
const RESOURCE_TYPE_TOPIC: i8 = 2;
const RESOURCE_TYPE_BROKER: i8 = 4;

/// Whose configs [`Admin::describe_configs`] and [`Admin::alter_configs`] read and change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigTarget {
    /// A topic, by name.
    Topic(String),
    /// One broker, by node id.
    Broker(i32),
    /// The dynamic defaults of every broker (Kafka's `--entity-default`).
    EveryBroker,
}

impl ConfigTarget {
    /// The resource type and name the protocol knows it by.
    fn resource(&self) -> (i8, String) {
        match self {
            ConfigTarget::Topic(name) => (RESOURCE_TYPE_TOPIC, name.clone()),
            ConfigTarget::Broker(id) => (RESOURCE_TYPE_BROKER, id.to_string()),
            ConfigTarget::EveryBroker => (RESOURCE_TYPE_BROKER, String::new()),
        }
    }

    fn scope(&self) -> Scope<'_> {
        match self {
            ConfigTarget::Topic(name) => Scope::Topic(name),
            ConfigTarget::Broker(_) | ConfigTarget::EveryBroker => Scope::Cluster,
        }
    }
}

impl std::fmt::Display for ConfigTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigTarget::Topic(name) => write!(f, "topic {name:?}"),
            ConfigTarget::Broker(id) => write!(f, "broker {id}"),
            ConfigTarget::EveryBroker => f.write_str("every broker (the cluster default)"),
        }
    }
}
/// `replica_id` of a request from a client rather than a follower.
const CONSUMER_REPLICA_ID: i32 = -1;
/// OffsetCommit's generation for a commit from outside the group (the group must be empty).
const GENERATION_NONE: i32 = -1;

/// A topic to create.
///
/// ```
/// use runnel_client::NewTopic;
///
/// let topic = NewTopic::new("orders", 6)
///     .with_replication_factor(3)
///     .with_config("retention.ms", "86400000");
/// assert_eq!(topic.configs, [("retention.ms".to_owned(), "86400000".to_owned())]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// The topic's name.
    pub name: String,
    /// -1: the broker's `num.partitions`.
    pub partitions: i32,
    /// -1: the broker's `default.replication.factor`.
    pub replication_factor: i16,
    /// Topic config overrides, such as `cleanup.policy=compact`.
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// `partitions` partitions, the broker's default replication factor, no overrides.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: -1,
            configs: Vec::new(),
        }
    }

    /// Sets how many replicas each partition has (`--replication-factor`).
    pub fn with_replication_factor(mut self, replication_factor: i16) -> Self {
        self.replication_factor = replication_factor;
        self
    }

    /// Adds a topic config override, as `kafka-topics --config name=value`.
    pub fn with_config(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((name.into(), value.into()));
        self
    }
}

/// Where a config value comes from, as DescribeConfigs reports it.
///
/// ```no_run
/// # async fn example(admin: runnel_client::Admin) -> runnel_client::Result<()> {
/// use runnel_client::ConfigSource;
///
/// // The configs set on the topic itself, as `kafka-configs --describe` lists them.
/// for entry in admin.describe_topic_configs("orders").await? {
///     if entry.source == ConfigSource::DynamicTopicConfig {
///         println!("{}={}", entry.name, entry.value.as_deref().unwrap_or("(sensitive)"));
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigSource {
    /// Set on the topic.
    DynamicTopicConfig,
    /// Set dynamically for this broker (`kafka-configs --entity-type brokers --entity-name N`).
    DynamicBrokerConfig,
    /// Set dynamically as the default of every broker (`--entity-default`).
    DynamicDefaultBrokerConfig,
    /// The broker's config file.
    StaticBrokerConfig,
    /// The built-in default.
    DefaultConfig,
    /// A broker logger's level, set dynamically.
    DynamicBrokerLoggerConfig,
    /// A client metrics subscription (KIP-714).
    ClientMetricsConfig,
    /// Set on a group (KIP-848 group configs).
    GroupConfig,
    /// A code this client does not know (or 0, unknown).
    Unknown(i8),
}

impl ConfigSource {
    /// The source for a DescribeConfigs `config_source` code.
    ///
    /// ```
    /// use runnel_client::ConfigSource;
    ///
    /// assert_eq!(ConfigSource::from_code(1), ConfigSource::DynamicTopicConfig);
    /// assert_eq!(ConfigSource::from_code(5), ConfigSource::DefaultConfig);
    /// assert_eq!(ConfigSource::from_code(42), ConfigSource::Unknown(42));
    /// ```
    pub fn from_code(code: i8) -> Self {
        match code {
            1 => ConfigSource::DynamicTopicConfig,
            2 => ConfigSource::DynamicBrokerConfig,
            3 => ConfigSource::DynamicDefaultBrokerConfig,
            4 => ConfigSource::StaticBrokerConfig,
            5 => ConfigSource::DefaultConfig,
            6 => ConfigSource::DynamicBrokerLoggerConfig,
            7 => ConfigSource::ClientMetricsConfig,
            8 => ConfigSource::GroupConfig,
            other => ConfigSource::Unknown(other),
        }
    }
}

/// One config of a resource, with where its value comes from.
///
/// ```no_run
/// # async fn example(admin: runnel_client::Admin) -> runnel_client::Result<()> {
/// let configs = admin.describe_topic_configs("orders").await?;
/// let retention = configs.iter().find(|entry| entry.name == "retention.ms");
/// if let Some(entry) = retention {
///     println!("retention.ms = {:?} from {:?}", entry.value, entry.source);
///     for synonym in &entry.synonyms {
///         println!("  could come from {} = {:?}", synonym.name, synonym.value);
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The config's name, such as `retention.ms`.
    pub name: String,
    /// `None` for sensitive values.
    pub value: Option<String>,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// Whether it cannot be changed with IncrementalAlterConfigs.
    pub read_only: bool,
    /// Whether the value is the built-in default (no topic or broker setting).
    pub is_default: bool,
    /// Whether the value is a secret (a password); `value` is then `None`.
    pub is_sensitive: bool,
    /// The settings that could supply this config, highest precedence first.
    pub synonyms: Vec<ConfigSynonym>,
    /// What the config does, as the broker describes it (DescribeConfigs v3+).
    pub documentation: Option<String>,
}

/// A setting that could supply a config's value, e.g. the broker's `log.retention.ms` for a
/// topic's `retention.ms`.
///
/// ```no_run
/// # async fn example(admin: runnel_client::Admin) -> runnel_client::Result<()> {
/// use runnel_client::ConfigSource;
///
/// for entry in admin.describe_topic_configs("orders").await? {
///     let broker_default = entry
///         .synonyms
///         .iter()
///         .find(|synonym| synonym.source == ConfigSource::StaticBrokerConfig);
///     if let Some(synonym) = broker_default {
///         println!("{}: broker sets {} = {:?}", entry.name, synonym.name, synonym.value);
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    /// The synonym's name, e.g. `log.retention.ms`.
    pub name: String,
    /// Its value; `None` when sensitive or unset.
    pub value: Option<String>,
    /// Where it is set.
    pub source: ConfigSource,
}

/// One change to a config, as IncrementalAlterConfigs applies it.
///
/// ```
/// use runnel_client::AlterConfigOp;
///
/// let ops = vec![
///     AlterConfigOp::set("retention.ms", "3600000"),
///     AlterConfigOp::delete("cleanup.policy"),
/// ];
/// assert_eq!(ops[1].name, "cleanup.policy");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterConfigOp {
    /// The config to change.
    pub name: String,
    /// The change.
    pub op: ConfigOp,
}

/// What [`AlterConfigOp`] does: IncrementalAlterConfigs' `SET`, `DELETE`, `APPEND` and
/// `SUBTRACT`.
///
/// ```
/// use runnel_client::{AlterConfigOp, ConfigOp};
///
/// // List-valued configs can be edited in place.
/// let op = AlterConfigOp {
///     name: "cleanup.policy".into(),
///     op: ConfigOp::Append("compact".into()),
/// };
/// assert_eq!(AlterConfigOp::set("retention.ms", "1000").op, ConfigOp::Set("1000".into()));
/// assert_eq!(AlterConfigOp::delete("retention.ms").op, ConfigOp::Delete);
/// assert_ne!(op.op, ConfigOp::Subtract("compact".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOp {
    /// Sets the value.
    Set(String),
    /// Removes the override; the default applies again.
    Delete,
    /// Adds to a list-valued config.
    Append(String),
    /// Removes from a list-valued config.
    Subtract(String),
}

impl AlterConfigOp {
    /// Sets `name` to `value` on the resource.
    pub fn set(name: impl Into<String>, value: impl Into<String>) -> Self {
        AlterConfigOp {
            name: name.into(),
            op: ConfigOp::Set(value.into()),
        }
    }

    /// Removes the resource's override of `name`; the broker's value or the default applies.
    pub fn delete(name: impl Into<String>) -> Self {
        AlterConfigOp {
            name: name.into(),
            op: ConfigOp::Delete,
        }
    }

    fn code_and_value(&self) -> (i8, Option<&str>) {
        match &self.op {
            ConfigOp::Set(value) => (0, Some(value)),
            ConfigOp::Delete => (1, None),
            ConfigOp::Append(value) => (2, Some(value)),
            ConfigOp::Subtract(value) => (3, Some(value)),
        }
    }
}

/// Which offset [`Admin::list_offsets`] asks for.
///
/// ```no_run
/// # async fn example(admin: runnel_client::Admin) -> runnel_client::Result<()> {
/// use runnel_client::OffsetSpec;
///
/// // Where partition 0 stood an hour ago, for reprocessing from then.
/// let an_hour_ago_ms = 1_700_000_000_000 - 3_600_000;
/// let offsets = admin.list_offsets("orders", &[0], OffsetSpec::Timestamp(an_hour_ago_ms)).await?;
/// let earliest = admin.list_offsets("orders", &[0], OffsetSpec::Earliest).await?;
/// println!("{offsets:?}, log start offset {}", earliest[0].1.offset);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark: the offset the next record will get.
    Latest,
    /// The record with the largest timestamp (ListOffsets v7+).
    MaxTimestamp,
    /// The first record with a timestamp at or after this many milliseconds since the epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    fn timestamp(self) -> i64 {
        match self {
            OffsetSpec::Latest => -1,
            OffsetSpec::Earliest => -2,
            OffsetSpec::MaxTimestamp => -3,
            OffsetSpec::Timestamp(timestamp) => timestamp,
        }
    }
}

/// A partition's offset as ListOffsets reports it.
///
/// ```no_run
/// # async fn example(admin: runnel_client::Admin) -> runnel_client::Result<()> {
/// use runnel_client::OffsetSpec;
///
/// let latest = admin.list_offsets("orders", &[0, 1], OffsetSpec::MaxTimestamp).await?;
/// for (partition, listed) in latest {
///     let (offset, timestamp_ms) = (listed.offset, listed.timestamp);
///     println!("{partition}: newest record at offset {offset} ({timestamp_ms} ms)");
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// -1 when no record matches (a timestamp after the last record).
    pub offset: i64,
    /// The matched record's timestamp; -1 for [`OffsetSpec::Earliest`] and
    /// [`OffsetSpec::Latest`].
    pub timestamp: i64,
    /// The leader epoch of the matched offset; `None` when the broker does not say.
    pub leader_epoch: Option<i32>,
}

/// One group as ListGroups reports it.
///
/// ```no_run
/// # async fn example(admin: runnel_client::Admin) -> runnel_client::Result<()> {
/// for group in admin.list_groups().await? {
///     if group.protocol_type == "consumer" {
///         println!("{} ({})", group.group_id, group.state.as_deref().unwrap_or("?"));
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id (`group.id`).
    pub group_id: String,
    /// `consumer` for consumer groups; empty for groups that only commit offsets.
    pub protocol_type: String,
    /// `None` from brokers older than ListGroups v4.
    pub state: Option<String>,
    /// `classic` or `consumer` (KIP-848); `None` from brokers older than ListGroups v5.
    pub group_type: Option<String>,
}

/// Which rebalance protocol a group runs.
///
/// ```no_run
/// # async fn example(admin: runnel_client::Admin) -> runnel_client::Result<()> {
/// use runnel_client::GroupType;
///
/// let group = admin.describe_group("billing").await?;
/// match group.group_type {
///     GroupType::Classic => println!("classic group, assignor {:?}", group.protocol),
///     GroupType::Consumer => println!("KIP-848 group, server assignor {:?}", group.protocol),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupType {
    /// JoinGroup/SyncGroup, assignment computed by the group's leader (and simple groups).
    Classic,
    /// KIP-848: ConsumerGroupHeartbeat, assignment computed by the coordinator.
    Consumer,
}

/// A group's state and members.
///
/// ```no_run
/// # async fn example(admin: runnel_client::Admin) -> runnel_client::Result<()> {
/// let group = admin.describe_group("billing").await?;
/// println!("{} is {} on broker {}", group.group_id, group.state, group.coordinator_id);
/// for member in &group.members {
///     println!("  {} on {}: {:?}", member.client_id, member.host, member.assignment);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// The rebalance protocol the group runs.
    pub group_type: GroupType,
    /// `Stable`, `Empty`, `PreparingRebalance`, `Reconciling`...
    pub state: String,
    /// `consumer` for consumer groups, empty for simple groups.
    pub protocol_type: String,
    /// The classic group's chosen protocol (its assignor, e.g. `range`), or the KIP-848
    /// group's server-side assignor.
    pub protocol: Option<String>,
    /// The coordinator's node id.
    pub coordinator_id: i32,
    /// The current members; empty for an `Empty` group.
    pub members: Vec<MemberDescription>,
}

/// One member of a group.
///
/// ```no_run
/// # async fn example(admin: runnel_client::Admin) -> runnel_client::Result<()> {
/// let group = admin.describe_group("billing").await?;
/// for member in group.members {
///     let owned: usize = member.assignment.iter().map(|(_, partitions)| partitions.len()).sum();
///     let id = member.instance_id.unwrap_or(member.member_id);
///     println!("{id} owns {owned} partitions");
///     if let Some(why) = member.assignment_error {
///         println!("  (assignment unreadable: {why})");
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// The member id the coordinator gave it.
    pub member_id: String,
    /// The static member id (KIP-345).
    pub instance_id: Option<String>,
    /// The member's `client.id`.
    pub client_id: String,
    /// The host the member connected from, as the coordinator saw it.
    pub host: String,
    /// By topic, the partitions the member owns.
    pub assignment: Vec<(String, Vec<i32>)>,
    /// Why the assignment could not be read: a classic member's assignment is bytes in its
    /// client's encoding, decoded only for the `consumer` protocol.
    pub assignment_error: Option<String>,
}

/// The cluster's id, controller and brokers.
///
/// ```no_run
/// # async fn example(admin: runnel_client::Admin) -> runnel_client::Result<()> {
/// let cluster = admin.describe_cluster().await?;
/// println!("cluster {:?}, controller {:?}", cluster.cluster_id, cluster.controller_id);
/// for broker in &cluster.brokers {
///     println!("  {} at {}", broker.node_id, broker.address());
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The cluster id; `None` from brokers too old to report one.
    pub cluster_id: Option<String>,
    /// The active controller's node id, when the cluster names one.
    pub controller_id: Option<i32>,
    /// Every live broker.
    pub brokers: Vec<BrokerInfo>,
}

/// What a retried operation is about, so its stale routing can be dropped between tries.
#[derive(Clone, Copy)]
enum Scope<'a> {
    Cluster,
    Topic(&'a str),
    Group(&'a str),
}

/// The admin client.
///
/// ```no_run
/// # async fn example() -> runnel_client::Result<()> {
/// use runnel_client::{Admin, ClientConfig, NewTopic, OffsetSpec};
///
/// let admin = Admin::connect(ClientConfig::new("localhost:9092")).await?;
/// admin.create_topic(NewTopic::new("orders", 3)).await?;
/// let ends = admin.list_offsets("orders", &[0, 1, 2], OffsetSpec::Latest).await?;
/// for (partition, end) in ends {
///     println!("orders/{partition}: high watermark {}", end.offset);
/// }
/// for group in admin.list_groups().await? {
///     println!("{} {:?}", group.group_id, group.state);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Admin {
    cluster: Cluster,
}

impl Admin {
    /// Bootstraps a [`Cluster`] for this client alone.
    pub async fn connect(config: ClientConfig) -> Result<Admin> {
        Ok(Admin::from_cluster(Cluster::connect(config).await?))
    }

    /// An admin client sharing `cluster`'s metadata and connections.
    pub fn from_cluster(cluster: Cluster) -> Admin {
        Admin { cluster }
    }

    /// The cluster this client talks to.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    // ---------------------------------------------------------------------------------
    // Topics

    /// Creates one topic. An existing topic is a [`ClientError::Broker`] with
    /// TOPIC_ALREADY_EXISTS.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<()> {
        let name = topic.name.clone();
        let results = self.create_topics(vec![topic], false).await?;
        single_result(results, &name)
    }

    /// Creates topics; per topic, whether it was created (or, with `validate_only`, could be).
    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Result<Vec<(String, Result<()>)>> {
        let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
        let by_name: HashMap<&str, &NewTopic> =
            topics.iter().map(|t| (t.name.as_str(), t)).collect();
        let results = self
            .per_name_retrying(names, |pending| {
                let pending: Vec<&NewTopic> = pending
                    .iter()
                    .filter_map(|name| by_name.get(name.as_str()).copied())
                    .collect();
                self.create_topics_once(pending, validate_only)
            })
            .await?;
        for (name, result) in &results {
            if result.is_ok() {
                self.cluster.invalidate(name);
            }
        }
        Ok(results)
    }

    async fn create_topics_once(
        &self,
        topics: Vec<&NewTopic>,
        validate_only: bool,
    ) -> Result<Vec<(String, Result<()>)>> {
        let connection = self.controller_connection().await?;
        let version = connection.version_at_least::<CreateTopicsRequest>(0)?;
        let mut creatable = Vec::with_capacity(topics.len());
        for topic in &topics {
            if version < 4 && (topic.partitions < 0 || topic.replication_factor < 0) {
                return Err(ClientError::InvalidArgument(format!(
                    "{} speaks CreateTopics v{version}, which needs explicit partitions and replication factor for {:?}",
                    connection.address(),
                    topic.name
                )));
            }
            creatable.push(
                create_topics_request::CreatableTopic::default()
                    .with_name(topic_name(&topic.name))
                    .with_num_partitions(topic.partitions)
                    .with_replication_factor(topic.replication_factor)
                    .with_configs(
                        topic
                            .configs
                            .iter()
                            .map(|(name, value)| {
                                create_topics_request::CreatableTopicConfig::default()
                                    .with_name(StrBytes::from_string(name.clone()))
                                    .with_value(Some(StrBytes::from_string(value.clone())))
                            })
                            .collect(),
                    ),
            );
        }
        let mut request = CreateTopicsRequest::default()
            .with_topics(creatable)
            .with_timeout_ms(self.timeout_ms());
        if version >= 1 {
            request.validate_only = validate_only;
        }
        let response = connection.send(request, version).await?;
        Ok(response
            .topics
            .into_iter()
            .map(|result| {
                let name = result.name.0.to_string();
                let outcome =
                    ClientError::check(result.error_code, result.error_message.as_ref(), || {
                        format!("topic {name:?}")
                    });
                (name, outcome)
            })
            .collect())
    }

    /// Deletes topics; per topic, whether it was deleted.
    pub async fn delete_topics(&self, names: &[String]) -> Result<Vec<(String, Result<()>)>> {
        let results = self
            .per_name_retrying(names.to_vec(), |pending| self.delete_topics_once(pending))
            .await?;
        for name in names {
            self.cluster.invalidate(name);
        }
        Ok(results)
    }

    async fn delete_topics_once(&self, names: Vec<String>) -> Result<Vec<(String, Result<()>)>> {
        let connection = self.controller_connection().await?;
        let version = connection.version_at_least::<DeleteTopicsRequest>(0)?;
        let mut request = DeleteTopicsRequest::default().with_timeout_ms(self.timeout_ms());
        if version >= 6 {
            request.topics = names
                .iter()
                .map(|name| {
                    delete_topics_request::DeleteTopicState::default()
                        .with_name(Some(topic_name(name)))
                })
                .collect();
        } else {
            request.topic_names = names.iter().map(|name| topic_name(name)).collect();
        }
        let response = connection.send(request, version).await?;
        Ok(response
            .responses
            .into_iter()
            .filter_map(|result| {
                let name = result.name?.0.to_string();
                let outcome =
                    ClientError::check(result.error_code, result.error_message.as_ref(), || {
                        format!("topic {name:?}")
                    });
                Some((name, outcome))
            })
            .collect())
    }

    /// Every topic, by name; internal ones (`__consumer_offsets`) only with `include_internal`.
    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<TopicMetadata>> {
        let mut topics = self
            .retrying(Scope::Cluster, || self.cluster.metadata(None, false))
            .await?;
        topics.retain(|topic| topic.error.is_none() && (include_internal || !topic.is_internal));
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// The topic's partitions, leaders and replicas, fresh from a broker. A missing topic is a
    /// [`ClientError::Broker`] with UNKNOWN_TOPIC_OR_PARTITION.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicMetadata> {
        // A fresh Metadata answer that does not know the topic is final, as in Kafka's admin
        // client: only other retriable errors (a leader election, say) are tried again.
        let found = self
            .retrying(Scope::Topic(name), || async move {
                let topics = self
                    .cluster
                    .metadata(Some(&[name.to_owned()]), false)
                    .await?;
                match topics.into_iter().find(|topic| topic.name == name) {
                    None
                    | Some(TopicMetadata {
                        error: Some(ResponseError::UnknownTopicOrPartition),
                        ..
                    }) => Ok(None),
                    Some(TopicMetadata {
                        error: Some(code), ..
                    }) => Err(ClientError::broker(code, None, format!("topic {name:?}"))),
                    Some(topic) => Ok(Some(topic)),
                }
            })
            .await?;
        found.ok_or_else(|| {
            ClientError::broker(
                ResponseError::UnknownTopicOrPartition,
                None,
                format!("topic {name:?}"),
            )
        })
    }

    /// Grows the topic to `total` partitions. Fewer than it has is a [`ClientError::Broker`]
    /// with INVALID_PARTITIONS.
    pub async fn create_partitions(&self, topic: &str, total: i32) -> Result<()> {
        self.retrying(Scope::Topic(topic), || async move {
            let connection = self.controller_connection().await?;
            let version = connection.version_at_least::<CreatePartitionsRequest>(0)?;
            let request = CreatePartitionsRequest::default()
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(topic_name(topic))
                        .with_count(total)
                        .with_assignments(None),
                ])
                .with_timeout_ms(self.timeout_ms());
            let response = connection.send(request, version).await?;
            let result = response
                .results
                .into_iter()
                .find(|result| result.name.0.as_str() == topic)
                .ok_or_else(|| missing_from_response("CreatePartitions", &connection, topic))?;
            ClientError::check(result.error_code, result.error_message.as_ref(), || {
                format!("topic {topic:?}")
            })
        })
        .await?;
        self.cluster.invalidate(topic);
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // Configs

    /// Every config of the topic, defaults included, with its source and synonyms.
    pub async fn describe_topic_configs(&self, topic: &str) -> Result<Vec<ConfigEntry>> {
        self.describe_configs(&ConfigTarget::Topic(topic.to_owned()))
            .await
    }

    /// Applies `ops` to the topic's configs (IncrementalAlterConfigs): all or none.
    pub async fn alter_topic_configs(&self, topic: &str, ops: Vec<AlterConfigOp>) -> Result<()> {
        self.alter_configs(&ConfigTarget::Topic(topic.to_owned()), ops)
            .await
    }

    /// The configs of `target`: a topic's or a broker's every config with its source and
    /// synonyms (asked of that broker, the only one that knows its own), or the dynamic
    /// configs set for every broker.
    pub async fn describe_configs(&self, target: &ConfigTarget) -> Result<Vec<ConfigEntry>> {
        let (resource_type, name) = target.resource();
        self.retrying(target.scope(), || async {
            let connection = match target {
                ConfigTarget::Broker(id) => self.cluster.connection(*id).await?,
                ConfigTarget::Topic(_) | ConfigTarget::EveryBroker => {
                    self.cluster.any_connection().await?
                }
            };
            let version = connection.version_at_least::<DescribeConfigsRequest>(1)?;
            let request = DescribeConfigsRequest::default()
                .with_resources(vec![
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(resource_type)
                        .with_resource_name(StrBytes::from_string(name.clone()))
                        .with_configuration_keys(None),
                ])
                .with_include_synonyms(true)
                .with_include_documentation(true);
            let response = connection.send(request, version).await?;
            let result = response
                .results
                .into_iter()
                .find(|result| result.resource_name.as_str() == name)
                .ok_or_else(|| missing_from_response("DescribeConfigs", &connection, &name))?;
            ClientError::check(result.error_code, result.error_message.as_ref(), || {
                format!("configs of {target}")
            })?;
            Ok(result
                .configs
                .into_iter()
                .map(|config| {
                    let source = ConfigSource::from_code(config.config_source);
                    ConfigEntry {
                        name: config.name.to_string(),
                        value: config.value.map(|value| value.to_string()),
                        source,
                        read_only: config.read_only,
                        is_default: source == ConfigSource::DefaultConfig,
                        is_sensitive: config.is_sensitive,
                        synonyms: config
                            .synonyms
                            .into_iter()
                            .map(|synonym| ConfigSynonym {
                                name: synonym.name.to_string(),
                                value: synonym.value.map(|value| value.to_string()),
                                source: ConfigSource::from_code(synonym.source),
                            })
                            .collect(),
                        documentation: config.documentation.map(|doc| doc.to_string()),
                    }
                })
                .collect())
        })
        .await
    }

    /// Applies `ops` to the configs of `target` (IncrementalAlterConfigs): all or none. A
    /// broker's (or every broker's) configs that may change at runtime are the dynamic ones.
    pub async fn alter_configs(
        &self,
        target: &ConfigTarget,
        ops: Vec<AlterConfigOp>,
    ) -> Result<()> {
        let (resource_type, name) = target.resource();
        self.retrying(target.scope(), || async {
            let connection = self.cluster.any_connection().await?;
            let version = connection.version_at_least::<IncrementalAlterConfigsRequest>(0)?;
            let configs = ops
                .iter()
                .map(|op| {
                    let (code, value) = op.code_and_value();
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_string(op.name.clone()))
                        .with_config_operation(code)
                        .with_value(value.map(|v| StrBytes::from_string(v.to_owned())))
                })
                .collect();
            let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(StrBytes::from_string(name.clone()))
                    .with_configs(configs),
            ]);
            let response = connection.send(request, version).await?;
            let result = response
                .responses
                .into_iter()
                .find(|result| result.resource_name.as_str() == name)
                .ok_or_else(|| {
                    missing_from_response("IncrementalAlterConfigs", &connection, &name)
                })?;
            ClientError::check(result.error_code, result.error_message.as_ref(), || {
                format!("configs of {target}")
            })
        })
        .await
    }

    // ---------------------------------------------------------------------------------
    // Offsets

    /// For each of `partitions`, in that order, the offset `spec` names, from its leader.
    pub async fn list_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<Vec<(i32, ListedOffset)>> {
        self.list_offsets_isolated(topic, partitions, spec, IsolationLevel::ReadUncommitted)
            .await
    }

    /// [`Self::list_offsets`] as a consumer at `isolation` sees the partitions: under
    /// `ReadCommitted`, `OffsetSpec::Latest` is the last stable offset (below the oldest open
    /// transaction).
    pub async fn list_offsets_isolated(
        &self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
        isolation: IsolationLevel,
    ) -> Result<Vec<(i32, ListedOffset)>> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let found = self
            .retrying(Scope::Topic(topic), || async {
                let by_leader = self.by_leader(topic, partitions.iter().copied()).await?;
                let answers = try_join_all(by_leader.into_iter().map(|(leader, partitions)| {
                    self.list_offsets_on(leader, topic, partitions, spec, isolation)
                }))
                .await?;
                Ok(answers.into_iter().flatten().collect::<HashMap<_, _>>())
            })
            .await?;
        partitions
            .iter()
            .map(|&partition| {
                found
                    .get(&partition)
                    .map(|offset| (partition, *offset))
                    .ok_or_else(|| {
                        ClientError::Protocol(format!(
                            "ListOffsets did not answer for topic {topic:?} partition {partition}"
                        ))
                    })
            })
            .collect()
    }

    async fn list_offsets_on(
        &self,
        leader: i32,
        topic: &str,
        partitions: Vec<i32>,
        spec: OffsetSpec,
        isolation: IsolationLevel,
    ) -> Result<Vec<(i32, ListedOffset)>> {
        let connection = self.cluster.connection(leader).await?;
        let floor = if spec == OffsetSpec::MaxTimestamp {
            7
        } else {
            1
        };
        let version = connection.version_at_least::<ListOffsetsRequest>(floor)?;
        let mut request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(CONSUMER_REPLICA_ID))
            .with_isolation_level(isolation.as_i8())
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|&partition| {
                            list_offsets_request::ListOffsetsPartition::default()
                                .with_partition_index(partition)
                                .with_timestamp(spec.timestamp())
                        })
                        .collect(),
                )]);
        if version >= 10 {
            request.timeout_ms = self.timeout_ms();
        }
        let response = connection.send(request, version).await?;
        let mut answers = Vec::with_capacity(partitions.len());
        for answered in response.topics {
            if answered.name.0.as_str() != topic {
                continue;
            }
            for partition in answered.partitions {
                let index = partition.partition_index;
                ClientError::check(partition.error_code, None, || {
                    format!("topic {topic:?} partition {index}")
                })?;
                let leader_epoch =
                    (version >= 4 && partition.leader_epoch >= 0).then_some(partition.leader_epoch);
                answers.push((
                    index,
                    ListedOffset {
                        offset: partition.offset,
                        timestamp: partition.timestamp,
                        leader_epoch,
                    },
                ));
            }
        }
        Ok(answers)
    }

    /// Deletes the records of each partition below the given offset (-1: the high
    /// watermark); per partition, in the order given, its new log start offset.
    pub async fn delete_records(
        &self,
        topic: &str,
        before: &[(i32, i64)],
    ) -> Result<Vec<(i32, i64)>> {
        if before.is_empty() {
            return Ok(Vec::new());
        }
        let offsets: HashMap<i32, i64> = before.iter().copied().collect();
        let found = self
            .retrying(Scope::Topic(topic), || async {
                let by_leader = self.by_leader(topic, offsets.keys().copied()).await?;
                let answers = try_join_all(by_leader.into_iter().map(|(leader, partitions)| {
                    let targets = partitions
                        .into_iter()
                        .map(|partition| (partition, offsets[&partition]))
                        .collect();
                    self.delete_records_on(leader, topic, targets)
                }))
                .await?;
                Ok(answers.into_iter().flatten().collect::<HashMap<_, _>>())
            })
            .await?;
        before
            .iter()
            .map(|&(partition, _)| {
                found
                    .get(&partition)
                    .map(|&low_watermark| (partition, low_watermark))
                    .ok_or_else(|| {
                        ClientError::Protocol(format!(
                            "DeleteRecords did not answer for topic {topic:?} partition {partition}"
                        ))
                    })
            })
            .collect()
    }

    async fn delete_records_on(
        &self,
        leader: i32,
        topic: &str,
        targets: Vec<(i32, i64)>,
    ) -> Result<Vec<(i32, i64)>> {
        let connection = self.cluster.connection(leader).await?;
        let version = connection.version_at_least::<DeleteRecordsRequest>(0)?;
        let request = DeleteRecordsRequest::default()
            .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    targets
                        .iter()
                        .map(|&(partition, offset)| {
                            delete_records_request::DeleteRecordsPartition::default()
                                .with_partition_index(partition)
                                .with_offset(offset)
                        })
                        .collect(),
                )])
            .with_timeout_ms(self.timeout_ms());
        let response = connection.send(request, version).await?;
        let mut answers = Vec::with_capacity(targets.len());
        for answered in response.topics {
            if answered.name.0.as_str() != topic {
                continue;
            }
            for partition in answered.partitions {
                let index = partition.partition_index;
                ClientError::check(partition.error_code, None, || {
                    format!("topic {topic:?} partition {index}")
                })?;
                answers.push((index, partition.low_watermark));
            }
        }
        Ok(answers)
    }

    /// `partitions` of `topic` grouped by their leader's node id.
    async fn by_leader(
        &self,
        topic: &str,
        partitions: impl Iterator<Item = i32>,
    ) -> Result<BTreeMap<i32, Vec<i32>>> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for partition in partitions {
            let leader = self.cluster.leader(topic, partition).await?;
            let owned = by_leader.entry(leader).or_default();
            if !owned.contains(&partition) {
                owned.push(partition);
            }
        }
        Ok(by_leader)
    }

    // ---------------------------------------------------------------------------------
    // Groups

    /// Every group of every broker, by group id.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let brokers = self.cluster.brokers().await;
        if brokers.is_empty() {
            return Err(ClientError::NoBrokers(
                "the cluster metadata names no broker".to_owned(),
            ));
        }
        let lists = try_join_all(brokers.iter().map(|broker| {
            self.retrying(Scope::Cluster, move || self.list_groups_on(broker.node_id))
        }))
        .await?;
        let groups: BTreeMap<String, GroupListing> = lists
            .into_iter()
            .flatten()
            .map(|group| (group.group_id.clone(), group))
            .collect();
        Ok(groups.into_values().collect())
    }

    async fn list_groups_on(&self, node_id: i32) -> Result<Vec<GroupListing>> {
        let connection = self.cluster.connection(node_id).await?;
        list_groups_with(&connection).await
    }

    /// The group's state and members. A KIP-848 group is described with
    /// ConsumerGroupDescribe, any other with DescribeGroups (a classic consumer's assignment is
    /// decoded from its `ConsumerProtocolAssignment` bytes). A group the coordinator does not
    /// know is a [`ClientError::Broker`] with GROUP_ID_NOT_FOUND.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        self.retrying(Scope::Group(group), || self.describe_group_once(group))
            .await
    }

    async fn describe_group_once(&self, group: &str) -> Result<GroupDescription> {
        let (coordinator_id, connection) = self.cluster.coordinator_node(group).await?;
        let listed_type = list_groups_with(&connection)
            .await?
            .into_iter()
            .find(|listed| listed.group_id == group)
            .and_then(|listed| listed.group_type);
        if listed_type.as_deref() == Some("consumer") {
            if let Some(description) = self
                .describe_consumer_group(&connection, group, coordinator_id)
                .await?
            {
                return Ok(description);
            }
        }
        let classic = describe_classic_group(&connection, group).await?;
        if let Some(described) = &classic {
            if !looks_like_consumer_protocol(described) {
                return Ok(classic_description(group, described, coordinator_id));
            }
        }
        if let Some(description) = self
            .describe_consumer_group(&connection, group, coordinator_id)
            .await?
        {
            return Ok(description);
        }
        match classic {
            Some(described) => Ok(classic_description(group, &described, coordinator_id)),
            None => Err(ClientError::broker(
                ResponseError::GroupIdNotFound,
                None,
                format!("group {group:?}"),
            )),
        }
    }

    /// `None` when the coordinator does not serve ConsumerGroupDescribe or knows no KIP-848
    /// group of that id.
    async fn describe_consumer_group(
        &self,
        connection: &Connection,
        group: &str,
        coordinator_id: i32,
    ) -> Result<Option<GroupDescription>> {
        let Ok(version) = connection.version_at_least::<ConsumerGroupDescribeRequest>(0) else {
            return Ok(None);
        };
        let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![group_id(group)]);
        let response = connection.send(request, version).await?;
        let described = response
            .groups
            .into_iter()
            .find(|g| g.group_id.0.as_str() == group)
            .ok_or_else(|| missing_from_response("ConsumerGroupDescribe", connection, group))?;
        if described.error_code == ResponseError::GroupIdNotFound.code() {
            return Ok(None);
        }
        ClientError::check(
            described.error_code,
            described.error_message.as_ref(),
            || format!("group {group:?}"),
        )?;
        let topic_names = self.names_of_unnamed_topics(&described.members).await?;
        let members = described
            .members
            .into_iter()
            .map(|member| MemberDescription {
                member_id: member.member_id.to_string(),
                instance_id: member.instance_id.map(|id| id.to_string()),
                client_id: member.client_id.to_string(),
                host: member.client_host.to_string(),
                assignment: member
                    .assignment
                    .topic_partitions
                    .into_iter()
                    .map(|assigned| {
                        let topic = if assigned.topic_name.0.is_empty() {
                            topic_names
                                .get(&assigned.topic_id)
                                .cloned()
                                .unwrap_or_else(|| assigned.topic_id.to_string())
                        } else {
                            assigned.topic_name.0.to_string()
                        };
                        (topic, assigned.partitions)
                    })
                    .collect(),
                assignment_error: None,
            })
            .collect();
        Ok(Some(GroupDescription {
            group_id: group.to_owned(),
            group_type: GroupType::Consumer,
            state: described.group_state.to_string(),
            protocol_type: "consumer".to_owned(),
            protocol: non_empty(described.assignor_name.as_str()),
            coordinator_id,
            members,
        }))
    }

    /// Topic id → name, for the assigned topics ConsumerGroupDescribe named only by id.
    async fn names_of_unnamed_topics(
        &self,
        members: &[consumer_group_describe_response::Member],
    ) -> Result<HashMap<uuid::Uuid, String>> {
        let unnamed = members
            .iter()
            .flat_map(|member| &member.assignment.topic_partitions)
            .any(|assigned| assigned.topic_name.0.is_empty());
        if !unnamed {
            return Ok(HashMap::new());
        }
        Ok(self
            .cluster
            .metadata(None, false)
            .await?
            .into_iter()
            .filter(|topic| !topic.id.is_nil())
            .map(|topic| (topic.id, topic.name))
            .collect())
    }

    /// Deletes groups (they must be empty); per group, whether it was deleted.
    pub async fn delete_groups(&self, groups: &[String]) -> Result<Vec<(String, Result<()>)>> {
        self.per_name_retrying(groups.to_vec(), |pending| self.delete_groups_once(pending))
            .await
    }

    async fn delete_groups_once(&self, groups: Vec<String>) -> Result<Vec<(String, Result<()>)>> {
        let mut results = Vec::new();
        let mut by_coordinator: BTreeMap<i32, (Arc<Connection>, Vec<String>)> = BTreeMap::new();
        for group in groups {
            match self.cluster.coordinator_node(&group).await {
                Ok((node_id, connection)) => {
                    by_coordinator
                        .entry(node_id)
                        .or_insert_with(|| (connection, Vec::new()))
                        .1
                        .push(group);
                }
                Err(error) => {
                    self.cluster.invalidate_coordinator(&group);
                    results.push((group, Err(error)));
                }
            }
        }
        for (connection, groups) in by_coordinator.into_values() {
            let version = connection.version_at_least::<DeleteGroupsRequest>(0)?;
            let request = DeleteGroupsRequest::default()
                .with_groups_names(groups.iter().map(|group| group_id(group)).collect());
            let response = connection.send(request, version).await?;
            for result in response.results {
                let group = result.group_id.0.to_string();
                let outcome =
                    ClientError::check(result.error_code, None, || format!("group {group:?}"));
                if let Err(error) = &outcome {
                    if is_coordinator_error(error) {
                        self.cluster.invalidate_coordinator(&group);
                    }
                }
                results.push((group, outcome));
            }
        }
        Ok(results)
    }

    /// Every offset the group committed: by topic and partition, the offset and its metadata.
    pub async fn list_group_offsets(
        &self,
        group: &str,
    ) -> Result<Vec<((String, i32), i64, Option<String>)>> {
        self.retrying(Scope::Group(group), || async move {
            let connection = self.cluster.coordinator(group).await?;
            // v2+: null topics means every partition the group committed.
            let version = connection.version_at_least::<OffsetFetchRequest>(2)?;
            let mut request = OffsetFetchRequest::default();
            if version >= 8 {
                request.groups = vec![offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(group_id(group))
                    .with_topics(None)];
            } else {
                request.group_id = group_id(group);
                request.topics = None;
            }
            let response = connection.send(request, version).await?;
            let context = || format!("committed offsets of group {group:?}");
            let mut committed = Vec::new();
            let mut take = |topic: &str, partition: i32, offset: i64, metadata, error_code| {
                ClientError::check(error_code, None, || {
                    format!("group {group:?} topic {topic:?} partition {partition}")
                })?;
                // -1: nothing committed.
                if offset >= 0 {
                    committed.push(((topic.to_owned(), partition), offset, metadata));
                }
                Ok::<_, ClientError>(())
            };
            if version >= 8 {
                let answered = response
                    .groups
                    .into_iter()
                    .find(|g| g.group_id.0.as_str() == group)
                    .ok_or_else(|| missing_from_response("OffsetFetch", &connection, group))?;
                ClientError::check(answered.error_code, None, context)?;
                for topic in answered.topics {
                    for p in topic.partitions {
                        let metadata = p.metadata.map(|m| m.to_string());
                        take(
                            topic.name.0.as_str(),
                            p.partition_index,
                            p.committed_offset,
                            metadata,
                            p.error_code,
                        )?;
                    }
                }
            } else {
                ClientError::check(response.error_code, None, context)?;
                for topic in response.topics {
                    for p in topic.partitions {
                        let metadata = p.metadata.map(|m| m.to_string());
                        take(
                            topic.name.0.as_str(),
                            p.partition_index,
                            p.committed_offset,
                            metadata,
                            p.error_code,
                        )?;
                    }
                }
            }
            committed.sort();
            Ok(committed)
        })
        .await
    }

    /// Sets the group's committed offsets, as a commit from outside the group (generation -1,
    /// no member id): the group must have no active members.
    pub async fn alter_group_offsets(
        &self,
        group: &str,
        offsets: &[((String, i32), i64)],
    ) -> Result<()> {
        let mut by_topic = OffsetsByTopic::new();
        for ((topic, partition), offset) in offsets {
            by_topic
                .entry(topic.as_str())
                .or_default()
                .push((*partition, *offset, None));
        }
        self.retrying(Scope::Group(group), || async {
            let connection = self.cluster.coordinator(group).await?;
            let version = connection.version_at_least::<OffsetCommitRequest>(2)?;
            let request = offset_commit_request(group, GENERATION_NONE, "", &by_topic, version);
            let response = connection.send(request, version).await?;
            for topic in response.topics {
                for partition in topic.partitions {
                    ClientError::check(partition.error_code, None, || {
                        format!(
                            "group {group:?} topic {:?} partition {}",
                            topic.name.0.as_str(),
                            partition.partition_index
                        )
                    })?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Deletes the group's committed offsets for `partitions`. A group still consuming a topic
    /// refuses with GROUP_SUBSCRIBED_TO_TOPIC.
    pub async fn delete_group_offsets(
        &self,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<()> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in partitions {
            by_topic.entry(topic.as_str()).or_default().push(*partition);
        }
        self.retrying(Scope::Group(group), || async {
            let connection = self.cluster.coordinator(group).await?;
            let version = connection.version_at_least::<OffsetDeleteRequest>(0)?;
            let request = OffsetDeleteRequest::default()
                .with_group_id(group_id(group))
                .with_topics(
                    by_topic
                        .iter()
                        .map(|(topic, partitions)| {
                            offset_delete_request::OffsetDeleteRequestTopic::default()
                                .with_name(topic_name(topic))
                                .with_partitions(
                                    partitions
                                        .iter()
                                        .map(|&partition| {
                                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                                .with_partition_index(partition)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
            let response = connection.send(request, version).await?;
            ClientError::check(response.error_code, None, || format!("group {group:?}"))?;
            for topic in response.topics {
                for partition in topic.partitions {
                    ClientError::check(partition.error_code, None, || {
                        format!(
                            "group {group:?} topic {:?} partition {}",
                            topic.name.0.as_str(),
                            partition.partition_index
                        )
                    })?;
                }
            }
            Ok(())
        })
        .await
    }

    // ---------------------------------------------------------------------------------
    // Cluster

    /// The cluster's id, controller and brokers (DescribeCluster, or Metadata from brokers
    /// that do not serve it).
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        self.retrying(Scope::Cluster, || async {
            let connection = self.cluster.any_connection().await?;
            let Ok(version) = connection.version_at_least::<DescribeClusterRequest>(0) else {
                self.cluster.metadata(Some(&[]), false).await?;
                return Ok(ClusterDescription {
                    cluster_id: self.cluster.cluster_id(),
                    controller_id: self.cluster.controller_id(),
                    brokers: self.cluster.brokers().await,
                });
            };
            let response = connection
                .send(DescribeClusterRequest::default(), version)
                .await?;
            ClientError::check(response.error_code, response.error_message.as_ref(), || {
                "the cluster".to_owned()
            })?;
            let mut brokers: Vec<BrokerInfo> = response
                .brokers
                .into_iter()
                .map(|broker| BrokerInfo {
                    node_id: broker.broker_id.0,
                    host: broker.host.to_string(),
                    port: broker.port,
                    rack: broker.rack.map(|rack| rack.to_string()),
                })
                .collect();
            brokers.sort_by_key(|broker| broker.node_id);
            Ok(ClusterDescription {
                cluster_id: non_empty(response.cluster_id.as_str()),
                controller_id: (response.controller_id.0 >= 0).then_some(response.controller_id.0),
                brokers,
            })
        })
        .await
    }

    // ---------------------------------------------------------------------------------
    // Plumbing

    /// Where topic changes go: the controller, as Metadata last named it, else any broker.
    async fn controller_connection(&self) -> Result<Arc<Connection>> {
        match self.cluster.controller_id() {
            Some(controller) => self.cluster.connection(controller).await,
            None => self.cluster.any_connection().await,
        }
    }

    fn timeout_ms(&self) -> i32 {
        i32::try_from(self.cluster.config().request_timeout.as_millis()).unwrap_or(i32::MAX)
    }

    /// Runs `operation` until it succeeds, fails with an error that is not retriable, or has
    /// been tried [`RETRY_ATTEMPTS_MAX`] times or for longer than the request timeout;
    /// between tries, drops the routing `scope` names and waits `retry_backoff`, doubling.
    async fn retrying<T, F, Fut>(&self, scope: Scope<'_>, mut operation: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let config = self.cluster.config();
        let started = Instant::now();
        let mut backoff = config.retry_backoff;
        let mut attempt = 1;
        loop {
            match operation().await {
                Err(error)
                    if error.is_retriable()
                        && attempt < RETRY_ATTEMPTS_MAX
                        && started.elapsed() + backoff < config.request_timeout =>
                {
                    tracing::debug!(%error, attempt, ?backoff, "retrying");
                    self.forget(scope, &error);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn forget(&self, scope: Scope<'_>, error: &ClientError) {
        match scope {
            Scope::Cluster => {}
            Scope::Topic(topic) => self.cluster.invalidate(topic),
            Scope::Group(group) => {
                if is_coordinator_error(error)
                    || matches!(error, ClientError::Io { .. } | ClientError::Timeout { .. })
                {
                    self.cluster.invalidate_coordinator(group);
                }
            }
        }
    }

    /// For batch operations with a result per name: sends the names still pending, keeps the
    /// final results, and tries again (with backoff) for those that failed retriably. Results
    /// come back in the order of `names`.
    async fn per_name_retrying<F, Fut>(
        &self,
        names: Vec<String>,
        mut send: F,
    ) -> Result<Vec<(String, Result<()>)>>
    where
        F: FnMut(Vec<String>) -> Fut,
        Fut: Future<Output = Result<Vec<(String, Result<()>)>>>,
    {
        let mut results: Vec<Option<Result<()>>> = names.iter().map(|_| None).collect();
        let config = self.cluster.config();
        let started = Instant::now();
        let mut backoff = config.retry_backoff;
        let mut attempt = 1;
        loop {
            let pending: Vec<String> = names
                .iter()
                .zip(&results)
                .filter(|(_, result)| result.is_none())
                .map(|(name, _)| name.clone())
                .collect();
            if pending.is_empty() {
                break;
            }
            let may_retry = attempt < RETRY_ATTEMPTS_MAX
                && started.elapsed() + backoff < config.request_timeout;
            let answers = match send(pending).await {
                Ok(answers) => answers,
                Err(error) if error.is_retriable() && may_retry => {
                    tracing::debug!(%error, attempt, "retrying");
                    Vec::new()
                }
                Err(error) => return Err(error),
            };
            for (name, outcome) in answers {
                if matches!(&outcome, Err(error) if error.is_retriable() && may_retry) {
                    continue;
                }
                let slot = names
                    .iter()
                    .zip(results.iter_mut())
                    .find(|(wanted, result)| **wanted == name && result.is_none())
                    .map(|(_, result)| result);
                if let Some(slot) = slot {
                    *slot = Some(outcome);
                }
            }
            if !may_retry {
                break;
            }
            if results.iter().any(Option::is_none) {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
                attempt += 1;
            }
        }
        Ok(names
            .into_iter()
            .zip(results)
            .map(|(name, result)| {
                let result = result.unwrap_or_else(|| {
                    Err(ClientError::Protocol(format!(
                        "the broker's answer did not mention {name:?}"
                    )))
                });
                (name, result)
            })
            .collect())
    }
}

async fn list_groups_with(connection: &Connection) -> Result<Vec<GroupListing>> {
    let version = connection.version_at_least::<ListGroupsRequest>(0)?;
    let response = connection
        .send(ListGroupsRequest::default(), version)
        .await?;
    ClientError::check(response.error_code, None, || {
        format!("groups of broker {}", connection.address())
    })?;
    Ok(response
        .groups
        .into_iter()
        .map(|group| GroupListing {
            group_id: group.group_id.0.to_string(),
            protocol_type: group.protocol_type.to_string(),
            state: (version >= 4).then(|| group.group_state.to_string()),
            group_type: (version >= 5).then(|| group.group_type.to_string()),
        })
        .collect())
}

/// `None` when the coordinator knows no classic group of that id.
async fn describe_classic_group(
    connection: &Connection,
    group: &str,
) -> Result<Option<describe_groups_response::DescribedGroup>> {
    let version = connection.version_at_least::<DescribeGroupsRequest>(0)?;
    let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
    let response = connection.send(request, version).await?;
    let described = response
        .groups
        .into_iter()
        .find(|g| g.group_id.0.as_str() == group)
        .ok_or_else(|| missing_from_response("DescribeGroups", connection, group))?;
    if described.error_code == ResponseError::GroupIdNotFound.code() {
        return Ok(None);
    }
    ClientError::check(
        described.error_code,
        described.error_message.as_ref(),
        || format!("group {group:?}"),
    )?;
    // Before v6 an unknown group is described as Dead with no error.
    Ok((described.group_state.as_str() != "Dead").then_some(described))
}

/// Whether DescribeGroups' answer is the classic view of a KIP-848 group: protocol type
/// `consumer` but no classic members although the group is not empty, or a state only KIP-848
/// groups have.
fn looks_like_consumer_protocol(group: &describe_groups_response::DescribedGroup) -> bool {
    let state = group.group_state.as_str();
    matches!(state, "Assigning" | "Reconciling" | "Unknown")
        || (group.protocol_type.as_str() == "consumer"
            && group.members.is_empty()
            && state != "Empty")
}

fn classic_description(
    group: &str,
    described: &describe_groups_response::DescribedGroup,
    coordinator_id: i32,
) -> GroupDescription {
    let is_consumer = described.protocol_type.as_str() == "consumer";
    let members = described
        .members
        .iter()
        .map(|member| {
            let (assignment, assignment_error) = if is_consumer {
                match decode_consumer_assignment(&member.member_assignment) {
                    Ok(assignment) => (assignment, None),
                    Err(error) => (Vec::new(), Some(error)),
                }
            } else if member.member_assignment.is_empty() {
                (Vec::new(), None)
            } else {
                let error = format!(
                    "protocol type {:?} is not the consumer protocol; its assignment is not decoded",
                    described.protocol_type.as_str()
                );
                (Vec::new(), Some(error))
            };
            MemberDescription {
                member_id: member.member_id.to_string(),
                instance_id: member.group_instance_id.as_ref().map(|id| id.to_string()),
                client_id: member.client_id.to_string(),
                host: member.client_host.to_string(),
                assignment,
                assignment_error,
            }
        })
        .collect();
    GroupDescription {
        group_id: group.to_owned(),
        group_type: GroupType::Classic,
        state: described.group_state.to_string(),
        protocol_type: described.protocol_type.to_string(),
        protocol: non_empty(described.protocol_data.as_str()),
        coordinator_id,
        members,
    }
}

/// Reads a classic consumer's assignment: an `i16` version, then `ConsumerProtocolAssignment`
/// at that version. Empty bytes are no assignment (a member between join and sync).
pub fn decode_consumer_assignment(bytes: &Bytes) -> Result<Vec<(String, Vec<i32>)>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut buffer = bytes.clone();
    if buffer.remaining() < 2 {
        return Err(format!(
            "the {}-byte assignment is too short to hold a version",
            bytes.len()
        ));
    }
    let version = buffer.get_i16();
    if version < 0 {
        return Err(format!("the assignment has a negative version ({version})"));
    }
    // Newer versions only append fields; read what this client knows, as Kafka's
    // ConsumerProtocol does.
    let known_version = version.min(ConsumerProtocolAssignment::VERSIONS.max);
    let assignment = ConsumerProtocolAssignment::decode(&mut buffer, known_version)
        .map_err(|error| format!("cannot decode the v{version} assignment: {error:#}"))?;
    Ok(assignment
        .assigned_partitions
        .into_iter()
        .map(|assigned| (assigned.topic.0.to_string(), assigned.partitions))
        .collect())
}

fn is_coordinator_error(error: &ClientError) -> bool {
    matches!(
        error.code(),
        Some(
            ResponseError::NotCoordinator
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::CoordinatorLoadInProgress
        )
    )
}

fn single_result(results: Vec<(String, Result<()>)>, name: &str) -> Result<()> {
    results
        .into_iter()
        .find(|(answered, _)| answered == name)
        .map(|(_, result)| result)
        .unwrap_or_else(|| {
            Err(ClientError::Protocol(format!(
                "the broker's answer did not mention {name:?}"
            )))
        })
}

fn missing_from_response(api: &str, connection: &Connection, resource: &str) -> ClientError {
    ClientError::Protocol(format!(
        "the {api} response from {} does not mention {resource:?}",
        connection.address()
    ))
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::protocol::Encodable;

    use super::*;

    fn assignment_bytes(version: i16) -> Bytes {
        let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(topic_name("orders"))
                .with_partitions(vec![0, 2]),
        ]);
        let mut buffer = BytesMut::new();
        buffer.put_i16(version);
        assignment
            .encode(&mut buffer, version.min(3))
            .expect("encode");
        buffer.freeze()
    }

    #[test]
    fn consumer_assignments_decode_at_their_version() {
        let expected = vec![("orders".to_owned(), vec![0, 2])];
        for version in [0, 1, 3, 7] {
            assert_eq!(
                decode_consumer_assignment(&assignment_bytes(version)),
                Ok(expected.clone())
            );
        }
        assert_eq!(decode_consumer_assignment(&Bytes::new()), Ok(Vec::new()));
    }

    #[test]
    fn bad_assignment_bytes_are_errors_not_panics() {
        let bytes = assignment_bytes(1);
        for cut in 1..bytes.len() {
            assert!(decode_consumer_assignment(&bytes.slice(..cut)).is_err());
        }
        assert!(decode_consumer_assignment(&Bytes::from_static(&[0xff, 0xff, 0, 0])).is_err());
    }

    #[test]
    fn offset_specs_map_to_kafka_timestamps() {
        assert_eq!(OffsetSpec::Latest.timestamp(), -1);
        assert_eq!(OffsetSpec::Earliest.timestamp(), -2);
        assert_eq!(OffsetSpec::MaxTimestamp.timestamp(), -3);
        assert_eq!(
            OffsetSpec::Timestamp(1_700_000_000_000).timestamp(),
            1_700_000_000_000
        );
    }

    #[test]
    fn config_ops_map_to_kafka_codes() {
        assert_eq!(
            AlterConfigOp::set("a", "1").code_and_value(),
            (0, Some("1"))
        );
        assert_eq!(AlterConfigOp::delete("a").code_and_value(), (1, None));
        let append = AlterConfigOp {
            name: "a".to_owned(),
            op: ConfigOp::Append("x".to_owned()),
        };
        assert_eq!(append.code_and_value(), (2, Some("x")));
    }
}
