//! [`KafkaStreams`]: runs a topology against a cluster, as Kafka Streams' runtime of the
//! same name does. Its consumer joins the group named by the application id and reads the
//! topology's source topics; each input partition number is a task (the sources must be
//! co-partitioned); what the tasks' sinks write is produced, and every write to a task's
//! stores goes to the store's changelog topic (`<application id>-<store>-changelog`,
//! compacted, one partition per task), from which a task is restored when it starts.
//!
//! At-least-once: outputs and changelogs are flushed, then the input offsets committed,
//! every `commit_interval` and before partitions are given up. Exactly-once (KIP-447's
//! version 2): one transactional producer writes the outputs, the changelogs and the input
//! offsets of each commit interval in one transaction; the consumer reads committed data
//! only; if a commit fails (the group moved on), the transaction is aborted and every task
//! is dropped, to be rebuilt from the changelogs, so that no aborted update survives.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use runnel_client::{
    Admin, ClientConfig, ClientError, Consumer, ConsumerConfig, DeliveryFuture, IsolationLevel,
    NewTopic, OffsetReset, OffsetSpec, ProduceRecord, Producer, ProducerConfig, RebalanceListener,
    TopicPartition,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::error::StreamsError;
use crate::processor::RawRecord;
use crate::query::{Found, Lookup, Metrics, Query, ReadOnlyKeyValueStore, StreamsMetrics};
use crate::serdes::Serde;
use crate::store::{GlobalStores, LocalState, TaskState};
use crate::task::Task;
use crate::topology::{GlobalSource, Topology};

/// What the runtime promises about each input record's effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessingGuarantee {
    /// Each record's effects happen at least once (after a failure, some again).
    #[default]
    AtLeastOnce,
    /// Each record's effects, outputs and state alike, happen exactly once.
    ExactlyOnce,
}

/// How an application runs.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// The consumer group, the prefix of internal topics and of transactional ids.
    pub application_id: String,
    pub client: ClientConfig,
    pub processing_guarantee: ProcessingGuarantee,
    /// How often outputs, state and input positions are committed. Kafka Streams' defaults:
    /// 30 s at least once, 100 ms exactly once.
    pub commit_interval: Duration,
    /// How long the group waits for a silent member (a crashed instance) before giving its
    /// tasks to the others (Kafka Streams' default, the consumer's: 45 s).
    pub session_timeout: Duration,
    /// Where tasks keep their stores on disk (Kafka's `state.dir`): one fjall keyspace per
    /// instance in `<state_dir>/<application id>/`. `None` keeps them in memory, restored in
    /// full from the changelogs at every start. Two instances on one machine need two
    /// directories.
    pub state_dir: Option<PathBuf>,
}

/// Where stores live by default: `./runnel-streams-state`, the default of
/// `runnel streams reset --state-dir` too.
pub const DEFAULT_STATE_DIR: &str = "./runnel-streams-state";

impl StreamsConfig {
    pub fn new(application_id: &str, bootstrap: &str) -> Self {
        StreamsConfig {
            application_id: application_id.to_owned(),
            client: ClientConfig::new(bootstrap),
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            commit_interval: Duration::from_secs(30),
            session_timeout: Duration::from_secs(45),
            state_dir: Some(PathBuf::from(DEFAULT_STATE_DIR)),
        }
    }

    /// Keeps the stores in `dir` (see [`StreamsConfig::state_dir`]).
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Keeps the stores in memory only: every start restores them in full.
    pub fn in_memory(mut self) -> Self {
        self.state_dir = None;
        self
    }

    /// The instance's state directory, if stores are on disk.
    fn instance_dir(&self) -> Option<PathBuf> {
        Some(self.state_dir.as_ref()?.join(&self.application_id))
    }

    pub fn exactly_once(mut self) -> Self {
        self.processing_guarantee = ProcessingGuarantee::ExactlyOnce;
        self.commit_interval = Duration::from_millis(100);
        self
    }

    /// Every field, for the configuration reference (`runnel docs config-reference`);
    /// `tests::settings_match_the_fields` holds it to [`StreamsConfig::new`].
    pub const SETTINGS: &'static [runnel_client::SettingDoc] = crate::settings::STREAMS_SETTINGS;

    fn changelog(&self, store: &str) -> String {
        format!("{}-{store}-changelog", self.application_id)
    }

    /// An internal topic's name on the cluster: prefixed with the application id.
    fn internal(&self, topic: &str) -> String {
        format!("{}-{topic}", self.application_id)
    }
}

