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
//! - In a cluster the partition has a [`Role`]: its leader's high watermark comes from the
//!   replication state machine (`runnel_replication::LeaderState`), which counts each
//!   replica only with what it has made durable; a follower's comes from its leader. Appends
//!   carry the role's leader epoch, read under the log lock (lock order: log, then role), so
//!   no append lands in an epoch the partition has left.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use runnel_record::{ControlType, TransactionMarker};
use runnel_replication::{
    check_leader_epoch, AckOutcome, Assignment, EpochCheck, EpochEnd, FetchAnswer, LeaderConfig,
    LeaderState, LocalLog, ProduceRefusal, ReplicaFetch,
};
use runnel_storage::{AppendInfo, FetchSlice, PartitionLog, StorageError};
use tokio::sync::{watch, OwnedMutexGuard};

use crate::error::ApiError;
use crate::io_pool::IoPool;
use crate::metrics::{BrokerMetrics, PartitionTraffic};

/// Where the leader's log stands, as its fetch answer says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaderPosition {
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// What this broker does for a partition.
#[derive(Debug)]
pub(crate) enum Role {
    /// Leads in a cluster: the replication state machine decides the high watermark.
    Leader(Box<LeaderState>),
    /// Copies `leader`'s log in `leader_epoch` (the replica fetcher does).
    Follower { leader: i32, leader_epoch: i32 },
    /// Held here with no role yet: the partition has no leader, or this broker is not
    /// registered in this process yet.
    Waiting,
}

impl Role {
    /// The leader epoch appends carry, or why this broker takes none.
    fn append_epoch(&self) -> Result<i32, ApiError> {
        match self {
            Role::Leader(state) => Ok(state.leader_epoch()),
            Role::Follower { .. } | Role::Waiting => Err(not_leader()),
        }
    }
}

pub(crate) fn not_leader() -> ApiError {
    ApiError::new(
        ResponseError::NotLeaderOrFollower,
        "this broker is not the leader of the partition",
    )
}

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
    /// The broker's counters, which every partition's fsyncs report to.
    pub(crate) metrics: Arc<BrokerMetrics>,
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
    /// In a cluster, a partition with no replica on this broker.
    Elsewhere,
}

/// What an append did, and what the acknowledgement must wait for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Appended {
    pub info: AppendInfo,
    pub log_start_offset: i64,
    /// The flush policy wants an fsync before the acknowledgement (and before consumers see
    /// the records): call [`Partition::sync_to`] with `info.last_offset + 1`.
    pub sync_required: bool,
    /// The leader epoch the records were appended in.
    pub leader_epoch: i32,
}

/// What distinguishes the ways a partition starts: online, offline, or held elsewhere.
struct Parts {
    log: LogState,
    role: Role,
    fsync_before_replicated: bool,
    high_watermark: i64,
    log_end: i64,
    flushed_offset: i64,
}

/// One partition of a topic on this broker.
#[derive(Debug)]
pub(crate) struct Partition {
    pub topic: Arc<str>,
    pub index: i32,
    log: Mutex<LogState>,
    /// Locked after `log` when both are held.
    role: Mutex<Role>,
    /// Whether a replica counts toward the high watermark only with what it has fsynced
    /// (`replica.durability=fsync`), or also with what is in its page cache.
    fsync_before_replicated: bool,
    /// The log end offset, for replica fetches waiting for new records.
    log_end: watch::Sender<i64>,
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
    /// Bytes and records produced to and fetched from this partition, for metrics.
    pub(crate) traffic: PartitionTraffic,
}

impl Partition {
    /// A partition whose log opened, with no role yet. `fsync_before_replicated`: whether
    /// replicas count only what they fsynced (`replica-fsync`).
    pub(crate) fn online(
        topic: Arc<str>,
        index: i32,
        log: PartitionLog,
        schedule: &Arc<Schedule>,
        fsync_before_replicated: bool,
    ) -> Arc<Self> {
        // Which of the records recovery kept are committed is known only once a leader says
        // so: the high watermark starts at the log start.
        let (role, high_watermark) = (Role::Waiting, log.log_start_offset());
        let unflushed = log.unflushed_records() > 0;
        let partition = Arc::new(Partition::build(
            topic,
            index,
            schedule,
            Parts {
                flushed_offset: log.recovery_point(),
                log_end: log.log_end_offset(),
                log: LogState::Online(Box::new(log)),
                role,
                fsync_before_replicated,
                high_watermark,
            },
        ));
        if unflushed && fsync_before_replicated {
            // A replica counts only what it knows is durable, and nothing else would fsync a
            // tail a crash left in the page cache until the next write: a quiet partition's
            // acknowledged records would stay below the high watermark, invisible. A failed
            // fsync has taken the partition offline, which is all there is to do.
            if let Ok(synced) = partition.flush() {
                partition.flushed_offset.fetch_max(synced, Ordering::AcqRel);
            }
        } else if unflushed {
            partition.schedule_flush();
        }
        partition.schedule_retention_check();
        partition
    }

