//! What the REST API asks of a worker, as one trait both herders implement: the standalone
//! one (connectors in memory) and the distributed one (connectors in the config topic). The
//! request and answer bodies live here, with Kafka Connect's field names, and so do the
//! operations that are the same in both modes: validation, plugins, statuses, offsets.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{
    ConfigDef, ConfigInfos, ConfigKeyInfo, ConfigType, ConfigValue, Configs, Importance, Validator,
};
use crate::connector::{ConnectError, Connector};
use crate::connector::{ConnectorType, Plugin, Plugins};
use crate::converter::is_converter_class;
use crate::errors::error_handling_def;
use crate::offsets::PartitionOffset;
use crate::status::{State, Status, TargetState};
use crate::transforms::TransformChain;
use crate::worker::{sink_group, Worker};

/// A failed request, with the HTTP status Kafka Connect answers it with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HerderError {
    /// The HTTP status.
    pub status: u16,
    /// What went wrong.
    pub message: String,
}

impl HerderError {
    pub(crate) fn bad_request(message: impl Into<String>) -> HerderError {
        HerderError {
            status: 400,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> HerderError {
        HerderError {
            status: 404,
            message: message.into(),
        }
    }

    pub(crate) fn conflict(message: impl Into<String>) -> HerderError {
        HerderError {
            status: 409,
            message: message.into(),
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> HerderError {
        HerderError {
            status: 500,
            message: message.into(),
        }
    }
}

/// A herder call's outcome.
pub type Result<T> = std::result::Result<T, HerderError>;

/// A task's identity, as the REST API writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskId {
    /// The connector.
    pub connector: String,
    /// The task's number.
    pub task: usize,
}

/// `GET /connectors/{name}`: `{"name", "config", "tasks", "type"}`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorInfo {
    /// The connector's name.
    pub name: String,
    /// Its configuration, as written.
    pub config: BTreeMap<String, String>,
    /// Its tasks.
    pub tasks: Vec<TaskId>,
    /// `source` or `sink`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// One task in `GET /connectors/{name}/tasks`.
#[derive(Debug, Clone, Serialize)]
pub struct TaskInfo {
    /// The task.
    pub id: TaskId,
    /// Its configuration, placeholders kept.
    pub config: BTreeMap<String, String>,
}

/// A task's status in `GET /connectors/{name}/status`.
#[derive(Debug, Clone, Serialize)]
pub struct TaskState {
    /// The task's number.
    pub id: usize,
    /// Its status.
    #[serde(flatten)]
    pub status: Status,
}

/// `GET /connectors/{name}/status`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorStateInfo {
    /// The connector's name.
    pub name: String,
    /// The connector's own status.
    pub connector: Status,
    /// Its tasks' statuses.
    pub tasks: Vec<TaskState>,
    /// `source` or `sink`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// One plugin in `GET /connector-plugins`.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    /// Its class name.
    pub class: String,
    /// `source`, `sink`, `converter`, `transformation` or `predicate`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its version: Runnel's.
    pub version: String,
}

/// The keys every connector takes, as Kafka's `ConnectorConfig` (and `SinkConnectorConfig`).
pub fn connector_def(kind: ConnectorType) -> ConfigDef {
    let common = "Common";
    let mut def = ConfigDef::new()
        .define(
            "name",
            ConfigType::String,
            None,
            Importance::High,
            common,
            "Globally unique name of the connector.",
        )
        .validated(Validator::NonEmpty)
        .define(
            "connector.class",
            ConfigType::String,
            None,
            Importance::High,
            common,
            "The connector's class, or an alias of it (FileStreamSource, JdbcSink, ...).",
        )
        .define(
            "tasks.max",
            ConfigType::Int,
            Some("1"),
            Importance::High,
            common,
            "The most tasks to run.",
        )
        .validated(Validator::Range { min: 1, max: None })
        .define(
            "tasks.max.enforce",
            ConfigType::Boolean,
            Some("true"),
            Importance::Low,
            common,
            "Fail a connector that generates more tasks than tasks.max.",
        )
        .define(
            "key.converter",
            ConfigType::Class,
            None,
            Importance::Low,
            common,
            "The converter of record keys; the worker's when unset.",
        )
        .optional()
        .define(
            "value.converter",
            ConfigType::Class,
            None,
            Importance::Low,
            common,
            "The converter of record values; the worker's when unset.",
        )
        .optional()
        .define(
            "header.converter",
            ConfigType::Class,
            None,
            Importance::Low,
            common,
            "Accepted for compatibility: headers pass through as bytes.",
        )
        .optional()
        .define(
            "config.action.reload",
            ConfigType::String,
            Some("restart"),
            Importance::Low,
            common,
            "What to do when a provider's value changes: none or restart.",
        )
        .validated(Validator::OneOf(&["none", "restart"]));
    if kind == ConnectorType::Sink {
        def = def
            .define(
                "topics",
                ConfigType::List,
                Some(""),
                Importance::High,
                common,
                "The topics to read; this or topics.regex.",
            )
            .define(
                "topics.regex",
                ConfigType::String,
                Some(""),
                Importance::High,
                common,
                "A regular expression of the topics to read; this or topics.",
            )
            .validated(Validator::Regex);
    }
    def = def
        .define(
            "transforms",
            ConfigType::List,
            Some(""),
            Importance::Low,
            "Transforms",
            "Aliases of the transforms to apply, in order.",
        )
        .define(
            "predicates",
            ConfigType::List,
            Some(""),
            Importance::Low,
            "Predicates",
            "Aliases of the predicates transforms may use.",
        );
    def.merged(&error_handling_def(kind == ConnectorType::Sink))
}

/// The errors of keys that depend on each other or on the worker's plugins.
fn cross_checks(kind: ConnectorType, configs: &Configs, values: &mut [ConfigValue]) {
    let mut add = |key: &str, message: String| {
        if let Some(value) = values.iter_mut().find(|v| v.name == key) {
            value.errors.push(message);
        }
    };
    for role in ["key.converter", "value.converter"] {
        if let Some(class) = configs.get(role).map(str::trim).filter(|c| !c.is_empty()) {
            if !is_converter_class(class) {
                add(role, format!("Invalid value {class} for configuration {role}: Class {class} could not be found."));
            }
        }
    }
    if let Some(name) = configs.get("name") {
        if name.chars().any(char::is_control) {
            add("name", format!("Invalid value {name} for configuration name: must not contain control characters"));
        }
    }
    if kind == ConnectorType::Sink {
        let topics = configs.list("topics");
        let regex = configs.get("topics.regex").map(str::trim).unwrap_or("");
        match (topics.is_empty(), regex.is_empty()) {
            (true, true) => {
                let message = "Must configure one of topics or topics.regex".to_owned();
                add("topics", message.clone());
                add("topics.regex", message);
            }
            (false, false) => {
                let message =
                    "topics and topics.regex are mutually exclusive options, but both are set."
                        .to_owned();
                add("topics", message.clone());
                add("topics.regex", message);
            }
            _ => {}
        }
        let dlq = configs
            .get("errors.deadletterqueue.topic.name")
            .map(str::trim)
            .unwrap_or("");
        if !dlq.is_empty() && topics.iter().any(|t| t == dlq) {
            add(
                "errors.deadletterqueue.topic.name",
                format!("The DLQ topic '{dlq}' may not be included in the list of topics the connector consumes"),
            );
        }
    }
}

/// The message Kafka answers an invalid create or update with.
pub(crate) fn invalid_config_message(infos: &ConfigInfos) -> String {
    let errors: Vec<&str> = infos
        .configs
        .iter()
        .flat_map(|c| c.value.errors.iter().map(String::as_str))
        .collect();
    format!(
        "Connector configuration is invalid and contains the following {} error(s):\n{}\nYou can also find the \
         above list of errors at the endpoint `/connector-plugins/{{connectorType}}/config/validate`",
        errors.len(),
        errors.join("\n")
    )
}

/// What the REST API asks of a worker, standalone or distributed: one method per endpoint.
/// The provided methods are the same in both modes.
pub trait ConnectApi: Send + Sync {
    /// The worker that runs this herder's tasks.
    fn worker(&self) -> &Worker;

    /// The plugins the worker has.
    fn plugins(&self) -> &Plugins;

    /// The names of the connectors, sorted.
    fn connector_names(&self) -> Vec<String>;

    /// Where a write request must go: `None` to handle it here, the leader's URL to forward
    /// it to; 409 while the workers rebalance. A standalone worker handles everything.
    fn forward_to(&self) -> Result<Option<String>> {
        Ok(None)
    }

    /// A connector's type and target state; 404 if there is no such connector.
    fn kind_and_target(&self, name: &str) -> Result<(ConnectorType, TargetState)>;

    /// Creates a connector (`POST /connectors`); `409` if it exists.
    fn create(&self, name: &str, configs: Configs, initial: TargetState) -> Result<ConnectorInfo>;

    /// Creates or replaces a connector's configuration (`PUT /connectors/{name}/config`);
    /// true when it created the connector.
    fn put_config(&self, name: &str, configs: Configs) -> Result<(bool, ConnectorInfo)>;

    /// A connector's configuration as written.
    fn config(&self, name: &str) -> Result<Configs>;

    /// A connector's configuration and tasks.
    fn info(&self, name: &str) -> Result<ConnectorInfo>;

    /// The tasks' configurations, placeholders kept.
    fn task_configs(&self, name: &str) -> Result<Vec<TaskInfo>>;

    /// Pauses, resumes or stops a connector.
    fn set_target(&self, name: &str, target: TargetState) -> Result<()>;

    /// Restarts a connector and, as KIP-745 asks, all or only failed tasks. Returns the plan:
    /// the instances restarted are shown RESTARTING.
    fn restart(
        &self,
        name: &str,
        include_tasks: bool,
        only_failed: bool,
    ) -> Result<ConnectorStateInfo>;

    /// Restarts one task.
    fn restart_task(&self, name: &str, task: usize) -> Result<()>;

    /// Deletes a connector; its source offsets stay, as in Kafka.
    fn delete(&self, name: &str) -> Result<()>;

    /// Validates a connector configuration, as `PUT /connector-plugins/{plugin}/config/validate`
    /// does: an error on each key that is wrong.
    fn validate(&self, configs: &Configs) -> Result<ConfigInfos> {
        let class = configs
            .get("connector.class")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                HerderError::bad_request("Connector config contains no connector type")
            })?;
        let plugin = self.find_plugin(class)?;
        let resolved = self.worker().config().providers.resolve(configs);
        let base = connector_def(plugin.kind());
        let mut values = base.validate(&resolved);
        cross_checks(plugin.kind(), &resolved, &mut values);
        let transforms = TransformChain::config_def(&resolved);
        values.extend(transforms.validate(&resolved));
        for e in TransformChain::validate(&resolved) {
            match values.iter_mut().find(|v| v.name == e.key) {
                Some(value) => {
                    if !value.errors.contains(&e.message) {
                        value.errors.push(e.message);
                    }
                }
                None => values.push(ConfigValue {
                    name: e.key,
                    value: None,
                    recommended_values: Vec::new(),
                    errors: vec![e.message],
                    visible: true,
                }),
            }
        }
        let connector = (plugin.connector)();
        let own = connector.config_def();
        values.extend(
            connector
                .validate(&resolved)
                .into_iter()
                .filter(|v| !base.keys().iter().any(|k| k.name == v.name)),
        );
        // What the user wrote is shown, never what a placeholder resolved to.
        for value in &mut values {
            if let Some(raw) = configs.get(&value.name) {
                value.value = Some(raw.to_owned());
            }
        }
        let def = base.merged(&transforms).merged(&own);
        let mut infos = ConfigInfos::new(class, &def, values);
        // Keys of a failed transform alias that no definition covers still count.
        infos.error_count = infos.configs.iter().map(|c| c.value.errors.len()).sum();
        Ok(infos)
    }

