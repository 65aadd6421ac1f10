//! `runnel bench produce|consume|e2e`: load tests against any Kafka-compatible cluster, in the
//! manner of kafka-producer-perf-test and the OpenMessaging Benchmark.
//!
//! - `produce`: `--producers` producers (each its own connections) send `--records` records of
//!   `--record-size` bytes, at `--rate` in total or unlimited; latency is send to
//!   acknowledgement.
//! - `consume`: `--consumers` consumers split the partitions between them (assigned, no group)
//!   and read from the log start: `--records` records, else everything there was at the start.
//! - `e2e`: consumers positioned at the end first, then producers; latency is the consumer's
//!   clock minus the record's timestamp (milliseconds, so run both on one host or with synced
//!   clocks).
//!
//! Progress goes to stderr every second; the summary (throughput in records/s and MB/s, where
//! MB is 2^20 bytes as in Kafka's tools, latency percentiles from an HDR histogram, and CPU
//! seconds per GB of 10^9 bytes for this process and, with `--broker-pid`, the broker) goes to
//! stdout, as one JSON object on the last line with `--format json`. `--warmup` leaves the
//! first seconds out of the summary.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use hdrhistogram::Histogram;
use kafka_protocol::error::ResponseError;
use runnel_client::consumer::{Consumer, ConsumerConfig, TopicPartition};
use runnel_client::producer::{DeliveryFuture, ProduceRecord, Producer};
use runnel_client::{Admin, NewTopic, OffsetSpec};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::output::{print_stdout, Format, OutputArgs};
use crate::produce_cmd::{ProducerArgs, MB};

