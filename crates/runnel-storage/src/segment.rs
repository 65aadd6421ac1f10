//! One segment: a `.log` file of whole batches starting at `base_offset`, with its `.index` and
//! `.timeindex`. This module owns the segment's byte-level work: appending with rollback,
//! finding batches by offset and by time, the cheap sanity check of trusted (fsynced) segments
//! and the full validating scan of untrusted ones. Which segments exist, and which of them to
//! trust, is the partition log's business.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use runnel_record::{
    last_sequence, RecordBatch, RecordBatchHeader, BATCH_HEADER_LEN, CONTROL_BIT, LOG_OVERHEAD,
    MAGIC_V2, TRANSACTIONAL_BIT,
};

use crate::error::{IoContext, StorageError};
use crate::fs::{DataFile, FileSystem, OpenMode};
use crate::handles::{FileHandles, SegmentFile};
use crate::index::{truncate_after_failure, IndexFile, OffsetEntry, TimeEntry};

pub(crate) const LOG_SUFFIX: &str = ".log";
pub(crate) const INDEX_SUFFIX: &str = ".index";
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";

/// A segment's max timestamp before it holds any batch. Below every real timestamp, including
/// Kafka's "no timestamp" (-1), so the first batch always raises it.
pub(crate) const NO_BATCH_TIMESTAMP: i64 = i64::MIN;

/// How much to read at once while walking batch headers: enough to cover many small batches in
/// one syscall, small enough that walking big batches does not read their payloads.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// The largest a segment's log may grow: index entries hold positions as u32.
pub(crate) const SEGMENT_BYTES_MAX: u64 = u32::MAX as u64;

/// The largest offset a log may reach. Far beyond any real log (a million records a second
/// for 290,000 years), it leaves room for a segment's 32-bit relative offsets and any append
/// above every base, so offset arithmetic on what a segment file's name or contents claim
/// cannot overflow.
pub(crate) const OFFSET_MAX: i64 = i64::MAX - (1 << 40);

const _: () = assert!(BATCH_HEADER_LEN >= LOG_OVERHEAD + 4 && READ_CHUNK_BYTES >= BATCH_HEADER_LEN);

pub(crate) fn segment_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}{suffix}"))
}

/// What the log needs to know about a batch, from its fixed header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchSummary {
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    /// The whole batch's length in bytes.
    pub(crate) len: u64,
    pub(crate) max_timestamp: i64,
    pub(crate) records: u64,
    pub(crate) partition_leader_epoch: i32,
    /// -1 for a batch of no idempotent or transactional producer.
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) base_sequence: i32,
    pub(crate) last_offset_delta: i32,
    pub(crate) attributes: i16,
}

impl BatchSummary {
    pub(crate) fn next_offset(&self) -> i64 {
        self.last_offset.saturating_add(1)
    }

    pub(crate) fn from_header(header: &RecordBatchHeader) -> Self {
        BatchSummary {
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            len: header.total_len() as u64,
            max_timestamp: header.max_timestamp,
            records: u64::try_from(header.records_count).unwrap_or(0),
            partition_leader_epoch: header.partition_leader_epoch,
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
            last_offset_delta: header.last_offset_delta,
            attributes: header.attributes,
        }
    }

    pub(crate) fn has_producer(&self) -> bool {
        self.producer_id >= 0
    }

    pub(crate) fn last_sequence(&self) -> i32 {
        last_sequence(self.base_sequence, self.last_offset_delta)
    }

