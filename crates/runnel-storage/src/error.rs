//! The storage layer's errors. Each variant is an operating condition the broker maps to a Kafka
//! error code or to taking the partition offline; bugs are assertions, not errors.

use std::io;

use runnel_record::RecordError;

use crate::producers::ProducerError;

/// Why a partition log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file operation failed; `context` names the file and what was being done to it.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A read or DeleteRecords asked for an offset the log does not hold.
    #[error(
        "offset {offset} is out of range: the log holds offsets {log_start_offset} up to \
         (not including) {log_end_offset}"
    )]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// Disk content that recovery cannot repair, such as a bad batch below the recovery point:
    /// data that was fsynced and acknowledged is gone, so truncating would silently lose it.
    #[error("partition log is corrupt: {0}")]
    Corrupt(String),
    /// Replicated batches that do not start where the log ends, or whose offsets go backwards.
    #[error("replicated batches are not contiguous: expected offset {expected}, got {got}")]
    NonContiguous { expected: i64, got: i64 },
    /// Bytes handed to an append that are not whole, well-formed batches.
    #[error("cannot append: {0}")]
    InvalidBatch(#[source] RecordError),
    /// A produced batch that breaks its producer's epoch or sequence.
    #[error("cannot append: {0}")]
    Producer(#[source] ProducerError),
}

/// Attaches a description of the file operation to an I/O error.
pub(crate) trait IoContext<T> {
    fn context(self, describe: impl FnOnce() -> String) -> Result<T, StorageError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, describe: impl FnOnce() -> String) -> Result<T, StorageError> {
        self.map_err(|source| StorageError::Io {
            context: describe(),
            source,
        })
    }
}
