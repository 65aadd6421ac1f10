"""Small helpers over confluent-kafka shared by the compat tests.

`consumer` and `consume_to_end` use manual assignment (`assign`), never `subscribe`; librdkafka
still wants a `group.id`, which they never use for commits. The consumer-group helpers
(`GroupMember`, `MemberProcess`) at the end of this file subscribe.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
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


def high_watermark(bootstrap: str, topic: str, partition: int = 0) -> int:
    """The high watermark of one partition, 0 while its topic does not exist yet: for polling a
    topic that something else (a connector, a Streams app) creates when it first writes."""
    try:
        return watermarks(bootstrap, topic, partition)[1]
    except KafkaException as e:
        if e.args[0].code() in (KafkaError._UNKNOWN_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART):
            return 0
        raise


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


def read_with_librdkafka(
    bootstrap: str, topic: str, isolation: str, expected: int, partitions: int, timeout_s: float = CLIENT_TIMEOUT_S
) -> list[bytes]:
    """Every value in the topic at `isolation.level` `isolation`, waiting until `expected`
    arrived and then a little longer."""
    c = consumer(bootstrap, **{"isolation.level": isolation})
    try:
        c.assign([TopicPartition(topic, partition, 0) for partition in range(partitions)])
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        quiet_until = None
        while time.monotonic() < deadline:
            messages = c.consume(num_messages=100, timeout=0.2)
            for message in messages:
                if message.error() is None:
                    values.append(message.value())
                elif message.error().code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(message.error())
            if len(values) >= expected:
                quiet_until = quiet_until or time.monotonic() + 1.0
                if time.monotonic() > quiet_until:
                    break
        return values
    finally:
        c.close()


EOS_APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "eos_app.py")


def start_eos_app(bootstrap: str, source: str, sink: str, group: str, idle_s: float = 8) -> subprocess.Popen:
    """The consume-transform-produce application of eos_app.py, as its own process (so that it
    can be killed), with transactional id `{group}-txn`; it finishes once it has read nothing
    for `idle_s` (longer than any pause a fault causes)."""
    return subprocess.Popen(
        [sys.executable, EOS_APP, bootstrap, source, sink, group, f"{group}-txn", str(idle_s)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


# --- Consumer groups ---------------------------------------------------------------------------
#
# The helpers above use manual assignment. The ones below are for the consumer-group tests
# (tests/compat/test_groups*.py, scripts/group_rebalance_timing.py): consumers that `subscribe`,
# each polled by its own thread (GroupMember) or run in its own process (MemberProcess, which a
# test can SIGKILL so that it dies without leaving the group).

# A short first-rebalance delay keeps the group tests fast (Kafka's default is 3000 ms).
GROUP_REBALANCE_DELAY_MS = 200
GROUP_BROKER_ARGS = ("--group-initial-rebalance-delay-ms", str(GROUP_REBALANCE_DELAY_MS))

# Classic-protocol settings: the smallest session timeout a broker accepts by default
# (group.min.session.timeout.ms=6000), frequent heartbeats so rebalances are noticed quickly,
# and a bounded rebalance timeout (max.poll.interval.ms) so a stuck join cannot hang a test.
CLASSIC_GROUP_CONFIG = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
    "max.poll.interval.ms": 20000,
}

GROUP_SETTLE_TIMEOUT_S = 45.0
GROUP_READ_TIMEOUT_S = 60.0


def wait_until(predicate, timeout_s: float, what: str, describe=None, interval_s: float = 0.05) -> float:
    """Poll `predicate` until it is true; return the seconds it took; fail with `describe()`."""
    start = time.monotonic()
    deadline = start + timeout_s
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() > deadline:
            detail = describe() if describe is not None else ""
            raise AssertionError(f"{what}: not reached within {timeout_s}s. {detail}")
        time.sleep(interval_s)


def produce_per_partition(
    bootstrap: str, topic: str, partitions: int, per_partition: int, prefix: str = "r"
) -> DeliveryLog:
    """Produce `per_partition` records to each partition (values `prefix-partition-index`)."""
    p = producer(bootstrap)
    log = DeliveryLog()
    for index in range(per_partition):
        for partition in range(partitions):
            while True:
                try:
                    p.produce(
                        topic,
                        value=f"{prefix}-{partition}-{index}".encode(),
                        partition=partition,
                        on_delivery=log,
                    )
                    break
                except BufferError:
                    p.poll(0.05)
        p.poll(0)
    produce_and_flush(p)
    assert log.failed == [], f"{len(log.failed)} deliveries failed, first: {log.failed[:3]}"
    assert len(log.acked) == partitions * per_partition
    return log


def acked_keys(log: DeliveryLog, topic: str) -> set:
    """(topic, partition, offset) of every acknowledged record."""
    return {(topic, partition, offset) for partition, offset, *_ in log.acked}


class GroupMember:
    """A confluent-kafka consumer in a group, subscribed and polled by its own thread.

    Records what it reads as (topic, partition, offset, value), the partitions it owns (from the
    rebalance callbacks, and `assignment()` as the consumer reports it), every callback with
    its time, and, when `commit` is true, commits what each poll returned synchronously.
    """

    def __init__(self, bootstrap: str, group: str, topics: list[str], name: str, commit: bool = True, **config):
        self.name = name
        self.topics = list(topics)
        self.config = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": name,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **config,
        }
        self.commit_enabled = commit
        self.lock = threading.Lock()
        self.records: list[tuple[str, int, int, bytes | None]] = []
        self.read_at: list[float] = []
        self.owned: set = set()
        self.assignment: set = set()
        self.events: list[tuple[float, str, frozenset]] = []
        self.committed: dict = {}
        self.commit_errors: list[str] = []
        self.errors: list[str] = []
        self.failure: BaseException | None = None
        self.started_at: float | None = None
        self.closed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"member-{name}", daemon=True)

    # Callbacks run on the member's own thread, inside consume().
    def _on_assign(self, _consumer, partitions) -> None:
        keys = frozenset((tp.topic, tp.partition) for tp in partitions)
        with self.lock:
            self.events.append((time.monotonic(), "assign", keys))
            self.owned |= keys

    def _on_revoke(self, _consumer, partitions) -> None:
        keys = frozenset((tp.topic, tp.partition) for tp in partitions)
        with self.lock:
            self.events.append((time.monotonic(), "revoke", keys))
            self.owned -= keys

    def _on_lost(self, _consumer, partitions) -> None:
        keys = frozenset((tp.topic, tp.partition) for tp in partitions)
        with self.lock:
            self.events.append((time.monotonic(), "lost", keys))
            self.owned -= keys

    def start(self) -> "GroupMember":
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            c = Consumer(self.config, logger=LIBRDKAFKA_LOGGER)
        except BaseException as error:  # a bad configuration: report it, do not hang the test
            self.failure = error
            self.closed.set()
            return
        try:
            c.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
            while not self._stop.is_set():
                messages = c.consume(num_messages=500, timeout=0.1)
                now = time.monotonic()
                last = {}
                batch = []
                for message in messages:
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            continue
                        if error.fatal():
                            raise KafkaException(error)
                        with self.lock:
                            self.errors.append(str(error))
                        continue
                    key = (message.topic(), message.partition())
                    batch.append((message.topic(), message.partition(), message.offset(), message.value()))
                    last[key] = message.offset()
                current = {(tp.topic, tp.partition) for tp in c.assignment()}
                with self.lock:
                    self.records.extend(batch)
                    self.read_at.extend([now] * len(batch))
                    self.assignment = current
                if last and self.commit_enabled:
                    offsets = [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]
                    try:
                        c.commit(offsets=offsets, asynchronous=False)
                        with self.lock:
                            for (t, p), o in last.items():
                                self.committed[(t, p)] = o + 1
                    except KafkaException as error:
                        with self.lock:
                            self.commit_errors.append(str(error.args[0]))
        except BaseException as error:
            self.failure = error
        finally:
            try:
                c.close()
            finally:
                self.closed.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop polling and close the consumer (which leaves the group, unless static)."""
        self._stop.set()
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"member {self.name} did not close within {timeout_s}s"

    def check(self) -> None:
        if self.failure is not None:
            raise AssertionError(f"member {self.name} failed: {self.failure!r}") from self.failure

    # Snapshots, safe to call from the test thread.
    def snapshot_assignment(self) -> set:
        with self.lock:
            return set(self.assignment)

    def snapshot_owned(self) -> set:
        with self.lock:
            return set(self.owned)

    def snapshot_records(self) -> list:
        with self.lock:
            return list(self.records)

    def snapshot_events(self) -> list:
        with self.lock:
            return list(self.events)

    def snapshot_committed(self) -> dict:
        with self.lock:
            return dict(self.committed)

    def describe(self) -> str:
        with self.lock:
            return (
                f"{self.name}: assignment {sorted(self.assignment)}, owned {sorted(self.owned)}, "
                f"read {len(self.records)}, events {[(kind, sorted(keys)) for _, kind, keys in self.events]}, "
                f"commit errors {self.commit_errors[-3:]}, errors {self.errors[-3:]}, failure {self.failure!r}"
            )


