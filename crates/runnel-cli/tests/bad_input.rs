//! Every kind of bad input gets the answer the Kafka protocol defines, or a closed connection
//! for what cannot be parsed, and the broker keeps serving. Raw bytes over a real socket to the
//! real binary.

mod support;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use support::{batch, code, create_topic, log_end_offset, name, produce, BrokerProcess, Connect};

#[test]
fn unknown_api_key_closes_the_connection() {
    let mut broker = BrokerProcess::start(&[]);
    let mut connection = broker.connect();
    connection.send_raw(&[0, 0, 0, 10, 0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0xff, 0xff]);
    assert!(connection.is_closed_by_broker());
    broker.assert_alive();
}

#[test]
fn unsupported_version_of_an_api_closes_the_connection() {
    let mut broker = BrokerProcess::start(&[]);
    let mut connection = broker.connect();
    // Metadata v99.
    connection.send_raw(&[0, 0, 0, 10, 0, 3, 0, 99, 0, 0, 0, 1, 0xff, 0xff]);
    assert!(connection.is_closed_by_broker());
    broker.assert_alive();
}

#[test]
fn api_versions_of_an_unknown_version_gets_the_v0_fallback() {
    let broker = BrokerProcess::start(&[]);
    let mut connection = broker.connect();
    connection.send_raw(&[0, 0, 0, 10, 0, 18, 0, 99, 0, 0, 0, 42, 0xff, 0xff]);
    let mut body = connection.read_frame().unwrap();
    assert_eq!(support::Connection::read_correlation_id(&mut body), 42);
    let response =
        <ApiVersionsResponse as kafka_protocol::protocol::Decodable>::decode(&mut body, 0).unwrap();
    assert_eq!(response.error_code, code(ResponseError::UnsupportedVersion));
    let api_versions = response
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .unwrap();
    assert_eq!((api_versions.min_version, api_versions.max_version), (0, 4));
}

#[test]
fn frame_over_the_size_limit_closes_before_allocating() {
    let mut broker = BrokerProcess::start(&["--request-max-bytes", "1048576"]);
    let mut connection = broker.connect();
    // Claims 2 GiB; only the size is sent.
    connection.send_raw(&0x7fff_fff0i32.to_be_bytes());
    assert!(connection.is_closed_by_broker());
    let mut negative = broker.connect();
    negative.send_raw(&(-4i32).to_be_bytes());
    assert!(negative.is_closed_by_broker());
    assert!(
        broker.log().contains("exceeds the limit"),
        "the broker logs why"
    );
    broker.assert_alive();
}

#[test]
fn unparsable_body_closes_the_connection() {
    let mut broker = BrokerProcess::start(&[]);
    let mut connection = broker.connect();
    // CreateTopics v2 whose body stops inside the topic array.
    connection.send_raw(&[
        0, 0, 0, 16, 0, 19, 0, 2, 0, 0, 0, 1, 0xff, 0xff, 0, 0, 0, 5, 0, 3,
    ]);
    assert!(connection.is_closed_by_broker());
    broker.assert_alive();
}

#[test]
fn array_count_claiming_billions_is_refused_without_allocating() {
    let mut broker = BrokerProcess::start(&[]);
    for _ in 0..3 {
        let mut connection = broker.connect();
        // Metadata v1 claiming 2^31 - 16 topics in a 14-byte body.
        let mut frame = vec![0, 0, 0, 14, 0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff];
        frame.extend_from_slice(&0x7fff_fff0i32.to_be_bytes());
        connection.send_raw(&frame);
        assert!(connection.is_closed_by_broker());
    }
    broker.assert_alive();
}

