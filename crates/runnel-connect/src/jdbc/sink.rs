//! The JDBC sink: records written into tables, with Confluent's keys and behaviour.
//!
//! Each record goes to the table `table.name.format` names (`${topic}` by default). Its
//! columns come from the record's value struct (filtered by `fields.whitelist`) and its
//! primary key from `pk.mode`: none, the record's Kafka coordinates (`kafka`), its key
//! (`record_key`: a primitive key is one column, a struct key its fields) or fields of its
//! value (`record_value`). `insert.mode` writes rows with INSERT, an upsert
//! (`INSERT ... ON CONFLICT (pk) DO UPDATE`), or UPDATE; with `delete.enabled`, a
//! tombstone deletes the row of its key. Missing tables are created (`auto.create`) and
//! missing columns added as nullable (`auto.evolve`).
//!
//! Each `put` is one transaction, committed before it returns: when it fails, the worker
//! hands the same records again and nothing of them was written, and what earlier puts
//! wrote is already durable, so `flush` has nothing left to do. (Committing only in
//! `flush` would lose writes: a failed flush is not followed by the records again.)
//! PostgreSQL receives each batch's rows as multi-row statements, sent pipelined.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use super::db::{ColumnMeta, Db, DbError, Dialect, TableId};
use super::values::{self, SqlValue};
use super::{add_error, Connection};
use crate::config::{
    ConfigDef, ConfigError, ConfigType, ConfigValue, Configs, Importance, Validator,
};
use crate::connector::{
    ConnectError, Connector, ConnectorContext, SinkTask, TaskContext, TopicPartition,
};
use crate::data::{Schema, SchemaType, SinkRecord, Value};

const WRITES_GROUP: &str = "Writes";
const FIELDS_GROUP: &str = "Data Mapping";
const DDL_GROUP: &str = "DDL Support";
const RETRIES_GROUP: &str = "Retries";

/// The primary key columns of `pk.mode=kafka` when `pk.fields` names none.
const KAFKA_PK_FIELDS: [&str; 3] = ["__connect_topic", "__connect_partition", "__connect_offset"];
/// The column of a primitive key when `pk.fields` names none.
const KEY_COLUMN: &str = "__connect_key";
/// PostgreSQL's limit on the parameters of one statement.
const MAX_PARAMETERS: usize = 65_535;
/// The most rows one multi-row statement carries: beyond this, planning a statement costs
/// more than the round trips it saves.
const MAX_ROWS_PER_STATEMENT: usize = 1_000;