/// Deliveries in flight per producer beyond which sending waits.
const DELIVERIES_QUEUED_MAX: usize = 65_536;
/// A consumer that reads nothing for this long gives up.
const CONSUME_IDLE_MAX: Duration = Duration::from_secs(10);
const POLL_TIMEOUT: Duration = Duration::from_millis(200);
/// Latencies are recorded in microseconds, up to an hour.
const LATENCY_US_MAX: u64 = 3_600_000_000;
const DEFAULT_RECORDS: u64 = 1_000_000;

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Produce records as fast as allowed; latency is send to acknowledgement.
    Produce(LoadArgs),
    /// Read records from the log start.
    Consume(LoadArgs),
    /// Produce and consume at once; latency is record timestamp to consumption.
    E2e(LoadArgs),
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// The topic to load.
    #[arg(long, default_value = "runnel-bench")]
    topic: String,
    /// Records in total (default 1,000,000 unless --duration is given; consume: what the
    /// topic holds).
    #[arg(long)]
    records: Option<u64>,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Partitions of the topic, created if missing (default: the broker's num.partitions).
    #[arg(long)]
    partitions: Option<i32>,
    /// Distinct keys, used in turn (0: records have no key).
    #[arg(long, default_value_t = 0)]
    keys: u64,
    /// Concurrent producers, each with its own connections.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Concurrent consumers; the partitions are split between them.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Records per second in total, or `unlimited`.
    #[arg(long, default_value = "unlimited", value_parser = parse_rate)]
    rate: Rate,
    /// Stop after this many seconds, even if --records are not done.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Run this long before measuring: records sent (produce) or read (consume) during the
    /// warm-up count toward --records but not toward the summary.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    warmup: f64,
    /// The broker's process id, to report its CPU-seconds per GB (Linux, same host).
    #[arg(long, value_name = "PID")]
    broker_pid: Option<u32>,
    /// Produce in transactions of this many records each (a transactional producer per
    /// worker, committing each one); latency then runs to the commit.
    #[arg(long, value_name = "RECORDS")]
    transaction_size: Option<u64>,
    #[command(flatten)]
    producer: ProducerArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rate {
    Unlimited,
    PerSecond(f64),
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    if text == "unlimited" {
        return Ok(Rate::Unlimited);
    }
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(Rate::PerSecond(rate)),
        _ => Err(format!(
            "{text:?} is not a positive number of records per second or `unlimited`"
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Produce,
    Consume,
    E2e,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Produce => "produce",
            Mode::Consume => "consume",
            Mode::E2e => "e2e",
        }
    }
}

/// Counters the workers bump and the progress reporter reads.
#[derive(Debug, Default)]
struct Counters {
    produced: AtomicU64,
    produced_bytes: AtomicU64,
    consumed: AtomicU64,
    consumed_bytes: AtomicU64,
    errors: AtomicU64,
    /// Records (and their bytes) after the warm-up: what the summary reports.
    measured: AtomicU64,
    measured_bytes: AtomicU64,
    /// Sum and count of latencies (µs) since the last report.
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
    /// Set when every worker should stop (duration over, Ctrl-C, a consumer's target met).
    stop: AtomicBool,
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (mode, args) = match args.command {
        BenchCommand::Produce(args) => (Mode::Produce, args),
        BenchCommand::Consume(args) => (Mode::Consume, args),
        BenchCommand::E2e(args) => (Mode::E2e, args),
    };
    if args.producers == 0 || args.consumers == 0 {
        bail!("--producers and --consumers must be at least 1");
    }
    let admin = args.output.cluster.admin().await?;
    let partitions = prepare_topic(&admin, &args, mode).await?;

    if !(args.warmup >= 0.0 && args.warmup.is_finite()) {
        bail!("--warmup must be a number of seconds, at least 0");
    }
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let measure_from = started + Duration::from_secs_f64(args.warmup);
    let cpu_at_start = {
        let broker_pid = args.broker_pid;
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            CpuTimes::now(broker_pid)
        })
    };
    let deadline = args
        .duration
        .map(|seconds| started + Duration::from_secs_f64(seconds.max(0.0)));
    let records_wanted = match (mode, args.records, args.duration) {
        (_, Some(records), _) => Some(records),
        (Mode::Consume, None, _) => None, // what the topic holds, found below
        (_, None, Some(_)) => None,
        (_, None, None) => Some(DEFAULT_RECORDS),
    };

    let reporter = tokio::spawn(report_progress(Arc::clone(&counters), mode, started));
    let watchdog = {
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            let interrupted = crate::output::stop_signal();
            match deadline {
                Some(deadline) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline.into()) => {}
                        _ = interrupted => {}
                    }
                }
                None => interrupted.await,
            }
            counters.stop.store(true, Ordering::Release);
        })
    };

    let mut consumer_tasks = Vec::new();
    if mode != Mode::Produce {
        let consume_target = match (mode, records_wanted) {
            (Mode::Consume, None) => {
                let ends = admin
                    .list_offsets(&args.topic, &partitions, OffsetSpec::Latest)
                    .await?;
                let starts = admin
                    .list_offsets(&args.topic, &partitions, OffsetSpec::Earliest)
                    .await?;
                let held: i64 = ends
                    .iter()
                    .zip(&starts)
                    .map(|((_, end), (_, start))| end.offset - start.offset)
                    .sum();
                if held <= 0 {
                    bail!(
                        "topic {:?} holds no records: run `runnel bench produce` first",
                        args.topic
                    );
                }
                Some(held as u64)
            }
            (_, wanted) => wanted,
        };
        let from_end = mode == Mode::E2e;
        let mut ready = Vec::new();
        for index in 0..args.consumers.min(partitions.len()) {
            let owned: Vec<i32> = partitions
                .iter()
                .copied()
                .skip(index)
                .step_by(args.consumers)
                .collect();
            let consumer = start_consumer(&args, &owned, from_end).await?;
            let (ready_sender, ready_receiver) = tokio::sync::oneshot::channel();
            ready.push(ready_receiver);
            consumer_tasks.push(tokio::spawn(consume(
                consumer,
                Arc::clone(&counters),
                consume_target,
                mode == Mode::E2e,
                measure_from,
                ready_sender,
            )));
        }
        for ready in ready {
            // A consumer that failed to start reports its error when joined below.
            let _ = ready.await;
        }
    }

    let mut producer_tasks = Vec::new();
    if mode != Mode::Consume {
        let payload = payload(args.record_size);
        let keys: Arc<Vec<Bytes>> = Arc::new(
            (0..args.keys)
                .map(|key| Bytes::from(format!("key-{key}")))
                .collect(),
        );
        for index in 0..args.producers {
            let mut config = args.producer.config(&args.output.cluster);
            if args.transaction_size.is_some() {
                config.transactional_id =
                    Some(format!("runnel-bench-{}-{index}", std::process::id()));
            }
            let producer = Producer::connect(config)
                .await
                .map_err(|error| args.output.cluster.connect_error(error))?;
            if args.transaction_size.is_some() {
                producer.init_transactions().await?;
            }
            let share = records_wanted.map(|records| {
                let producers = args.producers as u64;
                records / producers + u64::from((index as u64) < records % producers)
            });
            let rate = match args.rate {
                Rate::Unlimited => None,
                Rate::PerSecond(rate) => Some(rate / args.producers as f64),
            };
            producer_tasks.push(tokio::spawn(produce(
                producer,
                args.topic.clone(),
                payload.clone(),
                Arc::clone(&keys),
                share,
                rate,
                args.transaction_size,
                index as u64,
                measure_from,
                Arc::clone(&counters),
            )));
        }
    }

    let mut produce_histogram = new_histogram();
    for task in producer_tasks {
        let histogram = task.await.context("a producer task failed")??;
        produce_histogram
            .add(&histogram)
            .context("merging latencies")?;
    }
    let produced_at = started.elapsed();
    let mut e2e_histogram = new_histogram();
    for task in consumer_tasks {
        let histogram = task.await.context("a consumer task failed")??;
        e2e_histogram.add(&histogram).context("merging latencies")?;
    }
    let elapsed = started.elapsed();
    let cpu_at_end = CpuTimes::now(args.broker_pid);
    watchdog.abort();
    reporter.abort();
    if elapsed <= measure_from - started {
        bail!("the run ended during the --warmup: nothing was measured");
    }
    let cpu_at_start = cpu_at_start.await.context("the CPU sampler failed")?;

    let summary = Summary::new(
        mode,
        &args,
        partitions.len(),
        &counters,
        (
            if mode == Mode::Produce {
                produced_at
            } else {
                elapsed
            }
            .saturating_sub(measure_from - started),
            cpu_at_end.since(&cpu_at_start),
        ),
        (mode != Mode::Consume).then_some(&produce_histogram),
        (mode == Mode::E2e).then_some(&e2e_histogram),
    );
    let text = match args.output.format {
        Format::Json => serde_json::to_string(&summary)? + "\n",
        Format::Table => summary.table(),
    };
    print_stdout(&text)?;
    if summary.errors > 0 {
        bail!("{} records failed", summary.errors);
    }
    Ok(())
}

