//! Change data capture from PostgreSQL, compatible with Debezium's PostgreSQL connector:
//! its class name, its configuration keys, its topics (`<topic.prefix>.<schema>.<table>`)
//! and its change events (the `before`/`after`/`source`/`op` envelope, keyed by the primary
//! key, a tombstone after each delete).
//!
//! This module owns the plugin, its configuration and its validation; the submodules own
//! the rest:
//! - [`pgoutput`]: decoding the messages of PostgreSQL's `pgoutput` plugin;
//! - [`types`]: column types to Connect schemas and values, as Debezium maps them;
//! - [`envelope`]: the key, row and envelope schemas of a table, and its records;
//! - `task`: the source task, which snapshots and then streams.
//!
//! # How changes are read, and why none is lost
//!
//! The task reads a logical replication slot through SQL
//! (`pg_logical_slot_peek_binary_changes`), not the streaming replication protocol.
//! Peeking does not consume: the slot keeps every change until the task moves its
//! confirmed position with `pg_replication_slot_advance`, which it does only in
//! [`SourceTask::commit`](crate::connector::SourceTask::commit), i.e. only past changes
//! whose records the cluster acknowledged and whose offsets were committed. A crash at any
//! point leaves the slot at or before the last committed record; on restart the task
//! skips what the committed offset says was already delivered. Delivery is therefore
//! at-least-once at worst (a crash between committing offsets and advancing the slot
//! re-reads, then skips), and never loses a committed change.
//!
//! # The initial snapshot
//!
//! With `snapshot.mode=initial` (the default) the task creates the slot first, then reads
//! every captured table in one `REPEATABLE READ` transaction (op `r`), then streams from
//! the slot. Nothing is lost between the two: a transaction that committed before the
//! slot existed is in the snapshot, one that committed after is in the slot. A transaction
//! that committed after the slot was created but before the snapshot started is in both,
//! so its rows may be emitted twice (as `r`, then as `c`/`u`/`d`); applied in order by a
//! consumer that upserts by key, the result is the same. The offset remembers that the
//! snapshot completed (`snapshot_completed`), so that it runs once.
//!
//! # Requirements
//!
//! The server needs `wal_level=logical` and PostgreSQL 10 or later (11 for
//! `pg_replication_slot_advance`); the user needs the `REPLICATION` attribute (or to be a
//! superuser) and, for `publication.autocreate.mode=all_tables`, to be a superuser. The
//! database must be UTF-8. As with Debezium, a table in a publication needs a replica
//! identity (a primary key, or `REPLICA IDENTITY FULL`) for PostgreSQL to allow updates
//! and deletes on it.

pub mod envelope;
pub mod pgoutput;
mod task;
pub mod types;

use std::time::Duration;

use regex::Regex;

use crate::config::{
    ConfigDef, ConfigError, ConfigType, ConfigValue, Configs, Importance, Validator,
};
use crate::connector::{ConnectError, Connector, ConnectorContext, Plugin, TaskFactory};
use types::DecimalMode;

/// Debezium's PostgreSQL connector, under its names.
pub const POSTGRES_CDC_SOURCE: Plugin = Plugin {
    class: "io.debezium.connector.postgresql.PostgresConnector",
    aliases: &["PostgresCdcSource", "PostgresConnector"],
    connector: || Box::new(PostgresConnector::default()),
    task: TaskFactory::Source(|| Box::new(task::PostgresCdcTask::default())),
};

const GROUP_CONNECTION: &str = "Connection";
const GROUP_CAPTURE: &str = "Capture";
const GROUP_EVENTS: &str = "Events";

