//! One partition on this broker: its log behind a lock, its high watermark, and the rules that
//! tie them to durability and to disk failures.
//!
//! - Every method that touches the log blocks: it runs on the I/O pool, never on an async
//!   worker. Appends, reads and flushes of one partition are serialised by its lock; the
//!   fsync itself and the copy of fetched bytes happen outside it.
//! - The high watermark is what consumers may read. When the flush policy makes an append wait
//!   for an fsync before it is acknowledged (`flush.messages=1`), the high watermark moves only
//!   to the fsynced offset: no consumer ever reads a record that a power cut could still take.
//!   Otherwise it follows the log end offset. It never moves back.
//! - A disk error (EIO, a failed fsync, corruption found while reading) takes the partition
//!   offline for the life of the process: every later request gets KAFKA_STORAGE_ERROR and
//!   nothing is retried over pages the kernel may already have dropped. A restart recovers it
//!   from its last fsync, as Kafka does for a failed log directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use runnel_record::{ControlType, TransactionMarker};
use runnel_storage::{AppendInfo, FetchSlice, PartitionLog, StorageError};
use tokio::sync::{watch, OwnedMutexGuard};

use crate::error::ApiError;
use crate::io_pool::IoPool;

/// A single node leads every partition in epoch 0; replication (later) moves this.
pub(crate) const LEADER_EPOCH: i32 = 0;

/// The epoch of this node's transaction coordinators: the leader epoch of their
/// `__transaction_state` partitions, 0 on a single node.
pub(crate) const COORDINATOR_EPOCH: i32 = 0;

/// The last stable offset: consumers reading committed data see records below it, which
/// is the high watermark unless a transaction is open below that.
pub(crate) fn last_stable_offset(log: &PartitionLog, high_watermark: i64) -> i64 {
    log.producers()
        .first_unstable_offset()
        .map_or(high_watermark, |first| first.min(high_watermark))
}

/// The partitions the background loops must look at, so that their cost follows the
/// partitions being written, not every partition on the broker:
/// - the flusher's list: partitions with appends not yet fsynced;
/// - retention's: partitions written to (or reconfigured) since their last check, and, by
///   time, when each partition's oldest segment next expires. An idle partition whose data
///   does not expire is on neither.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    pending: Mutex<Vec<Arc<Partition>>>,
    retention_soon: Mutex<Vec<Arc<Partition>>>,
    /// By the time (ms) a partition's oldest segment expires. An entry whose time is no
    /// longer its partition's `retention_due_ms` is stale and skipped.
    retention_at: Mutex<BTreeMap<i64, Vec<Arc<Partition>>>>,
}

impl Schedule {
    fn add(&self, partition: Arc<Partition>) {
        lock_list(&self.pending).push(partition);
    }

    /// Takes the scheduled partitions; the flusher puts back (with
    /// [`Partition::keep_scheduled_if_unflushed`]) those it leaves unflushed.
    pub(crate) fn take(&self) -> Vec<Arc<Partition>> {
        std::mem::take(&mut *lock_list(&self.pending))
    }

    /// Takes the partitions retention must look at `now_ms`: written to since their last
    /// check, or with data expiring by now. Each once; the caller reports each back with
    /// [`Partition::retention_checked`].
    pub(crate) fn take_retention_due(&self, now_ms: i64) -> Vec<Arc<Partition>> {
        let mut due = std::mem::take(&mut *lock_list(&self.retention_soon));
        {
            let mut by_time = lock_list(&self.retention_at);
            let later = by_time.split_off(&now_ms.saturating_add(1));
            for (at, partitions) in std::mem::replace(&mut *by_time, later) {
                // Taken off the map: the check that follows enters it again.
                due.extend(partitions.into_iter().filter(|partition| {
                    partition
                        .retention_due_ms
                        .compare_exchange(at, i64::MAX, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                }));
            }
        }
        let mut seen = std::collections::HashSet::new();
        due.retain(|partition| seen.insert(Arc::as_ptr(partition)));
        due
    }
}

fn lock_list<T>(list: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is one push, take or map operation.
    list.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug)]
enum LogState {
    Online(Box<PartitionLog>),
    /// After a disk error; the files are left as they were.
    Offline,
    /// The topic was deleted: holders of an `Arc<Partition>` see it as unknown.
    Deleted,
}

/// What an append did, and what the acknowledgement must wait for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Appended {
    pub info: AppendInfo,
    pub log_start_offset: i64,
    /// The flush policy wants an fsync before the acknowledgement (and before consumers see
    /// the records): call [`Partition::sync_to`] with `info.last_offset + 1`.
    pub sync_required: bool,
}

