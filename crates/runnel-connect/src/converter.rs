//! Converters: how a key or value becomes the bytes a topic holds and back, as Kafka Connect's
//! `key.converter` / `value.converter` choose. JSON with and without the schema envelope
//! (Kafka's `JsonConverter`, byte-compatible with it), plain strings, and raw bytes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value as Json;

use crate::config::{ConfigDef, ConfigError, ConfigType, Configs, Importance, Validator};
use crate::data::{Field, Schema, SchemaAndValue, SchemaType, Value, DECIMAL_LOGICAL};

/// A conversion that failed, with why: a record that cannot be converted is an error the
/// connector's error tolerance decides about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConversionError(pub String);

/// Turns connect data into bytes and back. One instance per task and role (key or value).
pub trait Converter: Send + fmt::Debug {
    /// The bytes for `data`; `None` for a null.
    fn to_bytes(
        &self,
        topic: &str,
        data: &SchemaAndValue,
    ) -> Result<Option<Vec<u8>>, ConversionError>;
    /// The data in `bytes`; a null for `None`.
    fn to_connect(
        &self,
        topic: &str,
        bytes: Option<&[u8]>,
    ) -> Result<SchemaAndValue, ConversionError>;
}

/// The names a converter is configured by, as Kafka's class names and their short forms.
const JSON_NAMES: &[&str] = &[
    "org.apache.kafka.connect.json.JsonConverter",
    "JsonConverter",
    "json",
];
const STRING_NAMES: &[&str] = &[
    "org.apache.kafka.connect.storage.StringConverter",
    "StringConverter",
    "string",
];
const BYTES_NAMES: &[&str] = &[
    "org.apache.kafka.connect.converters.ByteArrayConverter",
    "ByteArrayConverter",
    "bytes",
];

/// The converter class names accepted, for validation messages and the docs.
pub fn converter_classes() -> Vec<&'static str> {
    [JSON_NAMES[0], STRING_NAMES[0], BYTES_NAMES[0]].to_vec()
}

/// Whether `class` names a converter this worker has.
pub fn is_converter_class(class: &str) -> bool {
    [JSON_NAMES, STRING_NAMES, BYTES_NAMES]
        .iter()
        .any(|names| names.contains(&class))
}

/// The settings of `JsonConverter` (under `key.converter.` or `value.converter.`), for the
/// configuration reference; `tests::json_converter_def_defaults_are_what_it_does` holds the
/// defaults to [`converter_for`]. The string and bytes converters take none.
pub fn json_converter_def() -> ConfigDef {
    ConfigDef::new()
        .define(
            "schemas.enable",
            ConfigType::Boolean,
            Some("true"),
            Importance::High,
            "JsonConverter",
            "Whether each value is written as {\"schema\": ..., \"payload\": ...}, so that \
             readers know its types, and read back the same way; false writes and reads bare \
             JSON.",
        )
        .define(
            "decimal.format",
            ConfigType::String,
            Some("BASE64"),
            Importance::Low,
            "JsonConverter",
            "How decimals are written: BASE64 (their unscaled bytes, Kafka's default) or \
             NUMERIC (a JSON number).",
        )
        .validated(Validator::OneOf(&["BASE64", "NUMERIC"]))
        .define(
            "schemas.cache.size",
            ConfigType::Int,
            Some("1000"),
            Importance::Medium,
            "JsonConverter",
            "How many distinct envelope schemas are kept parsed, so that the records of a \
             topic, which repeat one schema, are not parsed twice; 0 parses every one.",
        )
        .validated(Validator::Range {
            min: 0,
            max: Some(i64::from(i32::MAX)),
        })
}

