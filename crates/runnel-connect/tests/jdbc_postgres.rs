//! The JDBC source and sink against a real PostgreSQL (`runnel_testkit::PostgresServer`),
//! their connectors and tasks made through the plugins' factories as a worker makes them,
//! with offsets kept by the test: every source mode with resuming from offsets, late rows
//! held back by the delay, PostgreSQL's types, a custom query; every sink mode, deletes,
//! creating and evolving tables, hostile names; validation. One server serves every case,
//! each on tables of its own, to keep the run short.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use runnel_connect::builtin_plugins;
use runnel_connect::config::{ConfigValue, Configs};
use runnel_connect::connector::{
    ConnectError, ConnectorContext, OffsetReader, Plugin, SinkTask, SourceTask, TaskContext,
    TaskFactory,
};
use runnel_connect::data::{
    ConnectRecord, Field, Schema, SchemaAndValue, SchemaType, SinkRecord, SourceOffset,
    SourcePartition, SourceRecord, Value, DATE_LOGICAL, DECIMAL_LOGICAL, TIMESTAMP_LOGICAL,
    TIME_LOGICAL,
};
use runnel_testkit::PostgresServer;

/// Committed source offsets, by partition.
#[derive(Default)]
struct Offsets(Mutex<BTreeMap<String, SourceOffset>>);

impl OffsetReader for Offsets {
    fn offset(&self, partition: &SourcePartition) -> Option<SourceOffset> {
        let key = serde_json::Value::Object(partition.clone()).to_string();
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned()
    }
}

impl Offsets {
    fn commit(&self, record: &SourceRecord) {
        let key = serde_json::Value::Object(record.source_partition.clone()).to_string();
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, record.source_offset.clone());
    }
}

fn plugin(name: &str) -> Plugin {
    *builtin_plugins()
        .find(name)
        .expect("the JDBC connectors are built-in plugins")
}

fn context(offsets: &Arc<Offsets>) -> TaskContext {
    TaskContext::new(
        "jdbc-pg",
        0,
        Arc::new(AtomicBool::new(false)),
        offsets.clone(),
    )
}

fn configs(pg: &PostgresServer, pairs: &[(&str, &str)]) -> Configs {
    let mut configs = Configs::new();
    configs.set("connection.url", pg.jdbc_url());
    configs.set("connection.user", "postgres");
    configs.set("poll.interval.ms", "20");
    configs.set("retry.backoff.ms", "0");
    for (key, value) in pairs {
        configs.set(*key, *value);
    }
    configs
}

/// A source task of the plugin `JdbcSource` names, started as its connector assigns it.
fn source(configs: &Configs, offsets: &Arc<Offsets>) -> Box<dyn SourceTask> {
    let plugin = plugin("JdbcSource");
    assert!(plugin.is_named("io.confluent.connect.jdbc.JdbcSourceConnector"));
    let mut connector = (plugin.connector)();
    connector
        .start(configs, ConnectorContext::new(Arc::new(|| {})))
        .expect("the source connector starts");
    let mut tasks = connector.task_configs(1).expect("task configs");
    connector.stop();
    assert_eq!(tasks.len(), 1);
    let TaskFactory::Source(new) = plugin.task else {
        panic!("JdbcSource makes source tasks");
    };
    let mut task = new();
    task.start(&tasks.remove(0), &context(offsets))
        .expect("the source task starts");
    task
}

/// Every record the source has to give now: polls until one comes back empty, once every
/// table is due again (`poll.interval.ms` is 20 here; the bulk case waits for its own).
fn drain(task: &mut dyn SourceTask) -> Vec<SourceRecord> {
    std::thread::sleep(Duration::from_millis(25));
    let mut all = Vec::new();
    loop {
        let records = task.poll().expect("poll");
        if records.is_empty() {
            return all;
        }
        all.extend(records);
        assert!(all.len() < 100_000, "the source never ran dry");
    }
}

