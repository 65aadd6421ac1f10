//! Nothing a client sends can stop the broker or lose what it acknowledged: hand-made requests
//! over raw sockets to the real binary, each ending with the broker alive, the other
//! partitions readable and, where it matters, a clean restart that finds the data intact.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use runnel_record::{
    encode_varint, BatchBuilder, Compression, RecordBatch, BATCH_HEADER_LEN, LOG_OVERHEAD,
};
use support::{batch, code, create_topic, fetch, name, produce_to, values, BrokerProcess, Connect};

const NOW_MS: i64 = 1_700_000_000_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(NOW_MS)
}

/// Overwrites header bytes and fixes the CRC, as a client that lies would.
fn forge(batch: &mut [u8], at: usize, bytes: &[u8]) {
    batch[at..at + bytes.len()].copy_from_slice(bytes);
    let max_timestamp = i64::from_be_bytes(batch[35..43].try_into().expect("test setup"));
    RecordBatch::set_max_timestamp(batch, max_timestamp);
}

/// The 61-byte batch of the original report: a valid CRC, no records, a count of 2^31 - 1.
fn empty_batch_claiming_billions() -> Vec<u8> {
    let mut batch = batch(&[b"x"]);
    batch.truncate(BATCH_HEADER_LEN);
    forge(
        &mut batch,
        8,
        &((BATCH_HEADER_LEN - LOG_OVERHEAD) as i32).to_be_bytes(),
    );
    forge(&mut batch, 23, &(i32::MAX - 1).to_be_bytes());
    forge(&mut batch, 57, &i32::MAX.to_be_bytes());
    batch
}

fn list_offset(broker: &BrokerProcess, topic: &str, partition: i32, timestamp: i64) -> (i16, i64) {
    let request = ListOffsetsRequest::default().with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)]),
    ]);
    let response: ListOffsetsResponse = broker.connect().request(ApiKey::ListOffsets, 7, &request);
    let answer = &response.topics[0].partitions[0];
    (answer.error_code, answer.offset)
}

#[test]
fn lying_record_counts_are_refused_and_nothing_is_written() {
    let mut broker = BrokerProcess::start(&["--flush-ms", "10"]);
    create_topic(&broker, "liar", 2, &[]);
    for batches in [1, 3, 4] {
        let lie: Vec<u8> = (0..batches)
            .flat_map(|_| empty_batch_claiming_billions())
            .collect();
        let answers = produce_to(
            &broker,
            3,
            "liar",
            vec![
                (0, lie),
                (1, batch(&[format!("good {batches}").as_bytes()])),
            ],
        );
        assert_eq!(
            answers[0].error_code,
            code(ResponseError::InvalidRecord),
            "{batches} batches"
        );
        assert_eq!(
            answers[1].error_code, 0,
            "the other partition is unaffected"
        );
    }
    // A count that is merely off by one, either way, and a lying last offset delta.
    let mut too_many = batch(&[b"a", b"b"]);
    forge(&mut too_many, 57, &3i32.to_be_bytes());
    forge(&mut too_many, 23, &2i32.to_be_bytes());
    let mut too_few = batch(&[b"a", b"b"]);
    forge(&mut too_few, 57, &1i32.to_be_bytes());
    forge(&mut too_few, 23, &0i32.to_be_bytes());
    let mut delta = batch(&[b"a", b"b"]);
    forge(&mut delta, 23, &7i32.to_be_bytes());
    for lie in [too_many, too_few, delta] {
        let answers = produce_to(&broker, 9, "liar", vec![(0, lie)]);
        assert_eq!(answers[0].error_code, code(ResponseError::InvalidRecord));
        assert!(answers[0].error_message.is_some());
    }
    broker.assert_alive();
    assert!(
        values(&broker, "liar", 0).is_empty(),
        "nothing of a refused records set is kept"
    );
    broker.restart();
    assert!(values(&broker, "liar", 0).is_empty());
    assert_eq!(
        values(&broker, "liar", 1),
        [b"good 1", b"good 3", b"good 4"]
    );
}

