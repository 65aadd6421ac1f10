//! Distributed workers, as Kafka Connect's: workers of one `group.id` join a group through
//! the broker's group protocol (protocol type `connect`), and its leader deals the
//! connectors and tasks among them. Connector configs, target states and task configs live
//! in the config topic, statuses in the status topic, source offsets in the offsets topic;
//! every worker follows all three, so any worker answers reads.
//!
//! Writes go through the leader: a worker that is not the leader forwards the request to
//! the leader's REST API, and answers 409 while the group rebalances, as Kafka does. The
//! leader writes to the config topic and reads it back before answering, so that what it
//! answers is what every worker will apply.
//!
//! Rebalances are eager: on every rebalance each worker stops what it runs, then starts
//! what it is assigned. A connector's instance runs on one worker, which writes its task
//! configs to the config topic when they change; that change makes the group rebalance so
//! that the new tasks are dealt out. A worker that dies is dropped from the group after its
//! session timeout, and its connectors and tasks go to the others.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use runnel_client::{Admin, ClientConfig, Cluster, GroupMember, IsolationLevel, MembershipConfig};

use crate::api::{
    check_name, generate_task_configs, named, not_found, restart_plan, ConnectApi, ConnectorInfo,
    ConnectorStateInfo, HerderError, Result, TaskId, TaskInfo,
};
use crate::cluster_state::{
    assign, connector_record, parse_status, restart_record, restart_task_record, status_record,
    target_record, task_records, Assignment, ClusterConfig, ConfigChange, Record, WorkerMetadata,
};
use crate::config::Configs;
use crate::connector::{
    ConnectError, Connector, ConnectorContext, ConnectorType, Plugin, Plugins, TaskFactory,
};
use crate::offsets::TopicOffsetStore;
use crate::rest::{router, ServerInfo};
use crate::standalone::{worker_config, StartError};
use crate::status::{State, TargetState};
use crate::topic_log::TopicLog;
use crate::worker::{TaskHandle, TaskSpec, Worker};

/// How to run a distributed worker.
#[derive(Debug, Clone)]
pub struct DistributedOptions {
    /// The cluster.
    pub bootstrap: String,
    /// The workers' group (`group.id`).
    pub group_id: String,
    /// Where the REST API listens.
    pub rest_listen: SocketAddr,
    /// The URL other workers reach this one's REST API at (`rest.advertised.*`); the
    /// listen address by default.
    pub advertised_url: Option<String>,
    /// `config.storage.topic`.
    pub config_topic: String,
    /// `offset.storage.topic`.
    pub offsets_topic: String,
    /// `status.storage.topic`.
    pub status_topic: String,
    /// The replication factor of the three topics when the worker creates them (capped at
    /// the number of brokers).
    pub replication_factor: i16,
    /// How long the group waits for a silent worker before dealing its work to others.
    pub session_timeout: Duration,
    /// The worker's properties (converters, `offset.flush.interval.ms`, ...).
    pub worker_properties: Configs,
}

const PROTOCOL_TYPE: &str = "connect";
/// Runnel's assignment format (JSON); Java workers cannot share a group with Runnel's.
const PROTOCOL: &str = "runnel-eager-v1";
const OFFSETS_PARTITIONS: i32 = 25;
const STATUS_PARTITIONS: i32 = 5;

/// Where the group stands, as REST requests need to know.
#[derive(Debug, Default)]
struct GroupView {
    /// Between a join and the end of the sync.
    rebalancing: bool,
    is_leader: bool,
    leader_url: String,
    generation: i32,
}

impl GroupView {
    /// Where a write goes: here (`None`) when this worker leads, else the leader; 409 while
    /// the group rebalances or before the first assignment names a leader.
    fn route(&self) -> Result<Option<String>> {
        if self.rebalancing || self.leader_url.is_empty() {
            return Err(rebalancing());
        }
        Ok((!self.is_leader).then(|| self.leader_url.clone()))
    }
}

/// What this worker runs.
#[derive(Default)]
struct Local {
    assignment: Assignment,
    connectors: BTreeMap<String, Box<dyn Connector>>,
    tasks: BTreeMap<(String, usize), TaskHandle>,
}

