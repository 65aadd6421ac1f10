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
//! Each subcommand takes only the flags it uses ([`args`]); the cluster flags and `-f/--format`
//! are those of every client command, and the producers and consumers take their client
//! settings from [`ClusterArgs::client_config`], so a connection profile and `-X KEY=VALUE`
//! reach them as they reach `runnel produce` and `runnel consume`.
//!
//! Progress goes to stderr every second; the summary ([`summary`]: throughput in records/s and
//! MB/s, where MB is 2^20 bytes as in Kafka's tools, latency percentiles from an HDR
//! histogram, and CPU seconds per GB of 10^9 bytes for this process and, with `--broker-pid`,
//! the broker) goes to stdout, as one JSON object on the last line with `--format json`.
//! `--warmup` leaves the first seconds out of the summary.

mod args;
mod summary;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use hdrhistogram::Histogram;
use kafka_protocol::error::ResponseError;
use runnel_client::consumer::{Consumer, ConsumerConfig, TopicPartition};
use runnel_client::producer::{DeliveryFuture, ProduceRecord, Producer, ProducerConfig};
use runnel_client::{Admin, ClientConfig, NewTopic, OffsetSpec};
use tokio::sync::mpsc;

use crate::output::{print_stdout, ClusterArgs, Format};
use crate::produce_cmd::MB;
pub(crate) use args::BenchArgs;
use args::{Plan, ProducerLoad, Rate};
use summary::{CpuTimes, Summary};

/// Deliveries in flight per producer beyond which sending waits.
const DELIVERIES_QUEUED_MAX: usize = 65_536;
/// A consumer that reads nothing for this long gives up.
const CONSUME_IDLE_MAX: Duration = Duration::from_secs(10);
const POLL_TIMEOUT: Duration = Duration::from_millis(200);
/// Latencies are recorded in microseconds, up to an hour.
const LATENCY_US_MAX: u64 = 3_600_000_000;
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
    /// The producers' records, answered; latency is send to acknowledgement.
    produced: Side,
    /// The consumers' records, read; latency (e2e) is the record's age when read.
    consumed: Side,
    errors: AtomicU64,
    /// Set when every worker should stop (duration over, Ctrl-C, a consumer's target met).
    stop: AtomicBool,
}

/// One side's counts. The sides are kept apart because e2e runs both and reports the
/// consumers': counted together, its records and bytes were twice what went through, and the
/// progress line's mean latency mixed acknowledgement times with records' ages.
#[derive(Debug, Default)]
struct Side {
    records: AtomicU64,
    bytes: AtomicU64,
    /// Records (and their bytes) after the warm-up: what the summary reports.
    measured: AtomicU64,
    measured_bytes: AtomicU64,
    /// Sum and count of latencies (µs) since the last progress report.
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
}