fn field(record: &SourceRecord, name: &str) -> Value {
    let schema = record.record.value.schema.as_ref().expect("a value schema");
    let (at, _) = schema
        .field(name)
        .unwrap_or_else(|| panic!("no field {name}"));
    match &record.record.value.value {
        Value::Struct(values) => values[at].clone(),
        other => panic!("not a struct: {other:?}"),
    }
}

fn field_schema(record: &SourceRecord, name: &str) -> Schema {
    let schema = record.record.value.schema.as_ref().expect("a value schema");
    schema
        .field(name)
        .unwrap_or_else(|| panic!("no field {name}"))
        .1
        .schema
        .clone()
}

fn ids(records: &[SourceRecord]) -> Vec<i64> {
    records
        .iter()
        .map(|r| match field(r, "id") {
            Value::Int32(n) => n.into(),
            Value::Int64(n) => n,
            other => panic!("id {other:?}"),
        })
        .collect()
}

fn sink(configs: &Configs) -> Box<dyn SinkTask> {
    let plugin = plugin("JdbcSink");
    assert!(plugin.is_named("io.confluent.connect.jdbc.JdbcSinkConnector"));
    let TaskFactory::Sink(new) = plugin.task else {
        panic!("JdbcSink makes sink tasks");
    };
    let mut task = new();
    task.start(configs, &context(&Arc::new(Offsets::default())))
        .expect("the sink task starts");
    task
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

fn put_and_flush(task: &mut dyn SinkTask, records: &[SinkRecord]) {
    task.put(records).expect("put");
    task.flush(&BTreeMap::new()).expect("flush");
}

#[test]
fn jdbc_connectors_against_postgresql() {
    let started = Instant::now();
    let pg = PostgresServer::start();
    source_incrementing_types_and_resume(&pg);
    source_timestamp_modes_and_delay(&pg);
    source_bulk_and_query(&pg);
    sink_modes_deletes_and_evolution(&pg);
    sink_hostile_names_and_refusals(&pg);
    round_trip_from_source_to_sink(&pg);
    validation(&pg);
    eprintln!("PostgreSQL cases took {:?}", started.elapsed());
}

fn source_incrementing_types_and_resume(pg: &PostgresServer) {
    pg.psql(
        "runnel",
        "CREATE TABLE orders (id serial PRIMARY KEY, name text NOT NULL, amount numeric(10,2),
             ratio double precision, small smallint, big bigint, flag boolean, data bytea,
             day date, clock time, at timestamp, atz timestamptz, doc jsonb, uid uuid,
             price numeric, label varchar(8), tags text[], span interval);
         INSERT INTO orders (name, amount, ratio, small, big, flag, data, day, clock, at, atz,
                             doc, uid, price, label, tags, span)
         VALUES ('one', 12.5, 0.25, -3, 9000000000, true, '\\x00ff', '2024-02-29',
                 '12:30:00.5', '2024-02-29 12:30:00.25', '2024-02-29 12:30:00+02',
                 '{\"a\": 1}', '123e4567-e89b-12d3-a456-426614174000', 1.5, 'x',
                 '{a,b}', '1 day');
         INSERT INTO orders (name) VALUES ('two'), ('three');",
    );
    let configs = configs(
        pg,
        &[
            ("mode", "incrementing"),
            ("incrementing.column.name", "id"),
            ("table.whitelist", "orders"),
            ("topic.prefix", "pg-"),
            ("batch.max.rows", "2"),
        ],
    );
    let offsets = Arc::new(Offsets::default());
    let mut task = source(&configs, &offsets);
    let records = drain(&mut *task);
    assert_eq!(ids(&records), [1, 2, 3]);
    let first = &records[0];
    assert_eq!(first.record.topic, "pg-orders");
    assert_eq!(
        serde_json::Value::Object(first.source_partition.clone()),
        serde_json::json!({"protocol": "1", "table": "public.orders"})
    );
    assert_eq!(
        serde_json::Value::Object(records[2].source_offset.clone()),
        serde_json::json!({"incrementing": 3})
    );
    let schema = first.record.value.schema.as_ref().expect("schema");
    assert_eq!(schema.name.as_deref(), Some("orders"));
    assert!(
        schema.field("tags").is_none() && schema.field("span").is_none(),
        "unsupported types are left out"
    );
    let kind = |name: &str| {
        let s = field_schema(first, name);
        (s.kind, s.name, s.optional)
    };
    assert_eq!(kind("id"), (SchemaType::Int32, None, false));
    assert_eq!(kind("name"), (SchemaType::String, None, false));
    assert_eq!(
        kind("amount"),
        (SchemaType::Bytes, Some(DECIMAL_LOGICAL.into()), true)
    );
    assert_eq!(kind("ratio"), (SchemaType::Float64, None, true));
    assert_eq!(kind("small"), (SchemaType::Int16, None, true));
    assert_eq!(kind("big"), (SchemaType::Int64, None, true));
    assert_eq!(kind("flag"), (SchemaType::Boolean, None, true));
    assert_eq!(kind("data"), (SchemaType::Bytes, None, true));
    assert_eq!(
        kind("day"),
        (SchemaType::Int32, Some(DATE_LOGICAL.into()), true)
    );
    assert_eq!(
        kind("clock"),
        (SchemaType::Int32, Some(TIME_LOGICAL.into()), true)
    );
    assert_eq!(
        kind("at"),
        (SchemaType::Int64, Some(TIMESTAMP_LOGICAL.into()), true)
    );
    assert_eq!(
        kind("atz"),
        (SchemaType::Int64, Some(TIMESTAMP_LOGICAL.into()), true)
    );
    assert_eq!(kind("doc"), (SchemaType::String, None, true));
    assert_eq!(kind("uid"), (SchemaType::String, None, true));
    assert_eq!(kind("label"), (SchemaType::String, None, true));
    assert_eq!(field_schema(first, "amount").parameters["scale"], "2");
    assert_eq!(field_schema(first, "price").parameters["scale"], "127");

    assert_eq!(field(first, "name"), Value::String("one".into()));
    assert_eq!(field(first, "amount"), Value::Bytes(vec![0x04, 0xe2]));
    assert_eq!(field(first, "ratio"), Value::Float64(0.25));
    assert_eq!(field(first, "small"), Value::Int16(-3));
    assert_eq!(field(first, "big"), Value::Int64(9_000_000_000));
    assert_eq!(field(first, "flag"), Value::Boolean(true));
    assert_eq!(field(first, "data"), Value::Bytes(vec![0, 0xff]));
    assert_eq!(field(first, "day"), Value::Int32(19_782));
    assert_eq!(field(first, "clock"), Value::Int32(45_000_500));
    assert_eq!(field(first, "at"), Value::Int64(1_709_209_800_250));
    assert_eq!(field(first, "atz"), Value::Int64(1_709_202_600_000));
    assert_eq!(field(first, "doc"), Value::String("{\"a\": 1}".into()));
    assert_eq!(
        field(first, "uid"),
        Value::String("123e4567-e89b-12d3-a456-426614174000".into())
    );
    assert_eq!(field(&records[1], "amount"), Value::Null);

    pg.psql(
        "runnel",
        "INSERT INTO orders (name) VALUES ('four'); UPDATE orders SET name = 'uno' WHERE id = 1;",
    );
    assert_eq!(ids(&drain(&mut *task)), [4]);
    task.stop();

    offsets.commit(&records[1]);
    let mut resumed = source(&configs, &offsets);
    assert_eq!(ids(&drain(&mut *resumed)), [3, 4]);
    resumed.stop();

    let mut best_fit = configs.clone();
    best_fit.set("numeric.mapping", "best_fit");
    let records = drain(&mut *source(&best_fit, &Arc::new(Offsets::default())));
    assert_eq!(field(&records[0], "amount"), Value::Float64(12.5));
    assert_eq!(field(&records[0], "price"), Value::Float64(1.5));
}

