"""Group coordinator errors that a well-behaved client never provokes, sent as raw requests.

The requests are built with kafka-python's protocol classes (generated from Kafka's JSON
schemas, flexible versions included) and sent over a plain socket, one connection per member,
so each test controls every field: empty protocol lists, unknown groups and members, stale
generations. Each test asks the broker for its version range first and uses the versions both
ends know. Error codes are Kafka's (see `Errors` in the Kafka sources).
"""

from __future__ import annotations

import socket
import struct
import threading

import pytest
from kafka.protocol.admin import DescribeGroupsRequest, DescribeGroupsResponse
from kafka.protocol.consumer.group import (
    HeartbeatRequest,
    HeartbeatResponse,
    JoinGroupRequest,
    JoinGroupResponse,
    LeaveGroupRequest,
    LeaveGroupResponse,
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetFetchRequest,
    OffsetFetchResponse,
    SyncGroupRequest,
    SyncGroupResponse,
)
from kafka.protocol.metadata.find_coordinator import FindCoordinatorRequest, FindCoordinatorResponse

from conftest import Broker, _recv_exact, api_versions_request, unique_topic
from support import GROUP_BROKER_ARGS, create_topic, produce_per_partition, wait_until

NONE = 0
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
UNKNOWN_MEMBER_ID = 25
INVALID_SESSION_TIMEOUT = 26
REBALANCE_IN_PROGRESS = 27
MEMBER_ID_REQUIRED = 79

API_OFFSET_COMMIT, API_OFFSET_FETCH, API_FIND_COORDINATOR = 8, 9, 10
API_JOIN_GROUP, API_HEARTBEAT, API_LEAVE_GROUP, API_SYNC_GROUP, API_DESCRIBE_GROUPS = 11, 12, 13, 14, 15

RESPONSES = {
    JoinGroupRequest: JoinGroupResponse,
    SyncGroupRequest: SyncGroupResponse,
    HeartbeatRequest: HeartbeatResponse,
    LeaveGroupRequest: LeaveGroupResponse,
    OffsetCommitRequest: OffsetCommitResponse,
    OffsetFetchRequest: OffsetFetchResponse,
    FindCoordinatorRequest: FindCoordinatorResponse,
    DescribeGroupsRequest: DescribeGroupsResponse,
}


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    instance = Broker(tmp_path_factory.mktemp("runnel-groups-errors"), GROUP_BROKER_ARGS)
    try:
        instance.start()
        wait_for_group_coordinators(instance)
        yield instance
    finally:
        instance.kill9()


def wait_for_group_coordinators(broker) -> None:
    """Real clients look for a group's coordinator and retry while it is not available: in a
    cluster the first FindCoordinator has the controller create `__consumer_offsets`, whose
    partitions are then loaded (COORDINATOR_NOT_AVAILABLE, then
    COORDINATOR_LOAD_IN_PROGRESS). These hand-made requests go straight to the broker, so
    the module waits for that once, with a probe group."""
    conn = Connection(broker)
    try:

        def ready() -> bool:
            found = conn.send(FindCoordinatorRequest[1](key="probe", key_type=0))
            if found.error_code != NONE:
                return False
            fetched = conn.send(OffsetFetchRequest[2](group_id="probe", topics=[]))
            return fetched.error_code == NONE

        wait_until(ready, 60, "the group coordinators are loaded", interval_s=0.2)
    finally:
        conn.close()


def served(broker, api_key: int, request_class) -> list[int]:
    """Versions both the broker and kafka-python's schema know, lowest first."""
    error_code, apis = api_versions_request(broker.port)
    assert error_code == 0
    assert api_key in apis, f"the broker does not advertise api {api_key}"
    low, high = apis[api_key]
    return list(range(low, min(high, request_class.max_version) + 1))