/// A distributed worker's herder.
pub struct DistributedHerder {
    worker: Worker,
    plugins: Plugins,
    config: Arc<Mutex<ClusterConfig>>,
    config_log: TopicLog,
    view: Mutex<GroupView>,
    local: Mutex<Local>,
    rejoin: tokio::sync::Notify,
    reconfigure: Mutex<std::sync::mpsc::Sender<String>>,
    /// Held by the leader through each write's check and record, so that two requests
    /// creating one connector cannot both find it absent.
    writes: Mutex<()>,
}

impl std::fmt::Debug for DistributedHerder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistributedHerder")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

/// Whether a heartbeat's error means this member must join again: the group rebalances,
/// or no longer knows this member or generation. Others (a coordinator moving, a lost
/// connection) are retried at the next heartbeat.
fn must_rejoin(error: &runnel_client::ClientError) -> bool {
    use kafka_protocol::error::ResponseError;
    matches!(
        error,
        runnel_client::ClientError::Broker {
            code: ResponseError::RebalanceInProgress
                | ResponseError::IllegalGeneration
                | ResponseError::UnknownMemberId
                | ResponseError::FencedInstanceId,
            ..
        }
    )
}

fn rebalancing() -> HerderError {
    HerderError {
        status: 409,
        message:
            "Cannot complete request because of a conflicting operation (e.g. worker rebalance)"
                .to_owned(),
    }
}

impl DistributedHerder {
    fn config(&self) -> MutexGuard<'_, ClusterConfig> {
        self.config.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn view(&self) -> MutexGuard<'_, GroupView> {
        self.view.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn local(&self) -> MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn worker_id(&self) -> String {
        self.worker.config().worker_id.clone()
    }

    /// Writes config records and waits until this worker has read them back.
    fn write(&self, records: Vec<Record>) -> Result<()> {
        let records = records
            .into_iter()
            .map(|(k, v)| (k.into_bytes(), v))
            .collect();
        let runtime = self.worker.runtime();
        runtime
            .block_on(async {
                self.config_log.write(records).await?;
                self.config_log.read_to_end().await
            })
            .map_err(|e| HerderError {
                status: 500,
                message: format!("cannot write to the config topic: {e}"),
            })
    }