MEMBER_PROCESS_SCRIPT = r"""
import json, sys, time
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

spec = json.loads(sys.argv[1])
commit_prefix = spec.get("commit_prefix")
stopped = set()  # partitions on which a record was read that must not be committed


def emit(**fields):
    fields["t"] = time.monotonic()
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def on_assign(_c, parts):
    emit(event="assign", partitions=[[tp.topic, tp.partition] for tp in parts])


def on_revoke(_c, parts):
    emit(event="revoke", partitions=[[tp.topic, tp.partition] for tp in parts])


def on_lost(_c, parts):
    emit(event="lost", partitions=[[tp.topic, tp.partition] for tp in parts])


c = Consumer(spec["config"])
c.subscribe(spec["topics"], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
emit(event="started")
while True:
    messages = c.consume(num_messages=500, timeout=0.1)
    read, last = [], {}
    for m in messages:
        if m.error() is not None:
            if m.error().code() != KafkaError._PARTITION_EOF:
                emit(event="error", error=str(m.error()))
            continue
        key = (m.topic(), m.partition())
        read.append([m.topic(), m.partition(), m.offset()])
        value = m.value() or b""
        if commit_prefix is not None and not value.startswith(commit_prefix.encode()):
            stopped.add(key)
        if key not in stopped:
            last[key] = m.offset()
    if read:
        emit(event="read", records=read)
    if last:
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]
        try:
            c.commit(offsets=offsets, asynchronous=False)
            emit(event="commit", offsets=[[t, p, o + 1] for (t, p), o in sorted(last.items())])
        except KafkaException as error:
            emit(event="commit_error", error=str(error.args[0]))
"""