class Connection:
    """One client connection: sends a request and decodes the response to it."""

    def __init__(self, broker, timeout_s: float = 30.0):
        self.sock = socket.create_connection(("127.0.0.1", broker.port), timeout=timeout_s)
        self.correlation_id = 0

    def send(self, request):
        self.correlation_id += 1
        request.with_header(correlation_id=self.correlation_id, client_id="runnel-compat-raw")
        self.sock.sendall(bytes(request.encode(header=True, framed=True)))
        (size,) = struct.unpack(">i", _recv_exact(self.sock, 4))
        body = _recv_exact(self.sock, size)
        decoded = RESPONSES[type(request)].decode(body, version=request.API_VERSION, header=True)
        assert decoded.header.correlation_id == self.correlation_id
        return decoded

    def close(self) -> None:
        self.sock.close()


def subscription(topic: str) -> bytes:
    """ConsumerProtocolSubscription v0: the topics, no user data."""
    name = topic.encode()
    return struct.pack(">hih", 0, 1, len(name)) + name + struct.pack(">i", -1)


def assignment(topic: str, partitions: list[int]) -> bytes:
    """ConsumerProtocolAssignment v0."""
    name = topic.encode()
    body = struct.pack(">hih", 0, 1, len(name)) + name + struct.pack(">i", len(partitions))
    body += b"".join(struct.pack(">i", p) for p in partitions)
    return body + struct.pack(">i", -1)


def join_request(version: int, group: str, member_id: str, protocols, session_timeout_ms: int = 10000):
    fields = dict(
        group_id=group,
        session_timeout_ms=session_timeout_ms,
        rebalance_timeout_ms=10000,
        member_id=member_id,
        group_instance_id=None,
        protocol_type="consumer",
        protocols=[JoinGroupRequest.JoinGroupRequestProtocol(name=name, metadata=metadata) for name, metadata in protocols],
    )
    if version >= 8:
        fields["reason"] = None
    return JoinGroupRequest[version](**fields)


class Member:
    """A classic-protocol member driven by hand: join (with the member-id round trip of v4+),
    sync, heartbeat, commit."""

    def __init__(self, broker, group: str, topic: str, versions: dict):
        self.conn = Connection(broker)
        self.group = group
        self.topic = topic
        self.v = versions
        self.member_id = ""
        self.generation = -1
        self.leader = ""
        self.members: list[str] = []

    def join(self):
        protocols = [("range", subscription(self.topic))]
        response = self.conn.send(join_request(self.v["join"], self.group, self.member_id, protocols))
        if response.error_code == MEMBER_ID_REQUIRED:
            self.member_id = response.member_id
            response = self.conn.send(join_request(self.v["join"], self.group, self.member_id, protocols))
        assert response.error_code == NONE, f"JoinGroup: error {response.error_code}"
        self.member_id = response.member_id
        self.generation = response.generation_id
        self.leader = response.leader
        self.members = [m.member_id for m in response.members]
        return response

    def sync(self, plan: dict[str, list[int]] | None = None) -> int:
        version = self.v["sync"]
        fields = dict(
            group_id=self.group,
            generation_id=self.generation,
            member_id=self.member_id,
            group_instance_id=None,
            assignments=[
                SyncGroupRequest.SyncGroupRequestAssignment(member_id=m, assignment=assignment(self.topic, parts))
                for m, parts in (plan or {}).items()
            ],
        )
        if version >= 5:
            fields.update(protocol_type="consumer", protocol_name="range")
        return self.conn.send(SyncGroupRequest[version](**fields)).error_code

    def heartbeat(self, generation: int | None = None) -> int:
        request = HeartbeatRequest[self.v["heartbeat"]](
            group_id=self.group,
            generation_id=self.generation if generation is None else generation,
            member_id=self.member_id,
            group_instance_id=None,
        )
        return self.conn.send(request).error_code

    def commit(self, offset: int, generation: int | None = None, member_id: str | None = None, metadata: str = "") -> int:
        topic_class = OffsetCommitRequest.OffsetCommitRequestTopic
        partition = topic_class.OffsetCommitRequestPartition(
            partition_index=0, committed_offset=offset, committed_leader_epoch=-1, committed_metadata=metadata
        )
        request = OffsetCommitRequest[self.v["commit"]](
            group_id=self.group,
            generation_id_or_member_epoch=self.generation if generation is None else generation,
            member_id=self.member_id if member_id is None else member_id,
            group_instance_id=None,
            topics=[topic_class(name=self.topic, partitions=[partition])],
        )
        response = self.conn.send(request)
        [topic] = response.topics
        [result] = topic.partitions
        return result.error_code


