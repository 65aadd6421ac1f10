//! What the broker counts for its operators, and how it reads out as Prometheus metrics.
//!
//! The hot paths only bump atomics: a request's counter and latency bucket (by API key and
//! version, in fixed arrays), a partition's bytes and records in and out (in the partition),
//! an fsync's duration. Everything that is state rather than an event (partitions led and
//! under-replicated, log sizes, consumer lag, the Raft term) is read at scrape time from the
//! broker itself, so it costs nothing between scrapes and is never stale. [`render`] writes
//! it all in the OpenMetrics text format (`runnel-metrics`).
//!
//! Every metric is listed, with its meaning, in `docs/metrics.md`; the test
//! `tests/compat/test_metrics.py` scrapes a broker under load and checks each one is served
//! and that the ones that count traffic move.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use runnel_metrics::{Exposition, Histogram, Labels, Unit};
use runnel_quorum::RaftProgress;

use crate::broker::Broker;

/// API keys are below this (Kafka's highest is under 100); a key beyond is not counted.
const API_KEYS: usize = 128;
/// Versions counted per API; a version beyond is counted as the last one.
const API_VERSIONS: usize = 32;

/// Request latency buckets, in seconds: from a cached Metadata answer to a long-poll Fetch
/// or a JoinGroup parked for a rebalance.
const LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// fsync latency buckets, in seconds.
const FSYNC_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Records one fsync made durable: how much group commit shares each fsync.
const BATCH_BOUNDS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0, 16384.0, 65536.0,
];

/// Bytes and records a partition took in from producers and handed out to consumers.
#[derive(Debug, Default)]
pub(crate) struct PartitionTraffic {
    bytes_in: AtomicU64,
    records_in: AtomicU64,
    bytes_out: AtomicU64,
    records_out: AtomicU64,
}

impl PartitionTraffic {
    /// A produce appended `records` in `bytes` (a retried duplicate is not counted).
    pub(crate) fn appended(&self, bytes: usize, records: u64) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
        self.records_in.fetch_add(records, Ordering::Relaxed);
    }

    /// A consumer's fetch handed out `bytes` of whole batches, spanning `records` offsets.
    pub(crate) fn fetched(&self, bytes: usize, records: u64) {
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
        self.records_out.fetch_add(records, Ordering::Relaxed);
    }

    fn read(&self) -> [u64; 4] {
        [
            self.bytes_in.load(Ordering::Relaxed),
            self.records_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
            self.records_out.load(Ordering::Relaxed),
        ]
    }
}

/// The offsets spanned by the whole batches in `records` (what a fetch hands out): the
/// records a consumer reads, counting those compaction removed from a batch.
pub(crate) fn offsets_spanned(mut records: &[u8]) -> u64 {
    let mut spanned = 0;
    while let Ok(header) = runnel_record::RecordBatch::parse_header(records) {
        spanned += (header.last_offset() - header.base_offset + 1).max(0) as u64;
        match records.get(header.total_len()..) {
            Some(rest) => records = rest,
            None => break,
        }
    }
    spanned
}

/// Broker-wide counters, bumped where things happen.
#[derive(Debug)]
pub(crate) struct BrokerMetrics {
    /// Requests served, by `[api key][version]`.
    requests: Box<[[AtomicU64; API_VERSIONS]]>,
    /// Request latency by API key, from parsed to encoded.
    latency: Box<[Histogram]>,
    /// Error codes answered, by (API key, version, code): only requests with errors reach
    /// this map, so a lock is cheap enough.
    errors: Mutex<HashMap<(i16, i16, i16), u64>>,
    /// Frames closed without an answer: unparsable, or of an API this broker does not serve.
    requests_unparsable: AtomicU64,
    connections_open: AtomicI64,
    connections_accepted: AtomicU64,
    connections_rejected: AtomicU64,
    fsync_latency: Histogram,
    fsync_batch_records: Histogram,
    isr_shrinks: AtomicU64,
    isr_expands: AtomicU64,
    leaderships_taken: AtomicU64,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        BrokerMetrics {
            requests: (0..API_KEYS)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            latency: (0..API_KEYS)
                .map(|_| Histogram::new(LATENCY_BOUNDS, 1e-9))
                .collect(),
            errors: Mutex::new(HashMap::new()),
            requests_unparsable: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_rejected: AtomicU64::new(0),
            fsync_latency: Histogram::new(FSYNC_BOUNDS, 1e-9),
            fsync_batch_records: Histogram::new(BATCH_BOUNDS, 1.0),
            isr_shrinks: AtomicU64::new(0),
            isr_expands: AtomicU64::new(0),
            leaderships_taken: AtomicU64::new(0),
        }
    }
}

