//! Reads of many partitions and groups at once, for pages that show a whole cluster.
//!
//! `Admin` answers one topic or one group per call, which is what a tool wants, but a page
//! of 1,000 partitions and 100 groups would then cost thousands of round trips. These
//! functions send the same Kafka requests `Admin` does, through the same `Cluster`'s
//! connections, batched the way the protocol allows:
//!
//! - [`list_offsets`]: one ListOffsets per partition leader, naming every partition it leads;
//! - [`log_sizes`]: one DescribeLogDirs per broker;
//! - [`groups_on`]: per broker, one ListGroups (a broker lists the groups it coordinates, so
//!   this also finds every coordinator without a FindCoordinator per group), one
//!   DescribeGroups and one ConsumerGroupDescribe naming all of them, and one OffsetFetch
//!   naming all of them (v8+; one per group from older brokers).
//!
//! A broker that cannot be reached, or a partition whose leader moved, is left out of the
//! answer rather than failing the page: the page shows what it could learn and marks the
//! rest unknown.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    describe_log_dirs_request, list_offsets_request, offset_fetch_request, BrokerId,
    ConsumerGroupDescribeRequest, DescribeGroupsRequest, DescribeLogDirsRequest, GroupId,
    ListGroupsRequest, ListOffsetsRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use runnel_client::{ClientError, Cluster, Connection, TopicMetadata};

/// A topic and a partition of it.
pub(crate) type Tp = (String, i32);

/// ListOffsets' timestamp for the log start offset.
pub(crate) const EARLIEST: i64 = -2;
/// ListOffsets' timestamp for the high watermark.
pub(crate) const LATEST: i64 = -1;

/// Groups named in one DescribeGroups or OffsetFetch: a broker coordinating thousands of
/// groups is asked in several requests rather than one enormous one.
const GROUPS_PER_REQUEST: usize = 200;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

fn group_id(id: &str) -> GroupId {
    GroupId(StrBytes::from_string(id.to_owned()))
}

/// For each of `wanted`, the offset ListOffsets gives for `timestamp` ([`EARLIEST`],
/// [`LATEST`], or milliseconds: the first offset at or after that time, -1 when there is
/// none), asked of the leaders `topics` names. Partitions without a leader or whose leader
/// did not answer are missing.
pub(crate) async fn list_offsets(
    cluster: &Cluster,
    topics: &[TopicMetadata],
    wanted: &[Tp],
    timestamp: i64,
) -> HashMap<Tp, i64> {
    let leaders: HashMap<(&str, i32), i32> = topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(move |p| ((topic.name.as_str(), p.partition), p.leader))
        })
        .collect();
    let mut by_leader: BTreeMap<i32, Vec<&Tp>> = BTreeMap::new();
    for tp in wanted {
        match leaders.get(&(tp.0.as_str(), tp.1)) {
            Some(&leader) if leader >= 0 => by_leader.entry(leader).or_default().push(tp),
            _ => {}
        }
    }
    let answers = join_all(
        by_leader
            .into_iter()
            .map(|(leader, partitions)| list_offsets_on(cluster, leader, partitions, timestamp)),
    )
    .await;
    let mut found = HashMap::new();
    for answer in answers {
        match answer {
            Ok(offsets) => found.extend(offsets),
            Err(error) => tracing::debug!(%error, "ListOffsets failed"),
        }
    }
    found
}

async fn list_offsets_on(
    cluster: &Cluster,
    leader: i32,
    partitions: Vec<&Tp>,
    timestamp: i64,
) -> Result<Vec<(Tp, i64)>, ClientError> {
    let connection = cluster.connection(leader).await?;
    let version = connection.version_at_least::<ListOffsetsRequest>(1)?;
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in &partitions {
        by_topic.entry(topic.as_str()).or_default().push(*partition);
    }
    let mut request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
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
                                        .with_timestamp(timestamp)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    if version >= 10 {
        request.timeout_ms = timeout_ms(cluster);
    }
    let response = connection.send(request, version).await?;
    let mut found = Vec::with_capacity(partitions.len());
    for topic in response.topics {
        let name = topic.name.0.to_string();
        for partition in topic.partitions {
            match ResponseError::try_from_code(partition.error_code) {
                None => found.push(((name.clone(), partition.partition_index), partition.offset)),
                // The leader moved (or the topic went): the next page load asks afresh.
                Some(code) => {
                    tracing::debug!(?code, topic = %name, partition = partition.partition_index, "ListOffsets");
                    cluster.invalidate(&name);
                }
            }
        }
    }
    Ok(found)
}