class MemberProcess:
    """A confluent-kafka group member in a child process, so that it can die by SIGKILL.

    It commits after every poll, except on a partition once it has read a record whose value
    does not start with `commit_prefix` (when given). Its stdout is a stream of JSON events
    (assign, revoke, read, commit), collected by a reader thread.
    """

    def __init__(self, bootstrap: str, group: str, topics: list[str], name: str, commit_prefix: str | None = None, **config):
        self.name = name
        spec = {
            "config": {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "client.id": name,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                **config,
            },
            "topics": list(topics),
            "commit_prefix": commit_prefix,
        }
        self.lock = threading.Lock()
        self.records: list[tuple[str, int, int]] = []
        self.owned: set = set()
        self.events: list[tuple[float, str, object]] = []
        self.committed: dict = {}
        self.killed = False
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNEL_")}
        # librdkafka logs to stderr: a file, so that a full pipe can never block the member.
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", MEMBER_PROCESS_SCRIPT, json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
            start_new_session=True,
        )
        self.started_at = time.monotonic()
        self._reader = threading.Thread(target=self._read, name=f"reader-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event["event"]
            with self.lock:
                if kind == "assign":
                    keys = {tuple(k) for k in event["partitions"]}
                    self.owned |= keys
                    self.events.append((event["t"], kind, frozenset(keys)))
                elif kind in ("revoke", "lost"):
                    keys = {tuple(k) for k in event["partitions"]}
                    self.owned -= keys
                    self.events.append((event["t"], kind, frozenset(keys)))
                elif kind == "read":
                    self.records.extend(tuple(r) for r in event["records"])
                elif kind == "commit":
                    for t, p, o in event["offsets"]:
                        self.committed[(t, p)] = o
                else:
                    self.events.append((event["t"], kind, event.get("error")))

    def kill9(self) -> float:
        """SIGKILL: the member dies without leaving the group. Returns the time of the kill."""
        self.killed = True
        self.proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        self.proc.wait(timeout=10)
        self._reader.join(10)
        return killed_at

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self) -> None:
        if not self.killed and self.proc.poll() is not None:
            raise AssertionError(
                f"member process {self.name} exited with {self.proc.returncode}: {self.stderr_tail()}"
            )

    def stderr_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-2000:]

    def snapshot_owned(self) -> set:
        with self.lock:
            return set(self.owned)

    def snapshot_records(self) -> list:
        with self.lock:
            return list(self.records)

    def snapshot_committed(self) -> dict:
        with self.lock:
            return dict(self.committed)

    def describe(self) -> str:
        with self.lock:
            return (
                f"{self.name} (pid {self.proc.pid}, exit {self.proc.poll()}): owned {sorted(self.owned)}, "
                f"read {len(self.records)}, committed {self.committed}, events {self.events[-6:]}"
            )


