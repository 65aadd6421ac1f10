//! Records inside a batch: building batches, compressed or not (for tests, tools and the
//! client), and decoding them (for validation and for reading back).

use std::ops::ControlFlow;

use crate::batch::{
    Compression, RecordBatch, RecordError, BATCH_HEADER_LEN, CONTROL_BIT, LOG_OVERHEAD, MAGIC_V2,
    TRANSACTIONAL_BIT,
};
use crate::compress::compress;
use crate::varint::{encode_varint, encode_varlong};
use crate::walk::{walk_records, DecompressionBudget, Deltas};

/// One decoded record, with absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Builds one magic-v2 batch with base offset 0: uncompressed with no producer id by default,
/// or compressed and stamped with a producer id, epoch and base sequence for a producer.
///
/// Records are encoded as they are added; [`build`](Self::build) compresses the records
/// section, fills the header and computes the CRC.
///
/// ```
/// use runnel_record::{decode_records, BatchBuilder, Compression, RecordBatch};
///
/// let batch = BatchBuilder::new(1_700_000_000_000)
///     .compression(Compression::Zstd)
///     .producer(7, 0, 42)
///     .record(Some(b"key"), Some(b"value"), &[(b"trace".as_slice(), Some(b"1".as_slice()))])
///     .build();
/// let header = RecordBatch::validate(&batch).unwrap();
/// assert_eq!((header.compression(), header.producer_id, header.base_sequence),
///            (Compression::Zstd, 7, 42));
/// assert_eq!(decode_records(&batch).unwrap()[0].value.as_deref(), Some(&b"value"[..]));
/// ```
#[derive(Debug)]
pub struct BatchBuilder {
    base_timestamp: i64,
    max_timestamp: i64,
    count: i32,
    records: Vec<u8>,
    compression: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    control: bool,
}

impl BatchBuilder {
    /// An empty batch whose record timestamps are deltas from `base_timestamp` (Kafka uses the
    /// first record's timestamp).
    pub fn new(base_timestamp: i64) -> Self {
        BatchBuilder {
            base_timestamp,
            max_timestamp: base_timestamp,
            count: 0,
            records: Vec::new(),
            compression: Compression::None,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            control: false,
        }
    }

    /// Compresses the records section with `codec` when built (see [`compress`](crate::compress)).
    pub fn compression(mut self, codec: Compression) -> Self {
        self.compression = codec;
        self
    }

    /// Stamps the batch for an idempotent or transactional producer: its producer id and epoch,
    /// and the sequence number of the first record (the others follow consecutively).
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Sets the transactional bit of the attributes.
    pub fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    /// Sets the control bit: the batch is a transaction marker (see [`crate::control`]).
    pub fn control(mut self, control: bool) -> Self {
        self.control = control;
        self
    }

    /// Adds a record stamped with the batch's base timestamp.
    pub fn record(
        self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) -> Self {
        let timestamp = self.base_timestamp;
        self.record_at(timestamp, key, value, headers)
    }

    /// Adds a record with its own timestamp.
    pub fn record_at(
        mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) -> Self {
        self.push_record(timestamp, key, value, headers);
        self
    }

