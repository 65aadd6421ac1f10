//! The decoder of `pgoutput` messages, protocol version 1, as PostgreSQL's logical decoding
//! writes them (one message per row of `pg_logical_slot_peek_binary_changes`), and log
//! sequence numbers (LSNs) as PostgreSQL writes them (`16/B374D848`).
//!
//! This module owns only bytes to messages: no I/O, no knowledge of tables or types beyond
//! what a message carries. Every length and count is checked against what is left of the
//! message, so that malformed or truncated input is an error, never a panic or a huge
//! allocation. Integers are big-endian, strings are NUL-terminated in the server's encoding
//! (read as UTF-8, invalid bytes replaced: names are for display and topics, and the
//! connector documents that the database must be UTF-8).

use std::fmt;

/// A log sequence number: a byte position in PostgreSQL's write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Reads PostgreSQL's text form, two hexadecimal halves: `16/B374D848`.
    pub fn parse(text: &str) -> Option<Lsn> {
        let (high, low) = text.trim().split_once('/')?;
        if high.is_empty() || low.is_empty() || high.len() > 8 || low.len() > 8 {
            return None;
        }
        let high = u32::from_str_radix(high, 16).ok()?;
        let low = u32::from_str_radix(low, 16).ok()?;
        Some(Lsn((u64::from(high) << 32) | u64::from(low)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01), in which pgoutput
/// gives commit times.
pub const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed pgoutput message: {0}")]
pub struct DecodeError(pub String);

fn malformed(why: impl Into<String>) -> DecodeError {
    DecodeError(why.into())
}

/// `B`: a transaction's start. Only committed transactions are sent, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// The LSN of the transaction's commit record.
    pub final_lsn: Lsn,
    /// The commit time, in microseconds since 2000-01-01.
    pub commit_time: i64,
    /// The transaction id.
    pub xid: u32,
}

/// `C`: a transaction's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Unused flags.
    pub flags: u8,
    /// The LSN of the commit record (the `final_lsn` of its [`Begin`]).
    pub commit_lsn: Lsn,
    /// The LSN just past the commit record.
    pub end_lsn: Lsn,
    /// The commit time, in microseconds since 2000-01-01.
    pub commit_time: i64,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// 1 when the column is part of the replica identity (the key).
    pub flags: u8,
    /// The column's name.
    pub name: String,
    /// The OID of its type (a domain's own OID, not its base type's).
    pub type_oid: u32,
    /// Its type modifier (`atttypmod`): a numeric's precision and scale, a timestamp's
    /// precision; -1 when none.
    pub type_modifier: i32,
}

/// `R`: the layout of a table, sent before the first change of it in a decoding session
/// and again whenever it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The table's OID.
    pub id: u32,
    /// Its schema.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its replica identity: `d` default (primary key), `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    /// Its columns, in the order tuples give their values.
    pub columns: Vec<RelationColumn>,
}

/// `Y`: the name of a type that is not built in, sent before a relation that uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeInfo {
    /// The type's OID.
    pub id: u32,
    /// Its schema.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// One column's value in a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnValue {
    /// `n`: SQL NULL.
    Null,
    /// `u`: a TOASTed value that did not change; its value is not sent.
    Unchanged,
    /// `t`: the value in its type's text form.
    Text(Vec<u8>),
    /// `b`: the value in its type's binary form (only when asked for; kept for
    /// completeness).
    Binary(Vec<u8>),
}

/// The old row an update or delete carries, if the table's replica identity gives one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldTuple {
    /// `K`: only the replica identity's columns are set, the others are null. `O`: the
    /// whole old row (replica identity full).
    pub key_only: bool,
    /// The values.
    pub values: Vec<ColumnValue>,
}