impl BrokerMetrics {
    /// One request answered: counted, timed, and its error codes counted.
    pub(crate) fn request_served(
        &self,
        api_key: i16,
        version: i16,
        elapsed: Duration,
        response: Option<&ResponseKind>,
    ) {
        let Ok(key) = usize::try_from(api_key) else {
            return;
        };
        if key >= API_KEYS {
            return;
        }
        let slot = usize::try_from(version).unwrap_or(0).min(API_VERSIONS - 1);
        self.requests[key][slot].fetch_add(1, Ordering::Relaxed);
        self.latency[key].observe_duration(elapsed);
        if let Some(response) = response {
            let mut errors: Option<std::sync::MutexGuard<'_, _>> = None;
            each_error_code(response, &mut |code| {
                if code != 0 {
                    let map = errors.get_or_insert_with(|| {
                        self.errors
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                    });
                    *map.entry((api_key, version, code)).or_insert(0) += 1;
                }
            });
        }
    }

    pub(crate) fn request_unparsable(&self) {
        self.requests_unparsable.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was accepted; the guard counts it open until dropped.
    pub(crate) fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.connections_accepted.fetch_add(1, Ordering::Relaxed);
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(Arc::clone(self))
    }

    pub(crate) fn connection_rejected(&self) {
        self.connections_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// An fsync of a partition's log took `elapsed` and made `records` durable.
    pub(crate) fn fsynced(&self, elapsed: Duration, records: u64) {
        self.fsync_latency.observe_duration(elapsed);
        self.fsync_batch_records.observe(records as f64);
    }

    /// A committed ISR change of a partition led here went from `before` to `after` members.
    pub(crate) fn isr_changed(&self, before: usize, after: usize) {
        match after.cmp(&before) {
            std::cmp::Ordering::Less => self.isr_shrinks.fetch_add(1, Ordering::Relaxed),
            std::cmp::Ordering::Greater => self.isr_expands.fetch_add(1, Ordering::Relaxed),
            std::cmp::Ordering::Equal => 0,
        };
    }

    /// This broker took the leadership of a partition.
    pub(crate) fn leadership_taken(&self) {
        self.leaderships_taken.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts one open connection until dropped.
#[derive(Debug)]
pub(crate) struct OpenConnection(Arc<BrokerMetrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Calls `each` with every error code `response` carries, top-level and per partition, for
/// the APIs whose errors operators watch; others are counted as requests only.
fn each_error_code(response: &ResponseKind, each: &mut dyn FnMut(i16)) {
    match response {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| each(p.error_code)),
        ResponseKind::Fetch(r) => {
            each(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| each(p.error_code));
        }
        ResponseKind::Metadata(r) => r.topics.iter().for_each(|t| {
            each(t.error_code);
            t.partitions.iter().for_each(|p| each(p.error_code));
        }),
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| each(p.error_code)),
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| each(p.error_code)),
        ResponseKind::TxnOffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| each(p.error_code)),
        ResponseKind::DeleteRecords(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| each(p.error_code)),
        ResponseKind::OffsetFetch(r) => {
            each(r.error_code);
            r.groups.iter().for_each(|g| each(g.error_code));
        }
        ResponseKind::FindCoordinator(r) => {
            each(r.error_code);
            r.coordinators.iter().for_each(|c| each(c.error_code));
        }
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| each(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| each(t.error_code)),
        ResponseKind::DescribeGroups(r) => r.groups.iter().for_each(|g| each(g.error_code)),
        ResponseKind::DescribeConfigs(r) => r.results.iter().for_each(|c| each(c.error_code)),
        ResponseKind::AlterConfigs(r) => r.responses.iter().for_each(|c| each(c.error_code)),
        ResponseKind::IncrementalAlterConfigs(r) => {
            r.responses.iter().for_each(|c| each(c.error_code))
        }
        ResponseKind::JoinGroup(r) => each(r.error_code),
        ResponseKind::SyncGroup(r) => each(r.error_code),
        ResponseKind::Heartbeat(r) => each(r.error_code),
        ResponseKind::LeaveGroup(r) => each(r.error_code),
        ResponseKind::ListGroups(r) => each(r.error_code),
        ResponseKind::ApiVersions(r) => each(r.error_code),
        ResponseKind::InitProducerId(r) => each(r.error_code),
        ResponseKind::EndTxn(r) => each(r.error_code),
        ResponseKind::ConsumerGroupHeartbeat(r) => each(r.error_code),
        ResponseKind::DescribeCluster(r) => each(r.error_code),
        _ => {}
    }
}