fn sink_def() -> ConfigDef {
    super::connection_def(ConfigDef::new())
        .define(
            "insert.mode",
            ConfigType::String,
            Some("insert"),
            Importance::High,
            WRITES_GROUP,
            "How rows are written: insert, upsert (insert or update by primary key), or \
             update.",
        )
        .validated(Validator::OneOf(&["insert", "upsert", "update"]))
        .define(
            "batch.size",
            ConfigType::Int,
            Some("3000"),
            Importance::Medium,
            WRITES_GROUP,
            "The most rows written together.",
        )
        .validated(Validator::Range { min: 1, max: None })
        .define(
            "delete.enabled",
            ConfigType::Boolean,
            Some("false"),
            Importance::Medium,
            WRITES_GROUP,
            "Whether a record with a null value deletes the row of its key; requires \
             pk.mode=record_key.",
        )
        .define(
            "table.name.format",
            ConfigType::String,
            Some("${topic}"),
            Importance::Medium,
            FIELDS_GROUP,
            "The table to write a record to; ${topic} stands for the record's topic.",
        )
        .validated(Validator::NonEmpty)
        .define(
            "pk.mode",
            ConfigType::String,
            Some("none"),
            Importance::High,
            FIELDS_GROUP,
            "Where the primary key comes from: none, kafka (topic, partition, offset), \
             record_key, or record_value.",
        )
        .validated(Validator::OneOf(&[
            "none",
            "kafka",
            "record_key",
            "record_value",
        ]))
        .define(
            "pk.fields",
            ConfigType::List,
            Some(""),
            Importance::Medium,
            FIELDS_GROUP,
            "The primary key's columns: for kafka, three names; for record_key, the key's \
             fields (or one name for a primitive key); for record_value, the value's fields. \
             Empty: all fields, or the defaults.",
        )
        .define(
            "fields.whitelist",
            ConfigType::List,
            Some(""),
            Importance::Medium,
            FIELDS_GROUP,
            "The value's fields to write; empty for all.",
        )
        .define(
            "auto.create",
            ConfigType::Boolean,
            Some("false"),
            Importance::Medium,
            DDL_GROUP,
            "Whether to create a missing table from the record's schema.",
        )
        .define(
            "auto.evolve",
            ConfigType::Boolean,
            Some("false"),
            Importance::Medium,
            DDL_GROUP,
            "Whether to add columns for fields a table lacks (optional ones, or ones with a \
             default).",
        )
        .define(
            "max.retries",
            ConfigType::Int,
            Some("10"),
            Importance::Medium,
            RETRIES_GROUP,
            "How many times a write failing for a passing reason (a lost connection, a lock, a \
             serialization conflict) is retried before the task fails.",
        )
        .validated(Validator::Range { min: 0, max: None })
        .define(
            "retry.backoff.ms",
            ConfigType::Int,
            Some("3000"),
            Importance::Medium,
            RETRIES_GROUP,
            "How long to wait before retrying a failed write.",
        )
        .validated(Validator::Range { min: 0, max: None })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InsertMode {
    Insert,
    Upsert,
    Update,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PkMode {
    None,
    Kafka,
    RecordKey,
    RecordValue,
}

/// A sink connector's configuration, read and checked.
#[derive(Debug, Clone)]
struct SinkSettings {
    connection: Connection,
    insert_mode: InsertMode,
    batch_size: usize,
    delete_enabled: bool,
    table_format: String,
    pk_mode: PkMode,
    pk_fields: Vec<String>,
    fields_whitelist: Vec<String>,
    auto_create: bool,
    auto_evolve: bool,
    max_retries: u32,
    retry_backoff: Duration,
}

fn lower(configs: &Configs, key: &str, default: &str) -> String {
    configs
        .get(key)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or(default)
        .to_ascii_lowercase()
}

/// The checks between keys, each an error on the key at fault.
fn cross_checks(configs: &Configs) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let pk_mode = lower(configs, "pk.mode", "none");
    let insert_mode = lower(configs, "insert.mode", "insert");
    if configs.bool_or("delete.enabled", false) == Ok(true) && pk_mode != "record_key" {
        errors.push(ConfigError {
            key: "delete.enabled".to_owned(),
            message: format!(
                "Deletes are only supported for pk.mode record_key (pk.mode is {pk_mode})"
            ),
        });
    }
    if matches!(insert_mode.as_str(), "upsert" | "update") && pk_mode == "none" {
        errors.push(ConfigError {
            key: "pk.mode".to_owned(),
            message: format!(
                "insert.mode {insert_mode} writes rows by primary key: pk.mode must not be none"
            ),
        });
    }
    let pk_fields = configs.list("pk.fields");
    if pk_mode == "kafka" && !pk_fields.is_empty() && pk_fields.len() != 3 {
        errors.push(ConfigError {
            key: "pk.fields".to_owned(),
            message: format!(
                "pk.mode kafka takes three pk.fields (topic, partition and offset columns), not {}",
                pk_fields.len()
            ),
        });
    }
    if !configs
        .get("table.name.format")
        .is_none_or(|f| f.contains("${topic}") || !f.contains("${"))
    {
        errors.push(ConfigError {
            key: "table.name.format".to_owned(),
            message: "table.name.format may only use ${topic}".to_owned(),
        });
    }
    errors
}

impl SinkSettings {
    fn from_configs(configs: &Configs) -> Result<SinkSettings, ConnectError> {
        sink_def().check(configs)?;
        if let Some(error) = cross_checks(configs).into_iter().next() {
            return Err(error.into());
        }
        Ok(SinkSettings {
            connection: Connection::from_configs(configs)?,
            insert_mode: match lower(configs, "insert.mode", "insert").as_str() {
                "upsert" => InsertMode::Upsert,
                "update" => InsertMode::Update,
                _ => InsertMode::Insert,
            },
            batch_size: configs
                .parsed_or("batch.size", 3000usize, ConfigType::Int)?
                .max(1),
            delete_enabled: configs.bool_or("delete.enabled", false)?,
            table_format: configs
                .get("table.name.format")
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .unwrap_or("${topic}")
                .to_owned(),
            pk_mode: match lower(configs, "pk.mode", "none").as_str() {
                "kafka" => PkMode::Kafka,
                "record_key" => PkMode::RecordKey,
                "record_value" => PkMode::RecordValue,
                _ => PkMode::None,
            },
            pk_fields: configs.list("pk.fields"),
            fields_whitelist: configs.list("fields.whitelist"),
            auto_create: configs.bool_or("auto.create", false)?,
            auto_evolve: configs.bool_or("auto.evolve", false)?,
            max_retries: configs.parsed_or("max.retries", 10u32, ConfigType::Int)?,
            retry_backoff: Duration::from_millis(configs.parsed_or(
                "retry.backoff.ms",
                3000u64,
                ConfigType::Int,
            )?),
        })
    }
}

/// The sink connector: every task writes whatever its partitions hold.
#[derive(Debug, Default)]
pub(super) struct JdbcSinkConnector {
    configs: Configs,
}

impl Connector for JdbcSinkConnector {
    fn config_def(&self) -> ConfigDef {
        sink_def()
    }

    fn validate(&self, configs: &Configs) -> Vec<ConfigValue> {
        let mut values = sink_def().validate(configs);
        for error in cross_checks(configs) {
            add_error(&mut values, &error.key, error.message);
        }
        super::validate_connection(&mut values, configs, true);
        values
    }

    fn start(&mut self, configs: &Configs, _context: ConnectorContext) -> Result<(), ConnectError> {
        SinkSettings::from_configs(configs)?;
        self.configs = configs.clone();
        Ok(())
    }

    fn task_configs(&mut self, max_tasks: usize) -> Result<Vec<Configs>, ConnectError> {
        Ok(vec![self.configs.clone(); max_tasks.max(1)])
    }

    fn stop(&mut self) {}
}

/// Where a column's value comes from in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Topic,
    Partition,
    Offset,
    /// The whole (primitive) key.
    Key,
    KeyField(usize),
    ValueField(usize),
}

