//! `Cast$Key` / `Cast$Value`: casting fields of a struct or map, or a whole key or value, to
//! another primitive type, with Kafka's rules. Also the renderings of Java numbers (`1.0`,
//! `1.0E7`, `BigDecimal`'s `toString`) and the Decimal encoding helpers that casting, and
//! masking, need.
//!
//! The rules, as Kafka's `Cast` applies them:
//! - inputs: the integer and floating types, boolean, string, and bytes (the latter only to
//!   string, base64-encoded, or as a Decimal to anything); outputs: `int8` ... `int64`,
//!   `float32`, `float64`, `boolean`, `string`;
//! - numbers narrow as Java's conversions do: integers keep their low bits, floating values
//!   truncate toward zero (saturating at the `int` range first for `int8`/`int16`), NaN is 0;
//! - booleans are 1 or 0; a number is `true` when its integer part is not 0; a string is
//!   `true` exactly when it is `true` in any case (`Boolean.parseBoolean`);
//! - strings parse as Java parses them (`Integer.parseInt`, `Double.parseDouble`); a value
//!   that does not parse is an error naming it;
//! - to string, numbers print as Java prints them (`1.0`, `1.0E10`), Date, Time and
//!   Timestamp as ISO 8601 (in UTC), Decimals as `BigDecimal.toString` does.
//!
//! Where Runnel differs, on purpose: a schemaless field named in the spec but absent stays
//! absent (Kafka inserts it as null); casting a whole Date, Time, Timestamp or Decimal drops
//! the logical name from the new schema (Kafka keeps it on a schema of another type, which
//! mislabels the data); a struct schema's default value is cast field by field (Kafka fails
//! on it); Decimals longer than 16 bytes are refused.

use base64::Engine;

use super::datetime::connect_date_string;
use super::{
    copy_schema_basics, field_value, map_get, map_put, require_map, require_struct, Defs, Props,
    Side, Transformation, REPLACE_NULL_WITH_DEFAULT,
};
use crate::config::{ConfigError, ConfigType, Importance, Validator};
use crate::connector::ConnectError;
use crate::data::{
    ConnectRecord, Field, Schema, SchemaAndValue, SchemaType, Value, DATE_LOGICAL, DECIMAL_LOGICAL,
    DECIMAL_SCALE_PARAMETER, TIMESTAMP_LOGICAL, TIME_LOGICAL,
};

const PURPOSE: &str = "cast types";
const SPEC: &str = "spec";

/// The types a value can be cast to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CastType {
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Boolean,
    String,
}

impl CastType {
    fn schema_type(self) -> SchemaType {
        match self {
            CastType::Int8 => SchemaType::Int8,
            CastType::Int16 => SchemaType::Int16,
            CastType::Int32 => SchemaType::Int32,
            CastType::Int64 => SchemaType::Int64,
            CastType::Float32 => SchemaType::Float32,
            CastType::Float64 => SchemaType::Float64,
            CastType::Boolean => SchemaType::Boolean,
            CastType::String => SchemaType::String,
        }
    }

    /// The type a spec names: Kafka's `Schema.Type` names, in any case.
    fn parse(name: &str) -> Result<CastType, String> {
        Ok(match name.to_ascii_uppercase().as_str() {
            "INT8" => CastType::Int8,
            "INT16" => CastType::Int16,
            "INT32" => CastType::Int32,
            "INT64" => CastType::Int64,
            "FLOAT32" => CastType::Float32,
            "FLOAT64" => CastType::Float64,
            "BOOLEAN" => CastType::Boolean,
            "STRING" => CastType::String,
            upper @ ("BYTES" | "ARRAY" | "MAP" | "STRUCT") => {
                return Err(format!(
                    "Cast transformation does not support casting to {upper}; supported types \
                     are [INT8, INT16, INT32, INT64, FLOAT32, FLOAT64, BOOLEAN, STRING]"
                ))
            }
            _ => return Err(format!("Invalid type found in casting spec: {name}")),
        })
    }
}

/// What a spec casts.
#[derive(Debug, Clone, PartialEq)]
enum Spec {
    /// The whole key or value, to this type.
    Whole(CastType),
    /// These fields of a struct or map, each to its type.
    Fields(Vec<(String, CastType)>),
}

/// `Cast$Key` / `Cast$Value`.
#[derive(Debug)]
pub(crate) struct Cast {
    side: Side,
    spec: Spec,
    replace_null_with_default: bool,
}

impl Cast {
    pub(crate) fn define(defs: Defs) -> Defs {
        defs.key(
            SPEC,
            ConfigType::List,
            None,
            Importance::High,
            "What to cast: `field:type` pairs (e.g. `id:int64,flag:boolean`) for fields of a \
             struct or map, or one type alone for the whole key or value. Types: int8, int16, \
             int32, int64, float32, float64, boolean, string; bytes cast only to string.",
        )
        .validated(Validator::NonEmpty)
        .replace_null_with_default()
    }

