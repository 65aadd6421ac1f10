//! PostgreSQL behind [`super::Db`]: a tokio-postgres connection driven by a small runtime
//! of its own (tasks run on plain threads and block), its catalog, and the binary wire
//! format of the types the connectors read and write.
//!
//! Values are encoded and decoded here rather than through tokio-postgres's typed
//! conversions: a bound parameter takes the type the server inferred for it (an integer
//! field may fill a BIGINT or a NUMERIC column; a timestamp bound compares with a
//! TIMESTAMP, a TIMESTAMPTZ or a DATE), and NUMERIC, which tokio-postgres has no type for
//! without optional features, is read and written exactly.

use std::collections::HashMap;
use std::error::Error as StdError;

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type};

use super::{ColumnMeta, DbError, Rows, TableId, TableType};
use crate::jdbc::values::{self, ColumnKind, Decimal, SqlValue, MICROS_PER_DAY};

type BoxError = Box<dyn StdError + Sync + Send>;

/// Type OIDs, fixed in PostgreSQL's catalog.
mod oid {
    pub(super) const BOOL: u32 = 16;
    pub(super) const BYTEA: u32 = 17;
    pub(super) const CHAR: u32 = 18;
    pub(super) const NAME: u32 = 19;
    pub(super) const INT8: u32 = 20;
    pub(super) const INT2: u32 = 21;
    pub(super) const INT4: u32 = 23;
    pub(super) const TEXT: u32 = 25;
    pub(super) const OID: u32 = 26;
    pub(super) const JSON: u32 = 114;
    pub(super) const XML: u32 = 142;
    pub(super) const FLOAT4: u32 = 700;
    pub(super) const FLOAT8: u32 = 701;
    pub(super) const UNKNOWN: u32 = 705;
    pub(super) const BPCHAR: u32 = 1042;
    pub(super) const VARCHAR: u32 = 1043;
    pub(super) const DATE: u32 = 1082;
    pub(super) const TIME: u32 = 1083;
    pub(super) const TIMESTAMP: u32 = 1114;
    pub(super) const TIMESTAMPTZ: u32 = 1184;
    pub(super) const TIMETZ: u32 = 1266;
    pub(super) const NUMERIC: u32 = 1700;
    pub(super) const UUID: u32 = 2950;
    pub(super) const JSONB: u32 = 3802;
}

/// 2000-01-01, PostgreSQL's epoch, in days and microseconds since 1970-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS as i64 * MICROS_PER_DAY;

/// Prepared statements kept per connection; past this the cache starts over, so that a
/// long-lived task does not grow without bound.
const STATEMENT_CACHE: usize = 256;

/// The type a column of `ty` has for the connectors, resolving domains to their base type.
fn base(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Domain(inner) => base(inner),
        _ => ty,
    }
}

fn is_textual(ty: &Type) -> bool {
    matches!(ty.kind(), Kind::Enum(_))
        || matches!(
            ty.oid(),
            oid::TEXT
                | oid::VARCHAR
                | oid::BPCHAR
                | oid::NAME
                | oid::UNKNOWN
                | oid::JSON
                | oid::XML
        )
        // An extension's case-insensitive text: its binary form is its text.
        || ty.name() == "citext"
}