fn timeout_ms(cluster: &Cluster) -> i32 {
    i32::try_from(cluster.config().request_timeout.as_millis()).unwrap_or(i32::MAX)
}

/// Bytes of each partition's log on its leader (DescribeLogDirs), of every topic or of
/// `only` one. Brokers that do not serve DescribeLogDirs or do not answer are left out.
pub(crate) async fn log_sizes(
    cluster: &Cluster,
    topics: &[TopicMetadata],
    only: Option<&str>,
) -> HashMap<Tp, i64> {
    let mut leader_of: HashMap<Tp, i32> = HashMap::new();
    for topic in topics {
        if only.is_some_and(|only| only != topic.name) {
            continue;
        }
        for partition in &topic.partitions {
            if partition.leader >= 0 {
                leader_of.insert((topic.name.clone(), partition.partition), partition.leader);
            }
        }
    }
    let leaders: HashSet<i32> = leader_of.values().copied().collect();
    let answers = join_all(leaders.into_iter().map(|broker| {
        let asked = only.map(|only| {
            let partitions = leader_of
                .iter()
                .filter(|((_, _), &leader)| leader == broker)
                .map(|((_, partition), _)| *partition)
                .collect();
            vec![describe_log_dirs_request::DescribableLogDirTopic::default()
                .with_topic(topic_name(only))
                .with_partitions(partitions)]
        });
        async move { (broker, log_sizes_on(cluster, broker, asked).await) }
    }))
    .await;
    let mut sizes = HashMap::new();
    for (broker, answer) in answers {
        match answer {
            Ok(found) => {
                // A broker reports its follower replicas too; the leader's copy is the one
                // shown.
                sizes.extend(
                    found
                        .into_iter()
                        .filter(|(tp, _)| leader_of.get(tp) == Some(&broker)),
                );
            }
            Err(error) => tracing::debug!(%error, broker, "DescribeLogDirs failed"),
        }
    }
    sizes
}

async fn log_sizes_on(
    cluster: &Cluster,
    broker: i32,
    topics: Option<Vec<describe_log_dirs_request::DescribableLogDirTopic>>,
) -> Result<Vec<(Tp, i64)>, ClientError> {
    let connection = cluster.connection(broker).await?;
    let version = connection.version_at_least::<DescribeLogDirsRequest>(0)?;
    let request = DescribeLogDirsRequest::default().with_topics(topics);
    let response = connection.send(request, version).await?;
    let mut found = Vec::new();
    for dir in response.results {
        if dir.error_code != 0 {
            continue;
        }
        for topic in dir.topics {
            let name = topic.name.0.to_string();
            for partition in topic.partitions {
                if !partition.is_future_key {
                    found.push((
                        (name.clone(), partition.partition_index),
                        partition.partition_size,
                    ));
                }
            }
        }
    }
    Ok(found)
}

/// One group as a broker that coordinates it describes it.
#[derive(Debug, Clone, Default)]
pub(crate) struct GroupSummary {
    pub(crate) group_id: String,
    pub(crate) coordinator: i32,
    pub(crate) protocol_type: String,
    /// `classic` or `consumer` (ListGroups v5+).
    pub(crate) group_type: Option<String>,
    pub(crate) state: Option<String>,
    /// `None` when neither DescribeGroups nor ConsumerGroupDescribe answered for it.
    pub(crate) members: Option<usize>,
    /// Committed offsets (next offset to read), by partition.
    pub(crate) committed: Vec<(Tp, i64)>,
    /// Why the committed offsets are missing, when they are.
    pub(crate) error: Option<String>,
}

