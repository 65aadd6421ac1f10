//! The source against SQLite databases in temporary directories: each mode, resuming
//! from offsets, custom queries, type mapping, hostile names, validation, and the table
//! monitor.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;
use crate::data::{SchemaType, DATE_LOGICAL, DECIMAL_LOGICAL, TIMESTAMP_LOGICAL, TIME_LOGICAL};
use crate::jdbc::testing::{context, Offsets};

struct Db {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    conn: rusqlite::Connection,
}

impl Db {
    fn new(setup: &str) -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(setup).unwrap();
        Db {
            _dir: dir,
            path,
            conn,
        }
    }

    fn run(&self, sql: &str) {
        self.conn.execute_batch(sql).unwrap();
    }

    fn configs(&self, pairs: &[(&str, &str)]) -> Configs {
        let mut configs = Configs::new();
        configs.set(
            "connection.url",
            format!("jdbc:sqlite:{}", self.path.display()),
        );
        configs.set("topic.prefix", "db-");
        configs.set("poll.interval.ms", "10");
        for (key, value) in pairs {
            configs.set(*key, *value);
        }
        configs
    }
}

/// The task configs the connector gives for `configs`.
fn task_configs(configs: &Configs, max_tasks: usize) -> Vec<Configs> {
    let mut connector = JdbcSourceConnector::default();
    connector
        .start(configs, ConnectorContext::new(Arc::new(|| {})))
        .unwrap();
    let tasks = connector.task_configs(max_tasks).unwrap();
    connector.stop();
    tasks
}

fn start(configs: &Configs, offsets: &Arc<Offsets>) -> JdbcSourceTask {
    let mut task = JdbcSourceTask::default();
    let task_config = task_configs(configs, 1).remove(0);
    task.start(&task_config, &context(offsets.clone())).unwrap();
    task
}

/// Everything the task has to read now: polls until one comes back empty, once every
/// table is due again (`poll.interval.ms` is 10 here; the bulk test waits for its own).
fn drain(task: &mut JdbcSourceTask) -> Vec<SourceRecord> {
    std::thread::sleep(Duration::from_millis(15));
    let mut all = Vec::new();
    for _ in 0..1000 {
        let records = task.poll().unwrap();
        if records.is_empty() {
            return all;
        }
        all.extend(records);
    }
    panic!("the source never ran dry");
}

fn field(record: &SourceRecord, name: &str) -> Value {
    let schema = record.record.value.schema.as_ref().unwrap();
    let (at, _) = schema.field(name).unwrap();
    match &record.record.value.value {
        Value::Struct(values) => values[at].clone(),
        other => panic!("not a struct: {other:?}"),
    }
}

fn ids(records: &[SourceRecord]) -> Vec<i64> {
    records
        .iter()
        .map(|r| match field(r, "id") {
            Value::Int64(n) => n,
            other => panic!("id {other:?}"),
        })
        .collect()
}

const ORDERS: &str = "CREATE TABLE orders (id INTEGER PRIMARY KEY, name TEXT NOT NULL, \
                      amount REAL, created TIMESTAMP);
     INSERT INTO orders VALUES (1, 'one', 1.5, '2024-01-01 10:00:00'), (2, 'two', NULL, NULL),
                               (3, 'three', 3.0, '2024-01-03 10:00:00.250');
     CREATE TABLE other (id INTEGER PRIMARY KEY);";

#[test]
fn incrementing_mode_reads_new_rows_once_and_resumes_from_its_offset() {
    let db = Db::new(ORDERS);
    let configs = db.configs(&[
        ("mode", "incrementing"),
        ("incrementing.column.name", "id"),
        ("table.whitelist", "orders"),
        ("batch.max.rows", "2"),
    ]);
    let offsets = Arc::new(Offsets::default());
    let mut task = start(&configs, &offsets);
    let records = drain(&mut task);
    assert_eq!(ids(&records), [1, 2, 3]);
    let first = &records[0];
    assert_eq!(first.record.topic, "db-orders");
    assert!(first.record.key.value.is_null());
    assert_eq!(
        serde_json::Value::Object(first.source_partition.clone()),
        serde_json::json!({"protocol": "1", "table": "orders"})
    );
    assert_eq!(
        serde_json::Value::Object(records[2].source_offset.clone()),
        serde_json::json!({"incrementing": 3})
    );
    let schema = first.record.value.schema.as_ref().unwrap();
    assert_eq!(schema.name.as_deref(), Some("orders"));
    let kinds: Vec<(&str, SchemaType, bool)> = schema
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.schema.kind, f.schema.optional))
        .collect();
    assert_eq!(
        kinds,
        [
            ("id", SchemaType::Int64, false),
            ("name", SchemaType::String, false),
            ("amount", SchemaType::Float64, true),
            ("created", SchemaType::Int64, true),
        ]
    );
    assert_eq!(field(first, "created"), Value::Int64(1_704_103_200_000));
    assert_eq!(
        field(&records[2], "created"),
        Value::Int64(1_704_276_000_250)
    );
    assert_eq!(field(&records[1], "amount"), Value::Null);

    db.run("INSERT INTO orders VALUES (4, 'four', 4.0, NULL); UPDATE orders SET name = 'uno' WHERE id = 1;");
    assert_eq!(
        ids(&drain(&mut task)),
        [4],
        "an update is not an insert in this mode"
    );
    task.stop();

    offsets.commit(&records[1].source_partition, &records[1].source_offset);
    let mut resumed = start(&configs, &offsets);
    assert_eq!(ids(&drain(&mut resumed)), [3, 4]);
}