    pub(crate) fn build(props: &Props, side: Side) -> Result<Box<dyn Transformation>, ConfigError> {
        let raw = props.required(SPEC)?;
        if raw.trim().is_empty() {
            // As the `NonEmpty` validator of `define` words it.
            return Err(props.invalid(SPEC, raw, "String must be non-empty"));
        }
        let items = props.list(SPEC);
        if items.is_empty() {
            return Err(props.invalid(SPEC, raw, "Must specify at least one field to cast."));
        }
        let spec = parse_spec(&items).map_err(|why| props.invalid(SPEC, raw, &why))?;
        Ok(Box::new(Cast {
            side,
            spec,
            replace_null_with_default: props.bool_or(REPLACE_NULL_WITH_DEFAULT, true)?,
        }))
    }

    fn target(&self, field: &str) -> Option<CastType> {
        match &self.spec {
            Spec::Whole(_) => None,
            Spec::Fields(fields) => fields.iter().find(|(f, _)| f == field).map(|(_, t)| *t),
        }
    }

    fn cast_with_schema(
        &self,
        schema: Schema,
        value: Value,
    ) -> Result<SchemaAndValue, ConnectError> {
        if let Spec::Whole(target) = self.spec {
            let mut updated = Schema::new(target.schema_type());
            if !is_logical(&schema) {
                updated = copy_schema_basics(&schema, target.schema_type());
            }
            updated.optional = schema.optional;
            updated.default = match &schema.default {
                Some(default) => Some(cast_value(Some(&schema), default.clone(), target)?),
                None => None,
            };
            let value = cast_value(Some(&schema), value, target)?;
            return Ok(SchemaAndValue::new(Some(updated), value));
        }
        let mut updated = copy_schema_basics(&schema, SchemaType::Struct);
        for field in &schema.fields {
            let field_schema = match self.target(&field.name) {
                None => field.schema.clone(),
                Some(target) => {
                    let mut cast = Schema::new(target.schema_type());
                    cast.optional = field.schema.optional;
                    cast.default = match &field.schema.default {
                        Some(default) => {
                            Some(cast_value(Some(&field.schema), default.clone(), target)?)
                        }
                        None => None,
                    };
                    cast
                }
            };
            updated
                .fields
                .push(Field::new(field.name.clone(), field_schema));
        }
        updated.optional = schema.optional;
        updated.default = match &schema.default {
            Some(default) => {
                Some(self.cast_fields(&schema, default.clone(), self.replace_null_with_default)?)
            }
            None => None,
        };
        let value = self.cast_fields(&schema, value, self.replace_null_with_default)?;
        Ok(SchemaAndValue::new(Some(updated), value))
    }

    /// The struct `value` of schema `schema` with the spec's fields cast.
    fn cast_fields(
        &self,
        schema: &Schema,
        value: Value,
        replace_null_with_default: bool,
    ) -> Result<Value, ConnectError> {
        let values = require_struct(schema, value, PURPOSE)?;
        let mut cast = Vec::with_capacity(values.len());
        for (field, value) in schema.fields.iter().zip(values) {
            let value = field_value(field, value, replace_null_with_default);
            cast.push(match self.target(&field.name) {
                Some(target) => cast_value(Some(&field.schema), value, target)?,
                None => value,
            });
        }
        Ok(Value::Struct(cast))
    }

    fn cast_schemaless(&self, value: Value) -> Result<Value, ConnectError> {
        match &self.spec {
            Spec::Whole(target) => cast_value(None, value, *target),
            Spec::Fields(fields) => {
                let mut entries = require_map(value, PURPOSE)?;
                for (field, target) in fields {
                    if let Some(current) = map_get(&entries, field) {
                        let cast = cast_value(None, current.clone(), *target)?;
                        map_put(&mut entries, field, cast);
                    }
                }
                Ok(Value::Map(entries))
            }
        }
    }
}

impl Transformation for Cast {
    fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        if self.side.of(&record).value.is_null() {
            return Ok(Some(record));
        }
        let data = self.side.take(&mut record);
        let updated = match data.schema {
            None => SchemaAndValue::new(None, self.cast_schemaless(data.value)?),
            Some(schema) => self.cast_with_schema(schema, data.value)?,
        };
        self.side.put(&mut record, updated);
        Ok(Some(record))
    }
}

/// Reads a spec's items, or says why Kafka would refuse them.
fn parse_spec(items: &[String]) -> Result<Spec, String> {
    let mut fields: Vec<(String, CastType)> = Vec::new();
    let mut whole = None;
    for item in items {
        // Java's `split(":")`, which drops trailing empty parts.
        let mut parts: Vec<&str> = item.split(':').collect();
        while parts.last() == Some(&"") {
            parts.pop();
        }
        match parts[..] {
            [target] => whole = Some(CastType::parse(target.trim())?),
            [field, target] => {
                let target = CastType::parse(target.trim())?;
                let field = field.trim();
                // A field named twice takes its last type, as Kafka's map does.
                match fields.iter_mut().find(|(f, _)| f == field) {
                    Some(entry) => entry.1 = target,
                    None => fields.push((field.to_owned(), target)),
                }
            }
            _ => return Err(format!("Invalid cast mapping: {item}")),
        }
    }
    match whole {
        Some(_) if items.len() > 1 => Err("Cast transformations that specify a type to cast the \
             entire value to may only specify a single cast in their spec"
            .to_owned()),
        Some(target) => Ok(Spec::Whole(target)),
        None => Ok(Spec::Fields(fields)),
    }
}

