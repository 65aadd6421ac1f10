//! PostgreSQL column types as Debezium's PostgreSQL connector maps them by default: which
//! Connect schema a column gets, and how a value's text form (what pgoutput sends, and
//! what a text-format `SELECT` returns) becomes a Connect value.
//!
//! Text forms are read as the connector's sessions make PostgreSQL write them: the
//! sessions set `DateStyle=ISO`, `TimeZone=UTC`, `IntervalStyle=iso_8601`,
//! `bytea_output=hex`, `lc_monetary=C` and `extra_float_digits=3` (see `task`), so that
//! each type has one form to read. Times follow Debezium's `time.precision.mode=adaptive`
//! (a precision of 3 or less gives milliseconds, else microseconds); numerics follow
//! `decimal.handling.mode`. Types without a mapping here (arrays, geometry, ranges, bit
//! strings, enums, network addresses...) are strings of their text form.

use crate::data::{Schema, SchemaType, Value, DECIMAL_LOGICAL, DECIMAL_SCALE_PARAMETER};

/// Debezium's logical type names.
pub const DATE: &str = "io.debezium.time.Date";
/// Milliseconds since midnight, INT32.
pub const TIME: &str = "io.debezium.time.Time";
/// Microseconds since midnight, INT64.
pub const MICRO_TIME: &str = "io.debezium.time.MicroTime";
/// Milliseconds since the epoch, INT64.
pub const TIMESTAMP: &str = "io.debezium.time.Timestamp";
/// Microseconds since the epoch, INT64.
pub const MICRO_TIMESTAMP: &str = "io.debezium.time.MicroTimestamp";
/// An ISO-8601 timestamp in UTC, STRING.
pub const ZONED_TIMESTAMP: &str = "io.debezium.time.ZonedTimestamp";
/// An ISO-8601 time in UTC, STRING.
pub const ZONED_TIME: &str = "io.debezium.time.ZonedTime";
/// An approximate duration in microseconds, INT64.
pub const MICRO_DURATION: &str = "io.debezium.time.MicroDuration";
/// A UUID, STRING.
pub const UUID: &str = "io.debezium.data.Uuid";
/// A JSON document, STRING.
pub const JSON: &str = "io.debezium.data.Json";
/// An XML document, STRING.
pub const XML: &str = "io.debezium.data.Xml";
/// A numeric without a declared scale: a struct of `scale` and `value`.
pub const VARIABLE_SCALE_DECIMAL: &str = "io.debezium.data.VariableScaleDecimal";
/// The parameter Debezium gives a Decimal's declared precision in.
pub const PRECISION_PARAMETER: &str = "connect.decimal.precision";
/// What Debezium puts in place of a TOASTed value that an update did not change (and so
/// was not sent).
pub const UNAVAILABLE_VALUE: &str = "__debezium_unavailable_value";

/// `decimal.handling.mode`: how numerics (and money) become Connect values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecimalMode {
    /// Connect's Decimal (or Debezium's VariableScaleDecimal without a declared scale).
    #[default]
    Precise,
    /// A double, losing precision.
    Double,
    /// The text form.
    String,
}

impl DecimalMode {
    /// The mode named `name` (case-insensitive).
    pub fn parse(name: &str) -> Option<DecimalMode> {
        match name.trim().to_ascii_lowercase().as_str() {
            "precise" => Some(DecimalMode::Precise),
            "double" => Some(DecimalMode::Double),
            "string" => Some(DecimalMode::String),
            _ => None,
        }
    }
}

/// What a column's type is, for its schema and its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `bool`
    Boolean,
    /// `int2`
    Int16,
    /// `int4`
    Int32,
    /// `int8`, `oid`
    Int64,
    /// `float4`
    Float32,
    /// `float8`
    Float64,
    /// `numeric(p, s)`: a declared scale.
    Numeric {
        /// The declared precision.
        precision: i32,
        /// The declared scale.
        scale: i32,
    },
    /// `numeric` without a declared precision and scale.
    VariableNumeric,
    /// `money`: two decimal places (Debezium's default `money.fraction.digits`).
    Money,
    /// `bytea`
    Bytes,
    /// `date`
    Date,
    /// `time(p)`; `micros` when p > 3.
    Time {
        /// Whether values are microseconds (else milliseconds).
        micros: bool,
    },
    /// `timetz`
    TimeTz,
    /// `timestamp(p)`; `micros` when p > 3.
    Timestamp {
        /// Whether values are microseconds (else milliseconds).
        micros: bool,
    },
    /// `timestamptz`
    TimestampTz,
    /// `interval`
    Interval,
    /// `uuid`
    Uuid,
    /// `json`, `jsonb`
    Json,
    /// `xml`
    Xml,
    /// Text types and everything else: the text form.
    String,
}

