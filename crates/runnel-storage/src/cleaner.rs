//! Log compaction (`cleanup.policy=compact`): keep the latest record of every key.
//!
//! A pass has three steps, so that the partition lock is held only for the first and last:
//! 1. [`crate::PartitionLog::cleaning_plan`] (under the lock) picks the cleanable segments:
//!    sealed, fsynced (below the recovery point), below the oldest open transaction, and older
//!    than `min.compaction.lag.ms`; and says whether enough of them is new since the last pass
//!    (`min.cleanable.dirty.ratio`, or `max.compaction.lag.ms` overdue).
//! 2. [`clean`] (no lock: sealed segments do not change) builds a map of key → latest offset
//!    over the dirty part, within `log.cleaner.dedupe.buffer.size` (when it fills, the pass
//!    stops at the segment it filled in and the next pass goes on), and writes each segment it
//!    covers anew as `<base>.log.cleaned`, fsynced: a record stays if no later record has its
//!    key, it has a key, it is not in an aborted transaction, and it is not a tombstone older
//!    than `delete.retention.ms`. Records keep their offsets and batches their spans (a batch
//!    left empty keeps its header when it ends the segment, so segments still end where they
//!    did); transaction markers stay. Reading and writing stay under
//!    `log.cleaner.io.max.bytes.per.second`.
//! 3. [`crate::PartitionLog::install_cleaned`] (under the lock) swaps each cleaned segment in:
//!    rename `.cleaned` → `.swap` (durable), delete the old segment's files, rename `.swap` →
//!    `.log` (durable), rebuild its indexes.
//!
//! Crash safety: a `.cleaned` file at open is an unfinished pass and is deleted (the old
//! segment is intact); a `.swap` file is a finished one, and open completes the swap
//! (deleting whatever is left of the old segment first). Either way the log is the old
//! segments or the new ones, never a mix, and no record that compaction keeps is lost
//! (`tests::a_power_cut_during_cleaning_leaves_the_old_or_the_new_log`).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runnel_record::{retain_records, Retained};

use crate::error::{IoContext, StorageError};
use crate::fs::{DataFile, FileSystem, OpenMode};
use crate::producers::AbortedTransaction;
use crate::segment::{segment_path, BatchSummary, LogReader, Peek, LOG_SUFFIX};

pub(crate) const CLEANED_SUFFIX: &str = ".log.cleaned";
pub(crate) const SWAP_SUFFIX: &str = ".log.swap";

/// Bytes the offset map spends per key: a 128-bit key hash, an offset, and the hash table's
/// own overhead, rounded up.
const MAP_BYTES_PER_KEY: usize = 48;

/// Kafka's `log.cleaner.dedupe.buffer.size` default: 128 MiB.
pub const DEFAULT_DEDUPE_BUFFER_BYTES: usize = 128 * 1024 * 1024;

/// Cleaner settings that are the broker's, not the topic's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanerLimits {
    /// `log.cleaner.dedupe.buffer.size`: memory for one pass's key → offset map.
    pub dedupe_buffer_bytes: usize,
    /// `log.cleaner.io.max.bytes.per.second`; `None`: unlimited.
    pub io_bytes_per_second: Option<u64>,
}

impl Default for CleanerLimits {
    fn default() -> Self {
        CleanerLimits {
            dedupe_buffer_bytes: DEFAULT_DEDUPE_BUFFER_BYTES,
            io_bytes_per_second: None,
        }
    }
}

/// A sealed segment the pass may rewrite.
#[derive(Debug, Clone)]
pub(crate) struct PlannedSegment {
    pub(crate) base_offset: i64,
    pub(crate) next_offset: i64,
    pub(crate) size: u64,
    pub(crate) file: Arc<dyn DataFile>,
}

/// What a pass works on, taken under the partition lock.
#[derive(Debug, Clone)]
pub struct CleaningPlan {
    pub(crate) dir: PathBuf,
    /// Oldest first; all sealed and fsynced.
    pub(crate) segments: Vec<PlannedSegment>,
    /// Offsets from here on are new since the last pass.
    pub(crate) dirty_from: i64,
    pub(crate) aborted: Vec<AbortedTransaction>,
    pub(crate) now_ms: i64,
    pub(crate) delete_retention_ms: i64,
}

impl CleaningPlan {
    /// Bytes of the segments the pass may rewrite.
    pub fn cleanable_bytes(&self) -> u64 {
        self.segments.iter().map(|segment| segment.size).sum()
    }
}

