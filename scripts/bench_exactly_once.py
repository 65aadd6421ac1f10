#!/usr/bin/env python3
"""The exactly-once measurements, in one run, each on a fresh release broker:

1. produce throughput with idempotence off, on (the default), and in transactions of 100
   records, interleaved over --rounds rounds (medians and ratios to "off");
2. one compaction pass over about 1 GiB of a keyed topic (100,000 keys, 1 KiB values,
   128 MiB segments): its time (the broker's log) and the broker's peak RSS before and after;
3. the start-up of a broker whose __consumer_offsets (one partition, 8 MiB segments) saw
   1,000,000 commits, before and after compaction (records replayed, seconds to "ready").

Usage: python3 scripts/bench_exactly_once.py [--bin target/release/runnel] [--rounds 3]
       [--records 300000]
Needs confluent-kafka (tests/compat/requirements.txt). Prints a Markdown report.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import time
from datetime import datetime
from pathlib import Path

from bench_broker import Broker

REPO = Path(__file__).resolve().parents[1]


def runnel(binary: Path, *args: str) -> str:
    return subprocess.run([str(binary), *args], check=True, capture_output=True, text=True).stdout


def throughput(binary: Path, rounds: int, records: int) -> str:
    modes = {"off": ["--no-idempotence"], "on": [], "txn-100": ["--transaction-size", "100"]}
    results: dict[str, list[dict]] = {mode: [] for mode in modes}
    for round_ in range(rounds):
        order = list(modes) if round_ % 2 == 0 else list(reversed(modes))
        for mode in order:
            broker = Broker(binary, 19300 + round_ * 10 + list(modes).index(mode))
            broker.start()
            out = runnel(binary, "bench", "produce", "--bootstrap", broker.bootstrap, "--topic", f"b-{mode}",
                         "--partitions", "6", "--records", str(records), "--record-size", "1024",
                         *modes[mode], "--format", "json", "--broker-pid", str(broker.proc.pid))
            results[mode].append(json.loads(out[out.index("{"):]))
            broker.remove()
    base = statistics.median(r["records_per_sec"] for r in results["off"])
    lines = ["| producer | records/s (median) | ratio to off | p50 ms | p99 ms | broker CPU-s/GB |",
             "|---|---:|---:|---:|---:|---:|"]
    for mode, runs in results.items():
        rate = statistics.median(r["records_per_sec"] for r in runs)
        lines.append(
            f"| {mode} | {rate:,.0f} | {rate / base:.2f} | "
            f"{statistics.median(r['latency_ms']['p50'] for r in runs):.2f} | "
            f"{statistics.median(r['latency_ms']['p99'] for r in runs):.2f} | "
            f"{statistics.median(r['broker_cpu_s_per_gb'] for r in runs):.2f} |"
        )
    return "\n".join(lines)


def wait_for(broker: Broker, pattern: str, timeout_s: float) -> re.Match | None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        found = re.search(pattern, broker.current_log())
        if found:
            return found
        time.sleep(0.5)
    return None


def compaction_pass(binary: Path) -> str:
    # The first cleaner look is at start; the next, 45 s later, finds the whole topic dirty.
    broker = Broker(binary, 19400, "--log-cleaner-backoff-ms", "45000")
    broker.start()
    runnel(binary, "topic", "create", "keyed", "--bootstrap", broker.bootstrap, "--partitions", "1",
           "--config", "cleanup.policy=compact", "--config", "segment.bytes=134217728")
    runnel(binary, "bench", "produce", "--bootstrap", broker.bootstrap, "--topic", "keyed",
           "--records", "1048576", "--record-size", "1024", "--keys", "100000", "--format", "json")
    before = broker.rss_kib()
    found = wait_for(broker, r"compacted partition=keyed-0 segments=(\d+) cleanable_bytes=(\d+) "
                             r"saved_bytes=(\d+) millis=(\d+)", 120)
    after = broker.rss_kib()
    broker.remove()
    if not found:
        return "no compaction pass seen"
    segments, cleanable, saved, millis = map(int, found.groups())
    return (f"{cleanable / 2**30:.2f} GiB in {segments} segments compacted in {millis / 1000:.2f} s "
            f"({cleanable / 2**20 / (millis / 1000):.0f} MiB/s), {saved / 2**30:.2f} GiB freed; broker peak RSS "
            f"{before[1] / 1024:.1f} MiB before the pass, {after[1] / 1024:.1f} MiB after "
            f"(+{(after[1] - before[1]) / 1024:.1f} MiB)")


def startup(text: str) -> tuple[float, int]:
    stamps = [datetime.fromisoformat(s.replace("Z", "+00:00")) for s in re.findall(r"^(\S+Z) ", text, re.M)]
    ready = [datetime.fromisoformat(s.replace("Z", "+00:00"))
             for s in re.findall(r"^(\S+Z) .*runnel ready", text, re.M)][0]
    replayed = int(re.search(r"replayed __consumer_offsets records=(\d+)", text).group(1))
    return (ready - stamps[0]).total_seconds(), replayed


def offsets_startup() -> str:
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    binary = BINARY
    broker = Broker(binary, 19500, "--offsets-topic-num-partitions", "1",
                    "--offsets-topic-segment-bytes", "8388608")
    # No cleaning while the commits are made and at the first restart.
    broker.start("--log-cleaner-backoff-ms", "3600000")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("committed", 100, 1)])["committed"].result(30)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "offsets-load",
                         "enable.auto.commit": False})
    for round_ in range(10_000):
        consumer.commit(offsets=[TopicPartition("committed", p, round_ + 1) for p in range(100)],
                        asynchronous=False)
    consumer.close()
    broker.stop()
    # The cleaner's first look comes right after "ready": the first restart replays it all.
    uncompacted = startup(broker.start("--log-cleaner-backoff-ms", "3600000"))
    wait_for(broker, r"compacted partition=__consumer_offsets-0", 120)
    broker.stop()
    compacted = startup(broker.start("--log-cleaner-backoff-ms", "3600000"))
    broker.remove()
    return (f"| before compaction | {uncompacted[1]:,} records | {uncompacted[0]:.3f} s |\n"
            f"| after compaction | {compacted[1]:,} records | {compacted[0]:.3f} s |")


def main() -> None:
    global BINARY
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=str(REPO / "target" / "release" / "runnel"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=300_000)
    args = parser.parse_args()
    BINARY = Path(args.bin)
    print("### Produce: idempotence off, on, and 100-record transactions\n")
    print(f"`--records {args.records} --record-size 1024 --partitions 6`, {args.rounds} rounds, order alternating.\n")
    print(throughput(BINARY, args.rounds, args.records))
    print("\n### One compaction pass over ~1 GiB\n")
    print(compaction_pass(BINARY))
    print("\n### Start-up with 1,000,000 commits in __consumer_offsets\n")
    print("| | replayed | start-up (first log line to ready) |\n|---|---:|---:|")
    print(offsets_startup())


BINARY = Path()

if __name__ == "__main__":
    main()
