//! The transforms that reshape a record's key or value field by field, on structs with a
//! schema and on schemaless maps alike: `InsertField`, `ReplaceField`, `MaskField`,
//! `ExtractField`, `HoistField`, `ValueToKey`, `Flatten` and `SetSchemaMetadata`.
//!
//! They follow Kafka's transforms of the same names, in their errors too (a schemaless value
//! that is not a map, a struct field that does not exist), with these deliberate
//! differences:
//! - `InsertField`'s `offset.field` is accepted and ignored: a [`ConnectRecord`] does not
//!   carry the offset a sink record was read at (Kafka fails on source records instead);
//!   and a required (`!`) field without a value (no partition, no timestamp) is an error
//!   here, where Kafka fails later, in the converter.
//! - `MaskField` leaves a schemaless field absent when it is absent (Kafka adds it, null).
//!
//! As in Kafka, `InsertField`, `ReplaceField`, `Flatten` and `ExtractField` pass a null key
//! or value (a tombstone) through, while `MaskField` and `ValueToKey` fail on one: guard
//! them with the `RecordIsTombstone` predicate, negated, where tombstones flow.
//! - Schemaless maps keep their entries in order, new entries last (Kafka's are unordered).
//! - `ExtractField` supports both field syntax versions, `V1` (a top-level field) and `V2`
//!   (a dotted path, with backticks around names holding dots).

use super::cast::{decimal_to_bytes, parse_decimal};
use super::{
    copy_schema_basics, field_value, map_get, map_put, push_field, require_map, require_map_ref,
    require_struct, require_struct_ref, type_name, Defs, Props, Side, Transformation,
    REPLACE_NULL_WITH_DEFAULT,
};
use crate::config::{ConfigError, ConfigType, Importance, Validator};
use crate::connector::ConnectError;
use crate::data::{
    ConnectRecord, Field, Schema, SchemaAndValue, SchemaType, Value, DATE_LOGICAL, DECIMAL_LOGICAL,
    DECIMAL_SCALE_PARAMETER, TIMESTAMP_LOGICAL, TIME_LOGICAL,
};

// ---------------------------------------------------------------------------------------
// InsertField

/// A field to insert: its name and whether its schema is optional (`name?`, the default)
/// or required (`name!`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Insertion {
    name: String,
    optional: bool,
}

impl Insertion {
    fn parse(spec: Option<&str>) -> Option<Insertion> {
        let spec = spec?;
        Some(if let Some(name) = spec.strip_suffix('?') {
            Insertion {
                name: name.to_owned(),
                optional: true,
            }
        } else if let Some(name) = spec.strip_suffix('!') {
            Insertion {
                name: name.to_owned(),
                optional: false,
            }
        } else {
            Insertion {
                name: spec.to_owned(),
                optional: true,
            }
        })
    }
}

const INSERT_PURPOSE: &str = "field insertion";

/// `InsertField$Key` / `InsertField$Value`: adds the record's topic, partition, timestamp
/// or a fixed string as fields.
#[derive(Debug)]
pub(crate) struct InsertField {
    side: Side,
    topic: Option<Insertion>,
    partition: Option<Insertion>,
    timestamp: Option<Insertion>,
    constant: Option<(Insertion, String)>,
    replace_null_with_default: bool,
}

impl InsertField {
    pub(crate) fn define(defs: Defs) -> Defs {
        const SUFFIX: &str =
            " End it with '!' for a required field, '?' (the default) for an optional one.";
        defs.key(
            "topic.field",
            ConfigType::String,
            Some(""),
            Importance::Medium,
            &format!("The field to hold the record's topic.{SUFFIX}"),
        )
        .key(
            "partition.field",
            ConfigType::String,
            Some(""),
            Importance::Medium,
            &format!("The field to hold the record's partition.{SUFFIX}"),
        )
        .key(
            "offset.field",
            ConfigType::String,
            Some(""),
            Importance::Medium,
            "Accepted for compatibility and ignored: records here do not carry their offset.",
        )
        .key(
            "timestamp.field",
            ConfigType::String,
            Some(""),
            Importance::Medium,
            &format!("The field to hold the record's timestamp.{SUFFIX}"),
        )
        .key(
            "static.field",
            ConfigType::String,
            Some(""),
            Importance::Medium,
            &format!("The field to hold `static.value`.{SUFFIX}"),
        )
        .key(
            "static.value",
            ConfigType::String,
            Some(""),
            Importance::Medium,
            "The string `static.field` holds.",
        )
        .replace_null_with_default()
    }

