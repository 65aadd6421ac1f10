//! The JDBC source: tables (or one custom query) read into topics, with Confluent's modes,
//! keys, record shapes and source offsets.
//!
//! Each table is polled by a querier. `bulk` reads the whole table every
//! `poll.interval.ms`, from one snapshot. The incremental modes read pages of at most
//! `batch.max.rows` rows past the last offset, ordered by the offset columns, and poll
//! again at once while pages come back full; this paging by offset is what Confluent's
//! queries do over a cursor, and resumes the same way after a restart:
//! - `incrementing`: `WHERE inc > ? ORDER BY inc`, offset `{"incrementing": N}`;
//! - `timestamp`: `WHERE ts > ? AND ts < ? ORDER BY ts`, offset
//!   `{"timestamp": ms, "timestamp_nanos": nanos}`;
//! - `timestamp+incrementing`: `WHERE ts < ? AND ((ts = ? AND inc > ?) OR ts > ?)
//!   ORDER BY ts, inc`, both offsets.
//!
//! The upper bound `ts < now - timestamp.delay.interval.ms` (the database's now) keeps rows
//! stamped but not yet committed from being skipped: a row whose transaction commits late
//! still has a timestamp above the last offset when it becomes visible, as long as it
//! commits within the delay.
//!
//! Source partitions are Confluent's: `{"protocol": "1", "table": "schema.table"}` for a
//! table (the older `{"table": "table"}` is read too), `{"query": "query"}` for a query.
//! The connector lists the tables, splits them among tasks, and watches for tables
//! appearing or going every `table.poll.interval.ms` to reconfigure its tasks.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use regex::Regex;

use super::db::{ColumnMeta, Db, DbError, Dialect, TableId, TableType};
use super::values::{self, ColumnKind, Conv, NumericMapping, SqlValue};
use super::{add_error, off_runtime, trimmed_query, Connection};
use crate::config::{
    ConfigDef, ConfigError, ConfigType, ConfigValue, Configs, Importance, Validator,
};
use crate::connector::{ConnectError, Connector, ConnectorContext, SourceTask, TaskContext};
use crate::data::{
    ConnectRecord, Field, Schema, SchemaAndValue, SourceOffset, SourcePartition, SourceRecord,
    Value,
};

const MODE_GROUP: &str = "Mode";
const TABLES_GROUP: &str = "Tables";
const CONNECTOR_GROUP: &str = "Connector";

/// The task config key that lists a task's tables (as JSON `[[schema, table], ...]`).
const TASK_TABLES: &str = "tables";

/// The longest a poll sleeps before returning, so that the task stops promptly.
const MAX_POLL_WAIT: Duration = Duration::from_secs(1);

fn source_def() -> ConfigDef {
    super::connection_def(ConfigDef::new())
        .define(
            "mode",
            ConfigType::String,
            None,
            Importance::High,
            MODE_GROUP,
            "How each poll finds what to read: bulk (everything), incrementing (rows past the \
             largest incrementing.column.name seen), timestamp (rows past the latest \
             timestamp.column.name seen), or timestamp+incrementing (both, for rows updated \
             in place).",
        )
        .validated(Validator::OneOf(&[
            "bulk",
            "timestamp",
            "incrementing",
            "timestamp+incrementing",
        ]))
        .define(
            "incrementing.column.name",
            ConfigType::String,
            Some(""),
            Importance::Medium,
            MODE_GROUP,
            "A strictly increasing integer column (a serial key) for the incrementing modes.",
        )
        .define(
            "timestamp.column.name",
            ConfigType::List,
            Some(""),
            Importance::Medium,
            MODE_GROUP,
            "The timestamp column(s) for the timestamp modes; with several, the first that is \
             not NULL counts (COALESCE).",
        )
        .define(
            "timestamp.initial",
            ConfigType::Long,
            None,
            Importance::Low,
            MODE_GROUP,
            "Milliseconds since the epoch to start the timestamp modes from when there is no \
             offset yet; -1 for the database's current time. Unset: from the epoch.",
        )
        .optional()
        .define(
            "timestamp.delay.interval.ms",
            ConfigType::Long,
            Some("0"),
            Importance::High,
            MODE_GROUP,
            "How long after a timestamp a row is read, so that transactions committing late \
             are not skipped.",
        )
        .validated(Validator::Range { min: 0, max: None })
        .define(
            "validate.non.null",
            ConfigType::Boolean,
            Some("true"),
            Importance::Low,
            MODE_GROUP,
            "Whether to refuse nullable incrementing or timestamp columns.",
        )
        .define(
            "query",
            ConfigType::String,
            Some(""),
            Importance::Medium,
            MODE_GROUP,
            "A SELECT to run instead of reading tables; the mode's condition is appended \
             as its WHERE clause.",
        )
        .define(
            "query.suffix",
            ConfigType::String,
            Some(""),
            Importance::Low,
            MODE_GROUP,
            "Text appended to every query the connector runs.",
        )
        .define(
            "query.retry.attempts",
            ConfigType::Int,
            Some("-1"),
            Importance::Low,
            MODE_GROUP,
            "How many failed queries in a row a task retries before it fails; -1: forever.",
        )
        .define(
            "numeric.mapping",
            ConfigType::String,
            None,
            Importance::Low,
            MODE_GROUP,
            "How NUMERIC columns map: none (Decimal), precision_only, best_fit, \
             best_fit_eager_double.",
        )
        .optional()
        .validated(Validator::OneOf(&[
            "none",
            "precision_only",
            "best_fit",
            "best_fit_eager_double",
        ]))
        .define(
            "numeric.precision.mapping",
            ConfigType::Boolean,
            Some("false"),
            Importance::Low,
            MODE_GROUP,
            "Deprecated: true is numeric.mapping=precision_only.",
        )
        .define(
            "table.whitelist",
            ConfigType::List,
            Some(""),
            Importance::Medium,
            TABLES_GROUP,
            "The tables to read (names, or schema.name); not with table.blacklist.",
        )
        .define(
            "table.blacklist",
            ConfigType::List,
            Some(""),
            Importance::Medium,
            TABLES_GROUP,
            "The tables not to read; not with table.whitelist.",
        )
        .define(
            "table.include.list",
            ConfigType::List,
            Some(""),
            Importance::Medium,
            TABLES_GROUP,
            "Regular expressions matching the full names (schema.name) of the tables to read.",
        )
        .define(
            "table.exclude.list",
            ConfigType::List,
            Some(""),
            Importance::Medium,
            TABLES_GROUP,
            "Regular expressions of tables not to read among those table.include.list \
             matches.",
        )
        .define(
            "table.types",
            ConfigType::List,
            Some("TABLE"),
            Importance::Low,
            TABLES_GROUP,
            "Which kinds of tables to read: TABLE, VIEW.",
        )
        .define(
            "schema.pattern",
            ConfigType::String,
            None,
            Importance::Medium,
            TABLES_GROUP,
            "A SQL LIKE pattern of the schemas to read tables from (PostgreSQL).",
        )
        .optional()
        .define(
            "catalog.pattern",
            ConfigType::String,
            None,
            Importance::Low,
            TABLES_GROUP,
            "Accepted for compatibility; a connection reads one database.",
        )
        .optional()
        .define(
            "table.poll.interval.ms",
            ConfigType::Long,
            Some("60000"),
            Importance::Low,
            TABLES_GROUP,
            "How often to look for tables added or removed.",
        )
        .validated(Validator::Range { min: 1, max: None })
        .define(
            "topic.prefix",
            ConfigType::String,
            None,
            Importance::High,
            CONNECTOR_GROUP,
            "Prefixed to a table's name to name its topic; a query's topic is the prefix.",
        )
        .define(
            "poll.interval.ms",
            ConfigType::Int,
            Some("5000"),
            Importance::High,
            CONNECTOR_GROUP,
            "How often to poll each table for new rows.",
        )
        .validated(Validator::Range { min: 1, max: None })
        .define(
            "batch.max.rows",
            ConfigType::Int,
            Some("100"),
            Importance::Low,
            CONNECTOR_GROUP,
            "The most rows one poll returns.",
        )
        .validated(Validator::Range { min: 1, max: None })
}

