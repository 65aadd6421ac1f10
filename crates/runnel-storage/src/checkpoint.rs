//! Small files that are rewritten whole: `partition.checkpoint` (log start offset and recovery
//! point) and `leader-epoch-checkpoint`. A rewrite is atomic: write a temporary file, fsync it,
//! rename it over the old one, fsync the directory; a crash leaves the old or the new version,
//! never a mix.
//!
//! Both are short text files, so an operator can read them:
//! ```text
//! partition.checkpoint        leader-epoch-checkpoint
//! 0                           0
//! <log start> <recovery>      <count>
//!                             <epoch> <start offset>   (one line each)
//! ```

use std::path::Path;

use crate::epoch::EpochEntry;
use crate::error::{IoContext, StorageError};
use crate::fs::{self, FileSystem};

pub(crate) const PARTITION_CHECKPOINT: &str = "partition.checkpoint";
pub(crate) const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
pub(crate) const CLEAN_SHUTDOWN: &str = ".clean-shutdown";
/// How far compaction has cleaned the log (Kafka keeps one `cleaner-offset-checkpoint` per
/// log directory; one per partition keeps partitions independent).
pub(crate) const CLEANER_CHECKPOINT: &str = "cleaner.checkpoint";

/// The offset below which the log was compacted; `None` if never (or unreadable: the next
/// pass then treats the whole log as new, which costs I/O and loses nothing).
pub(crate) fn read_cleaned_up_to(
    fs: &dyn FileSystem,
    dir: &Path,
) -> Result<Option<i64>, StorageError> {
    let Some(text) = read_optional(fs, &dir.join(CLEANER_CHECKPOINT))? else {
        return Ok(None);
    };
    let parsed = text
        .lines()
        .nth(1)
        .filter(|_| text.lines().next() == Some(VERSION))
        .and_then(|line| line.trim().parse::<i64>().ok());
    if parsed.is_none() {
        tracing::warn!(dir = %dir.display(), "ignoring unreadable {CLEANER_CHECKPOINT}");
    }
    Ok(parsed)
}

pub(crate) fn write_cleaned_up_to(
    fs: &dyn FileSystem,
    dir: &Path,
    offset: i64,
) -> Result<(), StorageError> {
    write_atomically(
        fs,
        dir,
        CLEANER_CHECKPOINT,
        format!("{VERSION}\n{offset}\n").as_bytes(),
    )
}
const VERSION: &str = "0";

/// What `partition.checkpoint` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartitionCheckpoint {
    pub(crate) log_start_offset: i64,
    /// Every offset below this was fsynced.
    pub(crate) recovery_point: i64,
}

impl PartitionCheckpoint {
    /// `None` if the file is missing or unreadable; the caller then recovers the whole log,
    /// which is slow but loses nothing.
    pub(crate) fn read(fs: &dyn FileSystem, dir: &Path) -> Result<Option<Self>, StorageError> {
        let Some(text) = read_optional(fs, &dir.join(PARTITION_CHECKPOINT))? else {
            return Ok(None);
        };
        let parsed = (|| {
            let mut lines = text.lines();
            if lines.next()? != VERSION {
                return None;
            }
            let mut fields = lines.next()?.split_whitespace();
            let log_start_offset = fields.next()?.parse().ok()?;
            let recovery_point = fields.next()?.parse().ok()?;
            Some(PartitionCheckpoint {
                log_start_offset,
                recovery_point,
            })
        })();
        if parsed.is_none() {
            tracing::warn!(dir = %dir.display(), "ignoring unreadable {PARTITION_CHECKPOINT}");
        }
        Ok(parsed)
    }

    pub(crate) fn write(&self, fs: &dyn FileSystem, dir: &Path) -> Result<(), StorageError> {
        let text = format!(
            "{VERSION}\n{} {}\n",
            self.log_start_offset, self.recovery_point
        );
        write_atomically(fs, dir, PARTITION_CHECKPOINT, text.as_bytes())
    }
}

/// Reads the leader epoch entries; an empty list if the file is missing. An unreadable file is
/// corruption: guessing epochs could make a follower keep records the leader does not have.
pub(crate) fn read_epochs(
    fs: &dyn FileSystem,
    dir: &Path,
) -> Result<Vec<EpochEntry>, StorageError> {
    let path = dir.join(LEADER_EPOCH_CHECKPOINT);
    let Some(text) = read_optional(fs, &path)? else {
        return Ok(Vec::new());
    };
    let corrupt = |why: &str| StorageError::Corrupt(format!("{}: {why}", path.display()));
    let mut lines = text.lines();
    if lines.next() != Some(VERSION) {
        return Err(corrupt("unknown version"));
    }
    let count: usize = lines
        .next()
        .and_then(|line| line.trim().parse().ok())
        .ok_or_else(|| corrupt("missing entry count"))?;
    let mut entries = Vec::with_capacity(count.min(1024));
    for line in lines {
        let mut fields = line.split_whitespace();
        let epoch = fields.next().and_then(|field| field.parse().ok());
        let start_offset = fields.next().and_then(|field| field.parse().ok());
        match (epoch, start_offset) {
            (Some(epoch), Some(start_offset)) => entries.push(EpochEntry {
                epoch,
                start_offset,
            }),
            _ => return Err(corrupt("malformed entry")),
        }
    }
    if entries.len() != count {
        return Err(corrupt("entry count does not match the entries"));
    }
    Ok(entries)
}

pub(crate) fn write_epochs(
    fs: &dyn FileSystem,
    dir: &Path,
    entries: &[EpochEntry],
) -> Result<(), StorageError> {
    let mut text = format!("{VERSION}\n{}\n", entries.len());
    for entry in entries {
        text.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
    }
    write_atomically(fs, dir, LEADER_EPOCH_CHECKPOINT, text.as_bytes())
}

fn read_optional(fs: &dyn FileSystem, path: &Path) -> Result<Option<String>, StorageError> {
    let bytes = fs::read_optional(fs, path).context(|| format!("reading {}", path.display()))?;
    Ok(bytes.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// [`fs::write_atomically`], with the file named in any error.
pub(crate) fn write_atomically(
    fs: &dyn FileSystem,
    dir: &Path,
    name: &str,
    contents: &[u8],
) -> Result<(), StorageError> {
    fs::write_atomically(fs, dir, name, contents)
        .context(|| format!("writing {}", dir.join(name).display()))
}

/// Makes creations, renames and removals in `dir` durable.
pub(crate) fn sync_dir(fs: &dyn FileSystem, dir: &Path) -> Result<(), StorageError> {
    fs.sync_dir(dir)
        .context(|| format!("fsync of directory {}", dir.display()))
}
