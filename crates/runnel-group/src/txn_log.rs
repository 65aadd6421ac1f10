//! The `__transaction_state` record format, as Kafka writes it: key `(version i16 = 0,
//! transactional id string)`; value `(version i16, TransactionLogValue)`. We write value
//! version 0 (what Kafka writes for clients of transaction version 1) and read versions 0 and
//! 1 (flexible: compact lengths and tagged fields, which we skip). Schemas: Kafka's
//! `transaction-coordinator/src/main/resources/common/message/TransactionLog{Key,Value}.json`.
//! A tombstone (null value) removes a transactional id. Decoding never panics and never
//! allocates more than the input holds.

use std::collections::BTreeSet;

use bytes::{BufMut, Bytes, BytesMut};

use crate::records::{put_string, Reader, RecordFormatError};

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

/// One transactional id's state, as `__transaction_state` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionLogValue {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// Kafka's `TransactionState` id (0 Empty ... 7 PrepareEpochFence).
    pub status: i8,
    /// Topic and partition of every partition in the transaction, sorted.
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_ms: i64,
    pub start_ms: i64,
}

pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + transactional_id.len());
    buf.put_i16(KEY_VERSION);
    put_string(&mut buf, transactional_id);
    buf.freeze()
}

pub fn decode_key(bytes: &[u8]) -> Result<String, RecordFormatError> {
    let mut reader = Reader::new(bytes, false);
    let version = reader.i16("key version")?;
    if version != KEY_VERSION {
        return Err(RecordFormatError::UnknownKeyVersion(version));
    }
    reader.string("transactional id")
}

pub fn encode_value(value: &TransactionLogValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(VALUE_VERSION);
    buf.put_i64(value.producer_id);
    buf.put_i16(value.producer_epoch);
    buf.put_i32(value.timeout_ms);
    buf.put_i8(value.status);
    let mut by_topic: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in &value.partitions {
        match by_topic.last_mut() {
            Some((last, partitions)) if *last == topic.as_str() => partitions.push(*partition),
            _ => by_topic.push((topic, vec![*partition])),
        }
    }
    buf.put_i32(by_topic.len() as i32);
    for (topic, partitions) in by_topic {
        put_string(&mut buf, topic);
        buf.put_i32(partitions.len() as i32);
        for partition in partitions {
            buf.put_i32(partition);
        }
    }
    buf.put_i64(value.last_update_ms);
    buf.put_i64(value.start_ms);
    buf.freeze()
}

pub fn decode_value(bytes: &[u8]) -> Result<TransactionLogValue, RecordFormatError> {
    let mut reader = Reader::new(bytes, false);
    let version = reader.i16("value version")?;
    if !(0..=1).contains(&version) {
        return Err(RecordFormatError::UnknownValueVersion {
            record: "TransactionLogValue",
            version,
        });
    }
    let mut reader = Reader::new(&bytes[2..], version >= 1);
    let producer_id = reader.i64("producer id")?;
    let producer_epoch = reader.i16("producer epoch")?;
    let timeout_ms = reader.i32("transaction timeout")?;
    let status = reader.i8("transaction status")?;
    let mut partitions = BTreeSet::new();
    // Nullable: a null list is no partitions.
    let topics = reader.length("partitions", true)?.unwrap_or(0);
    if topics > reader.remaining() {
        return Err(RecordFormatError::InvalidLength("partitions"));
    }
    for _ in 0..topics {
        let topic = reader.string("topic")?;
        let count = reader.array_len("partition ids")?;
        if count > reader.remaining() / 4 {
            return Err(RecordFormatError::InvalidLength("partition ids"));
        }
        for _ in 0..count {
            partitions.insert((topic.clone(), reader.i32("partition id")?));
        }
        reader.tagged_fields()?;
    }
    let last_update_ms = reader.i64("last update timestamp")?;
    let start_ms = reader.i64("start timestamp")?;
    reader.tagged_fields()?;
    Ok(TransactionLogValue {
        producer_id,
        producer_epoch,
        timeout_ms,
        status,
        partitions,
        last_update_ms,
        start_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = TransactionLogValue> {
        (
            any::<i64>(),
            any::<i16>(),
            any::<i32>(),
            0i8..8,
            proptest::collection::btree_set(("[a-z]{1,8}", 0i32..100), 0..10),
            any::<i64>(),
            any::<i64>(),
        )
            .prop_map(
                |(
                    producer_id,
                    producer_epoch,
                    timeout_ms,
                    status,
                    partitions,
                    last_update_ms,
                    start_ms,
                )| {
                    TransactionLogValue {
                        producer_id,
                        producer_epoch,
                        timeout_ms,
                        status,
                        partitions,
                        last_update_ms,
                        start_ms,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn values_round_trip(value in value(), id in "\\PC{0,20}") {
            prop_assert_eq!(decode_value(&encode_value(&value))?, value);
            prop_assert_eq!(decode_key(&encode_key(&id))?, id);
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_value(&bytes);
            let _ = decode_key(&bytes);
        }
    }

    #[test]
    fn a_flexible_value_with_tagged_fields_is_read() {
        // Version 1: compact array lengths (n + 1) and tagged fields, one of them set.
        let mut buf = BytesMut::new();
        buf.put_i16(1);
        buf.put_i64(42);
        buf.put_i16(3);
        buf.put_i32(60_000);
        buf.put_i8(1);
        buf.put_u8(2); // one topic
        buf.put_u8(2); // compact string of 1 byte
        buf.put_slice(b"t");
        buf.put_u8(3); // two partitions
        buf.put_i32(0);
        buf.put_i32(5);
        buf.put_u8(0); // topic's tagged fields
        buf.put_i64(7);
        buf.put_i64(6);
        buf.put_u8(1); // one tagged field
        buf.put_u8(0); // tag 0: PreviousProducerId
        buf.put_u8(8);
        buf.put_i64(-1);
        let value = decode_value(&buf).unwrap();
        assert_eq!(
            (value.producer_id, value.producer_epoch, value.status),
            (42, 3, 1)
        );
        assert_eq!(value.partitions.len(), 2);
        assert_eq!((value.last_update_ms, value.start_ms), (7, 6));
    }
}