/// How a querier finds rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bulk,
    Incrementing,
    Timestamp,
    TimestampIncrementing,
}

impl Mode {
    fn uses_incrementing(self) -> bool {
        matches!(self, Mode::Incrementing | Mode::TimestampIncrementing)
    }

    fn uses_timestamp(self) -> bool {
        matches!(self, Mode::Timestamp | Mode::TimestampIncrementing)
    }
}

/// Which tables to read.
#[derive(Debug, Clone)]
enum TableFilter {
    /// `table.whitelist`: names or qualified names.
    Only(Vec<String>),
    /// `table.blacklist`
    AllBut(Vec<String>),
    /// `table.include.list` / `table.exclude.list`: regexes on the qualified name.
    Patterns {
        include: Vec<Regex>,
        exclude: Vec<Regex>,
    },
    /// Every table.
    All,
}

impl TableFilter {
    fn matches(&self, table: &TableId) -> bool {
        let named = |names: &[String]| {
            let qualified = table.qualified();
            names.iter().any(|n| *n == table.name || *n == qualified)
        };
        match self {
            TableFilter::Only(names) => named(names),
            TableFilter::AllBut(names) => !named(names),
            TableFilter::Patterns { include, exclude } => {
                let qualified = table.qualified();
                include.iter().any(|r| r.is_match(&qualified))
                    && !exclude.iter().any(|r| r.is_match(&qualified))
            }
            TableFilter::All => true,
        }
    }
}

