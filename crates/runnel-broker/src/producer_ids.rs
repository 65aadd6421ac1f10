//! Producer ids for InitProducerId, handed out from blocks of [`BLOCK_SIZE`].
//!
//! - On a one-node broker, before the first id of a block is given out, the block's end is
//!   made durable (`producer-ids` in the data directory), and a start resumes from the last
//!   durable end: a crash skips the rest of a block, but no id is ever handed out twice.
//! - In a cluster, blocks come from the controller (Kafka's AllocateProducerIds), which
//!   commits each to the metadata log before handing it out, so no two brokers and no two
//!   lives of one broker share an id. A spare block is fetched ahead (`cluster`'s refill
//!   task), so allocation never waits on the network; with none at hand it answers that the
//!   coordinator is loading, which clients retry.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kafka_protocol::error::ResponseError;
use runnel_storage::fs::{read_optional, write_atomically};
use runnel_storage::FileSystem;

/// Ids per durable block: Kafka's `ProducerIdsBlock` size.
pub(crate) const BLOCK_SIZE: i64 = 1000;

const FILE: &str = "producer-ids";

/// The allocator. Blocking (a new block writes a file): call it on the I/O pool.
#[derive(Debug)]
pub(crate) struct ProducerIds {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    state: Mutex<Block>,
    /// In a cluster, the next block from the controller, once fetched.
    spare: Mutex<Option<Block>>,
    from_controller: bool,
    /// Wakes the refill task when the spare block is taken.
    pub(crate) spare_taken: tokio::sync::Notify,
}

/// Why no id could be handed out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AllocateError {
    #[error("cannot make the producer id block durable: {0}")]
    Storage(#[from] std::io::Error),
    #[error("no producer id block from the controller yet")]
    NoBlockYet,
}

impl AllocateError {
    pub(crate) fn code(&self) -> ResponseError {
        match self {
            AllocateError::Storage(_) => ResponseError::KafkaStorageError,
            AllocateError::NoBlockYet => ResponseError::CoordinatorLoadInProgress,
        }
    }

    /// Logs the refusal: a disk error is worth a warning; waiting for the first block (just
    /// after start, which the client retries) is not.
    pub(crate) fn report(&self) {
        match self {
            AllocateError::Storage(_) => {
                tracing::warn!(error = %self, "cannot allocate a producer id")
            }
            AllocateError::NoBlockYet => {
                tracing::debug!(error = %self, "cannot allocate a producer id yet")
            }
        }
    }
}

/// What is left of the current block: ids `next..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    next: i64,
    end: i64,
}

impl ProducerIds {
    /// Resumes after the last block made durable (from 0 in a new data directory).
    pub(crate) fn open(fs: Arc<dyn FileSystem>, dir: &Path) -> Result<Self, String> {
        let end = durable_end(&*fs, dir)?;
        Ok(ProducerIds {
            fs,
            dir: dir.to_path_buf(),
            state: Mutex::new(Block { next: end, end }),
            spare: Mutex::new(None),
            from_controller: false,
            spare_taken: tokio::sync::Notify::new(),
        })
    }

    /// An allocator whose blocks come from the controller (see [`Self::add_block`]).
    pub(crate) fn from_controller(fs: Arc<dyn FileSystem>, dir: &Path) -> Self {
        ProducerIds {
            fs,
            dir: dir.to_path_buf(),
            state: Mutex::new(Block { next: 0, end: 0 }),
            spare: Mutex::new(None),
            from_controller: true,
            spare_taken: tokio::sync::Notify::new(),
        }
    }

    /// Whether the refill task should fetch a block.
    pub(crate) fn wants_block(&self) -> bool {
        self.from_controller && lock(&self.spare).is_none()
    }

    /// A block the controller committed: ids `first..first + count`.
    pub(crate) fn add_block(&self, first: i64, count: i64) {
        *lock(&self.spare) = Some(Block {
            next: first,
            end: first.saturating_add(count),
        });
    }

    /// A producer id never handed out before, in this cluster or by this data directory.
    pub(crate) fn allocate(&self) -> Result<i64, AllocateError> {
        let mut block = lock(&self.state);
        if block.next == block.end && self.from_controller {
            *block = lock(&self.spare).take().ok_or(AllocateError::NoBlockYet)?;
            self.spare_taken.notify_one();
        }
        if block.next == block.end {
            let end = block
                .end
                .checked_add(BLOCK_SIZE)
                .ok_or_else(|| std::io::Error::other("every producer id has been handed out"))?;
            write_atomically(&*self.fs, &self.dir, FILE, format!("{end}\n").as_bytes())?;
            block.end = end;
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }
}

/// The first producer id a one-node broker in `dir` never handed out: the end of its last
/// durable block, 0 if it never made one.
pub(crate) fn durable_end(fs: &dyn FileSystem, dir: &Path) -> Result<i64, String> {
    let path = dir.join(FILE);
    match read_optional(fs, &path).map_err(|error| error.to_string())? {
        None => Ok(0),
        Some(bytes) => String::from_utf8_lossy(&bytes)
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|end| *end >= 0)
            .ok_or_else(|| {
                // Guessing could hand out ids already in use: an operator must look.
                format!(
                    "{} does not hold a producer id; restore it, or write an id above every \
                     producer id in use",
                    path.display()
                )
            }),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each critical section is a plain read or write of two numbers.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_storage::sim::{ManualClock, SimFileSystem};
    use runnel_storage::FileSystem;

    #[test]
    fn ids_are_never_handed_out_twice_across_crashes() {
        let fs = SimFileSystem::new(Arc::new(ManualClock::new(0)));
        let dir = Path::new("data");
        runnel_storage::fs::create_dir_durably(&fs, dir).unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut current = fs.clone();
        for seed in 0..5 {
            let ids = ProducerIds::open(Arc::new(current.clone()), dir).unwrap();
            for _ in 0..(BLOCK_SIZE + 7) {
                let id = ids.allocate().unwrap();
                assert!(seen.insert(id), "producer id {id} handed out twice");
            }
            current = current.crash(seed);
        }
    }

    #[test]
    fn an_unreadable_file_stops_the_start() {
        let fs = SimFileSystem::new(Arc::new(ManualClock::new(0)));
        let dir = Path::new("data");
        fs.create_dir_all(dir).unwrap();
        write_atomically(&fs, dir, FILE, b"not a number").unwrap();
        assert!(ProducerIds::open(Arc::new(fs), dir).is_err());
    }
}
