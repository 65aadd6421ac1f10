//! Topics held by this broker: the registry, its persistence, and the lifecycle of their
//! partitions' directories. The per-partition state lives in `partition`.
//!
//! Layout under the data directory:
//! ```text
//! meta.properties                 cluster id and node id
//! topics/<name>.json              topic id, partition count, config overrides
//! <name>-<partition>/             one partition log (runnel-storage), with partition.metadata
//! <name>-<partition>.<id>-delete/ a deleted topic's partition, being removed
//! ```
//! A topic exists once its JSON file is durable (written atomically). Creation makes each
//! partition directory durable, and stamps it with the topic id (`partition.metadata`), before
//! the JSON; deletion removes the JSON durably first, then renames the directories away and
//! removes them. A crash at any point can neither resurrect a deleted topic nor hand its data
//! to a new topic of the same name: directories without a topic file, or stamped with another
//! topic's id, are removed at start.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use runnel_storage::fs::{create_dir_durably, read_optional, write_atomically, TEMP_SUFFIX};
use runnel_storage::{FileHandles, FileSystem, PartitionLog, StorageError, PARTITION_METADATA};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::error::ApiError;
use crate::partition::{Partition, Schedule};
use crate::topic_config::{BrokerTopicDefaults, TopicSettings};

const DELETE_SUFFIX: &str = "-delete";

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
        crate::internal_topics::is_internal(&self.name)
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
    fs: Arc<dyn FileSystem>,
    data_dir: PathBuf,
    /// The topic defaults this broker was started with (`--log-retention-ms`, ...).
    static_defaults: BrokerTopicDefaults,
    /// Those with the dynamic broker configs of the metadata over them: what topics without
    /// an override of their own follow.
    broker_defaults: RwLock<Arc<BrokerTopicDefaults>>,
    /// The pool of segment file handles every partition's log shares.
    handles: Arc<FileHandles>,
    /// Threads that open partitions at start and close them at shutdown: each waits on
    /// fsyncs, so several keep the disk busy (`num.io.threads`).
    threads: usize,
    topics: RwLock<HashMap<Arc<str>, Arc<Topic>>>,
    /// The partitions with appends not yet fsynced, for the background flusher.
    schedule: Arc<Schedule>,
    /// Serialises create, delete, alter and add-partitions so the files and the map agree.
    admin_lock: Mutex<()>,
    /// Whether replicas count only what they fsynced (`replica-fsync`).
    fsync_before_replicated: bool,
    /// Each partition's high watermark as last checkpointed, by topic id and index: where a
    /// restarted replica's high watermark starts.
    checkpointed_high_watermarks: HashMap<(Uuid, i32), i64>,
}

/// The file in the data directory that holds the cluster partitions' high watermarks
/// (Kafka's `replication-offset-checkpoint`), as JSON: `{"<topic id>:<partition>": offset}`.
pub(crate) const HIGH_WATERMARK_CHECKPOINT: &str = "replication-offset-checkpoint";

/// The leader epoch a single node of old wrote every batch in.
const SINGLE_NODE_LEADER_EPOCH: i32 = 0;

