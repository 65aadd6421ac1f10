//! Producer ids for InitProducerId, handed out from blocks the controller commits to the
//! metadata log before handing them out (Kafka's AllocateProducerIds), so that no two brokers
//! and no two lives of one broker share an id. A spare block is fetched ahead (`cluster`'s
//! refill task), so allocation never waits on the network; with none at hand it answers that
//! the coordinator is loading, which clients retry.
//!
//! A single node of old made the end of each block durable in `producer-ids` in its data
//! directory; [`durable_end`] reads it, so that the cluster that adopts the directory hands
//! out only ids above it.

use std::path::Path;
use std::sync::Mutex;

use kafka_protocol::error::ResponseError;
use runnel_storage::fs::read_optional;
use runnel_storage::FileSystem;

/// Ids per block: Kafka's `ProducerIdsBlock` size.
pub(crate) const BLOCK_SIZE: i64 = 1000;

const FILE: &str = "producer-ids";

/// The allocator.
#[derive(Debug, Default)]
pub(crate) struct ProducerIds {
    state: Mutex<Block>,
    /// The next block from the controller, once fetched.
    spare: Mutex<Option<Block>>,
    /// Wakes the refill task when the spare block is taken.
    pub(crate) spare_taken: tokio::sync::Notify,
}

/// No id could be handed out: no block from the controller yet.
#[derive(Debug, thiserror::Error)]
#[error("no producer id block from the controller yet")]
pub(crate) struct NoBlockYet;

impl NoBlockYet {
    /// What the client is told: retry (just after start, the first block is on its way).
    pub(crate) fn code(&self) -> ResponseError {
        ResponseError::CoordinatorLoadInProgress
    }

    /// Logs the refusal, quietly: the client retries.
    pub(crate) fn report(&self) {
        tracing::debug!(error = %self, "cannot allocate a producer id yet");
    }
}

/// What is left of the current block: ids `next..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Block {
    next: i64,
    end: i64,
}

impl ProducerIds {
    /// Whether the refill task should fetch a block.
    pub(crate) fn wants_block(&self) -> bool {
        lock(&self.spare).is_none()
    }

    /// A block the controller committed: ids `first..first + count`.
    pub(crate) fn add_block(&self, first: i64, count: i64) {
        *lock(&self.spare) = Some(Block {
            next: first,
            end: first.saturating_add(count),
        });
    }

    /// A producer id never handed out before in this cluster.
    pub(crate) fn allocate(&self) -> Result<i64, NoBlockYet> {
        let mut block = lock(&self.state);
        if block.next == block.end {
            *block = lock(&self.spare).take().ok_or(NoBlockYet)?;
            self.spare_taken.notify_one();
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
    use runnel_storage::fs::write_atomically;
    use runnel_storage::sim::{ManualClock, SimFileSystem};
    use std::sync::Arc;

    #[test]
    fn ids_come_from_the_controllers_blocks_only() {
        let ids = ProducerIds::default();
        assert!(ids.allocate().is_err(), "no block yet");
        assert!(ids.wants_block());
        ids.add_block(5000, 2);
        assert!(!ids.wants_block());
        assert_eq!(ids.allocate().ok(), Some(5000));
        assert!(ids.wants_block(), "the spare is in use: fetch the next");
        assert_eq!(ids.allocate().ok(), Some(5001));
        assert!(ids.allocate().is_err(), "the block is used up");
    }

    #[test]
    fn a_single_nodes_durable_end_is_read_or_refused() {
        let fs = SimFileSystem::new(Arc::new(ManualClock::new(0)));
        let dir = Path::new("data");
        runnel_storage::fs::create_dir_durably(&fs, dir).unwrap();
        assert_eq!(durable_end(&fs, dir), Ok(0), "none made");
        write_atomically(&fs, dir, FILE, b"3000\n").unwrap();
        assert_eq!(durable_end(&fs, dir), Ok(3000));
        write_atomically(&fs, dir, FILE, b"not a number").unwrap();
        assert!(durable_end(&fs, dir).is_err(), "guessing could reuse ids");
    }
}
