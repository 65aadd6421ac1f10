//! The sink against SQLite databases in temporary directories: each insert mode, deletes,
//! creating and evolving tables, primary key modes, hostile names, refused records and
//! validation.

use std::sync::Arc;

use super::*;
use crate::data::{ConnectRecord, Field, SchemaAndValue};
use crate::jdbc::testing::{context, Offsets};
use crate::jdbc::values::decimal_schema;

struct Target {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Target {
    fn new() -> Target {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sink.db");
        Target { _dir: dir, path }
    }

    fn configs(&self, pairs: &[(&str, &str)]) -> Configs {
        let mut configs = Configs::new();
        configs.set(
            "connection.url",
            format!("jdbc:sqlite:{}", self.path.display()),
        );
        configs.set("retry.backoff.ms", "0");
        for (key, value) in pairs {
            configs.set(*key, *value);
        }
        configs
    }

    fn task(&self, pairs: &[(&str, &str)]) -> JdbcSinkTask {
        let mut task = JdbcSinkTask::default();
        task.start(&self.configs(pairs), &context(Arc::new(Offsets::default())))
            .unwrap();
        task
    }

    fn conn(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.path).unwrap()
    }

    /// Every row of `sql`, each column as SQLite's text of it.
    fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let conn = self.conn();
        let mut statement = conn.prepare(sql).unwrap();
        let width = statement.column_count();
        statement
            .query_map([], |row| {
                (0..width)
                    .map(|i| {
                        Ok(match row.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                            rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                            rusqlite::types::ValueRef::Real(f) => f.to_string(),
                            rusqlite::types::ValueRef::Text(t) => {
                                String::from_utf8_lossy(t).into_owned()
                            }
                            rusqlite::types::ValueRef::Blob(b) => format!("{b:?}"),
                        })
                    })
                    .collect()
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn columns(&self, table: &str) -> Vec<(String, String, bool, i64)> {
        let conn = self.conn();
        let mut statement = conn
            .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1)")
            .unwrap();
        statement
            .query_map([table], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
}

fn person_schema() -> Schema {
    Schema::structure(
        Some("person"),
        vec![
            Field::new("id", Schema::new(SchemaType::Int32)),
            Field::new("name", Schema::new(SchemaType::String)),
            Field::new("score", Schema::optional(SchemaType::Float64)),
        ],
    )
}

fn person(id: i32, name: &str, score: Option<f64>) -> Value {
    Value::Struct(vec![
        Value::Int32(id),
        Value::String(name.into()),
        score.map_or(Value::Null, Value::Float64),
    ])
}

fn record(topic: &str, offset: i64, key: SchemaAndValue, value: SchemaAndValue) -> SinkRecord {
    SinkRecord {
        record: ConnectRecord {
            topic: topic.to_owned(),
            partition: Some(0),
            key,
            value,
            timestamp: None,
            headers: Vec::new(),
        },
        kafka_offset: offset,
    }
}

fn valued(topic: &str, offset: i64, value: Value) -> SinkRecord {
    record(
        topic,
        offset,
        SchemaAndValue::null(),
        SchemaAndValue::new(Some(person_schema()), value),
    )
}

fn keyed(offset: i64, id: i64, value: Option<Value>) -> SinkRecord {
    record(
        "people",
        offset,
        SchemaAndValue::new(Some(Schema::new(SchemaType::Int64)), Value::Int64(id)),
        match value {
            Some(value) => SchemaAndValue::new(Some(person_schema()), value),
            None => SchemaAndValue::null(),
        },
    )
}

fn flush(task: &mut JdbcSinkTask) {
    task.flush(&BTreeMap::new()).unwrap();
}

#[test]
fn insert_mode_creates_the_table_and_writes_every_type() {
    let target = Target::new();
    let mut task = target.task(&[("auto.create", "true")]);
    let schema = Schema::structure(
        Some("typed"),
        vec![
            Field::new("id", Schema::new(SchemaType::Int64)),
            Field::new("small", Schema::optional(SchemaType::Int8)),
            Field::new("flag", Schema::optional(SchemaType::Boolean)),
            Field::new("ratio", Schema::optional(SchemaType::Float32)),
            Field::new("data", Schema::optional(SchemaType::Bytes)),
            Field::new(
                "day",
                Schema {
                    name: Some(crate::data::DATE_LOGICAL.into()),
                    ..Schema::optional(SchemaType::Int32)
                },
            ),
            Field::new(
                "at",
                Schema {
                    name: Some(crate::data::TIMESTAMP_LOGICAL.into()),
                    ..Schema::optional(SchemaType::Int64)
                },
            ),
            Field::new("price", decimal_schema(2, None).into_optional()),
            Field::new(
                "level",
                Schema {
                    default: Some(Value::String("low".into())),
                    ..Schema::optional(SchemaType::String)
                },
            ),
        ],
    );
    let row = Value::Struct(vec![
        Value::Int64(1),
        Value::Int8(-3),
        Value::Boolean(true),
        Value::Float32(0.5),
        Value::Bytes(vec![1, 2]),
        Value::Int32(19_782),
        Value::Int64(1_709_209_800_250),
        Value::Bytes(vec![0x04, 0xe2]),
        Value::Null,
    ]);
    let empty = Value::Struct(vec![
        Value::Int64(2),
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
    ]);
    let records: Vec<SinkRecord> = [row, empty]
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            record(
                "typed",
                i as i64,
                SchemaAndValue::null(),
                SchemaAndValue::new(Some(schema.clone()), v),
            )
        })
        .collect();
    task.put(&records).unwrap();
    flush(&mut task);
    let columns = target.columns("typed");
    let declared: Vec<(&str, &str, bool)> = columns
        .iter()
        .map(|(n, t, nn, _)| (n.as_str(), t.as_str(), *nn))
        .collect();
    assert_eq!(
        declared,
        [
            ("id", "INTEGER", true),
            ("small", "INTEGER", false),
            ("flag", "BOOLEAN", false),
            ("ratio", "REAL", false),
            ("data", "BLOB", false),
            ("day", "DATE", false),
            ("at", "TIMESTAMP", false),
            ("price", "NUMERIC", false),
            ("level", "TEXT", false),
        ]
    );
    assert_eq!(
        target.rows("SELECT * FROM typed ORDER BY id"),
        [
            vec![
                "1",
                "-3",
                "1",
                "0.5",
                "[1, 2]",
                "2024-02-29",
                "2024-02-29 12:30:00.250",
                "12.5",
                "low"
            ],
            vec!["2", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "low"],
        ]
    );
}