/// Whether `schema` is one of Connect's logical types.
fn is_logical(schema: &Schema) -> bool {
    [
        DECIMAL_LOGICAL,
        DATE_LOGICAL,
        TIME_LOGICAL,
        TIMESTAMP_LOGICAL,
    ]
    .iter()
    .any(|name| schema.is_logical(name))
}

/// Kafka's `Schema.Type` name of `kind`, for messages.
fn kafka_type_name(kind: SchemaType) -> &'static str {
    match kind {
        SchemaType::Int8 => "INT8",
        SchemaType::Int16 => "INT16",
        SchemaType::Int32 => "INT32",
        SchemaType::Int64 => "INT64",
        SchemaType::Float32 => "FLOAT32",
        SchemaType::Float64 => "FLOAT64",
        SchemaType::Boolean => "BOOLEAN",
        SchemaType::String => "STRING",
        SchemaType::Bytes => "BYTES",
        SchemaType::Array => "ARRAY",
        SchemaType::Map => "MAP",
        SchemaType::Struct => "STRUCT",
    }
}

/// A value about to be cast, in the form the rules distinguish.
enum Source {
    Int(i64),
    Float32(f32),
    Float64(f64),
    Boolean(bool),
    String(String),
    Bytes(Vec<u8>),
    /// A Decimal's unscaled value and scale.
    Decimal(i128, i32),
    /// A Date, Time or Timestamp, as milliseconds since the epoch; the other casts than to
    /// string see its primitive, as Kafka's logical encoding gives it.
    Instant(i64, i64),
}

/// `value` (of `schema`, when it has one) cast to `target`, by Kafka's rules.
pub(crate) fn cast_value(
    schema: Option<&Schema>,
    value: Value,
    target: CastType,
) -> Result<Value, ConnectError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let from = schema.map(|s| s.kind).or_else(|| value.inferred_type());
    if !from.is_some_and(SchemaType::is_primitive) {
        return Err(ConnectError::failed(format!(
            "Cast transformation does not support casting from {}; supported types are [INT8, \
             INT16, INT32, INT64, FLOAT32, FLOAT64, BOOLEAN, STRING, BYTES]",
            from.map_or("null", kafka_type_name)
        )));
    }
    let source = source_of(schema, value)?;
    let cast = match target {
        CastType::Int8 => Value::Int8(to_integer(&source, target)? as i8),
        CastType::Int16 => Value::Int16(to_integer(&source, target)? as i16),
        CastType::Int32 => Value::Int32(to_integer(&source, target)? as i32),
        CastType::Int64 => Value::Int64(to_integer(&source, target)?),
        CastType::Float32 => Value::Float32(match source {
            Source::Int(n) | Source::Instant(_, n) => n as f32,
            Source::Float32(f) => f,
            Source::Float64(f) => f as f32,
            Source::Boolean(b) => f32::from(u8::from(b)),
            Source::String(s) => parse_java_float(&s).ok_or_else(|| unparsable(&s, target))?,
            Source::Decimal(unscaled, scale) => decimal_to_f64_text(unscaled, scale)
                .parse()
                .map_err(|_| unparsable("decimal", target))?,
            Source::Bytes(_) => return Err(unexpected_bytes()),
        }),
        CastType::Float64 => Value::Float64(match source {
            Source::Int(n) | Source::Instant(_, n) => n as f64,
            Source::Float32(f) => f64::from(f),
            Source::Float64(f) => f,
            Source::Boolean(b) => f64::from(u8::from(b)),
            Source::String(s) => parse_java_double(&s).ok_or_else(|| unparsable(&s, target))?,
            Source::Decimal(unscaled, scale) => decimal_to_f64_text(unscaled, scale)
                .parse()
                .map_err(|_| unparsable("decimal", target))?,
            Source::Bytes(_) => return Err(unexpected_bytes()),
        }),
        CastType::Boolean => Value::Boolean(match source {
            Source::Int(n) | Source::Instant(_, n) => n != 0,
            Source::Float32(f) => f as i64 != 0,
            Source::Float64(f) => f as i64 != 0,
            Source::Boolean(b) => b,
            Source::String(s) => s.eq_ignore_ascii_case("true"),
            Source::Decimal(unscaled, scale) => decimal_integer_part(unscaled, scale) as i64 != 0,
            Source::Bytes(_) => return Err(unexpected_bytes()),
        }),
        CastType::String => Value::String(match source {
            Source::Int(n) => n.to_string(),
            Source::Instant(millis, _) => connect_date_string(millis),
            Source::Float32(f) => java_float_string(f),
            Source::Float64(f) => java_double_string(f),
            Source::Boolean(b) => b.to_string(),
            Source::String(s) => s,
            Source::Decimal(unscaled, scale) => decimal_string(unscaled, scale),
            Source::Bytes(bytes) => base64::engine::general_purpose::STANDARD.encode(bytes),
        }),
    };
    Ok(cast)
}

