//! The consumer against the real broker binary: manual assignment, seeks, pause, classic
//! groups (eager and cooperative), commits, and the errors a user meets; and against a fake
//! broker, what its fetches say.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    produce_request, ApiKey, BrokerId, FetchRequest, FetchResponse, MetadataResponse,
    ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use runnel_client::consumer::assignor::{Assignor, CooperativeStickyAssignor};
use runnel_client::{
    Admin, ClientError, Cluster, Consumer, ConsumerConfig, ConsumerRecord, GroupProtocol,
    IsolationLevel, NewTopic, OffsetReset, RebalanceListener, TopicPartition,
};
use runnel_record::BatchBuilder;
use runnel_testkit::{free_port_run, DevCluster};
use support::fake::{answer, answer_api_versions, read_request};
use support::BrokerProcess;

const WAIT: Duration = Duration::from_secs(30);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

async fn create_topic(broker: &BrokerProcess, name: &str, partitions: i32) {
    let admin = Admin::connect(broker.config()).await.expect("admin");
    admin
        .create_topic(NewTopic::new(name, partitions))
        .await
        .expect("create topic");
}

/// Appends one batch of `values`, timestamps `first_timestamp`, +1, +2..., with a raw Produce
/// request; returns the base offset.
async fn produce(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
    first_timestamp: i64,
    values: &[String],
) -> i64 {
    let mut batch = BatchBuilder::new(first_timestamp);
    for (i, value) in values.iter().enumerate() {
        batch = batch.record_at(
            first_timestamp + i as i64,
            None,
            Some(value.as_bytes()),
            &[],
        );
    }
    let (_, connection) = cluster
        .leader_connection(topic, partition)
        .await
        .expect("leader");
    let version = connection
        .version_for(ApiKey::Produce)
        .expect("Produce served");
    let topic_id = cluster.topic(topic).await.expect("metadata").id;
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_topic_id(topic_id)
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(Bytes::from(batch.build()))),
            ])]);
    let response = connection.send(request, version).await.expect("produce");
    let answer = &response.responses[0].partition_responses[0];
    assert_eq!(answer.error_code, 0, "produce error");
    answer.base_offset
}

fn values(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

/// Short timings so groups settle in a test's time.
fn config(broker: &BrokerProcess, group: Option<&str>) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(broker.address());
    config.client = broker.config();
    config.group_id = group.map(str::to_owned);
    config.heartbeat_interval = Duration::from_millis(200);
    config.session_timeout = Duration::from_secs(10);
    config.rebalance_timeout = Duration::from_secs(10);
    config.auto_offset_reset = OffsetReset::Earliest;
    config.enable_auto_commit = false;
    config.fetch_max_wait = Duration::from_millis(100);
    config
}

/// Polls until `count` records came or `WAIT` passed.
async fn poll_records(consumer: &Consumer, count: usize) -> Vec<ConsumerRecord> {
    let deadline = Instant::now() + WAIT;
    let mut records = Vec::new();
    while records.len() < count && Instant::now() < deadline {
        records.extend(
            consumer
                .poll(Duration::from_millis(200))
                .await
                .expect("poll"),
        );
    }
    assert_eq!(records.len(), count, "records read");
    records
}

fn value(record: &ConsumerRecord) -> String {
    String::from_utf8(record.value.clone().expect("a value").to_vec()).expect("utf-8")
}

#[tokio::test]
async fn assigned_partitions_are_read_completely_and_in_order() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "orders", 2).await;
    let consumer = Consumer::connect(config(&broker, None))
        .await
        .expect("connect");
    let cluster = consumer.cluster().clone();
    let t0 = now_ms();
    produce(&cluster, "orders", 0, t0, &values("a", 0..40)).await;
    produce(&cluster, "orders", 0, t0, &values("a", 40..100)).await;
    produce(&cluster, "orders", 1, t0, &values("b", 0..50)).await;

    consumer
        .assign(vec![tp("orders", 0), tp("orders", 1)])
        .await
        .expect("assign");
    assert_eq!(consumer.assignment(), [tp("orders", 0), tp("orders", 1)]);
    let records = poll_records(&consumer, 150).await;
    for (partition, prefix, count) in [(0, "a", 100), (1, "b", 50)] {
        let read: Vec<(i64, String)> = records
            .iter()
            .filter(|r| r.partition == partition)
            .map(|r| (r.offset, value(r)))
            .collect();
        let expected: Vec<(i64, String)> = (0..count)
            .map(|i| (i as i64, format!("{prefix}-{i}")))
            .collect();
        assert_eq!(read, expected);
    }
    assert_eq!(
        consumer.position(&tp("orders", 0)).await.expect("position"),
        100
    );
    assert_eq!(
        consumer.position(&tp("orders", 1)).await.expect("position"),
        50
    );
    assert!(consumer
        .poll(Duration::from_millis(100))
        .await
        .expect("poll")
        .is_empty());

    // The stream yields what comes next.
    produce(&cluster, "orders", 1, t0, &values("b", 50..53)).await;
    let streamed: Vec<String> = consumer
        .stream()
        .take(3)
        .map(|record| value(&record.expect("record")))
        .collect()
        .await;
    assert_eq!(streamed, ["b-50", "b-51", "b-52"]);
}

