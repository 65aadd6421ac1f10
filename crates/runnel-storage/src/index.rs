//! The sparse offset index and the time index of one segment.
//!
//! Both are plain append-only files of fixed-size big-endian entries whose contents are also held
//! in memory, so lookups never touch the disk. This module owns their byte format, loading,
//! appending with rollback, and lookups; it does not decide when entries are added or whether a
//! loaded index can be trusted (the segment does, against the log file).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{IoContext, StorageError};

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

/// An index file and its entries in memory. The file holds exactly `entries` once any
/// operation returns `Ok`.
#[derive(Debug)]
pub(crate) struct IndexFile<E> {
    path: PathBuf,
    file: Arc<File>,
    entries: Vec<E>,
    /// The file's length was not a whole number of entries when it was loaded.
    pub(crate) torn: bool,
}

impl<E: Entry> IndexFile<E> {
    /// Creates the file empty, replacing whatever was there.
    pub(crate) fn create(path: &Path) -> Result<Self, StorageError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .context(|| format!("creating index file {}", path.display()))?;
        Ok(IndexFile {
            path: path.to_path_buf(),
            file: Arc::new(file),
            entries: Vec::new(),
            torn: false,
        })
    }

    /// Opens the file, creating it empty if missing, and loads every whole entry. Returns
    /// whether the file existed: a missing index must be rebuilt.
    pub(crate) fn load(path: &Path) -> Result<(Self, bool), StorageError> {
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .context(|| format!("opening index file {}", path.display()))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .context(|| format!("reading index file {}", path.display()))?;
        let torn = bytes.len() % E::LEN != 0;
        let entries = bytes.chunks_exact(E::LEN).map(E::decode).collect();
        let index = IndexFile {
            path: path.to_path_buf(),
            file: Arc::new(file),
            entries,
            torn,
        };
        Ok((index, existed))
    }

    pub(crate) fn entries(&self) -> &[E] {
        &self.entries
    }

    pub(crate) fn last(&self) -> Option<E> {
        self.entries.last().copied()
    }

    pub(crate) fn file(&self) -> &Arc<File> {
        &self.file
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
            .write_all_at(&bytes, Self::byte_len(self.entries.len()))
            .context(|| format!("appending to index file {}", self.path.display()))
    }

    pub(crate) fn commit(&mut self, new: &[E]) {
        self.entries.extend_from_slice(new);
    }

    /// Cuts the file back to the committed entries after a failed append.
    pub(crate) fn rollback(&self) {
        truncate_after_failure(&self.file, Self::byte_len(self.entries.len()), &self.path);
    }

    /// Replaces the whole index, as after a rebuild from the log.
    pub(crate) fn replace(&mut self, entries: Vec<E>) -> Result<(), StorageError> {
        self.file
            .set_len(0)
            .context(|| format!("truncating index file {}", self.path.display()))?;
        self.entries.clear();
        self.torn = false;
        self.write_pending(&entries)?;
        self.entries = entries;
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
    pub(crate) fn lookup(&self, relative_offset: u32) -> u32 {
        let after = self
            .entries
            .partition_point(|entry| entry.relative_offset <= relative_offset);
        match after {
            0 => 0,
            n => self.entries[n - 1].position,
        }
    }
}

impl IndexFile<TimeEntry> {
    /// The last entry with a timestamp at most `timestamp`: every batch before its offset has
    /// a smaller max timestamp, so a search for `timestamp` may start there.
    pub(crate) fn lookup(&self, timestamp: i64) -> Option<TimeEntry> {
        let after = self
            .entries
            .partition_point(|entry| entry.timestamp <= timestamp);
        after.checked_sub(1).map(|n| self.entries[n])
    }
}

/// Truncates a file back to `len` after a failed write. If even that fails, the in-memory
/// state still ends at `len`: the next write overwrites the leftover bytes, and recovery
/// discards any that remain past the last whole batch.
pub(crate) fn truncate_after_failure(file: &File, len: u64, path: &Path) {
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

    #[test]
    fn offset_lookup_finds_floor_entry() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let mut index = IndexFile::<OffsetEntry>::create(&dir.path().join("x.index"))?;
        let new = [
            OffsetEntry {
                relative_offset: 10,
                position: 100,
            },
            OffsetEntry {
                relative_offset: 20,
                position: 200,
            },
        ];
        index.write_pending(&new)?;
        index.commit(&new);
        assert_eq!(index.lookup(0), 0);
        assert_eq!(index.lookup(9), 0);
        assert_eq!(index.lookup(10), 100);
        assert_eq!(index.lookup(19), 100);
        assert_eq!(index.lookup(25), 200);
        let (loaded, existed) = IndexFile::<OffsetEntry>::load(&dir.path().join("x.index"))?;
        assert!(existed && !loaded.torn);
        assert_eq!(loaded.entries(), &new);
        Ok(())
    }

    #[test]
    fn rollback_discards_pending_entries() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let path = dir.path().join("x.timeindex");
        let mut index = IndexFile::<TimeEntry>::create(&path)?;
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
        let (loaded, _) = IndexFile::<TimeEntry>::load(&path)?;
        assert_eq!(loaded.entries(), &first);
        assert_eq!(loaded.lookup(4), None);
        assert_eq!(loaded.lookup(7), Some(first[0]));
        Ok(())
    }
}
