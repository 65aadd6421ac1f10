//! The values between a database and Connect.
//!
//! [`SqlValue`] is what both databases read and bind: PostgreSQL's typed values decode to
//! it (see `db::postgres`), SQLite's storage classes are its `Int`/`Float`/`Text`/`Bytes`.
//! This module owns the two conversions around it:
//! - database column -> Connect schema and value ([`source_field`], [`to_connect`]), with
//!   Confluent's `numeric.mapping` rules;
//! - Connect field -> bound parameter ([`from_connect`]).
//!
//! It also owns the arithmetic those need and nothing in the crate provides at any size:
//! Connect's Decimal is an unscaled integer of any length in big-endian two's complement
//! (PostgreSQL's unconstrained NUMERIC becomes a Decimal of scale 127, as Confluent maps it,
//! which no machine integer holds), and SQLite keeps dates and times as text.

use std::collections::BTreeMap;

use crate::data::{
    Schema, SchemaType, Value, DATE_LOGICAL, DECIMAL_LOGICAL, DECIMAL_SCALE_PARAMETER,
    TIMESTAMP_LOGICAL, TIME_LOGICAL,
};

/// A value read from or bound to a database.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SqlValue {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// Any integer.
    Int(i64),
    /// Any floating point number.
    Float(f64),
    /// An exact decimal in plain notation (`-12.50`), or PostgreSQL's `NaN`, `Infinity`,
    /// `-Infinity`.
    Numeric(String),
    /// Text.
    Text(String),
    /// Binary data.
    Bytes(Vec<u8>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since midnight.
    Time(i64),
    /// Microseconds since 1970-01-01T00:00:00 UTC.
    Timestamp(i64),
}

impl SqlValue {
    /// What kind of value this is, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            SqlValue::Null => "null",
            SqlValue::Bool(_) => "boolean",
            SqlValue::Int(_) => "integer",
            SqlValue::Float(_) => "floating point",
            SqlValue::Numeric(_) => "numeric",
            SqlValue::Text(_) => "text",
            SqlValue::Bytes(_) => "binary",
            SqlValue::Date(_) => "date",
            SqlValue::Time(_) => "time",
            SqlValue::Timestamp(_) => "timestamp",
        }
    }

    /// This value as an integer, when it is one exactly (an incrementing column's value).
    pub(crate) fn as_i64(&self) -> Option<i64> {
        match self {
            SqlValue::Int(n) => Some(*n),
            SqlValue::Numeric(text) | SqlValue::Text(text) => {
                let decimal = Decimal::parse(text)?;
                decimal.rescaled(0).exact_of(decimal)?.to_i64()
            }
            SqlValue::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            _ => None,
        }
    }

    /// This value as microseconds since the epoch, when it is a point in time: a timestamp,
    /// a date (its midnight), or SQLite's text (`2024-05-01 10:00:00.123`), which is read at
    /// millisecond precision, the precision of SQLite's own date functions that the
    /// source's conditions compare with.
    pub(crate) fn as_timestamp_micros(&self) -> Option<i64> {
        match self {
            SqlValue::Timestamp(micros) => Some(*micros),
            SqlValue::Date(days) => Some(i64::from(*days).saturating_mul(MICROS_PER_DAY)),
            SqlValue::Text(text) => parse_timestamp(text).map(round_to_millis),
            _ => None,
        }
    }
}

/// Microseconds in a day.
pub(crate) const MICROS_PER_DAY: i64 = 86_400_000_000;

/// How the source maps NUMERIC columns, as Confluent's `numeric.mapping` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumericMapping {
    /// Always a Decimal.
    None,
    /// Integers (scale 0, precision up to 18) as the smallest integer type that holds them.
    PrecisionOnly,
    /// As `PrecisionOnly`, and fractional numbers of precision up to 18 as float64.
    BestFit,
    /// As `PrecisionOnly`, and every fractional number as float64.
    BestFitEagerDouble,
}

impl NumericMapping {
    /// The mapping `name` selects (`none`, `precision_only`, `best_fit`,
    /// `best_fit_eager_double`).
    pub(crate) fn from_name(name: &str) -> Option<NumericMapping> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "none" | "" => NumericMapping::None,
            "precision_only" => NumericMapping::PrecisionOnly,
            "best_fit" => NumericMapping::BestFit,
            "best_fit_eager_double" => NumericMapping::BestFitEagerDouble,
            _ => return None,
        })
    }
}