def partition_owners(members) -> dict:
    """{(topic, partition): [member names]} over the partitions the members say they own."""
    owners: dict = {}
    for member in members:
        for key in member.snapshot_owned():
            owners.setdefault(key, []).append(member.name)
    return owners


def owns_exactly(members, partitions: set, sizes: dict | None = None) -> bool:
    """True when every partition is owned by exactly one of `members`, none is owned twice,
    and (when given) each member owns sizes[name] partitions."""
    owners = partition_owners(members)
    if set(owners) != partitions or any(len(names) != 1 for names in owners.values()):
        return False
    if sizes is not None:
        for member in members:
            if len(member.snapshot_owned()) != sizes[member.name]:
                return False
    return True


def describe_members(members) -> str:
    return "\n".join(member.describe() for member in members)


def read_counts(members) -> Counter:
    """How many times each (topic, partition, offset) was read, over all members."""
    counts: Counter = Counter()
    for member in members:
        counts.update((r[0], r[1], r[2]) for r in member.snapshot_records())
    return counts


def stop_all(members) -> None:
    for member in members:
        if isinstance(member, GroupMember):
            member._stop.set()
    for member in members:
        if isinstance(member, GroupMember):
            member.stop()
        elif member.alive():
            member.kill9()


def partitions_of(topic: str, count: int) -> set:
    return {(topic, p) for p in range(count)}


def wait_settled(members: list, partitions: set, sizes: dict | None = None, timeout_s: float = GROUP_SETTLE_TIMEOUT_S) -> float:
    """Wait until the members own `partitions` between them, each exactly once, every member
    owns at least one, the consumers' own assignment() agrees with what the callbacks said,
    and no member has failed."""

    def settled() -> bool:
        for member in members:
            member.check()
        if not owns_exactly(members, partitions, sizes):
            return False
        if not all(member.snapshot_owned() for member in members):
            return False
        return all(
            member.snapshot_assignment() == member.snapshot_owned()
            for member in members
            if isinstance(member, GroupMember)
        )

    return wait_until(settled, timeout_s, "group settled", lambda: describe_members(members))


def wait_read(members: list, expected: set, timeout_s: float = GROUP_READ_TIMEOUT_S) -> float:
    def done() -> bool:
        for member in members:
            if isinstance(member, GroupMember):
                member.check()
        return expected <= set(read_counts(members))

    return wait_until(
        done,
        timeout_s,
        f"{len(expected)} records read",
        lambda: f"read {len(set(read_counts(members)) & expected)} of {len(expected)}\n{describe_members(members)}",
    )


def wait_committed(members: list, offsets: dict, timeout_s: float = 30.0) -> None:
    """Wait until, between them, the members have committed `offsets` {(topic, partition): offset}."""

    def committed() -> dict:
        merged: dict = {}
        for member in members:
            for key, offset in member.snapshot_committed().items():
                merged[key] = max(offset, merged.get(key, -1))
        return merged

    wait_until(
        lambda: all(committed().get(key) == offset for key, offset in offsets.items()),
        timeout_s,
        "offsets committed",
        lambda: f"want {offsets}, have {committed()}",
    )


def duplicates(counts) -> int:
    return sum(n - 1 for n in counts.values() if n > 1)