#[test]
fn inserting_a_key_twice_fails_without_retrying() {
    let target = Target::new();
    let mut task = target.task(&[
        ("auto.create", "true"),
        ("pk.mode", "record_value"),
        ("pk.fields", "id"),
    ]);
    task.put(&[valued("people", 0, person(1, "ann", None))])
        .unwrap();
    assert_eq!(
        target.columns("people")[0],
        ("id".into(), "INTEGER".into(), true, 1)
    );
    let error = task
        .put(&[
            valued("people", 1, person(2, "bob", None)),
            valued("people", 2, person(1, "ann", None)),
        ])
        .unwrap_err();
    assert!(
        matches!(&error, ConnectError::Failed(m) if m.contains("UNIQUE")),
        "{error:?}"
    );
    assert_eq!(
        target.rows("SELECT id, name FROM people"),
        [["1", "ann"]],
        "the failed batch wrote nothing"
    );
}

#[test]
fn upserts_write_the_last_value_of_each_key() {
    let target = Target::new();
    let mut task = target.task(&[
        ("auto.create", "true"),
        ("insert.mode", "upsert"),
        ("pk.mode", "record_key"),
        ("pk.fields", "person_id"),
    ]);
    task.put(&[
        keyed(0, 1, Some(person(1, "ann", Some(1.0)))),
        keyed(1, 2, Some(person(2, "bob", None))),
        keyed(2, 1, Some(person(1, "anne", Some(2.0)))),
    ])
    .unwrap();
    task.put(&[keyed(3, 2, Some(person(2, "robert", Some(3.0))))])
        .unwrap();
    flush(&mut task);
    assert_eq!(
        target.rows("SELECT person_id, id, name, score FROM people ORDER BY person_id"),
        [["1", "1", "anne", "2"], ["2", "2", "robert", "3"]]
    );
}

#[test]
fn update_mode_changes_existing_rows_only() {
    let target = Target::new();
    target
        .conn()
        .execute_batch(
            "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL);
             INSERT INTO people VALUES (1, 'ann', NULL);",
        )
        .unwrap();
    let mut task = target.task(&[
        ("insert.mode", "update"),
        ("pk.mode", "record_value"),
        ("pk.fields", "id"),
    ]);
    task.put(&[
        valued("people", 0, person(1, "anne", Some(5.0))),
        valued("people", 1, person(2, "ghost", None)),
    ])
    .unwrap();
    assert_eq!(target.rows("SELECT * FROM people"), [["1", "anne", "5"]]);
}

