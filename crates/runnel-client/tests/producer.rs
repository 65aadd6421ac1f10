//! The producer against the real broker binary: partitioning as the Java client, order per
//! partition (with several batches in flight), every codec, headers and nulls, each `acks`, flush, back-pressure, records too
//! large, a topic deleted under the producer, and many tasks sending at once. Records are read
//! back with raw Fetch requests, so these tests do not depend on the consumer.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{fetch_request, ApiKey, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use runnel_client::consumer::records::{records_from_fetch, IsolationLevel};
use runnel_client::producer::partitioner::murmur2_partition;
use runnel_client::producer::{JsonSerializer, RoundRobinPartitioner, StringSerializer};
use runnel_client::{
    Acks, Admin, ClientError, Cluster, ConsumerRecord, NewTopic, ProduceRecord, Producer,
    ProducerConfig, RecordMetadata,
};
use runnel_record::Compression;
use support::BrokerProcess;

fn config(broker: &BrokerProcess) -> ProducerConfig {
    let mut config = ProducerConfig::with_client(broker.config());
    config.retry_backoff = Duration::from_millis(50);
    config
}

async fn create_topic(broker: &BrokerProcess, name: &str, partitions: i32) -> Admin {
    let admin = Admin::connect(broker.config()).await.expect("admin");
    admin
        .create_topic(NewTopic::new(name, partitions))
        .await
        .expect("create topic");
    admin
}

/// Sends a record of each value to `topic` (no key), then waits for every acknowledgement;
/// the offsets in send order.
async fn send_all(
    producer: &Producer,
    topic: &str,
    values: impl IntoIterator<Item = Vec<u8>>,
) -> Vec<i64> {
    let mut deliveries = Vec::new();
    for value in values {
        let record = ProduceRecord::new(topic).value(value);
        deliveries.push(producer.send(record).await.expect("queued"));
    }
    let mut offsets = Vec::new();
    for delivery in deliveries {
        offsets.push(delivery.await.expect("acknowledged").offset);
    }
    offsets
}

/// Every record of the partition from offset 0, waiting (up to 10 s) until there are `count`.
async fn read_partition(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
    count: usize,
) -> Vec<ConsumerRecord> {
    let topic_id = cluster.topic(topic).await.expect("metadata").id;
    let (_, connection) = cluster
        .leader_connection(topic, partition)
        .await
        .expect("leader");
    let version = connection.version_for(ApiKey::Fetch).expect("Fetch");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut records = Vec::new();
    let mut offset = 0;
    while records.len() < count {
        assert!(
            Instant::now() < deadline,
            "{topic}-{partition}: {} of {count} records after 10 s",
            records.len()
        );
        let request = FetchRequest::default()
            .with_max_wait_ms(100)
            .with_min_bytes(1)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_topic_id(topic_id)
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(8 * 1024 * 1024)])]);
        let response = connection.send(request, version).await.expect("fetch");
        let answer = &response.responses[0].partitions[0];
        assert_eq!(answer.error_code, 0, "fetch {topic}-{partition}");
        let bytes = answer.records.clone().unwrap_or_default();
        let fetched = records_from_fetch(
            topic,
            partition,
            offset,
            &bytes,
            IsolationLevel::ReadUncommitted,
            &[],
        )
        .expect("records decode");
        offset = fetched.next_fetch_offset;
        records.extend(fetched.records);
    }
    assert_eq!(records.len(), count, "{topic}-{partition}: more than sent");
    records
}