/// How long connecting to the database may take, in validation and in the task.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn config_def() -> ConfigDef {
    ConfigDef::new()
        .define(
            "database.hostname",
            ConfigType::String,
            None,
            Importance::High,
            GROUP_CONNECTION,
            "The PostgreSQL server's host name or address.",
        )
        .validated(Validator::NonEmpty)
        .define(
            "database.port",
            ConfigType::Int,
            Some("5432"),
            Importance::High,
            GROUP_CONNECTION,
            "The PostgreSQL server's port.",
        )
        .validated(Validator::Range {
            min: 1,
            max: Some(65535),
        })
        .define(
            "database.user",
            ConfigType::String,
            None,
            Importance::High,
            GROUP_CONNECTION,
            "The user to connect as; it needs the REPLICATION attribute.",
        )
        .validated(Validator::NonEmpty)
        .define(
            "database.password",
            ConfigType::Password,
            None,
            Importance::High,
            GROUP_CONNECTION,
            "The user's password.",
        )
        .optional()
        .define(
            "database.dbname",
            ConfigType::String,
            None,
            Importance::High,
            GROUP_CONNECTION,
            "The database to capture changes of.",
        )
        .validated(Validator::NonEmpty)
        .define(
            "topic.prefix",
            ConfigType::String,
            None,
            Importance::High,
            GROUP_EVENTS,
            "The prefix of the topics: a table's changes go to <prefix>.<schema>.<table>. Also the \
             source partition and the `name` of each event's source block.",
        )
        .validated(Validator::NonEmpty)
        .define(
            "schema.include.list",
            ConfigType::List,
            None,
            Importance::Medium,
            GROUP_CAPTURE,
            "Regular expressions of the schemas to capture (matched whole, case-insensitive); \
             all but the system schemas when unset.",
        )
        .optional()
        .define(
            "schema.exclude.list",
            ConfigType::List,
            None,
            Importance::Medium,
            GROUP_CAPTURE,
            "Regular expressions of the schemas not to capture.",
        )
        .optional()
        .define(
            "table.include.list",
            ConfigType::List,
            None,
            Importance::Medium,
            GROUP_CAPTURE,
            "Regular expressions of the tables to capture, as <schema>.<table> (matched whole, \
             case-insensitive); all when unset.",
        )
        .optional()
        .define(
            "table.exclude.list",
            ConfigType::List,
            None,
            Importance::Medium,
            GROUP_CAPTURE,
            "Regular expressions of the tables not to capture, as <schema>.<table>.",
        )
        .optional()
        .define(
            "plugin.name",
            ConfigType::String,
            Some("pgoutput"),
            Importance::Medium,
            GROUP_CAPTURE,
            "The logical decoding plugin; only PostgreSQL's built-in pgoutput is supported.",
        )
        .validated(Validator::OneOf(&["pgoutput"]))
        .define(
            "slot.name",
            ConfigType::String,
            Some("debezium"),
            Importance::Medium,
            GROUP_CAPTURE,
            "The logical replication slot to read; created when missing.",
        )
        .validated(Validator::NonEmpty)
        .define(
            "slot.drop.on.stop",
            ConfigType::Boolean,
            Some("false"),
            Importance::Low,
            GROUP_CAPTURE,
            "Whether to drop the slot when the task stops (for tests: changes made while the \
             connector is stopped are then lost).",
        )
        .define(
            "publication.name",
            ConfigType::String,
            Some("dbz_publication"),
            Importance::Medium,
            GROUP_CAPTURE,
            "The publication pgoutput publishes the changes of.",
        )
        .validated(Validator::NonEmpty)
        .define(
            "publication.autocreate.mode",
            ConfigType::String,
            Some("all_tables"),
            Importance::Medium,
            GROUP_CAPTURE,
            "all_tables: create the publication FOR ALL TABLES when missing (needs a \
             superuser); filtered: create it, or set its tables, to the captured tables at \
             start; disabled: it must exist.",
        )
        .validated(Validator::OneOf(&["all_tables", "filtered", "disabled"]))
        .define(
            "snapshot.mode",
            ConfigType::String,
            Some("initial"),
            Importance::Medium,
            GROUP_CAPTURE,
            "initial: snapshot the tables once, then stream; initial_only: snapshot once and \
             stop there; never (or no_data): only stream; always: snapshot at every start.",
        )
        .validated(Validator::OneOf(&[
            "initial",
            "initial_only",
            "never",
            "no_data",
            "always",
        ]))
        .define(
            "tombstones.on.delete",
            ConfigType::Boolean,
            Some("true"),
            Importance::Medium,
            GROUP_EVENTS,
            "Whether a delete is followed by a tombstone (the key with a null value).",
        )
        .define(
            "decimal.handling.mode",
            ConfigType::String,
            Some("precise"),
            Importance::Medium,
            GROUP_EVENTS,
            "How numerics are written: precise (Connect Decimal), double, or string.",
        )
        .validated(Validator::OneOf(&["precise", "double", "string"]))
        .define(
            "skipped.operations",
            ConfigType::List,
            Some("t"),
            Importance::Low,
            GROUP_EVENTS,
            "The operations not to emit: c (inserts), u (updates), d (deletes), t (truncates); \
             none for none.",
        )
        .define(
            "max.batch.size",
            ConfigType::Int,
            Some("2048"),
            Importance::Low,
            GROUP_CAPTURE,
            "About how many changes a poll reads (whole transactions are read, so a poll may \
             return more), and how many rows a snapshot poll reads.",
        )
        .validated(Validator::Range {
            min: 1,
            max: Some(1_000_000),
        })
        .define(
            "poll.interval.ms",
            ConfigType::Long,
            Some("500"),
            Importance::Low,
            GROUP_CAPTURE,
            "How long a poll waits when there is no new change.",
        )
        .validated(Validator::Range {
            min: 1,
            max: Some(60_000),
        })
}

