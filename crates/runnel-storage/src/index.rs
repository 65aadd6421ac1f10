//! The sparse offset index and the time index of one segment.
//!
//! Both are plain append-only files of fixed-size big-endian entries. Memory holds only the
//! newest entries (the "warm" tail, where lookups of recent offsets and times land); older ones
//! are found by a binary search that reads the file, so a broker's index memory does not grow
//! with the data it stores. No file handle is kept: new entries wait in the warm tail and are
//! written in runs, and lookups of older entries open the file, so a segment costs one file
//! handle (its log), not three. This module owns the byte format, loading, appending, and
//! lookups; it does not decide when entries are added or whether a loaded index can be
//! trusted (the segment does, against the log file).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{IoContext, StorageError};
use crate::fs::{DataFile, FileSystem, OpenMode};

/// How many of the newest entries each index keeps in memory: 1 KiB of offset entries,
/// covering the last 512 KiB of the log at the default `index.interval.bytes`.
const WARM_ENTRIES: usize = 128;
/// One fixed-size index entry.
pub(crate) trait Entry: Copy + std::fmt::Debug {
    const LEN: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(bytes: &[u8]) -> Self;
}

/// `(relative_offset, position)`: the batch whose base offset is `segment base +
/// relative_offset` starts at byte `position` of the segment's log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

/// `(timestamp, relative_offset)`: the batch with base offset `segment base + relative_offset`
/// has max timestamp `timestamp`, and every earlier batch in the segment has a smaller one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) timestamp: i64,
    pub(crate) relative_offset: u32,
}

impl Entry for OffsetEntry {
    const LEN: usize = 8;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            position: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        }
    }
}

impl Entry for TimeEntry {
    const LEN: usize = 12;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        let mut timestamp = [0u8; 8];
        timestamp.copy_from_slice(&bytes[..8]);
        TimeEntry {
            timestamp: i64::from_be_bytes(timestamp),
            relative_offset: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
        }
    }
}

const _: () = assert!(OffsetEntry::LEN == 8 && TimeEntry::LEN == 12);

/// An index file, its entry count and its newest entries.
///
/// No file handle is held: a broker with thousands of partitions would otherwise hold two
/// more per segment. New entries stay in memory (they are the newest, so they are warm anyway)
/// and reach the file when they would no longer fit the warm tail, or at [`Self::sync`]; the
/// file is opened for that write and for lookups of older entries, then closed. Unwritten
/// entries lost to a crash cost nothing: the active segment's indexes are rebuilt by an
/// unclean recovery, and a segment's indexes are synced before it stops being active.
pub(crate) struct IndexFile<E> {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    /// Entries in the index.
    len: usize,
    /// Entries `0..written` are in the file; `written..len` only in `warm`.
    written: usize,
    /// Entries `len - warm.len() .. len`: every unwritten entry, and the newest written ones
    /// up to `WARM_ENTRIES` in all.
    warm: Vec<E>,
    /// The file's length was not a whole number of entries when it was loaded.
    pub(crate) torn: bool,
}

impl<E: std::fmt::Debug> std::fmt::Debug for IndexFile<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexFile")
            .field("path", &self.path)
            .field("len", &self.len)
            .field("written", &self.written)
            .field("torn", &self.torn)
            .finish_non_exhaustive()
    }
}

impl<E: Entry> IndexFile<E> {
    /// Creates the file empty, replacing whatever was there.
    pub(crate) fn create(fs: &Arc<dyn FileSystem>, path: &Path) -> Result<Self, StorageError> {
        fs.open(path, OpenMode::Truncate)
            .context(|| format!("creating index file {}", path.display()))?;
        Ok(IndexFile {
            fs: Arc::clone(fs),
            path: path.to_path_buf(),
            len: 0,
            written: 0,
            warm: Vec::new(),
            torn: false,
        })
    }

    /// Reads the file's newest entries, creating it empty if missing. Returns whether the file
    /// existed: a missing index must be rebuilt.
    pub(crate) fn load(
        fs: &Arc<dyn FileSystem>,
        path: &Path,
    ) -> Result<(Self, bool), StorageError> {
        let existed = fs
            .exists(path)
            .context(|| format!("looking for index file {}", path.display()))?;
        let file = fs
            .open(path, OpenMode::Create)
            .context(|| format!("opening index file {}", path.display()))?;
        let bytes = file
            .size()
            .context(|| format!("reading the size of index file {}", path.display()))?;
        let len = usize::try_from(bytes / E::LEN as u64).unwrap_or(usize::MAX);
        let mut index = IndexFile {
            fs: Arc::clone(fs),
            path: path.to_path_buf(),
            len,
            written: len,
            warm: Vec::new(),
            torn: bytes % E::LEN as u64 != 0,
        };
        index.warm = index.read_entries(&*file, len.saturating_sub(WARM_ENTRIES), len)?;
        Ok((index, existed))
    }

