"""Idempotent producers under faults: every record written once, in order.

Each producer goes through `AnswerDroppingProxy`, which lets every fifth Produce request reach
the broker but closes the connection instead of passing its answer on. The producer retries
the batch the broker already has; the broker must recognise it by its producer id and
sequence numbers and answer with the original offsets. The same holds across a `kill -9` and
restart of the broker, which rebuilds its producer state from the log.

librdkafka (confluent-kafka with `enable.idempotence=true`) and our own producer (`runnel
produce`, idempotent by default) are checked alike: reading every partition back from the
start gives exactly the records sent, none twice, in send order.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time

import pytest

from conftest import broker_environment, runnel_bin, unique_topic
from faults import AnswerDroppingProxy
from support import DeliveryLog, consume_to_end, create_topic, producer

PARTITIONS = 3
RECORDS = 3000


def start_behind_proxy(broker_factory):
    broker = broker_factory.create()
    proxy = AnswerDroppingProxy(broker.port)
    broker.advertised = proxy.address
    broker.start()
    return broker, proxy


def assert_each_partition_holds(broker, topic: str, sent: dict[int, list[bytes]]) -> None:
    records = consume_to_end(broker.bootstrap, topic, list(range(PARTITIONS)))
    for partition in range(PARTITIONS):
        values = [r.value for r in records if r.partition == partition]
        expected = sent[partition]
        assert len(values) == len(set(values)), f"partition {partition}: a record was written twice"
        assert values == expected, (
            f"partition {partition}: {len(values)} records read, {len(expected)} sent; "
            f"first difference at {next((i for i, (a, b) in enumerate(zip(values, expected)) if a != b), None)}"
        )


def produce_with_librdkafka(bootstrap: str, topic: str, during=None) -> dict[int, list[bytes]]:
    p = producer(
        bootstrap,
        **{
            "enable.idempotence": True,
            "linger.ms": 2,
            "batch.num.messages": 50,
            "message.timeout.ms": 120000,
            "reconnect.backoff.max.ms": 200,
        },
    )
    log = DeliveryLog()
    sent: dict[int, list[bytes]] = {partition: [] for partition in range(PARTITIONS)}
    for index in range(RECORDS):
        partition = index % PARTITIONS
        value = f"idem-{index:06d}".encode()
        sent[partition].append(value)
        while True:
            try:
                p.produce(topic, value=value, partition=partition, on_delivery=log)
                break
            except BufferError:
                p.poll(0.05)
        if index % 100 == 0:
            p.poll(0.01)
        if during is not None and index == RECORDS // 2:
            during()
    assert p.flush(120) == 0, "records still undelivered"
    assert not log.failed, f"deliveries failed: {log.failed[:3]}"
    assert len(log.acked) == RECORDS
    return sent


def produce_with_runnel(bootstrap: str, topic: str, during=None) -> dict[int, list[bytes]]:
    """`runnel produce`, one process per partition (records of a partition in file order)."""
    sent: dict[int, list[bytes]] = {partition: [] for partition in range(PARTITIONS)}
    for index in range(RECORDS):
        sent[index % PARTITIONS].append(f"ours-{index:06d}".encode())
    processes = []
    for partition in range(PARTITIONS):
        stderr = tempfile.TemporaryFile()
        process = subprocess.Popen(
            [str(runnel_bin()), "produce", topic, "--partition", str(partition), "--linger-ms", "2",
             "--batch-size", "2000", "--bootstrap", bootstrap],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=broker_environment(),
        )
        processes.append((process, stderr))
    writers = [
        threading.Thread(target=_feed, args=(process, sent[partition]), daemon=True)
        for partition, (process, _) in enumerate(processes)
    ]
    for writer in writers:
        writer.start()
    if during is not None:
        time.sleep(0.3)
        during()
    for writer in writers:
        writer.join(timeout=120)
    for process, stderr in processes:
        returncode = process.wait(timeout=120)
        stderr.seek(0)
        assert returncode == 0, f"runnel produce failed: {stderr.read().decode(errors='replace')[-2000:]}"
    return sent


def _feed(process: subprocess.Popen, values: list[bytes]) -> None:
    assert process.stdin is not None
    for start in range(0, len(values), 100):
        process.stdin.write(b"".join(value + b"\n" for value in values[start : start + 100]))
        process.stdin.flush()
        time.sleep(0.01)
    process.stdin.close()


PRODUCERS = {"librdkafka": produce_with_librdkafka, "runnel": produce_with_runnel}


@pytest.mark.parametrize("client", sorted(PRODUCERS))
def test_an_idempotent_producer_writes_each_record_once_through_dropped_answers(broker_factory, client):
    broker, proxy = start_behind_proxy(broker_factory)
    topic = unique_topic(f"idem-{client}")
    create_topic(proxy.address, topic, partitions=PARTITIONS)
    sent = PRODUCERS[client](proxy.address, topic)
    assert proxy.answers_dropped > 0, "the proxy dropped no answer: the test tested nothing"
    assert_each_partition_holds(broker, topic, sent)


@pytest.mark.parametrize("client", sorted(PRODUCERS))
def test_an_idempotent_producer_writes_each_record_once_across_kill_9(broker_factory, client):
    broker, proxy = start_behind_proxy(broker_factory)
    topic = unique_topic(f"idem-{client}-kill")
    create_topic(proxy.address, topic, partitions=PARTITIONS)

    def crash_and_restart():
        broker.kill9()
        time.sleep(0.5)
        broker.start()

    sent = PRODUCERS[client](proxy.address, topic, during=crash_and_restart)
    assert broker.starts == 2
    assert_each_partition_holds(broker, topic, sent)