#[test]
fn offsets_written_before_protocol_1_are_read() {
    let db = Db::new(ORDERS);
    let configs = db.configs(&[
        ("mode", "incrementing"),
        ("incrementing.column.name", "id"),
        ("table.whitelist", "orders"),
    ]);
    let offsets = Arc::new(Offsets::default());
    let mut old = SourcePartition::new();
    old.insert("table".into(), "orders".into());
    let mut offset = SourceOffset::new();
    offset.insert("incrementing".into(), 2.into());
    offsets.commit(&old, &offset);
    let mut task = start(&configs, &offsets);
    assert_eq!(ids(&drain(&mut task)), [3]);
}

#[test]
fn timestamp_mode_reads_updates_ties_and_waits_for_the_delay() {
    let db = Db::new(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, label TEXT, updated TIMESTAMP NOT NULL);
         INSERT INTO items VALUES (1, 'a', '2020-01-01 00:00:01'), (2, 'b', '2020-01-01 00:00:02'),
                                  (3, 'c', '2020-01-01 00:00:02'), (4, 'd', '2020-01-01 00:00:02'),
                                  (5, 'e', '2020-01-01 00:00:03');",
    );
    let configs = db.configs(&[
        ("mode", "timestamp"),
        ("timestamp.column.name", "updated"),
        ("batch.max.rows", "2"),
        ("timestamp.delay.interval.ms", "3600000"),
    ]);
    let offsets = Arc::new(Offsets::default());
    let mut task = start(&configs, &offsets);
    let records = drain(&mut task);
    assert_eq!(
        ids(&records),
        [1, 2, 3, 4, 5],
        "rows sharing a timestamp across a page are all read"
    );
    assert_eq!(
        serde_json::Value::Object(records[4].source_offset.clone()),
        serde_json::json!({"timestamp": 1_577_836_803_000i64, "timestamp_nanos": 0})
    );

    // Stamped within the delay: not yet. An hour and more ago: now.
    db.run(
        "UPDATE items SET updated = strftime('%Y-%m-%d %H:%M:%f', 'now', '-10 minutes') WHERE id = 1;
         UPDATE items SET updated = strftime('%Y-%m-%d %H:%M:%f', 'now', '-2 hours') WHERE id = 2;",
    );
    let updated = drain(&mut task);
    assert_eq!(ids(&updated), [2]);
    assert_eq!(field(&updated[0], "label"), Value::String("b".into()));
    task.stop();

    // A restart from the last committed offset reads nothing again.
    let last = updated.last().unwrap();
    offsets.commit(&last.source_partition, &last.source_offset);
    let mut resumed = start(&configs, &offsets);
    assert!(drain(&mut resumed).is_empty());
    db.run("UPDATE items SET updated = strftime('%Y-%m-%d %H:%M:%f', 'now', '-90 minutes') WHERE id = 3;");
    assert_eq!(ids(&drain(&mut resumed)), [3]);
}

#[test]
fn timestamp_initial_minus_one_starts_from_the_first_poll() {
    let db = Db::new(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, updated TIMESTAMP NOT NULL);
         INSERT INTO items VALUES (1, '2020-01-01 00:00:01');",
    );
    let configs = db.configs(&[
        ("mode", "timestamp"),
        ("timestamp.column.name", "updated"),
        ("timestamp.initial", "-1"),
    ]);
    let offsets = Arc::new(Offsets::default());
    let mut task = start(&configs, &offsets);
    assert!(drain(&mut task).is_empty());
    std::thread::sleep(Duration::from_millis(5));
    db.run("INSERT INTO items VALUES (2, strftime('%Y-%m-%d %H:%M:%f', 'now'));");
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(ids(&drain(&mut task)), [2]);
}

