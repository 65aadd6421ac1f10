"""Small helpers over confluent-kafka shared by the compat tests.

Consumers here always use manual assignment (`assign`), never `subscribe`: Runnel has no
consumer-group APIs yet. librdkafka still wants a `group.id`; it is never used for commits.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CLIENT_TIMEOUT_S = 30.0

# librdkafka logs through Python logging, so pytest shows its lines only for a failing test.
LIBRDKAFKA_LOGGER = logging.getLogger("librdkafka")


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple | None
    timestamp_type: int
    timestamp_ms: int


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000}, logger=LIBRDKAFKA_LOGGER)


def producer(bootstrap: str, **config) -> Producer:
    return Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, **config}, logger=LIBRDKAFKA_LOGGER
    )


def consumer(bootstrap: str, **config) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "runnel-compat-unused",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            **config,
        },
        logger=LIBRDKAFKA_LOGGER,
    )


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict | None = None) -> None:
    admin = admin_client(bootstrap)
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=10,
        request_timeout=15,
    )
    futures[name].result(timeout=CLIENT_TIMEOUT_S)
    wait_for_topic(admin, name, partitions)


def wait_for_topic(admin: AdminClient, name: str, partitions: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    seen = None
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=10).topics
        meta = topics.get(name)
        if meta is not None and meta.error is None and len(meta.partitions) == partitions:
            if all(p.leader >= 0 for p in meta.partitions.values()):
                return
        seen = meta
        time.sleep(0.1)
    raise AssertionError(f"topic {name} with {partitions} partitions not in metadata; last seen {seen}")


def produce_and_flush(p: Producer, timeout_s: float = CLIENT_TIMEOUT_S) -> None:
    remaining = p.flush(timeout_s)
    assert remaining == 0, f"{remaining} messages still undelivered after {timeout_s}s"


class DeliveryLog:
    """Delivery callback that records every acknowledgement and every failure."""

    def __init__(self) -> None:
        self.acked: list[tuple[int, int, bytes | None, bytes | None, tuple]] = []
        self.failed: list[tuple[KafkaError, bytes | None]] = []

    def __call__(self, error, message) -> None:
        if error is not None:
            self.failed.append((error, message.value()))
        else:
            self.acked.append(
                (message.partition(), message.offset(), message.key(), message.value(), message.timestamp())
            )


def watermarks(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()


def consume_to_end(
    bootstrap: str,
    topic: str,
    partitions: list[int],
    timeout_s: float = 60.0,
    **config,
) -> list[Record]:
    """Read every partition from its beginning up to the high watermark seen at the start."""
    c = consumer(bootstrap, **config)
    try:
        ends = {}
        # Offset of the last record read per partition; the log may start above 0.
        position = {}
        for partition in partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
            ends[partition] = high
            position[partition] = low - 1
        c.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in partitions])
        records: list[Record] = []

        def done() -> bool:
            return all(position[p] + 1 >= ends[p] for p in partitions)

        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out reading {topic}: positions {position}, high watermarks {ends}, "
                    f"{len(records)} records read"
                )
            for message in c.consume(num_messages=1000, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(error)
                headers = message.headers()
                records.append(
                    Record(
                        partition=message.partition(),
                        offset=message.offset(),
                        key=message.key(),
                        value=message.value(),
                        headers=tuple(headers) if headers is not None else None,
                        timestamp_type=message.timestamp()[0],
                        timestamp_ms=message.timestamp()[1],
                    )
                )
                position[message.partition()] = message.offset()
        return records
    finally:
        c.close()