fn source_timestamp_modes_and_delay(pg: &PostgresServer) {
    pg.psql(
        "runnel",
        "CREATE TABLE events (id bigserial PRIMARY KEY, label text,
                              updated timestamptz NOT NULL DEFAULT now());
         INSERT INTO events (label, updated) VALUES
           ('a', '2020-01-01 00:00:01+00'), ('b', '2020-01-01 00:00:02+00'),
           ('c', '2020-01-01 00:00:02+00'), ('d', '2020-01-01 00:00:02+00'),
           ('e', '2020-01-01 00:00:03.123456+00');",
    );
    // Timestamp alone: ties across a page are all read.
    let offsets = Arc::new(Offsets::default());
    let timestamp = configs(
        pg,
        &[
            ("mode", "timestamp"),
            ("timestamp.column.name", "updated"),
            ("table.whitelist", "public.events"),
            ("topic.prefix", "pg-"),
            ("batch.max.rows", "2"),
            ("timestamp.delay.interval.ms", "3600000"),
        ],
    );
    let mut task = source(&timestamp, &offsets);
    let records = drain(&mut *task);
    assert_eq!(ids(&records), [1, 2, 3, 4, 5]);
    assert_eq!(
        serde_json::Value::Object(records[4].source_offset.clone()),
        serde_json::json!({"timestamp": 1_577_836_803_123i64, "timestamp_nanos": 123_456_000})
    );
    // A row stamped ten minutes ago waits out the hour's delay; one from two hours ago
    // does not.
    pg.psql(
        "runnel",
        "UPDATE events SET updated = now() - interval '10 minutes' WHERE id = 1;
         UPDATE events SET updated = now() - interval '2 hours' WHERE id = 2;",
    );
    assert_eq!(ids(&drain(&mut *task)), [2]);
    task.stop();

    // Timestamp and incrementing: resumes inside a timestamp, from a committed offset.
    let both = {
        let mut c = timestamp.clone();
        c.set("mode", "timestamp+incrementing");
        c.set("incrementing.column.name", "id");
        c.set("timestamp.delay.interval.ms", "0");
        c
    };
    let offsets = Arc::new(Offsets::default());
    let mut task = source(&both, &offsets);
    let records = drain(&mut *task);
    assert_eq!(ids(&records), [3, 4, 5, 2, 1]);
    task.stop();
    offsets.commit(&records[0]);
    let mut resumed = source(&both, &offsets);
    assert_eq!(ids(&drain(&mut *resumed)), [4, 5, 2, 1]);
    pg.psql("runnel", "INSERT INTO events (label) VALUES ('new');");
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(ids(&drain(&mut *resumed)), [6]);
}

