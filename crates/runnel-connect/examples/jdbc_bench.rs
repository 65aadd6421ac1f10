//! Throughput of the JDBC connectors' tasks against a PostgreSQL you run: records into
//! PostgreSQL (the sink's `put` and `flush`, insert and upsert) and rows out of it (the
//! source's poll loop). It starts nothing itself; it creates and drops its own tables
//! (`jdbc_bench_*`) in the database the URL names.
//!
//! ```text
//! cargo run --release -p runnel-connect --example jdbc_bench -- \
//!     'jdbc:postgresql://127.0.0.1:5432/runnel?user=postgres' [ROWS] [PUT_BATCH]
//! ```
//!
//! ROWS defaults to 200000, PUT_BATCH (records per `put`, as a worker's consumer poll hands
//! them) to 3000. The tasks run as a worker runs them, without the worker: no topics, no
//! converters, so the figures are the connectors' and the database's.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use runnel_connect::config::Configs;
use runnel_connect::connector::{
    ConnectorContext, OffsetReader, SinkTask, SourceTask, TaskContext, TaskFactory,
};
use runnel_connect::data::{
    ConnectRecord, Field, Schema, SchemaAndValue, SchemaType, SinkRecord, SourceOffset,
    SourcePartition, Value, TIMESTAMP_LOGICAL,
};
use runnel_connect::jdbc::{JDBC_SINK, JDBC_SOURCE};

/// No committed offsets: every run starts from the beginning.
struct NoOffsets;

impl OffsetReader for NoOffsets {
    fn offset(&self, _partition: &SourcePartition) -> Option<SourceOffset> {
        None
    }
}

fn context() -> TaskContext {
    TaskContext::new(
        "jdbc-bench",
        0,
        Arc::new(AtomicBool::new(false)),
        Arc::new(NoOffsets),
    )
}

type Failure = Box<dyn std::error::Error>;

fn configs(url: &str, pairs: &[(&str, &str)]) -> Configs {
    let mut configs = Configs::new();
    configs.set("connection.url", url);
    for (key, value) in pairs {
        configs.set(*key, *value);
    }
    configs
}

fn schema() -> Schema {
    Schema::structure(
        Some("order"),
        vec![
            Field::new("id", Schema::new(SchemaType::Int64)),
            Field::new("customer", Schema::new(SchemaType::String)),
            Field::new("amount", Schema::new(SchemaType::Float64)),
            Field::new(
                "created",
                Schema {
                    name: Some(TIMESTAMP_LOGICAL.to_owned()),
                    ..Schema::new(SchemaType::Int64)
                },
            ),
            Field::new("note", Schema::optional(SchemaType::String)),
        ],
    )
}

fn records(count: i64, pass: i64) -> Vec<SinkRecord> {
    let schema = schema();
    (0..count)
        .map(|id| SinkRecord {
            record: ConnectRecord {
                partition: Some(0),
                ..ConnectRecord::new(
                    "orders",
                    SchemaAndValue::new(
                        Some(schema.clone()),
                        Value::Struct(vec![
                            Value::Int64(id + 1),
                            Value::String(format!("customer-{}", id % 1000)),
                            Value::Float64((id * 7 + pass) as f64 / 100.0),
                            Value::Int64(1_700_000_000_000 + id * 1000 + pass),
                            if id % 3 == 0 {
                                Value::Null
                            } else {
                                Value::String(format!("note {pass}"))
                            },
                        ]),
                    ),
                )
            },
            kafka_offset: id,
        })
        .collect()
}

fn sink(url: &str, table: &str, mode: &str) -> Result<Box<dyn SinkTask>, Failure> {
    let TaskFactory::Sink(new) = JDBC_SINK.task else {
        return Err("JdbcSink makes no sink tasks".into());
    };
    let mut task = new();
    task.start(
        &configs(
            url,
            &[
                ("insert.mode", mode),
                ("pk.mode", "record_value"),
                ("pk.fields", "id"),
                ("auto.create", "true"),
                ("table.name.format", table),
                ("batch.size", "3000"),
            ],
        ),
        &context(),
    )?;
    Ok(task)
}