#[test]
fn a_base_offset_of_i64_max_is_harmless() {
    let mut broker = BrokerProcess::start(&[]);
    create_topic(&broker, "far", 1, &[]);
    let mut far = batch(&[b"one", b"two"]);
    RecordBatch::set_base_offset(&mut far, i64::MAX);
    let answers = produce_to(&broker, 9, "far", vec![(0, far.clone())]);
    assert_eq!((answers[0].error_code, answers[0].base_offset), (0, 0));
    let answers = produce_to(&broker, 9, "far", vec![(0, far)]);
    assert_eq!((answers[0].error_code, answers[0].base_offset), (0, 2));
    broker.restart();
    assert_eq!(values(&broker, "far", 0), [b"one", b"two", b"one", b"two"]);
}

#[test]
fn timestamps_too_far_ahead_or_behind_are_invalid_timestamp() {
    let broker = BrokerProcess::start(&[]);
    create_topic(
        &broker,
        "clock",
        1,
        &[("message.timestamp.before.max.ms", "86400000")],
    );
    let future = BatchBuilder::new(now_ms() + 2 * 3_600_000)
        .record(None, Some(b"tomorrow"), &[])
        .build();
    let past = BatchBuilder::new(now_ms() - 2 * 86_400_000)
        .record(None, Some(b"last week"), &[])
        .build();
    for lie in [future, past] {
        let answers = produce_to(&broker, 9, "clock", vec![(0, lie)]);
        assert_eq!(answers[0].error_code, code(ResponseError::InvalidTimestamp));
    }
    // Stamped by the broker, a producer's clock does not matter.
    create_topic(
        &broker,
        "stamped",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    );
    let future = BatchBuilder::new(now_ms() + 10 * 3_600_000)
        .record(None, Some(b"v"), &[])
        .build();
    assert_eq!(
        produce_to(&broker, 9, "stamped", vec![(0, future)])[0].error_code,
        0
    );
}

/// A compressed records section holding one record whose value is `value_len` zero bytes,
/// for `codec`'s bomb.
fn record_prefix(value_len: i32) -> (Vec<u8>, Vec<u8>) {
    let mut body = vec![0u8]; // attributes
    body.push(0); // timestamp delta 0 (varlong)
    body.push(0); // offset delta 0
    encode_varint(-1, &mut body); // no key
    encode_varint(value_len, &mut body);
    let length = body.len() as i32 + value_len + 1; // + the header count after the value
    let mut prefix = Vec::new();
    encode_varint(length, &mut prefix);
    prefix.extend(body);
    (prefix, vec![0]) // no headers
}

/// zstd: one raw block, then RLE blocks of 128 KiB of zeros (4 bytes each), then the tail.
fn zstd_bomb(value_len: i32) -> Vec<u8> {
    const RLE_BLOCK: usize = 128 * 1024;
    let (prefix, tail) = record_prefix(value_len);
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38];
    let block_header = |last: bool, kind: u32, size: usize| {
        let value = u32::from(last) | (kind << 1) | ((size as u32) << 3);
        value.to_le_bytes()[..3].to_vec()
    };
    frame.extend(block_header(false, 0, prefix.len()));
    frame.extend(&prefix);
    for _ in 0..value_len as usize / RLE_BLOCK {
        frame.extend(block_header(false, 1, RLE_BLOCK));
        frame.push(0);
    }
    frame.extend(block_header(true, 0, tail.len()));
    frame.extend(&tail);
    frame
}

fn gzip_bomb(value_len: i32) -> Vec<u8> {
    let (prefix, tail) = record_prefix(value_len);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&prefix).expect("test setup");
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..value_len as usize / zeros.len() {
        encoder.write_all(&zeros).expect("test setup");
    }
    encoder.write_all(&tail).expect("test setup");
    encoder.finish().expect("test setup")
}

/// A batch of one record whose records section is `section`, compressed with `codec`.
fn batch_with_section(codec: Compression, section: &[u8]) -> Vec<u8> {
    let mut batch = BatchBuilder::new(now_ms())
        .compression(codec)
        .record(None, Some(b"x"), &[])
        .build();
    batch.truncate(BATCH_HEADER_LEN);
    batch.extend_from_slice(section);
    let length = (batch.len() - LOG_OVERHEAD) as i32;
    forge(&mut batch, 8, &length.to_be_bytes());
    batch
}

