//! Kafka record batches (magic v2), as they travel on the wire and lie on disk.
//!
//! This crate owns the byte layout of a record batch: it parses and validates the 61-byte batch
//! header, checks the CRC32C, rewrites the fields the broker is allowed to change (base offset,
//! partition leader epoch, log-append time) and encodes/decodes uncompressed records. It does no
//! I/O and never re-encodes a batch a client sent: the broker stores batches as they came.
//!
//! It also checks a client's batch record by record before the broker stores it, as Kafka's
//! `LogValidator` does ([`RecordPolicy::validate`]), decompressing within a
//! [`DecompressionBudget`] so that a few KiB cannot expand into gigabytes, and rebuilds a batch
//! with the topic's codec ([`RecordBatch::recompress`]).
//!
//! Decompression (gzip, snappy, lz4, zstd; pure Rust, streamed and capped) is here for reading
//! records back, and compression with the same codecs for producers building batches
//! ([`BatchBuilder::compression`]). Where a batch is stored is not this crate's.
//!
//! ```
//! use runnel_record::{BatchBuilder, RecordBatch};
//!
//! let mut batch = BatchBuilder::new(1_700_000_000_000)
//!     .record(Some(b"key"), Some(b"value"), &[])
//!     .build();
//! let header = RecordBatch::validate(&batch).unwrap();
//! assert_eq!(header.records_count, 1);
//! RecordBatch::set_base_offset(&mut batch, 42);
//! assert_eq!(RecordBatch::validate(&batch).unwrap().base_offset, 42);
//! ```

mod batch;
mod compress;
mod compression;
pub mod control;
mod records;
mod validate;
mod varint;
mod walk;

pub use batch::{
    last_sequence, Compression, RecordBatch, RecordBatchHeader, RecordError, TimestampType,
    BATCH_HEADER_LEN, CONTROL_BIT, LOG_OVERHEAD, MAGIC_V2, TRANSACTIONAL_BIT,
};
pub use compress::compress;
pub use compression::decompress;
pub use control::{ControlType, TransactionMarker};
pub use records::{decode_records, retain_records, BatchBuilder, Record, Retained};
pub use validate::{RecordPolicy, ValidatedBatch, NO_TIMESTAMP};
pub use varint::{decode_varint, decode_varlong, encode_varint, encode_varlong};
pub use walk::{DecompressionBudget, DECOMPRESSED_BATCH_MAX_BYTES};
