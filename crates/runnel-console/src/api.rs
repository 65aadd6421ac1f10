//! The JSON API under `/console/api`, one handler per route:
//!
//! | route | answers |
//! |---|---|
//! | `GET info` | the bootstrap address and whether a Connect worker is configured |
//! | `GET overview` | brokers, controller, health, counts |
//! | `GET topics[?internal=true]` | every topic: partitions, replication, records, size |
//! | `POST topics` | creates a topic: `{"name", "partitions", "replication_factor"?, "configs"?}` |
//! | `GET topics/NAME` | the topic's partitions: leader, replicas, ISR, offsets, size |
//! | `GET topics/NAME/configs` | every config with its source |
//! | `POST topics/NAME/configs` | `{"set": {name: value}, "delete": [name]}`, all or none |
//! | `GET topics/NAME/messages?...` | the message browser (`validate::BrowseQuery`) |
//! | `GET groups` | every group: state, members, committed partitions, total lag |
//! | `GET groups/ID` | one group: members, assignments, offsets and lag per partition, lag history |
//! | `GET connect/connectors` | connectors with their status (404 without a Connect URL) |
//! | `POST connect/connectors/NAME/ACTION` | `pause`, `resume` or `restart` |
//!
//! A handler that could not reach the cluster drops the shared admin client, so that the
//! next request connects afresh.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::future::join_all;
use runnel_client::{ConfigEntry, TopicMetadata};
use serde::{Deserialize, Serialize};

use crate::batch::{self, Tp, EARLIEST, LATEST};
use crate::error::ApiError;
use crate::validate::{self, AlterConfigs, BrowseQuery, CreateTopic};
use crate::{browse, connect, health, lag, Console, BROWSE_QUEUE_WAIT};

type Shared = State<Arc<Console>>;

/// `value` as JSON with `status`, or the error; a cluster that could not be reached makes
/// the admin client be made again next time.
async fn reply<T: Serialize>(
    console: &Console,
    status: StatusCode,
    result: Result<T, ApiError>,
) -> Response {
    match result {
        Ok(value) => (status, Json(value)).into_response(),
        Err(error) => {
            if error.status == StatusCode::SERVICE_UNAVAILABLE {
                console.forget_admin().await;
            }
            error.into_response()
        }
    }
}

fn path<T>(extracted: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    extracted
        .map(|Path(value)| value)
        .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
}

fn topic_name(extracted: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let name = path(extracted)?;
    validate::topic_name(&name).map_err(ApiError::bad_request)?;
    Ok(name)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// `GET /console/api/...` of nothing.
pub(crate) async fn not_found() -> Response {
    ApiError::not_found("no such console API").into_response()
}

// -------------------------------------------------------------------------------------------
// Info and overview

#[derive(Serialize)]
struct Info {
    bootstrap: String,
    connect: bool,
    version: &'static str,
}

pub(crate) async fn info(State(console): Shared) -> Response {
    let info = Info {
        bootstrap: console.config.bootstrap.clone(),
        connect: console.config.connect_url.is_some(),
        version: env!("CARGO_PKG_VERSION"),
    };
    Json(info).into_response()
}

#[derive(Serialize)]
struct Broker {
    id: i32,
    host: String,
    port: i32,
    address: String,
    rack: Option<String>,
    controller: bool,
}

#[derive(Serialize)]
struct Overview {
    cluster_id: Option<String>,
    controller_id: Option<i32>,
    brokers: Vec<Broker>,
    health: health::Health,
    topics: usize,
    internal_topics: usize,
    partitions: usize,
    /// `None` when listing the groups failed.
    groups: Option<usize>,
}

pub(crate) async fn overview(State(console): Shared) -> Response {
    let result = async {
        let admin = console.admin().await?;
        let (cluster, topics, groups) = tokio::join!(
            admin.describe_cluster(),
            admin.list_topics(true),
            admin.list_groups()
        );
        let (cluster, topics) = (cluster?, topics?);
        let health = health::Health::from(runnel_client::ClusterHealth::assess(&cluster, &topics));
        Ok(Overview {
            cluster_id: cluster.cluster_id,
            controller_id: cluster.controller_id,
            brokers: cluster
                .brokers
                .iter()
                .map(|broker| Broker {
                    id: broker.node_id,
                    host: broker.host.clone(),
                    port: broker.port,
                    address: broker.address(),
                    rack: broker.rack.clone(),
                    controller: cluster.controller_id == Some(broker.node_id),
                })
                .collect(),
            topics: topics.iter().filter(|t| !t.is_internal).count(),
            internal_topics: topics.iter().filter(|t| t.is_internal).count(),
            partitions: health.partitions,
            health,
            groups: groups.ok().map(|groups| groups.len()),
        })
    }
    .await;
    reply(&console, StatusCode::OK, result).await
}

// -------------------------------------------------------------------------------------------
// Topics

#[derive(Serialize)]
struct TopicRow {
    name: String,
    internal: bool,
    partitions: usize,
    replication_factor: usize,
    under_replicated: usize,
    leaderless: usize,
    /// High watermarks less log start offsets; `None` when a leader did not answer.
    records: Option<i64>,
    /// Bytes of the leaders' logs; `None` when a broker did not say.
    size_bytes: Option<i64>,
}

#[derive(Deserialize)]
pub(crate) struct TopicsQuery {
    internal: Option<bool>,
}

fn all_partitions(topics: &[TopicMetadata]) -> Vec<Tp> {
    topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.partition)))
        .collect()
}