    /// Only the leader writes; anything else is forwarded before it gets here.
    /// Only the leader writes (anything else was forwarded before it got here); the guard
    /// serializes the leader's writes.
    fn require_leader(&self) -> Result<MutexGuard<'_, ()>> {
        let writing = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        let view = self.view();
        if view.rebalancing || !view.is_leader {
            return Err(rebalancing());
        }
        Ok(writing)
    }

    fn plugin_of(&self, configs: &Configs) -> Result<Plugin> {
        let class = configs
            .get("connector.class")
            .unwrap_or_default()
            .trim()
            .to_owned();
        self.find_plugin(&class)
    }

    fn info_of(&self, name: &str, config: &ClusterConfig) -> Result<ConnectorInfo> {
        let configs = config.connectors.get(name).ok_or_else(|| not_found(name))?;
        let kind = self.plugin_of(configs)?.kind();
        let tasks = match config.target(name) {
            TargetState::Stopped => 0,
            _ => config.tasks.get(name).map_or(0, Vec::len),
        };
        Ok(ConnectorInfo {
            name: name.to_owned(),
            config: configs.0.clone(),
            tasks: (0..tasks)
                .map(|task| TaskId {
                    connector: name.to_owned(),
                    task,
                })
                .collect(),
            kind: kind.name(),
        })
    }

    // --- Running what is assigned -------------------------------------------------------

    /// Stops everything this worker runs (eager rebalancing), marking it unassigned.
    fn stop_all(&self) {
        let mut local = self.local();
        let worker_id = self.worker_id();
        let tasks = std::mem::take(&mut local.tasks);
        let ids: Vec<(String, usize)> = tasks.keys().cloned().collect();
        crate::worker::stop_all(tasks.into_values().collect());
        for (name, task) in ids {
            self.worker
                .statuses()
                .set(&name, Some(task), State::Unassigned, &worker_id, None);
        }
        for (name, mut connector) in std::mem::take(&mut local.connectors) {
            connector.stop();
            self.worker
                .statuses()
                .set(&name, None, State::Unassigned, &worker_id, None);
        }
        local.assignment = Assignment::default();
    }

    /// Starts what `assignment` gives this worker.
    fn start_assignment(&self, assignment: Assignment) {
        let mut local = self.local();
        local.assignment = assignment.clone();
        for name in &assignment.connectors {
            self.start_connector(&mut local, name);
        }
        for (name, task) in &assignment.tasks {
            self.start_task(&mut local, name, *task);
        }
    }

    fn start_connector(&self, local: &mut Local, name: &str) {
        let (raw, target) = {
            let config = self.config();
            match config.connectors.get(name) {
                Some(raw) => (raw.clone(), config.target(name)),
                None => return,
            }
        };
        let worker_id = self.worker_id();
        let plugin = match self.plugin_of(&raw) {
            Ok(plugin) => plugin,
            Err(e) => {
                self.worker
                    .statuses()
                    .set(name, None, State::Failed, &worker_id, Some(e.message));
                return;
            }
        };
        let resolved = self.worker.config().providers.resolve(&raw);
        let mut connector = (plugin.connector)();
        let sender = Mutex::new(
            self.reconfigure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        );
        let connector_name = name.to_owned();
        let context = ConnectorContext::new(Arc::new(move || {
            let _ = sender
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .send(connector_name.clone());
        }));
        if let Err(e) = crate::api::guarded(|| connector.start(&resolved, context)) {
            self.worker
                .statuses()
                .set(name, None, State::Failed, &worker_id, Some(e.to_string()));
            return;
        }
        let state = if target == TargetState::Paused {
            State::Paused
        } else {
            State::Running
        };
        self.worker
            .statuses()
            .set(name, None, state, &worker_id, None);
        local.connectors.insert(name.to_owned(), connector);
        self.publish_task_configs(local, name);
    }

    /// Asks the connector running here for task configs, and writes them if they changed.
    /// The write makes every worker rebalance, which deals the new tasks out.
    fn publish_task_configs(&self, local: &mut Local, name: &str) {
        let Some(raw) = self.config().connectors.get(name).cloned() else {
            return;
        };
        let Some(connector) = local.connectors.get_mut(name) else {
            return;
        };
        let generated =
            crate::api::guarded(|| generate_task_configs(&self.worker, connector.as_mut(), &raw));
        match generated {
            Ok(tasks) => {
                let current = self.config().tasks.get(name).cloned().unwrap_or_default();
                if tasks != current {
                    let records = task_records(name, &tasks)
                        .into_iter()
                        .map(|(k, v)| (k.into_bytes(), v))
                        .collect();
                    if let Err(e) = self
                        .worker
                        .runtime()
                        .block_on(self.config_log.write(records))
                    {
                        tracing::error!(connector = name, error = %e, "cannot write task configs");
                    }
                }
            }
            Err(e) => {
                let worker_id = self.worker_id();
                self.worker.statuses().set(
                    name,
                    None,
                    State::Failed,
                    &worker_id,
                    Some(e.to_string()),
                );
            }
        }
    }

    fn start_task(&self, local: &mut Local, name: &str, task: usize) {
        let (raw, shown, target) = {
            let config = self.config();
            let Some(raw) = config.connectors.get(name).cloned() else {
                return;
            };
            let Some(shown) = config.tasks.get(name).and_then(|t| t.get(task)).cloned() else {
                return;
            };
            (raw, shown, config.target(name))
        };
        let plugin = match self.plugin_of(&raw) {
            Ok(plugin) => plugin,
            Err(e) => {
                let worker_id = self.worker_id();
                self.worker.statuses().set(
                    name,
                    Some(task),
                    State::Failed,
                    &worker_id,
                    Some(e.message),
                );
                return;
            }
        };
        let providers = &self.worker.config().providers;
        let spec = TaskSpec {
            connector: name.to_owned(),
            task,
            connector_configs: providers.resolve(&raw),
            task_configs: providers.resolve(&shown),
        };
        let handle = match plugin.task {
            TaskFactory::Source(new) => self.worker.start_source(spec, new(), target),
            TaskFactory::Sink(new) => self.worker.start_sink(spec, new(), target),
        };
        local.tasks.insert((name.to_owned(), task), handle);
    }

    /// Applies a config change to what this worker runs.
    fn on_change(&self, change: ConfigChange) {
        match change {
            ConfigChange::Structure => self.rejoin.notify_one(),
            ConfigChange::Target(name) => {
                let target = self.config().target(&name);
                let local = self.local();
                for ((connector, _), handle) in &local.tasks {
                    if *connector == name {
                        handle.control.set_target(target);
                    }
                }
                if local.connectors.contains_key(&name) {
                    let state = if target == TargetState::Paused {
                        State::Paused
                    } else {
                        State::Running
                    };
                    self.worker
                        .statuses()
                        .set(&name, None, state, &self.worker_id(), None);
                }
            }
            ConfigChange::RestartConnector {
                name,
                include_tasks,
                only_failed,
            } => {
                let plan = self.status_of(&name, "");
                let (_, restart_connector, tasks) = restart_plan(plan, include_tasks, only_failed);
                let mut local = self.local();
                // A connector that failed to start has no instance, but is still ours.
                if restart_connector && local.assignment.connectors.contains(&name) {
                    if let Some(mut connector) = local.connectors.remove(&name) {
                        connector.stop();
                    }
                    self.start_connector(&mut local, &name);
                }
                for task in tasks {
                    self.restart_local_task(&mut local, &name, task);
                }
            }
            ConfigChange::RestartTask(name, task) => {
                let mut local = self.local();
                self.restart_local_task(&mut local, &name, task);
            }
        }
    }

    fn restart_local_task(&self, local: &mut Local, name: &str, task: usize) {
        if let Some(handle) = local.tasks.remove(&(name.to_owned(), task)) {
            handle.stop();
            self.start_task(local, name, task);
        }
    }

    /// A connector running here asked for new task configs.
    fn reconfigure_tasks(&self, name: &str) {
        let mut local = self.local();
        if local.connectors.contains_key(name) {
            self.publish_task_configs(&mut local, name);
        }
    }

    // --- The group --------------------------------------------------------------------

    /// Takes part in the group until `shutdown`: joins, assigns when leading, runs the
    /// assignment, heartbeats, and rejoins when the group or the connectors change.
    async fn run_group(
        self: Arc<Self>,
        cluster: Cluster,
        options: DistributedOptions,
        url: String,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut member = GroupMember::new(
            cluster,
            MembershipConfig {
                group: options.group_id.clone(),
                protocol_type: PROTOCOL_TYPE.to_owned(),
                session_timeout: options.session_timeout,
                rebalance_timeout: Duration::from_secs(60),
            },
        );
        let metadata = Bytes::from(serde_json::to_vec(&WorkerMetadata { url }).unwrap_or_default());
        let heartbeat = (options.session_timeout / 3).max(Duration::from_millis(100));
        while !*shutdown.borrow() {
            self.view().rebalancing = true;
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.stop_all()).await;
            let assignment = match self.join_once(&mut member, &metadata).await {
                Ok(assignment) => assignment,
                Err(e) => {
                    tracing::warn!(error = %e, "joining the workers' group failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            tracing::info!(
                generation = member.generation(),
                connectors = ?assignment.connectors,
                tasks = ?assignment.tasks,
                "assignment received"
            );
            let me = self.clone();
            let starting = tokio::task::spawn_blocking(move || me.start_assignment(assignment));
            tokio::pin!(starting);
            let mut started = false;
            loop {
                tokio::select! {
                    // Starting connectors may take a while; the heartbeats go on meanwhile,
                    // or the group would drop this worker for being slow to start.
                    _ = &mut starting, if !started => started = true,
                    _ = tokio::time::sleep(heartbeat) => {
                        if let Err(e) = member.heartbeat().await {
                            if must_rejoin(&e) {
                                tracing::info!(error = %e, "the group is rebalancing");
                                break;
                            }
                            tracing::warn!(error = %e, "a heartbeat failed; trying again");
                        }
                    }
                    _ = self.rejoin.notified() => break,
                    _ = shutdown.changed() => break,
                }
            }
            if !started {
                // Stopping what it started needs the start finished.
                let _ = starting.await;
            }
        }
        self.view().rebalancing = true;
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || me.stop_all()).await;
        if let Err(e) = member.leave("the worker is stopping").await {
            tracing::warn!(error = %e, "leaving the workers' group failed");
        }
    }

    async fn join_once(
        &self,
        member: &mut GroupMember,
        metadata: &Bytes,
    ) -> std::result::Result<Assignment, String> {
        let joined = member
            .join(&[(PROTOCOL.to_owned(), metadata.clone())])
            .await
            .map_err(|e| e.to_string())?;
        let assignments = if joined.is_leader() {
            // Assign from everything the config topic holds now.
            self.config_log
                .read_to_end()
                .await
                .map_err(|e| e.to_string())?;
            let members: Vec<(String, WorkerMetadata)> = joined
                .members
                .iter()
                .filter_map(|(id, bytes)| Some((id.clone(), serde_json::from_slice(bytes).ok()?)))
                .collect();
            let config = self.config().clone();
            assign(&members, &joined.leader_id, &config)
                .into_iter()
                .filter_map(|(id, a)| Some((id, Bytes::from(serde_json::to_vec(&a).ok()?))))
                .collect()
        } else {
            Vec::new()
        };
        let bytes = member
            .sync(&joined.protocol, assignments)
            .await
            .map_err(|e| e.to_string())?;
        let assignment: Assignment = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the leader's assignment is unreadable: {e}"))?;
        // Act on at least what the leader assigned from.
        self.config_log
            .read_to_end()
            .await
            .map_err(|e| e.to_string())?;
        let mut view = self.view();
        view.is_leader = joined.is_leader();
        view.leader_url = assignment.leader_url.clone();
        view.generation = joined.generation;
        view.rebalancing = false;
        Ok(assignment)
    }
}