/// The snapshot modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnapshotMode {
    Initial,
    InitialOnly,
    Never,
    Always,
}

/// The publication modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Autocreate {
    AllTables,
    Filtered,
    Disabled,
}

/// Which operations are not emitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Skipped {
    pub(crate) creates: bool,
    pub(crate) updates: bool,
    pub(crate) deletes: bool,
    pub(crate) truncates: bool,
}

/// A connector configuration, read.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) hostname: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) password: Option<String>,
    pub(crate) dbname: String,
    pub(crate) prefix: String,
    pub(crate) schema_include: Vec<Regex>,
    pub(crate) schema_exclude: Vec<Regex>,
    pub(crate) table_include: Vec<Regex>,
    pub(crate) table_exclude: Vec<Regex>,
    pub(crate) slot: String,
    pub(crate) slot_drop_on_stop: bool,
    pub(crate) publication: String,
    pub(crate) autocreate: Autocreate,
    pub(crate) snapshot_mode: SnapshotMode,
    pub(crate) tombstones_on_delete: bool,
    pub(crate) decimal_mode: DecimalMode,
    pub(crate) skipped: Skipped,
    pub(crate) max_batch_size: usize,
    pub(crate) poll_interval: Duration,
}

/// Splits a list of regular expressions on commas, as Debezium does; `\,` is a comma
/// inside an expression.
fn split_regex_list(text: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                current.push(',');
                chars.next();
            }
            ',' => items.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    items.push(current);
    items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The expressions of list `key`, each matching whole and case-insensitively, or the error
/// on `key` naming the first that is not a valid expression.
fn regex_list(configs: &Configs, key: &str) -> Result<Vec<Regex>, ConfigError> {
    let Some(text) = configs.get(key) else {
        return Ok(Vec::new());
    };
    split_regex_list(text)
        .iter()
        .map(|item| {
            Regex::new(&format!("(?i)^(?:{item})$")).map_err(|e| {
                ConfigError::invalid(
                    key,
                    text,
                    &format!("{item:?} is not a valid regular expression: {e}"),
                )
            })
        })
        .collect()
}

/// `<what>.include.list` and `<what>.exclude.list` exclude each other, as in Debezium; the
/// error is on the exclude list.
fn exclusive(configs: &Configs, what: &str) -> Result<(), ConfigError> {
    let include = format!("{what}.include.list");
    let exclude = format!("{what}.exclude.list");
    let set = |key: &str| configs.get(key).is_some_and(|v| !v.trim().is_empty());
    if set(&include) && set(&exclude) {
        return Err(ConfigError::invalid(
            &exclude,
            configs.get(&exclude).unwrap_or(""),
            &format!("{include} and {exclude} cannot both be set"),
        ));
    }
    Ok(())
}

/// `skipped.operations`, read.
fn skipped_operations(configs: &Configs) -> Result<Skipped, ConfigError> {
    let mut skipped = Skipped::default();
    let text = configs.get("skipped.operations").unwrap_or("t");
    for op in crate::config::split_list(text) {
        match op.to_ascii_lowercase().as_str() {
            "c" => skipped.creates = true,
            "u" => skipped.updates = true,
            "d" => skipped.deletes = true,
            "t" => skipped.truncates = true,
            "none" => {}
            _ => {
                return Err(ConfigError::invalid(
                    "skipped.operations",
                    text,
                    &format!("unknown operation {op:?}: expected c, u, d, t or none"),
                ))
            }
        }
    }
    Ok(skipped)
}

fn one_of<T: Copy>(
    configs: &Configs,
    key: &str,
    default: &str,
    choices: &[(&str, T)],
) -> Result<T, ConfigError> {
    let text = configs.get(key).map(str::trim).unwrap_or(default);
    let text = if text.is_empty() { default } else { text };
    choices
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            ConfigError::invalid(
                key,
                text,
                &format!("String must be one of: {}", names.join(", ")),
            )
        })
}