/// Kafka's name of an error code (`UNKNOWN_TOPIC_OR_PARTITION`), as its clients log it.
fn error_name(code: i16) -> String {
    let Some(error) = ResponseError::try_from_code(code) else {
        return format!("CODE_{code}");
    };
    let camel = format!("{error:?}");
    if !camel.chars().all(|c| c.is_ascii_alphanumeric()) {
        // A code the protocol crate does not name: `Unknown(-32000)`.
        return format!("CODE_{code}");
    }
    let mut name = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

fn api_name(key: usize) -> String {
    i16::try_from(key)
        .ok()
        .and_then(|key| ApiKey::try_from(key).ok())
        .map_or_else(|| format!("api{key}"), |api| format!("{api:?}"))
}

/// What the scrape reads besides the broker: the Raft progress of the voter this process
/// runs, if any.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ScrapeExtras {
    pub(crate) raft: Option<RaftProgress>,
}

/// The broker's metrics in the OpenMetrics text format. Blocks (it reads every partition's
/// log state under its lock): call it off the async workers.
pub(crate) fn render(broker: Option<&Arc<Broker>>, extras: ScrapeExtras) -> String {
    let mut out = Exposition::default();
    if let Some(raft) = extras.raft {
        encode_raft(&mut out, raft);
    }
    if let Some(broker) = broker {
        encode_broker(&mut out, broker);
    }
    out.render()
}

/// What a partition held here looks like at the scrape.
struct PartitionReading {
    topic: String,
    index: i32,
    size_bytes: u64,
    segments: usize,
    log_end: i64,
    high_watermark: i64,
    leads: bool,
    under_replicated: bool,
    under_min_isr: bool,
    offline: bool,
}

fn encode_raft(out: &mut Exposition, raft: RaftProgress) {
    let one = |value: u64| [(Labels::new(), i64::try_from(value).unwrap_or(i64::MAX))];
    out.gauges(
        "runnel_controller_raft_term",
        "The Raft term this controller voter is in.",
        None,
        one(raft.term),
    );
    out.gauges(
        "runnel_controller_raft_commit_index",
        "The last metadata log index this voter applied (only committed entries are applied).",
        None,
        one(raft.applied_index),
    );
    out.gauges(
        "runnel_controller_raft_last_log_index",
        "The last index of the metadata log on this voter.",
        None,
        one(raft.last_log_index),
    );
    out.gauges(
        "runnel_controller_raft_leader",
        "The node id of the active controller as this voter knows it, -1 when none.",
        None,
        [(
            Labels::new(),
            raft.leader.map_or(-1, |id| i64::try_from(id).unwrap_or(-1)),
        )],
    );
    out.gauges(
        "runnel_controller_active",
        "1 on the active controller (the Raft leader), 0 on the other voters.",
        None,
        [(Labels::new(), i64::from(raft.is_leader))],
    )
}

