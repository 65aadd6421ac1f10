//! Starting the real `runnel` binary for a test, and talking to it over a plain socket.

#![allow(dead_code, unreachable_pub)] // shared by test files; each uses uses a different part of the harness

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// A broker process on a free loopback port with its own data directory. Killed on drop,
/// whatever the test's outcome.
pub struct BrokerProcess {
    child: Child,
    pub port: u16,
    pub data_dir: PathBuf,
    log_path: PathBuf,
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
        let log = std::fs::File::create(&log_path).expect("log file");
        let address = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_runnel"))
            .args(["server", "--listen", &address, "--data-dir"])
            .arg(&data_dir)
            .args(extra_args)
            .env("RUNNEL_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn runnel");
        let broker = BrokerProcess {
            child,
            port,
            data_dir,
            log_path,
            _temp: temp,
        };
        broker.wait_ready();
        broker
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

    pub fn data_path(&self) -> &Path {
        &self.data_dir
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