    /// The plugin `class` names; 400 naming the plugins there are if none.
    fn find_plugin(&self, class: &str) -> Result<Plugin> {
        self.plugins().find(class).copied().ok_or_else(|| {
            let known: Vec<&str> = self.plugins().all().iter().map(|p| p.class).collect();
            HerderError::bad_request(format!(
                "Failed to find any class that implements Connector and which name matches {class}, available \
                 connectors are: {}",
                known.join(", ")
            ))
        })
    }

    /// Validates `configs` for a create or update; the plugin it names.
    fn checked(&self, configs: &Configs) -> Result<Plugin> {
        let infos = self.validate(configs)?;
        if infos.error_count > 0 {
            return Err(HerderError::bad_request(invalid_config_message(&infos)));
        }
        let class = configs.get("connector.class").unwrap_or_default();
        self.find_plugin(class.trim())
    }

    /// The connector plugins, then the converters, transforms and predicates unless
    /// `connectors_only`.
    fn plugin_list(&self, connectors_only: bool) -> Vec<PluginInfo> {
        let version = env!("CARGO_PKG_VERSION").to_owned();
        let mut list: Vec<PluginInfo> = self
            .plugins()
            .all()
            .iter()
            .map(|p| PluginInfo {
                class: p.class.to_owned(),
                kind: p.kind().name().to_owned(),
                version: version.clone(),
            })
            .collect();
        if !connectors_only {
            let others = crate::converter::converter_classes()
                .into_iter()
                .map(|c| (c, "converter"))
                .chain(crate::transforms::transformation_classes().map(|c| (c, "transformation")))
                .chain(crate::transforms::predicate_classes().map(|c| (c, "predicate")));
            for (class, kind) in others {
                list.push(PluginInfo {
                    class: class.to_owned(),
                    kind: kind.to_owned(),
                    version: version.clone(),
                });
            }
        }
        list
    }

