//! [`MetadataLog`]: the quorum's Raft log and vote on disk.
//!
//! Layout, under `<data-dir>/__cluster_metadata/`:
//! ```text
//! <first index, 20 digits>.log   a segment: frames of [length u32][crc32c u32][entry as JSON]
//! vote.json                      the last vote, replaced atomically
//! purged.json                    the last log id removed by a snapshot, replaced atomically
//! ```
//! Invariants:
//! - An append returns (and Raft counts the entries as persisted) only after the segment is
//!   fsynced. A vote is durable before it is answered.
//! - Indexes are consecutive from the purged id (or 0) to the last entry: no hole, asserted.
//! - A frame cut short or failing its checksum at the end of the last segment (nothing but
//!   zeros after it) is what a crash mid-append leaves; it was never acknowledged, and
//!   opening cuts it off. A bad frame anywhere else, or followed by more frames, is
//!   corruption of fsynced data: opening fails rather than drop what may have been
//!   acknowledged or serve a log with a hole.
//!
//! Entries are also kept in memory: the metadata log is small, and snapshots bound it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{Entry, LogId, Vote};
use runnel_storage::fs::{create_dir_durably, read_optional, write_atomically};
use runnel_storage::{DataFile, FileSystem, OpenMode};

use crate::{MetadataRaft, NodeId};

const SEGMENT_SUFFIX: &str = ".log";
const VOTE_FILE: &str = "vote.json";
const PURGED_FILE: &str = "purged.json";
const FRAME_HEADER: usize = 8;
/// A segment is rolled once it passes this size.
const SEGMENT_BYTES: u64 = 8 << 20;
/// No entry the controller writes comes near this; a length above it is a torn or corrupt
/// frame, and is never allocated.
pub(crate) const ENTRY_BYTES_MAX: usize = 64 << 20;

pub(crate) type MetadataEntry = Entry<MetadataRaft>;

#[derive(Debug)]
struct Segment {
    file: Arc<dyn DataFile>,
    len: u64,
}

#[derive(Debug)]
pub(crate) struct MetadataLog {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    vote: Option<Vote<NodeId>>,
    purged: Option<LogId<NodeId>>,
    entries: BTreeMap<u64, MetadataEntry>,
    /// Where each entry's frame starts: its segment's first index and the byte offset.
    positions: BTreeMap<u64, (u64, u64)>,
    segments: BTreeMap<u64, Segment>,
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

fn read_json<T: serde::de::DeserializeOwned>(
    fs: &dyn FileSystem,
    dir: &Path,
    name: &str,
) -> io::Result<Option<T>> {
    let path = dir.join(name);
    match read_optional(fs, &path)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| corrupt(&path, error)),
    }
}

fn segment_name(first_index: u64) -> String {
    format!("{first_index:020}{SEGMENT_SUFFIX}")
}