#[tokio::test]
async fn ten_thousand_keyed_records_land_where_murmur2_says_in_order() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "keyed", 6).await;
    let producer = Producer::connect(config(&broker)).await.expect("producer");

    let mut deliveries = Vec::new();
    for i in 0..10_000 {
        let key = format!("key-{i}");
        let record = ProduceRecord::new("keyed")
            .key(key.clone())
            .value(format!("value-{i}"));
        deliveries.push((key, producer.send(record).await.expect("send")));
    }
    let mut sent_by_partition: BTreeMap<i32, Vec<(String, RecordMetadata)>> = BTreeMap::new();
    for (key, delivery) in deliveries {
        let metadata = delivery.await.expect("acknowledged");
        assert_eq!(metadata.topic, "keyed");
        assert_eq!(
            metadata.partition,
            murmur2_partition(key.as_bytes(), 6),
            "{key}"
        );
        sent_by_partition
            .entry(metadata.partition)
            .or_default()
            .push((key, metadata));
    }
    assert_eq!(
        sent_by_partition.len(),
        6,
        "10,000 keys reach every partition"
    );

    for (&partition, sent) in &sent_by_partition {
        // Offsets follow send order, one apart: nothing lost, duplicated or reordered.
        let offsets: Vec<i64> = sent.iter().map(|(_, metadata)| metadata.offset).collect();
        assert_eq!(offsets, (0..sent.len() as i64).collect::<Vec<_>>());
        let stored = read_partition(producer.cluster(), "keyed", partition, sent.len()).await;
        for ((key, metadata), record) in sent.iter().zip(&stored) {
            assert_eq!(record.offset, metadata.offset);
            assert_eq!(record.key.as_deref(), Some(key.as_bytes()));
            let value = format!("value-{}", &key["key-".len()..]);
            assert_eq!(record.value.as_deref(), Some(value.as_bytes()));
            assert_eq!(record.timestamp, metadata.timestamp_ms);
        }
    }
    producer.close().await.expect("close");
}

// Several worker threads, so that the requests' tasks race each other as in an application.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_batches_in_flight_to_one_partition_land_in_send_order() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "pipelined", 1).await;
    let mut config = config(&broker);
    // Batches of about ten records, no lingering: many batches of the one partition are
    // ready at once and up to `max_in_flight` of them travel together.
    config.batch_size = 1_500;
    config.linger = Duration::ZERO;
    assert!(config.client.max_in_flight > 1);
    let producer = Producer::connect(config).await.expect("producer");
    let values = (0..5_000u32).map(|index| format!("{index:0>100}").into_bytes());
    let offsets = send_all(&producer, "pipelined", values).await;
    assert_eq!(
        offsets,
        (0..5_000).collect::<Vec<i64>>(),
        "in send order, once each"
    );
    let stored = read_partition(producer.cluster(), "pipelined", 0, 5_000).await;
    for (index, record) in stored.iter().enumerate() {
        let expected = format!("{index:0>100}");
        assert_eq!(
            record.value.as_deref(),
            Some(expected.as_bytes()),
            "offset {index}"
        );
    }
    producer.close().await.expect("close");
}

#[tokio::test]
async fn every_codec_round_trips_headers_and_null_keys_and_values() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "codecs", 1).await;
    let mut total = 0;
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let mut config = config(&broker);
        config.compression = codec;
        let producer = Producer::connect(config).await.expect("producer");
        let mut sent = Vec::new();
        for i in 0..200 {
            let mut record = ProduceRecord::new("codecs")
                .partition(0)
                .timestamp(1_700_000_000_000 + i)
                .header("codec", Some(codec.to_string()))
                .header("index", Some(i.to_string()))
                .header("empty", None::<Bytes>);
            if i % 3 != 0 {
                record = record.key(format!("k{i}"));
            }
            if i % 5 != 0 {
                // Compressible, so the codecs have something to do.
                record = record.value(format!("{i}:").repeat(20));
            }
            sent.push(record.clone());
            producer.send(record).await.expect("send");
        }
        producer.flush().await.expect("flush");
        total += sent.len();
        let all = read_partition(producer.cluster(), "codecs", 0, total).await;
        let ours = &all[total - sent.len()..];
        for (record, stored) in sent.iter().zip(ours) {
            assert_eq!(stored.key, record.key, "{codec}");
            assert_eq!(stored.value, record.value, "{codec}");
            assert_eq!(stored.headers, record.headers, "{codec}");
            assert_eq!(Some(stored.timestamp), record.timestamp_ms, "{codec}");
        }
        producer.close().await.expect("close");
    }
}

