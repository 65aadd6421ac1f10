"""Transactions (KIP-98): what read_committed and read_uncommitted consumers see, fencing,
and timeouts, with librdkafka's transactional producer against the real broker.

Each test writes one committed transaction, one aborted and (where it matters) one left
open, then reads the topic back with confluent-kafka, kafka-python and `runnel consume`. The
last runs a consume-transform-produce application (eos_app.py) and kills it, and the broker,
with SIGKILL at random points (RUNNEL_EOS_SEED replays a run).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from collections import Counter

import pytest
from confluent_kafka import KafkaException, Producer, TopicPartition
from kafka import KafkaConsumer

from conftest import broker_environment, runnel_bin, unique_topic
from support import (
    GROUP_BROKER_ARGS,
    LIBRDKAFKA_LOGGER,
    consumer,
    create_topic,
    producer,
    read_with_librdkafka,
    start_eos_app,
)

PARTITIONS = 2
TIMEOUT_S = 30


def transactional_producer(bootstrap: str, transactional_id: str, **config) -> Producer:
    return Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": transactional_id, "linger.ms": 5, **config},
        logger=LIBRDKAFKA_LOGGER,
    )


def produce_values(p: Producer, topic: str, prefix: str, count: int = 10) -> list[bytes]:
    values = [f"{prefix}-{index}".encode() for index in range(count)]
    for index, value in enumerate(values):
        p.produce(topic, value=value, partition=index % PARTITIONS)
    p.flush(TIMEOUT_S)
    return values


def read_with_kafka_python(bootstrap: str, topic: str, isolation: str) -> list[bytes]:
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level=isolation,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    try:
        c.assign([__import__("kafka").TopicPartition(topic, partition) for partition in range(PARTITIONS)])
        c.seek_to_beginning()
        return [record.value for record in c]
    finally:
        c.close()


def read_with_runnel(bootstrap: str, topic: str, isolation: str) -> list[bytes]:
    done = subprocess.run(
        [str(runnel_bin()), "consume", topic, "--offset", "earliest", "--exit-at-end", "--isolation", isolation,
         "--bootstrap", bootstrap],
        capture_output=True,
        timeout=60,
        env=broker_environment(),
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return [line for line in done.stdout.split(b"\n") if line]


def test_read_committed_sees_only_committed_transactions(broker):
    topic = unique_topic("txn")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    p = transactional_producer(broker.bootstrap, f"{topic}-producer")
    p.init_transactions(TIMEOUT_S)
    p.begin_transaction()
    committed = produce_values(p, topic, "committed")
    p.commit_transaction(TIMEOUT_S)
    p.begin_transaction()
    aborted = produce_values(p, topic, "aborted")
    p.abort_transaction(TIMEOUT_S)
    p.begin_transaction()
    committed += produce_values(p, topic, "again")
    p.commit_transaction(TIMEOUT_S)

    everything = sorted(committed + aborted)
    for isolation, wanted in (("read_committed", sorted(committed)), ("read_uncommitted", everything)):
        assert sorted(read_with_librdkafka(broker.bootstrap, topic, isolation, len(wanted), PARTITIONS)) == wanted, isolation
        assert sorted(read_with_kafka_python(broker.bootstrap, topic, isolation)) == wanted, isolation
        assert sorted(read_with_runnel(broker.bootstrap, topic, isolation)) == wanted, isolation

    # What operators see: the id, its completed state, and the producer in each partition.
    described = runnel_json(broker.bootstrap, "transactions", "describe", f"{topic}-producer")
    assert described["state"] == "CompleteCommit"
    assert described["partitions"] == []
    listed = runnel_json(broker.bootstrap, "transactions", "list")
    assert {"transactional_id": f"{topic}-producer", "producer_id": described["producer_id"],
            "state": "CompleteCommit"} in listed
    producers = runnel_json(broker.bootstrap, "producers", "describe", topic)
    assert {p["partition"] for p in producers} == set(range(PARTITIONS))
    assert all(p["producer_id"] == described["producer_id"] for p in producers)
    assert all(p["transaction_start_offset"] is None for p in producers)


def runnel_json(bootstrap: str, *command: str):
    done = subprocess.run(
        [str(runnel_bin()), *command, "--format", "json", "--bootstrap", bootstrap],
        capture_output=True,
        timeout=60,
        env=broker_environment(),
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return json.loads(done.stdout)


def test_an_open_transaction_holds_read_committed_back_until_it_commits(broker):
    topic = unique_topic("txn-open")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    p = transactional_producer(broker.bootstrap, f"{topic}-producer")
    p.init_transactions(TIMEOUT_S)
    p.begin_transaction()
    pending = produce_values(p, topic, "pending")
    assert read_with_runnel(broker.bootstrap, topic, "read_committed") == []
    assert sorted(read_with_runnel(broker.bootstrap, topic, "read_uncommitted")) == sorted(pending)
    p.commit_transaction(TIMEOUT_S)
    assert sorted(read_with_runnel(broker.bootstrap, topic, "read_committed")) == sorted(pending)


def test_a_new_instance_fences_the_old_one_and_aborts_its_transaction(broker):
    topic = unique_topic("txn-zombie")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    transactional_id = f"{topic}-producer"
    zombie = transactional_producer(broker.bootstrap, transactional_id)
    zombie.init_transactions(TIMEOUT_S)
    zombie.begin_transaction()
    produce_values(zombie, topic, "zombie")

    successor = transactional_producer(broker.bootstrap, transactional_id)
    successor.init_transactions(TIMEOUT_S)
    successor.begin_transaction()
    kept = produce_values(successor, topic, "successor")
    successor.commit_transaction(TIMEOUT_S)

    with pytest.raises(KafkaException) as fenced:
        zombie.commit_transaction(TIMEOUT_S)
    assert fenced.value.args[0].fatal() or fenced.value.args[0].txn_requires_abort(), fenced.value
    assert sorted(read_with_runnel(broker.bootstrap, topic, "read_committed")) == sorted(kept)


def test_a_hung_transaction_is_aborted_by_its_timeout(broker_factory):
    broker = broker_factory.start("--transaction-abort-timed-out-transaction-cleanup-interval-ms", 200)
    topic = unique_topic("txn-hung")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    p = transactional_producer(broker.bootstrap, f"{topic}-producer", **{"transaction.timeout.ms": 2000})
    p.init_transactions(TIMEOUT_S)
    p.begin_transaction()
    produce_values(p, topic, "hung")
    # The producer goes quiet with its transaction open. While it is open, the last stable
    # offset (what a read_committed consumer's ListOffsets answers) stays at its first record;
    # the coordinator's abort writes the markers, and the last stable offset passes them.
    committed_view = consumer(broker.bootstrap, **{"isolation.level": "read_committed"})
    try:
        deadline = time.monotonic() + 20
        last_stable = 0
        while last_stable == 0 and time.monotonic() < deadline:
            _, last_stable = committed_view.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
            time.sleep(0.2)
        assert last_stable > 0, "the hung transaction was not aborted"
    finally:
        committed_view.close()
    with pytest.raises(KafkaException):
        p.commit_transaction(TIMEOUT_S)
    assert read_with_runnel(broker.bootstrap, topic, "read_committed") == []
    assert len(read_with_runnel(broker.bootstrap, topic, "read_uncommitted")) == 10
    described = runnel_json(broker.bootstrap, "transactions", "describe", f"{topic}-producer")
    assert described["state"] == "CompleteAbort"
    assert described["producer_epoch"] >= 1, "the abort bumped the epoch, fencing the producer"


EOS_RECORDS = 4000
def test_consume_transform_produce_writes_each_output_once_across_kill_9(broker_factory):
    """The app is killed (SIGKILL) at random points and restarted, and so, once, is the
    broker; every input still has exactly one output, read_committed."""
    seed = int(os.environ.get("RUNNEL_EOS_SEED", random.randrange(1 << 30)))
    print(f"RUNNEL_EOS_SEED={seed}")
    rng = random.Random(seed)
    broker = broker_factory.start(*GROUP_BROKER_ARGS)
    source, sink = unique_topic("eos-in"), unique_topic("eos-out")
    group = unique_topic("eos-app")
    create_topic(broker.bootstrap, source, partitions=PARTITIONS)
    create_topic(broker.bootstrap, sink, partitions=PARTITIONS)
    p = producer(broker.bootstrap)
    for index in range(EOS_RECORDS):
        p.produce(source, key=str(index).encode(), value=f"in-{index}".encode(), partition=index % PARTITIONS)
        if index % 500 == 0:
            p.poll(0)
    assert p.flush(TIMEOUT_S) == 0

    app = start_eos_app(broker.bootstrap, source, sink, group)
    killed_while_running = 0
    for round_index in range(5):
        time.sleep(rng.uniform(0.3, 1.5))
        if round_index == 2:
            broker.kill9()
            time.sleep(0.3)
            broker.start()
            continue
        if app.poll() is None:
            killed_while_running += 1
        app.kill()
        app.wait(timeout=30)
        app = start_eos_app(broker.bootstrap, source, sink, group)
    # Let it finish; a fenced or failed instance is restarted, as a supervisor would.
    for _ in range(5):
        _, stderr = app.communicate(timeout=180)
        if app.returncode == 0:
            break
        print(f"app exited {app.returncode}: {stderr.decode(errors='replace')[-500:]}")
        app = start_eos_app(broker.bootstrap, source, sink, group)
    assert app.returncode == 0
    assert killed_while_running > 0, "the app finished before any kill: the test tested nothing"

    outputs = Counter(read_with_librdkafka(broker.bootstrap, sink, "read_committed", EOS_RECORDS, PARTITIONS))
    expected = {f"out-{index}".encode() for index in range(EOS_RECORDS)}
    missing = expected - outputs.keys()
    twice = {value: count for value, count in outputs.items() if count > 1}
    assert not missing, f"{len(missing)} inputs have no output, e.g. {sorted(missing)[:5]} (seed {seed})"
    assert not twice, f"{len(twice)} outputs written more than once, e.g. {list(twice.items())[:5]} (seed {seed})"
    assert set(outputs) == expected


def test_an_idle_transactional_id_expires(broker_factory):
    broker = broker_factory.start(
        "--transaction-abort-timed-out-transaction-cleanup-interval-ms", 200,
        "--transactional-id-expiration-ms", 1500,
    )
    topic = unique_topic("txn-idle")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    transactional_id = f"{topic}-producer"
    p = transactional_producer(broker.bootstrap, transactional_id)
    p.init_transactions(TIMEOUT_S)
    p.begin_transaction()
    produce_values(p, topic, "once", count=2)
    p.commit_transaction(TIMEOUT_S)
    assert runnel_json(broker.bootstrap, "transactions", "describe", transactional_id)["state"] == "CompleteCommit"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listed = runnel_json(broker.bootstrap, "transactions", "list")
        if all(entry["transactional_id"] != transactional_id for entry in listed):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the idle transactional id was not forgotten")
    # Forgotten for good: a restart replays the tombstone.
    broker.terminate()
    broker.start()
    listed = runnel_json(broker.bootstrap, "transactions", "list")
    assert all(entry["transactional_id"] != transactional_id for entry in listed)
