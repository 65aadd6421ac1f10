//! Connect's data model: the typed values connectors, transforms and converters exchange, and
//! the records that carry them.
//!
//! As in Kafka Connect, a value may come with a [`Schema`] (a database row does) or without
//! one (a line of a file, a JSON document read schemaless); transforms handle both. A
//! schemaless structure is a [`Value::Map`] with string keys. Logical types (Decimal, Date,
//! Time, Timestamp) are primitive values whose schema carries Kafka's logical name, so that a
//! JSON envelope written by Kafka's converter reads back the same.

use std::collections::BTreeMap;

/// The logical names Kafka Connect gives these schemas; their values travel as the primitive.
pub const DECIMAL_LOGICAL: &str = "org.apache.kafka.connect.data.Decimal";
/// Days since the epoch, as INT32.
pub const DATE_LOGICAL: &str = "org.apache.kafka.connect.data.Date";
/// Milliseconds since midnight, as INT32.
pub const TIME_LOGICAL: &str = "org.apache.kafka.connect.data.Time";
/// Milliseconds since the epoch, as INT64.
pub const TIMESTAMP_LOGICAL: &str = "org.apache.kafka.connect.data.Timestamp";
/// The schema parameter that holds a Decimal's scale.
pub const DECIMAL_SCALE_PARAMETER: &str = "scale";

/// The types of Kafka Connect's schemas, with the names its JSON envelope uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaType {
    /// `int8`
    Int8,
    /// `int16`
    Int16,
    /// `int32`
    Int32,
    /// `int64`
    Int64,
    /// `float`
    Float32,
    /// `double`
    Float64,
    /// `boolean`
    Boolean,
    /// `string`
    String,
    /// `bytes`
    Bytes,
    /// `array`
    Array,
    /// `map`
    Map,
    /// `struct`
    Struct,
}

impl SchemaType {
    /// The name in the JSON envelope and in configs (`Cast`'s `int32`, ...).
    pub fn name(self) -> &'static str {
        match self {
            SchemaType::Int8 => "int8",
            SchemaType::Int16 => "int16",
            SchemaType::Int32 => "int32",
            SchemaType::Int64 => "int64",
            SchemaType::Float32 => "float",
            SchemaType::Float64 => "double",
            SchemaType::Boolean => "boolean",
            SchemaType::String => "string",
            SchemaType::Bytes => "bytes",
            SchemaType::Array => "array",
            SchemaType::Map => "map",
            SchemaType::Struct => "struct",
        }
    }

    /// The type named `name` (case-insensitive; `float32`/`float64` accepted too).
    pub fn from_name(name: &str) -> Option<SchemaType> {
        Some(match name.to_ascii_lowercase().as_str() {
            "int8" => SchemaType::Int8,
            "int16" => SchemaType::Int16,
            "int32" => SchemaType::Int32,
            "int64" => SchemaType::Int64,
            "float" | "float32" => SchemaType::Float32,
            "double" | "float64" => SchemaType::Float64,
            "boolean" => SchemaType::Boolean,
            "string" => SchemaType::String,
            "bytes" => SchemaType::Bytes,
            "array" => SchemaType::Array,
            "map" => SchemaType::Map,
            "struct" => SchemaType::Struct,
            _ => return None,
        })
    }

    /// Whether values of this type are single values rather than containers.
    pub fn is_primitive(self) -> bool {
        !matches!(
            self,
            SchemaType::Array | SchemaType::Map | SchemaType::Struct
        )
    }
}

/// A Connect schema. Containers describe their parts: an array its `value` (element) schema,
/// a map its `key` and `value` schemas, a struct its `fields` in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// The type of the values.
    pub kind: SchemaType,
    /// Whether null is a valid value.
    pub optional: bool,
    /// The value to use for a missing one.
    pub default: Option<Value>,
    /// A name, e.g. a logical type's or a struct's record name.
    pub name: Option<String>,
    /// The schema's version, if it has one.
    pub version: Option<i32>,
    /// Documentation.
    pub doc: Option<String>,
    /// Free-form parameters (a Decimal's scale lives here).
    pub parameters: BTreeMap<String, String>,
    /// A struct's fields, in order.
    pub fields: Vec<Field>,
    /// A map's key schema.
    pub key: Option<Box<Schema>>,
    /// A map's value schema or an array's element schema.
    pub value: Option<Box<Schema>>,
}

/// One field of a struct schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The field's name.
    pub name: String,
    /// The field's schema.
    pub schema: Schema,
}

impl Schema {
    /// A required schema of type `kind`, with nothing else set.
    pub fn new(kind: SchemaType) -> Schema {
        Schema {
            kind,
            optional: false,
            default: None,
            name: None,
            version: None,
            doc: None,
            parameters: BTreeMap::new(),
            fields: Vec::new(),
            key: None,
            value: None,
        }
    }

    /// An optional schema of type `kind`.
    pub fn optional(kind: SchemaType) -> Schema {
        Schema::new(kind).into_optional()
    }