    /// The keys a plugin takes, as `GET /connector-plugins/{plugin}/config` lists them.
    fn plugin_config(&self, class: &str) -> Result<Vec<ConfigKeyInfo>> {
        let plugin = self
            .plugins()
            .find(class)
            .ok_or_else(|| HerderError::not_found(format!("Unknown plugin {class}.")))?;
        let def = connector_def(plugin.kind()).merged(&(plugin.connector)().config_def());
        Ok(def.keys().iter().map(ConfigKeyInfo::from).collect())
    }

    /// Changes some keys of a connector's configuration (`PATCH /connectors/{name}/config`,
    /// KIP-477): a `None` value removes its key.
    fn patch_config(
        &self,
        name: &str,
        patch: BTreeMap<String, Option<String>>,
    ) -> Result<ConnectorInfo> {
        let mut configs = self.config(name)?;
        for (key, value) in patch {
            match value {
                Some(value) => configs.set(key, value),
                None => {
                    configs.0.remove(&key);
                }
            }
        }
        self.put_config(name, configs).map(|(_, info)| info)
    }

    /// A connector's and its tasks' statuses.
    fn status(&self, name: &str) -> Result<ConnectorStateInfo> {
        let (kind, target) = self.kind_and_target(name)?;
        let mut status = self.status_of(name, kind.name());
        if target == TargetState::Stopped {
            // A stopped connector has no instance to report and no tasks (KIP-875).
            status.connector.state = State::Stopped;
            status.connector.trace = None;
            status.tasks.clear();
        } else {
            // Statuses of tasks a smaller or recreated connector no longer has.
            let count = self.task_configs(name)?.len();
            status.tasks.retain(|t| t.id < count);
        }
        Ok(status)
    }