impl From<ClientError> for StreamsError {
    fn from(error: ClientError) -> Self {
        StreamsError::Client(error.to_string())
    }
}

/// A running application. Dropping it without [`KafkaStreams::close`] stops it without a
/// last commit (as a crash would).
pub struct KafkaStreams {
    stop: watch::Sender<bool>,
    running: JoinHandle<Result<(), StreamsError>>,
    metrics: Arc<Metrics>,
    queries: mpsc::Sender<Query>,
}

impl fmt::Debug for KafkaStreams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KafkaStreams")
    }
}

impl Drop for KafkaStreams {
    fn drop(&mut self) {
        self.running.abort();
    }
}

impl KafkaStreams {
    /// Starts running `topology`: creates its changelog topics if missing, joins the group,
    /// and processes until [`KafkaStreams::close`].
    pub async fn start(topology: Topology, config: StreamsConfig) -> Result<Self, StreamsError> {
        let (queries, asked) = mpsc::channel(64);
        let metrics = Arc::new(Metrics::default());
        let runner =
            Runner::connect(Arc::new(topology), config, Arc::clone(&metrics), asked).await?;
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(runner.run(stopped));
        Ok(KafkaStreams {
            stop,
            running,
            metrics,
            queries,
        })
    }

    /// What the application has done since it started.
    pub fn metrics(&self) -> StreamsMetrics {
        self.metrics.snapshot()
    }

    /// Store `name` of this instance (a store of the topology, or a global table's), read
    /// with `key` and `value` while the application runs (interactive queries).
    pub fn store<K: 'static, V: 'static>(
        &self,
        name: &str,
        key: impl Serde<K>,
        value: impl Serde<V>,
    ) -> ReadOnlyKeyValueStore<K, V> {
        ReadOnlyKeyValueStore::new(name, key, value, self.queries.clone())
    }

    /// Commits what was processed, leaves the group and stops.
    pub async fn close(mut self) -> Result<(), StreamsError> {
        let _ = self.stop.send(true);
        let running = std::mem::replace(&mut self.running, tokio::spawn(async { Ok(()) }));
        running
            .await
            .map_err(|error| StreamsError::Client(format!("the stream thread failed: {error}")))?
    }
}

/// Partitions given and taken by the group, as the consumer's listener heard of them.
#[derive(Default)]
struct Rebalances {
    assigned: Vec<TopicPartition>,
    revoked: Vec<TopicPartition>,
}

struct Listener(Arc<Mutex<Rebalances>>);

impl RebalanceListener for Listener {
    fn on_partitions_revoked(&self, partitions: &[TopicPartition]) {
        let mut rebalances = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        rebalances.revoked.extend_from_slice(partitions);
    }

    fn on_partitions_assigned(&self, partitions: &[TopicPartition]) {
        let mut rebalances = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        rebalances.assigned.extend_from_slice(partitions);
    }

    fn on_partitions_lost(&self, partitions: &[TopicPartition]) {
        self.on_partitions_revoked(partitions);
    }
}

struct Runner {
    topology: Arc<Topology>,
    config: StreamsConfig,
    consumer: Consumer,
    producer: Producer,
    rebalances: Arc<Mutex<Rebalances>>,
    /// The topology's repartition topics, as it names them.
    internal: BTreeSet<String>,
    /// Tasks by input partition number.
    tasks: BTreeMap<i32, Task>,
    /// The partitions this member owns.
    owned: BTreeSet<TopicPartition>,
    /// The next offset to commit, per input partition.
    positions: BTreeMap<TopicPartition, i64>,
    /// Each task's stores' checkpoints: the changelog offset each holds everything before.
    checkpoints: BTreeMap<i32, BTreeMap<String, i64>>,
    /// The store each changelog topic is of.
    changelog_stores: BTreeMap<String, String>,
    /// Under exactly-once: a transaction is open.
    in_transaction: bool,
    /// Records sent since the last commit: each must be acknowledged before the commit.
    deliveries: Vec<DeliveryFuture>,
    last_commit: Instant,
    /// The global tables' stores, which every task reads.
    globals: GlobalStores,
    /// Keeps the global tables up to date while the application runs.
    global_reader: Option<JoinHandle<()>>,
    /// The instance's stores on disk, if it has stores and keeps them there.
    local: Option<LocalState>,
    metrics: Arc<Metrics>,
    /// Interactive queries, answered between polls.
    queries: mpsc::Receiver<Query>,
}

