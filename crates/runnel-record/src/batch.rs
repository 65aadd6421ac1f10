//! The record batch header (magic v2) and the few in-place rewrites the broker performs.
//!
//! Layout (big-endian), from Kafka's protocol guide:
//! ```text
//! 0  base_offset i64            | not covered by the CRC;
//! 8  batch_length i32           | rewritten by the broker
//! 12 partition_leader_epoch i32 |
//! 16 magic i8
//! 17 crc u32 (CRC32C of bytes 21..)
//! 21 attributes i16
//! 23 last_offset_delta i32
//! 27 base_timestamp i64
//! 35 max_timestamp i64
//! 43 producer_id i64
//! 51 producer_epoch i16
//! 53 base_sequence i32
//! 57 records_count i32
//! 61 records...
//! ```

use std::fmt;

/// Bytes before `batch_length` counts: base offset and the length field itself.
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed batch header, up to the first record.
pub const BATCH_HEADER_LEN: usize = 61;
/// The only record format this broker stores.
pub const MAGIC_V2: i8 = 2;

const PARTITION_LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
/// Attributes bit of a batch written in a transaction.
pub const TRANSACTIONAL_BIT: i16 = 0x10;
/// Attributes bit of a control batch (a transaction marker).
pub const CONTROL_BIT: i16 = 0x20;

/// Why a batch was refused. Each maps to one Kafka error code in the broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Fewer bytes than the header or the declared length needs.
    #[error("record batch truncated: needs {needed} bytes, has {available}")]
    Truncated { needed: usize, available: usize },
    /// A batch length that cannot hold a header, or that is negative.
    #[error("record batch length {0} is invalid")]
    InvalidLength(i32),
    /// Magic v0 and v1 (the old message sets) are not accepted.
    #[error("record batch magic {0} is not supported (only magic 2)")]
    UnsupportedMagic(i8),
    /// The stored CRC does not match the bytes.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CorruptCrc { stored: u32, computed: u32 },
    /// The header is self-inconsistent or a record inside does not parse.
    #[error("invalid record batch: {0}")]
    Invalid(&'static str),
    /// As `Invalid`, with details of this batch.
    #[error("invalid record batch: {0}")]
    Malformed(String),
    /// A record's timestamp lies outside what the topic accepts
    /// (`message.timestamp.before.max.ms`, `message.timestamp.after.max.ms`).
    #[error(
        "timestamp {timestamp} of the record at offset delta {offset_delta} is out of range: \
         it must lie within [{lowest}, {highest}]"
    )]
    TimestampOutOfRange {
        timestamp: i64,
        offset_delta: i32,
        lowest: i64,
        highest: i64,
    },
    /// Compressed records would expand beyond the decompression budget.
    #[error("records decompress to more than {limit} bytes")]
    DecompressedTooLarge { limit: u64 },
}

/// The codec named in a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn from_attributes(attributes: i16) -> Result<Self, RecordError> {
        match attributes & COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            _ => Err(RecordError::Invalid("unknown compression codec")),
        }
    }
}

impl Compression {
    /// Every codec, in the order of their attribute numbers.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec's number in the low three bits of a batch's attributes.
    pub(crate) fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        })
    }
}

