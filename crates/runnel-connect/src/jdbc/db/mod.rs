//! The one place that knows the two databases apart: which database a `connection.url`
//! names, how each spells SQL (quoting identifiers, placeholders, column types, upserts,
//! timestamps), and a connection ([`Db`]) with the same operations on both.
//!
//! Everything above this module (the source and the sink) builds SQL only through
//! [`Dialect`], so that every identifier that comes from a user, a topic or a record is
//! quoted, and every value is a bound parameter, never text in a statement.

mod postgres;
mod sqlite;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::values::{ColumnKind, SqlValue};
use crate::data::{
    Schema, SchemaType, Value, DATE_LOGICAL, DECIMAL_LOGICAL, TIMESTAMP_LOGICAL, TIME_LOGICAL,
};

/// The databases the connectors speak to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// SQLite, through the bundled library.
    Sqlite,
    /// PostgreSQL, through its wire protocol.
    Postgres,
}

/// A table, possibly in a schema (PostgreSQL's namespaces; SQLite has none here).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct TableId {
    /// The schema, when qualified.
    pub(crate) schema: Option<String>,
    /// The table's name.
    pub(crate) name: String,
}

impl TableId {
    /// An unqualified table.
    pub(crate) fn new(name: impl Into<String>) -> TableId {
        TableId {
            schema: None,
            name: name.into(),
        }
    }

    /// The name with its schema, unquoted (`public.users`): what Confluent keeps in source
    /// partitions and matches table lists against.
    pub(crate) fn qualified(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.qualified())
    }
}

/// A column as a result or a table describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnMeta {
    /// Its name.
    pub(crate) name: String,
    /// Its type, as Connect cares.
    pub(crate) kind: ColumnKind,
    /// Whether it may hold NULL (true when unknown, as for a query's expressions).
    pub(crate) nullable: bool,
    /// The database's name of its type, for messages.
    pub(crate) type_name: String,
}

/// A failed database operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DbError {
    /// What the database or the driver said.
    pub(crate) message: String,
    /// Whether the same operation may succeed later: the connection was lost, a lock or a
    /// serialization conflict got in the way. Constraint violations and bad SQL are not.
    pub(crate) retriable: bool,
    /// Whether the connection is no longer usable and must be opened again.
    pub(crate) broken: bool,
}

impl DbError {
    /// A permanent error.
    pub(crate) fn permanent(message: impl Into<String>) -> DbError {
        DbError {
            message: message.into(),
            retriable: false,
            broken: false,
        }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A query's result: column names and rows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rows {
    /// The result's column names, in order.
    pub(crate) columns: Vec<String>,
    /// The rows, each with a value per column.
    pub(crate) rows: Vec<Vec<SqlValue>>,
}

/// What `connection.url` (with `connection.user` / `connection.password`) names.
#[derive(Clone)]
pub(crate) enum ConnectionSpec {
    /// `jdbc:sqlite:PATH`
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// `jdbc:postgresql://HOST[:PORT][,HOST[:PORT]...]/DATABASE[?user=..&password=..]`
    Postgres {
        /// What to connect to.
        config: Box<tokio_postgres::Config>,
        /// The URL, for messages (it holds no password: those come as parameters).
        shown: String,
    },
}

impl fmt::Debug for ConnectionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionSpec::Sqlite { path } => write!(f, "sqlite:{}", path.display()),
            ConnectionSpec::Postgres { shown, .. } => write!(f, "postgresql:{shown}"),
        }
    }
}

/// The cursor a PostgreSQL snapshot read goes through.
const SNAPSHOT_CURSOR: &str = "runnel_snapshot";

/// How long connecting to PostgreSQL may take before it is an error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Decodes `%XX` escapes of a URL parameter.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad escape in {text:?}"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} is not UTF-8 once decoded"))
}

