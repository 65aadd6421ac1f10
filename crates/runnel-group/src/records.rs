//! The `__consumer_offsets` record format, byte for byte as Kafka writes it, so a log written by
//! Runnel reads like Kafka's and the other way round.
//!
//! Keys start with an `int16` version that names the record type: 0 and 1 are `OffsetCommitKey`
//! (group, topic, partition), 2 is `GroupMetadataKey` (group). Higher versions belong to the
//! KIP-848 and share-group records, which this module does not read: they come back as
//! [`RecordFormatError::UnknownKeyVersion`] so the caller can route them elsewhere.
//!
//! Values start with their own `int16` version. We write `OffsetCommitValue` v3 and
//! `GroupMetadataValue` v3 (non-flexible, as Kafka 3.x/4.0 write them) and read v0-v4 of both (v4
//! is the flexible encoding: compact lengths and tagged fields). Schemas: Kafka's
//! `group-coordinator/src/main/resources/common/message/{OffsetCommitKey,OffsetCommitValue,
//! GroupMetadataKey,GroupMetadataValue}.json`.
//!
//! Decoding never panics and never allocates more than the input could hold: a record read back
//! from disk is untrusted.

use bytes::{BufMut, Bytes, BytesMut};

const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
const GROUP_METADATA_KEY_VERSION: i16 = 2;
const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
const GROUP_METADATA_VALUE_VERSION: i16 = 3;

/// A record in `__consumer_offsets` that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordFormatError {
    #[error("record ends before its {0} field")]
    Truncated(&'static str),
    #[error("record key version {0} is not an offset commit or group metadata key")]
    UnknownKeyVersion(i16),
    #[error("{record} value version {version} is not supported")]
    UnknownValueVersion { record: &'static str, version: i16 },
    #[error("field {0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    #[error("field {0} has an invalid length")]
    InvalidLength(&'static str),
}

/// The key of a `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    OffsetCommit {
        group: String,
        topic: String,
        partition: i32,
    },
    GroupMetadata {
        group: String,
    },
}

impl RecordKey {
    /// The group the record belongs to.
    pub fn group(&self) -> &str {
        match self {
            RecordKey::OffsetCommit { group, .. } | RecordKey::GroupMetadata { group } => group,
        }
    }
}

/// `OffsetCommitValue`: one committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitValue {
    pub offset: i64,
    /// -1 when unknown (and in value versions before 3).
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Only value version 1 carries it (commits with an explicit retention time, v2-4 requests).
    pub expire_timestamp_ms: Option<i64>,
}

/// `GroupMetadataValue`: a classic group's generation and members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    /// Empty for groups that only store offsets.
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// When the group last changed state; -1 when unknown (value versions before 2).
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberMetadataValue>,
}

/// One member inside [`GroupMetadataValue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadataValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// Encodes a key at the version Kafka writes (1 for offsets, 2 for group metadata).
pub fn encode_key(key: &RecordKey) -> Bytes {
    let mut buf = BytesMut::new();
    match key {
        RecordKey::OffsetCommit {
            group,
            topic,
            partition,
        } => {
            buf.put_i16(OFFSET_COMMIT_KEY_VERSION);
            put_string(&mut buf, group);
            put_string(&mut buf, topic);
            buf.put_i32(*partition);
        }
        RecordKey::GroupMetadata { group } => {
            buf.put_i16(GROUP_METADATA_KEY_VERSION);
            put_string(&mut buf, group);
        }
    }
    buf.freeze()
}

/// Decodes a key of any version Kafka writes for offsets and classic group metadata.
pub fn decode_key(bytes: &[u8]) -> Result<RecordKey, RecordFormatError> {
    let mut reader = Reader::new(bytes, false);
    let version = reader.i16("key version")?;
    match version {
        0 | 1 => Ok(RecordKey::OffsetCommit {
            group: reader.string("group")?,
            topic: reader.string("topic")?,
            partition: reader.i32("partition")?,
        }),
        2 => Ok(RecordKey::GroupMetadata {
            group: reader.string("group")?,
        }),
        other => Err(RecordFormatError::UnknownKeyVersion(other)),
    }
}

/// Encodes an `OffsetCommitValue` at version 3, or version 1 when it carries an expire timestamp.
pub fn encode_offset_value(value: &OffsetCommitValue) -> Bytes {
    let mut buf = BytesMut::new();
    if let Some(expire_timestamp_ms) = value.expire_timestamp_ms {
        buf.put_i16(1);
        buf.put_i64(value.offset);
        put_string(&mut buf, &value.metadata);
        buf.put_i64(value.commit_timestamp_ms);
        buf.put_i64(expire_timestamp_ms);
    } else {
        buf.put_i16(OFFSET_COMMIT_VALUE_VERSION);
        buf.put_i64(value.offset);
        buf.put_i32(value.leader_epoch);
        put_string(&mut buf, &value.metadata);
        buf.put_i64(value.commit_timestamp_ms);
    }
    buf.freeze()
}

