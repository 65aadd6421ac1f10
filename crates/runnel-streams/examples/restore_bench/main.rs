//! How long a task takes to get its state back: fills a store's changelog (by default 2^20
//! records of 1 KiB, 1 GiB) and starts an application holding that store three times,
//! timing each restore: into an empty state directory (the whole changelog to disk), into
//! the directory the first run left (from its checkpoint: nothing to read), and in memory
//! (the whole changelog into memory). Prints a Markdown table.
//!
//! ```sh
//! cargo run --release -p runnel-streams --example restore_bench -- \
//!     --bootstrap 127.0.0.1:9092 --state-dir /tmp/restore-bench
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use kafka_protocol::error::ResponseError;
use runnel_client::{
    Admin, ClientConfig, NewTopic, OffsetSpec, ProduceRecord, Producer, ProducerConfig,
};
use runnel_streams::{
    BytesSerde, Consumed, KafkaStreams, StreamsBuilder, StreamsConfig, StreamsError, StringSerde,
    Topology,
};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    bootstrap: String,
    /// Where the on-disk runs keep their state (emptied first).
    #[arg(long)]
    state_dir: PathBuf,
    #[arg(long, default_value = "restore-bench")]
    application_id: String,
    #[arg(long, default_value_t = 1 << 20)]
    records: i64,
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
}

/// The application: a table of its input topic, kept in store `big`, whose changelog is
/// what the runs restore.
fn topology(input: &str) -> Result<Topology, StreamsError> {
    let builder = StreamsBuilder::new();
    let _table = builder.table(input, Consumed::with(StringSerde, BytesSerde), Some("big"));
    builder.build()
}

fn failed(error: impl std::fmt::Display) -> StreamsError {
    StreamsError::Client(error.to_string())
}

/// Creates the input topic and the store's changelog, and writes the records the
/// changelog lacks.
async fn fill(args: &Args, input: &str, changelog: &str) -> Result<(), StreamsError> {
    let admin = Admin::connect(ClientConfig::new(&args.bootstrap)).await?;
    let topics = [
        (input, vec![]),
        (
            changelog,
            vec![("cleanup.policy".to_owned(), "compact".to_owned())],
        ),
    ];
    for (name, configs) in topics {
        let created = admin
            .create_topic(NewTopic {
                name: name.to_owned(),
                partitions: 1,
                replication_factor: -1,
                configs,
            })
            .await;
        match created {
            Err(error) if error.code() != Some(ResponseError::TopicAlreadyExists) => {
                return Err(error.into())
            }
            _ => {}
        }
    }
    let end = admin
        .list_offsets(changelog, &[0], OffsetSpec::Latest)
        .await?
        .first()
        .map_or(0, |(_, listed)| listed.offset);
    if end >= args.records {
        return Ok(());
    }
    let producer = Producer::connect(ProducerConfig::new(&args.bootstrap)).await?;
    // Values that do not compress, as real state mostly does not: xorshift bytes.
    let mut random = 0x9e37_79b9_7f4a_7c15_u64;
    let mut deliveries = Vec::new();
    for index in end..args.records {
        let value: Vec<u8> = (0..args.value_size)
            .map(|_| {
                random ^= random << 13;
                random ^= random >> 7;
                random ^= random << 17;
                random as u8
            })
            .collect();
        let record = ProduceRecord::new(changelog)
            .key(format!("key-{index:010}"))
            .value(Bytes::from(value))
            .partition(0);
        deliveries.push(producer.send(record).await?);
        if deliveries.len() >= 10_000 {
            for delivery in deliveries.drain(..) {
                delivery.await?;
            }
        }
    }
    for delivery in deliveries {
        delivery.await?;
    }
    producer.close().await?;
    Ok(())
}

/// Starts the application and waits until its task has restored `expected` records and
/// answers a query: the seconds from its start, and those the restore itself took.
async fn time_restore(
    topology: Topology,
    config: StreamsConfig,
    expected: u64,
    probe: &str,
) -> Result<(f64, f64), StreamsError> {
    let started = Instant::now();
    let app = KafkaStreams::start(topology, config).await?;
    let store = app.store("big", StringSerde, BytesSerde);
    let mut first_restored = None;
    loop {
        let restored = app.metrics().restored_records;
        if restored > 0 && first_restored.is_none() {
            first_restored = Some(Instant::now());
        }
        if restored >= expected && store.get(&probe.to_owned()).await?.is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(1_800) {
            return Err(failed("no restore within 30 minutes"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ready = started.elapsed().as_secs_f64();
    let restoring = first_restored.map_or(0.0, |at| at.elapsed().as_secs_f64());
    app.close().await?;
    Ok((ready, restoring))
}

async fn run(args: Args) -> Result<(), StreamsError> {
    let input = format!("{}-input", args.application_id);
    let changelog = format!("{}-big-changelog", args.application_id);
    fill(&args, &input, &changelog).await?;
    let _ = std::fs::remove_dir_all(&args.state_dir);
    let config = || StreamsConfig::new(&args.application_id, &args.bootstrap);
    let records = u64::try_from(args.records).map_err(failed)?;
    let bytes = args.records as f64 * (args.value_size + 14) as f64;
    let probe = format!("key-{:010}", args.records - 1);
    println!(
        "{} records of {} bytes ({:.2} GiB) in `{changelog}`\n",
        args.records,
        args.value_size,
        bytes / f64::from(1u32 << 30)
    );
    println!("| run | restored | to ready (s) | restoring (s) | MiB/s |");
    println!("|---|---:|---:|---:|---:|");
    let runs = [
        (
            "on disk, empty state directory",
            Some(&args.state_dir),
            records,
        ),
        ("on disk, from the checkpoint", Some(&args.state_dir), 0),
        ("in memory", None, records),
    ];
    for (name, state_dir, expected) in runs {
        let config = match state_dir {
            Some(dir) => config().state_dir(dir),
            None => config().in_memory(),
        };
        let (ready, restoring) = time_restore(topology(&input)?, config, expected, &probe).await?;
        let rate = if restoring > 0.0 {
            format!("{:.0}", bytes / restoring / f64::from(1u32 << 20))
        } else {
            "-".to_owned()
        };
        println!("| {name} | {expected} | {ready:.2} | {restoring:.2} | {rate} |");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("restore_bench: {error}");
            ExitCode::FAILURE
        }
    }
}
