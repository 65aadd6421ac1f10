//! The database connectors, under the class names and config keys of Confluent's JDBC
//! connector so that existing configurations work: [`JDBC_SOURCE`] reads tables (or a
//! query) of SQLite or PostgreSQL into topics, [`JDBC_SINK`] writes topics into tables.
//!
//! - `values`: database values, Connect values, and the conversions between them;
//! - `db`: the one module that tells the two databases apart (URLs, SQL dialect,
//!   connections);
//! - `source` and `sink`: the connectors and their tasks.
//!
//! There is no JDBC here: `connection.url` keeps JDBC's form (`jdbc:sqlite:PATH`,
//! `jdbc:postgresql://HOST:PORT/DB`) only because that is what configurations hold.

mod db;
mod sink;
mod source;
mod values;

use std::time::Duration;

use crate::config::{ConfigDef, ConfigType, ConfigValue, Configs, Importance, Validator};
use crate::connector::{ConnectError, Plugin, TaskContext, TaskFactory};

/// Confluent's JDBC source connector, under its names.
pub const JDBC_SOURCE: Plugin = Plugin {
    class: "io.confluent.connect.jdbc.JdbcSourceConnector",
    aliases: &["JdbcSource", "JdbcSourceConnector"],
    connector: || Box::new(source::JdbcSourceConnector::default()),
    task: TaskFactory::Source(|| Box::new(source::JdbcSourceTask::default())),
};

/// Confluent's JDBC sink connector, under its names.
pub const JDBC_SINK: Plugin = Plugin {
    class: "io.confluent.connect.jdbc.JdbcSinkConnector",
    aliases: &["JdbcSink", "JdbcSinkConnector"],
    connector: || Box::new(sink::JdbcSinkConnector::default()),
    task: TaskFactory::Sink(|| Box::new(sink::JdbcSinkTask::default())),
};

const CONNECTION_GROUP: &str = "Database";

/// The connection keys both connectors take.
fn connection_def(def: ConfigDef) -> ConfigDef {
    def.define(
        "connection.url",
        ConfigType::String,
        None,
        Importance::High,
        CONNECTION_GROUP,
        "The database: jdbc:sqlite:PATH or jdbc:postgresql://HOST[:PORT]/DATABASE \
         (user and password may be given as ?user=...&password=... parameters).",
    )
    .define(
        "connection.user",
        ConfigType::String,
        None,
        Importance::High,
        CONNECTION_GROUP,
        "The user to connect as (PostgreSQL), when the URL names none.",
    )
    .optional()
    .define(
        "connection.password",
        ConfigType::Password,
        None,
        Importance::High,
        CONNECTION_GROUP,
        "The user's password (PostgreSQL), when the URL has none.",
    )
    .optional()
    .define(
        "connection.attempts",
        ConfigType::Int,
        Some("3"),
        Importance::Low,
        CONNECTION_GROUP,
        "How many times to try connecting before a task's start gives up.",
    )
    .validated(Validator::Range { min: 1, max: None })
    .define(
        "connection.backoff.ms",
        ConfigType::Long,
        Some("10000"),
        Importance::Low,
        CONNECTION_GROUP,
        "How long to wait between connection attempts.",
    )
    .validated(Validator::Range { min: 0, max: None })
    .define(
        "dialect.name",
        ConfigType::String,
        Some(""),
        Importance::Low,
        CONNECTION_GROUP,
        "Accepted for compatibility: the dialect always follows connection.url.",
    )
}

/// Where and how to connect, from a connector's configs.
#[derive(Debug, Clone)]
struct Connection {
    spec: db::ConnectionSpec,
    attempts: u32,
    backoff: Duration,
}

impl Connection {
    fn from_configs(configs: &Configs) -> Result<Connection, ConnectError> {
        let url = configs.required("connection.url")?;
        let spec = db::ConnectionSpec::parse(
            url,
            configs.get("connection.user"),
            configs.get("connection.password"),
        )
        .map_err(|why| crate::config::ConfigError::invalid("connection.url", url, &why))?;
        Ok(Connection {
            spec,
            attempts: configs
                .parsed_or("connection.attempts", 3u32, ConfigType::Int)?
                .max(1),
            backoff: Duration::from_millis(configs.parsed_or(
                "connection.backoff.ms",
                10_000u64,
                ConfigType::Long,
            )?),
        })
    }