    pub(crate) fn build(props: &Props, side: Side) -> Result<Box<dyn Transformation>, ConfigError> {
        let spec = |key: &str| Insertion::parse(props.get(key).filter(|v| !v.is_empty()));
        let offset = spec("offset.field");
        let static_field = spec("static.field");
        let transform = InsertField {
            side,
            topic: spec("topic.field"),
            partition: spec("partition.field"),
            timestamp: spec("timestamp.field"),
            constant: match static_field {
                None => None,
                Some(field) => match props.get("static.value") {
                    Some(value) => Some((field, value.to_owned())),
                    None => {
                        return Err(props.invalid(
                            "static.value",
                            "null",
                            &format!("No value specified for static field: {}", field.name),
                        ))
                    }
                },
            },
            replace_null_with_default: props.bool_or(REPLACE_NULL_WITH_DEFAULT, true)?,
        };
        if transform.topic.is_none()
            && transform.partition.is_none()
            && offset.is_none()
            && transform.timestamp.is_none()
            && transform.constant.is_none()
        {
            return Err(props.error("type", "No field insertion configured".to_owned()));
        }
        Ok(Box::new(transform))
    }

    /// What to insert: each field, its schema, and its value for `record` if it has one.
    fn insertions(&self, record: &ConnectRecord) -> Vec<(&Insertion, Schema, Option<Value>)> {
        let schema = |kind: SchemaType, field: &Insertion| Schema {
            optional: field.optional,
            ..Schema::new(kind)
        };
        let mut out = Vec::new();
        if let Some(field) = &self.topic {
            let value = Value::String(record.topic.clone());
            out.push((field, schema(SchemaType::String, field), Some(value)));
        }
        if let Some(field) = &self.partition {
            let value = record.partition.map(Value::Int32);
            out.push((field, schema(SchemaType::Int32, field), value));
        }
        if let Some(field) = &self.timestamp {
            let timestamp = Schema {
                name: Some(TIMESTAMP_LOGICAL.to_owned()),
                version: Some(1),
                ..schema(SchemaType::Int64, field)
            };
            out.push((field, timestamp, record.timestamp.map(Value::Int64)));
        }
        if let Some((field, value)) = &self.constant {
            let value = Value::String(value.clone());
            out.push((field, schema(SchemaType::String, field), Some(value)));
        }
        out
    }
}

impl Transformation for InsertField {
    fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        // Tombstones pass, so that a delete still deletes.
        if self.side.of(&record).value.is_null() {
            return Ok(Some(record));
        }
        let insertions = self.insertions(&record);
        let data = self.side.take(&mut record);
        let updated = match data.schema {
            None => {
                let mut entries = require_map(data.value, INSERT_PURPOSE)?;
                for (field, _, value) in insertions {
                    if let Some(value) = value {
                        map_put(&mut entries, &field.name, value);
                    }
                }
                SchemaAndValue::new(None, Value::Map(entries))
            }
            Some(schema) => {
                let values = require_struct(&schema, data.value, INSERT_PURPOSE)?;
                let mut updated = copy_schema_basics(&schema, SchemaType::Struct);
                updated.fields = schema.fields.clone();
                let mut updated_values: Vec<Value> = schema
                    .fields
                    .iter()
                    .zip(values)
                    .map(|(f, v)| field_value(f, v, self.replace_null_with_default))
                    .collect();
                for (field, field_schema, value) in insertions {
                    if value.is_none() && !field.optional {
                        return Err(ConnectError::failed(format!(
                            "Invalid value: null used for required field: \"{}\", schema type: {}",
                            field.name,
                            field_schema.kind.name()
                        )));
                    }
                    push_field(&mut updated, Field::new(field.name.clone(), field_schema))?;
                    updated_values.push(value.unwrap_or(Value::Null));
                }
                SchemaAndValue::new(Some(updated), Value::Struct(updated_values))
            }
        };
        self.side.put(&mut record, updated);
        Ok(Some(record))
    }
}

// ---------------------------------------------------------------------------------------
// ReplaceField

const REPLACE_PURPOSE: &str = "field replacement";

/// `ReplaceField$Key` / `ReplaceField$Value`: keeps, drops and renames fields.
#[derive(Debug)]
pub(crate) struct ReplaceField {
    side: Side,
    exclude: Vec<String>,
    include: Vec<String>,
    renames: Vec<(String, String)>,
    replace_null_with_default: bool,
}

