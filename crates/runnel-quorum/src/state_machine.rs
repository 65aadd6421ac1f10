//! The Raft state machine: the [`MetadataImage`] the committed entries build, published to
//! the node on every apply, and its snapshots.
//!
//! Apply does not persist: on restart the image is rebuilt from the snapshot and the log
//! after it. A snapshot is `snapshot.json` (the image with the last applied log id and
//! membership), replaced atomically, so a crash leaves the old or the new one.
//!
//! A batch is applied whole or not at all. One that does not fit the image (a controller
//! broke an invariant) or was decided in an earlier term is skipped, identically on every
//! voter, so the images never differ and no committed entry can stop the quorum for good.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, EntryPayload, LogId, RaftSnapshotBuilder, StorageError, StorageIOError,
    StoredMembership,
};
use runnel_controller::MetadataImage;
use runnel_storage::fs::{read_optional, write_atomically};
use runnel_storage::FileSystem;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::log::{MetadataEntry, MetadataLog};
use crate::snapshot_buffer::SnapshotBuffer;
use crate::{Applied, MetadataBatch, MetadataRaft, NodeId};

const SNAPSHOT_FILE: &str = "snapshot.json";

type Membership = StoredMembership<NodeId, openraft::BasicNode>;

/// What a snapshot holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    image: MetadataImage,
}

#[derive(Debug)]
pub(crate) struct StateMachine {
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    image: Arc<MetadataImage>,
    published: watch::Sender<Arc<MetadataImage>>,
    /// Shared with the builders, which replace it from tasks of their own.
    snapshots: Arc<SnapshotStore>,
}

fn io_error(error: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&error)
}

impl StateMachine {
    /// Opens at the last snapshot, if any.
    pub(crate) fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
    ) -> std::io::Result<(StateMachine, watch::Receiver<Arc<MetadataImage>>)> {
        let path = dir.join(SNAPSHOT_FILE);
        let snapshot: Option<SnapshotFile> = match read_optional(&*fs, &path)? {
            None => None,
            Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(|error| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {error}", path.display()),
                )
            })?),
        };
        let (image, last_applied, membership) = match &snapshot {
            Some(file) => (
                file.image.clone(),
                file.meta.last_log_id,
                file.meta.last_membership.clone(),
            ),
            None => (MetadataImage::default(), None, Membership::default()),
        };
        let image = Arc::new(image);
        let (published, receiver) = watch::channel(image.clone());
        Ok((
            StateMachine {
                last_applied,
                membership,
                image,
                published,
                snapshots: Arc::new(SnapshotStore {
                    fs,
                    dir: dir.to_path_buf(),
                    latest: Mutex::new(snapshot),
                }),
            },
            receiver,
        ))
    }

    /// Applies, offline, every entry `log` holds after the snapshot, committed or not: exact
    /// for a quorum of one voter, whose durable entries all commit when it runs again.
    pub(crate) fn replay(&mut self, log: &MetadataLog) {
        let next = self.last_applied.map_or(0, |id| id.index + 1);
        for entry in log.entries(next..) {
            self.apply_entry(entry);
        }
    }

    /// The voters of the last membership applied (empty before the quorum was formed).
    pub(crate) fn voters(&self) -> BTreeSet<NodeId> {
        self.membership.membership().voter_ids().collect()
    }

    pub(crate) fn image(&self) -> &MetadataImage {
        &self.image
    }

    fn apply_entry(&mut self, entry: MetadataEntry) -> Applied {
        let offset = entry.log_id.index;
        let mut applied = true;
        match entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Normal(batch) => {
                applied = self.apply_batch(offset, entry.log_id.leader_id.term, &batch);
            }
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(entry.log_id), membership);
            }
        }
        self.last_applied = Some(entry.log_id);
        Applied { offset, applied }
    }

    /// Applies a batch whole or not at all, the same way on every voter: one decided in
    /// another term than it was written in, or whose records do not fit the image, is
    /// skipped (and the controller that wrote it tells its client to retry).
    fn apply_batch(&mut self, offset: u64, term: u64, batch: &MetadataBatch) -> bool {
        if batch.term != term {
            tracing::info!(
                offset,
                decided = batch.term,
                written = term,
                "skipping a decision from an earlier term"
            );
            return false;
        }
        let mut next = (*self.image).clone();
        for record in &batch.records {
            if let Err(error) = next.apply(offset, record) {
                tracing::error!(%error, offset, "skipping a metadata batch that does not fit the image");
                return false;
            }
        }
        self.image = Arc::new(next);
        true
    }
}