#[derive(Debug, Clone)]
struct PlanColumn {
    /// The field's name, then the table's spelling of it once the table is known.
    name: String,
    schema: Schema,
    source: Source,
}

/// How records of one pair of key and value schemas become rows of one table.
#[derive(Debug, Clone)]
struct Plan {
    key_schema: Option<Schema>,
    value_schema: Option<Schema>,
    keys: Vec<PlanColumn>,
    values: Vec<PlanColumn>,
}

fn required(schema: Schema) -> Schema {
    Schema {
        optional: false,
        ..schema
    }
}

impl Plan {
    /// The columns of records with these schemas, as Confluent's `FieldsMetadata` derives
    /// them.
    fn new(
        settings: &SinkSettings,
        key_schema: Option<&Schema>,
        value_schema: Option<&Schema>,
    ) -> Result<Plan, String> {
        let value_struct = match value_schema {
            Some(schema) if schema.kind == SchemaType::Struct => Some(schema),
            Some(schema) => {
                return Err(format!(
                    "the value schema is a {}, not a struct",
                    schema.kind.name()
                ))
            }
            None => None,
        };
        let mut keys = Vec::new();
        match settings.pk_mode {
            PkMode::None => {}
            PkMode::Kafka => {
                let names: Vec<String> = if settings.pk_fields.is_empty() {
                    KAFKA_PK_FIELDS.iter().map(|s| (*s).to_owned()).collect()
                } else {
                    settings.pk_fields.clone()
                };
                let kinds = [
                    (SchemaType::String, Source::Topic),
                    (SchemaType::Int32, Source::Partition),
                    (SchemaType::Int64, Source::Offset),
                ];
                for (name, (kind, source)) in names.into_iter().zip(kinds) {
                    keys.push(PlanColumn {
                        name,
                        schema: Schema::new(kind),
                        source,
                    });
                }
            }
            PkMode::RecordKey => {
                let key = key_schema.ok_or("pk.mode record_key needs records with a key schema")?;
                if key.kind == SchemaType::Struct {
                    let names: Vec<String> = if settings.pk_fields.is_empty() {
                        key.fields.iter().map(|f| f.name.clone()).collect()
                    } else {
                        settings.pk_fields.clone()
                    };
                    for name in names {
                        let (at, field) = key
                            .field(&name)
                            .ok_or_else(|| format!("the key has no field {name:?} (pk.fields)"))?;
                        keys.push(PlanColumn {
                            name,
                            schema: required(field.schema.clone()),
                            source: Source::KeyField(at),
                        });
                    }
                } else if key.kind.is_primitive() {
                    if settings.pk_fields.len() > 1 {
                        return Err(
                            "a primitive key is one column: pk.fields names at most one".to_owned()
                        );
                    }
                    keys.push(PlanColumn {
                        name: settings
                            .pk_fields
                            .first()
                            .cloned()
                            .unwrap_or_else(|| KEY_COLUMN.to_owned()),
                        schema: required(key.clone()),
                        source: Source::Key,
                    });
                } else {
                    return Err(format!("a {} key cannot be a primary key", key.kind.name()));
                }
            }
            PkMode::RecordValue => {
                let value = value_struct.ok_or("pk.mode record_value needs a struct value")?;
                let names: Vec<String> = if settings.pk_fields.is_empty() {
                    value.fields.iter().map(|f| f.name.clone()).collect()
                } else {
                    settings.pk_fields.clone()
                };
                for name in names {
                    let (at, field) = value
                        .field(&name)
                        .ok_or_else(|| format!("the value has no field {name:?} (pk.fields)"))?;
                    keys.push(PlanColumn {
                        name,
                        schema: required(field.schema.clone()),
                        source: Source::ValueField(at),
                    });
                }
            }
        }
        let mut values = Vec::new();
        if let Some(value) = value_struct {
            for (at, field) in value.fields.iter().enumerate() {
                let is_key = keys.iter().any(|k| k.name == field.name);
                let listed = settings.fields_whitelist.is_empty()
                    || settings.fields_whitelist.contains(&field.name);
                if !is_key && listed {
                    values.push(PlanColumn {
                        name: field.name.clone(),
                        schema: field.schema.clone(),
                        source: Source::ValueField(at),
                    });
                }
            }
        }
        Ok(Plan {
            key_schema: key_schema.cloned(),
            value_schema: value_schema.cloned(),
            keys,
            values,
        })
    }