#[tokio::test]
async fn seeks_and_offsets_for_times() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "events", 1).await;
    let mut config = config(&broker, None);
    config.auto_offset_reset = OffsetReset::Latest;
    let consumer = Consumer::connect(config).await.expect("connect");
    let cluster = consumer.cluster().clone();
    let t0 = now_ms() - 60_000;
    produce(&cluster, "events", 0, t0, &values("e", 0..5)).await;
    produce(&cluster, "events", 0, t0 + 5, &values("e", 5..10)).await;
    let events = tp("events", 0);
    consumer.assign(vec![events.clone()]).await.expect("assign");

    // Latest: nothing old.
    assert_eq!(consumer.position(&events).await.expect("position"), 10);
    consumer.seek(&events, 5).await.expect("seek");
    let records = poll_records(&consumer, 5).await;
    assert_eq!(records[0].offset, 5);
    assert_eq!(value(&records[0]), "e-5");
    assert_eq!(records[0].timestamp, t0 + 5);

    consumer
        .seek_to_beginning(std::slice::from_ref(&events))
        .await
        .expect("seek to beginning");
    assert_eq!(consumer.position(&events).await.expect("position"), 0);
    assert_eq!(poll_records(&consumer, 10).await[0].offset, 0);

    consumer.seek_to_end(&[]).await.expect("seek to end");
    assert_eq!(consumer.position(&events).await.expect("position"), 10);

    let found = consumer
        .offsets_for_times(&[
            (events.clone(), t0 + 3),
            (events.clone(), t0 + 5),
            (events.clone(), t0 - 1000),
        ])
        .await
        .expect("offsets for times");
    assert_eq!(
        found,
        [
            (events.clone(), Some((3, t0 + 3))),
            (events.clone(), Some((5, t0 + 5))),
            (events.clone(), Some((0, t0))),
        ]
    );
    let later = consumer
        .offsets_for_times(&[(events.clone(), now_ms() + 3_600_000)])
        .await
        .expect("offsets for times");
    assert_eq!(later, [(events.clone(), None)]);

    let not_assigned = consumer.seek(&tp("events", 7), 0).await;
    assert!(matches!(not_assigned, Err(ClientError::InvalidArgument(_))));
}

#[tokio::test]
async fn paused_partitions_are_not_fetched_until_resumed() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "p", 2).await;
    let consumer = Consumer::connect(config(&broker, None))
        .await
        .expect("connect");
    let cluster = consumer.cluster().clone();
    produce(&cluster, "p", 0, now_ms(), &values("zero", 0..5)).await;
    produce(&cluster, "p", 1, now_ms(), &values("one", 0..5)).await;
    consumer
        .assign(vec![tp("p", 0), tp("p", 1)])
        .await
        .expect("assign");
    consumer.pause(&[tp("p", 0)]).expect("pause");
    let records = poll_records(&consumer, 5).await;
    assert!(records.iter().all(|r| r.partition == 1));
    assert!(consumer
        .poll(Duration::from_millis(300))
        .await
        .expect("poll")
        .is_empty());
    consumer.resume(&[tp("p", 0)]).expect("resume");
    let records = poll_records(&consumer, 5).await;
    assert!(records.iter().all(|r| r.partition == 0));
    assert!(consumer.pause(&[tp("p", 9)]).is_err());
}

#[tokio::test]
async fn a_group_of_three_shares_six_partitions_and_reads_each_record_once() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "shared", 6).await;
    let mut consumers = Vec::new();
    for _ in 0..3 {
        let consumer = Consumer::connect(config(&broker, Some("three")))
            .await
            .expect("connect");
        consumer.subscribe(&["shared"]).await.expect("subscribe");
        consumers.push(Arc::new(consumer));
    }
    let cluster = consumers[0].cluster().clone();

    let read: Arc<Mutex<Vec<(usize, i32, i64)>>> = Arc::default();
    let total = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = consumers
        .iter()
        .enumerate()
        .map(|(member, consumer)| {
            let consumer = Arc::clone(consumer);
            let read = Arc::clone(&read);
            let total = Arc::clone(&total);
            tokio::spawn(async move {
                let deadline = Instant::now() + WAIT * 2;
                while total.load(Ordering::SeqCst) < 3000 && Instant::now() < deadline {
                    let records = consumer
                        .poll(Duration::from_millis(200))
                        .await
                        .expect("poll");
                    total.fetch_add(records.len(), Ordering::SeqCst);
                    read.lock()
                        .expect("lock")
                        .extend(records.iter().map(|r| (member, r.partition, r.offset)));
                }
            })
        })
        .collect();

    // The group settles with two partitions each before anything is produced.
    let deadline = Instant::now() + WAIT;
    while consumers.iter().any(|c| c.assignment().len() != 2) {
        assert!(Instant::now() < deadline, "the group did not settle");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let assignments: Vec<Vec<TopicPartition>> = consumers.iter().map(|c| c.assignment()).collect();
    let all: BTreeSet<TopicPartition> = assignments.iter().flatten().cloned().collect();
    assert_eq!(all.len(), 6, "{assignments:?}");

    for partition in 0..6 {
        produce(
            &cluster,
            "shared",
            partition,
            now_ms(),
            &values("s", 0..500),
        )
        .await;
    }
    for task in tasks {
        task.await.expect("poll task");
    }
    let read = read.lock().expect("lock").clone();
    assert_eq!(read.len(), 3000);
    let distinct: BTreeSet<(i32, i64)> = read.iter().map(|&(_, p, o)| (p, o)).collect();
    assert_eq!(distinct.len(), 3000, "a record was read twice");
    for (member, partition, _) in read {
        assert!(
            assignments[member].contains(&tp("shared", partition)),
            "member {member} read partition {partition} it was not assigned"
        );
    }
    for consumer in &consumers {
        consumer.close().await.expect("close");
    }
}

