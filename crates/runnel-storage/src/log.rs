//! [`PartitionLog`]: one partition's log on disk, as an ordered list of segments with a log
//! start offset, a recovery point and a leader epoch cache.
//!
//! Invariants kept here:
//! - There is always at least one segment; the last is the active one, the only one appended to.
//! - Segments are sorted by base offset and do not overlap; offsets only increase.
//! - Everything below the recovery point was fsynced (log and indexes), so opening after a crash
//!   scans only from the segment holding the recovery point; older segments get a cheap check.
//! - Every segment but the active one is sealed: its time index ends with its max timestamp.
//! - An append is all or nothing: on failure the files are cut back and nothing in memory moves.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use runnel_record::{DecompressionBudget, RecordBatch, RecordError, TransactionMarker};

use crate::checkpoint::{
    self, PartitionCheckpoint, CLEAN_SHUTDOWN, LEADER_EPOCH_CHECKPOINT, PARTITION_CHECKPOINT,
};
use crate::cleaner::{self, Cleaned, CleaningPlan, PlannedSegment};
use crate::config::LogConfig;
use crate::epoch::LeaderEpochCache;
use crate::error::{IoContext, StorageError};
use crate::fs::{create_dir_durably, DataFile, FileSystem, OpenMode, TEMP_SUFFIX};
use crate::handles::FileHandles;
use crate::producers::{snapshot_name, ProducerStates, SequenceCheck, SNAPSHOT_SUFFIX};
use crate::segment::{
    segment_path as segment_path_in, BatchSummary, Segment, INDEX_SUFFIX, LOG_SUFFIX,
    NO_BATCH_TIMESTAMP, OFFSET_MAX, SEGMENT_BYTES_MAX, TIME_INDEX_SUFFIX,
};

/// The most offsets one append may span: comfortably inside what a segment's 32-bit relative
/// offsets can index, whatever the segment's base.
const APPEND_OFFSETS_MAX: i64 = i32::MAX as i64;

/// The file the broker keeps in each partition directory to name the topic it belongs to
/// (KIP-516's `partition.metadata`). The log leaves it alone.
pub const PARTITION_METADATA: &str = "partition.metadata";

/// Who wrote the batches of an append, which decides what is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A producer: sequence numbers and epochs (idempotence), duplicates answered.
    Client,
    /// A coordinator of this broker: epochs only.
    Coordinator,
}

/// What an append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The largest batch max timestamp among the appended batches.
    pub max_timestamp: i64,
    /// The last offset of the first batch that carries `max_timestamp`. Found from batch
    /// headers alone, as Kafka's append info is; [`PartitionLog::max_timestamp`] finds the
    /// exact record.
    pub offset_of_max_timestamp: i64,
    pub records: u64,
    /// The batch was a retry of an idempotent producer's batch already in the log: nothing
    /// was written, and the offsets are the original batch's.
    pub duplicate: bool,
}

/// A range of whole batches in a segment file, to be read without holding the partition lock.
/// The file handle keeps the data readable even if retention deletes the segment meanwhile.
#[derive(Debug, Clone)]
pub struct FetchSlice {
    file: Option<Arc<dyn DataFile>>,
    position: u64,
    len: usize,
}

