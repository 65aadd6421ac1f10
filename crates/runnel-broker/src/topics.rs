//! Topics and partitions held by this broker: the registry, its persistence, and the per-partition
//! state the handlers share (the log behind a mutex, the high watermark, group-commit fsync).
//!
//! Layout under the data directory:
//! ```text
//! topics/<name>.json      topic id, partition count, config overrides (written atomically)
//! <name>-<partition>/     one partition log (runnel-storage)
//! ```
//! A topic exists once its JSON file exists; partition directories without one are leftovers of
//! an interrupted create or delete and are removed at start-up.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use kafka_protocol::error::ResponseError;
use runnel_storage::{AppendInfo, PartitionLog, StorageError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::ApiError;
use crate::topic_config::{validate_entry, BrokerTopicDefaults, TopicSettings};

/// A single node leads every partition in epoch 0; replication (later) moves this.
pub(crate) const LEADER_EPOCH: i32 = 0;
const TOPIC_NAME_MAX_LEN: usize = 249;
const PARTITIONS_MAX: i32 = 100_000;

/// One partition of a topic on this broker.
#[derive(Debug)]
pub(crate) struct Partition {
    pub topic: Arc<str>,
    pub index: i32,
    /// `None` once the topic is deleted: holders of an `Arc<Partition>` then see it as unknown.
    log: Mutex<Option<PartitionLog>>,
    /// Consumers read below this. On a single node it is the log end offset.
    high_watermark: watch::Sender<i64>,
    /// Held while an fsync runs, so concurrent acknowledgements share one fsync.
    sync_lock: tokio::sync::Mutex<()>,
    /// Everything below is fsynced; read without the log lock on the acknowledgement path.
    flushed_offset: AtomicI64,
}

impl Partition {
    fn new(topic: Arc<str>, index: i32, log: PartitionLog) -> Self {
        let (high_watermark, _) = watch::channel(log.log_end_offset());
        Partition {
            topic,
            index,
            flushed_offset: AtomicI64::new(log.recovery_point()),
            log: Mutex::new(Some(log)),
            high_watermark,
            sync_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Runs `f` on the log, or answers UNKNOWN_TOPIC_OR_PARTITION if the topic was deleted.
    pub(crate) fn with_log<T>(
        &self,
        f: impl FnOnce(&mut PartitionLog) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut guard = self.lock();
        match guard.as_mut() {
            Some(log) => f(log),
            None => Err(ApiError::code(ResponseError::UnknownTopicOrPartition)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<PartitionLog>> {
        match self.log.lock() {
            Ok(guard) => guard,
            // A panic while appending may have left the log half-updated: crashing beats
            // serving a log that may diverge from what is on disk.
            Err(_) => {
                tracing::error!(topic = %self.topic, partition = self.index, "partition log lock poisoned by a panic; stopping");
                std::process::abort();
            }
        }
    }

    pub(crate) fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    pub(crate) fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// Appends validated batches, giving them offsets; moves the high watermark.
    pub(crate) fn append(&self, batches: &mut [u8], now_ms: i64) -> Result<AppendInfo, ApiError> {
        self.with_log(|log| {
            let info = log.append(batches, LEADER_EPOCH, now_ms)?;
            self.high_watermark.send_replace(log.log_end_offset());
            Ok(info)
        })
    }

    /// Whether the flush policy asks for an fsync now.
    pub(crate) fn flush_due(&self, now_ms: i64) -> bool {
        self.with_log(|log| Ok(log.flush_due(now_ms)))
            .unwrap_or(false)
    }

    /// Whether `flush.messages` requires an fsync before acknowledging what was appended.
    pub(crate) fn sync_required_before_ack(&self) -> bool {
        self.with_log(|log| Ok(log.flush_due_by_count()))
            .unwrap_or(false)
    }

    /// Makes every offset below `offset` durable. Appenders that arrive while an fsync runs
    /// wait for it and then usually find their data already covered: one fsync, many acks.
    pub(crate) async fn sync_to(&self, offset: i64) -> Result<(), ApiError> {
        if self.flushed_offset.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let _sync = self.sync_lock.lock().await;
        if self.flushed_offset.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let handle = self.with_log(|log| Ok(log.unflushed()))?;
        let synced_offset = handle.offset;
        tokio::task::spawn_blocking(move || handle.sync())
            .await
            .map_err(|join| ApiError::storage(format!("fsync task failed: {join}")))?
            .map_err(|error| ApiError::storage(format!("fsync failed: {error}")))?;
        self.with_log(|log| Ok(log.mark_flushed(synced_offset)?))?;
        self.flushed_offset
            .fetch_max(synced_offset, Ordering::AcqRel);
        Ok(())
    }

    /// Flushes and closes the log (clean shutdown).
    fn close(&self) -> Result<(), StorageError> {
        match self.lock().take() {
            Some(log) => log.close(),
            None => Ok(()),
        }
    }

    fn delete(&self) -> Result<(), StorageError> {
        match self.lock().take() {
            Some(log) => log.delete(),
            None => Ok(()),
        }
    }
}

/// A topic: its identity, partitions and configs.
#[derive(Debug)]
pub(crate) struct Topic {
    pub name: Arc<str>,
    pub id: Uuid,
    partitions: RwLock<Vec<Arc<Partition>>>,
    overrides: RwLock<BTreeMap<String, String>>,
    settings: RwLock<Arc<TopicSettings>>,
}

impl Topic {
    pub(crate) fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        let partitions = read(&self.partitions);
        usize::try_from(index)
            .ok()
            .and_then(|i| partitions.get(i).cloned())
    }

    pub(crate) fn partitions(&self) -> Vec<Arc<Partition>> {
        read(&self.partitions).clone()
    }

    pub(crate) fn partition_count(&self) -> i32 {
        read(&self.partitions).len() as i32
    }

    pub(crate) fn settings(&self) -> Arc<TopicSettings> {
        read(&self.settings).clone()
    }

    pub(crate) fn overrides(&self) -> BTreeMap<String, String> {
        read(&self.overrides).clone()
    }

    /// Topics the broker itself writes; clients may read them but not write, delete or grow.
    pub(crate) fn is_internal(&self) -> bool {
        &*self.name == crate::groups::OFFSETS_TOPIC
    }
}

/// What is written to `topics/<name>.json`.
#[derive(Debug, Serialize, Deserialize)]
struct TopicRecord {
    name: String,
    id: Uuid,
    partitions: i32,
    configs: BTreeMap<String, String>,
}

/// Every topic on this broker.
#[derive(Debug)]
pub(crate) struct TopicRegistry {
    data_dir: PathBuf,
    broker_defaults: BrokerTopicDefaults,
    topics: RwLock<HashMap<Arc<str>, Arc<Topic>>>,
    /// Serialises create, delete, alter and add-partitions so the files and the map agree.
    admin_lock: Mutex<()>,
}

impl TopicRegistry {
    /// Loads every topic and recovers its partition logs.
    pub(crate) fn open(
        data_dir: &Path,
        broker_defaults: BrokerTopicDefaults,
        now_ms: i64,
    ) -> Result<Self, StorageError> {
        let topics_dir = data_dir.join("topics");
        fs::create_dir_all(&topics_dir)
            .map_err(|source| io_error(&topics_dir, "create", source))?;
        let registry = TopicRegistry {
            data_dir: data_dir.to_path_buf(),
            broker_defaults,
            topics: RwLock::new(HashMap::new()),
            admin_lock: Mutex::new(()),
        };
        let mut known_dirs = Vec::new();
        let entries =
            fs::read_dir(&topics_dir).map_err(|source| io_error(&topics_dir, "list", source))?;
        for entry in entries {
            let path = entry
                .map_err(|source| io_error(&topics_dir, "list", source))?
                .path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let text =
                fs::read_to_string(&path).map_err(|source| io_error(&path, "read", source))?;
            let record: TopicRecord = serde_json::from_str(&text)
                .map_err(|error| StorageError::Corrupt(format!("{}: {error}", path.display())))?;
            for index in 0..record.partitions {
                known_dirs.push(partition_dir_name(&record.name, index));
            }
            let topic = registry.open_topic(record, now_ms)?;
            tracing::info!(topic = %topic.name, partitions = topic.partition_count(), "loaded topic");
            write(&registry.topics).insert(topic.name.clone(), topic);
        }
        registry.remove_leftover_dirs(&known_dirs);
        Ok(registry)
    }

    fn open_topic(&self, record: TopicRecord, now_ms: i64) -> Result<Arc<Topic>, StorageError> {
        let settings = TopicSettings::resolve(&record.configs, &self.broker_defaults);
        let name: Arc<str> = Arc::from(record.name.as_str());
        let mut partitions = Vec::new();
        for index in 0..record.partitions {
            let dir = self.data_dir.join(partition_dir_name(&name, index));
            let mut log = PartitionLog::open(&dir, settings.log.clone(), now_ms)?;
            if log.latest_leader_epoch().is_none() {
                log.assign_leader_epoch(LEADER_EPOCH, log.log_end_offset())?;
            }
            partitions.push(Arc::new(Partition::new(name.clone(), index, log)));
        }
        Ok(Arc::new(Topic {
            name,
            id: record.id,
            partitions: RwLock::new(partitions),
            overrides: RwLock::new(record.configs),
            settings: RwLock::new(Arc::new(settings)),
        }))
    }

    /// Partition directories with no topic file: an interrupted create or delete.
    fn remove_leftover_dirs(&self, known: &[String]) {
        let Ok(entries) = fs::read_dir(&self.data_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_partition_dir = name
                .rsplit_once('-')
                .is_some_and(|(_, index)| index.parse::<u32>().is_ok());
            if entry.path().is_dir() && is_partition_dir && !known.contains(&name) {
                tracing::warn!(dir = %name, "removing partition directory of a topic that no longer exists");
                if let Err(error) = fs::remove_dir_all(entry.path()) {
                    tracing::warn!(dir = %name, %error, "could not remove leftover directory");
                }
            }
        }
    }

    pub(crate) fn broker_defaults(&self) -> &BrokerTopicDefaults {
        &self.broker_defaults
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Topic>> {
        read(&self.topics).get(name).cloned()
    }

    pub(crate) fn get_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        read(&self.topics)
            .values()
            .find(|topic| topic.id == id)
            .cloned()
    }

    /// The topic, or the UNKNOWN_TOPIC_OR_PARTITION answer admin requests give for it.
    fn existing(&self, name: &str) -> Result<Arc<Topic>, ApiError> {
        self.get(name).ok_or_else(|| {
            ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("Topic '{name}' does not exist."),
            )
        })
    }

    /// All topics, by name.
    pub(crate) fn list(&self) -> Vec<Arc<Topic>> {
        let mut topics: Vec<_> = read(&self.topics).values().cloned().collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    /// Creates a topic, or with `validate_only` checks that it could be created.
    pub(crate) fn create(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
        now_ms: i64,
    ) -> Result<Option<Arc<Topic>>, ApiError> {
        validate_topic_name(name)?;
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!("Number of partitions must be between 1 and {PARTITIONS_MAX}, got {partitions}."),
            ));
        }
        for (key, value) in &configs {
            validate_entry(key, value)
                .map_err(|message| ApiError::new(ResponseError::InvalidConfig, message))?;
        }
        let _admin = lock(&self.admin_lock);
        if self.get(name).is_some() {
            return Err(ApiError::new(
                ResponseError::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        let normalised = name.replace('.', "_");
        if let Some(other) = read(&self.topics)
            .keys()
            .find(|t| t.replace('.', "_") == normalised)
        {
            return Err(ApiError::new(
                ResponseError::InvalidTopicException,
                format!("Topic '{name}' collides with existing topic '{other}': '.' and '_' are treated alike in metric names."),
            ));
        }
        if validate_only {
            return Ok(None);
        }
        let record = TopicRecord {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            configs,
        };
        let topic = self.open_topic(
            TopicRecord {
                configs: record.configs.clone(),
                ..record
            },
            now_ms,
        )?;
        self.persist(&TopicRecord {
            name: name.to_string(),
            id: topic.id,
            partitions,
            configs: topic.overrides(),
        })?;
        write(&self.topics).insert(topic.name.clone(), topic.clone());
        tracing::info!(topic = name, partitions, "created topic");
        Ok(Some(topic))
    }

    /// Deletes a topic: its file first (so a crash cannot resurrect it), then its logs.
    pub(crate) fn delete(&self, name: &str) -> Result<(), ApiError> {
        let _admin = lock(&self.admin_lock);
        let topic = self.existing(name)?;
        refuse_internal(&topic, "delete")?;
        let file = self.topic_file(name);
        fs::remove_file(&file).map_err(|source| io_error(&file, "remove", source))?;
        write(&self.topics).remove(name);
        for partition in topic.partitions() {
            if let Err(error) = partition.delete() {
                tracing::warn!(topic = name, partition = partition.index, %error, "could not remove partition data; it is removed at next start");
            }
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Grows a topic to `total` partitions.
    pub(crate) fn add_partitions(
        &self,
        name: &str,
        total: i32,
        validate_only: bool,
        now_ms: i64,
    ) -> Result<(), ApiError> {
        let _admin = lock(&self.admin_lock);
        let topic = self.existing(name)?;
        refuse_internal(&topic, "add partitions to")?;
        let current = topic.partition_count();
        if total <= current || total > PARTITIONS_MAX {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!(
                    "Topic currently has {current} partitions, {total} would not be an increase."
                ),
            ));
        }
        if validate_only {
            return Ok(());
        }
        let settings = topic.settings();
        let mut added = Vec::new();
        for index in current..total {
            let dir = self.data_dir.join(partition_dir_name(name, index));
            let mut log = PartitionLog::open(&dir, settings.log.clone(), now_ms)?;
            log.assign_leader_epoch(LEADER_EPOCH, 0)?;
            added.push(Arc::new(Partition::new(topic.name.clone(), index, log)));
        }
        self.persist(&TopicRecord {
            name: name.to_string(),
            id: topic.id,
            partitions: total,
            configs: topic.overrides(),
        })?;
        write(&topic.partitions).extend(added);
        Ok(())
    }

    /// Replaces a topic's overrides (AlterConfigs), or applies a change to them
    /// (IncrementalAlterConfigs) via `change`. Validates every resulting value.
    pub(crate) fn alter_configs(
        &self,
        name: &str,
        validate_only: bool,
        change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let _admin = lock(&self.admin_lock);
        let topic = self.existing(name)?;
        let mut overrides = topic.overrides();
        change(&mut overrides)?;
        for (key, value) in &overrides {
            validate_entry(key, value)
                .map_err(|message| ApiError::new(ResponseError::InvalidConfig, message))?;
        }
        if validate_only {
            return Ok(());
        }
        self.persist(&TopicRecord {
            name: name.to_string(),
            id: topic.id,
            partitions: topic.partition_count(),
            configs: overrides.clone(),
        })?;
        let settings = Arc::new(TopicSettings::resolve(&overrides, &self.broker_defaults));
        for partition in topic.partitions() {
            let _ = partition.with_log(|log| {
                log.set_config(settings.log.clone());
                Ok(())
            });
        }
        *write(&topic.overrides) = overrides;
        *write(&topic.settings) = settings;
        Ok(())
    }

    /// Flushes and closes every log (clean shutdown).
    pub(crate) fn close_all(&self) {
        for topic in self.list() {
            for partition in topic.partitions() {
                if let Err(error) = partition.close() {
                    tracing::error!(topic = %topic.name, partition = partition.index, %error, "could not close partition log");
                }
            }
        }
    }

    fn topic_file(&self, name: &str) -> PathBuf {
        self.data_dir.join("topics").join(format!("{name}.json"))
    }

    /// Writes a topic file atomically: temp file, fsync, rename, fsync the directory.
    fn persist(&self, record: &TopicRecord) -> Result<(), StorageError> {
        let path = self.topic_file(&record.name);
        let temp = path.with_extension("json.tmp");
        let json = serde_json::to_vec_pretty(record).map_err(|error| {
            StorageError::Corrupt(format!("cannot encode topic {}: {error}", record.name))
        })?;
        let write_temp = || -> std::io::Result<()> {
            let mut file = fs::File::create(&temp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&temp, &path)?;
            fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
        };
        write_temp().map_err(|source| io_error(&path, "write", source))
    }
}

/// Internal topics (`__consumer_offsets`) map keys to partitions by count; deleting or growing
/// them would lose committed offsets.
fn refuse_internal(topic: &Topic, action: &str) -> Result<(), ApiError> {
    if topic.is_internal() {
        return Err(ApiError::new(
            ResponseError::InvalidTopicException,
            format!("Cannot {action} internal topic {}", topic.name),
        ));
    }
    Ok(())
}

/// Kafka's topic name rules.
pub(crate) fn validate_topic_name(name: &str) -> Result<(), ApiError> {
    let invalid = |reason: String| Err(ApiError::new(ResponseError::InvalidTopicException, reason));
    if name.is_empty() {
        return invalid("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return invalid(format!("Topic name cannot be \"{name}\""));
    }
    if name.len() > TOPIC_NAME_MAX_LEN {
        return invalid(format!(
            "Topic name is illegal, it can't be longer than {TOPIC_NAME_MAX_LEN} characters, topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return invalid(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

fn partition_dir_name(topic: &str, index: i32) -> String {
    format!("{topic}-{index}")
}

fn io_error(path: &Path, action: &str, source: std::io::Error) -> StorageError {
    StorageError::Io {
        context: format!("{action} {}", path.display()),
        source,
    }
}

// The registry's own locks guard plain maps; a panic while holding one cannot leave them torn.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn lock<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