/// Decodes an `OffsetCommitValue` of version 0 to 4.
pub fn decode_offset_value(bytes: &[u8]) -> Result<OffsetCommitValue, RecordFormatError> {
    let mut reader = Reader::new(bytes, false);
    let version = reader.i16("value version")?;
    if !(0..=4).contains(&version) {
        return Err(RecordFormatError::UnknownValueVersion {
            record: "OffsetCommitValue",
            version,
        });
    }
    reader.flexible = version >= 4;
    let offset = reader.i64("offset")?;
    let leader_epoch = if version >= 3 {
        reader.i32("leaderEpoch")?
    } else {
        -1
    };
    let metadata = reader.string("metadata")?;
    let commit_timestamp_ms = reader.i64("commitTimestamp")?;
    let expire_timestamp_ms = if version == 1 {
        Some(reader.i64("expireTimestamp")?)
    } else {
        None
    };
    reader.tagged_fields()?;
    Ok(OffsetCommitValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
        expire_timestamp_ms,
    })
}

/// Encodes a `GroupMetadataValue` at version 3.
pub fn encode_group_value(value: &GroupMetadataValue) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(GROUP_METADATA_VALUE_VERSION);
    put_string(&mut buf, &value.protocol_type);
    buf.put_i32(value.generation);
    put_nullable_string(&mut buf, value.protocol.as_deref());
    put_nullable_string(&mut buf, value.leader.as_deref());
    buf.put_i64(value.current_state_timestamp_ms);
    buf.put_i32(value.members.len() as i32);
    for member in &value.members {
        put_string(&mut buf, &member.member_id);
        put_nullable_string(&mut buf, member.group_instance_id.as_deref());
        put_string(&mut buf, &member.client_id);
        put_string(&mut buf, &member.client_host);
        buf.put_i32(member.rebalance_timeout_ms);
        buf.put_i32(member.session_timeout_ms);
        buf.put_i32(member.subscription.len() as i32);
        buf.put_slice(&member.subscription);
        buf.put_i32(member.assignment.len() as i32);
        buf.put_slice(&member.assignment);
    }
    buf.freeze()
}

