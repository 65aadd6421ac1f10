"""Long reliability runs, only with RUNNEL_SOAK=1 (minutes each; not part of the default suite)."""

from __future__ import annotations

import os
import random

import pytest

from conftest import unique_topic
from support import DeliveryLog, consume_to_end, create_topic, producer
from test_crash import PARTITIONS, check_log_against_acks, check_offsets_continue, crash_producer, produce_for

# Deselected (not skipped) unless RUNNEL_SOAK=1: see pytest_collection_modifyitems in conftest.py.
pytestmark = [pytest.mark.soak]

SOAK_CYCLES = int(os.environ.get("RUNNEL_SOAK_CYCLES", "20"))


@pytest.mark.timeout(1800)
def test_many_kill_9_cycles(broker_factory):
    seed = int(os.environ.get("RUNNEL_SOAK_SEED", random.randrange(1 << 30)))
    print(f"seed {seed}")
    rng = random.Random(seed)
    broker = broker_factory.start("--flush-messages", "1", "--log-segment-bytes", "65536")
    topic = unique_topic("soak-kill")
    create_topic(broker.bootstrap, topic, partitions=len(PARTITIONS))
    log = DeliveryLog()
    produced = 0
    for _cycle in range(SOAK_CYCLES):
        p = crash_producer(broker.bootstrap)
        produced = produce_for(p, topic, log, rng.uniform(0.2, 2.0), produced)
        broker.kill9()
        assert p.flush(30) == 0
        del p
        broker.restart()
    check_log_against_acks(broker.bootstrap, topic, log, produced)
    check_offsets_continue(broker.bootstrap, topic)


@pytest.mark.timeout(1800)
def test_two_hundred_thousand_records(broker_factory):
    broker = broker_factory.start()
    topic = unique_topic("soak-volume")
    create_topic(broker.bootstrap, topic, partitions=6)
    count = 200_000
    log = DeliveryLog()
    p = producer(broker.bootstrap, acks="all", **{"compression.type": "lz4"})
    for i in range(count):
        while True:
            try:
                p.produce(topic, key=f"key-{i % 1000}".encode(), value=f"value-{i}".encode(), on_delivery=log)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(120) == 0
    assert log.failed == [] and len(log.acked) == count
    records = consume_to_end(broker.bootstrap, topic, list(range(6)), timeout_s=600)
    acked = {(partition, offset): value for partition, offset, _k, value, _ts in log.acked}
    assert {(r.partition, r.offset): r.value for r in records} == acked
    print(f"acked {len(acked)}, read {len(records)}, lost 0, duplicated 0")
