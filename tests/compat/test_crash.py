"""Crash and restart: every acknowledged record survives kill -9 and SIGTERM.

Each test owns its broker (function scope) and restarts it on the same data directory.
The producer is not idempotent and does not retry (`retries=0`), so a record that was in
flight at the crash is either in the log once or not at all, and an acknowledged record must
be in the log exactly once, at the offset the acknowledgement named.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import ConfigResource

from conftest import unique_topic
from support import DeliveryLog, admin_client, consume_to_end, consumer, create_topic, producer, watermarks

PARTITIONS = [0, 1, 2]


def crash_producer(bootstrap: str):
    return producer(
        bootstrap,
        acks="all",
        **{
            "enable.idempotence": False,
            "retries": 0,
            "message.timeout.ms": 5000,
            "linger.ms": 1,
            "batch.num.messages": 100,
            "reconnect.backoff.max.ms": 200,
        },
    )


def produce_for(p, topic: str, log: DeliveryLog, seconds: float, start_index: int, on_tick=None) -> int:
    """Produce values crash-<index> round-robin over PARTITIONS for `seconds`; return next index."""
    index = start_index
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if on_tick is not None:
            on_tick()
        for _ in range(50):
            try:
                p.produce(
                    topic,
                    value=f"crash-{index:08d}".encode(),
                    partition=PARTITIONS[index % len(PARTITIONS)],
                    on_delivery=log,
                )
            except BufferError:
                break
            index += 1
        p.poll(0.002)
    return index


def check_log_against_acks(bootstrap: str, topic: str, log: DeliveryLog, produced: int) -> list:
    """Assert no acknowledged record lost or duplicated and no offset gap; print the figures."""
    records = consume_to_end(bootstrap, topic, PARTITIONS, timeout_s=120)
    at = {(r.partition, r.offset): r.value for r in records}
    acked = {(partition, offset): value for partition, offset, _key, value, _ts in log.acked}
    lost = sorted(key for key, value in acked.items() if at.get(key) != value)
    counts = Counter(r.value for r in records)
    acked_values = set(acked.values())
    duplicated = sorted(v for v, n in counts.items() if n > 1 and v in acked_values)
    unacked_present = sum(1 for v in counts if v not in acked_values)
    gaps = []
    for partition in PARTITIONS:
        offsets = [r.offset for r in records if r.partition == partition]
        low, high = watermarks(bootstrap, topic, partition)
        if offsets != list(range(low, high)):
            gaps.append((partition, low, high, len(offsets)))
        values = [int(r.value.split(b"-")[1]) for r in records if r.partition == partition]
        assert values == sorted(values), f"partition {partition} out of produce order"
    print(
        f"acked {len(acked)}, read {len(records)}, lost {len(lost)}, duplicated {len(duplicated)}, "
        f"in flight at the crash and kept {unacked_present}, failed {len(log.failed)}, produced {produced}"
    )
    assert lost == [], f"{len(lost)} acknowledged records lost, first {lost[:5]}"
    assert duplicated == [], f"{len(duplicated)} acknowledged values duplicated, first {duplicated[:5]}"
    assert gaps == [], f"offset gaps (partition, low, high, records read): {gaps}"
    assert all(value.startswith(b"crash-") for value in counts), "a record was read that nobody produced"
    return records


def check_offsets_continue(bootstrap: str, topic: str) -> None:
    """After a restart new records get the offsets right after the recovered ones."""
    highs = {partition: watermarks(bootstrap, topic, partition)[1] for partition in PARTITIONS}
    p = producer(bootstrap, acks="all")
    log = DeliveryLog()
    for partition in PARTITIONS:
        p.produce(topic, value=b"crash-99999999", partition=partition, on_delivery=log)
    assert p.flush(30) == 0
    assert log.failed == []
    assert sorted((partition, offset) for partition, offset, *_ in log.acked) == sorted(highs.items())


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "flush_args",
    [("--flush-messages", "1"), (), ("--replica-fsync", "false")],
    ids=["fsync-every-message", "default-flush", "page-cache-acks"],
)
def test_acked_records_survive_kill_9(broker_factory, flush_args):
    """With `--replica-fsync false` the restarted node lost nothing a process crash can take
    (the page cache survives it), and, as the only replica of its partitions, leads them
    again although it cannot prove it holds every acknowledged record."""
    broker = broker_factory.start(*flush_args)
    topic = unique_topic("crash-kill")
    create_topic(broker.bootstrap, topic, partitions=len(PARTITIONS))

    log = DeliveryLog()
    p = crash_producer(broker.bootstrap)
    produced = produce_for(p, topic, log, 1.5, 0)
    acked_before_kill = len(log.acked)
    broker.kill9()
    # Keep producing into the dead broker for a moment, as a live application would.
    produced = produce_for(p, topic, log, 0.3, produced)
    remaining = p.flush(30)
    assert remaining == 0, f"{remaining} messages got neither an ack nor an error"
    del p
    assert acked_before_kill > 0, "no acknowledgement in 1.5 s of producing"

    broker.restart()
    check_log_against_acks(broker.bootstrap, topic, log, produced)
    check_offsets_continue(broker.bootstrap, topic)


@pytest.mark.timeout(240)
def test_kill_9_during_produce_then_again_right_after_restart(broker_factory):
    broker = broker_factory.start("--flush-messages", "1")
    topic = unique_topic("crash-twice")
    create_topic(broker.bootstrap, topic, partitions=len(PARTITIONS))
    log = DeliveryLog()
    produced = 0
    for _round in range(3):
        p = crash_producer(broker.bootstrap)
        produced = produce_for(p, topic, log, 0.7, produced)
        broker.kill9()
        assert p.flush(30) == 0
        del p
        broker.restart()
    check_log_against_acks(broker.bootstrap, topic, log, produced)
    check_offsets_continue(broker.bootstrap, topic)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("args", [(), ("--replica-fsync", "false")], ids=["default", "page-cache-acks"])
def test_restart_after_sigterm_keeps_everything(broker_factory, args):
    """After a clean shutdown every log is flushed, so the node tells the controller its data
    is intact, whatever `--replica-fsync` says."""
    broker = broker_factory.start(*args)
    topic = unique_topic("crash-sigterm")
    create_topic(broker.bootstrap, topic, partitions=len(PARTITIONS))
    log = DeliveryLog()
    p = producer(broker.bootstrap, acks="all")
    for index in range(3000):
        p.produce(topic, value=f"crash-{index:08d}".encode(), partition=index % 3, on_delivery=log)
        p.poll(0)
    assert p.flush(30) == 0
    del p
    assert log.failed == [] and len(log.acked) == 3000

    status = broker.terminate()
    assert status == 0, f"runnel exited with status {status} on SIGTERM"
    broker.restart()
    records = check_log_against_acks(broker.bootstrap, topic, log, 3000)
    assert len(records) == 3000
    assert [watermarks(broker.bootstrap, topic, partition) for partition in PARTITIONS] == [(0, 1000)] * 3
    check_offsets_continue(broker.bootstrap, topic)


@pytest.mark.timeout(120)
def test_topics_and_configs_survive_restart(broker_factory):
    broker = broker_factory.start()
    topic = unique_topic("crash-meta")
    create_topic(broker.bootstrap, topic, partitions=4, config={"retention.ms": "86400000"})
    broker.kill9()
    broker.restart()
    admin = admin_client(broker.bootstrap)
    metadata = admin.list_topics(timeout=10)
    assert len(metadata.topics[topic].partitions) == 4
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    assert configs["retention.ms"].value == "86400000"


def partition_dir(broker, topic: str, partition: int):
    # Kafka's on-disk layout: <data-dir>/<topic>-<partition>/<base offset, 20 digits>.log
    path = broker.data_dir / f"{topic}-{partition}"
    assert path.is_dir(), f"no partition directory {path}: {sorted(p.name for p in broker.data_dir.iterdir())}"
    return path


def produce_sequence(bootstrap: str, topic: str, start: int, count: int) -> DeliveryLog:
    p = producer(bootstrap, acks="all", **{"linger.ms": 2})
    log = DeliveryLog()
    for index in range(start, start + count):
        p.produce(topic, value=f"crash-{index:08d}".encode(), partition=0, on_delivery=log)
        p.poll(0)
    assert p.flush(30) == 0
    assert log.failed == []
    return log


TORN_TAILS = {
    # A batch header that promises 4000 bytes, then the write stopped.
    "partial-batch": (500).to_bytes(8, "big") + (4000).to_bytes(4, "big") + bytes(range(40)),
    # A file extended by the filesystem but never written: zeros.
    "zeros": bytes(4096),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("tail", sorted(TORN_TAILS))
def test_torn_tail_of_the_log_is_truncated_at_restart(broker_factory, tail):
    broker = broker_factory.start()
    topic = unique_topic("crash-torn")
    create_topic(broker.bootstrap, topic)
    log = produce_sequence(broker.bootstrap, topic, 0, 500)
    assert broker.terminate() == 0

    [segment] = sorted(partition_dir(broker, topic, 0).glob("*.log"))[-1:]
    with open(segment, "ab") as file:
        file.write(TORN_TAILS[tail])
    broker.start()

    assert watermarks(broker.bootstrap, topic, 0) == (0, 500)
    records = consume_to_end(broker.bootstrap, topic, [0])
    assert [(r.offset, r.value) for r in records] == [(offset, value) for _p, offset, _k, value, _ts in log.acked]
    more = produce_sequence(broker.bootstrap, topic, 500, 10)
    assert [offset for _p, offset, *_ in more.acked] == list(range(500, 510))
    assert len(consume_to_end(broker.bootstrap, topic, [0])) == 510


@pytest.mark.timeout(120)
@pytest.mark.parametrize("damage", ["deleted", "zeroed"])
def test_lost_index_files_are_rebuilt(broker_factory, damage):
    broker = broker_factory.start("--log-segment-bytes", "16384")
    topic = unique_topic("crash-index")
    create_topic(broker.bootstrap, topic)
    base_ms = int(time.time() * 1000) - 3_600_000
    p = producer(broker.bootstrap, **{"linger.ms": 0, "batch.size": 2048})
    for i in range(1000):
        p.produce(topic, value=f"crash-{i:08d}".encode().ljust(100, b"."), partition=0, timestamp=base_ms + i)
        p.poll(0)
    assert p.flush(30) == 0
    del p
    broker.kill9()

    indexes = sorted(partition_dir(broker, topic, 0).glob("*index"))
    assert len(indexes) >= 4, f"expected several segments with 16 KiB segments, got {indexes}"
    for index in indexes:
        if damage == "deleted":
            index.unlink()
        else:
            index.write_bytes(bytes(index.stat().st_size))
    broker.start()

    assert watermarks(broker.bootstrap, topic, 0) == (0, 1000)
    records = consume_to_end(broker.bootstrap, topic, [0])
    assert [int(r.value[6:14]) for r in records] == list(range(1000))
    c = consumer(broker.bootstrap)
    try:
        for i in (0, 137, 500, 999):
            [answer] = c.offsets_for_times([TopicPartition(topic, 0, base_ms + i)], timeout=10)
            assert answer.offset == i, f"offsets_for_times({i}) gave {answer.offset}"
    finally:
        c.close()
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, 777)])
        first = None
        deadline = time.monotonic() + 20
        while first is None:
            assert time.monotonic() < deadline
            for message in c.consume(1, timeout=0.5):
                assert message.error() is None
                first = message
        assert first.offset() == 777 and first.value().startswith(b"crash-00000777")
    finally:
        c.close()
