//! Producer ids for InitProducerId, handed out from blocks of [`BLOCK_SIZE`]. Before the first
//! id of a block is given out, the block's end is made durable (`producer-ids` in the data
//! directory), and a start resumes from the last durable end: a crash skips the rest of a
//! block, but no id is ever handed out twice. In the cluster the blocks will come from the
//! metadata quorum (Kafka's AllocateProducerIds); only [`ProducerIds::open`] and the block
//! write change then.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
        let path = dir.join(FILE);
        let end = match read_optional(&*fs, &path).map_err(|error| error.to_string())? {
            None => 0,
            Some(bytes) => String::from_utf8_lossy(&bytes)
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|end| *end >= 0)
                .ok_or_else(|| {
                    // Guessing could hand out ids already in use: an operator must look.
                    format!(
                        "{} does not hold a producer id; restore it, or write an id above \
                         every producer id in use",
                        path.display()
                    )
                })?,
        };
        Ok(ProducerIds {
            fs,
            dir: dir.to_path_buf(),
            state: Mutex::new(Block { next: end, end }),
        })
    }

    /// A producer id never handed out before, by this data directory.
    pub(crate) fn allocate(&self) -> std::io::Result<i64> {
        let mut block = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
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