/// A column's type, as far as Connect cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ColumnKind {
    /// BOOLEAN
    Boolean,
    /// SMALLINT
    Int16,
    /// INTEGER (PostgreSQL's 32-bit one)
    Int32,
    /// BIGINT, and SQLite's INTEGER
    Int64,
    /// REAL (PostgreSQL's 32-bit one)
    Float32,
    /// DOUBLE PRECISION, and SQLite's REAL
    Float64,
    /// NUMERIC / DECIMAL, with its precision and scale when declared.
    Numeric {
        /// Total digits, when declared.
        precision: Option<u32>,
        /// Digits after the point, when declared.
        scale: Option<i32>,
    },
    /// Character types, and types read as text (UUID, JSON, enums).
    Text,
    /// Binary types.
    Bytes,
    /// DATE
    Date,
    /// TIME
    Time,
    /// TIMESTAMP, with or without time zone
    Timestamp,
    /// A type the connectors do not read: the column is left out, as Confluent does.
    Unsupported,
}

/// The scale Confluent gives a NUMERIC declared without one, so that no digit is lost.
pub(crate) const UNCONSTRAINED_DECIMAL_SCALE: i32 = 127;

/// The most digits of an integer the integer mappings take (2^63 has 19).
const MAX_INTEGER_PRECISION: u32 = 18;

/// How a column's values become Connect values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conv {
    /// `boolean`
    Boolean,
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
    /// Decimal of this scale.
    Decimal(i32),
    /// `string`
    String,
    /// `bytes`
    Bytes,
    /// Date
    Date,
    /// Time
    Time,
    /// Timestamp
    Timestamp,
}

/// A Decimal schema of `scale`, carrying `precision` as Confluent does when it knows it.
pub(crate) fn decimal_schema(scale: i32, precision: Option<u32>) -> Schema {
    let mut parameters = BTreeMap::new();
    parameters.insert(DECIMAL_SCALE_PARAMETER.to_owned(), scale.to_string());
    if let Some(precision) = precision {
        parameters.insert(
            "connect.decimal.precision".to_owned(),
            precision.to_string(),
        );
    }
    Schema {
        name: Some(DECIMAL_LOGICAL.to_owned()),
        version: Some(1),
        parameters,
        ..Schema::new(SchemaType::Bytes)
    }
}

fn logical(kind: SchemaType, name: &str) -> Schema {
    Schema {
        name: Some(name.to_owned()),
        version: Some(1),
        ..Schema::new(kind)
    }
}

fn integer_conv(precision: u32) -> Conv {
    match precision {
        10.. => Conv::Int64,
        5..=9 => Conv::Int32,
        3..=4 => Conv::Int16,
        _ => Conv::Int8,
    }
}

/// The Connect schema of a column and how its values convert, or `None` for a type the
/// source leaves out.
pub(crate) fn source_field(
    kind: &ColumnKind,
    optional: bool,
    mapping: NumericMapping,
) -> Option<(Schema, Conv)> {
    let conv = match kind {
        ColumnKind::Boolean => Conv::Boolean,
        ColumnKind::Int16 => Conv::Int16,
        ColumnKind::Int32 => Conv::Int32,
        ColumnKind::Int64 => Conv::Int64,
        ColumnKind::Float32 => Conv::Float32,
        ColumnKind::Float64 => Conv::Float64,
        ColumnKind::Text => Conv::String,
        ColumnKind::Bytes => Conv::Bytes,
        ColumnKind::Date => Conv::Date,
        ColumnKind::Time => Conv::Time,
        ColumnKind::Timestamp => Conv::Timestamp,
        ColumnKind::Numeric { precision, scale } => numeric_conv(*precision, *scale, mapping),
        ColumnKind::Unsupported => return None,
    };
    let schema = match conv {
        Conv::Boolean => Schema::new(SchemaType::Boolean),
        Conv::Int8 => Schema::new(SchemaType::Int8),
        Conv::Int16 => Schema::new(SchemaType::Int16),
        Conv::Int32 => Schema::new(SchemaType::Int32),
        Conv::Int64 => Schema::new(SchemaType::Int64),
        Conv::Float32 => Schema::new(SchemaType::Float32),
        Conv::Float64 => Schema::new(SchemaType::Float64),
        Conv::String => Schema::new(SchemaType::String),
        Conv::Bytes => Schema::new(SchemaType::Bytes),
        Conv::Date => logical(SchemaType::Int32, DATE_LOGICAL),
        Conv::Time => logical(SchemaType::Int32, TIME_LOGICAL),
        Conv::Timestamp => logical(SchemaType::Int64, TIMESTAMP_LOGICAL),
        Conv::Decimal(scale) => {
            let precision = match kind {
                ColumnKind::Numeric { precision, .. } => *precision,
                _ => None,
            };
            decimal_schema(scale, precision)
        }
    };
    Some((
        if optional {
            schema.into_optional()
        } else {
            schema
        },
        conv,
    ))
}

