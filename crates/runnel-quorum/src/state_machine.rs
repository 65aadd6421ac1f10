//! The Raft state machine: the [`MetadataImage`] the committed entries build, published to
//! the node on every apply, and its snapshots.
//!
//! Apply does not persist: on restart the image is rebuilt from the snapshot and the log
//! after it. A snapshot is `snapshot.json` (the image with the last applied log id and
//! membership), replaced atomically, so a crash leaves the old or the new one.
//!
//! A batch that does not fit the image means a controller broke an invariant; applying it
//! fails the state machine, which stops this node's Raft: a node that cannot follow the log
//! stops rather than serve metadata that differs from its peers'.

use std::io::Cursor;
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

use crate::log::MetadataEntry;
use crate::{Applied, MetadataRaft, NodeId};

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
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    image: Arc<MetadataImage>,
    published: watch::Sender<Arc<MetadataImage>>,
    /// The latest snapshot, shared with the builders that replace it.
    snapshot: Arc<Mutex<Option<SnapshotFile>>>,
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
                fs,
                dir: dir.to_path_buf(),
                last_applied,
                membership,
                image,
                published,
                snapshot: Arc::new(Mutex::new(snapshot)),
            },
            receiver,
        ))
    }

    #[expect(
        clippy::result_large_err,
        reason = "openraft's error type, as its trait returns it"
    )]
    fn apply_entry(&mut self, entry: MetadataEntry) -> Result<Applied, StorageError<NodeId>> {
        let offset = entry.log_id.index;
        match entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Normal(batch) => {
                let image = Arc::make_mut(&mut self.image);
                for record in &batch.records {
                    image.apply(offset, record).map_err(|error| {
                        tracing::error!(%error, offset, "metadata record does not apply: stopping this node's quorum member");
                        StorageIOError::apply(entry.log_id, AnyError::new(&error))
                    })?;
                }
            }
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(entry.log_id), membership);
            }
        }
        self.last_applied = Some(entry.log_id);
        Ok(Applied { offset })
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
        let mut answers = Vec::new();
        for entry in entries {
            answers.push(self.apply_entry(entry)?);
        }
        self.published.send_replace(self.image.clone());
        Ok(answers)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            fs: self.fs.clone(),
            dir: self.dir.clone(),
            latest: self.snapshot.clone(),
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
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let signature = Some(meta.signature());
        let image: MetadataImage = serde_json::from_slice(snapshot.get_ref())
            .map_err(|error| StorageIOError::read_snapshot(signature.clone(), io_error(error)))?;
        let file = SnapshotFile {
            meta: meta.clone(),
            image,
        };
        persist(&*self.fs, &self.dir, &file)
            .map_err(|error| StorageIOError::write_snapshot(signature, io_error(error)))?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.image = Arc::new(file.image.clone());
        *lock(&self.snapshot) = Some(file);
        self.published.send_replace(self.image.clone());
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<MetadataRaft>>, StorageError<NodeId>> {
        let latest = lock(&self.snapshot);
        let Some(file) = latest.as_ref() else {
            return Ok(None);
        };
        let data = serde_json::to_vec(&file.image).map_err(|error| {
            StorageIOError::read_snapshot(Some(file.meta.signature()), io_error(error))
        })?;
        Ok(Some(Snapshot {
            meta: file.meta.clone(),
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

fn lock(snapshot: &Mutex<Option<SnapshotFile>>) -> std::sync::MutexGuard<'_, Option<SnapshotFile>> {
    // Held only to swap or clone the snapshot.
    snapshot
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn persist(fs: &dyn FileSystem, dir: &Path, file: &SnapshotFile) -> std::io::Result<()> {
    let json = serde_json::to_vec(file).map_err(std::io::Error::other)?;
    write_atomically(fs, dir, SNAPSHOT_FILE, &json)
}

/// Writes a snapshot of the image as it was when the builder was made.
#[derive(Debug)]
pub(crate) struct SnapshotBuilder {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    latest: Arc<Mutex<Option<SnapshotFile>>>,
    file: SnapshotFile,
}

impl RaftSnapshotBuilder<MetadataRaft> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<MetadataRaft>, StorageError<NodeId>> {
        let signature = Some(self.file.meta.signature());
        let fs = self.fs.clone();
        let dir = self.dir.clone();
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || persist(&*fs, &dir, &file))
            .await
            .map_err(|error| StorageIOError::write_snapshot(signature.clone(), io_error(error)))?
            .map_err(|error| StorageIOError::write_snapshot(signature.clone(), io_error(error)))?;
        let data = serde_json::to_vec(&self.file.image)
            .map_err(|error| StorageIOError::write_snapshot(signature, io_error(error)))?;
        *lock(&self.latest) = Some(self.file.clone());
        Ok(Snapshot {
            meta: self.file.meta.clone(),
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}
