//! The PostgreSQL CDC source against a real PostgreSQL (`runnel_testkit::PostgresServer`),
//! its task run directly through the plugin's factory with offsets kept by the test:
//! the snapshot, changes in several transactions (two interleaved ones committing in the
//! opposite order to their start), the slot advanced on commit, a restart from a committed
//! offset in the middle of a transaction, and the column types as Debezium maps them.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use runnel_connect::builtin_plugins;
use runnel_connect::cdc::pgoutput::Lsn;
use runnel_connect::config::Configs;
use runnel_connect::connector::{OffsetReader, SourceTask, TaskContext, TaskFactory};
use runnel_connect::data::{Schema, SourceOffset, SourcePartition, SourceRecord, Value};
use runnel_testkit::PostgresServer;

/// The offsets "committed" so far: what a worker's offset store would hold.
#[derive(Default)]
struct Offsets(Mutex<Option<SourceOffset>>);

impl OffsetReader for Offsets {
    fn offset(&self, partition: &SourcePartition) -> Option<SourceOffset> {
        assert_eq!(partition.get("server"), Some(&"shop".into()));
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Offsets {
    fn set(&self, offset: &SourceOffset) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(offset.clone());
    }
}

fn configs(pg: &PostgresServer, extra: &[(&str, &str)]) -> Configs {
    let mut configs = Configs::new();
    for (k, v) in [
        ("connector.class", "PostgresCdcSource"),
        ("database.hostname", "127.0.0.1"),
        ("database.port", &pg.port().to_string()),
        ("database.user", "postgres"),
        ("database.dbname", "runnel"),
        ("topic.prefix", "shop"),
        ("poll.interval.ms", "20"),
    ] {
        configs.set(k, v);
    }
    for (k, v) in extra {
        configs.set(*k, *v);
    }
    configs
}

/// A task of the plugin the worker would find under `PostgresCdcSource`, started.
fn start_task(configs: &Configs, offsets: &Arc<Offsets>) -> Box<dyn SourceTask> {
    let plugins = builtin_plugins();
    let plugin = plugins
        .find("PostgresCdcSource")
        .expect("the CDC source is a built-in plugin");
    assert!(plugin.is_named("io.debezium.connector.postgresql.PostgresConnector"));
    let TaskFactory::Source(make) = plugin.task else {
        panic!("not a source")
    };
    let mut task = make();
    let context = TaskContext::new(
        "cdc",
        0,
        Arc::new(AtomicBool::new(false)),
        offsets.clone() as Arc<dyn OffsetReader>,
    );
    task.start(configs, &context).expect("the task starts");
    task
}

/// Polls until `n` records came, then a few times more to see that no more come.
fn poll_exactly(task: &mut dyn SourceTask, n: usize) -> Vec<SourceRecord> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut records = Vec::new();
    while records.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} records came: {:?}",
            records.len(),
            records.iter().map(describe).collect::<Vec<_>>()
        );
        records.extend(task.poll().expect("poll"));
    }
    for _ in 0..3 {
        records.extend(task.poll().expect("poll"));
    }
    assert_eq!(
        records.len(),
        n,
        "{:?}",
        records.iter().map(describe).collect::<Vec<_>>()
    );
    records
}

/// The value of field `name` of a struct of `schema`.
fn field<'a>(schema: &'a Schema, value: &'a Value, name: &str) -> (&'a Schema, &'a Value) {
    let (i, field) = schema
        .field(name)
        .unwrap_or_else(|| panic!("no field {name}"));
    match value {
        Value::Struct(values) => (&field.schema, &values[i]),
        other => panic!("not a struct: {other:?}"),
    }
}