impl ReplaceField {
    pub(crate) fn define(defs: Defs) -> Defs {
        defs.key(
            "exclude",
            ConfigType::List,
            Some(""),
            Importance::Medium,
            "Fields to drop; wins over `include`.",
        )
        .key(
            "include",
            ConfigType::List,
            Some(""),
            Importance::Medium,
            "Fields to keep, all others dropped; when empty, all are kept.",
        )
        .key(
            "renames",
            ConfigType::List,
            Some(""),
            Importance::Medium,
            "Renames, as `old:new` pairs, e.g. `foo:bar,abc:xyz`.",
        )
        .replace_null_with_default()
        .key(
            "blacklist",
            ConfigType::List,
            Some(""),
            Importance::Low,
            "Deprecated name of `exclude`, read when `exclude` is not set.",
        )
        .key(
            "whitelist",
            ConfigType::List,
            Some(""),
            Importance::Low,
            "Deprecated name of `include`, read when `include` is not set.",
        )
    }

    pub(crate) fn build(props: &Props, side: Side) -> Result<Box<dyn Transformation>, ConfigError> {
        // The current name wins over the deprecated one, as Kafka translates them.
        let list_or_deprecated = |name: &str, deprecated: &str| {
            if props.get(name).is_some() {
                props.list(name)
            } else {
                props.list(deprecated)
            }
        };
        let mut renames: Vec<(String, String)> = Vec::new();
        for mapping in props.list("renames") {
            match java_split(&mapping, ':')[..] {
                [old, new] => match renames.iter_mut().find(|(o, _)| o == old) {
                    Some(entry) => entry.1 = new.to_owned(),
                    None => renames.push((old.to_owned(), new.to_owned())),
                },
                _ => {
                    return Err(props.invalid(
                        "renames",
                        props.get("renames").unwrap_or_default(),
                        &format!("Invalid rename mapping: {mapping}"),
                    ))
                }
            }
        }
        Ok(Box::new(ReplaceField {
            side,
            exclude: list_or_deprecated("exclude", "blacklist"),
            include: list_or_deprecated("include", "whitelist"),
            renames,
            replace_null_with_default: props.bool_or(REPLACE_NULL_WITH_DEFAULT, true)?,
        }))
    }

    fn keeps(&self, name: &str) -> bool {
        !self.exclude.iter().any(|f| f == name)
            && (self.include.is_empty() || self.include.iter().any(|f| f == name))
    }

    fn renamed<'a>(&'a self, name: &'a str) -> &'a str {
        self.renames
            .iter()
            .find(|(old, _)| old == name)
            .map_or(name, |(_, new)| new.as_str())
    }
}

impl Transformation for ReplaceField {
    fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        if self.side.of(&record).value.is_null() {
            return Ok(Some(record));
        }
        let data = self.side.take(&mut record);
        let updated = match data.schema {
            None => {
                let entries = require_map(data.value, REPLACE_PURPOSE)?;
                let mut kept = Vec::with_capacity(entries.len());
                for (key, value) in entries {
                    match key.as_str() {
                        Some(name) if self.keeps(name) => {
                            map_put(&mut kept, self.renamed(name), value);
                        }
                        Some(_) => {}
                        // A key no field name can match: kept unless only named fields are.
                        None if self.include.is_empty() => kept.push((key, value)),
                        None => {}
                    }
                }
                SchemaAndValue::new(None, Value::Map(kept))
            }
            Some(schema) => {
                let values = require_struct(&schema, data.value, REPLACE_PURPOSE)?;
                let mut updated = copy_schema_basics(&schema, SchemaType::Struct);
                let mut kept = Vec::new();
                for (field, value) in schema.fields.iter().zip(values) {
                    if self.keeps(&field.name) {
                        let name = self.renamed(&field.name).to_owned();
                        push_field(&mut updated, Field::new(name, field.schema.clone()))?;
                        kept.push(field_value(field, value, self.replace_null_with_default));
                    }
                }
                SchemaAndValue::new(Some(updated), Value::Struct(kept))
            }
        };
        self.side.put(&mut record, updated);
        Ok(Some(record))
    }
}

/// Java's `String.split` on a single character: trailing empty parts dropped.
fn java_split(text: &str, separator: char) -> Vec<&str> {
    let mut parts: Vec<&str> = text.split(separator).collect();
    while parts.last() == Some(&"") {
        parts.pop();
    }
    parts
}

// ---------------------------------------------------------------------------------------
// MaskField

const MASK_PURPOSE: &str = "mask fields";

/// `MaskField$Key` / `MaskField$Value`: replaces fields with their type's zero value (0,
/// false, "", empty array or map) or a given replacement.
#[derive(Debug)]
pub(crate) struct MaskField {
    side: Side,
    fields: Vec<String>,
    replacement: Option<String>,
    replace_null_with_default: bool,
}

impl MaskField {
    pub(crate) fn define(defs: Defs) -> Defs {
        defs.key(
            "fields",
            ConfigType::List,
            None,
            Importance::High,
            "The fields to mask.",
        )
        .validated(Validator::NonEmpty)
        .key(
            "replacement",
            ConfigType::String,
            Some(""),
            Importance::Low,
            "What numeric and string fields are masked with instead of their zero value, \
             converted to the field's type.",
        )
        .validated(Validator::NonEmpty)
        .replace_null_with_default()
    }