/// The topic's partitions, creating the topic when it is missing.
async fn prepare_topic(admin: &Admin, args: &LoadArgs, mode: Mode) -> anyhow::Result<Vec<i32>> {
    let metadata = match admin.describe_topic(&args.topic).await {
        Ok(metadata) => {
            if let Some(wanted) = args.partitions {
                if wanted as usize != metadata.partitions.len() {
                    eprintln!(
                        "note: topic {:?} exists with {} partitions; --partitions {wanted} is ignored",
                        args.topic,
                        metadata.partitions.len()
                    );
                }
            }
            metadata
        }
        Err(error) if error.code() == Some(ResponseError::UnknownTopicOrPartition) => {
            if mode == Mode::Consume {
                bail!(
                    "topic {:?} does not exist: run `runnel bench produce` first",
                    args.topic
                );
            }
            admin
                .create_topic(NewTopic::new(
                    args.topic.as_str(),
                    args.partitions.unwrap_or(-1),
                ))
                .await?;
            eprintln!("Created topic {:?}.", args.topic);
            admin.describe_topic(&args.topic).await?
        }
        Err(error) => return Err(error.into()),
    };
    Ok(metadata.partitions.iter().map(|p| p.partition).collect())
}

/// `size` random uppercase letters, as kafka-producer-perf-test sends: compressible about as
/// much as text.
fn payload(size: usize) -> Bytes {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15
        ^ SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    (0..size)
        .map(|_| {
            // xorshift64*: enough randomness for a payload, no dependency.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            b'A' + (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 59) as u8 % 26
        })
        .collect::<Vec<u8>>()
        .into()
}

fn new_histogram() -> Histogram<u64> {
    // Bounds and 3 significant figures are constants that are valid.
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).unwrap_or_else(|_| unreachable!())
}

/// What a producer's delivery collector has seen since it last published to the shared
/// counters: published once per batch of answers, not per record, so the progress reporter's
/// counters are not a contended cache line.
struct Tally {
    histogram: Histogram<u64>,
    record_bytes: u64,
    measure_from: Instant,
    measured: u64,
    produced: u64,
    latency_sum_us: u64,
}

impl Tally {
    fn new(record_bytes: u64, measure_from: Instant) -> Self {
        Tally {
            histogram: new_histogram(),
            record_bytes,
            measure_from,
            measured: 0,
            produced: 0,
            latency_sum_us: 0,
        }
    }