#[tokio::test]
async fn acks_none_leader_and_all_each_deliver() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "acks", 1).await;
    let mut expected = 0;
    for acks in [Acks::None, Acks::Leader, Acks::All] {
        let mut config = config(&broker);
        config.acks = acks;
        let producer = Producer::connect(config).await.expect("producer");
        let deliveries: Vec<_> = futures::future::join_all(
            (0..50)
                .map(|i| producer.send(ProduceRecord::new("acks").value(format!("{acks:?}-{i}")))),
        )
        .await;
        let mut offsets = Vec::new();
        for delivery in deliveries {
            let metadata = delivery.expect("send").await.expect("delivered");
            offsets.push(metadata.offset);
        }
        if acks == Acks::None {
            assert!(offsets.iter().all(|&offset| offset == -1), "{offsets:?}");
        } else {
            let first = offsets[0];
            assert_eq!(first, expected);
            assert_eq!(offsets, (first..first + 50).collect::<Vec<_>>(), "{acks:?}");
        }
        expected += 50;
        let stored = read_partition(producer.cluster(), "acks", 0, expected as usize).await;
        let values: Vec<_> = stored[stored.len() - 50..]
            .iter()
            .map(|record| String::from_utf8(record.value.clone().unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(
            values,
            (0..50).map(|i| format!("{acks:?}-{i}")).collect::<Vec<_>>()
        );
        producer.close().await.expect("close");
    }
}

#[tokio::test]
async fn flush_sends_lingering_batches_and_waits_for_them() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "flush", 3).await;
    let mut config = config(&broker);
    config.linger = Duration::from_secs(3600);
    let producer = Producer::connect(config).await.expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..100 {
        let record = ProduceRecord::new("flush").key(format!("k{i}")).value("v");
        deliveries.push(producer.send(record).await.expect("send"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        deliveries.iter_mut().all(|d| d.now_or_never().is_none()),
        "nothing is sent before the linger ends"
    );
    tokio::time::timeout(Duration::from_secs(10), producer.flush())
        .await
        .expect("flush returns")
        .expect("flush");
    for delivery in deliveries {
        let metadata = delivery
            .now_or_never()
            .expect("complete when flush returns")
            .expect("delivered");
        assert!(metadata.offset >= 0);
    }
    // Nothing outstanding: flush returns at once.
    tokio::time::timeout(Duration::from_secs(1), producer.flush())
        .await
        .expect("an empty flush returns at once")
        .expect("flush");
    producer.close().await.expect("close");
}

#[tokio::test]
async fn a_tiny_buffer_pushes_back_and_still_delivers_everything() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "pressure", 4).await;
    let mut config = config(&broker);
    config.buffer_memory = 48 * 1024;
    config.batch_size = 8 * 1024;
    let producer = Producer::connect(config).await.expect("producer");
    let value = vec![b'x'; 1024];
    let mut deliveries = Vec::new();
    // 5 MiB through a 48 KiB buffer: `send` must wait for acknowledgements to free room.
    for i in 0..5_000 {
        let record = ProduceRecord::new("pressure")
            .key(format!("k{i}"))
            .value(value.clone());
        deliveries.push(producer.send(record).await.expect("send"));
    }
    let mut count_by_partition = BTreeMap::<i32, usize>::new();
    for delivery in deliveries {
        let metadata = delivery.await.expect("delivered");
        *count_by_partition.entry(metadata.partition).or_default() += 1;
    }
    assert_eq!(count_by_partition.values().sum::<usize>(), 5_000);
    for (&partition, &count) in &count_by_partition {
        read_partition(producer.cluster(), "pressure", partition, count).await;
    }
    producer.close().await.expect("close");
}

