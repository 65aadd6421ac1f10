"""aiokafka (asyncio, pure Python) against Runnel, with manual assignment."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from conftest import unique_topic
from support import create_topic

TIMEOUT_S = 30


async def produce(bootstrap: str, topic: str, items, **config) -> list:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **config)
    await producer.start()
    try:
        futures = [await producer.send(topic, key=key, value=value, partition=partition) for partition, key, value in items]
        return [await asyncio.wait_for(future, TIMEOUT_S) for future in futures]
    finally:
        await producer.stop()


async def read_to_end(bootstrap: str, topic: str, partitions: list[int], count: int) -> list:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, partition) for partition in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT_S
        while len(records) < count:
            assert loop.time() < deadline, f"read {len(records)} of {count}"
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


def test_round_trip_with_assign(broker):
    topic = unique_topic("aio-round-trip")
    create_topic(broker.bootstrap, topic, partitions=3)
    items = [(i % 3, f"k{i}".encode(), f"v{i}".encode()) for i in range(600)]

    async def scenario():
        metadata = await produce(broker.bootstrap, topic, items)
        records = await read_to_end(broker.bootstrap, topic, [0, 1, 2], len(items))
        return metadata, records

    metadata, records = asyncio.run(scenario())
    assert [(m.partition, m.offset) for m in metadata] == [(i % 3, i // 3) for i in range(600)]
    assert len(records) == 600
    for partition in range(3):
        got = [(r.offset, r.key, r.value) for r in records if r.partition == partition]
        expected = [(i // 3, f"k{i}".encode(), f"v{i}".encode()) for i in range(600) if i % 3 == partition]
        assert got == expected


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_round_trip(broker, codec):
    topic = unique_topic(f"aio-{codec}")
    create_topic(broker.bootstrap, topic, partitions=1)
    items = [(0, None, (f"{codec} {i:04d} " + "dolor sit amet " * 15).encode()) for i in range(300)]

    async def scenario():
        await produce(broker.bootstrap, topic, items, compression_type=codec, linger_ms=20)
        return await read_to_end(broker.bootstrap, topic, [0], len(items))

    records = asyncio.run(scenario())
    assert [(r.offset, r.key, r.value) for r in records] == [(i, None, value) for i, (_p, _k, value) in enumerate(items)]