/// A regex matching whole names only, as Java's `matches` does.
fn whole(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

/// A source connector's configuration, read and checked.
#[derive(Debug, Clone)]
struct SourceSettings {
    connection: Connection,
    mode: Mode,
    incrementing: Option<String>,
    timestamps: Vec<String>,
    timestamp_initial: Option<i64>,
    delay_ms: i64,
    validate_non_null: bool,
    query: Option<String>,
    suffix: String,
    retry_attempts: i64,
    numeric: NumericMapping,
    filter: TableFilter,
    table_types: Vec<TableType>,
    schema_pattern: Option<String>,
    table_poll: Duration,
    prefix: String,
    poll_interval: Duration,
    batch: usize,
}

fn nonempty(configs: &Configs, key: &str) -> Option<String> {
    configs
        .get(key)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The checks between keys, each an error on the key at fault.
fn cross_checks(configs: &Configs) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut error = |key: &str, message: String| {
        errors.push(ConfigError {
            key: key.to_owned(),
            message,
        })
    };
    let mode = configs.get("mode").map(|m| m.trim().to_ascii_lowercase());
    let mode = mode.as_deref();
    if matches!(mode, Some("incrementing" | "timestamp+incrementing"))
        && nonempty(configs, "incrementing.column.name").is_none()
    {
        error(
            "incrementing.column.name",
            format!(
                "Missing required configuration \"incrementing.column.name\": mode {} reads \
                 rows by an incrementing column",
                mode.unwrap_or_default()
            ),
        );
    }
    if matches!(mode, Some("timestamp" | "timestamp+incrementing"))
        && configs.list("timestamp.column.name").is_empty()
    {
        error(
            "timestamp.column.name",
            format!(
                "Missing required configuration \"timestamp.column.name\": mode {} reads rows \
                 by timestamp columns",
                mode.unwrap_or_default()
            ),
        );
    }
    let set: Vec<&str> = [
        "table.whitelist",
        "table.blacklist",
        "table.include.list",
        "table.exclude.list",
    ]
    .into_iter()
    .filter(|key| !configs.list(key).is_empty())
    .collect();
    if set.contains(&"table.whitelist") && set.contains(&"table.blacklist") {
        for key in ["table.whitelist", "table.blacklist"] {
            error(
                key,
                "table.whitelist and table.blacklist cannot both be set".to_owned(),
            );
        }
    }
    let legacy = set
        .iter()
        .any(|k| k.contains("white") || k.contains("black"));
    let new = set
        .iter()
        .any(|k| k.contains("include") || k.contains("exclude"));
    if legacy && new {
        for key in &set {
            error(
                key,
                "Cannot mix table.whitelist / table.blacklist with table.include.list / \
                 table.exclude.list: use one or the other"
                    .to_owned(),
            );
        }
    }
    if set.contains(&"table.exclude.list") && !set.contains(&"table.include.list") {
        error(
            "table.exclude.list",
            "table.exclude.list applies to the tables table.include.list matches: set \
             table.include.list too"
                .to_owned(),
        );
    }
    for key in ["table.include.list", "table.exclude.list"] {
        for pattern in configs.list(key) {
            if let Err(e) = whole(&pattern) {
                error(
                    key,
                    format!("Invalid value {pattern} for configuration {key}: {e}"),
                );
            }
        }
    }
    if let Some(query) = nonempty(configs, "query") {
        let first_word = trimmed_query(&query)
            .trim_start_matches('(')
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        if first_word != "SELECT" && first_word != "WITH" {
            error(
                "query",
                "Only SELECT statements are supported for 'query'".to_owned(),
            );
        }
        if !set.is_empty() {
            error(
                "query",
                format!(
                    "Do not set table filters ({}) with 'query': a query reads no tables by name",
                    set.join(", ")
                ),
            );
            for key in &set {
                error(key, "Do not set table filters with 'query'".to_owned());
            }
        }
    }
    for kind in configs.list("table.types") {
        if !matches!(kind.to_ascii_uppercase().as_str(), "TABLE" | "VIEW") {
            error(
                "table.types",
                format!(
                    "Invalid value {kind} for configuration table.types: TABLE and VIEW are \
                     supported"
                ),
            );
        }
    }
    errors
}

impl SourceSettings {
    fn from_configs(configs: &Configs) -> Result<SourceSettings, ConnectError> {
        source_def().check(configs)?;
        if let Some(error) = cross_checks(configs).into_iter().next() {
            return Err(error.into());
        }
        let mode = match configs
            .required("mode")?
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "bulk" => Mode::Bulk,
            "incrementing" => Mode::Incrementing,
            "timestamp" => Mode::Timestamp,
            _ => Mode::TimestampIncrementing,
        };
        let numeric = match nonempty(configs, "numeric.mapping") {
            Some(name) => NumericMapping::from_name(&name).unwrap_or(NumericMapping::None),
            None if configs.bool_or("numeric.precision.mapping", false)? => {
                NumericMapping::PrecisionOnly
            }
            None => NumericMapping::None,
        };
        let filter = {
            let whitelist = configs.list("table.whitelist");
            let blacklist = configs.list("table.blacklist");
            let include = configs.list("table.include.list");
            let exclude = configs.list("table.exclude.list");
            let compile = |patterns: Vec<String>, key: &str| {
                patterns
                    .iter()
                    .map(|p| whole(p).map_err(|e| ConfigError::invalid(key, p, &e.to_string())))
                    .collect::<Result<Vec<_>, _>>()
            };
            if !whitelist.is_empty() {
                TableFilter::Only(whitelist)
            } else if !blacklist.is_empty() {
                TableFilter::AllBut(blacklist)
            } else if !include.is_empty() {
                TableFilter::Patterns {
                    include: compile(include, "table.include.list")?,
                    exclude: compile(exclude, "table.exclude.list")?,
                }
            } else {
                TableFilter::All
            }
        };
        let table_types = configs
            .list("table.types")
            .iter()
            .filter_map(|t| match t.to_ascii_uppercase().as_str() {
                "TABLE" => Some(TableType::Table),
                "VIEW" => Some(TableType::View),
                _ => None,
            })
            .collect::<Vec<_>>();
        Ok(SourceSettings {
            connection: Connection::from_configs(configs)?,
            mode,
            incrementing: nonempty(configs, "incrementing.column.name"),
            timestamps: configs.list("timestamp.column.name"),
            timestamp_initial: match nonempty(configs, "timestamp.initial") {
                Some(_) => Some(configs.parsed_or("timestamp.initial", 0i64, ConfigType::Long)?),
                None => None,
            },
            delay_ms: configs.parsed_or("timestamp.delay.interval.ms", 0i64, ConfigType::Long)?,
            validate_non_null: configs.bool_or("validate.non.null", true)?,
            query: nonempty(configs, "query").map(|q| trimmed_query(&q).to_owned()),
            suffix: configs.get("query.suffix").unwrap_or("").trim().to_owned(),
            retry_attempts: configs.parsed_or("query.retry.attempts", -1i64, ConfigType::Int)?,
            numeric,
            filter,
            table_types: if table_types.is_empty() {
                vec![TableType::Table]
            } else {
                table_types
            },
            schema_pattern: nonempty(configs, "schema.pattern"),
            table_poll: Duration::from_millis(configs.parsed_or(
                "table.poll.interval.ms",
                60_000u64,
                ConfigType::Long,
            )?),
            prefix: configs.required("topic.prefix")?.to_owned(),
            poll_interval: Duration::from_millis(configs.parsed_or(
                "poll.interval.ms",
                5_000u64,
                ConfigType::Int,
            )?),
            batch: configs
                .parsed_or("batch.max.rows", 100usize, ConfigType::Int)?
                .max(1),
        })
    }

    /// The tables of `db` this connector reads, sorted.
    fn tables(&self, db: &mut Db) -> Result<Vec<TableId>, DbError> {
        let mut tables = db.list_tables(&self.table_types, self.schema_pattern.as_deref())?;
        tables.retain(|t| self.filter.matches(t));
        Ok(tables)
    }
}

