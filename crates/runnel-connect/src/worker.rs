//! The worker: runs connector tasks, each on its own thread (connector code may block), and
//! does for them what Kafka Connect's worker does: converters, transforms, error tolerance,
//! producing and consuming through `runnel-client`, and offsets.
//!
//! The order that makes delivery at-least-once:
//! - a source task's records are sent, and a source partition's offset becomes committable
//!   only once every record up to it was acknowledged (`acks=all`, idempotent producer);
//! - a sink task's consumer offsets are committed only after [`SinkTask::flush`] returned,
//!   so a crash re-delivers what the sink may not have made durable, never skips it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt;
use runnel_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, DeliveryFuture, NewTopic,
    OffsetReset, ProduceRecord, Producer, ProducerConfig, TopicPartition as ClientTopicPartition,
};
use tokio::runtime::Handle;

use crate::config::{ConfigError, ConfigType, Configs};
use crate::connector::{ConnectError, SinkTask, SourceTask, TaskContext, TopicPartition};
use crate::converter::{converter_for, Converter};
use crate::data::{ConnectRecord, Header, SinkRecord, SourceRecord};
use crate::errors::{ErrorPolicy, Stage};
use crate::offsets::{ConnectorOffsetReader, OffsetStore, PartitionOffset};
use crate::providers::ConfigProviders;
use crate::status::{State, StatusBoard, TargetState};
use crate::transforms::TransformChain;

/// The converter a connector gets when neither it nor the worker names one.
pub const DEFAULT_CONVERTER: &str = "org.apache.kafka.connect.json.JsonConverter";

/// What every task of a worker shares.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The cluster, `HOST:PORT[,HOST:PORT...]`.
    pub bootstrap: String,
    /// How this worker is named in statuses: its REST address, as in Kafka.
    pub worker_id: String,
    /// The worker's own properties: default `key.converter` / `value.converter` and their
    /// settings (`value.converter.schemas.enable=false`, ...).
    pub properties: Configs,
    /// `offset.flush.interval.ms`: how often offsets are committed (10 s, as Kafka's sample
    /// worker configs set it).
    pub offset_flush_interval: Duration,
    /// The config providers placeholders may name.
    pub providers: ConfigProviders,
    /// The distributed workers' group, which names source tasks' transactional ids.
    pub group_id: Option<String>,
    /// `exactly.once.source.support=enabled` (KIP-618): source records and their offsets are
    /// written in one transaction. Needs the offsets in a topic (distributed mode).
    pub exactly_once_source: bool,
}

impl WorkerConfig {
    /// Defaults for a worker on `bootstrap` named `worker_id`.
    pub fn new(bootstrap: impl Into<String>, worker_id: impl Into<String>) -> WorkerConfig {
        WorkerConfig {
            bootstrap: bootstrap.into(),
            worker_id: worker_id.into(),
            properties: Configs::new(),
            offset_flush_interval: Duration::from_secs(10),
            providers: ConfigProviders::default(),
            group_id: None,
            exactly_once_source: false,
        }
    }
}

/// The converter for `role` (`key.converter` or `value.converter`): the connector's if it
/// names one, else the worker's, else JSON; its settings are the worker's under
/// `role.` overlaid with the connector's.
pub(crate) fn converter(
    role: &str,
    connector: &Configs,
    worker: &Configs,
) -> Result<Box<dyn Converter>, ConfigError> {
    let prefix = format!("{role}.");
    let named = |c: &Configs| {
        c.get(role)
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
    };
    let (class, mut settings) = match (named(connector), named(worker)) {
        (Some(mine), Some(workers)) if mine != workers => (mine, Configs::new()),
        (Some(class), _) | (None, Some(class)) => (class, worker.with_prefix(&prefix)),
        (None, None) => (DEFAULT_CONVERTER.to_owned(), worker.with_prefix(&prefix)),
    };
    settings.0.extend(connector.with_prefix(&prefix).0);
    converter_for(&class, &settings).map_err(|e| ConfigError {
        key: role.to_owned(),
        message: e.message,
    })
}

/// How a task is told to pause, resume and stop.
#[derive(Debug)]
pub(crate) struct TaskControl {
    target: Mutex<TargetState>,
    changed: Condvar,
    stopping: Arc<AtomicBool>,
}