    fn record<T>(
        &mut self,
        result: runnel_client::Result<T>,
        sent_at: Instant,
        now: Instant,
        counters: &Counters,
    ) {
        match result {
            Ok(_) => {
                let micros = now.saturating_duration_since(sent_at).as_micros() as u64;
                if sent_at >= self.measure_from {
                    self.histogram.saturating_record(micros.max(1));
                    self.measured += 1;
                }
                self.produced += 1;
                self.latency_sum_us += micros;
            }
            Err(error) => {
                if counters.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!("runnel: a record failed: {error}");
                }
            }
        }
    }

    fn publish(&mut self, counters: &Counters) {
        if self.produced == 0 {
            return;
        }
        counters
            .measured
            .fetch_add(self.measured, Ordering::Relaxed);
        counters
            .measured_bytes
            .fetch_add(self.measured * self.record_bytes, Ordering::Relaxed);
        counters
            .produced
            .fetch_add(self.produced, Ordering::Relaxed);
        counters
            .produced_bytes
            .fetch_add(self.produced * self.record_bytes, Ordering::Relaxed);
        counters
            .latency_sum_us
            .fetch_add(self.latency_sum_us, Ordering::Relaxed);
        counters
            .latency_count
            .fetch_add(self.produced, Ordering::Relaxed);
        self.measured = 0;
        self.produced = 0;
        self.latency_sum_us = 0;
    }
}