    /// Adds a record with its own timestamp, in place: the form for callers that keep a
    /// builder open while records arrive. Header names and values are anything byte-like.
    pub fn push_record<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(N, Option<V>)],
    ) {
        let fields = RecordFields {
            offset_delta: self.count,
            timestamp_delta: timestamp - self.base_timestamp,
            key,
            value,
            headers,
        };
        fields.encode(&mut self.records);
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }

    /// The bytes [`push_record`](Self::push_record) would add for this record, length prefix
    /// included (before compression): what a producer weighs against its batch size.
    pub fn record_encoded_len<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(N, Option<V>)],
    ) -> usize {
        RecordFields {
            offset_delta: self.count,
            timestamp_delta: timestamp - self.base_timestamp,
            key,
            value,
            headers,
        }
        .encoded_len()
    }

    /// Records added so far.
    pub fn record_count(&self) -> i32 {
        self.count
    }

    /// Size of the batch built now without compression: header plus encoded records.
    pub fn uncompressed_len(&self) -> usize {
        BATCH_HEADER_LEN + self.records.len()
    }

    pub fn build(self) -> Vec<u8> {
        let compressed;
        let section = match self.compression {
            Compression::None => &self.records,
            codec => {
                compressed = compress(codec, &self.records);
                &compressed
            }
        };
        let mut attributes = self.compression.attribute_bits();
        if self.transactional {
            attributes |= TRANSACTIONAL_BIT;
        }
        if self.control {
            attributes |= CONTROL_BIT;
        }
        let mut out = Vec::with_capacity(BATCH_HEADER_LEN + section.len());
        out.extend_from_slice(&0i64.to_be_bytes());
        let batch_length = (BATCH_HEADER_LEN - LOG_OVERHEAD + section.len()) as i32;
        out.extend_from_slice(&batch_length.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
        out.push(MAGIC_V2 as u8);
        out.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
        out.extend_from_slice(&attributes.to_be_bytes());
        out.extend_from_slice(&(self.count - 1).max(0).to_be_bytes());
        out.extend_from_slice(&self.base_timestamp.to_be_bytes());
        out.extend_from_slice(&self.max_timestamp.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(section);
        let crc = crc32c::crc32c(&out[21..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out
    }
}

fn bytes_len(bytes: Option<&[u8]>) -> usize {
    match bytes {
        None => 1,
        Some(bytes) => varint_len(bytes.len() as i32) + bytes.len(),
    }
}

fn varint_len(value: i32) -> usize {
    unsigned_len(((value << 1) ^ (value >> 31)) as u32 as u64)
}

fn varlong_len(value: i64) -> usize {
    unsigned_len(((value << 1) ^ (value >> 63)) as u64)
}

fn unsigned_len(value: u64) -> usize {
    // 7 bits a byte; zero still takes one byte.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn encode_bytes(bytes: Option<&[u8]>, out: &mut Vec<u8>) {
    match bytes {
        None => encode_varint(-1, out),
        Some(bytes) => {
            encode_varint(bytes.len() as i32, out);
            out.extend_from_slice(bytes);
        }
    }
}

/// One record's fields as the v2 format lays them out, relative to its batch.
struct RecordFields<'a, N, V> {
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: &'a [(N, Option<V>)],
}

impl<N: AsRef<[u8]>, V: AsRef<[u8]>> RecordFields<'_, N, V> {
    fn body_len(&self) -> usize {
        let mut len = 1 // attributes
            + varlong_len(self.timestamp_delta)
            + varint_len(self.offset_delta)
            + bytes_len(self.key)
            + bytes_len(self.value)
            + varint_len(self.headers.len() as i32);
        for (name, header_value) in self.headers {
            len += bytes_len(Some(name.as_ref()));
            len += bytes_len(header_value.as_ref().map(AsRef::as_ref));
        }
        len
    }

    /// The length prefix and the body.
    fn encoded_len(&self) -> usize {
        let body_len = self.body_len();
        varint_len(body_len as i32) + body_len
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let body_len = self.body_len();
        out.reserve(varint_len(body_len as i32) + body_len);
        let start = out.len();
        encode_varint(body_len as i32, out);
        out.push(0); // attributes: unused in v2
        encode_varlong(self.timestamp_delta, out);
        encode_varint(self.offset_delta, out);
        encode_bytes(self.key, out);
        encode_bytes(self.value, out);
        encode_varint(self.headers.len() as i32, out);
        for (name, header_value) in self.headers {
            encode_bytes(Some(name.as_ref()), out);
            encode_bytes(header_value.as_ref().map(AsRef::as_ref), out);
        }
        debug_assert_eq!(out.len() - start, varint_len(body_len as i32) + body_len);
    }
}

/// What log compaction keeps of a stored batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retained {
    /// Every record: the batch stays as it is.
    All,
    /// Some or none: the batch rebuilt with only those, `records` of them.
    Rebuilt { batch: Vec<u8>, records: usize },
}

