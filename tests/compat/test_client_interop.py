"""Runnel's own client (through `runnel produce` / `runnel consume`) against third-party clients.

Both ways: records written by our producer are read intact by confluent-kafka (librdkafka) and
kafka-python, with every codec and headers; records written by them are read intact by our
consumer; our default partitioner places keys where librdkafka's `murmur2_random` does; and a
group of our consumers and a group of confluent-kafka consumers each read a whole topic.

The `runnel` binary is driven as a subprocess, as a script would; `runnel consume --format json`
prints keys, values and header values as UTF-8 text, so the records here are UTF-8.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition
from kafka.partitioner.default import murmur2

from conftest import Broker, broker_environment, runnel_bin, unique_topic
from support import (
    CLASSIC_GROUP_CONFIG,
    GROUP_BROKER_ARGS,
    DeliveryLog,
    GroupMember,
    admin_client,
    consume_to_end,
    create_topic,
    produce_and_flush,
    producer,
    stop_all,
    wait_until,
)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
RUNNEL_TIMEOUT_S = 90.0
# The headers `runnel produce --header trace=abc --header empty=` puts on every record.
CLI_HEADERS = [("trace", b"abc"), ("empty", b"")]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    # A short first-rebalance delay, for the group test; the data-path tests do not mind it.
    instance = Broker(tmp_path_factory.mktemp("runnel-interop"), GROUP_BROKER_ARGS)
    try:
        instance.start()
        yield instance
    finally:
        instance.kill9()


@pytest.fixture
def members():
    started: list = []
    yield started
    stop_all(started)


# --- Driving the `runnel` binary ----------------------------------------------------------------


def runnel(broker, *args: str, stdin: bytes | None = None, timeout_s: float = RUNNEL_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run `runnel ARGS --bootstrap HOST:PORT`; fail with its stderr unless it exits 0."""
    command = [str(runnel_bin()), *args, "--bootstrap", broker.bootstrap]
    result = subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        timeout=timeout_s,
        env=broker_environment(),
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} exited with {result.returncode}\n"
        f"stderr: {result.stderr.decode(errors='replace')[-3000:]}"
    )
    return result


def runnel_produce(broker, topic: str, lines: list[bytes], *args: str) -> None:
    result = runnel(broker, "produce", topic, *args, stdin=b"".join(line + b"\n" for line in lines))
    summary = result.stderr.decode(errors="replace")
    assert f"Produced {len(lines)} records" in summary, summary


def parse_json_lines(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]


def runnel_consume_json(broker, topic: str, *args: str) -> list[dict]:
    result = runnel(broker, "consume", topic, "--format", "json", *args)
    return parse_json_lines(result.stdout)


