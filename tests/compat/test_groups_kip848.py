"""KIP-848 consumer groups: confluent-kafka with `group.protocol=consumer`.

The broker assigns partitions (ConsumerGroupHeartbeat); members neither choose an assignor nor
set session.timeout.ms. Rebalances are incremental: a member gives up only the partitions that
move. The module's broker tells members to heartbeat every 500 ms (Kafka's default is 5 s) so
that assignments converge quickly.
"""

from __future__ import annotations

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupType

from conftest import Broker, unique_topic
from support import (
    CLASSIC_GROUP_CONFIG,
    GROUP_BROKER_ARGS,
    GroupMember,
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

CONSUMER_PROTOCOL = {"group.protocol": "consumer"}
KIP848_BROKER_ARGS = (*GROUP_BROKER_ARGS, "--group-consumer-heartbeat-interval-ms", "500")


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    instance = Broker(tmp_path_factory.mktemp("runnel-groups-848"), KIP848_BROKER_ARGS)
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


def start_member(members: list, bootstrap: str, group: str, topic: str, name: str, **config) -> GroupMember:
    member = GroupMember(bootstrap, group, [topic], name, **config).start()
    members.append(member)
    return member


def changes_since(member: GroupMember, index: int) -> tuple[set, set, list]:
    """(partitions revoked, partitions assigned, lost events) in the member's callbacks after `index`."""
    revoked, assigned, lost = set(), set(), []
    for _t, kind, keys in member.snapshot_events()[index:]:
        if kind == "revoke":
            revoked |= keys
        elif kind == "assign":
            assigned |= keys
        else:
            lost.append(keys)
    return revoked, assigned, lost


def test_consumer_protocol_members_share_and_a_third_joins_incrementally(broker, members):
    topic = unique_topic("grp848")
    group = unique_topic("g-848")
    create_topic(broker.bootstrap, topic, partitions=4)
    partitions = partitions_of(topic, 4)
    first, second = (start_member(members, broker.bootstrap, group, topic, f"kip848-{i}", **CONSUMER_PROTOCOL) for i in range(2))
    pair = [first, second]
    settle_s = wait_settled(pair, partitions, {"kip848-0": 2, "kip848-1": 2})
    phase1 = produce_per_partition(broker.bootstrap, topic, 4, 250, prefix="one")
    wait_read(pair, acked_keys(phase1, topic))
    wait_committed(pair, {key: 250 for key in partitions})
    counts1 = read_counts(pair)
    assert set(counts1) == acked_keys(phase1, topic) and duplicates(counts1) == 0
    before = {m.name: m.snapshot_owned() for m in pair}
    marks = {m.name: len(m.snapshot_events()) for m in pair}

    third = start_member(members, broker.bootstrap, group, topic, "kip848-2", **CONSUMER_PROTOCOL)
    trio = [first, second, third]
    join_s = wait_until(
        lambda: owns_exactly(trio, partitions) and all(m.snapshot_owned() for m in trio),
        45,
        "the third member owns partitions",
        lambda: describe_members(trio),
    )
    phase2 = produce_per_partition(broker.bootstrap, topic, 4, 250, prefix="two")
    expected = acked_keys(phase1, topic) | acked_keys(phase2, topic)
    wait_read(trio, expected)
    counts = read_counts(trio)

    moved = set()
    for member in pair:
        revoked, assigned, lost = changes_since(member, marks[member.name])
        kept = member.snapshot_owned()
        assert lost == [], member.describe()
        assert assigned == set(), f"{member.name} was handed partitions again: {member.describe()}"
        assert revoked.isdisjoint(kept), f"{member.name} revoked a partition it still owns"
        assert kept | revoked == before[member.name], member.describe()
        assert kept, f"{member.name} lost all its partitions"
        moved |= revoked
    assert moved == third.snapshot_owned(), "only the partitions the third member got were revoked"
    print(
        f"group consumer protocol: 2 members settled in {settle_s:.1f}s with "
        f"{ {name: sorted(p for _t, p in owned) for name, owned in before.items()} }; "
        f"a third got {sorted(p for _, p in third.snapshot_owned())} in {join_s:.1f}s, the others gave up only those; "
        f"{len(expected)} records, read {len(counts)}, duplicates {duplicates(counts)}"
    )
    assert set(counts) == expected
    assert duplicates(counts) == 0


def test_classic_and_consumer_protocol_groups_side_by_side(broker, members):
    topic = unique_topic("grp848-mixed")
    create_topic(broker.bootstrap, topic, partitions=2)
    partitions = partitions_of(topic, 2)
    classic_group, consumer_group = unique_topic("g-mixed-classic"), unique_topic("g-mixed-848")
    classic = [start_member(members, broker.bootstrap, classic_group, topic, "mixed-classic", **CLASSIC_GROUP_CONFIG)]
    modern = [
        start_member(members, broker.bootstrap, consumer_group, topic, f"mixed-848-{i}", **CONSUMER_PROTOCOL) for i in range(2)
    ]
    wait_settled(classic, partitions, {"mixed-classic": 2})
    wait_settled(modern, partitions, {"mixed-848-0": 1, "mixed-848-1": 1})
    log = produce_per_partition(broker.bootstrap, topic, 2, 100)
    expected = acked_keys(log, topic)
    wait_read(classic, expected)
    wait_read(modern, expected)
    assert set(read_counts(classic)) == expected and duplicates(read_counts(classic)) == 0
    assert set(read_counts(modern)) == expected and duplicates(read_counts(modern)) == 0
    wait_committed(modern, {key: 100 for key in partitions})

    admin = admin_client(broker.bootstrap)
    listed = admin.list_consumer_groups(request_timeout=10).result(timeout=30)
    by_id = {g.group_id: g for g in listed.valid}
    assert by_id[classic_group].type == ConsumerGroupType.CLASSIC
    assert by_id[consumer_group].type == ConsumerGroupType.CONSUMER
    assert by_id[consumer_group].state == ConsumerGroupState.STABLE
    only_consumer = admin.list_consumer_groups(types={ConsumerGroupType.CONSUMER}, request_timeout=10).result(timeout=30)
    assert consumer_group in {g.group_id for g in only_consumer.valid}
    assert classic_group not in {g.group_id for g in only_consumer.valid}

    description = admin.describe_consumer_groups([consumer_group], request_timeout=10)[consumer_group].result(timeout=30)
    assert description.type == ConsumerGroupType.CONSUMER
    assert description.state == ConsumerGroupState.STABLE
    by_client = {m.client_id: m for m in description.members}
    assert set(by_client) == {"mixed-848-0", "mixed-848-1"}
    for member in modern:
        assigned = {(tp.topic, tp.partition) for tp in by_client[member.name].assignment.topic_partitions}
        assert assigned == member.snapshot_owned()
    print(
        f"group protocols side by side: classic group and consumer-protocol group each read {len(expected)} "
        f"records once; listed as {by_id[classic_group].type.name} and {by_id[consumer_group].type.name}"
    )