    fn columns(&self) -> impl Iterator<Item = &PlanColumn> {
        self.keys.iter().chain(&self.values)
    }

    /// The row of `record`: key columns then value columns (key columns only for a
    /// delete).
    fn bind(&self, record: &SinkRecord, delete: bool) -> Result<Vec<SqlValue>, String> {
        let columns: Box<dyn Iterator<Item = &PlanColumn>> = if delete {
            Box::new(self.keys.iter())
        } else {
            Box::new(self.columns())
        };
        let key = &record.record.key.value;
        let value = &record.record.value.value;
        let field = |container: &Value, at: usize| -> Value {
            match container {
                Value::Struct(values) => values.get(at).cloned().unwrap_or(Value::Null),
                _ => Value::Null,
            }
        };
        columns
            .map(|column| {
                let bound = match column.source {
                    Source::Topic => SqlValue::Text(record.record.topic.clone()),
                    Source::Partition => SqlValue::Int(record.record.partition.unwrap_or(0).into()),
                    Source::Offset => SqlValue::Int(record.kafka_offset),
                    Source::Key => values::from_connect(&column.schema, key)?,
                    Source::KeyField(at) => values::from_connect(&column.schema, &field(key, at))?,
                    Source::ValueField(at) => {
                        values::from_connect(&column.schema, &field(value, at))?
                    }
                };
                Ok(bound)
            })
            .collect::<Result<Vec<_>, String>>()
    }
}

/// What a write does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Write,
    Delete,
}

/// A table as the task knows it.
#[derive(Debug, Default)]
struct TableState {
    /// Its columns, once described (`Some(None)`: it does not exist).
    columns: Option<Option<Vec<ColumnMeta>>>,
    /// Plans for the schemas seen lately, newest last.
    plans: Vec<Plan>,
}

/// How many plans a table keeps (a topic whose schema alternates, deletes among writes).
const PLANS_PER_TABLE: usize = 4;

/// Rows of one plan and one operation, written together.
#[derive(Debug)]
struct Run {
    table: TableId,
    plan: Plan,
    op: Op,
    rows: Vec<Vec<SqlValue>>,
}

/// Writes records into tables.
#[derive(Debug, Default)]
pub(super) struct JdbcSinkTask {
    settings: Option<SinkSettings>,
    context: Option<TaskContext>,
    db: Option<Db>,
    tables: HashMap<TableId, TableState>,
    retries_left: u32,
}

fn coordinates(record: &SinkRecord) -> String {
    format!(
        "(topic='{}',partition={},offset={})",
        record.record.topic,
        record.record.partition.unwrap_or(-1),
        record.kafka_offset
    )
}

/// A failure of one record: never worth retrying.
fn record_error(record: &SinkRecord, why: impl std::fmt::Display) -> ConnectError {
    ConnectError::Failed(format!(
        "JdbcSink cannot write the record at {}: {why}",
        coordinates(record)
    ))
}

impl JdbcSinkTask {
    fn settings(&self) -> Result<&SinkSettings, ConnectError> {
        self.settings
            .as_ref()
            .ok_or_else(|| ConnectError::failed("the task is not started"))
    }