/// The kind of a column of type `oid` with modifier `typmod` (built-in OIDs; the caller
/// resolves domains to their base type first).
pub fn kind_of(oid: u32, typmod: i32) -> Kind {
    // A time's or timestamp's precision is its modifier; -1 means the default, 6.
    let micros = !(0..=3).contains(&typmod);
    match oid {
        16 => Kind::Boolean,
        21 => Kind::Int16,
        23 => Kind::Int32,
        20 | 26 => Kind::Int64,
        700 => Kind::Float32,
        701 => Kind::Float64,
        1700 => {
            // A numeric's modifier is ((precision << 16) | scale) + 4, or -1 for none.
            if typmod >= 4 {
                let packed = typmod - 4;
                let precision = (packed >> 16) & 0xFFFF;
                // The scale is 11 bits, signed since PostgreSQL 15 (`numeric(3, -2)`).
                let raw = packed & 0x7FF;
                let scale = if raw & 0x400 != 0 { raw - 0x800 } else { raw };
                Kind::Numeric { precision, scale }
            } else {
                Kind::VariableNumeric
            }
        }
        790 => Kind::Money,
        17 => Kind::Bytes,
        1082 => Kind::Date,
        1083 => Kind::Time { micros },
        1266 => Kind::TimeTz,
        1114 => Kind::Timestamp { micros },
        1184 => Kind::TimestampTz,
        1186 => Kind::Interval,
        2950 => Kind::Uuid,
        114 | 3802 => Kind::Json,
        142 => Kind::Xml,
        _ => Kind::String,
    }
}

fn logical(kind: SchemaType, name: &str) -> Schema {
    Schema {
        name: Some(name.to_owned()),
        version: Some(1),
        ..Schema::new(kind)
    }
}

/// The Connect schema of a column of `kind`.
pub fn schema(kind: Kind, optional: bool, mode: DecimalMode) -> Schema {
    let schema = match kind {
        Kind::Boolean => Schema::new(SchemaType::Boolean),
        Kind::Int16 => Schema::new(SchemaType::Int16),
        Kind::Int32 => Schema::new(SchemaType::Int32),
        Kind::Int64 => Schema::new(SchemaType::Int64),
        Kind::Float32 => Schema::new(SchemaType::Float32),
        Kind::Float64 => Schema::new(SchemaType::Float64),
        Kind::Numeric { .. } | Kind::VariableNumeric | Kind::Money => match mode {
            DecimalMode::Double => Schema::new(SchemaType::Float64),
            DecimalMode::String => Schema::new(SchemaType::String),
            DecimalMode::Precise => match kind {
                Kind::Numeric { precision, scale } => decimal_schema(scale, Some(precision)),
                Kind::Money => decimal_schema(2, None),
                _ => Schema {
                    name: Some(VARIABLE_SCALE_DECIMAL.to_owned()),
                    version: Some(1),
                    doc: Some("Variable scaled decimal".to_owned()),
                    ..Schema::structure(
                        None,
                        vec![
                            crate::data::Field::new("scale", Schema::new(SchemaType::Int32)),
                            crate::data::Field::new("value", Schema::new(SchemaType::Bytes)),
                        ],
                    )
                },
            },
        },
        Kind::Bytes => Schema::new(SchemaType::Bytes),
        Kind::Date => logical(SchemaType::Int32, DATE),
        Kind::Time { micros: false } => logical(SchemaType::Int32, TIME),
        Kind::Time { micros: true } => logical(SchemaType::Int64, MICRO_TIME),
        Kind::TimeTz => logical(SchemaType::String, ZONED_TIME),
        Kind::Timestamp { micros: false } => logical(SchemaType::Int64, TIMESTAMP),
        Kind::Timestamp { micros: true } => logical(SchemaType::Int64, MICRO_TIMESTAMP),
        Kind::TimestampTz => logical(SchemaType::String, ZONED_TIMESTAMP),
        Kind::Interval => logical(SchemaType::Int64, MICRO_DURATION),
        Kind::Uuid => logical(SchemaType::String, UUID),
        Kind::Json => logical(SchemaType::String, JSON),
        Kind::Xml => logical(SchemaType::String, XML),
        Kind::String => Schema::new(SchemaType::String),
    };
    Schema { optional, ..schema }
}

