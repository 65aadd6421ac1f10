#!/usr/bin/env python3
"""Failover time of a running Runnel cluster, as a producer sees it.

A confluent-kafka producer (acks=all, idempotent) sends to partition 0 of TOPIC every 10 ms;
the script signals the process of that partition's leader (found by its `--listen` address,
so the cluster must run on this machine, e.g. `runnel dev cluster`) and prints the time from
the signal to the first acknowledgement on the new leader.

    .venv/bin/python scripts/failover_time.py --bootstrap 127.0.0.1:9092 --topic t --signal KILL
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--signal", default="KILL", help="KILL (a crash) or TERM (controlled shutdown)")
    args = parser.parse_args()

    metadata = AdminClient({"bootstrap.servers": args.bootstrap}).list_topics(args.topic, timeout=10)
    leader = metadata.topics[args.topic].partitions[0].leader
    address = f"{metadata.brokers[leader].host}:{metadata.brokers[leader].port}"
    found = subprocess.run(["pgrep", "-f", "--", f"--listen {address}"], capture_output=True, text=True)
    pids = found.stdout.split()
    if not pids:
        raise SystemExit(f"no local process listens on {address} (broker {leader})")

    acks: list[float] = []

    def delivered(error, _message) -> None:
        if error is None:
            acks.append(time.monotonic())

    producer = Producer(
        {"bootstrap.servers": args.bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 0}
    )
    for _ in range(300):  # 3 s of steady state first
        producer.produce(args.topic, value=b"before", partition=0, on_delivery=delivered)
        producer.poll(0.01)
    signalled = time.monotonic()
    os.kill(int(pids[0]), getattr(signal, f"SIG{args.signal}"))
    deadline = signalled + 60
    # Acknowledgements in flight at the signal land within a few ms; any later one was
    # written by the successor.
    first_after = None
    while time.monotonic() < deadline and first_after is None:
        producer.produce(args.topic, value=b"after", partition=0, on_delivery=delivered)
        producer.poll(0.01)
        first_after = next((t for t in acks if t > signalled + 0.05), None)
    producer.flush(30)
    if first_after is None:
        print(f"broker {leader} (SIG{args.signal}): no acknowledgement within 60 s")
        return 1
    print(f"broker {leader} (SIG{args.signal}): first acknowledgement on its successor after {first_after - signalled:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