#[tokio::test]
async fn committed_offsets_survive_close_and_a_new_member_resumes_from_them() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "ledger", 1).await;
    let ledger = tp("ledger", 0);
    let first = Consumer::connect(config(&broker, Some("accounts")))
        .await
        .expect("connect");
    let cluster = first.cluster().clone();
    produce(&cluster, "ledger", 0, now_ms(), &values("l", 0..50)).await;
    first.subscribe(&["ledger"]).await.expect("subscribe");
    poll_records(&first, 50).await;
    first.commit().await.expect("commit");
    assert_eq!(
        first
            .committed(std::slice::from_ref(&ledger))
            .await
            .expect("committed"),
        [(ledger.clone(), Some(50))]
    );
    produce(&cluster, "ledger", 0, now_ms(), &values("l", 50..80)).await;
    poll_records(&first, 30).await;
    // Auto-commit is off: closing does not commit the last 30.
    first.close().await.expect("close");
    assert!(matches!(
        first.poll(Duration::ZERO).await,
        Err(ClientError::Closed)
    ));

    let second = Consumer::connect(config(&broker, Some("accounts")))
        .await
        .expect("connect");
    assert_eq!(
        second
            .committed(std::slice::from_ref(&ledger))
            .await
            .expect("committed"),
        [(ledger.clone(), Some(50))]
    );
    second.subscribe(&["ledger"]).await.expect("subscribe");
    let records = poll_records(&second, 30).await;
    assert_eq!(records[0].offset, 50);
    second
        .commit_offsets(&[(ledger.clone(), 70)])
        .await
        .expect("commit offsets");
    assert_eq!(
        second
            .committed(std::slice::from_ref(&ledger))
            .await
            .expect("committed"),
        [(ledger.clone(), Some(70))]
    );
    second.close().await.expect("close");
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<(&'static str, Vec<TopicPartition>)>>,
}

impl Recorder {
    fn events(&self) -> Vec<(&'static str, Vec<TopicPartition>)> {
        self.events.lock().expect("lock").clone()
    }
}

impl RebalanceListener for Recorder {
    fn on_partitions_revoked(&self, partitions: &[TopicPartition]) {
        self.events
            .lock()
            .expect("lock")
            .push(("revoked", partitions.to_vec()));
    }
    fn on_partitions_assigned(&self, partitions: &[TopicPartition]) {
        self.events
            .lock()
            .expect("lock")
            .push(("assigned", partitions.to_vec()));
    }
    fn on_partitions_lost(&self, partitions: &[TopicPartition]) {
        self.events
            .lock()
            .expect("lock")
            .push(("lost", partitions.to_vec()));
    }
}

/// Polls every consumer until `done` holds of their assignments.
async fn poll_until(consumers: &[&Consumer], done: impl Fn(&[Vec<TopicPartition>]) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let assignments: Vec<Vec<TopicPartition>> =
            consumers.iter().map(|c| c.assignment()).collect();
        if done(&assignments) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the group did not settle: {assignments:?}"
        );
        for consumer in consumers {
            consumer
                .poll(Duration::from_millis(50))
                .await
                .expect("poll");
        }
    }
}