/// The sum over `tps` of what `value` gives, `None` if it gives `None` for any.
fn sum_known(tps: impl Iterator<Item = Tp>, value: impl Fn(&Tp) -> Option<i64>) -> Option<i64> {
    tps.map(|tp| value(&tp)).sum()
}

pub(crate) async fn topics(
    State(console): Shared,
    query: Result<Query<TopicsQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let Query(query) = query.map_err(|r| ApiError::bad_request(r.body_text()))?;
        let admin = console.admin().await?;
        let topics = admin.list_topics(query.internal.unwrap_or(false)).await?;
        let cluster = admin.cluster();
        let wanted = all_partitions(&topics);
        let (starts, ends, sizes) = tokio::join!(
            batch::list_offsets(cluster, &topics, &wanted, EARLIEST),
            batch::list_offsets(cluster, &topics, &wanted, LATEST),
            batch::log_sizes(cluster, &topics, None),
        );
        let rows: Vec<TopicRow> = topics
            .iter()
            .map(|topic| {
                let tps = || {
                    topic
                        .partitions
                        .iter()
                        .map(|p| (topic.name.clone(), p.partition))
                };
                TopicRow {
                    name: topic.name.clone(),
                    internal: topic.is_internal,
                    partitions: topic.partitions.len(),
                    replication_factor: topic
                        .partitions
                        .iter()
                        .map(|p| p.replicas.len())
                        .max()
                        .unwrap_or(0),
                    under_replicated: topic
                        .partitions
                        .iter()
                        .filter(|p| p.isr.len() < p.replicas.len())
                        .count(),
                    leaderless: topic.partitions.iter().filter(|p| p.leader < 0).count(),
                    records: sum_known(tps(), |tp| Some(ends.get(tp)? - starts.get(tp)?)),
                    size_bytes: sum_known(tps(), |tp| sizes.get(tp).copied()),
                }
            })
            .collect();
        Ok(rows)
    }
    .await;
    reply(&console, StatusCode::OK, result).await
}

#[derive(Serialize)]
struct Created {
    name: String,
}

pub(crate) async fn create_topic(
    State(console): Shared,
    body: Result<Json<CreateTopic>, JsonRejection>,
) -> Response {
    let result = async {
        let Json(form) = body.map_err(|r| ApiError::bad_request(r.body_text()))?;
        let topic = form.check().map_err(ApiError::bad_request)?;
        let admin = console.admin().await?;
        admin.create_topic(topic).await?;
        Ok(Created { name: form.name })
    }
    .await;
    reply(&console, StatusCode::CREATED, result).await
}

#[derive(Serialize)]
struct PartitionRow {
    partition: i32,
    leader: i32,
    leader_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    log_start: Option<i64>,
    high_watermark: Option<i64>,
    size_bytes: Option<i64>,
    error: Option<String>,
}