def add_second_member(broker, first: Member, group: str, topic: str, v: dict) -> Member:
    """A second member joins `first`'s stable group: its JoinGroup waits until the first
    rejoins, as a client does when its heartbeat answers REBALANCE_IN_PROGRESS; then both sync."""
    old_generation = first.generation
    second = Member(broker, group, topic, v)
    join_failure: list[BaseException] = []

    def join_second() -> None:
        try:
            second.join()
        except BaseException as error:  # reported below
            join_failure.append(error)

    joined = threading.Thread(target=join_second, daemon=True)
    joined.start()
    wait_until(lambda: first.heartbeat() == REBALANCE_IN_PROGRESS, 20, "heartbeat reports the rebalance")
    first.join()
    joined.join(30)
    assert not joined.is_alive(), "the second member's JoinGroup did not complete"
    assert join_failure == [], f"the second member's join failed: {join_failure}"
    assert first.generation == second.generation > old_generation
    leader, follower = (first, second) if first.leader == first.member_id else (second, first)
    assert leader.sync({first.member_id: [0], second.member_id: []}) == NONE
    assert follower.sync() == NONE
    return second


def fetch_committed(broker, group: str, topic: str, version: int) -> tuple[int, str | None]:
    conn = Connection(broker)
    try:
        request = OffsetFetchRequest[version](
            group_id=group, topics=[OffsetFetchRequest.OffsetFetchRequestTopic(name=topic, partition_indexes=[0])]
        )
        response = conn.send(request)
    finally:
        conn.close()
    assert response.error_code == NONE
    [fetched_topic] = response.topics
    [partition] = fetched_topic.partitions
    assert partition.error_code == NONE
    return partition.committed_offset, partition.metadata


def test_join_with_empty_protocol_list_is_inconsistent_group_protocol(broker):
    versions = served(broker, API_JOIN_GROUP, JoinGroupRequest)
    results = {}
    for version in versions:
        conn = Connection(broker)
        try:
            response = conn.send(join_request(version, unique_topic("g-empty-protocols"), "", []))
        finally:
            conn.close()
        results[version] = response.error_code
    print(f"group errors: JoinGroup with no protocols, versions {versions}: {results}")
    assert results == {v: INCONSISTENT_GROUP_PROTOCOL for v in versions}


def test_join_with_another_protocol_type_or_bad_session_timeout(broker):
    topic = unique_topic("grp-err-type")
    create_topic(broker.bootstrap, topic)
    group = unique_topic("g-err-type")
    v = {"join": served(broker, API_JOIN_GROUP, JoinGroupRequest)[-1], "sync": served(broker, API_SYNC_GROUP, SyncGroupRequest)[-1]}
    member = Member(broker, group, topic, v)
    member.join()
    assert member.sync({member.member_id: [0]}) == NONE

    other = Connection(broker)
    try:
        request = join_request(v["join"], group, "", [("range", subscription(topic))])
        request.protocol_type = "connect"
        assert other.send(request).error_code == INCONSISTENT_GROUP_PROTOCOL
        too_short = join_request(v["join"], unique_topic("g-err-session"), "", [("range", subscription(topic))], session_timeout_ms=1000)
        assert other.send(too_short).error_code == INVALID_SESSION_TIMEOUT
    finally:
        other.close()
    # The group's member is untouched.
    member.v["heartbeat"] = served(broker, API_HEARTBEAT, HeartbeatRequest)[-1]
    assert member.heartbeat() == NONE


