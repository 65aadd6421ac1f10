//! Criterion benchmarks of the JSON converter: a sink task reads every record through it, so
//! its cost per record bounds what a sink connector can take from a topic.
//!
//! `cargo bench -p runnel-connect --bench converter` (about half a minute). The record is a
//! row of four columns in Kafka's schema envelope, as a JDBC source or Debezium writes it;
//! reading it with `schemas.cache.size=0` parses its schema every time, as before the cache.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use runnel_connect::converter::{Converter, JsonConverter};
use runnel_connect::data::{Field, Schema, SchemaAndValue, SchemaType, Value};

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

/// One row as a JDBC source emits it: id, name, score, active.
fn row(id: i64) -> SchemaAndValue {
    let schema = Schema::structure(
        Some("orders"),
        vec![
            Field::new("id", Schema::new(SchemaType::Int64)),
            Field::new("name", Schema::optional(SchemaType::String)),
            Field::new("score", Schema::optional(SchemaType::Float64)),
            Field::new("active", Schema::new(SchemaType::Boolean)),
        ],
    );
    SchemaAndValue::new(
        Some(schema),
        Value::Struct(vec![
            Value::Int64(id),
            Value::String(format!("customer-{id}")),
            Value::Float64(id as f64 * 0.5),
            Value::Boolean(id % 2 == 0),
        ]),
    )
}

fn json_converter(c: &mut Criterion) {
    let writer = JsonConverter::new(true, false, 1000);
    let records: Vec<Vec<u8>> = (0..1000)
        .map(|id| {
            writer
                .to_bytes("orders", &row(id))
                .expect("a row converts")
                .expect("not null")
        })
        .collect();
    let mut group = c.benchmark_group("json_converter");
    group.throughput(Throughput::Elements(records.len() as u64));
    for (name, cache_size) in [
        ("to_connect, schema parsed each time", 0),
        ("to_connect, schema cached", 1000),
    ] {
        let reader = JsonConverter::new(true, false, cache_size);
        group.bench_function(name, |b| {
            b.iter(|| {
                for record in &records {
                    black_box(reader.to_connect("orders", Some(record)).expect("reads"));
                }
            })
        });
    }
    let rows: Vec<SchemaAndValue> = (0..1000).map(row).collect();
    group.bench_function("to_bytes", |b| {
        b.iter(|| {
            for row in &rows {
                black_box(writer.to_bytes("orders", row).expect("writes"));
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = json_converter
}
criterion_main!(benches);
