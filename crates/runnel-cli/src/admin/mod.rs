//! A small synchronous admin client: what `runnel group` needs, spoken over the Admin APIs every
//! Kafka-compatible cluster serves, so the same commands work against Kafka itself.
//!
//! One blocking `TcpStream` per broker, opened on first use and kept for the client's life;
//! ApiVersions first on each, then every request at the highest version both sides speak.
//! Group requests go to the group's coordinator (FindCoordinator), ListOffsets to each
//! partition's leader (Metadata), ListGroups to every broker.
//!
//! Deliberately small: no pipelining, no metadata cache, no reconnects. Retriable Kafka errors
//! (a coordinator still loading, a coordinator that moved) are retried a few times with backoff,
//! nothing else. Issue 4's async client crate replaces this module; the types here
//! ([`GroupListing`], [`GroupDescription`]) are what the CLI prints and what it will return.
//!
//! Everything a broker sends is checked before use: error codes become [`AdminError`]s (or, per
//! partition, an `error` string in the result, as Kafka reports them per partition), and a
//! missing or malformed field is an error, never a panic.

mod connection;
mod error;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    consumer_group_describe_response, describe_groups_response, list_offsets_request,
    metadata_request, offset_fetch_request, ApiKey, BrokerId, ConsumerGroupDescribeRequest,
    ConsumerGroupDescribeResponse, ConsumerProtocolAssignment, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    ListGroupsRequest, ListGroupsResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Message, StrBytes};
use serde::Serialize;

use connection::{BrokerConnection, REQUEST_TIMEOUT};
pub(crate) use error::AdminError;

/// FindCoordinator's key type for consumer groups.
const COORDINATOR_KEY_TYPE_GROUP: i8 = 0;
/// ListOffsets' timestamp for "the offset the next record will get".
const LATEST_TIMESTAMP: i64 = -1;
/// `replica_id` of a request from a client rather than a follower.
const CONSUMER_REPLICA_ID: i32 = -1;
const RETRY_ATTEMPTS_MAX: u32 = 8;
const RETRY_BACKOFF_INITIAL: Duration = Duration::from_millis(100);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A broker, as Metadata and FindCoordinator name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Node {
    pub(crate) node_id: i32,
    pub(crate) host: String,
    pub(crate) port: i32,
}

impl Node {
    /// `HOST:PORT`, bracketing IPv6 literals.
    pub(crate) fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct GroupListing {
    pub(crate) group_id: String,
    /// Empty for groups that only commit offsets ("simple" groups).
    pub(crate) protocol_type: String,
    /// `None` from brokers older than ListGroups v4.
    pub(crate) state: Option<String>,
    /// `classic` or `consumer` (KIP-848); `None` from brokers older than ListGroups v5.
    pub(crate) group_type: Option<String>,
}

/// Which rebalance protocol a group runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum GroupType {
    /// JoinGroup/SyncGroup, assignment computed by the group's leader (and simple groups).
    Classic,
    /// KIP-848: ConsumerGroupHeartbeat, assignment computed by the coordinator.
    Consumer,
}

impl GroupType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            GroupType::Classic => "classic",
            GroupType::Consumer => "consumer",
        }
    }
}

/// A group's state, members, and committed offsets with lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct GroupDescription {
    pub(crate) group_id: String,
    pub(crate) group_type: GroupType,
    pub(crate) state: String,
    /// `consumer` for consumer groups, empty for simple groups.
    pub(crate) protocol_type: String,
    /// The classic group's chosen protocol (its assignor, e.g. `range`) or the KIP-848 group's
    /// server-side assignor.
    pub(crate) assignor: Option<String>,
    pub(crate) coordinator: Node,
    pub(crate) members: Vec<Member>,
    /// Every partition that has a committed offset or an owner, by topic and partition.
    pub(crate) partitions: Vec<PartitionLag>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) host: String,
    pub(crate) assignment: Vec<TopicPartitions>,
    /// Why the assignment could not be read (a classic member's bytes are the client's own
    /// encoding; a non-consumer protocol, such as Connect's, is not decoded).
    pub(crate) assignment_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct TopicPartitions {
    pub(crate) topic: String,
    pub(crate) partitions: Vec<i32>,
}