/// A column's kind from its type and type modifier (NUMERIC's precision and scale).
pub(crate) fn kind_of(ty: &Type, modifier: i32) -> ColumnKind {
    let ty = base(ty);
    if is_textual(ty) {
        return ColumnKind::Text;
    }
    match ty.oid() {
        oid::BOOL => ColumnKind::Boolean,
        oid::INT2 => ColumnKind::Int16,
        oid::INT4 => ColumnKind::Int32,
        oid::INT8 | oid::OID => ColumnKind::Int64,
        oid::FLOAT4 => ColumnKind::Float32,
        oid::FLOAT8 => ColumnKind::Float64,
        oid::NUMERIC if modifier >= 4 => {
            // The modifier is ((precision << 16) | scale) + 4; the scale is 11 signed bits
            // since PostgreSQL 15 allows negative ones.
            let packed = modifier - 4;
            ColumnKind::Numeric {
                precision: Some(((packed >> 16) & 0xffff) as u32),
                scale: Some(((packed & 0x7ff) ^ 1024) - 1024),
            }
        }
        oid::NUMERIC => ColumnKind::Numeric {
            precision: None,
            scale: None,
        },
        oid::CHAR | oid::JSONB | oid::UUID => ColumnKind::Text,
        oid::BYTEA => ColumnKind::Bytes,
        oid::DATE => ColumnKind::Date,
        oid::TIME | oid::TIMETZ => ColumnKind::Time,
        oid::TIMESTAMP | oid::TIMESTAMPTZ => ColumnKind::Timestamp,
        _ => ColumnKind::Unsupported,
    }
}

fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], BoxError> {
    raw.get(..N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("a value of {} bytes where {N} were expected", raw.len()).into())
}

fn utf8(raw: &[u8]) -> Result<String, BoxError> {
    Ok(std::str::from_utf8(raw)?.to_owned())
}

impl<'a> FromSql<'a> for SqlValue {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<SqlValue, BoxError> {
        decode(base(ty), raw)
    }