impl Runner {
    async fn connect(
        topology: Arc<Topology>,
        config: StreamsConfig,
        metrics: Arc<Metrics>,
        queries: mpsc::Receiver<Query>,
    ) -> Result<Self, StreamsError> {
        let exactly_once = config.processing_guarantee == ProcessingGuarantee::ExactlyOnce;
        create_changelogs(&topology, &config).await?;
        let mut consumer_config = ConsumerConfig::new(String::new());
        consumer_config.client = config.client.clone();
        consumer_config = consumer_config.group(config.application_id.clone());
        consumer_config.enable_auto_commit = false;
        consumer_config.session_timeout = config.session_timeout;
        consumer_config.heartbeat_interval =
            (config.session_timeout / 3).min(Duration::from_secs(3));
        consumer_config.auto_offset_reset = OffsetReset::Earliest;
        if exactly_once {
            consumer_config.isolation_level = IsolationLevel::ReadCommitted;
        }
        let consumer = Consumer::connect(consumer_config).await?;
        let rebalances = Arc::new(Mutex::new(Rebalances::default()));
        consumer.set_rebalance_listener(Arc::new(Listener(Arc::clone(&rebalances))));
        let internal: BTreeSet<String> = topology
            .internal_topics()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let sources: Vec<String> = topology
            .source_topics()
            .into_iter()
            .map(|topic| {
                if internal.contains(topic) {
                    config.internal(topic)
                } else {
                    topic.to_owned()
                }
            })
            .collect();
        let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
        consumer.subscribe(&sources).await?;
        let mut producer_config = ProducerConfig::with_client(config.client.clone());
        if exactly_once {
            // Kafka Streams' setting: a crashed instance's open transaction, which holds back
            // every read_committed reader of its outputs, is aborted within 10 s.
            producer_config.transaction_timeout = Duration::from_secs(10);
            producer_config.transactional_id = Some(format!(
                "{}-{}",
                config.application_id,
                uuid::Uuid::new_v4()
            ));
        }
        let producer = Producer::connect(producer_config).await?;
        if exactly_once {
            producer.init_transactions().await?;
        }
        // Opened now, so that a directory another instance holds stops the start.
        let local = match config.instance_dir() {
            Some(dir) if !topology.store_names().is_empty() => Some(LocalState::open(&dir)?),
            _ => None,
        };
        let globals = GlobalStores::default();
        let global_reader = start_global_reader(&topology, &config, &globals).await?;
        let changelog_stores = topology
            .store_names()
            .into_iter()
            .map(|store| (config.changelog(store), store.to_owned()))
            .collect();
        Ok(Runner {
            topology,
            config,
            consumer,
            producer,
            rebalances,
            internal,
            tasks: BTreeMap::new(),
            owned: BTreeSet::new(),
            positions: BTreeMap::new(),
            in_transaction: false,
            deliveries: Vec::new(),
            checkpoints: BTreeMap::new(),
            changelog_stores,
            last_commit: Instant::now(),
            globals,
            global_reader,
            local,
            metrics,
            queries,
        })
    }

    fn exactly_once(&self) -> bool {
        self.config.processing_guarantee == ProcessingGuarantee::ExactlyOnce
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), StreamsError> {
        let result = self.process_until(&mut stop).await;
        if let Err(error) = &result {
            // Said now, not only when the application is closed.
            tracing::error!(%error, application = %self.config.application_id, "stream processing stopped");
        }
        if let Some(reader) = self.global_reader.take() {
            reader.abort();
        }
        let closed = self.consumer.close().await;
        let flushed = self.producer.close().await;
        result?;
        closed?;
        flushed?;
        Ok(())
    }

    async fn process_until(
        &mut self,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), StreamsError> {
        loop {
            if *stop.borrow() {
                return self.commit().await;
            }
            let records = tokio::select! {
                polled = self.consumer.poll(Duration::from_millis(100)) => polled?,
                _ = stop.changed() => continue,
            };
            self.follow_rebalances().await?;
            self.answer_queries();
            for record in records {
                let tp = TopicPartition::new(&*record.topic, record.partition);
                if !self.owned.contains(&tp) {
                    continue;
                }
                self.begin_if_needed().await?;
                let Some(task) = self.tasks.get_mut(&record.partition) else {
                    continue;
                };
                let headers = record
                    .headers
                    .iter()
                    .map(|(name, value)| (name.clone(), value.as_ref().map(|v| v.to_vec())))
                    .collect();
                let prefix = format!("{}-", self.config.application_id);
                let topic = match record.topic.strip_prefix(&prefix) {
                    Some(name) if self.internal.contains(name) => name,
                    _ => &record.topic,
                };
                task.process(RawRecord {
                    topic,
                    offset: record.offset,
                    key: record.key.as_deref(),
                    value: record.value.as_deref(),
                    timestamp: record.timestamp,
                    headers,
                })?;
                let dropped = std::mem::take(&mut task.context.dropped_records);
                self.metrics.processed(1, dropped);
                self.positions.insert(tp, record.offset + 1);
                self.send_task_output(record.partition).await?;
            }
            self.punctuate_wall_clock().await?;
            if self.last_commit.elapsed() >= self.config.commit_interval {
                self.commit().await?;
            }
        }
    }

