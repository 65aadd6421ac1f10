"""Consumer groups with confluent-kafka (librdkafka), classic rebalance protocol.

Members subscribe and are polled by their own threads (`support.GroupMember`); the one that
must die without leaving the group runs in a child process (`support.MemberProcess`) and is
killed with SIGKILL. The module's broker runs with a short first-rebalance delay so that a
group starting from empty settles quickly. Every test makes its own topic and group.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from conftest import Broker, unique_topic
from support import (
    CLASSIC_GROUP_CONFIG,
    GROUP_READ_TIMEOUT_S as READ_TIMEOUT_S,
    GROUP_BROKER_ARGS,
    LIBRDKAFKA_LOGGER,
    GroupMember,
    MemberProcess,
    acked_keys,
    admin_client,
    create_topic,
    describe_members,
    duplicates,
    owns_exactly,
    partitions_of,
    produce_per_partition,
    read_counts,
    stop_all,
    wait_committed,
    wait_read,
    wait_settled,
    wait_until,
)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    instance = Broker(tmp_path_factory.mktemp("runnel-groups"), GROUP_BROKER_ARGS)
    try:
        instance.start()
        yield instance
    finally:
        instance.kill9()


@pytest.fixture
def members():
    """Members a test starts; all stopped (or killed) at teardown whatever the outcome."""
    started: list = []
    yield started
    stop_all(started)


def start_member(members: list, bootstrap: str, group: str, topic: str, name: str, **config) -> GroupMember:
    member = GroupMember(bootstrap, group, [topic], name, **{**CLASSIC_GROUP_CONFIG, **config}).start()
    members.append(member)
    return member


# --- balance and broadcast -----------------------------------------------------------------


def test_balance_three_members_share_six_partitions(broker, members):
    topic = unique_topic("grp-balance")
    group = unique_topic("g-balance")
    create_topic(broker.bootstrap, topic, partitions=6)
    partitions = partitions_of(topic, 6)
    for index in range(3):
        start_member(members, broker.bootstrap, group, topic, f"balance-{index}")
    settle_s = wait_settled(members, partitions, {m.name: 2 for m in members})
    events_at_settle = {m.name: len(m.snapshot_events()) for m in members}
    assignments = {m.name: sorted(p for _t, p in m.snapshot_assignment()) for m in members}

    produce_started = time.monotonic()
    log = produce_per_partition(broker.bootstrap, topic, 6, 1000)
    expected = acked_keys(log, topic)
    wait_read(members, expected)
    read_s = time.monotonic() - produce_started
    counts = read_counts(members)
    print(
        f"group balance: 3 members, {len(expected)} records, read {len(counts)}, "
        f"duplicates {duplicates(counts)}; settled in {settle_s:.1f}s, produced and read in {read_s:.1f}s; "
        f"partitions per member {assignments}"
    )
    assert set(counts) == expected
    assert duplicates(counts) == 0
    for member in members:
        assert len(member.snapshot_assignment()) == 2, member.describe()
        read_partitions = {(t, p) for t, p, _o, _v in member.snapshot_records()}
        assert read_partitions == member.snapshot_owned(), f"{member.name} read outside its assignment"
        assert len(member.snapshot_events()) == events_at_settle[member.name], (
            f"{member.name} saw a rebalance after the group settled: {member.describe()}"
        )


def test_broadcast_two_groups_each_read_every_record(broker, members):
    topic = unique_topic("grp-broadcast")
    create_topic(broker.bootstrap, topic, partitions=3)
    partitions = partitions_of(topic, 3)
    group_a, group_b = unique_topic("g-bcast-a"), unique_topic("g-bcast-b")
    a = [start_member(members, broker.bootstrap, group_a, topic, f"bcast-a{i}") for i in range(2)]
    b = [start_member(members, broker.bootstrap, group_b, topic, "bcast-b0")]
    wait_settled(a, partitions)
    wait_settled(b, partitions, {"bcast-b0": 3})

    log = produce_per_partition(broker.bootstrap, topic, 3, 200)
    expected = acked_keys(log, topic)
    wait_read(a, expected)
    wait_read(b, expected)
    counts_a, counts_b = read_counts(a), read_counts(b)
    print(
        f"group broadcast: 2 groups, {len(expected)} records; group A (2 members) read {len(counts_a)}, "
        f"duplicates {duplicates(counts_a)}; group B (1 member) read {len(counts_b)}, "
        f"duplicates {duplicates(counts_b)}"
    )
    assert set(counts_a) == expected and duplicates(counts_a) == 0
    assert set(counts_b) == expected and duplicates(counts_b) == 0
    assert all(len(m.snapshot_owned()) in (1, 2) for m in a), describe_members(a)


# --- resume from the committed offset --------------------------------------------------------


def group_consumer(bootstrap: str, group: str, name: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": name,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **CLASSIC_GROUP_CONFIG,
        },
        logger=LIBRDKAFKA_LOGGER,
    )


def poll_offsets(c: Consumer, count: int, timeout_s: float = READ_TIMEOUT_S) -> list[int]:
    offsets: list[int] = []
    deadline = time.monotonic() + timeout_s
    while len(offsets) < count:
        assert time.monotonic() < deadline, f"read {len(offsets)} of {count} records: {offsets[-5:]}"
        message = c.poll(0.5)
        if message is None:
            continue
        if message.error() is not None:
            if message.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise KafkaException(message.error())
        offsets.append(message.offset())
    return offsets


def read_and_commit(bootstrap: str, group: str, topic: str, name: str, count: int, commit_at: int) -> list[int]:
    """A member reads `count` records, commits `commit_at` (synchronously), closes."""
    c = group_consumer(bootstrap, group, name)
    try:
        c.subscribe([topic])
        offsets = poll_offsets(c, count)
        c.commit(offsets=[TopicPartition(topic, 0, commit_at, metadata=f"{name} at {commit_at}")], asynchronous=False)
        [committed] = c.committed([TopicPartition(topic, 0)], timeout=10)
        assert committed.offset == commit_at
    finally:
        c.close()
    return offsets


def resume_and_read(bootstrap: str, group: str, topic: str, name: str, count: int) -> tuple[list[int], TopicPartition]:
    """A new member of the group: its committed offset, then the next `count` records it reads."""
    c = group_consumer(bootstrap, group, name)
    try:
        [committed] = c.committed([TopicPartition(topic, 0)], timeout=10)
        c.subscribe([topic])
        offsets = poll_offsets(c, count)
    finally:
        c.close()
    return offsets, committed


def test_resume_new_member_starts_after_the_commit(broker):
    topic = unique_topic("grp-resume")
    group = unique_topic("g-resume")
    create_topic(broker.bootstrap, topic, partitions=1)
    total, first_commit, second_commit = 300, 73, 190
    produce_per_partition(broker.bootstrap, topic, 1, total)

    first = read_and_commit(broker.bootstrap, group, topic, "resume-1", first_commit, first_commit)
    assert first == list(range(first_commit))
    second, committed = resume_and_read(broker.bootstrap, group, topic, "resume-2", 10)
    assert committed.offset == first_commit
    assert committed.metadata == f"resume-1 at {first_commit}"
    assert second == list(range(first_commit, first_commit + 10)), "the new member must start at the commit"

    # A later commit moves the group's position again (commit below what the member read).
    read_and_commit(broker.bootstrap, group, topic, "resume-3", second_commit - first_commit + 5, second_commit)
    third, committed = resume_and_read(broker.bootstrap, group, topic, "resume-4", total - second_commit)
    print(
        f"group resume: committed {first_commit}, next member read from {second[0]}; "
        f"committed {second_commit}, next member read from {third[0]} to {third[-1]}"
    )
    assert committed.offset == second_commit
    assert third == list(range(second_commit, total))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stop", ["sigterm", "kill9"])
def test_resume_after_broker_restart(broker_factory, stop):
    broker = broker_factory.start(*GROUP_BROKER_ARGS)
    topic = unique_topic("grp-resume-restart")
    group = unique_topic("g-resume-restart")
    create_topic(broker.bootstrap, topic, partitions=1)
    total, commit_at = 200, 57
    produce_per_partition(broker.bootstrap, topic, 1, total)
    first = read_and_commit(broker.bootstrap, group, topic, "restart-1", commit_at, commit_at)
    assert first == list(range(commit_at))

    if stop == "sigterm":
        assert broker.terminate() == 0
        broker.start()
    else:
        broker.restart()

    second, committed = resume_and_read(broker.bootstrap, group, topic, "restart-2", total - commit_at)
    print(f"group resume after {stop} restart: committed {commit_at}, next member read {second[0]}..{second[-1]}")
    assert committed.offset == commit_at, f"committed offset after restart: {committed}"
    assert committed.metadata == f"restart-1 at {commit_at}"
    assert second == list(range(commit_at, total))

    # A group that committed after the restart keeps that commit across a second restart.
    read_and_commit(broker.bootstrap, group, topic, "restart-3", 5, total - 20)
    broker.restart()
    third, committed = resume_and_read(broker.bootstrap, group, topic, "restart-4", 20)
    assert committed.offset == total - 20
    assert third == list(range(total - 20, total))


# --- failover: a member dies without leaving ------------------------------------------------


@pytest.mark.timeout(180)
def test_failover_killed_member_partitions_move_and_nothing_is_skipped(broker, members):
    topic = unique_topic("grp-failover")
    group = unique_topic("g-failover")
    create_topic(broker.bootstrap, topic, partitions=6)
    partitions = partitions_of(topic, 6)
    session_timeout_s = CLASSIC_GROUP_CONFIG["session.timeout.ms"] / 1000

    # The member in the child process commits records whose value starts with "keep" only:
    # it has read the "late" records but not committed them when it dies.
    doomed = MemberProcess(broker.bootstrap, group, [topic], "failover-doomed", commit_prefix="keep", **CLASSIC_GROUP_CONFIG)
    members.append(doomed)
    survivors = [start_member(members, broker.bootstrap, group, topic, f"failover-{i}") for i in range(2)]
    everyone = [doomed, *survivors]
    wait_settled(everyone, partitions, {m.name: 2 for m in everyone})

    keep = produce_per_partition(broker.bootstrap, topic, 6, 50, prefix="keep")
    wait_read(everyone, acked_keys(keep, topic))
    wait_committed(everyone, {key: 50 for key in partitions})
    late = produce_per_partition(broker.bootstrap, topic, 6, 50, prefix="late")
    expected = acked_keys(keep, topic) | acked_keys(late, topic)
    wait_read(everyone, expected)
    dead_partitions = doomed.snapshot_owned()
    wait_committed(survivors, {key: 100 for key in partitions - dead_partitions})
    assert len(dead_partitions) == 2
    dead_commits = doomed.snapshot_committed()
    assert {key: dead_commits.get(key) for key in dead_partitions} == {key: 50 for key in dead_partitions}
    dead_reads = set(doomed.snapshot_records())

    doomed.kill9()
    moved_s = wait_until(
        lambda: owns_exactly(survivors, partitions),
        session_timeout_s + 30,
        "survivors own every partition",
        lambda: describe_members(survivors),
    )
    must_reread = {(t, p, o) for (t, p) in dead_partitions for o in range(50, 100)}
    assert must_reread <= dead_reads, "the member read its late records before it died"
    reread_s = wait_read(survivors, must_reread)
    counts = read_counts(everyone)
    survivor_records = [r for m in survivors for r in m.snapshot_records()]
    print(
        f"group failover: 3 members, 1 killed (owned {sorted(p for _, p in dead_partitions)}, committed 50 each), "
        f"partitions moved {moved_s:.1f}s after the kill (session.timeout.ms {int(session_timeout_s * 1000)}), "
        f"uncommitted records read again {reread_s:.1f}s after that; {len(expected)} records, read {len(counts)}, "
        f"read twice {duplicates(counts)} (the dead member's uncommitted {len(must_reread)})"
    )
    assert set(counts) == expected, "a record was never read"
    for key in dead_partitions:
        offsets = sorted(o for t, p, o, _v in survivor_records if (t, p) == key)
        assert offsets == list(range(50, 100)), f"partition {key}: survivors read {offsets[:5]}..{offsets[-5:]}"
    twice = {key for key, n in counts.items() if n > 1}
    assert twice == must_reread, "only the dead member's uncommitted records may be read twice"
    assert all(n <= 2 for n in counts.values())
    # Kafka evicts a member that stopped heartbeating only once its session timed out.
    assert moved_s >= session_timeout_s - 2, f"partitions moved {moved_s:.1f}s after the kill, before the session timeout"


# --- cooperative-sticky: incremental rebalance -----------------------------------------------


def test_cooperative_sticky_second_member_takes_only_moved_partitions(broker, members):
    topic = unique_topic("grp-coop")
    group = unique_topic("g-coop")
    create_topic(broker.bootstrap, topic, partitions=6)
    partitions = partitions_of(topic, 6)
    coop = {"partition.assignment.strategy": "cooperative-sticky"}
    first = start_member(members, broker.bootstrap, group, topic, "coop-1", **coop)
    wait_settled([first], partitions, {"coop-1": 6})
    before = produce_per_partition(broker.bootstrap, topic, 6, 100, prefix="before")
    wait_read([first], acked_keys(before, topic))
    wait_committed([first], {key: 100 for key in partitions})
    initial = first.snapshot_owned()
    events_before_join = len(first.snapshot_events())

    second = start_member(members, broker.bootstrap, group, topic, "coop-2", **coop)
    both = [first, second]
    rebalance_s = wait_settled(both, partitions, {"coop-1": 3, "coop-2": 3})
    after = produce_per_partition(broker.bootstrap, topic, 6, 100, prefix="after")
    expected = acked_keys(before, topic) | acked_keys(after, topic)
    wait_read(both, expected)
    counts = read_counts(both)

    first_events = first.snapshot_events()[events_before_join:]
    revoked = set().union(*[keys for _t, kind, keys in first_events if kind == "revoke"] or [set()])
    assigned_again = set().union(*[keys for _t, kind, keys in first_events if kind == "assign"] or [set()])
    kept = first.snapshot_owned()
    print(
        f"group cooperative-sticky: first member kept {sorted(p for _, p in kept)}, revoked only "
        f"{sorted(p for _, p in revoked)}, second got {sorted(p for _, p in second.snapshot_owned())} "
        f"in {rebalance_s:.1f}s; {len(expected)} records, read {len(counts)}, duplicates {duplicates(counts)}"
    )
    assert not any(kind == "lost" for _t, kind, _k in first_events), first.describe()
    assert revoked == second.snapshot_owned(), "only the partitions that moved are revoked"
    assert revoked.isdisjoint(kept)
    assert kept <= initial and len(kept) == 3
    assert assigned_again == set(), "incremental: the first member is not handed its partitions again"
    assert set(counts) == expected
    assert duplicates(counts) == 0, "the second member starts where the first committed"


# --- static membership ----------------------------------------------------------------------


@pytest.mark.timeout(150)
def test_static_member_restart_gets_its_partitions_back_without_rebalance(broker, members):
    topic = unique_topic("grp-static")
    group = unique_topic("g-static")
    create_topic(broker.bootstrap, topic, partitions=4)
    partitions = partitions_of(topic, 4)
    session_timeout_s = CLASSIC_GROUP_CONFIG["session.timeout.ms"] / 1000
    stays = start_member(members, broker.bootstrap, group, topic, "static-a", **{"group.instance.id": "static-a"})
    restarts = start_member(members, broker.bootstrap, group, topic, "static-b", **{"group.instance.id": "static-b"})
    wait_settled([stays, restarts], partitions, {"static-a": 2, "static-b": 2})
    phase1 = produce_per_partition(broker.bootstrap, topic, 4, 50, prefix="one")
    wait_read([stays, restarts], acked_keys(phase1, topic))
    wait_committed([stays, restarts], {key: 50 for key in partitions})
    stays_events = stays.snapshot_events()
    stays_owned = stays.snapshot_owned()
    restarts_owned = restarts.snapshot_owned()

    # A static member does not send LeaveGroup when it closes (KIP-345).
    restarts.stop()
    closed_at = time.monotonic()
    again = start_member(members, broker.bootstrap, group, topic, "static-b-again", **{"group.instance.id": "static-b"})
    back_s = wait_until(
        lambda: again.snapshot_owned() == restarts_owned and again.snapshot_assignment() == restarts_owned,
        session_timeout_s + 20,
        "restarted static member owns its partitions again",
        lambda: describe_members([stays, again]),
    )
    assert time.monotonic() - closed_at < session_timeout_s, "the restart took longer than the session timeout"
    # Past the old incarnation's session timeout: still no rebalance for the other member.
    time.sleep(max(0.0, closed_at + session_timeout_s + 2 - time.monotonic()))
    phase2 = produce_per_partition(broker.bootstrap, topic, 4, 50, prefix="two")
    expected = acked_keys(phase1, topic) | acked_keys(phase2, topic)
    everyone = [stays, restarts, again]
    wait_read(everyone, expected)
    counts = read_counts(everyone)
    print(
        f"group static membership: member restarted with the same group.instance.id got "
        f"{sorted(p for _, p in again.snapshot_owned())} back {back_s:.1f}s after starting; the other member saw "
        f"{len(stays.snapshot_events()) - len(stays_events)} rebalance callbacks; {len(expected)} records, "
        f"read {len(counts)}, duplicates {duplicates(counts)}"
    )
    assert stays.snapshot_events() == stays_events, f"the other member saw a rebalance: {stays.describe()}"
    assert stays.snapshot_owned() == stays_owned
    assert again.snapshot_owned() == restarts_owned
    assert set(counts) == expected and duplicates(counts) == 0
    assert {(t, p) for t, p, _o, _v in again.snapshot_records()} <= restarts_owned


# --- the Admin API: list, describe, offsets, delete ------------------------------------------


def describe_group(admin, group: str):
    return admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=30)


def test_admin_lists_describes_and_deletes_groups(broker, members):
    topic = unique_topic("grp-admin")
    group = unique_topic("g-admin")
    create_topic(broker.bootstrap, topic, partitions=4)
    partitions = partitions_of(topic, 4)
    pair = [start_member(members, broker.bootstrap, group, topic, f"admin-{i}") for i in range(2)]
    wait_settled(pair, partitions, {"admin-0": 2, "admin-1": 2})
    log = produce_per_partition(broker.bootstrap, topic, 4, 10)
    wait_read(pair, acked_keys(log, topic))
    wait_committed(pair, {key: 10 for key in partitions})
    admin = admin_client(broker.bootstrap)

    listed = admin.list_consumer_groups(request_timeout=10).result(timeout=30)
    assert listed.errors == []
    [listing] = [g for g in listed.valid if g.group_id == group]
    assert listing.state == ConsumerGroupState.STABLE
    assert listing.is_simple_consumer_group is False
    stable = admin.list_consumer_groups(states={ConsumerGroupState.STABLE}, request_timeout=10).result(timeout=30)
    assert group in {g.group_id for g in stable.valid}
    empty = admin.list_consumer_groups(states={ConsumerGroupState.EMPTY}, request_timeout=10).result(timeout=30)
    assert group not in {g.group_id for g in empty.valid}

    description = describe_group(admin, group)
    assert description.group_id == group
    assert description.state == ConsumerGroupState.STABLE
    assert description.is_simple_consumer_group is False
    assert description.partition_assignor == "range", "librdkafka's first choice of range,roundrobin"
    assert description.coordinator.id == broker.node_id
    by_client = {m.client_id: m for m in description.members}
    assert set(by_client) == {"admin-0", "admin-1"}
    for member in pair:
        described = by_client[member.name]
        assert described.member_id, "a member id is handed out"
        assigned = {(tp.topic, tp.partition) for tp in described.assignment.topic_partitions}
        assert assigned == member.snapshot_owned(), f"{member.name}: described {assigned}"

    [offsets] = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=10).values()
    committed = {(tp.topic, tp.partition): tp.offset for tp in offsets.result(timeout=30).topic_partitions}
    assert committed == {key: 10 for key in partitions}

    with pytest.raises(KafkaException) as refused:
        admin.delete_consumer_groups([group], request_timeout=10)[group].result(timeout=30)
    assert refused.value.args[0].code() == KafkaError.NON_EMPTY_GROUP

    for member in pair:
        member.stop()
    wait_until(
        lambda: describe_group(admin, group).state == ConsumerGroupState.EMPTY,
        20,
        "group empty after its members left",
        lambda: str(describe_group(admin, group)),
    )
    listed_empty = admin.list_consumer_groups(states={ConsumerGroupState.EMPTY}, request_timeout=10).result(timeout=30)
    assert group in {g.group_id for g in listed_empty.valid}
    # The committed offsets outlive the members.
    [offsets] = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=10).values()
    assert {(tp.topic, tp.partition): tp.offset for tp in offsets.result(timeout=30).topic_partitions} == {
        key: 10 for key in partitions
    }

    assert admin.delete_consumer_groups([group], request_timeout=10)[group].result(timeout=30) is None
    after = admin.list_consumer_groups(request_timeout=10).result(timeout=30)
    assert group not in {g.group_id for g in after.valid}
    [offsets] = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=10).values()
    left = [tp for tp in offsets.result(timeout=30).topic_partitions if tp.offset >= 0]
    assert left == [], f"offsets of a deleted group: {left}"
    with pytest.raises(KafkaException) as missing:
        admin.delete_consumer_groups([group], request_timeout=10)[group].result(timeout=30)
    assert missing.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND
    print(
        f"group admin: listed {group} as {listing.state.name}, described 2 members with "
        f"{sum(len(m.assignment.topic_partitions) for m in description.members)} partitions, offsets {sorted(committed.values())}; "
        f"delete refused while active (NON_EMPTY_GROUP), accepted once empty"
    )
