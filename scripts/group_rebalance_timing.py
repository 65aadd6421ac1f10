#!/usr/bin/env python3
"""How long a consumer group takes to consume every partition again after a member joins or dies.

Starts its own `runnel server` (target/debug/runnel, or RUNNEL_BIN) in a temporary directory and,
for the classic protocol (confluent-kafka, range assignor) and for KIP-848 (`group.protocol=
consumer`), with 12 partitions and 3 members:

- join: two members consume while a producer writes to every partition every 50 ms; a third
  member starts. Measured from its start.
- death: three members consume (one in a child process); the child is killed with SIGKILL, so
  it never leaves the group and the broker notices only when its session times out (6 s).
  Measured from the kill.

For each it prints, in seconds from the event: when the live members own every partition again,
when every partition has been read again after that, and the longest stretch after the event in
which some partition was not read (incremental protocols keep unaffected partitions flowing;
a dead member's partitions wait for its session to time out).

    .venv/bin/python scripts/group_rebalance_timing.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "compat"))

from conftest import Broker, unique_topic  # noqa: E402
from support import (  # noqa: E402
    CLASSIC_GROUP_CONFIG,
    GROUP_BROKER_ARGS,
    GroupMember,
    MemberProcess,
    create_topic,
    owns_exactly,
    producer,
    stop_all,
    wait_until,
)

PARTITIONS = 12
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_MS = 500
PROTOCOLS = {
    "classic": CLASSIC_GROUP_CONFIG,
    "consumer": {"group.protocol": "consumer"},
}


class SteadyProducer:
    """Writes one record to every partition every 50 ms until stopped."""

    def __init__(self, bootstrap: str, topic: str):
        self.bootstrap = bootstrap
        self.topic = topic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        p = producer(self.bootstrap, **{"linger.ms": 1})
        index = 0
        while not self._stop.is_set():
            for partition in range(PARTITIONS):
                p.produce(self.topic, value=f"steady-{index}".encode(), partition=partition)
            index += 1
            p.poll(0.05)
        p.flush(10)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def read_times(members) -> dict[int, list[float]]:
    times: dict[int, list[float]] = {p: [] for p in range(PARTITIONS)}
    for member in members:
        with member.lock:
            pairs = list(zip(member.records, member.read_at))
        for (_t, partition, _o, _v), at in pairs:
            times[partition].append(at)
    for values in times.values():
        values.sort()
    return times


def measure(members, event_at: float, partitions: set, timeout_s: float) -> tuple[float, float, float]:
    """(owned again, consumed again, longest pause), seconds, for the live `members`."""
    wait_until(
        lambda: owns_exactly(members, partitions) and all(m.snapshot_owned() for m in members),
        timeout_s,
        "owned again",
    )
    owned_at = time.monotonic()  # within one poll interval (50 ms) of the moment it became true
    owned_s = owned_at - event_at

    def consumed_at() -> float | None:
        times = read_times(members)
        firsts = []
        for values in times.values():
            after = [t for t in values if t >= owned_at]
            if not after:
                return None
            firsts.append(after[0])
        return max(firsts)

    wait_until(lambda: consumed_at() is not None, 30, "every partition read again")
    consumed = consumed_at()
    assert consumed is not None
    times = read_times(members)
    pause = 0.0
    for values in times.values():
        # The longest stretch after the event in which the partition was not read.
        points = [event_at] + [t for t in values if event_at <= t <= consumed]
        pause = max(pause, max(b - a for a, b in zip(points, points[1:])))
    return owned_s, consumed - event_at, pause


def settle(members, partitions: set) -> None:
    wait_until(
        lambda: owns_exactly(members, partitions) and all(m.snapshot_owned() for m in members),
        60,
        "group settled",
    )
    time.sleep(1.0)  # let consumption run steadily before the event


def run_join(bootstrap: str, protocol: str) -> tuple[float, float, float]:
    topic, group = unique_topic("timing-join"), unique_topic(f"g-timing-join-{protocol}")
    create_topic(bootstrap, topic, partitions=PARTITIONS)
    partitions = {(topic, p) for p in range(PARTITIONS)}
    config = PROTOCOLS[protocol]
    members = [GroupMember(bootstrap, group, [topic], f"join-{i}", commit=True, **config).start() for i in range(2)]
    steady = SteadyProducer(bootstrap, topic)
    try:
        settle(members, partitions)
        joiner = GroupMember(bootstrap, group, [topic], "join-2", commit=True, **config)
        members.append(joiner)
        joiner.start()
        assert joiner.started_at is not None
        return measure(members, joiner.started_at, partitions, 60)
    finally:
        steady.stop()
        stop_all(members)


def run_death(bootstrap: str, protocol: str) -> tuple[float, float, float]:
    topic, group = unique_topic("timing-death"), unique_topic(f"g-timing-death-{protocol}")
    create_topic(bootstrap, topic, partitions=PARTITIONS)
    partitions = {(topic, p) for p in range(PARTITIONS)}
    config = PROTOCOLS[protocol]
    doomed = MemberProcess(bootstrap, group, [topic], "death-doomed", **config)
    survivors = [GroupMember(bootstrap, group, [topic], f"death-{i}", commit=True, **config).start() for i in range(2)]
    steady = SteadyProducer(bootstrap, topic)
    try:
        settle([doomed, *survivors], partitions)
        killed_at = doomed.kill9()
        return measure(survivors, killed_at, partitions, 90)
    finally:
        steady.stop()
        stop_all([doomed, *survivors])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case (the median is printed)")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), action="append", help="default: both")
    parser.add_argument(
        "--heartbeat-ms",
        type=int,
        default=HEARTBEAT_MS,
        help="classic: the members' heartbeat.interval.ms; consumer: the broker's "
        f"group.consumer.heartbeat.interval.ms (default {HEARTBEAT_MS})",
    )
    args = parser.parse_args()
    protocols = args.protocol or ["classic", "consumer"]
    PROTOCOLS["classic"] = {**CLASSIC_GROUP_CONFIG, "heartbeat.interval.ms": args.heartbeat_ms}

    with tempfile.TemporaryDirectory(prefix="runnel-group-timing-") as work:
        broker = Broker(
            Path(work),
            (
                *GROUP_BROKER_ARGS,
                "--group-consumer-session-timeout-ms",
                str(SESSION_TIMEOUT_MS),
                "--group-consumer-heartbeat-interval-ms",
                str(args.heartbeat_ms),
            ),
        )
        broker.start()
        try:
            print(
                f"{PARTITIONS} partitions, 3 members; session timeout {SESSION_TIMEOUT_MS} ms, heartbeat {args.heartbeat_ms} ms "
                f"(classic: session.timeout.ms/heartbeat.interval.ms on the client; consumer: the broker's "
                f"group.consumer.* settings); first-rebalance delay {GROUP_BROKER_ARGS[1]} ms"
            )
            print(f"{'protocol':<9} {'event':<6} {'owned again':>12} {'all consumed':>13} {'longest pause':>14}")
            for protocol in protocols:
                for event, run in (("join", run_join), ("death", run_death)):
                    results = [run(broker.bootstrap, protocol) for _ in range(args.repeat)]
                    owned, consumed, pause = (statistics.median(r[i] for r in results) for i in range(3))
                    print(f"{protocol:<9} {event:<6} {owned:>11.2f}s {consumed:>12.2f}s {pause:>13.2f}s", flush=True)
        finally:
            broker.kill9()
    return 0


if __name__ == "__main__":
    sys.exit(main())