    /// Checks a record as Confluent's `RecordValidator` does, and says what it does.
    fn classify(settings: &SinkSettings, record: &SinkRecord) -> Result<Op, ConnectError> {
        let key = &record.record.key;
        let value = &record.record.value;
        let needs_key = settings.pk_mode == PkMode::RecordKey || settings.delete_enabled;
        if needs_key && (key.value.is_null() || key.schema.is_none()) {
            return Err(record_error(
                record,
                format!(
                    "pk.mode={} and delete.enabled={} need records with a non-null key and a \
                     key schema (a struct or a primitive), but this key is {}",
                    pk_mode_name(settings.pk_mode),
                    settings.delete_enabled,
                    if key.value.is_null() {
                        "null"
                    } else {
                        "schemaless"
                    }
                ),
            ));
        }
        if value.value.is_null() {
            return if settings.delete_enabled {
                Ok(Op::Delete)
            } else {
                Err(record_error(
                    record,
                    "its value is null (a tombstone) and delete.enabled is false: tombstones \
                     delete rows only with delete.enabled=true and pk.mode=record_key",
                ))
            };
        }
        match &value.schema {
            Some(schema) if schema.kind == SchemaType::Struct => Ok(Op::Write),
            Some(schema) => Err(record_error(
                record,
                format!(
                    "its value schema is a {}: rows are written from struct values",
                    schema.kind.name()
                ),
            )),
            None => Err(record_error(
                record,
                "its value has no schema (a schemaless map): the JDBC sink needs records with \
                 schemas, e.g. from the JsonConverter with schemas.enable=true",
            )),
        }
    }

    fn table_for(
        settings: &SinkSettings,
        dialect: Dialect,
        record: &SinkRecord,
    ) -> Result<TableId, ConnectError> {
        let name = settings
            .table_format
            .replace("${topic}", &record.record.topic);
        if name.trim().is_empty() {
            return Err(record_error(
                record,
                format!(
                    "table.name.format {:?} names no table for it",
                    settings.table_format
                ),
            ));
        }
        Ok(dialect.parse_table(&name))
    }

    /// The plan for `record`'s schemas in `table`, with the table created or evolved to
    /// fit it; `None` for a delete on a table that does not exist (nothing to delete).
    fn plan(
        &mut self,
        db: &mut Db,
        table: &TableId,
        record: &SinkRecord,
        op: Op,
    ) -> Result<Option<Plan>, DbOrRecord> {
        let settings = self.settings.clone().ok_or(DbOrRecord::NotStarted)?;
        let key_schema = record.record.key.schema.as_ref();
        let value_schema = match op {
            Op::Write => record.record.value.schema.as_ref(),
            Op::Delete => None,
        };
        let state = self.tables.entry(table.clone()).or_default();
        if let Some(plan) = state.plans.iter().find(|p| {
            p.key_schema.as_ref() == key_schema && p.value_schema.as_ref() == value_schema
        }) {
            return Ok(Some(plan.clone()));
        }
        let mut plan = Plan::new(&settings, key_schema, value_schema)
            .map_err(|why| DbOrRecord::Record(record_error(record, why)))?;
        if state.columns.is_none() {
            state.columns = Some(db.describe_table(table).map_err(DbOrRecord::Db)?);
        }
        let dialect = db.dialect();
        if matches!(state.columns, Some(None)) {
            if op == Op::Delete {
                return Ok(None);
            }
            if !settings.auto_create {
                return Err(DbOrRecord::Record(ConnectError::Failed(format!(
                    "Table {table} is missing and auto-creation is disabled (auto.create=false)"
                ))));
            }
            let sql = create_table(dialect, table, &plan)
                .map_err(|why| DbOrRecord::Record(record_error(record, why)))?;
            tracing::info!(%table, "creating the table");
            db.batch(&sql).map_err(DbOrRecord::Db)?;
            state.columns = Some(db.describe_table(table).map_err(DbOrRecord::Db)?);
        }
        let existing = match &state.columns {
            Some(Some(columns)) => columns.clone(),
            _ => {
                return Err(DbOrRecord::Db(DbError {
                    message: format!("table {table} cannot be described"),
                    retriable: true,
                    broken: false,
                }))
            }
        };
        let missing: Vec<&PlanColumn> = plan
            .columns()
            .filter(|c| match_column(&existing, &c.name).is_none())
            .collect();
        if !missing.is_empty() {
            let names: Vec<&str> = missing.iter().map(|c| c.name.as_str()).collect();
            if !settings.auto_evolve {
                return Err(DbOrRecord::Record(ConnectError::Failed(format!(
                    "Table {table} is missing fields ({}) and auto-evolution is disabled \
                     (auto.evolve=false)",
                    names.join(", ")
                ))));
            }
            let mut statements = Vec::new();
            for column in &missing {
                if plan.keys.iter().any(|k| k.name == column.name) {
                    return Err(DbOrRecord::Record(ConnectError::Failed(format!(
                        "Table {table} lacks primary key column {:?}, which cannot be added",
                        column.name
                    ))));
                }
                if !column.schema.optional && column.schema.default.is_none() {
                    return Err(DbOrRecord::Record(ConnectError::Failed(format!(
                        "Cannot ALTER TABLE {table} to add missing field {:?}, as the field is \
                         not optional and does not have a default value",
                        column.name
                    ))));
                }
                statements.push(
                    add_column(dialect, table, column)
                        .map_err(|why| DbOrRecord::Record(record_error(record, why)))?,
                );
            }
            tracing::info!(%table, columns = ?names, "adding columns to the table");
            for sql in statements {
                db.batch(&sql).map_err(DbOrRecord::Db)?;
            }
            state.columns = Some(db.describe_table(table).map_err(DbOrRecord::Db)?);
        }
        let existing = match &state.columns {
            Some(Some(columns)) => columns.clone(),
            _ => Vec::new(),
        };
        for column in plan.keys.iter_mut().chain(plan.values.iter_mut()) {
            if let Some(at) = match_column(&existing, &column.name) {
                column.name = existing[at].name.clone();
            }
        }
        if state.plans.len() >= PLANS_PER_TABLE {
            state.plans.remove(0);
        }
        state.plans.push(plan.clone());
        Ok(Some(plan))
    }