#[tokio::test]
async fn cooperative_sticky_moves_only_what_it_must() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "sticky", 4).await;
    let cooperative = |broker: &BrokerProcess| {
        let mut config = config(broker, Some("sticky-group"));
        config.assignors = vec![Arc::new(CooperativeStickyAssignor) as Arc<dyn Assignor>];
        config
    };
    let first = Consumer::connect(cooperative(&broker))
        .await
        .expect("connect");
    let first_listener = Arc::new(Recorder::default());
    first.set_rebalance_listener(first_listener.clone());
    first.subscribe(&["sticky"]).await.expect("subscribe");
    poll_until(&[&first], |a| a[0].len() == 4).await;
    let all: Vec<TopicPartition> = (0..4).map(|p| tp("sticky", p)).collect();
    assert_eq!(first_listener.events(), [("assigned", all.clone())]);

    let second = Consumer::connect(cooperative(&broker))
        .await
        .expect("connect");
    let second_listener = Arc::new(Recorder::default());
    second.set_rebalance_listener(second_listener.clone());
    second.subscribe(&["sticky"]).await.expect("subscribe");
    poll_until(&[&first, &second], |a| a[0].len() == 2 && a[1].len() == 2).await;

    let kept = first.assignment();
    let moved = second.assignment();
    let events = first_listener.events();
    let revoked: Vec<TopicPartition> = events
        .iter()
        .filter(|(kind, _)| *kind == "revoked")
        .flat_map(|(_, partitions)| partitions.clone())
        .collect();
    assert_eq!(
        revoked, moved,
        "only the moved partitions are revoked: {events:?}"
    );
    assert!(kept.iter().all(|tp| !revoked.contains(tp)));
    assert!(events.iter().all(|(kind, _)| *kind != "lost"), "{events:?}");
    let second_assigned: Vec<TopicPartition> = second_listener
        .events()
        .iter()
        .filter(|(kind, _)| *kind == "assigned")
        .flat_map(|(_, partitions)| partitions.clone())
        .collect();
    assert_eq!(second_assigned, moved);

    second.close().await.expect("close");
    poll_until(&[&first], |a| a[0].len() == 4).await;
    first.close().await.expect("close");
}

#[tokio::test]
async fn auto_commit_stores_positions_in_the_background_and_on_close() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "auto", 2).await;
    let mut config = config(&broker, Some("auto-group"));
    config.enable_auto_commit = true;
    config.auto_commit_interval = Duration::from_millis(200);
    let consumer = Consumer::connect(config).await.expect("connect");
    let cluster = consumer.cluster().clone();
    produce(&cluster, "auto", 0, now_ms(), &values("x", 0..7)).await;
    produce(&cluster, "auto", 1, now_ms(), &values("y", 0..3)).await;
    consumer.subscribe(&["auto"]).await.expect("subscribe");
    poll_records(&consumer, 10).await;
    let partitions = [tp("auto", 0), tp("auto", 1)];
    let expected = vec![(tp("auto", 0), Some(7)), (tp("auto", 1), Some(3))];
    let deadline = Instant::now() + WAIT;
    loop {
        consumer
            .poll(Duration::from_millis(100))
            .await
            .expect("poll");
        if consumer.committed(&partitions).await.expect("committed") == expected {
            break;
        }
        assert!(Instant::now() < deadline, "auto-commit did not happen");
    }

    produce(&cluster, "auto", 1, now_ms(), &values("y", 3..5)).await;
    poll_records(&consumer, 2).await;
    consumer.close().await.expect("close");
    let admin = Admin::connect(broker.config()).await.expect("admin");
    let committed = admin
        .list_group_offsets("auto-group")
        .await
        .expect("offsets");
    let committed: BTreeMap<(String, i32), i64> = committed
        .into_iter()
        .map(|(tp, offset, _)| (tp, offset))
        .collect();
    assert_eq!(committed[&("auto".to_owned(), 1)], 5, "close commits");
}

#[tokio::test]
async fn read_committed_reads_plain_data() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "plain", 1).await;
    let mut config = config(&broker, None);
    config.isolation_level = IsolationLevel::ReadCommitted;
    let consumer = Consumer::connect(config).await.expect("connect");
    let cluster = consumer.cluster().clone();
    produce(&cluster, "plain", 0, now_ms(), &values("v", 0..10)).await;
    consumer.assign(vec![tp("plain", 0)]).await.expect("assign");
    let records = poll_records(&consumer, 10).await;
    assert_eq!(value(&records[9]), "v-9");
    // The end under read_committed is the last stable offset: here the high watermark.
    consumer.seek_to_end(&[]).await.expect("seek to end");
    assert_eq!(
        consumer.position(&tp("plain", 0)).await.expect("position"),
        10
    );
}

#[tokio::test]
async fn a_pattern_subscription_reads_the_matching_topics() {
    let broker = BrokerProcess::start(&[]).await;
    for topic in ["metrics-cpu", "metrics-disk", "logs"] {
        create_topic(&broker, topic, 1).await;
    }
    let consumer = Consumer::connect(config(&broker, Some("patterns")))
        .await
        .expect("connect");
    let cluster = consumer.cluster().clone();
    for topic in ["metrics-cpu", "metrics-disk", "logs"] {
        produce(&cluster, topic, 0, now_ms(), &values(topic, 0..3)).await;
    }
    consumer
        .subscribe_pattern("metrics-.*")
        .await
        .expect("subscribe");
    let records = poll_records(&consumer, 6).await;
    let topics: BTreeSet<&str> = records.iter().map(|r| &*r.topic).collect();
    assert_eq!(topics, BTreeSet::from(["metrics-cpu", "metrics-disk"]));
    assert_eq!(
        consumer.assignment(),
        [tp("metrics-cpu", 0), tp("metrics-disk", 0)]
    );
    consumer.close().await.expect("close");
}