impl RaftStateMachine<MetadataRaft> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = MetadataEntry> + Send,
        I::IntoIter: Send,
    {
        let answers: Vec<Applied> = entries
            .into_iter()
            .map(|entry| self.apply_entry(entry))
            .collect();
        self.published.send_replace(self.image.clone());
        Ok(answers)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            snapshots: self.snapshots.clone(),
            file: SnapshotFile {
                meta: SnapshotMeta {
                    last_log_id: self.last_applied,
                    last_membership: self.membership.clone(),
                    snapshot_id: self.last_applied.map_or_else(
                        || "empty".to_owned(),
                        |id| format!("{}-{}", id.leader_id.term, id.index),
                    ),
                },
                image: (*self.image).clone(),
            },
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<SnapshotBuffer>, StorageError<NodeId>> {
        Ok(Box::new(SnapshotBuffer::default()))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<SnapshotBuffer>,
    ) -> Result<(), StorageError<NodeId>> {
        let signature = Some(meta.signature());
        let image: MetadataImage = serde_json::from_slice(snapshot.bytes())
            .map_err(|error| StorageIOError::read_snapshot(signature.clone(), io_error(error)))?;
        let file = SnapshotFile {
            meta: meta.clone(),
            image,
        };
        self.image = Arc::new(file.image.clone());
        let store = self.snapshots.clone();
        tokio::task::spawn_blocking(move || store.replace(file))
            .await
            .map_err(|error| StorageIOError::write_snapshot(signature.clone(), io_error(error)))?
            .map_err(|error| StorageIOError::write_snapshot(signature, io_error(error)))?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.published.send_replace(self.image.clone());
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<MetadataRaft>>, StorageError<NodeId>> {
        let latest = self.snapshots.latest();
        let Some(file) = latest.as_ref() else {
            return Ok(None);
        };
        let data = serde_json::to_vec(&file.image).map_err(|error| {
            StorageIOError::read_snapshot(Some(file.meta.signature()), io_error(error))
        })?;
        Ok(Some(Snapshot {
            meta: file.meta.clone(),
            snapshot: Box::new(SnapshotBuffer::new(data)),
        }))
    }
}

/// The latest snapshot, on disk and in memory. Builds (which openraft runs on tasks of their
/// own) and installs go through [`SnapshotStore::replace`] one at a time, and a snapshot
/// never replaces a newer one: a build that finishes after a newer install must not put the
/// image back behind what the log has already purged.
#[derive(Debug)]
pub(crate) struct SnapshotStore {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    latest: Mutex<Option<SnapshotFile>>,
}

impl SnapshotStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SnapshotFile>> {
        // Held to write the file and swap it; a panic while holding it stops the process.
        self.latest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn latest(&self) -> Option<SnapshotFile> {
        self.lock().clone()
    }

    /// Makes `file` the snapshot, durably, unless one at least as new is there. Blocks.
    fn replace(&self, file: SnapshotFile) -> std::io::Result<bool> {
        let mut latest = self.lock();
        if latest
            .as_ref()
            .is_some_and(|current| current.meta.last_log_id >= file.meta.last_log_id)
        {
            return Ok(false);
        }
        let json = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
        write_atomically(&*self.fs, &self.dir, SNAPSHOT_FILE, &json)?;
        *latest = Some(file);
        Ok(true)
    }
}

/// Writes a snapshot of the image as it was when the builder was made.
#[derive(Debug)]
pub(crate) struct SnapshotBuilder {
    snapshots: Arc<SnapshotStore>,
    file: SnapshotFile,
}

impl RaftSnapshotBuilder<MetadataRaft> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<MetadataRaft>, StorageError<NodeId>> {
        let signature = Some(self.file.meta.signature());
        let store = self.snapshots.clone();
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || store.replace(file))
            .await
            .map_err(|error| StorageIOError::write_snapshot(signature.clone(), io_error(error)))?
            .map_err(|error| StorageIOError::write_snapshot(signature.clone(), io_error(error)))?;
        let data = serde_json::to_vec(&self.file.image)
            .map_err(|error| StorageIOError::write_snapshot(signature, io_error(error)))?;
        Ok(Snapshot {
            meta: self.file.meta.clone(),
            snapshot: Box::new(SnapshotBuffer::new(data)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;
    use runnel_storage::sim::{ManualClock, SimFileSystem};

    fn snapshot_at(index: u64) -> SnapshotFile {
        SnapshotFile {
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
                last_membership: Membership::default(),
                snapshot_id: index.to_string(),
            },
            image: MetadataImage::default(),
        }
    }

    fn entry(term: u64, index: u64, batch: MetadataBatch) -> MetadataEntry {
        openraft::Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(batch),
        }
    }

    fn topic(name: &str, id: u128) -> runnel_controller::MetadataRecord {
        runnel_controller::MetadataRecord::Topic {
            name: name.into(),
            id: uuid::Uuid::from_u128(id),
        }
    }

    /// A decision written in a later term than it was made in, or whose records do not fit,
    /// is skipped whole, the same way on every voter.
    #[test]
    fn stale_or_unfitting_batches_are_skipped_whole() -> std::io::Result<()> {
        let fs = SimFileSystem::new(Arc::new(ManualClock::new(0)));
        let (mut machine, image) = StateMachine::open(Arc::new(fs), Path::new("/m"))?;
        let applied = machine.apply_entry(entry(
            2,
            1,
            MetadataBatch {
                term: 2,
                records: vec![topic("a", 1)],
            },
        ));
        assert!(applied.applied);
        let stale = machine.apply_entry(entry(
            3,
            2,
            MetadataBatch {
                term: 2,
                records: vec![topic("b", 2)],
            },
        ));
        assert!(!stale.applied);
        // The second record repeats a topic: neither record applies.
        let unfitting = machine.apply_entry(entry(
            3,
            3,
            MetadataBatch {
                term: 3,
                records: vec![topic("c", 3), topic("a", 1)],
            },
        ));
        assert!(!unfitting.applied);
        let names: Vec<String> = machine.image.topics().map(|t| t.name.clone()).collect();
        assert_eq!(names, vec!["a".to_owned()]);
        assert_eq!(machine.last_applied.map(|id| id.index), Some(3));
        drop(image);
        Ok(())
    }

    /// A build that finishes after a newer install must not put the snapshot back behind
    /// what the log has purged.
    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() -> std::io::Result<()> {
        let fs = SimFileSystem::new(Arc::new(ManualClock::new(0)));
        let dir = Path::new("/m");
        runnel_storage::fs::create_dir_durably(&fs, dir)?;
        let store = SnapshotStore {
            fs: Arc::new(fs.clone()),
            dir: dir.to_path_buf(),
            latest: Mutex::new(None),
        };
        assert!(store.replace(snapshot_at(20))?);
        assert!(!store.replace(snapshot_at(12))?);
        assert!(!store.replace(snapshot_at(20))?);
        let (machine, _) = StateMachine::open(Arc::new(fs.crash(1)), dir)?;
        assert_eq!(machine.last_applied.map(|id| id.index), Some(20));
        Ok(())
    }
}