/// A segment written anew, waiting to be swapped in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CleanedSegment {
    pub(crate) base_offset: i64,
    pub(crate) next_offset: i64,
    /// The old segment's size: the swap checks the segment is still the one cleaned.
    pub(crate) old_size: u64,
    pub(crate) new_size: u64,
}

/// What a pass produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleaned {
    pub(crate) segments: Vec<CleanedSegment>,
    /// Every offset below is compacted once the segments are installed.
    pub(crate) cleaned_up_to: i64,
}

impl Cleaned {
    /// Bytes the pass saves, once installed.
    pub fn bytes_saved(&self) -> u64 {
        self.segments
            .iter()
            .map(|segment| segment.old_size.saturating_sub(segment.new_size))
            .sum()
    }
}

/// Step 2 of a pass (see the module documentation). Blocks, reading and writing the
/// partition's directory; holds no lock.
pub fn clean(
    fs: &dyn FileSystem,
    plan: &CleaningPlan,
    limits: &CleanerLimits,
) -> Result<Cleaned, StorageError> {
    let mut throttle = Throttle::new(limits.io_bytes_per_second);
    let max_keys = (limits.dedupe_buffer_bytes / MAP_BYTES_PER_KEY).max(1);
    let mut map: HashMap<u128, i64> = HashMap::new();
    // The first offset the map does not cover: segments wholly below it are cleaned.
    let mut map_end = plan.dirty_from;
    'segments: for segment in plan
        .segments
        .iter()
        .filter(|segment| segment.next_offset > plan.dirty_from)
    {
        let mut keys = Vec::new();
        for_each_batch(segment, &mut throttle, |batch, summary| {
            if summary.is_control() || is_aborted(&plan.aborted, summary) {
                return Ok(());
            }
            for record in runnel_record::decode_records(batch).map_err(corrupt(segment))? {
                if record.offset < plan.dirty_from {
                    continue;
                }
                if let Some(key) = &record.key {
                    keys.push((key_hash(key), record.offset));
                }
            }
            Ok(())
        })?;
        let new_keys = keys
            .iter()
            .filter(|(hash, _)| !map.contains_key(hash))
            .count();
        if map.len() + new_keys > max_keys {
            tracing::info!(
                segment = segment.base_offset,
                keys = map.len(),
                "the cleaner's offset map is full; the rest waits for the next pass"
            );
            break 'segments;
        }
        for (hash, offset) in keys {
            map.insert(hash, offset);
        }
        map_end = segment.next_offset;
    }
    if map_end == plan.dirty_from {
        return Ok(Cleaned {
            segments: Vec::new(),
            cleaned_up_to: plan.dirty_from,
        });
    }

    let tombstones_before = plan.now_ms.saturating_sub(plan.delete_retention_ms);
    let mut cleaned = Vec::new();
    for segment in plan
        .segments
        .iter()
        .filter(|segment| segment.next_offset <= map_end)
    {
        // Written as it goes, so a pass holds a megabyte of a segment, not all of it; the
        // file is left behind (and removed at the next open) if nothing changes.
        let path = cleaned_path(&plan.dir, segment.base_offset);
        let mut output = CleanedWriter::create(fs, &path)?;
        let mut changed = false;
        for_each_batch(segment, &mut throttle, |batch, summary| {
            let last = summary.next_offset() == segment.next_offset;
            if summary.is_control() {
                return output.write(batch);
            }
            let aborted = is_aborted(&plan.aborted, summary);
            let retained = retain_records(batch, |record| {
                let Some(key) = &record.key else {
                    return false;
                };
                let newer = map
                    .get(&key_hash(key))
                    .is_some_and(|latest| *latest > record.offset);
                let expired_tombstone =
                    record.value.is_none() && record.timestamp < tombstones_before;
                !aborted && !newer && !expired_tombstone
            })
            .map_err(corrupt(segment))?;
            match retained {
                Retained::All => output.write(batch),
                Retained::Rebuilt {
                    batch: rebuilt,
                    records,
                } => {
                    changed = true;
                    // An emptied batch goes, unless it ends the segment, whose end stays.
                    if records > 0 || last {
                        output.write(&rebuilt)
                    } else {
                        Ok(())
                    }
                }
            }
        })?;
        if !changed {
            drop(output);
            fs.remove_file(&path)
                .context(|| format!("removing {}", path.display()))?;
            continue;
        }
        let new_size = output.finish(&mut throttle)?;
        cleaned.push(CleanedSegment {
            base_offset: segment.base_offset,
            next_offset: segment.next_offset,
            old_size: segment.size,
            new_size,
        });
    }
    Ok(Cleaned {
        segments: cleaned,
        cleaned_up_to: map_end,
    })
}