#[tokio::test]
async fn usage_errors_and_out_of_range_positions() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "edge", 1).await;
    let consumer = Consumer::connect(config(&broker, None))
        .await
        .expect("connect");
    let cluster = consumer.cluster().clone();
    produce(&cluster, "edge", 0, now_ms(), &values("v", 0..5)).await;

    let no_group = consumer.subscribe(&["edge"]).await;
    assert!(
        matches!(no_group, Err(ClientError::InvalidArgument(_))),
        "{no_group:?}"
    );
    assert!(matches!(
        consumer.poll(Duration::ZERO).await,
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(matches!(
        consumer.commit().await,
        Err(ClientError::InvalidArgument(_))
    ));

    // Out of range with a reset policy: back to the earliest offset.
    consumer.assign(vec![tp("edge", 0)]).await.expect("assign");
    consumer.seek(&tp("edge", 0), 1000).await.expect("seek");
    let records = poll_records(&consumer, 5).await;
    assert_eq!(records[0].offset, 0);

    // Out of range with none: an error from poll.
    let mut strict = config(&broker, None);
    strict.auto_offset_reset = OffsetReset::None;
    let strict = Consumer::connect(strict).await.expect("connect");
    strict.assign(vec![tp("edge", 0)]).await.expect("assign");
    let no_position = strict.poll(Duration::from_millis(100)).await;
    assert_eq!(
        no_position.as_ref().err().and_then(ClientError::code),
        Some(ResponseError::OffsetOutOfRange),
        "{no_position:?}"
    );
    strict.seek(&tp("edge", 0), 2).await.expect("seek");
    assert_eq!(poll_records(&strict, 3).await[0].offset, 2);
    strict.seek(&tp("edge", 0), 1000).await.expect("seek");
    let deadline = Instant::now() + WAIT;
    let error = loop {
        match strict.poll(Duration::from_millis(100)).await {
            Ok(records) => assert!(records.is_empty()),
            Err(error) => break error,
        }
        assert!(Instant::now() < deadline, "no out-of-range error");
    };
    assert_eq!(
        error.code(),
        Some(ResponseError::OffsetOutOfRange),
        "{error}"
    );
}

#[tokio::test]
async fn an_eager_rebalance_commits_before_handing_partitions_over() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "handover", 6).await;
    let eager = |broker: &BrokerProcess| {
        let mut config = config(broker, Some("handover-group"));
        config.enable_auto_commit = true;
        // Only the commit before revocation can store positions in this test's time.
        config.auto_commit_interval = Duration::from_secs(600);
        config
    };
    let first = Consumer::connect(eager(&broker)).await.expect("connect");
    let first_listener = Arc::new(Recorder::default());
    first.set_rebalance_listener(first_listener.clone());
    let cluster = first.cluster().clone();
    for partition in 0..6 {
        produce(
            &cluster,
            "handover",
            partition,
            now_ms(),
            &values("h", 0..100),
        )
        .await;
    }
    first.subscribe(&["handover"]).await.expect("subscribe");
    let mut read: Vec<(i32, i64)> = poll_records(&first, 600)
        .await
        .iter()
        .map(|r| (r.partition, r.offset))
        .collect();

    let second = Consumer::connect(eager(&broker)).await.expect("connect");
    second.subscribe(&["handover"]).await.expect("subscribe");
    let deadline = Instant::now() + WAIT;
    while first.assignment().len() != 3 || second.assignment().len() != 3 {
        assert!(Instant::now() < deadline, "the group did not settle");
        for consumer in [&first, &second] {
            let records = consumer
                .poll(Duration::from_millis(50))
                .await
                .expect("poll");
            read.extend(records.iter().map(|r| (r.partition, r.offset)));
        }
    }
    // Eager: everything was revoked once, then three partitions came back.
    let events = first_listener.events();
    let all: Vec<TopicPartition> = (0..6).map(|p| tp("handover", p)).collect();
    assert_eq!(events[0], ("assigned", all.clone()));
    assert_eq!(events[1], ("revoked", all));

    for partition in 0..6 {
        produce(
            &cluster,
            "handover",
            partition,
            now_ms(),
            &values("h", 100..110),
        )
        .await;
    }
    let deadline = Instant::now() + WAIT;
    while read.len() < 660 && Instant::now() < deadline {
        for consumer in [&first, &second] {
            let records = consumer
                .poll(Duration::from_millis(50))
                .await
                .expect("poll");
            read.extend(records.iter().map(|r| (r.partition, r.offset)));
        }
    }
    let distinct: BTreeSet<(i32, i64)> = read.iter().copied().collect();
    assert_eq!(read.len(), 660, "every record once");
    assert_eq!(distinct.len(), 660);
    first.close().await.expect("close");
    second.close().await.expect("close");
}