#[test]
fn crc_mismatch_is_corrupt_message_and_nothing_is_written() {
    let broker = BrokerProcess::start(&[]);
    create_topic(&broker, "crc", 1, &[]);
    let good = batch(&[b"a"]);
    let mut bad = batch(&[b"b"]);
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    // A good batch followed by a bad one in the same partition data: all or nothing.
    let mut records = good.clone();
    records.extend_from_slice(&bad);
    let answer = produce(&broker, 9, "crc", records);
    assert_eq!(answer.error_code, code(ResponseError::CorruptMessage));
    assert!(answer.error_message.unwrap().contains("CRC"));
    assert_eq!(
        log_end_offset(&broker, "crc"),
        0,
        "a failed write never becomes visible"
    );
    assert_eq!(produce(&broker, 9, "crc", good).error_code, 0);
    assert_eq!(log_end_offset(&broker, "crc"), 1);
}

#[test]
fn a_request_to_many_partitions_answers_each_and_writes_only_the_good_ones() {
    let broker = BrokerProcess::start(&[]);
    create_topic(&broker, "wide", 200, &[]);
    // 1 KiB per partition: the broker appends these in several jobs of about 64 KiB.
    let value = vec![b'v'; 1024];
    let mut corrupt = batch(&[&value]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55;
    let bad = [7, 120, 199];
    let mut partitions: Vec<(i32, Vec<u8>)> = (0..200)
        .map(|index| {
            let records = if bad.contains(&index) {
                corrupt.clone()
            } else {
                batch(&[&value])
            };
            (index, records)
        })
        .collect();
    // A partition the topic lacks, in the middle.
    partitions.insert(100, (500, batch(&[&value])));
    for round in 0..2i64 {
        let answers = support::produce_to(&broker, 9, "wide", partitions.clone());
        assert_eq!(answers.len(), partitions.len());
        for ((index, _), answer) in partitions.iter().zip(&answers) {
            assert_eq!(answer.index, *index, "answers keep the request's order");
            let (expected_code, expected_offset) = if *index == 500 {
                (code(ResponseError::UnknownTopicOrPartition), -1)
            } else if bad.contains(index) {
                (code(ResponseError::CorruptMessage), -1)
            } else {
                (0, round)
            };
            assert_eq!(
                (answer.error_code, answer.base_offset),
                (expected_code, expected_offset),
                "partition {index}, round {round}"
            );
        }
    }
    for index in bad {
        assert!(
            support::values(&broker, "wide", index).is_empty(),
            "nothing of a refused partition is written"
        );
    }
    assert_eq!(support::values(&broker, "wide", 0).len(), 2);
}

#[test]
fn truncated_batch_is_corrupt_message() {
    let broker = BrokerProcess::start(&[]);
    create_topic(&broker, "torn", 1, &[]);
    let mut records = batch(&[b"abc"]);
    records.truncate(records.len() - 2);
    assert_eq!(
        produce(&broker, 9, "torn", records).error_code,
        code(ResponseError::CorruptMessage)
    );
    assert_eq!(log_end_offset(&broker, "torn"), 0);
}

#[test]
fn old_magic_is_refused_with_invalid_record() {
    let broker = BrokerProcess::start(&[]);
    create_topic(&broker, "magic", 1, &[]);
    let mut records = batch(&[b"abc"]);
    records[16] = 1;
    assert_eq!(
        produce(&broker, 9, "magic", records).error_code,
        code(ResponseError::InvalidRecord)
    );
}

#[test]
fn oversized_batch_is_message_too_large() {
    let broker = BrokerProcess::start(&[]);
    create_topic(&broker, "small", 1, &[("max.message.bytes", "1000")]);
    let big = vec![7u8; 2000];
    assert_eq!(
        produce(&broker, 9, "small", batch(&[&big])).error_code,
        code(ResponseError::MessageTooLarge)
    );
    assert_eq!(log_end_offset(&broker, "small"), 0);
}

#[test]
fn produce_below_version_3_is_unsupported_version() {
    let broker = BrokerProcess::start(&[]);
    create_topic(&broker, "legacy", 1, &[]);
    let mut connection = broker.connect();
    // Produce v2: acks 1, timeout, one topic "legacy", partition 0, empty message set.
    let mut body = vec![
        0, 0, 0, 2, 0, 0, 0, 9, 0xff, 0xff, 0, 1, 0, 0, 0x13, 0x88, 0, 0, 0, 1, 0, 6,
    ];
    body.extend_from_slice(b"legacy");
    body.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    connection.send_raw(&frame);
    let mut response = connection.read_frame().unwrap();
    assert_eq!(support::Connection::read_correlation_id(&mut response), 9);
    // topics(4) name(2+6) partitions(4) partition(4) error(2)
    assert_eq!(
        &response[20..22],
        &code(ResponseError::UnsupportedVersion).to_be_bytes()
    );
}

#[test]
fn unknown_topic_or_partition() {
    let broker = BrokerProcess::start(&["--auto-create-topics", "false"]);
    let answer = produce(&broker, 9, "nope", batch(&[b"x"]));
    assert_eq!(
        answer.error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(name("nope"))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(3)
                .with_partition_max_bytes(1000)])]);
    let response: FetchResponse = broker.connect().request(ApiKey::Fetch, 12, &request);
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
    let metadata: MetadataResponse = broker.connect().request(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(name("nope"))),
        ])),
    );
    assert_eq!(
        metadata.topics[0].error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
}