def encode(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def json_record(record: dict) -> tuple:
    """(key, value, headers) of one `runnel consume --format json` line, as bytes."""
    headers = [(h["key"], encode(h["value"])) for h in record["headers"]]
    return encode(record["key"]), encode(record["value"]), headers


def check_partition_order(by_partition: dict[int, list[tuple[int, int]]], what: str) -> None:
    """Per partition, offsets run 0, 1, 2, ... and the produce index increases with them."""
    for partition, entries in by_partition.items():
        offsets = [offset for offset, _ in entries]
        assert offsets == list(range(len(entries))), f"{what}: partition {partition} offsets {offsets[:20]}..."
        indexes = [index for _, index in entries]
        assert indexes == sorted(indexes), f"{what}: partition {partition} out of produce order: {indexes[:40]}"


# --- 1. Our producer -> confluent-kafka and kafka-python ------------------------------------------


def cli_lines(codec: str, count: int) -> tuple[list[bytes], list[tuple[bytes | None, bytes]]]:
    """Input lines for `runnel produce --key-separator ':'` and the (key, value) each must give.

    Most lines have a key; every 50th has none (no separator); values carry the separator
    again (split at the first only), non-ASCII text and a compressible payload; a few are empty.
    """
    lines, expected = [], []
    for i in range(count):
        if i % 50 == 7:
            value = f"{codec}-{i:04d}-no key here, \u00e9t\u00e9 {'x' * (i % 30)}".encode()
            lines.append(value)
            expected.append((None, value))
            continue
        key = f"user-{i % 37}".encode()
        value = b"" if i % 97 == 3 else f"{codec}-{i:04d}-a:b:c \u20ac {'payload ' * (i % 20)}".encode()
        lines.append(key + b":" + value)
        expected.append((key, value))
    return lines, expected


@pytest.mark.parametrize("codec", CODECS)
def test_runnel_producer_read_by_confluent_and_kafka_python(broker, codec):
    topic = unique_topic(f"ix-out-{codec}")
    partitions = 3
    create_topic(broker.bootstrap, topic, partitions=partitions)
    count = 500
    lines, expected = cli_lines(codec, count)
    runnel_produce(
        broker, topic, lines,
        "--compression", codec, "--key-separator", ":", "--header", "trace=abc", "--header", "empty=",
    )
    # Compared as sorted lists: empty values repeat, so (key, value) pairs are not a set.
    expected_sorted = sorted(expected, key=repr)

    # confluent-kafka, manual assignment from the beginning.
    records = consume_to_end(broker.bootstrap, topic, list(range(partitions)))
    got = [(r.key, r.value) for r in records]
    assert len(records) == count, f"confluent read {len(records)} of {count}"
    assert sorted(got, key=repr) == expected_sorted, "confluent read different (key, value) pairs"
    bad_headers = [r for r in records if list(r.headers or ()) != CLI_HEADERS]
    assert not bad_headers, f"confluent: {len(bad_headers)} records with wrong headers, first: {bad_headers[0]}"
    # Non-empty values are unique and give each record's input position, for the order check.
    position = {value: i for i, (_key, value) in enumerate(expected) if value}
    by_partition: dict[int, list] = defaultdict(list)
    key_partition: dict[bytes, int] = {}
    for r in records:
        if r.value:
            by_partition[r.partition].append((r.offset, position[r.value]))
        if r.key is not None:
            assert key_partition.setdefault(r.key, r.partition) == r.partition, f"key {r.key!r} in two partitions"
    # Empty values have no position: check offsets on the full list, order on the rest.
    full: dict[int, list[int]] = defaultdict(list)
    for r in records:
        full[r.partition].append(r.offset)
    for partition, offsets in full.items():
        assert offsets == list(range(len(offsets))), f"confluent: partition {partition} offsets {offsets[:20]}"
    for partition, entries in by_partition.items():
        indexes = [index for _, index in entries]
        assert indexes == sorted(indexes), f"confluent: partition {partition} out of produce order"
    print(f"interop: runnel produce {codec} {count} records -> confluent read {len(records)} intact "
          f"(partitions {dict(sorted(Counter(r.partition for r in records).items()))})")

    # kafka-python, manual assignment from the beginning.
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    try:
        tps = [KpTopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        kp_records = []
        deadline = time.monotonic() + 30
        while len(kp_records) < count:
            assert time.monotonic() < deadline, f"kafka-python read {len(kp_records)} of {count}"
            for batch in consumer.poll(timeout_ms=500).values():
                kp_records.extend(batch)
    finally:
        consumer.close()
    assert len(kp_records) == count, f"kafka-python read {len(kp_records)} records, {count} produced"
    assert sorted(((r.key, r.value) for r in kp_records), key=repr) == expected_sorted
    bad_headers = [r for r in kp_records if list(r.headers) != CLI_HEADERS]
    assert not bad_headers, f"kafka-python: {len(bad_headers)} records with wrong headers, first: {bad_headers[0]}"
    # Same placement as confluent saw.
    assert sorted((r.partition, r.offset, r.key, r.value) for r in kp_records) == sorted(
        (r.partition, r.offset, r.key, r.value) for r in records
    )
    print(f"interop: runnel produce {codec} {count} records -> kafka-python read {len(kp_records)} intact")


# --- 2. Their producers -> our consumer --------------------------------------------------------------


def confluent_items(codec: str, count: int) -> list[tuple]:
    """(key, value, headers) with null keys, null values, no headers, repeated, empty and null headers."""
    items = []
    for i in range(count):
        key = None if i % 17 == 5 else f"k{i % 13}".encode()
        value = None if i % 11 == 4 else f"cf-{codec}-{i:04d}-\u00fcber {'data ' * (i % 25)}".encode()
        if i % 3 == 0:
            headers = None
        else:
            headers = [("trace", f"t{i}".encode()), ("empty", b""), ("nothing", None), ("dup", b"1"), ("dup", b"2")]
        items.append((key, value, headers))
    return items


def compare_with_runnel_consume(broker, topic: str, acked: dict, what: str) -> list[dict]:
    """Read the topic with `runnel consume --exit-at-end --format json` and compare every record with
    `acked` {(partition, offset): (key, value, headers)}."""
    got = runnel_consume_json(broker, topic, "--offset", "earliest", "--exit-at-end")
    assert all(r["topic"] == topic for r in got)
    seen: dict = {}
    for r in got:
        at = (r["partition"], r["offset"])
        assert at not in seen, f"{what}: runnel consume printed {at} twice"
        seen[at] = json_record(r)
    missing = sorted(set(acked) - set(seen))
    extra = sorted(set(seen) - set(acked))
    assert not missing and not extra, f"{what}: missing {missing[:10]}, unexpected {extra[:10]}"
    mismatched = [(at, acked[at], seen[at]) for at in sorted(acked) if acked[at] != seen[at]]
    assert not mismatched, f"{what}: {len(mismatched)} records differ, first (at, produced, read): {mismatched[0]}"
    by_partition: dict[int, list[int]] = defaultdict(list)
    for r in got:
        by_partition[r["partition"]].append(r["offset"])
    for partition, offsets in by_partition.items():
        assert offsets == sorted(offsets), f"{what}: partition {partition} printed out of offset order"
    return got


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_producer_read_by_runnel_consume(broker, codec):
    topic = unique_topic(f"ix-in-cf-{codec}")
    create_topic(broker.bootstrap, topic, partitions=3)
    count = 400
    items = confluent_items(codec, count)
    p = producer(broker.bootstrap, **{"compression.type": codec})
    # One callback per record, so that records alike in key and value (nulls) keep their headers.
    acked, failed = {}, []

    def delivered(index):
        def callback(error, message):
            if error is not None:
                failed.append((index, error))
            else:
                key, value, headers = items[index]
                acked[(message.partition(), message.offset())] = (key, value, list(headers or []))
        return callback

    for index, (key, value, headers) in enumerate(items):
        p.produce(topic, key=key, value=value, headers=headers, on_delivery=delivered(index))
        p.poll(0)
    produce_and_flush(p)
    assert failed == [] and len(acked) == count, f"{len(acked)} acked, failed deliveries: {failed[:3]}"
    got = compare_with_runnel_consume(broker, topic, acked, f"confluent {codec} -> runnel consume")
    print(f"interop: confluent produce {codec} {count} records -> runnel consume read {len(got)} intact "
          f"({sum(1 for r in got if r['value'] is None)} null values, {sum(1 for r in got if r['key'] is None)} null keys)")


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_producer_read_by_runnel_consume(broker, codec):
    topic = unique_topic(f"ix-in-kp-{codec}")
    create_topic(broker.bootstrap, topic, partitions=3)
    count = 400
    # The plain produce path; kafka-python's idempotent default is tested in test_kafka_python.py.
    kp = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        acks="all",
        enable_idempotence=False,
        compression_type=None if codec == "none" else codec,
        linger_ms=5,
    )
    try:
        sent = []
        for i in range(count):
            # kafka-python refuses a record with neither key nor value.
            key = None if i % 19 == 2 and i % 13 != 6 else f"kp{i % 7}".encode()
            value = None if i % 13 == 6 else f"kp-{codec}-{i:04d}-\u00e5 {'text ' * (i % 15)}".encode()
            headers = [] if i % 4 == 0 else [("trace", f"kp{i}".encode()), ("empty", b""), ("dup", b"a"), ("dup", b"b")]
            future = kp.send(topic, key=key, value=value, headers=headers)
            sent.append((future, (key, value, headers)))
        kp.flush(30)
        acked = {}
        for future, record in sent:
            metadata = future.get(timeout=30)
            acked[(metadata.partition, metadata.offset)] = record
    finally:
        kp.close(timeout=10)
    got = compare_with_runnel_consume(broker, topic, acked, f"kafka-python {codec} -> runnel consume")
    print(f"interop: kafka-python produce {codec} {count} records -> runnel consume read {len(got)} intact")


# --- 3. The default partitioner against librdkafka's murmur2_random ---------------------------------


def java_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_default_partitioner_matches_librdkafka_murmur2_random(broker):
    ours, theirs = unique_topic("ix-part-runnel"), unique_topic("ix-part-confluent")
    partitions, count = 6, 10_000
    create_topic(broker.bootstrap, ours, partitions=partitions)
    create_topic(broker.bootstrap, theirs, partitions=partitions)
    keys = [f"key-{i}" for i in range(count)]

    runnel_produce(broker, ours, [f"{k}:v-{k}".encode() for k in keys], "--key-separator", ":")
    p = producer(broker.bootstrap, partitioner="murmur2_random")
    log = DeliveryLog()
    for k in keys:
        while True:
            try:
                p.produce(theirs, key=k.encode(), value=f"v-{k}".encode(), on_delivery=log)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    produce_and_flush(p)
    assert log.failed == [] and len(log.acked) == count

    ours_read = consume_to_end(broker.bootstrap, ours, list(range(partitions)))
    theirs_read = consume_to_end(broker.bootstrap, theirs, list(range(partitions)))
    assert len(ours_read) == count and len(theirs_read) == count
    ours_map = {r.key.decode(): r.partition for r in ours_read}
    theirs_map = {r.key.decode(): r.partition for r in theirs_read}
    assert theirs_map == {key.decode(): partition for partition, _o, key, _v, _t in log.acked}
    assert len(ours_map) == count and len(theirs_map) == count
    assert all(r.value == f"v-{r.key.decode()}".encode() for r in ours_read)

    differ = [(k, ours_map[k], theirs_map[k], java_partition(k.encode(), partitions)) for k in keys if ours_map[k] != theirs_map[k]]
    assert not differ, (
        f"{len(differ)} of {count} keys on another partition than librdkafka murmur2_random; "
        f"first (key, runnel, librdkafka, java murmur2): {differ[:5]}"
    )
    java_differ = [k for k in keys if ours_map[k] != java_partition(k.encode(), partitions)]
    assert not java_differ, f"{len(java_differ)} keys differ from the Java murmur2 formula, first {java_differ[:5]}"
    spread = dict(sorted(Counter(ours_map.values()).items()))
    print(f"interop: partitioner {count} keys over {partitions} partitions: runnel == librdkafka murmur2_random "
          f"for {count - len(differ)} of {count} (spread {spread})")


def test_null_key_records_from_runnel_produce_all_arrive(broker):
    topic = unique_topic("ix-sticky")
    partitions, count = 6, 20_000
    create_topic(broker.bootstrap, topic, partitions=partitions)
    lines = [f"null-key-{i:05d} {'filler ' * 12}".encode() for i in range(count)]
    runnel_produce(broker, topic, lines)
    records = consume_to_end(broker.bootstrap, topic, list(range(partitions)))
    assert len(records) == count, f"read {len(records)} of {count}"
    assert all(r.key is None for r in records)
    assert sorted(r.value for r in records) == sorted(lines)
    by_partition: dict[int, list] = defaultdict(list)
    for r in records:
        by_partition[r.partition].append((r.offset, int(r.value.split()[0].rsplit(b"-", 1)[1])))
    check_partition_order(by_partition, "null keys")
    spread = dict(sorted(Counter(r.partition for r in records).items()))
    # Sticky partitioning (KIP-480) moves on when a batch completes; the spread is reported, not
    # asserted (a fast enough producer may legitimately keep to fewer partitions).
    print(f"interop: runnel produce {count} null-key records -> all read; partitions used "
          f"{len(spread)} of {partitions}: {spread}")


# --- 4. Groups of our consumers and of confluent-kafka consumers on one topic -----------------------


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    admin = admin_client(bootstrap)
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    result = admin.list_consumer_group_offsets([request])[group].result(timeout=30)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def test_runnel_group_and_confluent_group_each_read_everything(broker, members):
    topic = unique_topic("ix-groups")
    ours, theirs = unique_topic("g-runnel"), unique_topic("g-confluent")
    partitions, count = 4, 3000
    create_topic(broker.bootstrap, topic, partitions=partitions)
    runnel_produce(broker, topic, [f"k{i % 50}:group-{i:05d}".encode() for i in range(count)], "--key-separator", ":")
    records = consume_to_end(broker.bootstrap, topic, list(range(partitions)))
    ends = Counter(r.partition for r in records)
    assert len(records) == count

    # Both groups read at the same time.
    command = [
        str(runnel_bin()), "consume", topic, "--group", ours, "--offset", "earliest", "-n", str(count),
        "--format", "json", "--bootstrap", broker.bootstrap,
    ]
    started = time.monotonic()
    ours_proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=broker_environment())
    member = GroupMember(broker.bootstrap, theirs, [topic], "confluent-member", **CLASSIC_GROUP_CONFIG).start()
    members.append(member)
    try:
        stdout, stderr = ours_proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        ours_proc.send_signal(signal.SIGKILL)
        stdout, stderr = ours_proc.communicate()
        pytest.fail(
            f"runnel consume --group did not read {count} records within 90s; "
            f"printed {len(stdout.splitlines())}; stderr: {stderr.decode(errors='replace')[-2000:]}"
        )
    ours_elapsed = time.monotonic() - started
    assert ours_proc.returncode == 0, f"runnel consume exited {ours_proc.returncode}: {stderr.decode(errors='replace')[-2000:]}"
    got = parse_json_lines(stdout)
    ours_seen = Counter((r["partition"], r["offset"]) for r in got)
    expected = {(r.partition, r.offset) for r in records}
    assert set(ours_seen) == expected, (
        f"runnel group: missing {sorted(expected - set(ours_seen))[:10]}, unexpected {sorted(set(ours_seen) - expected)[:10]}"
    )
    assert {(r["partition"], r["offset"]): r["value"].encode() for r in got} == {(r.partition, r.offset): r.value for r in records}

    wait_until(
        lambda: (member.check() or True) and expected <= {(p, o) for _t, p, o, _v in member.snapshot_records()},
        60,
        f"confluent member in {theirs} read {count} records",
        member.describe,
    )
    theirs_seen = Counter((p, o) for _t, p, o, _v in member.snapshot_records())
    print(f"interop: runnel consume --group {count} records in {ours_elapsed:.1f}s "
          f"(duplicates {sum(n - 1 for n in ours_seen.values())}); confluent group read {len(set(theirs_seen))} "
          f"(duplicates {sum(n - 1 for n in theirs_seen.values())})")

    # Our consumer commits what it printed when it stops: confluent's admin client sees it.
    committed = committed_offsets(broker.bootstrap, ours, topic, partitions)
    assert committed == {p: ends[p] for p in range(partitions)}, f"runnel group committed {committed}, ends {dict(ends)}"
    print(f"interop: runnel group {ours} committed {committed} (read back by confluent admin)")


