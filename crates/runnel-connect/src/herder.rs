//! The standalone herder: the connectors of a worker in one process, kept in memory (their
//! configs come back from the files given on the command line), every operation applied at
//! once to the connector and task instances this worker runs.
//!
//! A connector's stored configuration is what the user wrote, placeholders included; it is
//! resolved only to start the connector or a task. Task configurations are stored with any
//! value the connector copied from a resolved placeholder put back to the placeholder.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::api::{
    generate_task_configs, named, not_found, restart_plan, ConnectApi, ConnectorInfo,
    ConnectorStateInfo, HerderError, Result, TaskId, TaskInfo,
};
use crate::config::Configs;
use crate::connector::{
    ConnectError, Connector, ConnectorContext, ConnectorType, Plugin, Plugins, TaskFactory,
};
use crate::status::{State, TargetState};
use crate::worker::{TaskHandle, TaskSpec, Worker};

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
                    if entry.connector.is_none() {
                        return; // Its task configs failed; its status says why.
                    }
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
        match crate::api::guarded(|| connector.start(&resolved, context)) {
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
        let connector = entry
            .connector
            .as_mut()
            .ok_or_else(|| ConnectError::failed("the connector is not running"))?;
        crate::api::guarded(|| generate_task_configs(&self.worker, connector.as_mut(), &entry.raw))
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
        crate::worker::stop_all(std::mem::take(&mut entry.tasks).into_values().collect());
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

impl ConnectApi for Herder {
    /// The worker.
    fn worker(&self) -> &Worker {
        &self.worker
    }

    /// The plugins.
    fn plugins(&self) -> &Plugins {
        &self.plugins
    }

    /// The names of the connectors, sorted.
    fn connector_names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Creates a connector (`POST /connectors`). `409` if it exists.
    fn create(&self, name: &str, configs: Configs, initial: TargetState) -> Result<ConnectorInfo> {
        let configs = named(name, configs)?;
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

    /// Creates or replaces a connector's configuration (`PUT /connectors/{name}/config`);
    /// true when it created the connector.
    fn put_config(&self, name: &str, configs: Configs) -> Result<(bool, ConnectorInfo)> {
        let configs = named(name, configs)?;
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

    /// A connector's configuration as written.
    fn config(&self, name: &str) -> Result<Configs> {
        self.with_entry(name, |_, entry| entry.raw.clone())
    }

    /// A connector's configuration and tasks.
    fn info(&self, name: &str) -> Result<ConnectorInfo> {
        self.with_entry(name, |herder, entry| herder.info_of(name, entry))
    }

    /// The tasks' configurations, placeholders kept.
    fn task_configs(&self, name: &str) -> Result<Vec<TaskInfo>> {
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
    fn set_target(&self, name: &str, target: TargetState) -> Result<()> {
        self.with_entry(name, |herder, entry| {
            if entry.target != target {
                entry.target = target;
                herder.apply_target(name, entry);
            }
        })
    }

    /// Restarts a connector and, as KIP-745 asks, all or only failed tasks. Returns the plan
    /// (instances restarted shown RESTARTING) when tasks were included or `only_failed` set.
    fn restart(
        &self,
        name: &str,
        include_tasks: bool,
        only_failed: bool,
    ) -> Result<ConnectorStateInfo> {
        let mut connectors = self.lock();
        let entry = connectors.get_mut(name).ok_or_else(|| not_found(name))?;
        let (plan, restart_connector, restart_tasks) = restart_plan(
            self.status_of(name, entry.plugin.kind().name()),
            include_tasks,
            only_failed,
        );
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
    fn restart_task(&self, name: &str, task: usize) -> Result<()> {
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
    fn delete(&self, name: &str) -> Result<()> {
        let mut connectors = self.lock();
        let mut entry = connectors.remove(name).ok_or_else(|| not_found(name))?;
        self.shut_down(name, &mut entry);
        self.worker.statuses().remove(name);
        self.worker.statuses().reset_topics(name);
        Ok(())
    }

    fn kind_and_target(&self, name: &str) -> Result<(ConnectorType, TargetState)> {
        self.with_entry(name, |_, entry| (entry.plugin.kind(), entry.target))
    }
}
