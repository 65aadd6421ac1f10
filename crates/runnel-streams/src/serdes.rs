//! [`Serde`]: how a key or value type becomes the bytes of a record and back, with the
//! built-in ones Kafka's users know (bytes, UTF-8 strings, big-endian longs, JSON).
//!
//! On the wire a key or value may be null (a record without a key; a tombstone). A serde
//! for `T` refuses null; [`Nullable`] wraps one into a serde for `Option<T>`.

use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SerdeError(pub String);

/// Turns values of `T` into record bytes (`None`: null) and back.
pub trait Serde<T>: Send + Sync + 'static {
    fn serialize(&self, value: &T) -> Option<Vec<u8>>;
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<T, SerdeError>;

    /// Whether `value` is null on the wire (aggregations skip such keys and values).
    fn is_null(&self, _value: &T) -> bool {
        false
    }
}

/// A shared serde is a serde (the topology hands them around as `Arc<dyn Serde<T>>`).
impl<T: 'static> Serde<T> for std::sync::Arc<dyn Serde<T>> {
    fn serialize(&self, value: &T) -> Option<Vec<u8>> {
        (**self).serialize(value)
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<T, SerdeError> {
        (**self).deserialize(bytes)
    }

    fn is_null(&self, value: &T) -> bool {
        (**self).is_null(value)
    }
}

fn required(bytes: Option<&[u8]>) -> Result<&[u8], SerdeError> {
    bytes.ok_or_else(|| SerdeError("null where a value is required (use Nullable)".into()))
}

/// The bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerde;

impl Serde<Vec<u8>> for BytesSerde {
    fn serialize(&self, value: &Vec<u8>) -> Option<Vec<u8>> {
        Some(value.clone())
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Vec<u8>, SerdeError> {
        required(bytes).map(<[u8]>::to_vec)
    }
}

/// UTF-8 text.
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerde;

impl Serde<String> for StringSerde {
    fn serialize(&self, value: &String) -> Option<Vec<u8>> {
        Some(value.as_bytes().to_vec())
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<String, SerdeError> {
        String::from_utf8(required(bytes)?.to_vec())
            .map_err(|error| SerdeError(format!("not UTF-8: {error}")))
    }
}

/// A 64-bit integer, 8 bytes big-endian (Kafka's `LongSerde`).
#[derive(Debug, Clone, Copy, Default)]
pub struct I64Serde;

impl Serde<i64> for I64Serde {
    fn serialize(&self, value: &i64) -> Option<Vec<u8>> {
        Some(value.to_be_bytes().to_vec())
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<i64, SerdeError> {
        let bytes = required(bytes)?;
        <[u8; 8]>::try_from(bytes)
            .map(i64::from_be_bytes)
            .map_err(|_| SerdeError(format!("a long is 8 bytes, not {}", bytes.len())))
    }
}

/// JSON through `serde_json`.
pub struct JsonSerde<T>(PhantomData<fn() -> T>);

impl<T> JsonSerde<T> {
    pub fn new() -> Self {
        JsonSerde(PhantomData)
    }
}

impl<T> Default for JsonSerde<T> {
    fn default() -> Self {
        JsonSerde::new()
    }
}

impl<T> fmt::Debug for JsonSerde<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JsonSerde")
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Serde<T> for JsonSerde<T> {
    fn serialize(&self, value: &T) -> Option<Vec<u8>> {
        // Serializing plain data (no maps with non-string keys) cannot fail.
        serde_json::to_vec(value).ok()
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<T, SerdeError> {
        serde_json::from_slice(required(bytes)?)
            .map_err(|error| SerdeError(format!("not the expected JSON: {error}")))
    }
}

/// A serde for `Option<T>` from one for `T`: null is `None`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Nullable<S>(pub S);

impl<T, S: Serde<T>> Serde<Option<T>> for Nullable<S> {
    fn serialize(&self, value: &Option<T>) -> Option<Vec<u8>> {
        value.as_ref().and_then(|value| self.0.serialize(value))
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Option<T>, SerdeError> {
        bytes
            .map(|bytes| self.0.deserialize(Some(bytes)))
            .transpose()
    }

    fn is_null(&self, value: &Option<T>) -> bool {
        value.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_serdes_round_trip_and_refuse_what_is_not_theirs() {
        assert_eq!(
            StringSerde.deserialize(Some(b"word")),
            Ok("word".to_owned())
        );
        assert!(StringSerde.deserialize(Some(&[0xff])).is_err());
        assert!(StringSerde.deserialize(None).is_err());
        assert_eq!(I64Serde.serialize(&1), Some(vec![0, 0, 0, 0, 0, 0, 0, 1]));
        assert_eq!(
            I64Serde.deserialize(Some(&[0, 0, 0, 0, 0, 0, 1, 0])),
            Ok(256)
        );
        assert!(I64Serde.deserialize(Some(&[1, 2])).is_err());
        let json = JsonSerde::<Vec<u32>>::new();
        assert_eq!(json.serialize(&vec![1, 2]), Some(b"[1,2]".to_vec()));
        assert_eq!(json.deserialize(Some(b"[3]")), Ok(vec![3]));
        assert!(json.deserialize(Some(b"{")).is_err());
        let nullable = Nullable(StringSerde);
        assert_eq!(nullable.deserialize(None), Ok(None));
        assert_eq!(nullable.serialize(&None), None);
        assert_eq!(nullable.deserialize(Some(b"k")), Ok(Some("k".to_owned())));
    }
}
