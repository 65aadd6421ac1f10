//! What distributed workers share through three compacted topics, as plain data: the
//! records of the config, status and offsets topics (in Kafka Connect's key and value
//! formats, so that the topics read the same), the state they add up to, and the leader's
//! assignment of connectors and tasks to workers. No I/O here: the distributed herder feeds
//! records in and acts on what changed.
//!
//! Config topic keys: `connector-<name>` (`{"properties": {...}}`, null when deleted),
//! `task-<name>-<n>` (`{"properties": {...}}`), `commit-<name>` (`{"tasks": N}`: the task
//! records before it become the connector's tasks at once), `target-state-<name>`
//! (`{"state": ..., "state.v2": ...}`), `restart-connector-<name>` and Runnel's
//! `restart-task-<name>-<n>`. Status topic keys: `status-connector-<name>`,
//! `status-task-<name>-<n>`, `topic-<topic>-connector-<name>`. Offsets topic keys:
//! `["<connector>", {partition}]`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use crate::config::Configs;
use crate::data::{SourceOffset, SourcePartition};
use crate::status::{State, Status, TargetState};

/// What a config record changed, for the herder to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// Connectors or their committed tasks changed: the group must rebalance.
    Structure,
    /// A connector's target state changed between running and paused.
    Target(String),
    /// A restart of a connector (and its tasks) was asked for.
    RestartConnector {
        /// The connector.
        name: String,
        /// Restart its tasks too.
        include_tasks: bool,
        /// Only what failed.
        only_failed: bool,
    },
    /// A restart of one task was asked for.
    RestartTask(String, usize),
}

/// The connectors of a distributed cluster, as the config topic says.
#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    /// Each connector's configuration, as written.
    pub connectors: BTreeMap<String, Configs>,
    /// Each connector's target state (running when absent).
    pub targets: BTreeMap<String, TargetState>,
    /// Each connector's committed task configurations.
    pub tasks: BTreeMap<String, Vec<Configs>>,
    /// Task records not committed yet.
    staged: BTreeMap<String, BTreeMap<usize, Configs>>,
}

fn properties(value: &[u8]) -> Option<Configs> {
    let json: Json = serde_json::from_slice(value).ok()?;
    let object = json.get("properties")?.as_object()?;
    Some(Configs(
        object
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
            .collect(),
    ))
}

/// `<name>-<n>` split at its last dash.
fn name_and_task(rest: &str) -> Option<(String, usize)> {
    let (name, task) = rest.rsplit_once('-')?;
    Some((name.to_owned(), task.parse().ok()?))
}

impl ClusterConfig {
    /// A connector's target state.
    pub fn target(&self, name: &str) -> TargetState {
        self.targets
            .get(name)
            .copied()
            .unwrap_or(TargetState::Started)
    }