/// One partition of a topic on this broker.
#[derive(Debug)]
pub(crate) struct Partition {
    pub topic: Arc<str>,
    pub index: i32,
    log: Mutex<LogState>,
    /// Why the partition went offline; set once.
    offline_reason: OnceLock<String>,
    /// Consumers read below this.
    high_watermark: watch::Sender<i64>,
    /// Held while an fsync runs, so concurrent acknowledgements share one fsync.
    sync_lock: Arc<tokio::sync::Mutex<()>>,
    /// Everything below is fsynced; read without the log lock on the acknowledgement path.
    flushed_offset: AtomicI64,
    schedule: Arc<Schedule>,
    /// In `schedule`'s list (or being looked at by the flusher).
    scheduled: AtomicBool,
    /// In `schedule`'s list of partitions retention looks at next.
    retention_soon: AtomicBool,
    /// When the oldest segment expires, as entered in `schedule` (`i64::MAX`: not entered).
    retention_due_ms: AtomicI64,
}

impl Partition {
    pub(crate) fn online(
        topic: Arc<str>,
        index: i32,
        log: PartitionLog,
        schedule: &Arc<Schedule>,
    ) -> Arc<Self> {
        // What recovery kept is on disk, but only what is below the recovery point is known
        // to be fsynced; the rest was acknowledged (if at all) under a policy that allowed it.
        let (high_watermark, _) = watch::channel(log.log_end_offset());
        let unflushed = log.unflushed_records() > 0;
        let partition = Arc::new(Partition {
            topic,
            index,
            flushed_offset: AtomicI64::new(log.recovery_point()),
            log: Mutex::new(LogState::Online(Box::new(log))),
            offline_reason: OnceLock::new(),
            high_watermark,
            sync_lock: Arc::new(tokio::sync::Mutex::new(())),
            schedule: Arc::clone(schedule),
            scheduled: AtomicBool::new(false),
            retention_soon: AtomicBool::new(false),
            retention_due_ms: AtomicI64::new(i64::MAX),
        });
        if unflushed {
            partition.schedule_flush();
        }
        partition.schedule_retention_check();
        partition
    }

    /// A partition whose log could not be opened. Logs why, and what an operator can do.
    pub(crate) fn offline(
        topic: Arc<str>,
        index: i32,
        dir: &Path,
        reason: String,
        schedule: &Arc<Schedule>,
    ) -> Arc<Self> {
        let (high_watermark, _) = watch::channel(0);
        let partition = Partition {
            topic,
            index,
            log: Mutex::new(LogState::Offline),
            offline_reason: OnceLock::new(),
            high_watermark,
            sync_lock: Arc::new(tokio::sync::Mutex::new(())),
            flushed_offset: AtomicI64::new(0),
            schedule: Arc::clone(schedule),
            scheduled: AtomicBool::new(false),
            retention_soon: AtomicBool::new(false),
            retention_due_ms: AtomicI64::new(i64::MAX),
        };
        partition.report_offline(dir, &reason);
        Arc::new(partition)
    }

