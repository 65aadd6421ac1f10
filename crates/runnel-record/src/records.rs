//! Records inside an uncompressed batch: building batches (for tests, tools and the client) and
//! decoding them (for validation and for reading back).

use crate::batch::{
    Compression, RecordBatch, RecordBatchHeader, RecordError, TimestampType, BATCH_HEADER_LEN,
    LOG_OVERHEAD, MAGIC_V2,
};
use crate::compression::decompress;
use crate::varint::{decode_varint, decode_varlong, encode_varint, encode_varlong};

/// One decoded record, with absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Builds one uncompressed magic-v2 batch with base offset 0 and no producer id.
#[derive(Debug)]
pub struct BatchBuilder {
    base_timestamp: i64,
    max_timestamp: i64,
    count: i32,
    records: Vec<u8>,
}

impl BatchBuilder {
    pub fn new(base_timestamp: i64) -> Self {
        BatchBuilder {
            base_timestamp,
            max_timestamp: base_timestamp,
            count: 0,
            records: Vec::new(),
        }
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
        let mut body = vec![0u8]; // attributes: unused in v2
        encode_varlong(timestamp - self.base_timestamp, &mut body);
        encode_varint(self.count, &mut body);
        encode_bytes(key, &mut body);
        encode_bytes(value, &mut body);
        encode_varint(headers.len() as i32, &mut body);
        for (name, header_value) in headers {
            encode_bytes(Some(name), &mut body);
            encode_bytes(*header_value, &mut body);
        }
        encode_varint(body.len() as i32, &mut self.records);
        self.records.extend_from_slice(&body);
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
        self
    }

    pub fn build(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BATCH_HEADER_LEN + self.records.len());
        out.extend_from_slice(&0i64.to_be_bytes());
        let batch_length = (BATCH_HEADER_LEN - LOG_OVERHEAD + self.records.len()) as i32;
        out.extend_from_slice(&batch_length.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
        out.push(MAGIC_V2 as u8);
        out.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
        out.extend_from_slice(&0i16.to_be_bytes()); // attributes
        out.extend_from_slice(&(self.count - 1).max(0).to_be_bytes());
        out.extend_from_slice(&self.base_timestamp.to_be_bytes());
        out.extend_from_slice(&self.max_timestamp.to_be_bytes());
        out.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
        out.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
        out.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&self.records);
        let crc = crc32c::crc32c(&out[21..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out
    }
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

/// Most bytes one batch may decompress to: far above `max.message.bytes`, far below memory.
pub const DECOMPRESSED_BATCH_MAX_BYTES: usize = 128 * 1024 * 1024;

/// Decodes the records of one batch, decompressing if needed. Checks that the record count,
/// the offset deltas and every length agree with the bytes, so a batch that passes can be
/// read back by any client.
pub fn decode_records(batch: &[u8]) -> Result<Vec<Record>, RecordError> {
    let header = RecordBatch::parse_header(batch)?;
    let section = &batch[BATCH_HEADER_LEN..header.total_len()];
    match header.compression() {
        Compression::None => parse_records(&header, section),
        codec => {
            let plain = decompress(codec, section, DECOMPRESSED_BATCH_MAX_BYTES)?;
            parse_records(&header, &plain)
        }
    }
}

fn parse_records(header: &RecordBatchHeader, mut input: &[u8]) -> Result<Vec<Record>, RecordError> {
    let timestamp_is_log_append = header.timestamp_type() == TimestampType::LogAppendTime;
    // Every record takes at least 7 bytes, so the count cannot ask for more than the input.
    let mut records = Vec::with_capacity((header.records_count as usize).min(input.len() / 7));
    for expected_delta in 0..header.records_count {
        let (length, used) = decode_varint(input).ok_or(INVALID_RECORD)?;
        input = &input[used..];
        let length = usize::try_from(length).map_err(|_| INVALID_RECORD)?;
        if length > input.len() {
            return Err(INVALID_RECORD);
        }
        let (mut body, rest) = input.split_at(length);
        input = rest;
        body = body.get(1..).ok_or(INVALID_RECORD)?; // attributes
        let (timestamp_delta, used) = decode_varlong(body).ok_or(INVALID_RECORD)?;
        body = &body[used..];
        let (offset_delta, used) = decode_varint(body).ok_or(INVALID_RECORD)?;
        body = &body[used..];
        if offset_delta != expected_delta {
            return Err(RecordError::Invalid(
                "record offset deltas are not consecutive",
            ));
        }
        let key = take_bytes(&mut body)?;
        let value = take_bytes(&mut body)?;
        let (header_count, used) = decode_varint(body).ok_or(INVALID_RECORD)?;
        body = &body[used..];
        let header_count = usize::try_from(header_count).map_err(|_| INVALID_RECORD)?;
        let mut headers = Vec::with_capacity(header_count.min(body.len()));
        for _ in 0..header_count {
            let name = take_bytes(&mut body)?.ok_or(INVALID_RECORD)?;
            let name = String::from_utf8(name).map_err(|_| INVALID_RECORD)?;
            headers.push((name, take_bytes(&mut body)?));
        }
        if !body.is_empty() {
            return Err(INVALID_RECORD);
        }
        records.push(Record {
            offset: header.base_offset + i64::from(offset_delta),
            timestamp: if timestamp_is_log_append {
                header.max_timestamp
            } else {
                header.base_timestamp + timestamp_delta
            },
            key,
            value,
            headers,
        });
    }
    if !input.is_empty() {
        return Err(RecordError::Invalid("bytes after the last record"));
    }
    if header.records_count > 0 && header.last_offset_delta != header.records_count - 1 {
        return Err(RecordError::Invalid(
            "last offset delta does not match record count",
        ));
    }
    Ok(records)
}

const INVALID_RECORD: RecordError = RecordError::Invalid("malformed record");

fn take_bytes(input: &mut &[u8]) -> Result<Option<Vec<u8>>, RecordError> {
    let (length, used) = decode_varint(input).ok_or(INVALID_RECORD)?;
    *input = &input[used..];
    if length < 0 {
        return Ok(None);
    }
    let length = length as usize;
    if length > input.len() {
        return Err(INVALID_RECORD);
    }
    let (bytes, rest) = input.split_at(length);
    *input = rest;
    Ok(Some(bytes.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