/// `op table id name`, or `tombstone table id`.
fn describe(record: &SourceRecord) -> String {
    let r = &record.record;
    let table = r.topic.rsplit('.').next().unwrap_or_default().to_owned();
    let show = |v: &Value| match v {
        Value::Int32(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Null => "null".to_owned(),
        other => format!("{other:?}"),
    };
    let Some(schema) = &r.value.schema else {
        let key = match (&r.key.schema, &r.key.value) {
            (Some(schema), value) => show(field(schema, value, "id").1),
            _ => "?".to_owned(),
        };
        return format!("tombstone {table} {key}");
    };
    let value = &r.value.value;
    let op = show(field(schema, value, "op").1);
    let (row_schema, after) = field(schema, value, "after");
    let (_, before) = field(schema, value, "before");
    let row = if after.is_null() { before } else { after };
    let columns: Vec<String> = row_schema
        .fields
        .iter()
        .filter(|f| f.name == "id" || f.name == "name" || f.name == "line")
        .map(|f| show(field(row_schema, row, &f.name).1))
        .collect();
    format!("{op} {table} {}", columns.join(" "))
}

fn slot_confirmed(pg: &PostgresServer) -> Lsn {
    let text = pg.psql(
        "runnel",
        "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'debezium'",
    );
    Lsn::parse(text.trim()).unwrap_or_else(|| panic!("no slot: {text:?}"))
}

fn offset_u64(record: &SourceRecord, key: &str) -> u64 {
    record.source_offset[key]
        .as_u64()
        .unwrap_or_else(|| panic!("offset {key} is not a number: {:?}", record.source_offset))
}

#[test]
fn snapshot_then_committed_transactions_in_commit_order_and_an_exact_restart() {
    let pg = PostgresServer::start();
    pg.psql(
        "runnel",
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(8,2)); \
         CREATE TABLE nokey (line text); \
         CREATE TABLE ignored (id int PRIMARY KEY); \
         INSERT INTO items VALUES (1, 'pen', 1.25), (2, 'ink', NULL); \
         INSERT INTO nokey VALUES ('a');",
    );
    let configs = configs(&pg, &[("table.exclude.list", r"public\.ignored")]);
    let offsets = Arc::new(Offsets::default());
    let mut task = start_task(&configs, &offsets);

    // The snapshot: every captured row, as reads, the last one saying so.
    let snapshot = poll_exactly(&mut *task, 3);
    let described: Vec<String> = snapshot.iter().map(describe).collect();
    assert_eq!(described, ["r items 1 pen", "r items 2 ink", "r nokey a"]);
    assert_eq!(snapshot[2].source_offset["snapshot_completed"], true);
    assert_eq!(snapshot[0].source_offset["snapshot_completed"], false);
    let source = |record: &SourceRecord, name: &str| {
        let r = &record.record.value;
        let (schema, value) = field(r.schema.as_ref().unwrap(), &r.value, "source");
        field(schema, value, name).1.clone()
    };
    assert_eq!(
        source(&snapshot[0], "snapshot"),
        Value::String("true".into())
    );
    assert_eq!(
        source(&snapshot[2], "snapshot"),
        Value::String("last".into())
    );
    assert_eq!(source(&snapshot[0], "db"), Value::String("runnel".into()));
    assert_eq!(snapshot[0].record.topic, "shop.public.items");
    assert_eq!(
        snapshot[0].record.key.value,
        Value::Struct(vec![Value::Int32(1)])
    );
    // No primary key: no key.
    assert_eq!(snapshot[2].record.key.value, Value::Null);
    for record in &snapshot {
        let value = &record.record.value;
        assert!(value.value.conforms_to(value.schema.as_ref().unwrap()));
    }

    // Changes in several transactions; one only touches an excluded table; one changes a
    // primary key.
    pg.psql(
        "runnel",
        "INSERT INTO items VALUES (3, 'cup', 1.50); UPDATE items SET name = 'pencil' WHERE id = 1;",
    );
    pg.psql("runnel", "DELETE FROM items WHERE id = 2");
    pg.psql("runnel", "INSERT INTO ignored VALUES (1)");
    pg.psql("runnel", "UPDATE items SET id = 10 WHERE id = 3");
    // Two transactions interleaved on two sessions: the first begun writes first, but
    // commits last.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let connect = || async {
            let (client, connection) =
                tokio_postgres::connect(&pg.connection_string(), tokio_postgres::NoTls)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            client
        };
        let a = connect().await;
        let b = connect().await;
        a.batch_execute("BEGIN; INSERT INTO items VALUES (20, 'begun first')")
            .await
            .unwrap();
        b.batch_execute("BEGIN; INSERT INTO items VALUES (21, 'committed first'); COMMIT")
            .await
            .unwrap();
        a.batch_execute("COMMIT").await.unwrap();
    });

    let changes = poll_exactly(&mut *task, 9);
    let described: Vec<String> = changes.iter().map(describe).collect();
    assert_eq!(
        described,
        [
            "c items 3 cup",
            "u items 1 pencil",
            "d items 2 ",
            "tombstone items 2",
            "d items 3 ",
            "tombstone items 3",
            "c items 10 cup",
            "c items 21 committed first",
            "c items 20 begun first",
        ]
    );
    // Under the default replica identity an update that keeps the key has no before, and
    // a delete's before has the key (the other required columns their zero).
    let value = |i: usize, name: &str| {
        let r = &changes[i].record.value;
        field(r.schema.as_ref().unwrap(), &r.value, name).1.clone()
    };
    assert_eq!(value(1, "before"), Value::Null);
    assert_eq!(
        value(2, "before"),
        Value::Struct(vec![
            Value::Int32(2),
            Value::String(String::new()),
            Value::Null
        ])
    );
    assert_eq!(
        source(&changes[0], "snapshot"),
        Value::String("false".into())
    );
    assert!(matches!(source(&changes[0], "txId"), Value::Int64(_)));
    // Offsets name the transaction's commit; positions only grow along the stream.
    assert_eq!(
        offset_u64(&changes[0], "lsn"),
        offset_u64(&changes[1], "lsn_commit")
    );
    assert_eq!(changes[0].source_offset["last_event"], false);
    assert_eq!(changes[1].source_offset["last_event"], true);
    for pair in changes.windows(2) {
        let key = |r: &SourceRecord| {
            (
                offset_u64(r, "lsn"),
                offset_u64(r, "event"),
                offset_u64(r, "part"),
            )
        };
        assert!(key(&pair[0]) < key(&pair[1]));
    }

    // The worker commits the offsets up to the delete of item 2 (its tombstone not yet):
    // the slot moves to that transaction's commit, keeping the transaction.
    let before_commit = slot_confirmed(&pg);
    let cut = 2;
    offsets.set(&changes[cut].source_offset);
    task.commit().unwrap();
    let confirmed = slot_confirmed(&pg);
    assert_eq!(confirmed, Lsn(offset_u64(&changes[cut], "lsn")));
    assert!(confirmed > before_commit);
    task.stop();

    // Changed while the connector is down.
    pg.psql("runnel", "INSERT INTO items VALUES (30, 'late')");

    // Restarted from the committed offset: everything after it, once, nothing before it.
    let mut task = start_task(&configs, &offsets);
    let resumed = poll_exactly(&mut *task, changes.len() - cut - 1 + 1);
    let expected: Vec<String> = changes[cut + 1..]
        .iter()
        .map(describe)
        .chain(["c items 30 late".to_owned()])
        .collect();
    assert_eq!(resumed.iter().map(describe).collect::<Vec<_>>(), expected);
    for (again, first) in resumed.iter().zip(&changes[cut + 1..]) {
        assert_eq!(again.source_offset, first.source_offset);
    }

    // All committed: the slot lets go of everything, and a new start emits nothing.
    let last = resumed.last().unwrap();
    offsets.set(&last.source_offset);
    task.commit().unwrap();
    assert!(slot_confirmed(&pg) > Lsn(offset_u64(last, "lsn")));
    task.stop();
    let mut task = start_task(&configs, &offsets);
    poll_exactly(&mut *task, 0);
    task.stop();
}

