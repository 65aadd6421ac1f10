//! The sparse offset index and the time index of one segment.
//!
//! Both are plain append-only files of fixed-size big-endian entries. Memory holds only the
//! newest entries (the "warm" tail, where lookups of recent offsets and times land); older ones
//! are found by a binary search that reads the file, so a broker's index memory does not grow
//! with the data it stores. This module owns the byte format, loading, appending with rollback,
//! and lookups; it does not decide when entries are added or whether a loaded index can be
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

/// An index file, its entry count and its newest entries. The file holds exactly `len`
/// entries once any operation returns `Ok`.
#[derive(Debug)]
pub(crate) struct IndexFile<E> {
    path: PathBuf,
    file: Arc<dyn DataFile>,
    len: usize,
    /// Entries `len - warm.len() .. len`.
    warm: Vec<E>,
    /// The file's length was not a whole number of entries when it was loaded.
    pub(crate) torn: bool,
}

impl<E: Entry> IndexFile<E> {
    /// Creates the file empty, replacing whatever was there.
    pub(crate) fn create(fs: &dyn FileSystem, path: &Path) -> Result<Self, StorageError> {
        let file = fs
            .open(path, OpenMode::Truncate)
            .context(|| format!("creating index file {}", path.display()))?;
        Ok(IndexFile {
            path: path.to_path_buf(),
            file,
            len: 0,
            warm: Vec::new(),
            torn: false,
        })
    }

    /// Opens the file, creating it empty if missing, and reads its newest entries. Returns
    /// whether the file existed: a missing index must be rebuilt.
    pub(crate) fn load(fs: &dyn FileSystem, path: &Path) -> Result<(Self, bool), StorageError> {
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
            path: path.to_path_buf(),
            file,
            len,
            warm: Vec::new(),
            torn: bytes % E::LEN as u64 != 0,
        };
        index.warm = index.read_entries(len.saturating_sub(WARM_ENTRIES), len)?;
        Ok((index, existed))
    }

    fn read_entries(&self, from: usize, to: usize) -> Result<Vec<E>, StorageError> {
        let mut bytes = vec![0u8; (to - from) * E::LEN];
        self.file
            .read_exact_at(&mut bytes, Self::byte_len(from))
            .context(|| format!("reading index file {}", self.path.display()))?;
        Ok(bytes.chunks_exact(E::LEN).map(E::decode).collect())
    }

    /// The entry at `position` (`< len`), from memory if warm.
    fn entry(&self, position: usize) -> Result<E, StorageError> {
        let warm_start = self.len - self.warm.len();
        if position >= warm_start {
            return Ok(self.warm[position - warm_start]);
        }
        let mut bytes = [0u8; 16];
        let bytes = &mut bytes[..E::LEN];
        self.file
            .read_exact_at(bytes, Self::byte_len(position))
            .context(|| format!("reading index file {}", self.path.display()))?;
        Ok(E::decode(bytes))
    }

    /// The last entry for which `at_or_below` holds, given that it holds for a prefix of the
    /// entries. Searches the warm tail first; reads the file only for older entries.
    fn floor(&self, at_or_below: impl Fn(&E) -> bool) -> Result<Option<E>, StorageError> {
        let warm_start = self.len - self.warm.len();
        let in_warm = self.warm.partition_point(&at_or_below);
        if in_warm > 0 || warm_start == 0 {
            return Ok(in_warm.checked_sub(1).map(|n| self.warm[n]));
        }
        // Binary search over the entries on disk: the answer is below `warm_start`.
        let (mut low, mut high) = (0, warm_start);
        while low < high {
            let middle = low + (high - low) / 2;
            if at_or_below(&self.entry(middle)?) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low.checked_sub(1).map(|n| self.entry(n)).transpose()
    }

    /// The newest entries, for the cheap sanity check of a loaded index.
    pub(crate) fn warm_entries(&self) -> &[E] {
        &self.warm
    }

    #[cfg(test)]
    pub(crate) fn all_entries(&self) -> Result<Vec<E>, StorageError> {
        self.read_entries(0, self.len)
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

    /// Writes `new` after the current entries without making them part of the index yet;
    /// follow with [`Self::commit`] or [`Self::rollback`].
    pub(crate) fn write_pending(&self, new: &[E]) -> Result<(), StorageError> {
        if new.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(new.len() * E::LEN);
        for entry in new {
            entry.encode(&mut bytes);
        }
        self.file
            .write_all_at(&bytes, Self::byte_len(self.len))
            .context(|| format!("appending to index file {}", self.path.display()))
    }

    pub(crate) fn commit(&mut self, new: &[E]) {
        self.len += new.len();
        self.warm.extend_from_slice(new);
        if self.warm.len() > WARM_ENTRIES {
            self.warm.drain(..self.warm.len() - WARM_ENTRIES);
        }
    }

    /// Cuts the file back to the committed entries after a failed append.
    pub(crate) fn rollback(&self) {
        truncate_after_failure(&*self.file, Self::byte_len(self.len), &self.path);
    }

    /// Replaces the whole index, as after a rebuild from the log.
    pub(crate) fn replace(&mut self, entries: Vec<E>) -> Result<(), StorageError> {
        self.file
            .set_len(0)
            .context(|| format!("truncating index file {}", self.path.display()))?;
        self.len = 0;
        self.warm.clear();
        self.torn = false;
        self.write_pending(&entries)?;
        self.commit(&entries);
        Ok(())
    }

    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        self.file
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
        let mut index = IndexFile::<OffsetEntry>::create(&OsFileSystem, &path)?;
        let new = entries(1000);
        index.write_pending(&new)?;
        index.commit(&new);
        let (loaded, existed) = IndexFile::<OffsetEntry>::load(&OsFileSystem, &path)?;
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
    fn rollback_discards_pending_entries() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let path = dir.path().join("x.timeindex");
        let mut index = IndexFile::<TimeEntry>::create(&OsFileSystem, &path)?;
        let first = [TimeEntry {
            timestamp: 5,
            relative_offset: 1,
        }];
        index.write_pending(&first)?;
        index.commit(&first);
        index.write_pending(&[TimeEntry {
            timestamp: 9,
            relative_offset: 2,
        }])?;
        index.rollback();
        let (loaded, _) = IndexFile::<TimeEntry>::load(&OsFileSystem, &path)?;
        assert_eq!(loaded.all_entries()?, first);
        assert_eq!(loaded.lookup(4)?, None);
        assert_eq!(loaded.lookup(7)?, Some(first[0]));
        Ok(())
    }
}