    /// Writes `records` in one transaction.
    fn write(&mut self, records: &[SinkRecord]) -> Result<(), DbOrRecord> {
        let settings = self.settings.clone().ok_or(DbOrRecord::NotStarted)?;
        let mut db = match self.db.take() {
            Some(db) if !db.is_broken() => db,
            _ => settings
                .connection
                .spec
                .connect(true)
                .map_err(DbOrRecord::Db)?,
        };
        let outcome = self.write_with(&mut db, &settings, records);
        let outcome = match outcome {
            Ok(()) => db.batch("COMMIT").map_err(DbOrRecord::Db),
            Err(e) => {
                if !db.is_broken() {
                    if let Err(rollback) = db.batch("ROLLBACK") {
                        tracing::warn!(error = %rollback, "rolling back a failed write failed");
                    }
                }
                Err(e)
            }
        };
        if outcome.is_err() {
            // Tables created or altered in the transaction are gone with it.
            self.tables.clear();
        }
        if !db.is_broken() {
            self.db = Some(db);
        }
        outcome
    }

    fn write_with(
        &mut self,
        db: &mut Db,
        settings: &SinkSettings,
        records: &[SinkRecord],
    ) -> Result<(), DbOrRecord> {
        let dialect = db.dialect();
        let mut ops = Vec::with_capacity(records.len());
        for record in records {
            let op = Self::classify(settings, record).map_err(DbOrRecord::Record)?;
            let table = Self::table_for(settings, dialect, record).map_err(DbOrRecord::Record)?;
            ops.push((op, table));
        }
        db.begin_write().map_err(DbOrRecord::Db)?;
        let mut run: Option<Run> = None;
        for (record, (op, table)) in records.iter().zip(ops) {
            let Some(plan) = self.plan(db, &table, record, op)? else {
                continue;
            };
            let row = plan
                .bind(record, op == Op::Delete)
                .map_err(|why| DbOrRecord::Record(record_error(record, why)))?;
            let same = run.as_ref().is_some_and(|r| {
                r.op == op
                    && r.table == table
                    && r.plan.key_schema == plan.key_schema
                    && r.plan.value_schema == plan.value_schema
                    && r.rows.len() < settings.batch_size
            });
            if !same {
                if let Some(done) = run.take() {
                    execute(db, settings, &done).map_err(DbOrRecord::Db)?;
                }
                run = Some(Run {
                    table,
                    plan,
                    op,
                    rows: Vec::new(),
                });
            }
            if let Some(run) = run.as_mut() {
                run.rows.push(row);
            }
        }
        if let Some(done) = run.take() {
            execute(db, settings, &done).map_err(DbOrRecord::Db)?;
        }
        Ok(())
    }
}

fn pk_mode_name(mode: PkMode) -> &'static str {
    match mode {
        PkMode::None => "none",
        PkMode::Kafka => "kafka",
        PkMode::RecordKey => "record_key",
        PkMode::RecordValue => "record_value",
    }
}

/// Why a write failed: the database, or a record no retry can write.
#[derive(Debug)]
enum DbOrRecord {
    Db(DbError),
    Record(ConnectError),
    NotStarted,
}