    /// This schema with nulls allowed.
    pub fn into_optional(mut self) -> Schema {
        self.optional = true;
        self
    }

    /// A struct schema named `name` (if any) with `fields`.
    pub fn structure(name: Option<&str>, fields: Vec<Field>) -> Schema {
        Schema {
            name: name.map(str::to_owned),
            fields,
            ..Schema::new(SchemaType::Struct)
        }
    }

    /// An array of `element`.
    pub fn array(element: Schema) -> Schema {
        Schema {
            value: Some(Box::new(element)),
            ..Schema::new(SchemaType::Array)
        }
    }

    /// A map from `key` to `value`.
    pub fn map(key: Schema, value: Schema) -> Schema {
        Schema {
            key: Some(Box::new(key)),
            value: Some(Box::new(value)),
            ..Schema::new(SchemaType::Map)
        }
    }

    /// The field named `name`, with its position.
    pub fn field(&self, name: &str) -> Option<(usize, &Field)> {
        self.fields.iter().enumerate().find(|(_, f)| f.name == name)
    }

    /// Whether this schema is the logical type `logical` (one of the `*_LOGICAL` names).
    pub fn is_logical(&self, logical: &str) -> bool {
        self.name.as_deref() == Some(logical)
    }
}

impl Field {
    /// A field named `name` of schema `schema`.
    pub fn new(name: impl Into<String>, schema: Schema) -> Field {
        Field {
            name: name.into(),
            schema,
        }
    }
}

/// A Connect value. Which variant is valid for a schema is [`Value::conforms_to`]'s rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value.
    Null,
    /// `boolean`
    Boolean(bool),
    /// `int8`
    Int8(i8),
    /// `int16`
    Int16(i16),
    /// `int32` (and Date, Time)
    Int32(i32),
    /// `int64` (and Timestamp)
    Int64(i64),
    /// `float`
    Float32(f32),
    /// `double`
    Float64(f64),
    /// `string`
    String(String),
    /// `bytes` (and Decimal: the unscaled value, big-endian two's complement)
    Bytes(Vec<u8>),
    /// `array`
    Array(Vec<Value>),
    /// `map`; schemaless structures are maps with string keys.
    Map(Vec<(Value, Value)>),
    /// `struct`: the values of its schema's fields, in order.
    Struct(Vec<Value>),
}

impl Value {
    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value at `key` of a map keyed by strings (a schemaless structure).
    pub fn map_get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The type this value would have without a schema, as Kafka's `ConnectSchema.schemaType`
    /// infers it.
    pub fn inferred_type(&self) -> Option<SchemaType> {
        Some(match self {
            Value::Null => return None,
            Value::Boolean(_) => SchemaType::Boolean,
            Value::Int8(_) => SchemaType::Int8,
            Value::Int16(_) => SchemaType::Int16,
            Value::Int32(_) => SchemaType::Int32,
            Value::Int64(_) => SchemaType::Int64,
            Value::Float32(_) => SchemaType::Float32,
            Value::Float64(_) => SchemaType::Float64,
            Value::String(_) => SchemaType::String,
            Value::Bytes(_) => SchemaType::Bytes,
            Value::Array(_) => SchemaType::Array,
            Value::Map(_) => SchemaType::Map,
            Value::Struct(_) => SchemaType::Struct,
        })
    }

    /// Whether this value is valid for `schema`, recursively.
    pub fn conforms_to(&self, schema: &Schema) -> bool {
        match (self, schema.kind) {
            (Value::Null, _) => schema.optional || schema.default.is_some(),
            (Value::Array(items), SchemaType::Array) => match &schema.value {
                Some(element) => items.iter().all(|item| item.conforms_to(element)),
                None => false,
            },
            (Value::Map(entries), SchemaType::Map) => match (&schema.key, &schema.value) {
                (Some(k), Some(v)) => entries
                    .iter()
                    .all(|(key, value)| key.conforms_to(k) && value.conforms_to(v)),
                _ => false,
            },
            (Value::Struct(values), SchemaType::Struct) => {
                values.len() == schema.fields.len()
                    && values
                        .iter()
                        .zip(&schema.fields)
                        .all(|(value, field)| value.conforms_to(&field.schema))
            }
            (value, kind) => value.inferred_type() == Some(kind),
        }
    }