    /// The statuses of `name` and its tasks as the worker's status board has them.
    fn status_of(&self, name: &str, kind: &'static str) -> ConnectorStateInfo {
        let statuses = self.worker().statuses();
        let connector = statuses.get(name, None).unwrap_or(Status {
            state: State::Unassigned,
            worker_id: self.worker().config().worker_id.as_str().to_owned(),
            trace: None,
        });
        ConnectorStateInfo {
            name: name.to_owned(),
            connector,
            tasks: statuses
                .tasks(name)
                .into_iter()
                .map(|(id, status)| TaskState { id, status })
                .collect(),
            kind,
        }
    }

    /// One task's status.
    fn task_status(&self, name: &str, task: usize) -> Result<TaskState> {
        self.kind_and_target(name)?;
        self.worker()
            .statuses()
            .get(name, Some(task))
            .map(|status| TaskState { id: task, status })
            .ok_or_else(|| {
                HerderError::not_found(format!("No status found for task {name}-{task}"))
            })
    }

    /// The topics a connector used (KIP-558).
    fn topics(&self, name: &str) -> Result<Vec<String>> {
        self.kind_and_target(name)?;
        Ok(self.worker().statuses().topics(name))
    }

    /// Forgets the topics a connector used.
    fn reset_topics(&self, name: &str) -> Result<()> {
        self.kind_and_target(name)?;
        self.worker().statuses().reset_topics(name);
        Ok(())
    }

    /// A connector's offsets (KIP-875): source offsets from the offset store, a sink's from
    /// its consumer group.
    fn offsets(&self, name: &str) -> Result<Vec<PartitionOffset>> {
        let kind = self.kind_and_target(name)?.0;
        match kind {
            ConnectorType::Source => Ok(self.worker().offsets().all(name)),
            ConnectorType::Sink => {
                let admin = self.admin()?;
                let listed = self
                    .worker()
                    .runtime()
                    .block_on(admin.list_group_offsets(&sink_group(name)))
                    .map_err(|e| {
                        HerderError::internal(format!("cannot read the offsets of {name}: {e}"))
                    })?;
                Ok(listed
                    .into_iter()
                    .map(|((topic, partition), offset, _)| {
                        sink_offset(&topic, partition, Some(offset))
                    })
                    .collect())
            }
        }
    }

