"""Log compaction against the real broker: what a consumer reading from the start sees.

A compacted topic with small segments gets many versions of a few keys, tombstones (some
older than delete.retention.ms), and an aborted transaction; once the cleaner has run, a
reader from the beginning finds the latest value of every key at the offset it was written
to, no tombstone older than delete.retention.ms, and nothing of the aborted transaction, even
read_uncommitted. The broker then restarts onto the compacted log.
"""

from __future__ import annotations

import time

from confluent_kafka import Producer

from conftest import unique_topic
from support import LIBRDKAFKA_LOGGER, DeliveryLog, consume_to_end, create_topic, producer

KEYS = 40
VERSIONS = 25
RETENTION_MS = 60_000


def test_a_compacted_topic_keeps_the_latest_value_of_every_key(broker_factory):
    broker = broker_factory.start("--log-cleaner-backoff-ms", 200, "--flush-ms", 100)
    topic = unique_topic("compacted")
    create_topic(
        broker.bootstrap,
        topic,
        partitions=1,
        config={
            "cleanup.policy": "compact",
            "segment.bytes": "4096",
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": str(RETENTION_MS),
        },
    )
    p = producer(broker.bootstrap, **{"linger.ms": 0})
    log = DeliveryLog()
    now = int(time.time() * 1000)
    for version in range(VERSIONS):
        for key in range(KEYS):
            p.produce(topic, key=f"k{key}".encode(), value=f"v{version}".encode(), partition=0, on_delivery=log)
        p.flush(30)
    # Deletes: keys 0-4 long ago (the cleaner drops those tombstones), 5-9 just now (kept).
    for key in range(10):
        stamp = now - 2 * RETENTION_MS if key < 5 else now
        p.produce(topic, key=f"k{key}".encode(), value=None, partition=0, timestamp=stamp, on_delivery=log)
    p.flush(30)
    # An aborted transaction rewriting keys 10-19.
    txn = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": f"{topic}-txn"}, logger=LIBRDKAFKA_LOGGER)
    txn.init_transactions(30)
    txn.begin_transaction()
    for key in range(10, 20):
        txn.produce(topic, key=f"k{key}".encode(), value=b"aborted", partition=0)
    txn.flush(30)
    txn.abort_transaction(30)
    # Filler, so that everything above lands in sealed (cleanable) segments.
    for index in range(200):
        p.produce(topic, key=b"filler", value=f"{index:04d}".encode() * 8, partition=0, on_delivery=log)
    p.flush(30)
    assert not log.failed

    latest = {}
    for partition, offset, key, value, _ in log.acked:
        if key != b"filler":
            latest[key] = (offset, value)
    expected = {
        key: (offset, value)
        for key, (offset, value) in latest.items()
        if not (value is None and int(key[1:]) < 5)
    }

    def compacted():
        records = consume_to_end(broker.bootstrap, topic, [0], **{"isolation.level": "read_uncommitted"})
        return {r.key: (r.offset, r.value) for r in records if r.key != b"filler"}, records

    deadline = time.monotonic() + 60
    seen, records = compacted()
    while seen != expected and time.monotonic() < deadline:
        time.sleep(0.5)
        seen, records = compacted()
    assert seen == expected, f"after compaction: {len(seen)} keys, expected {len(expected)}"
    keyed = [r for r in records if r.key != b"filler"]
    assert len(keyed) == len(expected), "an older version of a key, or an aborted record, is still there"
    assert all(r.value != b"aborted" for r in records)

    # The broker restarts onto the compacted log and serves the same.
    broker.terminate()
    broker.start()
    assert compacted()[0] == expected