/// Whose clock the batch's timestamps are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// The parsed fixed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordBatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl RecordBatchHeader {
    /// Bytes the whole batch takes, header included.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// The offset of the batch's last record. Saturates: a client's batch may carry any base
    /// offset (the broker overwrites it), and reading one must not overflow.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The offset after the batch: where the next batch starts.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    pub fn compression(&self) -> Compression {
        // Validated when the header was parsed.
        Compression::from_attributes(self.attributes).unwrap_or(Compression::None)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// The sequence number of the batch's last record, for a batch with a producer id.
    pub fn last_sequence(&self) -> i32 {
        last_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// The sequence number `offset_delta` records after `base_sequence`. Sequences wrap from
/// `i32::MAX` to 0, as Kafka's producers number them.
pub fn last_sequence(base_sequence: i32, offset_delta: i32) -> i32 {
    let sum = i64::from(base_sequence) + i64::from(offset_delta.max(0));
    // i32::MAX is followed by 0: sequences take i32::MAX + 1 values.
    (sum % (i64::from(i32::MAX) + 1)) as i32
}

/// Operations on one encoded batch held in a byte slice.
#[derive(Debug)]
pub struct RecordBatch;

impl RecordBatch {
    /// Parses the header of the batch at the front of `bytes` without checking the CRC.
    /// Checks that the declared length is sane and that `bytes` holds the whole batch.
    pub fn parse_header(bytes: &[u8]) -> Result<RecordBatchHeader, RecordError> {
        if bytes.len() < LOG_OVERHEAD + 5 {
            return Err(RecordError::Truncated {
                needed: LOG_OVERHEAD + 5,
                available: bytes.len(),
            });
        }
        // Magic comes first: a v0/v1 message set has a different layout past this byte.
        let magic = bytes[MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(RecordError::UnsupportedMagic(magic));
        }
        let batch_length = read_i32(bytes, 8);
        if batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(RecordError::InvalidLength(batch_length));
        }
        let total = LOG_OVERHEAD + batch_length as usize;
        if bytes.len() < total {
            return Err(RecordError::Truncated {
                needed: total,
                available: bytes.len(),
            });
        }
        let header = RecordBatchHeader {
            base_offset: read_i64(bytes, 0),
            batch_length,
            partition_leader_epoch: read_i32(bytes, PARTITION_LEADER_EPOCH_AT),
            magic,
            crc: read_u32(bytes, CRC_AT),
            attributes: read_i16(bytes, ATTRIBUTES_AT),
            last_offset_delta: read_i32(bytes, 23),
            base_timestamp: read_i64(bytes, 27),
            max_timestamp: read_i64(bytes, MAX_TIMESTAMP_AT),
            producer_id: read_i64(bytes, 43),
            producer_epoch: read_i16(bytes, 51),
            base_sequence: read_i32(bytes, 53),
            records_count: read_i32(bytes, 57),
        };
        Compression::from_attributes(header.attributes)?;
        if header.last_offset_delta < 0 || header.records_count < 0 {
            return Err(RecordError::Invalid(
                "negative last offset delta or record count",
            ));
        }
        Ok(header)
    }

    /// Parses the header and checks the CRC: the full check for a batch that came from a
    /// client or from disk.
    pub fn validate(bytes: &[u8]) -> Result<RecordBatchHeader, RecordError> {
        let header = Self::parse_header(bytes)?;
        let computed = crc32c::crc32c(&bytes[ATTRIBUTES_AT..header.total_len()]);
        if computed != header.crc {
            return Err(RecordError::CorruptCrc {
                stored: header.crc,
                computed,
            });
        }
        Ok(header)
    }

    /// Splits a buffer of concatenated batches, validating each (length, magic, CRC).
    /// Fails on the first bad batch, or on trailing bytes that are not a whole batch.
    pub fn validate_all(bytes: &[u8]) -> Result<Vec<RecordBatchHeader>, RecordError> {
        let mut headers = Vec::new();
        let mut position = 0;
        while position < bytes.len() {
            let header = Self::validate(&bytes[position..])?;
            position += header.total_len();
            headers.push(header);
        }
        Ok(headers)
    }

    /// Writes the base offset. It lies outside the CRC, so the CRC stays valid.
    pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
        batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    }

    /// Writes the partition leader epoch (outside the CRC).
    pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
        batch[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4]
            .copy_from_slice(&epoch.to_be_bytes());
    }

    /// Marks the batch as LogAppendTime with `timestamp_ms` as its max timestamp, as Kafka
    /// does for topics with `message.timestamp.type=LogAppendTime`, and recomputes the CRC.
    /// `batch` must hold exactly one whole, validated batch.
    pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) {
        let attributes = read_i16(batch, ATTRIBUTES_AT) | TIMESTAMP_TYPE_BIT;
        batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        Self::set_max_timestamp(batch, timestamp_ms);
    }

    /// Writes the max timestamp, as Kafka's validator does with the records' true maximum, and
    /// recomputes the CRC. `batch` must hold exactly one whole, validated batch.
    pub fn set_max_timestamp(batch: &mut [u8], timestamp_ms: i64) {
        batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
        Self::update_crc(batch);
    }

    /// Stamps an idempotent producer's id, epoch and first sequence number, and the
    /// transactional bit for a transactional producer, as a producer does when it sends the
    /// batch, and recomputes the CRC. `batch` must hold exactly one whole batch.
    pub fn set_producer(
        batch: &mut [u8],
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        transactional: bool,
    ) {
        let mut attributes = read_i16(batch, ATTRIBUTES_AT) & !TRANSACTIONAL_BIT;
        if transactional {
            attributes |= TRANSACTIONAL_BIT;
        }
        batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        batch[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&producer_id.to_be_bytes());
        batch[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2]
            .copy_from_slice(&producer_epoch.to_be_bytes());
        batch[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&base_sequence.to_be_bytes());
        Self::update_crc(batch);
    }

    /// Rebuilds one whole, validated batch with its records section compressed by `codec`
    /// instead (the topic's `compression.type`). Every header field but the codec bits, the
    /// length and the CRC is kept: producer id, epoch and sequence, the transactional bit,
    /// timestamps. Decompression draws on `budget`.
    pub fn recompress(
        batch: &[u8],
        codec: Compression,
        budget: &crate::DecompressionBudget,
    ) -> Result<Vec<u8>, RecordError> {
        let header = Self::parse_header(batch)?;
        let section = &batch[BATCH_HEADER_LEN..header.total_len()];
        let plain = budget.decompress(header.compression(), section)?;
        let section = crate::compress(codec, &plain);
        let batch_length = i32::try_from(BATCH_HEADER_LEN - LOG_OVERHEAD + section.len())
            .map_err(|_| RecordError::Invalid("recompressed batch exceeds 2 GiB"))?;
        let mut out = Vec::with_capacity(BATCH_HEADER_LEN + section.len());
        out.extend_from_slice(&batch[..BATCH_HEADER_LEN]);
        out[8..12].copy_from_slice(&batch_length.to_be_bytes());
        let attributes = (header.attributes & !COMPRESSION_MASK) | codec.attribute_bits();
        out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        out.extend_from_slice(&section);
        Self::update_crc(&mut out);
        Ok(out)
    }

    fn update_crc(batch: &mut [u8]) {
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

fn read_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn read_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    read_i32(bytes, at) as u32
}

