"""What replication costs: RF 3 on a 3-node cluster beside RF 1 on one node, in one run.

    .venv/bin/python scripts/bench_cluster.py --runnel target/release/runnel \
        [--rounds 3] [--records 300000] [--json PATH] [--no-failover]

Each round starts, fresh (new data folders, free ports), one `runnel server` and one
`runnel dev cluster --nodes 3`, in an order that swaps every round so that drift in the
machine's load falls on both. On each it creates 6-partition topics (RF 1 on the one node;
RF 3 with `min.insync.replicas=2` on the cluster) and runs, with `runnel bench` and our
client's defaults (acks=all, idempotent, linger 5 ms):
- `saturated_*`: `--records` records of 1 KiB as fast as they are acknowledged: records/s,
  send-to-acknowledgement p50/p99, and the CPU-seconds per GB of every node process;
- `fixed_*`: 20,000 records/s for 10 s: p50/p99 when nothing queues in the producer;
- `e2e_*`: 1,000 records/s for 10 s produced and consumed at once: record timestamp to
  consumption, p50/p99 (what a consumer waiting in a long poll sees).
Then, once per run unless `--no-failover`, on a fresh cluster each: `scripts/failover_time.py`
with SIGKILL of a partition's leader (a crash: the controller fences it after
`broker.session.timeout.ms`) and with SIGTERM (controlled shutdown).

Prints the medians over rounds, one node beside the cluster and their ratio, and writes the
rounds and medians as JSON to `--json` (default: target/bench-cluster.json). Every node of the
cluster shares this machine's cores and disk: a floor for what separate machines give.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_matrix import Broker, json_line, stop

REPO = Path(__file__).resolve().parent.parent
RECORD_BYTES = 1024
PARTITIONS = 6
FIXED_RATE = 20_000
E2E_RATE = 1_000
TIMED_SECONDS = 10
NODES = 3


def log(message: str) -> None:
    print(f"bench_cluster: {message}", file=sys.stderr, flush=True)


def free_ports(count: int) -> int:
    """The first of `count` consecutive free loopback ports (dev cluster numbers its nodes so)."""
    for _ in range(100):
        first = random.randint(20_000, 50_000)
        try:
            for port in range(first, first + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise RuntimeError(f"no {count} consecutive free ports")


def wait_listening(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not start listening on {port}")


class Cluster:
    """`runnel dev cluster --nodes 3` on free ports with a fresh data folder; Ctrl-C on exit."""

    def __init__(self, binary: str, work: Path):
        self.port = free_ports(NODES)
        controller_port = free_ports(NODES)
        self.data = Path(tempfile.mkdtemp(prefix="cluster-", dir=work))
        self.log = open(work / f"cluster-{self.port}.log", "w")
        self.process = subprocess.Popen(
            [binary, "dev", "cluster", "--nodes", str(NODES), "--data-dir", str(self.data),
             "--port", str(self.port), "--controller-port", str(controller_port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        for node in range(NODES):
            wait_listening(self.port + node, self.process, f"node {node + 1} (see {self.log.name})")

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.port + node}" for node in range(NODES))

    def pids(self) -> list[str]:
        pids = []
        for node in range(NODES):
            found = subprocess.run(
                ["pgrep", "-f", "--", f"--listen 127.0.0.1:{self.port + node}"],
                capture_output=True, text=True,
            )
            pids.extend(found.stdout.split())
        return pids

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        stop(self.process, signal.SIGINT)
        for pid in self.pids():
            os.kill(int(pid), signal.SIGKILL)
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


def cpu_seconds(pids: list[str]) -> float:
    """utime + stime of these processes, from /proc (fields 14 and 15, after the name)."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def create_topic(runnel: str, bootstrap: str, topic: str, replication: int) -> None:
    command = [runnel, "topic", "create", topic, "--partitions", str(PARTITIONS),
               "--replication-factor", str(replication), "--bootstrap", bootstrap]
    if replication > 1:
        command += ["--config", "min.insync.replicas=2"]
    subprocess.run(command, check=True, capture_output=True)


def bench(runnel: str, bootstrap: str, pids: list[str], mode: str, topic: str, *limits: str) -> dict:
    before = cpu_seconds(pids)
    result = json_line([runnel, "bench", mode, "--bootstrap", bootstrap, "--topic", topic,
                        "--record-size", str(RECORD_BYTES), "--acks", "all", "--format", "json",
                        *limits])
    used = cpu_seconds(pids) - before
    if result["errors"]:
        raise RuntimeError(f"{mode} on {bootstrap}: {result['errors']} records failed")
    result["nodes_cpu_s_per_gb"] = round(used / (result["bytes"] / 1e9), 3)
    return result