fn match_column(columns: &[ColumnMeta], name: &str) -> Option<usize> {
    columns.iter().position(|c| c.name == name).or_else(|| {
        let mut matches = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.name.eq_ignore_ascii_case(name));
        match (matches.next(), matches.next()) {
            (Some((at, _)), None) => Some(at),
            _ => None,
        }
    })
}

fn column_definition(dialect: Dialect, column: &PlanColumn) -> Result<String, String> {
    let mut sql = format!(
        "{} {}",
        dialect.quote(&column.name).map_err(|e| e.to_string())?,
        dialect.column_type(&column.schema)?
    );
    if let Some(default) = &column.schema.default {
        if let Some(literal) = dialect.literal(&column.schema, default) {
            sql.push_str(" DEFAULT ");
            sql.push_str(&literal);
        }
    }
    if !column.schema.optional {
        sql.push_str(" NOT NULL");
    }
    Ok(sql)
}

fn create_table(dialect: Dialect, table: &TableId, plan: &Plan) -> Result<String, String> {
    let mut parts = plan
        .columns()
        .map(|c| column_definition(dialect, c))
        .collect::<Result<Vec<_>, _>>()?;
    if parts.is_empty() {
        return Err("the record has no field to make a column of".to_owned());
    }
    if !plan.keys.is_empty() {
        let keys = plan
            .keys
            .iter()
            .map(|k| dialect.quote(&k.name).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        parts.push(format!("PRIMARY KEY({})", keys.join(", ")));
    }
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS {} (\n{})",
        dialect.table(table).map_err(|e| e.to_string())?,
        parts.join(",\n")
    ))
}

fn add_column(dialect: Dialect, table: &TableId, column: &PlanColumn) -> Result<String, String> {
    Ok(format!(
        "ALTER TABLE {} ADD COLUMN {}",
        dialect.table(table).map_err(|e| e.to_string())?,
        column_definition(dialect, column)?
    ))
}