    /// A partition whose log could not be opened. Logs why, and what an operator can do.
    /// `fsync_before_replicated` as for [`Self::online`].
    pub(crate) fn offline(
        topic: Arc<str>,
        index: i32,
        dir: &Path,
        reason: String,
        schedule: &Arc<Schedule>,
        fsync_before_replicated: bool,
    ) -> Arc<Self> {
        let partition = Partition::build(
            topic,
            index,
            schedule,
            Parts {
                log: LogState::Offline,
                role: Role::Waiting,
                fsync_before_replicated,
                high_watermark: 0,
                log_end: 0,
                flushed_offset: 0,
            },
        );
        partition.report_offline(dir, &reason);
        Arc::new(partition)
    }

    /// In a cluster, a partition of a known topic with no replica here: requests for it get
    /// NOT_LEADER_OR_FOLLOWER, and clients look for its leader.
    pub(crate) fn elsewhere(topic: Arc<str>, index: i32, schedule: &Arc<Schedule>) -> Arc<Self> {
        Arc::new(Partition::build(
            topic,
            index,
            schedule,
            Parts {
                log: LogState::Elsewhere,
                role: Role::Waiting,
                fsync_before_replicated: true,
                high_watermark: -1,
                log_end: -1,
                flushed_offset: 0,
            },
        ))
    }

    fn build(topic: Arc<str>, index: i32, schedule: &Arc<Schedule>, parts: Parts) -> Partition {
        Partition {
            topic,
            index,
            log: Mutex::new(parts.log),
            role: Mutex::new(parts.role),
            fsync_before_replicated: parts.fsync_before_replicated,
            log_end: watch::channel(parts.log_end).0,
            offline_reason: OnceLock::new(),
            high_watermark: watch::channel(parts.high_watermark).0,
            sync_lock: Arc::new(tokio::sync::Mutex::new(())),
            flushed_offset: AtomicI64::new(parts.flushed_offset),
            schedule: Arc::clone(schedule),
            scheduled: AtomicBool::new(false),
            retention_soon: AtomicBool::new(false),
            retention_due_ms: AtomicI64::new(i64::MAX),
            traffic: PartitionTraffic::default(),
        }
    }