    /// Applies one config record; what it changed, if anything the herder must act on. A
    /// record that cannot be read is skipped (logged), as a topic may hold other writers'.
    pub fn apply(&mut self, key: &str, value: Option<&[u8]>) -> Option<ConfigChange> {
        if let Some(name) = key.strip_prefix("connector-") {
            return match value.and_then(properties) {
                Some(configs) => {
                    let changed = self.connectors.get(name) != Some(&configs);
                    self.connectors.insert(name.to_owned(), configs);
                    changed.then_some(ConfigChange::Structure)
                }
                None => {
                    let existed = self.connectors.remove(name).is_some();
                    self.tasks.remove(name);
                    self.staged.remove(name);
                    self.targets.remove(name);
                    existed.then_some(ConfigChange::Structure)
                }
            };
        }
        if let Some(rest) = key.strip_prefix("task-") {
            let (name, task) = name_and_task(rest)?;
            let configs = value.and_then(properties)?;
            self.staged.entry(name).or_default().insert(task, configs);
            return None;
        }
        if let Some(name) = key.strip_prefix("commit-") {
            let count = value
                .and_then(|v| serde_json::from_slice::<Json>(v).ok())
                .and_then(|j| j.get("tasks").and_then(Json::as_u64))?;
            let staged = self.staged.remove(name).unwrap_or_default();
            let previous = self.tasks.get(name).cloned().unwrap_or_default();
            let mut tasks = Vec::new();
            for task in 0..usize::try_from(count).ok()? {
                // A task not rewritten in this commit keeps its configuration.
                match staged.get(&task).or_else(|| previous.get(task)) {
                    Some(configs) => tasks.push(configs.clone()),
                    None => {
                        tracing::warn!(
                            connector = name,
                            task,
                            "a commit names a task never written; ignored"
                        );
                        return None;
                    }
                }
            }
            let changed = previous != tasks;
            self.tasks.insert(name.to_owned(), tasks);
            return changed.then_some(ConfigChange::Structure);
        }
        if let Some(name) = key.strip_prefix("target-state-") {
            let target = match value.and_then(|v| serde_json::from_slice::<Json>(v).ok()) {
                None => TargetState::Started,
                Some(json) => {
                    let state = json
                        .get("state.v2")
                        .or_else(|| json.get("state"))
                        .and_then(Json::as_str)
                        .unwrap_or("STARTED");
                    match state {
                        "PAUSED" => TargetState::Paused,
                        "STOPPED" => TargetState::Stopped,
                        _ => TargetState::Started,
                    }
                }
            };
            let before = self.target(name);
            self.targets.insert(name.to_owned(), target);
            return match (before, target) {
                (a, b) if a == b => None,
                // Stopping or starting from stopped changes what runs where.
                (TargetState::Stopped, _) | (_, TargetState::Stopped) => {
                    Some(ConfigChange::Structure)
                }
                _ => Some(ConfigChange::Target(name.to_owned())),
            };
        }
        if let Some(name) = key.strip_prefix("restart-connector-") {
            let json: Json = value.and_then(|v| serde_json::from_slice(v).ok())?;
            return Some(ConfigChange::RestartConnector {
                name: name.to_owned(),
                include_tasks: json
                    .get("include-tasks")
                    .and_then(Json::as_bool)
                    .unwrap_or(false),
                only_failed: json
                    .get("only-failed")
                    .and_then(Json::as_bool)
                    .unwrap_or(false),
            });
        }
        if let Some(rest) = key.strip_prefix("restart-task-") {
            value?;
            let (name, task) = name_and_task(rest)?;
            return Some(ConfigChange::RestartTask(name, task));
        }
        tracing::warn!(key, "unknown config topic record; skipped");
        None
    }
}

/// A config topic record: its key and value (`None` for a tombstone).
pub type Record = (String, Option<Vec<u8>>);

fn json_bytes(value: Json) -> Option<Vec<u8>> {
    Some(value.to_string().into_bytes())
}

/// The record of a connector's configuration; `None` deletes the connector.
pub fn connector_record(name: &str, configs: Option<&Configs>) -> Record {
    (
        format!("connector-{name}"),
        configs.and_then(|c| json_bytes(json!({ "properties": c.0 }))),
    )
}

/// The records of a connector's task configurations and the commit that makes them its tasks.
pub fn task_records(name: &str, tasks: &[Configs]) -> Vec<Record> {
    let mut records: Vec<Record> = tasks
        .iter()
        .enumerate()
        .map(|(n, c)| {
            (
                format!("task-{name}-{n}"),
                json_bytes(json!({ "properties": c.0 })),
            )
        })
        .collect();
    records.push((
        format!("commit-{name}"),
        json_bytes(json!({ "tasks": tasks.len() })),
    ));
    records
}

/// The record of a connector's target state; `None` removes it (with the connector).
pub fn target_record(name: &str, target: Option<TargetState>) -> Record {
    let value = target.map(|t| {
        let v2 = match t {
            TargetState::Started => "STARTED",
            TargetState::Paused => "PAUSED",
            TargetState::Stopped => "STOPPED",
        };
        // Older readers know only STARTED and PAUSED in "state".
        let v1 = if t == TargetState::Paused {
            "PAUSED"
        } else {
            "STARTED"
        };
        json!({ "state": v1, "state.v2": v2 })
    });
    (format!("target-state-{name}"), value.and_then(json_bytes))
}