/// One partition's position for the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PartitionLag {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// `None` when the group has committed nothing for this partition.
    pub(crate) committed_offset: Option<i64>,
    /// The high watermark: the offset the next record will get (ListOffsets, latest).
    pub(crate) log_end_offset: Option<i64>,
    /// `log_end_offset - committed_offset`, when both are known.
    pub(crate) lag: Option<i64>,
    /// The member the partition is assigned to.
    pub(crate) member_id: Option<String>,
    /// What the broker said when it could not answer for this partition.
    pub(crate) error: Option<String>,
}

/// Blocking connections to one cluster.
#[derive(Debug)]
pub(crate) struct AdminClient {
    /// The bootstrap broker's address: where Metadata and FindCoordinator go.
    bootstrap: String,
    connections: HashMap<String, BrokerConnection>,
}

impl AdminClient {
    /// Connects to the first reachable of `bootstrap`'s comma-separated `HOST:PORT`s.
    pub(crate) fn connect(bootstrap: &str) -> Result<Self, AdminError> {
        let mut last_error = AdminError::NoBootstrapAddress(bootstrap.to_owned());
        let addresses = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty());
        for address in addresses {
            match BrokerConnection::connect(address) {
                Ok(connection) => {
                    return Ok(AdminClient {
                        bootstrap: address.to_owned(),
                        connections: HashMap::from([(address.to_owned(), connection)]),
                    })
                }
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// Every group of every broker, by group id.
    pub(crate) fn list_groups(&mut self) -> Result<Vec<GroupListing>, AdminError> {
        let brokers = self.metadata(Some(&[]))?.brokers;
        let mut groups = BTreeMap::new();
        for broker in brokers {
            let address = broker.address();
            for group in retrying(|| self.list_groups_on(&address))? {
                groups.insert(group.group_id.clone(), group);
            }
        }
        Ok(groups.into_values().collect())
    }

    /// The group's state and members from its coordinator, and for each partition it has
    /// committed to or owns: the committed offset, the log end offset and the lag.
    pub(crate) fn describe_group(
        &mut self,
        group_id: &str,
    ) -> Result<GroupDescription, AdminError> {
        let mut description = retrying(|| self.describe_group_members(group_id))?;
        let address = description.coordinator.address();
        let committed = retrying(|| self.committed_offsets(&address, group_id))?;
        let mut owners = BTreeMap::new();
        for member in &description.members {
            for assigned in &member.assignment {
                for &partition in &assigned.partitions {
                    owners.insert(
                        (assigned.topic.clone(), partition),
                        member.member_id.clone(),
                    );
                }
            }
        }
        let partitions: BTreeSet<(String, i32)> =
            committed.keys().chain(owners.keys()).cloned().collect();
        let mut end_offsets = self.log_end_offsets(&partitions)?;
        description.partitions = partitions
            .into_iter()
            .map(|key| {
                let committed = committed.get(&key);
                let committed_offset = committed.and_then(|c| c.offset);
                let (log_end_offset, end_error) = match end_offsets.remove(&key) {
                    Some(Ok(offset)) => (Some(offset), None),
                    Some(Err(error)) => (None, Some(error)),
                    None => (None, None),
                };
                let errors: Vec<String> = [
                    committed
                        .and_then(|c| c.error.as_ref())
                        .map(|e| format!("committed offset: {e}")),
                    end_error.map(|e| format!("log end offset: {e}")),
                ]
                .into_iter()
                .flatten()
                .collect();
                PartitionLag {
                    member_id: owners.get(&key).cloned(),
                    topic: key.0,
                    partition: key.1,
                    committed_offset,
                    log_end_offset,
                    lag: committed_offset.zip(log_end_offset).map(|(c, e)| e - c),
                    error: (!errors.is_empty()).then(|| errors.join("; ")),
                }
            })
            .collect();
        Ok(description)
    }

    fn connection(&mut self, address: &str) -> Result<&mut BrokerConnection, AdminError> {
        Ok(match self.connections.entry(address.to_owned()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(BrokerConnection::connect(address)?),
        })
    }

    fn list_groups_on(&mut self, address: &str) -> Result<Vec<GroupListing>, AdminError> {
        let connection = self.connection(address)?;
        let version = connection.version::<ListGroupsRequest>(0)?;
        let response: ListGroupsResponse =
            connection.send(version, &ListGroupsRequest::default())?;
        AdminError::check(
            ApiKey::ListGroups,
            || format!("broker {address}"),
            response.error_code,
            None,
        )?;
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

    /// Brokers, and the named topics (`None`: all topics) with their partitions' leaders.
    fn metadata(&mut self, topics: Option<&[String]>) -> Result<ClusterMetadata, AdminError> {
        let address = self.bootstrap.clone();
        let connection = self.connection(&address)?;
        let version = connection.version::<MetadataRequest>(requests::METADATA_VERSION_MIN)?;
        let response: MetadataResponse =
            connection.send(version, &requests::metadata(version, topics))?;
        AdminError::check(
            ApiKey::Metadata,
            || "the cluster".to_owned(),
            response.error_code,
            None,
        )?;
        let brokers = response
            .brokers
            .into_iter()
            .map(|broker| Node {
                node_id: broker.node_id.0,
                host: broker.host.to_string(),
                port: broker.port,
            })
            .collect();
        let topics = response
            .topics
            .into_iter()
            .filter_map(|topic| {
                Some(TopicMetadata {
                    name: topic.name?.0.to_string(),
                    topic_id: (version >= 10 && !topic.topic_id.is_nil())
                        .then(|| topic.topic_id.to_string()),
                    error: ResponseError::try_from_code(topic.error_code),
                    partitions: topic
                        .partitions
                        .into_iter()
                        .map(|partition| PartitionMetadata {
                            partition: partition.partition_index,
                            leader_id: partition.leader_id.0,
                            error: ResponseError::try_from_code(partition.error_code),
                        })
                        .collect(),
                })
            })
            .collect();
        Ok(ClusterMetadata { brokers, topics })
    }

    fn find_coordinator(&mut self, group_id: &str) -> Result<Node, AdminError> {
        let address = self.bootstrap.clone();
        let connection = self.connection(&address)?;
        let version = connection.version::<FindCoordinatorRequest>(0)?;
        let response: FindCoordinatorResponse =
            connection.send(version, &requests::find_coordinator(version, group_id))?;
        let resource = || format!("group {group_id:?}");
        let (node_id, host, port) = if version >= 4 {
            let coordinator = response
                .coordinators
                .into_iter()
                .find(|c| c.key.as_str() == group_id)
                .ok_or_else(|| AdminError::InvalidResponse {
                    address: address.clone(),
                    api: ApiKey::FindCoordinator,
                    problem: format!("names no coordinator for group {group_id:?}"),
                })?;
            AdminError::check(
                ApiKey::FindCoordinator,
                resource,
                coordinator.error_code,
                coordinator.error_message.as_deref(),
            )?;
            (coordinator.node_id, coordinator.host, coordinator.port)
        } else {
            AdminError::check(
                ApiKey::FindCoordinator,
                resource,
                response.error_code,
                response.error_message.as_deref(),
            )?;
            (response.node_id, response.host, response.port)
        };
        if node_id.0 < 0 || host.is_empty() || !(0..=65535).contains(&port) {
            return Err(AdminError::InvalidResponse {
                address,
                api: ApiKey::FindCoordinator,
                problem: format!(
                    "names an unusable coordinator for group {group_id:?}: node {} at {host}:{port}",
                    node_id.0
                ),
            });
        }
        Ok(Node {
            node_id: node_id.0,
            host: host.to_string(),
            port,
        })
    }

    /// The group's state and members, with no partitions yet. A group the coordinator lists as
    /// a KIP-848 (`consumer`) group is described with ConsumerGroupDescribe; any other with the
    /// classic protocol's DescribeGroups, falling back to ConsumerGroupDescribe when that does
    /// not know the group or shows it as a KIP-848 group without classic members.
    fn describe_group_members(&mut self, group_id: &str) -> Result<GroupDescription, AdminError> {
        let coordinator = self.find_coordinator(group_id)?;
        let address = coordinator.address();
        let listed_type = self
            .list_groups_on(&address)?
            .into_iter()
            .find(|group| group.group_id == group_id)
            .and_then(|group| group.group_type);
        if listed_type.as_deref() == Some(GroupType::Consumer.as_str()) {
            if let Some(description) =
                self.describe_consumer_group(&address, group_id, &coordinator)?
            {
                return Ok(description);
            }
        }
        let classic = self.describe_classic_group(&address, group_id)?;
        if let Some(group) = &classic {
            if !looks_like_consumer_protocol(group) {
                return Ok(classic_description(group_id, group, coordinator));
            }
        }
        if let Some(description) = self.describe_consumer_group(&address, group_id, &coordinator)? {
            return Ok(description);
        }
        match classic {
            Some(group) => Ok(classic_description(group_id, &group, coordinator)),
            None => Err(AdminError::GroupNotFound(group_id.to_owned())),
        }
    }

    /// `None` when the coordinator knows no classic group of that id.
    fn describe_classic_group(
        &mut self,
        address: &str,
        group_id: &str,
    ) -> Result<Option<describe_groups_response::DescribedGroup>, AdminError> {
        let connection = self.connection(address)?;
        let version = connection.version::<DescribeGroupsRequest>(0)?;
        let request = DescribeGroupsRequest::default().with_groups(vec![group_id_of(group_id)]);
        let response: DescribeGroupsResponse = connection.send(version, &request)?;
        let group = response
            .groups
            .into_iter()
            .find(|g| g.group_id.0.as_str() == group_id)
            .ok_or_else(|| AdminError::InvalidResponse {
                address: address.to_owned(),
                api: ApiKey::DescribeGroups,
                problem: format!("does not describe the requested group {group_id:?}"),
            })?;
        if group.error_code == ResponseError::GroupIdNotFound.code() {
            return Ok(None);
        }
        AdminError::check(
            ApiKey::DescribeGroups,
            || format!("group {group_id:?}"),
            group.error_code,
            group.error_message.as_deref(),
        )?;
        // Before v6 an unknown group is described as Dead with no error.
        Ok((group.group_state.as_str() != "Dead").then_some(group))
    }

    /// `None` when the coordinator does not serve ConsumerGroupDescribe or knows no KIP-848
    /// group of that id.
    fn describe_consumer_group(
        &mut self,
        address: &str,
        group_id: &str,
        coordinator: &Node,
    ) -> Result<Option<GroupDescription>, AdminError> {
        let connection = self.connection(address)?;
        let version = match connection.version::<ConsumerGroupDescribeRequest>(0) {
            Ok(version) => version,
            Err(AdminError::UnsupportedApi { .. } | AdminError::NoCommonVersion { .. }) => {
                return Ok(None)
            }
            Err(error) => return Err(error),
        };
        let request =
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![group_id_of(group_id)]);
        let response: ConsumerGroupDescribeResponse = connection.send(version, &request)?;
        let group = response
            .groups
            .into_iter()
            .find(|g| g.group_id.0.as_str() == group_id)
            .ok_or_else(|| AdminError::InvalidResponse {
                address: address.to_owned(),
                api: ApiKey::ConsumerGroupDescribe,
                problem: format!("does not describe the requested group {group_id:?}"),
            })?;
        if group.error_code == ResponseError::GroupIdNotFound.code() {
            return Ok(None);
        }
        AdminError::check(
            ApiKey::ConsumerGroupDescribe,
            || format!("group {group_id:?}"),
            group.error_code,
            group.error_message.as_deref(),
        )?;
        let topic_names = self.names_of_unnamed_topics(&group.members)?;
        let members = group
            .members
            .into_iter()
            .map(|member| Member {
                member_id: member.member_id.to_string(),
                group_instance_id: member.instance_id.map(|id| id.to_string()),
                client_id: member.client_id.to_string(),
                host: member.client_host.to_string(),
                assignment: member
                    .assignment
                    .topic_partitions
                    .into_iter()
                    .map(|assigned| TopicPartitions {
                        topic: if assigned.topic_name.0.is_empty() {
                            let id = assigned.topic_id.to_string();
                            topic_names.get(&id).cloned().unwrap_or(id)
                        } else {
                            assigned.topic_name.0.to_string()
                        },
                        partitions: assigned.partitions,
                    })
                    .collect(),
                assignment_error: None,
            })
            .collect();
        Ok(Some(GroupDescription {
            group_id: group_id.to_owned(),
            group_type: GroupType::Consumer,
            state: group.group_state.to_string(),
            protocol_type: "consumer".to_owned(),
            assignor: non_empty(group.assignor_name.as_str()),
            coordinator: coordinator.clone(),
            members,
            partitions: Vec::new(),
        }))
    }

    /// Topic id → name, from Metadata (v10+ answers with ids), for the assigned topics that
    /// ConsumerGroupDescribe named only by id.
    fn names_of_unnamed_topics(
        &mut self,
        members: &[consumer_group_describe_response::Member],
    ) -> Result<HashMap<String, String>, AdminError> {
        let unnamed = members
            .iter()
            .flat_map(|member| &member.assignment.topic_partitions)
            .any(|assigned| assigned.topic_name.0.is_empty());
        if !unnamed {
            return Ok(HashMap::new());
        }
        Ok(self
            .metadata(None)?
            .topics
            .into_iter()
            .filter_map(|topic| Some((topic.topic_id?, topic.name)))
            .collect())
    }

    /// The group's committed offsets, by topic and partition.
    fn committed_offsets(
        &mut self,
        address: &str,
        group_id: &str,
    ) -> Result<BTreeMap<(String, i32), Committed>, AdminError> {
        let connection = self.connection(address)?;
        let version =
            connection.version::<OffsetFetchRequest>(requests::OFFSET_FETCH_VERSION_MIN)?;
        let response: OffsetFetchResponse =
            connection.send(version, &requests::offset_fetch(version, group_id))?;
        let resource = || format!("group {group_id:?}");
        let partitions: Vec<(String, i32, i64, i16)> = if version >= 8 {
            let group = response
                .groups
                .into_iter()
                .find(|g| g.group_id.0.as_str() == group_id)
                .ok_or_else(|| AdminError::InvalidResponse {
                    address: address.to_owned(),
                    api: ApiKey::OffsetFetch,
                    problem: format!("has no entry for the requested group {group_id:?}"),
                })?;
            AdminError::check(ApiKey::OffsetFetch, resource, group.error_code, None)?;
            group
                .topics
                .into_iter()
                .flat_map(|topic| {
                    let name = topic.name.0.to_string();
                    topic.partitions.into_iter().map(move |p| {
                        (
                            name.clone(),
                            p.partition_index,
                            p.committed_offset,
                            p.error_code,
                        )
                    })
                })
                .collect()
        } else {
            AdminError::check(ApiKey::OffsetFetch, resource, response.error_code, None)?;
            response
                .topics
                .into_iter()
                .flat_map(|topic| {
                    let name = topic.name.0.to_string();
                    topic.partitions.into_iter().map(move |p| {
                        (
                            name.clone(),
                            p.partition_index,
                            p.committed_offset,
                            p.error_code,
                        )
                    })
                })
                .collect()
        };
        Ok(partitions
            .into_iter()
            .map(|(topic, partition, offset, error_code)| {
                let committed = Committed {
                    // -1: nothing committed.
                    offset: (offset >= 0).then_some(offset),
                    error: ResponseError::try_from_code(error_code)
                        .map(|error| error::describe(error, None)),
                };
                ((topic, partition), committed)
            })
            .collect())
    }

    /// The log end offset (high watermark) of each partition, from its leader; per partition
    /// the reason when there is none.
    fn log_end_offsets(
        &mut self,
        partitions: &BTreeSet<(String, i32)>,
    ) -> Result<EndOffsets, AdminError> {
        let mut results = BTreeMap::new();
        if partitions.is_empty() {
            return Ok(results);
        }
        let topics: Vec<String> = partitions
            .iter()
            .map(|(topic, _)| topic.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let metadata = self.metadata(Some(&topics))?;
        let brokers: HashMap<i32, &Node> =
            metadata.brokers.iter().map(|b| (b.node_id, b)).collect();
        let topic_metadata: HashMap<&str, &TopicMetadata> = metadata
            .topics
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let mut by_leader: BTreeMap<String, Vec<(String, i32)>> = BTreeMap::new();
        for (topic, partition) in partitions {
            let key = (topic.clone(), *partition);
            let leader = match topic_metadata.get(topic.as_str()) {
                None => Err("the cluster does not report this topic".to_owned()),
                Some(TopicMetadata {
                    error: Some(error), ..
                }) => Err(error::describe(*error, None)),
                Some(found) => match found.partitions.iter().find(|p| p.partition == *partition) {
                    None => Err("the topic has no such partition".to_owned()),
                    Some(PartitionMetadata {
                        error: Some(error), ..
                    }) if *error != ResponseError::ReplicaNotAvailable => {
                        Err(error::describe(*error, None))
                    }
                    Some(found) => match brokers.get(&found.leader_id) {
                        Some(leader) => Ok(leader.address()),
                        None => Err(format!("no leader (leader id {})", found.leader_id)),
                    },
                },
            };
            match leader {
                Ok(leader) => by_leader.entry(leader).or_default().push(key),
                Err(reason) => {
                    results.insert(key, Err(reason));
                }
            }
        }
        for (address, keys) in by_leader {
            results.extend(self.list_latest_offsets(&address, &keys)?);
        }
        Ok(results)
    }

    fn list_latest_offsets(
        &mut self,
        address: &str,
        keys: &[(String, i32)],
    ) -> Result<EndOffsets, AdminError> {
        let connection = self.connection(address)?;
        let version =
            connection.version::<ListOffsetsRequest>(requests::LIST_OFFSETS_VERSION_MIN)?;
        let response: ListOffsetsResponse =
            connection.send(version, &requests::list_latest_offsets(version, keys))?;
        let mut results: EndOffsets = keys
            .iter()
            .map(|key| {
                (
                    key.clone(),
                    Err("missing from the ListOffsets response".to_owned()),
                )
            })
            .collect();
        for topic in response.topics {
            for partition in topic.partitions {
                let key = (topic.name.0.to_string(), partition.partition_index);
                if let Some(result) = results.get_mut(&key) {
                    *result = match ResponseError::try_from_code(partition.error_code) {
                        Some(error) => Err(error::describe(error, None)),
                        None if partition.offset < 0 => {
                            Err(format!("the broker reported offset {}", partition.offset))
                        }
                        None => Ok(partition.offset),
                    };
                }
            }
        }
        Ok(results)
    }
}

/// Per partition, its log end offset or why there is none.
type EndOffsets = BTreeMap<(String, i32), Result<i64, String>>;

#[derive(Debug)]
struct ClusterMetadata {
    brokers: Vec<Node>,
    topics: Vec<TopicMetadata>,
}

#[derive(Debug)]
struct TopicMetadata {
    name: String,
    topic_id: Option<String>,
    error: Option<ResponseError>,
    partitions: Vec<PartitionMetadata>,
}

#[derive(Debug)]
struct PartitionMetadata {
    partition: i32,
    leader_id: i32,
    error: Option<ResponseError>,
}

#[derive(Debug)]
struct Committed {
    offset: Option<i64>,
    error: Option<String>,
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
    group_id: &str,
    group: &describe_groups_response::DescribedGroup,
    coordinator: Node,
) -> GroupDescription {
    let is_consumer = group.protocol_type.as_str() == "consumer";
    let members = group
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
                    group.protocol_type.as_str()
                );
                (Vec::new(), Some(error))
            };
            Member {
                member_id: member.member_id.to_string(),
                group_instance_id: member.group_instance_id.as_ref().map(|id| id.to_string()),
                client_id: member.client_id.to_string(),
                host: member.client_host.to_string(),
                assignment,
                assignment_error,
            }
        })
        .collect();
    GroupDescription {
        group_id: group_id.to_owned(),
        group_type: GroupType::Classic,
        state: group.group_state.to_string(),
        protocol_type: group.protocol_type.to_string(),
        assignor: non_empty(group.protocol_data.as_str()),
        coordinator,
        members,
        partitions: Vec::new(),
    }
}