fn source_bulk_and_query(pg: &PostgresServer) {
    pg.psql(
        "runnel",
        "CREATE SCHEMA inventory;
         CREATE TABLE inventory.stock (id int PRIMARY KEY, item text);
         INSERT INTO inventory.stock SELECT n, 'item ' || n FROM generate_series(1, 5) n;",
    );
    let bulk = configs(
        pg,
        &[
            ("mode", "bulk"),
            ("table.include.list", "inventory\\..*"),
            ("topic.prefix", "bulk-"),
            ("batch.max.rows", "2"),
            ("poll.interval.ms", "200"),
        ],
    );
    let mut task = source(&bulk, &Arc::new(Offsets::default()));
    let records = drain(&mut *task);
    assert_eq!(ids(&records), [1, 2, 3, 4, 5]);
    assert_eq!(records[0].record.topic, "bulk-stock");
    assert!(records.iter().all(|r| r.source_offset.is_empty()));
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(drain(&mut *task).len(), 5, "bulk reads everything again");
    task.stop();

    let query = configs(
        pg,
        &[
            ("mode", "incrementing"),
            ("incrementing.column.name", "id"),
            (
                "query",
                "SELECT s.id, s.item, upper(s.item) AS shout FROM inventory.stock s",
            ),
            ("topic.prefix", "stock-query"),
        ],
    );
    let offsets = Arc::new(Offsets::default());
    let records = drain(&mut *source(&query, &offsets));
    assert_eq!(ids(&records), [1, 2, 3, 4, 5]);
    assert_eq!(records[0].record.topic, "stock-query");
    assert_eq!(
        serde_json::Value::Object(records[0].source_partition.clone()),
        serde_json::json!({"query": "query"})
    );
    assert_eq!(field(&records[0], "shout"), Value::String("ITEM 1".into()));
    offsets.commit(&records[3]);
    assert_eq!(ids(&drain(&mut *source(&query, &offsets))), [5]);
}