    fn open(&self) -> Result<Arc<dyn DataFile>, StorageError> {
        self.fs
            .open(&self.path, OpenMode::Existing)
            .context(|| format!("opening index file {}", self.path.display()))
    }

    fn read_entries(
        &self,
        file: &dyn DataFile,
        from: usize,
        to: usize,
    ) -> Result<Vec<E>, StorageError> {
        let mut bytes = vec![0u8; (to - from) * E::LEN];
        file.read_exact_at(&mut bytes, Self::byte_len(from))
            .context(|| format!("reading index file {}", self.path.display()))?;
        Ok(bytes.chunks_exact(E::LEN).map(E::decode).collect())
    }

    fn warm_start(&self) -> usize {
        self.len - self.warm.len()
    }

    /// The entry at `position` (`< warm_start`, so written) from the file.
    fn cold_entry(&self, file: &dyn DataFile, position: usize) -> Result<E, StorageError> {
        debug_assert!(position < self.warm_start() && position < self.written);
        let mut bytes = [0u8; 16];
        let bytes = &mut bytes[..E::LEN];
        file.read_exact_at(bytes, Self::byte_len(position))
            .context(|| format!("reading index file {}", self.path.display()))?;
        Ok(E::decode(bytes))
    }

    /// The last entry for which `at_or_below` holds, given that it holds for a prefix of the
    /// entries. Searches the warm tail first; reads the file only for older entries.
    fn floor(&self, at_or_below: impl Fn(&E) -> bool) -> Result<Option<E>, StorageError> {
        let warm_start = self.warm_start();
        let in_warm = self.warm.partition_point(&at_or_below);
        if in_warm > 0 || warm_start == 0 {
            return Ok(in_warm.checked_sub(1).map(|n| self.warm[n]));
        }
        // Binary search over the entries on disk: the answer is below `warm_start`.
        let file = self.open()?;
        let (mut low, mut high) = (0, warm_start);
        while low < high {
            let middle = low + (high - low) / 2;
            if at_or_below(&self.cold_entry(&*file, middle)?) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low.checked_sub(1)
            .map(|n| self.cold_entry(&*file, n))
            .transpose()
    }

    /// The newest entries, for the cheap sanity check of a loaded index.
    pub(crate) fn warm_entries(&self) -> &[E] {
        &self.warm
    }

    #[cfg(test)]
    pub(crate) fn all_entries(&self) -> Result<Vec<E>, StorageError> {
        let mut entries = self.read_entries(&*self.open()?, 0, self.written)?;
        let unwritten = self.len - self.written;
        entries.extend_from_slice(&self.warm[self.warm.len() - unwritten..]);
        Ok(entries)
    }

    pub(crate) fn last(&self) -> Option<E> {
        self.warm.last().copied()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn byte_len(count: usize) -> u64 {
        (count * E::LEN) as u64
    }

    /// Makes room for `new`, about to be [committed](Self::commit): writes the unwritten
    /// entries to the file if the warm tail could not hold them as well. Only committed
    /// entries are written, so a failure here, or of the append after it, leaves nothing to
    /// undo: the file's bytes past `written` are overwritten by the next write.
    pub(crate) fn prepare(&mut self, new: &[E]) -> Result<(), StorageError> {
        if self.len - self.written + new.len() > WARM_ENTRIES {
            self.write_unwritten()?;
        }
        Ok(())
    }

    fn write_unwritten(&mut self) -> Result<(), StorageError> {
        let unwritten = self.len - self.written;
        if unwritten == 0 {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(unwritten * E::LEN);
        for entry in &self.warm[self.warm.len() - unwritten..] {
            entry.encode(&mut bytes);
        }
        self.open()?
            .write_all_at(&bytes, Self::byte_len(self.written))
            .context(|| format!("appending to index file {}", self.path.display()))?;
        self.written = self.len;
        Ok(())
    }

    /// Adds `new` after the current entries (in memory; see [`Self::prepare`]).
    pub(crate) fn commit(&mut self, new: &[E]) {
        self.len += new.len();
        self.warm.extend_from_slice(new);
        // Only written entries leave the warm tail: the file must hold every cold one.
        let written_in_warm = self.warm.len() - (self.len - self.written);
        let excess = self.warm.len().saturating_sub(WARM_ENTRIES);
        self.warm.drain(..excess.min(written_in_warm));
    }

    /// Replaces the whole index, as after a rebuild from the log.
    pub(crate) fn replace(&mut self, entries: Vec<E>) -> Result<(), StorageError> {
        let file = self
            .fs
            .open(&self.path, OpenMode::Truncate)
            .context(|| format!("truncating index file {}", self.path.display()))?;
        let mut bytes = Vec::with_capacity(entries.len() * E::LEN);
        for entry in &entries {
            entry.encode(&mut bytes);
        }
        // Until the write succeeds the index is empty, in memory as in the file.
        self.len = 0;
        self.written = 0;
        self.warm.clear();
        self.torn = false;
        file.write_all_at(&bytes, 0)
            .context(|| format!("writing index file {}", self.path.display()))?;
        self.len = entries.len();
        self.written = entries.len();
        self.warm = entries[entries.len().saturating_sub(WARM_ENTRIES)..].to_vec();
        Ok(())
    }

    /// Writes the unwritten entries and fsyncs the file.
    pub(crate) fn sync(&mut self) -> Result<(), StorageError> {
        self.write_unwritten()?;
        self.open()?
            .sync_data()
            .context(|| format!("fsync of index file {}", self.path.display()))
    }
}

impl IndexFile<OffsetEntry> {
    /// The position of the last indexed batch whose base offset is at most `relative_offset`:
    /// a place to start scanning for it. 0 (the segment's start) when no entry qualifies.
    pub(crate) fn lookup(&self, relative_offset: u32) -> Result<u32, StorageError> {
        Ok(self
            .floor(|entry| entry.relative_offset <= relative_offset)?
            .map_or(0, |entry| entry.position))
    }
}

impl IndexFile<TimeEntry> {
    /// The last entry with a timestamp at most `timestamp`: every batch before its offset has
    /// a smaller max timestamp, so a search for `timestamp` may start there.
    pub(crate) fn lookup(&self, timestamp: i64) -> Result<Option<TimeEntry>, StorageError> {
        self.floor(|entry| entry.timestamp <= timestamp)
    }
}

/// Truncates a file back to `len` after a failed write. If even that fails, the in-memory
/// state still ends at `len`: the next write overwrites the leftover bytes, and recovery
/// discards any that remain past the last whole batch.
pub(crate) fn truncate_after_failure(file: &dyn DataFile, len: u64, path: &Path) {
    if let Err(error) = file.set_len(len) {
        tracing::error!(
            path = %path.display(),
            len,
            %error,
            "could not truncate after a failed write; recovery will discard the leftover bytes"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::OsFileSystem;

    fn entries(count: u32) -> Vec<OffsetEntry> {
        (1..=count)
            .map(|n| OffsetEntry {
                relative_offset: n * 10,
                position: n * 100,
            })
            .collect()
    }

    #[test]
    fn offset_lookup_finds_floor_entry_in_memory_and_on_disk() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let path = dir.path().join("x.index");
        let fs: Arc<dyn FileSystem> = Arc::new(OsFileSystem);
        let mut index = IndexFile::<OffsetEntry>::create(&fs, &path)?;
        let new = entries(1000);
        // One entry at a time, as appends add them: older ones go to the file as they leave
        // the warm tail; the newest stay in memory until the sync.
        for entry in &new {
            index.prepare(std::slice::from_ref(entry))?;
            index.commit(std::slice::from_ref(entry));
            assert!(index.warm_entries().len() <= WARM_ENTRIES);
        }
        assert_eq!(index.all_entries()?, new);
        index.sync()?;
        let (loaded, existed) = IndexFile::<OffsetEntry>::load(&fs, &path)?;
        assert!(existed && !loaded.torn);
        assert_eq!(loaded.warm_entries().len(), WARM_ENTRIES);
        assert_eq!(loaded.all_entries()?, new);
        for index in [&index, &loaded] {
            assert_eq!(index.lookup(0)?, 0);
            assert_eq!(index.lookup(9)?, 0);
            assert_eq!(index.lookup(10)?, 100);
            assert_eq!(index.lookup(19)?, 100);
            assert_eq!(index.lookup(25)?, 200);
            assert_eq!(index.lookup(5_555)?, 55_500);
            assert_eq!(index.lookup(9_999)?, 99_900);
            assert_eq!(index.lookup(u32::MAX)?, 100_000);
        }
        Ok(())
    }

    #[test]
    fn unwritten_entries_reach_the_file_at_sync_and_a_failed_append_leaves_none(
    ) -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let path = dir.path().join("x.timeindex");
        let fs: Arc<dyn FileSystem> = Arc::new(OsFileSystem);
        let mut index = IndexFile::<TimeEntry>::create(&fs, &path)?;
        let first = [TimeEntry {
            timestamp: 5,
            relative_offset: 1,
        }];
        index.prepare(&first)?;
        index.commit(&first);
        // Prepared but never committed: the append failed after it.
        index.prepare(&[TimeEntry {
            timestamp: 9,
            relative_offset: 2,
        }])?;
        let (before_sync, _) = IndexFile::<TimeEntry>::load(&fs, &path)?;
        assert_eq!(before_sync.all_entries()?, []);
        index.sync()?;
        let (loaded, _) = IndexFile::<TimeEntry>::load(&fs, &path)?;
        assert_eq!(loaded.all_entries()?, first);
        assert_eq!(loaded.lookup(4)?, None);
        assert_eq!(loaded.lookup(7)?, Some(first[0]));
        Ok(())
    }
}