#[allow(clippy::too_many_arguments)] // one worker's whole brief, spawned once
async fn produce(
    producer: Producer,
    topic: String,
    payload: Bytes,
    keys: Arc<Vec<Bytes>>,
    records: Option<u64>,
    rate: Option<f64>,
    transaction_size: Option<u64>,
    seed: u64,
    measure_from: Instant,
    counters: Arc<Counters>,
) -> anyhow::Result<Histogram<u64>> {
    let (sender, mut in_flight) = mpsc::channel::<(DeliveryFuture, Instant)>(DELIVERIES_QUEUED_MAX);
    let collector = {
        let counters = Arc::clone(&counters);
        let record_bytes = payload.len() as u64;
        tokio::spawn(async move {
            let mut tally = Tally::new(record_bytes, measure_from);
            // A partition's records are answered in send order, a batch at a time: only the
            // oldest unanswered record of each partition is awaited, and once it is answered
            // those behind it that are answered too are taken with the same clock reading.
            let mut waiting: HashMap<i32, VecDeque<(DeliveryFuture, Instant)>> = HashMap::new();
            let mut oldest = FuturesUnordered::new();
            let await_oldest = |delivery: DeliveryFuture, sent_at: Instant| async move {
                let partition = delivery.partition();
                (partition, delivery.await, sent_at)
            };
            let mut open = true;
            while open || !oldest.is_empty() {
                tokio::select! {
                    next = in_flight.recv(), if open => match next {
                        Some((delivery, sent_at)) => {
                            match waiting.get_mut(&delivery.partition()) {
                                Some(queue) => queue.push_back((delivery, sent_at)),
                                None => {
                                    waiting.insert(delivery.partition(), VecDeque::new());
                                    oldest.push(await_oldest(delivery, sent_at));
                                }
                            }
                        }
                        None => open = false,
                    },
                    Some((partition, result, sent_at)) = oldest.next(), if !oldest.is_empty() => {
                        let now = Instant::now();
                        tally.record(result, sent_at, now, &counters);
                        let Some(queue) = waiting.get_mut(&partition) else {
                            tally.publish(&counters);
                            continue;
                        };
                        while let Some((delivery, _)) = queue.front_mut() {
                            let Some(result) = delivery.now_or_never() else {
                                break;
                            };
                            let (_, sent_at) = queue.pop_front().expect("front exists");
                            tally.record(result, sent_at, now, &counters);
                        }
                        tally.publish(&counters);
                        match queue.pop_front() {
                            Some((delivery, sent_at)) => oldest.push(await_oldest(delivery, sent_at)),
                            None => {
                                waiting.remove(&partition);
                            }
                        }
                    }
                }
            }
            tally.histogram
        })
    };

    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut send_error = None;
    while records.is_none_or(|records| sent < records) && !counters.stop.load(Ordering::Acquire) {
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(sent as f64 / rate);
            let now = Instant::now();
            if due > now + Duration::from_millis(1) {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        let mut record = ProduceRecord::new(topic.as_str()).value(payload.clone());
        if !keys.is_empty() {
            record.key = Some(keys[((sent + seed) % keys.len() as u64) as usize].clone());
        }
        if transaction_size.is_some_and(|size| sent.is_multiple_of(size)) {
            if let Err(error) = producer.begin_transaction().await {
                send_error = Some(error);
                break;
            }
        }
        let sent_at = Instant::now();
        match producer.send(record).await {
            Ok(delivery) => {
                if sender.send((delivery, sent_at)).await.is_err() {
                    break;
                }
            }
            Err(error) => {
                send_error = Some(error);
                break;
            }
        }
        sent += 1;
        if transaction_size.is_some_and(|size| sent.is_multiple_of(size)) {
            if let Err(error) = producer.commit_transaction().await {
                send_error = Some(error);
                break;
            }
        }
    }
    drop(sender);
    if transaction_size.is_some_and(|size| !sent.is_multiple_of(size)) && send_error.is_none() {
        // The last, short transaction.
        if let Err(error) = producer.commit_transaction().await {
            send_error = Some(error);
        }
    }
    let flushed = producer.flush().await;
    let histogram = collector.await.context("the delivery collector failed")?;
    producer.close().await?;
    if let Some(error) = send_error {
        return Err(error.into());
    }
    flushed?;
    Ok(histogram)
}

async fn start_consumer(
    args: &LoadArgs,
    partitions: &[i32],
    from_end: bool,
) -> anyhow::Result<Consumer> {
    let mut config = ConsumerConfig::new(args.output.cluster.bootstrap.as_str());
    config.fetch_max_wait = Duration::from_millis(100);
    let consumer = Consumer::connect(config)
        .await
        .map_err(|error| args.output.cluster.connect_error(error))?;
    let tps: Vec<TopicPartition> = partitions
        .iter()
        .map(|&p| TopicPartition::new(args.topic.as_str(), p))
        .collect();
    consumer.assign(tps.clone()).await?;
    if from_end {
        consumer.seek_to_end(&tps).await?;
        // Resolve the end positions now, so records produced from here on are all read.
        for tp in &tps {
            consumer.position(tp).await?;
        }
    } else {
        consumer.seek_to_beginning(&tps).await?;
    }
    Ok(consumer)
}

/// Reads until `target` records were consumed by all consumers together, the stop flag, or
/// nothing came for CONSUME_IDLE_MAX. With `end_to_end`, records how old each record is.
async fn consume(
    consumer: Consumer,
    counters: Arc<Counters>,
    target: Option<u64>,
    end_to_end: bool,
    measure_from: Instant,
    ready: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<Histogram<u64>> {
    let _ = ready.send(());
    let mut histogram = new_histogram();
    let mut last_record = Instant::now();
    let result = loop {
        if counters.stop.load(Ordering::Acquire) {
            break Ok(());
        }
        if target.is_some_and(|target| counters.consumed.load(Ordering::Acquire) >= target) {
            break Ok(());
        }
        let records = match consumer.poll(POLL_TIMEOUT).await {
            Ok(records) => records,
            Err(error) => break Err(error),
        };
        if records.is_empty() {
            if last_record.elapsed() >= CONSUME_IDLE_MAX {
                eprintln!(
                    "runnel: a consumer read nothing for {} s; stopping it",
                    CONSUME_IDLE_MAX.as_secs()
                );
                break Ok(());
            }
            continue;
        }
        last_record = Instant::now();
        let measured = last_record >= measure_from;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut bytes = 0u64;
        for record in &records {
            bytes += record.value.as_ref().map_or(0, |v| v.len() as u64)
                + record.key.as_ref().map_or(0, |k| k.len() as u64);
            if end_to_end && measured {
                let micros = (now_ms - record.timestamp).max(0) as u64 * 1000;
                histogram.saturating_record(micros.max(1));
                counters.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
                counters.latency_count.fetch_add(1, Ordering::Relaxed);
            }
        }
        counters
            .consumed
            .fetch_add(records.len() as u64, Ordering::AcqRel);
        counters.consumed_bytes.fetch_add(bytes, Ordering::Relaxed);
        if measured {
            counters
                .measured
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            counters.measured_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    };
    consumer.close().await?;
    result?;
    Ok(histogram)
}

/// A line on stderr every second: throughput over the last second and the mean latency.
async fn report_progress(counters: Arc<Counters>, mode: Mode, started: Instant) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.tick().await;
    let (mut last_records, mut last_bytes) = (0u64, 0u64);
    let mut last = Instant::now();
    loop {
        ticks.tick().await;
        let (records, bytes) = match mode {
            Mode::Produce => (
                counters.produced.load(Ordering::Relaxed),
                counters.produced_bytes.load(Ordering::Relaxed),
            ),
            Mode::Consume | Mode::E2e => (
                counters.consumed.load(Ordering::Relaxed),
                counters.consumed_bytes.load(Ordering::Relaxed),
            ),
        };
        let seconds = last.elapsed().as_secs_f64().max(1e-9);
        last = Instant::now();
        let latency_sum = counters.latency_sum_us.swap(0, Ordering::Relaxed);
        let latency_count = counters.latency_count.swap(0, Ordering::Relaxed);
        let latency = if latency_count == 0 {
            String::new()
        } else {
            format!(
                ", mean latency {:.2} ms",
                latency_sum as f64 / latency_count as f64 / 1000.0
            )
        };
        eprintln!(
            "{:>5.0} s: {records} records, {:.0} records/s, {:.2} MB/s{latency}",
            started.elapsed().as_secs_f64(),
            (records - last_records) as f64 / seconds,
            (bytes - last_bytes) as f64 / MB / seconds,
        );
        (last_records, last_bytes) = (records, bytes);
    }
}

#[derive(Debug, Serialize)]
struct Summary {
    mode: &'static str,
    topic: String,
    partitions: usize,
    /// Produced (produce) or consumed (consume, e2e) records.
    records: u64,
    bytes: u64,
    record_size: usize,
    producers: usize,
    consumers: usize,
    acks: &'static str,
    compression: &'static str,
    elapsed_s: f64,
    records_per_sec: f64,
    mb_per_sec: f64,
    /// Records that failed to produce.
    errors: u64,
    warmup_s: f64,
    /// This process's CPU time per 10^9 bytes measured.
    client_cpu_s_per_gb: f64,
    /// The broker's (with --broker-pid).
    broker_cpu_s_per_gb: Option<f64>,
    /// Send to acknowledgement (produce, e2e).
    latency_ms: Option<Latency>,
    /// Record timestamp to consumption (e2e).
    e2e_latency_ms: Option<Latency>,
}

/// CPU time used so far, in clock ticks, by this process and the broker's.
#[derive(Debug, Clone, Copy)]
struct CpuTimes {
    client: u64,
    broker: Option<u64>,
}

/// CPU seconds between two [`CpuTimes`].
#[derive(Debug, Clone, Copy)]
struct CpuSeconds {
    client: f64,
    broker: Option<f64>,
}

/// `/proc` reports CPU times in USER_HZ ticks, 100 per second on every Linux ABI.
const TICKS_PER_SECOND: f64 = 100.0;

impl CpuTimes {
    fn now(broker_pid: Option<u32>) -> CpuTimes {
        CpuTimes {
            client: process_ticks("self").unwrap_or(0),
            broker: broker_pid.and_then(|pid| process_ticks(&pid.to_string())),
        }
    }

    fn since(&self, start: &CpuTimes) -> CpuSeconds {
        let seconds = |end: u64, start: u64| end.saturating_sub(start) as f64 / TICKS_PER_SECOND;
        CpuSeconds {
            client: seconds(self.client, start.client),
            broker: self
                .broker
                .zip(start.broker)
                .map(|(end, start)| seconds(end, start)),
        }
    }
}

/// User plus system time of a process from `/proc/<pid>/stat`; `None` where there is none.
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&stat)
}