fn decimal_schema(scale: i32, precision: Option<i32>) -> Schema {
    let mut schema = Schema {
        name: Some(DECIMAL_LOGICAL.to_owned()),
        version: Some(1),
        ..Schema::new(SchemaType::Bytes)
    };
    schema
        .parameters
        .insert(DECIMAL_SCALE_PARAMETER.to_owned(), scale.to_string());
    if let Some(precision) = precision {
        schema
            .parameters
            .insert(PRECISION_PARAMETER.to_owned(), precision.to_string());
    }
    schema
}

/// The value for a column of `kind` whose text form is `text`; `Value::Null` for the
/// special values a Connect type cannot hold (a numeric's NaN when precise).
pub fn parse(kind: Kind, text: &str, mode: DecimalMode) -> Result<Value, String> {
    let bad = || format!("cannot read {text:?} as {kind:?}");
    Ok(match kind {
        Kind::Boolean => match text {
            "t" | "true" => Value::Boolean(true),
            "f" | "false" => Value::Boolean(false),
            _ => return Err(bad()),
        },
        Kind::Int16 => Value::Int16(text.trim().parse().map_err(|_| bad())?),
        Kind::Int32 => Value::Int32(text.trim().parse().map_err(|_| bad())?),
        Kind::Int64 => Value::Int64(text.trim().parse().map_err(|_| bad())?),
        Kind::Float32 => Value::Float32(parse_float(text).ok_or_else(bad)? as f32),
        Kind::Float64 => Value::Float64(parse_float(text).ok_or_else(bad)?),
        Kind::Numeric { .. } | Kind::VariableNumeric | Kind::Money => {
            let cleaned;
            let text = if kind == Kind::Money {
                cleaned = clean_money(text);
                cleaned.as_str()
            } else {
                text
            };
            match mode {
                DecimalMode::String => Value::String(text.to_owned()),
                DecimalMode::Double => Value::Float64(parse_float(text).ok_or_else(bad)?),
                DecimalMode::Precise => {
                    let Some(decimal) = Decimal::parse(text) else {
                        if is_special_number(text) {
                            // NaN and the infinities have no Decimal: Debezium writes null.
                            return Ok(Value::Null);
                        }
                        return Err(bad());
                    };
                    match kind {
                        Kind::Numeric { scale, .. } => {
                            Value::Bytes(decimal.unscaled_at(scale).ok_or_else(bad)?)
                        }
                        Kind::Money => Value::Bytes(decimal.unscaled_at(2).ok_or_else(bad)?),
                        _ => Value::Struct(vec![
                            Value::Int32(decimal.scale),
                            Value::Bytes(decimal.unscaled_at(decimal.scale).ok_or_else(bad)?),
                        ]),
                    }
                }
            }
        }
        Kind::Bytes => Value::Bytes(parse_bytea(text).ok_or_else(bad)?),
        Kind::Date => Value::Int32(match text {
            "infinity" => i32::MAX,
            "-infinity" => i32::MIN,
            _ => {
                let days = parse_date(text).ok_or_else(bad)?;
                i32::try_from(days).map_err(|_| bad())?
            }
        }),
        Kind::Time { micros } => {
            let value = parse_time_of_day(text).ok_or_else(bad)?;
            if micros {
                Value::Int64(value)
            } else {
                Value::Int32(i32::try_from(value / 1000).map_err(|_| bad())?)
            }
        }
        Kind::TimeTz => Value::String(parse_timetz(text).ok_or_else(bad)?),
        Kind::Timestamp { micros } => Value::Int64(match text {
            "infinity" => i64::MAX,
            "-infinity" => i64::MIN,
            _ => {
                let value = parse_timestamp(text).ok_or_else(bad)?.0;
                if micros {
                    value
                } else {
                    value.div_euclid(1000)
                }
            }
        }),
        Kind::TimestampTz => Value::String(match text {
            "infinity" | "-infinity" => text.to_owned(),
            _ => {
                let (local, offset) = parse_timestamp(text).ok_or_else(bad)?;
                let utc = local
                    .checked_sub(offset.checked_mul(1_000_000).ok_or_else(bad)?)
                    .ok_or_else(bad)?;
                format_utc(utc).ok_or_else(bad)?
            }
        }),
        Kind::Interval => Value::Int64(parse_interval(text).ok_or_else(bad)?),
        Kind::Uuid | Kind::Json | Kind::Xml | Kind::String => Value::String(text.to_owned()),
    })
}