/// Reads a classic consumer's assignment: an `i16` version, then `ConsumerProtocolAssignment`
/// at that version. Empty bytes are no assignment (a member between join and sync).
pub(crate) fn decode_consumer_assignment(bytes: &Bytes) -> Result<Vec<TopicPartitions>, String> {
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
        .map(|assigned| TopicPartitions {
            topic: assigned.topic.0.to_string(),
            partitions: assigned.partitions,
        })
        .collect())
}

/// Runs `operation` again, with backoff, while it fails with an error the protocol calls
/// retriable.
fn retrying<T>(mut operation: impl FnMut() -> Result<T, AdminError>) -> Result<T, AdminError> {
    let mut backoff = RETRY_BACKOFF_INITIAL;
    let mut attempt = 1;
    loop {
        match operation() {
            Err(error) if error.is_retriable() && attempt < RETRY_ATTEMPTS_MAX => {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
                attempt += 1;
            }
            result => return result,
        }
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn group_id_of(group_id: &str) -> GroupId {
    GroupId(StrBytes::from_string(group_id.to_owned()))
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

/// The requests whose shape depends on the version, built apart from sending so a test can
/// encode each at every version this client may pick.
mod requests {
    use super::*;

    /// The first version where a null topic list means "all topics".
    pub(super) const METADATA_VERSION_MIN: i16 = 1;
    /// The first version where null topics means "every partition the group committed".
    pub(super) const OFFSET_FETCH_VERSION_MIN: i16 = 2;
    /// The oldest version kafka-protocol 0.18 encodes.
    pub(super) const LIST_OFFSETS_VERSION_MIN: i16 = 1;

    pub(super) fn metadata(version: i16, topics: Option<&[String]>) -> MetadataRequest {
        let mut request = MetadataRequest::default().with_topics(topics.map(|names| {
            names
                .iter()
                .map(|name| {
                    metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(topic_name(name)))
                })
                .collect()
        }));
        if version >= 4 {
            request.allow_auto_topic_creation = false;
        }
        request
    }

    pub(super) fn find_coordinator(version: i16, group_id: &str) -> FindCoordinatorRequest {
        let mut request = FindCoordinatorRequest::default();
        if version >= 4 {
            request.coordinator_keys = vec![StrBytes::from_string(group_id.to_owned())];
        } else {
            request.key = StrBytes::from_string(group_id.to_owned());
        }
        if version >= 1 {
            request.key_type = COORDINATOR_KEY_TYPE_GROUP;
        }
        request
    }

    /// Every offset the group committed: null topics, which v2+ read as "all".
    pub(super) fn offset_fetch(version: i16, group_id: &str) -> OffsetFetchRequest {
        let mut request = OffsetFetchRequest::default();
        if version >= 8 {
            request.groups = vec![offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(group_id_of(group_id))
                .with_topics(None)];
        } else {
            request.group_id = group_id_of(group_id);
            request.topics = None;
        }
        request
    }

    pub(super) fn list_latest_offsets(version: i16, keys: &[(String, i32)]) -> ListOffsetsRequest {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in keys {
            by_topic.entry(topic).or_default().push(*partition);
        }
        let mut request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(CONSUMER_REPLICA_ID))
            .with_topics(
                by_topic
                    .iter()
                    .map(|(topic, partitions)| {
                        list_offsets_request::ListOffsetsTopic::default()
                            .with_name(topic_name(topic))
                            .with_partitions(
                                partitions
                                    .iter()
                                    .map(|&partition| {
                                        list_offsets_request::ListOffsetsPartition::default()
                                            .with_partition_index(partition)
                                            .with_timestamp(LATEST_TIMESTAMP)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        if version >= 10 {
            request.timeout_ms = i32::try_from(REQUEST_TIMEOUT.as_millis()).unwrap_or(i32::MAX);
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::protocol::Encodable;

    use super::*;

    fn assignment_bytes(version: i16, assignment: &ConsumerProtocolAssignment) -> Bytes {
        let mut buffer = BytesMut::new();
        buffer.put_i16(version);
        assignment
            .encode(&mut buffer, version.min(3))
            .expect("encode");
        buffer.freeze()
    }

    fn assignment() -> ConsumerProtocolAssignment {
        ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(topic_name("orders"))
                .with_partitions(vec![0, 2]),
            TopicPartition::default()
                .with_topic(topic_name("audit"))
                .with_partitions(vec![1]),
        ])
    }

    #[test]
    fn consumer_assignments_decode_at_their_version() {
        let expected = vec![
            TopicPartitions {
                topic: "orders".to_owned(),
                partitions: vec![0, 2],
            },
            TopicPartitions {
                topic: "audit".to_owned(),
                partitions: vec![1],
            },
        ];
        for version in [0, 1, 3] {
            let bytes = assignment_bytes(version, &assignment());
            assert_eq!(decode_consumer_assignment(&bytes), Ok(expected.clone()));
        }
        // A future version is read as the newest known one.
        let bytes = assignment_bytes(7, &assignment());
        assert_eq!(decode_consumer_assignment(&bytes), Ok(expected));
    }

    fn encodes_at_every_client_version<Req: kafka_protocol::protocol::Request>(
        floor: i16,
        build: impl Fn(i16) -> Req,
    ) {
        let versions = connection::client_versions::<Req>(floor);
        assert!(!versions.is_empty());
        for version in versions.min..=versions.max {
            let mut buffer = BytesMut::new();
            if let Err(error) = build(version).encode(&mut buffer, version) {
                panic!("{} v{version}: {error}", std::any::type_name::<Req>());
            }
        }
    }

    #[test]
    fn requests_encode_at_every_version_the_client_may_pick() {
        let topics = ["orders".to_owned()];
        let metadata_min = requests::METADATA_VERSION_MIN;
        encodes_at_every_client_version(metadata_min, |v| requests::metadata(v, Some(&topics)));
        encodes_at_every_client_version(metadata_min, |v| requests::metadata(v, None));
        encodes_at_every_client_version(0, |v| requests::find_coordinator(v, "billing"));
        encodes_at_every_client_version(requests::OFFSET_FETCH_VERSION_MIN, |v| {
            requests::offset_fetch(v, "billing")
        });
        let keys = [("orders".to_owned(), 0), ("orders".to_owned(), 1)];
        encodes_at_every_client_version(requests::LIST_OFFSETS_VERSION_MIN, |v| {
            requests::list_latest_offsets(v, &keys)
        });
        encodes_at_every_client_version(0, |_| ListGroupsRequest::default());
        encodes_at_every_client_version(0, |_| {
            DescribeGroupsRequest::default().with_groups(vec![group_id_of("billing")])
        });
        encodes_at_every_client_version(0, |_| {
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![group_id_of("billing")])
        });
    }

    #[test]
    fn empty_assignment_bytes_are_no_assignment() {
        assert_eq!(decode_consumer_assignment(&Bytes::new()), Ok(Vec::new()));
    }

    #[test]
    fn bad_assignment_bytes_are_errors_not_panics() {
        let bytes = assignment_bytes(1, &assignment());
        for cut in 1..bytes.len() {
            assert!(
                decode_consumer_assignment(&bytes.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
        assert!(decode_consumer_assignment(&Bytes::from_static(&[0xff, 0xff, 0, 0])).is_err());
    }
}