class RunnelMember:
    """`runnel consume TOPIC --group G --format json` as a child process, printed records collected
    by a reader thread; stopped with SIGTERM (it commits what it printed and leaves the group)."""

    def __init__(self, broker, topic: str, group: str, name: str):
        self.name = name
        self.command = [
            str(runnel_bin()), "consume", topic, "--group", group, "--offset", "earliest",
            "--format", "json", "--bootstrap", broker.bootstrap,
        ]
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr,
            env=broker_environment(), start_new_session=True,
        )
        self.lock = threading.Lock()
        self.records: list[dict] = []
        self._reader = threading.Thread(target=self._read, name=f"reader-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            record = json.loads(line)
            with self.lock:
                self.records.append(record)

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited early with {self.proc.returncode}: {self.stderr_tail()}")

    def seen(self) -> set:
        with self.lock:
            return {(r["partition"], r["offset"]) for r in self.records}

    def snapshot_records(self) -> list[dict]:
        with self.lock:
            return list(self.records)

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
                raise AssertionError(f"{self.name} did not exit within {timeout_s}s of SIGTERM: {self.stderr_tail()}")
        self._reader.join(10)
        return self.proc.returncode

    def stderr_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-2000:]

    def describe(self) -> str:
        return f"{self.name} (exit {self.proc.poll()}): read {len(self.seen())}; stderr {self.stderr_tail()[-500:]!r}"