impl ConnectionSpec {
    /// The database `url` names, with `user` and `password` from the connector's config
    /// when the URL has none (as with JDBC, parameters in the URL win).
    pub(crate) fn parse(
        url: &str,
        user: Option<&str>,
        password: Option<&str>,
    ) -> Result<ConnectionSpec, String> {
        let url = url.trim();
        if let Some(path) = url.strip_prefix("jdbc:sqlite:") {
            // sqlite-jdbc takes `?key=value` settings after the path; none matter here.
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() {
                return Err("no database file after jdbc:sqlite:".to_owned());
            }
            if path == ":memory:" {
                return Err(
                    "an in-memory SQLite database is private to one connection: use a file"
                        .to_owned(),
                );
            }
            return Ok(ConnectionSpec::Sqlite {
                path: PathBuf::from(path),
            });
        }
        let Some(rest) = url.strip_prefix("jdbc:postgresql:") else {
            return Err(
                "must start with jdbc:sqlite: or jdbc:postgresql: (the databases supported)"
                    .to_owned(),
            );
        };
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut config = tokio_postgres::Config::new();
        let database = match location.strip_prefix("//") {
            Some(hosts_and_db) => {
                let (hosts, database) = hosts_and_db.split_once('/').unwrap_or((hosts_and_db, ""));
                let hosts = if hosts.is_empty() { "localhost" } else { hosts };
                for host in hosts.split(',') {
                    let (name, port) = split_host_port(host)?;
                    config.host(&name);
                    config.port(port);
                }
                database.to_owned()
            }
            None => {
                config.host("localhost");
                config.port(5432);
                location.trim_start_matches('/').to_owned()
            }
        };
        let mut url_user = None;
        let mut url_password = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value)?;
            match key {
                "user" => url_user = Some(value),
                "password" => url_password = Some(value),
                "sslmode" if matches!(value.as_str(), "disable" | "allow" | "prefer") => {}
                "ssl" if value == "false" => {}
                "sslmode" | "ssl" => {
                    return Err(format!(
                        "{key}={value}: TLS connections to PostgreSQL are not supported"
                    ))
                }
                "currentSchema" => {
                    // Unqualified names then resolve in this schema, as with pgjdbc.
                    let quoted = Dialect::Postgres.quote(&value).map_err(|e| e.to_string())?;
                    config.options(format!("-c search_path={}", quoted.replace(' ', "\\ ")));
                }
                "ApplicationName" => {
                    config.application_name(&value);
                }
                // pgjdbc's other settings (timeouts, fetch sizes, ...) have no meaning here.
                _ => {}
            }
        }
        let user = url_user
            .or_else(|| user.filter(|u| !u.is_empty()).map(str::to_owned))
            // libpq would take the operating system's user; the server's own superuser is
            // what a throwaway or containerised PostgreSQL has.
            .unwrap_or_else(|| "postgres".to_owned());
        config.user(&user);
        if let Some(password) = url_password.or_else(|| password.map(str::to_owned)) {
            config.password(password);
        }
        let database = percent_decode(&database)?;
        config.dbname(if database.is_empty() {
            &user
        } else {
            &database
        });
        config.connect_timeout(CONNECT_TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("runnel-connect");
        }
        Ok(ConnectionSpec::Postgres {
            config: Box::new(config),
            shown: format!("{location} as {user}"),
        })
    }

    /// Opens a connection. `create` lets SQLite create a missing database file (a sink
    /// may; a source reads what exists).
    pub(crate) fn connect(&self, create: bool) -> Result<Db, DbError> {
        match self {
            ConnectionSpec::Sqlite { path } => sqlite::SqliteDb::open(path, create).map(Db::Sqlite),
            ConnectionSpec::Postgres { config, .. } => {
                postgres::PgDb::connect(config).map(|db| Db::Postgres(Box::new(db)))
            }
        }
    }

    /// Checks the database can be reached, as validation does. A SQLite database a sink
    /// would create is fine when its directory exists; nothing is created here.
    pub(crate) fn check(&self, create: bool) -> Result<(), DbError> {
        if let ConnectionSpec::Sqlite { path } = self {
            if create && !path.exists() {
                let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
                return match parent {
                    Some(dir) if !dir.is_dir() => Err(DbError::permanent(format!(
                        "directory {} does not exist",
                        dir.display()
                    ))),
                    _ => Ok(()),
                };
            }
        }
        let mut db = self.connect(false)?;
        db.ping()
    }
}

fn split_host_port(host: &str) -> Result<(String, u16), String> {
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let (name, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("unclosed [ in host {host:?}"))?;
        (name, after.strip_prefix(':'))
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port = match port {
        Some(port) => port
            .parse()
            .map_err(|_| format!("port {port:?} of host {host:?} is not a port number"))?,
        None => 5432,
    };
    if name.is_empty() {
        return Err(format!("no host name in {host:?}"));
    }
    Ok((name.to_owned(), port))
}

/// The table types a source may read (`table.types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableType {
    /// Ordinary tables.
    Table,
    /// Views.
    View,
}

impl Dialect {
    /// `name` as a quoted identifier: double quotes, inner quotes doubled. Both databases
    /// take this form, and nothing inside it is read as SQL. A NUL cannot be in an
    /// identifier of either.
    pub(crate) fn quote(self, name: &str) -> Result<String, DbError> {
        if name.contains('\0') {
            return Err(DbError::permanent(format!(
                "identifier {name:?} holds a NUL character"
            )));
        }
        Ok(format!("\"{}\"", name.replace('"', "\"\"")))
    }