impl ConnectApi for DistributedHerder {
    fn worker(&self) -> &Worker {
        &self.worker
    }

    fn plugins(&self) -> &Plugins {
        &self.plugins
    }

    fn forward_to(&self) -> Result<Option<String>> {
        self.view().route()
    }

    fn connector_names(&self) -> Vec<String> {
        self.config().connectors.keys().cloned().collect()
    }

    fn kind_and_target(&self, name: &str) -> Result<(ConnectorType, TargetState)> {
        let config = self.config();
        let configs = config.connectors.get(name).ok_or_else(|| not_found(name))?;
        Ok((self.plugin_of(configs)?.kind(), config.target(name)))
    }

    fn create(&self, name: &str, configs: Configs, initial: TargetState) -> Result<ConnectorInfo> {
        let configs = named(name, configs)?;
        let _writing = self.require_leader()?;
        if self.config().connectors.contains_key(name) {
            return Err(HerderError::conflict(format!(
                "Connector {name} already exists"
            )));
        }
        self.checked(&configs)?;
        // The target state first, so that a connector created paused never runs.
        self.write(vec![
            target_record(name, Some(initial)),
            connector_record(name, Some(&configs)),
        ])?;
        let config = self.config();
        self.info_of(name, &config)
    }

    fn put_config(&self, name: &str, configs: Configs) -> Result<(bool, ConnectorInfo)> {
        check_name(name)?;
        if !self.config().connectors.contains_key(name) {
            return self
                .create(name, configs, TargetState::Started)
                .map(|info| (true, info));
        }
        let configs = named(name, configs)?;
        let _writing = self.require_leader()?;
        let plugin = self.checked(&configs)?;
        let (old_kind, _) = self.kind_and_target(name)?;
        if old_kind != plugin.kind() {
            return Err(HerderError::bad_request(format!(
                "Connector {name} is a {} connector; it cannot become a {} connector",
                old_kind.name(),
                plugin.kind().name()
            )));
        }
        self.write(vec![connector_record(name, Some(&configs))])?;
        let config = self.config();
        Ok((false, self.info_of(name, &config)?))
    }