/// Signals the table monitor to stop.
#[derive(Debug, Default)]
struct StopSignal {
    stopped: Mutex<bool>,
    changed: Condvar,
}

impl StopSignal {
    fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.changed.notify_all();
    }

    /// Waits `timeout` or until stopped; true when stopped.
    fn wait(&self, timeout: Duration) -> bool {
        let stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        let (stopped, _) = self
            .changed
            .wait_timeout_while(stopped, timeout, |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        *stopped
    }
}

/// The source connector: lists tables and shares them among tasks.
#[derive(Debug, Default)]
pub(super) struct JdbcSourceConnector {
    configs: Configs,
    settings: Option<SourceSettings>,
    tables: Arc<Mutex<Vec<TableId>>>,
    monitor: Option<(Arc<StopSignal>, JoinHandle<()>)>,
}

impl Connector for JdbcSourceConnector {
    fn config_def(&self) -> ConfigDef {
        source_def()
    }

    fn validate(&self, configs: &Configs) -> Vec<ConfigValue> {
        let mut values = source_def().validate(configs);
        for error in cross_checks(configs) {
            add_error(&mut values, &error.key, error.message);
        }
        super::validate_connection(&mut values, configs, false);
        values
    }

    fn start(&mut self, configs: &Configs, context: ConnectorContext) -> Result<(), ConnectError> {
        let settings = SourceSettings::from_configs(configs)?;
        self.configs = configs.clone();
        if settings.query.is_none() {
            let listing = settings.clone();
            let tables = off_runtime(move || {
                let mut db = listing.connection.connect(false, None)?;
                listing.tables(&mut db)
            })?
            .map_err(|e| ConnectError::Failed(format!("Could not list the tables: {e}")))?;
            if tables.is_empty() {
                tracing::warn!("the JDBC source has no table to read yet");
            }
            *self.tables.lock().unwrap_or_else(PoisonError::into_inner) = tables;
            let stop = Arc::new(StopSignal::default());
            let monitor = {
                let stop = stop.clone();
                let tables = self.tables.clone();
                let settings = settings.clone();
                std::thread::Builder::new()
                    .name("jdbc-table-monitor".to_owned())
                    .spawn(move || monitor_tables(&settings, &tables, &stop, &context))
                    .map_err(|e| {
                        ConnectError::failed(format!("cannot start the table monitor: {e}"))
                    })?
            };
            self.monitor = Some((stop, monitor));
        }
        self.settings = Some(settings);
        Ok(())
    }

    fn task_configs(&mut self, max_tasks: usize) -> Result<Vec<Configs>, ConnectError> {
        let Some(settings) = &self.settings else {
            return Err(ConnectError::failed("the connector is not started"));
        };
        if settings.query.is_some() {
            return Ok(vec![self.configs.clone()]);
        }
        let tables = self
            .tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let groups = max_tasks.max(1).min(tables.len());
        let mut configs = Vec::with_capacity(groups);
        let mut rest = tables.as_slice();
        for group in 0..groups {
            // Contiguous groups, the first ones one larger, as Kafka's groupPartitions.
            let size = tables.len() / groups + usize::from(group < tables.len() % groups);
            let (these, others) = rest.split_at(size.min(rest.len()));
            rest = others;
            let listed: Vec<(Option<&str>, &str)> = these
                .iter()
                .map(|t| (t.schema.as_deref(), t.name.as_str()))
                .collect();
            let mut config = self.configs.clone();
            config.set(
                TASK_TABLES,
                serde_json::to_string(&listed).map_err(ConnectError::failed)?,
            );
            configs.push(config);
        }
        Ok(configs)
    }

    fn stop(&mut self) {
        if let Some((stop, thread)) = self.monitor.take() {
            stop.stop();
            if thread.join().is_err() {
                tracing::warn!("the JDBC table monitor panicked");
            }
        }
    }
}