#[test]
fn decompression_bombs_are_refused_while_others_are_served() {
    let broker = BrokerProcess::start(&[]);
    create_topic(&broker, "bombs", 2, &[("max.message.bytes", "8388608")]);
    let gib = 1 << 30;
    let bombs = [
        (
            "zstd",
            batch_with_section(Compression::Zstd, &zstd_bomb(gib)),
        ),
        (
            "gzip",
            batch_with_section(Compression::Gzip, &gzip_bomb(gib)),
        ),
    ];
    for (codec, bomb) in bombs {
        assert!(bomb.len() < 2 << 20, "{codec} bomb of {} bytes", bomb.len());
        let port = broker.port;
        let sender = std::thread::spawn(move || {
            let mut connection = support::connect_to(port);
            let request = ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(name("bombs"))
                    .with_partition_data(
                        (0..4)
                            .map(|_| {
                                produce_request::PartitionProduceData::default()
                                    .with_records(Some(Bytes::from(bomb.clone())))
                            })
                            .collect(),
                    )]);
            let response: ProduceResponse = connection.request(ApiKey::Produce, 9, &request);
            response.responses[0].partition_responses.clone()
        });
        // While the bombs are being refused, another connection is served promptly.
        std::thread::sleep(Duration::from_millis(20));
        let started = Instant::now();
        let _: MetadataResponse =
            broker
                .connect()
                .request(ApiKey::Metadata, 12, &MetadataRequest::default());
        let metadata_latency = started.elapsed();
        let (error, offset) = list_offset(&broker, "bombs", 0, now_ms() - 60_000);
        assert_eq!((error, offset), (0, -1), "{codec}: nothing was stored");
        let answers = sender.join().unwrap();
        for answer in answers {
            assert_eq!(
                answer.error_code,
                code(ResponseError::InvalidRecord),
                "{codec}"
            );
            let message = answer
                .error_message
                .map(|m| m.to_string())
                .unwrap_or_default();
            assert!(message.contains("decompress"), "{codec}: {message}");
        }
        assert!(
            metadata_latency < Duration::from_secs(1),
            "{codec}: Metadata took {metadata_latency:?} while bombs were refused"
        );
    }
    assert_eq!(
        produce_to(&broker, 9, "bombs", vec![(1, batch(&[b"fine"]))])[0].error_code,
        0
    );
    assert_eq!(values(&broker, "bombs", 1), [b"fine"]);
}

#[test]
fn a_fetch_response_is_capped_however_the_request_asks() {
    let broker = BrokerProcess::start(&["--fetch-max-bytes", "65536"]);
    create_topic(&broker, "wide", 1, &[]);
    let value = vec![b'v'; 10_000];
    for _ in 0..30 {
        assert_eq!(
            produce_to(&broker, 9, "wide", vec![(0, batch(&[&value]))])[0].error_code,
            0
        );
    }
    let batch_len = batch(&[&value]).len();
    let record_bytes = |response: &FetchResponse| -> usize {
        response.responses[0]
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, Bytes::len))
            .sum()
    };
    // max_bytes 0 and -1: one batch, for progress, and no more.
    for max_bytes in [0, -1] {
        let response = fetch(&broker, "wide", &[0; 1000], max_bytes);
        assert_eq!(response.responses[0].partitions.len(), 1000);
        assert_eq!(record_bytes(&response), batch_len, "max_bytes {max_bytes}");
    }
    // Asking for everything gets fetch.max.bytes.
    let response = fetch(&broker, "wide", &[0; 1000], i32::MAX);
    let total = record_bytes(&response);
    assert!(total <= 65_536 + batch_len, "{total} bytes");
    assert!(total >= 65_536 - batch_len, "{total} bytes");
}

fn connect_raw(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("test setup");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("test setup");
    stream
}

/// Seconds until the broker closes `stream`, or `None` if it is still open after `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).expect("test setup");
    let mut buffer = [0u8; 64];
    match stream.read(&mut buffer) {
        Ok(0) => Some(started.elapsed()),
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
            Some(started.elapsed())
        }
        _ => None,
    }
}