/// Reported from the CLI: an Admin sharing the consumer's Cluster looks the topic up (caching
/// its metadata) before `subscribe`, and the group member was said never to fetch. Kept as the
/// guard for `runnel consume --group`, which now shares its consumer's Cluster this way.
#[tokio::test]
async fn an_admin_sharing_the_cluster_does_not_stop_a_group_member_fetching() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "shared-cluster", 1).await;
    let consumer = Consumer::connect(config(&broker, Some("shared-cluster-group")))
        .await
        .expect("connect");
    let producer_side = Cluster::connect(broker.config()).await.expect("cluster");
    produce(
        &producer_side,
        "shared-cluster",
        0,
        now_ms(),
        &values("c", 0..20),
    )
    .await;
    let admin = Admin::from_cluster(consumer.cluster().clone());
    admin
        .describe_topic("shared-cluster")
        .await
        .expect("describe");
    consumer
        .subscribe(&["shared-cluster"])
        .await
        .expect("subscribe");
    let records = poll_records(&consumer, 20).await;
    assert_eq!(records[0].offset, 0);
    consumer.close().await.expect("close");
}

/// A broker whose KIP-848 groups ask for a heartbeat every 300 ms.
async fn kip848_broker() -> BrokerProcess {
    BrokerProcess::start(&["--group-consumer-heartbeat-interval-ms", "300"]).await
}

fn kip848_config(broker: &BrokerProcess, group: &str) -> ConsumerConfig {
    let mut config = config(broker, Some(group));
    config.group_protocol = GroupProtocol::Consumer;
    config
}

#[tokio::test]
async fn kip848_two_members_share_four_partitions_and_read_each_record_once() {
    let broker = kip848_broker().await;
    create_topic(&broker, "kip848-shared", 4).await;
    let mut consumers = Vec::new();
    for _ in 0..2 {
        let consumer = Consumer::connect(kip848_config(&broker, "kip848-two"))
            .await
            .expect("connect");
        consumer
            .subscribe(&["kip848-shared"])
            .await
            .expect("subscribe");
        consumers.push(consumer);
    }
    let members: Vec<&Consumer> = consumers.iter().collect();
    poll_until(&members, |assignments| {
        assignments.iter().all(|a| a.len() == 2)
    })
    .await;
    let assignments: Vec<Vec<TopicPartition>> = consumers.iter().map(|c| c.assignment()).collect();
    let all: BTreeSet<TopicPartition> = assignments.iter().flatten().cloned().collect();
    assert_eq!(all.len(), 4, "{assignments:?}");

    let cluster = consumers[0].cluster().clone();
    for partition in 0..4 {
        produce(
            &cluster,
            "kip848-shared",
            partition,
            now_ms(),
            &values("k", 0..500),
        )
        .await;
    }
    let mut read: Vec<(usize, i32, i64)> = Vec::new();
    let deadline = Instant::now() + WAIT;
    while read.len() < 2000 && Instant::now() < deadline {
        for (member, consumer) in consumers.iter().enumerate() {
            let records = consumer
                .poll(Duration::from_millis(50))
                .await
                .expect("poll");
            read.extend(records.iter().map(|r| (member, r.partition, r.offset)));
        }
    }
    assert_eq!(read.len(), 2000);
    let distinct: BTreeSet<(i32, i64)> = read.iter().map(|&(_, p, o)| (p, o)).collect();
    assert_eq!(distinct.len(), 2000, "a record was read twice");
    for &(member, partition, _) in &read {
        assert!(
            assignments[member].contains(&tp("kip848-shared", partition)),
            "member {member} read partition {partition} it was not assigned"
        );
    }
    for consumer in &consumers {
        consumer.close().await.expect("close");
    }
}

