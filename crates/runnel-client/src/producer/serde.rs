//! Serializers: turning an application's keys and values into the bytes a record carries.
//!
//! A [`Serializer<T>`] is a plain conversion, shared by every task of a producer. Three come
//! with the client: [`BytesSerializer`] (bytes as they are), [`StringSerializer`] (UTF-8) and
//! [`JsonSerializer`] (any `serde::Serialize` value, as JSON). Build a typed record with
//! [`ProduceRecord::from_typed`](super::ProduceRecord::from_typed).
//!
//! ```
//! use runnel_client::producer::{JsonSerializer, ProduceRecord, StringSerializer};
//!
//! #[derive(serde::Serialize)]
//! struct Order { id: u64, amount_cents: i64 }
//!
//! let record = ProduceRecord::from_typed(
//!     "orders",
//!     Some("customer-7"),
//!     &Order { id: 1, amount_cents: 1250 },
//!     &StringSerializer,
//!     &JsonSerializer,
//! )?;
//! assert_eq!(record.key.as_deref(), Some(&b"customer-7"[..]));
//! assert_eq!(record.value.as_deref(), Some(&br#"{"id":1,"amount_cents":1250}"#[..]));
//! # Ok::<(), runnel_client::ClientError>(())
//! ```

use bytes::Bytes;

use crate::error::{ClientError, Result};

/// Turns a `T` into a record's key or value bytes.
///
/// Contract for implementations: `serialize` is called from any task, once per record, and
/// either returns the bytes or says why the value cannot be written
/// ([`ClientError::InvalidArgument`] for the built-in ones); it does no I/O.
///
/// A user-defined one, for a type the built-ins do not cover:
///
/// ```
/// use bytes::Bytes;
/// use runnel_client::producer::Serializer;
///
/// /// A big-endian `u64`, as Kafka's `LongSerializer`.
/// struct U64BigEndian;
///
/// impl Serializer<u64> for U64BigEndian {
///     fn serialize(&self, value: &u64) -> runnel_client::Result<Bytes> {
///         Ok(Bytes::copy_from_slice(&value.to_be_bytes()))
///     }
/// }
///
/// assert_eq!(&U64BigEndian.serialize(&258)?[..], &[0, 0, 0, 0, 0, 0, 1, 2]);
/// # Ok::<(), runnel_client::ClientError>(())
/// ```
pub trait Serializer<T: ?Sized>: Send + Sync {
    /// The bytes for `value`, or why it cannot be written.
    fn serialize(&self, value: &T) -> Result<Bytes>;
}

/// Bytes as they are.
///
/// ```
/// use runnel_client::producer::{BytesSerializer, Serializer};
///
/// let bytes = BytesSerializer.serialize(&b"\x00\x01"[..])?;
/// assert_eq!(&bytes[..], b"\x00\x01");
/// # Ok::<(), runnel_client::ClientError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerializer;

impl Serializer<[u8]> for BytesSerializer {
    fn serialize(&self, value: &[u8]) -> Result<Bytes> {
        Ok(Bytes::copy_from_slice(value))
    }
}

impl Serializer<Vec<u8>> for BytesSerializer {
    fn serialize(&self, value: &Vec<u8>) -> Result<Bytes> {
        Ok(Bytes::copy_from_slice(value))
    }
}

impl Serializer<Bytes> for BytesSerializer {
    fn serialize(&self, value: &Bytes) -> Result<Bytes> {
        Ok(value.clone())
    }
}

/// Text as UTF-8, as Kafka's `StringSerializer`.
///
/// ```
/// use runnel_client::producer::{Serializer, StringSerializer};
///
/// assert_eq!(&StringSerializer.serialize("héllo")?[..], "héllo".as_bytes());
/// # Ok::<(), runnel_client::ClientError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerializer;

impl Serializer<str> for StringSerializer {
    fn serialize(&self, value: &str) -> Result<Bytes> {
        Ok(Bytes::copy_from_slice(value.as_bytes()))
    }
}

impl Serializer<String> for StringSerializer {
    fn serialize(&self, value: &String) -> Result<Bytes> {
        Ok(Bytes::copy_from_slice(value.as_bytes()))
    }
}

/// Any `serde::Serialize` value as compact JSON.
///
/// ```
/// use runnel_client::producer::{JsonSerializer, Serializer};
///
/// let bytes = JsonSerializer.serialize(&vec![1, 2, 3])?;
/// assert_eq!(&bytes[..], b"[1,2,3]");
/// # Ok::<(), runnel_client::ClientError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonSerializer;

impl<T: ::serde::Serialize + ?Sized> Serializer<T> for JsonSerializer {
    fn serialize(&self, value: &T) -> Result<Bytes> {
        serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|error| ClientError::InvalidArgument(format!("cannot write as JSON: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn built_in_serializers_write_the_expected_bytes() {
        assert_eq!(
            &BytesSerializer.serialize(&vec![1u8, 2]).unwrap()[..],
            [1, 2]
        );
        assert_eq!(
            &BytesSerializer
                .serialize(&Bytes::from_static(b"x"))
                .unwrap()[..],
            b"x"
        );
        assert_eq!(
            &StringSerializer.serialize(&"abc".to_owned()).unwrap()[..],
            b"abc"
        );
        let mut map = BTreeMap::new();
        map.insert("b", 2);
        map.insert("a", 1);
        assert_eq!(
            &JsonSerializer.serialize(&map).unwrap()[..],
            br#"{"a":1,"b":2}"#
        );
        assert_eq!(&JsonSerializer.serialize("s").unwrap()[..], br#""s""#);
    }

    #[test]
    fn json_that_cannot_be_written_is_an_invalid_argument() {
        // JSON object keys must be strings.
        let mut map = BTreeMap::new();
        map.insert(vec![1u8], 1);
        let error = JsonSerializer.serialize(&map).unwrap_err();
        assert!(
            matches!(&error, ClientError::InvalidArgument(message) if message.contains("JSON")),
            "{error}"
        );
    }
}