def test_heartbeat_for_unknown_group_is_unknown_member_id(broker):
    versions = served(broker, API_HEARTBEAT, HeartbeatRequest)
    results = {}
    for version in versions:
        conn = Connection(broker)
        try:
            request = HeartbeatRequest[version](
                group_id=unique_topic("g-no-such-group"), generation_id=1, member_id="nobody", group_instance_id=None
            )
            results[version] = conn.send(request).error_code
        finally:
            conn.close()
    print(f"group errors: Heartbeat for an unknown group, versions {versions}: {results}")
    # Kafka answers UNKNOWN_MEMBER_ID for every version ("Group ... not found").
    assert results == {v: UNKNOWN_MEMBER_ID for v in versions}


@pytest.mark.parametrize("which", ["lowest", "highest"])
def test_offset_commit_from_stale_generation_is_illegal_generation(broker, which):
    topic = unique_topic("grp-err-stale")
    create_topic(broker.bootstrap, topic)
    produce_per_partition(broker.bootstrap, topic, 1, 20)
    group = unique_topic("g-err-stale")
    pick = 0 if which == "lowest" else -1
    commit_versions = served(broker, API_OFFSET_COMMIT, OffsetCommitRequest)
    v = {
        "join": served(broker, API_JOIN_GROUP, JoinGroupRequest)[pick],
        "sync": served(broker, API_SYNC_GROUP, SyncGroupRequest)[pick],
        "heartbeat": served(broker, API_HEARTBEAT, HeartbeatRequest)[pick],
        "commit": commit_versions[pick],
    }
    fetch_version = max(x for x in served(broker, API_OFFSET_FETCH, OffsetFetchRequest) if x <= 7)

    first = Member(broker, group, topic, v)
    first.join()
    assert first.leader == first.member_id and first.members == [first.member_id]
    assert first.sync({first.member_id: [0]}) == NONE
    old_generation = first.generation
    assert first.commit(5, metadata="first at 5") == NONE
    assert fetch_committed(broker, group, topic, fetch_version) == (5, "first at 5")

    second = add_second_member(broker, first, group, topic, v)
    stale = first.commit(9, generation=old_generation, metadata="stale")
    unknown = first.commit(9, member_id="no-such-member", metadata="unknown")
    after = fetch_committed(broker, group, topic, fetch_version)
    print(
        f"group errors (OffsetCommit v{v['commit']}, JoinGroup v{v['join']}): commit from generation "
        f"{old_generation} after the group moved to {first.generation}: error {stale}; from an unknown member: "
        f"error {unknown}; committed offset still {after[0]}"
    )
    assert stale == ILLEGAL_GENERATION
    assert unknown == UNKNOWN_MEMBER_ID
    assert after == (5, "first at 5"), "a rejected commit must not change the committed offset"
    assert first.heartbeat(generation=old_generation) == ILLEGAL_GENERATION
    # The current generation commits.
    assert first.commit(7, metadata="current") == NONE
    assert fetch_committed(broker, group, topic, fetch_version) == (7, "current")
    for member in (first, second):
        member.conn.close()