/// The record asking for a restart of a connector.
pub fn restart_record(name: &str, include_tasks: bool, only_failed: bool) -> Record {
    (
        format!("restart-connector-{name}"),
        json_bytes(json!({ "include-tasks": include_tasks, "only-failed": only_failed })),
    )
}

/// The record asking for a restart of one task.
pub fn restart_task_record(name: &str, task: usize) -> Record {
    (format!("restart-task-{name}-{task}"), json_bytes(json!({})))
}

/// What the status topic says about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusRecord {
    /// A connector's (`task` `None`) or task's status; `None` when removed.
    Status {
        /// The connector.
        connector: String,
        /// The task, if this is a task's.
        task: Option<usize>,
        /// The status.
        status: Option<Status>,
    },
    /// A connector used a topic (`used` false when reset).
    Topic {
        /// The connector.
        connector: String,
        /// The topic.
        topic: String,
        /// Whether the use stands.
        used: bool,
    },
}

#[derive(Serialize, Deserialize)]
struct StatusValue {
    state: String,
    trace: Option<String>,
    worker_id: String,
    generation: i32,
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Unassigned => "UNASSIGNED",
        State::Running => "RUNNING",
        State::Paused => "PAUSED",
        State::Failed => "FAILED",
        State::Restarting => "RESTARTING",
        State::Stopped => "STOPPED",
    }
}

fn state_of(name: &str) -> State {
    match name {
        "RUNNING" => State::Running,
        "PAUSED" => State::Paused,
        "FAILED" => State::Failed,
        "RESTARTING" => State::Restarting,
        "STOPPED" => State::Stopped,
        _ => State::Unassigned,
    }
}

/// The status topic record of `status`.
pub fn status_record(record: &StatusRecord, generation: i32) -> Record {
    match record {
        StatusRecord::Status {
            connector,
            task,
            status,
        } => {
            let key = match task {
                Some(n) => format!("status-task-{connector}-{n}"),
                None => format!("status-connector-{connector}"),
            };
            let value = status.as_ref().and_then(|s| {
                serde_json::to_vec(&StatusValue {
                    state: state_name(s.state).to_owned(),
                    trace: s.trace.clone(),
                    worker_id: s.worker_id.clone(),
                    generation,
                })
                .ok()
            });
            (key, value)
        }
        StatusRecord::Topic {
            connector,
            topic,
            used,
        } => {
            let key = format!("topic-{topic}-connector-{connector}");
            let value = used
                .then(|| json!({ "topic": { "name": topic, "connector": connector } }))
                .and_then(json_bytes);
            (key, value)
        }
    }
}

/// The status a status topic record holds, if it is one this worker understands.
pub fn parse_status(key: &str, value: Option<&[u8]>) -> Option<StatusRecord> {
    let status = || -> Option<Option<Status>> {
        match value {
            None => Some(None),
            Some(bytes) => {
                let v: StatusValue = serde_json::from_slice(bytes).ok()?;
                Some(Some(Status {
                    state: state_of(&v.state),
                    worker_id: v.worker_id,
                    trace: v.trace,
                }))
            }
        }
    };
    if let Some(connector) = key.strip_prefix("status-connector-") {
        return Some(StatusRecord::Status {
            connector: connector.to_owned(),
            task: None,
            status: status()?,
        });
    }
    if let Some(rest) = key.strip_prefix("status-task-") {
        let (connector, task) = name_and_task(rest)?;
        return Some(StatusRecord::Status {
            connector,
            task: Some(task),
            status: status()?,
        });
    }
    if let Some(rest) = key.strip_prefix("topic-") {
        let (topic, connector) = rest.split_once("-connector-")?;
        return Some(StatusRecord::Topic {
            connector: connector.to_owned(),
            topic: topic.to_owned(),
            used: value.is_some(),
        });
    }
    None
}

/// The offsets topic key of a connector's source partition.
pub fn offset_key(connector: &str, partition: &SourcePartition) -> Vec<u8> {
    json!([connector, partition]).to_string().into_bytes()
}

