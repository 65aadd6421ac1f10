"""Segments and retention: the log start offset moves up once old segments are deleted."""

from __future__ import annotations

import time

import pytest

from conftest import unique_topic
from support import consume_to_end, create_topic, produce_and_flush, producer, watermarks

RECORDS = 2000
VALUE_BYTES = 100


def fill(bootstrap: str, topic: str) -> None:
    # Small batches, so that each 16 KiB segment holds many of them.
    p = producer(bootstrap, **{"linger.ms": 0, "batch.size": 4096})
    for i in range(RECORDS):
        p.produce(topic, value=f"{i:06d}".encode().ljust(VALUE_BYTES, b"."), partition=0)
        p.poll(0)
    produce_and_flush(p)


def wait_for_log_start(bootstrap: str, topic: str, at_least: int, timeout_s: float = 30.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        low, high = watermarks(bootstrap, topic, 0)
        assert high == RECORDS, f"high watermark {high}, expected {RECORDS}"
        if low >= at_least:
            return low
        assert time.monotonic() < deadline, f"log start offset still {low} after {timeout_s}s (wanted >= {at_least})"
        time.sleep(0.25)


def check_remaining_records(bootstrap: str, topic: str, low: int) -> None:
    records = consume_to_end(bootstrap, topic, [0])
    assert [r.offset for r in records] == list(range(low, RECORDS))
    assert [int(r.value[:6]) for r in records] == list(range(low, RECORDS))


@pytest.mark.timeout(120)
def test_size_retention_deletes_old_segments(broker_factory):
    broker = broker_factory.start("--retention-check-interval-ms", "500")
    topic = unique_topic("retention-bytes")
    create_topic(broker.bootstrap, topic, config={"segment.bytes": "16384", "retention.bytes": "32768"})
    fill(broker.bootstrap, topic)
    # About 240 KB were written; keeping 32 KiB plus the active segment leaves a few hundred records.
    low = wait_for_log_start(broker.bootstrap, topic, at_least=1000)
    assert low < RECORDS
    check_remaining_records(broker.bootstrap, topic, low)


@pytest.mark.timeout(120)
def test_time_retention_deletes_old_segments(broker_factory):
    broker = broker_factory.start("--retention-check-interval-ms", "500")
    topic = unique_topic("retention-ms")
    create_topic(broker.bootstrap, topic, config={"segment.bytes": "16384", "retention.ms": "1000"})
    fill(broker.bootstrap, topic)
    # Every segment but the active one (at most 16 KiB, ~130 records) expires after a second.
    # Kafka may also roll and delete the active segment once it has expired: low can reach RECORDS.
    low = wait_for_log_start(broker.bootstrap, topic, at_least=1500)
    check_remaining_records(broker.bootstrap, topic, low)


@pytest.mark.timeout(120)
def test_retention_state_survives_restart(broker_factory):
    broker = broker_factory.start("--retention-check-interval-ms", "500")
    topic = unique_topic("retention-restart")
    create_topic(broker.bootstrap, topic, config={"segment.bytes": "16384", "retention.bytes": "32768"})
    fill(broker.bootstrap, topic)
    low = wait_for_log_start(broker.bootstrap, topic, at_least=1000)
    broker.kill9()
    broker.restart()
    low_after, high_after = watermarks(broker.bootstrap, topic, 0)
    assert high_after == RECORDS
    assert low_after >= low, f"log start offset went back from {low} to {low_after} over a restart"
    check_remaining_records(broker.bootstrap, topic, low_after)


def test_broker_wide_segment_size_flag(broker_factory):
    broker = broker_factory.start("--log-segment-bytes", "16384", "--retention-check-interval-ms", "500")
    topic = unique_topic("retention-flag")
    # The topic inherits the broker's segment size; only retention is set on the topic.
    create_topic(broker.bootstrap, topic, config={"retention.bytes": "32768"})
    fill(broker.bootstrap, topic)
    low = wait_for_log_start(broker.bootstrap, topic, at_least=1000)
    check_remaining_records(broker.bootstrap, topic, low)