/// Confluent's rules for NUMERIC, except that an unconstrained NUMERIC (no precision)
/// under a best-fit mapping is a float64: Confluent reads its zero precision as an int8,
/// which truncates every value.
fn numeric_conv(precision: Option<u32>, scale: Option<i32>, mapping: NumericMapping) -> Conv {
    let Some(precision) = precision.filter(|p| *p > 0) else {
        return match mapping {
            NumericMapping::BestFit | NumericMapping::BestFitEagerDouble => Conv::Float64,
            _ => Conv::Decimal(
                scale
                    .filter(|s| *s != 0)
                    .unwrap_or(UNCONSTRAINED_DECIMAL_SCALE),
            ),
        };
    };
    let scale = scale.unwrap_or(0);
    let integer = scale <= 0 && precision <= MAX_INTEGER_PRECISION;
    match mapping {
        NumericMapping::PrecisionOnly | NumericMapping::BestFit if integer && scale == 0 => {
            integer_conv(precision)
        }
        NumericMapping::BestFit | NumericMapping::BestFitEagerDouble if integer => {
            integer_conv(precision)
        }
        NumericMapping::BestFit if scale > 0 && precision <= MAX_INTEGER_PRECISION => Conv::Float64,
        NumericMapping::BestFitEagerDouble if scale > 0 => Conv::Float64,
        _ => Conv::Decimal(scale),
    }
}

fn mismatch(conv: Conv, value: &SqlValue) -> String {
    format!("cannot read a {} value as {conv:?}", value.kind())
}

fn int_in<T: TryFrom<i64>>(n: i64, conv: Conv) -> Result<T, String> {
    T::try_from(n).map_err(|_| format!("{n} is out of range for {conv:?}"))
}

/// `value` as Connect's value for `conv`. SQLite's loose typing is read leniently (an
/// integer in a REAL column, a number in a text column, dates as text); anything that does
/// not convert without loss is an error.
pub(crate) fn to_connect(conv: Conv, value: SqlValue) -> Result<Value, String> {
    if value == SqlValue::Null {
        return Ok(Value::Null);
    }
    let integer = |value: &SqlValue| -> Result<i64, String> {
        match value {
            SqlValue::Bool(b) => Ok(i64::from(*b)),
            other => other.as_i64().ok_or_else(|| mismatch(conv, other)),
        }
    };
    Ok(match conv {
        Conv::Boolean => Value::Boolean(match &value {
            SqlValue::Bool(b) => *b,
            SqlValue::Int(n) => *n != 0,
            SqlValue::Text(t) if t.eq_ignore_ascii_case("true") => true,
            SqlValue::Text(t) if t.eq_ignore_ascii_case("false") => false,
            other => return Err(mismatch(conv, other)),
        }),
        Conv::Int8 => Value::Int8(int_in(integer(&value)?, conv)?),
        Conv::Int16 => Value::Int16(int_in(integer(&value)?, conv)?),
        Conv::Int32 => Value::Int32(int_in(integer(&value)?, conv)?),
        Conv::Int64 => Value::Int64(integer(&value)?),
        Conv::Float32 => {
            Value::Float32(float(&value).ok_or_else(|| mismatch(conv, &value))? as f32)
        }
        Conv::Float64 => Value::Float64(float(&value).ok_or_else(|| mismatch(conv, &value))?),
        Conv::Decimal(scale) => {
            let decimal = match &value {
                SqlValue::Int(n) => Decimal::parse(&n.to_string()),
                SqlValue::Float(f) if f.is_finite() => Decimal::parse(&f.to_string()),
                SqlValue::Numeric(t) | SqlValue::Text(t) => Decimal::parse(t),
                _ => None,
            }
            .ok_or_else(|| mismatch(conv, &value))?;
            Value::Bytes(decimal.rescaled(scale).unscaled_bytes())
        }
        Conv::String => Value::String(match value {
            SqlValue::Text(t) | SqlValue::Numeric(t) => t,
            SqlValue::Int(n) => n.to_string(),
            SqlValue::Float(f) => f.to_string(),
            SqlValue::Bool(b) => b.to_string(),
            SqlValue::Date(d) => format_date(d),
            SqlValue::Time(t) => format_time(t),
            SqlValue::Timestamp(t) => format_timestamp(t),
            SqlValue::Bytes(b) => String::from_utf8(b)
                .map_err(|_| "cannot read binary data that is not UTF-8 as a string".to_owned())?,
            SqlValue::Null => return Ok(Value::Null),
        }),
        Conv::Bytes => Value::Bytes(match value {
            SqlValue::Bytes(b) => b,
            SqlValue::Text(t) => t.into_bytes(),
            other => return Err(mismatch(conv, &other)),
        }),
        Conv::Date => {
            let days = match &value {
                SqlValue::Date(d) => Some(*d),
                SqlValue::Timestamp(t) => i32::try_from(t.div_euclid(MICROS_PER_DAY)).ok(),
                SqlValue::Text(t) => parse_date(t),
                // sqlite-jdbc's default: milliseconds since the epoch.
                SqlValue::Int(ms) => i32::try_from(ms.div_euclid(86_400_000)).ok(),
                _ => None,
            };
            Value::Int32(days.ok_or_else(|| mismatch(conv, &value))?)
        }
        Conv::Time => {
            let micros = match &value {
                SqlValue::Time(t) => Some(*t),
                SqlValue::Text(t) => parse_time(t),
                SqlValue::Int(ms) => Some(ms.rem_euclid(86_400_000) * 1000),
                _ => None,
            };
            let micros = micros.ok_or_else(|| mismatch(conv, &value))?;
            Value::Int32(int_in(micros.div_euclid(1000), conv)?)
        }
        Conv::Timestamp => {
            let micros = match &value {
                SqlValue::Timestamp(t) => Some(*t),
                SqlValue::Date(d) => Some(i64::from(*d).saturating_mul(MICROS_PER_DAY)),
                SqlValue::Text(t) => parse_timestamp(t),
                SqlValue::Int(ms) => ms.checked_mul(1000),
                _ => None,
            };
            Value::Int64(
                micros
                    .ok_or_else(|| mismatch(conv, &value))?
                    .div_euclid(1000),
            )
        }
    })
}