    pub(crate) fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub(crate) fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Parses the fields the log needs from the 61-byte fixed header. The CRC is not checked:
    /// this is for walking trusted data. `RecordBatch::parse_header` would need the whole batch
    /// in memory, and walking a segment must not read every payload.
    fn peek(header: &[u8]) -> Result<Self, String> {
        if header.len() < BATCH_HEADER_LEN {
            return Err(format!(
                "batch header truncated: {} of {BATCH_HEADER_LEN} bytes",
                header.len()
            ));
        }
        let i32_at = |at: usize| {
            i32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let i16_at = |at: usize| i16::from_be_bytes([header[at], header[at + 1]]);
        let i64_at = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&header[at..at + 8]);
            i64::from_be_bytes(bytes)
        };
        // Offsets from the layout documented in runnel_record::batch.
        let base_offset = i64_at(0);
        let batch_length = i32_at(8);
        let partition_leader_epoch = i32_at(12);
        let magic = header[16] as i8;
        let attributes = i16_at(21);
        let last_offset_delta = i32_at(23);
        let max_timestamp = i64_at(35);
        let producer_id = i64_at(43);
        let producer_epoch = i16_at(51);
        let base_sequence = i32_at(53);
        let records_count = i32_at(57);
        if magic != MAGIC_V2 {
            return Err(format!("batch magic {magic} is not 2"));
        }
        if batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(format!("batch length {batch_length} is too small"));
        }
        if base_offset < 0 || last_offset_delta < 0 || records_count < 0 {
            return Err("negative base offset, offset delta or record count".to_string());
        }
        Ok(BatchSummary {
            base_offset,
            last_offset: base_offset
                .checked_add(i64::from(last_offset_delta))
                .ok_or("last offset overflows")?,
            len: (LOG_OVERHEAD + batch_length as usize) as u64,
            max_timestamp,
            records: records_count as u64,
            partition_leader_epoch,
            producer_id,
            producer_epoch,
            base_sequence,
            last_offset_delta,
            attributes,
        })
    }
}

/// What lies at a position of a log file.
#[derive(Debug)]
pub(crate) enum Peek {
    /// The position is the end of the file.
    End,
    Batch(BatchSummary),
    /// Not a whole, well-formed batch: why.
    Bad(String),
}

/// Reads a log file through a buffer, so that walking many small batches takes few syscalls.
/// Never reads past `file_len`, the log's committed length.
#[derive(Debug)]
pub(crate) struct LogReader {
    file: Arc<dyn DataFile>,
    file_len: u64,
    buffer: Vec<u8>,
    buffer_start: u64,
}

impl LogReader {
    pub(crate) fn new(file: Arc<dyn DataFile>, file_len: u64) -> Self {
        LogReader {
            file,
            file_len,
            buffer: Vec::new(),
            buffer_start: 0,
        }
    }

    /// `len` bytes from `position`, fewer if the file ends first.
    pub(crate) fn bytes_at(&mut self, position: u64, len: usize) -> io::Result<&[u8]> {
        let end = position.saturating_add(len as u64).min(self.file_len);
        let wanted = end.saturating_sub(position) as usize;
        let buffer_end = self.buffer_start + self.buffer.len() as u64;
        if position < self.buffer_start || end > buffer_end {
            let available = self.file_len.saturating_sub(position);
            let fill = (wanted.max(READ_CHUNK_BYTES) as u64).min(available) as usize;
            self.buffer.resize(fill, 0);
            self.file.read_exact_at(&mut self.buffer, position)?;
            self.buffer_start = position;
        }
        let from = (position - self.buffer_start) as usize;
        Ok(&self.buffer[from..from + wanted])
    }

    /// The batch header at `position`, checked only for shape and for fitting in the file.
    pub(crate) fn peek(&mut self, position: u64) -> io::Result<Peek> {
        if position >= self.file_len {
            return Ok(Peek::End);
        }
        let file_len = self.file_len;
        let header = self.bytes_at(position, BATCH_HEADER_LEN)?;
        Ok(match BatchSummary::peek(header) {
            Ok(batch) if position + batch.len > file_len => Peek::Bad(format!(
                "batch of {} bytes at position {position} runs past the end of the file ({file_len})",
                batch.len
            )),
            Ok(batch) => Peek::Batch(batch),
            Err(why) => Peek::Bad(why),
        })
    }

    /// The whole batch at `position`, with its CRC checked.
    pub(crate) fn validate(&mut self, position: u64) -> io::Result<Peek> {
        let batch = match self.peek(position)? {
            Peek::Batch(batch) => batch,
            other => return Ok(other),
        };
        let bytes = self.bytes_at(position, batch.len as usize)?;
        Ok(match RecordBatch::validate(bytes) {
            Ok(header) => Peek::Batch(BatchSummary::from_header(&header)),
            Err(error) => Peek::Bad(error.to_string()),
        })
    }
}

