//! SQLite behind [`super::Db`]: opening a database file, its catalog (`sqlite_master`,
//! `pragma_table_info`), and SQLite's storage classes as [`SqlValue`]s.
//!
//! SQLite types values, not columns: a column's declared type only says how to read what
//! it holds, by the affinity rules of SQLite's documentation (`INT` anywhere: integer;
//! `CHAR`, `CLOB`, `TEXT`: text; ...). Declared date and time types hold SQLite's
//! date-time text.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{ErrorCode, OpenFlags};

use super::{ColumnMeta, DbError, Rows, TableId, TableType};
use crate::jdbc::values::{self, ColumnKind, SqlValue};

/// How long a statement waits for another connection's lock before it is an error
/// (a retriable one).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The temporary view a custom query is described through: SQLite reports the declared
/// types of a view's columns, and of nothing else without a C API this crate does not use.
const SHAPE_VIEW: &str = "runnel_query_shape";

/// A connection to a SQLite database file.
#[derive(Debug)]
pub(crate) struct SqliteDb {
    conn: rusqlite::Connection,
}

fn error(e: rusqlite::Error) -> DbError {
    let retriable = matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::SystemIoFailure)
    );
    DbError {
        message: e.to_string(),
        retriable,
        broken: false,
    }
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        use rusqlite::types::Value as Owned;
        Ok(match self {
            SqlValue::Null => ToSqlOutput::Owned(Owned::Null),
            SqlValue::Bool(b) => ToSqlOutput::Owned(Owned::Integer(i64::from(*b))),
            SqlValue::Int(n) => ToSqlOutput::Owned(Owned::Integer(*n)),
            SqlValue::Float(f) => ToSqlOutput::Owned(Owned::Real(*f)),
            SqlValue::Numeric(text) | SqlValue::Text(text) => {
                ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes()))
            }
            SqlValue::Bytes(bytes) => ToSqlOutput::Borrowed(ValueRef::Blob(bytes)),
            SqlValue::Date(days) => ToSqlOutput::Owned(Owned::Text(values::format_date(*days))),
            SqlValue::Time(micros) => ToSqlOutput::Owned(Owned::Text(values::format_time(*micros))),
            SqlValue::Timestamp(micros) => {
                ToSqlOutput::Owned(Owned::Text(values::format_timestamp(*micros)))
            }
        })
    }
}

fn read(value: ValueRef<'_>) -> SqlValue {
    match value {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(n) => SqlValue::Int(n),
        ValueRef::Real(f) => SqlValue::Float(f),
        ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => SqlValue::Bytes(b.to_vec()),
    }
}

/// The type of a column declared `declared`, by SQLite's affinity rules, with date, time
/// and boolean names recognised first as sqlite-jdbc does.
pub(crate) fn kind_of(declared: &str) -> ColumnKind {
    let upper = declared.trim().to_ascii_uppercase();
    let base = upper.split('(').next().unwrap_or("").trim();
    if base.contains("DATETIME") || base.contains("TIMESTAMP") {
        ColumnKind::Timestamp
    } else if base == "DATE" {
        ColumnKind::Date
    } else if base == "TIME" {
        ColumnKind::Time
    } else if base.contains("BOOL") {
        ColumnKind::Boolean
    } else if base.contains("INT") {
        ColumnKind::Int64
    } else if base.contains("CHAR") || base.contains("CLOB") || base.contains("TEXT") {
        ColumnKind::Text
    } else if base.contains("BLOB") {
        ColumnKind::Bytes
    } else if base.contains("REAL") || base.contains("FLOA") || base.contains("DOUB") {
        ColumnKind::Float64
    } else if base.contains("NUMERIC") || base.contains("DECIMAL") {
        let (precision, scale) = precision_and_scale(&upper);
        ColumnKind::Numeric { precision, scale }
    } else if base.is_empty() {
        // No declared type: anything may be there; text is what every value reads as.
        ColumnKind::Text
    } else {
        ColumnKind::Numeric {
            precision: None,
            scale: None,
        }
    }
}

fn precision_and_scale(declared: &str) -> (Option<u32>, Option<i32>) {
    let Some(inner) = declared
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(inner, _)| inner)
    else {
        return (None, None);
    };
    let mut parts = inner.split(',').map(str::trim);
    let precision = parts.next().and_then(|p| p.parse().ok());
    let scale = parts.next().and_then(|s| s.parse().ok()).or(Some(0));
    (precision, precision.and(scale))
}