fn encode_broker(out: &mut Exposition, broker: &Arc<Broker>) {
    let metrics = &broker.metrics;
    let node = broker.node_id().to_string();
    out.gauges(
        "runnel_broker_info",
        "Always 1; the labels name this broker, its cluster and the runnel version.",
        None,
        [(
            vec![
                ("node_id", node),
                ("cluster_id", broker.cluster_id().to_owned()),
                ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ],
            1,
        )],
    );
    encode_requests(out, metrics);
    out.gauges(
        "runnel_connections",
        "Client connections open now.",
        None,
        [(
            Labels::new(),
            metrics.connections_open.load(Ordering::Relaxed),
        )],
    );
    out.counters(
        "runnel_connections_accepted",
        "Client connections accepted.",
        None,
        [(
            Labels::new(),
            metrics.connections_accepted.load(Ordering::Relaxed),
        )],
    );
    out.counters(
        "runnel_connections_rejected",
        "Client connections closed at once: their address had max.connections.per.ip open.",
        None,
        [(
            Labels::new(),
            metrics.connections_rejected.load(Ordering::Relaxed),
        )],
    );
    out.histograms(
        "runnel_log_fsync_duration",
        "How long each fsync of a partition's log took.",
        Some(Unit::Seconds),
        [(Labels::new(), metrics.fsync_latency.snapshot())],
    );
    out.histograms(
        "runnel_log_fsync_batch_records",
        "Records each fsync made durable: how many appends group commit let one fsync cover.",
        None,
        [(Labels::new(), metrics.fsync_batch_records.snapshot())],
    );
    out.counters(
        "runnel_isr_shrinks",
        "Committed ISR changes of partitions led here that removed replicas.",
        None,
        [(Labels::new(), metrics.isr_shrinks.load(Ordering::Relaxed))],
    );
    out.counters(
        "runnel_isr_expands",
        "Committed ISR changes of partitions led here that added replicas.",
        None,
        [(Labels::new(), metrics.isr_expands.load(Ordering::Relaxed))],
    );
    out.counters(
        "runnel_leader_elections",
        "Partition leaderships this broker took (each a leader election won here).",
        None,
        [(
            Labels::new(),
            metrics.leaderships_taken.load(Ordering::Relaxed),
        )],
    );
    encode_partitions(out, broker);
    encode_cluster(out, broker);
    encode_consumer_lag(out, broker);
}

fn encode_requests(out: &mut Exposition, metrics: &BrokerMetrics) {
    let mut served = Vec::new();
    for (key, versions) in metrics.requests.iter().enumerate() {
        for (version, count) in versions.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            if count > 0 {
                served.push((
                    vec![("api", api_name(key)), ("version", version.to_string())],
                    count,
                ));
            }
        }
    }
    out.counters(
        "runnel_requests",
        "Requests answered, by API and version.",
        None,
        served,
    );
    let errors: BTreeMap<(i16, i16, i16), u64> = metrics
        .errors
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|(&key, &count)| (key, count))
        .collect();
    out.counters("runnel_request_errors",
        "Error codes in answers (top-level and per partition), by API, version and Kafka error name.",
        None,
        errors.into_iter().map(|((api, version, code), count)| {
            (
                vec![
                    ("api", api_name(usize::try_from(api).unwrap_or(usize::MAX))),
                    ("version", version.to_string()),
                    ("error", error_name(code)),
                ],
                count,
            )
        }),
    );
    out.counters(
        "runnel_requests_unparsable",
        "Requests the broker closed the connection on: unparsable, or of an API it does not serve.",
        None,
        [(
            Labels::new(),
            metrics.requests_unparsable.load(Ordering::Relaxed),
        )],
    );
    out.histograms("runnel_request_duration",
        "Time from a request parsed to its answer encoded, by API (long-poll fetches and parked joins included).",
        Some(Unit::Seconds),
        metrics
            .latency
            .iter()
            .enumerate()
            .filter(|(_, histogram)| !histogram.is_empty())
            .map(|(key, histogram)| (vec![("api", api_name(key))], histogram.snapshot())),
    )
}

