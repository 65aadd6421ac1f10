"""Consumer groups with the pure-Python clients: kafka-python (threads) and aiokafka (asyncio).

Each client runs its own group coordinator protocol (JoinGroup, SyncGroup, Heartbeat,
OffsetCommit, OffsetFetch at the versions it picks) and its own assignors. Records are produced
with confluent-kafka; the groups only consume.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition as AioTopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTopicPartition
from kafka.errors import CommitFailedError, KafkaError as KpKafkaError
from kafka.structs import OffsetAndMetadata

from conftest import Broker, unique_topic
from support import GROUP_BROKER_ARGS, acked_keys, create_topic, produce_per_partition, wait_until

TIMEOUT_S = 60.0
GROUP_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500, "max_poll_interval_ms": 20000}


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    instance = Broker(tmp_path_factory.mktemp("runnel-groups-py"), GROUP_BROKER_ARGS)
    try:
        instance.start()
        yield instance
    finally:
        instance.kill9()


# --- kafka-python ----------------------------------------------------------------------------


def kp_consumer(broker, group: str, name: str) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        client_id=name,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **GROUP_TIMEOUTS,
    )


def kp_poll(consumer: KafkaConsumer, count: int) -> list:
    records = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(records) < count:
        assert time.monotonic() < deadline, f"read {len(records)} of {count}"
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend(batch)
    return records


def test_kafka_python_group_commits_and_a_new_member_resumes(broker):
    topic = unique_topic("kp-grp-resume")
    group = unique_topic("g-kp-resume")
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_per_partition(broker.bootstrap, topic, 2, 60)
    tp0, tp1 = KpTopicPartition(topic, 0), KpTopicPartition(topic, 1)

    first = kp_consumer(broker, group, "kp-resume-1")
    try:
        first.subscribe([topic])
        records = kp_poll(first, 120)
        assert first.assignment() == {tp0, tp1}
        # Processed 25 records of partition 0 and 40 of partition 1: commit exactly those.
        first.commit({tp0: OffsetAndMetadata(25, "kp p0", -1), tp1: OffsetAndMetadata(40, "kp p1", -1)})
        assert first.committed(tp0) == 25 and first.committed(tp1) == 40
    finally:
        first.close()
    assert sorted((r.partition, r.offset) for r in records) == [(p, o) for p in (0, 1) for o in range(60)]

    second = kp_consumer(broker, group, "kp-resume-2")
    try:
        second.subscribe([topic])
        resumed = kp_poll(second, (60 - 25) + (60 - 40))
        second.commit()  # the consumed positions
        assert second.committed(tp0) == 60 and second.committed(tp1) == 60
        metadata = second.committed(tp0, metadata=True)
    finally:
        second.close()
    by_partition = {p: sorted(r.offset for r in resumed if r.partition == p) for p in (0, 1)}
    print(
        f"kafka-python group resume: committed 25/40, the next member read p0 from {by_partition[0][0]}, "
        f"p1 from {by_partition[1][0]}, {len(resumed)} records, then committed 60/60"
    )
    assert by_partition == {0: list(range(25, 60)), 1: list(range(40, 60))}
    assert metadata.offset == 60


class KpMember:
    """A kafka-python group member polled by its own thread, committing after every poll."""

    def __init__(self, broker, group: str, topic: str, name: str):
        self.name = name
        self.lock = threading.Lock()
        self.records: list[tuple[str, int, int]] = []
        self.assignment: set = set()
        self.commit_failures = 0
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._consumer = kp_consumer(broker, group, name)
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                polled = self._consumer.poll(timeout_ms=100)
                batch = [(r.topic, r.partition, r.offset) for records in polled.values() for r in records]
                assignment = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
                with self.lock:
                    self.records.extend(batch)
                    self.assignment = assignment
                if batch:
                    try:
                        self._consumer.commit()
                    except (CommitFailedError, KpKafkaError):
                        with self.lock:
                            self.commit_failures += 1
        except BaseException as error:
            self.failure = error
        finally:
            self._consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def snapshot(self) -> tuple[set, list]:
        if self.failure is not None:
            raise AssertionError(f"{self.name} failed: {self.failure!r}")
        with self.lock:
            return set(self.assignment), list(self.records)


def test_kafka_python_two_members_share_partitions(broker):
    topic = unique_topic("kp-grp-share")
    group = unique_topic("g-kp-share")
    create_topic(broker.bootstrap, topic, partitions=4)
    partitions = {(topic, p) for p in range(4)}
    members = [KpMember(broker, group, topic, f"kp-share-{i}") for i in range(2)]
    try:

        def settled() -> bool:
            a, b = (m.snapshot()[0] for m in members)
            return len(a) == 2 and len(b) == 2 and a | b == partitions

        settle_s = wait_until(settled, 45, "kafka-python members own 2 partitions each", lambda: [m.snapshot()[0] for m in members])
        log = produce_per_partition(broker.bootstrap, topic, 4, 100)
        expected = acked_keys(log, topic)

        def counts() -> Counter:
            return Counter(r for m in members for r in m.snapshot()[1])

        wait_until(lambda: expected <= set(counts()), TIMEOUT_S, "all records read", lambda: len(counts()))
        read = counts()
        assignments = [sorted(p for _, p in m.snapshot()[0]) for m in members]
        print(
            f"kafka-python group: 2 members, assignments {assignments} (settled in {settle_s:.1f}s), "
            f"{len(expected)} records, read {len(read)}, duplicates {sum(n - 1 for n in read.values())}"
        )
        assert set(read) == expected
        assert all(n == 1 for n in read.values())
        for member in members:
            assignment, records = member.snapshot()
            assert {(t, p) for t, p, _ in records} == assignment
    finally:
        for member in members:
            member.stop()


# --- aiokafka --------------------------------------------------------------------------------


def aio_consumer(broker, group: str, name: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        client_id=name,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **GROUP_TIMEOUTS,
    )


async def aio_read(consumer: AIOKafkaConsumer, count: int) -> list:
    records = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    while len(records) < count:
        assert loop.time() < deadline, f"read {len(records)} of {count}"
        for batch in (await consumer.getmany(timeout_ms=200)).values():
            records.extend(batch)
    return records


def test_aiokafka_group_commits_and_a_new_member_resumes(broker):
    topic = unique_topic("aio-grp-resume")
    group = unique_topic("g-aio-resume")
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_per_partition(broker.bootstrap, topic, 2, 60)
    tp0, tp1 = AioTopicPartition(topic, 0), AioTopicPartition(topic, 1)

    async def scenario():
        first = aio_consumer(broker, group, "aio-resume-1")
        await first.start()
        try:
            first.subscribe([topic])
            records = await aio_read(first, 120)
            assert first.assignment() == {tp0, tp1}
            await first.commit({tp0: 33, tp1: 12})
            committed_first = (await first.committed(tp0), await first.committed(tp1))
        finally:
            await first.stop()
        second = aio_consumer(broker, group, "aio-resume-2")
        await second.start()
        try:
            second.subscribe([topic])
            resumed = await aio_read(second, (60 - 33) + (60 - 12))
            await second.commit()
            committed_second = (await second.committed(tp0), await second.committed(tp1))
        finally:
            await second.stop()
        return records, committed_first, resumed, committed_second

    records, committed_first, resumed, committed_second = asyncio.run(scenario())
    by_partition = {p: sorted(r.offset for r in resumed if r.partition == p) for p in (0, 1)}
    print(
        f"aiokafka group resume: committed {committed_first}, the next member read p0 from {by_partition[0][0]}, "
        f"p1 from {by_partition[1][0]}, then committed {committed_second}"
    )
    assert sorted((r.partition, r.offset) for r in records) == [(p, o) for p in (0, 1) for o in range(60)]
    assert committed_first == (33, 12)
    assert by_partition == {0: list(range(33, 60)), 1: list(range(12, 60))}
    assert committed_second == (60, 60)


def test_aiokafka_two_members_share_partitions(broker):
    topic = unique_topic("aio-grp-share")
    group = unique_topic("g-aio-share")
    create_topic(broker.bootstrap, topic, partitions=4)
    partitions = {AioTopicPartition(topic, p) for p in range(4)}

    async def scenario():
        consumers = [aio_consumer(broker, group, f"aio-share-{i}") for i in range(2)]
        reads: list[list] = [[], []]
        stop = asyncio.Event()

        async def run(index: int, consumer: AIOKafkaConsumer) -> None:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=100)
                got = [(r.topic, r.partition, r.offset) for records in batches.values() for r in records]
                if got:
                    reads[index].extend(got)
                    await consumer.commit()

        for consumer in consumers:
            await consumer.start()
            consumer.subscribe([topic])
        tasks = [asyncio.create_task(run(i, c)) for i, c in enumerate(consumers)]
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            deadline = started + 45
            while not (
                all(len(c.assignment()) == 2 for c in consumers)
                and consumers[0].assignment() | consumers[1].assignment() == partitions
            ):
                assert loop.time() < deadline, f"assignments {[c.assignment() for c in consumers]}"
                for task in tasks:
                    if task.done():
                        task.result()
                await asyncio.sleep(0.05)
            settle_s = loop.time() - started
            log = await asyncio.to_thread(produce_per_partition, broker.bootstrap, topic, 4, 100)
            expected = acked_keys(log, topic)
            deadline = loop.time() + TIMEOUT_S
            while not expected <= set(reads[0]) | set(reads[1]):
                assert loop.time() < deadline, f"read {len(reads[0]) + len(reads[1])} of {len(expected)}"
                for task in tasks:
                    if task.done():
                        task.result()
                await asyncio.sleep(0.05)
            assignments = [set(c.assignment()) for c in consumers]
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for consumer in consumers:
                await consumer.stop()
        return expected, reads, assignments, settle_s

    expected, reads, assignments, settle_s = asyncio.run(scenario())
    counts = Counter(reads[0] + reads[1])
    print(
        f"aiokafka group: 2 members, assignments {[sorted(tp.partition for tp in a) for a in assignments]} "
        f"(settled in {settle_s:.1f}s), {len(expected)} records, read {len(counts)}, "
        f"duplicates {sum(n - 1 for n in counts.values())}"
    )
    assert set(counts) == expected
    assert all(n == 1 for n in counts.values())
    for index, assignment in enumerate(assignments):
        assert {(t, p) for t, p, _ in reads[index]} == {(tp.topic, tp.partition) for tp in assignment}