    /// An admin client on the worker's cluster.
    fn admin(&self) -> Result<runnel_client::Admin> {
        let client = runnel_client::ClientConfig::new(self.worker().config().bootstrap.clone());
        self.worker()
            .runtime()
            .block_on(runnel_client::Admin::connect(client))
            .map_err(|e| HerderError::internal(format!("cannot reach the cluster: {e}")))
    }

    /// Alters a stopped connector's offsets (`PATCH /connectors/{name}/offsets`); a `None`
    /// offset removes a partition's. Returns Kafka's success message.
    fn alter_offsets(&self, name: &str, offsets: Vec<PartitionOffset>) -> Result<String> {
        let kind = self.stopped_kind(name)?;
        match kind {
            ConnectorType::Source => {
                self.worker().offsets().commit(name, offsets).map_err(|e| {
                    HerderError::internal(format!("cannot write the offsets of {name}: {e}"))
                })?;
                Ok("The Connect framework-managed offsets for this connector have been altered successfully. However, \
                    if this connector manages offsets externally, they will need to be manually altered in the \
                    system that the connector uses."
                    .to_owned())
            }
            ConnectorType::Sink => {
                let mut alter = Vec::new();
                let mut delete = Vec::new();
                for offset in offsets {
                    let (topic, partition) = sink_partition(&offset.partition)?;
                    match offset.offset {
                        None => delete.push((topic, partition)),
                        Some(o) => {
                            let value = o
                                .get("kafka_offset")
                                .and_then(serde_json::Value::as_i64)
                                .filter(|v| *v >= 0);
                            let value = value.ok_or_else(|| {
                                HerderError::bad_request(
                                    "Sink offsets need a non-negative integer \"kafka_offset\"",
                                )
                            })?;
                            alter.push(((topic, partition), value));
                        }
                    }
                }
                let admin = self.admin()?;
                let group = sink_group(name);
                let runtime = self.worker().runtime();
                if !alter.is_empty() {
                    runtime
                        .block_on(admin.alter_group_offsets(&group, &alter))
                        .map_err(|e| {
                            HerderError::internal(format!(
                                "cannot alter the offsets of {name}: {e}"
                            ))
                        })?;
                }
                if !delete.is_empty() {
                    runtime
                        .block_on(admin.delete_group_offsets(&group, &delete))
                        .map_err(|e| {
                            HerderError::internal(format!("cannot reset offsets of {name}: {e}"))
                        })?;
                }
                Ok("The offsets for this connector have been altered successfully".to_owned())
            }
        }
    }

    /// Resets a stopped connector's offsets (`DELETE /connectors/{name}/offsets`).
    fn reset_offsets(&self, name: &str) -> Result<String> {
        match self.stopped_kind(name)? {
            ConnectorType::Source => {
                self.worker().offsets().reset(name).map_err(|e| {
                    HerderError::internal(format!("cannot reset the offsets of {name}: {e}"))
                })?;
                Ok("The Connect framework-managed offsets for this connector have been reset successfully. However, \
                    if this connector manages offsets externally, they will need to be manually reset in the system \
                    that the connector uses."
                    .to_owned())
            }
            ConnectorType::Sink => {
                let admin = self.admin()?;
                let group = sink_group(name);
                let outcome = self
                    .worker()
                    .runtime()
                    .block_on(admin.delete_groups(std::slice::from_ref(&group)))
                    .map_err(|e| {
                        HerderError::internal(format!("cannot reset the offsets of {name}: {e}"))
                    })?;
                for (_, result) in outcome {
                    if let Err(e) = result {
                        // A group that never committed has nothing to reset.
                        if !e.to_string().contains("GROUP_ID_NOT_FOUND")
                            && !e.to_string().contains("GroupIdNotFound")
                        {
                            return Err(HerderError::internal(format!(
                                "cannot reset the offsets of {name}: {e}"
                            )));
                        }
                    }
                }
                Ok("The offsets for this connector have been reset successfully".to_owned())
            }
        }
    }

    /// The type of `name`, or 400 unless it is STOPPED (offsets change only then).
    fn stopped_kind(&self, name: &str) -> Result<ConnectorType> {
        let (kind, target) = self.kind_and_target(name)?;
        if target != TargetState::Stopped {
            return Err(HerderError::bad_request(
                "Connectors must be in the STOPPED state before their offsets can be modified. This can be done for \
                 the specified connector by issuing a 'PUT' request to the '/connectors/{name}/stop' endpoint",
            ));
        }
        Ok(kind)
    }
}