    /// A readable rendering, as Kafka's `toString` of the value gives it: strings as they
    /// are, structs as `Struct{a=1,b=x}`. What the file sink writes.
    pub fn display(&self, schema: Option<&Schema>) -> String {
        match self {
            Value::Null => "null".to_owned(),
            Value::Boolean(b) => b.to_string(),
            Value::Int8(n) => n.to_string(),
            Value::Int16(n) => n.to_string(),
            Value::Int32(n) => n.to_string(),
            Value::Int64(n) => n.to_string(),
            Value::Float32(n) => n.to_string(),
            Value::Float64(n) => n.to_string(),
            Value::String(s) => s.clone(),
            Value::Bytes(b) => format!("{b:?}"),
            Value::Array(items) => {
                let element = schema.and_then(|s| s.value.as_deref());
                let parts: Vec<String> = items.iter().map(|i| i.display(element)).collect();
                format!("[{}]", parts.join(", "))
            }
            Value::Map(entries) => {
                let (ks, vs) = match schema {
                    Some(s) => (s.key.as_deref(), s.value.as_deref()),
                    None => (None, None),
                };
                let parts: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("{}={}", k.display(ks), v.display(vs)))
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
            Value::Struct(values) => {
                let parts: Vec<String> = values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let field = schema.and_then(|s| s.fields.get(i));
                        let name = field.map_or_else(|| i.to_string(), |f| f.name.clone());
                        format!("{name}={}", v.display(field.map(|f| &f.schema)))
                    })
                    .collect();
                format!("Struct{{{}}}", parts.join(","))
            }
        }
    }
}

/// A key or value together with its schema (none for schemaless data).
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaAndValue {
    /// The schema, if the data has one.
    pub schema: Option<Schema>,
    /// The value.
    pub value: Value,
}

impl SchemaAndValue {
    /// A null without a schema.
    pub fn null() -> SchemaAndValue {
        SchemaAndValue {
            schema: None,
            value: Value::Null,
        }
    }

    /// `value` with `schema`.
    pub fn new(schema: Option<Schema>, value: Value) -> SchemaAndValue {
        SchemaAndValue { schema, value }
    }
}

/// A record header: raw bytes, as on the wire; no transform required here reads them typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// The header's key.
    pub key: String,
    /// The header's value.
    pub value: Option<Vec<u8>>,
}

/// What every record between a connector and a topic has, source or sink: the part
/// transforms see and change.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRecord {
    /// The topic it goes to (source) or came from (sink).
    pub topic: String,
    /// The partition, when the connector chose one or the record was read from one.
    pub partition: Option<i32>,
    /// The key.
    pub key: SchemaAndValue,
    /// The value.
    pub value: SchemaAndValue,
    /// Milliseconds since the epoch, when known.
    pub timestamp: Option<i64>,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

impl ConnectRecord {
    /// A record for `topic` with a null key, the given value, and nothing else.
    pub fn new(topic: impl Into<String>, value: SchemaAndValue) -> ConnectRecord {
        ConnectRecord {
            topic: topic.into(),
            partition: None,
            key: SchemaAndValue::null(),
            value,
            timestamp: None,
            headers: Vec::new(),
        }
    }
}

/// Where a source record came from in its system, and how far reading it got: both are JSON
/// objects, as Kafka keeps them in its offsets topic (e.g. `{"filename": "a.txt"}` and
/// `{"position": 1024}`).
pub type SourcePartition = serde_json::Map<String, serde_json::Value>;
/// See [`SourcePartition`].
pub type SourceOffset = serde_json::Map<String, serde_json::Value>;

/// A record a source task produced: what goes to the topic and the position it reached.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    /// The record.
    pub record: ConnectRecord,
    /// Which part of the source system it came from.
    pub source_partition: SourcePartition,
    /// How far reading that part got, with this record included.
    pub source_offset: SourceOffset,
}

/// A record a sink task receives, with where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    /// The record; its `partition` is always set.
    pub record: ConnectRecord,
    /// Its offset in the partition it was read from.
    pub kafka_offset: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_conform_to_their_schemas_recursively() {
        let schema = Schema::structure(
            Some("row"),
            vec![
                Field::new("id", Schema::new(SchemaType::Int32)),
                Field::new("tags", Schema::array(Schema::new(SchemaType::String))),
                Field::new("note", Schema::optional(SchemaType::String)),
            ],
        );
        let good = Value::Struct(vec![
            Value::Int32(1),
            Value::Array(vec![Value::String("a".into())]),
            Value::Null,
        ]);
        assert!(good.conforms_to(&schema));
        let wrong_element = Value::Struct(vec![
            Value::Int32(1),
            Value::Array(vec![Value::Int32(2)]),
            Value::Null,
        ]);
        assert!(!wrong_element.conforms_to(&schema));
        let missing_field = Value::Struct(vec![Value::Int32(1)]);
        assert!(!missing_field.conforms_to(&schema));
        assert!(!Value::Null.conforms_to(&Schema::new(SchemaType::Int32)));
    }

    #[test]
    fn structs_display_as_kafka_prints_them() {
        let schema = Schema::structure(
            None,
            vec![
                Field::new("a", Schema::new(SchemaType::Int32)),
                Field::new("b", Schema::new(SchemaType::String)),
            ],
        );
        let value = Value::Struct(vec![Value::Int32(1), Value::String("x".into())]);
        assert_eq!(value.display(Some(&schema)), "Struct{a=1,b=x}");
        assert_eq!(Value::String("line".into()).display(None), "line");
    }
}
