//! Where source connectors' offsets are kept: for each connector, each source partition's
//! last committed offset, both JSON objects.
//!
//! The standalone worker keeps them in one file (Kafka's `offset.storage.file.filename`),
//! written whole to a temporary file, fsynced, and renamed over the old one, so that a power
//! cut leaves either the old offsets or the new ones, never a mix. A distributed worker
//! keeps them in a compacted topic instead, behind the same [`OffsetStore`] trait.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::connector::OffsetReader;
use crate::data::{SourceOffset, SourcePartition};

/// One source partition's offset, as the REST API and the store write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionOffset {
    /// The source partition.
    pub partition: SourcePartition,
    /// Its offset; `None` removes it when altering.
    pub offset: Option<SourceOffset>,
}

/// A store of source offsets, shared by a worker's tasks and its REST API.
pub trait OffsetStore: Send + Sync + std::fmt::Debug {
    /// The committed offset of `partition` of `connector`.
    fn get(&self, connector: &str, partition: &SourcePartition) -> Option<SourceOffset>;
    /// Every committed offset of `connector`.
    fn all(&self, connector: &str) -> Vec<PartitionOffset>;
    /// Commits `offsets` of `connector` durably: a `None` offset removes its partition.
    fn commit(&self, connector: &str, offsets: Vec<PartitionOffset>) -> std::io::Result<()>;
    /// Forgets every offset of `connector`.
    fn reset(&self, connector: &str) -> std::io::Result<()>;

    /// Waits until what was committed anywhere is readable here (a topic read to its end).
    fn sync(&self) -> std::io::Result<()> {
        Ok(())
    }

    /// The topic the offsets are kept in, when they are: exactly-once sources write theirs
    /// there in their own transactions.
    fn topic(&self) -> Option<&str> {
        None
    }
}

/// The key of a partition in the store: its JSON text, with keys sorted.
fn partition_key(partition: &SourcePartition) -> String {
    serde_json::Value::Object(partition.clone()).to_string()
}

type ConnectorOffsets = BTreeMap<String, BTreeMap<String, PartitionOffset>>;

/// Offsets in a file, for a standalone worker.
#[derive(Debug)]
pub struct FileOffsetStore {
    path: PathBuf,
    offsets: Mutex<ConnectorOffsets>,
}

impl FileOffsetStore {
    /// The store in `path`, read if it exists. A file that cannot be read as offsets is an
    /// error, not an empty store: starting over would re-send everything.
    pub fn open(path: impl Into<PathBuf>) -> std::io::Result<FileOffsetStore> {
        let path = path.into();
        let offsets = match std::fs::read(&path) {
            Ok(bytes) => {
                let listed: BTreeMap<String, Vec<PartitionOffset>> = serde_json::from_slice(&bytes)
                    .map_err(|e| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("{} does not hold connector offsets: {e}", path.display()),
                        )
                    })?;
                listed
                    .into_iter()
                    .map(|(connector, offsets)| {
                        let by_key = offsets
                            .into_iter()
                            .map(|o| (partition_key(&o.partition), o))
                            .collect();
                        (connector, by_key)
                    })
                    .collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(FileOffsetStore {
            path,
            offsets: Mutex::new(offsets),
        })
    }