/// The SQL of a run's statement for `rows` rows.
fn statement(
    dialect: Dialect,
    mode: InsertMode,
    run: &Run,
    rows: usize,
) -> Result<Option<String>, DbError> {
    let table = dialect.table(&run.table)?;
    let quote = |c: &PlanColumn| dialect.quote(&c.name);
    let keys = run
        .plan
        .keys
        .iter()
        .map(quote)
        .collect::<Result<Vec<_>, _>>()?;
    let values = run
        .plan
        .values
        .iter()
        .map(quote)
        .collect::<Result<Vec<_>, _>>()?;
    let condition = |first: usize| {
        keys.iter()
            .enumerate()
            .map(|(i, k)| format!("{k} = {}", dialect.placeholder(first + i)))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    Ok(Some(match (run.op, mode) {
        (Op::Delete, _) => format!("DELETE FROM {table} WHERE {}", condition(1)),
        (Op::Write, InsertMode::Update) => {
            if values.is_empty() {
                return Ok(None);
            }
            let set = values
                .iter()
                .enumerate()
                .map(|(i, v)| format!("{v} = {}", dialect.placeholder(i + 1)))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "UPDATE {table} SET {set} WHERE {}",
                condition(values.len() + 1)
            )
        }
        (Op::Write, mode) => {
            let columns: Vec<&String> = keys.iter().chain(&values).collect();
            let width = columns.len();
            let tuples = (0..rows)
                .map(|row| {
                    let marks = (1..=width)
                        .map(|i| dialect.placeholder(row * width + i))
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!("({marks})")
                })
                .collect::<Vec<_>>()
                .join(", ");
            let names = columns
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let mut sql = format!("INSERT INTO {table} ({names}) VALUES {tuples}");
            if mode == InsertMode::Upsert {
                sql.push_str(&format!(" ON CONFLICT ({})", keys.join(", ")));
                if values.is_empty() {
                    sql.push_str(" DO NOTHING");
                } else {
                    let set = values
                        .iter()
                        .map(|v| format!("{v} = EXCLUDED.{v}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    sql.push_str(&format!(" DO UPDATE SET {set}"));
                }
            }
            sql
        }
    }))
}

/// Writes a run's rows: PostgreSQL's inserts and upserts as multi-row statements, all
/// statements pipelined.
fn execute(db: &mut Db, settings: &SinkSettings, run: &Run) -> Result<(), DbError> {
    let dialect = db.dialect();
    let mode = settings.insert_mode;
    let width = run.plan.keys.len() + run.plan.values.len();
    let multi_row =
        dialect == Dialect::Postgres && run.op == Op::Write && mode != InsertMode::Update;
    if !multi_row {
        let Some(sql) = statement(dialect, mode, run, 1)? else {
            return Ok(());
        };
        let reordered: Vec<Vec<SqlValue>>;
        let rows: &[Vec<SqlValue>] = if run.op == Op::Write && mode == InsertMode::Update {
            // UPDATE binds the values first, then the key.
            let keys = run.plan.keys.len();
            reordered = run
                .rows
                .iter()
                .map(|row| row[keys..].iter().chain(&row[..keys]).cloned().collect())
                .collect();
            &reordered
        } else {
            &run.rows
        };
        let statements: Vec<(&str, &[SqlValue])> = rows
            .iter()
            .map(|row| (sql.as_str(), row.as_slice()))
            .collect();
        return db.execute_many(&statements);
    }
    let per_statement = (MAX_PARAMETERS / width.max(1))
        .min(MAX_ROWS_PER_STATEMENT)
        .min(settings.batch_size)
        .max(1);
    // Chunks of rows, each one statement. An upsert cannot touch a row twice in one
    // statement, so a key seen again starts the next chunk.
    let keys = run.plan.keys.len();
    let mut chunks: Vec<(usize, Vec<SqlValue>)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut current: Vec<SqlValue> = Vec::new();
    let mut count = 0;
    for row in &run.rows {
        let duplicate = mode == InsertMode::Upsert && {
            let key = format!("{:?}", &row[..keys]);
            !seen.insert(key)
        };
        if count == per_statement || (duplicate && count > 0) {
            chunks.push((count, std::mem::take(&mut current)));
            count = 0;
            seen.clear();
            if mode == InsertMode::Upsert {
                seen.insert(format!("{:?}", &row[..keys]));
            }
        }
        current.extend(row.iter().cloned());
        count += 1;
    }
    if count > 0 {
        chunks.push((count, current));
    }
    let mut sql_by_rows: BTreeMap<usize, String> = BTreeMap::new();
    for (rows, _) in &chunks {
        if !sql_by_rows.contains_key(rows) {
            if let Some(sql) = statement(dialect, mode, run, *rows)? {
                sql_by_rows.insert(*rows, sql);
            }
        }
    }
    let statements = chunks
        .iter()
        .filter_map(|(rows, values)| {
            sql_by_rows
                .get(rows)
                .map(|sql| (sql.as_str(), values.as_slice()))
        })
        .collect::<Vec<_>>();
    db.execute_many(&statements)
}

impl SinkTask for JdbcSinkTask {
    fn start(&mut self, configs: &Configs, context: &TaskContext) -> Result<(), ConnectError> {
        let settings = SinkSettings::from_configs(configs)?;
        self.db = Some(
            settings
                .connection
                .connect(true, Some(context))
                .map_err(|e| ConnectError::Failed(format!("Could not connect to database: {e}")))?,
        );
        self.retries_left = settings.max_retries;
        self.settings = Some(settings);
        self.context = Some(context.clone());
        Ok(())
    }

    fn put(&mut self, records: &[SinkRecord]) -> Result<(), ConnectError> {
        if records.is_empty() {
            return Ok(());
        }
        let (max_retries, backoff) = {
            let settings = self.settings()?;
            (settings.max_retries, settings.retry_backoff)
        };
        match self.write(records) {
            Ok(()) => {
                self.retries_left = max_retries;
                Ok(())
            }
            Err(DbOrRecord::NotStarted) => Err(ConnectError::failed("the task is not started")),
            Err(DbOrRecord::Record(e)) => Err(e),
            Err(DbOrRecord::Db(e)) if e.retriable && self.retries_left > 0 => {
                self.retries_left -= 1;
                tracing::warn!(error = %e, retries_left = self.retries_left, "writing failed; retrying");
                super::sleep_unless_stopping(backoff, self.context.as_ref());
                Err(ConnectError::Retriable(format!(
                    "Writing to the database failed: {e}"
                )))
            }
            Err(DbOrRecord::Db(e)) if e.retriable => Err(ConnectError::Failed(format!(
                "Writing to the database failed {} times; the last time: {e}",
                max_retries + 1
            ))),
            Err(DbOrRecord::Db(e)) => Err(ConnectError::Failed(format!(
                "Writing to the database failed: {e}"
            ))),
        }
    }

    fn flush(&mut self, _offsets: &BTreeMap<TopicPartition, i64>) -> Result<(), ConnectError> {
        // Every put committed its transaction before it returned.
        Ok(())
    }

    fn stop(&mut self) {
        self.db = None;
        self.tables.clear();
    }
}

#[cfg(test)]
mod tests;
