"""kcat (librdkafka) as a user runs it from a shell."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from conftest import unique_topic
from support import create_topic

KCAT_TIMEOUT_S = 60


def kcat_binary() -> str:
    path = shutil.which("kcat")
    if path is None:
        pytest.fail("kcat is not installed: run scripts/test.sh, which installs it", pytrace=False)
    return path


def kcat(broker, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [kcat_binary(), "-b", broker.bootstrap, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=KCAT_TIMEOUT_S,
    )
    assert result.returncode == 0, (
        f"kcat {' '.join(args)} exited {result.returncode}\n"
        f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    )
    return result


def consume_lines(broker, topic: str, *args: str) -> list[str]:
    result = kcat(broker, "-C", "-t", topic, "-o", "beginning", "-e", "-q", *args)
    return result.stdout.splitlines()


def test_metadata_lists_the_broker_and_an_auto_created_topic(broker):
    topic = unique_topic("kcat-auto")
    kcat(broker, "-P", "-t", topic, stdin="hello\n")

    listing = kcat(broker, "-L").stdout
    assert f"broker 0 at 127.0.0.1:{broker.port}" in listing
    assert f'topic "{topic}" with 1 partitions:' in listing

    metadata = json.loads(kcat(broker, "-L", "-J", "-t", topic).stdout)
    assert metadata["brokers"] == [{"id": 0, "name": f"127.0.0.1:{broker.port}"}]
    [topic_meta] = metadata["topics"]
    assert topic_meta["topic"] == topic
    assert [p["partition"] for p in topic_meta["partitions"]] == [0]
    assert topic_meta["partitions"][0]["leader"] == 0
    assert topic_meta["partitions"][0]["replicas"] == [{"id": 0}]
    assert topic_meta["partitions"][0]["isrs"] == [{"id": 0}]


def test_metadata_shows_every_partition_of_a_created_topic(broker):
    topic = unique_topic("kcat-created")
    create_topic(broker.bootstrap, topic, partitions=3)
    metadata = json.loads(kcat(broker, "-L", "-J").stdout)
    topics = {t["topic"]: t for t in metadata["topics"]}
    assert topic in topics
    partitions = sorted(topics[topic]["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in partitions] == [0, 1, 2]
    assert all(p["leader"] == 0 for p in partitions)


def test_lines_produced_from_stdin_come_back_in_order(broker):
    topic = unique_topic("kcat-lines")
    lines = [f"line {i} " + "x" * (i % 17) for i in range(500)]
    kcat(broker, "-P", "-t", topic, stdin="\n".join(lines) + "\n")
    assert consume_lines(broker, topic) == lines


def test_keyed_lines_keep_keys_and_offsets(broker):
    topic = unique_topic("kcat-keys")
    lines = [f"k{i % 5}:v{i}" for i in range(200)]
    kcat(broker, "-P", "-t", topic, "-K:", stdin="\n".join(lines) + "\n")
    got = consume_lines(broker, topic, "-f", "%k\t%s\t%p\t%o\n")
    expected = [f"k{i % 5}\tv{i}\t0\t{i}" for i in range(200)]
    assert got == expected


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_lines_round_trip(broker, codec):
    topic = unique_topic(f"kcat-{codec}")
    # Repetitive values compress well, so every batch really is compressed.
    lines = [f"{codec} record {i:05d} " + "abcdefgh" * 20 for i in range(1000)]
    kcat(broker, "-P", "-t", topic, "-z", codec, stdin="\n".join(lines) + "\n")
    assert consume_lines(broker, topic) == lines


def test_json_output_has_keys_offsets_partitions_and_timestamps(broker):
    topic = unique_topic("kcat-json")
    create_topic(broker.bootstrap, topic, partitions=3)
    keys = [f"key-{i % 7}" for i in range(70)]
    lines = [f"{key}:value-{i}" for i, key in enumerate(keys)]
    before_ms = int(time.time() * 1000)
    kcat(broker, "-P", "-t", topic, "-K:", "-H", "origin=kcat", stdin="\n".join(lines) + "\n")
    after_ms = int(time.time() * 1000)

    output = kcat(broker, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-J").stdout
    messages = [json.loads(line) for line in output.splitlines()]
    assert len(messages) == 70

    partition_of_key: dict[str, int] = {}
    by_partition: dict[int, list[dict]] = {}
    for message in messages:
        assert message["topic"] == topic
        assert message["tstype"] == "create"
        assert before_ms - 1000 <= message["ts"] <= after_ms + 1000
        assert message["headers"] == ["origin", "kcat"]
        assert message["payload"].startswith("value-")
        key = message["key"]
        assert partition_of_key.setdefault(key, message["partition"]) == message["partition"]
        by_partition.setdefault(message["partition"], []).append(message)
    assert set(by_partition) <= {0, 1, 2}
    for partition, partition_messages in by_partition.items():
        assert [m["offset"] for m in partition_messages] == list(range(len(partition_messages))), partition
        indexes = [int(m["payload"].split("-")[1]) for m in partition_messages]
        assert indexes == sorted(indexes), f"partition {partition} out of produce order"
    assert sorted(int(m["payload"].split("-")[1]) for m in messages) == list(range(70))
    assert all(keys[int(m["payload"].split("-")[1])] == m["key"] for m in messages)