#[tokio::test]
async fn kip848_a_new_member_takes_partitions_without_the_others_losing_theirs() {
    let broker = kip848_broker().await;
    create_topic(&broker, "kip848-moves", 4).await;
    let mut consumers = Vec::new();
    let mut listeners = Vec::new();
    for _ in 0..2 {
        let consumer = Consumer::connect(kip848_config(&broker, "kip848-moves"))
            .await
            .expect("connect");
        let listener = Arc::new(Recorder::default());
        consumer.set_rebalance_listener(listener.clone());
        consumer
            .subscribe(&["kip848-moves"])
            .await
            .expect("subscribe");
        consumers.push(consumer);
        listeners.push(listener);
    }
    poll_until(&consumers.iter().collect::<Vec<_>>(), |assignments| {
        assignments.iter().all(|a| a.len() == 2)
    })
    .await;
    let before: Vec<BTreeSet<TopicPartition>> = consumers
        .iter()
        .map(|c| c.assignment().into_iter().collect())
        .collect();
    // What the listeners heard while the first two settled is not this test's business.
    let settled: Vec<usize> = listeners.iter().map(|l| l.events().len()).collect();

    let third = Consumer::connect(kip848_config(&broker, "kip848-moves"))
        .await
        .expect("connect");
    let third_listener = Arc::new(Recorder::default());
    third.set_rebalance_listener(third_listener.clone());
    third.subscribe(&["kip848-moves"]).await.expect("subscribe");
    consumers.push(third);
    listeners.push(third_listener);
    poll_until(&consumers.iter().collect::<Vec<_>>(), |assignments| {
        let mut sizes: Vec<usize> = assignments.iter().map(Vec::len).collect();
        sizes.sort_unstable();
        let all: BTreeSet<&TopicPartition> = assignments.iter().flatten().collect();
        sizes == [1, 1, 2] && all.len() == 4
    })
    .await;

    for (member, listener) in listeners.iter().enumerate().take(2) {
        let after: BTreeSet<TopicPartition> = consumers[member].assignment().into_iter().collect();
        assert!(
            after.is_subset(&before[member]),
            "member {member} gained partitions"
        );
        let events = listener.events().split_off(settled[member]);
        assert!(
            events.iter().all(|(kind, _)| *kind != "lost"),
            "member {member}: {events:?}"
        );
        let revoked: BTreeSet<TopicPartition> = events
            .iter()
            .filter(|(kind, _)| *kind == "revoked")
            .flat_map(|(_, partitions)| partitions.iter().cloned())
            .collect();
        let moved: BTreeSet<TopicPartition> = before[member].difference(&after).cloned().collect();
        assert_eq!(
            revoked, moved,
            "member {member}: only moved partitions are revoked"
        );
    }
    let third_assigned: BTreeSet<TopicPartition> = listeners[2]
        .events()
        .iter()
        .filter(|(kind, _)| *kind == "assigned")
        .flat_map(|(_, partitions)| partitions.iter().cloned())
        .collect();
    assert_eq!(
        third_assigned,
        consumers[2]
            .assignment()
            .into_iter()
            .collect::<BTreeSet<_>>()
    );
    for consumer in &consumers {
        consumer.close().await.expect("close");
    }
}

#[tokio::test]
async fn kip848_commits_survive_close_and_a_new_member_resumes_from_them() {
    let broker = kip848_broker().await;
    create_topic(&broker, "kip848-ledger", 1).await;
    let ledger = tp("kip848-ledger", 0);
    let first = Consumer::connect(kip848_config(&broker, "kip848-accounts"))
        .await
        .expect("connect");
    let cluster = first.cluster().clone();
    produce(&cluster, "kip848-ledger", 0, now_ms(), &values("l", 0..50)).await;
    first
        .subscribe(&["kip848-ledger"])
        .await
        .expect("subscribe");
    poll_records(&first, 50).await;
    first.commit().await.expect("commit with the member epoch");
    produce(&cluster, "kip848-ledger", 0, now_ms(), &values("l", 50..80)).await;
    poll_records(&first, 30).await;
    // Auto-commit is off: closing (leaving with epoch -1) does not commit the last 30.
    first.close().await.expect("close");

    let second = Consumer::connect(kip848_config(&broker, "kip848-accounts"))
        .await
        .expect("connect");
    assert_eq!(
        second
            .committed(std::slice::from_ref(&ledger))
            .await
            .expect("committed"),
        [(ledger.clone(), Some(50))]
    );
    second
        .subscribe(&["kip848-ledger"])
        .await
        .expect("subscribe");
    let records = poll_records(&second, 30).await;
    assert_eq!(records[0].offset, 50);
    second.close().await.expect("close");
}

#[tokio::test]
async fn kip848_a_member_the_restarted_coordinator_forgot_loses_its_partitions_and_rejoins() {
    let mut broker = kip848_broker().await;
    create_topic(&broker, "kip848-restart", 2).await;
    let consumer = Consumer::connect(kip848_config(&broker, "kip848-restart"))
        .await
        .expect("connect");
    let listener = Arc::new(Recorder::default());
    consumer.set_rebalance_listener(listener.clone());
    consumer
        .subscribe(&["kip848-restart"])
        .await
        .expect("subscribe");
    poll_until(&[&consumer], |assignments| assignments[0].len() == 2).await;

    // Group state is not persisted: the next heartbeat is answered UNKNOWN_MEMBER_ID.
    broker.restart().await;
    let deadline = Instant::now() + WAIT;
    while !listener.events().iter().any(|(kind, _)| *kind == "lost") {
        assert!(Instant::now() < deadline, "{:?}", listener.events());
        let _ = consumer.poll(Duration::from_millis(50)).await;
    }
    poll_until(&[&consumer], |assignments| assignments[0].len() == 2).await;
    let kinds: Vec<&str> = listener.events().iter().map(|(kind, _)| *kind).collect();
    assert_eq!(kinds, ["assigned", "lost", "assigned"]);
    consumer.close().await.expect("close");
}

