//! The connector SDK: what a connector author implements, as in Kafka Connect.
//!
//! A [`Connector`] is configured once per connector and splits the work into at most
//! `tasks.max` task configurations. Each task runs on its own thread, so the traits are
//! synchronous and may block (a database query, a file read): a [`SourceTask`] polls records
//! from its system, a [`SinkTask`] receives records read from topics and writes them out.
//!
//! The worker owns everything else: converting to and from bytes, transforms, error
//! tolerance, producing and consuming, and offsets. A source task's offsets are committed
//! only after its records are acknowledged by the cluster; a sink's consumer offsets only
//! after [`SinkTask::flush`] returned.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config::{ConfigDef, ConfigError, ConfigValue, Configs};
use crate::data::{SinkRecord, SourceOffset, SourcePartition, SourceRecord};

/// Why a connector or task call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// A temporary failure: the worker retries the same call later (Kafka's
    /// `RetriableException`).
    #[error("{0}")]
    Retriable(String),
    /// The task or connector cannot go on; it is marked FAILED with this message.
    #[error("{0}")]
    Failed(String),
    /// A configuration value is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl ConnectError {
    /// Whether retrying the same call can succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, ConnectError::Retriable(_))
    }

    /// A [`ConnectError::Failed`] from anything printable.
    pub fn failed(why: impl fmt::Display) -> ConnectError {
        ConnectError::Failed(why.to_string())
    }
}

/// Whether a connector moves data into topics or out of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorType {
    /// Reads a system, writes topics.
    Source,
    /// Reads topics, writes a system.
    Sink,
}

impl ConnectorType {
    /// `source` or `sink`, as the REST API writes it.
    pub fn name(self) -> &'static str {
        match self {
            ConnectorType::Source => "source",
            ConnectorType::Sink => "sink",
        }
    }
}

/// What a running connector may ask of its worker.
#[derive(Clone)]
pub struct ConnectorContext {
    reconfigure: Arc<dyn Fn() + Send + Sync>,
}

impl fmt::Debug for ConnectorContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorContext").finish_non_exhaustive()
    }
}

impl ConnectorContext {
    /// A context whose reconfiguration requests call `reconfigure`.
    pub fn new(reconfigure: Arc<dyn Fn() + Send + Sync>) -> ConnectorContext {
        ConnectorContext { reconfigure }
    }

    /// Asks the worker to call [`Connector::task_configs`] again and restart the tasks if
    /// their configs changed, e.g. when a database gained a table.
    pub fn request_task_reconfiguration(&self) {
        (self.reconfigure)();
    }
}

/// A connector: validates its configuration and divides the work among tasks.
pub trait Connector: Send {
    /// The keys this connector takes, beyond the ones every connector has.
    fn config_def(&self) -> ConfigDef;

    /// Checks `configs` beyond each key's type and rule (keys that depend on each other).
    /// The default checks each key alone.
    fn validate(&self, configs: &Configs) -> Vec<ConfigValue> {
        self.config_def().validate(configs)
    }

    /// Starts the connector with its resolved configuration.
    fn start(&mut self, configs: &Configs, context: ConnectorContext) -> Result<(), ConnectError>;

    /// The configuration of each task, at most `max_tasks` of them.
    fn task_configs(&mut self, max_tasks: usize) -> Result<Vec<Configs>, ConnectError>;

    /// Stops the connector; its tasks are stopped apart.
    fn stop(&mut self);
}

/// Source offsets already committed, for a task to resume from.
pub trait OffsetReader: Send + Sync {
    /// The last committed offset of `partition`, if any.
    fn offset(&self, partition: &SourcePartition) -> Option<SourceOffset>;
}

/// What a task is told by its worker.
#[derive(Clone)]
pub struct TaskContext {
    /// The connector's name.
    pub connector: String,
    /// The task's number among the connector's tasks.
    pub task: usize,
    stopping: Arc<AtomicBool>,
    offsets: Arc<dyn OffsetReader>,
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("connector", &self.connector)
            .field("task", &self.task)
            .finish_non_exhaustive()
    }
}