fn person_schema(extra: Vec<Field>) -> Schema {
    let mut fields = vec![
        Field::new("id", Schema::new(SchemaType::Int64)),
        Field::new("name", Schema::new(SchemaType::String)),
        Field::new("score", Schema::optional(SchemaType::Float64)),
    ];
    fields.extend(extra);
    Schema::structure(Some("person"), fields)
}

fn person(id: i64, name: &str, score: Option<f64>) -> Vec<Value> {
    vec![
        Value::Int64(id),
        Value::String(name.into()),
        score.map_or(Value::Null, Value::Float64),
    ]
}

fn keyed(topic: &str, offset: i64, id: i64, value: Option<(Schema, Vec<Value>)>) -> SinkRecord {
    let key_schema = Schema::structure(
        Some("key"),
        vec![Field::new("id", Schema::new(SchemaType::Int64))],
    );
    record(
        topic,
        offset,
        SchemaAndValue::new(Some(key_schema), Value::Struct(vec![Value::Int64(id)])),
        match value {
            Some((schema, values)) => SchemaAndValue::new(Some(schema), Value::Struct(values)),
            None => SchemaAndValue::null(),
        },
    )
}

fn sink_modes_deletes_and_evolution(pg: &PostgresServer) {
    // Upserts (and deletes) by a struct key, in batches larger than one statement.
    let upsert = configs(
        pg,
        &[
            ("insert.mode", "upsert"),
            ("pk.mode", "record_key"),
            ("delete.enabled", "true"),
            ("auto.create", "true"),
            ("auto.evolve", "true"),
            ("batch.size", "3000"),
        ],
    );
    let mut task = sink(&upsert);
    let schema = person_schema(Vec::new());
    let mut records: Vec<SinkRecord> = (0..2500)
        .map(|i| {
            keyed(
                "people",
                i,
                i % 2000,
                Some((
                    schema.clone(),
                    person(i % 2000, &format!("p{i}"), Some(i as f64)),
                )),
            )
        })
        .collect();
    records.push(keyed("people", 2500, 7, None));
    put_and_flush(&mut *task, &records);
    assert_eq!(
        pg.psql(
            "runnel",
            "SELECT count(*), max(name) FILTER (WHERE id = 1) FROM people"
        ),
        "1999|p2001\n"
    );
    assert_eq!(
        pg.psql(
            "runnel",
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a
               ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indrelid = 'people'::regclass AND i.indisprimary"
        ),
        "id\n"
    );

    // A new optional field adds a nullable column.
    let evolved = person_schema(vec![Field::new(
        "email",
        Schema::optional(SchemaType::String),
    )]);
    let mut value = person(1, "ann", None);
    value.push(Value::String("ann@example.com".into()));
    put_and_flush(
        &mut *task,
        &[keyed("people", 2501, 1, Some((evolved, value)))],
    );
    assert_eq!(
        pg.psql(
            "runnel",
            "SELECT name, email FROM people WHERE id IN (1, 2) ORDER BY id"
        ),
        "ann|ann@example.com\np2002|\n"
    );
    assert_eq!(
        pg.psql(
            "runnel",
            "SELECT is_nullable, data_type FROM information_schema.columns
             WHERE table_name = 'people' AND column_name = 'email'"
        ),
        "YES|text\n"
    );
    task.stop();

    // Insert of every type into a created table.
    let typed = Schema::structure(
        None,
        vec![
            Field::new("id", Schema::new(SchemaType::Int32)),
            Field::new("small", Schema::optional(SchemaType::Int16)),
            Field::new("flag", Schema::optional(SchemaType::Boolean)),
            Field::new("ratio", Schema::optional(SchemaType::Float32)),
            Field::new("data", Schema::optional(SchemaType::Bytes)),
            Field::new(
                "day",
                Schema {
                    name: Some(DATE_LOGICAL.into()),
                    ..Schema::optional(SchemaType::Int32)
                },
            ),
            Field::new(
                "clock",
                Schema {
                    name: Some(TIME_LOGICAL.into()),
                    ..Schema::optional(SchemaType::Int32)
                },
            ),
            Field::new(
                "at",
                Schema {
                    name: Some(TIMESTAMP_LOGICAL.into()),
                    ..Schema::optional(SchemaType::Int64)
                },
            ),
            Field::new(
                "price",
                Schema {
                    name: Some(DECIMAL_LOGICAL.into()),
                    parameters: [("scale".to_owned(), "2".to_owned())].into(),
                    ..Schema::optional(SchemaType::Bytes)
                },
            ),
        ],
    );
    let mut insert = sink(&configs(
        pg,
        &[
            ("auto.create", "true"),
            ("pk.mode", "record_value"),
            ("pk.fields", "id"),
        ],
    ));
    let row = |id: i32| {
        record(
            "typed",
            id.into(),
            SchemaAndValue::null(),
            SchemaAndValue::new(
                Some(typed.clone()),
                Value::Struct(vec![
                    Value::Int32(id),
                    Value::Int16(-3),
                    Value::Boolean(true),
                    Value::Float32(0.5),
                    Value::Bytes(vec![0, 0xff]),
                    Value::Int32(19_782),
                    Value::Int32(45_000_500),
                    Value::Int64(1_709_209_800_250),
                    Value::Bytes(vec![0xfb, 0x1e]),
                ]),
            ),
        )
    };
    put_and_flush(&mut *insert, &[row(1), row(2)]);
    assert_eq!(
        pg.psql("runnel", "SELECT * FROM typed WHERE id = 1"),
        "1|-3|t|0.5|\\x00ff|2024-02-29|12:30:00.5|2024-02-29 12:30:00.25|-12.50\n"
    );
    let error = insert.put(&[row(2)]).expect_err("a duplicate key");
    assert!(
        matches!(&error, ConnectError::Failed(m) if m.contains("duplicate key")),
        "{error:?}"
    );

    // Update mode touches existing rows only.
    let mut update = sink(&configs(
        pg,
        &[("insert.mode", "update"), ("pk.mode", "record_key")],
    ));
    put_and_flush(
        &mut *update,
        &[
            keyed(
                "people",
                0,
                3,
                Some((person_schema(Vec::new()), person(3, "trey", None))),
            ),
            keyed(
                "people",
                1,
                99_999,
                Some((person_schema(Vec::new()), person(99_999, "nobody", None))),
            ),
        ],
    );
    assert_eq!(
        pg.psql(
            "runnel",
            "SELECT name, score IS NULL FROM people WHERE id IN (3, 99999)"
        ),
        "trey|t\n"
    );
}

