//! openraft's log storage over [`MetadataLog`]: every operation on it runs on tokio's
//! blocking pool, one at a time (Raft requires its writes in order; a read waits for a write's
//! fsync there, never on an async worker), and the append callback fires only once the
//! entries are fsynced.

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, LogId, RaftLogReader, StorageError, StorageIOError, Vote};

use crate::log::{MetadataEntry, MetadataLog};
use crate::{MetadataRaft, NodeId};

#[derive(Debug, Clone)]
pub(crate) struct LogStore {
    log: Arc<Mutex<MetadataLog>>,
}

fn lock(log: &Mutex<MetadataLog>) -> MutexGuard<'_, MetadataLog> {
    // A panic under the lock is an assertion on the log's invariants; nothing can go on.
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LogStore {
    pub(crate) fn new(log: MetadataLog) -> LogStore {
        LogStore {
            log: Arc::new(Mutex::new(log)),
        }
    }

    /// Runs blocking file work on the log.
    async fn with_log<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut MetadataLog) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || work(&mut lock(&log)))
            .await
            .map_err(io::Error::other)?
    }
}

fn any(error: io::Error) -> AnyError {
    AnyError::new(&error)
}

impl RaftLogReader<MetadataRaft> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<MetadataEntry>, StorageError<NodeId>> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        self.with_log(move |log| Ok(log.entries(bounds)))
            .await
            .map_err(|error| StorageIOError::read_logs(any(error)).into())
    }
}

impl RaftLogStorage<MetadataRaft> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<MetadataRaft>, StorageError<NodeId>> {
        self.with_log(|log| {
            Ok(LogState {
                last_purged_log_id: log.purged(),
                last_log_id: log.last_log_id(),
            })
        })
        .await
        .map_err(|error| StorageIOError::read_logs(any(error)).into())
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let vote = *vote;
        self.with_log(move |log| log.save_vote(&vote))
            .await
            .map_err(|error| StorageIOError::write_vote(any(error)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.with_log(|log| Ok(log.vote()))
            .await
            .map_err(|error| StorageIOError::read_vote(any(error)).into())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<MetadataRaft>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = MetadataEntry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<MetadataEntry> = entries.into_iter().collect();
        match self.with_log(move |log| log.append(entries)).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                let message = error.to_string();
                callback.log_io_completed(Err(io::Error::other(message)));
                Err(StorageIOError::write_logs(any(error)).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.with_log(move |log| log.truncate(log_id.index))
            .await
            .map_err(|error| StorageIOError::write_logs(any(error)).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.with_log(move |log| log.purge(log_id))
            .await
            .map_err(|error| StorageIOError::write_logs(any(error)).into())
    }
}
