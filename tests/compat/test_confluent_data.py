"""confluent-kafka producer and consumer (manual assignment) against Runnel."""

from __future__ import annotations

import os
import time
from collections import defaultdict

import pytest
from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec

from conftest import unique_topic
from support import (
    CLIENT_TIMEOUT_S,
    DeliveryLog,
    admin_client,
    consume_to_end,
    consumer,
    create_topic,
    produce_and_flush,
    producer,
    watermarks,
)


def produce_all(p, topic: str, items, **kwargs) -> DeliveryLog:
    """Produce (key, value) pairs, keeping the local queue drained, and wait for every ack."""
    log = DeliveryLog()
    for key, value in items:
        while True:
            try:
                p.produce(topic, key=key, value=value, on_delivery=log, **kwargs)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    produce_and_flush(p)
    assert log.failed == [], f"{len(log.failed)} deliveries failed, first: {log.failed[:3]}"
    return log


def test_twenty_thousand_keyed_records_round_trip(broker):
    topic = unique_topic("cf-keyed")
    partitions = list(range(6))
    create_topic(broker.bootstrap, topic, partitions=6)
    count = 20_000
    items = [(f"key-{i % 500}".encode(), f"value-{i}".encode()) for i in range(count)]
    log = produce_all(producer(broker.bootstrap, acks="all"), topic, items)
    assert len(log.acked) == count

    acked_at = {(partition, offset): value for partition, offset, _key, value, _ts in log.acked}
    assert len(acked_at) == count, "two acknowledgements share one (partition, offset)"

    records = consume_to_end(broker.bootstrap, topic, partitions)
    assert len(records) == count
    values = [r.value for r in records]
    assert len(set(values)) == count, "a record was read twice"
    assert {(r.partition, r.offset): r.value for r in records} == acked_at

    partition_of_key: dict[bytes, int] = {}
    by_partition: dict[int, list] = defaultdict(list)
    for record in records:
        assert partition_of_key.setdefault(record.key, record.partition) == record.partition, record.key
        by_partition[record.partition].append(record)
    assert sorted(by_partition) == partitions, "the partitioner should spread 500 keys over all 6"
    for partition, partition_records in by_partition.items():
        assert [r.offset for r in partition_records] == list(range(len(partition_records)))
        produce_order = [int(r.value.split(b"-")[1]) for r in partition_records]
        assert produce_order == sorted(produce_order), f"partition {partition} out of produce order"
        assert watermarks(broker.bootstrap, topic, partition) == (0, len(partition_records))


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_round_trip(broker, codec):
    topic = unique_topic(f"cf-{codec}")
    create_topic(broker.bootstrap, topic, partitions=2)
    items = [(f"k{i % 10}".encode(), (f"{codec}-{i:05d}-" + "payload " * 30).encode()) for i in range(2000)]
    log = produce_all(producer(broker.bootstrap, **{"compression.type": codec}), topic, items)
    records = consume_to_end(broker.bootstrap, topic, [0, 1])
    assert sorted((r.key, r.value) for r in records) == sorted(items)
    assert {(r.partition, r.offset) for r in records} == {(a[0], a[1]) for a in log.acked}


def test_headers_round_trip_in_order_with_null_value(broker):
    topic = unique_topic("cf-headers")
    create_topic(broker.bootstrap, topic)
    headers = [("h1", b"v1"), ("empty", b""), ("nothing", None), ("h1", b"second value for h1"), ("\u00fcml", b"\x00\xff")]
    p = producer(broker.bootstrap)
    p.produce(topic, key=b"k", value=b"with headers", headers=headers)
    p.produce(topic, key=b"k", value=b"without headers")
    produce_and_flush(p)
    first, second = consume_to_end(broker.bootstrap, topic, [0])
    assert first.value == b"with headers"
    assert list(first.headers) == headers
    assert second.value == b"without headers"
    assert second.headers is None


def test_null_and_empty_keys_and_values(broker):
    topic = unique_topic("cf-nulls")
    create_topic(broker.bootstrap, topic)
    cases = [(None, None), (b"key-only", None), (None, b"value-only"), (b"k", b"v")]
    p = producer(broker.bootstrap)
    for key, value in cases:
        p.produce(topic, key=key, value=value, partition=0)
    produce_and_flush(p)
    records = consume_to_end(broker.bootstrap, topic, [0])
    assert [(r.key, r.value) for r in records] == cases


def test_value_of_900_kib(broker):
    topic = unique_topic("cf-large")
    create_topic(broker.bootstrap, topic)
    value = os.urandom(900 * 1024)
    p = producer(broker.bootstrap, **{"message.max.bytes": 2_000_000})
    log = produce_all(p, topic, [(b"big", value), (b"small", b"after the big one")])
    assert [(a[0], a[1]) for a in log.acked] == [(0, 0), (0, 1)]
    records = consume_to_end(broker.bootstrap, topic, [0])
    assert [r.key for r in records] == [b"big", b"small"]
    assert records[0].value == value
    assert records[1].value == b"after the big one"