#[derive(Serialize)]
struct TopicDetail {
    name: String,
    id: String,
    internal: bool,
    partitions: Vec<PartitionRow>,
    records: Option<i64>,
    size_bytes: Option<i64>,
}

pub(crate) async fn topic(
    State(console): Shared,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        let name = topic_name(name)?;
        let admin = console.admin().await?;
        let topic = admin.describe_topic(&name).await?;
        let cluster = admin.cluster();
        let topics = std::slice::from_ref(&topic);
        let wanted = all_partitions(topics);
        let (starts, ends, sizes) = tokio::join!(
            batch::list_offsets(cluster, topics, &wanted, EARLIEST),
            batch::list_offsets(cluster, topics, &wanted, LATEST),
            batch::log_sizes(cluster, topics, Some(&name)),
        );
        let tps = || wanted.iter().cloned();
        Ok(TopicDetail {
            records: sum_known(tps(), |tp| Some(ends.get(tp)? - starts.get(tp)?)),
            size_bytes: sum_known(tps(), |tp| sizes.get(tp).copied()),
            partitions: topic
                .partitions
                .iter()
                .map(|p| {
                    let tp = (name.clone(), p.partition);
                    PartitionRow {
                        partition: p.partition,
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                        log_start: starts.get(&tp).copied(),
                        high_watermark: ends.get(&tp).copied(),
                        size_bytes: sizes.get(&tp).copied(),
                        error: p.error.map(|code| format!("{code:?}")),
                    }
                })
                .collect(),
            name: topic.name.clone(),
            id: topic.id.to_string(),
            internal: topic.is_internal,
        })
    }
    .await;
    reply(&console, StatusCode::OK, result).await
}

#[derive(Serialize)]
struct ConfigRow {
    name: String,
    /// `None` for a sensitive config.
    value: Option<String>,
    source: String,
    read_only: bool,
    is_default: bool,
    is_sensitive: bool,
    documentation: Option<String>,
}

fn config_rows(entries: Vec<ConfigEntry>) -> Vec<ConfigRow> {
    let mut rows: Vec<ConfigRow> = entries
        .into_iter()
        .map(|entry| ConfigRow {
            source: format!("{:?}", entry.source),
            name: entry.name,
            value: entry.value,
            read_only: entry.read_only,
            is_default: entry.is_default,
            is_sensitive: entry.is_sensitive,
            documentation: entry.documentation,
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

pub(crate) async fn topic_configs(
    State(console): Shared,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        let name = topic_name(name)?;
        let admin = console.admin().await?;
        Ok(config_rows(admin.describe_topic_configs(&name).await?))
    }
    .await;
    reply(&console, StatusCode::OK, result).await
}

pub(crate) async fn alter_topic_configs(
    State(console): Shared,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<AlterConfigs>, JsonRejection>,
) -> Response {
    let result = async {
        let name = topic_name(name)?;
        let Json(change) = body.map_err(|r| ApiError::bad_request(r.body_text()))?;
        let ops = change.check().map_err(ApiError::bad_request)?;
        let admin = console.admin().await?;
        admin.alter_topic_configs(&name, ops).await?;
        Ok(config_rows(admin.describe_topic_configs(&name).await?))
    }
    .await;
    reply(&console, StatusCode::OK, result).await
}

pub(crate) async fn messages(
    State(console): Shared,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<BrowseQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let name = topic_name(name)?;
        let Query(query) = query.map_err(|r| ApiError::bad_request(r.body_text()))?;
        let asked = query.check().map_err(ApiError::bad_request)?;
        let _turn = tokio::time::timeout(BROWSE_QUEUE_WAIT, console.browses.acquire())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "other browses are reading: try again in a moment",
                )
            })?;
        let admin = console.admin().await?;
        let topic = admin.describe_topic(&name).await?;
        browse::run(&console.config.bootstrap, admin.cluster(), &topic, &asked).await
    }
    .await;
    reply(&console, StatusCode::OK, result).await
}

// -------------------------------------------------------------------------------------------
// Groups