#[test]
fn tombstones_delete_the_row_of_their_key() {
    let target = Target::new();
    let mut task = target.task(&[
        ("auto.create", "true"),
        ("insert.mode", "upsert"),
        ("pk.mode", "record_key"),
        ("delete.enabled", "true"),
    ]);
    // A delete of a table that does not exist yet deletes nothing.
    task.put(&[keyed(0, 9, None)]).unwrap();
    task.put(&[
        keyed(1, 1, Some(person(1, "ann", None))),
        keyed(2, 2, Some(person(2, "bob", None))),
        keyed(3, 1, None),
        keyed(4, 3, Some(person(3, "cy", None))),
        keyed(5, 3, None),
        keyed(6, 3, Some(person(3, "cyd", None))),
    ])
    .unwrap();
    flush(&mut task);
    assert_eq!(
        target.columns("people")[0],
        ("__connect_key".into(), "INTEGER".into(), true, 1)
    );
    assert_eq!(
        target.rows("SELECT __connect_key, name FROM people ORDER BY 1"),
        [["2", "bob"], ["3", "cyd"]]
    );

    let mut strict = target.task(&[("pk.mode", "record_key")]);
    let error = strict.put(&[keyed(7, 2, None)]).unwrap_err();
    assert!(
        matches!(&error, ConnectError::Failed(m) if m.contains("delete.enabled") && m.contains("offset=7")),
        "{error:?}"
    );
}

#[test]
fn auto_evolve_adds_nullable_columns_for_new_optional_fields() {
    let target = Target::new();
    let mut task = target.task(&[("auto.create", "true"), ("auto.evolve", "true")]);
    task.put(&[valued("people", 0, person(1, "ann", None))])
        .unwrap();
    let mut v2 = person_schema();
    v2.fields
        .push(Field::new("email", Schema::optional(SchemaType::String)));
    v2.fields.push(Field::new(
        "rank",
        Schema {
            default: Some(Value::Int32(7)),
            ..Schema::new(SchemaType::Int32)
        },
    ));
    let mut value = match person(2, "bob", None) {
        Value::Struct(values) => values,
        _ => unreachable!(),
    };
    value.push(Value::String("bob@example.com".into()));
    value.push(Value::Int32(1));
    task.put(&[record(
        "people",
        1,
        SchemaAndValue::null(),
        SchemaAndValue::new(Some(v2.clone()), Value::Struct(value)),
    )])
    .unwrap();
    assert_eq!(
        target.rows("SELECT id, name, email, rank FROM people ORDER BY id"),
        [
            ["1", "ann", "NULL", "7"],
            ["2", "bob", "bob@example.com", "1"]
        ]
    );
    let added = target.columns("people");
    assert_eq!(added[3], ("email".into(), "TEXT".into(), false, 0));

    let mut v3 = v2;
    v3.fields
        .push(Field::new("required", Schema::new(SchemaType::String)));
    let mut value = match person(3, "cy", None) {
        Value::Struct(values) => values,
        _ => unreachable!(),
    };
    value.extend([Value::Null, Value::Int32(1), Value::String("x".into())]);
    let v3_record = record(
        "people",
        2,
        SchemaAndValue::null(),
        SchemaAndValue::new(Some(v3), Value::Struct(value)),
    );
    let error = task.put(std::slice::from_ref(&v3_record)).unwrap_err();
    assert!(
        matches!(&error, ConnectError::Failed(m) if m.contains("not optional")),
        "{error:?}"
    );
    let mut fixed = target.task(&[]);
    let error = fixed.put(&[v3_record]).unwrap_err();
    assert!(
        matches!(&error, ConnectError::Failed(m) if m.contains("auto-evolution is disabled")),
        "{error:?}"
    );
}

#[test]
fn a_missing_table_is_an_error_without_auto_create() {
    let target = Target::new();
    let mut task = target.task(&[]);
    let error = task
        .put(&[valued("people", 0, person(1, "ann", None))])
        .unwrap_err();
    assert!(
        matches!(&error, ConnectError::Failed(m) if m.contains("auto-creation is disabled")),
        "{error:?}"
    );
}