def test_two_runnel_members_and_two_confluent_members_broadcast(broker, members):
    topic = unique_topic("ix-groups-2x2")
    ours, theirs = unique_topic("g-runnel2"), unique_topic("g-confluent2")
    partitions, batch = 6, 2000
    create_topic(broker.bootstrap, topic, partitions=partitions)
    runnel_produce(broker, topic, [f"k{i % 60}:first-{i:05d}".encode() for i in range(batch)], "--key-separator", ":")

    runnel_members = [RunnelMember(broker, topic, ours, f"runnel-{n}") for n in range(2)]
    confluent_members = [
        GroupMember(broker.bootstrap, theirs, [topic], f"confluent-{n}", **CLASSIC_GROUP_CONFIG).start() for n in range(2)
    ]
    members.extend(confluent_members)
    try:
        def describe() -> str:
            return "\n".join(m.describe() for m in [*runnel_members, *confluent_members])

        def group_read(expected: set) -> bool:
            for m in runnel_members:
                m.check()
            for m in confluent_members:
                m.check()
            ours_seen = set().union(*(m.seen() for m in runnel_members))
            theirs_seen = {(p, o) for m in confluent_members for _t, p, o, _v in m.snapshot_records()}
            return expected <= ours_seen and expected <= theirs_seen

        first = {(r.partition, r.offset) for r in consume_to_end(broker.bootstrap, topic, list(range(partitions)))}
        assert len(first) == batch
        wait_until(lambda: group_read(first), 60, f"both groups read the first {batch}", describe)
        # Let both groups settle with two members each, then write a second batch while all four read.
        time.sleep(3)
        before = [len(m.snapshot_records()) for m in runnel_members]
        runnel_produce(broker, topic, [f"k{i % 60}:second-{i:05d}".encode() for i in range(batch)], "--key-separator", ":")
        records = consume_to_end(broker.bootstrap, topic, list(range(partitions)))
        everything = {(r.partition, r.offset) for r in records}
        assert len(everything) == 2 * batch
        wait_until(lambda: group_read(everything), 60, f"both groups read all {2 * batch}", describe)
        values = {(r.partition, r.offset): r.value.decode() for r in records}
        for m in runnel_members:
            for r in m.snapshot_records():
                assert values[(r["partition"], r["offset"])] == r["value"], f"{m.name} printed {r}"
    finally:
        codes = [m.stop() for m in runnel_members]
    assert codes == [0, 0], f"runnel consume exit codes {codes}: " + " | ".join(m.stderr_tail() for m in runnel_members)
    second_split = [len(m.snapshot_records()) - b for m, b in zip(runnel_members, before)]
    ours_counts = Counter((r["partition"], r["offset"]) for m in runnel_members for r in m.snapshot_records())
    theirs_counts = Counter((p, o) for m in confluent_members for _t, p, o, _v in m.snapshot_records())
    ends = Counter(p for p, _o in everything)
    committed = committed_offsets(broker.bootstrap, ours, topic, partitions)
    print(
        f"interop: 2 runnel members read {len(ours_counts)} of {2 * batch} (duplicates "
        f"{sum(n - 1 for n in ours_counts.values())}; second batch split {second_split}); 2 confluent members read "
        f"{len(theirs_counts)} (duplicates {sum(n - 1 for n in theirs_counts.values())}); runnel group committed {committed}"
    )
    assert committed == {p: ends[p] for p in range(partitions)}, f"runnel group committed {committed}, ends {dict(ends)}"