    fn from_sql_null(_: &Type) -> Result<SqlValue, BoxError> {
        Ok(SqlValue::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

fn decode(ty: &Type, raw: &[u8]) -> Result<SqlValue, BoxError> {
    if is_textual(ty) {
        return Ok(SqlValue::Text(utf8(raw)?));
    }
    Ok(match ty.oid() {
        oid::BOOL => SqlValue::Bool(fixed::<1>(raw)?[0] != 0),
        oid::INT2 => SqlValue::Int(i16::from_be_bytes(fixed(raw)?).into()),
        oid::INT4 => SqlValue::Int(i32::from_be_bytes(fixed(raw)?).into()),
        oid::INT8 => SqlValue::Int(i64::from_be_bytes(fixed(raw)?)),
        oid::OID => SqlValue::Int(u32::from_be_bytes(fixed(raw)?).into()),
        oid::FLOAT4 => SqlValue::Float(f32::from_be_bytes(fixed(raw)?).into()),
        oid::FLOAT8 => SqlValue::Float(f64::from_be_bytes(fixed(raw)?)),
        oid::NUMERIC => SqlValue::Numeric(decode_numeric(raw)?),
        oid::CHAR => SqlValue::Text(String::from_utf8_lossy(raw).into_owned()),
        oid::JSONB => match raw.split_first() {
            Some((1, json)) => SqlValue::Text(utf8(json)?),
            _ => return Err("unknown jsonb format version".into()),
        },
        oid::UUID => {
            let b: [u8; 16] = fixed(raw)?;
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            SqlValue::Text(format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            ))
        }
        oid::BYTEA => SqlValue::Bytes(raw.to_vec()),
        // Infinite dates and timestamps are the extreme values; they stay extreme.
        oid::DATE => SqlValue::Date(i32::from_be_bytes(fixed(raw)?).saturating_add(PG_EPOCH_DAYS)),
        // TIMETZ's zone follows its time; Connect's Time has no zone.
        oid::TIME | oid::TIMETZ => SqlValue::Time(i64::from_be_bytes(fixed(raw)?)),
        oid::TIMESTAMP | oid::TIMESTAMPTZ => {
            SqlValue::Timestamp(i64::from_be_bytes(fixed(raw)?).saturating_add(PG_EPOCH_MICROS))
        }
        // A type the connectors do not read: its column is left out of records.
        _ => SqlValue::Null,
    })
}

/// NUMERIC's binary form as plain decimal text: base-10000 digits, the weight of the
/// first, a sign, and the display scale.
fn decode_numeric(raw: &[u8]) -> Result<String, BoxError> {
    let header: [u8; 8] = fixed(raw)?;
    let count = i16::from_be_bytes([header[0], header[1]]);
    let weight = i16::from_be_bytes([header[2], header[3]]);
    let sign = u16::from_be_bytes([header[4], header[5]]);
    let scale = u16::from_be_bytes([header[6], header[7]]) as usize;
    match sign {
        0xC000 => return Ok("NaN".to_owned()),
        0xD000 => return Ok("Infinity".to_owned()),
        0xF000 => return Ok("-Infinity".to_owned()),
        _ => {}
    }
    let digits: Vec<i16> = raw[8..]
        .chunks_exact(2)
        .take(usize::try_from(count).unwrap_or(0))
        .map(|d| i16::from_be_bytes([d[0], d[1]]))
        .collect();
    let digit = |i: i32| -> i16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let weight = i32::from(weight);
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        out.push_str(&digit(0).to_string());
        for i in 1..=weight {
            out.push_str(&format!("{:04}", digit(i)));
        }
    }
    if scale > 0 {
        let mut fraction = String::with_capacity(scale + 4);
        let mut i = weight + 1;
        while fraction.len() < scale {
            fraction.push_str(&format!("{:04}", digit(i)));
            i += 1;
        }
        fraction.truncate(scale);
        out.push('.');
        out.push_str(&fraction);
    }
    Ok(out)
}

/// Plain decimal text in NUMERIC's binary form.
fn encode_numeric(text: &str, out: &mut BytesMut) -> Result<(), BoxError> {
    let special = match text.trim() {
        "NaN" => Some(0xC000u16),
        "Infinity" => Some(0xD000),
        "-Infinity" => Some(0xF000),
        _ => None,
    };
    if let Some(sign) = special {
        out.put_i16(0);
        out.put_i16(0);
        out.put_u16(sign);
        out.put_u16(0);
        return Ok(());
    }
    let plain = Decimal::parse(text)
        .ok_or_else(|| format!("{text:?} is not a number"))?
        .to_plain();
    let (negative, unsigned) = match plain.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, plain.as_str()),
    };
    let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let scale = u16::try_from(fraction.len()).map_err(|_| "too many decimal digits")?;
    let mut padded_integer = "0".repeat((4 - integer.len() % 4) % 4);
    padded_integer.push_str(integer);
    let mut padded_fraction = fraction.to_owned();
    padded_fraction.push_str(&"0".repeat((4 - fraction.len() % 4) % 4));
    let group = |chunk: &[u8]| -> i16 {
        chunk
            .iter()
            .fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0'))
    };
    let mut digits: Vec<i16> = padded_integer
        .as_bytes()
        .chunks(4)
        .chain(padded_fraction.as_bytes().chunks(4))
        .map(group)
        .collect();
    let mut weight = i32::try_from(padded_integer.len() / 4).map_err(|_| "number too large")? - 1;
    let leading = digits.iter().take_while(|d| **d == 0).count();
    digits.drain(..leading);
    weight -= leading as i32;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        weight = 0;
    }
    out.put_i16(i16::try_from(digits.len()).map_err(|_| "number too large")?);
    out.put_i16(i16::try_from(weight).map_err(|_| "number out of range")?);
    out.put_u16(if negative && !digits.is_empty() {
        0x4000
    } else {
        0
    });
    out.put_u16(scale);
    for d in digits {
        out.put_i16(d);
    }
    Ok(())
}

fn cannot_bind(value: &SqlValue, ty: &Type) -> BoxError {
    format!(
        "cannot write a {} value to a column of type {}",
        value.kind(),
        ty.name()
    )
    .into()
}

fn integer(value: &SqlValue, ty: &Type) -> Result<i64, BoxError> {
    match value {
        SqlValue::Bool(b) => Ok(i64::from(*b)),
        other => other.as_i64().ok_or_else(|| cannot_bind(value, ty)),
    }
}