fn read_i64(bytes: &[u8], at: usize) -> i64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[at..at + 8]);
    i64::from_be_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BatchBuilder;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        BatchBuilder::new(1000)
            .record(Some(b"k1"), Some(b"v1"), &[])
            .record(
                None,
                Some(b"v2"),
                &[(b"h".as_slice(), Some(b"x".as_slice()))],
            )
            .build()
    }

    #[test]
    fn header_fields_round_trip() {
        let batch = sample();
        let header = RecordBatch::validate(&batch).unwrap();
        assert_eq!(header.records_count, 2);
        assert_eq!(header.last_offset_delta, 1);
        assert_eq!(header.total_len(), batch.len());
        assert_eq!(header.compression(), Compression::None);
        assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
    }

    #[test]
    fn a_stamped_producer_is_read_back_with_a_valid_crc() {
        let mut batch = sample();
        RecordBatch::set_producer(&mut batch, 42, 3, i32::MAX, true);
        let header = RecordBatch::validate(&batch).unwrap();
        assert_eq!((header.producer_id, header.producer_epoch), (42, 3));
        assert!(header.is_transactional());
        assert_eq!(
            (header.base_sequence, header.last_sequence()),
            (i32::MAX, 0)
        );
        assert_eq!(last_sequence(5, 0), 5);
    }

    #[test]
    fn flipped_payload_bit_is_a_crc_error() {
        let mut batch = sample();
        let last = batch.len() - 1;
        batch[last] ^= 1;
        assert!(matches!(
            RecordBatch::validate(&batch),
            Err(RecordError::CorruptCrc { .. })
        ));
    }

    #[test]
    fn old_magic_is_refused() {
        let mut batch = sample();
        batch[MAGIC_AT] = 1;
        assert_eq!(
            RecordBatch::validate(&batch),
            Err(RecordError::UnsupportedMagic(1))
        );
    }

    #[test]
    fn offset_and_epoch_rewrites_keep_crc() {
        let mut batch = sample();
        RecordBatch::set_base_offset(&mut batch, 77);
        RecordBatch::set_partition_leader_epoch(&mut batch, 3);
        let header = RecordBatch::validate(&batch).unwrap();
        assert_eq!((header.base_offset, header.partition_leader_epoch), (77, 3));
        assert_eq!(header.last_offset(), 78);
    }

    #[test]
    fn log_append_time_rewrite_recomputes_crc() {
        let mut batch = sample();
        RecordBatch::set_log_append_time(&mut batch, 5555);
        let header = RecordBatch::validate(&batch).unwrap();
        assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(header.max_timestamp, 5555);
    }

    proptest! {
        #[test]
        fn every_truncation_is_refused(cut in 0usize..200) {
            let batch = sample();
            let cut = cut.min(batch.len() - 1);
            prop_assert!(RecordBatch::validate(&batch[..cut]).is_err());
        }

        #[test]
        fn garbage_never_panics(bytes: Vec<u8>) {
            let _ = RecordBatch::validate_all(&bytes);
        }
    }
}