/// The value a required column gets when no value is known for it (the non-key columns
/// of a key-only old row): its type's zero, as Debezium's converters fall back to.
pub fn fallback(schema: &Schema) -> Value {
    match schema.kind {
        SchemaType::Boolean => Value::Boolean(false),
        SchemaType::Int8 => Value::Int8(0),
        SchemaType::Int16 => Value::Int16(0),
        SchemaType::Int32 => Value::Int32(0),
        SchemaType::Int64 => Value::Int64(0),
        SchemaType::Float32 => Value::Float32(0.0),
        SchemaType::Float64 => Value::Float64(0.0),
        SchemaType::String => Value::String(String::new()),
        // A Decimal's zero is the one byte 0.
        SchemaType::Bytes => Value::Bytes(if schema.is_logical(DECIMAL_LOGICAL) {
            vec![0]
        } else {
            Vec::new()
        }),
        SchemaType::Struct => {
            Value::Struct(schema.fields.iter().map(|f| fallback(&f.schema)).collect())
        }
        SchemaType::Array => Value::Array(Vec::new()),
        SchemaType::Map => Value::Map(Vec::new()),
    }
}

fn parse_float(text: &str) -> Option<f64> {
    match text.trim() {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

fn is_special_number(text: &str) -> bool {
    matches!(text.trim(), "NaN" | "Infinity" | "-Infinity")
}

/// `money` as `lc_monetary=C` writes it (`-$1,234.56`), as a plain decimal.
fn clean_money(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_digit() || *c == '-' || *c == '.')
        .collect()
}

/// A decimal number read from its text form: sign, digits, and how many of them follow
/// the point.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    scale: i32,
}

impl Decimal {
    fn parse(text: &str) -> Option<Decimal> {
        let text = text.trim();
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (whole, fraction) = body.split_once('.').unwrap_or((body, ""));
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        if !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let digits = whole
            .bytes()
            .chain(fraction.bytes())
            .map(|b| b - b'0')
            .collect();
        Some(Decimal {
            negative,
            digits,
            scale: i32::try_from(fraction.len()).ok()?,
        })
    }

    /// The unscaled value at `scale` as big-endian two's complement bytes, the shortest
    /// that hold it (Java's `BigInteger.toByteArray`, which Connect's Decimal uses); `None`
    /// if digits would be lost.
    fn unscaled_at(&self, scale: i32) -> Option<Vec<u8>> {
        let mut digits = self.digits.clone();
        if scale >= self.scale {
            let extra = usize::try_from(scale - self.scale).ok()?;
            if extra > 1000 {
                return None;
            }
            digits.extend(std::iter::repeat_n(0, extra));
        } else {
            // Fewer places than written: only trailing zeros may go.
            let drop = usize::try_from(self.scale - scale).ok()?;
            let keep = digits.len().checked_sub(drop)?;
            if digits[keep..].iter().any(|&d| d != 0) {
                return None;
            }
            digits.truncate(keep);
        }
        Some(twos_complement(self.negative, &digits))
    }
}