#[tokio::test]
async fn batches_larger_than_the_topic_allows_are_split_not_failed() {
    let broker = BrokerProcess::start(&[]).await;
    let admin = Admin::connect(broker.config()).await.expect("admin");
    admin
        .create_topic(NewTopic::new("small-messages", 1).with_config("max.message.bytes", "3000"))
        .await
        .expect("create topic");
    let mut config = config(&broker);
    // Batches of up to 64 KiB, lingering long enough to fill: far over 3,000 bytes.
    config.linger = Duration::from_millis(50);
    let producer = Producer::connect(config).await.expect("producer");
    let values = (0..40u32).map(|index| vec![b'0' + (index % 10) as u8; 1000]);
    let offsets = send_all(&producer, "small-messages", values).await;
    assert_eq!(
        offsets,
        (0..40).collect::<Vec<i64>>(),
        "in order, each once"
    );
    let cluster = Cluster::connect(broker.config()).await.expect("cluster");
    let stored = read_partition(&cluster, "small-messages", 0, 40).await;
    for (index, record) in stored.iter().enumerate() {
        let expected = vec![b'0' + (index % 10) as u8; 1000];
        assert_eq!(record.value.as_deref(), Some(expected.as_slice()));
    }
    // A single record over the limit still fails, with the broker's error.
    let refused = producer
        .send_and_wait(ProduceRecord::new("small-messages").value(vec![0u8; 4000]))
        .await
        .expect_err("one record too large");
    assert_eq!(
        refused.code(),
        Some(kafka_protocol::error::ResponseError::MessageTooLarge)
    );
    producer.close().await.expect("close");
}

#[tokio::test]
async fn a_record_over_max_request_size_fails_at_once() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "large", 1).await;
    let mut config = config(&broker);
    config.max_request_size = 10_000;
    let producer = Producer::connect(config).await.expect("producer");
    // `send` itself refuses it: nothing is queued, no delivery to wait for.
    let refused = producer
        .send(ProduceRecord::new("large").value(vec![0u8; 20_000]))
        .await
        .map(|_| ())
        .expect_err("too large");
    assert!(
        matches!(&refused, ClientError::InvalidArgument(message) if message.contains("exceeds")),
        "{refused}"
    );
    assert!(!refused.is_retriable());
    // The producer carries on.
    let metadata = producer
        .send_and_wait(ProduceRecord::new("large").value(vec![0u8; 5_000]))
        .await
        .expect("a record that fits");
    assert_eq!(metadata.offset, 0);
    producer.close().await.expect("close");
}

#[tokio::test]
async fn a_topic_deleted_under_the_producer_fails_its_deliveries_with_a_typed_error() {
    let broker = BrokerProcess::start(&["--auto-create-topics", "false"]).await;
    let admin = create_topic(&broker, "doomed", 2).await;
    let mut config = config(&broker);
    config.delivery_timeout = Duration::from_secs(2);
    config.max_block = Duration::from_secs(2);
    let producer = Producer::connect(config).await.expect("producer");
    producer
        .send_and_wait(ProduceRecord::new("doomed").key("a").value("before"))
        .await
        .expect("delivered before the deletion");

    let deleted = admin
        .delete_topics(&["doomed".to_owned()])
        .await
        .expect("delete");
    assert!(deleted[0].1.is_ok());
    let started = Instant::now();
    let mut deliveries = Vec::new();
    for i in 0..20 {
        let record = ProduceRecord::new("doomed")
            .key(format!("k{i}"))
            .value("after");
        match producer.send(record).await {
            Ok(delivery) => deliveries.push(delivery),
            // Once the producer has learnt of the deletion, sends fail (after `max_block`).
            Err(error) => {
                assert_eq!(
                    error.code(),
                    Some(ResponseError::UnknownTopicOrPartition),
                    "{error}"
                );
                break;
            }
        }
    }
    assert!(!deliveries.is_empty(), "the cached metadata lets sends in");
    for delivery in deliveries {
        let error = delivery.await.expect_err("the topic is gone");
        assert!(
            matches!(
                error.code(),
                Some(ResponseError::UnknownTopicOrPartition | ResponseError::UnknownTopicId)
            ),
            "{error}"
        );
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(8),
        "failed after {elapsed:?}, with a delivery timeout of 2 s"
    );
    // The producer is still usable for other topics.
    admin
        .create_topic(NewTopic::new("alive", 1))
        .await
        .expect("create");
    producer
        .send_and_wait(ProduceRecord::new("alive").value("x"))
        .await
        .expect("another topic still works");
    producer.close().await.expect("close");
}