    /// A table's name as SQL, quoted, with its schema when it has one.
    pub(crate) fn table(self, table: &TableId) -> Result<String, DbError> {
        Ok(match &table.schema {
            Some(schema) => format!("{}.{}", self.quote(schema)?, self.quote(&table.name)?),
            None => self.quote(&table.name)?,
        })
    }

    /// The table a sink writes for `name` (what `table.name.format` gave): PostgreSQL reads
    /// `schema.table` as Confluent does (a third leading part, the database, is dropped);
    /// SQLite keeps the whole name, dots included, as one identifier.
    pub(crate) fn parse_table(self, name: &str) -> TableId {
        match self {
            Dialect::Sqlite => TableId::new(name),
            Dialect::Postgres => {
                let parts: Vec<&str> = name.split('.').collect();
                match parts.as_slice() {
                    [schema, table] | [_, schema, table]
                        if !schema.is_empty() && !table.is_empty() =>
                    {
                        TableId {
                            schema: Some((*schema).to_owned()),
                            name: (*table).to_owned(),
                        }
                    }
                    _ => TableId::new(name),
                }
            }
        }
    }

    /// The `n`th (from 1) parameter placeholder.
    pub(crate) fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// The column type a sink creates for a field of `schema`, as Confluent's dialects
    /// choose it (SQLite's date and time types keep their names, so that they read back
    /// as dates and times).
    pub(crate) fn column_type(self, schema: &Schema) -> Result<&'static str, String> {
        let logical = schema.name.as_deref();
        let postgres = self == Dialect::Postgres;
        Ok(match (schema.kind, logical) {
            (SchemaType::Bytes, Some(DECIMAL_LOGICAL)) => {
                if postgres {
                    "DECIMAL"
                } else {
                    "NUMERIC"
                }
            }
            (SchemaType::Int32, Some(DATE_LOGICAL)) => "DATE",
            (SchemaType::Int32, Some(TIME_LOGICAL)) => "TIME",
            (SchemaType::Int64, Some(TIMESTAMP_LOGICAL)) => "TIMESTAMP",
            (SchemaType::Int8 | SchemaType::Int16, _) if postgres => "SMALLINT",
            (SchemaType::Int32, _) if postgres => "INT",
            (SchemaType::Int64, _) if postgres => "BIGINT",
            (SchemaType::Int8 | SchemaType::Int16 | SchemaType::Int32 | SchemaType::Int64, _) => {
                "INTEGER"
            }
            (SchemaType::Float32, _) => "REAL",
            (SchemaType::Float64, _) if postgres => "DOUBLE PRECISION",
            (SchemaType::Float64, _) => "REAL",
            (SchemaType::Boolean, _) => "BOOLEAN",
            (SchemaType::String, _) => "TEXT",
            (SchemaType::Bytes, _) if postgres => "BYTEA",
            (SchemaType::Bytes, _) => "BLOB",
            (kind @ (SchemaType::Array | SchemaType::Map | SchemaType::Struct), _) => {
                return Err(format!(
                    "a field of type {} has no column type",
                    kind.name()
                ))
            }
        })
    }

    /// A SQL literal for a field's default value, for `DEFAULT` in DDL (where parameters
    /// cannot be bound); `None` for values without a safe literal.
    pub(crate) fn literal(self, schema: &Schema, value: &Value) -> Option<String> {
        let bound = super::values::from_connect(schema, value).ok()?;
        Some(match bound {
            SqlValue::Null => "NULL".to_owned(),
            SqlValue::Bool(b) if self == Dialect::Postgres => b.to_string(),
            SqlValue::Bool(b) => i64::from(b).to_string(),
            SqlValue::Int(n) => n.to_string(),
            SqlValue::Float(f) if f.is_finite() => format!("{f:?}"),
            SqlValue::Numeric(n) if super::values::Decimal::parse(&n).is_some() => n,
            // PostgreSQL's E'' reads backslash escapes whatever standard_conforming_strings
            // says, so that a backslash cannot end the literal early.
            SqlValue::Text(t) if self == Dialect::Postgres => format!(
                "E'{}'",
                t.replace('\0', "")
                    .replace('\\', "\\\\")
                    .replace('\'', "''")
            ),
            SqlValue::Text(t) => format!("'{}'", t.replace('\0', "").replace('\'', "''")),
            _ => return None,
        })
    }

    /// The expression a timestamp criterion compares: the column, or the first non-null
    /// of several (`COALESCE`). SQLite compares its date-time text normalized by
    /// `strftime`, since the same instant has several spellings.
    pub(crate) fn timestamp_expression(self, columns: &[String]) -> Result<String, DbError> {
        let quoted = columns
            .iter()
            .map(|c| self.quote(c))
            .collect::<Result<Vec<_>, _>>()?;
        let expression = match quoted.as_slice() {
            [one] => one.clone(),
            many => format!("COALESCE({})", many.join(", ")),
        };
        Ok(match self {
            Dialect::Postgres => expression,
            Dialect::Sqlite => format!("strftime('%Y-%m-%d %H:%M:%f', {expression})"),
        })
    }

    /// An instant bound to compare with [`Dialect::timestamp_expression`].
    pub(crate) fn timestamp_parameter(self, micros: i64) -> SqlValue {
        match self {
            Dialect::Postgres => SqlValue::Timestamp(micros),
            Dialect::Sqlite => SqlValue::Text(super::values::format_timestamp(micros)),
        }
    }
}