impl TaskControl {
    fn new(target: TargetState) -> TaskControl {
        TaskControl {
            target: Mutex::new(target),
            changed: Condvar::new(),
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn set_target(&self, target: TargetState) {
        *self.target.lock().unwrap_or_else(PoisonError::into_inner) = target;
        self.changed.notify_all();
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.changed.notify_all();
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    fn is_paused(&self) -> bool {
        *self.target.lock().unwrap_or_else(PoisonError::into_inner) == TargetState::Paused
    }

    /// Blocks while paused; false once the task is stopping.
    fn wait_while_paused(&self) -> bool {
        let mut target = self.target.lock().unwrap_or_else(PoisonError::into_inner);
        while *target == TargetState::Paused && !self.is_stopping() {
            target = self
                .changed
                .wait_timeout(target, Duration::from_secs(1))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        !self.is_stopping()
    }
}

/// A running task, as the herder holds it.
#[derive(Debug)]
pub(crate) struct TaskHandle {
    pub(crate) control: Arc<TaskControl>,
    done: std::sync::mpsc::Receiver<()>,
}

/// How long a stopping task may take before the worker stops waiting for it (Kafka's
/// `task.shutdown.graceful.timeout.ms`).
const TASK_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

impl TaskHandle {
    /// Stops the task and waits for it, up to the shutdown timeout.
    pub(crate) fn stop(self) {
        stop_all(vec![self]);
    }
}

/// Stops tasks together: all are told first, then waited for against one deadline, so that
/// stopping many slow tasks takes one shutdown timeout, not one each.
pub(crate) fn stop_all(handles: Vec<TaskHandle>) {
    for handle in &handles {
        handle.control.stop();
    }
    let deadline = Instant::now() + TASK_SHUTDOWN_TIMEOUT;
    for handle in handles {
        let left = deadline.saturating_duration_since(Instant::now());
        if handle.done.recv_timeout(left).is_err() {
            tracing::warn!("a task did not stop within {TASK_SHUTDOWN_TIMEOUT:?}; it is abandoned");
        }
    }
}

/// A state as the REST API spells it (`RUNNING`).
fn state_name(state: State) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// What a task needs to run.
pub(crate) struct TaskSpec {
    pub(crate) connector: String,
    pub(crate) task: usize,
    /// The connector's resolved configuration (converters, transforms, errors, topics).
    pub(crate) connector_configs: Configs,
    /// The task's resolved configuration.
    pub(crate) task_configs: Configs,
}

/// What a task on this worker has done since the worker started (across its restarts):
/// what `GET /metrics` reports.
#[derive(Debug, Default)]
pub(crate) struct TaskCounters {
    /// Records a source task's poll returned.
    polled: AtomicU64,
    /// Records a source task sent to Kafka (after transforms and converters).
    sent: AtomicU64,
    /// Records a sink task's consumer read.
    read: AtomicU64,
    /// Records handed to a sink task's put and taken.
    put: AtomicU64,
    /// Records a stage failed on and the error tolerance let through.
    failed: AtomicU64,
}

/// Each task's counters, by (connector, task).
type CountersByTask = BTreeMap<(String, usize), Arc<TaskCounters>>;

/// Runs tasks.
#[derive(Debug, Clone)]
pub struct Worker {
    config: Arc<WorkerConfig>,
    runtime: Handle,
    statuses: StatusBoard,
    offsets: Arc<dyn OffsetStore>,
    counters: Arc<Mutex<CountersByTask>>,
}

impl Worker {
    /// A worker whose tasks do their I/O on `runtime`.
    pub fn new(config: WorkerConfig, runtime: Handle, offsets: Arc<dyn OffsetStore>) -> Worker {
        Worker {
            config: Arc::new(config),
            runtime,
            statuses: StatusBoard::default(),
            offsets,
            counters: Arc::default(),
        }
    }

    /// The counters of task `task` of `connector`, kept across the task's restarts.
    fn task_counters(&self, connector: &str, task: usize) -> Arc<TaskCounters> {
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(counters.entry((connector.to_owned(), task)).or_default())
    }

    /// This worker's metrics in the OpenMetrics text format: the records of the tasks of
    /// `connectors` (the connectors that exist), and the states of those connectors and
    /// tasks (as this worker knows them: in a cluster, every worker's).
    pub fn openmetrics(&self, connectors: &[String]) -> String {
        let mut out = runnel_metrics::Exposition::default();
        let counters: Vec<((String, usize), Arc<TaskCounters>)> = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            // A deleted connector's tasks are no longer reported.
            .filter(|((connector, _), _)| connectors.contains(connector))
            .map(|(key, counters)| (key.clone(), Arc::clone(counters)))
            .collect();
        let per_task = |read: fn(&TaskCounters) -> &AtomicU64| {
            counters.iter().map(move |((connector, task), counters)| {
                (
                    vec![("connector", connector.clone()), ("task", task.to_string())],
                    read(counters).load(Ordering::Relaxed),
                )
            })
        };
        out.counters(
            "runnel_connect_source_records_polled",
            "Records a source task's poll returned.",
            None,
            per_task(|c| &c.polled),
        );
        out.counters(
            "runnel_connect_source_records_sent",
            "Records a source task sent to Kafka, after transforms and converters.",
            None,
            per_task(|c| &c.sent),
        );
        out.counters(
            "runnel_connect_sink_records_read",
            "Records a sink task's consumer read from Kafka.",
            None,
            per_task(|c| &c.read),
        );
        out.counters(
            "runnel_connect_sink_records_put",
            "Records a sink task's put took.",
            None,
            per_task(|c| &c.put),
        );
        out.counters(
            "runnel_connect_records_failed",
            "Records a stage failed on that errors.tolerance let through (to the dead letter queue, if one is set).",
            None,
            per_task(|c| &c.failed),
        );
        let mut connector_states: BTreeMap<String, i64> = BTreeMap::new();
        let mut task_states: BTreeMap<String, i64> = BTreeMap::new();
        for connector in connectors {
            if let Some(status) = self.statuses.get(connector, None) {
                *connector_states
                    .entry(state_name(status.state))
                    .or_default() += 1;
            }
            for (_, status) in self.statuses.tasks(connector) {
                *task_states.entry(state_name(status.state)).or_default() += 1;
            }
        }
        out.gauges(
            "runnel_connect_connectors",
            "Connectors by state (RUNNING, PAUSED, STOPPED, FAILED, UNASSIGNED, RESTARTING).",
            None,
            connector_states
                .into_iter()
                .map(|(state, count)| (vec![("state", state)], count)),
        );
        out.gauges(
            "runnel_connect_tasks",
            "Tasks by state.",
            None,
            task_states
                .into_iter()
                .map(|(state, count)| (vec![("state", state)], count)),
        );
        out.render()
    }

    /// The worker's configuration.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// The statuses of the worker's connectors and tasks.
    pub fn statuses(&self) -> &StatusBoard {
        &self.statuses
    }

    /// The source offsets store.
    pub fn offsets(&self) -> &Arc<dyn OffsetStore> {
        &self.offsets
    }

    /// The runtime tasks do their I/O on.
    pub fn runtime(&self) -> &Handle {
        &self.runtime
    }

    /// Starts a source task on its own thread.
    pub(crate) fn start_source(
        &self,
        spec: TaskSpec,
        task: Box<dyn SourceTask>,
        target: TargetState,
    ) -> TaskHandle {
        self.spawn(spec, target, move |run| run.source(task))
    }

    /// Starts a sink task on its own thread.
    pub(crate) fn start_sink(
        &self,
        spec: TaskSpec,
        task: Box<dyn SinkTask>,
        target: TargetState,
    ) -> TaskHandle {
        self.spawn(spec, target, move |run| run.sink(task))
    }

    fn spawn(
        &self,
        spec: TaskSpec,
        target: TargetState,
        body: impl FnOnce(&TaskRun) -> Result<(), ConnectError> + Send + 'static,
    ) -> TaskHandle {
        let control = Arc::new(TaskControl::new(target));
        let (done_tx, done) = std::sync::mpsc::channel();
        let run = TaskRun {
            worker: self.clone(),
            control: control.clone(),
            counters: self.task_counters(&spec.connector, spec.task),
            spec,
        };
        let name = format!("task-{}-{}", run.spec.connector, run.spec.task);
        // A task created paused is paused from the start, not unassigned until its thread runs.
        let initial = match target {
            TargetState::Paused => State::Paused,
            _ => State::Unassigned,
        };
        run.set_status(initial, None);
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            // A connector's panic fails its task, not the worker.
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| body(&run)))
                .unwrap_or_else(|panic| Err(ConnectError::Failed(format!("the task panicked: {}", panic_text(&panic)))));
            match outcome {
                // Interrupted by its stop (a retry cut short): not a failure to report, and
                // its next owner's status must not be overwritten by one.
                Err(error) if run.control.is_stopping() => {
                    tracing::info!(connector = %run.spec.connector, task = run.spec.task, %error, "task stopped")
                }
                Err(error) => {
                    tracing::error!(connector = %run.spec.connector, task = run.spec.task, %error, "task failed");
                    run.set_status(State::Failed, Some(error.to_string()));
                }
                Ok(()) => {}
            }
            let _ = done_tx.send(());
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a task thread");
        }
        TaskHandle { control, done }
    }
}

/// The message a panic carried.
pub(crate) fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

/// One task's run, on its thread.
struct TaskRun {
    worker: Worker,
    control: Arc<TaskControl>,
    counters: Arc<TaskCounters>,
    spec: TaskSpec,
}

/// Most records a source task may have unacknowledged before polling waits.
const SOURCE_IN_FLIGHT_MAX: usize = 100_000;
/// How long a sink's consumer poll waits for records.
const SINK_POLL: Duration = Duration::from_millis(500);
/// The wait before handing a sink records again after a retriable failure of `put`.
const SINK_RETRY_BACKOFF: Duration = Duration::from_millis(500);

fn client_error(what: &str) -> impl Fn(runnel_client::ClientError) -> ConnectError + '_ {
    move |e| {
        if e.is_retriable() {
            ConnectError::Retriable(format!("{what}: {e}"))
        } else {
            ConnectError::Failed(format!("{what}: {e}"))
        }
    }
}