/// The batch with only the records `keep` selects, as log compaction rewrites it: its base
/// offset, last offset delta, timestamps, producer id, epoch and base sequence and every
/// attribute (codec included) stay, and each kept record keeps its offset and timestamp, so
/// offsets only gain gaps. A batch left with no record keeps its header (Kafka's empty
/// batch), which still ends where it did. `batch` is one whole stored batch.
pub fn retain_records(
    batch: &[u8],
    mut keep: impl FnMut(&Record) -> bool,
) -> Result<Retained, RecordError> {
    let header = RecordBatch::validate(batch)?;
    let records = decode_records(batch)?;
    let kept: Vec<&Record> = records.iter().filter(|record| keep(record)).collect();
    if kept.len() == records.len() {
        return Ok(Retained::All);
    }
    let mut body = Vec::new();
    for record in &kept {
        RecordFields {
            offset_delta: i32::try_from(record.offset - header.base_offset)
                .map_err(|_| RecordError::Invalid("record offset delta out of range"))?,
            timestamp_delta: record.timestamp - header.base_timestamp,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &record.headers,
        }
        .encode(&mut body);
    }
    let compressed;
    let section = match header.compression() {
        Compression::None => &body,
        codec => {
            compressed = compress(codec, &body);
            &compressed
        }
    };
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + section.len());
    out.extend_from_slice(&header.base_offset.to_be_bytes());
    let batch_length = (BATCH_HEADER_LEN - LOG_OVERHEAD + section.len()) as i32;
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&header.partition_leader_epoch.to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
    out.extend_from_slice(&header.attributes.to_be_bytes());
    out.extend_from_slice(&header.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&header.base_timestamp.to_be_bytes());
    out.extend_from_slice(&header.max_timestamp.to_be_bytes());
    out.extend_from_slice(&header.producer_id.to_be_bytes());
    out.extend_from_slice(&header.producer_epoch.to_be_bytes());
    out.extend_from_slice(&header.base_sequence.to_be_bytes());
    out.extend_from_slice(&(kept.len() as i32).to_be_bytes());
    out.extend_from_slice(section);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(Retained::Rebuilt {
        batch: out,
        records: kept.len(),
    })
}

