//! Pipelined requests on one connection, against the real binary: a client that writes many
//! requests before reading any answer gets every answer, in request order, and its records land
//! in each partition in the order its requests carried them, whatever fails in between.

mod support;

use bytes::{Buf, Bytes};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use runnel_record::RecordBatch;
use support::{batch, code, create_topic, name, values, BrokerProcess, Connect, Connection};

/// One partition's Produce (acks=-1, v9).
fn produce_request(topic: &str, partition: i32, records: Vec<u8>) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(Bytes::from(records))),
            ])])
}

const PRODUCE_VERSION: i16 = 9;

/// Reads one answer, checks it answers `correlation_id`, and decodes it.
fn read_answer<Resp: Decodable>(
    connection: &mut Connection,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
) -> Resp {
    let mut body = connection.read_frame().expect("answer");
    let header = ResponseHeader::decode(&mut body, api_key.response_header_version(version))
        .expect("response header");
    assert_eq!(
        header.correlation_id, correlation_id,
        "answers come in request order"
    );
    let response = Resp::decode(&mut body, version).expect("response body");
    assert!(!body.has_remaining(), "nothing after the response");
    response
}

fn produced(response: &ProduceResponse) -> &produce_response::PartitionProduceResponse {
    &response.responses[0].partition_responses[0]
}

#[test]
fn pipelined_produces_are_answered_and_appended_in_request_order() {
    // fsync before every acknowledgement: the appends of later requests queue behind one
    // fsync while earlier ones wait for theirs, which is where reordering could creep in.
    let broker = BrokerProcess::start(&["--flush-messages", "1"]);
    create_topic(&broker, "pipelined", 3, &[]);
    const REQUESTS: usize = 300;
    let mut connection = broker.connect();
    let mut frames = Vec::new();
    for request in 0..REQUESTS {
        let value = format!("record-{request}");
        let produce = produce_request(
            "pipelined",
            (request % 3) as i32,
            batch(&[value.as_bytes()]),
        );
        frames.extend(connection.frame(ApiKey::Produce, PRODUCE_VERSION, &produce));
    }
    // Every request written before any answer is read.
    connection.send_raw(&frames);
    let mut next_offset = [0i64; 3];
    for request in 0..REQUESTS {
        let response: ProduceResponse = read_answer(
            &mut connection,
            ApiKey::Produce,
            PRODUCE_VERSION,
            request as i32 + 1,
        );
        let answer = produced(&response);
        assert_eq!(answer.error_code, 0, "request {request}");
        assert_eq!(
            answer.base_offset,
            next_offset[request % 3],
            "request {request} appended in its turn"
        );
        next_offset[request % 3] += 1;
    }
    for partition in 0..3 {
        let expected: Vec<Vec<u8>> = (0..REQUESTS)
            .filter(|request| request % 3 == partition)
            .map(|request| format!("record-{request}").into_bytes())
            .collect();
        assert_eq!(
            values(&broker, "pipelined", partition as i32),
            expected,
            "partition {partition} holds its records in request order"
        );
    }
}