/// Every group `broker` coordinates, with its members' count and committed offsets.
pub(crate) async fn groups_on(
    cluster: &Cluster,
    broker: i32,
) -> Result<Vec<GroupSummary>, ClientError> {
    let connection = cluster.connection(broker).await?;
    let version = connection.version_at_least::<ListGroupsRequest>(0)?;
    let listed = connection
        .send(ListGroupsRequest::default(), version)
        .await?;
    ClientError::check(listed.error_code, None, || {
        format!("groups of broker {broker}")
    })?;
    let mut groups: Vec<GroupSummary> = listed
        .groups
        .into_iter()
        .map(|group| GroupSummary {
            group_id: group.group_id.0.to_string(),
            coordinator: broker,
            protocol_type: group.protocol_type.to_string(),
            group_type: (version >= 5).then(|| group.group_type.to_string()),
            state: (version >= 4).then(|| group.group_state.to_string()),
            ..GroupSummary::default()
        })
        .collect();
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    let (classic, consumer): (Vec<&GroupSummary>, Vec<&GroupSummary>) = groups
        .iter()
        .partition(|group| group.group_type.as_deref() != Some("consumer"));
    let classic: Vec<String> = classic.iter().map(|g| g.group_id.clone()).collect();
    let consumer: Vec<String> = consumer.iter().map(|g| g.group_id.clone()).collect();
    let all: Vec<String> = groups.iter().map(|g| g.group_id.clone()).collect();
    let (classic, consumer, offsets) = tokio::join!(
        describe_classic(&connection, &classic),
        describe_consumer(&connection, &consumer),
        committed_offsets(&connection, &all),
    );
    let mut described = classic;
    described.extend(consumer);
    for group in &mut groups {
        if let Some((state, members)) = described.remove(&group.group_id) {
            group.state.get_or_insert(state);
            group.members = Some(members);
        }
        match offsets.get(&group.group_id) {
            Some(Ok(committed)) => group.committed.clone_from(committed),
            Some(Err(error)) => group.error = Some(error.clone()),
            None => group.error = Some("OffsetFetch did not answer for it".to_owned()),
        }
    }
    Ok(groups)
}

/// State and member count by group, from DescribeGroups; groups it fails for are missing.
async fn describe_classic(
    connection: &Connection,
    groups: &[String],
) -> HashMap<String, (String, usize)> {
    let Ok(version) = connection.version_at_least::<DescribeGroupsRequest>(0) else {
        return HashMap::new();
    };
    let answers = join_all(groups.chunks(GROUPS_PER_REQUEST).map(|chunk| {
        let request = DescribeGroupsRequest::default()
            .with_groups(chunk.iter().map(|g| group_id(g)).collect());
        connection.send(request, version)
    }))
    .await;
    found_states(answers, "DescribeGroups", |response| {
        response
            .groups
            .into_iter()
            .filter(|group| group.error_code == 0)
            .map(|group| {
                let state = (group.group_state.to_string(), group.members.len());
                (group.group_id.0.to_string(), state)
            })
            .collect()
    })
}

/// State and member count by KIP-848 group, from ConsumerGroupDescribe.
async fn describe_consumer(
    connection: &Connection,
    groups: &[String],
) -> HashMap<String, (String, usize)> {
    if groups.is_empty() {
        return HashMap::new();
    }
    let Ok(version) = connection.version_at_least::<ConsumerGroupDescribeRequest>(0) else {
        return HashMap::new();
    };
    let answers = join_all(groups.chunks(GROUPS_PER_REQUEST).map(|chunk| {
        let request = ConsumerGroupDescribeRequest::default()
            .with_group_ids(chunk.iter().map(|g| group_id(g)).collect());
        connection.send(request, version)
    }))
    .await;
    found_states(answers, "ConsumerGroupDescribe", |response| {
        response
            .groups
            .into_iter()
            .filter(|group| group.error_code == 0)
            .map(|group| {
                let state = (group.group_state.to_string(), group.members.len());
                (group.group_id.0.to_string(), state)
            })
            .collect()
    })
}