    /// Runs the wall-clock punctuations due (between polls: at most a poll late, as Kafka
    /// Streams' are), and sends what they wrote, in the open transaction under
    /// exactly-once.
    async fn punctuate_wall_clock(&mut self) -> Result<(), StreamsError> {
        let now = wall_clock_ms();
        let due: Vec<i32> = self
            .tasks
            .iter()
            .filter(|(_, task)| task.wall_clock_due(now))
            .map(|(partition, _)| *partition)
            .collect();
        for partition in due {
            self.begin_if_needed().await?;
            if let Some(task) = self.tasks.get_mut(&partition) {
                task.advance_wall_clock(now)?;
                let dropped = std::mem::take(&mut task.context.dropped_records);
                self.metrics.processed(0, dropped);
            }
            self.send_task_output(partition).await?;
        }
        Ok(())
    }

    async fn begin_if_needed(&mut self) -> Result<(), StreamsError> {
        if self.exactly_once() && !self.in_transaction {
            self.producer.begin_transaction().await?;
            self.in_transaction = true;
        }
        Ok(())
    }

    /// Produces what task `partition` wrote: its sinks' records, and its stores' changes to
    /// their changelogs' partition of the same number.
    async fn send_task_output(&mut self, partition: i32) -> Result<(), StreamsError> {
        let Some(task) = self.tasks.get_mut(&partition) else {
            return Ok(());
        };
        let emitted = task.take_emitted();
        let changes = task.take_store_changes();
        for record in emitted {
            let topic = if self.internal.contains(&record.topic) {
                self.config.internal(&record.topic)
            } else {
                record.topic
            };
            let mut produce = ProduceRecord::new(topic);
            produce.key = record.key.map(Bytes::from);
            produce.value = record.value.map(Bytes::from);
            produce.timestamp_ms = Some(record.timestamp);
            produce.headers = record
                .headers
                .into_iter()
                .map(|(name, value)| (name, value.map(Bytes::from)))
                .collect();
            self.deliveries.push(self.producer.send(produce).await?);
        }
        for (store, key, value) in changes {
            let mut produce = ProduceRecord::new(self.config.changelog(&store));
            produce.partition = Some(partition);
            produce.key = Some(Bytes::from(key));
            produce.value = value.map(Bytes::from);
            self.deliveries.push(self.producer.send(produce).await?);
        }
        Ok(())
    }

    /// Waits for every record sent since the last commit to be acknowledged, noting how far
    /// each task's changelogs now go.
    async fn delivered(&mut self) -> Result<(), ClientError> {
        for delivery in std::mem::take(&mut self.deliveries) {
            let written = delivery.await?;
            if let Some(store) = self.changelog_stores.get(&written.topic) {
                let next = self
                    .checkpoints
                    .entry(written.partition)
                    .or_default()
                    .entry(store.clone())
                    .or_insert(0);
                *next = (*next).max(written.offset + 1);
            }
        }
        Ok(())
    }