/// A leader with nothing new holds its fetch for `fetch_max_wait`; a record on another leader
/// comes back at once, not after that wait. (It did not, while a poll waited for the answers
/// of every leader: a 3-node cluster's end-to-end latency was a third of the max wait.)
#[tokio::test]
async fn a_record_comes_back_while_other_leaders_hold_their_fetches() {
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().to_owned();
    let cluster = tokio::task::spawn_blocking(move || {
        let (port, controller_port) = (free_port_run(3), free_port_run(3));
        DevCluster::start(&dir, port, controller_port)
    })
    .await
    .expect("start the cluster");
    cluster.runnel(&["topic", "create", "spread", "-p", "3", "-r", "1"]);
    let mut config = ConsumerConfig::new(cluster.bootstrap());
    config.client.retry_backoff = Duration::from_millis(50);
    config.auto_offset_reset = OffsetReset::Latest;
    config.fetch_max_wait = Duration::from_secs(10);
    let consumer = Consumer::connect(config).await.expect("connect");
    let partitions: Vec<TopicPartition> = (0..3).map(|p| tp("spread", p)).collect();
    consumer.assign(partitions).await.expect("assign");
    let mut leaders = BTreeSet::new();
    for partition in 0..3 {
        let (leader, _) = consumer
            .cluster()
            .leader_connection("spread", partition)
            .await
            .expect("leader");
        leaders.insert(leader);
    }
    assert!(
        leaders.len() > 1,
        "the partitions share one leader: {leaders:?}"
    );
    // Positions are looked up and every leader's fetch is out, waiting.
    let none = consumer.poll(Duration::from_secs(1)).await.expect("poll");
    assert!(none.is_empty());

    produce(
        consumer.cluster(),
        "spread",
        0,
        now_ms(),
        &values("s", 0..1),
    )
    .await;
    let sent = Instant::now();
    let records = consumer.poll(Duration::from_secs(20)).await.expect("poll");
    let waited = sent.elapsed();
    assert_eq!(records.iter().map(value).collect::<Vec<_>>(), ["s-0"]);
    assert!(
        waited < Duration::from_secs(5),
        "the record came back after {waited:?}, held by the other leaders' fetches"
    );
}

/// KIP-320: a fetch names the leader epoch the metadata it was routed by gave, so that a
/// leader that has been replaced without knowing it yet refuses it (FENCED_LEADER_EPOCH or
/// UNKNOWN_LEADER_EPOCH) instead of serving from a log that may have diverged. The fake
/// broker reports epoch 7 and looks at what comes.
#[tokio::test]
async fn a_fetch_names_the_leader_epoch_the_metadata_gave() {
    const SERVED: &[(ApiKey, i16)] = &[
        (ApiKey::ApiVersions, 0),
        (ApiKey::Metadata, 9),
        (ApiKey::Fetch, 12),
        (ApiKey::ListOffsets, 7),
    ];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (epochs, mut epochs_seen) = tokio::sync::mpsc::unbounded_channel();
    let fake = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let epochs = epochs.clone();
            tokio::spawn(async move {
                answer_api_versions(&mut stream, SERVED).await;
                while let Some(request) = read_request(&mut stream).await {
                    let (id, version) = (request.correlation_id, request.version);
                    if request.api_key == ApiKey::Metadata as i16 {
                        let partition = MetadataResponsePartition::default()
                            .with_partition_index(0)
                            .with_leader_id(BrokerId(0))
                            .with_leader_epoch(7)
                            .with_replica_nodes(vec![BrokerId(0)])
                            .with_isr_nodes(vec![BrokerId(0)]);
                        let response = MetadataResponse::default()
                            .with_brokers(vec![MetadataResponseBroker::default()
                                .with_node_id(BrokerId(0))
                                .with_host(StrBytes::from_static_str("127.0.0.1"))
                                .with_port(i32::from(port))])
                            .with_topics(vec![MetadataResponseTopic::default()
                                .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
                                .with_partitions(vec![partition])]);
                        answer(&mut stream, id, version, &response).await;
                    } else if request.api_key == ApiKey::Fetch as i16 {
                        let fetch: FetchRequest = request.decode();
                        for topic in &fetch.topics {
                            for partition in &topic.partitions {
                                let _ = epochs.send(partition.current_leader_epoch);
                            }
                        }
                        answer(&mut stream, id, version, &FetchResponse::default()).await;
                    } else {
                        return;
                    }
                }
            });
        }
    });
    let mut config = ConsumerConfig::new(format!("127.0.0.1:{port}"));
    config.fetch_max_wait = Duration::from_millis(10);
    let consumer = Consumer::connect(config).await.expect("connect");
    consumer.assign(vec![tp("t", 0)]).await.expect("assign");
    consumer.seek(&tp("t", 0), 0).await.expect("seek");
    let _ = consumer.poll(Duration::from_millis(200)).await;
    let epoch = tokio::time::timeout(WAIT, epochs_seen.recv())
        .await
        .expect("a fetch came")
        .expect("the fake runs");
    assert_eq!(epoch, 7);
    let _ = consumer.close().await;
    fake.abort();
}