fn source_of(schema: Option<&Schema>, value: Value) -> Result<Source, ConnectError> {
    let logical = |name: &str| schema.is_some_and(|s| s.is_logical(name));
    Ok(match value {
        Value::Int8(n) => Source::Int(n.into()),
        Value::Int16(n) => Source::Int(n.into()),
        Value::Int32(n) if logical(DATE_LOGICAL) => {
            Source::Instant(i64::from(n) * 86_400_000, n.into())
        }
        Value::Int32(n) if logical(TIME_LOGICAL) => Source::Instant(n.into(), n.into()),
        Value::Int32(n) => Source::Int(n.into()),
        Value::Int64(n) if logical(TIMESTAMP_LOGICAL) => Source::Instant(n, n),
        Value::Int64(n) => Source::Int(n),
        Value::Float32(f) => Source::Float32(f),
        Value::Float64(f) => Source::Float64(f),
        Value::Boolean(b) => Source::Boolean(b),
        Value::String(s) => Source::String(s),
        Value::Bytes(bytes) if logical(DECIMAL_LOGICAL) => {
            let scale = schema
                .and_then(|s| s.parameters.get(DECIMAL_SCALE_PARAMETER))
                .and_then(|s| s.trim().parse::<i32>().ok())
                .ok_or_else(|| {
                    ConnectError::failed("Invalid Decimal schema: scale parameter not found.")
                })?;
            Source::Decimal(decimal_from_bytes(&bytes)?, scale)
        }
        Value::Bytes(bytes) => Source::Bytes(bytes),
        other => {
            return Err(ConnectError::failed(format!(
                "Unexpected type in Cast transformation: {}",
                super::type_name(&other)
            )))
        }
    })
}

/// `source` as an `int64`, from which narrower integers keep the low bits. `target` only
/// names the type in errors, and decides how a floating value narrows.
fn to_integer(source: &Source, target: CastType) -> Result<i64, ConnectError> {
    let narrow = matches!(target, CastType::Int8 | CastType::Int16);
    Ok(match source {
        Source::Int(n) | Source::Instant(_, n) => *n,
        // Java narrows a float to a byte or short through int, saturating there.
        Source::Float32(f) if narrow => i64::from(*f as i32),
        Source::Float64(f) if narrow => i64::from(*f as i32),
        Source::Float32(f) if target == CastType::Int32 => i64::from(*f as i32),
        Source::Float64(f) if target == CastType::Int32 => i64::from(*f as i32),
        Source::Float32(f) => *f as i64,
        Source::Float64(f) => *f as i64,
        Source::Boolean(b) => i64::from(*b),
        Source::String(s) => {
            let parsed = match target {
                CastType::Int8 => s.parse::<i8>().map(i64::from).ok(),
                CastType::Int16 => s.parse::<i16>().map(i64::from).ok(),
                CastType::Int32 => s.parse::<i32>().map(i64::from).ok(),
                _ => s.parse::<i64>().ok(),
            };
            parsed.ok_or_else(|| unparsable(s, target))?
        }
        Source::Decimal(unscaled, scale) => decimal_integer_part(*unscaled, *scale) as i64,
        Source::Bytes(_) => return Err(unexpected_bytes()),
    })
}

fn unparsable(text: &str, target: CastType) -> ConnectError {
    ConnectError::failed(format!(
        "Value ({text}) could not be cast to {}: not a valid {} or out of its range",
        kafka_type_name(target.schema_type()).to_ascii_lowercase(),
        kafka_type_name(target.schema_type()).to_ascii_lowercase(),
    ))
}

fn unexpected_bytes() -> ConnectError {
    ConnectError::failed(
        "Unexpected type in Cast transformation: bytes can only be cast to string".to_owned(),
    )
}

/// A floating literal as Java's `Double.parseDouble` / `Float.parseFloat` read it.
enum JavaFloat<'a> {
    NaN,
    /// Infinity, negative or not.
    Infinity(bool),
    /// A decimal literal Rust's parsing reads alike.
    Literal(&'a str),
}