/// The task configs a running connector generates, as stored: within `tasks.max`, with
/// values copied from resolved placeholders put back to the placeholders.
pub(crate) fn generate_task_configs(
    worker: &Worker,
    connector: &mut dyn Connector,
    raw: &Configs,
) -> std::result::Result<Vec<Configs>, ConnectError> {
    let max_tasks: usize = raw.parsed_or("tasks.max", 1, ConfigType::Int)?;
    let enforce = raw.bool_or("tasks.max.enforce", true)?;
    let mut configs = connector.task_configs(max_tasks.max(1))?;
    if configs.len() > max_tasks {
        if enforce {
            return Err(ConnectError::Failed(format!(
                "the connector generated {} tasks, more than tasks.max={max_tasks}",
                configs.len()
            )));
        }
        configs.truncate(max_tasks);
    }
    let providers = &worker.config().providers;
    let resolved = providers.resolve(raw);
    Ok(configs
        .iter()
        .map(|task| providers.hide_resolved(raw, &resolved, task))
        .collect())
}

/// Runs a call into connector code, turning a panic into a failure of that connector rather
/// than of the worker thread that made the call.
pub(crate) fn guarded<T>(
    call: impl FnOnce() -> std::result::Result<T, ConnectError>,
) -> std::result::Result<T, ConnectError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).unwrap_or_else(|panic| {
        Err(ConnectError::Failed(format!(
            "the connector panicked: {}",
            crate::worker::panic_text(&panic)
        )))
    })
}

/// What a restart (KIP-745) restarts, given the current statuses: whether the connector,
/// which tasks, and the plan to answer with (those shown RESTARTING).
pub(crate) fn restart_plan(
    mut plan: ConnectorStateInfo,
    include_tasks: bool,
    only_failed: bool,
) -> (ConnectorStateInfo, bool, Vec<usize>) {
    let restart_connector = !only_failed || plan.connector.state == State::Failed;
    let restart_tasks: Vec<usize> = plan
        .tasks
        .iter()
        .filter(|t| include_tasks && (!only_failed || t.status.state == State::Failed))
        .map(|t| t.id)
        .collect();
    if restart_connector {
        plan.connector.state = State::Restarting;
        plan.connector.trace = None;
    }
    for task in &mut plan.tasks {
        if restart_tasks.contains(&task.id) {
            task.status.state = State::Restarting;
            task.status.trace = None;
        }
    }
    (plan, restart_connector, restart_tasks)
}

pub(crate) fn not_found(name: &str) -> HerderError {
    HerderError::not_found(format!("Connector {name} not found"))
}

/// `configs` as the connector `name`'s: the name checked, and set as the `name` key unless
/// the configs already say it; 400 if they name another connector.
pub(crate) fn named(name: &str, mut configs: Configs) -> Result<Configs> {
    check_name(name)?;
    match configs.get("name") {
        Some(given) if given != name => Err(HerderError::bad_request(format!(
            "Connector name configuration ({given}) doesn't match connector name in the URL ({name})"
        ))),
        _ => {
            configs.set("name", name);
            Ok(configs)
        }
    }
}

pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(HerderError::bad_request("Connector name is blank"));
    }
    if name.chars().any(char::is_control) {
        return Err(HerderError::bad_request(format!(
            "Connector name {name:?} contains control characters"
        )));
    }
    Ok(())
}

/// A sink's offset as KIP-875 writes it.
fn sink_offset(topic: &str, partition: i32, offset: Option<i64>) -> PartitionOffset {
    let mut key = serde_json::Map::new();
    key.insert("kafka_topic".into(), topic.into());
    key.insert("kafka_partition".into(), partition.into());
    PartitionOffset {
        partition: key,
        offset: offset.map(|o| {
            let mut value = serde_json::Map::new();
            value.insert("kafka_offset".into(), o.into());
            value
        }),
    }
}

fn sink_partition(partition: &serde_json::Map<String, serde_json::Value>) -> Result<(String, i32)> {
    let topic = partition
        .get("kafka_topic")
        .and_then(serde_json::Value::as_str);
    let number = partition
        .get("kafka_partition")
        .and_then(serde_json::Value::as_i64)
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p >= 0);
    match (topic, number) {
        (Some(topic), Some(number)) if !topic.is_empty() => Ok((topic.to_owned(), number)),
        _ => Err(HerderError::bad_request(
            "Sink partitions need a \"kafka_topic\" string and a non-negative \"kafka_partition\" integer",
        )),
    }
}