fn required_text<'a>(configs: &'a Configs, key: &str) -> Result<&'a str, ConfigError> {
    let text = configs.required(key)?.trim();
    if text.is_empty() {
        return Err(ConfigError::invalid(key, text, "String must be non-empty"));
    }
    Ok(text)
}

impl Settings {
    pub(crate) fn from_configs(configs: &Configs) -> Result<Settings, ConfigError> {
        let port: i64 = configs.parsed_or("database.port", 5432, ConfigType::Int)?;
        let port = u16::try_from(port).ok().filter(|p| *p > 0).ok_or_else(|| {
            ConfigError::invalid(
                "database.port",
                &port.to_string(),
                "Value must be between 1 and 65535",
            )
        })?;
        let table_include = regex_list(configs, "table.include.list")?;
        let table_exclude = regex_list(configs, "table.exclude.list")?;
        exclusive(configs, "table")?;
        let schema_include = regex_list(configs, "schema.include.list")?;
        let schema_exclude = regex_list(configs, "schema.exclude.list")?;
        exclusive(configs, "schema")?;
        one_of(configs, "plugin.name", "pgoutput", &[("pgoutput", ())])?;
        let skipped = skipped_operations(configs)?;
        let batch: i64 = configs.parsed_or("max.batch.size", 2048, ConfigType::Int)?;
        let poll: i64 = configs.parsed_or("poll.interval.ms", 500, ConfigType::Long)?;
        Ok(Settings {
            hostname: required_text(configs, "database.hostname")?.to_owned(),
            port,
            user: required_text(configs, "database.user")?.to_owned(),
            password: configs.get("database.password").map(str::to_owned),
            dbname: required_text(configs, "database.dbname")?.to_owned(),
            prefix: required_text(configs, "topic.prefix")?.to_owned(),
            schema_include,
            schema_exclude,
            table_include,
            table_exclude,
            slot: configs
                .get("slot.name")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .unwrap_or("debezium")
                .to_owned(),
            slot_drop_on_stop: configs.bool_or("slot.drop.on.stop", false)?,
            publication: configs
                .get("publication.name")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .unwrap_or("dbz_publication")
                .to_owned(),
            autocreate: one_of(
                configs,
                "publication.autocreate.mode",
                "all_tables",
                &[
                    ("all_tables", Autocreate::AllTables),
                    ("filtered", Autocreate::Filtered),
                    ("disabled", Autocreate::Disabled),
                ],
            )?,
            snapshot_mode: one_of(
                configs,
                "snapshot.mode",
                "initial",
                &[
                    ("initial", SnapshotMode::Initial),
                    ("initial_only", SnapshotMode::InitialOnly),
                    ("never", SnapshotMode::Never),
                    ("no_data", SnapshotMode::Never),
                    ("always", SnapshotMode::Always),
                ],
            )?,
            tombstones_on_delete: configs.bool_or("tombstones.on.delete", true)?,
            decimal_mode: one_of(
                configs,
                "decimal.handling.mode",
                "precise",
                &[
                    ("precise", DecimalMode::Precise),
                    ("double", DecimalMode::Double),
                    ("string", DecimalMode::String),
                ],
            )?,
            skipped,
            max_batch_size: usize::try_from(batch.clamp(1, 1_000_000)).unwrap_or(2048),
            poll_interval: Duration::from_millis(
                u64::try_from(poll.clamp(1, 60_000)).unwrap_or(500),
            ),
        })
    }

    /// Whether table `schema.table` is captured.
    pub(crate) fn includes(&self, schema: &str, table: &str) -> bool {
        let schema_ok = if self.schema_include.is_empty() {
            !self.schema_exclude.iter().any(|r| r.is_match(schema))
        } else {
            self.schema_include.iter().any(|r| r.is_match(schema))
        };
        if !schema_ok {
            return false;
        }
        let name = format!("{schema}.{table}");
        if self.table_include.is_empty() {
            !self.table_exclude.iter().any(|r| r.is_match(&name))
        } else {
            self.table_include.iter().any(|r| r.is_match(&name))
        }
    }

    /// The connection configuration.
    pub(crate) fn pg_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.hostname)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name("runnel-cdc")
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(password) = &self.password {
            config.password(password);
        }
        config
    }
}

/// The error on `database.hostname` when the server's `wal_level` is not `logical`.
fn wal_level_error(level: &str) -> Option<String> {
    (!level.eq_ignore_ascii_case("logical")).then(|| {
        format!(
            "PostgreSQL's wal_level is '{level}', but change data capture needs 'logical': set \
             wal_level = logical (postgresql.conf or ALTER SYSTEM) and restart the server"
        )
    })
}