fn narrow<T: TryFrom<i64>>(n: i64, ty: &Type) -> Result<T, BoxError> {
    T::try_from(n).map_err(|_| format!("{n} is out of range for type {}", ty.name()).into())
}

impl ToSql for SqlValue {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        if *self == SqlValue::Null {
            return Ok(IsNull::Yes);
        }
        encode(self, base(ty), out)?;
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

fn encode(value: &SqlValue, ty: &Type, out: &mut BytesMut) -> Result<(), BoxError> {
    if is_textual(ty) || ty.oid() == oid::JSONB || ty.oid() == oid::CHAR {
        let text = match value {
            SqlValue::Text(t) | SqlValue::Numeric(t) => t.clone(),
            SqlValue::Int(n) => n.to_string(),
            SqlValue::Float(f) => f.to_string(),
            SqlValue::Bool(b) => b.to_string(),
            SqlValue::Date(d) => values::format_date(*d),
            SqlValue::Time(t) => values::format_time(*t),
            SqlValue::Timestamp(t) => values::format_timestamp(*t),
            SqlValue::Bytes(_) | SqlValue::Null => return Err(cannot_bind(value, ty)),
        };
        if ty.oid() == oid::JSONB {
            out.put_u8(1);
        }
        out.put_slice(text.as_bytes());
        return Ok(());
    }
    let micros = |value: &SqlValue| -> Result<i64, BoxError> {
        match value {
            SqlValue::Text(t) => values::parse_timestamp(t),
            other => other.as_timestamp_micros(),
        }
        .ok_or_else(|| cannot_bind(value, ty))
    };
    match ty.oid() {
        oid::BOOL => out.put_u8(u8::from(match value {
            SqlValue::Bool(b) => *b,
            SqlValue::Int(n) => *n != 0,
            _ => return Err(cannot_bind(value, ty)),
        })),
        oid::INT2 => out.put_i16(narrow(integer(value, ty)?, ty)?),
        oid::INT4 => out.put_i32(narrow(integer(value, ty)?, ty)?),
        oid::INT8 => out.put_i64(integer(value, ty)?),
        oid::OID => out.put_u32(narrow(integer(value, ty)?, ty)?),
        oid::FLOAT4 | oid::FLOAT8 => {
            let f = match value {
                SqlValue::Float(f) => *f,
                SqlValue::Int(n) => *n as f64,
                SqlValue::Numeric(t) | SqlValue::Text(t) => {
                    t.trim().parse().map_err(|_| cannot_bind(value, ty))?
                }
                _ => return Err(cannot_bind(value, ty)),
            };
            if ty.oid() == oid::FLOAT4 {
                out.put_f32(f as f32);
            } else {
                out.put_f64(f);
            }
        }
        oid::NUMERIC => match value {
            SqlValue::Numeric(t) | SqlValue::Text(t) => encode_numeric(t, out)?,
            SqlValue::Int(n) => encode_numeric(&n.to_string(), out)?,
            SqlValue::Float(f) if f.is_nan() => encode_numeric("NaN", out)?,
            SqlValue::Float(f) if f.is_finite() => encode_numeric(&f.to_string(), out)?,
            _ => return Err(cannot_bind(value, ty)),
        },
        oid::BYTEA => match value {
            SqlValue::Bytes(b) => out.put_slice(b),
            SqlValue::Text(t) => out.put_slice(t.as_bytes()),
            _ => return Err(cannot_bind(value, ty)),
        },
        oid::DATE => {
            let days = match value {
                SqlValue::Date(d) => i64::from(*d),
                SqlValue::Text(t) => values::parse_date(t)
                    .map(i64::from)
                    .ok_or_else(|| cannot_bind(value, ty))?,
                other => micros(other)?.div_euclid(MICROS_PER_DAY),
            };
            out.put_i32(narrow(days - i64::from(PG_EPOCH_DAYS), ty)?);
        }
        oid::TIME => out.put_i64(match value {
            SqlValue::Time(t) => *t,
            SqlValue::Text(t) => values::parse_time(t).ok_or_else(|| cannot_bind(value, ty))?,
            _ => return Err(cannot_bind(value, ty)),
        }),
        oid::TIMESTAMP | oid::TIMESTAMPTZ => {
            out.put_i64(micros(value)?.saturating_sub(PG_EPOCH_MICROS));
        }
        oid::UUID => {
            let SqlValue::Text(t) = value else {
                return Err(cannot_bind(value, ty));
            };
            let hex: String = t.chars().filter(|c| *c != '-').collect();
            if hex.len() != 32 {
                return Err(format!("{t:?} is not a UUID").into());
            }
            for i in (0..32).step_by(2) {
                let byte = hex
                    .get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("{t:?} is not a UUID"))?;
                out.put_u8(byte);
            }
        }
        _ => return Err(cannot_bind(value, ty)),
    }
    Ok(())
}