/// `digits` (decimal, most significant first) with `negative`, as the shortest big-endian
/// two's complement.
fn twos_complement(negative: bool, digits: &[u8]) -> Vec<u8> {
    // The magnitude, base 256, little-endian while it is built.
    let mut magnitude: Vec<u8> = Vec::new();
    for &digit in digits {
        let mut carry = u32::from(digit);
        for byte in magnitude.iter_mut() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = (v & 0xFF) as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            magnitude.push((carry & 0xFF) as u8);
            carry >>= 8;
        }
    }
    let is_zero = magnitude.iter().all(|&b| b == 0);
    if is_zero {
        return vec![0];
    }
    // One more byte than needed for the sign bit, trimmed below.
    magnitude.push(0);
    if negative {
        let mut carry = 1u16;
        for byte in magnitude.iter_mut() {
            let v = u16::from(!*byte) + carry;
            *byte = (v & 0xFF) as u8;
            carry = v >> 8;
        }
    }
    magnitude.reverse();
    // Drop leading bytes that only repeat the sign.
    let sign_byte = if negative { 0xFF } else { 0x00 };
    let mut start = 0;
    while start + 1 < magnitude.len()
        && magnitude[start] == sign_byte
        && (magnitude[start + 1] & 0x80 == 0x80) == negative
    {
        start += 1;
    }
    magnitude.split_off(start)
}

/// `bytea` in hex (`\x0aff`) or, should a server write it, escape format.
fn parse_bytea(text: &str) -> Option<Vec<u8>> {
    if let Some(hex) = text.strip_prefix("\\x") {
        if hex.len() % 2 != 0 {
            return None;
        }
        return (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let octal = std::str::from_utf8(bytes.get(i + 1..i + 4)?).ok()?;
            out.push(u8::from_str_radix(octal, 8).ok()?);
            i += 4;
        }
    }
    Some(out)
}

/// Days from 1970-01-01 to the proleptic Gregorian date `year-month-day` (astronomical
/// years: 1 BC is year 0).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of `days` since 1970-01-01: (astronomical year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
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

/// `YYYY-MM-DD` with an optional ` BC`, as days since the epoch.
fn parse_date(text: &str) -> Option<i64> {
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (text, false),
    };
    let mut parts = text.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    // PostgreSQL's dates end in 5874897 AD; a bound keeps the arithmetic far from overflow.
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(1..=10_000_000).contains(&year) {
        return None;
    }
    // Year N BC is astronomical year 1 - N.
    let year = if bc { 1 - year } else { year };
    Some(days_from_civil(year, month, day))
}

/// `HH:MM:SS[.ffffff]` as microseconds since midnight (`24:00:00` allowed).
fn parse_time_of_day(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, ':');
    let hours: i64 = parts.next()?.parse().ok()?;
    let minutes: i64 = parts.next()?.parse().ok()?;
    let seconds = parts.next()?;
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    let whole: i64 = whole.parse().ok()?;
    if !(0..=24).contains(&hours) || !(0..60).contains(&minutes) || !(0..=60).contains(&whole) {
        return None;
    }
    Some(((hours * 60 + minutes) * 60 + whole) * 1_000_000 + parse_fraction_micros(fraction)?)
}

/// The digits after a decimal point, as microseconds (at most six digits).
fn parse_fraction_micros(fraction: &str) -> Option<i64> {
    if fraction.len() > 6 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut micros = 0i64;
    for i in 0..6 {
        let digit = fraction
            .as_bytes()
            .get(i)
            .map_or(0, |b| i64::from(b - b'0'));
        micros = micros * 10 + digit;
    }
    Some(micros)
}

/// A UTC offset (`+05`, `-03:30`, `+05:30:15`) in seconds, with the rest of the text
/// before it.
fn split_offset(text: &str) -> Option<(&str, i64)> {
    let at = text.rfind(['+', '-'])?;
    let (rest, offset) = text.split_at(at);
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let mut seconds = 0i64;
    for (i, part) in offset[1..].split(':').enumerate() {
        if part.is_empty() || part.len() > 2 {
            return None;
        }
        let n: i64 = part.parse().ok()?;
        seconds += n * match i {
            0 => 3600,
            1 => 60,
            2 => 1,
            _ => return None,
        };
    }
    Some((rest, sign * seconds))
}

/// `HH:MM:SS[.ffffff]+TZ` as Debezium's ZonedTime: the time in UTC, `HH:MM:SS[.f]Z`.
fn parse_timetz(text: &str) -> Option<String> {
    let (time, offset) = split_offset(text)?;
    let local = parse_time_of_day(time)?;
    let utc = (local - offset * 1_000_000).rem_euclid(86_400_000_000);
    Some(format!("{}Z", format_time_of_day(utc)))
}