/// What checking the database found wrong, by key.
#[derive(Debug, Default)]
struct DatabaseCheck {
    hostname: Vec<String>,
    user: Vec<String>,
}

/// Connects with `settings` and checks `wal_level` and the user's right to replicate. Runs
/// on a thread of its own with its own runtime, so that it works whether or not the caller
/// is inside a runtime.
fn check_database(settings: &Settings) -> DatabaseCheck {
    let settings = settings.clone();
    let address = format!("{}:{}", settings.hostname, settings.port);
    let checked = std::thread::Builder::new()
        .name("cdc-validate".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start a runtime to check the database: {e}"))?;
            runtime.block_on(async move {
                let check = async {
                    let (client, connection) = settings
                        .pg_config()
                        .connect(tokio_postgres::NoTls)
                        .await
                        .map_err(|e| format!("Unable to connect to PostgreSQL at {address}: {e}"))?;
                    let driver = tokio::spawn(connection);
                    let mut found = DatabaseCheck::default();
                    let level = client
                        .query_one("SELECT current_setting('wal_level')", &[])
                        .await
                        .and_then(|row| row.try_get::<_, String>(0))
                        .map_err(|e| format!("cannot read wal_level: {e}"))?;
                    found.hostname.extend(wal_level_error(&level));
                    let may_replicate = client
                        .query_one(
                            "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user",
                            &[],
                        )
                        .await
                        .and_then(|row| row.try_get::<_, bool>(0));
                    if let Ok(false) = may_replicate {
                        found.user.push(format!(
                            "User {} may not use replication slots: it needs the REPLICATION \
                             attribute (ALTER ROLE {} REPLICATION) or to be a superuser",
                            settings.user, settings.user
                        ));
                    }
                    drop(client);
                    let _ = driver.await;
                    Ok::<DatabaseCheck, String>(found)
                };
                match tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(5), check).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(format!(
                        "Unable to connect to PostgreSQL at {address}: no answer within {:?}",
                        CONNECT_TIMEOUT + Duration::from_secs(5)
                    )),
                }
            })
        })
        .map_err(|e| format!("cannot start a thread to check the database: {e}"))
        .and_then(|thread| {
            thread
                .join()
                .unwrap_or_else(|_| Err("checking the database panicked".to_owned()))
        });
    checked.unwrap_or_else(|why| DatabaseCheck {
        hostname: vec![why],
        user: Vec::new(),
    })
}

/// The connector: one task, since a slot has one reader.
#[derive(Debug, Default)]
struct PostgresConnector {
    configs: Configs,
}

impl Connector for PostgresConnector {
    fn config_def(&self) -> ConfigDef {
        config_def()
    }

    fn validate(&self, configs: &Configs) -> Vec<ConfigValue> {
        let mut values = config_def().validate(configs);
        let mut push = |key: &str, message: String| {
            if let Some(value) = values.iter_mut().find(|v| v.name == key) {
                if !value.errors.contains(&message) {
                    value.errors.push(message);
                }
            }
        };
        // What each key's type and rule cannot see: the regular expressions of the lists,
        // keys that exclude each other, the operations list.
        for key in [
            "table.include.list",
            "table.exclude.list",
            "schema.include.list",
            "schema.exclude.list",
        ] {
            if let Err(e) = regex_list(configs, key) {
                push(key, e.message);
            }
        }
        let checks = [
            exclusive(configs, "table"),
            exclusive(configs, "schema"),
            skipped_operations(configs).map(drop),
        ];
        for error in checks.into_iter().filter_map(Result::err) {
            push(&error.key, error.message);
        }
        let connection_keys = [
            "database.hostname",
            "database.port",
            "database.user",
            "database.password",
            "database.dbname",
        ];
        let connection_ok = values
            .iter()
            .filter(|v| connection_keys.contains(&v.name.as_str()))
            .all(|v| v.errors.is_empty());
        // Connecting needs only the connection keys; build settings from them alone, so that
        // a mistake elsewhere does not hide an unreachable database.
        if connection_ok {
            let mut connection = Configs::new();
            for key in connection_keys {
                if let Some(value) = configs.get(key) {
                    connection.set(key, value);
                }
            }
            connection.set("topic.prefix", "validation");
            if let Ok(settings) = Settings::from_configs(&connection) {
                let found = check_database(&settings);
                let mut push = |key: &str, messages: Vec<String>| {
                    if let Some(value) = values.iter_mut().find(|v| v.name == key) {
                        value.errors.extend(messages);
                    }
                };
                push("database.hostname", found.hostname);
                push("database.user", found.user);
            }
        }
        values
    }