impl Counters {
    /// The side a run reports: the producers' for produce, the consumers' otherwise.
    fn reported(&self, mode: Mode) -> &Side {
        match mode {
            Mode::Produce => &self.produced,
            Mode::Consume | Mode::E2e => &self.consumed,
        }
    }
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let plan = args.plan()?;
    let mode = plan.mode;
    let common = &plan.common;
    let cluster = &common.output.cluster;
    // Read once (the profile is a file): the admin, every producer and every consumer start
    // from these settings.
    let client = cluster.client_config()?;
    let admin = Admin::connect(client.clone())
        .await
        .map_err(|error| cluster.connect_error(error))?;
    let partitions = prepare_topic(&admin, &plan).await?;

    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let after = |seconds: f64, flag: &str| {
        Duration::try_from_secs_f64(seconds)
            .ok()
            .and_then(|length| started.checked_add(length))
            .with_context(|| format!("{flag} {seconds} is too long"))
    };
    let measure_from = after(common.warmup, "--warmup")?;
    let cpu_at_start = {
        let broker_pid = common.broker_pid;
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            CpuTimes::now(broker_pid)
        })
    };
    let deadline = common
        .duration
        .map(|seconds| after(seconds, "--duration"))
        .transpose()?;
    let records_wanted = plan.records_wanted();

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
    if let Some(load) = &plan.consumers {
        let consume_target = match (mode, records_wanted) {
            (Mode::Consume, None) => {
                let ends = admin
                    .list_offsets(&common.topic, &partitions, OffsetSpec::Latest)
                    .await?;
                let starts = admin
                    .list_offsets(&common.topic, &partitions, OffsetSpec::Earliest)
                    .await?;
                let held: i64 = ends
                    .iter()
                    .zip(&starts)
                    .map(|((_, end), (_, start))| end.offset - start.offset)
                    .sum();
                if held <= 0 {
                    bail!(
                        "topic {:?} holds no records: run `runnel bench produce` first",
                        common.topic
                    );
                }
                Some(held as u64)
            }
            (_, wanted) => wanted,
        };
        let from_end = mode == Mode::E2e;
        let mut ready = Vec::new();
        for index in 0..load.consumers.min(partitions.len()) {
            let owned: Vec<i32> = partitions
                .iter()
                .copied()
                .skip(index)
                .step_by(load.consumers)
                .collect();
            let consumer = start_consumer(&plan, &client, &owned, from_end).await?;
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
    if let Some(load) = &plan.producers {
        let payload = payload(load.record_size);
        let keys: Arc<Vec<Bytes>> = Arc::new(
            (0..load.keys)
                .map(|key| Bytes::from(format!("key-{key}")))
                .collect(),
        );
        for index in 0..load.producers {
            let producer = Producer::connect(producer_config(load, cluster, &client, index))
                .await
                .map_err(|error| cluster.connect_error(error))?;
            if load.transaction_size.is_some() {
                producer.init_transactions().await?;
            }
            let share = records_wanted.map(|records| {
                let producers = load.producers as u64;
                records / producers + u64::from((index as u64) < records % producers)
            });
            let rate = match load.rate {
                Rate::Unlimited => None,
                Rate::PerSecond(rate) => Some(rate / load.producers as f64),
            };
            producer_tasks.push(tokio::spawn(produce(
                producer,
                common.topic.clone(),
                payload.clone(),
                Arc::clone(&keys),
                share,
                rate,
                load.transaction_size,
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
    let cpu_at_end = CpuTimes::now(common.broker_pid);
    watchdog.abort();
    reporter.abort();
    if elapsed <= measure_from - started {
        bail!("the run ended during the --warmup: nothing was measured");
    }
    let cpu_at_start = cpu_at_start.await.context("the CPU sampler failed")?;

    let summary = Summary::new(
        &plan,
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
        plan.producers.is_some().then_some(&produce_histogram),
        (mode == Mode::E2e).then_some(&e2e_histogram),
    );
    // One line, the last, whatever the progress lines before it: scripts read the last line.
    let text = match common.output.format {
        Format::Json => serde_json::to_string(&summary)? + "\n",
        Format::Table => summary.table(),
    };
    print_stdout(&text)?;
    if summary.errors > 0 {
        bail!("{} records failed", summary.errors);
    }
    Ok(())
}

/// Producer `index`'s settings: the client's (brokers, profile, `-X`), then the producer flags.
fn producer_config(
    load: &ProducerLoad,
    cluster: &ClusterArgs,
    client: &ClientConfig,
    index: usize,
) -> ProducerConfig {
    let mut config = load.producer.config(cluster);
    config.client = client.clone();
    if load.transaction_size.is_some() {
        config.transactional_id = Some(format!("runnel-bench-{}-{index}", std::process::id()));
    }
    config
}

/// A consumer's settings: the client's (brokers, profile, `-X`), fetching without a group.
fn consumer_config(cluster: &ClusterArgs, client: &ClientConfig) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(cluster.bootstrap.as_str());
    config.client = client.clone();
    // A short wait, so a consumer that caught up sees the stop flag and new records soon.
    config.fetch_max_wait = Duration::from_millis(100);
    config
}

/// The topic's partitions, creating the topic when it is missing (produce, e2e).
async fn prepare_topic(admin: &Admin, plan: &Plan) -> anyhow::Result<Vec<i32>> {
    let topic = plan.common.topic.as_str();
    let partitions_wanted = plan.producers.as_ref().and_then(|load| load.partitions);
    let metadata = match admin.describe_topic(topic).await {
        Ok(metadata) => {
            if let Some(wanted) = partitions_wanted {
                if usize::try_from(wanted).ok() != Some(metadata.partitions.len()) {
                    eprintln!(
                        "note: topic {topic:?} exists with {} partitions; --partitions {wanted} is ignored",
                        metadata.partitions.len()
                    );
                }
            }
            metadata
        }
        Err(error) if error.code() == Some(ResponseError::UnknownTopicOrPartition) => {
            if plan.producers.is_none() {
                bail!("topic {topic:?} does not exist: run `runnel bench produce` first");
            }
            admin
                .create_topic(NewTopic::new(topic, partitions_wanted.unwrap_or(-1)))
                .await?;
            eprintln!("Created topic {topic:?}.");
            admin.describe_topic(topic).await?
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
        let side = &counters.produced;
        side.measured.fetch_add(self.measured, Ordering::Relaxed);
        side.measured_bytes
            .fetch_add(self.measured * self.record_bytes, Ordering::Relaxed);
        side.records.fetch_add(self.produced, Ordering::Relaxed);
        side.bytes
            .fetch_add(self.produced * self.record_bytes, Ordering::Relaxed);
        side.latency_sum_us
            .fetch_add(self.latency_sum_us, Ordering::Relaxed);
        side.latency_count
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

/// A consumer assigned `partitions`, positioned at their end (e2e) or their start.
async fn start_consumer(
    plan: &Plan,
    client: &ClientConfig,
    partitions: &[i32],
    from_end: bool,
) -> anyhow::Result<Consumer> {
    let cluster = &plan.common.output.cluster;
    let consumer = Consumer::connect(consumer_config(cluster, client))
        .await
        .map_err(|error| cluster.connect_error(error))?;
    let tps: Vec<TopicPartition> = partitions
        .iter()
        .map(|&p| TopicPartition::new(plan.common.topic.as_str(), p))
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
    let side = &counters.consumed;
    let mut last_record = Instant::now();
    let result = loop {
        if counters.stop.load(Ordering::Acquire) {
            break Ok(());
        }
        if target.is_some_and(|target| counters.consumed.records.load(Ordering::Acquire) >= target)
        {
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
                side.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
                side.latency_count.fetch_add(1, Ordering::Relaxed);
            }
        }
        side.records
            .fetch_add(records.len() as u64, Ordering::AcqRel);
        side.bytes.fetch_add(bytes, Ordering::Relaxed);
        if measured {
            side.measured
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            side.measured_bytes.fetch_add(bytes, Ordering::Relaxed);
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
        let side = counters.reported(mode);
        let records = side.records.load(Ordering::Relaxed);
        let bytes = side.bytes.load(Ordering::Relaxed);
        let seconds = last.elapsed().as_secs_f64().max(1e-9);
        last = Instant::now();
        let latency_sum = side.latency_sum_us.swap(0, Ordering::Relaxed);
        let latency_count = side.latency_count.swap(0, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_letters_of_the_asked_size() {
        let bytes = payload(4096);
        assert_eq!(bytes.len(), 4096);
        assert!(bytes.iter().all(u8::is_ascii_uppercase));
        assert!(bytes.iter().collect::<std::collections::HashSet<_>>().len() > 20);
    }

    #[test]
    fn clients_take_the_profile_and_x_properties() {
        use runnel_client::producer::Acks;

        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("cli.toml");
        std::fs::write(
            &file,
            "[profiles.bench]\n\"client.id\" = \"from-profile\"\n\"request.timeout.ms\" = 7000\n",
        )
        .expect("write the config file");
        let file = file.to_string_lossy();
        let plan = args::plan(&[
            "bench",
            "e2e",
            "--config-file",
            &file,
            "--profile",
            "bench",
            "-X",
            "client.id=from-flag",
            "--acks",
            "1",
            "--transaction-size",
            "10",
        ])
        .expect("flags");
        let cluster = &plan.common.output.cluster;
        let client = cluster.client_config().expect("the profile reads");
        let load = plan.producers.as_ref().expect("e2e produces");

        let producer = producer_config(load, cluster, &client, 3);
        assert_eq!(
            producer.client.client_id, "from-flag",
            "-X over the profile"
        );
        assert_eq!(producer.client.request_timeout, Duration::from_secs(7));
        assert_eq!(producer.acks, Acks::Leader);
        assert!(
            producer
                .transactional_id
                .as_deref()
                .is_some_and(|id| id.ends_with("-3")),
            "{:?}",
            producer.transactional_id
        );

        let consumer = consumer_config(cluster, &client);
        assert_eq!(consumer.client.client_id, "from-flag");
        assert_eq!(consumer.client.request_timeout, Duration::from_secs(7));
    }
}