    fn config(&self, name: &str) -> Result<Configs> {
        self.config()
            .connectors
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(name))
    }

    fn info(&self, name: &str) -> Result<ConnectorInfo> {
        let config = self.config();
        self.info_of(name, &config)
    }

    fn task_configs(&self, name: &str) -> Result<Vec<TaskInfo>> {
        let config = self.config();
        if !config.connectors.contains_key(name) {
            return Err(not_found(name));
        }
        if config.target(name) == TargetState::Stopped {
            return Ok(Vec::new());
        }
        Ok(config
            .tasks
            .get(name)
            .map(|tasks| {
                tasks
                    .iter()
                    .enumerate()
                    .map(|(task, configs)| TaskInfo {
                        id: TaskId {
                            connector: name.to_owned(),
                            task,
                        },
                        config: configs.0.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn set_target(&self, name: &str, target: TargetState) -> Result<()> {
        self.kind_and_target(name)?;
        let _writing = self.require_leader()?;
        self.write(vec![target_record(name, Some(target))])
    }

    fn restart(
        &self,
        name: &str,
        include_tasks: bool,
        only_failed: bool,
    ) -> Result<ConnectorStateInfo> {
        let (kind, _) = self.kind_and_target(name)?;
        let _writing = self.require_leader()?;
        let (plan, _, _) = restart_plan(
            self.status_of(name, kind.name()),
            include_tasks,
            only_failed,
        );
        self.write(vec![restart_record(name, include_tasks, only_failed)])?;
        Ok(plan)
    }

    fn restart_task(&self, name: &str, task: usize) -> Result<()> {
        self.kind_and_target(name)?;
        if task >= self.config().tasks.get(name).map_or(0, Vec::len) {
            return Err(HerderError::not_found(format!(
                "Task {name}-{task} not found"
            )));
        }
        let _writing = self.require_leader()?;
        self.write(vec![restart_task_record(name, task)])
    }

    fn delete(&self, name: &str) -> Result<()> {
        // Not through the plugin: a connector whose class is gone must still be deletable.
        if !self.config().connectors.contains_key(name) {
            return Err(not_found(name));
        }
        let _writing = self.require_leader()?;
        self.write(vec![
            connector_record(name, None),
            target_record(name, None),
        ])?;
        self.worker.statuses().remove(name);
        self.worker.statuses().reset_topics(name);
        Ok(())
    }
}

fn start_failed(what: &str) -> impl Fn(ConnectError) -> StartError + '_ {
    move |e| StartError(format!("{what}: {e}"))
}

/// Runs a distributed worker until `shutdown` completes.
pub async fn run_distributed(
    options: DistributedOptions,
    plugins: Plugins,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::result::Result<(), StartError> {
    let bootstrap = options.bootstrap.clone();
    let cluster = Cluster::connect(ClientConfig::new(bootstrap.clone()))
        .await
        .map_err(|e| StartError(format!("cannot reach the cluster at {bootstrap}: {e}")))?;
    let described = Admin::from_cluster(cluster.clone())
        .describe_cluster()
        .await
        .map_err(|e| StartError(format!("cannot describe the cluster at {bootstrap}: {e}")))?;
    let listener = tokio::net::TcpListener::bind(options.rest_listen)
        .await
        .map_err(|e| StartError(format!("cannot listen on {}: {e}", options.rest_listen)))?;
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| options.rest_listen.to_string());
    let url = options
        .advertised_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));
    let worker_id = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();

    let offsets = TopicOffsetStore::open(
        &bootstrap,
        &options.offsets_topic,
        OFFSETS_PARTITIONS,
        options.replication_factor,
    )
    .await
    .map_err(start_failed("cannot open the offsets topic"))?;
    let mut config = worker_config(&bootstrap, &worker_id, options.worker_properties.clone())?;
    config.group_id = Some(options.group_id.clone());
    let worker = Worker::new(config, tokio::runtime::Handle::current(), Arc::new(offsets));

    // Statuses: published by this worker, and every worker's applied from the topic.
    let board = worker.statuses().clone();
    let status_log = TopicLog::open(
        &bootstrap,
        &options.status_topic,
        STATUS_PARTITIONS,
        options.replication_factor,
        IsolationLevel::ReadUncommitted,
        Box::new(move |key, value| {
            if let Some(record) = key
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(|k| parse_status(k, value))
            {
                board.apply_remote(record);
            }
        }),
    )
    .await
    .map_err(start_failed("cannot open the status topic"))?;
    status_log
        .read_to_end()
        .await
        .map_err(start_failed("cannot read the status topic"))?;
    let status_log = Arc::new(status_log);
    let (status_sender, mut status_receiver) = tokio::sync::mpsc::unbounded_channel();
    worker.statuses().publish_to(status_sender);

    let config_state: Arc<Mutex<ClusterConfig>> = Arc::default();
    let (change_sender, mut change_receiver) =
        tokio::sync::mpsc::unbounded_channel::<ConfigChange>();
    let applied = config_state.clone();
    let config_log = TopicLog::open(
        &bootstrap,
        &options.config_topic,
        1,
        options.replication_factor,
        IsolationLevel::ReadUncommitted,
        Box::new(move |key, value| {
            let Some(key) = key.and_then(|k| std::str::from_utf8(k).ok()) else {
                return;
            };
            let change = applied
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .apply(key, value);
            if let Some(change) = change {
                let _ = change_sender.send(change);
            }
        }),
    )
    .await
    .map_err(start_failed("cannot open the config topic"))?;
    config_log
        .read_to_end()
        .await
        .map_err(start_failed("cannot read the config topic"))?;

    let (reconfigure_sender, reconfigure_receiver) = std::sync::mpsc::channel::<String>();
    let herder = Arc::new(DistributedHerder {
        worker: worker.clone(),
        plugins,
        config: config_state,
        config_log,
        view: Mutex::new(GroupView {
            rebalancing: true,
            ..GroupView::default()
        }),
        local: Mutex::new(Local::default()),
        rejoin: tokio::sync::Notify::new(),
        reconfigure: Mutex::new(reconfigure_sender),
        writes: Mutex::new(()),
    });

    // Status changes go to the status topic in the order they happened.
    let generation_of = herder.clone();
    let status_writer = tokio::spawn(async move {
        while let Some(record) = status_receiver.recv().await {
            let generation = generation_of.view().generation;
            let (key, value) = status_record(&record, generation);
            if let Err(e) = status_log.write(vec![(key.into_bytes(), value)]).await {
                tracing::warn!(error = %e, "cannot publish a status");
            }
        }
    });
    // What the initial read changed is already the state the first assignment starts from:
    // acting on it again would only rebalance again, or replay old restart requests.
    while change_receiver.try_recv().is_ok() {}
    // Config changes are acted on off the reader's task: acting may block on tasks.
    let on_change = herder.clone();
    let change_handler = tokio::spawn(async move {
        while let Some(change) = change_receiver.recv().await {
            let herder = on_change.clone();
            let _ = tokio::task::spawn_blocking(move || herder.on_change(change)).await;
        }
    });
    let weak = Arc::downgrade(&herder);
    let spawned = std::thread::Builder::new()
        .name("connect-reconfigure".into())
        .spawn(move || {
            while let Ok(name) = reconfigure_receiver.recv() {
                match weak.upgrade() {
                    Some(herder) => herder.reconfigure_tasks(&name),
                    None => break,
                }
            }
        });
    if let Err(e) = spawned {
        return Err(StartError(format!(
            "cannot start the reconfiguration thread: {e}"
        )));
    }

    let (stop_sender, stop_receiver) = tokio::sync::watch::channel(false);
    let group = tokio::spawn(herder.clone().run_group(
        cluster,
        options.clone(),
        url.clone(),
        stop_receiver,
    ));

    let info = ServerInfo::of(described.cluster_id);
    tracing::info!(rest = %url, group = %options.group_id, "runnel connect ready (distributed)");
    eprintln!(
        "runnel connect ready rest={url} bootstrap={bootstrap} group={} (distributed)",
        options.group_id
    );
    let served = axum::serve(listener, router(herder.clone(), info))
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop_sender.send(true);
    let _ = group.await;
    change_handler.abort();
    status_writer.abort();
    served.map_err(|e| StartError(format!("the REST server failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_go_to_the_leader_and_wait_out_a_rebalance() {
        let mut view = GroupView {
            rebalancing: true,
            is_leader: false,
            leader_url: "http://leader:8083".into(),
            generation: 3,
        };
        assert_eq!(view.route().map_err(|e| e.status), Err(409));
        view.rebalancing = false;
        assert_eq!(view.route(), Ok(Some("http://leader:8083".to_owned())));
        view.is_leader = true;
        assert_eq!(view.route(), Ok(None));
        let before_any_assignment = GroupView::default();
        assert_eq!(
            before_any_assignment.route().map_err(|e| e.status),
            Err(409)
        );
    }
}