/// Lists the tables every `table.poll.interval.ms` and asks for new task configurations
/// when the list changed.
fn monitor_tables(
    settings: &SourceSettings,
    tables: &Mutex<Vec<TableId>>,
    stop: &StopSignal,
    context: &ConnectorContext,
) {
    let mut db: Option<Db> = None;
    while !stop.wait(settings.table_poll) {
        if db.as_ref().is_none_or(Db::is_broken) {
            db = settings.connection.spec.connect(false).ok();
        }
        let Some(connection) = db.as_mut() else {
            tracing::warn!("cannot connect to list the tables; trying again later");
            continue;
        };
        match settings.tables(connection) {
            Ok(listed) => {
                let mut current = tables.lock().unwrap_or_else(PoisonError::into_inner);
                if *current != listed {
                    tracing::info!(tables = ?listed, "the tables to read changed");
                    *current = listed;
                    drop(current);
                    context.request_task_reconfiguration();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the tables; trying again later");
                db = None;
            }
        }
    }
}

/// What a querier reads.
#[derive(Debug, Clone)]
enum Target {
    Table(TableId),
    Query(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Table(table) => write!(f, "table {table}"),
            Target::Query(_) => f.write_str("the query"),
        }
    }
}

/// How far a querier read: the largest incrementing value and the latest timestamp
/// (microseconds since the epoch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Position {
    incrementing: Option<i64>,
    timestamp: Option<i64>,
}

impl Position {
    fn to_offset(self) -> SourceOffset {
        let mut offset = SourceOffset::new();
        if let Some(n) = self.incrementing {
            offset.insert("incrementing".into(), n.into());
        }
        if let Some(micros) = self.timestamp {
            // As Java's Timestamp: milliseconds, and the nanoseconds within the second.
            offset.insert("timestamp".into(), micros.div_euclid(1000).into());
            offset.insert(
                "timestamp_nanos".into(),
                (micros.rem_euclid(1_000_000) * 1000).into(),
            );
        }
        offset
    }

    fn from_offset(offset: &SourceOffset) -> Position {
        let number = |key: &str| offset.get(key).and_then(serde_json::Value::as_i64);
        let timestamp = number("timestamp").map(|ms| match number("timestamp_nanos") {
            Some(nanos) => ms
                .div_euclid(1000)
                .saturating_mul(1_000_000)
                .saturating_add(nanos.rem_euclid(1_000_000_000) / 1000),
            None => ms.saturating_mul(1000),
        });
        Position {
            incrementing: number("incrementing"),
            timestamp,
        }
    }
}

/// What a result's columns become: the record's schema, and per column how its value
/// converts (`None`: left out).
#[derive(Debug, Clone)]
struct Shape {
    columns: Vec<String>,
    conversions: Vec<Option<Conv>>,
    schema: Schema,
    incrementing: Option<usize>,
    timestamps: Vec<usize>,
}

fn find_column(columns: &[ColumnMeta], name: &str) -> Option<usize> {
    columns.iter().position(|c| c.name == name).or_else(|| {
        columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    })
}

