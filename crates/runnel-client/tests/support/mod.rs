//! The test kit's broker (`runnel-testkit`) as the client's tests want it: classic groups
//! that rebalance at once, a small `__consumer_offsets`, async start and restart, and client
//! configs with short backoffs.

#![allow(dead_code, unreachable_pub, unused_imports)] // shared by test files; each uses a different part

pub mod fake;

use std::time::Duration;

use runnel_client::ClientConfig;
pub use runnel_testkit::free_port;

/// A broker process with its own data directory. Killed on drop, whatever the test's outcome.
pub struct BrokerProcess {
    /// Always there but while a restart runs on a blocking thread.
    process: Option<runnel_testkit::BrokerProcess>,
    address: String,
}

impl BrokerProcess {
    /// Starts a broker whose classic groups rebalance at once and whose `__consumer_offsets`
    /// is small, plus `extra_args`.
    pub async fn start(extra_args: &[&str]) -> Self {
        let mut args: Vec<String> = [
            "--group-initial-rebalance-delay-ms",
            "0",
            "--offsets-topic-num-partitions",
            "3",
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        args.extend(extra_args.iter().map(|arg| arg.to_string()));
        let process = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            runnel_testkit::BrokerProcess::start(&args)
        })
        .await
        .expect("start the broker");
        BrokerProcess {
            address: process.address(),
            process: Some(process),
        }
    }

    fn process(&self) -> &runnel_testkit::BrokerProcess {
        self.process.as_ref().expect("the broker process")
    }

    pub fn address(&self) -> String {
        self.address.clone()
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
        self.process().log()
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(process) = self.process.as_mut() {
            process.kill9();
        }
    }

    /// Kills the broker if it runs, and starts it again on the same port with the same data.
    pub async fn restart(&mut self) {
        let mut process = self.process.take().expect("the broker process");
        let process = tokio::task::spawn_blocking(move || {
            process.kill9();
            process.start_again();
            process
        })
        .await
        .expect("restart the broker");
        self.process = Some(process);
    }
}