fn sink_hostile_names_and_refusals(pg: &PostgresServer) {
    pg.psql("runnel", "CREATE TABLE x (id int)");
    let topic = "a\"; DROP TABLE x; --";
    let schema = Schema::structure(
        None,
        vec![Field::new(
            "x\"); DELETE FROM x; --",
            Schema::new(SchemaType::String),
        )],
    );
    let mut task = sink(&configs(pg, &[("auto.create", "true")]));
    put_and_flush(
        &mut *task,
        &[record(
            topic,
            0,
            SchemaAndValue::null(),
            SchemaAndValue::new(
                Some(schema),
                Value::Struct(vec![Value::String("'); DROP TABLE x; --".into())]),
            ),
        )],
    );
    assert_eq!(
        pg.psql("runnel", "SELECT * FROM \"a\"\"; DROP TABLE x; --\""),
        "'); DROP TABLE x; --\n"
    );
    assert_eq!(pg.psql("runnel", "SELECT count(*) FROM x"), "0\n");

    let schemaless = record(
        "events",
        42,
        SchemaAndValue::null(),
        SchemaAndValue::new(
            None,
            Value::Map(vec![(Value::String("id".into()), Value::Int64(1))]),
        ),
    );
    let error = task.put(&[schemaless]).expect_err("a schemaless record");
    assert!(
        matches!(&error, ConnectError::Failed(m) if m.contains("topic='events'") && m.contains("offset=42")),
        "{error:?}"
    );
}