/// A decoded pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `B`
    Begin(Begin),
    /// `C`
    Commit(Commit),
    /// `O`: the transaction came from another node through replication origins.
    Origin {
        /// The commit LSN on the origin server.
        commit_lsn: Lsn,
        /// The origin's name.
        name: String,
    },
    /// `R`
    Relation(Relation),
    /// `Y`
    Type(TypeInfo),
    /// `I`
    Insert {
        /// The table's OID.
        relation: u32,
        /// The new row.
        new: Vec<ColumnValue>,
    },
    /// `U`
    Update {
        /// The table's OID.
        relation: u32,
        /// The old row or key, when the replica identity gives one and it changed.
        old: Option<OldTuple>,
        /// The new row.
        new: Vec<ColumnValue>,
    },
    /// `D`
    Delete {
        /// The table's OID.
        relation: u32,
        /// The old row or key.
        old: OldTuple,
    },
    /// `T`
    Truncate {
        /// 1: `CASCADE`, 2: `RESTART IDENTITY`.
        options: u8,
        /// The tables truncated.
        relations: Vec<u32>,
    },
    /// `M`: a message written with `pg_logical_emit_message` (only sent when asked for).
    Logical {
        /// Whether it was written inside a transaction.
        transactional: bool,
        /// Its LSN.
        lsn: Lsn,
        /// Its prefix.
        prefix: String,
        /// Its content.
        content: Vec<u8>,
    },
}