/// Fields 14 and 15 (utime, stime), counted after the command name, which may hold spaces.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

#[derive(Debug, Serialize)]
struct Latency {
    p50: f64,
    p95: f64,
    p99: f64,
    #[serde(rename = "p99.9")]
    p99_9: f64,
    max: f64,
    mean: f64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Option<Latency> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Some(Latency {
            p50: ms(histogram.value_at_quantile(0.50)),
            p95: ms(histogram.value_at_quantile(0.95)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p99_9: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: (histogram.mean()).round() / 1000.0,
        })
    }

    fn line(&self) -> String {
        format!(
            "p50 {:.2}  p95 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (mean {:.2})",
            self.p50, self.p95, self.p99, self.p99_9, self.max, self.mean
        )
    }
}

impl Summary {
    fn new(
        mode: Mode,
        args: &LoadArgs,
        partitions: usize,
        counters: &Counters,
        (elapsed, cpu): (Duration, CpuSeconds),
        produce: Option<&Histogram<u64>>,
        end_to_end: Option<&Histogram<u64>>,
    ) -> Summary {
        let records = counters.measured.load(Ordering::Acquire);
        let bytes = counters.measured_bytes.load(Ordering::Acquire);
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let gigabytes = (bytes as f64 / 1e9).max(1e-12);
        let per_gb = |cpu_seconds: f64| (cpu_seconds / gigabytes * 1000.0).round() / 1000.0;
        Summary {
            mode: mode.as_str(),
            topic: args.topic.clone(),
            partitions,
            records,
            bytes,
            record_size: args.record_size,
            producers: if mode == Mode::Consume {
                0
            } else {
                args.producers
            },
            consumers: if mode == Mode::Produce {
                0
            } else {
                args.consumers
            },
            acks: args.producer.acks.as_str(),
            compression: args.producer.compression.as_str(),
            elapsed_s: (seconds * 1000.0).round() / 1000.0,
            records_per_sec: (records as f64 / seconds).round(),
            mb_per_sec: (bytes as f64 / MB / seconds * 100.0).round() / 100.0,
            errors: counters.errors.load(Ordering::Acquire),
            warmup_s: args.warmup,
            client_cpu_s_per_gb: per_gb(cpu.client),
            broker_cpu_s_per_gb: cpu.broker.map(per_gb),
            latency_ms: produce.and_then(Latency::of),
            e2e_latency_ms: end_to_end.and_then(Latency::of),
        }
    }