#[test]
fn fetch_beyond_the_log_is_offset_out_of_range() {
    let broker = BrokerProcess::start(&[]);
    create_topic(&broker, "range", 1, &[]);
    produce(&broker, 9, "range", batch(&[b"1", b"2"]));
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(name("range"))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_fetch_offset(50)
                .with_partition_max_bytes(1000)])]);
    let response: FetchResponse = broker.connect().request(ApiKey::Fetch, 12, &request);
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        code(ResponseError::OffsetOutOfRange)
    );
}

#[test]
fn invalid_topic_names_partitions_and_configs_are_explained() {
    let broker = BrokerProcess::start(&[]);
    type Case<'a> = (&'a str, i32, &'a [(&'a str, &'a str)], ResponseError);
    let cases: [Case; 5] = [
        ("bad/name", 1, &[], ResponseError::InvalidTopicException),
        ("..", 1, &[], ResponseError::InvalidTopicException),
        ("zero-partitions", 0, &[], ResponseError::InvalidPartitions),
        (
            "bad-config",
            1,
            &[("retention.ms", "soon")],
            ResponseError::InvalidConfig,
        ),
        (
            "unknown-config",
            1,
            &[("colour", "blue")],
            ResponseError::InvalidConfig,
        ),
    ];
    for (topic, partitions, configs, expected) in cases {
        let response = create_topic(&broker, topic, partitions, configs);
        let result = &response.topics[0];
        assert_eq!(result.error_code, code(expected), "{topic}");
        assert!(
            result.error_message.as_ref().is_some_and(|m| !m.is_empty()),
            "{topic} has a message"
        );
    }
    let again = create_topic(&broker, "twice", 1, &[]);
    assert_eq!(again.topics[0].error_code, 0);
    let again = create_topic(&broker, "twice", 1, &[]);
    assert_eq!(
        again.topics[0].error_code,
        code(ResponseError::TopicAlreadyExists)
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let broker = BrokerProcess::start(&[]);
    let mut connection = broker.connect();
    let mut frames = Vec::new();
    for _ in 0..20 {
        frames.extend(connection.frame(ApiKey::Metadata, 12, &MetadataRequest::default()));
        frames.extend(
            connection.frame(
                ApiKey::ApiVersions,
                3,
                &ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str("t"))
                    .with_client_software_version(StrBytes::from_static_str("1")),
            ),
        );
    }
    connection.send_raw(&frames);
    for expected in 1..=40 {
        let mut body = connection.read_frame().unwrap();
        assert_eq!(
            support::Connection::read_correlation_id(&mut body),
            expected
        );
    }
}