fn encode_partitions(out: &mut Exposition, broker: &Arc<Broker>) {
    let mut readings = Vec::new();
    let mut traffic: BTreeMap<String, [u64; 4]> = BTreeMap::new();
    for topic in broker.topics.list() {
        let totals = traffic.entry(topic.name.to_string()).or_default();
        for partition in topic.partitions() {
            for (total, value) in totals.iter_mut().zip(partition.traffic.read()) {
                *total += value;
            }
            if let Some(reading) = read_partition(&partition) {
                readings.push(reading);
            }
        }
    }
    let per_topic = |which: usize| {
        traffic
            .iter()
            .map(move |(topic, values)| (vec![("topic", topic.clone())], values[which]))
    };
    out.counters(
        "runnel_topic_produced",
        "Bytes of record batches produced to a topic's partitions led here.",
        Some(Unit::Bytes),
        per_topic(0),
    );
    out.counters(
        "runnel_topic_produced_records",
        "Records produced to a topic's partitions led here.",
        None,
        per_topic(1),
    );
    out.counters(
        "runnel_topic_fetched",
        "Bytes of record batches consumers fetched from a topic's partitions here.",
        Some(Unit::Bytes),
        per_topic(2),
    );
    out.counters("runnel_topic_fetched_records",
        "Offsets consumers fetched from a topic's partitions here (records, and gaps compaction left).",
        None,
        per_topic(3),
    );
    let count = |keep: fn(&PartitionReading) -> bool| {
        [(
            Labels::new(),
            readings.iter().filter(|reading| keep(reading)).count() as i64,
        )]
    };
    out.gauges(
        "runnel_partitions_leader",
        "Partitions this broker leads.",
        None,
        count(|r| r.leads),
    );
    out.gauges(
        "runnel_partitions_under_replicated",
        "Partitions led here whose ISR is smaller than their replica set.",
        None,
        count(|r| r.under_replicated),
    );
    out.gauges(
        "runnel_partitions_under_min_isr",
        "Partitions led here whose ISR is below min.insync.replicas: acks=all produces fail.",
        None,
        count(|r| r.under_min_isr),
    );
    out.gauges(
        "runnel_replicas_offline",
        "Replicas on this broker taken offline by a disk error.",
        None,
        count(|r| r.offline),
    );
    let per_partition = |value: fn(&PartitionReading) -> i64| {
        readings.iter().map(move |reading| {
            (
                vec![
                    ("topic", reading.topic.clone()),
                    ("partition", reading.index.to_string()),
                ],
                value(reading),
            )
        })
    };
    out.gauges(
        "runnel_log_size",
        "Bytes of a partition's log on this broker's disk.",
        Some(Unit::Bytes),
        per_partition(|r| i64::try_from(r.size_bytes).unwrap_or(i64::MAX)),
    );
    out.gauges(
        "runnel_log_segments",
        "Segments of a partition's log on this broker.",
        None,
        per_partition(|r| r.segments as i64),
    );
    out.gauges(
        "runnel_log_end_offset",
        "The log end offset of a partition's replica here.",
        None,
        per_partition(|r| r.log_end),
    );
    out.gauges(
        "runnel_partition_high_watermark",
        "The high watermark of a partition's replica here: consumers read below it.",
        None,
        per_partition(|r| r.high_watermark),
    )
}

fn read_partition(partition: &crate::partition::Partition) -> Option<PartitionReading> {
    if !partition.is_held() {
        return None;
    }
    let offline = partition.is_offline();
    let (size_bytes, segments, log_end) = partition
        .with_log(|log| Ok((log.size_bytes(), log.segment_count(), log.log_end_offset())))
        .unwrap_or((0, 0, -1));
    let (leads, under_replicated, under_min_isr) = partition.with_role(|role| match role {
        crate::partition::Role::Leader(state) => (
            true,
            state.isr().len() < state.replicas().len(),
            state.check_produce().is_err(),
        ),
        _ => (false, false, false),
    });
    Some(PartitionReading {
        topic: partition.topic().to_owned(),
        index: partition.index,
        size_bytes,
        segments,
        log_end,
        high_watermark: partition.high_watermark(),
        leads,
        under_replicated,
        under_min_isr,
        offline,
    })
}