impl Shape {
    fn new(
        target: &Target,
        columns: &[ColumnMeta],
        settings: &SourceSettings,
        dialect: Dialect,
    ) -> Result<Shape, ConnectError> {
        let mut fields = Vec::new();
        let mut conversions = Vec::new();
        for column in columns {
            match values::source_field(&column.kind, column.nullable, settings.numeric) {
                Some((schema, conv)) => {
                    fields.push(Field::new(column.name.clone(), schema));
                    conversions.push(Some(conv));
                }
                None => {
                    tracing::warn!(column = %column.name, r#type = %column.type_name, "{target}: column of an unsupported type left out");
                    conversions.push(None);
                }
            }
        }
        let checked_nulls = settings.validate_non_null && matches!(target, Target::Table(_));
        let incrementing = match (&settings.incrementing, settings.mode.uses_incrementing()) {
            (Some(name), true) => {
                let at = find_column(columns, name).ok_or_else(|| {
                    ConnectError::Failed(format!("{target} has no incrementing column {name:?}"))
                })?;
                let column = &columns[at];
                let integer = match &column.kind {
                    ColumnKind::Int16 | ColumnKind::Int32 | ColumnKind::Int64 => true,
                    ColumnKind::Numeric { scale, .. } => scale.unwrap_or(0) == 0,
                    _ => false,
                };
                if !integer {
                    return Err(ConnectError::Failed(format!(
                        "the incrementing column {name:?} of {target} is of type {}, not an integer",
                        column.type_name
                    )));
                }
                if checked_nulls && column.nullable {
                    return Err(ConnectError::Failed(format!(
                        "Cannot make incremental queries using incrementing column {name:?} on \
                         {target} because this column is nullable (set validate.non.null=false \
                         to allow it)"
                    )));
                }
                Some(at)
            }
            _ => None,
        };
        let mut timestamps = Vec::new();
        if settings.mode.uses_timestamp() {
            for name in &settings.timestamps {
                let at = find_column(columns, name).ok_or_else(|| {
                    ConnectError::Failed(format!("{target} has no timestamp column {name:?}"))
                })?;
                let column = &columns[at];
                let usable = matches!(column.kind, ColumnKind::Timestamp | ColumnKind::Date)
                    || (dialect == Dialect::Sqlite && column.kind == ColumnKind::Text);
                if !usable {
                    return Err(ConnectError::Failed(format!(
                        "the timestamp column {name:?} of {target} is of type {}, not a timestamp",
                        column.type_name
                    )));
                }
                timestamps.push(at);
            }
            if checked_nulls && timestamps.iter().all(|at| columns[*at].nullable) {
                return Err(ConnectError::Failed(format!(
                    "Cannot make incremental queries using timestamp columns {:?} on {target} \
                     because all of these columns are nullable (set validate.non.null=false to \
                     allow it)",
                    settings.timestamps
                )));
            }
        }
        let name = match target {
            Target::Table(table) => Some(table.name.as_str()),
            Target::Query(_) => None,
        };
        Ok(Shape {
            columns: columns.iter().map(|c| c.name.clone()).collect(),
            conversions,
            schema: Schema::structure(name, fields),
            incrementing,
            timestamps,
        })
    }

    /// The row's position: its incrementing value and its (first non-null) timestamp.
    fn position(&self, row: &[SqlValue]) -> Position {
        Position {
            incrementing: self
                .incrementing
                .and_then(|at| row.get(at))
                .and_then(SqlValue::as_i64),
            timestamp: self
                .timestamps
                .iter()
                .filter_map(|at| row.get(*at))
                .find(|v| !matches!(v, SqlValue::Null))
                .and_then(SqlValue::as_timestamp_micros),
        }
    }

    fn value(&self, row: Vec<SqlValue>, target: &Target) -> Result<Value, ConnectError> {
        let mut values = Vec::with_capacity(self.schema.fields.len());
        for ((value, conv), name) in row.into_iter().zip(&self.conversions).zip(&self.columns) {
            if let Some(conv) = conv {
                values.push(values::to_connect(*conv, value).map_err(|why| {
                    ConnectError::Failed(format!("column {name:?} of {target}: {why}"))
                })?);
            }
        }
        Ok(Value::Struct(values))
    }
}

/// Polls one table or the query.
#[derive(Debug)]
struct Querier {
    target: Target,
    topic: String,
    partition: SourcePartition,
    position: Position,
    /// When to query next.
    due: Instant,
    shape: Option<Shape>,
    /// In bulk mode, the rows of the current snapshot read so far.
    snapshot: Option<u64>,
    /// Failed queries in a row.
    failures: i64,
}

fn partition_of(target: &Target) -> SourcePartition {
    let mut partition = SourcePartition::new();
    match target {
        Target::Table(table) => {
            partition.insert("protocol".into(), "1".into());
            partition.insert("table".into(), table.qualified().into());
        }
        Target::Query(_) => {
            partition.insert("query".into(), "query".into());
        }
    }
    partition
}

impl Querier {
    fn new(target: Target, settings: &SourceSettings, context: &TaskContext) -> Querier {
        let partition = partition_of(&target);
        let stored = context.offset(&partition).or_else(|| match &target {
            // Offsets written before Confluent's protocol 1 name the table alone.
            Target::Table(table) => {
                let mut old = SourcePartition::new();
                old.insert("table".into(), table.name.clone().into());
                context.offset(&old)
            }
            Target::Query(_) => None,
        });
        let topic = match &target {
            Target::Table(table) => format!("{}{}", settings.prefix, table.name),
            Target::Query(_) => settings.prefix.clone(),
        };
        Querier {
            target,
            topic,
            partition,
            position: stored
                .as_ref()
                .map(Position::from_offset)
                .unwrap_or_default(),
            due: Instant::now(),
            shape: None,
            snapshot: None,
            failures: 0,
        }
    }

    /// The SELECT of everything this querier reads, before any condition.
    fn base(&self, dialect: Dialect) -> Result<String, DbError> {
        Ok(match &self.target {
            Target::Table(table) => format!("SELECT * FROM {}", dialect.table(table)?),
            Target::Query(query) => query.clone(),
        })
    }

    fn shape(
        &mut self,
        db: &mut Db,
        settings: &SourceSettings,
        columns: &[String],
    ) -> Result<&Shape, ConnectError> {
        let stale = self.shape.as_ref().is_none_or(|s| s.columns != columns);
        if stale {
            let described = match &self.target {
                Target::Table(table) => db.describe_table(table).and_then(|d| {
                    d.ok_or_else(|| DbError::permanent(format!("table {table} does not exist")))
                }),
                Target::Query(query) => db.describe_query(query),
            }
            .map_err(|e| query_error(&self.target, &e))?;
            self.shape = Some(Shape::new(
                &self.target,
                &described,
                settings,
                db.dialect(),
            )?);
        }
        self.shape
            .as_ref()
            .ok_or_else(|| ConnectError::failed("no shape"))
    }

    fn records(
        &mut self,
        db: &mut Db,
        settings: &SourceSettings,
        rows: super::db::Rows,
    ) -> Result<Vec<SourceRecord>, ConnectError> {
        let shape = self.shape(db, settings, &rows.columns)?.clone();
        let mut records = Vec::with_capacity(rows.rows.len());
        for row in rows.rows {
            if settings.mode != Mode::Bulk {
                let reached = shape.position(&row);
                self.position = Position {
                    incrementing: reached.incrementing.or(self.position.incrementing),
                    timestamp: reached.timestamp.or(self.position.timestamp),
                };
            }
            let value = shape.value(row, &self.target)?;
            records.push(SourceRecord {
                record: ConnectRecord::new(
                    self.topic.clone(),
                    SchemaAndValue::new(Some(shape.schema.clone()), value),
                ),
                source_partition: self.partition.clone(),
                source_offset: if settings.mode == Mode::Bulk {
                    SourceOffset::new()
                } else {
                    self.position.to_offset()
                },
            });
        }
        Ok(records)
    }