#[tokio::test]
async fn many_tasks_send_at_once() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "concurrent", 6).await;
    let producer = Producer::connect(config(&broker)).await.expect("producer");
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let producer = producer.clone();
            tokio::spawn(async move {
                let mut deliveries = Vec::new();
                for i in 0..500 {
                    let record = ProduceRecord::new("concurrent")
                        .key(format!("{task}-{i}"))
                        .value(format!("{task}-{i}"));
                    deliveries.push(producer.send(record).await.expect("send"));
                }
                let mut acknowledged = Vec::new();
                for delivery in deliveries {
                    acknowledged.push(delivery.await.expect("delivered"));
                }
                acknowledged
            })
        })
        .collect();
    let mut offsets_by_partition = BTreeMap::<i32, Vec<i64>>::new();
    for task in tasks {
        let acknowledged = task.await.expect("task");
        // Within one task, records to a partition keep their order.
        let mut last_by_partition = BTreeMap::new();
        for metadata in acknowledged {
            let last = last_by_partition.insert(metadata.partition, metadata.offset);
            assert!(last < Some(metadata.offset));
            offsets_by_partition
                .entry(metadata.partition)
                .or_default()
                .push(metadata.offset);
        }
    }
    let mut total = 0;
    for (partition, mut offsets) in offsets_by_partition {
        offsets.sort_unstable();
        assert_eq!(
            offsets,
            (0..offsets.len() as i64).collect::<Vec<_>>(),
            "partition {partition}: every offset once"
        );
        total += offsets.len();
    }
    assert_eq!(total, 16 * 500);
    producer.close().await.expect("close");
}

#[tokio::test]
async fn a_closed_producer_refuses_sends_after_delivering_what_it_had() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "closing", 1).await;
    let mut config = config(&broker);
    config.linger = Duration::from_secs(3600);
    let producer = Producer::connect(config).await.expect("producer");
    let delivery = producer
        .send(ProduceRecord::new("closing").value("last words"))
        .await
        .expect("send");
    let clone = producer.clone();
    producer.close().await.expect("close");
    let metadata = delivery
        .now_or_never()
        .expect("close waits for every delivery")
        .expect("delivered");
    assert_eq!(metadata.offset, 0);
    let refused = clone
        .send(ProduceRecord::new("closing").value("too late"))
        .await
        .map(|_| ())
        .expect_err("closed");
    assert!(matches!(refused, ClientError::Closed), "{refused}");
    clone.close().await.expect("closing twice is fine");
}

#[tokio::test]
async fn unknown_topics_are_auto_created_and_null_keys_stick_per_batch() {
    let broker = BrokerProcess::start(&["--num-partitions", "4"]).await;
    let mut config = config(&broker);
    config.batch_size = 1024;
    let producer = Producer::connect(config).await.expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..400 {
        let record = ProduceRecord::new("fresh").value(format!("{i:>50}"));
        deliveries.push(producer.send(record).await.expect("send"));
        // Let the sender take full batches out: a partition with a full batch still queued
        // counts as full for every further append, and the sticky choice moves on at once.
        tokio::task::yield_now().await;
    }
    let mut partitions = Vec::new();
    for delivery in deliveries {
        partitions.push(delivery.await.expect("delivered").partition);
    }
    // Sticky: long runs on one partition, moving on as batches fill, reaching several.
    let switches = partitions.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(switches >= 3, "{switches} switches");
    assert!(switches < 100, "{switches} switches for ~20 batches");
    let mut distinct = partitions.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() >= 2, "{distinct:?}");
    assert_eq!(
        producer
            .cluster()
            .topic("fresh")
            .await
            .unwrap()
            .partitions
            .len(),
        4
    );
    producer.close().await.expect("close");
}