/// The converter `class`, configured from `configs` (the keys under `key.converter.` or
/// `value.converter.`, prefix removed).
pub fn converter_for(class: &str, configs: &Configs) -> Result<Box<dyn Converter>, ConfigError> {
    if JSON_NAMES.contains(&class) {
        let schemas_enable = configs.bool_or("schemas.enable", true)?;
        let decimal_numeric = match configs.get("decimal.format").unwrap_or("BASE64") {
            "BASE64" => false,
            "NUMERIC" => true,
            other => {
                return Err(ConfigError::invalid(
                    "decimal.format",
                    other,
                    "must be BASE64 or NUMERIC",
                ))
            }
        };
        let cache_size = configs.parsed_or("schemas.cache.size", 1000, ConfigType::Int)?;
        Ok(Box::new(JsonConverter::new(
            schemas_enable,
            decimal_numeric,
            cache_size,
        )))
    } else if STRING_NAMES.contains(&class) {
        Ok(Box::new(StringConverter))
    } else if BYTES_NAMES.contains(&class) {
        Ok(Box::new(ByteArrayConverter))
    } else {
        Err(ConfigError::invalid(
            "converter",
            class,
            &format!(
                "is not a converter class; known: {}",
                converter_classes().join(", ")
            ),
        ))
    }
}

/// Kafka's `StringConverter`: the value's text as UTF-8; reads every record as a string.
#[derive(Debug, Clone, Copy)]
pub struct StringConverter;

impl Converter for StringConverter {
    fn to_bytes(
        &self,
        _topic: &str,
        data: &SchemaAndValue,
    ) -> Result<Option<Vec<u8>>, ConversionError> {
        Ok(match &data.value {
            Value::Null => None,
            value => Some(value.display(data.schema.as_ref()).into_bytes()),
        })
    }

    fn to_connect(
        &self,
        _topic: &str,
        bytes: Option<&[u8]>,
    ) -> Result<SchemaAndValue, ConversionError> {
        Ok(match bytes {
            None => SchemaAndValue::new(Some(Schema::optional(SchemaType::String)), Value::Null),
            Some(bytes) => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| ConversionError(format!("the data is not UTF-8: {e}")))?;
                SchemaAndValue::new(
                    Some(Schema::optional(SchemaType::String)),
                    Value::String(text.to_owned()),
                )
            }
        })
    }
}

/// Kafka's `ByteArrayConverter`: bytes pass through untouched.
#[derive(Debug, Clone, Copy)]
pub struct ByteArrayConverter;

impl Converter for ByteArrayConverter {
    fn to_bytes(
        &self,
        _topic: &str,
        data: &SchemaAndValue,
    ) -> Result<Option<Vec<u8>>, ConversionError> {
        match &data.value {
            Value::Null => Ok(None),
            Value::Bytes(bytes) => Ok(Some(bytes.clone())),
            other => Err(ConversionError(format!(
                "ByteArrayConverter takes bytes, not {}",
                other.inferred_type().map_or("null", SchemaType::name)
            ))),
        }
    }

    fn to_connect(
        &self,
        _topic: &str,
        bytes: Option<&[u8]>,
    ) -> Result<SchemaAndValue, ConversionError> {
        Ok(SchemaAndValue::new(
            Some(Schema::optional(SchemaType::Bytes)),
            bytes.map_or(Value::Null, |b| Value::Bytes(b.to_vec())),
        ))
    }
}

/// Kafka's `JsonConverter`. With `schemas.enable` (the default) each message is an envelope
/// `{"schema": ..., "payload": ...}`; without, the bare JSON, read without a schema.
#[derive(Debug)]
pub struct JsonConverter {
    /// Write and expect the schema envelope.
    schemas_enable: bool,
    /// Write decimals as JSON numbers rather than base64 of their unscaled bytes.
    decimal_numeric: bool,
    /// Envelope schemas already parsed, by their JSON text, as Kafka's converter caches them:
    /// the records of a topic repeat one schema, and parsing it was most of reading one.
    schemas: Mutex<SchemaCache>,
}

impl JsonConverter {
    /// A converter keeping up to `cache_size` parsed schemas (`schemas.cache.size`).
    pub fn new(schemas_enable: bool, decimal_numeric: bool, cache_size: usize) -> JsonConverter {
        JsonConverter {
            schemas_enable,
            decimal_numeric,
            schemas: Mutex::new(SchemaCache {
                parsed: HashMap::new(),
                capacity: cache_size,
            }),
        }
    }

