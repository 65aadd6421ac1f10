//! The whole broker on a simulated disk that loses power: real request handlers, the real I/O
//! pool and partition logs, and `SimFileSystem` underneath.
//!
//! Each seed runs a workload of produces (acks=all), fetches and offset commits, one request at
//! a time so that the order of disk operations, and so the run, replays from the seed. The
//! power goes out before a seeded disk operation: mid-write, between a write and its fsync, or
//! in the middle of a checkpoint. The next boot finds what was fsynced plus a seeded subset of
//! the rest, torn anywhere. Then the checker demands, with `replica.fsync` on (the default):
//! - the broker starts and every partition recovers (none offline);
//! - every acknowledged record is there, at its offset, unchanged;
//! - every record a consumer read is there (nobody read what the crash took);
//! - the last acknowledged offset commit, or a later one, is there.
//!
//! The broker is a one-node cluster, as `runnel server` on its own is: its partitions lead
//! with the replication state machine, in the roles a metadata image gives them
//! ([`LocalController`]: the controller's state machine, without a quorum, so that the run
//! stays on the simulated clock). A restart registers a new incarnation and leads again in
//! the next leader epoch.
//!
//! `the_checker_catches_acks_without_fsync` runs the same workload with `replica.fsync` off
//! (acknowledged once in the page cache, as Kafka does) and shows the checker failing it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use runnel_protocol::{Request, RequestBody};
use runnel_record::{decode_records, BatchBuilder, RecordBatch};
use runnel_storage::sim::{ManualClock, SimFileSystem, SplitMix64};

use crate::broker::{Broker, Reply};
use crate::config::BrokerConfig;
use crate::groups::OFFSETS_TOPIC;
use crate::local_controller::LocalController;
use crate::pipeline::Turn;

const TOPIC: &str = "events";
const PARTITIONS: i32 = 2;
const GROUP: &str = "readers";
const START_MS: i64 = 1_700_000_000_000;

fn config(fsync_before_ack: bool) -> BrokerConfig {
    BrokerConfig {
        replica_fsync: fsync_before_ack,
        // Small segments, so that rolls, index entries and checkpoints happen mid-run.
        log_segment_bytes: Some(1024),
        // One I/O thread runs jobs in the order they were queued: the run replays from its
        // seed even when a fetch overlaps a produce.
        num_io_threads: 1,
        // Sealed segments' files are closed and reopened as the run goes.
        sealed_segment_files_max: 2,
        ..LocalController::broker_config("data")
    }
}

/// The metadata of a one-node cluster whose topic has `partitions`, with the offsets topic.
fn one_node_cluster(partitions: i32) -> LocalController {
    let mut controller = LocalController::new();
    controller.register(config(true).node_id);
    controller.create_topic(TOPIC, partitions, BTreeMap::new());
    controller.create_topic(OFFSETS_TOPIC, 1, BTreeMap::new());
    controller
}

/// Opens the broker on `disk` and has it lead what `controller` gives it, as a new
/// incarnation. Returns once its group coordinator has loaded `__consumer_offsets` (a
/// client retries until then), so that the loader's disk reads come at the same point of
/// every replay of a seed.
async fn start(
    config: BrokerConfig,
    disk: SimFileSystem,
    clock: Arc<ManualClock>,
    controller: &mut LocalController,
) -> Result<Arc<Broker>, String> {
    let broker = Broker::open_with(config, Arc::new(disk), clock).map_err(|e| e.to_string())?;
    controller.start(&broker);
    while fetch_committed(&broker).await.0 == ResponseError::CoordinatorLoadInProgress.code() {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    Ok(broker)
}

async fn call(broker: &Arc<Broker>, key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
    let request = Request {
        header: RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version),
        api_key: key,
        body: RequestBody::Kafka(Box::new(body)),
    };
    match broker
        .handle(request, 0, Ipv4Addr::LOCALHOST.into(), Turn::first())
        .await
    {
        Reply::Response(response) => *response,
        _ => panic!("{key:?} was not answered"),
    }
}

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

