//! The herder: the connectors a worker runs, what users asked of each (its configuration and
//! target state), and what each is doing. Every REST call is one method here; the REST
//! layer only translates HTTP.
//!
//! A connector's stored configuration is what the user wrote, placeholders included; it is
//! resolved only to start the connector or a task. Task configurations are stored with any
//! value the connector copied from a resolved placeholder put back to the placeholder.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use serde::Serialize;

use crate::config::{
    ConfigDef, ConfigInfos, ConfigKeyInfo, ConfigType, ConfigValue, Configs, Importance, Validator,
};
use crate::connector::{
    ConnectError, Connector, ConnectorContext, ConnectorType, Plugin, Plugins, TaskFactory,
};
use crate::converter::is_converter_class;
use crate::errors::error_handling_def;
use crate::offsets::PartitionOffset;
use crate::status::{State, Status, TargetState};
use crate::transforms::TransformChain;
use crate::worker::{sink_group, TaskHandle, TaskSpec, Worker};

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
    fn bad_request(message: impl Into<String>) -> HerderError {
        HerderError {
            status: 400,
            message: message.into(),
        }
    }

    fn not_found(message: impl Into<String>) -> HerderError {
        HerderError {
            status: 404,
            message: message.into(),
        }
    }

    fn conflict(message: impl Into<String>) -> HerderError {
        HerderError {
            status: 409,
            message: message.into(),
        }
    }

    fn internal(message: impl Into<String>) -> HerderError {
        HerderError {
            status: 500,
            message: message.into(),
        }
    }
}

type Result<T> = std::result::Result<T, HerderError>;

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

/// A connector the worker knows.
struct Entry {
    raw: Configs,
    plugin: Plugin,
    target: TargetState,
    /// As shown by the REST API: placeholders kept.
    task_configs: Vec<Configs>,
    connector: Option<Box<dyn Connector>>,
    tasks: BTreeMap<usize, TaskHandle>,
}

/// The standalone herder: one worker, connectors in memory (their configs come back from
/// the files given on the command line), offsets in the worker's offset store.
pub struct Herder {
    worker: Worker,
    plugins: Plugins,
    connectors: Mutex<BTreeMap<String, Entry>>,
    reconfigure: Mutex<mpsc::Sender<String>>,
}