fn float(value: &SqlValue) -> Option<f64> {
    match value {
        SqlValue::Float(f) => Some(*f),
        SqlValue::Int(n) => Some(*n as f64),
        SqlValue::Numeric(t) | SqlValue::Text(t) => t.trim().parse().ok(),
        _ => None,
    }
}

/// A Connect value of `schema` as a parameter to bind. Containers have no column type.
pub(crate) fn from_connect(schema: &Schema, value: &Value) -> Result<SqlValue, String> {
    let value = match (value, &schema.default) {
        (Value::Null, Some(default)) => default,
        (value, _) => value,
    };
    let name = schema.name.as_deref();
    Ok(match value {
        Value::Null => SqlValue::Null,
        Value::Boolean(b) => SqlValue::Bool(*b),
        Value::Int8(n) => SqlValue::Int((*n).into()),
        Value::Int16(n) => SqlValue::Int((*n).into()),
        Value::Int32(n) if name == Some(DATE_LOGICAL) => SqlValue::Date(*n),
        Value::Int32(n) if name == Some(TIME_LOGICAL) => SqlValue::Time(i64::from(*n) * 1000),
        Value::Int32(n) => SqlValue::Int((*n).into()),
        Value::Int64(n) if name == Some(TIMESTAMP_LOGICAL) => SqlValue::Timestamp(
            n.checked_mul(1000)
                .ok_or_else(|| format!("timestamp {n} is out of range"))?,
        ),
        Value::Int64(n) => SqlValue::Int(*n),
        Value::Float32(f) => SqlValue::Float((*f).into()),
        Value::Float64(f) => SqlValue::Float(*f),
        Value::String(s) => SqlValue::Text(s.clone()),
        Value::Bytes(bytes) if name == Some(DECIMAL_LOGICAL) => {
            let scale = schema
                .parameters
                .get(DECIMAL_SCALE_PARAMETER)
                .and_then(|s| s.trim().parse::<i32>().ok())
                .ok_or("a Decimal schema without its scale parameter")?;
            SqlValue::Numeric(Decimal::from_unscaled_bytes(bytes, scale).to_plain())
        }
        Value::Bytes(bytes) => SqlValue::Bytes(bytes.clone()),
        Value::Array(_) | Value::Map(_) | Value::Struct(_) => {
            return Err(format!(
                "a {} has no column type",
                value.inferred_type().map_or("container", SchemaType::name)
            ))
        }
    })
}

/// An exact decimal number: `digits` × 10^`exponent`, negated when `negative`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decimal {
    negative: bool,
    /// ASCII digits, never empty.
    digits: String,
    exponent: i64,
}

