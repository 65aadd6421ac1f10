//! The transactional producer against the real broker binary: what read_committed and
//! read_uncommitted consumers (ours) see of committed and aborted transactions, fencing as a
//! typed error, and offsets committed in a transaction.

mod support;

use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use runnel_client::{
    Admin, ClientError, Consumer, ConsumerConfig, ConsumerGroupMetadata, IsolationLevel, NewTopic,
    OffsetReset, ProduceRecord, Producer, ProducerConfig, TopicPartition,
};
use support::BrokerProcess;

const WAIT: Duration = Duration::from_secs(20);

async fn transactional(broker: &BrokerProcess, id: &str) -> Producer {
    let mut config = ProducerConfig::with_client(broker.config());
    config.transactional_id = Some(id.to_owned());
    config.retry_backoff = Duration::from_millis(50);
    config.max_block = Duration::from_secs(20);
    let producer = Producer::connect(config).await.expect("connect");
    producer
        .init_transactions()
        .await
        .expect("init_transactions");
    producer
}

async fn send(producer: &Producer, topic: &str, prefix: &str, count: usize) -> Vec<String> {
    let mut values = Vec::new();
    for index in 0..count {
        let value = format!("{prefix}-{index}");
        let record = ProduceRecord::new(topic)
            .partition((index % 2) as i32)
            .value(value.clone());
        producer.send(record).await.expect("send");
        values.push(value);
    }
    values
}

/// Every value of the topic's two partitions, as a consumer at `isolation` reads them up to
/// the end it finds.
async fn read_all(broker: &BrokerProcess, topic: &str, isolation: IsolationLevel) -> Vec<String> {
    let mut config = ConsumerConfig::new(broker.address());
    config.client = broker.config();
    config.isolation_level = isolation;
    config.auto_offset_reset = OffsetReset::Earliest;
    config.fetch_max_wait = Duration::from_millis(100);
    let consumer = Consumer::connect(config).await.expect("consumer");
    let partitions: Vec<TopicPartition> = (0..2).map(|p| TopicPartition::new(topic, p)).collect();
    consumer.assign(partitions.clone()).await.expect("assign");
    consumer
        .seek_to_end(&partitions)
        .await
        .expect("seek to end");
    let mut ends = Vec::new();
    for tp in &partitions {
        ends.push(consumer.position(tp).await.expect("end"));
    }
    consumer.seek_to_beginning(&partitions).await.expect("seek");
    let deadline = Instant::now() + WAIT;
    let mut values = Vec::new();
    loop {
        let mut done = true;
        for (tp, end) in partitions.iter().zip(&ends) {
            done &= consumer.position(tp).await.expect("position") >= *end;
        }
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "did not reach the end in time");
        for record in consumer
            .poll(Duration::from_millis(200))
            .await
            .expect("poll")
        {
            values.push(String::from_utf8(record.value.expect("value").to_vec()).expect("utf-8"));
        }
    }
    values.sort();
    values
}

