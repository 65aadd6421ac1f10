"""The admin listener: /metrics parsed by Prometheus's own OpenMetrics parser, every metric
docs/metrics.md lists present, the ones that count traffic moving under load; /health/*."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import unique_topic
from support import admin_client, consumer, create_topic, produce_and_flush, producer

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
RECORDS = 500


def documented_metrics() -> list[str]:
    """The broker's table: the section from its heading to the next one."""
    text = DOCS.read_text()
    section = text.split("## What a broker measures", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"^\| `(runnel_[a-z_]+)` \|", section, flags=re.MULTILINE)
    assert len(names) > 20, f"the metrics table of {DOCS} was not found"
    return names


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode()


def scrape(broker) -> dict[str, list]:
    """Samples by sample name (`runnel_requests_total`, `..._bucket`), as Prometheus reads them."""
    status, content_type, text = get(f"{broker.admin_url}/metrics")
    assert status == 200, text
    assert content_type.startswith("application/openmetrics-text"), content_type
    samples: dict[str, list] = {}
    families = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    samples["__families__"] = sorted(families)
    return samples


def value(samples, name: str, **labels) -> float:
    matching = [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert matching, f"no {name} with {labels}; have {[s.labels for s in samples.get(name, [])]}"
    return sum(matching)


def test_health_endpoints_answer_as_probes_expect(broker):
    status, _, body = get(f"{broker.admin_url}/health/live")
    assert (status, body) == (200, "live\n")
    status, _, body = get(f"{broker.admin_url}/health/ready")
    assert (status, body) == (200, "ready\n")
    status, _, _ = get(f"{broker.admin_url}/no-such-page")
    assert status == 404


def test_every_documented_metric_is_served_and_traffic_moves_them(broker):
    topic = unique_topic("metrics")
    group = unique_topic("metrics-group")
    create_topic(broker.bootstrap, topic, partitions=2)
    before = scrape(broker)

    p = producer(broker.bootstrap, acks="all")
    for i in range(RECORDS):
        p.produce(topic, key=f"k{i}".encode(), value=b"v" * 100)
    produce_and_flush(p)

    c = consumer(broker.bootstrap, **{"group.id": group, "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
    consumed = 0
    positions: dict[int, int] = {}
    while consumed < RECORDS:
        message = c.poll(5)
        assert message is not None, f"consumed only {consumed} of {RECORDS}"
        assert message.error() is None, message.error()
        positions[message.partition()] = message.offset() + 1
        consumed += 1
    c.commit(offsets=[TopicPartition(topic, p, o) for p, o in positions.items()], asynchronous=False)
    c.close()
    # The group's lag after the commit is 0; ten more records make it 10.
    p = producer(broker.bootstrap, acks="all")
    for i in range(10):
        p.produce(topic, value=b"late", partition=0)
    produce_and_flush(p)
    # One request answered with an error, counted by name.
    admin = admin_client(broker.bootstrap)
    futures = admin.delete_topics([unique_topic("never-created")], operation_timeout=10)
    for future in futures.values():
        with pytest.raises(Exception):
            future.result()

    after = scrape(broker)
    families = after["__families__"]
    served = set(families) | {name for name in after if name != "__families__"}
    missing = [name for name in documented_metrics() if name not in served]
    assert not missing, f"documented but not served: {missing}; served families: {families}"
    undocumented = [
        name for name in families
        if not any(doc == name or doc == f"{name}_total" for doc in documented_metrics())
    ]
    assert not undocumented, f"served but not in {DOCS.name}: {undocumented}"

    assert value(after, "runnel_topic_produced_records_total", topic=topic) == RECORDS + 10
    assert value(after, "runnel_topic_produced_bytes_total", topic=topic) > RECORDS * 100
    assert value(after, "runnel_topic_fetched_records_total", topic=topic) >= RECORDS
    assert value(after, "runnel_topic_fetched_bytes_total", topic=topic) > RECORDS * 100
    for api in ("Produce", "Fetch", "Metadata", "OffsetCommit"):
        assert value(after, "runnel_requests_total", api=api) > value_or_zero(before, "runnel_requests_total", api=api), api
    assert value(after, "runnel_request_duration_seconds_count", api="Produce") > 0
    assert value(after, "runnel_request_errors_total", api="DeleteTopics", error="UNKNOWN_TOPIC_OR_PARTITION") >= 1
    assert value(after, "runnel_log_fsync_duration_seconds_count") > value_or_zero(before, "runnel_log_fsync_duration_seconds_count")
    assert value(after, "runnel_log_fsync_batch_records_sum") >= RECORDS
    assert value(after, "runnel_connections") >= 1
    assert value(after, "runnel_connections_accepted_total") >= 3
    assert value(after, "runnel_partitions_leader") >= 2
    assert value(after, "runnel_partitions_under_replicated") == 0
    assert value(after, "runnel_partitions_offline") == 0
    assert value(after, "runnel_log_size_bytes", topic=topic) > RECORDS * 100
    assert value(after, "runnel_log_segments", topic=topic, partition="0") >= 1
    assert value(after, "runnel_log_end_offset", topic=topic) == RECORDS + 10
    assert value(after, "runnel_partition_high_watermark", topic=topic) == RECORDS + 10
    assert value(after, "runnel_consumer_group_lag", group=group, topic=topic) == 10
    assert value(after, "runnel_controller_raft_term") >= 1
    assert value(after, "runnel_controller_active") == 1
    assert value(after, "runnel_controller_raft_commit_index") >= 1
    assert value(after, "runnel_cluster_brokers") == 1
    assert value(after, "runnel_leader_elections_total") >= 2


def value_or_zero(samples, name: str, **labels) -> float:
    return sum(s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))