#[test]
fn kafka_coordinates_and_whitelisted_fields_make_the_row() {
    let target = Target::new();
    let mut task = target.task(&[
        ("auto.create", "true"),
        ("pk.mode", "kafka"),
        ("fields.whitelist", "name"),
        ("table.name.format", "copy_of_${topic}"),
    ]);
    task.put(&[valued("people", 41, person(1, "ann", Some(1.0)))])
        .unwrap();
    assert_eq!(
        target.rows("SELECT * FROM copy_of_people"),
        [["people", "0", "41", "ann"]]
    );
    let keys: Vec<String> = target
        .columns("copy_of_people")
        .into_iter()
        .filter(|c| c.3 > 0)
        .map(|c| c.0)
        .collect();
    assert_eq!(
        keys,
        ["__connect_topic", "__connect_partition", "__connect_offset"]
    );
}

#[test]
fn hostile_topic_and_field_names_are_only_names() {
    let target = Target::new();
    target
        .conn()
        .execute_batch("CREATE TABLE x (id INTEGER);")
        .unwrap();
    let topic = "a\"; DROP TABLE x; --";
    let schema = Schema::structure(
        None,
        vec![Field::new(
            "x\"); DELETE FROM x; --",
            Schema::new(SchemaType::String),
        )],
    );
    let mut task = target.task(&[("auto.create", "true"), ("insert.mode", "insert")]);
    task.put(&[record(
        topic,
        0,
        SchemaAndValue::null(),
        SchemaAndValue::new(
            Some(schema),
            Value::Struct(vec![Value::String("'); DROP TABLE x; --".into())]),
        ),
    )])
    .unwrap();
    assert_eq!(
        target.rows("SELECT * FROM \"a\"\"; DROP TABLE x; --\""),
        [["'); DROP TABLE x; --"]]
    );
    assert_eq!(target.rows("SELECT count(*) FROM x"), [["0"]]);
}

#[test]
fn schemaless_records_are_refused_with_their_coordinates() {
    let target = Target::new();
    let mut task = target.task(&[("auto.create", "true")]);
    let mut schemaless = record(
        "events",
        42,
        SchemaAndValue::null(),
        SchemaAndValue::new(
            None,
            Value::Map(vec![(Value::String("id".into()), Value::Int64(1))]),
        ),
    );
    schemaless.record.partition = Some(3);
    let error = task.put(&[schemaless]).unwrap_err();
    let ConnectError::Failed(message) = error else {
        panic!("not a failure: {error:?}");
    };
    assert!(
        message.contains("topic='events'")
            && message.contains("partition=3")
            && message.contains("offset=42"),
        "{message}"
    );
    assert!(message.contains("schema"), "{message}");
    let error = task.put(&[valued("events", 43, Value::Null)]).unwrap_err();
    assert!(
        matches!(&error, ConnectError::Failed(m) if m.contains("null")),
        "{error:?}"
    );
}

fn errors(values: &[ConfigValue]) -> Vec<String> {
    values
        .iter()
        .filter(|v| !v.errors.is_empty())
        .map(|v| v.name.clone())
        .collect()
}

#[test]
fn validation_puts_errors_on_the_keys_at_fault() {
    let target = Target::new();
    let connector = JdbcSinkConnector::default();
    let check = |pairs: &[(&str, &str)]| errors(&connector.validate(&target.configs(pairs)));
    assert!(
        check(&[]).is_empty(),
        "a database file the sink would create is fine"
    );
    assert_eq!(check(&[("delete.enabled", "true")]), ["delete.enabled"]);
    assert_eq!(
        check(&[("delete.enabled", "true"), ("pk.mode", "record_value")]),
        ["delete.enabled"]
    );
    assert!(check(&[("delete.enabled", "true"), ("pk.mode", "record_key")]).is_empty());
    assert_eq!(check(&[("insert.mode", "upsert")]), ["pk.mode"]);
    assert_eq!(check(&[("insert.mode", "merge")]), ["insert.mode"]);
    assert_eq!(
        check(&[("pk.mode", "kafka"), ("pk.fields", "a,b")]),
        ["pk.fields"]
    );
    assert_eq!(
        check(&[("connection.url", "jdbc:db2://h/x")]),
        ["connection.url"]
    );
    assert_eq!(
        check(&[("connection.url", "jdbc:sqlite:/nonexistent/dir/x.db")]),
        ["connection.url"]
    );
    assert!(!target.path.exists(), "validation creates no database");
}