def test_batched_find_coordinator_offset_fetch_and_leave_group(broker):
    """The batched forms: FindCoordinator v4+ (several keys), OffsetFetch v8+ (several groups),
    LeaveGroup v3+ (several members, one unknown)."""
    topic = unique_topic("grp-batched")
    create_topic(broker.bootstrap, topic)
    produce_per_partition(broker.bootstrap, topic, 1, 10)
    groups = [unique_topic("g-batched-a"), unique_topic("g-batched-b")]
    pick = {
        "join": served(broker, API_JOIN_GROUP, JoinGroupRequest)[-1],
        "sync": served(broker, API_SYNC_GROUP, SyncGroupRequest)[-1],
        "heartbeat": served(broker, API_HEARTBEAT, HeartbeatRequest)[-1],
        "commit": served(broker, API_OFFSET_COMMIT, OffsetCommitRequest)[-1],
    }
    conn = Connection(broker)
    try:
        find_version = served(broker, API_FIND_COORDINATOR, FindCoordinatorRequest)[-1]
        assert find_version >= 4, f"FindCoordinator v{find_version}: no batched keys"
        found = conn.send(FindCoordinatorRequest[find_version](key_type=0, coordinator_keys=groups))
        assert sorted(c.key for c in found.coordinators) == sorted(groups)
        assert all((c.error_code, c.node_id, c.port) == (NONE, broker.node_id, broker.port) for c in found.coordinators)

        first = Member(broker, groups[0], topic, pick)
        first.join()
        assert first.sync({first.member_id: [0]}) == NONE
        assert first.commit(3, metadata="a") == NONE
        other = Member(broker, groups[1], topic, pick)
        other.join()
        assert other.sync({other.member_id: [0]}) == NONE
        assert other.commit(4, metadata="b") == NONE

        fetch_version = served(broker, API_OFFSET_FETCH, OffsetFetchRequest)[-1]
        assert fetch_version >= 8, f"OffsetFetch v{fetch_version}: no batched groups"
        group_class = OffsetFetchRequest.OffsetFetchRequestGroup
        fields = {"member_id": None, "member_epoch": -1} if fetch_version >= 9 else {}
        fetched = conn.send(
            OffsetFetchRequest[fetch_version](
                groups=[
                    group_class(
                        group_id=g,
                        topics=[group_class.OffsetFetchRequestTopics(name=topic, partition_indexes=[0])],
                        **fields,
                    )
                    for g in groups
                ],
                require_stable=False,
            )
        )
        offsets = {
            g.group_id: [(p.committed_offset, p.metadata, p.error_code) for t in g.topics for p in t.partitions]
            for g in fetched.groups
        }
        assert offsets == {groups[0]: [(3, "a", NONE)], groups[1]: [(4, "b", NONE)]}
        assert all(g.error_code == NONE for g in fetched.groups)

        second = add_second_member(broker, first, groups[0], topic, pick)
        leave_version = served(broker, API_LEAVE_GROUP, LeaveGroupRequest)[-1]
        assert leave_version >= 3, f"LeaveGroup v{leave_version}: no batched members"
        identity = LeaveGroupRequest.MemberIdentity
        extra = {"reason": "batched leave"} if leave_version >= 5 else {}
        left = conn.send(
            LeaveGroupRequest[leave_version](
                group_id=groups[0],
                members=[
                    identity(member_id=m, group_instance_id=None, **extra)
                    for m in (first.member_id, second.member_id, "no-such-member")
                ],
            )
        )
        assert left.error_code == NONE
        assert {m.member_id: m.error_code for m in left.members} == {
            first.member_id: NONE,
            second.member_id: NONE,
            "no-such-member": UNKNOWN_MEMBER_ID,
        }
        assert first.heartbeat() == UNKNOWN_MEMBER_ID

        describe_version = served(broker, API_DESCRIBE_GROUPS, DescribeGroupsRequest)[-1]
        described = conn.send(DescribeGroupsRequest[describe_version](groups=groups, include_authorized_operations=False))
        states = {g.group_id: (g.error_code, g.group_state, len(g.members)) for g in described.groups}
        print(
            f"group batched requests: FindCoordinator v{find_version} for 2 groups -> node {broker.node_id}; "
            f"OffsetFetch v{fetch_version} for 2 groups -> {offsets}; LeaveGroup v{leave_version} for 3 members -> "
            f"{sorted(m.error_code for m in left.members)}; DescribeGroups v{describe_version} -> {states}"
        )
        assert states == {groups[0]: (NONE, "Empty", 0), groups[1]: (NONE, "Stable", 1)}
        for member in (first, second, other):
            member.conn.close()
    finally:
        conn.close()