    /// Puts the partition on the flusher's list unless it is on it already.
    fn schedule_flush(self: &Arc<Self>) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            self.schedule.add(Arc::clone(self));
        }
    }

    /// For the flusher, after looking at a partition it took off the list: puts it back if
    /// records remain unflushed. The mark is cleared first, so an append racing with this
    /// either is seen here or schedules the partition itself.
    pub(crate) fn keep_scheduled_if_unflushed(self: &Arc<Self>) {
        self.scheduled.store(false, Ordering::Release);
        let unflushed = self
            .with_log(|log| Ok(log.unflushed_records() > 0))
            .unwrap_or(false);
        if unflushed {
            self.schedule_flush();
        }
    }

    /// Puts the partition on retention's next list unless it is on it already: it was
    /// written to, its topic's retention changed, or records were deleted before an offset.
    pub(crate) fn schedule_retention_check(self: &Arc<Self>) {
        if !self.retention_soon.swap(true, Ordering::AcqRel) {
            lock_list(&self.schedule.retention_soon).push(Arc::clone(self));
        }
    }

    /// For the retention loop, after enforcing retention on a partition it took: enters when
    /// its oldest data next expires. The mark is cleared first, so an append racing with
    /// this either is seen here or schedules the partition itself.
    /// `deletes`: the topic deletes by retention (`cleanup.policy` has `delete`); if not,
    /// nothing is entered by time.
    pub(crate) fn retention_checked(self: &Arc<Self>, deletes: bool) {
        self.retention_soon.store(false, Ordering::Release);
        let due = if deletes {
            self.with_log(|log| log.retention_due_ms()).ok().flatten()
        } else {
            None
        };
        let due = due.unwrap_or(i64::MAX);
        let previous = self.retention_due_ms.swap(due, Ordering::AcqRel);
        if due != i64::MAX && due != previous {
            lock_list(&self.schedule.retention_at)
                .entry(due)
                .or_default()
                .push(Arc::clone(self));
        }
    }

    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    pub(crate) fn name(&self) -> String {
        format!("{}-{}", self.topic, self.index)
    }

    pub(crate) fn is_offline(&self) -> bool {
        self.offline_reason.get().is_some()
    }

    fn report_offline(&self, dir: &Path, reason: &str) {
        if self.offline_reason.set(reason.to_string()).is_ok() {
            tracing::error!(
                partition = %self.name(),
                dir = %dir.display(),
                reason,
                "partition is OFFLINE: every request for it gets KAFKA_STORAGE_ERROR until the \
                 broker restarts; other partitions keep serving. Check the disk (dmesg, SMART), \
                 then restart: the partition recovers from its last fsync. If its files are \
                 damaged beyond recovery, restore the directory from a backup, or move it away \
                 to start the partition empty (its records are then lost)."
            );
        }
    }

    fn storage_error(&self) -> ApiError {
        ApiError::new(
            ResponseError::KafkaStorageError,
            format!(
                "partition {} is offline after a disk error: {}",
                self.name(),
                self.offline_reason.get().map_or("", String::as_str)
            ),
        )
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        match self.log.lock() {
            Ok(guard) => guard,
            // A panic while appending may have left the log half-updated: crashing beats
            // serving a log that may diverge from what is on disk.
            Err(_) => {
                tracing::error!(partition = %self.name(), "partition log lock poisoned by a panic; stopping");
                std::process::abort();
            }
        }
    }

    /// Runs `f` on the log. Blocks: call it from the I/O pool. A disk error takes the partition
    /// offline; errors about the request (an offset out of range) are answered as they are.
    pub(crate) fn with_log<T>(
        &self,
        f: impl FnOnce(&mut PartitionLog) -> Result<T, StorageError>,
    ) -> Result<T, ApiError> {
        let mut state = self.lock();
        let log = match &mut *state {
            LogState::Online(log) => log,
            LogState::Offline => return Err(self.storage_error()),
            LogState::Deleted => {
                return Err(ApiError::code(ResponseError::UnknownTopicOrPartition))
            }
        };
        match f(log) {
            Ok(value) => Ok(value),
            Err(error @ (StorageError::Io { .. } | StorageError::Corrupt(_))) => {
                self.report_offline(log.dir(), &error.to_string());
                *state = LogState::Offline;
                Err(self.storage_error())
            }
            Err(other) => Err(other.into()),
        }
    }

    pub(crate) fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    pub(crate) fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    fn advance_high_watermark(&self, offset: i64) {
        self.high_watermark.send_if_modified(|high_watermark| {
            let moved = offset > *high_watermark;
            if moved {
                *high_watermark = offset;
            }
            moved
        });
    }

    /// Appends validated batches, giving them offsets. Blocks: call it from the I/O pool.
    pub(crate) fn append(
        self: &Arc<Self>,
        batches: &mut [u8],
        now_ms: i64,
    ) -> Result<Appended, ApiError> {
        self.append_with(|log| log.append(batches, LEADER_EPOCH, now_ms))
    }

    /// Appends batches a coordinator of this broker wrote in a producer's transaction
    /// (TxnOffsetCommit): only the producer's epoch is checked. Blocks.
    pub(crate) fn append_from_coordinator(
        self: &Arc<Self>,
        batches: &mut [u8],
        now_ms: i64,
    ) -> Result<Appended, ApiError> {
        self.append_with(|log| log.append_from_coordinator(batches, LEADER_EPOCH, now_ms))
    }

    /// Writes a transaction marker for `producer_id` (WriteTxnMarkers, for this partition).
    /// Blocks: call it from the I/O pool.
    pub(crate) fn append_marker(
        self: &Arc<Self>,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<Appended, ApiError> {
        let marker = TransactionMarker {
            control: if commit {
                ControlType::Commit
            } else {
                ControlType::Abort
            },
            coordinator_epoch: COORDINATOR_EPOCH,
        };
        self.append_with(|log| {
            log.append_marker(producer_id, producer_epoch, marker, LEADER_EPOCH, now_ms)
        })
    }

    /// Runs one kind of append on the log, then the bookkeeping: the flusher and retention
    /// look at the partition, and consumers see the records now unless an fsync must come
    /// first.
    fn append_with(
        self: &Arc<Self>,
        append: impl FnOnce(&mut PartitionLog) -> Result<AppendInfo, StorageError>,
    ) -> Result<Appended, ApiError> {
        let (appended, log_end_offset) = self.with_log(|log| {
            let info = append(log)?;
            let appended = Appended {
                info,
                log_start_offset: log.log_start_offset(),
                // A retry already in the log is answered as its original would be: once
                // consumers may see it, which under fsync-before-ack means once it is synced.
                sync_required: if info.duplicate {
                    self.high_watermark() <= info.last_offset
                } else {
                    log.flush_due_by_count()
                },
            };
            Ok((appended, log.log_end_offset()))
        })?;
        if appended.info.duplicate {
            return Ok(appended);
        }
        self.schedule_flush();
        self.schedule_retention_check();
        if !appended.sync_required {
            self.advance_high_watermark(log_end_offset);
        }
        Ok(appended)
    }

    /// [`Self::sync_to`] for callers already on the I/O pool (the transaction coordinator,
    /// which writes its state and markers in one blocking job). Blocks.
    pub(crate) fn sync_to_blocking(&self, offset: i64) -> Result<(), ApiError> {
        if self.flushed_offset.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let synced_offset = self.flush()?;
        self.flushed_offset
            .fetch_max(synced_offset, Ordering::AcqRel);
        self.advance_high_watermark(synced_offset);
        Ok(())
    }

    /// Makes every offset below `offset` durable, then lets consumers see it. Appenders that
    /// arrive while an fsync runs wait for it and then usually find their data already
    /// covered: one fsync, many acknowledgements. A failed fsync takes the partition offline.
    pub(crate) async fn sync_to(
        self: &Arc<Self>,
        pool: &IoPool,
        offset: i64,
    ) -> Result<(), ApiError> {
        if self.flushed_offset.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let sync = Arc::clone(&self.sync_lock).lock_owned().await;
        if self.flushed_offset.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let partition = Arc::clone(self);
        pool.run(move || partition.flush_and_publish(sync)).await?
    }

    /// Flushes while holding the sync lock, then lets consumers see what is now durable.
    fn flush_and_publish(&self, _sync: OwnedMutexGuard<()>) -> Result<(), ApiError> {
        let synced_offset = self.flush()?;
        self.flushed_offset
            .fetch_max(synced_offset, Ordering::AcqRel);
        self.advance_high_watermark(synced_offset);
        Ok(())
    }

    /// Fsyncs what the log holds, outside the log lock, and returns the offset now durable.
    /// Blocks: call it from the I/O pool.
    pub(crate) fn flush(&self) -> Result<i64, ApiError> {
        let (handle, dir) = self.with_log(|log| Ok((log.unflushed()?, log.dir().to_path_buf())))?;
        if let Err(error) = handle.sync() {
            // Never retried: after a failed fsync the kernel may have dropped the dirty pages,
            // and a second fsync would "succeed" over data that is gone.
            let mut state = self.lock();
            self.report_offline(&dir, &format!("fsync failed: {error}"));
            *state = LogState::Offline;
            return Err(self.storage_error());
        }
        self.with_log(|log| {
            log.mark_flushed(handle.offset);
            Ok(())
        })?;
        Ok(handle.offset)
    }

    /// Whether the flush policy asks for an fsync now (`flush.ms`, `flush.messages`).
    pub(crate) fn flush_due(&self, now_ms: i64) -> bool {
        self.with_log(|log| Ok(log.flush_due(now_ms)))
            .unwrap_or(false)
    }

    /// Copies the bytes of a slice taken under the lock. Blocks: call it from the I/O pool.
    pub(crate) fn read_slice(&self, slice: &FetchSlice) -> Result<Bytes, ApiError> {
        slice.read().map_err(|error| {
            if error.kind() == std::io::ErrorKind::UnexpectedEof {
                // A truncation shortened the file after the slice was taken: ask again.
                return ApiError::new(ResponseError::UnknownServerError, error.to_string());
            }
            let mut state = self.lock();
            if let LogState::Online(log) = &*state {
                self.report_offline(log.dir(), &format!("read failed: {error}"));
                *state = LogState::Offline;
            }
            self.storage_error()
        })
    }

    /// Holds every acknowledgement-path fsync of the partition back until the guard drops.
    #[cfg(test)]
    pub(crate) async fn hold_fsyncs(&self) -> OwnedMutexGuard<()> {
        Arc::clone(&self.sync_lock).lock_owned().await
    }

    /// The log end offset, read under the lock (tests only: it blocks).
    #[cfg(test)]
    pub(crate) fn log_end_offset_for_test(&self) -> i64 {
        self.with_log(|log| Ok(log.log_end_offset())).unwrap_or(-1)
    }

    /// Flushes and closes the log (clean shutdown).
    pub(crate) fn close(&self) -> Result<(), StorageError> {
        match std::mem::replace(&mut *self.lock(), LogState::Deleted) {
            LogState::Online(log) => (*log).close(),
            LogState::Offline | LogState::Deleted => Ok(()),
        }
    }

    /// Drops the log (topic deletion): its files close, requests see an unknown partition.
    pub(crate) fn detach(&self) {
        *self.lock() = LogState::Deleted;
    }
}