#[test]
fn column_types_map_as_debeziums_and_the_snapshot_reads_as_the_stream() {
    let pg = PostgresServer::start();
    let columns = "i2 smallint, i8 bigint, f4 real, f8 double precision, b boolean, \
                   vc varchar(10), ch char(3), bin bytea, n numeric(10,2), nv numeric, d date, \
                   ts timestamp, ts3 timestamp(3), tstz timestamptz, t time, u uuid, j json, \
                   jb jsonb, iv interval, dom posint, m mood, tags text[], cash money";
    let values = "-2, 9000000000, 1.5, 2.25, true, 'abc', 'x', '\\x00ff', 12.34, -0.5, \
                  '2024-02-29', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.123', \
                  '2024-01-02 03:04:05.123456+02', '01:02:03', \
                  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": 1}', '{\"b\": 2}', \
                  '1 day 2 hours', 7, 'happy', '{x,y}', 12.5";
    pg.psql(
        "runnel",
        &format!(
            "CREATE DOMAIN posint AS integer CHECK (VALUE > 0); \
             CREATE TYPE mood AS ENUM ('sad', 'happy'); \
             CREATE TABLE typed (id int PRIMARY KEY, {columns}); \
             INSERT INTO typed VALUES (1, {values});"
        ),
    );
    let configs = configs(&pg, &[]);

    // Validating against a live server finds nothing wrong.
    let plugins = builtin_plugins();
    let connector = (plugins.find("PostgresConnector").unwrap().connector)();
    let errors: Vec<String> = connector
        .validate(&configs)
        .into_iter()
        .flat_map(|v| v.errors)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");

    let offsets = Arc::new(Offsets::default());
    let mut task = start_task(&configs, &offsets);
    let read = poll_exactly(&mut *task, 1);
    pg.psql("runnel", &format!("INSERT INTO typed VALUES (2, {values})"));
    let created = poll_exactly(&mut *task, 1);
    task.stop();

    let after = |record: &SourceRecord| {
        let r = &record.record.value;
        let (schema, value) = field(r.schema.as_ref().unwrap(), &r.value, "after");
        (schema.clone(), value.clone())
    };
    let (schema, snapshot_row) = after(&read[0]);
    let (_, streamed_row) = after(&created[0]);
    // The same values read by the snapshot's SELECT and decoded from pgoutput.
    let (Value::Struct(a), Value::Struct(b)) = (&snapshot_row, &streamed_row) else {
        panic!("rows are structs")
    };
    assert_eq!(a[1..], b[1..]);
    assert!(streamed_row.conforms_to(&schema));

    let get = |name: &str| field(&schema, &streamed_row, name);
    let logical = |name: &str| get(name).0.name.clone().unwrap_or_default();
    assert_eq!(get("id").1, &Value::Int32(2));
    assert!(!get("id").0.optional);
    assert_eq!(get("i2").1, &Value::Int16(-2));
    assert_eq!(get("i8").1, &Value::Int64(9_000_000_000));
    assert_eq!(get("f4").1, &Value::Float32(1.5));
    assert_eq!(get("f8").1, &Value::Float64(2.25));
    assert_eq!(get("b").1, &Value::Boolean(true));
    assert_eq!(get("vc").1, &Value::String("abc".into()));
    assert_eq!(get("ch").1, &Value::String("x  ".into()));
    assert_eq!(get("bin").1, &Value::Bytes(vec![0, 255]));
    // 12.34 at scale 2: 1234 = 0x04D2.
    assert_eq!(get("n").1, &Value::Bytes(vec![0x04, 0xD2]));
    assert_eq!(logical("n"), "org.apache.kafka.connect.data.Decimal");
    assert_eq!(get("n").0.parameters["scale"], "2");
    assert_eq!(logical("nv"), "io.debezium.data.VariableScaleDecimal");
    assert_eq!(
        get("nv").1,
        &Value::Struct(vec![Value::Int32(1), Value::Bytes(vec![0xFB])])
    );
    assert_eq!(get("d").1, &Value::Int32(19_782));
    assert_eq!(logical("d"), "io.debezium.time.Date");
    assert_eq!(get("ts").1, &Value::Int64(1_704_164_645_123_456));
    assert_eq!(logical("ts"), "io.debezium.time.MicroTimestamp");
    assert_eq!(get("ts3").1, &Value::Int64(1_704_164_645_123));
    assert_eq!(logical("ts3"), "io.debezium.time.Timestamp");
    assert_eq!(
        get("tstz").1,
        &Value::String("2024-01-02T01:04:05.123456Z".into())
    );
    assert_eq!(logical("tstz"), "io.debezium.time.ZonedTimestamp");
    assert_eq!(get("t").1, &Value::Int64(3_723_000_000));
    assert_eq!(logical("t"), "io.debezium.time.MicroTime");
    assert_eq!(
        get("u").1,
        &Value::String("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into())
    );
    assert_eq!(logical("u"), "io.debezium.data.Uuid");
    assert_eq!(get("j").1, &Value::String("{\"a\": 1}".into()));
    assert_eq!(get("jb").1, &Value::String("{\"b\": 2}".into()));
    assert_eq!(logical("jb"), "io.debezium.data.Json");
    assert_eq!(get("iv").1, &Value::Int64(93_600_000_000));
    assert_eq!(logical("iv"), "io.debezium.time.MicroDuration");
    // A domain is its base type; an enum and an array are their text.
    assert_eq!(get("dom").1, &Value::Int32(7));
    assert_eq!(get("m").1, &Value::String("happy".into()));
    assert_eq!(get("tags").1, &Value::String("{x,y}".into()));
    // money: 12.50 at scale 2: 1250 = 0x04E2.
    assert_eq!(get("cash").1, &Value::Bytes(vec![0x04, 0xE2]));
}
