//! A sink whose flush fails loses nothing: the worker rewinds its consumer to the committed
//! offsets and hands the records again, as Kafka's does. Against a real broker, with a sink
//! that drops what it buffered when its first flush fails.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runnel_client::{ClientConfig, NewTopic, ProduceRecord, Producer, ProducerConfig};
use runnel_connect::api::ConnectApi;
use runnel_connect::config::{ConfigDef, Configs};
use runnel_connect::connector::{
    ConnectError, Connector, ConnectorContext, Plugin, Plugins, SinkTask, TaskContext, TaskFactory,
    TopicPartition,
};
use runnel_connect::data::SinkRecord;
use runnel_connect::herder::Herder;
use runnel_connect::offsets::FileOffsetStore;
use runnel_connect::status::TargetState;
use runnel_connect::worker::{Worker, WorkerConfig};
use runnel_testkit::BrokerProcess;

/// What the flaky sink made durable, and how many flushes it has failed.
static DURABLE: Mutex<Vec<String>> = Mutex::new(Vec::new());
static FAILED_FLUSHES: Mutex<usize> = Mutex::new(0);

#[derive(Default)]
struct FlakySink {
    buffered: Vec<String>,
}

impl SinkTask for FlakySink {
    fn start(&mut self, _configs: &Configs, _context: &TaskContext) -> Result<(), ConnectError> {
        Ok(())
    }

    fn put(&mut self, records: &[SinkRecord]) -> Result<(), ConnectError> {
        self.buffered
            .extend(records.iter().map(|r| r.record.value.value.display(None)));
        Ok(())
    }

    fn flush(
        &mut self,
        _offsets: &std::collections::BTreeMap<TopicPartition, i64>,
    ) -> Result<(), ConnectError> {
        let mut failed = FAILED_FLUSHES.lock().unwrap_or_else(|e| e.into_inner());
        if *failed == 0 && !self.buffered.is_empty() {
            *failed += 1;
            // The failure loses what was buffered, as a sink's lost connection would.
            self.buffered.clear();
            return Err(ConnectError::Retriable("the flush failed".into()));
        }
        DURABLE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(&mut self.buffered);
        Ok(())
    }

    fn stop(&mut self) {}
}

#[derive(Default)]
struct FlakySinkConnector {
    configs: Configs,
}

impl Connector for FlakySinkConnector {
    fn config_def(&self) -> ConfigDef {
        ConfigDef::new()
    }

    fn start(&mut self, configs: &Configs, _context: ConnectorContext) -> Result<(), ConnectError> {
        self.configs = configs.clone();
        Ok(())
    }

    fn task_configs(&mut self, _max_tasks: usize) -> Result<Vec<Configs>, ConnectError> {
        Ok(vec![self.configs.clone()])
    }

    fn stop(&mut self) {}
}

const FLAKY: Plugin = Plugin {
    class: "FlakySink",
    aliases: &[],
    connector: || Box::new(FlakySinkConnector::default()),
    task: TaskFactory::Sink(|| Box::new(FlakySink::default())),
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_a_failed_flush_lost_are_handed_again() {
    let broker = BrokerProcess::start(&[]);
    let bootstrap = broker.address();
    let admin = runnel_client::Admin::connect(ClientConfig::new(bootstrap.clone()))
        .await
        .expect("an admin client");
    admin
        .create_topic(NewTopic::new("flaky-in", 1))
        .await
        .expect("create the topic");
    let producer = Producer::connect(ProducerConfig::new(bootstrap.clone()))
        .await
        .expect("a producer");
    let values: Vec<String> = (0..100).map(|i| format!("value {i}")).collect();
    for value in &values {
        producer
            .send(ProduceRecord::new("flaky-in").value(value.clone()))
            .await
            .expect("send");
    }
    producer.flush().await.expect("flush the producer");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let offsets = FileOffsetStore::open(dir.path().join("offsets")).expect("the offsets file");
    let mut config = WorkerConfig::new(bootstrap, "test-worker");
    config.offset_flush_interval = Duration::from_millis(200);
    let worker = Worker::new(config, tokio::runtime::Handle::current(), Arc::new(offsets));
    let herder = Herder::new(worker, Plugins::new(vec![FLAKY]));
    let mut configs = Configs::new();
    configs.set("connector.class", "FlakySink");
    configs.set("topics", "flaky-in");
    configs.set(
        "value.converter",
        "org.apache.kafka.connect.storage.StringConverter",
    );
    let creating = herder.clone();
    tokio::task::spawn_blocking(move || creating.create("flaky", configs, TargetState::Started))
        .await
        .expect("the create call")
        .expect("the connector is created");

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let durable = DURABLE.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut unique = durable.clone();
        unique.sort();
        unique.dedup();
        let mut expected = values.clone();
        expected.sort();
        if unique == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} values durable after a failed flush",
            unique.len(),
            values.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(*FAILED_FLUSHES.lock().unwrap_or_else(|e| e.into_inner()), 1);
    tokio::task::spawn_blocking(move || herder.shutdown())
        .await
        .expect("shut down");
}