/// A cleaned segment's file, written a megabyte at a time.
struct CleanedWriter {
    file: Arc<dyn DataFile>,
    path: PathBuf,
    pending: Vec<u8>,
    written: u64,
}

impl CleanedWriter {
    const CHUNK: usize = 1 << 20;

    fn create(fs: &dyn FileSystem, path: &Path) -> Result<Self, StorageError> {
        let file = fs
            .open(path, OpenMode::Truncate)
            .context(|| format!("creating {}", path.display()))?;
        Ok(CleanedWriter {
            file,
            path: path.to_path_buf(),
            pending: Vec::with_capacity(Self::CHUNK),
            written: 0,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= Self::CHUNK {
            self.flush_pending()?;
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> Result<(), StorageError> {
        self.file
            .write_all_at(&self.pending, self.written)
            .context(|| format!("writing {}", self.path.display()))?;
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Writes the rest and fsyncs; returns the file's size.
    fn finish(mut self, throttle: &mut Throttle) -> Result<u64, StorageError> {
        self.flush_pending()?;
        throttle.spent(self.written);
        self.file
            .sync_data()
            .context(|| format!("fsync of {}", self.path.display()))?;
        Ok(self.written)
    }
}

/// Calls `visit` with every whole batch of the segment, in order.
fn for_each_batch(
    segment: &PlannedSegment,
    throttle: &mut Throttle,
    mut visit: impl FnMut(&[u8], &BatchSummary) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let mut reader = LogReader::new(Arc::clone(&segment.file), segment.size);
    let mut position = 0u64;
    loop {
        let peeked = reader
            .peek(position)
            .context(|| format!("reading segment {}", segment.base_offset))?;
        let summary = match peeked {
            Peek::End => return Ok(()),
            Peek::Batch(summary) => summary,
            Peek::Bad(why) => {
                return Err(StorageError::Corrupt(format!(
                    "segment {} at position {position}: {why}",
                    segment.base_offset
                )))
            }
        };
        let batch = reader
            .bytes_at(position, summary.len as usize)
            .context(|| format!("reading segment {}", segment.base_offset))?;
        throttle.spent(summary.len);
        visit(batch, &summary)?;
        position += summary.len;
    }
}

fn corrupt(segment: &PlannedSegment) -> impl Fn(runnel_record::RecordError) -> StorageError + '_ {
    move |error| {
        StorageError::Corrupt(format!(
            "segment {}: cannot decode records: {error}",
            segment.base_offset
        ))
    }
}

/// Whether the batch belongs to an aborted transaction.
fn is_aborted(aborted: &[AbortedTransaction], batch: &BatchSummary) -> bool {
    batch.is_transactional()
        && aborted.iter().any(|transaction| {
            transaction.producer_id == batch.producer_id
                && transaction.first_offset <= batch.base_offset
                && batch.base_offset < transaction.last_offset
        })
}

/// A 128-bit hash of a key: two SipHash passes with distinct prefixes. Two keys that collide
/// would let one's record be dropped for the other's: at 128 bits that takes about 2^64 keys.
fn key_hash(key: &[u8]) -> u128 {
    let half = |prefix: u8| {
        let mut hasher = DefaultHasher::new();
        hasher.write_u8(prefix);
        hasher.write(key);
        hasher.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

pub(crate) fn cleaned_path(dir: &Path, base_offset: i64) -> PathBuf {
    segment_path(dir, base_offset, CLEANED_SUFFIX)
}

pub(crate) fn swap_path(dir: &Path, base_offset: i64) -> PathBuf {
    segment_path(dir, base_offset, SWAP_SUFFIX)
}

pub(crate) fn log_path(dir: &Path, base_offset: i64) -> PathBuf {
    segment_path(dir, base_offset, LOG_SUFFIX)
}

/// Keeps a pass's reading and writing under a rate by sleeping.
struct Throttle {
    bytes_per_second: Option<u64>,
    started: Instant,
    spent: u64,
}

impl Throttle {
    fn new(bytes_per_second: Option<u64>) -> Self {
        Throttle {
            bytes_per_second,
            started: Instant::now(),
            spent: 0,
        }
    }

    fn spent(&mut self, bytes: u64) {
        let Some(rate) = self.bytes_per_second.filter(|rate| *rate > 0) else {
            return;
        };
        self.spent += bytes;
        let due = Duration::from_secs_f64(self.spent as f64 / rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }
}

#[cfg(test)]
mod tests;