fn round_trip_from_source_to_sink(pg: &PostgresServer) {
    // What the source reads, the sink writes back the same (through Connect's types).
    let records = drain(&mut *source(
        &configs(
            pg,
            &[
                ("mode", "bulk"),
                ("table.whitelist", "orders"),
                ("topic.prefix", "copy_of_"),
            ],
        ),
        &Arc::new(Offsets::default()),
    ));
    let copies: Vec<SinkRecord> = records
        .into_iter()
        .enumerate()
        .map(|(i, r)| SinkRecord {
            record: ConnectRecord {
                partition: Some(0),
                ..r.record
            },
            kafka_offset: i as i64,
        })
        .collect();
    let mut task = sink(&configs(
        pg,
        &[
            ("auto.create", "true"),
            ("pk.mode", "record_value"),
            ("pk.fields", "id"),
        ],
    ));
    put_and_flush(&mut *task, &copies);
    // The copy's timestamps have no zone (UTC); its JSON and UUID are text; its decimals
    // have Connect's scale (127 for an unconstrained NUMERIC).
    let common = "id, name, amount, ratio, small, big, flag, data, day, clock, at, label";
    let original = pg.psql(
        "runnel",
        &format!(
            "SELECT {common}, atz AT TIME ZONE 'UTC', doc::text, uid::text, trim_scale(price) \
             FROM orders ORDER BY id"
        ),
    );
    let copied = pg.psql(
        "runnel",
        &format!(
            "SELECT {common}, atz, doc, uid, trim_scale(price) FROM copy_of_orders ORDER BY id"
        ),
    );
    assert_eq!(original.lines().count(), 4);
    assert_eq!(copied, original);
}

fn error_keys(values: &[ConfigValue]) -> Vec<&str> {
    values
        .iter()
        .filter(|v| !v.errors.is_empty())
        .map(|v| v.name.as_str())
        .collect()
}

fn validation(pg: &PostgresServer) {
    let source = (plugin("JdbcSource").connector)();
    let sink = (plugin("JdbcSink").connector)();
    let base = configs(pg, &[("mode", "bulk"), ("topic.prefix", "v-")]);
    assert!(error_keys(&source.validate(&base)).is_empty());
    assert!(error_keys(&sink.validate(&base)).is_empty());

    let closed_port = runnel_testkit::free_port();
    let mut unreachable = base.clone();
    unreachable.set(
        "connection.url",
        format!("jdbc:postgresql://127.0.0.1:{closed_port}/runnel"),
    );
    let values = source.validate(&unreachable);
    assert_eq!(error_keys(&values), ["connection.url"]);
    let message = &values
        .iter()
        .find(|v| v.name == "connection.url")
        .expect("connection.url")
        .errors[0];
    assert!(
        message.starts_with("Could not connect to database."),
        "{message}"
    );
    assert_eq!(error_keys(&sink.validate(&unreachable)), ["connection.url"]);

    let mut no_database = base.clone();
    no_database.set(
        "connection.url",
        format!(
            "jdbc:postgresql://127.0.0.1:{}/nothing_here?user=postgres",
            pg.port()
        ),
    );
    assert_eq!(
        error_keys(&source.validate(&no_database)),
        ["connection.url"]
    );

    let mut wrong_mode = base.clone();
    wrong_mode.set("mode", "incrementing");
    assert_eq!(
        error_keys(&source.validate(&wrong_mode)),
        ["incrementing.column.name"]
    );
    let mut deletes = base;
    deletes.set("delete.enabled", "true");
    assert_eq!(error_keys(&sink.validate(&deletes)), ["delete.enabled"]);
}