/// The running state that decides when index entries are due. Identical for live appends and
/// for rebuilding an index from the log, so a rebuilt index equals the one appends produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexState {
    bytes_since_offset_entry: u64,
    bytes_since_time_entry: u64,
    /// The largest batch max timestamp so far, or NO_BATCH_TIMESTAMP.
    pub(crate) max_timestamp: i64,
    /// Base offset of the first batch that reached `max_timestamp`.
    pub(crate) max_timestamp_batch: i64,
}

impl IndexState {
    fn new() -> Self {
        IndexState {
            bytes_since_offset_entry: 0,
            bytes_since_time_entry: 0,
            max_timestamp: NO_BATCH_TIMESTAMP,
            max_timestamp_batch: -1,
        }
    }

    /// Accounts for the batch at `position` and adds the entries it is due.
    fn observe(
        &mut self,
        segment_base: i64,
        position: u64,
        batch: &BatchSummary,
        index_interval_bytes: u64,
        offset_entries: &mut Vec<OffsetEntry>,
        time_entries: &mut Vec<TimeEntry>,
    ) {
        let relative_offset = relative(segment_base, batch.base_offset);
        let position = u32::try_from(position);
        assert!(
            position.is_ok(),
            "segment position beyond u32: roll rule broken"
        );
        let position = position.unwrap_or(u32::MAX);
        if self.bytes_since_offset_entry >= index_interval_bytes {
            offset_entries.push(OffsetEntry {
                relative_offset,
                position,
            });
            self.bytes_since_offset_entry = 0;
        }
        if batch.max_timestamp > self.max_timestamp {
            // Every earlier batch has a smaller max timestamp, which is what makes this batch a
            // valid place to start a search by time.
            if self.bytes_since_time_entry >= index_interval_bytes {
                time_entries.push(TimeEntry {
                    timestamp: batch.max_timestamp,
                    relative_offset,
                });
                self.bytes_since_time_entry = 0;
            }
            self.max_timestamp = batch.max_timestamp;
            self.max_timestamp_batch = batch.base_offset;
        }
        self.bytes_since_offset_entry += batch.len;
        self.bytes_since_time_entry += batch.len;
    }
}

/// `offset - segment_base` as an index's u32. The roll rule keeps every offset of a segment
/// within u32 of its base.
fn relative(segment_base: i64, offset: i64) -> u32 {
    let relative = u32::try_from(offset - segment_base);
    assert!(
        relative.is_ok(),
        "offset {offset} is not within u32 of segment base {segment_base}"
    );
    relative.unwrap_or(u32::MAX)
}

/// Which write of an append fails, for the rollback tests.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Half of the log write reaches the file, then it fails.
    TornLog,
    OffsetIndex,
    /// The time index write reaches the file, then reports failure.
    TimeIndex,
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    log_path: PathBuf,
    /// Open while active and until fsynced; then the pool may close it between uses.
    log: Arc<SegmentFile>,
    /// Committed bytes of the log file: everything below is whole batches.
    pub(crate) size: u64,
    /// The offset after the last batch; `base_offset` when empty.
    pub(crate) next_offset: i64,
    pub(crate) offset_index: IndexFile<OffsetEntry>,
    pub(crate) time_index: IndexFile<TimeEntry>,
    pub(crate) state: IndexState,
    /// When the segment's clock for `segment.ms` started: its first append.
    pub(crate) rolling_clock_ms: Option<i64>,
    /// Either index file was missing when the segment was loaded.
    index_missing: bool,
    #[cfg(test)]
    pub(crate) fault: Option<Fault>,
}