/// The connector and source partition of an offsets topic key.
pub fn parse_offset_key(key: &[u8]) -> Option<(String, SourcePartition)> {
    let json: Json = serde_json::from_slice(key).ok()?;
    let [connector, partition] = json.as_array()?.as_slice() else {
        return None;
    };
    Some((
        connector.as_str()?.to_owned(),
        partition.as_object()?.clone(),
    ))
}

/// The offsets topic value of an offset.
pub fn parse_offset_value(value: &[u8]) -> Option<SourceOffset> {
    serde_json::from_slice::<Json>(value)
        .ok()?
        .as_object()
        .cloned()
}

/// A worker's metadata in its JoinGroup: where its REST API is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerMetadata {
    /// The REST API's URL, for forwarding requests to the leader.
    pub url: String,
}

/// What the leader assigns one worker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The leader's member id.
    pub leader: String,
    /// The leader's REST URL.
    pub leader_url: String,
    /// The connectors whose instance this worker runs.
    pub connectors: Vec<String>,
    /// The tasks this worker runs.
    pub tasks: Vec<(String, usize)>,
}

/// The leader's assignment: connectors, then tasks, dealt round robin over the workers in
/// member id order. Stopped connectors get no instance and no tasks.
pub fn assign(
    members: &[(String, WorkerMetadata)],
    leader: &str,
    config: &ClusterConfig,
) -> BTreeMap<String, Assignment> {
    let mut ids: Vec<&String> = members.iter().map(|(id, _)| id).collect();
    ids.sort();
    let leader_url = members
        .iter()
        .find(|(id, _)| id == leader)
        .map(|(_, m)| m.url.clone())
        .unwrap_or_default();
    let mut out: BTreeMap<String, Assignment> = ids
        .iter()
        .map(|id| {
            (
                (*id).clone(),
                Assignment {
                    leader: leader.to_owned(),
                    leader_url: leader_url.clone(),
                    ..Assignment::default()
                },
            )
        })
        .collect();
    if ids.is_empty() {
        return out;
    }
    let running: Vec<&String> = config
        .connectors
        .keys()
        .filter(|name| config.target(name) != TargetState::Stopped)
        .collect();
    let mut next = 0;
    for name in &running {
        if let Some(a) = out.get_mut(ids[next % ids.len()]) {
            a.connectors.push((*name).clone());
        }
        next += 1;
    }
    for name in &running {
        let count = config.tasks.get(*name).map_or(0, Vec::len);
        for task in 0..count {
            if let Some(a) = out.get_mut(ids[next % ids.len()]) {
                a.tasks.push(((*name).clone(), task));
            }
            next += 1;
        }
    }
    out
}