impl std::fmt::Debug for Herder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Herder")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
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
fn invalid_config_message(infos: &ConfigInfos) -> String {
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

impl Herder {
    /// A herder running connectors on `worker`, choosing among `plugins`.
    pub fn new(worker: Worker, plugins: Plugins) -> Arc<Herder> {
        let (sender, receiver) = mpsc::channel::<String>();
        let herder = Arc::new(Herder {
            worker,
            plugins,
            connectors: Mutex::new(BTreeMap::new()),
            reconfigure: Mutex::new(sender),
        });
        let weak: Weak<Herder> = Arc::downgrade(&herder);
        let spawned = std::thread::Builder::new()
            .name("connect-reconfigure".into())
            .spawn(move || {
                while let Ok(name) = receiver.recv() {
                    match weak.upgrade() {
                        Some(herder) => herder.reconfigure_tasks(&name),
                        None => break,
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the reconfiguration thread");
        }
        herder
    }

    /// The worker.
    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    /// The plugins.
    pub fn plugins(&self) -> &Plugins {
        &self.plugins
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.connectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn worker_id(&self) -> &str {
        &self.worker.config().worker_id
    }

    fn set_connector_status(&self, name: &str, state: State, trace: Option<String>) {
        self.worker
            .statuses()
            .set(name, None, state, self.worker_id(), trace);
    }

    /// The names of the connectors, sorted.
    pub fn connector_names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Validates a connector configuration, as `PUT /connector-plugins/{plugin}/config/validate`
    /// does: an error on each key that is wrong.
    pub fn validate(&self, configs: &Configs) -> Result<ConfigInfos> {
        let class = configs
            .get("connector.class")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                HerderError::bad_request("Connector config contains no connector type")
            })?;
        let plugin = self.find_plugin(class)?;
        let resolved = self.worker.config().providers.resolve(configs);
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

    fn find_plugin(&self, class: &str) -> Result<Plugin> {
        self.plugins.find(class).copied().ok_or_else(|| {
            let known: Vec<&str> = self.plugins.all().iter().map(|p| p.class).collect();
            HerderError::bad_request(format!(
                "Failed to find any class that implements Connector and which name matches {class}, available \
                 connectors are: {}",
                known.join(", ")
            ))
        })
    }

    /// The connector plugins, then the converters, transforms and predicates unless
    /// `connectors_only`.
    pub fn plugin_list(&self, connectors_only: bool) -> Vec<PluginInfo> {
        let version = env!("CARGO_PKG_VERSION").to_owned();
        let mut list: Vec<PluginInfo> = self
            .plugins
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
    pub fn plugin_config(&self, class: &str) -> Result<Vec<ConfigKeyInfo>> {
        let plugin = self
            .plugins
            .find(class)
            .ok_or_else(|| HerderError::not_found(format!("Unknown plugin {class}.")))?;
        let def = connector_def(plugin.kind()).merged(&(plugin.connector)().config_def());
        Ok(def.keys().iter().map(ConfigKeyInfo::from).collect())
    }

    /// Creates a connector (`POST /connectors`). `409` if it exists.
    pub fn create(
        &self,
        name: &str,
        mut configs: Configs,
        initial: TargetState,
    ) -> Result<ConnectorInfo> {
        check_name(name)?;
        match configs.get("name") {
            Some(given) if given != name => {
                return Err(HerderError::bad_request(format!(
                    "Connector name configuration ({given}) doesn't match connector name in the URL ({name})"
                )))
            }
            _ => configs.set("name", name),
        }
        if self.lock().contains_key(name) {
            return Err(HerderError::conflict(format!(
                "Connector {name} already exists"
            )));
        }
        let plugin = self.checked(&configs)?;
        let mut connectors = self.lock();
        if connectors.contains_key(name) {
            return Err(HerderError::conflict(format!(
                "Connector {name} already exists"
            )));
        }
        let mut entry = Entry {
            raw: configs,
            plugin,
            target: initial,
            task_configs: Vec::new(),
            connector: None,
            tasks: BTreeMap::new(),
        };
        self.apply_target(name, &mut entry);
        let info = self.info_of(name, &entry);
        connectors.insert(name.to_owned(), entry);
        Ok(info)
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

    /// Creates or replaces a connector's configuration (`PUT /connectors/{name}/config`);
    /// true when it created the connector.
    pub fn put_config(&self, name: &str, mut configs: Configs) -> Result<(bool, ConnectorInfo)> {
        check_name(name)?;
        match configs.get("name") {
            Some(given) if given != name => {
                return Err(HerderError::bad_request(format!(
                    "Connector name configuration ({given}) doesn't match connector name in the URL ({name})"
                )))
            }
            _ => configs.set("name", name),
        }
        let plugin = self.checked(&configs)?;
        let mut connectors = self.lock();
        match connectors.get_mut(name) {
            Some(entry) => {
                if entry.plugin.kind() != plugin.kind() {
                    return Err(HerderError::bad_request(format!(
                        "Connector {name} is a {} connector; it cannot become a {} connector",
                        entry.plugin.kind().name(),
                        plugin.kind().name()
                    )));
                }
                self.shut_down(name, entry);
                entry.raw = configs;
                entry.plugin = plugin;
                self.apply_target(name, entry);
                Ok((false, self.info_of(name, entry)))
            }
            None => {
                drop(connectors);
                self.create(name, configs, TargetState::Started)
                    .map(|info| (true, info))
            }
        }
    }

    /// Changes some keys of a connector's configuration (`PATCH /connectors/{name}/config`,
    /// KIP-477): a `None` value removes its key.
    pub fn patch_config(
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

    /// A connector's configuration as written.
    pub fn config(&self, name: &str) -> Result<Configs> {
        self.with_entry(name, |_, entry| entry.raw.clone())
    }

    /// A connector's configuration and tasks.
    pub fn info(&self, name: &str) -> Result<ConnectorInfo> {
        self.with_entry(name, |herder, entry| herder.info_of(name, entry))
    }

    fn with_entry<T>(&self, name: &str, f: impl FnOnce(&Herder, &mut Entry) -> T) -> Result<T> {
        let mut connectors = self.lock();
        let entry = connectors.get_mut(name).ok_or_else(|| not_found(name))?;
        Ok(f(self, entry))
    }

    fn info_of(&self, name: &str, entry: &Entry) -> ConnectorInfo {
        ConnectorInfo {
            name: name.to_owned(),
            config: entry.raw.0.clone(),
            tasks: (0..entry.task_configs.len())
                .map(|task| TaskId {
                    connector: name.to_owned(),
                    task,
                })
                .collect(),
            kind: entry.plugin.kind().name(),
        }
    }

    /// A connector's and its tasks' statuses.
    pub fn status(&self, name: &str) -> Result<ConnectorStateInfo> {
        let kind = self.with_entry(name, |_, entry| entry.plugin.kind().name())?;
        Ok(self.status_of(name, kind))
    }

    fn status_of(&self, name: &str, kind: &'static str) -> ConnectorStateInfo {
        let statuses = self.worker.statuses();
        let connector = statuses.get(name, None).unwrap_or(Status {
            state: State::Unassigned,
            worker_id: self.worker_id().to_owned(),
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
    pub fn task_status(&self, name: &str, task: usize) -> Result<TaskState> {
        self.with_entry(name, |_, _| ())?;
        self.worker
            .statuses()
            .get(name, Some(task))
            .map(|status| TaskState { id: task, status })
            .ok_or_else(|| {
                HerderError::not_found(format!("No status found for task {name}-{task}"))
            })
    }

    /// The tasks' configurations, placeholders kept.
    pub fn task_configs(&self, name: &str) -> Result<Vec<TaskInfo>> {
        self.with_entry(name, |_, entry| {
            entry
                .task_configs
                .iter()
                .enumerate()
                .map(|(task, config)| TaskInfo {
                    id: TaskId {
                        connector: name.to_owned(),
                        task,
                    },
                    config: config.0.clone(),
                })
                .collect()
        })
    }

    /// Pauses, resumes or stops a connector.
    pub fn set_target(&self, name: &str, target: TargetState) -> Result<()> {
        self.with_entry(name, |herder, entry| {
            if entry.target != target {
                entry.target = target;
                herder.apply_target(name, entry);
            }
        })
    }

    /// Restarts a connector and, as KIP-745 asks, all or only failed tasks. Returns the plan
    /// (instances restarted shown RESTARTING) when tasks were included or `only_failed` set.
    pub fn restart(
        &self,
        name: &str,
        include_tasks: bool,
        only_failed: bool,
    ) -> Result<ConnectorStateInfo> {
        let mut connectors = self.lock();
        let entry = connectors.get_mut(name).ok_or_else(|| not_found(name))?;
        let mut plan = self.status_of(name, entry.plugin.kind().name());
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
        if entry.target == TargetState::Stopped {
            return Ok(plan);
        }
        if restart_connector {
            if let Some(mut connector) = entry.connector.take() {
                connector.stop();
            }
            self.start_connector(name, entry);
        }
        for task in restart_tasks {
            if let Some(handle) = entry.tasks.remove(&task) {
                handle.stop();
            }
            self.start_task(name, entry, task);
        }
        if entry.tasks.is_empty() && entry.connector.is_some() {
            self.generate_and_start_tasks(name, entry);
        }
        Ok(plan)
    }

    /// Restarts one task.
    pub fn restart_task(&self, name: &str, task: usize) -> Result<()> {
        let mut connectors = self.lock();
        let entry = connectors.get_mut(name).ok_or_else(|| not_found(name))?;
        if task >= entry.task_configs.len() {
            return Err(HerderError::not_found(format!(
                "Task {name}-{task} not found"
            )));
        }
        if let Some(handle) = entry.tasks.remove(&task) {
            handle.stop();
        }
        self.start_task(name, entry, task);
        Ok(())
    }

    /// Deletes a connector; its source offsets stay, as in Kafka.
    pub fn delete(&self, name: &str) -> Result<()> {
        let mut connectors = self.lock();
        let mut entry = connectors.remove(name).ok_or_else(|| not_found(name))?;
        self.shut_down(name, &mut entry);
        self.worker.statuses().remove(name);
        self.worker.statuses().reset_topics(name);
        Ok(())
    }

    /// The topics a connector used (KIP-558).
    pub fn topics(&self, name: &str) -> Result<Vec<String>> {
        self.with_entry(name, |_, _| ())?;
        Ok(self.worker.statuses().topics(name))
    }

    /// Forgets the topics a connector used.
    pub fn reset_topics(&self, name: &str) -> Result<()> {
        self.with_entry(name, |_, _| ())?;
        self.worker.statuses().reset_topics(name);
        Ok(())
    }

    /// A connector's offsets (KIP-875): source offsets from the offset store, a sink's from
    /// its consumer group.
    pub fn offsets(&self, name: &str) -> Result<Vec<PartitionOffset>> {
        let kind = self.with_entry(name, |_, entry| entry.plugin.kind())?;
        match kind {
            ConnectorType::Source => Ok(self.worker.offsets().all(name)),
            ConnectorType::Sink => {
                let admin = self.admin()?;
                let listed = self
                    .worker
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

    fn admin(&self) -> Result<runnel_client::Admin> {
        let client = runnel_client::ClientConfig::new(self.worker.config().bootstrap.clone());
        self.worker
            .runtime()
            .block_on(runnel_client::Admin::connect(client))
            .map_err(|e| HerderError::internal(format!("cannot reach the cluster: {e}")))
    }

    /// Alters a stopped connector's offsets (`PATCH /connectors/{name}/offsets`); a `None`
    /// offset removes a partition's. Returns Kafka's success message.
    pub fn alter_offsets(&self, name: &str, offsets: Vec<PartitionOffset>) -> Result<String> {
        let kind = self.stopped_kind(name)?;
        match kind {
            ConnectorType::Source => {
                self.worker.offsets().commit(name, offsets).map_err(|e| {
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
                let runtime = self.worker.runtime();
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
    pub fn reset_offsets(&self, name: &str) -> Result<String> {
        match self.stopped_kind(name)? {
            ConnectorType::Source => {
                self.worker.offsets().reset(name).map_err(|e| {
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
                    .worker
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

    fn stopped_kind(&self, name: &str) -> Result<ConnectorType> {
        let (target, kind) =
            self.with_entry(name, |_, entry| (entry.target, entry.plugin.kind()))?;
        if target != TargetState::Stopped {
            return Err(HerderError::bad_request(
                "Connectors must be in the STOPPED state before their offsets can be modified. This can be done for \
                 the specified connector by issuing a 'PUT' request to the '/connectors/{name}/stop' endpoint",
            ));
        }
        Ok(kind)
    }

    /// Stops every connector, for a clean exit.
    pub fn shutdown(&self) {
        let mut connectors = self.lock();
        let names: Vec<String> = connectors.keys().cloned().collect();
        for name in names {
            if let Some(entry) = connectors.get_mut(&name) {
                self.shut_down(&name, entry);
            }
        }
    }

    /// Makes the running instances match the entry's target state.
    fn apply_target(&self, name: &str, entry: &mut Entry) {
        match entry.target {
            TargetState::Stopped => {
                self.shut_down(name, entry);
                entry.task_configs.clear();
                self.set_connector_status(name, State::Stopped, None);
            }
            target => {
                if entry.connector.is_none() {
                    self.start_connector(name, entry);
                }
                if entry.connector.is_none() {
                    return; // It failed to start; its status says why.
                }
                if entry.tasks.is_empty() {
                    self.generate_and_start_tasks(name, entry);
                } else {
                    for handle in entry.tasks.values() {
                        handle.control.set_target(target);
                    }
                }
                let state = if target == TargetState::Paused {
                    State::Paused
                } else {
                    State::Running
                };
                self.set_connector_status(name, state, None);
            }
        }
    }

    fn start_connector(&self, name: &str, entry: &mut Entry) {
        let resolved = self.worker.config().providers.resolve(&entry.raw);
        let mut connector = (entry.plugin.connector)();
        let sender = self
            .reconfigure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let sender = Mutex::new(sender);
        let connector_name = name.to_owned();
        let context = ConnectorContext::new(Arc::new(move || {
            let _ = sender
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .send(connector_name.clone());
        }));
        match connector.start(&resolved, context) {
            Ok(()) => {
                entry.connector = Some(connector);
                let state = if entry.target == TargetState::Paused {
                    State::Paused
                } else {
                    State::Running
                };
                self.set_connector_status(name, state, None);
            }
            Err(e) => {
                tracing::error!(connector = name, error = %e, "connector failed to start");
                self.set_connector_status(name, State::Failed, Some(e.to_string()));
            }
        }
    }

    /// Asks the connector for task configs and starts them.
    fn generate_and_start_tasks(&self, name: &str, entry: &mut Entry) {
        match self.generate_task_configs(entry) {
            Ok(configs) => {
                entry.task_configs = configs;
                self.worker.statuses().remove_tasks_from(name, 0);
                for task in 0..entry.task_configs.len() {
                    self.start_task(name, entry, task);
                }
            }
            Err(e) => {
                tracing::error!(connector = name, error = %e, "connector failed to generate task configs");
                self.set_connector_status(name, State::Failed, Some(e.to_string()));
                if let Some(mut connector) = entry.connector.take() {
                    connector.stop();
                }
            }
        }
    }

    fn generate_task_configs(
        &self,
        entry: &mut Entry,
    ) -> std::result::Result<Vec<Configs>, ConnectError> {
        let max_tasks: usize = entry.raw.parsed_or("tasks.max", 1, ConfigType::Int)?;
        let enforce = entry.raw.bool_or("tasks.max.enforce", true)?;
        let connector = entry
            .connector
            .as_mut()
            .ok_or_else(|| ConnectError::failed("the connector is not running"))?;
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
        let providers = &self.worker.config().providers;
        let resolved = providers.resolve(&entry.raw);
        Ok(configs
            .iter()
            .map(|task| providers.hide_resolved(&entry.raw, &resolved, task))
            .collect())
    }

    fn start_task(&self, name: &str, entry: &mut Entry, task: usize) {
        let Some(shown) = entry.task_configs.get(task) else {
            return;
        };
        let providers = &self.worker.config().providers;
        let spec = TaskSpec {
            connector: name.to_owned(),
            task,
            connector_configs: providers.resolve(&entry.raw),
            task_configs: providers.resolve(shown),
        };
        let handle = match entry.plugin.task {
            TaskFactory::Source(new) => self.worker.start_source(spec, new(), entry.target),
            TaskFactory::Sink(new) => self.worker.start_sink(spec, new(), entry.target),
        };
        entry.tasks.insert(task, handle);
    }

    /// Stops the tasks, then the connector instance.
    fn shut_down(&self, name: &str, entry: &mut Entry) {
        for (_, handle) in std::mem::take(&mut entry.tasks) {
            handle.stop();
        }
        self.worker.statuses().remove_tasks_from(name, 0);
        if let Some(mut connector) = entry.connector.take() {
            connector.stop();
        }
    }

    /// The connector asked for new task configs: restart its tasks if they changed.
    fn reconfigure_tasks(&self, name: &str) {
        let mut connectors = self.lock();
        let Some(entry) = connectors.get_mut(name) else {
            return;
        };
        if entry.target == TargetState::Stopped || entry.connector.is_none() {
            return;
        }
        match self.generate_task_configs(entry) {
            Ok(configs) if configs == entry.task_configs => {}
            Ok(configs) => {
                for (_, handle) in std::mem::take(&mut entry.tasks) {
                    handle.stop();
                }
                self.worker.statuses().remove_tasks_from(name, 0);
                entry.task_configs = configs;
                for task in 0..entry.task_configs.len() {
                    self.start_task(name, entry, task);
                }
            }
            Err(e) => self.set_connector_status(name, State::Failed, Some(e.to_string())),
        }
    }
}

fn not_found(name: &str) -> HerderError {
    HerderError::not_found(format!("Connector {name} not found"))
}

fn check_name(name: &str) -> Result<()> {
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