    /// Whether this broker holds a replica (online or offline) of the partition.
    pub(crate) fn is_held(&self) -> bool {
        !matches!(*self.lock(), LogState::Elsewhere)
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
                 broker restarts; other partitions keep serving, and the controller, told at the \
                 next heartbeat, moves its leadership to an in-sync replica if it has one. Check the disk (dmesg, SMART), \
                 then restart: the partition recovers from its last fsync. If its files are \
                 damaged beyond recovery, restore the directory from a backup, or move it away \
                 to start the partition empty (its records are then lost)."
            );
        }
    }

    /// KAFKA_STORAGE_ERROR if this replica's disk failed: it serves nothing, whatever its role.
    fn check_online(&self) -> Result<(), ApiError> {
        match self.is_offline() {
            true => Err(self.storage_error()),
            false => Ok(()),
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

    /// A panic while appending may have left the log half-updated: crashing beats serving a
    /// log that may diverge from what is on disk.
    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.lock_or_abort(&self.log, "log")
    }

    /// A poisoned lock means a panic mid-update: crashing beats serving the state it left.
    fn lock_or_abort<'a, T>(&self, mutex: &'a Mutex<T>, what: &str) -> MutexGuard<'a, T> {
        match mutex.lock() {
            Ok(guard) => guard,
            Err(_) => {
                tracing::error!(partition = %self.name(), lock = what, "partition lock poisoned by a panic; stopping");
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
            LogState::Elsewhere => return Err(not_leader()),
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

    /// Appends validated batches, giving them offsets, in the leader epoch of this broker's
    /// role. Blocks: call it from the I/O pool.
    pub(crate) fn append(
        self: &Arc<Self>,
        batches: &mut [u8],
        now_ms: i64,
    ) -> Result<Appended, ApiError> {
        self.append_with(|log, epoch| log.append(batches, epoch, now_ms))
    }

    /// Appends batches a coordinator of this broker wrote in a producer's transaction
    /// (TxnOffsetCommit): only the producer's epoch is checked. Blocks.
    pub(crate) fn append_from_coordinator(
        self: &Arc<Self>,
        batches: &mut [u8],
        now_ms: i64,
    ) -> Result<Appended, ApiError> {
        self.append_with(|log, epoch| log.append_from_coordinator(batches, epoch, now_ms))
    }

    /// Writes a transaction marker for `producer_id` (WriteTxnMarkers, for this partition),
    /// from the transaction coordinator of `coordinator_epoch`: one older than a coordinator
    /// that already wrote one for the producer is refused (TRANSACTION_COORDINATOR_FENCED).
    /// Blocks: call it from the I/O pool.
    pub(crate) fn append_marker(
        self: &Arc<Self>,
        (producer_id, producer_epoch): (i64, i16),
        commit: bool,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Result<Appended, ApiError> {
        let marker = TransactionMarker {
            control: if commit {
                ControlType::Commit
            } else {
                ControlType::Abort
            },
            coordinator_epoch,
        };
        self.append_with(|log, epoch| {
            log.append_marker(producer_id, producer_epoch, marker, epoch, now_ms)
        })
    }

    /// Runs one kind of append on the log, then the bookkeeping: the flusher and retention
    /// look at the partition, and consumers see the records now unless an fsync (or, in a
    /// cluster, the followers) must come first.
    fn append_with(
        self: &Arc<Self>,
        append: impl FnOnce(&mut PartitionLog, i32) -> Result<AppendInfo, StorageError>,
    ) -> Result<Appended, ApiError> {
        let appended = self.with_log(|log| {
            let mut role = self.role_lock();
            let epoch = match role.append_epoch() {
                Ok(epoch) => epoch,
                Err(refused) => return Ok(Err(refused)),
            };
            let info = append(log, epoch)?;
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
                leader_epoch: epoch,
            };
            if info.duplicate {
                return Ok(Ok(appended));
            }
            // Under the log lock, so that the replication rules see log ends in order.
            let log_end_offset = log.log_end_offset();
            self.log_end.send_replace(log_end_offset);
            match &mut *role {
                Role::Leader(state) => {
                    state.on_append(log_end_offset);
                    let durable_end = if self.fsync_before_replicated {
                        self.flushed_offset.load(Ordering::Acquire)
                    } else {
                        log_end_offset
                    };
                    state.on_durable(durable_end.min(log_end_offset));
                    self.advance_high_watermark(state.high_watermark());
                }
                Role::Follower { .. } | Role::Waiting => {}
            }
            Ok(Ok(appended))
        })??;
        if !appended.info.duplicate {
            self.schedule_flush();
            self.schedule_retention_check();
        }
        Ok(appended)
    }

    /// Appends batches fetched from the leader of `leader_epoch`, with their offsets and
    /// epochs, and fsyncs them unless replicas may count what is in the page cache: the next
    /// fetch offset tells the leader all below it is durable here. Returns the new log end
    /// offset. Refused unless this broker still follows in that epoch: a fetcher's last job
    /// may run after the partition changed role, and must not write into a leader's log.
    /// Blocks.
    pub(crate) fn append_from_leader(
        &self,
        batches: &[u8],
        leader: LeaderPosition,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<i64, ApiError> {
        let log_end = self.with_follower_log(leader_epoch, |log| {
            if !batches.is_empty() {
                log.append_replicated(batches, now_ms)?;
            }
            // The leader's retention or DeleteRecords moved its log start: follow it.
            if leader.log_start_offset > log.log_start_offset() {
                log.delete_records_before(leader.log_start_offset.min(log.log_end_offset()))?;
            }
            Ok(log.log_end_offset())
        })?;
        self.log_end.send_replace(log_end);
        if self.fsync_before_replicated && !batches.is_empty() {
            let synced = self.flush()?;
            self.on_durable(synced);
        }
        if self.follows_in(leader_epoch) {
            self.advance_high_watermark(leader.high_watermark.min(log_end));
        }
        Ok(log_end)
    }

    /// Runs `f` on the log while this broker follows in `leader_epoch`, checked under the log
    /// lock; NOT_LEADER_OR_FOLLOWER otherwise. Blocks.
    fn with_follower_log<T>(
        &self,
        leader_epoch: i32,
        f: impl FnOnce(&mut PartitionLog) -> Result<T, StorageError>,
    ) -> Result<T, ApiError> {
        self.with_log(|log| {
            if !self.follows_in(leader_epoch) {
                return Ok(Err(not_leader()));
            }
            f(log).map(Ok)
        })?
    }

    /// Whether this broker follows the partition's leader in `leader_epoch`.
    fn follows_in(&self, leader_epoch: i32) -> bool {
        matches!(*self.role_lock(), Role::Follower { leader_epoch: current, .. } if current == leader_epoch)
    }

    /// At start in a cluster: the high watermark this replica checkpointed, capped at what
    /// its log holds.
    pub(crate) fn restore_high_watermark(&self, checkpointed: i64) {
        let log_end = *self.log_end.borrow();
        self.advance_high_watermark(checkpointed.min(log_end));
    }

    /// Cuts the log to end at `offset`, where it diverges from the leader's. Blocks.
    /// Refused unless this broker still follows in `leader_epoch` (see
    /// [`Self::append_from_leader`]): a leader's log is never cut.
    pub(crate) fn truncate_to(
        &self,
        offset: i64,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<i64, ApiError> {
        let log_end = self.with_follower_log(leader_epoch, |log| {
            log.truncate_to(offset, now_ms)?;
            Ok(log.log_end_offset())
        })?;
        self.flushed_offset.fetch_min(log_end, Ordering::AcqRel);
        self.log_end.send_replace(log_end);
        Ok(log_end)
    }

    /// The follower's view of its log for the next fetch. Blocks.
    pub(crate) fn replica_position(&self) -> Result<crate::replica_fetcher::Position, ApiError> {
        self.with_log(|log| {
            Ok(crate::replica_fetcher::Position {
                log_end: log.log_end_offset(),
                last_epoch: log.latest_leader_epoch(),
                log_start: log.log_start_offset(),
            })
        })
    }

    /// `(largest epoch <= epoch this log knows, where it ended)`: OffsetForLeaderEpoch.
    pub(crate) fn end_offset_for_epoch(&self, epoch: i32) -> Result<(i32, i64), ApiError> {
        self.with_log(|log| Ok(log.end_offset_for_epoch(epoch)))
    }

    /// A panic in the replication rules may have left their state half-updated: crashing
    /// beats acknowledging on it.
    fn role_lock(&self) -> MutexGuard<'_, Role> {
        self.lock_or_abort(&self.role, "role")
    }

    /// Runs `f` on the role.
    pub(crate) fn with_role<T>(&self, f: impl FnOnce(&mut Role) -> T) -> T {
        f(&mut self.role_lock())
    }

    /// Takes the leadership in `assignment.leader_epoch`: the epoch starts at the log end.
    /// Blocks (the epoch is persisted).
    pub(crate) fn become_leader(
        &self,
        local: i32,
        assignment: Assignment,
        broker_epoch: i64,
        config: LeaderConfig,
        now_ms: i64,
    ) -> Result<(), ApiError> {
        let epoch = assignment.leader_epoch;
        let high_watermark = self.with_log(|log| {
            let log_end = log.log_end_offset();
            if log
                .latest_leader_epoch()
                .is_none_or(|latest| latest < epoch)
            {
                log.assign_leader_epoch(epoch, log_end)?;
            }
            let durable_end = if self.fsync_before_replicated {
                self.flushed_offset.load(Ordering::Acquire).min(log_end)
            } else {
                log_end
            };
            let state = LeaderState::new(
                local,
                assignment,
                LocalLog {
                    log_end,
                    durable_end,
                    high_watermark: self.high_watermark().min(log_end),
                    broker_epoch,
                },
                config,
                now_ms,
            );
            let high_watermark = state.high_watermark();
            *self.role_lock() = Role::Leader(Box::new(state));
            Ok(high_watermark)
        })?;
        self.advance_high_watermark(high_watermark);
        self.wake_waiters();
        Ok(())
    }

    /// Follows `leader` in `leader_epoch`, or with `None` waits for a leader.
    pub(crate) fn become_follower(&self, leader: Option<(i32, i32)>) {
        {
            let _log = self.lock();
            *self.role_lock() = match leader {
                Some((leader, leader_epoch)) => Role::Follower {
                    leader,
                    leader_epoch,
                },
                None => Role::Waiting,
            };
        }
        self.wake_waiters();
    }

    /// Runs `f` on the leader state if this broker leads in `epoch`, then publishes the high
    /// watermark it leaves. `None` if it does not.
    pub(crate) fn with_leader_state<T>(
        &self,
        epoch: i32,
        f: impl FnOnce(&mut LeaderState) -> T,
    ) -> Option<T> {
        let mut role = self.role_lock();
        let Role::Leader(state) = &mut *role else {
            return None;
        };
        if state.leader_epoch() != epoch {
            return None;
        }
        let answer = f(state);
        self.advance_high_watermark(state.high_watermark());
        Some(answer)
    }

    /// A follower's fetch, answered by the replication rules if this broker leads: they
    /// record the follower's progress (which may move the high watermark) and say whether
    /// records follow, or where the follower's log diverges. With records, the slice from
    /// the fetch offset to the log end, at most `max_bytes` (but a whole first batch if
    /// `at_least_one_batch`). Blocks.
    pub(crate) fn answer_replica_fetch(
        &self,
        fetch: &ReplicaFetch,
        max_bytes: usize,
        at_least_one_batch: bool,
        now_ms: i64,
    ) -> Result<(FetchAnswer, Option<FetchSlice>, i64), ApiError> {
        let (answer, slice, log_start) = self.with_log(|log| {
            let mut role = self.role_lock();
            let Role::Leader(state) = &mut *role else {
                return Ok(Err(not_leader()));
            };
            let (answer, _) = state.answer_fetch(
                fetch,
                |epoch| EpochEnd::from_log(log.end_offset_for_epoch(epoch)),
                now_ms,
            );
            self.advance_high_watermark(state.high_watermark());
            let slice = match answer {
                FetchAnswer::Records { .. } => Some(log.read(
                    fetch.fetch_offset,
                    log.log_end_offset(),
                    max_bytes,
                    at_least_one_batch,
                )?),
                FetchAnswer::Diverging { .. } | FetchAnswer::Refused(_) => None,
            };
            Ok(Ok((answer, slice, log.log_start_offset())))
        })??;
        Ok((answer, slice, log_start))
    }

    /// The leader epoch a client request for the partition is served in: this broker must
    /// lead it, and the client's epoch, if it names one, must be that epoch (KIP-320). A
    /// replica whose disk failed serves nothing, whatever its role (it may have failed as it
    /// took the leadership).
    pub(crate) fn serving_epoch(&self, requested: i32) -> Result<i32, ApiError> {
        self.check_online()?;
        let current = match &*self.role_lock() {
            Role::Leader(state) => state.leader_epoch(),
            Role::Follower { leader_epoch, .. } if requested > *leader_epoch => {
                return Err(ApiError::code(ResponseError::UnknownLeaderEpoch))
            }
            Role::Follower { .. } | Role::Waiting => return Err(not_leader()),
        };
        match check_leader_epoch(requested, current) {
            EpochCheck::Current => Ok(current),
            EpochCheck::Fenced => Err(ApiError::code(ResponseError::FencedLeaderEpoch)),
            EpochCheck::Unknown => Err(ApiError::code(ResponseError::UnknownLeaderEpoch)),
        }
    }

    /// KIP-207: a new leader's high watermark can lag the records it holds from earlier
    /// epochs until its followers fetch in this one; until it reaches the epoch's start, an
    /// end offset (or a search past the high watermark) would answer a stale position as if
    /// it were the end, and a client asking "read to the end" would stop short. Kafka answers
    /// OFFSET_NOT_AVAILABLE, which clients retry.
    pub(crate) fn check_high_watermark_settled(&self) -> Result<(), ApiError> {
        match &*self.role_lock() {
            Role::Leader(state) if !state.high_watermark_reached_epoch_start() => {
                Err(ApiError::new(
                    ResponseError::OffsetNotAvailable,
                    format!(
                        "the high watermark {} has not yet reached offset {}, where leader \
                         epoch {} starts: its followers have not fetched in this epoch yet",
                        state.high_watermark(),
                        state.epoch_start_offset(),
                        state.leader_epoch()
                    ),
                ))
            }
            Role::Leader(_) | Role::Follower { .. } | Role::Waiting => Ok(()),
        }
    }

    /// The checks of a produce that need the role: this broker leads the partition, and
    /// for `acks=all` the ISR holds `min.insync.replicas`.
    pub(crate) fn check_produce(&self, acks: i16) -> Result<(), ApiError> {
        let refused = |in_sync: usize, required: usize| {
            ApiError::new(
                ResponseError::NotEnoughReplicas,
                format!(
                    "min.insync.replicas is {required} but only {in_sync} replicas are in sync"
                ),
            )
        };
        self.check_online()?;
        match &*self.role_lock() {
            Role::Leader(state) if acks == -1 => state.check_produce().map_err(
                |ProduceRefusal::NotEnoughReplicas { in_sync, required }| {
                    refused(in_sync, required)
                },
            ),
            Role::Leader(_) => Ok(()),
            Role::Follower { .. } | Role::Waiting => Err(not_leader()),
        }
    }

    /// Whether records appended as leader in `epoch`, ending before `end_offset`, may be
    /// answered to an `acks=all` producer.
    pub(crate) fn ack_outcome(&self, epoch: i32, end_offset: i64) -> Result<AckOutcome, ApiError> {
        match &*self.role_lock() {
            Role::Leader(state) if state.leader_epoch() == epoch => Ok(state.ack(end_offset)),
            // The leadership moved on: whether the records survive is the new leader's call.
            _ => Err(not_leader()),
        }
    }

    /// Whether `producer_id` has a transaction open here in `epoch`: its next transactional
    /// batch continues it, where a first one would start one (KIP-890 verifies those).
    pub(crate) fn has_open_transaction(&self, producer_id: i64, epoch: i16) -> bool {
        self.with_log(|log| {
            Ok(log.producers().get(producer_id).is_some_and(|entry| {
                entry.epoch == epoch && entry.transaction_first_offset.is_some()
            }))
        })
        .unwrap_or(false)
    }

    /// Whether this broker leads the partition in a cluster.
    pub(crate) fn leads(&self) -> bool {
        matches!(*self.role_lock(), Role::Leader(_))
    }

    /// Whether this broker leads the partition in a cluster and must fsync its own appends
    /// before they count toward the high watermark.
    pub(crate) fn leads_with_fsync(&self) -> bool {
        self.fsync_before_replicated && matches!(*self.role_lock(), Role::Leader(_))
    }

    /// Wakes whatever waits on the high watermark (acknowledgements, fetches), so that it
    /// looks at the role again.
    fn wake_waiters(&self) {
        self.high_watermark.send_modify(|_| {});
    }

    /// The log end offset channel, for replica fetches.
    pub(crate) fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.log_end.subscribe()
    }

    /// The local log is durable below `synced_offset`: the replication rules (leading) may
    /// count it.
    fn on_durable(&self, synced_offset: i64) {
        self.flushed_offset
            .fetch_max(synced_offset, Ordering::AcqRel);
        let mut role = self.role_lock();
        match &mut *role {
            Role::Leader(state) => {
                // An fsync may cover an append whose log end the rules have not seen yet;
                // that append counts its durable part itself.
                state.on_durable(synced_offset.min(state.log_end()));
                self.advance_high_watermark(state.high_watermark());
            }
            Role::Follower { .. } | Role::Waiting => {}
        }
    }

    /// [`Self::sync_to`] for callers already on the I/O pool (the transaction coordinator,
    /// which writes its state and markers in one blocking job). Blocks.
    pub(crate) fn sync_to_blocking(&self, offset: i64) -> Result<(), ApiError> {
        let flushed = self.flushed_offset.load(Ordering::Acquire);
        if flushed >= offset {
            self.on_durable(flushed);
            return Ok(());
        }
        let synced_offset = self.flush()?;
        self.on_durable(synced_offset);
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
        // Already durable: still told to the replication rules, in case the fsync that made
        // it so ran before this broker led (a leader counts only what it knows is durable).
        let flushed = self.flushed_offset.load(Ordering::Acquire);
        if flushed >= offset {
            self.on_durable(flushed);
            return Ok(());
        }
        let sync = Arc::clone(&self.sync_lock).lock_owned().await;
        let flushed = self.flushed_offset.load(Ordering::Acquire);
        if flushed >= offset {
            self.on_durable(flushed);
            return Ok(());
        }
        let partition = Arc::clone(self);
        pool.run(move || partition.flush_and_publish(sync)).await?
    }

    /// Flushes while holding the sync lock, then lets consumers see what is now durable.
    fn flush_and_publish(&self, _sync: OwnedMutexGuard<()>) -> Result<(), ApiError> {
        let synced_offset = self.flush()?;
        self.on_durable(synced_offset);
        Ok(())
    }

    /// Fsyncs what the log holds, outside the log lock, and returns the offset now durable.
    /// Blocks: call it from the I/O pool.
    pub(crate) fn flush(&self) -> Result<i64, ApiError> {
        let (handle, dir, durable_before) = self.with_log(|log| {
            Ok((
                log.unflushed()?,
                log.dir().to_path_buf(),
                log.recovery_point(),
            ))
        })?;
        let started = std::time::Instant::now();
        let synced = handle.sync();
        // Only an fsync that made records durable is one of group commit's: a flush with
        // nothing new (a concurrent one covered it) would skew both histograms.
        if handle.offset > durable_before {
            self.schedule.metrics.fsynced(
                started.elapsed(),
                u64::try_from(handle.offset - durable_before).unwrap_or(0),
            );
        }
        if let Err(error) = synced {
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
            LogState::Offline | LogState::Deleted | LogState::Elsewhere => Ok(()),
        }
    }

    /// Drops the log (topic deletion): its files close, requests see an unknown partition.
    pub(crate) fn detach(&self) {
        *self.lock() = LogState::Deleted;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_record::BatchBuilder;
    use runnel_storage::sim::{ManualClock, SimFileSystem};
    use runnel_storage::{FileHandles, FileSystem, LogConfig};

    fn open_log(fs: &Arc<SimFileSystem>) -> PartitionLog {
        PartitionLog::open(
            Arc::clone(fs) as Arc<dyn FileSystem>,
            FileHandles::new(8),
            Path::new("t-0"),
            LogConfig::default(),
            0,
        )
        .expect("open")
    }

    fn replicated_partition() -> Arc<Partition> {
        let fs = Arc::new(SimFileSystem::new(Arc::new(ManualClock::new(0))));
        Partition::online("t".into(), 0, open_log(&fs), &Arc::default(), true)
    }

    fn sole_replica(leader_epoch: i32) -> Assignment {
        Assignment {
            leader_epoch,
            partition_epoch: 0,
            replicas: vec![1],
            isr: vec![1],
        }
    }

    /// A crash leaves acknowledged records in the page cache, past the recovery point. Nothing
    /// else would fsync them before the next write, so a replica does it as it opens: else a
    /// quiet partition's high watermark would stay below records already acknowledged.
    #[test]
    fn a_replica_fsyncs_the_tail_a_crash_left_so_its_high_watermark_reaches_it() {
        let fs = Arc::new(SimFileSystem::new(Arc::new(ManualClock::new(0))));
        let before = Partition::online("t".into(), 0, open_log(&fs), &Arc::default(), true);
        before
            .become_leader(1, sole_replica(1), 3, leader_config(), 0)
            .unwrap();
        let mut batch = BatchBuilder::new(0).record(None, Some(b"a"), &[]).build();
        let end = before.append(&mut batch, 0).unwrap().info.last_offset + 1;
        drop(before); // a crash: no close, nothing fsynced

        let log = open_log(&fs);
        assert!(log.recovery_point() < end, "the tail is not known durable");
        let after = Partition::online("t".into(), 0, log, &Arc::default(), true);
        after
            .become_leader(1, sole_replica(2), 4, leader_config(), 0)
            .unwrap();
        assert_eq!(after.high_watermark(), end);
    }

    fn leader_config() -> LeaderConfig {
        LeaderConfig {
            replica_lag_time_max_ms: 30_000,
            min_insync_replicas: 1,
        }
    }

    /// What a leader's fetch answer says before anything is committed.
    const NOTHING_COMMITTED: LeaderPosition = LeaderPosition {
        high_watermark: 0,
        log_start_offset: 0,
    };

    /// A partition following broker 2 in leader epoch 5, holding one record of that epoch
    /// (offset 0) that its leader has not said is committed.
    fn following_broker_2_with_one_record() -> Arc<Partition> {
        let partition = replicated_partition();
        partition.become_follower(Some((2, 5)));
        let mut batch = BatchBuilder::new(0).record(None, Some(b"a"), &[]).build();
        runnel_record::RecordBatch::set_partition_leader_epoch(&mut batch, 5);
        let appended = partition
            .append_from_leader(&batch, NOTHING_COMMITTED, 5, 0)
            .unwrap();
        assert_eq!(appended, 1, "the log ends after the record");
        partition
    }

    /// A fetcher's last job can run after its partition became leader: it must neither write
    /// into nor cut the leader's log.
    #[test]
    fn a_stale_follower_job_cannot_touch_a_leaders_log() {
        let partition = following_broker_2_with_one_record();
        let assignment = Assignment {
            leader_epoch: 6,
            partition_epoch: 1,
            replicas: vec![1, 2],
            isr: vec![1],
        };
        partition
            .become_leader(1, assignment, 3, leader_config(), 0)
            .unwrap();
        let mut late = BatchBuilder::new(0).record(None, Some(b"b"), &[]).build();
        runnel_record::RecordBatch::set_base_offset(&mut late, 1);
        let refused = partition.append_from_leader(&late, NOTHING_COMMITTED, 5, 0);
        assert_eq!(
            refused.unwrap_err().code,
            ResponseError::NotLeaderOrFollower
        );
        let refused = partition.truncate_to(0, 5, 0);
        assert_eq!(
            refused.unwrap_err().code,
            ResponseError::NotLeaderOrFollower
        );
        assert_eq!(partition.log_end_offset_for_test(), 1);
    }

    /// KIP-207: a follower that becomes leader with a high watermark below what it holds
    /// does not answer an end offset until a follower has fetched in its epoch.
    #[test]
    fn a_new_leader_answers_no_end_offset_until_its_high_watermark_reaches_its_epoch() {
        let partition = following_broker_2_with_one_record();
        partition
            .check_high_watermark_settled()
            .expect("a follower answers no ListOffsets anyway");
        let assignment = Assignment {
            leader_epoch: 6,
            partition_epoch: 1,
            replicas: vec![1, 2],
            isr: vec![1, 2],
        };
        partition
            .become_leader(1, assignment, 3, leader_config(), 0)
            .unwrap();
        assert_eq!(
            partition.high_watermark(),
            0,
            "record 0 may not be committed"
        );
        let refused = partition.check_high_watermark_settled().unwrap_err();
        assert_eq!(refused.code, ResponseError::OffsetNotAvailable);

        let caught_up = ReplicaFetch {
            replica: 2,
            broker_epoch: 0,
            current_leader_epoch: 6,
            fetch_offset: 1,
            last_fetched_epoch: Some(5),
        };
        partition
            .answer_replica_fetch(&caught_up, 1 << 20, true, 0)
            .unwrap();
        assert_eq!(partition.high_watermark(), 1);
        partition
            .check_high_watermark_settled()
            .expect("the end is known once the follower fetched in epoch 6");
    }

    /// What an fsync made durable before this broker led still reaches the replication
    /// rules when an acknowledgement asks: the high watermark cannot stall behind it.
    #[tokio::test]
    async fn an_ack_finds_the_high_watermark_past_an_earlier_fsync() {
        let partition = replicated_partition();
        let assignment = Assignment {
            leader_epoch: 1,
            partition_epoch: 0,
            replicas: vec![1],
            isr: vec![1],
        };
        partition
            .become_leader(1, assignment, 3, leader_config(), 0)
            .unwrap();
        let mut batch = BatchBuilder::new(0).record(None, Some(b"a"), &[]).build();
        let appended = partition.append(&mut batch, 0).unwrap();
        let end = appended.info.last_offset + 1;
        // Durable, but as far as the leader's rules know, not yet.
        let synced = partition.flush().unwrap();
        partition.flushed_offset.fetch_max(synced, Ordering::AcqRel);
        assert_eq!(partition.high_watermark(), 0);
        let pool = IoPool::new(1, 8).unwrap();
        partition.sync_to(&pool, end).await.unwrap();
        assert_eq!(partition.high_watermark(), end);
    }
}