/// An open connection to either database. Every operation blocks the calling thread.
#[derive(Debug)]
pub(crate) enum Db {
    /// A SQLite connection.
    Sqlite(sqlite::SqliteDb),
    /// A PostgreSQL connection.
    Postgres(Box<postgres::PgDb>),
}

impl Db {
    /// The connection's dialect.
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Checks the connection works.
    pub(crate) fn ping(&mut self) -> Result<(), DbError> {
        self.query("SELECT 1", &[]).map(|_| ())
    }

    /// The tables (and views, if asked) a source may read, sorted, without the databases'
    /// own catalogs. `schema_pattern` is a SQL LIKE pattern on PostgreSQL's schemas.
    pub(crate) fn list_tables(
        &mut self,
        types: &[TableType],
        schema_pattern: Option<&str>,
    ) -> Result<Vec<TableId>, DbError> {
        match self {
            Db::Sqlite(db) => db.list_tables(types),
            Db::Postgres(db) => db.list_tables(types, schema_pattern),
        }
    }

    /// The columns of `table` in order, or `None` when it does not exist.
    pub(crate) fn describe_table(
        &mut self,
        table: &TableId,
    ) -> Result<Option<Vec<ColumnMeta>>, DbError> {
        match self {
            Db::Sqlite(db) => db.describe_table(table),
            Db::Postgres(db) => db.describe_table(table),
        }
    }

    /// The columns `sql` (a SELECT) returns, without running it.
    pub(crate) fn describe_query(&mut self, sql: &str) -> Result<Vec<ColumnMeta>, DbError> {
        match self {
            Db::Sqlite(db) => db.describe_query(sql),
            Db::Postgres(db) => db.describe_query(sql),
        }
    }

    /// Runs a query. PostgreSQL's values come typed; SQLite's as stored.
    pub(crate) fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Rows, DbError> {
        match self {
            Db::Sqlite(db) => db.query(sql, params),
            Db::Postgres(db) => db.query(sql, params),
        }
    }

    /// Runs statements that return nothing, in order; PostgreSQL pipelines them (one round
    /// trip for all). Stops at the first error.
    pub(crate) fn execute_many(
        &mut self,
        statements: &[(&str, &[SqlValue])],
    ) -> Result<(), DbError> {
        match self {
            Db::Sqlite(db) => db.execute_many(statements),
            Db::Postgres(db) => db.execute_many(statements),
        }
    }