    pub(crate) fn build(props: &Props, side: Side) -> Result<Box<dyn Transformation>, ConfigError> {
        let replacement = props.get("replacement");
        if replacement.is_some_and(|r| r.trim().is_empty()) {
            return Err(props.invalid(
                "replacement",
                replacement.unwrap_or_default(),
                "String must be non-empty",
            ));
        }
        Ok(Box::new(MaskField {
            side,
            fields: props.required_list("fields")?,
            replacement: replacement.map(str::to_owned),
            replace_null_with_default: props.bool_or(REPLACE_NULL_WITH_DEFAULT, true)?,
        }))
    }

    /// `value` (of `schema`, if known) masked.
    fn masked(&self, schema: Option<&Schema>, value: Value) -> Result<Value, ConnectError> {
        let decimal_scale = schema
            .filter(|s| s.is_logical(DECIMAL_LOGICAL))
            .and_then(|s| s.parameters.get(DECIMAL_SCALE_PARAMETER))
            .and_then(|scale| scale.trim().parse::<i32>().ok());
        let Some(replacement) = &self.replacement else {
            return Ok(match value {
                Value::Null => Value::Null,
                Value::Boolean(_) => Value::Boolean(false),
                Value::Int8(_) => Value::Int8(0),
                Value::Int16(_) => Value::Int16(0),
                Value::Int32(_) => Value::Int32(0),
                Value::Int64(_) => Value::Int64(0),
                Value::Float32(_) => Value::Float32(0.0),
                Value::Float64(_) => Value::Float64(0.0),
                Value::String(_) => Value::String(String::new()),
                Value::Array(_) => Value::Array(Vec::new()),
                Value::Map(_) => Value::Map(Vec::new()),
                Value::Bytes(_) if decimal_scale.is_some() => Value::Bytes(decimal_to_bytes(0)),
                other => {
                    return Err(ConnectError::failed(format!(
                        "Cannot mask value of type: {}",
                        type_name(&other)
                    )))
                }
            });
        };
        let is_instant = schema.is_some_and(|s| {
            s.is_logical(DATE_LOGICAL)
                || s.is_logical(TIME_LOGICAL)
                || s.is_logical(TIMESTAMP_LOGICAL)
        });
        let integer = || parse_number(replacement).map(|n| n.integer);
        let float = || parse_number(replacement).map(|n| n.float);
        Ok(match value {
            Value::Null => Value::Null,
            Value::Int8(_) if !is_instant => Value::Int8(integer()? as i8),
            Value::Int16(_) if !is_instant => Value::Int16(integer()? as i16),
            Value::Int32(_) if !is_instant => Value::Int32(integer()? as i32),
            Value::Int64(_) if !is_instant => Value::Int64(integer()?),
            Value::Float32(_) => Value::Float32(float()? as f32),
            Value::Float64(_) => Value::Float64(float()?),
            Value::String(_) => Value::String(replacement.clone()),
            Value::Bytes(_) if decimal_scale.is_some() => {
                let scale = decimal_scale.unwrap_or_default();
                let unscaled = parse_decimal(replacement.trim(), scale).ok_or_else(|| {
                    ConnectError::failed(format!(
                        "Unable to convert {replacement} to a Decimal of scale {scale}"
                    ))
                })?;
                Value::Bytes(decimal_to_bytes(unscaled))
            }
            other => {
                let kind = if is_instant {
                    "a date, time or timestamp"
                } else {
                    type_name(&other)
                };
                return Err(ConnectError::failed(format!(
                    "Cannot mask value of type {kind} with custom replacement."
                )));
            }
        })
    }
}

/// A masking replacement read as a number, both ways Kafka's `Values` converts it.
struct Number {
    /// Truncated toward zero, as `BigDecimal.longValue`.
    integer: i64,
    float: f64,
}

fn parse_number(text: &str) -> Result<Number, ConnectError> {
    let unparsable = || ConnectError::failed(format!("Unable to convert {text} to a number"));
    if let Ok(integer) = text.parse::<i64>() {
        return Ok(Number {
            integer,
            float: integer as f64,
        });
    }
    // Rust reads `inf` and `nan`, which Java's `BigDecimal` does not.
    let float: f64 = text.parse().map_err(|_| unparsable())?;
    if !float.is_finite() {
        return Err(unparsable());
    }
    Ok(Number {
        integer: float as i64,
        float,
    })
}