fn format_time_of_day(micros: i64) -> String {
    let seconds = micros / 1_000_000;
    let fraction = micros % 1_000_000;
    let mut text = format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        (seconds / 60) % 60,
        seconds % 60
    );
    if fraction != 0 {
        let digits = format!("{fraction:06}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    text
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][+TZ][ BC]` as (microseconds since the epoch of the
/// written date and time, offset in seconds; 0 without one).
fn parse_timestamp(text: &str) -> Option<(i64, i64)> {
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (text, false),
    };
    let (date, time) = text.split_once(' ').or_else(|| text.split_once('T'))?;
    let (time, offset) = match time.rfind(['+', '-']) {
        Some(_) => split_offset(time)?,
        None => (time, 0),
    };
    let date = if bc {
        format!("{date} BC")
    } else {
        date.to_owned()
    };
    let days = parse_date(&date)?;
    let micros = days
        .checked_mul(86_400_000_000)?
        .checked_add(parse_time_of_day(time)?)?;
    Some((micros, offset))
}

/// Microseconds since the epoch as ISO-8601 in UTC: `2024-01-02T03:04:05.123456Z`, the
/// fraction without trailing zeros (none when whole), years outside 0..=9999 signed.
fn format_utc(micros: i64) -> Option<String> {
    let days = micros.div_euclid(86_400_000_000);
    let time = micros.rem_euclid(86_400_000_000);
    let (year, month, day) = civil_from_days(days);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else if year < 0 {
        format!("-{:04}", year.checked_neg()?)
    } else {
        format!("+{year}")
    };
    Some(format!(
        "{year}-{month:02}-{day:02}T{}Z",
        format_time_of_day(time)
    ))
}

/// An ISO-8601 interval as `IntervalStyle=iso_8601` writes it (`P1Y2M3DT4H5M6.5S`, parts
/// may be negative) as Debezium's MicroDuration: months count 30.4375 days, the average
/// of a 365.25-day year.
fn parse_interval(text: &str) -> Option<i64> {
    const MICROS_PER_MONTH: i128 = 2_629_800_000_000;
    let body = text.strip_prefix('P')?;
    let (date, time) = body.split_once('T').unwrap_or((body, ""));
    let mut total: i128 = 0;
    for (part, in_time) in [(date, false), (time, true)] {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '-' || c == '.' || c == '+' {
                number.push(c);
                continue;
            }
            let unit: i128 = match (c, in_time) {
                ('Y', false) => 12 * MICROS_PER_MONTH,
                ('M', false) => MICROS_PER_MONTH,
                ('W', false) => 7 * 86_400_000_000,
                ('D', false) => 86_400_000_000,
                ('H', true) => 3_600_000_000,
                ('M', true) => 60_000_000,
                ('S', true) => 1_000_000,
                _ => return None,
            };
            let text = std::mem::take(&mut number);
            let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
            let negative = whole.starts_with('-');
            let whole: i128 = whole.parse().ok()?;
            let mut value = whole.checked_mul(unit)?;
            if !fraction.is_empty() {
                // Only seconds have fractions in PostgreSQL's output.
                let micros = i128::from(parse_fraction_micros(fraction)?);
                value += if negative { -micros } else { micros } * unit / 1_000_000;
            }
            total = total.checked_add(value)?;
        }
        if !number.is_empty() {
            return None;
        }
    }
    i64::try_from(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn precise(kind: Kind, text: &str) -> Value {
        parse(kind, text, DecimalMode::Precise).unwrap()
    }

    #[test]
    fn integers_floats_and_booleans() {
        assert_eq!(precise(kind_of(21, -1), "-7"), Value::Int16(-7));
        assert_eq!(precise(kind_of(23, -1), "42"), Value::Int32(42));
        assert_eq!(
            precise(kind_of(20, -1), "9223372036854775807"),
            Value::Int64(i64::MAX)
        );
        assert_eq!(precise(kind_of(700, -1), "1.5"), Value::Float32(1.5));
        assert_eq!(
            precise(kind_of(701, -1), "-Infinity"),
            Value::Float64(f64::NEG_INFINITY)
        );
        assert_eq!(precise(kind_of(16, -1), "t"), Value::Boolean(true));
        assert!(parse(kind_of(23, -1), "4x", DecimalMode::Precise).is_err());
        assert!(parse(kind_of(16, -1), "yes", DecimalMode::Precise).is_err());
    }

    #[test]
    fn numerics_follow_the_decimal_handling_mode() {
        // numeric(10, 2): modifier ((10 << 16) | 2) + 4.
        let kind = kind_of(1700, (10 << 16 | 2) + 4);
        assert_eq!(
            kind,
            Kind::Numeric {
                precision: 10,
                scale: 2
            }
        );
        let decimal = schema(kind, false, DecimalMode::Precise);
        assert!(decimal.is_logical(DECIMAL_LOGICAL));
        assert_eq!(decimal.parameters["scale"], "2");
        assert_eq!(decimal.parameters[PRECISION_PARAMETER], "10");
        // 123.45 -> 12345 = 0x3039; -1.00 -> -100 = 0x9C; 0 -> 0.
        assert_eq!(precise(kind, "123.45"), Value::Bytes(vec![0x30, 0x39]));
        assert_eq!(precise(kind, "-1.00"), Value::Bytes(vec![0x9C]));
        assert_eq!(precise(kind, "0.00"), Value::Bytes(vec![0]));
        // 128 needs a sign byte; -128 does not.
        assert_eq!(precise(kind, "1.28"), Value::Bytes(vec![0x00, 0x80]));
        assert_eq!(precise(kind, "-1.28"), Value::Bytes(vec![0x80]));
        assert_eq!(precise(kind, "-1.29"), Value::Bytes(vec![0xFF, 0x7F]));
        assert_eq!(precise(kind, "NaN"), Value::Null);
        assert_eq!(
            parse(kind, "123.45", DecimalMode::Double).unwrap(),
            Value::Float64(123.45)
        );
        assert_eq!(
            parse(kind, "123.45", DecimalMode::String).unwrap(),
            Value::String("123.45".into())
        );
        // Without a declared scale: Debezium's VariableScaleDecimal.
        let variable = kind_of(1700, -1);
        assert_eq!(variable, Kind::VariableNumeric);
        assert_eq!(
            schema(variable, true, DecimalMode::Precise).name.as_deref(),
            Some(VARIABLE_SCALE_DECIMAL)
        );
        assert_eq!(
            precise(variable, "-12.5"),
            Value::Struct(vec![Value::Int32(1), Value::Bytes(vec![0x83])])
        );
        // Big values: 2^64 = 18446744073709551616.
        assert_eq!(
            precise(variable, "18446744073709551616"),
            Value::Struct(vec![
                Value::Int32(0),
                Value::Bytes(vec![1, 0, 0, 0, 0, 0, 0, 0, 0])
            ])
        );
        assert_eq!(
            precise(Kind::Money, "-$1,234.56"),
            Value::Bytes(vec![0xFE, 0x1D, 0xC0])
        );
        assert!(parse(kind, "1.2.3", DecimalMode::Precise).is_err());
        assert!(parse(kind, "1.234", DecimalMode::Precise).is_err());
    }

    #[test]
    fn dates_and_times_are_debeziums() {
        assert_eq!(precise(Kind::Date, "1970-01-01"), Value::Int32(0));
        assert_eq!(precise(Kind::Date, "2024-02-29"), Value::Int32(19782));
        assert_eq!(precise(Kind::Date, "1969-12-31"), Value::Int32(-1));
        assert_eq!(precise(Kind::Date, "0001-01-01 BC"), Value::Int32(-719_528));
        assert_eq!(precise(Kind::Date, "infinity"), Value::Int32(i32::MAX));
        let micro_time = kind_of(1083, -1);
        assert_eq!(
            precise(micro_time, "01:02:03.5"),
            Value::Int64(3_723_500_000)
        );
        assert_eq!(
            precise(kind_of(1083, 3), "01:02:03.5"),
            Value::Int32(3_723_500)
        );
        assert_eq!(
            precise(kind_of(1114, -1), "2024-01-02 03:04:05.123456"),
            Value::Int64(1_704_164_645_123_456)
        );
        assert_eq!(
            precise(kind_of(1114, 3), "2024-01-02 03:04:05.123"),
            Value::Int64(1_704_164_645_123)
        );
        assert_eq!(
            precise(kind_of(1114, 3), "1969-12-31 23:59:59.9995"),
            Value::Int64(-1)
        );
        assert_eq!(
            precise(Kind::TimestampTz, "2024-01-02 03:04:05.1+00"),
            Value::String("2024-01-02T03:04:05.1Z".into())
        );
        assert_eq!(
            precise(Kind::TimestampTz, "2024-01-02 01:04:05+05:30"),
            Value::String("2024-01-01T19:34:05Z".into())
        );
        assert_eq!(
            precise(Kind::TimeTz, "01:02:03+02"),
            Value::String("23:02:03Z".into())
        );
        assert_eq!(
            precise(Kind::Interval, "P1Y2M3DT4H5M6.5S"),
            Value::Int64(
                14 * 2_629_800_000_000
                    + 3 * 86_400_000_000
                    + 4 * 3_600_000_000
                    + 5 * 60_000_000
                    + 6_500_000
            )
        );
        assert_eq!(precise(Kind::Interval, "PT-1.5S"), Value::Int64(-1_500_000));
        assert!(parse(Kind::Date, "2024-13-01", DecimalMode::Precise).is_err());
        assert!(parse(Kind::Interval, "1 day", DecimalMode::Precise).is_err());
    }

    #[test]
    fn bytea_strings_and_logical_names() {
        assert_eq!(
            precise(Kind::Bytes, "\\x00ff10"),
            Value::Bytes(vec![0, 255, 16])
        );
        assert_eq!(
            precise(Kind::Bytes, "a\\\\b\\001"),
            Value::Bytes(b"a\\b\x01".to_vec())
        );
        assert!(parse(Kind::Bytes, "\\x0", DecimalMode::Precise).is_err());
        assert_eq!(kind_of(2950, -1), Kind::Uuid);
        assert_eq!(
            schema(Kind::Json, true, DecimalMode::Precise)
                .name
                .as_deref(),
            Some(JSON)
        );
        assert_eq!(kind_of(1043, 36), Kind::String);
        assert_eq!(kind_of(99999, -1), Kind::String);
    }

    #[test]
    fn fallbacks_conform_to_their_schemas() {
        for kind in [
            Kind::Boolean,
            Kind::Int16,
            Kind::Numeric {
                precision: 5,
                scale: 1,
            },
            Kind::VariableNumeric,
            Kind::Date,
            Kind::TimestampTz,
            Kind::Bytes,
        ] {
            let s = schema(kind, false, DecimalMode::Precise);
            assert!(fallback(&s).conforms_to(&s), "{kind:?}");
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn no_text_panics(
                text in "[ -~]{0,24}",
                oid in proptest::sample::select(vec![
                    16u32, 17, 20, 21, 23, 700, 701, 790, 1082, 1083, 1114, 1184, 1186, 1266, 1700,
                ]),
                typmod in -1i32..0x7FFF_FFFF,
            ) {
                for mode in [DecimalMode::Precise, DecimalMode::Double, DecimalMode::String] {
                    let _ = parse(kind_of(oid, typmod), &text, mode);
                }
            }

            #[test]
            fn decimals_round_trip_through_twos_complement(n in any::<i64>()) {
                let kind = Kind::Numeric { precision: 20, scale: 0 };
                let bytes = match parse(kind, &n.to_string(), DecimalMode::Precise) {
                    Ok(Value::Bytes(bytes)) => bytes,
                    other => return Err(TestCaseError::fail(format!("{other:?}"))),
                };
                prop_assert!(bytes.len() <= 8);
                let mut buffer = if n < 0 { [0xFFu8; 8] } else { [0u8; 8] };
                buffer[8 - bytes.len()..].copy_from_slice(&bytes);
                prop_assert_eq!(i64::from_be_bytes(buffer), n);
            }

            #[test]
            fn dates_round_trip(days in -1_000_000i64..1_000_000) {
                let (y, m, d) = civil_from_days(days);
                prop_assert_eq!(days_from_civil(y, m, d), days);
            }
        }
    }
}