#[tokio::test]
async fn read_committed_sees_committed_transactions_only() {
    let broker = BrokerProcess::start(&[]).await;
    let admin = Admin::connect(broker.config()).await.expect("admin");
    admin
        .create_topic(NewTopic::new("ledger", 2))
        .await
        .expect("topic");
    let producer = transactional(&broker, "ledger-writer").await;

    producer.begin_transaction().await.expect("begin");
    let mut committed = send(&producer, "ledger", "committed", 6).await;
    producer.commit_transaction().await.expect("commit");
    producer.begin_transaction().await.expect("begin");
    let aborted = send(&producer, "ledger", "aborted", 6).await;
    producer.abort_transaction().await.expect("abort");

    committed.sort();
    let mut everything = [committed.clone(), aborted].concat();
    everything.sort();
    assert_eq!(
        read_all(&broker, "ledger", IsolationLevel::ReadCommitted).await,
        committed
    );
    assert_eq!(
        read_all(&broker, "ledger", IsolationLevel::ReadUncommitted).await,
        everything
    );

    // Outside a transaction a transactional producer refuses to send.
    let refused = producer
        .send(ProduceRecord::new("ledger").value("stray"))
        .await;
    assert!(
        matches!(refused, Err(ClientError::InvalidArgument(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_second_instance_fences_the_first_with_a_typed_error() {
    let broker = BrokerProcess::start(&[]).await;
    let admin = Admin::connect(broker.config()).await.expect("admin");
    admin
        .create_topic(NewTopic::new("orders", 2))
        .await
        .expect("topic");
    let zombie = transactional(&broker, "order-writer").await;
    zombie.begin_transaction().await.expect("begin");
    send(&zombie, "orders", "zombie", 2).await;
    zombie.flush().await.expect("flush");

    let successor = transactional(&broker, "order-writer").await;
    successor.begin_transaction().await.expect("begin");
    let kept = send(&successor, "orders", "successor", 2).await;
    successor.commit_transaction().await.expect("commit");

    let fenced = zombie.commit_transaction().await;
    assert!(
        matches!(fenced, Err(ClientError::ProducerFenced(_))),
        "{fenced:?}"
    );
    let again = zombie.begin_transaction().await;
    assert!(
        matches!(again, Err(ClientError::ProducerFenced(_))),
        "fencing is for good: {again:?}"
    );
    let mut kept = kept;
    kept.sort();
    assert_eq!(
        read_all(&broker, "orders", IsolationLevel::ReadCommitted).await,
        kept
    );
}

#[tokio::test]
async fn offsets_sent_to_a_transaction_count_only_if_it_commits() {
    let broker = BrokerProcess::start(&[]).await;
    let admin = Admin::connect(broker.config()).await.expect("admin");
    admin
        .create_topic(NewTopic::new("input", 2))
        .await
        .expect("topic");
    admin
        .create_topic(NewTopic::new("output", 2))
        .await
        .expect("topic");
    let producer = transactional(&broker, "processor").await;
    let group = ConsumerGroupMetadata {
        group_id: "processors".to_owned(),
        generation_id: -1,
        member_id: String::new(),
        group_instance_id: None,
    };
    let input = TopicPartition::new("input", 0);

    producer.begin_transaction().await.expect("begin");
    send(&producer, "output", "out", 2).await;
    producer
        .send_offsets_to_transaction(&[(input.clone(), 7)], &group)
        .await
        .expect("offsets");
    producer.abort_transaction().await.expect("abort");
    assert_eq!(
        group_offset(&broker, &input).await,
        None,
        "aborted offsets vanish"
    );

    producer.begin_transaction().await.expect("begin");
    send(&producer, "output", "out", 2).await;
    producer
        .send_offsets_to_transaction(&[(input.clone(), 9)], &group)
        .await
        .expect("offsets");
    // Not before the commit: a reader asking for stable offsets is told to wait (KIP-447).
    let unstable = group_committed(&broker, &input).await;
    assert!(
        matches!(&unstable, Err(error) if error.code() == Some(ResponseError::UnstableOffsetCommit)),
        "{unstable:?}"
    );
    producer.commit_transaction().await.expect("commit");
    assert_eq!(group_offset(&broker, &input).await, Some(9));
}

async fn group_offset(broker: &BrokerProcess, tp: &TopicPartition) -> Option<i64> {
    group_committed(broker, tp).await.expect("committed")
}

async fn group_committed(
    broker: &BrokerProcess,
    tp: &TopicPartition,
) -> runnel_client::Result<Option<i64>> {
    let mut config = ConsumerConfig::new(broker.address());
    config.client = broker.config();
    config.group_id = Some("processors".to_owned());
    config.isolation_level = IsolationLevel::ReadCommitted;
    let consumer = Consumer::connect(config).await.expect("consumer");
    let committed = consumer.committed(std::slice::from_ref(tp)).await?;
    Ok(committed.into_iter().next().and_then(|(_, offset)| offset))
}