#[derive(Serialize)]
struct GroupRow {
    group_id: String,
    state: Option<String>,
    protocol_type: String,
    group_type: Option<String>,
    coordinator: i32,
    members: Option<usize>,
    /// Partitions with a committed offset.
    partitions: usize,
    topics: Vec<String>,
    /// Summed over the partitions whose end is known.
    lag: Option<i64>,
    error: Option<String>,
}

#[derive(Serialize)]
struct Groups {
    groups: Vec<GroupRow>,
    /// Brokers whose groups could not be listed.
    warnings: Vec<String>,
}

pub(crate) async fn groups(State(console): Shared) -> Response {
    let result = async {
        let admin = console.admin().await?;
        // Fresh metadata: the brokers to ask, and the leaders of the committed partitions.
        let topics = admin.list_topics(true).await?;
        let cluster = admin.cluster();
        let brokers = cluster.brokers().await;
        let answers = join_all(brokers.iter().map(|broker| async move {
            (
                broker.node_id,
                batch::groups_on(cluster, broker.node_id).await,
            )
        }))
        .await;
        let mut summaries = Vec::new();
        let mut warnings = Vec::new();
        for (broker, answer) in answers {
            match answer {
                Ok(groups) => summaries.extend(groups),
                Err(error) => warnings.push(format!("broker {broker}: {error}")),
            }
        }
        let committed: BTreeSet<Tp> = summaries
            .iter()
            .flat_map(|g| g.committed.iter().map(|(tp, _)| tp.clone()))
            .collect();
        let committed: Vec<Tp> = committed.into_iter().collect();
        let ends = batch::list_offsets(cluster, &topics, &committed, LATEST).await;
        let now = now_ms();
        let mut rows: Vec<GroupRow> = summaries
            .into_iter()
            .map(|group| {
                let lag: Option<i64> = group.error.is_none().then(|| {
                    group
                        .committed
                        .iter()
                        .filter_map(|(tp, offset)| batch::lag(*offset, ends.get(tp).copied()))
                        .sum()
                });
                let topics: BTreeSet<&str> = group
                    .committed
                    .iter()
                    .map(|((t, _), _)| t.as_str())
                    .collect();
                GroupRow {
                    topics: topics.into_iter().map(str::to_owned).collect(),
                    partitions: group.committed.len(),
                    lag,
                    group_id: group.group_id,
                    state: group.state,
                    protocol_type: group.protocol_type,
                    group_type: group.group_type,
                    coordinator: group.coordinator,
                    members: group.members,
                    error: group.error,
                }
            })
            .collect();
        rows.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        // The list is a sample of every group's lag too.
        {
            let mut history = console.lag();
            for row in &rows {
                if let Some(lag) = row.lag {
                    history.record(&row.group_id, now, lag);
                }
            }
        }
        Ok(Groups {
            groups: rows,
            warnings,
        })
    }
    .await;
    reply(&console, StatusCode::OK, result).await
}

#[derive(Serialize)]
struct Member {
    member_id: String,
    instance_id: Option<String>,
    client_id: String,
    host: String,
    assignment: Vec<Assigned>,
    assignment_error: Option<String>,
}

#[derive(Serialize)]
struct Assigned {
    topic: String,
    partitions: Vec<i32>,
}

#[derive(Serialize)]
struct OffsetRow {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    log_end: Option<i64>,
    lag: Option<i64>,
    /// The member assigned the partition, if any.
    member_id: Option<String>,
    client_id: Option<String>,
}

#[derive(Serialize)]
struct GroupDetail {
    group_id: String,
    state: String,
    group_type: String,
    protocol_type: String,
    protocol: Option<String>,
    coordinator: i32,
    members: Vec<Member>,
    offsets: Vec<OffsetRow>,
    lag: i64,
    /// Total lag over time, oldest first (`lag`).
    history: Vec<lag::Sample>,
}