/// Reads `text` as Java does: surrounding whitespace ignored, an optional `f`/`d` suffix,
/// `NaN` and `Infinity` spelled Java's way (Rust's `inf` and `nan` are not Java's).
/// Hexadecimal floating literals are not supported.
fn java_float_literal(text: &str) -> Option<JavaFloat<'_>> {
    let trimmed = text.trim_matches(|c: char| c <= ' ');
    let unsigned = trimmed.trim_start_matches(['+', '-']);
    if unsigned.len() + 1 < trimmed.len() {
        return None;
    }
    match unsigned {
        "NaN" => return Some(JavaFloat::NaN),
        "Infinity" => return Some(JavaFloat::Infinity(trimmed.starts_with('-'))),
        _ => {}
    }
    if !unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    Some(JavaFloat::Literal(
        trimmed
            .strip_suffix(['f', 'F', 'd', 'D'])
            .unwrap_or(trimmed),
    ))
}

/// `text` as Java's `Double.parseDouble` reads it.
fn parse_java_double(text: &str) -> Option<f64> {
    match java_float_literal(text)? {
        JavaFloat::NaN => Some(f64::NAN),
        JavaFloat::Infinity(true) => Some(f64::NEG_INFINITY),
        JavaFloat::Infinity(false) => Some(f64::INFINITY),
        JavaFloat::Literal(literal) => literal.parse().ok(),
    }
}

/// `text` as Java's `Float.parseFloat` reads it: rounded once, straight to `float`.
fn parse_java_float(text: &str) -> Option<f32> {
    match java_float_literal(text)? {
        JavaFloat::NaN => Some(f32::NAN),
        JavaFloat::Infinity(true) => Some(f32::NEG_INFINITY),
        JavaFloat::Infinity(false) => Some(f32::INFINITY),
        JavaFloat::Literal(literal) => literal.parse().ok(),
    }
}

/// `v` as Java's `Double.toString` prints it: `1.0`, `0.001`, `1.0E7`, `1.0E-4`, `NaN`.
pub(crate) fn java_double_string(v: f64) -> String {
    java_style(v, format!("{v}"), format!("{v:e}"))
}

/// `v` as Java's `Float.toString` prints it.
pub(crate) fn java_float_string(v: f32) -> String {
    java_style(f64::from(v), format!("{v}"), format!("{v:e}"))
}

/// Java's rendering from Rust's shortest ones: plain between 10^-3 and 10^7, with at least
/// one fractional digit; scientific with a capital `E` outside.
fn java_style(v: f64, plain: String, scientific: String) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    if (1e-3..1e7).contains(&v.abs()) {
        return if plain.contains('.') {
            plain
        } else {
            plain + ".0"
        };
    }
    let (mantissa, exponent) = scientific
        .split_once('e')
        .unwrap_or((scientific.as_str(), "0"));
    if mantissa.contains('.') {
        format!("{mantissa}E{exponent}")
    } else {
        format!("{mantissa}.0E{exponent}")
    }
}

/// The unscaled value of a Decimal from its big-endian two's complement bytes.
pub(crate) fn decimal_from_bytes(bytes: &[u8]) -> Result<i128, ConnectError> {
    let Some(first) = bytes.first() else {
        return Err(ConnectError::failed("Invalid Decimal: no bytes"));
    };
    if bytes.len() > 16 {
        return Err(ConnectError::failed(format!(
            "Decimal of {} bytes is too large: at most 16 are supported",
            bytes.len()
        )));
    }
    let mut unscaled: i128 = if first & 0x80 != 0 { -1 } else { 0 };
    for byte in bytes {
        unscaled = (unscaled << 8) | i128::from(*byte);
    }
    Ok(unscaled)
}

