//! Talking to the real `runnel` binary, started with the test kit (`runnel-testkit`), over a
//! plain socket: raw Kafka frames and the requests built from them.

#![allow(dead_code, unreachable_pub, unused_imports)] // shared by test files; each uses uses a different part of the harness

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use runnel_record::BatchBuilder;

pub use runnel_testkit::{free_port, BrokerProcess, ControllerProcess};

/// Raw-frame connections to a broker the test kit started.
pub trait Connect {
    fn try_connect(&self) -> std::io::Result<Connection>;

    fn connect(&self) -> Connection {
        self.try_connect().expect("connect to broker")
    }

    /// Checks the process is still running and serving.
    fn assert_alive(&mut self);
}

impl Connect for BrokerProcess {
    fn try_connect(&self) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Connection {
            stream,
            correlation_id: 0,
        })
    }

    fn assert_alive(&mut self) {
        assert!(self.is_running(), "broker exited; log:\n{}", self.log());
        let mut connection = self.connect();
        connection.request::<_, kafka_protocol::messages::ApiVersionsResponse>(
            ApiKey::ApiVersions,
            0,
            &kafka_protocol::messages::ApiVersionsRequest::default(),
        );
    }
}

/// A connection to the broker listening on `port`, for threads that do not hold the process.
pub fn connect_to(port: u16) -> Connection {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to broker");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    Connection {
        stream,
        correlation_id: 0,
    }
}

/// One client connection speaking raw Kafka frames.
pub struct Connection {
    pub stream: TcpStream,
    correlation_id: i32,
}

impl Connection {
    /// Sends raw bytes as they are (no size prefix added).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Whether the broker closed the connection (read returns 0 or an error) within 5 s.
    pub fn is_closed_by_broker(&mut self) -> bool {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(error) => {
                    return !matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    )
                }
            }
        }
    }

    pub fn frame<Req: Encodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Vec<u8> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("runnel-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, api_key.request_header_version(version))
            .expect("header");
        request.encode(&mut body, version).expect("body");
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        frame
    }

    pub fn try_request<Req: Encodable, Resp: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: &Req,
    ) -> std::io::Result<Resp> {
        let frame = self.frame(api_key, version, request);
        self.stream.write_all(&frame)?;
        let mut body = self.read_frame()?;
        let header = ResponseHeader::decode(&mut body, api_key.response_header_version(version))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        assert_eq!(
            header.correlation_id, self.correlation_id,
            "responses answer in order"
        );
        Resp::decode(&mut body, version).map_err(|e| std::io::Error::other(e.to_string()))
    }

    pub fn request<Req: Encodable, Resp: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Resp {
        self.try_request(api_key, version, request)
            .expect("request answered")
    }

    pub fn read_frame(&mut self) -> std::io::Result<bytes::Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let size = i32::from_be_bytes(size) as usize;
        let mut body = vec![0u8; size];
        self.stream.read_exact(&mut body)?;
        Ok(bytes::Bytes::from(body))
    }

    pub fn read_correlation_id(body: &mut bytes::Bytes) -> i32 {
        body.get_i32()
    }
}

// --- Requests every test file builds -----------------------------------------------------

pub fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

pub fn code(error: ResponseError) -> i16 {
    error.code()
}

pub fn create_topic(
    broker: &BrokerProcess,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> CreateTopicsResponse {
    let request = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            ),
    ]);
    broker.connect().request(ApiKey::CreateTopics, 7, &request)
}

/// One Produce (acks=all) of `records` to partition 0; its answer.
pub fn produce(
    broker: &BrokerProcess,
    version: i16,
    topic: &str,
    records: Vec<u8>,
) -> produce_response::PartitionProduceResponse {
    produce_to(broker, version, topic, vec![(0, records)]).remove(0)
}

/// One Produce (acks=all) writing each `(partition, records)`; the answers in order. With
/// acks=all an answer means the high watermark passed the records: consumers and
/// ListOffsets see them at once (with acks=1 they would after the leader's fsync).
pub fn produce_to(
    broker: &BrokerProcess,
    version: i16,
    topic: &str,
    partitions: Vec<(i32, Vec<u8>)>,
) -> Vec<produce_response::PartitionProduceResponse> {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(
                partitions
                    .into_iter()
                    .map(|(index, records)| {
                        produce_request::PartitionProduceData::default()
                            .with_index(index)
                            .with_records(Some(Bytes::from(records)))
                    })
                    .collect(),
            )]);
    let response: ProduceResponse = broker.connect().request(ApiKey::Produce, version, &request);
    response.responses[0].partition_responses.clone()
}

/// Asks FindCoordinator for `group` until it names a coordinator, as a client does before any
/// group request: in a cluster the first one has the controller create `__consumer_offsets`,
/// and the coordinator answers only once it has loaded its partition.
pub fn wait_for_group_coordinator(broker: &BrokerProcess, group: &str) {
    let request = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![StrBytes::from_string(group.to_owned())]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let response: FindCoordinatorResponse =
            broker
                .connect()
                .request(ApiKey::FindCoordinator, 4, &request);
        let error_code = response.coordinators[0].error_code;
        if error_code == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no coordinator for group {group}: error {error_code}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn log_end_offset(broker: &BrokerProcess, topic: &str) -> i64 {
    let request = ListOffsetsRequest::default().with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1)
            ]),
    ]);
    let response: ListOffsetsResponse = broker.connect().request(ApiKey::ListOffsets, 7, &request);
    response.topics[0].partitions[0].offset
}

/// One Fetch (v12, no wait) of `partitions` from offset 0.
pub fn fetch(
    broker: &BrokerProcess,
    topic: &str,
    partitions: &[i32],
    max_bytes: i32,
) -> FetchResponse {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(max_bytes)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&partition| {
                        fetch_request::FetchPartition::default()
                            .with_partition(partition)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )]);
    broker.connect().request(ApiKey::Fetch, 12, &request)
}

/// The values stored in one partition, read back through Fetch.
pub fn values(broker: &BrokerProcess, topic: &str, partition: i32) -> Vec<Vec<u8>> {
    let response = fetch(broker, topic, &[partition], 1 << 20);
    let data = &response.responses[0].partitions[0];
    assert_eq!(data.error_code, 0, "fetch {topic}-{partition}");
    let mut bytes = data.records.clone().unwrap_or_default();
    let mut values = Vec::new();
    while !bytes.is_empty() {
        let header = runnel_record::RecordBatch::validate(&bytes).expect("test setup");
        let batch = bytes.split_to(header.total_len());
        values.extend(
            runnel_record::decode_records(&batch)
                .expect("test setup")
                .into_iter()
                .filter_map(|r| r.value),
        );
    }
    values
}

/// A batch of `values`, stamped now: retention keeps it, and the broker's timestamp bounds
/// accept it.
pub fn batch(values: &[&[u8]]) -> Vec<u8> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64);
    values
        .iter()
        .fold(BatchBuilder::new(now_ms), |b, v| {
            b.record(None, Some(v), &[])
        })
        .build()
}
