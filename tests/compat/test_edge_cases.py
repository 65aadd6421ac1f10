"""Corners of the protocol that real clients reach in ordinary use."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import ConfigResource, ConfigSource

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
    wait_for_topic,
    watermarks,
)


def read_from(bootstrap: str, topic: str, partition: int, offset: int, count: int, **config) -> list:
    c = consumer(bootstrap, **config)
    try:
        c.assign([TopicPartition(topic, partition, offset)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < count:
            assert time.monotonic() < deadline, f"read {len(got)} of {count}"
            for message in c.consume(500, timeout=0.5):
                assert message.error() is None, message.error()
                got.append((message.offset(), message.value()))
        return got
    finally:
        c.close()


@pytest.mark.parametrize("acks", [0, 1])
def test_acks_0_and_1(broker, acks):
    # With acks=0 the broker must send no response at all; a stray one would desynchronise the
    # client's correlation ids on that connection.
    topic = unique_topic(f"edge-acks{acks}")
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap, acks=acks)
    log = DeliveryLog()
    for i in range(300):
        p.produce(topic, value=f"a{i}".encode(), partition=0, on_delivery=log)
        if i % 100 == 99:
            p.flush(CLIENT_TIMEOUT_S)
    produce_and_flush(p)
    assert log.failed == []
    if acks == 1:
        assert [offset for _p, offset, *_ in log.acked] == list(range(300))
    deadline = time.monotonic() + 10
    while watermarks(broker.bootstrap, topic, 0)[1] < 300:
        assert time.monotonic() < deadline, "acks=0 records did not all arrive"
        time.sleep(0.1)
    records = consume_to_end(broker.bootstrap, topic, [0])
    assert [(r.offset, r.value) for r in records] == [(i, f"a{i}".encode()) for i in range(300)]


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_fetch_from_the_middle_of_a_batch(broker, codec):
    # The broker returns whole batches; the client drops the records before the asked offset.
    topic = unique_topic(f"edge-mid-{codec}")
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap, **{"compression.type": codec, "linger.ms": 50})
    for i in range(100):
        p.produce(topic, value=f"m{i}".encode(), partition=0)
    produce_and_flush(p)
    assert read_from(broker.bootstrap, topic, 0, 42, 58) == [(i, f"m{i}".encode()) for i in range(42, 100)]


def test_batch_larger_than_fetch_limits_is_still_returned(broker):
    # KIP-74: the first batch is returned even when it exceeds max.partition.fetch.bytes.
    topic = unique_topic("edge-fetch-limit")
    create_topic(broker.bootstrap, topic)
    value = bytes(range(256)) * 1200  # 300 KiB
    p = producer(broker.bootstrap)
    p.produce(topic, value=value, partition=0)
    p.produce(topic, value=b"next", partition=0)
    produce_and_flush(p)
    got = read_from(
        broker.bootstrap,
        topic,
        0,
        0,
        2,
        **{
            "max.partition.fetch.bytes": 1024,
            "fetch.max.bytes": 1024,
            "message.max.bytes": 1000,
            "receive.message.max.bytes": 2_000_000,
        },
    )
    assert got == [(0, value), (1, b"next")]


def test_fetch_beyond_the_end_resets_to_earliest(broker):
    topic = unique_topic("edge-out-of-range")
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap)
    for i in range(10):
        p.produce(topic, value=f"o{i}".encode(), partition=0)
    produce_and_flush(p)
    got = read_from(broker.bootstrap, topic, 0, 1000, 10, **{"auto.offset.reset": "earliest"})
    assert got == [(i, f"o{i}".encode()) for i in range(10)]


def test_fetch_beyond_the_end_reports_out_of_range(broker):
    topic = unique_topic("edge-out-of-range-error")
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap)
    p.produce(topic, value=b"only", partition=0)
    produce_and_flush(p)
    c = consumer(broker.bootstrap, **{"auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, 0, 1000)])
        deadline = time.monotonic() + 20
        errors = []
        while not errors:
            assert time.monotonic() < deadline, "no error for an out-of-range fetch offset"
            for message in c.consume(10, timeout=0.5):
                assert message.error() is not None, f"got a record at {message.offset()}"
                errors.append(message.error())
        assert errors[0].code() == KafkaError._AUTO_OFFSET_RESET, errors[0]
    finally:
        c.close()


def test_idle_consumer_gets_new_records_promptly(broker):
    # A consumer at the end long-polls; a record produced later must reach it without waiting
    # for the fetch's max wait many times over.
    topic = unique_topic("edge-long-poll")
    create_topic(broker.bootstrap, topic)
    c = consumer(broker.bootstrap, **{"fetch.wait.max.ms": 500})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        assert c.consume(10, timeout=1.0) == []
        p = producer(broker.bootstrap, **{"linger.ms": 0})
        sent_at = time.monotonic()
        p.produce(topic, value=b"wake up", partition=0)
        produce_and_flush(p)
        got = []
        while not got:
            assert time.monotonic() - sent_at < 5, "record not delivered to an idle consumer within 5 s"
            got = [m for m in c.consume(10, timeout=0.2) if m.error() is None]
        assert [(m.offset(), m.value()) for m in got] == [(0, b"wake up")]
    finally:
        c.close()


def test_concurrent_producers_to_one_partition(broker):
    topic = unique_topic("edge-concurrent")
    create_topic(broker.bootstrap, topic)
    producers, per_producer = 4, 3000
    logs = [DeliveryLog() for _ in range(producers)]

    def run(index: int) -> None:
        p = producer(broker.bootstrap, **{"linger.ms": 1})
        for i in range(per_producer):
            while True:
                try:
                    p.produce(topic, value=f"p{index}-{i:05d}".encode(), partition=0, on_delivery=logs[index])
                    break
                except BufferError:
                    p.poll(0.05)
            p.poll(0)
        p.flush(60)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(producers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert all(log.failed == [] for log in logs)
    offsets = sorted(offset for log in logs for _p, offset, *_ in log.acked)
    assert offsets == list(range(producers * per_producer)), "acknowledged offsets are not 0..N-1 exactly once"

    records = consume_to_end(broker.bootstrap, topic, [0])
    acked = {offset: value for log in logs for _p, offset, _k, value, _ts in log.acked}
    assert {r.offset: r.value for r in records} == acked
    for index in range(producers):
        mine = [int(r.value.split(b"-")[1]) for r in records if r.value.startswith(f"p{index}-".encode())]
        assert mine == list(range(per_producer)), f"producer {index}'s records out of order"


def test_auto_created_topics_use_num_partitions(broker_factory):
    broker = broker_factory.start("--num-partitions", "3")
    topic = unique_topic("edge-auto-3")
    p = producer(broker.bootstrap)
    p.produce(topic, value=b"first")
    produce_and_flush(p)
    admin = admin_client(broker.bootstrap)
    wait_for_topic(admin, topic, 3)


def test_auto_create_can_be_turned_off(broker_factory):
    broker = broker_factory.start("--auto-create-topics", "false")
    topic = unique_topic("edge-no-auto")
    p = producer(broker.bootstrap, **{"message.timeout.ms": 3000})
    log = DeliveryLog()
    p.produce(topic, value=b"nowhere", on_delivery=log)
    p.flush(15)
    assert log.acked == []
    [(error, _value)] = log.failed
    assert error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._MSG_TIMED_OUT), error
    assert topic not in admin_client(broker.bootstrap).list_topics(timeout=10).topics


def test_broker_wide_default_shows_as_static_broker_config(broker_factory):
    broker = broker_factory.start("--log-segment-bytes", "16384")
    topic = unique_topic("edge-static")
    create_topic(broker.bootstrap, topic)
    admin = admin_client(broker.bootstrap)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=CLIENT_TIMEOUT_S)
    assert configs["segment.bytes"].value == "16384"
    assert ConfigSource(configs["segment.bytes"].source) == ConfigSource.STATIC_BROKER_CONFIG
    assert ConfigSource(configs["retention.ms"].source) == ConfigSource.DEFAULT_CONFIG


def test_consumer_keeps_reading_across_a_broker_restart(broker_factory):
    broker = broker_factory.start()
    topic = unique_topic("edge-restart-consumer")
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap)
    for i in range(100):
        p.produce(topic, value=f"r{i}".encode(), partition=0)
    produce_and_flush(p)
    del p

    c = consumer(broker.bootstrap, **{"reconnect.backoff.max.ms": 200})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 100:
            assert time.monotonic() < deadline
            got.extend((m.offset(), m.value()) for m in c.consume(100, timeout=0.5) if m.error() is None)

        assert broker.terminate() == 0
        broker.restart()
        p = producer(broker.bootstrap)
        for i in range(100, 200):
            p.produce(topic, value=f"r{i}".encode(), partition=0)
        produce_and_flush(p)

        deadline = time.monotonic() + 30
        while len(got) < 200:
            assert time.monotonic() < deadline, f"consumer stuck at {len(got)} records after the restart"
            got.extend((m.offset(), m.value()) for m in c.consume(100, timeout=0.5) if m.error() is None)
        assert got == [(i, f"r{i}".encode()) for i in range(200)]
    finally:
        c.close()