/// Decodes a `GroupMetadataValue` of version 0 to 4.
pub fn decode_group_value(bytes: &[u8]) -> Result<GroupMetadataValue, RecordFormatError> {
    let mut reader = Reader::new(bytes, false);
    let version = reader.i16("value version")?;
    if !(0..=4).contains(&version) {
        return Err(RecordFormatError::UnknownValueVersion {
            record: "GroupMetadataValue",
            version,
        });
    }
    reader.flexible = version >= 4;
    let protocol_type = reader.string("protocolType")?;
    let generation = reader.i32("generation")?;
    let protocol = reader.nullable_string("protocol")?;
    let leader = reader.nullable_string("leader")?;
    let current_state_timestamp_ms = if version >= 2 {
        reader.i64("currentStateTimestamp")?
    } else {
        -1
    };
    let count = reader.array_len("members")?;
    let mut members = Vec::with_capacity(count.min(reader.remaining()));
    for _ in 0..count {
        let member_id = reader.string("memberId")?;
        let group_instance_id = if version >= 3 {
            reader.nullable_string("groupInstanceId")?
        } else {
            None
        };
        let client_id = reader.string("clientId")?;
        let client_host = reader.string("clientHost")?;
        let session_timeout_first = version == 0;
        let mut rebalance_timeout_ms = 0;
        if !session_timeout_first {
            rebalance_timeout_ms = reader.i32("rebalanceTimeout")?;
        }
        let session_timeout_ms = reader.i32("sessionTimeout")?;
        if session_timeout_first {
            rebalance_timeout_ms = session_timeout_ms;
        }
        let subscription = reader.bytes("subscription")?;
        let assignment = reader.bytes("assignment")?;
        reader.tagged_fields()?;
        members.push(MemberMetadataValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    reader.tagged_fields()?;
    Ok(GroupMetadataValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

/// The topics a `consumer` protocol subscription names (ConsumerProtocolSubscription, any
/// version: they all start with `int16 version, [string] topics`), or None if unreadable.
pub(crate) fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut reader = Reader::new(metadata, false);
    let version = reader.i16("version").ok()?;
    // Version 4 is not defined yet; a flexible future version would start the same way only if
    // it kept the non-flexible encoding, which we cannot know.
    if !(0..=3).contains(&version) {
        return None;
    }
    let count = reader.array_len("topics").ok()?;
    let mut topics = Vec::with_capacity(count.min(reader.remaining()));
    for _ in 0..count {
        topics.push(reader.string("topic").ok()?);
    }
    Some(topics)
}

pub(crate) fn put_string(buf: &mut BytesMut, value: &str) {
    // Kafka strings carry an int16 length; group ids, topics and member ids come from requests
    // whose own encoding had the same limit, so a longer one cannot reach here.
    let mut len = value.len().min(i16::MAX as usize);
    while !value.is_char_boundary(len) {
        len -= 1;
    }
    buf.put_i16(len as i16);
    buf.put_slice(&value.as_bytes()[..len]);
}

fn put_nullable_string(buf: &mut BytesMut, value: Option<&str>) {
    match value {
        Some(value) => put_string(buf, value),
        None => buf.put_i16(-1),
    }
}

/// A bounds-checked cursor over untrusted bytes, in either Kafka encoding.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    flexible: bool,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], flexible: bool) -> Self {
        Reader { buf, flexible }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], RecordFormatError> {
        if self.buf.len() < len {
            return Err(RecordFormatError::Truncated(field));
        }
        let (head, tail) = self.buf.split_at(len);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], RecordFormatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(crate) fn i8(&mut self, field: &'static str) -> Result<i8, RecordFormatError> {
        Ok(i8::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i16(&mut self, field: &'static str) -> Result<i16, RecordFormatError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, RecordFormatError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, RecordFormatError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    fn uvarint(&mut self, field: &'static str) -> Result<u32, RecordFormatError> {
        let mut value: u32 = 0;
        for shift in (0..35).step_by(7) {
            let [byte] = self.array::<1>(field)?;
            value |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordFormatError::InvalidLength(field))
    }

    /// A length prefix: `None` for null.
    pub(crate) fn length(
        &mut self,
        field: &'static str,
        wide: bool,
    ) -> Result<Option<usize>, RecordFormatError> {
        let len: i64 = if self.flexible {
            i64::from(self.uvarint(field)?) - 1
        } else if wide {
            i64::from(self.i32(field)?)
        } else {
            i64::from(self.i16(field)?)
        };
        match len {
            -1 => Ok(None),
            len if len < -1 => Err(RecordFormatError::InvalidLength(field)),
            len => usize::try_from(len)
                .map(Some)
                .map_err(|_| RecordFormatError::InvalidLength(field)),
        }
    }

    fn nullable_string(
        &mut self,
        field: &'static str,
    ) -> Result<Option<String>, RecordFormatError> {
        let Some(len) = self.length(field, false)? else {
            return Ok(None);
        };
        let raw = self.take(len, field)?;
        std::str::from_utf8(raw)
            .map(|s| Some(s.to_owned()))
            .map_err(|_| RecordFormatError::InvalidUtf8(field))
    }

    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, RecordFormatError> {
        self.nullable_string(field)?
            .ok_or(RecordFormatError::InvalidLength(field))
    }

    fn bytes(&mut self, field: &'static str) -> Result<Bytes, RecordFormatError> {
        let len = self
            .length(field, true)?
            .ok_or(RecordFormatError::InvalidLength(field))?;
        Ok(Bytes::copy_from_slice(self.take(len, field)?))
    }

    pub(crate) fn array_len(&mut self, field: &'static str) -> Result<usize, RecordFormatError> {
        self.length(field, true)?
            .ok_or(RecordFormatError::InvalidLength(field))
    }

    /// Skips a tagged-field section (flexible versions only): we know no tags.
    pub(crate) fn tagged_fields(&mut self) -> Result<(), RecordFormatError> {
        if !self.flexible {
            return Ok(());
        }
        let count = self.uvarint("tagged fields")?;
        for _ in 0..count {
            self.uvarint("tag")?;
            let size = self.uvarint("tagged field size")? as usize;
            self.take(size, "tagged field")?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._-]{0,20}|\\PC{0,8}"
    }

    fn bytes() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from)
    }

    fn member() -> impl Strategy<Value = MemberMetadataValue> {
        (
            (text(), proptest::option::of(text()), text(), text()),
            (any::<i32>(), any::<i32>(), bytes(), bytes()),
        )
            .prop_map(
                |(
                    (member_id, group_instance_id, client_id, client_host),
                    (rebalance_timeout_ms, session_timeout_ms, subscription, assignment),
                )| MemberMetadataValue {
                    member_id,
                    group_instance_id,
                    client_id,
                    client_host,
                    rebalance_timeout_ms,
                    session_timeout_ms,
                    subscription,
                    assignment,
                },
            )
    }

    pub(crate) fn group_value() -> impl Strategy<Value = GroupMetadataValue> {
        (
            text(),
            any::<i32>(),
            proptest::option::of(text()),
            proptest::option::of(text()),
            any::<i64>(),
            proptest::collection::vec(member(), 0..4),
        )
            .prop_map(
                |(protocol_type, generation, protocol, leader, ts, members)| GroupMetadataValue {
                    protocol_type,
                    generation,
                    protocol,
                    leader,
                    current_state_timestamp_ms: ts,
                    members,
                },
            )
    }

    proptest! {
        #[test]
        fn offset_key_round_trips(group in text(), topic in text(), partition in any::<i32>()) {
            let key = RecordKey::OffsetCommit { group, topic, partition };
            prop_assert_eq!(decode_key(&encode_key(&key)).unwrap(), key);
        }

        #[test]
        fn group_key_round_trips(group in text()) {
            let key = RecordKey::GroupMetadata { group };
            prop_assert_eq!(decode_key(&encode_key(&key)).unwrap(), key);
        }

        #[test]
        fn offset_value_round_trips(
            offset in any::<i64>(), leader_epoch in any::<i32>(), metadata in text(),
            commit_timestamp_ms in any::<i64>(), expire in proptest::option::of(any::<i64>()),
        ) {
            let mut value = OffsetCommitValue { offset, leader_epoch, metadata, commit_timestamp_ms, expire_timestamp_ms: expire };
            if expire.is_some() {
                value.leader_epoch = -1; // v1 has no leader epoch
            }
            prop_assert_eq!(decode_offset_value(&encode_offset_value(&value)).unwrap(), value);
        }

        #[test]
        fn group_value_round_trips(value in group_value()) {
            prop_assert_eq!(decode_group_value(&encode_group_value(&value)).unwrap(), value);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_key(&bytes);
            let _ = decode_offset_value(&bytes);
            let _ = decode_group_value(&bytes);
            let _ = subscription_topics(&bytes);
        }

        #[test]
        fn every_truncation_is_an_error(value in group_value()) {
            let encoded = encode_group_value(&value);
            for len in 0..encoded.len() {
                prop_assert!(decode_group_value(&encoded[..len]).is_err());
            }
        }
    }

    #[test]
    fn offset_key_layout_is_kafkas() {
        let key = RecordKey::OffsetCommit {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        };
        assert_eq!(
            encode_key(&key).as_ref(),
            &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3]
        );
        let value = OffsetCommitValue {
            offset: 5,
            leader_epoch: 2,
            metadata: "m".into(),
            commit_timestamp_ms: 7,
            expire_timestamp_ms: None,
        };
        assert_eq!(
            encode_offset_value(&value).as_ref(),
            &[0, 3, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 2, 0, 1, b'm', 0, 0, 0, 0, 0, 0, 0, 7]
        );
    }

    #[test]
    fn reads_older_and_flexible_versions() {
        // OffsetCommitValue v0: offset, metadata, commitTimestamp.
        let v0 = [0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let value = decode_offset_value(&v0).unwrap();
        assert_eq!(
            (value.offset, value.leader_epoch, value.commit_timestamp_ms),
            (9, -1, 1)
        );
        // OffsetCommitValue v4 (flexible): compact string "ab" and an empty tag section.
        let v4 = [
            0, 4, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 4, 3, b'a', b'b', 0, 0, 0, 0, 0, 0, 0, 1, 0,
        ];
        let value = decode_offset_value(&v4).unwrap();
        assert_eq!(
            (value.offset, value.leader_epoch, value.metadata.as_str()),
            (9, 4, "ab")
        );
        // GroupMetadataValue v4, empty group: "consumer", generation 3, null protocol and leader,
        // timestamp 8, no members, no tags.
        let mut v4 = vec![0, 4, 9];
        v4.extend_from_slice(b"consumer");
        v4.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 1, 0]);
        let value = decode_group_value(&v4).unwrap();
        assert_eq!(value.protocol_type, "consumer");
        assert_eq!(
            (value.generation, value.protocol, value.leader),
            (3, None, None)
        );
        assert_eq!(value.current_state_timestamp_ms, 8);
        assert!(value.members.is_empty());
    }

    #[test]
    fn other_record_types_are_reported() {
        assert_eq!(
            decode_key(&[0, 3, 0, 1, b'g']),
            Err(RecordFormatError::UnknownKeyVersion(3))
        );
        assert!(matches!(
            decode_offset_value(&[0, 9]),
            Err(RecordFormatError::UnknownValueVersion { version: 9, .. })
        ));
    }

    #[test]
    fn subscription_topics_reads_consumer_protocol() {
        // ConsumerProtocolSubscription v1: topics ["a", "bc"], null user data, no owned partitions.
        let metadata = [
            0, 1, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'c', 255, 255, 255, 255, 0, 0, 0, 0,
        ];
        assert_eq!(
            subscription_topics(&metadata),
            Some(vec!["a".to_string(), "bc".to_string()])
        );
        assert_eq!(subscription_topics(&[0, 1, 0]), None);
    }
}