#[test]
fn slowloris_connections_are_bounded_per_address_and_cut_off() {
    let mut broker = BrokerProcess::start(&[
        "--connections-max-per-ip",
        "4",
        "--request-read-timeout-ms",
        "1500",
    ]);
    // The harness's own readiness probe must have been let go of first.
    std::thread::sleep(Duration::from_millis(500));
    // Four connections that start a request (3 bytes of its size) and stall.
    let mut stalled: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = connect_raw(broker.port);
            stream.write_all(&[0, 0, 0]).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // A fifth from the same address is closed at once.
    let mut fifth = connect_raw(broker.port);
    let closed = closed_within(&mut fifth, Duration::from_secs(2));
    assert!(closed.is_some(), "the fifth connection was not refused");
    // The stalled ones are cut off after the request timeout, not before.
    for stream in &mut stalled {
        let closed =
            closed_within(stream, Duration::from_secs(5)).expect("stalled request cut off");
        assert!(closed < Duration::from_secs(5));
    }
    assert!(broker.log().contains("did not arrive in time"));
    broker.assert_alive();
}

#[test]
fn idle_connections_are_closed_on_time() {
    let mut broker = BrokerProcess::start(&["--connections-max-idle-ms", "1000"]);
    let mut silent = connect_raw(broker.port);
    let closed =
        closed_within(&mut silent, Duration::from_secs(5)).expect("idle connection closed");
    assert!(
        closed >= Duration::from_millis(800),
        "closed after {closed:?}"
    );
    // One that asked something, then went quiet, too.
    let mut connection = broker.connect();
    let _: MetadataResponse = connection.request(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(closed_within(&mut connection.stream, Duration::from_secs(5)).is_some());
    broker.assert_alive();
}

#[test]
fn internal_topics_refuse_produce_and_delete_records() {
    let broker = BrokerProcess::start(&[]);
    let answers = produce_to(&broker, 9, "__consumer_offsets", vec![(0, batch(&[b"x"]))]);
    assert_eq!(
        answers[0].error_code,
        code(ResponseError::InvalidTopicException)
    );
    let request = DeleteRecordsRequest::default().with_topics(vec![
        delete_records_request::DeleteRecordsTopic::default()
            .with_name(name("__consumer_offsets"))
            .with_partitions(vec![
                delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(-1),
            ]),
    ]);
    let response: DeleteRecordsResponse =
        broker.connect().request(ApiKey::DeleteRecords, 2, &request);
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        code(ResponseError::InvalidTopicException)
    );
}

/// A transaction marker from a coordinator older than one that already wrote for the
/// producer is refused (TRANSACTION_COORDINATOR_FENCED): a coordinator that lost its
/// `__transaction_state` partition cannot end a transaction its successor handles.
#[test]
fn markers_of_a_fenced_transaction_coordinator_are_refused() {
    let broker = BrokerProcess::start(&[]);
    create_topic(&broker, "fenced", 1, &[]);
    let mut connection = broker.connect();
    let mut write_marker = |coordinator_epoch: i32| -> i16 {
        let request = WriteTxnMarkersRequest::default().with_markers(vec![
            write_txn_markers_request::WritableTxnMarker::default()
                .with_producer_id(ProducerId(77))
                .with_producer_epoch(0)
                .with_transaction_result(false)
                .with_coordinator_epoch(coordinator_epoch)
                .with_topics(vec![
                    write_txn_markers_request::WritableTxnMarkerTopic::default()
                        .with_name(name("fenced"))
                        .with_partition_indexes(vec![0]),
                ]),
        ]);
        let response: WriteTxnMarkersResponse =
            connection.request(ApiKey::WriteTxnMarkers, 1, &request);
        response.markers[0].topics[0].partitions[0].error_code
    };
    assert_eq!(write_marker(5), 0);
    assert_eq!(
        write_marker(3),
        code(ResponseError::TransactionCoordinatorFenced)
    );
    assert_eq!(write_marker(5), 0);
    assert_eq!(write_marker(6), 0);
}