/// The shortest big-endian two's complement bytes of `unscaled`, as Java's
/// `BigInteger.toByteArray` gives them.
pub(crate) fn decimal_to_bytes(unscaled: i128) -> Vec<u8> {
    let bytes = unscaled.to_be_bytes();
    let mut start = 0;
    while start + 1 < bytes.len() {
        let (this, next) = (bytes[start], bytes[start + 1]);
        let redundant = (this == 0 && next & 0x80 == 0) || (this == 0xff && next & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    bytes[start..].to_vec()
}

/// The integer part of the Decimal `unscaled` × 10^-`scale`, truncated toward zero; exact
/// in its low 64 bits, which is all Java's `BigDecimal.longValue` keeps.
fn decimal_integer_part(unscaled: i128, scale: i32) -> i128 {
    if scale >= 0 {
        // 10^39 exceeds every i128, so a larger scale leaves no integer part.
        match 10i128.checked_pow(scale.unsigned_abs()) {
            Some(divisor) => unscaled / divisor,
            None => 0,
        }
    } else {
        // Modular arithmetic keeps the low bits exact.
        unscaled.wrapping_mul(10i128.wrapping_pow(scale.unsigned_abs()))
    }
}

/// The Decimal as a scientific literal, for Rust's correctly rounded float parsing.
fn decimal_to_f64_text(unscaled: i128, scale: i32) -> String {
    format!("{unscaled}e{}", -i64::from(scale))
}

/// The Decimal as Java's `BigDecimal.toString` writes it: plain when the scale is not
/// negative and the number not too small, scientific otherwise (`1.23E+5`, `1E-7`).
pub(crate) fn decimal_string(unscaled: i128, scale: i32) -> String {
    let digits = unscaled.unsigned_abs().to_string();
    let mut out = String::new();
    if unscaled < 0 {
        out.push('-');
    }
    let scale_len = i64::from(scale);
    let adjusted = -scale_len + (digits.len() as i64 - 1);
    if scale >= 0 && adjusted >= -6 {
        let scale = scale.unsigned_abs() as usize;
        if scale == 0 {
            out.push_str(&digits);
        } else if digits.len() > scale {
            let (integer, fraction) = digits.split_at(digits.len() - scale);
            out.push_str(integer);
            out.push('.');
            out.push_str(fraction);
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', scale - digits.len()));
            out.push_str(&digits);
        }
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('E');
        if adjusted >= 0 {
            out.push('+');
        }
        out.push_str(&adjusted.to_string());
    }
    out
}

/// `text` (`-12.5`, `3`) as the unscaled value of a Decimal of scale `scale`, if it is a
/// plain decimal number that fits without losing digits.
pub(crate) fn parse_decimal(text: &str, scale: i32) -> Option<i128> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (integer.is_empty() && fraction.is_empty()) || !all_digits(integer) || !all_digits(fraction)
    {
        return None;
    }
    let scale = usize::try_from(scale).ok()?;
    let fraction = fraction.trim_end_matches('0');
    // The digits shift left by what the scale has beyond them: computed as a power, not
    // digit by digit, as the scale comes from the data and may be huge.
    let shift = u32::try_from(scale.checked_sub(fraction.len())?).ok()?;
    let mut digits: i128 = 0;
    for c in integer.chars().chain(fraction.chars()) {
        let digit = i128::from(c.to_digit(10)?);
        digits = digits.checked_mul(10)?.checked_add(digit)?;
    }
    let unscaled = if digits == 0 {
        0
    } else {
        digits.checked_mul(10i128.checked_pow(shift)?)?
    };
    Some(if negative { -unscaled } else { unscaled })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Configs;
    use crate::transforms::TransformChain;

    fn chain(pairs: &[(&str, &str)]) -> TransformChain {
        let mut configs = Configs::new();
        configs.set("transforms", "c");
        for (k, v) in pairs {
            configs.set(format!("transforms.c.{k}"), *v);
        }
        TransformChain::from_configs(&configs).unwrap()
    }

    fn error(pairs: &[(&str, &str)]) -> ConfigError {
        let mut configs = Configs::new();
        configs.set("transforms", "c");
        for (k, v) in pairs {
            configs.set(format!("transforms.c.{k}"), *v);
        }
        TransformChain::from_configs(&configs).unwrap_err()
    }

    fn apply(chain: &TransformChain, value: SchemaAndValue) -> SchemaAndValue {
        let record = ConnectRecord::new("t", value);
        chain.apply(record).unwrap().unwrap().value
    }

    fn cast(value: Value, target: CastType) -> Value {
        cast_value(None, value, target).unwrap()
    }

    #[test]
    fn numbers_narrow_and_widen_as_java_converts_them() {
        assert_eq!(cast(Value::Int64(300), CastType::Int8), Value::Int8(44));
        assert_eq!(cast(Value::Int32(-1), CastType::Int16), Value::Int16(-1));
        assert_eq!(cast(Value::Float64(3.99), CastType::Int32), Value::Int32(3));
        assert_eq!(
            cast(Value::Float64(-3.99), CastType::Int64),
            Value::Int64(-3)
        );
        // Through int, saturated: 1e10 → i32::MAX → low byte 0xff.
        assert_eq!(cast(Value::Float64(1e10), CastType::Int8), Value::Int8(-1));
        assert_eq!(
            cast(Value::Float64(f64::NAN), CastType::Int64),
            Value::Int64(0)
        );
        assert_eq!(cast(Value::Int8(7), CastType::Float32), Value::Float32(7.0));
        assert_eq!(
            cast(Value::Float32(0.5), CastType::Float64),
            Value::Float64(0.5)
        );
        assert_eq!(cast(Value::Boolean(true), CastType::Int16), Value::Int16(1));
        assert_eq!(
            cast(Value::Float64(0.5), CastType::Boolean),
            Value::Boolean(false)
        );
        assert_eq!(
            cast(Value::Int32(-2), CastType::Boolean),
            Value::Boolean(true)
        );
    }

    #[test]
    fn strings_parse_and_print_as_java_does() {
        assert_eq!(
            cast(Value::String("TRUE".into()), CastType::Boolean),
            Value::Boolean(true)
        );
        assert_eq!(
            cast(Value::String("yes".into()), CastType::Boolean),
            Value::Boolean(false)
        );
        assert_eq!(
            cast(Value::String("-12".into()), CastType::Int8),
            Value::Int8(-12)
        );
        assert_eq!(
            cast(Value::String(" 1.5f ".into()), CastType::Float64),
            Value::Float64(1.5)
        );
        assert_eq!(
            cast(Value::String("-Infinity".into()), CastType::Float32),
            Value::Float32(f32::NEG_INFINITY)
        );
        let err = cast_value(None, Value::String("300".into()), CastType::Int8).unwrap_err();
        assert!(
            err.to_string()
                .contains("Value (300) could not be cast to int8"),
            "{err}"
        );
        assert!(cast_value(None, Value::String("inf".into()), CastType::Float64).is_err());
        assert!(cast_value(None, Value::String("1.5".into()), CastType::Int32).is_err());
        assert_eq!(
            cast(Value::Float64(1.0), CastType::String),
            Value::String("1.0".into())
        );
        assert_eq!(
            cast(Value::Float64(1e7), CastType::String),
            Value::String("1.0E7".into())
        );
        assert_eq!(
            cast(Value::Float64(1.25e-5), CastType::String),
            Value::String("1.25E-5".into())
        );
        assert_eq!(
            cast(Value::Float32(0.1), CastType::String),
            Value::String("0.1".into())
        );
        assert_eq!(
            cast(Value::Int64(-5), CastType::String),
            Value::String("-5".into())
        );
        assert_eq!(
            cast(Value::Bytes(b"hi!".to_vec()), CastType::String),
            Value::String("aGkh".into())
        );
        assert!(cast_value(None, Value::Bytes(vec![1]), CastType::Int32).is_err());
        let err = cast_value(None, Value::Array(vec![]), CastType::String).unwrap_err();
        assert!(
            err.to_string()
                .contains("does not support casting from ARRAY"),
            "{err}"
        );
    }

    #[test]
    fn logical_types_cast_through_their_encodings() {
        let timestamp = Schema {
            name: Some(TIMESTAMP_LOGICAL.into()),
            ..Schema::new(SchemaType::Int64)
        };
        let at = Value::Int64(1_709_211_909_007);
        assert_eq!(
            cast_value(Some(&timestamp), at.clone(), CastType::String).unwrap(),
            Value::String("2024-02-29T13:05:09.007Z".into())
        );
        assert_eq!(
            cast_value(Some(&timestamp), at, CastType::Int64).unwrap(),
            Value::Int64(1_709_211_909_007)
        );
        let date = Schema {
            name: Some(DATE_LOGICAL.into()),
            ..Schema::new(SchemaType::Int32)
        };
        assert_eq!(
            cast_value(Some(&date), Value::Int32(19_782), CastType::String).unwrap(),
            Value::String("2024-02-29".into())
        );
        let decimal = Schema {
            name: Some(DECIMAL_LOGICAL.into()),
            parameters: [(DECIMAL_SCALE_PARAMETER.to_owned(), "2".to_owned())].into(),
            ..Schema::new(SchemaType::Bytes)
        };
        let price = Value::Bytes(decimal_to_bytes(-12_345));
        assert_eq!(
            cast_value(Some(&decimal), price.clone(), CastType::Float64).unwrap(),
            Value::Float64(-123.45)
        );
        assert_eq!(
            cast_value(Some(&decimal), price.clone(), CastType::Int32).unwrap(),
            Value::Int32(-123)
        );
        assert_eq!(
            cast_value(Some(&decimal), price, CastType::String).unwrap(),
            Value::String("-123.45".into())
        );
    }

    #[test]
    fn decimals_encode_and_print_as_java_does() {
        for n in [
            0,
            1,
            -1,
            127,
            128,
            -128,
            -129,
            255,
            65_535,
            i128::MAX,
            i128::MIN,
        ] {
            assert_eq!(decimal_from_bytes(&decimal_to_bytes(n)).unwrap(), n);
        }
        assert_eq!(decimal_to_bytes(128), vec![0, 128]);
        assert_eq!(decimal_to_bytes(-128), vec![128]);
        assert_eq!(decimal_string(12_345, 2), "123.45");
        assert_eq!(decimal_string(5, 3), "0.005");
        assert_eq!(decimal_string(0, 2), "0.00");
        assert_eq!(decimal_string(123, -2), "1.23E+4");
        assert_eq!(decimal_string(1, 7), "1E-7");
        assert_eq!(decimal_integer_part(7, 60), 0);
        assert_eq!(parse_decimal("-1.5", 2), Some(-150));
        assert_eq!(parse_decimal("1.234", 2), None);
        assert_eq!(parse_decimal("1.230", 2), Some(123));
        assert_eq!(parse_decimal("0", i32::MAX), Some(0));
        assert_eq!(parse_decimal("1", i32::MAX), None);
        assert_eq!(parse_decimal(".", 2), None);
        assert_eq!(parse_decimal("1e5", 2), None);
        assert!(decimal_from_bytes(&[]).is_err());
        assert!(decimal_from_bytes(&[1; 17]).is_err());
    }

    #[test]
    fn struct_fields_cast_with_their_schema() {
        let schema = Schema::structure(
            Some("row"),
            vec![
                Field::new("id", Schema::new(SchemaType::Int64)),
                Field::new(
                    "score",
                    Schema {
                        default: Some(Value::Float64(1.5)),
                        ..Schema::optional(SchemaType::Float64)
                    },
                ),
                Field::new("name", Schema::new(SchemaType::String)),
            ],
        );
        let value = Value::Struct(vec![
            Value::Int64(7),
            Value::Null,
            Value::String("x".into()),
        ]);
        let chain = chain(&[("type", "Cast$Value"), ("spec", "id:string, score:int32")]);
        let out = apply(&chain, SchemaAndValue::new(Some(schema), value));
        let out_schema = out.schema.unwrap();
        assert_eq!(out_schema.name.as_deref(), Some("row"));
        assert_eq!(out_schema.fields[0].schema, Schema::new(SchemaType::String));
        assert_eq!(
            out_schema.fields[1].schema,
            Schema {
                default: Some(Value::Int32(1)),
                ..Schema::optional(SchemaType::Int32)
            }
        );
        assert_eq!(
            out.value,
            Value::Struct(vec![
                Value::String("7".into()),
                Value::Int32(1),
                Value::String("x".into())
            ])
        );
    }

    #[test]
    fn schemaless_fields_and_whole_values_cast() {
        let chain_fields = chain(&[("type", "Cast$Value"), ("spec", "a:int32,missing:string")]);
        let map = Value::Map(vec![
            (Value::String("a".into()), Value::String("42".into())),
            (Value::String("b".into()), Value::Boolean(true)),
        ]);
        let out = apply(&chain_fields, SchemaAndValue::new(None, map));
        assert_eq!(
            out.value,
            Value::Map(vec![
                (Value::String("a".into()), Value::Int32(42)),
                (Value::String("b".into()), Value::Boolean(true)),
            ])
        );

        let whole = chain(&[
            ("type", "org.apache.kafka.connect.transforms.Cast$Key"),
            ("spec", "int16"),
        ]);
        let mut record = ConnectRecord::new("t", SchemaAndValue::null());
        record.key =
            SchemaAndValue::new(Some(Schema::optional(SchemaType::Int64)), Value::Int64(9));
        let out = whole.apply(record).unwrap().unwrap();
        assert_eq!(out.key.schema, Some(Schema::optional(SchemaType::Int16)));
        assert_eq!(out.key.value, Value::Int16(9));

        let whole_value = chain(&[("type", "Cast$Value"), ("spec", "string")]);
        let out = apply(&whole_value, SchemaAndValue::new(None, Value::Float64(2.5)));
        assert_eq!(out.value, Value::String("2.5".into()));
        // A tombstone passes.
        let out = apply(&whole_value, SchemaAndValue::null());
        assert_eq!(out.value, Value::Null);
    }

    #[test]
    fn whole_value_cast_of_a_logical_type_drops_its_name() {
        let chain = chain(&[("type", "Cast$Value"), ("spec", "string")]);
        let timestamp = Schema {
            name: Some(TIMESTAMP_LOGICAL.into()),
            version: Some(1),
            ..Schema::new(SchemaType::Int64)
        };
        let out = apply(
            &chain,
            SchemaAndValue::new(Some(timestamp), Value::Int64(0)),
        );
        assert_eq!(out.schema, Some(Schema::new(SchemaType::String)));
        assert_eq!(out.value, Value::String("00:00:00.000Z".into()));
    }

    #[test]
    fn bad_specs_and_bad_values_are_errors() {
        let e = error(&[("type", "Cast$Value"), ("spec", "a:int32,int64")]);
        assert_eq!(e.key, "transforms.c.spec");
        assert!(
            e.message.contains("may only specify a single cast"),
            "{}",
            e.message
        );
        let e = error(&[("type", "Cast$Value"), ("spec", "a:bytes")]);
        assert!(
            e.message.contains("does not support casting to BYTES"),
            "{}",
            e.message
        );
        let e = error(&[("type", "Cast$Value"), ("spec", "a:float")]);
        assert!(e
            .message
            .contains("Invalid type found in casting spec: float"));
        let e = error(&[("type", "Cast$Value"), ("spec", "a:b:c")]);
        assert!(e.message.contains("Invalid cast mapping: a:b:c"));
        let e = error(&[("type", "Cast$Value")]);
        assert_eq!(e.key, "transforms.c.spec");
        let e = error(&[("type", "Cast$Value"), ("spec", " , ")]);
        assert!(e.message.contains("at least one field"));

        let chain = chain(&[("type", "Cast$Value"), ("spec", "a:int8")]);
        let record = ConnectRecord::new(
            "t",
            SchemaAndValue::new(
                None,
                Value::Map(vec![(Value::String("a".into()), Value::String("x".into()))]),
            ),
        );
        let err = chain.apply(record).unwrap_err();
        assert!(matches!(err, ConnectError::Failed(_)));
        let record = ConnectRecord::new("t", SchemaAndValue::new(None, Value::Int32(1)));
        assert!(chain.apply(record).is_err());
    }
}