    /// The schema `text` (an envelope's `schema`, not null) holds, parsed once per text.
    fn schema_of(&self, text: &str) -> Result<Schema, ConversionError> {
        let mut cache = self
            .schemas
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(schema) = cache.parsed.get(text) {
            return Ok(schema.clone());
        }
        let json: Json = serde_json::from_str(text)
            .map_err(|e| ConversionError(format!("the data is not JSON: {e}")))?;
        let schema = parse_schema(&json)?;
        if cache.capacity > 0 {
            // A full cache starts again: cheaper to keep than an LRU order, and a workload
            // cycling through more schemas than it holds gains nothing from either.
            if cache.parsed.len() >= cache.capacity {
                cache.parsed.clear();
            }
            cache.parsed.insert(text.into(), schema.clone());
        }
        Ok(schema)
    }
}

/// Parsed schemas by their JSON text, at most `capacity` of them.
#[derive(Debug)]
struct SchemaCache {
    parsed: HashMap<Box<str>, Schema>,
    capacity: usize,
}

/// An envelope read with its parts left as JSON text: the schema's text is its cache key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope<'a> {
    #[serde(borrow)]
    schema: &'a RawValue,
    #[serde(borrow)]
    payload: &'a RawValue,
}

impl Converter for JsonConverter {
    fn to_bytes(
        &self,
        _topic: &str,
        data: &SchemaAndValue,
    ) -> Result<Option<Vec<u8>>, ConversionError> {
        if data.value.is_null() && data.schema.is_none() {
            return Ok(None);
        }
        if let Some(schema) = &data.schema {
            if !data.value.conforms_to(schema) {
                return Err(ConversionError(format!(
                    "the value does not conform to its {} schema",
                    schema.kind.name()
                )));
            }
        }
        let payload = Payload {
            schema: data.schema.as_ref(),
            value: &data.value,
            decimal_numeric: self.decimal_numeric,
        };
        let written = if self.schemas_enable {
            serde_json::to_vec(&Envelope {
                schema: data.schema.as_ref().map(JsonSchema),
                payload,
            })
        } else {
            serde_json::to_vec(&payload)
        };
        written
            .map(Some)
            .map_err(|e| ConversionError(format!("cannot write JSON: {e}")))
    }

    fn to_connect(
        &self,
        _topic: &str,
        bytes: Option<&[u8]>,
    ) -> Result<SchemaAndValue, ConversionError> {
        let Some(bytes) = bytes else {
            return Ok(SchemaAndValue::null());
        };
        let not_json = |e: serde_json::Error| ConversionError(format!("the data is not JSON: {e}"));
        if !self.schemas_enable {
            let json: Json = serde_json::from_slice(bytes).map_err(not_json)?;
            return Ok(SchemaAndValue::new(None, schemaless_value(&json)));
        }
        let envelope: RawEnvelope<'_> = match serde_json::from_slice(bytes) {
            Ok(envelope) => envelope,
            // Not JSON at all, or JSON of another shape: say which.
            Err(_) => {
                serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(not_json)?;
                return Err(ConversionError(
                    "JsonConverter with schemas.enable needs an object of exactly \"schema\" and \
                     \"payload\"; for plain JSON set schemas.enable=false"
                        .to_owned(),
                ));
            }
        };
        let payload: Json = serde_json::from_str(envelope.payload.get()).map_err(not_json)?;
        match envelope.schema.get() {
            "null" => Ok(SchemaAndValue::new(None, schemaless_value(&payload))),
            schema_text => {
                let schema = self.schema_of(schema_text)?;
                let value = typed_value(&schema, &payload)?;
                Ok(SchemaAndValue::new(Some(schema), value))
            }
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    schema: Option<JsonSchema<'a>>,
    payload: Payload<'a>,
}

/// A schema written as Kafka's converter writes it, keys in its order.
struct JsonSchema<'a>(&'a Schema);

impl Serialize for JsonSchema<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        write_schema(self.0, None, serializer)
    }
}