impl Transformation for MaskField {
    fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        let data = self.side.take(&mut record);
        let updated = match data.schema {
            None => {
                let mut entries = require_map(data.value, MASK_PURPOSE)?;
                for field in &self.fields {
                    if let Some(value) = map_get(&entries, field) {
                        let masked = self.masked(None, value.clone())?;
                        map_put(&mut entries, field, masked);
                    }
                }
                SchemaAndValue::new(None, Value::Map(entries))
            }
            Some(schema) => {
                let values = require_struct(&schema, data.value, MASK_PURPOSE)?;
                let mut masked = Vec::with_capacity(values.len());
                for (field, value) in schema.fields.iter().zip(values) {
                    let value = field_value(field, value, self.replace_null_with_default);
                    masked.push(if self.fields.contains(&field.name) {
                        self.masked(Some(&field.schema), value)?
                    } else {
                        value
                    });
                }
                SchemaAndValue::new(Some(schema), Value::Struct(masked))
            }
        };
        self.side.put(&mut record, updated);
        Ok(Some(record))
    }
}

// ---------------------------------------------------------------------------------------
// ExtractField

const EXTRACT_PURPOSE: &str = "field extraction";
const NESTED_PURPOSE: &str = "nested field access";

/// `ExtractField$Key` / `ExtractField$Value`: replaces the key or value with one of its
/// fields. Nulls pass unchanged.
#[derive(Debug)]
pub(crate) struct ExtractField {
    side: Side,
    /// The path's steps: one with syntax `V1`, one per level with `V2`.
    path: Vec<String>,
    original: String,
    replace_null_with_default: bool,
}

impl ExtractField {
    pub(crate) fn define(defs: Defs) -> Defs {
        defs.key(
            "field",
            ConfigType::String,
            None,
            Importance::Medium,
            "The field to extract.",
        )
        .key(
            "field.syntax.version",
            ConfigType::String,
            Some("V1"),
            Importance::High,
            "How `field` reads: `V1`, a top-level field's name; `V2`, a dotted path to a \
             nested field, with backticks around names that hold dots (\"`a.b`.c\").",
        )
        .validated(Validator::OneOf(&["V1", "V2"]))
        .replace_null_with_default()
    }

    pub(crate) fn build(props: &Props, side: Side) -> Result<Box<dyn Transformation>, ConfigError> {
        let original = props.required("field")?.to_owned();
        let version = props.optional("field.syntax.version").unwrap_or("V1");
        let path = match version.trim().to_ascii_uppercase().as_str() {
            "V1" => vec![original.clone()],
            "V2" => {
                parse_path_v2(&original).map_err(|why| props.invalid("field", &original, &why))?
            }
            _ => {
                // As the `OneOf` validator of `define` words it.
                return Err(props.invalid(
                    "field.syntax.version",
                    version,
                    "String must be one of: V1, V2",
                ));
            }
        };
        Ok(Box::new(ExtractField {
            side,
            path,
            original,
            replace_null_with_default: props.bool_or(REPLACE_NULL_WITH_DEFAULT, true)?,
        }))
    }

    /// The schema of the field the path names in `schema`, if it names one.
    fn field_schema<'a>(&self, schema: &'a Schema) -> Option<&'a Schema> {
        let mut current = schema;
        for step in &self.path {
            current = &current.field(step)?.1.schema;
        }
        Some(current)
    }

    fn extract_from_struct(&self, schema: &Schema, value: Value) -> Result<Value, ConnectError> {
        let mut schema = schema;
        let mut values = require_struct(schema, value, EXTRACT_PURPOSE)?;
        let Some((last, init)) = self.path.split_last() else {
            return Ok(Value::Null);
        };
        for step in init {
            let Some((index, field)) = schema.field(step) else {
                return Ok(Value::Null);
            };
            // Intermediate structs read with their defaults, as Kafka's `Struct.get` does.
            let value = values.into_iter().nth(index).unwrap_or(Value::Null);
            match field_value(field, value, true) {
                Value::Null => return Ok(Value::Null),
                nested => {
                    values = require_struct(&field.schema, nested, NESTED_PURPOSE)?;
                    schema = &field.schema;
                }
            }
        }
        Ok(match schema.field(last) {
            None => Value::Null,
            Some((index, field)) => {
                let value = values.into_iter().nth(index).unwrap_or(Value::Null);
                field_value(field, value, self.replace_null_with_default)
            }
        })
    }

    fn extract_from_map(&self, value: &Value) -> Result<Value, ConnectError> {
        let mut entries = require_map_ref(value, EXTRACT_PURPOSE)?;
        let Some((last, init)) = self.path.split_last() else {
            return Ok(Value::Null);
        };
        for step in init {
            match map_get(entries, step) {
                None | Some(Value::Null) => return Ok(Value::Null),
                Some(nested) => entries = require_map_ref(nested, NESTED_PURPOSE)?,
            }
        }
        Ok(map_get(entries, last).cloned().unwrap_or(Value::Null))
    }
}