impl Segment {
    /// Creates an empty segment, replacing any files with its names. The names are durable
    /// once the caller syncs `dir`.
    pub(crate) fn create(
        fs: &Arc<dyn FileSystem>,
        handles: &Arc<FileHandles>,
        dir: &Path,
        base_offset: i64,
    ) -> Result<Segment, StorageError> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let log = SegmentFile::open(fs, handles, &log_path, OpenMode::Truncate)
            .context(|| format!("creating segment {}", log_path.display()))?;
        Ok(Segment {
            base_offset,
            log_path,
            log,
            size: 0,
            next_offset: base_offset,
            offset_index: IndexFile::create(fs, &segment_path(dir, base_offset, INDEX_SUFFIX))?,
            time_index: IndexFile::create(fs, &segment_path(dir, base_offset, TIME_INDEX_SUFFIX))?,
            state: IndexState::new(),
            rolling_clock_ms: None,
            index_missing: false,
            #[cfg(test)]
            fault: None,
        })
    }

    /// Opens an existing segment's files. Its offsets and timestamps are unknown until
    /// [`Self::check`] or [`Self::recover`] has run.
    pub(crate) fn open(
        fs: &Arc<dyn FileSystem>,
        handles: &Arc<FileHandles>,
        dir: &Path,
        base_offset: i64,
    ) -> Result<Segment, StorageError> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let log = SegmentFile::open(fs, handles, &log_path, OpenMode::Existing)
            .context(|| format!("opening segment {}", log_path.display()))?;
        let size = log
            .get()
            .and_then(|file| file.size())
            .context(|| format!("reading the size of {}", log_path.display()))?;
        let (offset_index, offset_existed) =
            IndexFile::load(fs, &segment_path(dir, base_offset, INDEX_SUFFIX))?;
        let (time_index, time_existed) =
            IndexFile::load(fs, &segment_path(dir, base_offset, TIME_INDEX_SUFFIX))?;
        Ok(Segment {
            base_offset,
            log_path,
            log,
            size,
            next_offset: base_offset,
            offset_index,
            time_index,
            state: IndexState::new(),
            rolling_clock_ms: None,
            index_missing: !offset_existed || !time_existed,
            #[cfg(test)]
            fault: None,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.log_path
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The cheap check for a segment whose data was fsynced: the indexes are plausible, the
    /// last offset-index entry points at a batch with the right base offset, and the batch
    /// headers from there to the end of the file line up. Reads a few headers, never the whole
    /// segment. On success the segment's in-memory state is set; `Err(reason)` means the
    /// indexes cannot be trusted and the segment must be recovered by a scan.
    pub(crate) fn check(
        &mut self,
        next_segment_base: Option<i64>,
    ) -> io::Result<Result<(), String>> {
        if self.index_missing {
            return Ok(Err("an index file is missing".to_string()));
        }
        if self.offset_index.torn || self.time_index.torn {
            return Ok(Err("an index file ends in a partial entry".to_string()));
        }
        // Only the newest entries are checked: everything below the recovery point was
        // fsynced, and a torn or stale index shows at its end.
        let entries = self.offset_index.warm_entries();
        for pair in entries.windows(2) {
            if pair[1].relative_offset <= pair[0].relative_offset
                || pair[1].position <= pair[0].position
            {
                return Ok(Err("offset index entries are not increasing".to_string()));
            }
        }
        let last_entry = self.offset_index.last();
        if let Some(entry) = last_entry {
            if u64::from(entry.position) >= self.size {
                return Ok(Err(format!(
                    "offset index points at position {} of a {}-byte log",
                    entry.position, self.size
                )));
            }
        }
        let mut reader = LogReader::new(self.log.get()?, self.size);
        let mut position = last_entry.map_or(0, |entry| u64::from(entry.position));
        let mut next_offset = self.base_offset;
        let mut expected_base =
            last_entry.map(|entry| self.base_offset + i64::from(entry.relative_offset));
        loop {
            match reader.peek(position)? {
                Peek::End => break,
                Peek::Bad(why) => return Ok(Err(format!("at position {position}: {why}"))),
                Peek::Batch(batch) => {
                    if let Some(expected) = expected_base.take() {
                        if batch.base_offset != expected {
                            return Ok(Err(format!(
                                "offset index says offset {expected} starts at position \
                                 {position}, but the batch there starts at {}",
                                batch.base_offset
                            )));
                        }
                    } else if batch.base_offset < next_offset {
                        return Ok(Err(format!("offsets go backwards at position {position}")));
                    }
                    if i64::from(u32::MAX) < batch.last_offset - self.base_offset {
                        return Ok(Err("offsets too far from the segment base".to_string()));
                    }
                    next_offset = batch.next_offset();
                    position += batch.len;
                }
            }
        }
        if next_segment_base.is_some_and(|next_base| next_offset > next_base) {
            return Ok(Err("offsets overlap the next segment".to_string()));
        }
        let time_entries = self.time_index.warm_entries();
        for pair in time_entries.windows(2) {
            if pair[1].timestamp <= pair[0].timestamp
                || pair[1].relative_offset <= pair[0].relative_offset
            {
                return Ok(Err("time index entries are not increasing".to_string()));
            }
        }
        let last_time = self.time_index.last();
        if let Some(entry) = last_time {
            if self.base_offset + i64::from(entry.relative_offset) >= next_offset {
                return Ok(Err(
                    "time index points past the end of the segment".to_string()
                ));
            }
        } else if self.size > 0 {
            // A sealed segment always ends its time index with its max timestamp.
            return Ok(Err(
                "time index is empty for a non-empty segment".to_string()
            ));
        }
        self.next_offset = next_offset;
        self.state = IndexState {
            bytes_since_offset_entry: self.size - last_entry.map_or(0, |e| u64::from(e.position)),
            bytes_since_time_entry: 0,
            max_timestamp: last_time.map_or(NO_BATCH_TIMESTAMP, |entry| entry.timestamp),
            max_timestamp_batch: last_time.map_or(-1, |entry| {
                self.base_offset + i64::from(entry.relative_offset)
            }),
        };
        Ok(Ok(()))
    }

    /// Scans and validates every batch, rebuilds both indexes and the in-memory state. A bad
    /// batch whose offsets lie at or above `recovery_point` is a torn or unflushed tail and is
    /// cut off; one below it is corruption of fsynced data. Returns whether the log was cut.
    pub(crate) fn recover(
        &mut self,
        recovery_point: i64,
        next_segment_base: Option<i64>,
        index_interval_bytes: u64,
    ) -> Result<bool, StorageError> {
        let mut reader = self.reader()?;
        let mut state = IndexState::new();
        let mut offset_entries = Vec::new();
        let mut time_entries = Vec::new();
        let mut position = 0u64;
        let mut next_offset = self.base_offset;
        let read_error = |path: &Path| format!("reading segment {}", path.display());
        let bad = loop {
            let peeked = reader
                .validate(position)
                .context(|| read_error(&self.log_path))?;
            match peeked {
                Peek::End => break None,
                Peek::Bad(why) => break Some(why),
                Peek::Batch(batch) => {
                    if batch.base_offset < next_offset {
                        break Some(format!(
                            "batch base offset {} is below the previous batch's end {next_offset}",
                            batch.base_offset
                        ));
                    }
                    if batch.last_offset - self.base_offset > i64::from(u32::MAX)
                        || position + batch.len > SEGMENT_BYTES_MAX
                    {
                        break Some("batch lies too far from the segment start".to_string());
                    }
                    if next_segment_base.is_some_and(|next_base| batch.next_offset() > next_base) {
                        break Some("batch overlaps the next segment".to_string());
                    }
                    state.observe(
                        self.base_offset,
                        position,
                        &batch,
                        index_interval_bytes,
                        &mut offset_entries,
                        &mut time_entries,
                    );
                    next_offset = batch.next_offset();
                    position += batch.len;
                }
            }
        };
        let truncated = match bad {
            None => false,
            Some(why) if next_offset < recovery_point => {
                return Err(StorageError::Corrupt(format!(
                    "segment {} has a bad batch at position {position} (offset {next_offset}), \
                     below the recovery point {recovery_point}: {why}",
                    self.log_path.display()
                )));
            }
            Some(why) => {
                tracing::warn!(
                    segment = %self.log_path.display(),
                    position,
                    discarded_bytes = self.size - position,
                    reason = %why,
                    "truncating an unflushed or torn log tail"
                );
                self.log_file()?
                    .set_len(position)
                    .context(|| format!("truncating segment {}", self.log_path.display()))?;
                true
            }
        };
        self.offset_index.replace(offset_entries)?;
        self.time_index.replace(time_entries)?;
        self.size = position;
        self.next_offset = next_offset;
        self.state = state;
        self.index_missing = false;
        Ok(truncated)
    }

    /// Appends whole batches (already carrying their final offsets) with one write, then their
    /// index entries. If any write fails, every file is cut back and nothing changes in memory.
    pub(crate) fn append(
        &mut self,
        bytes: &[u8],
        batches: &[BatchSummary],
        index_interval_bytes: u64,
    ) -> Result<(), StorageError> {
        let start = self.size;
        let mut state = self.state;
        let mut offset_entries = Vec::new();
        let mut time_entries = Vec::new();
        let mut position = start;
        let mut next_offset = self.next_offset;
        for batch in batches {
            assert!(
                batch.base_offset >= next_offset && batch.last_offset >= batch.base_offset,
                "offsets must increase: batch {}..={} after {next_offset}",
                batch.base_offset,
                batch.last_offset
            );
            state.observe(
                self.base_offset,
                position,
                batch,
                index_interval_bytes,
                &mut offset_entries,
                &mut time_entries,
            );
            position += batch.len;
            next_offset = batch.next_offset();
        }
        assert_eq!(
            position - start,
            bytes.len() as u64,
            "batch summaries do not cover the bytes"
        );

        let log = self.log_file()?;
        if let Err(error) = self.write_log(&*log, bytes, start) {
            truncate_after_failure(&*log, start, &self.log_path);
            return Err(error);
        }
        let indexed = self
            .prepare_offset_index(&offset_entries)
            .and_then(|()| self.prepare_time_index(&time_entries));
        if let Err(error) = indexed {
            truncate_after_failure(&*log, start, &self.log_path);
            return Err(error);
        }
        self.offset_index.commit(&offset_entries);
        self.time_index.commit(&time_entries);
        self.size = position;
        self.next_offset = next_offset;
        self.state = state;
        Ok(())
    }

    fn write_log(&self, log: &dyn DataFile, bytes: &[u8], at: u64) -> Result<(), StorageError> {
        #[cfg(test)]
        if self.fault == Some(Fault::TornLog) {
            let half = &bytes[..bytes.len() / 2];
            log.write_all_at(half, at)
                .context(|| "injected".to_string())?;
            return Err(injected_failure());
        }
        log.write_all_at(bytes, at)
            .context(|| format!("appending to segment {}", self.log_path.display()))
    }

    fn prepare_offset_index(&mut self, entries: &[OffsetEntry]) -> Result<(), StorageError> {
        #[cfg(test)]
        if self.fault == Some(Fault::OffsetIndex) {
            return Err(injected_failure());
        }
        self.offset_index.prepare(entries)
    }

    fn prepare_time_index(&mut self, entries: &[TimeEntry]) -> Result<(), StorageError> {
        #[cfg(test)]
        if self.fault == Some(Fault::TimeIndex) {
            self.time_index.prepare(entries)?;
            return Err(injected_failure());
        }
        self.time_index.prepare(entries)
    }

    /// Ends the time index with the segment's max timestamp, so that a later open can take
    /// the segment's max timestamp from the index without scanning. Done when the segment
    /// stops being active (roll, close) and after rebuilding an inactive segment. Returns
    /// whether it added the entry, which then waits in memory like any new index entry: the
    /// caller syncs the indexes (roll, close, open) so that the next open finds it.
    pub(crate) fn seal(&mut self) -> Result<bool, StorageError> {
        if self.is_empty() {
            return Ok(false);
        }
        let covered = self
            .time_index
            .last()
            .is_some_and(|entry| entry.timestamp >= self.state.max_timestamp);
        if covered {
            return Ok(false);
        }
        let entry = [TimeEntry {
            timestamp: self.state.max_timestamp,
            relative_offset: relative(self.base_offset, self.state.max_timestamp_batch),
        }];
        self.time_index.prepare(&entry)?;
        self.time_index.commit(&entry);
        self.state.bytes_since_time_entry = 0;
        Ok(true)
    }

    /// Position of the batch holding `offset` (the first batch ending at or after it), or
    /// `None` if the segment ends before it.
    pub(crate) fn find_batch(
        &self,
        reader: &mut LogReader,
        offset: i64,
    ) -> Result<Option<(u64, BatchSummary)>, StorageError> {
        let relative_offset = u32::try_from((offset - self.base_offset).max(0)).unwrap_or(u32::MAX);
        let mut position = u64::from(self.offset_index.lookup(relative_offset)?);
        loop {
            match self.peek(reader, position)? {
                None => return Ok(None),
                Some(batch) if batch.last_offset >= offset => return Ok(Some((position, batch))),
                Some(batch) => position += batch.len,
            }
        }
    }

    /// The batch header at `position` of committed data, which must be well-formed.
    pub(crate) fn peek(
        &self,
        reader: &mut LogReader,
        position: u64,
    ) -> Result<Option<BatchSummary>, StorageError> {
        let peeked = reader
            .peek(position)
            .context(|| format!("reading segment {}", self.log_path.display()))?;
        match peeked {
            Peek::End => Ok(None),
            Peek::Batch(batch) => Ok(Some(batch)),
            Peek::Bad(why) => Err(StorageError::Corrupt(format!(
                "segment {} at position {position}: {why}",
                self.log_path.display()
            ))),
        }
    }

    pub(crate) fn reader(&self) -> Result<LogReader, StorageError> {
        Ok(LogReader::new(self.log_file()?, self.size))
    }

    /// Lets the pool close the log file between uses: the segment is sealed and every byte
    /// of it fsynced.
    pub(crate) fn set_closable(&self) {
        self.log.set_closable();
    }

    pub(crate) fn is_closable(&self) -> bool {
        self.log.is_closable()
    }

    /// Keeps the log file open from now on: the segment is active again.
    pub(crate) fn pin(&self) {
        self.log.pin();
    }

    /// Cuts the segment so it ends before the batch holding `offset`, and rebuilds its
    /// indexes. Returns the new next offset (below `offset` if `offset` was mid-batch).
    pub(crate) fn truncate_to(
        &mut self,
        offset: i64,
        recovery_point: i64,
        index_interval_bytes: u64,
    ) -> Result<i64, StorageError> {
        let mut reader = self.reader()?;
        let Some((position, batch)) = self.find_batch(&mut reader, offset)? else {
            return Ok(self.next_offset);
        };
        if batch.base_offset != offset {
            tracing::warn!(
                segment = %self.log_path.display(),
                offset,
                batch_base_offset = batch.base_offset,
                "truncation point is inside a batch; removing the whole batch"
            );
        }
        self.log_file()?
            .set_len(position)
            .context(|| format!("truncating segment {}", self.log_path.display()))?;
        self.size = position;
        // Truncation is rare (a follower diverged), so rebuilding the indexes by a scan is
        // simpler than working out which entries and timestamps survive.
        self.recover(
            recovery_point.min(batch.base_offset),
            None,
            index_interval_bytes,
        )?;
        Ok(self.next_offset)
    }

    /// The log file (to append to, read, or fsync), opened again if the pool closed it.
    pub(crate) fn log_file(&self) -> Result<Arc<dyn DataFile>, StorageError> {
        self.log
            .get()
            .context(|| format!("opening segment {}", self.log_path.display()))
    }

    pub(crate) fn sync_indexes(&mut self) -> Result<(), StorageError> {
        self.offset_index.sync()?;
        self.time_index.sync()
    }

    /// The segment's newest timestamp for retention: its max record timestamp, or the log
    /// file's modification time if no batch carries one.
    pub(crate) fn largest_timestamp(&self) -> Result<i64, StorageError> {
        if self.state.max_timestamp >= 0 {
            return Ok(self.state.max_timestamp);
        }
        self.log_file()?.modified_ms().context(|| {
            format!(
                "reading the modification time of {}",
                self.log_path.display()
            )
        })
    }

    /// Removes the segment's files. Readers holding the log file keep reading it until they
    /// drop it.
    pub(crate) fn delete_files(&self, fs: &dyn FileSystem) -> Result<(), StorageError> {
        for path in [
            &self.log_path,
            self.offset_index.path(),
            self.time_index.path(),
        ] {
            match fs.remove_file(path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(StorageError::Io {
                        context: format!("deleting {}", path.display()),
                        source: error,
                    })
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
fn injected_failure() -> StorageError {
    StorageError::Io {
        context: "injected failure".to_string(),
        source: io::Error::other("injected"),
    }
}