#[test]
fn advertising_the_any_address_is_refused_at_start() {
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["server", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--advertised-listener"), "{stderr}");
}

#[test]
fn shutdown_answers_parked_joins_and_completes() {
    let mut broker = BrokerProcess::start(&["--group-initial-rebalance-delay-ms", "600000"]);
    support::wait_for_group_coordinator(&broker, "parked");
    let mut connection = broker.connect();
    // JoinGroup v3 parks until the (ten-minute) initial rebalance delay ends.
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("parked")))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(60_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(StrBytes::from_static_str("range"))
        .with_metadata(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0]))]);
    let frame = connection.frame(ApiKey::JoinGroup, 3, &request);
    connection.send_raw(&frame);
    std::thread::sleep(Duration::from_millis(300));
    // A long-polling fetch waits too.
    let mut poller = broker.connect();
    create_topic(&broker, "quiet", 1, &[]);
    let fetch_frame = poller.frame(
        ApiKey::Fetch,
        12,
        &FetchRequest::default()
            .with_max_wait_ms(600_000)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name("quiet"))
                .with_partitions(vec![
                    fetch_request::FetchPartition::default().with_partition_max_bytes(1 << 20)
                ])]),
    );
    poller.send_raw(&fetch_frame);
    std::thread::sleep(Duration::from_millis(300));
    broker.stop(Duration::from_secs(10));
    let mut body = connection
        .read_frame()
        .expect("the parked join is answered");
    support::Connection::read_correlation_id(&mut body);
    let response =
        <JoinGroupResponse as kafka_protocol::protocol::Decodable>::decode(&mut body, 3).unwrap();
    assert_eq!(response.error_code, code(ResponseError::NotCoordinator));
    assert!(poller.read_frame().is_ok(), "the long poll is answered");
}

#[test]
fn a_corrupt_partition_is_offline_and_the_others_serve() {
    let mut broker = BrokerProcess::start(&[]);
    create_topic(&broker, "disk", 2, &[]);
    for partition in [0, 1] {
        let records = batch(&[format!("kept {partition}").as_bytes()]);
        assert_eq!(
            produce_to(&broker, 9, "disk", vec![(partition, records)])[0].error_code,
            0
        );
    }
    broker.stop(Duration::from_secs(20));
    // Flip the magic byte of partition 0's first batch: fsynced data, below the recovery point.
    let segment = broker
        .data_dir()
        .join("disk-0")
        .join("00000000000000000000.log");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[16] ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();
    broker.start_again();
    let metadata: MetadataResponse = broker.connect().request(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(name("disk"))),
        ])),
    );
    let partitions = &metadata.topics[0].partitions;
    assert_eq!(
        partitions[0].error_code,
        code(ResponseError::LeaderNotAvailable)
    );
    assert_eq!(partitions[0].offline_replicas, [BrokerId(0)]);
    assert_eq!(partitions[1].error_code, 0);
    let response = fetch(&broker, "disk", &[0], 1 << 20);
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        code(ResponseError::KafkaStorageError)
    );
    assert_eq!(values(&broker, "disk", 1), [b"kept 1"]);
    assert_eq!(
        produce_to(&broker, 9, "disk", vec![(1, batch(&[b"more"]))])[0].error_code,
        0
    );
    let log = broker.log();
    assert!(log.contains("OFFLINE") && log.contains("disk-0"), "{log}");
}

#[test]
fn topic_compression_type_recompresses() {
    let broker = BrokerProcess::start(&[]);
    create_topic(&broker, "squeezed", 1, &[("compression.type", "zstd")]);
    let gzip = BatchBuilder::new(now_ms())
        .compression(Compression::Gzip)
        .record(Some(b"k"), Some(b"value value value"), &[])
        .build();
    assert_eq!(
        produce_to(&broker, 9, "squeezed", vec![(0, gzip)])[0].error_code,
        0
    );
    let response = fetch(&broker, "squeezed", &[0], 1 << 20);
    let stored = response.responses[0].partitions[0].records.clone().unwrap();
    let header = RecordBatch::validate(&stored).unwrap();
    assert_eq!(header.compression(), Compression::Zstd);
    assert_eq!(values(&broker, "squeezed", 0), [b"value value value"]);
}

/// Regression: the group timer loop ticked on its own notification and kept a core busy.
#[test]
fn an_idle_broker_uses_almost_no_cpu() {
    let broker = BrokerProcess::start(&[]);
    std::thread::sleep(Duration::from_secs(1));
    let before = broker.cpu_seconds();
    std::thread::sleep(Duration::from_secs(3));
    let used = broker.cpu_seconds() - before;
    assert!(
        used < 0.3,
        "an idle broker used {used:.2} CPU seconds in 3 s"
    );
}