impl Transformation for ExtractField {
    fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        let data = self.side.take(&mut record);
        let updated = match data.schema {
            None if data.value.is_null() => SchemaAndValue::null(),
            None => SchemaAndValue::new(None, self.extract_from_map(&data.value)?),
            Some(schema) => {
                let field_schema = self.field_schema(&schema).cloned().ok_or_else(|| {
                    ConnectError::failed(format!("Unknown field: {}", self.original))
                })?;
                let value = match data.value {
                    Value::Null => Value::Null,
                    value => self.extract_from_struct(&schema, value)?,
                };
                SchemaAndValue::new(Some(field_schema), value)
            }
        };
        self.side.put(&mut record, updated);
        Ok(Some(record))
    }
}

/// The steps of a `V2` field path: names separated by dots; a name that starts with a
/// backtick runs to the backtick that ends the path or precedes a dot, so it may hold dots
/// (a backslash before such a backtick makes it part of the name); a trailing dot adds an
/// empty name. Kafka's `SingleFieldPath` reads paths this way.
fn parse_path_v2(path: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = path.chars().collect();
    let n = chars.len();
    let text = |from: usize, to: usize| chars[from..to].iter().collect::<String>();
    let incomplete = |at: usize| {
        format!(
            "Incomplete backtick pair in path: [{path}], consider adding a backslash before \
             backtick at position {at} to escape it"
        )
    };
    let mut steps = Vec::new();
    let mut i = 0;
    while i < n {
        if chars[i] != '`' {
            match (i..n).find(|&j| chars[j] == '.') {
                Some(dot) => {
                    steps.push(text(i, dot));
                    i = dot + 1;
                }
                None => {
                    steps.push(text(i, n));
                    i = n;
                }
            }
            continue;
        }
        let opening = i;
        let mut name = String::new();
        let mut start = i + 1;
        let mut from = i + 1;
        loop {
            let Some(close) = (from..n).find(|&j| chars[j] == '`') else {
                return Err(incomplete(opening));
            };
            // `close` > `opening`, so there is a character before it.
            let escaped = chars[close - 1] == '\\';
            if close + 1 >= n {
                if escaped {
                    return Err(incomplete(opening));
                }
                name.push_str(&text(start, close));
                steps.push(std::mem::take(&mut name));
                i = close + 1;
                break;
            }
            if chars[close + 1] != '.' {
                // Part of the name; the closing backtick is further on.
                from = close + 1;
                continue;
            }
            if escaped {
                name.push_str(&text(start, close - 1));
                name.push('`');
                from = close + 1;
                start = from;
                continue;
            }
            name.push_str(&text(start, close));
            steps.push(std::mem::take(&mut name));
            i = close + 2;
            break;
        }
    }
    if path.ends_with('.') {
        steps.push(String::new());
    }
    if steps.is_empty() {
        return Err("the field path is empty".to_owned());
    }
    Ok(steps)
}

// ---------------------------------------------------------------------------------------
// HoistField

/// `HoistField$Key` / `HoistField$Value`: wraps the key or value in a struct (or map) of
/// one field.
#[derive(Debug)]
pub(crate) struct HoistField {
    side: Side,
    field: String,
}

impl HoistField {
    pub(crate) fn define(defs: Defs) -> Defs {
        defs.key(
            "field",
            ConfigType::String,
            None,
            Importance::Medium,
            "The name of the one field of the struct or map made around the data.",
        )
    }

    pub(crate) fn build(props: &Props, side: Side) -> Result<Box<dyn Transformation>, ConfigError> {
        Ok(Box::new(HoistField {
            side,
            field: props.required("field")?.to_owned(),
        }))
    }
}

impl Transformation for HoistField {
    fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        let data = self.side.take(&mut record);
        let updated = match data.schema {
            None => SchemaAndValue::new(
                None,
                Value::Map(vec![(Value::String(self.field.clone()), data.value)]),
            ),
            Some(schema) => SchemaAndValue::new(
                Some(Schema::structure(
                    None,
                    vec![Field::new(self.field.clone(), schema)],
                )),
                Value::Struct(vec![data.value]),
            ),
        };
        self.side.put(&mut record, updated);
        Ok(Some(record))
    }
}

// ---------------------------------------------------------------------------------------
// ValueToKey

const VALUE_TO_KEY_PURPOSE: &str = "copying fields from value to key";

/// `ValueToKey`: replaces the key with a struct (or map) of some of the value's fields.
#[derive(Debug)]
pub(crate) struct ValueToKey {
    fields: Vec<String>,
    replace_null_with_default: bool,
}