impl TaskRun {
    fn set_status(&self, state: State, trace: Option<String>) {
        self.worker.statuses.set(
            &self.spec.connector,
            Some(self.spec.task),
            state,
            &self.worker.config.worker_id,
            trace,
        );
    }

    fn context(&self) -> TaskContext {
        TaskContext::new(
            &self.spec.connector,
            self.spec.task,
            self.control.stopping.clone(),
            Arc::new(ConnectorOffsetReader {
                store: self.worker.offsets.clone(),
                connector: self.spec.connector.clone(),
            }),
        )
    }

    fn client(&self, role: &str) -> ClientConfig {
        let mut client = ClientConfig::new(self.worker.config.bootstrap.clone());
        client.client_id = format!(
            "connector-{role}-{}-{}",
            self.spec.connector, self.spec.task
        );
        client
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.worker.runtime.block_on(future)
    }

    /// Waits while paused (reporting PAUSED, then RUNNING again); false once stopping.
    fn pause_point(&self) -> bool {
        if !self.control.is_paused() {
            return !self.control.is_stopping();
        }
        self.set_status(State::Paused, None);
        let running = self.control.wait_while_paused();
        if running {
            self.set_status(State::Running, None);
        }
        running
    }

    fn source(&self, mut task: Box<dyn SourceTask>) -> Result<(), ConnectError> {
        let configs = &self.spec.connector_configs;
        let worker = &self.worker.config.properties;
        let pipeline = SourcePipeline {
            key_converter: converter("key.converter", configs, worker)?,
            value_converter: converter("value.converter", configs, worker)?,
            transforms: TransformChain::from_configs(configs)?,
            policy: ErrorPolicy::from_configs(configs)?,
        };
        let transactional = match (&self.worker.config.group_id, self.worker.offsets.topic()) {
            (Some(group), Some(topic)) if self.worker.config.exactly_once_source => Some((
                format!("{group}-{}-{}", self.spec.connector, self.spec.task),
                topic.to_owned(),
            )),
            _ => None,
        };
        let mut producer_config = ProducerConfig::with_client(self.client("producer"));
        producer_config.transactional_id = transactional.as_ref().map(|(id, _)| id.clone());
        let producer = self
            .block_on(Producer::connect(producer_config))
            .map_err(client_error("cannot connect the producer"))?;
        // The offsets its previous instance committed, wherever it ran, before resuming.
        self.worker.offsets.sync().map_err(|e| {
            ConnectError::Retriable(format!("cannot read the committed offsets: {e}"))
        })?;
        if transactional.is_some() {
            // Fences an older instance of this task, aborting what it left open.
            self.block_on(producer.init_transactions())
                .map_err(client_error("cannot initialize transactions"))?;
        }
        task.start(&self.spec.task_configs, &self.context())?;
        let state = if self.control.is_paused() {
            State::Paused
        } else {
            State::Running
        };
        self.set_status(state, None);
        let outcome = match &transactional {
            Some((_, offsets_topic)) => {
                self.source_exactly_once(&mut *task, &producer, &pipeline, offsets_topic)
            }
            None => self.source_at_least_once(&mut *task, &producer, &pipeline),
        };
        task.stop();
        if let Err(e) = self.block_on(producer.close()) {
            tracing::warn!(connector = %self.spec.connector, error = %e, "closing the producer failed");
        }
        outcome
    }