/// Every task the assignment of all workers covers, to check nothing is dealt twice.
pub fn assigned_tasks(assignments: &BTreeMap<String, Assignment>) -> BTreeSet<(String, usize)> {
    assignments
        .values()
        .flat_map(|a| a.tasks.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> Configs {
        Configs(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn apply(state: &mut ClusterConfig, record: Record) -> Option<ConfigChange> {
        state.apply(&record.0, record.1.as_deref())
    }

    #[test]
    fn tasks_become_a_connectors_only_when_committed() {
        let mut state = ClusterConfig::default();
        let c = configs(&[("connector.class", "FileStreamSink")]);
        assert_eq!(
            apply(&mut state, connector_record("my-conn", Some(&c))),
            Some(ConfigChange::Structure)
        );
        let tasks = vec![configs(&[("file", "a")]), configs(&[("file", "b")])];
        let records = task_records("my-conn", &tasks);
        for record in &records[..2] {
            assert_eq!(apply(&mut state, record.clone()), None);
        }
        assert!(
            !state.tasks.contains_key("my-conn"),
            "not before the commit"
        );
        assert_eq!(
            apply(&mut state, records[2].clone()),
            Some(ConfigChange::Structure)
        );
        assert_eq!(state.tasks["my-conn"], tasks);
        // The same commit again changes nothing.
        for record in task_records("my-conn", &tasks) {
            apply(&mut state, record);
        }
        assert_eq!(
            apply(&mut state, task_records("my-conn", &tasks)[2].clone()),
            None
        );
        assert_eq!(
            apply(&mut state, connector_record("my-conn", None)),
            Some(ConfigChange::Structure)
        );
        assert!(state.tasks.is_empty() && state.connectors.is_empty());
    }

    #[test]
    fn target_states_change_structure_only_to_and_from_stopped() {
        let mut state = ClusterConfig::default();
        apply(&mut state, connector_record("c", Some(&Configs::new())));
        assert_eq!(
            apply(&mut state, target_record("c", Some(TargetState::Paused))),
            Some(ConfigChange::Target("c".into()))
        );
        assert_eq!(
            apply(&mut state, target_record("c", Some(TargetState::Stopped))),
            Some(ConfigChange::Structure)
        );
        assert_eq!(
            apply(&mut state, target_record("c", Some(TargetState::Stopped))),
            None
        );
        // Kafka's older format: only "state".
        assert_eq!(
            state.apply("target-state-c", Some(br#"{"state":"STARTED"}"#)),
            Some(ConfigChange::Structure)
        );
    }

    #[test]
    fn unreadable_records_are_skipped() {
        let mut state = ClusterConfig::default();
        assert_eq!(state.apply("connector-x", Some(b"not json")), None);
        assert_eq!(state.apply("commit-x", Some(br#"{"tasks":2}"#)), None);
        assert_eq!(state.apply("task-x-notanumber", Some(b"{}")), None);
        assert_eq!(state.apply("something-else", Some(b"{}")), None);
    }

    #[test]
    fn statuses_and_topics_round_trip_through_their_records() {
        let record = StatusRecord::Status {
            connector: "a-b".into(),
            task: Some(3),
            status: Some(Status {
                state: State::Failed,
                worker_id: "w:8083".into(),
                trace: Some("boom".into()),
            }),
        };
        let (key, value) = status_record(&record, 7);
        assert_eq!(key, "status-task-a-b-3");
        assert_eq!(parse_status(&key, value.as_deref()), Some(record));
        let topic = StatusRecord::Topic {
            connector: "c".into(),
            topic: "orders".into(),
            used: true,
        };
        let (key, value) = status_record(&topic, 1);
        assert_eq!(parse_status(&key, value.as_deref()), Some(topic));
    }

    #[test]
    fn offset_keys_are_kafkas_json_arrays() {
        let mut partition = SourcePartition::new();
        partition.insert("filename".into(), "a.txt".into());
        let key = offset_key("c", &partition);
        assert_eq!(key, br#"["c",{"filename":"a.txt"}]"#);
        assert_eq!(parse_offset_key(&key), Some(("c".to_owned(), partition)));
        assert_eq!(parse_offset_key(b"[1]"), None);
    }

    #[test]
    fn the_assignment_deals_every_running_task_once_and_spreads_them() {
        let mut state = ClusterConfig::default();
        for name in ["a", "b", "c"] {
            apply(&mut state, connector_record(name, Some(&Configs::new())));
            for record in task_records(name, &[Configs::new(), Configs::new()]) {
                apply(&mut state, record);
            }
        }
        apply(&mut state, target_record("c", Some(TargetState::Stopped)));
        let members: Vec<(String, WorkerMetadata)> = ["m2", "m1"]
            .iter()
            .map(|id| {
                (
                    (*id).to_owned(),
                    WorkerMetadata {
                        url: format!("http://{id}"),
                    },
                )
            })
            .collect();
        let assignments = assign(&members, "m1", &state);
        let tasks = assigned_tasks(&assignments);
        assert_eq!(
            tasks.len(),
            4,
            "two running connectors of two tasks each: {assignments:?}"
        );
        assert!(!tasks.iter().any(|(name, _)| name == "c"));
        for a in assignments.values() {
            assert_eq!(a.leader_url, "http://m1");
            assert_eq!(a.connectors.len() + a.tasks.len(), 3);
        }
    }
}