impl ValueToKey {
    pub(crate) fn define(defs: Defs) -> Defs {
        defs.key(
            "fields",
            ConfigType::List,
            None,
            Importance::High,
            "The fields of the value that make the key.",
        )
        .validated(Validator::NonEmpty)
        .replace_null_with_default()
    }

    pub(crate) fn build(props: &Props) -> Result<Box<dyn Transformation>, ConfigError> {
        Ok(Box::new(ValueToKey {
            fields: props.required_list("fields")?,
            replace_null_with_default: props.bool_or(REPLACE_NULL_WITH_DEFAULT, true)?,
        }))
    }
}

impl Transformation for ValueToKey {
    fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        let key = match &record.value.schema {
            None => {
                let entries = require_map_ref(&record.value.value, VALUE_TO_KEY_PURPOSE)?;
                let key = self
                    .fields
                    .iter()
                    .map(|f| {
                        let value = map_get(entries, f).cloned().unwrap_or(Value::Null);
                        (Value::String(f.clone()), value)
                    })
                    .collect();
                SchemaAndValue::new(None, Value::Map(key))
            }
            Some(schema) => {
                let values = require_struct_ref(schema, &record.value.value, VALUE_TO_KEY_PURPOSE)?;
                let mut key_schema = Schema::structure(None, Vec::new());
                let mut key = Vec::with_capacity(self.fields.len());
                for name in &self.fields {
                    let Some((index, field)) = schema.field(name) else {
                        return Err(ConnectError::failed(format!(
                            "Field does not exist: {name}"
                        )));
                    };
                    push_field(&mut key_schema, field.clone())?;
                    let value = values.get(index).cloned().unwrap_or(Value::Null);
                    key.push(field_value(field, value, self.replace_null_with_default));
                }
                SchemaAndValue::new(Some(key_schema), Value::Struct(key))
            }
        };
        record.key = key;
        Ok(Some(record))
    }
}

// ---------------------------------------------------------------------------------------
// Flatten

const FLATTEN_PURPOSE: &str = "flattening";

/// `Flatten$Key` / `Flatten$Value`: lifts the fields of nested structs (or maps) to the top
/// level, their names joined with a delimiter. Arrays are left as they are.
#[derive(Debug)]
pub(crate) struct Flatten {
    side: Side,
    delimiter: String,
}

impl Flatten {
    pub(crate) fn define(defs: Defs) -> Defs {
        defs.key(
            "delimiter",
            ConfigType::String,
            Some("."),
            Importance::Medium,
            "What joins the names of nested fields into the flattened field's name.",
        )
    }

    pub(crate) fn build(props: &Props, side: Side) -> Result<Box<dyn Transformation>, ConfigError> {
        Ok(Box::new(Flatten {
            side,
            delimiter: props.get("delimiter").unwrap_or(".").to_owned(),
        }))
    }

    fn name(&self, prefix: &str, name: &str) -> String {
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}{}{name}", self.delimiter)
        }
    }

    fn flatten_map(
        &self,
        entries: Vec<(Value, Value)>,
        prefix: &str,
        out: &mut Vec<(Value, Value)>,
    ) -> Result<(), ConnectError> {
        for (key, value) in entries {
            let Value::String(key) = key else {
                return Err(ConnectError::failed(format!(
                    "Flatten transformation needs string keys in maps without schemas, found a \
                     {} key",
                    type_name(&key)
                )));
            };
            let name = self.name(prefix, &key);
            match value {
                Value::Map(nested) => self.flatten_map(nested, &name, out)?,
                Value::Struct(_) => {
                    return Err(ConnectError::failed(format!(
                        "Flatten transformation does not support struct for record without \
                         schemas (for field {name})."
                    )))
                }
                other => map_put(out, &name, other),
            }
        }
        Ok(())
    }

    /// Adds the flattened fields of `schema` to `out`; a field is optional when it or a
    /// struct above it is, and takes its default from itself or the structs above.
    fn flatten_schema(
        &self,
        schema: &Schema,
        prefix: &str,
        out: &mut Schema,
        optional: bool,
        default: Option<&Value>,
    ) -> Result<(), ConnectError> {
        for (index, field) in schema.fields.iter().enumerate() {
            let name = self.name(prefix, &field.name);
            let field_optional = optional || field.schema.optional;
            let field_default = field.schema.default.clone().or_else(|| match default {
                Some(Value::Struct(values)) => values.get(index).cloned().filter(|v| !v.is_null()),
                _ => None,
            });
            match field.schema.kind {
                SchemaType::Struct => self.flatten_schema(
                    &field.schema,
                    &name,
                    out,
                    field_optional,
                    field_default.as_ref(),
                )?,
                SchemaType::Map => {
                    return Err(ConnectError::failed(format!(
                        "Flatten transformation does not support map for record with schemas \
                         (for field {name})."
                    )))
                }
                _ => {
                    let flattened = Schema {
                        optional: field_optional,
                        default: field_default,
                        ..field.schema.clone()
                    };
                    push_field(out, Field::new(name, flattened))?;
                }
            }
        }
        Ok(())
    }

    /// Adds the values of the flattened fields of the struct `values` of `schema` to `out`,
    /// in the order [`Flatten::flatten_schema`] gives the fields.
    fn flatten_values(
        schema: &Schema,
        values: Vec<Value>,
        out: &mut Vec<Value>,
    ) -> Result<(), ConnectError> {
        for (field, value) in schema.fields.iter().zip(values) {
            let value = field_value(field, value, true);
            if field.schema.kind != SchemaType::Struct {
                out.push(value);
            } else if value.is_null() {
                out.extend(std::iter::repeat_n(Value::Null, leaf_count(&field.schema)));
            } else {
                let nested = require_struct(&field.schema, value, FLATTEN_PURPOSE)?;
                Self::flatten_values(&field.schema, nested, out)?;
            }
        }
        Ok(())
    }
}