/// One frame: the entry as JSON behind its length and checksum.
fn frame(entry: &MetadataEntry) -> io::Result<Vec<u8>> {
    let payload = serde_json::to_vec(entry).map_err(io::Error::other)?;
    if payload.len() > ENTRY_BYTES_MAX {
        return Err(io::Error::other(format!(
            "a metadata log entry of {} bytes exceeds {ENTRY_BYTES_MAX}",
            payload.len()
        )));
    }
    let mut frame = Vec::with_capacity(FRAME_HEADER + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// A segment's entries with their byte offsets, and where a bad frame starts, if one does.
type Frames = (Vec<(u64, MetadataEntry)>, Option<u64>);

/// Whether a bad frame at `at` is what a crash mid-append leaves: the last append was
/// written as one run and fsynced before it counted, so a crash can only leave its prefix,
/// possibly followed by zeros where the file grew. A bad frame with a whole, valid-looking
/// frame after it is not that: it is corruption of data that was fsynced, which may have been
/// acknowledged, and must not be cut away.
fn is_torn_tail(bytes: &[u8], at: usize) -> bool {
    let rest = &bytes[at..];
    let Some((header, body)) = rest.split_first_chunk::<FRAME_HEADER>() else {
        return true;
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    // The frame runs past the end of the file (cut short), or ends exactly there, or all
    // that follows its header is zeros.
    len > body.len() || len == body.len() || rest.iter().all(|&byte| byte == 0)
}

/// Reads a segment's frames.
fn read_frames(bytes: &[u8], path: &Path) -> io::Result<Frames> {
    let mut entries = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let Some((header, body)) = rest.split_first_chunk::<FRAME_HEADER>() else {
            return Ok((entries, Some(at as u64)));
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        // An empty frame is never written (an entry is at least `{}`), but a tail of zeros,
        // which a crash can leave where a file grew, reads as one with a matching checksum.
        if len == 0
            || len > ENTRY_BYTES_MAX
            || len > body.len()
            || crc32c::crc32c(&body[..len]) != crc
        {
            return Ok((entries, Some(at as u64)));
        }
        let entry: MetadataEntry = serde_json::from_slice(&body[..len])
            .map_err(|error| corrupt(path, format!("entry at byte {at}: {error}")))?;
        entries.push((at as u64, entry));
        at += FRAME_HEADER + len;
    }
    Ok((entries, None))
}

impl MetadataLog {
    pub(crate) fn open(fs: Arc<dyn FileSystem>, dir: &Path) -> io::Result<MetadataLog> {
        create_dir_durably(&*fs, dir)?;
        let vote = read_json(&*fs, dir, VOTE_FILE)?;
        let purged: Option<LogId<NodeId>> = read_json(&*fs, dir, PURGED_FILE)?;
        let mut bases: Vec<u64> = fs
            .list(dir)?
            .into_iter()
            .filter_map(|entry| {
                let name = entry.name.to_str()?;
                name.strip_suffix(SEGMENT_SUFFIX)?.parse().ok()
            })
            .collect();
        bases.sort_unstable();
        let mut log = MetadataLog {
            fs,
            dir: dir.to_path_buf(),
            vote,
            purged,
            entries: BTreeMap::new(),
            positions: BTreeMap::new(),
            segments: BTreeMap::new(),
        };
        // Raft's first entry has index 0.
        let first_kept = purged.map_or(0, |id| id.index + 1);
        for (position, &base) in bases.iter().enumerate() {
            let last = position + 1 == bases.len();
            let path = dir.join(segment_name(base));
            let file = log.fs.open(&path, OpenMode::Existing)?;
            let size = file.size()?;
            let mut bytes = vec![0; usize::try_from(size).map_err(io::Error::other)?];
            file.read_exact_at(&mut bytes, 0)?;
            let (entries, torn_at) = read_frames(&bytes, &path)?;
            let mut len = size;
            if let Some(torn_at) = torn_at {
                let torn = usize::try_from(torn_at).is_ok_and(|at| is_torn_tail(&bytes, at));
                if !last || !torn {
                    return Err(corrupt(&path, format!("bad frame at byte {torn_at}")));
                }
                tracing::warn!(segment = %path.display(), offset = torn_at, "cutting off a metadata log entry torn by a crash");
                file.set_len(torn_at)?;
                file.sync_data()?;
                len = torn_at;
            }
            for (offset, entry) in entries {
                let index = entry.log_id.index;
                if index < first_kept {
                    continue;
                }
                let expected = log.last_index().map_or(first_kept, |last| last + 1);
                if index != expected {
                    return Err(corrupt(
                        &path,
                        format!("entry {index} where {expected} was expected"),
                    ));
                }
                log.positions.insert(index, (base, offset));
                log.entries.insert(index, entry);
            }
            log.segments.insert(base, Segment { file, len });
        }
        Ok(log)
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.keys().next_back().copied()
    }

    pub(crate) fn vote(&self) -> Option<Vote<NodeId>> {
        self.vote
    }

    pub(crate) fn purged(&self) -> Option<LogId<NodeId>> {
        self.purged
    }

    /// The last entry's id, or the purged id when every entry was purged.
    pub(crate) fn last_log_id(&self) -> Option<LogId<NodeId>> {
        self.entries
            .values()
            .next_back()
            .map(|entry| entry.log_id)
            .or(self.purged)
    }

    /// Every entry held, the newest first, without copying them.
    pub(crate) fn newest_first(&self) -> impl Iterator<Item = &MetadataEntry> {
        self.entries.values().rev()
    }

    pub(crate) fn entries(&self, range: impl std::ops::RangeBounds<u64>) -> Vec<MetadataEntry> {
        self.entries
            .range(range)
            .map(|(_, entry)| entry.clone())
            .collect()
    }

    pub(crate) fn save_vote(&mut self, vote: &Vote<NodeId>) -> io::Result<()> {
        let json = serde_json::to_vec(vote).map_err(io::Error::other)?;
        write_atomically(&*self.fs, &self.dir, VOTE_FILE, &json)?;
        self.vote = Some(*vote);
        Ok(())
    }

    /// Appends entries and fsyncs them. All or nothing: on error the log is as it was.
    pub(crate) fn append(&mut self, entries: Vec<MetadataEntry>) -> io::Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let expected = self.last_log_id().map_or(0, |last| last.index + 1);
        assert_eq!(
            first.log_id.index, expected,
            "metadata log append leaves a hole or overlaps"
        );
        let base = match self.segments.iter().next_back() {
            Some((&base, segment)) if segment.len < SEGMENT_BYTES => base,
            _ => {
                let base = first.log_id.index;
                let path = self.dir.join(segment_name(base));
                let file = self.fs.open(&path, OpenMode::Truncate)?;
                self.fs.sync_dir(&self.dir)?;
                self.segments.insert(base, Segment { file, len: 0 });
                base
            }
        };
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.log_id.index,
                first.log_id.index + index as u64,
                "metadata log entries out of order"
            );
            offsets.push(bytes.len() as u64);
            bytes.extend_from_slice(&frame(entry)?);
        }
        let segment = self
            .segments
            .get_mut(&base)
            .ok_or_else(|| io::Error::other("the active segment vanished"))?;
        let start = segment.len;
        let written = segment
            .file
            .write_all_at(&bytes, start)
            .and_then(|()| segment.file.sync_data());
        if let Err(error) = written {
            // Best effort: a crash from here loses only what was never acknowledged.
            let _ = segment.file.set_len(start);
            return Err(error);
        }
        segment.len = start + bytes.len() as u64;
        for (entry, offset) in entries.into_iter().zip(offsets) {
            self.positions
                .insert(entry.log_id.index, (base, start + offset));
            self.entries.insert(entry.log_id.index, entry);
        }
        Ok(())
    }

    /// Removes the entries from `index` on (a new leader overwrote them).
    pub(crate) fn truncate(&mut self, index: u64) -> io::Result<()> {
        let Some(&(base, offset)) = self.positions.get(&index) else {
            return Ok(());
        };
        let later: Vec<u64> = self.segments.range(base + 1..).map(|(&b, _)| b).collect();
        for later_base in &later {
            self.fs
                .remove_file(&self.dir.join(segment_name(*later_base)))?;
            self.segments.remove(later_base);
        }
        if !later.is_empty() {
            self.fs.sync_dir(&self.dir)?;
        }
        if let Some(segment) = self.segments.get_mut(&base) {
            segment.file.set_len(offset)?;
            segment.file.sync_data()?;
            segment.len = offset;
        }
        self.entries.split_off(&index);
        self.positions.split_off(&index);
        Ok(())
    }

    /// Forgets the entries up to `log_id` (a snapshot holds them): the purged id is durable
    /// first, then segments wholly below it are removed.
    pub(crate) fn purge(&mut self, log_id: LogId<NodeId>) -> io::Result<()> {
        let json = serde_json::to_vec(&log_id).map_err(io::Error::other)?;
        write_atomically(&*self.fs, &self.dir, PURGED_FILE, &json)?;
        self.purged = Some(log_id);
        self.entries = self.entries.split_off(&(log_id.index + 1));
        self.positions = self.positions.split_off(&(log_id.index + 1));
        // A segment can go when the next one starts at or before the first kept index.
        let bases: Vec<u64> = self.segments.keys().copied().collect();
        let mut removed = false;
        for pair in bases.windows(2) {
            if pair[1] <= log_id.index + 1 {
                self.fs.remove_file(&self.dir.join(segment_name(pair[0])))?;
                self.segments.remove(&pair[0]);
                removed = true;
            }
        }
        if removed {
            self.fs.sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};
    use runnel_storage::sim::{ManualClock, SimFileSystem};

    fn entry(term: u64, index: u64) -> MetadataEntry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(log: &MetadataLog) -> Vec<u64> {
        log.entries(..).iter().map(|e| e.log_id.index).collect()
    }

    fn sim() -> SimFileSystem {
        SimFileSystem::new(Arc::new(ManualClock::new(0)))
    }

    #[test]
    fn appended_entries_and_votes_survive_a_power_cut() -> io::Result<()> {
        let fs = sim();
        let dir = Path::new("/data/__cluster_metadata");
        let mut log = MetadataLog::open(Arc::new(fs.clone()), dir)?;
        log.append(vec![entry(1, 0), entry(1, 1), entry(1, 2)])?;
        log.save_vote(&Vote::new(3, 2))?;
        for seed in 0..20 {
            let log = MetadataLog::open(Arc::new(fs.crash(seed)), dir)?;
            assert_eq!(indexes(&log), vec![0, 1, 2]);
            assert_eq!(log.vote(), Some(Vote::new(3, 2)));
        }
        Ok(())
    }

    #[test]
    fn an_entry_torn_by_a_crash_is_cut_off_and_the_log_goes_on() -> io::Result<()> {
        let fs = sim();
        let dir = Path::new("/data/__cluster_metadata");
        let mut log = MetadataLog::open(Arc::new(fs.clone()), dir)?;
        log.append(vec![entry(1, 0), entry(1, 1), entry(1, 2)])?;
        let path = dir.join(segment_name(0));
        let mut bytes = fs.contents(&path)?;
        let whole = bytes.len();
        bytes.extend_from_slice(&frame(&entry(1, 3))?);
        for cut in whole + 1..bytes.len() {
            fs.put(&path, &bytes[..cut])?;
            let mut reopened = MetadataLog::open(Arc::new(fs.clone()), dir)?;
            assert_eq!(indexes(&reopened), vec![0, 1, 2], "cut at {cut}");
            reopened.append(vec![entry(2, 3)])?;
            let again = MetadataLog::open(Arc::new(fs.clone()), dir)?;
            assert_eq!(indexes(&again), vec![0, 1, 2, 3]);
        }
        Ok(())
    }

    #[test]
    fn a_tail_of_zeros_is_torn_not_corrupt() -> io::Result<()> {
        let fs = sim();
        let dir = Path::new("/m");
        let mut log = MetadataLog::open(Arc::new(fs.clone()), dir)?;
        log.append(vec![entry(1, 0)])?;
        let path = dir.join(segment_name(0));
        let mut bytes = fs.contents(&path)?;
        bytes.extend_from_slice(&[0; 64]);
        fs.put(&path, &bytes)?;
        let mut reopened = MetadataLog::open(Arc::new(fs.clone()), dir)?;
        assert_eq!(indexes(&reopened), vec![0]);
        reopened.append(vec![entry(1, 1)])?;
        assert_eq!(indexes(&MetadataLog::open(Arc::new(fs), dir)?), vec![0, 1]);
        Ok(())
    }

    #[test]
    fn corruption_in_the_middle_of_the_last_segment_refuses_to_open() -> io::Result<()> {
        let fs = sim();
        let dir = Path::new("/m");
        let mut log = MetadataLog::open(Arc::new(fs.clone()), dir)?;
        log.append(vec![entry(1, 0)])?;
        log.append(vec![entry(1, 1)])?;
        log.append(vec![entry(1, 2)])?;
        let path = dir.join(segment_name(0));
        let mut bytes = fs.contents(&path)?;
        // A byte of the second frame's payload flips: the third frame still follows it.
        let second = frame(&entry(1, 0))?.len() + FRAME_HEADER + 3;
        bytes[second] ^= 0x01;
        fs.put(&path, &bytes)?;
        let error = MetadataLog::open(Arc::new(fs.clone()), dir).err();
        assert_eq!(error.map(|e| e.kind()), Some(io::ErrorKind::InvalidData));
        assert_eq!(fs.contents(&path)?, bytes, "nothing was cut");
        Ok(())
    }

    #[test]
    fn corruption_before_the_tail_refuses_to_open() -> io::Result<()> {
        let fs = sim();
        let dir = Path::new("/m");
        let mut log = MetadataLog::open(Arc::new(fs.clone()), dir)?;
        log.append(vec![entry(1, 0)])?;
        // Force a second segment by writing one by hand after the first.
        let second = frame(&entry(1, 1))?;
        fs.put(&dir.join(segment_name(1)), &second)?;
        let path = dir.join(segment_name(0));
        let mut bytes = fs.contents(&path)?;
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF;
        fs.put(&path, &bytes)?;
        let error = MetadataLog::open(Arc::new(fs.clone()), dir).err();
        assert_eq!(error.map(|e| e.kind()), Some(io::ErrorKind::InvalidData));
        Ok(())
    }

    #[test]
    fn truncation_and_purge_keep_the_log_consecutive() -> io::Result<()> {
        let fs = sim();
        let dir = Path::new("/m");
        let mut log = MetadataLog::open(Arc::new(fs.clone()), dir)?;
        log.append((0..=5).map(|i| entry(1, i)).collect())?;
        log.truncate(4)?;
        log.append(vec![entry(2, 4)])?;
        let reopened = MetadataLog::open(Arc::new(fs.clone()), dir)?;
        assert_eq!(indexes(&reopened), vec![0, 1, 2, 3, 4]);
        assert_eq!(reopened.last_log_id().map(|id| id.leader_id.term), Some(2));
        log.purge(LogId::new(CommittedLeaderId::new(2, 1), 4))?;
        let reopened = MetadataLog::open(Arc::new(fs.clone()), dir)?;
        assert_eq!(indexes(&reopened), Vec::<u64>::new());
        assert_eq!(reopened.last_log_id().map(|id| id.index), Some(4));
        let mut log = reopened;
        log.append(vec![entry(2, 5)])?;
        assert_eq!(indexes(&MetadataLog::open(Arc::new(fs), dir)?), vec![5]);
        Ok(())
    }
}