fn write_schema<S: Serializer>(
    schema: &Schema,
    field: Option<&str>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(None)?;
    map.serialize_entry("type", schema.kind.name())?;
    match schema.kind {
        SchemaType::Struct => {
            let fields: Vec<FieldSchema<'_>> = schema.fields.iter().map(FieldSchema).collect();
            map.serialize_entry("fields", &fields)?;
        }
        SchemaType::Array => {
            if let Some(items) = &schema.value {
                map.serialize_entry("items", &JsonSchema(items))?;
            }
        }
        SchemaType::Map => {
            if let Some(keys) = &schema.key {
                map.serialize_entry("keys", &JsonSchema(keys))?;
            }
            if let Some(values) = &schema.value {
                map.serialize_entry("values", &JsonSchema(values))?;
            }
        }
        _ => {}
    }
    map.serialize_entry("optional", &schema.optional)?;
    if let Some(name) = &schema.name {
        map.serialize_entry("name", name)?;
    }
    if let Some(version) = schema.version {
        map.serialize_entry("version", &version)?;
    }
    if let Some(doc) = &schema.doc {
        map.serialize_entry("doc", doc)?;
    }
    if !schema.parameters.is_empty() {
        map.serialize_entry("parameters", &schema.parameters)?;
    }
    if let Some(default) = &schema.default {
        map.serialize_entry(
            "default",
            &Payload {
                schema: Some(schema),
                value: default,
                decimal_numeric: false,
            },
        )?;
    }
    if let Some(field) = field {
        map.serialize_entry("field", field)?;
    }
    map.end()
}

struct FieldSchema<'a>(&'a Field);

impl Serialize for FieldSchema<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        write_schema(&self.0.schema, Some(&self.0.name), serializer)
    }
}

/// A value written as JSON, guided by its schema when it has one.
struct Payload<'a> {
    schema: Option<&'a Schema>,
    value: &'a Value,
    decimal_numeric: bool,
}

impl Payload<'_> {
    fn part<'b>(&self, schema: Option<&'b Schema>, value: &'b Value) -> Payload<'b> {
        Payload {
            schema,
            value,
            decimal_numeric: self.decimal_numeric,
        }
    }
}

impl Serialize for Payload<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = match (self.value, self.schema.and_then(|s| s.default.as_ref())) {
            (Value::Null, Some(default)) => default,
            (value, _) => value,
        };
        match value {
            Value::Null => serializer.serialize_unit(),
            Value::Boolean(b) => serializer.serialize_bool(*b),
            Value::Int8(n) => serializer.serialize_i8(*n),
            Value::Int16(n) => serializer.serialize_i16(*n),
            Value::Int32(n) => serializer.serialize_i32(*n),
            Value::Int64(n) => serializer.serialize_i64(*n),
            Value::Float32(n) => serializer.serialize_f32(*n),
            Value::Float64(n) => serializer.serialize_f64(*n),
            Value::String(s) => serializer.serialize_str(s),
            Value::Bytes(bytes) => match self.schema {
                Some(schema) if schema.is_logical(DECIMAL_LOGICAL) && self.decimal_numeric => {
                    let scale = decimal_scale(schema);
                    let number = decimal_to_string(bytes, scale);
                    let json: serde_json::Number = number
                        .parse()
                        .map_err(|_| serde::ser::Error::custom("decimal out of JSON's range"))?;
                    json.serialize(serializer)
                }
                _ => serializer.serialize_str(&BASE64.encode(bytes)),
            },
            Value::Array(items) => {
                let element = self.schema.and_then(|s| s.value.as_deref());
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&self.part(element, item))?;
                }
                seq.end()
            }
            Value::Map(entries) => {
                let (key_schema, value_schema) = match self.schema {
                    Some(s) => (s.key.as_deref(), s.value.as_deref()),
                    None => (None, None),
                };
                let string_keys = match key_schema {
                    Some(k) => k.kind == SchemaType::String,
                    None => entries.iter().all(|(k, _)| k.as_str().is_some()),
                };
                if string_keys {
                    let mut map = serializer.serialize_map(Some(entries.len()))?;
                    for (k, v) in entries {
                        let key = k.as_str().unwrap_or("null");
                        map.serialize_entry(key, &self.part(value_schema, v))?;
                    }
                    map.end()
                } else {
                    // Kafka writes a map with non-string keys as an array of [key, value].
                    let mut seq = serializer.serialize_seq(Some(entries.len()))?;
                    for (k, v) in entries {
                        seq.serialize_element(&(
                            self.part(key_schema, k),
                            self.part(value_schema, v),
                        ))?;
                    }
                    seq.end()
                }
            }
            Value::Struct(values) => {
                let fields = self.schema.map_or(&[][..], |s| &s.fields[..]);
                let mut map = serializer.serialize_map(Some(values.len()))?;
                for (field, v) in fields.iter().zip(values) {
                    map.serialize_entry(&field.name, &self.part(Some(&field.schema), v))?;
                }
                map.end()
            }
        }
    }
}