/// The number of fields a struct schema flattens to.
fn leaf_count(schema: &Schema) -> usize {
    schema
        .fields
        .iter()
        .map(|f| match f.schema.kind {
            SchemaType::Struct => leaf_count(&f.schema),
            _ => 1,
        })
        .sum()
}

impl Transformation for Flatten {
    fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        if self.side.of(&record).value.is_null() {
            return Ok(Some(record));
        }
        let data = self.side.take(&mut record);
        let updated = match data.schema {
            None => {
                let entries = require_map(data.value, FLATTEN_PURPOSE)?;
                let mut flat = Vec::with_capacity(entries.len());
                self.flatten_map(entries, "", &mut flat)?;
                SchemaAndValue::new(None, Value::Map(flat))
            }
            Some(schema) => {
                let values = require_struct(&schema, data.value, FLATTEN_PURPOSE)?;
                let mut flat_schema = copy_schema_basics(&schema, SchemaType::Struct);
                self.flatten_schema(
                    &schema,
                    "",
                    &mut flat_schema,
                    schema.optional,
                    schema.default.as_ref(),
                )?;
                let mut flat = Vec::with_capacity(flat_schema.fields.len());
                Self::flatten_values(&schema, values, &mut flat)?;
                SchemaAndValue::new(Some(flat_schema), Value::Struct(flat))
            }
        };
        self.side.put(&mut record, updated);
        Ok(Some(record))
    }
}

// ---------------------------------------------------------------------------------------
// SetSchemaMetadata

/// `SetSchemaMetadata$Key` / `SetSchemaMetadata$Value`: sets the schema's name, version or
/// both.
#[derive(Debug)]
pub(crate) struct SetSchemaMetadata {
    side: Side,
    name: Option<String>,
    version: Option<i32>,
}

impl SetSchemaMetadata {
    pub(crate) fn define(defs: Defs) -> Defs {
        defs.key(
            "schema.name",
            ConfigType::String,
            Some(""),
            Importance::High,
            "The name to give the schema.",
        )
        .key(
            "schema.version",
            ConfigType::Int,
            Some(""),
            Importance::High,
            "The version to give the schema.",
        )
        // Kafka's key; values here do not hold their schema, so it changes nothing.
        .replace_null_with_default()
    }

    pub(crate) fn build(props: &Props, side: Side) -> Result<Box<dyn Transformation>, ConfigError> {
        let name = props.optional("schema.name").map(str::to_owned);
        let version = props.int("schema.version")?;
        if name.is_none() && version.is_none() {
            return Err(props.error(
                "type",
                "Neither schema name nor version configured".to_owned(),
            ));
        }
        props.bool_or(REPLACE_NULL_WITH_DEFAULT, true)?;
        Ok(Box::new(SetSchemaMetadata {
            side,
            name,
            version,
        }))
    }
}

impl Transformation for SetSchemaMetadata {
    fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        let mut data = self.side.take(&mut record);
        match &mut data.schema {
            None if data.value.is_null() => {}
            None => {
                return Err(ConnectError::failed(
                    "Schema required for [updating schema metadata]",
                ))
            }
            Some(schema) => {
                if let Some(name) = &self.name {
                    schema.name = Some(name.clone());
                }
                if let Some(version) = self.version {
                    schema.version = Some(version);
                }
            }
        }
        self.side.put(&mut record, data);
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests;
