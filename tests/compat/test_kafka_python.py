"""kafka-python (pure Python; its own choice of API versions) against Runnel."""

from __future__ import annotations

import os
import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from conftest import unique_topic

TIMEOUT_S = 30


def admin(broker) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)


def create_topic(broker, name: str, partitions: int) -> None:
    client = admin(broker)
    try:
        client.create_topics({name: {"num_partitions": partitions, "replication_factor": 1}}, wait_for_metadata=True)
    finally:
        client.close()


def new_producer(broker, **config) -> KafkaProducer:
    # kafka-python 3 turns idempotence on by default (test_default_producer_is_idempotent);
    # these tests check the plain produce path, as older clients and librdkafka's default use it.
    return KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=False, **config)


def send_all(producer: KafkaProducer, sends) -> list:
    """Send (topic, kwargs) pairs and wait for each acknowledgement; raise the first failure."""
    futures = [producer.send(topic, **kwargs) for topic, kwargs in sends]
    producer.flush(TIMEOUT_S)
    return [future.get(timeout=TIMEOUT_S) for future in futures]


def read_partition(broker, topic: str, partition: int, count: int) -> list:
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        records = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(records) < count:
            assert time.monotonic() < deadline, f"read {len(records)} of {count} records"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def test_admin_creates_and_describes_topic(broker):
    topic = unique_topic("kp-admin")
    create_topic(broker, topic, partitions=3)
    client = admin(broker)
    try:
        assert topic in client.list_topics()
        [described] = client.describe_topics([topic])
        assert described["error_code"] == 0
        assert described["name"] == topic
        partitions = sorted(described["partitions"], key=lambda p: p["partition_index"])
        assert [p["partition_index"] for p in partitions] == [0, 1, 2]
        assert all(p["leader_id"] == 0 for p in partitions)
    finally:
        client.close()


def test_admin_describe_log_dirs_lists_partitions(broker):
    topic = unique_topic("kp-logdirs")
    create_topic(broker, topic, partitions=2)
    producer = new_producer(broker)
    send_all(producer, [(topic, {"value": b"x" * 100, "partition": 0})] * 50)
    producer.close()

    client = admin(broker)
    try:
        [per_broker] = client.describe_log_dirs(topic_partitions=[topic])
        assert per_broker["broker"] == 0
        log_dirs = per_broker["log_dirs"]
        assert log_dirs and all(d["error_code"] == 0 for d in log_dirs)
        assert any(d["log_dir"] == str(broker.data_dir) or d["log_dir"].startswith(str(broker.data_dir)) for d in log_dirs), log_dirs
        sizes = {
            (t["name"], p["partition_index"]): p["partition_size"]
            for d in log_dirs
            for t in d["topics"]
            for p in t["partitions"]
        }
        assert set(sizes) == {(topic, 0), (topic, 1)}
        assert sizes[(topic, 0)] > 50 * 100
        assert sizes[(topic, 1)] == 0
    finally:
        client.close()


def test_producer_consumer_round_trip_with_assign(broker):
    topic = unique_topic("kp-round-trip")
    create_topic(broker, topic, partitions=2)
    producer = new_producer(broker, linger_ms=5)
    sends = [
        (topic, {"key": f"k{i}".encode(), "value": f"v{i}".encode(), "partition": i % 2, "headers": [("n", str(i).encode())]})
        for i in range(400)
    ]
    metadata = send_all(producer, sends)
    producer.close()
    assert [(m.partition, m.offset) for m in metadata] == [(i % 2, i // 2) for i in range(400)]

    for partition in (0, 1):
        records = read_partition(broker, topic, partition, 200)
        expected = [i for i in range(400) if i % 2 == partition]
        assert [r.offset for r in records] == list(range(200))
        assert [(r.key, r.value) for r in records] == [(f"k{i}".encode(), f"v{i}".encode()) for i in expected]
        assert [list(r.headers) for r in records] == [[("n", str(i).encode())] for i in expected]


def test_null_versus_empty_key_and_value(broker):
    topic = unique_topic("kp-nulls")
    create_topic(broker, topic, partitions=1)
    # kafka-python refuses a record with neither key nor value; confluent-kafka's test covers it.
    cases = [(b"", b""), (None, b""), (b"", None), (b"key", None), (b"k", b"v")]
    producer = new_producer(broker)
    send_all(producer, [(topic, {"key": key, "value": value, "partition": 0}) for key, value in cases])
    producer.close()
    records = read_partition(broker, topic, 0, len(cases))
    assert [(r.key, r.value) for r in records] == cases


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_round_trip(broker, codec):
    topic = unique_topic(f"kp-{codec}")
    create_topic(broker, topic, partitions=1)
    producer = new_producer(broker, compression_type=codec, linger_ms=20)
    values = [(f"{codec} {i:04d} " + "lorem ipsum " * 20).encode() for i in range(500)] + [os.urandom(3000)]
    send_all(producer, [(topic, {"value": value, "partition": 0}) for value in values])
    producer.close()
    records = read_partition(broker, topic, 0, len(values))
    assert [r.value for r in records] == values
    assert [r.offset for r in records] == list(range(len(values)))


def test_default_producer_is_idempotent(broker):
    topic = unique_topic("kp-idempotent")
    create_topic(broker, topic, partitions=1)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        [metadata] = send_all(producer, [(topic, {"value": b"hello", "partition": 0})])
        assert metadata.offset == 0
    finally:
        producer.close(timeout=5)
    [record] = read_partition(broker, topic, 0, 1)
    assert record.value == b"hello"