impl TopicRegistry {
    /// Loads every topic and recovers its partition logs, as `config` lays them out. A
    /// partition that cannot be opened is kept offline; the others serve. Blocks.
    pub(crate) fn open(
        fs: Arc<dyn FileSystem>,
        config: &BrokerConfig,
        now_ms: i64,
    ) -> Result<Self, StorageError> {
        let data_dir = &config.data_dir;
        let topics_dir = data_dir.join("topics");
        create_dir_durably(&*fs, &topics_dir)
            .map_err(|source| io_error(&topics_dir, "create", source))?;
        let checkpointed_high_watermarks = read_high_watermarks(&*fs, data_dir)?;
        let registry = TopicRegistry {
            fs,
            data_dir: data_dir.clone(),
            static_defaults: config.topic_defaults(),
            broker_defaults: RwLock::new(Arc::new(config.topic_defaults())),
            handles: FileHandles::new(config.sealed_segment_files_max),
            threads: config.num_io_threads.max(1),
            topics: RwLock::new(HashMap::new()),
            schedule: Arc::default(),
            admin_lock: Mutex::new(()),
            fsync_before_replicated: config.replica_fsync,
            checkpointed_high_watermarks,
        };
        let mut records = Vec::new();
        let entries = registry
            .fs
            .list(&topics_dir)
            .map_err(|source| io_error(&topics_dir, "list", source))?;
        for entry in entries {
            let path = topics_dir.join(&entry.name);
            let name = entry.name.to_string_lossy();
            if name.ends_with(TEMP_SUFFIX) {
                // An interrupted atomic write; the file it was replacing is intact.
                registry
                    .fs
                    .remove_file(&path)
                    .map_err(|source| io_error(&path, "remove", source))?;
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            let text = read_optional(&*registry.fs, &path)
                .map_err(|source| io_error(&path, "read", source))?
                .unwrap_or_default();
            let record: TopicRecord = serde_json::from_slice(&text)
                .map_err(|error| StorageError::Corrupt(format!("{}: {error}", path.display())))?;
            records.push(record);
        }
        registry.load_topics(records, now_ms);
        Ok(registry)
    }

    /// The topics read at start, their partitions opened (recovered) on `threads` threads:
    /// partitions that fail to open are kept offline.
    fn load_topics(&self, records: Vec<TopicRecord>, now_ms: i64) {
        let settings: Vec<TopicSettings> = records
            .iter()
            .map(|record| TopicSettings::resolve(&record.configs, &self.broker_defaults()))
            .collect();
        let names: Vec<Arc<str>> = records
            .iter()
            .map(|record| Arc::from(record.name.as_str()))
            .collect();
        let jobs: Vec<(usize, i32)> = records
            .iter()
            .enumerate()
            .flat_map(|(topic, record)| (0..record.partitions).map(move |index| (topic, index)))
            .collect();
        let mut opened = in_parallel(&jobs, self.threads, |&(topic, index)| {
            let name = &names[topic];
            let dir = self.partition_dir(name, index);
            match self.open_partition_log(&dir, records[topic].id, &settings[topic], now_ms, true) {
                Ok(log) => Partition::online(
                    name.clone(),
                    index,
                    log,
                    &self.schedule,
                    self.fsync_before_replicated,
                ),
                Err(error) => Partition::offline(
                    name.clone(),
                    index,
                    &dir,
                    error.to_string(),
                    &self.schedule,
                    self.fsync_before_replicated,
                ),
            }
        })
        .into_iter();
        for ((record, settings), name) in records.into_iter().zip(settings).zip(names) {
            // Non-negative: a count below zero opened nothing above.
            let count = usize::try_from(record.partitions).unwrap_or(0);
            let partitions: Vec<Arc<Partition>> = opened.by_ref().take(count).collect();
            let topic = Arc::new(Topic {
                name,
                id: record.id,
                partitions: RwLock::new(partitions),
                overrides: RwLock::new(record.configs),
                settings: RwLock::new(Arc::new(settings)),
            });
            tracing::info!(topic = %topic.name, partitions = topic.partition_count(), "loaded topic");
            write(&self.topics).insert(topic.name.clone(), topic);
        }
    }

    /// Opens (or creates) one partition's log, checking that the directory belongs to topic
    /// `id`: a directory left by an older topic of the same name is removed first.
    fn open_partition_log(
        &self,
        dir: &Path,
        id: Uuid,
        settings: &TopicSettings,
        now_ms: i64,
        written_by_a_single_node: bool,
    ) -> Result<PartitionLog, StorageError> {
        let fs = &*self.fs;
        let metadata_path = dir.join(PARTITION_METADATA);
        let stamped = read_optional(fs, &metadata_path)
            .map_err(|source| io_error(&metadata_path, "read", source))?
            .map(|bytes| parse_partition_metadata(&bytes));
        if let Some(stamp) = &stamped {
            if *stamp != Some(id) {
                tracing::warn!(dir = %dir.display(), "removing a partition directory left by an earlier topic of the same name");
                fs.remove_dir_all(dir)
                    .map_err(|source| io_error(dir, "remove", source))?;
                fs.sync_dir(&self.data_dir)
                    .map_err(|source| io_error(&self.data_dir, "fsync", source))?;
            }
        }
        let mut log = PartitionLog::open(
            Arc::clone(&self.fs),
            Arc::clone(&self.handles),
            dir,
            settings.log.clone(),
            now_ms,
        )?;
        if stamped != Some(Some(id)) {
            let text = format!("version: 0\ntopic_id: {id}\n");
            write_atomically(fs, dir, PARTITION_METADATA, text.as_bytes())
                .map_err(|source| io_error(&metadata_path, "write", source))?;
        }
        // Epochs come with the leader's batches, or with a leadership taken; a single node of
        // old wrote its batches in epoch 0 without recording it.
        if written_by_a_single_node && log.latest_leader_epoch().is_none() {
            log.assign_leader_epoch(SINGLE_NODE_LEADER_EPOCH, log.log_end_offset())?;
        }
        Ok(log)
    }

    /// In a cluster, the high watermark of every replica held here, keyed as the checkpoint
    /// file keys them.
    pub(crate) fn high_watermarks(&self) -> BTreeMap<String, i64> {
        self.list()
            .iter()
            .filter(|topic| !topic.is_internal())
            .flat_map(|topic| {
                topic
                    .partitions()
                    .into_iter()
                    .filter(|partition| partition.is_held() && partition.high_watermark() >= 0)
                    .map(move |partition| {
                        (
                            format!("{}:{}", topic.id, partition.index),
                            partition.high_watermark(),
                        )
                    })
            })
            .collect()
    }

    pub(crate) fn fs(&self) -> &Arc<dyn FileSystem> {
        &self.fs
    }

    pub(crate) fn broker_defaults(&self) -> Arc<BrokerTopicDefaults> {
        Arc::clone(&read(&self.broker_defaults))
    }

    /// Puts the dynamic broker configs of the metadata in force: for every broker
    /// (`every_broker`) and for this one. Topics without an override of their own follow
    /// them at once. Blocks.
    pub(crate) fn set_dynamic_defaults(
        &self,
        every_broker: Option<&BTreeMap<String, String>>,
        this_broker: Option<&BTreeMap<String, String>>,
    ) {
        let next = self.static_defaults.with_dynamic(every_broker, this_broker);
        let _admin = lock(&self.admin_lock);
        if *self.broker_defaults() == next {
            return;
        }
        *write(&self.broker_defaults) = Arc::new(next);
        for topic in self.list() {
            self.set_overrides(&topic, topic.overrides());
        }
        tracing::info!("dynamic broker configs changed; topic defaults updated");
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

    /// The partitions with appends not yet fsynced.
    pub(crate) fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// All topics, by name.
    pub(crate) fn list(&self) -> Vec<Arc<Topic>> {
        let mut topics: Vec<_> = read(&self.topics).values().cloned().collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    /// The replicas held here whose disk failed, as (topic id, partition).
    pub(crate) fn offline_replicas(&self) -> Vec<(Uuid, i32)> {
        read(&self.topics)
            .values()
            .flat_map(|topic| {
                read(&topic.partitions)
                    .iter()
                    .zip(0..)
                    .filter(|(partition, _)| partition.is_offline())
                    .map(|(_, index)| (topic.id, index))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Deletes a topic: its file first, durably (so a crash cannot resurrect it), then its
    /// partition directories, renamed away before they are removed. Under the admin lock.
    /// Blocks.
    fn delete_locked(&self, topic: &Topic) -> Result<(), ApiError> {
        let name = &*topic.name;
        let file = self.topic_file(name);
        let topics_dir = self.data_dir.join("topics");
        match self.fs.remove_file(&file) {
            Ok(()) => self
                .fs
                .sync_dir(&topics_dir)
                .map_err(|source| io_error(&file, "remove", source))?,
            // A cluster's topic has no file: the image is its record.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(io_error(&file, "remove", source).into()),
        }
        write(&self.topics).remove(name);
        let mut doomed = Vec::new();
        for partition in topic.partitions().iter().filter(|p| p.is_held()) {
            partition.detach();
            let dir = self.partition_dir(name, partition.index);
            let away = self.data_dir.join(format!(
                "{}.{}{DELETE_SUFFIX}",
                partition_dir_name(name, partition.index),
                topic.id.simple()
            ));
            match self.fs.rename(&dir, &away) {
                Ok(()) => doomed.push(away),
                Err(error) => {
                    tracing::warn!(partition = %partition.name(), %error, "could not rename partition directory; it is removed at next start");
                }
            }
        }
        if let Err(error) = self.fs.sync_dir(&self.data_dir) {
            tracing::warn!(%error, "could not fsync the data directory after renaming deleted partitions");
        }
        for away in doomed {
            if let Err(error) = self.fs.remove_dir_all(&away) {
                tracing::warn!(dir = %away.display(), %error, "could not remove a deleted partition; it is removed at next start");
            }
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// In a cluster: makes this broker's copy of a topic match the metadata image. The topic
    /// is known by its image id (a local topic of the same name with another id is removed
    /// first); partitions `hosted` says are replicas here are opened, created empty if new;
    /// the others are known but held elsewhere; configs are the image's. Returns the
    /// partitions opened by this call. Blocks.
    pub(crate) fn apply_image_topic(
        &self,
        name: &str,
        id: Uuid,
        partition_count: i32,
        configs: &BTreeMap<String, String>,
        hosted: impl Fn(i32) -> bool,
        now_ms: i64,
    ) -> Result<Vec<Arc<Partition>>, ApiError> {
        let fsync_before_replicated = self.fsync_before_replicated;
        let _admin = lock(&self.admin_lock);
        if let Some(stale) = self.get(name).filter(|topic| topic.id != id) {
            tracing::info!(
                topic = name,
                "a topic of this name was deleted and created again; removing the old one"
            );
            self.delete_locked(&stale)?;
        }
        let topic = match self.get(name) {
            Some(topic) => topic,
            None => {
                let topic = Arc::new(Topic {
                    name: Arc::from(name),
                    id,
                    partitions: RwLock::new(Vec::new()),
                    overrides: RwLock::new(configs.clone()),
                    settings: RwLock::new(Arc::new(TopicSettings::resolve(
                        configs,
                        &self.broker_defaults(),
                    ))),
                });
                write(&self.topics).insert(topic.name.clone(), Arc::clone(&topic));
                tracing::info!(topic = name, partitions = partition_count, "learnt topic");
                topic
            }
        };
        if *configs != topic.overrides() {
            self.set_overrides(&topic, configs.clone());
        }
        let settings = topic.settings();
        let mut opened = Vec::new();
        let current = read(&topic.partitions).clone();
        let mut next = Vec::with_capacity(partition_count.max(0) as usize);
        for index in 0..partition_count {
            let existing = current.get(index as usize).cloned();
            let wanted_here = hosted(index);
            let partition = match existing {
                Some(held) if held.is_held() == wanted_here => held,
                Some(held) if held.is_held() => {
                    // No longer a replica here (a reassignment moved it).
                    held.detach();
                    let dir = self.partition_dir(name, index);
                    if let Err(error) = self.fs.remove_dir_all(&dir) {
                        tracing::warn!(dir = %dir.display(), %error, "could not remove a partition moved away");
                    }
                    Partition::elsewhere(topic.name.clone(), index, &self.schedule)
                }
                _ if wanted_here => {
                    let dir = self.partition_dir(name, index);
                    let partition =
                        match self.open_partition_log(&dir, id, &settings, now_ms, false) {
                            Ok(log) => {
                                let partition = Partition::online(
                                    topic.name.clone(),
                                    index,
                                    log,
                                    &self.schedule,
                                    fsync_before_replicated,
                                );
                                if let Some(&checkpointed) =
                                    self.checkpointed_high_watermarks.get(&(id, index))
                                {
                                    partition.restore_high_watermark(checkpointed);
                                }
                                partition
                            }
                            Err(error) => Partition::offline(
                                topic.name.clone(),
                                index,
                                &dir,
                                error.to_string(),
                                &self.schedule,
                                fsync_before_replicated,
                            ),
                        };
                    opened.push(Arc::clone(&partition));
                    partition
                }
                _ => Partition::elsewhere(topic.name.clone(), index, &self.schedule),
            };
            next.push(partition);
        }
        *write(&topic.partitions) = next;
        Ok(opened)
    }

    /// In a cluster: removes every topic the image no longer has (the internal topics, this
    /// node's own, stay). Returns the names of those topics, for what else must go with them
    /// (the groups' committed offsets): the cluster has deleted them even where removing the
    /// local copy failed. Blocks.
    pub(crate) fn remove_topics_not_in(&self, keep: impl Fn(Uuid) -> bool) -> Vec<Arc<str>> {
        let _admin = lock(&self.admin_lock);
        let mut deleted = Vec::new();
        for topic in self.list() {
            if topic.is_internal() || keep(topic.id) {
                continue;
            }
            tracing::info!(topic = %topic.name, "topic deleted from the cluster; removing it here");
            if let Err(error) = self.delete_locked(&topic) {
                tracing::warn!(topic = %topic.name, error = ?error.message, "could not remove a deleted topic");
            }
            deleted.push(Arc::clone(&topic.name));
        }
        deleted
    }

    /// Puts new overrides in force on every partition of `topic`.
    fn set_overrides(&self, topic: &Topic, overrides: BTreeMap<String, String>) {
        let settings = Arc::new(TopicSettings::resolve(&overrides, &self.broker_defaults()));
        for partition in topic.partitions() {
            let _ = partition.with_log(|log| {
                log.set_config(settings.log.clone());
                Ok(())
            });
        }
        *write(&topic.overrides) = overrides;
        *write(&topic.settings) = settings;
        // Retention may have changed: look at every partition once more.
        for partition in topic.partitions() {
            partition.schedule_retention_check();
        }
    }

    /// Flushes and closes every log (clean shutdown). Whether every one was online and
    /// closed without an error. Blocks.
    pub(crate) fn close_all(&self) -> bool {
        let partitions: Vec<Arc<Partition>> = self
            .list()
            .iter()
            .flat_map(|topic| topic.partitions())
            .collect();
        let closed = in_parallel(&partitions, self.threads, |partition| {
            let offline = partition.is_offline();
            match partition.close() {
                Ok(()) => !offline,
                Err(error) => {
                    tracing::error!(partition = %partition.name(), %error, "could not close partition log");
                    false
                }
            }
        });
        closed.into_iter().all(|clean| clean)
    }

    fn partition_dir(&self, topic: &str, index: i32) -> PathBuf {
        self.data_dir.join(partition_dir_name(topic, index))
    }

    fn topic_file(&self, name: &str) -> PathBuf {
        self.data_dir.join("topics").join(format!("{name}.json"))
    }
}

/// The high watermarks checkpointed by [`write_high_watermarks`]; none if the file is
/// missing. One that does not parse stops the start: guessing could show consumers records
/// that are not committed.
fn read_high_watermarks(
    fs: &dyn FileSystem,
    data_dir: &Path,
) -> Result<HashMap<(Uuid, i32), i64>, StorageError> {
    let path = data_dir.join(HIGH_WATERMARK_CHECKPOINT);
    let Some(bytes) = read_optional(fs, &path).map_err(|source| io_error(&path, "read", source))?
    else {
        return Ok(HashMap::new());
    };
    let corrupt = |reason: String| StorageError::Corrupt(format!("{}: {reason}", path.display()));
    let entries: BTreeMap<String, i64> =
        serde_json::from_slice(&bytes).map_err(|error| corrupt(error.to_string()))?;
    entries
        .into_iter()
        .map(|(key, offset)| {
            let parsed = key.rsplit_once(':').and_then(|(id, index)| {
                Some((id.parse::<Uuid>().ok()?, index.parse::<i32>().ok()?))
            });
            parsed
                .map(|key| (key, offset))
                .ok_or_else(|| corrupt(format!("'{key}' is not TOPIC_ID:PARTITION")))
        })
        .collect()
}

/// Writes the high watermarks of the partitions held here atomically. Blocks.
pub(crate) fn write_high_watermarks(
    fs: &dyn FileSystem,
    data_dir: &Path,
    high_watermarks: &BTreeMap<String, i64>,
) -> std::io::Result<()> {
    let json = serde_json::to_vec(high_watermarks).map_err(std::io::Error::other)?;
    write_atomically(fs, data_dir, HIGH_WATERMARK_CHECKPOINT, &json)
}

/// The topic id in a `partition.metadata` file; `None` if it does not parse.
fn parse_partition_metadata(bytes: &[u8]) -> Option<Uuid> {
    String::from_utf8_lossy(bytes)
        .lines()
        .find_map(|line| line.strip_prefix("topic_id:"))
        .and_then(|id| id.trim().parse().ok())
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

/// `work` applied to every item on up to `threads` threads; the results in the items' order.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let threads = threads.clamp(1, items.len().max(1));
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(index) else {
                            return done;
                        };
                        done.push((index, work(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            // A worker that panicked takes the process down, as the panic would have on the
            // calling thread.
            .flat_map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    results.sort_unstable_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_watermarks_round_trip_and_a_damaged_file_stops_the_start() {
        use runnel_storage::sim::{ManualClock, SimFileSystem};
        let fs = SimFileSystem::new(Arc::new(ManualClock::new(0)));
        let dir = Path::new("data");
        create_dir_durably(&fs, dir).unwrap();
        assert!(read_high_watermarks(&fs, dir).unwrap().is_empty());
        let id = Uuid::new_v4();
        let written = BTreeMap::from([(format!("{id}:0"), 17), (format!("{id}:3"), 0)]);
        write_high_watermarks(&fs, dir, &written).unwrap();
        // Durable: a power cut right after the write keeps it.
        let fs = fs.crash(7);
        let read = read_high_watermarks(&fs, dir).unwrap();
        assert_eq!(read, HashMap::from([((id, 0), 17), ((id, 3), 0)]));
        write_atomically(&fs, dir, HIGH_WATERMARK_CHECKPOINT, b"{\"x\": 1}").unwrap();
        assert!(read_high_watermarks(&fs, dir).is_err());
    }

    #[test]
    fn parallel_work_keeps_the_items_order() {
        let items: Vec<u64> = (0..1000).collect();
        for threads in [1, 3, 8, 5000] {
            let squares = in_parallel(&items, threads, |item| item * item);
            assert_eq!(squares, items.iter().map(|i| i * i).collect::<Vec<_>>());
        }
        assert!(in_parallel(&[] as &[u64], 8, |item| *item).is_empty());
    }
}