impl FetchSlice {
    /// A slice of nothing, needing no file.
    pub fn empty() -> Self {
        FetchSlice {
            file: None,
            position: 0,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads the batches. Fails with `UnexpectedEof` if a truncation (replica divergence)
    /// shortened the file after the slice was taken.
    pub fn read(&self) -> std::io::Result<Bytes> {
        let Some(file) = &self.file else {
            return Ok(Bytes::new());
        };
        let mut buffer = vec![0u8; self.len];
        file.read_exact_at(&mut buffer, self.position)?;
        Ok(Bytes::from(buffer))
    }
}

/// The files to fsync for a flush, and the offset below which they then make everything
/// durable. Taken under the partition lock, synced outside it, then reported back with
/// [`PartitionLog::mark_flushed`]: one fsync covers every append made before it was taken
/// (group commit).
///
/// Only log files are synced: one fsync per acknowledgement, not three. The indexes of the
/// segment holding the recovery point, and of every later one, are rebuilt by an unclean
/// recovery anyway; a sealed segment's indexes are synced when it rolls, and the active
/// one's on a clean close, before the marker that lets the next start trust them.
#[derive(Debug, Clone)]
pub struct FlushHandle {
    pub offset: i64,
    files: Vec<Arc<dyn DataFile>>,
}

impl FlushHandle {
    pub fn sync(&self) -> std::io::Result<()> {
        for file in &self.files {
            file.sync_data()?;
        }
        Ok(())
    }
}

/// One partition's log. Not internally synchronized: the broker holds it behind a lock and
/// does slow work (fsync, copying fetched bytes) through [`FlushHandle`] and [`FetchSlice`]
/// after releasing it.
#[derive(Debug)]
pub struct PartitionLog {
    fs: Arc<dyn FileSystem>,
    /// The broker's pool of segment file handles.
    handles: Arc<FileHandles>,
    dir: PathBuf,
    config: LogConfig,
    /// Sorted by base offset, never empty; the last is the active segment.
    segments: Vec<Segment>,
    log_start_offset: i64,
    recovery_point: i64,
    epochs: LeaderEpochCache,
    /// When the oldest append not yet covered by a flush happened.
    oldest_unflushed_append_ms: Option<i64>,
    /// What `partition.checkpoint` holds now.
    checkpointed: PartitionCheckpoint,
    /// Idempotent producers' epochs and recent batches, as of the log end.
    producers: ProducerStates,
    /// Offsets of the producer-state snapshots on disk, ascending.
    snapshots: Vec<i64>,
    /// Every offset below was compacted by the last cleaning pass (`cleanup.policy=compact`).
    cleaned_up_to: i64,
}

impl PartitionLog {
    /// Opens the partition in `dir`, creating it if missing, and recovers it.
    ///
    /// After a clean shutdown every segment gets the cheap check (indexes plausible, batch
    /// headers after the last index entry line up). After a crash, segments wholly below the
    /// recovery point get the same cheap check, and every segment from the one holding the
    /// recovery point onward is scanned batch by batch with CRCs checked; a torn or corrupt tail
    /// is cut off at the last whole batch and later segments are deleted. A segment that fails
    /// the cheap check is scanned too; a bad batch below the recovery point is
    /// [`StorageError::Corrupt`].
    ///
    /// Sealed segments whose data is all fsynced may have their files closed by `handles`
    /// between uses (see [`FileHandles`]).
    pub fn open(
        fs: Arc<dyn FileSystem>,
        handles: Arc<FileHandles>,
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<PartitionLog, StorageError> {
        let fs_ref = &*fs;
        create_dir_durably(fs_ref, dir)
            .context(|| format!("creating directory {}", dir.display()))?;
        let marker = dir.join(CLEAN_SHUTDOWN);
        let marker_found = fs_ref
            .exists(&marker)
            .context(|| format!("looking for {}", marker.display()))?;
        if marker_found {
            // Removed durably before anything else: if this run crashes, the next open must
            // not believe the log was closed cleanly.
            fs_ref
                .remove_file(&marker)
                .context(|| format!("removing {}", marker.display()))?;
            checkpoint::sync_dir(fs_ref, dir)?;
        }
        let Contents { bases, snapshots } = scan_directory(fs_ref, dir)?;
        let cleaned_up_to = checkpoint::read_cleaned_up_to(fs_ref, dir)?;
        let stored = PartitionCheckpoint::read(fs_ref, dir)?;
        let clean = marker_found && stored.is_some();
        let index_interval_bytes = u64::from(config.index_interval_bytes);

        // Segments wholly below the log start offset were being deleted (retention,
        // DeleteRecords, truncation) when the process stopped: their removal was not yet
        // durable, and their contents no longer matter.
        let stored_start = stored.map_or(i64::MIN, |stored| stored.log_start_offset);
        let deleted = bases
            .windows(2)
            .take_while(|pair| pair[1] <= stored_start)
            .count();
        for &base in &bases[..deleted] {
            tracing::info!(dir = %dir.display(), base, "finishing the deletion of a segment below the log start offset");
            Segment::open(&fs, &handles, dir, base)?.delete_files(fs_ref)?;
        }
        let mut segments = Vec::with_capacity(bases.len() - deleted);
        for &base in &bases[deleted..] {
            segments.push(Segment::open(&fs, &handles, dir, base)?);
        }
        if segments.is_empty() {
            let base = stored.map_or(0, |stored| stored.log_start_offset.max(0));
            segments.push(Segment::create(&fs, &handles, dir, base)?);
            checkpoint::sync_dir(fs_ref, dir)?;
        }
        let first_base = segments[0].base_offset;
        let mut recovery_point = stored.map_or(first_base, |stored| stored.recovery_point);
        // Segments before `scan_from` hold only offsets below the recovery point.
        let scan_from = if clean {
            segments.len()
        } else {
            segments
                .iter()
                .rposition(|segment| segment.base_offset <= recovery_point)
                .unwrap_or(0)
        };
        tracing::debug!(
            dir = %dir.display(),
            clean,
            recovery_point,
            segments = segments.len(),
            scanned = segments.len() - scan_from,
            "opening partition log"
        );

        let mut index = 0;
        while index < segments.len() {
            let next_base = segments.get(index + 1).map(|next| next.base_offset);
            let segment = &mut segments[index];
            let truncated = if index < scan_from {
                let checked = segment
                    .check(next_base)
                    .context(|| format!("reading segment {}", segment.path().display()))?;
                match checked {
                    Ok(()) => false,
                    Err(why) => {
                        tracing::warn!(
                            segment = %segment.path().display(),
                            reason = %why,
                            "rebuilding the indexes of a segment below the recovery point"
                        );
                        let truncated =
                            segment.recover(recovery_point, next_base, index_interval_bytes)?;
                        // Recovery trusts this segment's indexes from now on without a scan.
                        segment.sync_indexes()?;
                        truncated
                    }
                }
            } else {
                segment.recover(recovery_point, next_base, index_interval_bytes)?
            };
            // Segments are contiguous: each starts where the previous ended. A gap means the
            // end of this segment was lost after the next one was created; that is an unflushed
            // tail unless it lies below the recovery point.
            let segment_end = segments[index].next_offset;
            let gap = next_base.is_some_and(|next_base| next_base != segment_end);
            if gap && segment_end < recovery_point {
                return Err(StorageError::Corrupt(format!(
                    "segment {} ends at offset {segment_end}, below the recovery point \
                     {recovery_point}, but the next segment starts at {}",
                    segments[index].path().display(),
                    next_base.unwrap_or_default()
                )));
            }
            if truncated || gap {
                for later in segments.drain(index + 1..) {
                    tracing::warn!(
                        segment = %later.path().display(),
                        "deleting a segment that follows a torn tail"
                    );
                    later.delete_files(fs_ref)?;
                }
            }
            index += 1;
        }
        let last = segments.len() - 1;
        for segment in &mut segments[..last] {
            // Only segments rebuilt above need it; their new last entry must reach the file,
            // or every later open would take a stale max timestamp from the index.
            if segment.seal()? {
                segment.sync_indexes()?;
            }
        }

        let log_end_offset = segments[last].next_offset;
        let log_start_offset = stored
            .map_or(first_base, |stored| stored.log_start_offset)
            .clamp(first_base, log_end_offset);
        if recovery_point > log_end_offset {
            tracing::warn!(
                dir = %dir.display(),
                recovery_point,
                log_end_offset,
                "the log ends before its recovery point"
            );
            recovery_point = log_end_offset;
        }
        let mut epochs = LeaderEpochCache::from_entries(checkpoint::read_epochs(fs_ref, dir)?)
            .map_err(|why| {
                StorageError::Corrupt(format!(
                    "{}: {why}",
                    dir.join(LEADER_EPOCH_CHECKPOINT).display()
                ))
            })?;
        let epochs_changed = epochs.truncate_from_end(log_end_offset);

        let active = &mut segments[last];
        if !active.is_empty() {
            // Like Kafka, restart the segment.ms clock from the first batch's timestamp.
            let mut reader = active.reader()?;
            let first = active.peek(&mut reader, 0)?;
            active.rolling_clock_ms = Some(first.map_or(now_ms, |batch| {
                if batch.max_timestamp >= 0 {
                    batch.max_timestamp
                } else {
                    now_ms
                }
            }));
        }

        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            recovery_point,
            epochs,
            oldest_unflushed_append_ms: (log_end_offset > recovery_point).then_some(now_ms),
            checkpointed: stored.unwrap_or(PartitionCheckpoint {
                log_start_offset: -1,
                recovery_point: -1,
            }),
            producers: ProducerStates::default(),
            snapshots,
            cleaned_up_to: cleaned_up_to.unwrap_or(log_start_offset),
            fs,
            handles,
        };
        log.release_flushed_segments();
        if epochs_changed {
            log.write_epochs()?;
        }
        log.rebuild_producers(now_ms)?;
        log.checkpoint()?;
        Ok(log)
    }

    /// Rebuilds the producer state from the newest readable snapshot at or below the log end
    /// and the batches after it (all of the log when there is none). Snapshots above the log
    /// end describe batches that are gone (a lost tail, a truncation) and are deleted.
    fn rebuild_producers(&mut self, now_ms: i64) -> Result<(), StorageError> {
        let log_end_offset = self.log_end_offset();
        while let Some(&offset) = self.snapshots.last() {
            if offset <= log_end_offset {
                break;
            }
            self.snapshots.pop();
            self.remove_snapshot(offset)?;
        }
        self.producers = ProducerStates::default();
        let mut replay_from = self.segments[0].base_offset;
        while let Some(&offset) = self.snapshots.last() {
            let path = self.dir.join(snapshot_name(offset));
            let bytes = crate::fs::read_optional(&*self.fs, &path)
                .context(|| format!("reading {}", path.display()))?
                .unwrap_or_default();
            match ProducerStates::decode_snapshot(&bytes, offset) {
                Ok(states) => {
                    self.producers = states;
                    replay_from = offset.max(replay_from);
                    break;
                }
                Err(why) => {
                    tracing::warn!(snapshot = %path.display(), reason = %why, "ignoring an unreadable producer-state snapshot");
                    self.snapshots.pop();
                    self.remove_snapshot(offset)?;
                }
            }
        }
        for segment in &self.segments {
            if segment.next_offset <= replay_from {
                continue;
            }
            let mut reader = segment.reader()?;
            let Some((mut position, _)) = segment.find_batch(&mut reader, replay_from)? else {
                continue;
            };
            while let Some(batch) = segment.peek(&mut reader, position)? {
                if batch.base_offset >= replay_from && batch.has_producer() {
                    let marker = if batch.is_control() {
                        let bytes = reader
                            .bytes_at(position, batch.len as usize)
                            .context(|| format!("reading {}", segment.path().display()))?;
                        TransactionMarker::parse(bytes).map_err(|error| {
                            StorageError::Corrupt(format!(
                                "segment {} at position {position}: unreadable transaction marker: {error}",
                                segment.path().display()
                            ))
                        })?
                    } else {
                        None
                    };
                    self.producers.record(&batch, marker, now_ms);
                }
                position += batch.len;
            }
        }
        Ok(())
    }

    /// Writes the producer state as of the log end, durably. Called where a start would
    /// otherwise read much log to rebuild it: at each roll and at a clean close.
    fn write_producer_snapshot(&mut self) -> Result<(), StorageError> {
        let offset = self.log_end_offset();
        checkpoint::write_atomically(
            &*self.fs,
            &self.dir,
            &snapshot_name(offset),
            &self.producers.encode_snapshot(offset),
        )?;
        if self.snapshots.last() != Some(&offset) {
            self.snapshots.push(offset);
        }
        Ok(())
    }

    fn remove_snapshot(&self, offset: i64) -> Result<(), StorageError> {
        let path = self.dir.join(snapshot_name(offset));
        self.fs
            .remove_file(&path)
            .context(|| format!("removing {}", path.display()))
    }

    /// Every offset below was compacted by a cleaning pass.
    pub fn cleaned_up_to(&self) -> i64 {
        self.cleaned_up_to
    }

    /// Step 1 of a compaction pass (see [`crate::cleaner`]): the cleanable segments, if the
    /// topic compacts and enough of them is new since the last pass (`min.cleanable.dirty.ratio`)
    /// or some has waited past `max.compaction.lag.ms`.
    pub fn cleaning_plan(&self, now_ms: i64) -> Result<Option<CleaningPlan>, StorageError> {
        if !self.config.compact {
            return Ok(None);
        }
        let uncleanable_from = self
            .producers
            .first_unstable_offset()
            .unwrap_or(i64::MAX)
            .min(self.recovery_point);
        let lag_before = now_ms.saturating_sub(self.config.min_compaction_lag_ms);
        let last = self.segments.len() - 1;
        let mut segments = Vec::new();
        let mut dirty_bytes = 0u64;
        let mut overdue = false;
        for segment in &self.segments[..last] {
            if segment.next_offset > uncleanable_from || segment.largest_timestamp()? > lag_before {
                break;
            }
            if segment.next_offset > self.cleaned_up_to {
                dirty_bytes += segment.size;
                overdue |= self.config.max_compaction_lag_ms < i64::MAX
                    && now_ms.saturating_sub(segment.largest_timestamp()?)
                        > self.config.max_compaction_lag_ms;
            }
            segments.push(PlannedSegment {
                base_offset: segment.base_offset,
                next_offset: segment.next_offset,
                size: segment.size,
                file: segment.log_file()?,
            });
        }
        let total: u64 = segments.iter().map(|segment| segment.size).sum();
        if dirty_bytes == 0
            || (!overdue
                && (dirty_bytes as f64) < self.config.min_cleanable_dirty_ratio * total as f64)
        {
            return Ok(None);
        }
        Ok(Some(CleaningPlan {
            dir: self.dir.clone(),
            segments,
            dirty_from: self.cleaned_up_to.max(self.log_start_offset),
            aborted: self.producers.aborted_between(i64::MIN, i64::MAX),
            now_ms,
            delete_retention_ms: self.config.delete_retention_ms,
        }))
    }

    /// Step 3 of a compaction pass: swaps in each cleaned segment still in the log as it was
    /// cleaned (retention may have deleted one meanwhile), crash-safely (see
    /// [`crate::cleaner`]). Returns how many segments were swapped.
    pub fn install_cleaned(&mut self, cleaned: Cleaned) -> Result<usize, StorageError> {
        let fs = Arc::clone(&self.fs);
        let index_interval_bytes = u64::from(self.config.index_interval_bytes);
        let mut installed = 0;
        for done in &cleaned.segments {
            let cleaned_file = cleaner::cleaned_path(&self.dir, done.base_offset);
            let last = self.segments.len() - 1;
            let Some(index) = self.segments[..last].iter().position(|segment| {
                segment.base_offset == done.base_offset
                    && segment.next_offset == done.next_offset
                    && segment.size == done.old_size
            }) else {
                fs.remove_file(&cleaned_file)
                    .context(|| format!("removing {}", cleaned_file.display()))?;
                continue;
            };
            let swap = cleaner::swap_path(&self.dir, done.base_offset);
            fs.rename(&cleaned_file, &swap)
                .context(|| format!("renaming {} to {}", cleaned_file.display(), swap.display()))?;
            checkpoint::sync_dir(&*fs, &self.dir)?;
            self.segments[index].delete_files(&*fs)?;
            let log = cleaner::log_path(&self.dir, done.base_offset);
            fs.rename(&swap, &log)
                .context(|| format!("renaming {} to {}", swap.display(), log.display()))?;
            checkpoint::sync_dir(&*fs, &self.dir)?;
            let mut segment = Segment::open(&fs, &self.handles, &self.dir, done.base_offset)?;
            let next_base = self.segments.get(index + 1).map(|next| next.base_offset);
            segment.recover(self.recovery_point, next_base, index_interval_bytes)?;
            assert_eq!(
                segment.next_offset, done.next_offset,
                "a cleaned segment ends where the segment it replaces did"
            );
            segment.seal()?;
            segment.sync_indexes()?;
            segment.set_closable();
            self.segments[index] = segment;
            installed += 1;
        }
        if cleaned.cleaned_up_to > self.cleaned_up_to {
            self.cleaned_up_to = cleaned.cleaned_up_to;
            checkpoint::write_cleaned_up_to(&*fs, &self.dir, self.cleaned_up_to)?;
        }
        Ok(installed)
    }

    /// The producers of this partition, for DescribeProducers, the last stable offset and
    /// read_committed fetches.
    pub fn producers(&self) -> &ProducerStates {
        &self.producers
    }

    /// Writes a transaction marker (a control batch) for `producer_id`, as the transaction
    /// coordinator asks through WriteTxnMarkers: it ends the producer's open transaction here,
    /// committed or aborted. Refused if the producer has a newer epoch, or a newer
    /// coordinator wrote before.
    pub fn append_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        marker: TransactionMarker,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        self.producers
            .check_marker(producer_id, producer_epoch, &marker)
            .map_err(StorageError::Producer)?;
        let mut batch = marker.build(producer_id, producer_epoch, now_ms);
        let header = RecordBatch::parse_header(&batch).map_err(StorageError::InvalidBatch)?;
        let offset = self.log_end_offset();
        RecordBatch::set_base_offset(&mut batch, offset);
        RecordBatch::set_partition_leader_epoch(&mut batch, leader_epoch);
        let mut summary = BatchSummary::from_header(&header);
        summary.base_offset = offset;
        summary.last_offset = offset + i64::from(header.last_offset_delta);
        summary.partition_leader_epoch = leader_epoch;
        self.write_batches(&batch, &[summary], now_ms)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Takes effect from the next append, roll or retention pass.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The next offset to assign.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    /// Every offset below this is known to be fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Sum of the segments' log file sizes.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|segment| segment.size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn active(&self) -> &Segment {
        let last = self.segments.last();
        assert!(
            last.is_some(),
            "a partition log always has an active segment"
        );
        &self.segments[self.segments.len() - 1]
    }

    /// Appends batches produced to this leader. `batches` holds whole batches, back to back,
    /// already validated by the caller (records included); their base offsets and partition
    /// leader epochs are rewritten in place. All batches go into one segment with one write.
    ///
    /// The offsets a batch takes come from its `last_offset_delta`, which a client wrote: an
    /// append that would carry the log past what a segment can index is refused with
    /// [`StorageError::InvalidBatch`] before anything is written, never asserted on.
    pub fn append(
        &mut self,
        batches: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        self.append_from(batches, leader_epoch, Origin::Client, now_ms)
    }

    /// [`Self::append`] for batches a coordinator of this broker wrote in a producer's
    /// transaction (offsets committed with TxnOffsetCommit): they carry no sequence numbers,
    /// so only the producer's epoch is checked, as Kafka does for its coordinators' appends.
    pub fn append_from_coordinator(
        &mut self,
        batches: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        self.append_from(batches, leader_epoch, Origin::Coordinator, now_ms)
    }

    fn append_from(
        &mut self,
        batches: &mut [u8],
        leader_epoch: i32,
        origin: Origin,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        let mut summaries: Vec<BatchSummary> = Vec::new();
        let mut position = 0;
        let first_offset = self.log_end_offset();
        let mut next_offset = first_offset;
        while position < batches.len() {
            let batch = &mut batches[position..];
            let header = RecordBatch::parse_header(batch).map_err(StorageError::InvalidBatch)?;
            let len = header.total_len();
            let mut summary = BatchSummary::from_header(&header);
            summary.base_offset = next_offset;
            summary.last_offset = next_offset + i64::from(header.last_offset_delta);
            summary.partition_leader_epoch = leader_epoch;
            if summary.last_offset - first_offset > APPEND_OFFSETS_MAX
                || summary.last_offset > OFFSET_MAX
            {
                return Err(StorageError::InvalidBatch(RecordError::Malformed(format!(
                    "an append may span at most {APPEND_OFFSETS_MAX} offsets and end below {OFFSET_MAX}"
                ))));
            }
            RecordBatch::set_base_offset(&mut batch[..len], next_offset);
            RecordBatch::set_partition_leader_epoch(&mut batch[..len], leader_epoch);
            next_offset = summary.next_offset();
            summaries.push(summary);
            position += len;
        }
        match origin {
            Origin::Client => {
                if let Some(duplicate) = self.check_producers(&summaries, now_ms)? {
                    return Ok(duplicate);
                }
            }
            Origin::Coordinator => {
                for batch in summaries.iter().filter(|batch| batch.has_producer()) {
                    self.producers
                        .check_epoch(batch.producer_id, batch.producer_epoch)
                        .map_err(StorageError::Producer)?;
                }
            }
        }
        self.write_batches(batches, &summaries, now_ms)
    }

    /// The idempotent producer's checks of a leader append: a records set with a producer id
    /// is one batch (as Kafka requires of every produce since v3), in sequence and of a
    /// current epoch. A retry of a batch already written is answered with its offsets.
    fn check_producers(
        &mut self,
        summaries: &[BatchSummary],
        now_ms: i64,
    ) -> Result<Option<AppendInfo>, StorageError> {
        let Some(batch) = summaries.iter().find(|batch| batch.has_producer()) else {
            return Ok(None);
        };
        if summaries.len() > 1 {
            return Err(StorageError::InvalidBatch(RecordError::Invalid(
                "the records of an idempotent or transactional producer must be one batch",
            )));
        }
        let expiration_ms = self.config.producer_id_expiration_ms;
        self.producers.sweep_expired(now_ms, expiration_ms);
        match self.producers.check(batch, now_ms, expiration_ms) {
            Ok(SequenceCheck::Append) => Ok(None),
            Ok(SequenceCheck::Duplicate(original)) => Ok(Some(AppendInfo {
                base_offset: original.base_offset,
                last_offset: original.last_offset,
                max_timestamp: original.max_timestamp,
                offset_of_max_timestamp: original.last_offset,
                records: 0,
                duplicate: true,
            })),
            Err(error) => Err(StorageError::Producer(error)),
        }
    }

    /// Appends batches fetched from the leader, which already carry their offsets and leader
    /// epochs. They are validated (CRC included) here, since they crossed the network.
    pub fn append_replicated(
        &mut self,
        batches: &[u8],
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        let headers = RecordBatch::validate_all(batches).map_err(StorageError::InvalidBatch)?;
        let first_offset = self.log_end_offset();
        let mut expected = first_offset;
        let mut summaries = Vec::with_capacity(headers.len());
        for (index, header) in headers.iter().enumerate() {
            let contiguous = if index == 0 {
                header.base_offset == expected
            } else {
                header.base_offset >= expected
            };
            if !contiguous {
                return Err(StorageError::NonContiguous {
                    expected,
                    got: header.base_offset,
                });
            }
            if header.last_offset() - first_offset > APPEND_OFFSETS_MAX
                || header.last_offset() > OFFSET_MAX
            {
                return Err(StorageError::InvalidBatch(RecordError::Malformed(format!(
                    "an append may span at most {APPEND_OFFSETS_MAX} offsets and end below {OFFSET_MAX}"
                ))));
            }
            expected = header.next_offset();
            summaries.push(BatchSummary::from_header(header));
        }
        self.write_batches(batches, &summaries, now_ms)
    }

    /// The write path shared by leader and replica appends.
    fn write_batches(
        &mut self,
        bytes: &[u8],
        batches: &[BatchSummary],
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        let (Some(first), Some(last)) = (batches.first(), batches.last()) else {
            return Err(StorageError::InvalidBatch(RecordError::Invalid(
                "an append needs at least one batch",
            )));
        };
        let log_end_offset = self.log_end_offset();
        assert!(
            first.base_offset >= log_end_offset,
            "offsets must increase: append at {} to a log ending at {log_end_offset}",
            first.base_offset
        );

        // Epochs are recorded before the data: an epoch entry with no data after it is
        // harmless (a new leader records one before its first append), data whose epoch was
        // not recorded is not.
        self.assign_batch_epochs(batches)?;

        let len = bytes.len() as u64;
        if len > SEGMENT_BYTES_MAX {
            return Err(StorageError::InvalidBatch(RecordError::Malformed(format!(
                "an append of {len} bytes does not fit in a segment"
            ))));
        }
        let active = self.active();
        let relative_end = last.last_offset - active.base_offset;
        let would_overflow = active.size + len > self.config.segment_bytes.min(SEGMENT_BYTES_MAX)
            || relative_end > i64::from(u32::MAX);
        let too_old = active
            .rolling_clock_ms
            .is_some_and(|started| now_ms.saturating_sub(started) >= self.config.segment_ms);
        if !active.is_empty() && (would_overflow || too_old) {
            self.roll()?;
        }

        let index_interval_bytes = u64::from(self.config.index_interval_bytes);
        let last_index = self.segments.len() - 1;
        let active = &mut self.segments[last_index];
        active.append(bytes, batches, index_interval_bytes)?;
        active.rolling_clock_ms.get_or_insert(now_ms);
        self.oldest_unflushed_append_ms.get_or_insert(now_ms);

        let mut info = AppendInfo {
            base_offset: first.base_offset,
            last_offset: last.last_offset,
            max_timestamp: NO_BATCH_TIMESTAMP,
            offset_of_max_timestamp: -1,
            records: 0,
            duplicate: false,
        };
        let mut position = 0usize;
        for batch in batches {
            if batch.max_timestamp > info.max_timestamp {
                info.max_timestamp = batch.max_timestamp;
                info.offset_of_max_timestamp = batch.last_offset;
            }
            info.records += batch.records;
            let len = batch.len as usize;
            let marker = if batch.is_control() {
                // Validated before the write (leader appends build it; replicas check CRCs).
                TransactionMarker::parse(&bytes[position..position + len])
                    .ok()
                    .flatten()
            } else {
                None
            };
            self.producers.record(batch, marker, now_ms);
            position += len;
        }
        assert_eq!(
            self.log_end_offset(),
            last.next_offset(),
            "log end offset after append"
        );
        Ok(info)
    }

    fn assign_batch_epochs(&mut self, batches: &[BatchSummary]) -> Result<(), StorageError> {
        let before = self.epochs.clone();
        let mut changed = false;
        for batch in batches {
            if batch.partition_leader_epoch >= 0 {
                changed |= self
                    .epochs
                    .assign(batch.partition_leader_epoch, batch.base_offset);
            }
        }
        if changed {
            if let Err(error) = self.write_epochs() {
                self.epochs = before;
                return Err(error);
            }
        }
        Ok(())
    }

    /// Whole batches from the one holding `offset`, ending before `max_offset` (the high
    /// watermark), at most `max_bytes` in total unless `min_one_batch` lets a larger first
    /// batch through. Reads from one segment only, so a slice may stop at a segment's end with
    /// more data after it: the caller fetches again from the next offset. Empty when `offset`
    /// is the log end, when the holding batch ends above `max_offset`, or when it exceeds
    /// `max_bytes` without `min_one_batch`.
    pub fn read(
        &self,
        offset: i64,
        max_offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<FetchSlice, StorageError> {
        let log_end_offset = self.log_end_offset();
        if offset < self.log_start_offset || offset > log_end_offset {
            return Err(self.out_of_range(offset));
        }
        if offset == log_end_offset || offset >= max_offset {
            return Ok(FetchSlice::empty());
        }
        let first = self.segment_holding(offset);
        let Some(segment) = self.segments[first..]
            .iter()
            .find(|segment| segment.next_offset > offset)
        else {
            return Ok(FetchSlice::empty());
        };
        let mut reader = segment.reader()?;
        let Some((start, _)) = segment.find_batch(&mut reader, offset)? else {
            return Ok(FetchSlice::empty());
        };
        let max_bytes = max_bytes as u64;
        let mut len = 0u64;
        while let Some(batch) = segment.peek(&mut reader, start + len)? {
            if batch.next_offset() > max_offset {
                break;
            }
            if len + batch.len > max_bytes {
                if len == 0 && min_one_batch {
                    len = batch.len;
                }
                break;
            }
            len += batch.len;
        }
        if len == 0 {
            return Ok(FetchSlice::empty());
        }
        Ok(FetchSlice {
            file: Some(segment.log_file()?),
            position: start,
            len: len as usize,
        })
    }

    /// Index of the last segment whose base offset is at most `offset` (0 if none).
    fn segment_holding(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|segment| segment.base_offset <= offset)
            .saturating_sub(1)
    }

    fn out_of_range(&self, offset: i64) -> StorageError {
        StorageError::OffsetOutOfRange {
            offset,
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset(),
        }
    }

    /// ListOffsets by timestamp: the first record at or after the log start offset whose
    /// timestamp is at least `timestamp_ms`, as `(offset, timestamp)`.
    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        for segment in &self.segments {
            // Every record of a segment before the answer's is older than the target, so the
            // first segment whose max reaches it holds the answer, unless all its matching
            // records were deleted (below the log start offset).
            if segment.state.max_timestamp < timestamp_ms
                || segment.next_offset <= self.log_start_offset
            {
                continue;
            }
            let start_offset = segment
                .time_index
                .lookup(timestamp_ms)?
                .map_or(segment.base_offset, |entry| {
                    segment.base_offset + i64::from(entry.relative_offset)
                })
                .max(self.log_start_offset);
            let mut reader = segment.reader()?;
            let Some((mut position, _)) = segment.find_batch(&mut reader, start_offset)? else {
                continue;
            };
            while let Some(batch) = segment.peek(&mut reader, position)? {
                if batch.max_timestamp >= timestamp_ms && batch.last_offset >= self.log_start_offset
                {
                    let bytes = reader
                        .bytes_at(position, batch.len as usize)
                        .context(|| format!("reading segment {}", segment.path().display()))?;
                    let found = find_record(
                        bytes,
                        segment.path(),
                        position,
                        self.log_start_offset,
                        |timestamp| timestamp >= timestamp_ms,
                    )?;
                    if found.is_some() {
                        return Ok(found);
                    }
                }
                position += batch.len;
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP: the first record carrying the log's largest timestamp, as
    /// `(offset, timestamp)`; `None` if the log holds no batch. Like Kafka, this looks at every
    /// segment still on disk, including records below the log start offset in the first one.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, StorageError> {
        let mut best: Option<&Segment> = None;
        for segment in &self.segments {
            if !segment.is_empty()
                && best.is_none_or(|best| segment.state.max_timestamp > best.state.max_timestamp)
            {
                best = Some(segment);
            }
        }
        let Some(segment) = best else {
            return Ok(None);
        };
        let max_timestamp = segment.state.max_timestamp;
        let mut reader = segment.reader()?;
        let Some((position, batch)) =
            segment.find_batch(&mut reader, segment.state.max_timestamp_batch)?
        else {
            return Err(StorageError::Corrupt(format!(
                "segment {} does not hold the batch of its max timestamp",
                segment.path().display()
            )));
        };
        let bytes = reader
            .bytes_at(position, batch.len as usize)
            .context(|| format!("reading segment {}", segment.path().display()))?;
        let offset = find_record(bytes, segment.path(), position, i64::MIN, |timestamp| {
            timestamp == max_timestamp
        })?
        .map_or(batch.last_offset, |(offset, _)| offset);
        Ok(Some((offset, max_timestamp)))
    }

    /// Deletes whole segments that retention no longer keeps: those whose newest record is
    /// older than `retention.ms`, then the oldest while the log without them is still at least
    /// `retention.bytes`, then those wholly below the log start offset. Segments go oldest
    /// first; if the active segment itself goes, an empty one is rolled in its place. Returns
    /// how many segments were deleted.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize, StorageError> {
        let mut count = 0;
        if self.config.retention_ms >= 0 {
            while let Some(segment) = self.segments.get(count) {
                let age = now_ms.saturating_sub(segment.largest_timestamp()?);
                if segment.is_empty() || age <= self.config.retention_ms {
                    break;
                }
                count += 1;
            }
        }
        if let Ok(retention_bytes) = u64::try_from(self.config.retention_bytes) {
            let mut remaining: u64 = self.segments[count..].iter().map(|s| s.size).sum();
            while let Some(segment) = self.segments.get(count) {
                if segment.is_empty() || remaining - segment.size < retention_bytes {
                    break;
                }
                remaining -= segment.size;
                count += 1;
            }
        }
        while count + 1 < self.segments.len()
            && self.segments[count].next_offset <= self.log_start_offset
        {
            count += 1;
        }
        if count == 0 {
            return Ok(0);
        }
        if count == self.segments.len() {
            self.roll()?;
        }
        self.delete_segments(count)?;
        Ok(count)
    }

    /// When [`Self::enforce_retention`] will next find something to delete by time, if no
    /// record is appended meanwhile (an append changes it, and the caller checks again): the
    /// oldest segment's largest timestamp plus `retention.ms`. `None` when nothing expires
    /// (time retention is off, or the log is empty).
    pub fn retention_due_ms(&self) -> Result<Option<i64>, StorageError> {
        let oldest = &self.segments[0];
        if self.config.retention_ms < 0 || oldest.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            oldest
                .largest_timestamp()?
                .saturating_add(self.config.retention_ms)
                .saturating_add(1),
        ))
    }

    /// Drops the oldest `count` segments (never the active one) and persists the new log
    /// start offset.
    fn delete_segments(&mut self, count: usize) -> Result<(), StorageError> {
        assert!(
            count < self.segments.len(),
            "the active segment is never deleted"
        );
        let deleted: Vec<Segment> = self.segments.drain(..count).collect();
        let first_base = self.segments[0].base_offset;
        self.log_start_offset = self.log_start_offset.max(first_base);
        self.recovery_point = self.recovery_point.max(first_base);
        self.producers.forget_aborted_before(self.log_start_offset);
        // The new log start offset is durable before any data below it goes.
        self.checkpoint()?;
        for segment in &deleted {
            tracing::info!(segment = %segment.path().display(), "deleting segment");
            segment.delete_files(&*self.fs)?;
        }
        // Snapshots of offsets whose segments are gone serve no rebuild; the newest stays,
        // whatever its offset, so a start never has to read the whole log.
        let stale = self.snapshots[..self.snapshots.len().saturating_sub(1)]
            .iter()
            .take_while(|offset| **offset < first_base)
            .count();
        for offset in self.snapshots.drain(..stale).collect::<Vec<_>>() {
            self.remove_snapshot(offset)?;
        }
        Ok(())
    }

    /// DeleteRecords: moves the log start offset up to `offset` (the caller has checked it is
    /// at most the high watermark), deletes segments wholly below it and persists the
    /// checkpoint. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, StorageError> {
        if offset > self.log_end_offset() {
            return Err(self.out_of_range(offset));
        }
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.log_start_offset = offset;
        self.producers.forget_aborted_before(offset);
        let count = self.segments[..self.segments.len() - 1]
            .iter()
            .take_while(|segment| segment.next_offset <= offset)
            .count();
        if count > 0 {
            self.delete_segments(count)?;
        } else {
            self.checkpoint()?;
        }
        Ok(self.log_start_offset)
    }

    /// Starts a new active segment at the log end offset. The old one is sealed and its
    /// indexes fsynced now, because once the recovery point passes it, recovery trusts them
    /// without a scan.
    fn roll(&mut self) -> Result<(), StorageError> {
        let log_end_offset = self.log_end_offset();
        let last = self.segments.len() - 1;
        let old = &mut self.segments[last];
        assert!(!old.is_empty(), "rolling an empty segment");
        old.seal()?;
        old.sync_indexes()?;
        let segment = Segment::create(&self.fs, &self.handles, &self.dir, log_end_offset)?;
        checkpoint::sync_dir(&*self.fs, &self.dir)?;
        tracing::debug!(segment = %segment.path().display(), "rolled a new segment");
        self.segments.push(segment);
        self.write_producer_snapshot()?;
        self.checkpoint()
    }

    /// Truncates the log so it ends at `offset` (a batch boundary; a batch holding `offset`
    /// is removed whole). For replicas whose log diverged from the leader's. Below the log start
    /// offset, the whole log is emptied and restarted at `offset`.
    pub fn truncate_to(&mut self, offset: i64, now_ms: i64) -> Result<(), StorageError> {
        if offset >= self.log_end_offset() {
            // No record goes, but an epoch this replica started as leader without writing
            // anything (it starts at the log end) conflicts with the new leader's history and
            // would keep the follower diverging forever, as Kafka notes.
            if self.epochs.truncate_from_end(self.log_end_offset()) {
                self.write_epochs()?;
            }
            return Ok(());
        }
        if offset < self.log_start_offset || offset <= self.segments[0].base_offset {
            for segment in self.segments.drain(..) {
                segment.delete_files(&*self.fs)?;
            }
            self.segments
                .push(Segment::create(&self.fs, &self.handles, &self.dir, offset)?);
            checkpoint::sync_dir(&*self.fs, &self.dir)?;
            self.log_start_offset = offset;
            self.recovery_point = offset;
        } else {
            let mut deleted = false;
            while self.segments.len() > 1 && self.active().base_offset >= offset {
                if let Some(segment) = self.segments.pop() {
                    segment.delete_files(&*self.fs)?;
                    deleted = true;
                }
            }
            let index_interval_bytes = u64::from(self.config.index_interval_bytes);
            let recovery_point = self.recovery_point;
            let last = self.segments.len() - 1;
            // Active again: it will be written, so its file stays open.
            self.segments[last].pin();
            self.segments[last].truncate_to(offset, recovery_point, index_interval_bytes)?;
            // Durable before anything takes the place of what was cut: after a power cut, a
            // follower must not find the divergent records it cut (or a deleted segment
            // holding them) again, below the high watermark it since learnt.
            self.segments[last]
                .log_file()?
                .sync_data()
                .context(|| format!("fsync of truncated partition {}", self.dir.display()))?;
            if deleted {
                checkpoint::sync_dir(&*self.fs, &self.dir)?;
            }
            self.recovery_point = self.recovery_point.min(self.log_end_offset());
        }
        let log_end_offset = self.log_end_offset();
        assert!(
            log_end_offset <= offset,
            "truncation left the log end above its target"
        );
        if log_end_offset <= self.recovery_point {
            self.oldest_unflushed_append_ms = None;
        }
        if self.epochs.truncate_from_end(log_end_offset) {
            self.write_epochs()?;
        }
        self.rebuild_producers(now_ms)?;
        self.checkpoint()
    }

    /// The files a flush must fsync now (the logs of segments with data at or above the
    /// recovery point; a sealed segment's indexes were synced when it rolled), and the offset
    /// it will cover.
    pub fn unflushed(&self) -> Result<FlushHandle, StorageError> {
        let files = self
            .segments
            .iter()
            .filter(|segment| segment.next_offset > self.recovery_point)
            .map(Segment::log_file)
            .collect::<Result<_, _>>()?;
        Ok(FlushHandle {
            offset: self.log_end_offset(),
            files,
        })
    }

    /// Records that a [`FlushHandle`] was synced: everything below `offset` is durable.
    /// Moves the recovery point in memory only: `partition.checkpoint` follows periodically
    /// ([`Self::checkpoint`]), on roll and on close, so an acknowledgement never waits for it.
    /// A stale checkpoint is safe: recovery then scans a little more. If the log was truncated
    /// since the handle was taken, the recovery point stops at the new log end.
    pub fn mark_flushed(&mut self, offset: i64) {
        let offset = offset.min(self.log_end_offset());
        if offset >= self.log_end_offset() {
            self.oldest_unflushed_append_ms = None;
        }
        // Appends made after the handle was taken keep the older time; that only makes the
        // next flush come a little early.
        self.recovery_point = self.recovery_point.max(offset);
        self.release_flushed_segments();
    }

    /// Lets the pool close the files of sealed segments whose data is all fsynced (newest
    /// first; the recovery point only moves up, so an already released one ends the walk).
    fn release_flushed_segments(&self) {
        let last = self.segments.len() - 1;
        for segment in self.segments[..last].iter().rev() {
            if segment.next_offset > self.recovery_point {
                continue;
            }
            if segment.is_closable() {
                break;
            }
            segment.set_closable();
        }
    }

    /// Fsyncs everything appended so far.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        let handle = self.unflushed()?;
        handle
            .sync()
            .context(|| format!("fsync of partition {}", self.dir.display()))?;
        self.mark_flushed(handle.offset);
        Ok(())
    }

    /// Whether `flush.messages` or `flush.ms` calls for a flush now.
    pub fn flush_due(&self, now_ms: i64) -> bool {
        let unflushed = self.unflushed_records();
        if unflushed == 0 {
            return false;
        }
        self.flush_due_by_count()
            || self
                .oldest_unflushed_append_ms
                .is_some_and(|oldest| now_ms.saturating_sub(oldest) >= self.config.flush_ms)
    }

    /// The count half of the policy: `flush.messages` records are waiting. The acknowledgement
    /// path checks only this; the age half (`flush.ms`) is the background flusher's, so no
    /// producer waits for a timer-driven fsync.
    pub fn flush_due_by_count(&self) -> bool {
        self.unflushed_records() >= self.config.flush_messages.max(1)
    }

    /// Offsets appended but not yet known fsynced.
    pub fn unflushed_records(&self) -> u64 {
        u64::try_from(self.log_end_offset() - self.recovery_point).unwrap_or(0)
    }

    /// Seals the active segment, flushes, and leaves the clean-shutdown marker so the next
    /// open skips the scan.
    pub fn close(mut self) -> Result<(), StorageError> {
        let last = self.segments.len() - 1;
        self.segments[last].seal()?;
        self.segments[last].sync_indexes()?;
        self.flush()?;
        self.write_producer_snapshot()?;
        self.checkpoint()?;
        let marker = self.dir.join(CLEAN_SHUTDOWN);
        self.fs
            .open(&marker, OpenMode::Truncate)
            .and_then(|file| file.sync_data())
            .context(|| format!("writing {}", marker.display()))?;
        checkpoint::sync_dir(&*self.fs, &self.dir)
    }

    /// Records that leader epoch `epoch` starts at `start_offset` (KIP-101). A no-op if it is
    /// already the latest epoch; entries at or after `start_offset` (or with a larger epoch)
    /// are dropped first. Persisted before returning.
    pub fn assign_leader_epoch(
        &mut self,
        epoch: i32,
        start_offset: i64,
    ) -> Result<(), StorageError> {
        let before = self.epochs.clone();
        if self.epochs.assign(epoch, start_offset) {
            if let Err(error) = self.write_epochs() {
                self.epochs = before;
                return Err(error);
            }
        }
        Ok(())
    }

    pub fn latest_leader_epoch(&self) -> Option<i32> {
        self.epochs.latest().map(|entry| entry.epoch)
    }

    /// OffsetForLeaderEpoch: `(largest known epoch <= epoch, the offset where it ended)`, as
    /// [`LeaderEpochCache::end_offset_for`] answers it.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// Writes `partition.checkpoint` (log start offset, recovery point) if either moved since
    /// it was last written: two fsyncs, so the broker calls this periodically
    /// (`log.flush.offset.checkpoint.interval.ms`), not per append.
    pub fn checkpoint(&mut self) -> Result<(), StorageError> {
        let current = PartitionCheckpoint {
            log_start_offset: self.log_start_offset,
            recovery_point: self.recovery_point,
        };
        if current != self.checkpointed {
            current.write(&*self.fs, &self.dir)?;
            self.checkpointed = current;
        }
        Ok(())
    }

    fn write_epochs(&self) -> Result<(), StorageError> {
        checkpoint::write_epochs(&*self.fs, &self.dir, self.epochs.entries())
    }

    #[cfg(test)]
    pub(crate) fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    #[cfg(test)]
    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