/// What the clients were told: acknowledged records, records consumers read, commits.
#[derive(Debug, Default)]
struct Observed {
    acked: BTreeMap<(i32, i64), Vec<u8>>,
    read: BTreeMap<(i32, i64), Vec<u8>>,
    positions: [i64; PARTITIONS as usize],
    committed: Option<i64>,
}

async fn produce(
    broker: &Arc<Broker>,
    partition: i32,
    values: &[Vec<u8>],
    observed: &mut Observed,
) {
    let batch = values
        .iter()
        .fold(BatchBuilder::new(START_MS), |batch, value| {
            batch.record(None, Some(value), &[])
        })
        .build();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(topic_name())
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(Bytes::from(batch))),
            ])]);
    let ResponseKind::Produce(response) =
        call(broker, ApiKey::Produce, 9, RequestKind::Produce(request)).await
    else {
        panic!("not a produce response");
    };
    let answer = &response.responses[0].partition_responses[0];
    if answer.error_code == 0 {
        for (delta, value) in values.iter().enumerate() {
            observed.acked.insert(
                (partition, answer.base_offset + delta as i64),
                value.clone(),
            );
        }
    }
}

/// Reads a partition from `offset`: `(offset, value)` of every record returned, and the error.
async fn fetch(broker: &Arc<Broker>, partition: i32, offset: i64) -> (i16, Vec<(i64, Vec<u8>)>) {
    let request = FetchRequest::default()
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(topic_name())
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let ResponseKind::Fetch(response) =
        call(broker, ApiKey::Fetch, 12, RequestKind::Fetch(request)).await
    else {
        panic!("not a fetch response");
    };
    let data = &response.responses[0].partitions[0];
    let mut bytes = data.records.clone().unwrap_or_default();
    let mut records = Vec::new();
    while !bytes.is_empty() {
        let Ok(header) = RecordBatch::validate(&bytes) else {
            break;
        };
        let batch = bytes.split_to(header.total_len());
        for record in decode_records(&batch).unwrap_or_default() {
            records.push((record.offset, record.value.unwrap_or_default()));
        }
    }
    (data.error_code, records)
}

async fn commit(broker: &Arc<Broker>, offset: i64, observed: &mut Observed) {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic_name())
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset),
                ]),
        ]);
    let ResponseKind::OffsetCommit(response) = call(
        broker,
        ApiKey::OffsetCommit,
        8,
        RequestKind::OffsetCommit(request),
    )
    .await
    else {
        panic!("not an offset commit response");
    };
    if response.topics[0].partitions[0].error_code == 0 {
        observed.committed = Some(offset);
    }
}

/// The committed offset of partition 0 of the topic, and the group's error code.
async fn fetch_committed(broker: &Arc<Broker>) -> (i16, i64) {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(topic_name())
                .with_partition_indexes(vec![0]),
        ]));
    let ResponseKind::OffsetFetch(response) = call(
        broker,
        ApiKey::OffsetFetch,
        7,
        RequestKind::OffsetFetch(request),
    )
    .await
    else {
        panic!("not an offset fetch response");
    };
    let offset = response
        .topics
        .first()
        .and_then(|topic| topic.partitions.first())
        .map_or(-1, |partition| partition.committed_offset);
    (response.error_code, offset)
}

/// What one seed's run saw.
#[derive(Debug, Default)]
struct Summary {
    acked: usize,
    read: usize,
    cut_mid_run: bool,
}