pub(crate) async fn group(
    State(console): Shared,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        let id = path(id)?;
        validate::identifier("group id", &id).map_err(ApiError::bad_request)?;
        let admin = console.admin().await?;
        let (description, committed) =
            tokio::join!(admin.describe_group(&id), admin.list_group_offsets(&id));
        let (description, committed) = (description?, committed?);
        let mut rows: BTreeMap<Tp, OffsetRow> = BTreeMap::new();
        let row = |topic: &str, partition: i32| OffsetRow {
            topic: topic.to_owned(),
            partition,
            committed: None,
            log_end: None,
            lag: None,
            member_id: None,
            client_id: None,
        };
        for ((topic, partition), offset, _) in &committed {
            rows.entry((topic.clone(), *partition))
                .or_insert_with(|| row(topic, *partition))
                .committed = Some(*offset);
        }
        for member in &description.members {
            for (topic, partitions) in &member.assignment {
                for &partition in partitions {
                    let entry = rows
                        .entry((topic.clone(), partition))
                        .or_insert_with(|| row(topic, partition));
                    entry.member_id = Some(member.member_id.clone());
                    entry.client_id = Some(member.client_id.clone());
                }
            }
        }
        let names: Vec<String> = rows
            .keys()
            .map(|(topic, _)| topic.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let tps: Vec<Tp> = rows.keys().cloned().collect();
        let ends = if names.is_empty() {
            Default::default()
        } else {
            let topics = admin.cluster().metadata(Some(&names), false).await?;
            batch::list_offsets(admin.cluster(), &topics, &tps, LATEST).await
        };
        let mut total = 0;
        for (tp, row) in &mut rows {
            row.log_end = ends.get(tp).copied();
            row.lag = row.committed.and_then(|c| batch::lag(c, row.log_end));
            total += row.lag.unwrap_or(0);
        }
        // A group with neither members nor committed offsets does not exist (DescribeGroups
        // answers any id, as Dead): a made-up id in a URL must not push a real group's
        // history out.
        let history = if description.members.is_empty() && rows.is_empty() {
            console.lag().history(&id)
        } else {
            console.lag().record(&id, now_ms(), total)
        };
        Ok(GroupDetail {
            group_id: description.group_id,
            state: description.state,
            group_type: format!("{:?}", description.group_type),
            protocol_type: description.protocol_type,
            protocol: description.protocol,
            coordinator: description.coordinator_id,
            members: description
                .members
                .into_iter()
                .map(|member| Member {
                    member_id: member.member_id,
                    instance_id: member.instance_id,
                    client_id: member.client_id,
                    host: member.host,
                    assignment: member
                        .assignment
                        .into_iter()
                        .map(|(topic, partitions)| Assigned { topic, partitions })
                        .collect(),
                    assignment_error: member.assignment_error,
                })
                .collect(),
            offsets: rows.into_values().collect(),
            lag: total,
            history,
        })
    }
    .await;
    reply(&console, StatusCode::OK, result).await
}

// -------------------------------------------------------------------------------------------
// Connect

fn connect_target(console: &Console) -> Result<(ureq::Agent, String), ApiError> {
    match (&console.connect, &console.config.connect_url) {
        (Some(agent), Some(url)) => Ok((agent.clone(), url.clone())),
        _ => Err(ApiError::not_found(
            "no Connect worker is configured: start the broker with --console-connect-url URL \
             (or --connect)",
        )),
    }
}

pub(crate) async fn connectors(State(console): Shared) -> Response {
    let result: Result<_, ApiError> = async {
        let (agent, url) = connect_target(&console)?;
        connect::list(agent, url).await
    }
    .await;
    // A worker that cannot be reached says nothing about the cluster: the admin client stays.
    match result {
        Ok(connectors) => Json(connectors).into_response(),
        Err(error) => error.into_response(),
    }
}

#[derive(Serialize)]
struct Done {
    ok: bool,
}

pub(crate) async fn connector_action(
    State(console): Shared,
    target: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let result: Result<Done, ApiError> = async {
        let (name, action) = path(target)?;
        validate::identifier("connector name", &name).map_err(ApiError::bad_request)?;
        let action = connect::Action::parse(&action)?;
        let (agent, url) = connect_target(&console)?;
        connect::act(agent, url, &name, action).await?;
        Ok(Done { ok: true })
    }
    .await;
    match result {
        Ok(done) => Json(done).into_response(),
        Err(error) => error.into_response(),
    }
}