    fn write(&self, offsets: &ConnectorOffsets) -> std::io::Result<()> {
        let listed: BTreeMap<&String, Vec<&PartitionOffset>> = offsets
            .iter()
            .map(|(c, o)| (c, o.values().collect()))
            .collect();
        let bytes = serde_json::to_vec_pretty(&listed).map_err(std::io::Error::other)?;
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, &self.path)?;
        // The rename is durable once the directory is.
        let directory = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::File::open(directory)?.sync_all()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnectorOffsets> {
        self.offsets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl OffsetStore for FileOffsetStore {
    fn get(&self, connector: &str, partition: &SourcePartition) -> Option<SourceOffset> {
        self.lock()
            .get(connector)?
            .get(&partition_key(partition))?
            .offset
            .clone()
    }

    fn all(&self, connector: &str) -> Vec<PartitionOffset> {
        self.lock()
            .get(connector)
            .map(|o| o.values().cloned().collect())
            .unwrap_or_default()
    }

    fn commit(&self, connector: &str, offsets: Vec<PartitionOffset>) -> std::io::Result<()> {
        let mut all = self.lock();
        let mut next = all.clone();
        apply(&mut next, connector, offsets);
        // Memory changes only once the file has: a failed write leaves both as they were.
        self.write(&next)?;
        *all = next;
        Ok(())
    }

    fn reset(&self, connector: &str) -> std::io::Result<()> {
        let mut all = self.lock();
        let mut next = all.clone();
        next.remove(connector);
        self.write(&next)?;
        *all = next;
        Ok(())
    }
}

/// Offsets in a compacted topic, for distributed workers: every worker follows the topic
/// into memory; a commit is written with `acks=all` and applied once acknowledged.
#[derive(Debug)]
pub struct TopicOffsetStore {
    log: crate::topic_log::TopicLog,
    offsets: Arc<Mutex<ConnectorOffsets>>,
    runtime: tokio::runtime::Handle,
}

impl TopicOffsetStore {
    /// Opens (creating if missing) the offsets topic and reads it to its end.
    pub async fn open(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
    ) -> Result<TopicOffsetStore, crate::connector::ConnectError> {
        let offsets: Arc<Mutex<ConnectorOffsets>> = Arc::default();
        let applied = offsets.clone();
        let log = crate::topic_log::TopicLog::open(
            bootstrap,
            topic,
            partitions,
            replication_factor,
            // Offsets written in a source task's transaction count only once it commits.
            runnel_client::IsolationLevel::ReadCommitted,
            Box::new(move |key, value| {
                let Some((connector, partition)) =
                    key.and_then(crate::cluster_state::parse_offset_key)
                else {
                    return;
                };
                let offset = value.and_then(crate::cluster_state::parse_offset_value);
                apply(
                    &mut applied.lock().unwrap_or_else(PoisonError::into_inner),
                    &connector,
                    vec![PartitionOffset { partition, offset }],
                );
            }),
        )
        .await?;
        log.read_to_end().await?;
        Ok(TopicOffsetStore {
            log,
            offsets,
            runtime: tokio::runtime::Handle::current(),
        })
    }
}

fn apply(all: &mut ConnectorOffsets, connector: &str, offsets: Vec<PartitionOffset>) {
    let entry = all.entry(connector.to_owned()).or_default();
    for offset in offsets {
        let key = partition_key(&offset.partition);
        match offset.offset {
            Some(_) => {
                entry.insert(key, offset);
            }
            None => {
                entry.remove(&key);
            }
        }
    }
    if entry.is_empty() {
        all.remove(connector);
    }
}

impl OffsetStore for TopicOffsetStore {
    fn get(&self, connector: &str, partition: &SourcePartition) -> Option<SourceOffset> {
        self.offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(connector)?
            .get(&partition_key(partition))?
            .offset
            .clone()
    }

    fn all(&self, connector: &str) -> Vec<PartitionOffset> {
        self.offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(connector)
            .map(|o| o.values().cloned().collect())
            .unwrap_or_default()
    }

    fn commit(&self, connector: &str, offsets: Vec<PartitionOffset>) -> std::io::Result<()> {
        let records = offsets
            .iter()
            .map(|o| {
                let value = o.offset.as_ref().map(|v| {
                    serde_json::Value::Object(v.clone())
                        .to_string()
                        .into_bytes()
                });
                (
                    crate::cluster_state::offset_key(connector, &o.partition),
                    value,
                )
            })
            .collect();
        self.runtime
            .block_on(self.log.write(records))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        apply(
            &mut self.offsets.lock().unwrap_or_else(PoisonError::into_inner),
            connector,
            offsets,
        );
        Ok(())
    }

    fn topic(&self) -> Option<&str> {
        Some(self.log.topic())
    }

    fn sync(&self) -> std::io::Result<()> {
        self.runtime
            .block_on(self.log.read_to_end())
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    fn reset(&self, connector: &str) -> std::io::Result<()> {
        let removed: Vec<PartitionOffset> = self
            .all(connector)
            .into_iter()
            .map(|o| PartitionOffset {
                partition: o.partition,
                offset: None,
            })
            .collect();
        self.commit(connector, removed)
    }
}

/// One connector's view of a store, for its tasks.
#[derive(Debug, Clone)]
pub struct ConnectorOffsetReader {
    /// The store.
    pub store: Arc<dyn OffsetStore>,
    /// The connector.
    pub connector: String,
}

impl OffsetReader for ConnectorOffsetReader {
    fn offset(&self, partition: &SourcePartition) -> Option<SourceOffset> {
        self.store.get(&self.connector, partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn offsets_survive_a_reopen_and_can_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connect.offsets");
        let store = FileOffsetStore::open(&path).unwrap();
        let a = object(json!({"filename": "a"}));
        store
            .commit(
                "c",
                vec![PartitionOffset {
                    partition: a.clone(),
                    offset: Some(object(json!({"position": 10}))),
                }],
            )
            .unwrap();
        let reopened = FileOffsetStore::open(&path).unwrap();
        assert_eq!(reopened.get("c", &a), Some(object(json!({"position": 10}))));
        assert_eq!(reopened.get("other", &a), None);
        reopened
            .commit(
                "c",
                vec![PartitionOffset {
                    partition: a.clone(),
                    offset: None,
                }],
            )
            .unwrap();
        assert!(FileOffsetStore::open(&path).unwrap().all("c").is_empty());
    }

    #[test]
    fn a_corrupt_offsets_file_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connect.offsets");
        std::fs::write(&path, "{not json").unwrap();
        assert!(FileOffsetStore::open(&path).is_err());
    }
}