/// One seed's run: the workload, the power cut, the next boot, the checks.
fn run(seed: u64, fsync_before_ack: bool) -> Result<Summary, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    runtime.block_on(async {
        let mut rng = SplitMix64(seed);
        let clock = Arc::new(ManualClock::new(START_MS));
        let disk = SimFileSystem::new(clock.clone());
        let config = config(fsync_before_ack);
        let mut controller = one_node_cluster(PARTITIONS);
        let broker = start(config.clone(), disk.clone(), clock.clone(), &mut controller)
            .await
            .map_err(|error| format!("first start: {error}"))?;
        disk.cut_power_after(rng.below(300));
        let mut observed = Observed::default();
        for step in 0..60 {
            clock.advance(rng.below(50) as i64);
            match rng.below(10) {
                0..=5 => {
                    let partition = rng.below(PARTITIONS as u64) as i32;
                    let values: Vec<Vec<u8>> = (0..1 + rng.below(4))
                        .map(|i| format!("seed {seed} step {step} record {i}").into_bytes())
                        .collect();
                    produce(&broker, partition, &values, &mut observed).await;
                }
                6..=8 => {
                    let partition = rng.below(PARTITIONS as u64) as i32;
                    let position = observed.positions[partition as usize];
                    // Sometimes a consumer reads while a produce to the same partition waits
                    // for its fsync.
                    let records = if rng.chance(1, 2) {
                        let values =
                            vec![format!("seed {seed} step {step} overlapped").into_bytes()];
                        let mut during = Observed::default();
                        let ((), (_, records)) = tokio::join!(
                            produce(&broker, partition, &values, &mut during),
                            fetch(&broker, partition, position)
                        );
                        observed.acked.extend(during.acked);
                        records
                    } else {
                        fetch(&broker, partition, position).await.1
                    };
                    for (offset, value) in records {
                        observed.read.insert((partition, offset), value);
                        observed.positions[partition as usize] = offset + 1;
                    }
                }
                _ => {
                    let position = observed.positions[0];
                    commit(&broker, position, &mut observed).await;
                }
            }
        }
        let cut = disk.is_off();
        let after = disk.crash(seed);
        drop(broker);

        let broker = start(config, after, clock, &mut controller)
            .await
            .map_err(|error| format!("restart after the power cut: {error}"))?;
        let topic = broker.topics.get(TOPIC).ok_or("the topic is gone")?;
        if let Some(offline) = topic.partitions().iter().find(|p| p.is_offline()) {
            return Err(format!("{} did not recover", offline.name()));
        }
        let mut found: BTreeMap<(i32, i64), Vec<u8>> = BTreeMap::new();
        for partition in 0..PARTITIONS {
            let mut offset = 0;
            loop {
                let (error, records) = fetch(&broker, partition, offset).await;
                if error != 0 {
                    return Err(format!(
                        "reading {TOPIC}-{partition} after restart: error {error}"
                    ));
                }
                let Some(last) = records.last().map(|(offset, _)| *offset) else {
                    break;
                };
                found.extend(records.into_iter().map(|(o, v)| ((partition, o), v)));
                offset = last + 1;
            }
        }
        for (what, expected) in [
            ("acknowledged", &observed.acked),
            ("read by a consumer", &observed.read),
        ] {
            for (key, value) in expected {
                if found.get(key) != Some(value) {
                    return Err(format!(
                        "a record {what} at {TOPIC}-{} offset {} was lost or changed",
                        key.0, key.1
                    ));
                }
            }
        }
        if let Some(acked) = observed.committed {
            let (error, stored) = fetch_committed(&broker).await;
            if error != 0 {
                return Err(format!("OffsetFetch after restart: error {error}"));
            }
            if stored < acked {
                return Err(format!(
                    "commit of {acked} acknowledged, {stored} after restart"
                ));
            }
        }
        Ok(Summary {
            acked: observed.acked.len(),
            read: observed.read.len(),
            cut_mid_run: cut,
        })
    })
}

fn seeds() -> u64 {
    std::env::var("RUNNEL_SIM_SEEDS")
        .ok()
        .and_then(|seeds| seeds.parse().ok())
        .unwrap_or(300)
}