/// The cluster as this broker's metadata image has it.
fn encode_cluster(out: &mut Exposition, broker: &Arc<Broker>) {
    let Some(member) = broker.cluster.get() else {
        return;
    };
    let image = member.image();
    let leaderless = image
        .partitions()
        .filter(|(_, _, state)| !state.has_leader())
        .count();
    out.gauges("runnel_partitions_offline",
        "Partitions of the cluster with no leader, as this broker's metadata has them (Kafka's OfflinePartitionsCount).",
        None,
        [(Labels::new(), leaderless as i64)],
    );
    out.gauges(
        "runnel_cluster_brokers",
        "Brokers registered with the cluster, as this broker's metadata has them.",
        None,
        [(Labels::new(), image.brokers().count() as i64)],
    );
    out.gauges(
        "runnel_metadata_offset",
        "The metadata log offset this broker's image is at.",
        None,
        [(
            Labels::new(),
            i64::try_from(image.offset()).unwrap_or(i64::MAX),
        )],
    )
}

/// Lag of the groups this broker coordinates, on the partitions it holds a replica of (their
/// high watermark is known here; others' coordinators or leaders report theirs).
fn encode_consumer_lag(out: &mut Exposition, broker: &Arc<Broker>) {
    let mut lags = Vec::new();
    for (group, (topic, partition), committed) in broker.groups.committed_offsets() {
        let Some(held) = broker
            .topics
            .get(&topic)
            .and_then(|t| t.partition(partition))
            .filter(|p| p.is_held())
        else {
            continue;
        };
        let lag = (held.high_watermark() - committed).max(0);
        lags.push((
            vec![
                ("group", group),
                ("topic", topic),
                ("partition", partition.to_string()),
            ],
            lag,
        ));
    }
    out.gauges("runnel_consumer_group_lag",
        "Records between a group's committed offset and the partition's high watermark, for groups coordinated here on partitions held here.",
        None,
        lags,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(-32000), "CODE_-32000");
    }

    #[test]
    fn offsets_spanned_counts_whole_batches_and_stops_at_a_partial_one() {
        let batch = (0..5)
            .fold(runnel_record::BatchBuilder::new(0), |batch, _| {
                batch.record(None, Some(b"v"), &[])
            })
            .build();
        let mut two = batch.to_vec();
        two.extend_from_slice(&batch);
        assert_eq!(offsets_spanned(&two), 10);
        assert_eq!(offsets_spanned(&two[..batch.len() + 20]), 5);
        assert_eq!(offsets_spanned(&[]), 0);
    }

    #[test]
    fn a_served_request_is_counted_timed_and_its_errors_named() {
        let metrics = BrokerMetrics::default();
        let mut response = kafka_protocol::messages::HeartbeatResponse::default();
        response.error_code = 27; // REBALANCE_IN_PROGRESS
        metrics.request_served(
            ApiKey::Heartbeat as i16,
            4,
            Duration::from_millis(3),
            Some(&ResponseKind::Heartbeat(response)),
        );
        metrics.request_served(ApiKey::Heartbeat as i16, 99, Duration::ZERO, None);
        metrics.request_served(-1, 0, Duration::ZERO, None);
        let key = ApiKey::Heartbeat as usize;
        assert_eq!(metrics.requests[key][4].load(Ordering::Relaxed), 1);
        assert_eq!(
            metrics.requests[key][API_VERSIONS - 1].load(Ordering::Relaxed),
            1
        );
        let errors = metrics.errors.lock().map(|e| e.clone()).unwrap_or_default();
        assert_eq!(errors.get(&(key as i16, 4, 27)), Some(&1));
        let text = render(
            None,
            ScrapeExtras {
                raft: Some(RaftProgress {
                    term: 3,
                    leader: Some(1),
                    is_leader: true,
                    last_log_index: 10,
                    applied_index: 9,
                }),
            },
        );
        assert!(text.contains("runnel_controller_raft_term 3"), "{text}");
        assert!(
            text.contains("runnel_controller_raft_commit_index 9"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