    /// Reads the next page; `Ok((records, more))`, `more` when the next page may be ready
    /// at once.
    fn poll(
        &mut self,
        db: &mut Db,
        settings: &SourceSettings,
    ) -> Result<(Vec<SourceRecord>, bool), ConnectError> {
        if settings.mode == Mode::Bulk {
            return self.poll_snapshot(db, settings);
        }
        let dialect = db.dialect();
        let target = self.target.clone();
        let fail = |e: DbError| query_error(&target, &e);
        let mut sql = self.base(dialect).map_err(fail)?;
        // Confluent appends the condition as the WHERE clause, to a query too.
        sql.push_str(" WHERE ");
        let quote = |name: &str| dialect.quote(name).map_err(|e| query_error(&target, &e));
        let incrementing = match &settings.incrementing {
            Some(name) if settings.mode.uses_incrementing() => Some(quote(name)?),
            _ => None,
        };
        let timestamp = if settings.mode.uses_timestamp() {
            Some(
                dialect
                    .timestamp_expression(&settings.timestamps)
                    .map_err(fail)?,
            )
        } else {
            None
        };
        let mut params = Vec::new();
        let mut param = |value: SqlValue| {
            params.push(value);
            dialect.placeholder(params.len())
        };
        let since = match (settings.mode.uses_timestamp(), self.position.timestamp) {
            (false, _) => 0,
            (true, Some(micros)) => micros,
            (true, None) => match settings.timestamp_initial {
                Some(-1) => db.now_micros().map_err(fail)?,
                Some(ms) => ms.saturating_mul(1000),
                None => 0,
            },
        };
        if settings.mode.uses_timestamp() && self.position.timestamp.is_none() {
            // Where a first read starts is fixed once: `timestamp.initial=-1` means the
            // time of the first poll, not of every poll until a row turns up.
            self.position.timestamp = Some(since);
        }
        let until = if settings.mode.uses_timestamp() {
            db.now_micros()
                .map_err(fail)?
                .saturating_sub(settings.delay_ms.saturating_mul(1000))
        } else {
            0
        };
        let last = self.position.incrementing.unwrap_or(-1);
        match (&incrementing, &timestamp) {
            (Some(inc), None) => {
                let p = param(SqlValue::Int(last));
                sql.push_str(&format!("{inc} > {p} ORDER BY {inc} ASC"));
            }
            (None, Some(ts)) => {
                let after = param(dialect.timestamp_parameter(since));
                let before = param(dialect.timestamp_parameter(until));
                sql.push_str(&format!(
                    "{ts} > {after} AND {ts} < {before} ORDER BY {ts} ASC"
                ));
            }
            (Some(inc), Some(ts)) => {
                let before = param(dialect.timestamp_parameter(until));
                let same = param(dialect.timestamp_parameter(since));
                let after_inc = param(SqlValue::Int(last));
                let after = param(dialect.timestamp_parameter(since));
                sql.push_str(&format!(
                    "{ts} < {before} AND (({ts} = {same} AND {inc} > {after_inc}) OR {ts} > {after}) \
                     ORDER BY {ts}, {inc} ASC"
                ));
            }
            (None, None) => return Err(ConnectError::failed("no offset column for the mode")),
        }
        sql.push_str(&format!(" LIMIT {}", settings.batch));
        if !settings.suffix.is_empty() {
            sql.push(' ');
            sql.push_str(&settings.suffix);
        }
        let mut rows = db.query(&sql, &params).map_err(fail)?;
        let full = rows.rows.len() >= settings.batch;
        if full && settings.mode == Mode::Timestamp {
            // Rows sharing the page's last timestamp may go on past it, and the next page
            // starts after that timestamp: leave them for a page that reads them all.
            let shape = self.shape(db, settings, &rows.columns)?.clone();
            let last_ts = rows.rows.last().and_then(|r| shape.position(r).timestamp);
            let tied = rows
                .rows
                .iter()
                .rev()
                .take_while(|r| shape.position(r).timestamp == last_ts)
                .count();
            if tied < rows.rows.len() {
                rows.rows.truncate(rows.rows.len() - tied);
            } else if let (Some(ts), Some(micros)) = (&timestamp, last_ts) {
                // The whole page shares one timestamp: read every row that has it.
                let base = self.base(dialect).map_err(fail)?;
                let at = dialect.placeholder(1);
                let mut tie = format!("{base} WHERE {ts} = {at} ORDER BY {ts} ASC");
                if !settings.suffix.is_empty() {
                    tie.push(' ');
                    tie.push_str(&settings.suffix);
                }
                rows = db
                    .query(&tie, &[dialect.timestamp_parameter(micros)])
                    .map_err(fail)?;
            }
        }
        let records = self.records(db, settings, rows)?;
        Ok((records, full))
    }