    /// Runs SQL without parameters (DDL, transaction control); several statements may be
    /// separated by semicolons.
    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        match self {
            Db::Sqlite(db) => db.batch(sql),
            Db::Postgres(db) => db.batch(sql),
        }
    }

    /// Starts reading all of `sql` (a SELECT) from one snapshot of the database, a page at
    /// a time with [`Db::snapshot_page`], until [`Db::snapshot_end`]: PostgreSQL through a
    /// cursor in a read-only transaction, SQLite through pages of one read transaction.
    pub(crate) fn snapshot_begin(&mut self, sql: &str) -> Result<(), DbError> {
        match self {
            Db::Sqlite(db) => db.batch("BEGIN"),
            Db::Postgres(db) => db.batch(&format!(
                "BEGIN READ ONLY; DECLARE {SNAPSHOT_CURSOR} NO SCROLL CURSOR FOR {sql}"
            )),
        }
    }

    /// The next `count` rows of the snapshot `sql`, of which `read` were read before.
    pub(crate) fn snapshot_page(
        &mut self,
        sql: &str,
        read: u64,
        count: usize,
    ) -> Result<Rows, DbError> {
        match self {
            Db::Sqlite(db) => db.query(
                &format!("SELECT * FROM ({sql}) LIMIT {count} OFFSET {read}"),
                &[],
            ),
            Db::Postgres(db) => {
                db.query_uncached(&format!("FETCH FORWARD {count} FROM {SNAPSHOT_CURSOR}"))
            }
        }
    }

    /// Ends a snapshot read (also after an error, or half-way).
    pub(crate) fn snapshot_end(&mut self) -> Result<(), DbError> {
        self.batch("ROLLBACK")
    }

    /// Starts a transaction that writes (SQLite takes its write lock at once, so that two
    /// writers wait for each other instead of failing half-way).
    pub(crate) fn begin_write(&mut self) -> Result<(), DbError> {
        self.batch(match self.dialect() {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        })
    }

    /// The database's clock, in microseconds since the epoch: what timestamp criteria
    /// compare with, since rows are stamped by the database's clock, not ours.
    pub(crate) fn now_micros(&mut self) -> Result<i64, DbError> {
        let sql = match self.dialect() {
            Dialect::Sqlite => "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')",
            Dialect::Postgres => "SELECT CURRENT_TIMESTAMP",
        };
        let rows = self.query(sql, &[])?;
        rows.rows
            .first()
            .and_then(|row| row.first())
            .and_then(SqlValue::as_timestamp_micros)
            .ok_or_else(|| DbError::permanent("the database did not tell its time"))
    }

    /// Whether the connection was lost (the next use fails: open another).
    pub(crate) fn is_broken(&self) -> bool {
        match self {
            Db::Sqlite(_) => false,
            Db::Postgres(db) => db.is_broken(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_database_and_credentials() {
        let spec =
            ConnectionSpec::parse("jdbc:sqlite:/tmp/a.db?journal_mode=WAL", None, None).unwrap();
        assert!(
            matches!(spec, ConnectionSpec::Sqlite { ref path } if path == std::path::Path::new("/tmp/a.db"))
        );

        let spec = ConnectionSpec::parse(
            "jdbc:postgresql://db.example:6543/shop?user=alice&password=p%40ss",
            Some("bob"),
            Some("other"),
        )
        .unwrap();
        let ConnectionSpec::Postgres { config, shown } = spec else {
            panic!("not postgres");
        };
        assert_eq!(config.get_ports(), [6543]);
        assert_eq!(config.get_dbname(), Some("shop"));
        assert_eq!(config.get_user(), Some("alice"));
        assert_eq!(config.get_password(), Some(&b"p@ss"[..]));
        assert!(!shown.contains("p@ss"));

        let spec =
            ConnectionSpec::parse("jdbc:postgresql://[::1]/db", Some("bob"), Some("pw")).unwrap();
        let ConnectionSpec::Postgres { config, .. } = spec else {
            panic!("not postgres");
        };
        assert_eq!(config.get_ports(), [5432]);
        assert_eq!(config.get_user(), Some("bob"));
        assert_eq!(config.get_password(), Some(&b"pw"[..]));

        for bad in [
            "jdbc:mysql://h/db",
            "postgresql://h/db",
            "jdbc:sqlite:",
            "jdbc:postgresql://h:port/db",
            "jdbc:postgresql://h/db?sslmode=require",
        ] {
            assert!(ConnectionSpec::parse(bad, None, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn identifiers_are_quoted_whatever_they_hold() {
        let d = Dialect::Postgres;
        assert_eq!(
            d.quote("a\"; DROP TABLE x; --").unwrap(),
            "\"a\"\"; DROP TABLE x; --\""
        );
        assert!(d.quote("a\0b").is_err());
        assert_eq!(
            d.table(&d.parse_table("shop.orders")).unwrap(),
            "\"shop\".\"orders\""
        );
        assert_eq!(
            d.table(&d.parse_table("db.shop.orders")).unwrap(),
            "\"shop\".\"orders\""
        );
        assert_eq!(
            Dialect::Sqlite
                .table(&Dialect::Sqlite.parse_table("a.b"))
                .unwrap(),
            "\"a.b\""
        );
        assert_eq!(
            Dialect::Sqlite
                .literal(
                    &Schema::new(SchemaType::String),
                    &Value::String("it's".into())
                )
                .as_deref(),
            Some("'it''s'")
        );
        assert_eq!(
            Dialect::Postgres
                .literal(
                    &Schema::new(SchemaType::String),
                    &Value::String("a\\' b".into())
                )
                .as_deref(),
            Some("E'a\\\\'' b'")
        );
    }
}