def produce_with_timestamps(bootstrap: str, topic: str, base_ms: int, count: int) -> None:
    p = producer(bootstrap)
    for i in range(count):
        p.produce(topic, value=f"t{i}".encode(), partition=0, timestamp=base_ms + i * 1000)
    produce_and_flush(p)


def test_create_time_timestamps_round_trip(broker):
    topic = unique_topic("cf-create-time")
    create_topic(broker.bootstrap, topic)
    base_ms = int(time.time() * 1000) - 3_600_000
    produce_with_timestamps(broker.bootstrap, topic, base_ms, 10)
    records = consume_to_end(broker.bootstrap, topic, [0])
    assert [(r.timestamp_type, r.timestamp_ms) for r in records] == [
        (TIMESTAMP_CREATE_TIME, base_ms + i * 1000) for i in range(10)
    ]


def test_offsets_for_times(broker):
    topic = unique_topic("cf-offsets-for-times")
    create_topic(broker.bootstrap, topic)
    base_ms = int(time.time() * 1000) - 3_600_000
    produce_with_timestamps(broker.bootstrap, topic, base_ms, 10)
    c = consumer(broker.bootstrap)
    try:
        for query_ms, expected_offset in (
            (base_ms - 5000, 0),  # before the first record: the first record
            (base_ms, 0),  # exactly the first timestamp
            (base_ms + 3500, 4),  # between records 3 and 4: the first at or after it
            (base_ms + 9000, 9),  # exactly the last
            (base_ms + 9001, -1),  # after the last: no such offset
        ):
            [answer] = c.offsets_for_times([TopicPartition(topic, 0, query_ms)], timeout=10)
            assert answer.error is None
            assert answer.offset == expected_offset, f"timestamp {query_ms - base_ms} ms after base"
    finally:
        c.close()


def test_list_offsets_and_watermarks(broker):
    topic = unique_topic("cf-list-offsets")
    create_topic(broker.bootstrap, topic, partitions=2)
    base_ms = int(time.time() * 1000) - 3_600_000
    produce_with_timestamps(broker.bootstrap, topic, base_ms, 10)

    assert watermarks(broker.bootstrap, topic, 0) == (0, 10)
    assert watermarks(broker.bootstrap, topic, 1) == (0, 0)

    admin = admin_client(broker.bootstrap)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    for spec, partition, expected in (
        (OffsetSpec.earliest(), tp0, 0),
        (OffsetSpec.latest(), tp0, 10),
        (OffsetSpec.for_timestamp(base_ms + 2500), tp0, 3),
        (OffsetSpec.latest(), tp1, 0),
    ):
        [future] = admin.list_offsets({partition: spec}).values()
        assert future.result(timeout=CLIENT_TIMEOUT_S).offset == expected, (spec, partition)


def test_list_offsets_max_timestamp(broker):
    topic = unique_topic("cf-max-timestamp")
    create_topic(broker.bootstrap, topic)
    base_ms = int(time.time() * 1000) - 3_600_000
    p = producer(broker.bootstrap)
    # The largest timestamp is in the middle of the log.
    for i, delta in enumerate((0, 1000, 9000, 2000, 3000)):
        p.produce(topic, value=f"m{i}".encode(), partition=0, timestamp=base_ms + delta)
    produce_and_flush(p)
    admin = admin_client(broker.bootstrap)
    [future] = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.max_timestamp()}).values()
    result = future.result(timeout=CLIENT_TIMEOUT_S)
    assert (result.offset, result.timestamp) == (2, base_ms + 9000)


def test_log_append_time_topic_stamps_broker_time(broker):
    topic = unique_topic("cf-log-append")
    create_topic(broker.bootstrap, topic, config={"message.timestamp.type": "LogAppendTime"})
    client_ms = 1_000_000_000_000  # 2001: far from the broker's clock
    before_ms = int(time.time() * 1000)
    p = producer(broker.bootstrap)
    log = DeliveryLog()
    for i in range(5):
        p.produce(topic, value=f"a{i}".encode(), partition=0, timestamp=client_ms + i, on_delivery=log)
    produce_and_flush(p)
    after_ms = int(time.time() * 1000)

    for _partition, _offset, _key, _value, (ts_type, ts_ms) in log.acked:
        assert ts_type == TIMESTAMP_LOG_APPEND_TIME
        assert before_ms - 1000 <= ts_ms <= after_ms + 1000
    records = consume_to_end(broker.bootstrap, topic, [0])
    assert len(records) == 5
    for record in records:
        assert record.timestamp_type == TIMESTAMP_LOG_APPEND_TIME
        assert before_ms - 1000 <= record.timestamp_ms <= after_ms + 1000, record


def test_consumer_seek_to_middle_offset(broker):
    topic = unique_topic("cf-seek")
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap)
    for i in range(100):
        p.produce(topic, value=f"s{i}".encode(), partition=0)
    produce_and_flush(p)
    c: Consumer = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, 42)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 58 and time.monotonic() < deadline:
            for message in c.consume(100, timeout=0.5):
                assert message.error() is None, message.error()
                got.append((message.offset(), message.value()))
        assert got == [(i, f"s{i}".encode()) for i in range(42, 100)]
    finally:
        c.close()