    fn table(&self) -> String {
        let verb = match self.mode {
            "produce" => "Produced",
            _ => "Consumed",
        };
        let mut text = format!(
            "{verb} {} records ({:.2} MB) {} {:?} in {:.2} s: {:.0} records/s, {:.2} MB/s\n",
            self.records,
            self.bytes as f64 / MB,
            if verb == "Produced" { "to" } else { "from" },
            self.topic,
            self.elapsed_s,
            self.records_per_sec,
            self.mb_per_sec
        );
        if let Some(latency) = &self.latency_ms {
            text.push_str(&format!("Produce latency ms: {}\n", latency.line()));
        }
        if let Some(latency) = &self.e2e_latency_ms {
            text.push_str(&format!("End-to-end latency ms: {}\n", latency.line()));
        }
        text.push_str(&format!(
            "CPU-seconds per GB: client {:.3}",
            self.client_cpu_s_per_gb
        ));
        if let Some(broker) = self.broker_cpu_s_per_gb {
            text.push_str(&format!(", broker {broker:.3}"));
        }
        if self.warmup_s > 0.0 {
            text.push_str(&format!(" (after a {:.1} s warm-up)", self.warmup_s));
        }
        text.push('\n');
        if self.errors > 0 {
            text.push_str(&format!("Failed records: {}\n", self.errors));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_positive_or_unlimited() {
        assert_eq!(parse_rate("unlimited"), Ok(Rate::Unlimited));
        assert_eq!(parse_rate("2500"), Ok(Rate::PerSecond(2500.0)));
        for bad in ["0", "-1", "fast", "inf", "NaN"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn payloads_are_letters_of_the_asked_size() {
        let bytes = payload(4096);
        assert_eq!(bytes.len(), 4096);
        assert!(bytes.iter().all(u8::is_ascii_uppercase));
        assert!(bytes.iter().collect::<std::collections::HashSet<_>>().len() > 20);
    }

    #[test]
    fn cpu_times_come_from_proc_stat() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 9";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert!(
            process_ticks("self").is_some(),
            "this process has a /proc entry"
        );
    }

    #[test]
    fn latencies_report_in_milliseconds() {
        let mut histogram = new_histogram();
        for micros in 1..=1000 {
            histogram.saturating_record(micros * 1000);
        }
        let latency = Latency::of(&histogram).expect("recorded");
        assert!((latency.p50 - 500.0).abs() < 1.0, "{latency:?}");
        assert!((latency.p99 - 990.0).abs() < 1.0, "{latency:?}");
        assert!((latency.max - 1000.0).abs() < 1.0, "{latency:?}");
        assert!(Latency::of(&new_histogram()).is_none());
        let json = serde_json::to_value(&latency).expect("json");
        assert!(json.get("p99.9").is_some(), "{json}");
    }
}