    /// Makes what was processed durable and commits the input positions.
    async fn commit(&mut self) -> Result<(), StreamsError> {
        self.last_commit = Instant::now();
        let offsets: Vec<(TopicPartition, i64)> = self
            .positions
            .iter()
            .map(|(tp, offset)| (tp.clone(), *offset))
            .collect();
        if self.exactly_once() {
            if !self.in_transaction {
                return Ok(());
            }
            self.in_transaction = false;
            let delivered = self.delivered().await;
            let committed = match (delivered, self.consumer.group_metadata()) {
                (Err(error), _) => Err(error),
                (Ok(()), Some(group)) => {
                    match self
                        .producer
                        .send_offsets_to_transaction(&offsets, &group)
                        .await
                    {
                        Ok(()) => self.producer.commit_transaction().await,
                        Err(error) => Err(error),
                    }
                }
                (Ok(()), None) => Err(ClientError::InvalidArgument(
                    "the consumer is not in its group".into(),
                )),
            };
            match committed {
                Ok(()) => {
                    self.metrics.committed();
                    // Only what the transaction committed may reach the stores on disk.
                    self.checkpoint_tasks()?;
                    self.purge(&offsets).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "commit failed: aborting, and rebuilding every task from its changelogs");
                    let _ = self.producer.abort_transaction().await;
                    self.drop_tasks_and_rewind().await?;
                }
            }
            return Ok(());
        }
        // A record not delivered must not have its input committed past: that would lose it.
        self.producer.flush().await?;
        self.delivered().await?;
        self.checkpoint_tasks()?;
        if !offsets.is_empty() {
            // A refused commit (the group is rebalancing) only means those records are
            // processed again by whoever reads them next: at least once still holds.
            match self.consumer.commit_offsets(&offsets).await {
                Ok(()) => {
                    self.metrics.committed();
                    self.purge(&offsets).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "commit of input offsets refused; they will be read again")
                }
            }
        }
        Ok(())
    }

    /// What of `committed` is a repartition topic's, by topic: offsets to purge below.
    fn purgeable(&self, committed: &[(TopicPartition, i64)]) -> BTreeMap<String, Vec<(i32, i64)>> {
        let prefix = format!("{}-", self.config.application_id);
        let mut by_topic: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
        for (tp, offset) in committed {
            let internal = tp
                .topic
                .strip_prefix(&prefix)
                .is_some_and(|name| self.internal.contains(name));
            if internal {
                by_topic
                    .entry(tp.topic.clone())
                    .or_default()
                    .push((tp.partition, *offset));
            }
        }
        by_topic
    }

    /// Deletes what the application has read and committed from its repartition topics
    /// (Kafka Streams' purge): nothing will read it again. A failure only leaves it there.
    async fn purge(&mut self, committed: &[(TopicPartition, i64)]) {
        let purgeable = self.purgeable(committed);
        let admin = Admin::from_cluster(self.consumer.cluster().clone());
        for (topic, before) in purgeable {
            if let Err(error) = admin.delete_records(&topic, &before).await {
                tracing::debug!(%error, topic, "purging a repartition topic failed");
            }
        }
    }

    /// After an aborted transaction: the tasks' state holds aborted updates, and the
    /// consumer's positions are past aborted inputs. Both go back to what was committed.
    async fn drop_tasks_and_rewind(&mut self) -> Result<(), StreamsError> {
        self.tasks.clear();
        self.positions.clear();
        let owned: Vec<TopicPartition> = self.owned.iter().cloned().collect();
        for tp in &owned {
            let committed = self.consumer.committed(std::slice::from_ref(tp)).await?;
            match committed.into_iter().next().and_then(|(_, offset)| offset) {
                Some(offset) => self.consumer.seek(tp, offset).await?,
                None => {
                    self.consumer
                        .seek_to_beginning(std::slice::from_ref(tp))
                        .await?
                }
            }
        }
        let partitions: BTreeSet<i32> = owned.iter().map(|tp| tp.partition).collect();
        for partition in partitions {
            self.start_task(partition).await?;
        }
        Ok(())
    }

    /// Acts on the partitions the group gave and took since the last poll.
    async fn follow_rebalances(&mut self) -> Result<(), StreamsError> {
        let (assigned, revoked) = {
            let mut rebalances = self
                .rebalances
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            (
                std::mem::take(&mut rebalances.assigned),
                std::mem::take(&mut rebalances.revoked),
            )
        };
        if !revoked.is_empty() {
            self.commit().await?;
            for tp in &revoked {
                self.owned.remove(tp);
                self.positions.remove(tp);
            }
            let still: BTreeSet<i32> = self.owned.iter().map(|tp| tp.partition).collect();
            self.tasks.retain(|partition, _| still.contains(partition));
        }
        for tp in assigned {
            let partition = tp.partition;
            self.owned.insert(tp);
            if !self.tasks.contains_key(&partition) {
                self.start_task(partition).await?;
            }
        }
        Ok(())
    }

    /// Builds task `partition` and restores its stores from their changelogs: from each
    /// store's checkpoint if its copy on disk has one the changelog still holds, else (the
    /// copy emptied) from the changelog's start.
    async fn start_task(&mut self, partition: i32) -> Result<(), StreamsError> {
        let now = wall_clock_ms();
        let local = self.task_state(partition);
        let saved = match &local {
            Some(local) => local.checkpoints()?,
            None => BTreeMap::new(),
        };
        // Where each store restores from, its copy emptied first if it cannot be trusted:
        // before the task opens its stores.
        let admin = Admin::from_cluster(self.consumer.cluster().clone());
        let mut plans = Vec::new();
        for store in self.topology.store_names() {
            let tp = TopicPartition::new(self.config.changelog(store), partition);
            let (start, end) = bounds(&admin, &self.config, &tp).await?;
            let from = match (&local, saved.get(store)) {
                (Some(_), Some(&checkpoint)) if (start..=end).contains(&checkpoint) => checkpoint,
                (Some(local), _) => {
                    local.wipe(store)?;
                    start
                }
                (None, _) => start,
            };
            plans.push((store, tp, from, end));
        }
        let mut task = Task::new(&self.topology, now, self.globals.clone(), local.clone())?;
        let mut checkpoints = BTreeMap::new();
        for (store, tp, from, end) in plans {
            let restored = Instant::now();
            let mut records = 0u64;
            let metrics = Arc::clone(&self.metrics);
            let consumer = read_to_end(
                &self.config,
                &[(tp, Some(from))],
                |(_, offset, key, value)| {
                    records += 1;
                    metrics.restored(1);
                    task.restore(store, key, value);
                    // A large restore goes to disk as it goes, not all at the end.
                    if let Some(local) = &local {
                        let kept = task.context.store(store);
                        if kept.pending_bytes() > RESTORE_SPILL_BYTES {
                            let checkpoint = BTreeMap::from([(store.to_owned(), offset + 1)]);
                            local.commit(std::iter::once(kept), &checkpoint)?;
                        }
                    }
                    Ok(())
                },
            )
            .await?;
            consumer.close().await?;
            tracing::info!(store, partition, from, end, records, elapsed = ?restored.elapsed(), "restored");
            checkpoints.insert(store.to_owned(), end);
        }
        if let Some(local) = &local {
            local.commit(task.context.stores.values_mut(), &checkpoints)?;
        }
        self.checkpoints.insert(partition, checkpoints);
        self.tasks.insert(partition, task);
        Ok(())
    }

    /// Task `partition`'s part of the instance's state on disk; `None` with stores in
    /// memory, or no stores.
    fn task_state(&self, partition: i32) -> Option<TaskState> {
        let local = self.local.as_ref()?;
        Some(local.task(&format!("0_{partition}")))
    }

    /// Answers the interactive queries waiting, from this instance's tasks or global tables.
    fn answer_queries(&mut self) {
        while let Ok(query) = self.queries.try_recv() {
            let found = self.look_up(&query.store, &query.lookup);
            // The asker may have given up waiting: nothing to do then.
            let _ = query.reply.send(found);
        }
    }

    fn look_up(&mut self, store: &str, lookup: &Lookup) -> Found {
        let global = self.topology.is_global_store(store);
        let entries: Vec<(Vec<u8>, Vec<u8>)> = if global {
            match lookup {
                Lookup::Get(key) => self
                    .globals
                    .get(store, key)?
                    .map(|value| vec![(key.clone(), value)])
                    .unwrap_or_default(),
                Lookup::Range(from, to) => self
                    .globals
                    .entries(store)?
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(key, _)| key >= from && key < to)
                    .collect(),
                Lookup::All => self.globals.entries(store)?.unwrap_or_default(),
            }
        } else if self.topology.store_names().contains(&store) {
            let mut found = Vec::new();
            for task in self.tasks.values_mut() {
                let kept = task.context.store(store);
                match lookup {
                    Lookup::Get(key) => {
                        if let Some(value) = kept.get(key)? {
                            return Ok(vec![(key.clone(), value)]);
                        }
                    }
                    Lookup::Range(from, to) => found.extend(kept.range(from, to)?),
                    Lookup::All => found.extend(kept.entries()?),
                }
            }
            found.sort();
            found
        } else {
            return Err(StreamsError::InvalidTopology(format!(
                "the application has no store named {store:?}"
            )));
        };
        Ok(entries)
    }

    /// Writes every task's stores to disk with their checkpoints: what the changelogs
    /// acknowledged (and, under exactly-once, committed) so far.
    fn checkpoint_tasks(&mut self) -> Result<(), StreamsError> {
        for (partition, task) in &mut self.tasks {
            let Some(local) = task.context.local.clone() else {
                continue;
            };
            let checkpoints = self.checkpoints.get(partition).cloned().unwrap_or_default();
            local.commit(task.context.stores.values_mut(), &checkpoints)?;
        }
        Ok(())
    }
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// What the application reads its own state with: committed data only under exactly-once.
fn isolation(config: &StreamsConfig) -> IsolationLevel {
    match config.processing_guarantee {
        ProcessingGuarantee::ExactlyOnce => IsolationLevel::ReadCommitted,
        ProcessingGuarantee::AtLeastOnce => IsolationLevel::ReadUncommitted,
    }
}