fn error(e: tokio_postgres::Error) -> DbError {
    let mut source = e.source();
    let mut io = false;
    while let Some(cause) = source {
        io |= cause.is::<std::io::Error>();
        source = cause.source();
    }
    let broken = e.is_closed() || io;
    let code = e.code().map(|c| c.code().to_owned());
    let transient = code.as_deref().is_some_and(|c| {
        c.starts_with("08")
            || c.starts_with("53")
            || c.starts_with("57P")
            || matches!(c, "40001" | "40P01" | "55P03")
    });
    let message = match e.as_db_error() {
        Some(db) => db.to_string(),
        None => match e.source() {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    };
    DbError {
        message,
        retriable: broken || transient,
        broken,
    }
}

fn params(values: &[SqlValue]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// A PostgreSQL connection.
pub(crate) struct PgDb {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    statements: HashMap<String, tokio_postgres::Statement>,
    /// Which columns are NOT NULL, by table OID and column number.
    not_null: HashMap<u32, HashMap<i16, bool>>,
}

impl std::fmt::Debug for PgDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDb").finish_non_exhaustive()
    }
}

impl PgDb {
    /// Connects with `config`, and reads timestamps without a zone as UTC, as Confluent's
    /// default `db.timezone` does.
    pub(crate) fn connect(config: &tokio_postgres::Config) -> Result<PgDb, DbError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DbError {
                message: format!("cannot start a runtime for the connection: {e}"),
                retriable: true,
                broken: true,
            })?;
        let (client, connection) = runtime
            .block_on(config.connect(tokio_postgres::NoTls))
            .map_err(error)?;
        // The connection's I/O runs whenever this thread waits on the runtime, which is
        // whenever the client is used.
        runtime.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a PostgreSQL connection ended");
            }
        });
        let mut db = PgDb {
            runtime,
            client,
            statements: HashMap::new(),
            not_null: HashMap::new(),
        };
        db.batch("SET TIME ZONE 'UTC'")?;
        Ok(db)
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.client.is_closed()
    }

    fn statement(&mut self, sql: &str) -> Result<tokio_postgres::Statement, DbError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self
            .runtime
            .block_on(self.client.prepare(sql))
            .map_err(error)?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.runtime
            .block_on(self.client.batch_execute(sql))
            .map_err(error)
    }

    fn run(
        &mut self,
        statement: &tokio_postgres::Statement,
        values: &[SqlValue],
    ) -> Result<Rows, DbError> {
        let rows = self
            .runtime
            .block_on(self.client.query(statement, &params(values)))
            .map_err(error)?;
        let columns: Vec<String> = statement
            .columns()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut values = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                values.push(row.try_get::<_, SqlValue>(i).map_err(error)?);
            }
            out.push(values);
        }
        Ok(Rows { columns, rows: out })
    }

    pub(crate) fn query(&mut self, sql: &str, values: &[SqlValue]) -> Result<Rows, DbError> {
        let statement = self.statement(sql)?;
        match self.run(&statement, values) {
            // A table changed under a cached `SELECT *`: prepare it again, once.
            Err(e)
                if e.message
                    .contains("cached plan must not change result type") =>
            {
                self.statements.remove(sql);
                let statement = self.statement(sql)?;
                self.run(&statement, values)
            }
            other => other,
        }
    }

    /// Runs `sql` prepared afresh: for statements whose result depends on state that a
    /// cached plan would not follow (a `FETCH` from this transaction's cursor).
    pub(crate) fn query_uncached(&mut self, sql: &str) -> Result<Rows, DbError> {
        let statement = self
            .runtime
            .block_on(self.client.prepare(sql))
            .map_err(error)?;
        self.run(&statement, &[])
    }

    pub(crate) fn execute_many(
        &mut self,
        statements: &[(&str, &[SqlValue])],
    ) -> Result<(), DbError> {
        let prepared = statements
            .iter()
            .map(|(sql, _)| self.statement(sql))
            .collect::<Result<Vec<_>, _>>()?;
        let bound: Vec<Vec<&(dyn ToSql + Sync)>> = statements
            .iter()
            .map(|(_, values)| params(values))
            .collect();
        let client = &self.client;
        // Sent all at once, in order: one round trip rather than one per statement.
        let executions = prepared
            .iter()
            .zip(&bound)
            .map(|(statement, values)| client.execute(statement, values));
        self.runtime
            .block_on(futures::future::try_join_all(executions))
            .map(|_| ())
            .map_err(error)
    }

    pub(crate) fn list_tables(
        &mut self,
        types: &[TableType],
        schema_pattern: Option<&str>,
    ) -> Result<Vec<TableId>, DbError> {
        let rows = self.query(
            "SELECT table_schema, table_name, table_type FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
             AND table_schema NOT LIKE 'pg\\_%' \
             AND ($1::text IS NULL OR table_schema LIKE $1::text) \
             ORDER BY table_schema, table_name",
            &[schema_pattern.map_or(SqlValue::Null, |p| SqlValue::Text(p.to_owned()))],
        )?;
        let mut tables = Vec::new();
        for row in rows.rows {
            let [SqlValue::Text(schema), SqlValue::Text(name), SqlValue::Text(kind)] = &row[..]
            else {
                continue;
            };
            let wanted = match kind.as_str() {
                "BASE TABLE" => types.contains(&TableType::Table),
                "VIEW" => types.contains(&TableType::View),
                _ => false,
            };
            if wanted {
                tables.push(TableId {
                    schema: Some(schema.clone()),
                    name: name.clone(),
                });
            }
        }
        Ok(tables)
    }

    fn columns_of(
        &mut self,
        statement: &tokio_postgres::Statement,
    ) -> Result<Vec<ColumnMeta>, DbError> {
        let mut columns = Vec::new();
        for column in statement.columns() {
            let not_null = match (column.table_oid(), column.column_id()) {
                (Some(table), Some(number)) if table != 0 => self
                    .not_null_columns(table)?
                    .get(&number)
                    .copied()
                    .unwrap_or(false),
                _ => false,
            };
            columns.push(ColumnMeta {
                name: column.name().to_owned(),
                kind: kind_of(column.type_(), column.type_modifier()),
                nullable: !not_null,
                type_name: column.type_().name().to_owned(),
            });
        }
        Ok(columns)
    }

    fn not_null_columns(&mut self, table: u32) -> Result<&HashMap<i16, bool>, DbError> {
        if !self.not_null.contains_key(&table) {
            let rows = self.query(
                "SELECT attnum, attnotnull FROM pg_attribute WHERE attrelid = $1 AND attnum > 0",
                &[SqlValue::Int(table.into())],
            )?;
            let columns = rows
                .rows
                .iter()
                .filter_map(|row| match &row[..] {
                    [SqlValue::Int(n), SqlValue::Bool(not_null)] => {
                        Some((i16::try_from(*n).ok()?, *not_null))
                    }
                    _ => None,
                })
                .collect();
            self.not_null.insert(table, columns);
        }
        self.not_null
            .get(&table)
            .ok_or_else(|| DbError::permanent("column nullability went missing"))
    }

    pub(crate) fn describe_table(
        &mut self,
        table: &TableId,
    ) -> Result<Option<Vec<ColumnMeta>>, DbError> {
        let name = super::Dialect::Postgres.table(table)?;
        // Asked of the catalog first: a statement that fails inside a transaction (a
        // sink's) would abort it.
        let found = self.query(
            "SELECT to_regclass($1::text) IS NOT NULL",
            &[SqlValue::Text(name.clone())],
        )?;
        if !matches!(
            found.rows.first().map(Vec::as_slice),
            Some([SqlValue::Bool(true)])
        ) {
            return Ok(None);
        }
        let statement = self
            .runtime
            .block_on(self.client.prepare(&format!("SELECT * FROM {name}")))
            .map_err(error)?;
        // What is described now is current: forget what was learnt before.
        self.not_null.clear();
        self.columns_of(&statement).map(Some)
    }

    pub(crate) fn describe_query(&mut self, sql: &str) -> Result<Vec<ColumnMeta>, DbError> {
        let statement = self
            .runtime
            .block_on(self.client.prepare(sql))
            .map_err(error)?;
        self.not_null.clear();
        self.columns_of(&statement)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_round_trip(text: &str) -> String {
        let mut out = BytesMut::new();
        encode_numeric(text, &mut out).unwrap();
        decode_numeric(&out).unwrap()
    }

    #[test]
    fn numerics_cross_the_wire_exactly() {
        for text in [
            "0",
            "1",
            "-1",
            "12.50",
            "0.05",
            "0.0001",
            "10000",
            "-123456789.123456789",
            "99999999999999999999999999999999999.1",
            "0.00000001",
            "1000000.000",
            "NaN",
        ] {
            assert_eq!(numeric_round_trip(text), text, "{text}");
        }
        assert_eq!(numeric_round_trip("-0.0"), "0.0");
        let mut out = BytesMut::new();
        assert!(encode_numeric("abc", &mut out).is_err());
    }

    #[test]
    fn numeric_modifiers_give_precision_and_scale() {
        assert_eq!(
            kind_of(&Type::NUMERIC, ((10 << 16) | 2) + 4),
            ColumnKind::Numeric {
                precision: Some(10),
                scale: Some(2)
            }
        );
        assert_eq!(
            kind_of(&Type::NUMERIC, -1),
            ColumnKind::Numeric {
                precision: None,
                scale: None
            }
        );
        assert_eq!(kind_of(&Type::INTERVAL, -1), ColumnKind::Unsupported);
        assert_eq!(kind_of(&Type::JSONB, -1), ColumnKind::Text);
    }

    #[test]
    fn bound_values_take_the_column_type() {
        let mut out = BytesMut::new();
        SqlValue::Int(7).to_sql(&Type::NUMERIC, &mut out).unwrap();
        assert_eq!(decode_numeric(&out).unwrap(), "7");
        let mut out = BytesMut::new();
        assert!(SqlValue::Int(70_000).to_sql(&Type::INT2, &mut out).is_err());
        let mut out = BytesMut::new();
        SqlValue::Timestamp(PG_EPOCH_MICROS + 5)
            .to_sql(&Type::TIMESTAMPTZ, &mut out)
            .unwrap();
        assert_eq!(&out[..], 5i64.to_be_bytes());
        let mut out = BytesMut::new();
        SqlValue::Text("123e4567-e89b-12d3-a456-426614174000".into())
            .to_sql(&Type::UUID, &mut out)
            .unwrap();
        assert_eq!(
            decode(&Type::UUID, &out).unwrap(),
            SqlValue::Text("123e4567-e89b-12d3-a456-426614174000".into())
        );
    }
}