#[test]
fn timestamp_incrementing_mode_resumes_within_a_timestamp() {
    let db = Db::new(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, at DATETIME NOT NULL, modified DATETIME);
         INSERT INTO events VALUES (1, '2021-06-01 12:00:00', NULL), (2, '2021-06-01 12:00:00', NULL),
                                   (3, '2021-06-01 12:00:00', '2021-06-02 00:00:00'),
                                   (4, '2021-06-01 12:00:01.5', NULL);",
    );
    let configs = db.configs(&[
        ("mode", "timestamp+incrementing"),
        ("timestamp.column.name", "modified,at"),
        ("incrementing.column.name", "id"),
        ("batch.max.rows", "2"),
    ]);
    let offsets = Arc::new(Offsets::default());
    let mut task = start(&configs, &offsets);
    let records = drain(&mut task);
    // COALESCE(modified, at): row 3 counts as the 2nd of June.
    assert_eq!(ids(&records), [1, 2, 4, 3]);
    assert_eq!(
        serde_json::Value::Object(records[2].source_offset.clone()),
        serde_json::json!({"incrementing": 4, "timestamp": 1_622_548_801_500i64, "timestamp_nanos": 500_000_000})
    );
    task.stop();

    offsets.commit(&records[0].source_partition, &records[0].source_offset);
    let mut resumed = start(&configs, &offsets);
    assert_eq!(ids(&drain(&mut resumed)), [2, 4, 3]);
    db.run("UPDATE events SET modified = '2021-06-03 00:00:00' WHERE id = 1;");
    assert_eq!(ids(&drain(&mut resumed)), [1]);
}

#[test]
fn bulk_mode_reads_whole_tables_every_interval() {
    let db = Db::new(ORDERS);
    // Long enough that no table comes due again while a test drains the others.
    let configs = db.configs(&[
        ("mode", "bulk"),
        ("batch.max.rows", "2"),
        ("poll.interval.ms", "300"),
    ]);
    let offsets = Arc::new(Offsets::default());
    let mut task = start(&configs, &offsets);
    let first = drain(&mut task);
    let of = |records: &[SourceRecord], topic: &str| {
        records.iter().filter(|r| r.record.topic == topic).count()
    };
    assert_eq!(of(&first, "db-orders"), 3);
    assert_eq!(of(&first, "db-other"), 0);
    assert!(first.iter().all(|r| r.source_offset.is_empty()));
    db.run("INSERT INTO other VALUES (7);");
    std::thread::sleep(Duration::from_millis(350));
    let second = drain(&mut task);
    assert_eq!(of(&second, "db-orders"), 3);
    assert_eq!(of(&second, "db-other"), 1);
}

#[test]
fn a_query_gets_the_mode_condition_and_the_prefix_as_topic() {
    let db = Db::new(ORDERS);
    let configs = db.configs(&[
        ("mode", "incrementing"),
        ("incrementing.column.name", "id"),
        (
            "query",
            "SELECT id, name, amount * 2 AS doubled FROM orders;",
        ),
        ("topic.prefix", "orders-query"),
    ]);
    let tasks = task_configs(&configs, 4);
    assert_eq!(tasks.len(), 1, "a query is read by one task");
    let offsets = Arc::new(Offsets::default());
    let mut task = start(&configs, &offsets);
    let records = drain(&mut task);
    assert_eq!(ids(&records), [1, 2, 3]);
    assert_eq!(records[0].record.topic, "orders-query");
    assert_eq!(
        serde_json::Value::Object(records[0].source_partition.clone()),
        serde_json::json!({"query": "query"})
    );
    let schema = records[0].record.value.schema.as_ref().unwrap();
    assert_eq!(schema.name, None);
    assert_eq!(schema.fields.len(), 3);
    assert_eq!(field(&records[0], "doubled"), Value::String("3".into()));
}