/// A consumer outside the group, for reading partitions it assigns itself.
async fn state_reader(config: &StreamsConfig) -> Result<Consumer, StreamsError> {
    let mut consumer_config = ConsumerConfig::new(String::new());
    consumer_config.client = config.client.clone();
    consumer_config.isolation_level = isolation(config);
    // A position gone from the log (a retention, DeleteRecords) goes back to its start, not
    // to its end: state read from the end would miss everything before it.
    consumer_config.auto_offset_reset = OffsetReset::Earliest;
    Ok(Consumer::connect(consumer_config).await?)
}

/// How much a store restores in memory before writing it to disk.
const RESTORE_SPILL_BYTES: usize = 64 << 20;

/// A changelog or global table's record: its topic, offset, key and value (`None` deletes).
type StateRecord<'a> = (&'a str, i64, Vec<u8>, Option<Vec<u8>>);

/// Reads each of `partitions` from its offset (its start if `None`) to its end as it is
/// now (its committed end, under exactly-once), calling `apply` on each record with a key.
/// Returns the consumer, positioned at those ends.
async fn read_to_end(
    config: &StreamsConfig,
    partitions: &[(TopicPartition, Option<i64>)],
    mut apply: impl FnMut(StateRecord<'_>) -> Result<(), StreamsError>,
) -> Result<Consumer, StreamsError> {
    let consumer = state_reader(config).await?;
    let assigned: Vec<TopicPartition> = partitions.iter().map(|(tp, _)| tp.clone()).collect();
    consumer.assign(assigned).await?;
    let admin = Admin::from_cluster(consumer.cluster().clone());
    let mut ends = Vec::new();
    for (tp, from) in partitions {
        match from {
            Some(offset) => consumer.seek(tp, *offset).await?,
            None => consumer.seek_to_beginning(std::slice::from_ref(tp)).await?,
        }
        let (_, end) = bounds(&admin, config, tp).await?;
        ends.push((tp, end));
    }
    for (tp, end) in ends {
        while consumer.position(tp).await? < end {
            for record in consumer.poll(Duration::from_millis(200)).await? {
                if let Some(key) = &record.key {
                    let value = record.value.as_ref().map(|value| value.to_vec());
                    apply((&record.topic, record.offset, key.to_vec(), value))?;
                }
            }
        }
    }
    Ok(consumer)
}

/// A partition's log start offset and its end as the application reads it (its last
/// stable offset under exactly-once).
async fn bounds(
    admin: &Admin,
    config: &StreamsConfig,
    tp: &TopicPartition,
) -> Result<(i64, i64), StreamsError> {
    let offset = |listed: Vec<(i32, runnel_client::ListedOffset)>| {
        listed.first().map_or(0, |(_, listed)| listed.offset)
    };
    let start = offset(
        admin
            .list_offsets(&tp.topic, &[tp.partition], OffsetSpec::Earliest)
            .await?,
    );
    let end = offset(
        admin
            .list_offsets_isolated(
                &tp.topic,
                &[tp.partition],
                OffsetSpec::Latest,
                isolation(config),
            )
            .await?,
    );
    Ok((start, end))
}

/// Reads every partition of the global tables' topics into their stores: to the end
/// before any task starts (as Kafka Streams' global thread bootstraps them), then in the
/// background whatever comes after, until the application stops.
async fn start_global_reader(
    topology: &Topology,
    config: &StreamsConfig,
    globals: &GlobalStores,
) -> Result<Option<JoinHandle<()>>, StreamsError> {
    let mut sources: BTreeMap<String, GlobalSource> = BTreeMap::new();
    let mut partitions = Vec::new();
    let admin = Admin::connect(config.client.clone()).await?;
    for topic in topology.global_topics() {
        let Some(global) = topology.global(topic) else {
            continue;
        };
        sources.insert(topic.to_owned(), global.clone());
        let metadata = admin.cluster().topic(topic).await?;
        partitions.extend(
            metadata
                .partitions
                .iter()
                .map(|p| TopicPartition::new(topic, p.partition)),
        );
    }
    if partitions.is_empty() {
        return Ok(None);
    }
    let apply = {
        let globals = globals.clone();
        move |topic: &str, key: Vec<u8>, value: Option<Vec<u8>>| {
            let Some(global) = sources.get(topic) else {
                return;
            };
            // A record its serdes cannot read is left out of the table (the reader cannot
            // stop the application), and said.
            if let Err(error) = globals.apply_record(global, &key, value.as_deref()) {
                tracing::warn!(%error, topic, "a global table's record its serdes cannot read: skipped");
            }
        }
    };
    let apply_later = apply.clone();
    let from_start: Vec<(TopicPartition, Option<i64>)> =
        partitions.into_iter().map(|tp| (tp, None)).collect();
    let consumer = read_to_end(config, &from_start, |(topic, _, key, value)| {
        apply(topic, key, value);
        Ok(())
    })
    .await?;
    Ok(Some(tokio::spawn(async move {
        loop {
            match consumer.poll(Duration::from_millis(200)).await {
                Ok(records) => {
                    for record in records {
                        if let Some(key) = &record.key {
                            let value = record.value.as_ref().map(|value| value.to_vec());
                            apply_later(&record.topic, key.to_vec(), value);
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "reading the global tables failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })))
}

/// Checks the source topics' partitions, then creates each store's changelog topic
/// (compacted) and each repartition topic, with one partition per task; an existing one is
/// left as it is.
async fn create_changelogs(
    topology: &Topology,
    config: &StreamsConfig,
) -> Result<(), StreamsError> {
    let admin = Admin::connect(config.client.clone()).await?;
    let mut counts = BTreeMap::new();
    let internal = topology.internal_topics();
    for topic in topology.source_topics() {
        if internal.contains(&topic) {
            continue;
        }
        let metadata = admin.cluster().topic(topic).await?;
        counts.insert(topic.to_owned(), metadata.partitions.len() as i32);
    }
    let partitions = counts.values().copied().max().unwrap_or(1);
    // A task reads partition p of every source: they must be co-partitioned.
    if counts.values().any(|&count| count != partitions) {
        return Err(StreamsError::InvalidTopology(format!(
            "source topics must have as many partitions as each other: {counts:?}"
        )));
    }
    let stores = topology.store_names();
    let changelogs = stores.iter().map(|store| NewTopic {
        name: config.changelog(store),
        partitions,
        replication_factor: -1,
        configs: vec![("cleanup.policy".into(), "compact".into())],
    });
    // As Kafka Streams configures them: kept until the application purges what it read.
    let repartitions = internal.iter().map(|topic| NewTopic {
        name: config.internal(topic),
        partitions,
        replication_factor: -1,
        configs: vec![
            ("cleanup.policy".into(), "delete".into()),
            ("retention.ms".into(), "-1".into()),
            ("segment.bytes".into(), "52428800".into()),
        ],
    });
    let topics: Vec<NewTopic> = changelogs.chain(repartitions).collect();
    if topics.is_empty() {
        return Ok(());
    }
    for (name, created) in admin.create_topics(topics, false).await? {
        match created {
            Ok(()) => {}
            Err(error) if error.code() == Some(ResponseError::TopicAlreadyExists) => {}
            Err(error) => {
                return Err(StreamsError::Client(format!(
                    "creating changelog topic {name:?}: {error}"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use runnel_client::SettingDoc;

    use super::*;

    #[test]
    fn settings_match_the_fields() {
        // Destructured without `..`: a new field fails to compile here until it is listed.
        let StreamsConfig {
            application_id,
            client: _,
            processing_guarantee,
            commit_interval,
            session_timeout,
            state_dir,
        } = StreamsConfig::new("", "h:1");
        let ms = |d: Duration| Some(SettingDoc::millis(d));
        let guarantee = match processing_guarantee {
            ProcessingGuarantee::AtLeastOnce => "at_least_once",
            ProcessingGuarantee::ExactlyOnce => "exactly_once",
        };
        let actual = [
            ("application_id", Some(application_id)),
            ("client", None),
            ("processing_guarantee", Some(guarantee.to_owned())),
            ("commit_interval", ms(commit_interval)),
            ("session_timeout", ms(session_timeout)),
            (
                "state_dir",
                state_dir.map(|dir| dir.to_string_lossy().into_owned()),
            ),
        ];
        let problems = SettingDoc::mismatches(StreamsConfig::SETTINGS, &actual);
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