#[test]
fn a_failing_request_in_a_pipeline_neither_reorders_nor_drops_the_others() {
    let broker = BrokerProcess::start(&["--flush-messages", "1"]);
    create_topic(&broker, "mixed", 1, &[]);
    let mut connection = broker.connect();
    let mut corrupt = batch(&[b"corrupt"]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff; // the CRC no longer matches
    let new_topic = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(name("created-mid-pipeline"))
            .with_num_partitions(3)
            .with_replication_factor(1),
    ]);
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(name("mixed"))),
    ]));
    let frames = [
        connection.frame(
            ApiKey::Produce,
            PRODUCE_VERSION,
            &produce_request("mixed", 0, batch(&[b"first"])),
        ),
        connection.frame(
            ApiKey::Produce,
            PRODUCE_VERSION,
            &produce_request("mixed", 7, batch(&[b"no such partition"])),
        ),
        connection.frame(
            ApiKey::Produce,
            PRODUCE_VERSION,
            &produce_request("mixed", 0, corrupt),
        ),
        connection.frame(ApiKey::Metadata, 12, &metadata),
        connection.frame(
            ApiKey::Produce,
            PRODUCE_VERSION,
            &produce_request("mixed", 0, batch(&[b"second"])),
        ),
        // Runs alone: after every request above is answered, before any below starts.
        connection.frame(ApiKey::CreateTopics, 7, &new_topic),
        connection.frame(
            ApiKey::Produce,
            PRODUCE_VERSION,
            &produce_request("created-mid-pipeline", 2, batch(&[b"third"])),
        ),
    ];
    connection.send_raw(&frames.concat());

    let first: ProduceResponse = read_answer(&mut connection, ApiKey::Produce, PRODUCE_VERSION, 1);
    assert_eq!(produced(&first).error_code, 0);
    assert_eq!(produced(&first).base_offset, 0);
    let unknown: ProduceResponse =
        read_answer(&mut connection, ApiKey::Produce, PRODUCE_VERSION, 2);
    assert_eq!(
        produced(&unknown).error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
    let corrupt: ProduceResponse =
        read_answer(&mut connection, ApiKey::Produce, PRODUCE_VERSION, 3);
    assert_eq!(
        produced(&corrupt).error_code,
        code(ResponseError::CorruptMessage)
    );
    let metadata: MetadataResponse = read_answer(&mut connection, ApiKey::Metadata, 12, 4);
    assert_eq!(metadata.topics[0].error_code, 0);
    let second: ProduceResponse = read_answer(&mut connection, ApiKey::Produce, PRODUCE_VERSION, 5);
    assert_eq!(produced(&second).error_code, 0);
    assert_eq!(
        produced(&second).base_offset,
        1,
        "the failures wrote nothing"
    );
    let created: CreateTopicsResponse = read_answer(&mut connection, ApiKey::CreateTopics, 7, 6);
    assert_eq!(created.topics[0].error_code, 0);
    // Had it run before CreateTopics, auto-creation would have made a 1-partition topic.
    let third: ProduceResponse = read_answer(&mut connection, ApiKey::Produce, PRODUCE_VERSION, 7);
    assert_eq!(produced(&third).error_code, 0);

    assert_eq!(
        values(&broker, "mixed", 0),
        vec![b"first".to_vec(), b"second".to_vec()]
    );
    assert_eq!(
        values(&broker, "created-mid-pipeline", 2),
        vec![b"third".to_vec()]
    );
    // The stored batches are the ones acknowledged, whole.
    let stored = support::fetch(&broker, "mixed", &[0], 1 << 20);
    let records = stored.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    let headers = RecordBatch::validate_all(&records).expect("stored batches are valid");
    assert_eq!(headers.len(), 2);
}

#[test]
fn a_client_that_closes_with_requests_in_flight_leaves_the_broker_serving() {
    let mut broker = BrokerProcess::start(&["--flush-messages", "1"]);
    create_topic(&broker, "abandoned", 1, &[]);
    {
        let mut connection = broker.connect();
        let mut frames = Vec::new();
        for request in 0..100 {
            let value = format!("abandoned-{request}");
            let produce = produce_request("abandoned", 0, batch(&[value.as_bytes()]));
            frames.extend(connection.frame(ApiKey::Produce, PRODUCE_VERSION, &produce));
        }
        connection.send_raw(&frames);
        // Dropped without reading a single answer.
    }
    broker.assert_alive();
    let later = support::produce(&broker, PRODUCE_VERSION, "abandoned", batch(&[b"later"]));
    assert_eq!(later.error_code, 0);
    // The abandoned requests run to the end; "later" lands somewhere among them. Whatever of
    // them was appended is whole and in request order.
    let stored = values(&broker, "abandoned", 0);
    let abandoned: Vec<&Vec<u8>> = stored.iter().filter(|value| *value != b"later").collect();
    assert_eq!(abandoned.len() + 1, stored.len(), "later stored once");
    for (index, value) in abandoned.iter().enumerate() {
        assert_eq!(value.as_slice(), format!("abandoned-{index}").as_bytes());
    }
}