impl Decimal {
    /// `text` in plain or scientific notation (`-12.50`, `1e3`).
    pub(crate) fn parse(text: &str) -> Option<Decimal> {
        let text = text.trim();
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i64>().ok()?),
            None => (unsigned, 0),
        };
        let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (integer.is_empty() && fraction.is_empty())
            || !all_digits(integer)
            || !all_digits(fraction)
        {
            return None;
        }
        let digits = format!("{integer}{fraction}");
        // Bounded so that a hostile exponent cannot ask for billions of zeros.
        let exponent = exponent.checked_sub(fraction.len() as i64)?;
        if exponent.abs() > 100_000 {
            return None;
        }
        Some(
            Decimal {
                negative,
                digits,
                exponent,
            }
            .normalized(),
        )
    }

    fn normalized(mut self) -> Decimal {
        let trimmed = self.digits.trim_start_matches('0');
        self.digits = if trimmed.is_empty() {
            "0".to_owned()
        } else {
            trimmed.to_owned()
        };
        if self.digits == "0" {
            self.negative = false;
        }
        self
    }

    /// This number with exactly `scale` digits after the point, rounding half away from
    /// zero when digits are dropped.
    pub(crate) fn rescaled(&self, scale: i32) -> Decimal {
        let target = -i64::from(scale);
        if self.exponent >= target {
            let zeros = (self.exponent - target) as usize;
            let mut digits = self.digits.clone();
            digits.extend(std::iter::repeat_n('0', zeros));
            return Decimal {
                negative: self.negative,
                digits,
                exponent: target,
            }
            .normalized_keeping(target);
        }
        let drop = (target - self.exponent) as usize;
        let len = self.digits.len();
        let (kept, round_up) = if drop > len {
            (String::from("0"), false)
        } else {
            let (kept, dropped) = self.digits.split_at(len - drop);
            (
                if kept.is_empty() { "0" } else { kept }.to_owned(),
                dropped.as_bytes().first().is_some_and(|d| *d >= b'5'),
            )
        };
        let digits = if round_up { increment(&kept) } else { kept };
        Decimal {
            negative: self.negative,
            digits,
            exponent: target,
        }
        .normalized_keeping(target)
    }

    fn normalized_keeping(self, exponent: i64) -> Decimal {
        let mut d = self.normalized();
        d.exponent = exponent;
        d
    }

    /// `self` if it is the same number as `other` (a rescale lost nothing).
    fn exact_of(self, other: Decimal) -> Option<Decimal> {
        (self.to_plain_cmp() == other.to_plain_cmp()).then_some(self)
    }

    fn to_plain_cmp(&self) -> (bool, String) {
        // Compares by value: digits with trailing zeros of the fraction removed.
        let plain = self.to_plain();
        let trimmed = if plain.contains('.') {
            plain.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            plain
        };
        (self.negative, trimmed)
    }

    fn to_i64(&self) -> Option<i64> {
        if self.exponent != 0 {
            return None;
        }
        let magnitude: i128 = self.digits.parse().ok()?;
        i64::try_from(if self.negative { -magnitude } else { magnitude }).ok()
    }

    /// Plain notation: `-12.50`, `0.001`, `1200`.
    pub(crate) fn to_plain(&self) -> String {
        let mut out = String::new();
        if self.negative {
            out.push('-');
        }
        if self.exponent >= 0 {
            out.push_str(&self.digits);
            if self.digits != "0" {
                out.extend(std::iter::repeat_n('0', self.exponent as usize));
            }
            return out;
        }
        let scale = self.exponent.unsigned_abs() as usize;
        if self.digits.len() > scale {
            let (integer, fraction) = self.digits.split_at(self.digits.len() - scale);
            out.push_str(integer);
            out.push('.');
            out.push_str(fraction);
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', scale - self.digits.len()));
            out.push_str(&self.digits);
        }
        out
    }

    /// The unscaled value, as Connect's Decimal carries it: the shortest big-endian two's
    /// complement, as Java's `BigInteger.toByteArray` writes it.
    pub(crate) fn unscaled_bytes(&self) -> Vec<u8> {
        let mut limbs: Vec<u32> = Vec::new();
        for chunk in self.digits.as_bytes().chunks(9) {
            let mut value = 0u32;
            for digit in chunk {
                value = value * 10 + u32::from(digit - b'0');
            }
            mul_add(&mut limbs, 10u32.pow(chunk.len() as u32), value);
        }
        let mut magnitude: Vec<u8> = limbs.iter().rev().flat_map(|l| l.to_be_bytes()).collect();
        let first = magnitude
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(magnitude.len());
        magnitude.drain(..first);
        if !self.negative || magnitude.is_empty() {
            if magnitude.first().is_none_or(|b| b & 0x80 != 0) {
                magnitude.insert(0, 0);
            }
            return magnitude;
        }
        let mut bytes: Vec<u8> = magnitude.iter().map(|b| !b).collect();
        for byte in bytes.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
        if bytes.first().is_some_and(|b| b & 0x80 == 0) {
            bytes.insert(0, 0xff);
        }
        bytes
    }

    /// The number whose unscaled value is `bytes` (big-endian two's complement) at `scale`.
    pub(crate) fn from_unscaled_bytes(bytes: &[u8], scale: i32) -> Decimal {
        let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
        let magnitude: Vec<u8> = if negative {
            let mut inverted: Vec<u8> = bytes.iter().map(|b| !b).collect();
            for byte in inverted.iter_mut().rev() {
                let (sum, carry) = byte.overflowing_add(1);
                *byte = sum;
                if !carry {
                    break;
                }
            }
            inverted
        } else {
            bytes.to_vec()
        };
        // Base 2^32 limbs, least significant first.
        let mut limbs: Vec<u32> = Vec::new();
        for byte in &magnitude {
            mul_add(&mut limbs, 256, u32::from(*byte));
        }
        let mut groups = Vec::new();
        while limbs.iter().any(|l| *l != 0) {
            groups.push(div_small(&mut limbs, 1_000_000_000));
        }
        let mut digits = match groups.pop() {
            Some(top) => top.to_string(),
            None => "0".to_owned(),
        };
        for group in groups.iter().rev() {
            digits.push_str(&format!("{group:09}"));
        }
        Decimal {
            negative,
            digits,
            exponent: -i64::from(scale),
        }
        .normalized_keeping(-i64::from(scale))
    }
}