#[test]
fn columns_map_to_connect_types() {
    let db = Db::new(
        "CREATE TABLE typed (id INTEGER PRIMARY KEY, flag BOOLEAN, ratio DOUBLE, label VARCHAR(10),
                             data BLOB, day DATE, clock TIME, at DATETIME, price DECIMAL(10,2),
                             count NUMERIC(5,0), loose NUMERIC);
         INSERT INTO typed VALUES (1, 1, 0.25, 'x', X'00ff', '2024-02-29', '12:30:00.5',
                                   '2024-02-29T12:30:00Z', 12.5, 42, '1.5');
         INSERT INTO typed (id) VALUES (2);",
    );
    let read = |mapping: &str| {
        let configs = db.configs(&[("mode", "bulk"), ("numeric.mapping", mapping)]);
        let offsets = Arc::new(Offsets::default());
        drain(&mut start(&configs, &offsets))
    };
    let records = read("none");
    let row = &records[0];
    let schema = row.record.value.schema.as_ref().unwrap();
    let logical = |name: &str| {
        let (_, f) = schema.field(name).unwrap();
        (f.schema.kind, f.schema.name.clone(), f.schema.optional)
    };
    assert_eq!(logical("flag"), (SchemaType::Boolean, None, true));
    assert_eq!(logical("ratio"), (SchemaType::Float64, None, true));
    assert_eq!(logical("label"), (SchemaType::String, None, true));
    assert_eq!(logical("data"), (SchemaType::Bytes, None, true));
    assert_eq!(
        logical("day"),
        (SchemaType::Int32, Some(DATE_LOGICAL.into()), true)
    );
    assert_eq!(
        logical("clock"),
        (SchemaType::Int32, Some(TIME_LOGICAL.into()), true)
    );
    assert_eq!(
        logical("at"),
        (SchemaType::Int64, Some(TIMESTAMP_LOGICAL.into()), true)
    );
    assert_eq!(
        logical("price"),
        (SchemaType::Bytes, Some(DECIMAL_LOGICAL.into()), true)
    );
    assert_eq!(field(row, "flag"), Value::Boolean(true));
    assert_eq!(field(row, "data"), Value::Bytes(vec![0, 0xff]));
    assert_eq!(field(row, "day"), Value::Int32(19_782));
    assert_eq!(field(row, "clock"), Value::Int32(45_000_500));
    assert_eq!(field(row, "at"), Value::Int64(1_709_209_800_000));
    assert_eq!(field(row, "price"), Value::Bytes(vec![0x04, 0xe2]));
    assert!(records[1..]
        .iter()
        .all(|r| field(r, "price") == Value::Null && field(r, "day") == Value::Null));

    let records = read("best_fit");
    let schema = records[0].record.value.schema.as_ref().unwrap();
    let kind = |name: &str| schema.field(name).unwrap().1.schema.kind;
    assert_eq!(kind("price"), SchemaType::Float64);
    assert_eq!(kind("count"), SchemaType::Int32);
    assert_eq!(kind("loose"), SchemaType::Float64);
    assert_eq!(field(&records[0], "price"), Value::Float64(12.5));
    assert_eq!(field(&records[0], "count"), Value::Int32(42));
    assert_eq!(field(&records[0], "loose"), Value::Float64(1.5));
}

#[test]
fn hostile_table_and_column_names_are_only_names() {
    let hostile = "a\"; DROP TABLE x; --";
    let db = Db::new(
        "CREATE TABLE x (id INTEGER PRIMARY KEY);
         CREATE TABLE \"a\"\"; DROP TABLE x; --\" (\"id\" INTEGER PRIMARY KEY, \"we\"\"ird\" TEXT);
         INSERT INTO \"a\"\"; DROP TABLE x; --\" VALUES (1, 'ok');",
    );
    let configs = db.configs(&[
        ("mode", "incrementing"),
        ("incrementing.column.name", "id"),
        ("table.whitelist", hostile),
    ]);
    let offsets = Arc::new(Offsets::default());
    let records = drain(&mut start(&configs, &offsets));
    assert_eq!(ids(&records), [1]);
    assert_eq!(records[0].record.topic, format!("db-{hostile}"));
    assert_eq!(field(&records[0], "we\"ird"), Value::String("ok".into()));
    let tables: i64 = db
        .conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'x'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1, "table x is still there");
}

#[test]
fn nullable_offset_columns_are_refused_unless_allowed() {
    let db = Db::new(
        "CREATE TABLE loose (id BIGINT, at TIMESTAMP); INSERT INTO loose VALUES (1, '2020-01-01');",
    );
    let configs = db.configs(&[("mode", "incrementing"), ("incrementing.column.name", "id")]);
    let offsets = Arc::new(Offsets::default());
    let mut task = start(&configs, &offsets);
    let error = task.poll().unwrap_err();
    assert!(
        matches!(&error, ConnectError::Failed(m) if m.contains("nullable")),
        "{error:?}"
    );
    let mut allowed = configs.clone();
    allowed.set("validate.non.null", "false");
    assert_eq!(ids(&drain(&mut start(&allowed, &offsets))), [1]);
    let mut missing = configs;
    missing.set("incrementing.column.name", "nope");
    let error = start(&missing, &offsets).poll().unwrap_err();
    assert!(
        matches!(&error, ConnectError::Failed(m) if m.contains("nope")),
        "{error:?}"
    );
}