/// The first record at or after offset `from` of one stored batch whose timestamp satisfies
/// `wanted`, as `(offset, timestamp)`. Decoding stops at the match and stays within a stored
/// batch's decompression budget.
fn find_record(
    batch: &[u8],
    path: &Path,
    position: u64,
    from: i64,
    wanted: impl FnMut(i64) -> bool,
) -> Result<Option<(i64, i64)>, StorageError> {
    RecordBatch::find_record(
        batch,
        from,
        &DecompressionBudget::for_stored_batch(),
        wanted,
    )
    .map_err(|error| {
        StorageError::Corrupt(format!(
            "segment {} at position {position}: cannot decode records: {error}",
            path.display()
        ))
    })
}

/// What a partition directory holds, each list sorted.
struct Contents {
    /// Segment base offsets.
    bases: Vec<i64>,
    /// Producer-state snapshot offsets.
    snapshots: Vec<i64>,
}

/// Lists the segments and snapshots in `dir` and removes leftovers of interrupted
/// operations: temporary files and index files without a log.
fn scan_directory(fs: &dyn FileSystem, dir: &Path) -> Result<Contents, StorageError> {
    let mut bases = Vec::new();
    let mut snapshots = Vec::new();
    let mut swaps = Vec::new();
    let mut index_files = Vec::new();
    let entries = fs
        .list(dir)
        .context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let Some(name) = entry.name.to_str() else {
            continue;
        };
        let path = dir.join(name);
        if entry.is_dir {
            tracing::warn!(file = %path.display(), "ignoring a directory inside a partition directory");
        } else if name.ends_with(TEMP_SUFFIX) || name.ends_with(cleaner::CLEANED_SUFFIX) {
            // An unfinished write, or an unfinished compaction pass: the old data is intact.
            fs.remove_file(&path)
                .context(|| format!("removing {}", path.display()))?;
        } else if let Some(base) = parse_base(name, cleaner::SWAP_SUFFIX) {
            swaps.push(base);
        } else if let Some(base) = parse_base(name, LOG_SUFFIX) {
            if base > OFFSET_MAX {
                return Err(StorageError::Corrupt(format!(
                    "segment {} names a base offset beyond the largest a log may reach ({OFFSET_MAX})",
                    path.display()
                )));
            }
            bases.push(base);
        } else if let Some(base) =
            parse_base(name, INDEX_SUFFIX).or_else(|| parse_base(name, TIME_INDEX_SUFFIX))
        {
            index_files.push((base, path));
        } else if let Some(offset) = parse_base(name, SNAPSHOT_SUFFIX) {
            snapshots.push(offset);
        } else if name != PARTITION_CHECKPOINT
            && name != checkpoint::CLEANER_CHECKPOINT
            && name != LEADER_EPOCH_CHECKPOINT
            && name != CLEAN_SHUTDOWN
            && name != PARTITION_METADATA
        {
            tracing::warn!(file = %path.display(), "ignoring unknown file in partition directory");
        }
    }
    // A finished compaction pass whose swap a crash interrupted: what is left of the old
    // segment goes, the new one takes its name.
    for base in swaps {
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let old = segment_path_in(dir, base, suffix);
            if fs
                .exists(&old)
                .context(|| format!("looking for {}", old.display()))?
            {
                fs.remove_file(&old)
                    .context(|| format!("removing {}", old.display()))?;
            }
        }
        let swap = cleaner::swap_path(dir, base);
        let log = cleaner::log_path(dir, base);
        fs.rename(&swap, &log)
            .context(|| format!("renaming {} to {}", swap.display(), log.display()))?;
        checkpoint::sync_dir(fs, dir)?;
        index_files.retain(|(index_base, _)| *index_base != base);
        if !bases.contains(&base) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    snapshots.sort_unstable();
    for (base, path) in index_files {
        if bases.binary_search(&base).is_err() {
            fs.remove_file(&path)
                .context(|| format!("removing orphan {}", path.display()))?;
        }
    }
    Ok(Contents { bases, snapshots })
}

fn parse_base(name: &str, suffix: &str) -> Option<i64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}