#[tokio::test]
async fn round_robin_and_typed_records() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "typed", 3).await;
    let mut config = config(&broker);
    config.partitioner = Arc::new(RoundRobinPartitioner::new());
    let producer = Producer::connect(config).await.expect("producer");
    let mut partitions = Vec::new();
    for i in 0..6 {
        let record = ProduceRecord::from_typed(
            "typed",
            Some("same-key"),
            &serde_json::json!({ "n": i }),
            &StringSerializer,
            &JsonSerializer,
        )
        .expect("serializes");
        partitions.push(
            producer
                .send_and_wait(record)
                .await
                .expect("sent")
                .partition,
        );
    }
    assert_eq!(partitions, [0, 1, 2, 0, 1, 2]);
    let stored = read_partition(producer.cluster(), "typed", 1, 2).await;
    assert_eq!(stored[1].value.as_deref(), Some(&br#"{"n":4}"#[..]));
    producer.close().await.expect("close");
}

#[tokio::test]
async fn an_explicit_partition_the_topic_lacks_is_refused() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "small", 2).await;
    let producer = Producer::connect(config(&broker)).await.expect("producer");
    let refused = producer
        .send(ProduceRecord::new("small").partition(2).value("x"))
        .await
        .map(|_| ())
        .expect_err("no partition 2");
    assert!(
        matches!(&refused, ClientError::InvalidArgument(message) if message.contains("2 partitions")),
        "{refused}"
    );
    producer.close().await.expect("close");
}

/// `cargo test --release -p runnel-client --test producer -- --ignored --nocapture throughput`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn throughput_of_100k_1kib_records_acks_1() {
    let broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "bench", 6).await;
    let mut config = config(&broker);
    config.acks = Acks::Leader;
    let producer = Producer::connect(config).await.expect("producer");
    let value = Bytes::from(vec![b'x'; 1024]);
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(100_000);
    for i in 0..100_000u32 {
        let record = ProduceRecord::new("bench")
            .key(i.to_be_bytes().to_vec())
            .value(value.clone());
        deliveries.push(producer.send(record).await.expect("send"));
    }
    for delivery in deliveries {
        delivery.await.expect("delivered");
    }
    let elapsed = started.elapsed();
    println!(
        "100,000 x 1 KiB, acks=1: {elapsed:?}, {:.0} records/s, {:.1} MiB/s",
        100_000.0 / elapsed.as_secs_f64(),
        100_000.0 / 1024.0 / elapsed.as_secs_f64()
    );
    producer.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_sent_while_the_broker_is_down_are_delivered_in_order_after_it_returns() {
    let mut broker = BrokerProcess::start(&[]).await;
    create_topic(&broker, "outage", 2).await;
    let mut config = config(&broker);
    // A few records per batch: each partition has several batches to send, and in flight,
    // while the broker is away and when it returns.
    config.batch_size = 200;
    let producer = Producer::connect(config).await.expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..100 {
        let record = ProduceRecord::new("outage")
            .key(format!("k{}", i % 7))
            .value(i.to_string());
        deliveries.push(producer.send(record).await.expect("send"));
    }
    producer.flush().await.expect("flush");
    broker.kill();
    for i in 100..200 {
        let record = ProduceRecord::new("outage")
            .key(format!("k{}", i % 7))
            .value(i.to_string());
        deliveries.push(producer.send(record).await.expect("send while down"));
    }
    // Let the sender fail and retry a few times against the dead address.
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker.restart().await;
    let mut last_by_partition = BTreeMap::new();
    for delivery in deliveries {
        let metadata = tokio::time::timeout(Duration::from_secs(20), delivery)
            .await
            .expect("delivered within 20 s of the restart")
            .expect("delivered");
        let last = last_by_partition.insert(metadata.partition, metadata.offset);
        assert_eq!(
            metadata.offset,
            last.map_or(0, |last| last + 1),
            "partition {}: in order, no gaps",
            metadata.partition
        );
    }
    producer.close().await.expect("close");
}