    fn poll_snapshot(
        &mut self,
        db: &mut Db,
        settings: &SourceSettings,
    ) -> Result<(Vec<SourceRecord>, bool), ConnectError> {
        let target = self.target.clone();
        let fail = |e: DbError| query_error(&target, &e);
        let mut sql = self.base(db.dialect()).map_err(fail)?;
        if !settings.suffix.is_empty() {
            sql.push(' ');
            sql.push_str(&settings.suffix);
        }
        let read = match self.snapshot {
            Some(read) => read,
            None => {
                db.snapshot_begin(&sql).map_err(fail)?;
                self.snapshot = Some(0);
                0
            }
        };
        let rows = db.snapshot_page(&sql, read, settings.batch).map_err(fail)?;
        let count = rows.rows.len();
        let records = self.records(db, settings, rows)?;
        let more = count >= settings.batch;
        if more {
            self.snapshot = Some(read + count as u64);
        } else {
            self.snapshot = None;
            db.snapshot_end().map_err(fail)?;
        }
        Ok((records, more))
    }
}

fn query_error(target: &Target, e: &DbError) -> ConnectError {
    let message = format!("Failed to query {target}: {e}");
    if e.retriable {
        ConnectError::Retriable(message)
    } else {
        ConnectError::Failed(message)
    }
}

/// Reads its tables (or the query) into records.
#[derive(Debug, Default)]
pub(super) struct JdbcSourceTask {
    settings: Option<SourceSettings>,
    context: Option<TaskContext>,
    db: Option<Db>,
    /// No connection attempt before this instant (after a failed one).
    reconnect_at: Option<Instant>,
    queriers: Vec<Querier>,
}

impl JdbcSourceTask {
    fn sleep_until(&self, due: Instant) {
        let wait = due
            .saturating_duration_since(Instant::now())
            .min(MAX_POLL_WAIT);
        super::sleep_unless_stopping(wait, self.context.as_ref());
    }

    /// Opens a connection if there is none; false while waiting to try again.
    fn ensure_connected(&mut self, settings: &SourceSettings) -> Result<bool, ConnectError> {
        if self.db.as_ref().is_some_and(Db::is_broken) {
            self.db = None;
        }
        if self.db.is_some() {
            return Ok(true);
        }
        if let Some(at) = self.reconnect_at.filter(|at| *at > Instant::now()) {
            self.sleep_until(at);
            return Ok(false);
        }
        match settings.connection.spec.connect(false) {
            Ok(db) => {
                self.db = Some(db);
                self.reconnect_at = None;
                Ok(true)
            }
            Err(e) => {
                self.reconnect_at = Some(Instant::now() + settings.connection.backoff);
                Err(ConnectError::Retriable(format!(
                    "Could not connect to database: {e}"
                )))
            }
        }
    }
}

impl SourceTask for JdbcSourceTask {
    fn start(&mut self, configs: &Configs, context: &TaskContext) -> Result<(), ConnectError> {
        let settings = SourceSettings::from_configs(configs)?;
        let targets = match &settings.query {
            Some(query) => vec![Target::Query(query.clone())],
            None => {
                let listed = configs.get(TASK_TABLES).ok_or_else(|| {
                    ConnectError::failed("the task was assigned neither tables nor a query")
                })?;
                let tables: Vec<(Option<String>, String)> = serde_json::from_str(listed)
                    .map_err(|e| ConnectError::failed(format!("bad task table list: {e}")))?;
                tables
                    .into_iter()
                    .map(|(schema, name)| Target::Table(TableId { schema, name }))
                    .collect()
            }
        };
        self.queriers = targets
            .into_iter()
            .map(|t| Querier::new(t, &settings, context))
            .collect();
        self.db = Some(
            settings
                .connection
                .connect(false, Some(context))
                .map_err(|e| ConnectError::Failed(format!("Could not connect to database: {e}")))?,
        );
        self.context = Some(context.clone());
        self.settings = Some(settings);
        Ok(())
    }

    fn poll(&mut self) -> Result<Vec<SourceRecord>, ConnectError> {
        let Some(settings) = self.settings.clone() else {
            return Err(ConnectError::failed("the task is not started"));
        };
        // A snapshot read under way goes on first: it holds a transaction open.
        let next = self
            .queriers
            .iter()
            .position(|q| q.snapshot.is_some())
            .or_else(|| {
                self.queriers
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, q)| q.due)
                    .map(|(at, _)| at)
            });
        let Some(at) = next else {
            self.sleep_until(Instant::now() + MAX_POLL_WAIT);
            return Ok(Vec::new());
        };
        let due = self.queriers[at].due;
        if due > Instant::now() {
            self.sleep_until(due);
            return Ok(Vec::new());
        }
        if !self.ensure_connected(&settings)? {
            return Ok(Vec::new());
        }
        let Some(db) = self.db.as_mut() else {
            return Ok(Vec::new());
        };
        let querier = &mut self.queriers[at];
        let outcome = match querier.poll(db, &settings) {
            Ok((records, more)) => {
                querier.failures = 0;
                querier.due = if more {
                    Instant::now()
                } else {
                    Instant::now() + settings.poll_interval
                };
                Ok(records)
            }
            Err(e) => {
                if querier.snapshot.take().is_some() {
                    // The snapshot starts over; its transaction ends (if it still can).
                    let _ = db.snapshot_end();
                }
                querier.failures += 1;
                querier.due = Instant::now() + settings.poll_interval;
                // As Confluent's query.retry.attempts: query failures are retried (forever
                // by default); a configuration that cannot work fails the task at once.
                let retried =
                    settings.retry_attempts < 0 || querier.failures <= settings.retry_attempts;
                match e {
                    ConnectError::Failed(message)
                        if retried && message.starts_with("Failed to query") =>
                    {
                        tracing::warn!(error = %message, "query failed; retrying at the next poll");
                        Err(ConnectError::Retriable(message))
                    }
                    other => Err(other),
                }
            }
        };
        if self.db.as_ref().is_some_and(Db::is_broken) {
            self.db = None;
        }
        outcome
    }

    fn stop(&mut self) {
        if let Some(db) = self.db.as_mut() {
            if self.queriers.iter().any(|q| q.snapshot.is_some()) {
                let _ = db.snapshot_end();
            }
        }
        self.db = None;
    }
}

#[cfg(test)]
mod tests;