#[test]
fn tables_are_split_among_tasks_and_watched_for_changes() {
    let db = Db::new(
        "CREATE TABLE a (id INTEGER PRIMARY KEY); CREATE TABLE b (id INTEGER PRIMARY KEY);
         CREATE TABLE c (id INTEGER PRIMARY KEY); CREATE VIEW v AS SELECT * FROM a;",
    );
    let configs = db.configs(&[("mode", "bulk"), ("table.poll.interval.ms", "20")]);
    let listed = |tasks: &[Configs]| -> Vec<String> {
        tasks
            .iter()
            .map(|t| t.get(TASK_TABLES).unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        listed(&task_configs(&configs, 2)),
        [r#"[[null,"a"],[null,"b"]]"#, r#"[[null,"c"]]"#]
    );
    let mut views = configs.clone();
    views.set("table.types", "VIEW");
    assert_eq!(listed(&task_configs(&views, 5)), [r#"[[null,"v"]]"#]);
    let mut included = configs.clone();
    included.set("table.include.list", "[ab]");
    included.set("table.exclude.list", "b");
    assert_eq!(listed(&task_configs(&included, 5)), [r#"[[null,"a"]]"#]);

    let asked = Arc::new(AtomicBool::new(false));
    let mut connector = JdbcSourceConnector::default();
    let flag = asked.clone();
    connector
        .start(
            &configs,
            ConnectorContext::new(Arc::new(move || flag.store(true, Ordering::SeqCst))),
        )
        .unwrap();
    db.run("CREATE TABLE d (id INTEGER PRIMARY KEY);");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !asked.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "no reconfiguration was requested"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        connector.task_configs(1).unwrap()[0].get(TASK_TABLES),
        Some(r#"[[null,"a"],[null,"b"],[null,"c"],[null,"d"]]"#)
    );
    connector.stop();
}

fn errors(values: &[ConfigValue]) -> BTreeMap<String, Vec<String>> {
    values
        .iter()
        .filter(|v| !v.errors.is_empty())
        .map(|v| (v.name.clone(), v.errors.clone()))
        .collect()
}

use std::collections::BTreeMap;

#[test]
fn validation_puts_errors_on_the_keys_at_fault() {
    let db = Db::new(ORDERS);
    let connector = JdbcSourceConnector::default();
    let check = |pairs: &[(&str, &str)]| errors(&connector.validate(&db.configs(pairs)));

    assert!(check(&[("mode", "bulk")]).is_empty());
    let found = check(&[("mode", "sometimes")]);
    assert_eq!(found.keys().collect::<Vec<_>>(), ["mode"]);
    let found = check(&[("mode", "incrementing")]);
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        ["incrementing.column.name"]
    );
    let found = check(&[
        ("mode", "timestamp+incrementing"),
        ("incrementing.column.name", "id"),
    ]);
    assert_eq!(found.keys().collect::<Vec<_>>(), ["timestamp.column.name"]);
    let found = check(&[
        ("mode", "bulk"),
        ("table.whitelist", "orders"),
        ("table.blacklist", "other"),
    ]);
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        ["table.blacklist", "table.whitelist"]
    );
    let found = check(&[("mode", "bulk"), ("table.exclude.list", "x")]);
    assert_eq!(found.keys().collect::<Vec<_>>(), ["table.exclude.list"]);
    let found = check(&[("mode", "bulk"), ("query", "DELETE FROM orders")]);
    assert_eq!(found.keys().collect::<Vec<_>>(), ["query"]);
    let found = check(&[
        ("mode", "bulk"),
        ("connection.url", "jdbc:oracle:thin:@h:1521/x"),
    ]);
    assert_eq!(found.keys().collect::<Vec<_>>(), ["connection.url"]);
    let found = check(&[
        ("mode", "bulk"),
        ("connection.url", "jdbc:sqlite:/nonexistent/dir/x.db"),
    ]);
    assert_eq!(found.keys().collect::<Vec<_>>(), ["connection.url"]);
    assert!(found["connection.url"][0].starts_with("Could not connect to database."));
    let mut no_prefix = db.configs(&[("mode", "bulk")]);
    no_prefix.0.remove("topic.prefix");
    assert_eq!(
        errors(&connector.validate(&no_prefix))
            .keys()
            .collect::<Vec<_>>(),
        ["topic.prefix"]
    );
}