/// Decodes the records of one batch, decompressing if needed (within
/// [`DecompressionBudget::for_stored_batch`]). Checks that the record count, the offset deltas
/// and every length agree with the bytes, so a batch that passes can be read back by any client.
pub fn decode_records(batch: &[u8]) -> Result<Vec<Record>, RecordError> {
    let header = RecordBatch::parse_header(batch)?;
    // Every record takes at least 7 bytes, so the count cannot ask for more than the input.
    let mut records = Vec::with_capacity(
        usize::try_from(header.records_count)
            .unwrap_or(0)
            .min(batch.len() / 7),
    );
    let budget = DecompressionBudget::for_stored_batch();
    walk_records(
        batch,
        &header,
        &budget,
        true,
        Deltas::Increasing,
        |record| {
            records.push(Record {
                offset: header
                    .base_offset
                    .saturating_add(i64::from(record.offset_delta)),
                timestamp: record.timestamp,
                key: record.key,
                value: record.value,
                headers: record.headers,
            });
            ControlFlow::Continue(())
        },
    )?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TimestampType;
    use proptest::prelude::*;

    const CODECS: [Compression; 5] = Compression::ALL;

    #[test]
    fn retained_records_keep_their_offsets_and_the_batch_its_span() {
        for codec in CODECS {
            let mut batch = BatchBuilder::new(1_000)
                .compression(codec)
                .producer(7, 1, 40)
                .transactional(true)
                .record_at(1_000, Some(b"a"), Some(b"1"), &[])
                .record_at(1_005, Some(b"b"), Some(b"2"), &[(b"h".as_slice(), None)])
                .record_at(1_009, Some(b"a"), None, &[])
                .build();
            RecordBatch::set_base_offset(&mut batch, 100);
            assert_eq!(retain_records(&batch, |_| true).unwrap(), Retained::All);
            let Retained::Rebuilt {
                batch: kept,
                records,
            } = retain_records(&batch, |record| record.offset == 101).unwrap()
            else {
                panic!("a record was dropped");
            };
            assert_eq!(records, 1);
            let before = RecordBatch::validate(&batch).unwrap();
            let after = RecordBatch::validate(&kept).unwrap();
            assert_eq!(
                (after.base_offset, after.last_offset(), after.max_timestamp),
                (
                    before.base_offset,
                    before.last_offset(),
                    before.max_timestamp
                )
            );
            assert_eq!(
                (after.producer_id, after.producer_epoch, after.base_sequence),
                (7, 1, 40)
            );
            assert!(after.is_transactional());
            assert_eq!(after.compression(), codec);
            let decoded = decode_records(&kept).unwrap();
            assert_eq!(decoded, vec![decode_records(&batch).unwrap()[1].clone()]);
            let Retained::Rebuilt {
                batch: empty,
                records: 0,
            } = retain_records(&batch, |_| false).unwrap()
            else {
                panic!("nothing kept");
            };
            assert_eq!(RecordBatch::validate(&empty).unwrap().last_offset(), 102);
        }
    }

    #[test]
    fn compressed_producer_batch_round_trips_for_every_codec() {
        let value = b"a value that repeats a value that repeats ".repeat(20);
        for codec in CODECS {
            let batch = BatchBuilder::new(5_000)
                .compression(codec)
                .producer(1234, 5, 678)
                .record(Some(b"k0"), Some(&value), &[])
                .record_at(
                    4_990,
                    None,
                    None,
                    &[
                        (b"h".as_slice(), None),
                        (b"trace".as_slice(), Some(b"x".as_slice())),
                    ],
                )
                .record_at(5_007, Some(b""), Some(b"v2"), &[])
                .build();
            let header = RecordBatch::validate(&batch).unwrap();
            assert_eq!(header.compression(), codec);
            assert_eq!(header.records_count, 3);
            assert_eq!(header.last_offset_delta, 2);
            assert_eq!(
                (header.base_timestamp, header.max_timestamp),
                (5_000, 5_007)
            );
            assert_eq!(
                (
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence
                ),
                (1234, 5, 678)
            );
            assert!(!header.is_transactional());
            assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
            let records = decode_records(&batch).unwrap();
            assert_eq!(
                records,
                vec![
                    Record {
                        offset: 0,
                        timestamp: 5_000,
                        key: Some(b"k0".to_vec()),
                        value: Some(value.clone()),
                        headers: vec![],
                    },
                    Record {
                        offset: 1,
                        timestamp: 4_990,
                        key: None,
                        value: None,
                        headers: vec![
                            ("h".to_string(), None),
                            ("trace".to_string(), Some(b"x".to_vec())),
                        ],
                    },
                    Record {
                        offset: 2,
                        timestamp: 5_007,
                        key: Some(vec![]),
                        value: Some(b"v2".to_vec()),
                        headers: vec![],
                    },
                ],
                "{codec}"
            );
            if codec != Compression::None {
                let plain = BatchBuilder::new(5_000)
                    .record(Some(b"k0"), Some(&value), &[])
                    .build();
                assert!(
                    batch.len() < plain.len(),
                    "{codec} did not shrink the batch"
                );
            }
        }
    }

    #[test]
    fn defaults_are_uncompressed_with_no_producer() {
        let batch = BatchBuilder::new(0).record(None, Some(b"v"), &[]).build();
        let header = RecordBatch::validate(&batch).unwrap();
        assert_eq!(header.attributes, 0);
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (-1, -1, -1)
        );
    }

    #[test]
    fn transactional_bit_is_set() {
        let batch = BatchBuilder::new(0)
            .compression(Compression::Lz4)
            .transactional(true)
            .record(None, Some(b"v"), &[])
            .build();
        let header = RecordBatch::validate(&batch).unwrap();
        assert!(header.is_transactional());
        assert_eq!(header.compression(), Compression::Lz4);
    }

    #[test]
    fn varint_lengths_match_encodings() {
        for value in [0, 1, -1, 63, 64, -64, -65, 8191, 8192, i32::MAX, i32::MIN] {
            let mut out = Vec::new();
            encode_varint(value, &mut out);
            assert_eq!(varint_len(value), out.len(), "{value}");
        }
        for value in [0, 1, -1, 1 << 40, -(1 << 40), i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            encode_varlong(value, &mut out);
            assert_eq!(varlong_len(value), out.len(), "{value}");
        }
    }

    /// Key, value, headers and timestamp delta of one record.
    type RecordParts = (
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(String, Option<Vec<u8>>)>,
        i64,
    );

    fn arbitrary_record() -> impl Strategy<Value = RecordParts> {
        (
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
            proptest::option::of(proptest::collection::vec(0u8..3, 0..300)),
            proptest::collection::vec(
                (
                    "[a-z]{0,8}",
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..10)),
                ),
                0..3,
            ),
            -100_000i64..100_000,
        )
    }

    proptest! {
        #[test]
        fn compressed_records_round_trip(
            codec in proptest::sample::select(CODECS.to_vec()),
            producer_id in -1i64..i64::MAX,
            producer_epoch in -1i16..i16::MAX,
            base_sequence in -1i32..i32::MAX,
            records in proptest::collection::vec(arbitrary_record(), 1..30),
        ) {
            let mut builder = BatchBuilder::new(1_000_000)
                .compression(codec)
                .producer(producer_id, producer_epoch, base_sequence);
            for (key, value, headers, delta) in &records {
                let before = builder.uncompressed_len();
                let expected = builder.record_encoded_len(
                    1_000_000 + delta, key.as_deref(), value.as_deref(), headers);
                builder.push_record(1_000_000 + delta, key.as_deref(), value.as_deref(), headers);
                prop_assert_eq!(builder.uncompressed_len() - before, expected);
            }
            prop_assert_eq!(builder.record_count() as usize, records.len());
            let batch = builder.build();
            let header = RecordBatch::validate(&batch).unwrap();
            prop_assert_eq!(header.compression(), codec);
            prop_assert_eq!(
                (header.producer_id, header.producer_epoch, header.base_sequence),
                (producer_id, producer_epoch, base_sequence)
            );
            let decoded = decode_records(&batch).unwrap();
            prop_assert_eq!(decoded.len(), records.len());
            for (index, (record, (key, value, headers, delta))) in decoded.iter().zip(&records).enumerate() {
                prop_assert_eq!(record.offset, index as i64);
                prop_assert_eq!(record.timestamp, 1_000_000 + delta);
                prop_assert_eq!(&record.key, key);
                prop_assert_eq!(&record.value, value);
                prop_assert_eq!(&record.headers, headers);
            }
        }
    }

    proptest! {
        #[test]
        fn records_round_trip(
            records in proptest::collection::vec(
                (proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
                 proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
                 0i64..10_000),
                1..20)
        ) {
            let mut builder = BatchBuilder::new(1_000_000);
            for (key, value, delta) in &records {
                builder = builder.record_at(1_000_000 + delta, key.as_deref(), value.as_deref(),
                    &[(b"trace".as_slice(), Some(b"1".as_slice()))]);
            }
            let batch = builder.build();
            let header = RecordBatch::validate(&batch).unwrap();
            prop_assert_eq!(header.max_timestamp, 1_000_000 + records.iter().map(|r| r.2).max().unwrap());
            let decoded = decode_records(&batch).unwrap();
            prop_assert_eq!(decoded.len(), records.len());
            for (index, (record, (key, value, delta))) in decoded.iter().zip(&records).enumerate() {
                prop_assert_eq!(record.offset, index as i64);
                prop_assert_eq!(&record.key, key);
                prop_assert_eq!(&record.value, value);
                prop_assert_eq!(record.timestamp, 1_000_000 + delta);
                prop_assert_eq!(record.headers.len(), 1);
            }
        }

        #[test]
        fn corrupt_records_never_panic(mut batch_tail: Vec<u8>, count in 0i32..1000) {
            let mut batch = BatchBuilder::new(0).record(None, Some(b"v"), &[]).build();
            batch.truncate(BATCH_HEADER_LEN);
            batch.append(&mut batch_tail);
            let length = (batch.len() - LOG_OVERHEAD) as i32;
            batch[8..12].copy_from_slice(&length.to_be_bytes());
            batch[57..61].copy_from_slice(&count.to_be_bytes());
            let _ = decode_records(&batch);
        }
    }
}