/// Puts `records` in batches of `batch`, flushes, and gives records per second.
fn write(task: &mut dyn SinkTask, records: &[SinkRecord], batch: usize) -> Result<f64, Failure> {
    let started = Instant::now();
    for chunk in records.chunks(batch) {
        task.put(chunk)?;
    }
    task.flush(&BTreeMap::new())?;
    Ok(records.len() as f64 / started.elapsed().as_secs_f64())
}

/// Polls a source on `table` until it gave `expected` records; records per second.
fn read(url: &str, table: &str, mode: &str, expected: usize) -> Result<f64, Failure> {
    let configs = configs(
        url,
        &[
            ("mode", mode),
            ("incrementing.column.name", "id"),
            ("table.whitelist", table),
            ("topic.prefix", "bench-"),
            ("batch.max.rows", "10000"),
            ("poll.interval.ms", "5000"),
        ],
    );
    let mut connector = (JDBC_SOURCE.connector)();
    connector.start(&configs, ConnectorContext::new(Arc::new(|| {})))?;
    let task_configs = connector.task_configs(1)?;
    connector.stop();
    let task_config = task_configs.first().ok_or("no task for the table")?;
    let TaskFactory::Source(new) = JDBC_SOURCE.task else {
        return Err("JdbcSource makes no source tasks".into());
    };
    let mut task: Box<dyn SourceTask> = new();
    task.start(task_config, &context())?;
    let started = Instant::now();
    let mut read = 0;
    while read < expected {
        let records = task.poll()?;
        if records.is_empty() {
            return Err(format!("the source stopped at {read} of {expected} rows").into());
        }
        read += records.len();
    }
    let rate = read as f64 / started.elapsed().as_secs_f64();
    task.stop();
    Ok(rate)
}

/// The libpq-style connection string of a `jdbc:postgresql://HOST:PORT/DB?user=..` URL,
/// for dropping the bench's tables.
fn libpq(url: &str) -> Result<String, Failure> {
    let rest = url
        .strip_prefix("jdbc:postgresql://")
        .ok_or("give a jdbc:postgresql://HOST:PORT/DB?user=... URL")?;
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (host, database) = location.split_once('/').unwrap_or((location, "postgres"));
    let (host, port) = host.rsplit_once(':').unwrap_or((host, "5432"));
    let mut out = format!("host={host} port={port} dbname={database}");
    let mut user = "postgres";
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("user", value)) => user = value,
            Some(("password", value)) => out.push_str(&format!(" password={value}")),
            _ => {}
        }
    }
    out.push_str(&format!(" user={user}"));
    Ok(out)
}

fn drop_tables(url: &str) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(&libpq(url)?, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
            .batch_execute(
                "DROP TABLE IF EXISTS jdbc_bench_insert, jdbc_bench_upsert, jdbc_bench_batched",
            )
            .await?;
        Ok::<(), Failure>(())
    })
}

fn main() -> Result<(), Failure> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: jdbc_bench 'jdbc:postgresql://HOST:PORT/DB?user=USER' [ROWS] [PUT_BATCH]")?;
    let rows: i64 = args.next().map_or(Ok(200_000), |n| n.parse())?;
    let batch: usize = args.next().map_or(Ok(3000), |n| n.parse())?;
    drop_tables(&url)?;

    let first = records(rows, 0);
    let second = records(rows, 1);
    println!("{rows} rows of 5 columns, {batch} records per put");

    let mut insert = sink(&url, "jdbc_bench_insert", "insert")?;
    println!(
        "sink insert (new table):         {:>10.0} records/s",
        write(&mut *insert, &first, batch)?
    );
    insert.stop();

    let mut upsert = sink(&url, "jdbc_bench_upsert", "upsert")?;
    println!(
        "sink upsert (all rows new):      {:>10.0} records/s",
        write(&mut *upsert, &first, batch)?
    );
    println!(
        "sink upsert (all rows existing): {:>10.0} records/s",
        write(&mut *upsert, &second, batch)?
    );
    upsert.stop();

    let expected = usize::try_from(rows)?;
    println!(
        "source incrementing (10000/poll): {:>9.0} records/s",
        read(&url, "jdbc_bench_insert", "incrementing", expected)?
    );
    println!(
        "source bulk (10000/poll):         {:>9.0} records/s",
        read(&url, "jdbc_bench_insert", "bulk", expected)?
    );
    drop_tables(&url)
}