    /// Connects, trying `connection.attempts` times `connection.backoff.ms` apart, and
    /// giving up early when the task is stopped.
    fn connect(&self, create: bool, context: Option<&TaskContext>) -> Result<db::Db, db::DbError> {
        let mut attempt = 1;
        loop {
            match self.spec.connect(create) {
                Ok(db) => return Ok(db),
                Err(e) if attempt >= self.attempts || !e.retriable => return Err(e),
                Err(e) => {
                    tracing::warn!(database = ?self.spec, attempt, error = %e, "cannot connect; trying again");
                    if !sleep_unless_stopping(self.backoff, context) {
                        return Err(e);
                    }
                    attempt += 1;
                }
            }
        }
    }
}

/// Sleeps `duration` in short steps; false if the task was stopped meanwhile.
fn sleep_unless_stopping(duration: Duration, context: Option<&TaskContext>) -> bool {
    let deadline = std::time::Instant::now() + duration;
    loop {
        if context.is_some_and(TaskContext::is_stopping) {
            return false;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// Runs `work` on a thread of its own. Connector calls (validation, starting) may come
/// from a thread inside the worker's async runtime, where blocking on a database
/// connection's own runtime is not allowed.
fn off_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> Result<T, ConnectError> {
    std::thread::scope(|scope| {
        scope
            .spawn(work)
            .join()
            .map_err(|_| ConnectError::failed("the database connector's worker thread panicked"))
    })
}

/// Adds `message` to the errors of key `key` in `values`.
fn add_error(values: &mut [ConfigValue], key: &str, message: impl Into<String>) {
    if let Some(value) = values.iter_mut().find(|v| v.name == key) {
        value.errors.push(message.into());
    }
}

/// Whether `key` has an error already.
fn has_error(values: &[ConfigValue], key: &str) -> bool {
    values.iter().any(|v| v.name == key && !v.errors.is_empty())
}

/// Checks the database of a configuration whose `connection.url` reads, as Confluent's
/// validation does: an unreachable database is an error on `connection.url`.
fn validate_connection(values: &mut [ConfigValue], configs: &Configs, create: bool) {
    let Some(url) = configs.get("connection.url") else {
        return;
    };
    if has_error(values, "connection.url") {
        return;
    }
    let spec = match db::ConnectionSpec::parse(
        url,
        configs.get("connection.user"),
        configs.get("connection.password"),
    ) {
        Ok(spec) => spec,
        Err(why) => {
            add_error(
                values,
                "connection.url",
                crate::config::ConfigError::invalid("connection.url", url, &why).message,
            );
            return;
        }
    };
    let checked = off_runtime(move || spec.check(create))
        .unwrap_or_else(|e| Err(db::DbError::permanent(e.to_string())));
    if let Err(e) = checked {
        add_error(
            values,
            "connection.url",
            format!("Could not connect to database. {e}"),
        );
    }
}

/// `text` as a SQL query a source may run: trimmed of whitespace and final semicolons.
fn trimmed_query(text: &str) -> &str {
    text.trim().trim_end_matches(';').trim_end()
}

#[cfg(test)]
pub(crate) mod testing {
    //! What the unit tests of the source and the sink share.

    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};

    use crate::connector::{OffsetReader, TaskContext};
    use crate::data::{SourceOffset, SourcePartition};

    /// Committed offsets, as a test sets them.
    #[derive(Debug, Default)]
    pub(crate) struct Offsets(pub(crate) Mutex<BTreeMap<String, SourceOffset>>);

    impl OffsetReader for Offsets {
        fn offset(&self, partition: &SourcePartition) -> Option<SourceOffset> {
            let key = serde_json::Value::Object(partition.clone()).to_string();
            self.0.lock().ok()?.get(&key).cloned()
        }
    }

    impl Offsets {
        /// Commits `offset` for `partition`.
        pub(crate) fn commit(&self, partition: &SourcePartition, offset: &SourceOffset) {
            let key = serde_json::Value::Object(partition.clone()).to_string();
            self.0.lock().unwrap().insert(key, offset.clone());
        }
    }

    /// A task context reading `offsets`.
    pub(crate) fn context(offsets: Arc<Offsets>) -> TaskContext {
        TaskContext::new("jdbc-test", 0, Arc::new(AtomicBool::new(false)), offsets)
    }
}
