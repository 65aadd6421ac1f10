//! Starting the real `runnel` binary for a test: a free loopback port, a temporary data
//! directory, killed on drop. The binary is not built here (scripts/test.sh builds it first):
//! `RUNNEL_BIN`, else `<workspace>/target/debug/runnel`.

#![allow(dead_code, unreachable_pub)] // shared by test files; each uses a different part

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runnel_client::{ClientConfig, Connection};

/// The broker binary, or a panic saying how to get one.
pub fn runnel_bin() -> PathBuf {
    let path = match std::env::var_os("RUNNEL_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
            target.join("debug/runnel")
        }
    };
    assert!(
        path.is_file(),
        "no runnel binary at {}: run `cargo build -p runnel-cli` first (scripts/test.sh does), \
         or point RUNNEL_BIN at one",
        path.display()
    );
    path
}

/// A broker process with its own data directory. Killed on drop, whatever the test's outcome.
pub struct BrokerProcess {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    log_path: PathBuf,
    extra_args: Vec<String>,
    _temp: tempfile::TempDir,
}

impl BrokerProcess {
    /// Starts a broker whose classic groups rebalance at once and whose
    /// `__consumer_offsets` is small, plus `extra_args`.
    pub async fn start(extra_args: &[&str]) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let log_path = temp.path().join("broker.log");
        let mut broker = BrokerProcess {
            child: None,
            port: free_port(),
            data_dir,
            log_path,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            _temp: temp,
        };
        broker.spawn();
        broker.wait_ready().await;
        broker
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let child = Command::new(runnel_bin())
            .args(["server", "--listen", &self.address(), "--data-dir"])
            .arg(&self.data_dir)
            .args([
                "--group-initial-rebalance-delay-ms",
                "0",
                "--offsets-topic-num-partitions",
                "3",
            ])
            .args(&self.extra_args)
            .env("RUNNEL_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn runnel");
        self.child = Some(child);
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let config = ClientConfig::new(self.address());
        while Instant::now() < deadline {
            if Connection::connect(&self.address(), &config).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("broker did not become ready; log:\n{}", self.log());
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A client config for this broker with short backoffs.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(self.address());
        config.request_timeout = Duration::from_secs(10);
        config.retry_backoff = Duration::from_millis(50);
        config.reconnect_backoff = Duration::from_millis(20);
        config.reconnect_backoff_max = Duration::from_millis(200);
        config
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port with the same data.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready().await;
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
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