    fn start(&mut self, configs: &Configs, _context: ConnectorContext) -> Result<(), ConnectError> {
        Settings::from_configs(configs)?;
        self.configs = configs.clone();
        Ok(())
    }

    fn task_configs(&mut self, _max_tasks: usize) -> Result<Vec<Configs>, ConnectError> {
        // A replication slot has one reader at a time: one task, whatever tasks.max says.
        Ok(vec![self.configs.clone()])
    }

    fn stop(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> Configs {
        let mut configs = Configs::new();
        for (k, v) in pairs {
            configs.set(*k, *v);
        }
        configs
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("database.hostname", "db"),
            ("database.user", "u"),
            ("database.dbname", "d"),
            ("topic.prefix", "p"),
        ]
    }

    #[test]
    fn settings_have_debeziums_defaults() {
        let s = Settings::from_configs(&configs(&base())).unwrap();
        assert_eq!(s.port, 5432);
        assert_eq!(s.slot, "debezium");
        assert_eq!(s.publication, "dbz_publication");
        assert_eq!(s.autocreate, Autocreate::AllTables);
        assert_eq!(s.snapshot_mode, SnapshotMode::Initial);
        assert!(s.tombstones_on_delete);
        assert_eq!(s.decimal_mode, DecimalMode::Precise);
        assert!(s.skipped.truncates && !s.skipped.deletes);
        assert!(s.includes("public", "items"));
    }

    #[test]
    fn table_filters_match_whole_names_case_insensitively() {
        let mut pairs = base();
        pairs.push(("table.include.list", r"public\.item.*, inventory\.orders"));
        let s = Settings::from_configs(&configs(&pairs)).unwrap();
        assert!(s.includes("public", "items"));
        assert!(s.includes("PUBLIC", "Items"));
        assert!(s.includes("inventory", "orders"));
        assert!(!s.includes("inventory", "orders_old"));
        assert!(!s.includes("other", "items"));
        let mut pairs = base();
        pairs.push(("table.exclude.list", r"public\.secret"));
        pairs.push(("schema.include.list", "public"));
        let s = Settings::from_configs(&configs(&pairs)).unwrap();
        assert!(!s.includes("public", "secret"));
        assert!(s.includes("public", "items"));
        assert!(!s.includes("other", "items"));
        assert_eq!(split_regex_list(r"a{1\,2},b"), ["a{1,2}", "b"]);
    }

    #[test]
    fn wal_level_must_be_logical() {
        assert_eq!(wal_level_error("logical"), None);
        let message = wal_level_error("replica").unwrap();
        assert!(message.contains("'replica'") && message.contains("wal_level = logical"));
    }

    #[test]
    fn validation_errors_land_on_exactly_the_wrong_keys() {
        let port = {
            // A port nothing listens on: the connection is refused at once.
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let port = port.to_string();
        let values = PostgresConnector::default().validate(&configs(&[
            ("database.hostname", "127.0.0.1"),
            ("database.port", &port),
            ("database.user", "u"),
            ("database.dbname", "d"),
            ("plugin.name", "decoderbufs"),
            ("table.include.list", "public\\.ok,bad(regex"),
            ("skipped.operations", "c,x"),
        ]));
        let wrong: Vec<&str> = values
            .iter()
            .filter(|v| !v.errors.is_empty())
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(
            wrong,
            [
                "database.hostname",
                "topic.prefix",
                "table.include.list",
                "plugin.name",
                "skipped.operations"
            ]
        );
        let errors = |key: &str| {
            values
                .iter()
                .find(|v| v.name == key)
                .map(|v| v.errors.join("; "))
                .unwrap_or_default()
        };
        assert!(
            errors("database.hostname").contains("Unable to connect"),
            "{}",
            errors("database.hostname")
        );
        assert!(errors("plugin.name").contains("pgoutput"));
        assert!(errors("table.include.list").contains("bad(regex"));
        assert!(errors("topic.prefix").contains("Missing required configuration"));
    }

    #[test]
    fn the_connector_runs_one_task() {
        let mut connector = PostgresConnector::default();
        let configs = configs(&base());
        connector
            .start(&configs, ConnectorContext::new(std::sync::Arc::new(|| {})))
            .unwrap();
        assert_eq!(connector.task_configs(4).unwrap(), vec![configs]);
    }
}