impl SqliteDb {
    /// Opens `path`; creates it only when `create`.
    pub(crate) fn open(path: &Path, create: bool) -> Result<SqliteDb, DbError> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = rusqlite::Connection::open_with_flags(path, flags).map_err(|e| DbError {
            message: format!("cannot open {}: {e}", path.display()),
            retriable: false,
            broken: true,
        })?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(error)?;
        Ok(SqliteDb { conn })
    }

    pub(crate) fn list_tables(&mut self, types: &[TableType]) -> Result<Vec<TableId>, DbError> {
        let mut wanted = Vec::new();
        if types.contains(&TableType::Table) {
            wanted.push("table");
        }
        if types.contains(&TableType::View) {
            wanted.push("view");
        }
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT name, type FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                 ORDER BY name",
            )
            .map_err(error)?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(error)?;
        let mut tables = Vec::new();
        for row in rows {
            let (name, kind) = row.map_err(error)?;
            if wanted.contains(&kind.as_str()) {
                tables.push(TableId::new(name));
            }
        }
        Ok(tables)
    }

    fn table_info(&mut self, table: &str) -> Result<Vec<ColumnMeta>, DbError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid",
            )
            .map_err(error)?;
        let rows = statement
            .query_map([table], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    row.get::<_, bool>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            })
            .map_err(error)?;
        let mut columns = Vec::new();
        let mut key_columns = 0;
        for row in rows {
            let (name, declared, not_null, pk) = row.map_err(error)?;
            key_columns += i32::from(pk > 0);
            columns.push((
                ColumnMeta {
                    name,
                    kind: kind_of(&declared),
                    nullable: !not_null,
                    type_name: declared.clone(),
                },
                pk > 0 && declared.eq_ignore_ascii_case("INTEGER"),
            ));
        }
        // An INTEGER PRIMARY KEY is the rowid: never NULL, declared so or not.
        Ok(columns
            .into_iter()
            .map(|(mut meta, rowid)| {
                if rowid && key_columns == 1 {
                    meta.nullable = false;
                }
                meta
            })
            .collect())
    }

    pub(crate) fn describe_table(
        &mut self,
        table: &TableId,
    ) -> Result<Option<Vec<ColumnMeta>>, DbError> {
        let columns = self.table_info(&table.qualified())?;
        Ok((!columns.is_empty()).then_some(columns))
    }

    pub(crate) fn describe_query(&mut self, sql: &str) -> Result<Vec<ColumnMeta>, DbError> {
        let view = super::Dialect::Sqlite.quote(SHAPE_VIEW)?;
        self.batch(&format!("DROP VIEW IF EXISTS temp.{view}"))?;
        // The query is the user's own SQL, run as they wrote it: it is what `query` is.
        self.batch(&format!("CREATE TEMP VIEW {view} AS {sql}"))?;
        let described = self.table_info(SHAPE_VIEW);
        let dropped = self.batch(&format!("DROP VIEW IF EXISTS temp.{view}"));
        let mut columns = described?;
        dropped?;
        for column in &mut columns {
            // A view's columns say nothing of NULLs.
            column.nullable = true;
        }
        Ok(columns)
    }

    pub(crate) fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Rows, DbError> {
        let mut statement = self.conn.prepare_cached(sql).map_err(error)?;
        let columns: Vec<String> = statement
            .column_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let width = columns.len();
        let mut rows = statement
            .query(rusqlite::params_from_iter(params))
            .map_err(error)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(error)? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(read(row.get_ref(i).map_err(error)?));
            }
            out.push(values);
        }
        Ok(Rows { columns, rows: out })
    }

    pub(crate) fn execute_many(
        &mut self,
        statements: &[(&str, &[SqlValue])],
    ) -> Result<(), DbError> {
        for (sql, params) in statements {
            let mut statement = self.conn.prepare_cached(sql).map_err(error)?;
            statement
                .execute(rusqlite::params_from_iter(params.iter()))
                .map_err(error)?;
        }
        Ok(())
    }

    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.conn.execute_batch(sql).map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_map_by_affinity() {
        assert_eq!(kind_of("INTEGER"), ColumnKind::Int64);
        assert_eq!(kind_of("bigint unsigned"), ColumnKind::Int64);
        assert_eq!(kind_of("VARCHAR(20)"), ColumnKind::Text);
        assert_eq!(kind_of("BLOB"), ColumnKind::Bytes);
        assert_eq!(kind_of("DOUBLE"), ColumnKind::Float64);
        assert_eq!(kind_of("BOOLEAN"), ColumnKind::Boolean);
        assert_eq!(kind_of("DATETIME"), ColumnKind::Timestamp);
        assert_eq!(kind_of("TIMESTAMP"), ColumnKind::Timestamp);
        assert_eq!(kind_of("DATE"), ColumnKind::Date);
        assert_eq!(kind_of("TIME"), ColumnKind::Time);
        assert_eq!(
            kind_of("DECIMAL(10, 2)"),
            ColumnKind::Numeric {
                precision: Some(10),
                scale: Some(2)
            }
        );
        assert_eq!(
            kind_of("NUMERIC"),
            ColumnKind::Numeric {
                precision: None,
                scale: None
            }
        );
        assert_eq!(kind_of(""), ColumnKind::Text);
    }
}