#[test]
fn power_loss_keeps_every_acknowledged_and_every_read_record() {
    let (mut acked, mut read, mut cuts) = (0, 0, 0);
    for seed in 0..seeds() {
        match run(seed, true) {
            Ok(summary) => {
                acked += summary.acked;
                read += summary.read;
                cuts += usize::from(summary.cut_mid_run);
            }
            Err(violation) => panic!("seed {seed}: {violation} (RUNNEL_SIM_SEEDS replays it)"),
        }
    }
    eprintln!(
        "{} seeds: acked {acked}, read {read}, lost 0; the power went out mid-run in {cuts}",
        seeds()
    );
    assert!(
        acked > 0 && read > 0 && cuts > 0,
        "the workload must exercise something"
    );
}

#[test]
fn the_checker_catches_acks_without_fsync() {
    let caught = (0..seeds()).find_map(|seed| run(seed, false).err().map(|why| (seed, why)));
    let (seed, why) = caught.expect("no seed lost an acknowledged record without the fsync");
    eprintln!("without the fsync before the ack, seed {seed}: {why}");
}

#[test]
fn a_failed_fsync_takes_only_its_partition_offline() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let clock = Arc::new(ManualClock::new(START_MS));
        let disk = SimFileSystem::new(clock.clone());
        let mut controller = one_node_cluster(PARTITIONS);
        let broker = start(config(true), disk.clone(), clock, &mut controller)
            .await
            .expect("start");
        let mut observed = Observed::default();
        disk.inject(runnel_storage::sim::SimOp::SyncData, &format!("{TOPIC}-0"));
        produce(&broker, 0, &[b"lost".to_vec()], &mut observed).await;
        assert!(
            observed.acked.is_empty(),
            "an unsynced record was acknowledged"
        );
        disk.clear_faults();
        // Never retried: the partition stays offline although fsync would now "succeed".
        produce(&broker, 0, &[b"after".to_vec()], &mut observed).await;
        assert!(observed.acked.is_empty());
        let (error, _) = fetch(&broker, 0, 0).await;
        assert_eq!(
            error,
            kafka_protocol::error::ResponseError::KafkaStorageError.code()
        );
        produce(&broker, 1, &[b"fine".to_vec()], &mut observed).await;
        assert_eq!(observed.acked.len(), 1, "the other partition serves");
        let (error, records) = fetch(&broker, 1, 0).await;
        assert_eq!((error, records.len()), (0, 1));
        assert!(disk
            .contents(Path::new("data/events-0/00000000000000000000.log"))
            .is_ok());
    });
}

/// The rule behind "nobody read what the crash took", pinned without a crash: a fetch made
/// once a produce's records are appended but before their fsync finds nothing. The test holds
/// the partition's fsync back until the fetch has answered. (Without fsync before ack the
/// fetch sees the record, which shows the fetch did run after the append.)
#[test]
fn consumers_never_see_a_record_before_its_fsync() {
    for fsync_before_ack in [true, false] {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let seen = runtime.block_on(async {
            let clock = Arc::new(ManualClock::new(START_MS));
            let disk = SimFileSystem::new(clock.clone());
            let mut controller = one_node_cluster(1);
            let broker = start(config(fsync_before_ack), disk, clock, &mut controller)
                .await
                .expect("start");
            let partition = broker
                .topics
                .get(TOPIC)
                .and_then(|topic| topic.partition(0))
                .expect("partition");
            let fsync_held = partition.hold_fsyncs().await;
            let producing = tokio::spawn({
                let broker = Arc::clone(&broker);
                async move {
                    let mut observed = Observed::default();
                    produce(&broker, 0, &[b"young".to_vec()], &mut observed).await;
                    observed.acked.len()
                }
            });
            while partition.log_end_offset_for_test() == 0 {
                tokio::task::yield_now().await;
            }
            let (error, records) = fetch(&broker, 0, 0).await;
            drop(fsync_held);
            assert_eq!((error, producing.await.expect("produce task")), (0, 1));
            records.len()
        });
        let expected = if fsync_before_ack { 0 } else { 1 };
        assert_eq!(seen, expected, "fsync before ack: {fsync_before_ack}");
    }
}