impl TaskContext {
    /// The context of task `task` of `connector`.
    pub fn new(
        connector: &str,
        task: usize,
        stopping: Arc<AtomicBool>,
        offsets: Arc<dyn OffsetReader>,
    ) -> TaskContext {
        TaskContext {
            connector: connector.to_owned(),
            task,
            stopping,
            offsets,
        }
    }

    /// Whether the worker is stopping the task: a long poll should return soon.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The committed offset of a source partition (sources only; sinks see none).
    pub fn offset(&self, partition: &SourcePartition) -> Option<SourceOffset> {
        self.offsets.offset(partition)
    }
}

/// A source task: reads its share of a system into records.
pub trait SourceTask: Send {
    /// Starts reading, from the offsets in `context` when there are some.
    fn start(&mut self, configs: &Configs, context: &TaskContext) -> Result<(), ConnectError>;

    /// The next records; empty when there are none yet. Should not block for much longer
    /// than a second, so that the task stops promptly.
    fn poll(&mut self) -> Result<Vec<SourceRecord>, ConnectError>;

    /// Called after offsets up to what was polled so far were committed.
    fn commit(&mut self) -> Result<(), ConnectError> {
        Ok(())
    }

    /// Stops the task and releases what it holds.
    fn stop(&mut self);
}

/// A topic partition, as sinks see the partitions they are given.
pub type TopicPartition = (String, i32);

/// A sink task: writes records read from topics into a system.
pub trait SinkTask: Send {
    /// Starts the task.
    fn start(&mut self, configs: &Configs, context: &TaskContext) -> Result<(), ConnectError>;

    /// Takes records; may write them at once or buffer them until [`SinkTask::flush`].
    /// A [`ConnectError::Retriable`] makes the worker hand the same records again later.
    fn put(&mut self, records: &[SinkRecord]) -> Result<(), ConnectError>;

    /// Makes everything `put` so far durable. `offsets` are the next offsets to read per
    /// partition; the worker commits them to the group only if this returns `Ok`.
    fn flush(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<(), ConnectError>;

    /// Stops the task and releases what it holds.
    fn stop(&mut self);
}

/// A new task of a plugin.
#[derive(Clone, Copy)]
pub enum TaskFactory {
    /// A source connector's tasks.
    Source(fn() -> Box<dyn SourceTask>),
    /// A sink connector's tasks.
    Sink(fn() -> Box<dyn SinkTask>),
}

impl fmt::Debug for TaskFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskFactory::Source(_) => "TaskFactory::Source",
            TaskFactory::Sink(_) => "TaskFactory::Sink",
        })
    }
}

/// A connector plugin: its names, and how to make its connector and tasks.
#[derive(Debug, Clone, Copy)]
pub struct Plugin {
    /// The class name the REST API lists, Kafka's where one exists.
    pub class: &'static str,
    /// Other names that select it (short names, Kafka's fully qualified names).
    pub aliases: &'static [&'static str],
    /// Makes the connector.
    pub connector: fn() -> Box<dyn Connector>,
    /// Makes its tasks.
    pub task: TaskFactory,
}

impl Plugin {
    /// Source or sink.
    pub fn kind(&self) -> ConnectorType {
        match self.task {
            TaskFactory::Source(_) => ConnectorType::Source,
            TaskFactory::Sink(_) => ConnectorType::Sink,
        }
    }

    /// Whether `name` selects this plugin (its class or an alias).
    pub fn is_named(&self, name: &str) -> bool {
        self.class == name || self.aliases.contains(&name)
    }
}

/// The plugins a worker can run.
#[derive(Debug, Clone)]
pub struct Plugins {
    plugins: Vec<Plugin>,
}

impl Plugins {
    /// These plugins.
    pub fn new(plugins: Vec<Plugin>) -> Plugins {
        Plugins { plugins }
    }

    /// The plugin `name` selects.
    pub fn find(&self, name: &str) -> Option<&Plugin> {
        self.plugins.iter().find(|p| p.is_named(name))
    }

    /// Every plugin, in registration order.
    pub fn all(&self) -> &[Plugin] {
        &self.plugins
    }

    /// Adds a plugin (an application's own connector).
    pub fn register(&mut self, plugin: Plugin) {
        self.plugins.push(plugin);
    }
}