fn decimal_scale(schema: &Schema) -> u32 {
    schema
        .parameters
        .get(crate::data::DECIMAL_SCALE_PARAMETER)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The decimal text of an unscaled big-endian two's complement integer at `scale`.
fn decimal_to_string(unscaled: &[u8], scale: u32) -> String {
    // Up to 16 bytes fit an i128; longer decimals are rare enough to show as base64's peers
    // would, but must not panic: those fall back to a lossy f64.
    let digits = if unscaled.len() <= 16 {
        let negative = unscaled.first().is_some_and(|b| b & 0x80 != 0);
        let mut n: i128 = if negative { -1 } else { 0 };
        for b in unscaled {
            n = (n << 8) | i128::from(*b);
        }
        n.to_string()
    } else {
        return "0".to_owned();
    };
    if scale == 0 {
        return digits;
    }
    let (sign, digits) = match digits.strip_prefix('-') {
        Some(rest) => ("-", rest.to_owned()),
        None => ("", digits),
    };
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// A schema read from the envelope's `schema` object.
pub(crate) fn parse_schema(json: &Json) -> Result<Schema, ConversionError> {
    let bad = |why: &str| ConversionError(format!("bad schema in the envelope: {why}"));
    let object = json.as_object().ok_or_else(|| bad("not an object"))?;
    let type_name = object
        .get("type")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("no \"type\""))?;
    let kind = SchemaType::from_name(type_name)
        .ok_or_else(|| bad(&format!("unknown type {type_name}")))?;
    let mut schema = Schema::new(kind);
    schema.optional = object
        .get("optional")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    schema.name = object.get("name").and_then(Json::as_str).map(str::to_owned);
    schema.version = object
        .get("version")
        .and_then(Json::as_i64)
        .and_then(|v| i32::try_from(v).ok());
    schema.doc = object.get("doc").and_then(Json::as_str).map(str::to_owned);
    if let Some(Json::Object(parameters)) = object.get("parameters") {
        schema.parameters = parameters
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                )
            })
            .collect::<BTreeMap<_, _>>();
    }
    match kind {
        SchemaType::Struct => {
            let fields = object
                .get("fields")
                .and_then(Json::as_array)
                .ok_or_else(|| bad("a struct without \"fields\""))?;
            for field in fields {
                let name = field
                    .get("field")
                    .and_then(Json::as_str)
                    .ok_or_else(|| bad("a field without a name"))?;
                schema.fields.push(Field::new(name, parse_schema(field)?));
            }
        }
        SchemaType::Array => {
            let items = object
                .get("items")
                .ok_or_else(|| bad("an array without \"items\""))?;
            schema.value = Some(Box::new(parse_schema(items)?));
        }
        SchemaType::Map => {
            let keys = object
                .get("keys")
                .ok_or_else(|| bad("a map without \"keys\""))?;
            let values = object
                .get("values")
                .ok_or_else(|| bad("a map without \"values\""))?;
            schema.key = Some(Box::new(parse_schema(keys)?));
            schema.value = Some(Box::new(parse_schema(values)?));
        }
        _ => {}
    }
    if let Some(default) = object.get("default") {
        if !default.is_null() {
            schema.default = Some(typed_value(&schema, default)?);
        }
    }
    Ok(schema)
}