/// The groups `states` reads from each answer that came, by id; an answer that failed is
/// logged and its groups left out.
fn found_states<R, E: std::fmt::Display>(
    answers: Vec<Result<R, E>>,
    api: &str,
    states: impl Fn(R) -> Vec<(String, (String, usize))>,
) -> HashMap<String, (String, usize)> {
    let mut found = HashMap::new();
    for answer in answers {
        match answer {
            Ok(response) => found.extend(states(response)),
            Err(error) => tracing::debug!(%error, api, "describing groups failed"),
        }
    }
    found
}

type Committed = Result<Vec<(Tp, i64)>, String>;

/// Every group's committed offsets: one OffsetFetch for many groups from v8, one per group
/// before.
async fn committed_offsets(
    connection: &Connection,
    groups: &[String],
) -> HashMap<String, Committed> {
    let mut found = HashMap::new();
    if groups.is_empty() {
        return found;
    }
    let version = match connection.version_at_least::<OffsetFetchRequest>(2) {
        Ok(version) => version,
        Err(error) => {
            let error = error.to_string();
            return groups
                .iter()
                .map(|g| (g.clone(), Err(error.clone())))
                .collect();
        }
    };
    if version >= 8 {
        let answers = join_all(groups.chunks(GROUPS_PER_REQUEST).map(|chunk| async move {
            let request = OffsetFetchRequest::default().with_groups(
                chunk
                    .iter()
                    .map(|g| {
                        offset_fetch_request::OffsetFetchRequestGroup::default()
                            .with_group_id(group_id(g))
                            .with_topics(None)
                    })
                    .collect(),
            );
            (chunk, connection.send(request, version).await)
        }))
        .await;
        for (chunk, answer) in answers {
            match answer {
                Ok(response) => {
                    for group in response.groups {
                        let id = group.group_id.0.to_string();
                        let committed = match ResponseError::try_from_code(group.error_code) {
                            Some(code) => Err(format!("{code:?}")),
                            None => Ok(group
                                .topics
                                .into_iter()
                                .flat_map(|topic| {
                                    let name = topic.name.0.to_string();
                                    topic
                                        .partitions
                                        .into_iter()
                                        .filter(|p| p.error_code == 0 && p.committed_offset >= 0)
                                        .map(move |p| {
                                            ((name.clone(), p.partition_index), p.committed_offset)
                                        })
                                })
                                .collect()),
                        };
                        found.insert(id, committed);
                    }
                }
                Err(error) => {
                    for g in chunk {
                        found.insert(g.clone(), Err(error.to_string()));
                    }
                }
            }
        }
    } else {
        let answers = join_all(groups.iter().map(|g| async move {
            let mut request = OffsetFetchRequest::default().with_group_id(group_id(g));
            request.topics = None;
            (g, connection.send(request, version).await)
        }))
        .await;
        for (g, answer) in answers {
            let committed = match answer {
                Err(error) => Err(error.to_string()),
                Ok(response) => match ResponseError::try_from_code(response.error_code) {
                    Some(code) => Err(format!("{code:?}")),
                    None => Ok(response
                        .topics
                        .into_iter()
                        .flat_map(|topic| {
                            let name = topic.name.0.to_string();
                            topic
                                .partitions
                                .into_iter()
                                .filter(|p| p.error_code == 0 && p.committed_offset >= 0)
                                .map(move |p| {
                                    ((name.clone(), p.partition_index), p.committed_offset)
                                })
                        })
                        .collect()),
                },
            };
            found.insert(g.clone(), committed);
        }
    }
    found
}

/// A consumer's lag on one partition: how far its committed offset is behind the end. A
/// partition whose end is unknown has no lag to show.
pub(crate) fn lag(committed: i64, end: Option<i64>) -> Option<i64> {
    end.map(|end| (end - committed).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_never_negative_and_unknown_without_an_end() {
        assert_eq!(lag(5, Some(12)), Some(7));
        // Committed past the end: records were deleted, or the end is stale.
        assert_eq!(lag(15, Some(12)), Some(0));
        assert_eq!(lag(5, None), None);
    }
}