def workloads(runnel: str, bootstrap: str, pids: list[str], replication: int, records: int) -> dict:
    for topic in ("saturated", "fixed", "e2e"):
        create_topic(runnel, bootstrap, topic, replication)
    saturated = bench(runnel, bootstrap, pids, "produce", "saturated", "--records", str(records))
    fixed = bench(runnel, bootstrap, pids, "produce", "fixed", "--rate", str(FIXED_RATE),
                  "--duration", str(TIMED_SECONDS))
    e2e = bench(runnel, bootstrap, pids, "e2e", "e2e", "--rate", str(E2E_RATE),
                "--duration", str(TIMED_SECONDS))
    return {
        "saturated_records_per_s": saturated["records_per_sec"],
        "saturated_mb_per_s": round(saturated["bytes"] / 1e6 / saturated["elapsed_s"], 1),
        "saturated_p50_ms": saturated["latency_ms"]["p50"],
        "saturated_p99_ms": saturated["latency_ms"]["p99"],
        "saturated_nodes_cpu_s_per_gb": saturated["nodes_cpu_s_per_gb"],
        "fixed_p50_ms": fixed["latency_ms"]["p50"],
        "fixed_p99_ms": fixed["latency_ms"]["p99"],
        "e2e_p50_ms": e2e["e2e_latency_ms"]["p50"],
        "e2e_p99_ms": e2e["e2e_latency_ms"]["p99"],
    }


def one_node(runnel: str, work: Path, records: int) -> dict:
    with Broker(runnel, work, []) as broker:
        return workloads(runnel, broker.bootstrap, [broker.pid], 1, records)


def three_nodes(runnel: str, work: Path, records: int) -> dict:
    with Cluster(runnel, work) as cluster:
        return workloads(runnel, cluster.bootstrap, cluster.pids(), NODES, records)


def failover(runnel: str, work: Path, kind: str) -> float:
    with Cluster(runnel, work) as cluster:
        subprocess.run([runnel, "topic", "create", "failover", "--partitions", "1",
                        "--replication-factor", str(NODES), "--config", "min.insync.replicas=2",
                        "--bootstrap", cluster.bootstrap], check=True, capture_output=True)
        done = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "failover_time.py"), "--bootstrap",
             cluster.bootstrap, "--topic", "failover", "--signal", kind],
            capture_output=True, text=True,
        )
    found = re.search(r"after ([0-9.]+) s", done.stdout)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"failover_time.py --signal {kind}: {done.stdout}{done.stderr[-2000:]}")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runnel", required=True, help="the runnel binary (a release build)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--json", default=str(REPO / "target" / "bench-cluster.json"))
    parser.add_argument("--no-failover", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="runnel-bench-cluster-"))
    rounds = []
    try:
        for number in range(args.rounds):
            order = [("one_node", one_node), ("cluster", three_nodes)]
            if number % 2:
                order.reverse()
            figures = {}
            for name, run in order:
                log(f"round {number + 1}: {name}")
                figures[name] = run(args.runnel, work, args.records)
            rounds.append(figures)
        failovers = {}
        if not args.no_failover:
            for kind in ("KILL", "TERM"):
                log(f"failover: SIG{kind}")
                failovers[f"SIG{kind}_s"] = failover(args.runnel, work, kind)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    medians = {
        side: {key: statistics.median(r[side][key] for r in rounds) for key in rounds[0][side]}
        for side in ("one_node", "cluster")
    }
    print(f"{'figure (median of ' + str(args.rounds) + ' rounds)':<40} {'RF 1, one node':>16} "
          f"{'RF 3, 3 nodes':>16} {'ratio':>8}")
    for key, alone in medians["one_node"].items():
        clustered = medians["cluster"][key]
        ratio = f"{clustered / alone:.2f}" if alone else "-"
        print(f"{key:<40} {alone:>16,.2f} {clustered:>16,.2f} {ratio:>8}")
    for key, seconds in failovers.items():
        print(f"failover to the first acknowledgement, {key:<10} {seconds:>16.2f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(
        {"rounds": rounds, "medians": medians, "failover": failovers, "nproc": os.cpu_count()},
        indent=2,
    ))
    log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