/// The value of `json` read as `schema` says.
pub(crate) fn typed_value(schema: &Schema, json: &Json) -> Result<Value, ConversionError> {
    let mismatch = || {
        ConversionError(format!(
            "a {} schema does not fit the JSON {}",
            schema.kind.name(),
            truncated(json)
        ))
    };
    if json.is_null() {
        return match &schema.default {
            Some(default) => Ok(default.clone()),
            None if schema.optional => Ok(Value::Null),
            None => Err(ConversionError(format!(
                "a null for a required {} schema",
                schema.kind.name()
            ))),
        };
    }
    let integer = || json.as_i64().ok_or_else(mismatch);
    Ok(match schema.kind {
        SchemaType::Int8 => Value::Int8(i8::try_from(integer()?).map_err(|_| mismatch())?),
        SchemaType::Int16 => Value::Int16(i16::try_from(integer()?).map_err(|_| mismatch())?),
        SchemaType::Int32 => Value::Int32(i32::try_from(integer()?).map_err(|_| mismatch())?),
        SchemaType::Int64 => Value::Int64(integer()?),
        SchemaType::Float32 => Value::Float32(json.as_f64().ok_or_else(mismatch)? as f32),
        SchemaType::Float64 => Value::Float64(json.as_f64().ok_or_else(mismatch)?),
        SchemaType::Boolean => Value::Boolean(json.as_bool().ok_or_else(mismatch)?),
        SchemaType::String => Value::String(json.as_str().ok_or_else(mismatch)?.to_owned()),
        SchemaType::Bytes => match json {
            Json::String(text) => Value::Bytes(BASE64.decode(text).map_err(|_| mismatch())?),
            Json::Number(n) if schema.is_logical(DECIMAL_LOGICAL) => Value::Bytes(
                decimal_from_string(&n.to_string(), decimal_scale(schema)).ok_or_else(mismatch)?,
            ),
            _ => return Err(mismatch()),
        },
        SchemaType::Array => {
            let element = schema.value.as_deref().ok_or_else(mismatch)?;
            let items = json.as_array().ok_or_else(mismatch)?;
            Value::Array(
                items
                    .iter()
                    .map(|i| typed_value(element, i))
                    .collect::<Result<_, _>>()?,
            )
        }
        SchemaType::Map => {
            let (k, v) = match (&schema.key, &schema.value) {
                (Some(k), Some(v)) => (k.as_ref(), v.as_ref()),
                _ => return Err(mismatch()),
            };
            match json {
                Json::Object(entries) => Value::Map(
                    entries
                        .iter()
                        .map(|(key, value)| {
                            Ok((Value::String(key.clone()), typed_value(v, value)?))
                        })
                        .collect::<Result<_, ConversionError>>()?,
                ),
                Json::Array(pairs) => Value::Map(
                    pairs
                        .iter()
                        .map(|pair| match pair.as_array().map(Vec::as_slice) {
                            Some([key, value]) => {
                                Ok((typed_value(k, key)?, typed_value(v, value)?))
                            }
                            _ => Err(mismatch()),
                        })
                        .collect::<Result<_, ConversionError>>()?,
                ),
                _ => return Err(mismatch()),
            }
        }
        SchemaType::Struct => {
            let object = json.as_object().ok_or_else(mismatch)?;
            Value::Struct(
                schema
                    .fields
                    .iter()
                    .map(|field| {
                        typed_value(
                            &field.schema,
                            object.get(&field.name).unwrap_or(&Json::Null),
                        )
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
    })
}

/// The unscaled big-endian bytes of a decimal's text at `scale`, if it fits 16 bytes.
fn decimal_from_string(text: &str, scale: u32) -> Option<Vec<u8>> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > scale as usize || text.contains(['e', 'E']) {
        return None;
    }
    let digits = format!("{int}{frac:0<width$}", width = scale as usize);
    let n: i128 = digits.parse().ok()?;
    let bytes = n.to_be_bytes();
    // The shortest two's complement form, as Java's BigInteger.toByteArray gives.
    let mut start = 0;
    while start < 15 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    Some(bytes[start..].to_vec())
}

/// JSON read without a schema, as Kafka's converter infers it: integers as int64, other
/// numbers as double, objects as string-keyed maps.
pub(crate) fn schemaless_value(json: &Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int64(i),
            None => Value::Float64(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::Array(items.iter().map(schemaless_value).collect()),
        Json::Object(entries) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| (Value::String(k.clone()), schemaless_value(v)))
                .collect(),
        ),
    }
}

fn truncated(json: &Json) -> String {
    let text = json.to_string();
    match text.char_indices().nth(64) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_converter_def_defaults_are_what_it_does() {
        let def = json_converter_def();
        let default = |key: &str| {
            def.keys()
                .iter()
                .find(|k| k.name == key)
                .and_then(|k| k.default.clone())
                .unwrap_or_else(|| panic!("{key} has no default"))
        };
        // What converter_for builds with nothing set is what it builds from the defaults.
        let built = |configs: &Configs| {
            format!(
                "{:?}",
                converter_for(JSON_NAMES[0], configs).expect("valid")
            )
        };
        let mut explicit = Configs::new();
        for key in def.keys() {
            explicit.set(key.name.clone(), default(&key.name));
        }
        assert_eq!(built(&Configs::new()), built(&explicit));
        let mut flipped = Configs::new();
        flipped.set("decimal.format", "NUMERIC");
        assert_ne!(built(&Configs::new()), built(&flipped));
    }

    fn json(schemas_enable: bool) -> JsonConverter {
        JsonConverter::new(schemas_enable, false, 1000)
    }

    #[test]
    fn a_struct_is_written_in_kafkas_envelope_and_read_back() {
        let schema = Schema::structure(
            Some("customer"),
            vec![
                Field::new("id", Schema::new(SchemaType::Int32)),
                Field::new("name", Schema::optional(SchemaType::String)),
            ],
        );
        let data = SchemaAndValue::new(
            Some(schema),
            Value::Struct(vec![Value::Int32(7), Value::String("Ada".into())]),
        );
        let bytes = json(true).to_bytes("t", &data).unwrap().unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"},{"type":"string","optional":true,"field":"name"}],"optional":false,"name":"customer"},"payload":{"id":7,"name":"Ada"}}"#
        );
        assert_eq!(json(true).to_connect("t", Some(&bytes)).unwrap(), data);
    }

    /// Whatever the cache holds, a record reads as it would with every schema parsed anew:
    /// repeated schemas, two schemas taking turns in a cache of one, no cache, a schema
    /// spelled with other whitespace, a null schema, and a bad one (refused every time).
    #[test]
    fn cached_schemas_read_as_freshly_parsed_ones() {
        let id = |schema: Schema| Schema::structure(Some("row"), vec![Field::new("id", schema)]);
        let records = [
            (id(Schema::new(SchemaType::Int32)), Value::Int32(1)),
            (id(Schema::new(SchemaType::Int64)), Value::Int64(2)),
            (id(Schema::new(SchemaType::Int32)), Value::Int32(3)),
            (id(Schema::new(SchemaType::Int32)), Value::Int32(4)),
        ];
        let written: Vec<Vec<u8>> = records
            .iter()
            .map(|(schema, value)| {
                let data =
                    SchemaAndValue::new(Some(schema.clone()), Value::Struct(vec![value.clone()]));
                json(true).to_bytes("t", &data).unwrap().unwrap()
            })
            .collect();
        let spaced = br#"{"schema": {"type": "string", "optional": false}, "payload": "x"}"#;
        let null_schema = br#"{"schema":null,"payload":{"a":1}}"#;
        let bad_schema = br#"{"schema":{"type":"no such type"},"payload":1}"#;
        let mut inputs: Vec<&[u8]> = written.iter().map(Vec::as_slice).collect();
        inputs.extend([
            &spaced[..],
            &null_schema[..],
            &bad_schema[..],
            &written[0][..],
        ]);

        let fresh: Vec<_> = inputs
            .iter()
            .map(|bytes| JsonConverter::new(true, false, 0).to_connect("t", Some(bytes)))
            .collect();
        let refused: Vec<bool> = fresh.iter().map(Result::is_err).collect();
        assert_eq!(
            refused,
            [false, false, false, false, false, false, true, false]
        );
        for cache_size in [0, 1, 1000] {
            let converter = JsonConverter::new(true, false, cache_size);
            for _ in 0..2 {
                for (bytes, expected) in inputs.iter().zip(&fresh) {
                    assert_eq!(&converter.to_connect("t", Some(bytes)), expected);
                }
            }
            let cache = converter.schemas.lock().unwrap();
            assert!(cache.parsed.len() <= cache_size, "bounded by {cache_size}");
        }
    }

    #[test]
    fn a_string_is_written_with_its_schema_as_the_file_source_sends_it() {
        let data = SchemaAndValue::new(
            Some(Schema::new(SchemaType::String)),
            Value::String("a line".into()),
        );
        let bytes = json(true).to_bytes("t", &data).unwrap().unwrap();
        assert_eq!(
            bytes,
            br#"{"schema":{"type":"string","optional":false},"payload":"a line"}"#
        );
        let bare = json(false).to_bytes("t", &data).unwrap().unwrap();
        assert_eq!(bare, br#""a line""#);
    }

    #[test]
    fn schemaless_json_reads_as_maps_of_int64_and_double() {
        let data = json(false)
            .to_connect("t", Some(br#"{"a":1,"b":1.5,"c":[true,null]}"#))
            .unwrap();
        assert_eq!(data.schema, None);
        assert_eq!(data.value.map_get("a"), Some(&Value::Int64(1)));
        assert_eq!(data.value.map_get("b"), Some(&Value::Float64(1.5)));
        assert_eq!(
            data.value.map_get("c"),
            Some(&Value::Array(vec![Value::Boolean(true), Value::Null]))
        );
    }

    #[test]
    fn plain_json_is_refused_when_schemas_are_enabled() {
        let error = json(true).to_connect("t", Some(br#"{"a":1}"#)).unwrap_err();
        assert!(error.0.contains("schemas.enable=false"), "{error}");
        assert!(json(true).to_connect("t", Some(b"not json")).is_err());
        assert_eq!(
            json(true).to_connect("t", None).unwrap(),
            SchemaAndValue::null()
        );
    }

    #[test]
    fn a_value_that_does_not_fit_its_schema_is_an_error_not_garbage() {
        let data = SchemaAndValue::new(
            Some(Schema::new(SchemaType::Int32)),
            Value::String("x".into()),
        );
        assert!(json(true).to_bytes("t", &data).is_err());
        let envelope = br#"{"schema":{"type":"int8","optional":false},"payload":300}"#;
        assert!(json(true).to_connect("t", Some(envelope)).is_err());
    }

    #[test]
    fn decimals_round_trip_as_base64_and_as_numbers() {
        let mut schema = Schema::new(SchemaType::Bytes);
        schema.name = Some(DECIMAL_LOGICAL.into());
        schema.parameters.insert("scale".into(), "2".into());
        // -12.34: unscaled -1234 = 0xfb2e.
        let data = SchemaAndValue::new(Some(schema), Value::Bytes(vec![0xfb, 0x2e]));
        let numeric = JsonConverter::new(true, true, 1000);
        let bytes = numeric.to_bytes("t", &data).unwrap().unwrap();
        assert!(std::str::from_utf8(&bytes)
            .unwrap()
            .ends_with(r#""payload":-12.34}"#));
        assert_eq!(numeric.to_connect("t", Some(&bytes)).unwrap(), data);
        let base64 = json(true).to_bytes("t", &data).unwrap().unwrap();
        assert_eq!(json(true).to_connect("t", Some(&base64)).unwrap(), data);
    }

    #[test]
    fn maps_with_non_string_keys_are_arrays_of_pairs() {
        let schema = Schema::map(
            Schema::new(SchemaType::Int32),
            Schema::new(SchemaType::String),
        );
        let data = SchemaAndValue::new(
            Some(schema),
            Value::Map(vec![(Value::Int32(1), Value::String("one".into()))]),
        );
        let bytes = json(false).to_bytes("t", &data).unwrap().unwrap();
        assert_eq!(bytes, br#"[[1,"one"]]"#);
    }

    #[test]
    fn strings_and_bytes_pass_through_their_converters() {
        let text = StringConverter.to_connect("t", Some(b"hello")).unwrap();
        assert_eq!(
            StringConverter.to_bytes("t", &text).unwrap().unwrap(),
            b"hello"
        );
        assert!(StringConverter.to_connect("t", Some(&[0xff])).is_err());
        let raw = ByteArrayConverter
            .to_connect("t", Some(&[0, 1, 255]))
            .unwrap();
        assert_eq!(
            ByteArrayConverter.to_bytes("t", &raw).unwrap().unwrap(),
            vec![0, 1, 255]
        );
    }
}