/// Decodes one message.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut reader = Reader { bytes, at: 0 };
    let tag = reader.u8("message type")?;
    let message = match tag {
        b'B' => Message::Begin(Begin {
            final_lsn: Lsn(reader.u64("final LSN")?),
            commit_time: reader.i64("commit time")?,
            xid: reader.u32("transaction id")?,
        }),
        b'C' => Message::Commit(Commit {
            flags: reader.u8("commit flags")?,
            commit_lsn: Lsn(reader.u64("commit LSN")?),
            end_lsn: Lsn(reader.u64("end LSN")?),
            commit_time: reader.i64("commit time")?,
        }),
        b'O' => Message::Origin {
            commit_lsn: Lsn(reader.u64("origin commit LSN")?),
            name: reader.string("origin name")?,
        },
        b'R' => {
            let id = reader.u32("relation id")?;
            let namespace = reader.string("relation namespace")?;
            let name = reader.string("relation name")?;
            let replica_identity = reader.u8("replica identity")?;
            let count = reader.count("column count")?;
            // Each column takes at least 10 bytes: a count beyond that is refused before
            // anything is allocated for it.
            reader.expect_at_least(count.saturating_mul(10), "columns")?;
            let mut columns = Vec::with_capacity(count);
            for _ in 0..count {
                columns.push(RelationColumn {
                    flags: reader.u8("column flags")?,
                    name: reader.string("column name")?,
                    type_oid: reader.u32("column type")?,
                    type_modifier: reader.i32("column type modifier")?,
                });
            }
            Message::Relation(Relation {
                id,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'Y' => Message::Type(TypeInfo {
            id: reader.u32("type id")?,
            namespace: reader.string("type namespace")?,
            name: reader.string("type name")?,
        }),
        b'I' => {
            let relation = reader.u32("relation id")?;
            match reader.u8("tuple kind")? {
                b'N' => {}
                other => return Err(malformed(format!("insert: tuple kind {other:#04x}, not N"))),
            }
            Message::Insert {
                relation,
                new: reader.tuple()?,
            }
        }
        b'U' => {
            let relation = reader.u32("relation id")?;
            let mut old = None;
            let mut kind = reader.u8("tuple kind")?;
            if kind == b'K' || kind == b'O' {
                old = Some(OldTuple {
                    key_only: kind == b'K',
                    values: reader.tuple()?,
                });
                kind = reader.u8("tuple kind")?;
            }
            if kind != b'N' {
                return Err(malformed(format!("update: tuple kind {kind:#04x}, not N")));
            }
            Message::Update {
                relation,
                old,
                new: reader.tuple()?,
            }
        }
        b'D' => {
            let relation = reader.u32("relation id")?;
            let kind = reader.u8("tuple kind")?;
            if kind != b'K' && kind != b'O' {
                return Err(malformed(format!(
                    "delete: tuple kind {kind:#04x}, not K or O"
                )));
            }
            Message::Delete {
                relation,
                old: OldTuple {
                    key_only: kind == b'K',
                    values: reader.tuple()?,
                },
            }
        }
        b'T' => {
            let count = reader.u32("relation count")?;
            let options = reader.u8("truncate options")?;
            let count = usize::try_from(count).map_err(|_| malformed("relation count"))?;
            reader.expect_at_least(count.saturating_mul(4), "truncated relations")?;
            let mut relations = Vec::with_capacity(count);
            for _ in 0..count {
                relations.push(reader.u32("relation id")?);
            }
            Message::Truncate { options, relations }
        }
        b'M' => {
            let transactional = reader.u8("message flags")? & 1 == 1;
            let lsn = Lsn(reader.u64("message LSN")?);
            let prefix = reader.string("message prefix")?;
            let length = reader.length("message length")?;
            let content = reader.take(length, "message content")?.to_vec();
            Message::Logical {
                transactional,
                lsn,
                prefix,
                content,
            }
        }
        // Streamed (S, E, c, A) and two-phase (b, P, K, r) messages exist only in later
        // protocol versions, which this connector does not ask for.
        other => {
            return Err(malformed(format!(
                "unknown message type {:?} ({other:#04x})",
                char::from(other)
            )))
        }
    };
    if reader.at != bytes.len() {
        return Err(malformed(format!(
            "{} bytes left over after a {:?} message",
            bytes.len() - reader.at,
            char::from(tag)
        )));
    }
    Ok(message)
}

/// A cursor over one message.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len().saturating_sub(self.at)
    }

    fn expect_at_least(&self, needed: usize, what: &str) -> Result<(), DecodeError> {
        if self.left() < needed {
            return Err(malformed(format!(
                "{what}: {needed} bytes needed, {} left",
                self.left()
            )));
        }
        Ok(())
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        self.expect_at_least(n, what)?;
        let start = self.at;
        self.at += n;
        Ok(&self.bytes[start..self.at])
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn i16(&mut self, what: &str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn i64(&mut self, what: &str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// A count sent as Int16, which must not be negative.
    fn count(&mut self, what: &str) -> Result<usize, DecodeError> {
        let n = self.i16(what)?;
        usize::try_from(n).map_err(|_| malformed(format!("{what}: negative ({n})")))
    }

    /// A length sent as Int32, which must not be negative.
    fn length(&mut self, what: &str) -> Result<usize, DecodeError> {
        let n = self.i32(what)?;
        usize::try_from(n).map_err(|_| malformed(format!("{what}: negative ({n})")))
    }

    fn string(&mut self, what: &str) -> Result<String, DecodeError> {
        let rest = &self.bytes[self.at.min(self.bytes.len())..];
        let Some(end) = rest.iter().position(|&b| b == 0) else {
            return Err(malformed(format!("{what}: no terminating NUL")));
        };
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.at += end + 1;
        Ok(text)
    }

    /// `TupleData`: a column count, then each column's kind and value.
    fn tuple(&mut self) -> Result<Vec<ColumnValue>, DecodeError> {
        let count = self.count("tuple column count")?;
        // Each column takes at least its kind byte.
        self.expect_at_least(count, "tuple columns")?;
        let mut values = Vec::with_capacity(count);
        for _ in 0..count {
            let value = match self.u8("column kind")? {
                b'n' => ColumnValue::Null,
                b'u' => ColumnValue::Unchanged,
                kind @ (b't' | b'b') => {
                    let length = self.length("column length")?;
                    let bytes = self.take(length, "column value")?.to_vec();
                    if kind == b't' {
                        ColumnValue::Text(bytes)
                    } else {
                        ColumnValue::Binary(bytes)
                    }
                }
                other => return Err(malformed(format!("unknown column kind {other:#04x}"))),
            };
            values.push(value);
        }
        Ok(values)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds messages as PostgreSQL writes them, for the tests here and elsewhere.
    #[derive(Debug, Default)]
    pub(crate) struct Bytes(pub(crate) Vec<u8>);

    impl Bytes {
        pub(crate) fn new(tag: u8) -> Bytes {
            Bytes(vec![tag])
        }
        pub(crate) fn u8(mut self, v: u8) -> Bytes {
            self.0.push(v);
            self
        }
        pub(crate) fn i16(mut self, v: i16) -> Bytes {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub(crate) fn i32(mut self, v: i32) -> Bytes {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub(crate) fn u32(mut self, v: u32) -> Bytes {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub(crate) fn u64(mut self, v: u64) -> Bytes {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub(crate) fn i64(mut self, v: i64) -> Bytes {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub(crate) fn string(mut self, s: &str) -> Bytes {
            self.0.extend_from_slice(s.as_bytes());
            self.0.push(0);
            self
        }
        pub(crate) fn text(self, s: &str) -> Bytes {
            let mut b = self
                .u8(b't')
                .i32(i32::try_from(s.len()).unwrap_or(i32::MAX));
            b.0.extend_from_slice(s.as_bytes());
            b
        }
    }

    pub(crate) fn relation_bytes(id: u32, columns: &[(&str, u32, i32, bool)]) -> Vec<u8> {
        let mut b = Bytes::new(b'R')
            .u32(id)
            .string("public")
            .string("items")
            .u8(b'd')
            .i16(columns.len() as i16);
        for (name, oid, typmod, key) in columns {
            b = b.u8(u8::from(*key)).string(name).u32(*oid).i32(*typmod);
        }
        b.0
    }

    #[test]
    fn lsns_read_and_print_as_postgres_writes_them() {
        assert_eq!(Lsn::parse("16/B374D848"), Some(Lsn(0x16_B374_D848)));
        assert_eq!(Lsn::parse("0/0"), Some(Lsn(0)));
        assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!(Lsn::parse("x/1"), None);
        assert_eq!(Lsn::parse("1"), None);
        assert_eq!(Lsn::parse("/1"), None);
        assert_eq!(Lsn::parse("123456789/0"), None);
    }

    #[test]
    fn begin_and_commit_decode() {
        let begin = Bytes::new(b'B').u64(0x1_0000_0010).i64(5).u32(742).0;
        assert_eq!(
            decode(&begin).unwrap(),
            Message::Begin(Begin {
                final_lsn: Lsn(0x1_0000_0010),
                commit_time: 5,
                xid: 742
            })
        );
        let commit = Bytes::new(b'C').u8(0).u64(16).u64(64).i64(7).0;
        assert_eq!(
            decode(&commit).unwrap(),
            Message::Commit(Commit {
                flags: 0,
                commit_lsn: Lsn(16),
                end_lsn: Lsn(64),
                commit_time: 7
            })
        );
    }

    #[test]
    fn relations_and_types_decode() {
        let bytes = relation_bytes(16384, &[("id", 23, -1, true), ("name", 25, -1, false)]);
        let Message::Relation(relation) = decode(&bytes).unwrap() else {
            panic!("not a relation");
        };
        assert_eq!(relation.id, 16384);
        assert_eq!(relation.namespace, "public");
        assert_eq!(relation.name, "items");
        assert_eq!(relation.replica_identity, b'd');
        assert_eq!(
            relation.columns,
            vec![
                RelationColumn {
                    flags: 1,
                    name: "id".into(),
                    type_oid: 23,
                    type_modifier: -1
                },
                RelationColumn {
                    flags: 0,
                    name: "name".into(),
                    type_oid: 25,
                    type_modifier: -1
                },
            ]
        );
        let ty = Bytes::new(b'Y')
            .u32(17000)
            .string("public")
            .string("mood")
            .0;
        assert_eq!(
            decode(&ty).unwrap(),
            Message::Type(TypeInfo {
                id: 17000,
                namespace: "public".into(),
                name: "mood".into()
            })
        );
        let origin = Bytes::new(b'O').u64(9).string("node_a").0;
        assert_eq!(
            decode(&origin).unwrap(),
            Message::Origin {
                commit_lsn: Lsn(9),
                name: "node_a".into()
            }
        );
    }

    #[test]
    fn tuples_decode_with_nulls_unchanged_and_text() {
        let insert = Bytes::new(b'I')
            .u32(1)
            .u8(b'N')
            .i16(3)
            .text("42")
            .u8(b'n')
            .u8(b'u')
            .0;
        assert_eq!(
            decode(&insert).unwrap(),
            Message::Insert {
                relation: 1,
                new: vec![
                    ColumnValue::Text(b"42".to_vec()),
                    ColumnValue::Null,
                    ColumnValue::Unchanged
                ]
            }
        );
        let update_with_key = Bytes::new(b'U')
            .u32(1)
            .u8(b'K')
            .i16(1)
            .text("1")
            .u8(b'N')
            .i16(1)
            .text("2")
            .0;
        assert_eq!(
            decode(&update_with_key).unwrap(),
            Message::Update {
                relation: 1,
                old: Some(OldTuple {
                    key_only: true,
                    values: vec![ColumnValue::Text(b"1".to_vec())]
                }),
                new: vec![ColumnValue::Text(b"2".to_vec())]
            }
        );
        let update = Bytes::new(b'U').u32(1).u8(b'N').i16(1).text("2").0;
        assert!(matches!(
            decode(&update).unwrap(),
            Message::Update { old: None, .. }
        ));
        let delete = Bytes::new(b'D').u32(1).u8(b'O').i16(1).text("x").0;
        assert_eq!(
            decode(&delete).unwrap(),
            Message::Delete {
                relation: 1,
                old: OldTuple {
                    key_only: false,
                    values: vec![ColumnValue::Text(b"x".to_vec())]
                }
            }
        );
        let truncate = Bytes::new(b'T').u32(2).u8(1).u32(5).u32(6).0;
        assert_eq!(
            decode(&truncate).unwrap(),
            Message::Truncate {
                options: 1,
                relations: vec![5, 6]
            }
        );
        let mut logical = Bytes::new(b'M').u8(1).u64(3).string("p").i32(2).0;
        logical.extend_from_slice(b"hi");
        assert_eq!(
            decode(&logical).unwrap(),
            Message::Logical {
                transactional: true,
                lsn: Lsn(3),
                prefix: "p".into(),
                content: b"hi".to_vec()
            }
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("unknown type", vec![b'Z']),
            ("truncated begin", Bytes::new(b'B').u64(1).0),
            (
                "trailing bytes",
                Bytes::new(b'B').u64(1).i64(1).u32(1).u8(0).0,
            ),
            ("string without NUL", vec![b'Y', 0, 0, 0, 1, b'a', b'b']),
            (
                "negative column count",
                Bytes::new(b'I').u32(1).u8(b'N').i16(-1).0,
            ),
            (
                "column count beyond the message",
                Bytes::new(b'I').u32(1).u8(b'N').i16(i16::MAX).0,
            ),
            (
                "value length beyond the message",
                Bytes::new(b'I').u32(1).u8(b'N').i16(1).u8(b't').i32(1000).0,
            ),
            (
                "negative value length",
                Bytes::new(b'I').u32(1).u8(b'N').i16(1).u8(b't').i32(-5).0,
            ),
            (
                "unknown column kind",
                Bytes::new(b'I').u32(1).u8(b'N').i16(1).u8(b'x').0,
            ),
            (
                "insert without N",
                Bytes::new(b'I').u32(1).u8(b'K').i16(0).0,
            ),
            (
                "delete without K/O",
                Bytes::new(b'D').u32(1).u8(b'N').i16(0).0,
            ),
            (
                "update with two old tuples",
                Bytes::new(b'U').u32(1).u8(b'K').i16(0).u8(b'O').i16(0).0,
            ),
            (
                "truncate with too many relations",
                Bytes::new(b'T').u32(u32::MAX).u8(0).0,
            ),
            (
                "relation with too many columns",
                Bytes::new(b'R')
                    .u32(1)
                    .string("s")
                    .string("t")
                    .u8(b'd')
                    .i16(1000)
                    .0,
            ),
            ("stream start (protocol 2)", Bytes::new(b'S').u32(1).u8(1).0),
        ];
        for (name, bytes) in cases {
            assert!(decode(&bytes).is_err(), "{name} decoded");
        }
        // Every prefix of a valid message is an error, never a panic.
        let valid = relation_bytes(7, &[("id", 23, -1, true), ("t", 1184, 6, false)]);
        for end in 0..valid.len() {
            assert!(
                decode(&valid[..end]).is_err(),
                "prefix of {end} bytes decoded"
            );
        }
        assert!(decode(&valid).is_ok());
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
                let _ = decode(&bytes);
            }

            #[test]
            fn random_bytes_after_a_valid_tag_never_panic(
                tag in proptest::sample::select(b"BCORYIUDTM".to_vec()),
                rest in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                let mut bytes = vec![tag];
                bytes.extend(rest);
                let _ = decode(&bytes);
            }

            #[test]
            fn lsns_round_trip(n in any::<u64>()) {
                prop_assert_eq!(Lsn::parse(&Lsn(n).to_string()), Some(Lsn(n)));
            }
        }
    }
}