/// `limbs` × `factor` + `add`, in place.
fn mul_add(limbs: &mut Vec<u32>, factor: u32, add: u32) {
    let mut carry = u64::from(add);
    for limb in limbs.iter_mut() {
        let product = u64::from(*limb) * u64::from(factor) + carry;
        *limb = product as u32;
        carry = product >> 32;
    }
    if carry != 0 {
        limbs.push(carry as u32);
    }
}

/// Divides `limbs` by `divisor` in place and returns the remainder.
fn div_small(limbs: &mut [u32], divisor: u32) -> u32 {
    let mut remainder = 0u64;
    for limb in limbs.iter_mut().rev() {
        let current = (remainder << 32) | u64::from(*limb);
        *limb = (current / u64::from(divisor)) as u32;
        remainder = current % u64::from(divisor);
    }
    remainder as u32
}

/// The decimal digits `digits` plus one.
fn increment(digits: &str) -> String {
    let mut bytes = digits.as_bytes().to_vec();
    for byte in bytes.iter_mut().rev() {
        if *byte == b'9' {
            *byte = b'0';
        } else {
            *byte += 1;
            return String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    format!("1{}", String::from_utf8_lossy(&bytes))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of `days` since 1970-01-01: (year, month, day).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD`.
pub(crate) fn format_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(days.into());
    format!("{y:04}-{m:02}-{d:02}")
}

/// `HH:MM:SS.mmm`, as SQLite's time functions write it.
pub(crate) fn format_time(micros: i64) -> String {
    let ms = micros.rem_euclid(MICROS_PER_DAY) / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// `YYYY-MM-DD HH:MM:SS.mmm` (UTC), as SQLite's `strftime('%Y-%m-%d %H:%M:%f')` writes
/// it, so that the text compares as the instant does.
pub(crate) fn format_timestamp(micros: i64) -> String {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {}", format_time(micros))
}

/// `micros` rounded to the nearest millisecond, as SQLite's `%f` rounds.
pub(crate) fn round_to_millis(micros: i64) -> i64 {
    micros.saturating_add(500).div_euclid(1000) * 1000
}

fn number(text: &str, digits: usize) -> Option<u32> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// `YYYY-MM-DD`, or the date of a timestamp's text.
pub(crate) fn parse_date(text: &str) -> Option<i32> {
    let text = text.trim();
    let date = text.get(..10)?;
    let mut parts = date.split('-');
    let year = number(parts.next()?, 4)?;
    let month = number(parts.next()?, 2)?;
    let day = number(parts.next()?, 2)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || parts.next().is_some() {
        return None;
    }
    let rest = &text[10..];
    if !(rest.is_empty() || rest.starts_with([' ', 'T', 't'])) {
        return None;
    }
    i32::try_from(days_from_civil(year.into(), month, day)).ok()
}

/// `HH:MM[:SS[.fraction]]` as microseconds since midnight.
pub(crate) fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    let (clock, fraction) = text.split_once('.').unwrap_or((text, ""));
    let mut parts = clock.split(':');
    let hours = number(parts.next()?, 2)?;
    let minutes = number(parts.next()?, 2)?;
    let seconds = match parts.next() {
        Some(s) => number(s, 2)?,
        None => 0,
    };
    if parts.next().is_some() || hours > 24 || minutes > 59 || seconds > 60 {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut micros_text: String = fraction.chars().take(6).collect();
    while micros_text.len() < 6 {
        micros_text.push('0');
    }
    let micros: i64 = micros_text.parse().ok()?;
    Some(
        (i64::from(hours) * 3600 + i64::from(minutes) * 60 + i64::from(seconds)) * 1_000_000
            + micros,
    )
}

/// SQLite's date-time text (`YYYY-MM-DD[ T]HH:MM[:SS[.fff]][Z|±HH:MM]`, or a date alone)
/// as microseconds since the epoch; text without a zone is UTC, as SQLite's functions take
/// it.
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    let days = i64::from(parse_date(text)?);
    let rest = text[10..].trim_start_matches([' ', 'T', 't']);
    if rest.is_empty() {
        return Some(days * MICROS_PER_DAY);
    }
    let (clock, offset_seconds) = if let Some(clock) = rest.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else if let Some(at) = rest.rfind(['+', '-']).filter(|at| *at >= 5) {
        let (clock, zone) = rest.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let zone = &zone[1..];
        let (h, m) = zone
            .split_once(':')
            .unwrap_or((zone.get(..2)?, zone.get(2..)?));
        let minutes = if m.is_empty() { 0 } else { number(m, 2)? };
        (
            clock,
            sign * (i64::from(number(h, 2)?) * 3600 + i64::from(minutes) * 60),
        )
    } else {
        (rest, 0)
    };
    let micros = parse_time(clock.trim_end())?;
    Some(days * MICROS_PER_DAY + micros - offset_seconds * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimal(text: &str, scale: i32) -> Vec<u8> {
        Decimal::parse(text)
            .unwrap()
            .rescaled(scale)
            .unscaled_bytes()
    }

    #[test]
    fn decimals_encode_as_java_big_integers() {
        assert_eq!(decimal("0", 0), [0]);
        assert_eq!(decimal("127", 0), [127]);
        assert_eq!(decimal("128", 0), [0, 128]);
        assert_eq!(decimal("-1", 0), [0xff]);
        assert_eq!(decimal("-128", 0), [0x80]);
        assert_eq!(decimal("-129", 0), [0xff, 0x7f]);
        assert_eq!(decimal("-256", 0), [0xff, 0x00]);
        assert_eq!(decimal("12.5", 2), [0x04, 0xe2]); // 1250
        assert_eq!(decimal("1.005", 2), [101]); // half away from zero
        assert_eq!(decimal("-1.005", 2), [0x9b]); // -101
        for (text, scale) in [
            ("123456789012345678901234567890.123", 3),
            ("-98765432109876543210987654321", 0),
            ("1.5", UNCONSTRAINED_DECIMAL_SCALE),
            ("-0.000001", 6),
        ] {
            let bytes = decimal(text, scale);
            let back = Decimal::from_unscaled_bytes(&bytes, scale).to_plain();
            assert_eq!(
                Decimal::parse(&back).unwrap().rescaled(scale),
                Decimal::parse(text).unwrap().rescaled(scale),
                "{text}"
            );
        }
        assert_eq!(
            Decimal::from_unscaled_bytes(&[0x04, 0xe2], 2).to_plain(),
            "12.50"
        );
        assert_eq!(
            Decimal::from_unscaled_bytes(&[0xff], 3).to_plain(),
            "-0.001"
        );
        assert_eq!(Decimal::parse("1e3").unwrap().to_plain(), "1000");
        assert!(Decimal::parse("1e999999999").is_none());
        assert!(Decimal::parse("12a").is_none());
    }

    #[test]
    fn numeric_mapping_follows_confluent() {
        let numeric = |p: u32, s: i32| ColumnKind::Numeric {
            precision: Some(p),
            scale: Some(s),
        };
        let conv = |kind: &ColumnKind, mapping| source_field(kind, false, mapping).unwrap().1;
        assert_eq!(
            conv(&numeric(10, 2), NumericMapping::None),
            Conv::Decimal(2)
        );
        assert_eq!(
            conv(&numeric(4, 0), NumericMapping::PrecisionOnly),
            Conv::Int16
        );
        assert_eq!(
            conv(&numeric(10, 2), NumericMapping::PrecisionOnly),
            Conv::Decimal(2)
        );
        assert_eq!(conv(&numeric(9, 0), NumericMapping::BestFit), Conv::Int32);
        assert_eq!(conv(&numeric(18, 0), NumericMapping::BestFit), Conv::Int64);
        assert_eq!(
            conv(&numeric(19, 0), NumericMapping::BestFit),
            Conv::Decimal(0)
        );
        assert_eq!(
            conv(&numeric(10, 2), NumericMapping::BestFit),
            Conv::Float64
        );
        assert_eq!(
            conv(&numeric(30, 2), NumericMapping::BestFit),
            Conv::Decimal(2)
        );
        assert_eq!(
            conv(&numeric(30, 2), NumericMapping::BestFitEagerDouble),
            Conv::Float64
        );
        let unconstrained = ColumnKind::Numeric {
            precision: None,
            scale: None,
        };
        assert_eq!(
            conv(&unconstrained, NumericMapping::None),
            Conv::Decimal(UNCONSTRAINED_DECIMAL_SCALE)
        );
        assert_eq!(conv(&unconstrained, NumericMapping::BestFit), Conv::Float64);
        assert!(source_field(&ColumnKind::Unsupported, true, NumericMapping::None).is_none());
        let (schema, _) = source_field(&ColumnKind::Timestamp, true, NumericMapping::None).unwrap();
        assert!(schema.optional && schema.is_logical(TIMESTAMP_LOGICAL));
    }

    #[test]
    fn values_convert_leniently_but_never_lossily() {
        assert_eq!(
            to_connect(Conv::Int32, SqlValue::Int(7)),
            Ok(Value::Int32(7))
        );
        assert!(to_connect(Conv::Int16, SqlValue::Int(70_000)).is_err());
        assert!(to_connect(Conv::Int64, SqlValue::Text("x".into())).is_err());
        assert_eq!(
            to_connect(Conv::Int64, SqlValue::Numeric("42".into())),
            Ok(Value::Int64(42))
        );
        assert!(to_connect(Conv::Int64, SqlValue::Numeric("4.2".into())).is_err());
        assert_eq!(
            to_connect(Conv::Boolean, SqlValue::Int(1)),
            Ok(Value::Boolean(true))
        );
        assert_eq!(
            to_connect(
                Conv::Timestamp,
                SqlValue::Text("2024-02-29 12:34:56.789".into())
            ),
            Ok(Value::Int64(1_709_210_096_789))
        );
        assert_eq!(
            to_connect(Conv::Date, SqlValue::Text("1970-01-02".into())),
            Ok(Value::Int32(1))
        );
        assert_eq!(
            to_connect(Conv::Time, SqlValue::Text("01:00:00.5".into())),
            Ok(Value::Int32(3_600_500))
        );
        assert_eq!(to_connect(Conv::Float64, SqlValue::Null), Ok(Value::Null));
    }

    #[test]
    fn connect_values_bind_as_their_logical_types() {
        let ts = logical(SchemaType::Int64, TIMESTAMP_LOGICAL);
        assert_eq!(
            from_connect(&ts, &Value::Int64(1_500)),
            Ok(SqlValue::Timestamp(1_500_000))
        );
        let dec = decimal_schema(2, None);
        assert_eq!(
            from_connect(&dec, &Value::Bytes(vec![0x04, 0xe2])),
            Ok(SqlValue::Numeric("12.50".into()))
        );
        let with_default = Schema {
            default: Some(Value::Int32(5)),
            ..Schema::optional(SchemaType::Int32)
        };
        assert_eq!(
            from_connect(&with_default, &Value::Null),
            Ok(SqlValue::Int(5))
        );
        assert!(from_connect(&Schema::new(SchemaType::Map), &Value::Map(vec![])).is_err());
    }

    #[test]
    fn dates_and_times_round_trip_through_text() {
        for days in [-719_468, -1, 0, 1, 10_957, 19_782, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_timestamp(-1_000), "1969-12-31 23:59:59.999");
        assert_eq!(parse_timestamp("1969-12-31 23:59:59.999"), Some(-1_000));
        assert_eq!(
            parse_timestamp("2000-01-01T00:00:00Z"),
            Some(946_684_800_000_000)
        );
        assert_eq!(
            parse_timestamp("2000-01-01 02:00:00+02:00"),
            Some(946_684_800_000_000)
        );
        assert_eq!(parse_timestamp("2000-01-01"), Some(946_684_800_000_000));
        assert_eq!(parse_timestamp("2000-13-01"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(round_to_millis(1_499), 1_000);
        assert_eq!(round_to_millis(1_500), 2_000);
        assert_eq!(
            SqlValue::Text("2000-01-01 00:00:00.0006".into()).as_timestamp_micros(),
            Some(946_684_800_001_000)
        );
    }
}
