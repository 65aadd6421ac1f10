//! Starting the real `runnel` binary for a test, and talking to it over a plain socket.

#![allow(dead_code, unreachable_pub)] // shared by test files; each uses uses a different part of the harness

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use runnel_record::BatchBuilder;

/// A broker process on a free loopback port with its own data directory. Killed on drop,
/// whatever the test's outcome.
pub struct BrokerProcess {
    child: Child,
    pub port: u16,
    pub data_dir: PathBuf,
    log_path: PathBuf,
    args: Vec<String>,
    _temp: tempfile::TempDir,
}

impl BrokerProcess {
    pub fn start(extra_args: &[&str]) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        Self::start_in(temp, data_dir, extra_args)
    }

    fn start_in(temp: tempfile::TempDir, data_dir: PathBuf, extra_args: &[&str]) -> Self {
        let port = free_port();
        let log_path = temp.path().join(format!("broker-{port}.log"));
        let args: Vec<String> = extra_args.iter().map(|arg| arg.to_string()).collect();
        let child = spawn_node(port, &data_dir, &args, &log_path);
        let broker = BrokerProcess {
            child,
            port,
            data_dir,
            log_path,
            args,
            _temp: temp,
        };
        broker.wait_ready();
        broker
    }

    /// Stops the broker as an operator does (SIGTERM) and checks it shut down cleanly within
    /// `within`.
    pub fn stop(&mut self, within: Duration) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "broker exited with {status}; log:\n{}",
                    self.log()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "broker did not stop within {within:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker cleanly and starts it again on the same data directory and port.
    pub fn restart(&mut self) {
        self.stop(Duration::from_secs(20));
        self.start_again();
    }

    /// Starts the broker again after [`Self::stop`], on the same data directory and port.
    pub fn start_again(&mut self) {
        self.child = spawn_node(self.port, &self.data_dir, &self.args, &self.log_path);
        self.wait_ready();
    }

    /// A connection to the broker listening on `port`, for threads that do not hold the
    /// process.
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

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut connection) = self.try_connect() {
                if connection
                    .try_request::<_, kafka_protocol::messages::ApiVersionsResponse>(
                        ApiKey::ApiVersions,
                        0,
                        &kafka_protocol::messages::ApiVersionsRequest::default(),
                    )
                    .is_ok()
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("broker did not become ready; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn try_connect(&self) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Connection {
            stream,
            correlation_id: 0,
        })
    }

    pub fn connect(&self) -> Connection {
        self.try_connect().expect("connect to broker")
    }

    /// Checks the process is still running and serving.
    pub fn assert_alive(&mut self) {
        assert!(
            self.child.try_wait().expect("wait").is_none(),
            "broker exited; log:\n{}",
            self.log()
        );
        let mut connection = self.connect();
        connection.request::<_, kafka_protocol::messages::ApiVersionsResponse>(
            ApiKey::ApiVersions,
            0,
            &kafka_protocol::messages::ApiVersionsRequest::default(),
        );
    }

    /// CPU seconds (user and system) the broker process has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("read /proc/PID/stat");
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks: f64 =
            fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
        // Linux reports in USER_HZ, 100 per second on every architecture it supports.
        ticks / 100.0
    }

    pub fn data_path(&self) -> &Path {
        &self.data_dir
    }

    /// Paths of the files the broker process holds open whose names end with `suffix`.
    pub fn open_files_ending(&self, suffix: &str) -> Vec<PathBuf> {
        let dir = format!("/proc/{}/fd", self.child.id());
        std::fs::read_dir(&dir)
            .expect("read /proc/PID/fd")
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().ends_with(suffix))
            .collect()
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- broker log ---\n{}", self.log());
        }
    }
}

fn spawn_node(port: u16, data_dir: &Path, args: &[String], log_path: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args([
            "server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data_dir)
        .args(args)
        .env("RUNNEL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn runnel")
}

/// A controller-only node (`--roles controller`) of a quorum, on its own data directory.
/// Killed on drop, whatever the test's outcome.
pub struct ControllerProcess {
    child: Child,
    pub id: u64,
    pub port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    args: Vec<String>,
}

impl ControllerProcess {
    /// Starts voter `id` of `quorum` (`id@host:port,...`) listening on `port`, with its data
    /// under `root`.
    pub fn start(id: u64, port: u16, quorum: &str, root: &Path, extra_args: &[&str]) -> Self {
        let data_dir = root.join(format!("controller-{id}"));
        let log_path = root.join(format!("controller-{id}.log"));
        let mut args: Vec<String> = [
            "--roles",
            "controller",
            "--node-id",
            &id.to_string(),
            "--controller-listen",
            &format!("127.0.0.1:{port}"),
            "--controller-quorum",
            quorum,
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        args.extend(extra_args.iter().map(|arg| arg.to_string()));
        let child = spawn_node(free_port(), &data_dir, &args, &log_path);
        ControllerProcess {
            child,
            id,
            port,
            data_dir,
            log_path,
            args,
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the process as a power cut would end it (SIGKILL).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same data directory and port.
    pub fn start_again(&mut self) {
        self.child = spawn_node(free_port(), &self.data_dir, &self.args, &self.log_path);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- controller {} log ---\n{}", self.id, self.log());
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
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

/// One Produce (acks=1) of `records` to partition 0; its answer.
pub fn produce(
    broker: &BrokerProcess,
    version: i16,
    topic: &str,
    records: Vec<u8>,
) -> produce_response::PartitionProduceResponse {
    produce_to(broker, version, topic, vec![(0, records)]).remove(0)
}

/// One Produce (acks=1) writing each `(partition, records)`; the answers in order.
pub fn produce_to(
    broker: &BrokerProcess,
    version: i16,
    topic: &str,
    partitions: Vec<(i32, Vec<u8>)>,
) -> Vec<produce_response::PartitionProduceResponse> {
    let request = ProduceRequest::default()
        .with_acks(1)
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