    /// The next records of a source task; empty after a retriable failure.
    fn poll_source(&self, task: &mut dyn SourceTask) -> Result<Vec<SourceRecord>, ConnectError> {
        match task.poll() {
            Ok(records) => {
                self.counters
                    .polled
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                Ok(records)
            }
            Err(e) if e.is_retriable() => {
                tracing::warn!(connector = %self.spec.connector, error = %e, "poll failed; retrying");
                std::thread::sleep(SINK_RETRY_BACKOFF);
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// The record to send for a polled one, or `None` when a transform dropped it or its
    /// failure is tolerated; either way its offset counts as done.
    fn prepare(
        &self,
        pipeline: &SourcePipeline,
        record: ConnectRecord,
    ) -> Result<Option<ProduceRecord>, ConnectError> {
        let stopping = || self.control.is_stopping();
        let policy = &pipeline.policy;
        let transformed = policy.execute(Stage::Transformation, &stopping, || {
            pipeline.transforms.apply(record.clone())
        })?;
        let Ok(Some(record)) = transformed else {
            return Ok(None);
        };
        let produce = self.to_produce(
            &record,
            &*pipeline.key_converter,
            &*pipeline.value_converter,
            policy,
        )?;
        if let Some(produce) = &produce {
            self.counters.sent.fetch_add(1, Ordering::Relaxed);
            self.worker
                .statuses
                .topic_used(&self.spec.connector, &produce.topic);
        }
        Ok(produce)
    }

    /// At least once: records are sent as they come, and offsets committed every
    /// `offset.flush.interval.ms` up to the last record acknowledged.
    fn source_at_least_once(
        &self,
        task: &mut dyn SourceTask,
        producer: &Producer,
        pipeline: &SourcePipeline,
    ) -> Result<(), ConnectError> {
        let mut source = SourceProgress {
            in_flight: VecDeque::new(),
            committable: BTreeMap::new(),
        };
        let mut last_commit = Instant::now();
        while self.pause_point() {
            for polled in self.poll_source(task)? {
                let offset = PartitionOffset {
                    partition: polled.source_partition,
                    offset: Some(polled.source_offset),
                };
                let delivery = match self.prepare(pipeline, polled.record)? {
                    Some(record) => Some(
                        self.block_on(producer.send(record))
                            .map_err(client_error("cannot send a record"))?,
                    ),
                    None => None,
                };
                source.in_flight.push_back((delivery, offset));
            }
            source.settle(
                self,
                &pipeline.policy,
                source.in_flight.len() > SOURCE_IN_FLIGHT_MAX,
            )?;
            if last_commit.elapsed() >= self.worker.config.offset_flush_interval {
                source.commit(self, task, &pipeline.policy, false)?;
                last_commit = Instant::now();
            }
        }
        source.commit(self, task, &pipeline.policy, true)
    }

    /// Exactly once (KIP-618): each poll's records (or each interval's, with
    /// `transaction.boundary=interval`) and the offsets they reach are written in one
    /// transaction, offsets to the offsets topic, so that both or neither count. A task
    /// killed mid-transaction leaves it to be aborted when its next instance starts.
    fn source_exactly_once(
        &self,
        task: &mut dyn SourceTask,
        producer: &Producer,
        pipeline: &SourcePipeline,
        offsets_topic: &str,
    ) -> Result<(), ConnectError> {
        let configs = &self.spec.connector_configs;
        let interval = match configs.get("transaction.boundary").map(str::trim) {
            None | Some("") | Some("poll") => None,
            Some("interval") => Some(
                configs
                    .get("transaction.boundary.interval.ms")
                    .and_then(|ms| ms.trim().parse().ok())
                    .map_or(
                        self.worker.config.offset_flush_interval,
                        Duration::from_millis,
                    ),
            ),
            Some(other) => {
                return Err(ConnectError::Failed(format!(
                    "transaction.boundary={other} is not supported: use poll or interval"
                )))
            }
        };
        let mut offsets: BTreeMap<String, PartitionOffset> = BTreeMap::new();
        let mut opened_at = Instant::now();
        let failed = |e: runnel_client::ClientError| {
            ConnectError::Failed(format!("the transaction failed and is aborted: {e}"))
        };
        let commit = |offsets: &mut BTreeMap<String, PartitionOffset>,
                      task: &mut dyn SourceTask| {
            for offset in std::mem::take(offsets).into_values() {
                let value = offset.offset.as_ref().map(|o| {
                    serde_json::Value::Object(o.clone())
                        .to_string()
                        .into_bytes()
                });
                let mut record = ProduceRecord::new(offsets_topic.to_owned()).key(
                    crate::cluster_state::offset_key(&self.spec.connector, &offset.partition),
                );
                if let Some(value) = value {
                    record = record.value(value);
                }
                self.block_on(producer.send(record)).map_err(failed)?;
            }
            self.block_on(producer.commit_transaction())
                .map_err(failed)?;
            task.commit()
        };
        let mut open = false;
        let outcome = (|| {
            loop {
                // A transaction never stays open across a pause: it would time out meanwhile.
                if open && self.control.is_paused() {
                    commit(&mut offsets, task)?;
                    open = false;
                }
                if !self.pause_point() {
                    break;
                }
                let records = self.poll_source(task)?;
                if !records.is_empty() && !open {
                    self.block_on(producer.begin_transaction())
                        .map_err(client_error("cannot begin a transaction"))?;
                    open = true;
                    opened_at = Instant::now();
                }
                for polled in records {
                    let key =
                        serde_json::Value::Object(polled.source_partition.clone()).to_string();
                    if let Some(record) = self.prepare(pipeline, polled.record)? {
                        self.block_on(producer.send(record)).map_err(failed)?;
                    }
                    offsets.insert(
                        key,
                        PartitionOffset {
                            partition: polled.source_partition,
                            offset: Some(polled.source_offset),
                        },
                    );
                }
                let due = interval.is_none_or(|i| opened_at.elapsed() >= i);
                if open && due {
                    commit(&mut offsets, task)?;
                    open = false;
                }
            }
            if open {
                commit(&mut offsets, task)?;
                open = false;
            }
            Ok(())
        })();
        if outcome.is_err() && open {
            // Whatever failed, the open transaction must not hold read_committed readers
            // back until it times out.
            if let Err(e) = self.block_on(producer.abort_transaction()) {
                tracing::warn!(connector = %self.spec.connector, error = %e, "aborting the transaction failed");
            }
        }
        outcome
    }

    /// The record to send for `record`, or `None` when converting it failed and is tolerated.
    fn to_produce(
        &self,
        record: &ConnectRecord,
        key_converter: &dyn Converter,
        value_converter: &dyn Converter,
        policy: &ErrorPolicy,
    ) -> Result<Option<ProduceRecord>, ConnectError> {
        let stopping = || self.control.is_stopping();
        let convert = |stage: Stage, converter: &dyn Converter, data| {
            policy.execute(stage, &stopping, || {
                converter
                    .to_bytes(&record.topic, data)
                    .map_err(|e| ConnectError::Failed(e.to_string()))
            })
        };
        let Ok(key) = convert(Stage::KeyConverter, key_converter, &record.key)? else {
            return Ok(None);
        };
        let Ok(value) = convert(Stage::ValueConverter, value_converter, &record.value)? else {
            return Ok(None);
        };
        let mut produce = ProduceRecord::new(record.topic.clone());
        if let Some(key) = key {
            produce = produce.key(key);
        }
        if let Some(value) = value {
            produce = produce.value(value);
        }
        if let Some(partition) = record.partition {
            produce = produce.partition(partition);
        }
        if let Some(timestamp) = record.timestamp {
            produce = produce.timestamp(timestamp);
        }
        for header in &record.headers {
            produce = produce.header(header.key.clone(), header.value.clone());
        }
        Ok(Some(produce))
    }

    fn sink(&self, mut task: Box<dyn SinkTask>) -> Result<(), ConnectError> {
        let configs = &self.spec.connector_configs;
        let worker = &self.worker.config.properties;
        let key_converter = converter("key.converter", configs, worker)?;
        let value_converter = converter("value.converter", configs, worker)?;
        let transforms = TransformChain::from_configs(configs)?;
        let policy = ErrorPolicy::from_configs(configs)?;
        let dead_letters = DeadLetterQueue::open(self, configs)?;

        let mut consumer_config = ConsumerConfig::new(self.worker.config.bootstrap.clone());
        consumer_config.client = self.client("consumer");
        consumer_config.group_id = Some(sink_group(&self.spec.connector));
        // How soon a crashed task's partitions go to its restarted self or another worker.
        if let Some(ms) = self
            .worker
            .config
            .properties
            .get("consumer.session.timeout.ms")
        {
            let ms: u64 = ms.trim().parse().map_err(|_| {
                ConnectError::Failed(format!(
                    "consumer.session.timeout.ms={ms} is not a number of milliseconds"
                ))
            })?;
            consumer_config.session_timeout = Duration::from_millis(ms);
            consumer_config.heartbeat_interval = consumer_config
                .heartbeat_interval
                .min(Duration::from_millis(ms / 3));
        }
        consumer_config.enable_auto_commit = false;
        consumer_config.auto_offset_reset = OffsetReset::Earliest;
        let consumer = self
            .block_on(Consumer::connect(consumer_config))
            .map_err(client_error("cannot connect the consumer"))?;
        let topics = configs.list("topics");
        let subscribed = match configs
            .get("topics.regex")
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            Some(regex) => self.block_on(consumer.subscribe_pattern(regex)),
            None => {
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                self.block_on(consumer.subscribe(&topics))
            }
        };
        subscribed.map_err(client_error("cannot subscribe"))?;
        task.start(&self.spec.task_configs, &self.context())?;
        self.set_status(
            if self.control.is_paused() {
                State::Paused
            } else {
                State::Running
            },
            None,
        );

        let stopping = || self.control.is_stopping();
        let mut progress = SinkProgress::default();
        let mut last_commit = Instant::now();
        let outcome = (|| {
            while self.pause_point() {
                let records = match self.block_on(consumer.poll(SINK_POLL)) {
                    Ok(records) => records,
                    Err(e) if e.is_retriable() => {
                        tracing::warn!(connector = %self.spec.connector, error = %e, "poll failed; retrying");
                        continue;
                    }
                    Err(e) => return Err(client_error("cannot poll")(e)),
                };
                self.counters
                    .read
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                let mut batch = Vec::with_capacity(records.len());
                for read in &records {
                    self.worker
                        .statuses
                        .topic_used(&self.spec.connector, &read.topic);
                    match self.to_sink(
                        read,
                        &*key_converter,
                        &*value_converter,
                        &transforms,
                        &policy,
                    )? {
                        Ok(Some(record)) => batch.push(record),
                        Ok(None) => {}
                        Err((stage, error)) => {
                            self.counters.failed.fetch_add(1, Ordering::Relaxed);
                            if let Some(queue) = &dead_letters {
                                queue.send(self, read, stage, &error);
                            }
                        }
                    }
                }
                if !batch.is_empty() {
                    loop {
                        match task.put(&batch) {
                            Ok(()) => {
                                self.counters
                                    .put
                                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                                break;
                            }
                            Err(e) if e.is_retriable() && !stopping() => {
                                tracing::warn!(connector = %self.spec.connector, error = %e, "put failed; retrying");
                                std::thread::sleep(SINK_RETRY_BACKOFF);
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                for read in &records {
                    progress
                        .next
                        .insert((read.topic.to_string(), read.partition), read.offset + 1);
                }
                if last_commit.elapsed() >= self.worker.config.offset_flush_interval {
                    progress.commit(self, &mut *task, &consumer, dead_letters.as_ref())?;
                    last_commit = Instant::now();
                }
            }
            progress.commit(self, &mut *task, &consumer, dead_letters.as_ref())
        })();
        task.stop();
        if let Err(e) = self.block_on(consumer.close()) {
            tracing::warn!(connector = %self.spec.connector, error = %e, "closing the consumer failed");
        }
        outcome
    }

    /// The sink record for `read`: `Ok(None)` when a transform dropped it, `Err` with the
    /// stage when it failed and the failure is tolerated.
    #[allow(clippy::type_complexity)]
    fn to_sink(
        &self,
        read: &ConsumerRecord,
        key_converter: &dyn Converter,
        value_converter: &dyn Converter,
        transforms: &TransformChain,
        policy: &ErrorPolicy,
    ) -> Result<Result<Option<SinkRecord>, (Stage, ConnectError)>, ConnectError> {
        let stopping = || self.control.is_stopping();
        let convert = |stage: Stage, converter: &dyn Converter, bytes: Option<&[u8]>| {
            policy.execute(stage, &stopping, || {
                converter
                    .to_connect(&read.topic, bytes)
                    .map_err(|e| ConnectError::Failed(e.to_string()))
            })
        };
        let key = match convert(Stage::KeyConverter, key_converter, read.key.as_deref())? {
            Ok(key) => key,
            Err(e) => return Ok(Err((Stage::KeyConverter, e))),
        };
        let value = match convert(
            Stage::ValueConverter,
            value_converter,
            read.value.as_deref(),
        )? {
            Ok(value) => value,
            Err(e) => return Ok(Err((Stage::ValueConverter, e))),
        };
        let record = ConnectRecord {
            topic: read.topic.to_string(),
            partition: Some(read.partition),
            key,
            value,
            timestamp: Some(read.timestamp),
            headers: read
                .headers
                .iter()
                .map(|(key, value)| Header {
                    key: key.clone(),
                    value: value.as_ref().map(|v| v.to_vec()),
                })
                .collect(),
        };
        Ok(
            match policy.execute(Stage::Transformation, &stopping, || {
                transforms.apply(record.clone())
            })? {
                Ok(transformed) => Ok(transformed.map(|record| SinkRecord {
                    record,
                    kafka_offset: read.offset,
                })),
                Err(e) => Err((Stage::Transformation, e)),
            },
        )
    }
}

/// What turns a polled record into one to send.
struct SourcePipeline {
    key_converter: Box<dyn Converter>,
    value_converter: Box<dyn Converter>,
    transforms: TransformChain,
    policy: ErrorPolicy,
}

/// Source records sent and not yet known to be acknowledged, in order, and the offsets
/// that are.
struct SourceProgress {
    in_flight: VecDeque<(Option<DeliveryFuture>, PartitionOffset)>,
    committable: BTreeMap<String, PartitionOffset>,
}

impl SourceProgress {
    /// Takes acknowledged records off the front; with `block`, waits for all of them.
    fn settle(
        &mut self,
        run: &TaskRun,
        policy: &ErrorPolicy,
        block: bool,
    ) -> Result<(), ConnectError> {
        while let Some((delivery, _)) = self.in_flight.front_mut() {
            let outcome = match delivery {
                None => Some(Ok(())),
                Some(delivery) if block => Some(run.block_on(&mut *delivery).map(drop)),
                Some(delivery) => delivery.now_or_never().map(|o| o.map(drop)),
            };
            let Some(outcome) = outcome else { break };
            if let Err(e) = outcome {
                if !policy.tolerate_all {
                    return Err(ConnectError::Failed(format!(
                        "a record was not delivered: {e}"
                    )));
                }
                tracing::warn!(connector = %run.spec.connector, error = %e, "a record was not delivered; skipped (errors.tolerance=all)");
            }
            if let Some((_, offset)) = self.in_flight.pop_front() {
                let key = serde_json::Value::Object(offset.partition.clone()).to_string();
                self.committable.insert(key, offset);
            }
        }
        Ok(())
    }

    /// Commits the offsets of acknowledged records; `last` waits for every record first.
    fn commit(
        &mut self,
        run: &TaskRun,
        task: &mut dyn SourceTask,
        policy: &ErrorPolicy,
        last: bool,
    ) -> Result<(), ConnectError> {
        self.settle(run, policy, last)?;
        if self.committable.is_empty() {
            return Ok(());
        }
        let offsets: Vec<PartitionOffset> = std::mem::take(&mut self.committable)
            .into_values()
            .collect();
        run.worker
            .offsets
            .commit(&run.spec.connector, offsets)
            .map_err(|e| ConnectError::Failed(format!("cannot commit source offsets: {e}")))?;
        task.commit()
    }
}

/// The consumer group of a sink connector, as Kafka names it.
pub fn sink_group(connector: &str) -> String {
    format!("connect-{connector}")
}

/// What a sink task has read, and what it last committed.
#[derive(Default)]
struct SinkProgress {
    next: BTreeMap<TopicPartition, i64>,
    committed: BTreeMap<TopicPartition, i64>,
}

impl SinkProgress {
    /// Seeks every partition read since the last commit back to its committed offset.
    fn rewind(&mut self, run: &TaskRun, consumer: &Consumer) -> Result<(), ConnectError> {
        // A partition revoked meanwhile restarts from the committed offset with its new owner.
        let assigned: BTreeSet<ClientTopicPartition> = consumer.assignment().into_iter().collect();
        let read: Vec<ClientTopicPartition> = self
            .next
            .keys()
            .map(|(topic, partition)| ClientTopicPartition::new(topic.clone(), *partition))
            .filter(|tp| assigned.contains(tp))
            .collect();
        let committed = run
            .block_on(consumer.committed(&read))
            .map_err(client_error(
                "cannot read the committed offsets to rewind to",
            ))?;
        for (tp, offset) in committed {
            // Nothing committed: where the consumer starts a partition anew (earliest).
            let result = match offset {
                Some(offset) => run.block_on(consumer.seek(&tp, offset)),
                None => run.block_on(consumer.seek_to_beginning(std::slice::from_ref(&tp))),
            };
            result.map_err(client_error("cannot rewind"))?;
        }
        self.next = self.committed.clone();
        Ok(())
    }

    fn commit(
        &mut self,
        run: &TaskRun,
        task: &mut dyn SinkTask,
        consumer: &Consumer,
        dead_letters: Option<&DeadLetterQueue>,
    ) -> Result<(), ConnectError> {
        if let Some(queue) = dead_letters {
            queue.settle(run);
        }
        if self.next == self.committed {
            return Ok(());
        }
        match task.flush(&self.next) {
            Ok(()) => {}
            Err(e) if e.is_retriable() => {
                // What the sink took since the last commit may be lost with the failed flush:
                // rewind to the committed offsets so that it is handed again, as Kafka does.
                tracing::warn!(connector = %run.spec.connector, error = %e, "flush failed; rewinding to the committed offsets");
                self.rewind(run, consumer)?;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let assigned: BTreeSet<ClientTopicPartition> = consumer.assignment().into_iter().collect();
        let offsets: Vec<(ClientTopicPartition, i64)> = self
            .next
            .iter()
            .map(|((topic, partition), offset)| {
                (
                    ClientTopicPartition::new(topic.clone(), *partition),
                    *offset,
                )
            })
            .filter(|(tp, _)| assigned.contains(tp))
            .collect();
        if offsets.is_empty() {
            return Ok(());
        }
        match run.block_on(consumer.commit_offsets(&offsets)) {
            Ok(()) => self.committed = self.next.clone(),
            // A rebalance took partitions away: their next owner starts from the last commit.
            Err(e) => {
                tracing::warn!(connector = %run.spec.connector, error = %e, "committing sink offsets failed")
            }
        }
        Ok(())
    }
}

/// A sink's dead letter queue: records that failed, as they were read.
struct DeadLetterQueue {
    producer: Producer,
    topic: String,
    context_headers: bool,
    sent: Mutex<Vec<DeliveryFuture>>,
}

impl DeadLetterQueue {
    fn open(run: &TaskRun, configs: &Configs) -> Result<Option<DeadLetterQueue>, ConnectError> {
        let Some(topic) = configs
            .get("errors.deadletterqueue.topic.name")
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Ok(None);
        };
        let replication: i16 = configs.parsed_or(
            "errors.deadletterqueue.topic.replication.factor",
            3,
            ConfigType::Short,
        )?;
        let admin = run
            .block_on(Admin::connect(run.client("admin")))
            .map_err(client_error(
                "cannot connect to create the dead letter queue",
            ))?;
        let exists = run
            .block_on(admin.list_topics(false))
            .map_err(client_error("cannot list topics"))?
            .iter()
            .any(|t| t.name == topic);
        if !exists {
            let brokers = run
                .block_on(admin.describe_cluster())
                .map_err(client_error("cannot describe the cluster"))?
                .brokers
                .len();
            let replication = replication
                .min(i16::try_from(brokers).unwrap_or(i16::MAX))
                .max(1);
            if let Err(e) = run.block_on(
                admin.create_topic(NewTopic::new(topic, 1).with_replication_factor(replication)),
            ) {
                // Another task may have created it meanwhile; sending will tell.
                tracing::warn!(topic, error = %e, "creating the dead letter queue topic failed");
            }
        }
        let producer = run
            .block_on(Producer::connect(ProducerConfig::with_client(
                run.client("dlq-producer"),
            )))
            .map_err(client_error(
                "cannot connect the dead letter queue producer",
            ))?;
        Ok(Some(DeadLetterQueue {
            producer,
            topic: topic.to_owned(),
            context_headers: configs
                .bool_or("errors.deadletterqueue.context.headers.enable", false)?,
            sent: Mutex::new(Vec::new()),
        }))
    }

    fn send(&self, run: &TaskRun, read: &ConsumerRecord, stage: Stage, error: &ConnectError) {
        let mut record = ProduceRecord::new(self.topic.clone()).timestamp(read.timestamp);
        if let Some(key) = &read.key {
            record = record.key(key.clone());
        }
        if let Some(value) = &read.value {
            record = record.value(value.clone());
        }
        for (name, value) in &read.headers {
            record = record.header(name.clone(), value.clone());
        }
        if self.context_headers {
            let context = [
                ("__connect.errors.topic", read.topic.to_string()),
                ("__connect.errors.partition", read.partition.to_string()),
                ("__connect.errors.offset", read.offset.to_string()),
                (
                    "__connect.errors.connector.name",
                    run.spec.connector.clone(),
                ),
                ("__connect.errors.task.id", run.spec.task.to_string()),
                ("__connect.errors.stage", stage.to_string()),
                ("__connect.errors.exception.message", error.to_string()),
            ];
            for (name, value) in context {
                record = record.header(name, Some(value.into_bytes()));
            }
        }
        match run.block_on(self.producer.send(record)) {
            Ok(delivery) => self
                .sent
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(delivery),
            Err(e) => {
                tracing::error!(topic = %self.topic, error = %e, "cannot send to the dead letter queue")
            }
        }
    }

    /// Waits for what was sent, before the offsets past those records are committed.
    fn settle(&self, run: &TaskRun) {
        let sent = std::mem::take(&mut *self.sent.lock().unwrap_or_else(PoisonError::into_inner));
        for delivery in sent {
            if let Err(e) = run.block_on(delivery) {
                tracing::error!(topic = %self.topic, error = %e, "a record was not delivered to the dead letter queue");
            }
        }
    }
}
