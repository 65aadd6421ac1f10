//! One partition's log on disk, in Kafka's layout: segment files of record batches exactly as
//! produced, a sparse offset index and a time index per segment, a checkpoint of the log start
//! offset and recovery point, and the leader epoch cache.
//!
//! [`PartitionLog`] owns appends (offset assignment, segment rolling, index upkeep, the
//! idempotent producers' sequence checks and duplicate detection), reads by
//! offset and by timestamp, crash recovery, retention, DeleteRecords, replica truncation and
//! flush bookkeeping. It does synchronous file I/O through the [`FileSystem`] trait (the real
//! disk, or [`sim::SimFileSystem`], which loses what a power cut loses) and takes the time as an
//! argument; it does not lock (the broker holds each log behind a mutex and calls it from I/O
//! threads), validate client batches (the broker does, with `runnel-record`), or know about
//! high watermarks, ISR or transactions.
//!
//! Slow work is split off so it can run outside the partition lock: [`PartitionLog::read`]
//! returns a [`FetchSlice`] to copy afterwards, and [`PartitionLog::unflushed`] returns a
//! [`FlushHandle`] to fsync afterwards, reported back with [`PartitionLog::mark_flushed`].
//!
//! Partition directory:
//! ```text
//! 00000000000000000000.log        batches, back to back
//! 00000000000000000000.index      (relative offset u32, position u32), big-endian
//! 00000000000000000000.timeindex  (timestamp i64, relative offset u32), big-endian
//! partition.checkpoint            log start offset, recovery point (rewritten periodically)
//! leader-epoch-checkpoint         (epoch, start offset) entries
//! 00000000000000000000.snapshot   producer state as of that offset (at each roll and clean close)
//! cleaner.checkpoint              offset below which compaction has cleaned the log
//! 00000000000000000000.log.cleaned / .log.swap   a compaction pass in progress (see `cleaner`)
//! .clean-shutdown                 written by close(), removed by open()
//! ```
//!
//! ```
//! use std::sync::Arc;
//! use runnel_record::BatchBuilder;
//! use runnel_storage::{FileHandles, LogConfig, OsFileSystem, PartitionLog};
//!
//! let dir = tempfile::tempdir()?;
//! let handles = FileHandles::new(1024);
//! let mut log = PartitionLog::open(Arc::new(OsFileSystem), handles, dir.path(), LogConfig::default(), 1_000)?;
//! let mut batch = BatchBuilder::new(1_000).record(None, Some(b"hello"), &[]).build();
//! let info = log.append(&mut batch, 0, 1_000)?;
//! assert_eq!((info.base_offset, log.log_end_offset()), (0, 1));
//!
//! let slice = log.read(0, log.log_end_offset(), 1 << 20, true)?;
//! assert_eq!(slice.read()?.as_ref(), &batch[..]);
//! log.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod checkpoint;
pub mod cleaner;
mod config;
mod epoch;
mod error;
pub mod fs;
mod handles;
mod index;
mod ledger;
mod log;
mod producers;
mod segment;
pub mod sim;

pub use config::{
    LogConfig, DEFAULT_FLUSH_MS, DEFAULT_INDEX_INTERVAL_BYTES, DEFAULT_RETENTION_MS,
    DEFAULT_SEGMENT_BYTES, DEFAULT_SEGMENT_MS,
};
pub use epoch::{EpochEntry, LeaderEpochCache};
pub use error::StorageError;
pub use fs::{Clock, DataFile, FileSystem, OpenMode, OsFileSystem, SystemClock};
pub use handles::FileHandles;
pub use ledger::SyncLedgerFileSystem;
pub use log::{AppendInfo, FetchSlice, FlushHandle, PartitionLog, PARTITION_METADATA};
pub use producers::{
    ProducerBatch, ProducerEntry, ProducerError, ProducerStates, BATCHES_KEPT,
    DEFAULT_PRODUCER_ID_EXPIRATION_MS,
};

#[cfg(test)]
mod tests;
