"""Two `runnel` broker binaries side by side, in one session, as ratios.

    .venv/bin/python scripts/bench_compare.py --before OLD/runnel --after target/release/runnel \
        [--rounds 3] [--records 200000] [--latency-records 20000] [--rate 1000] \
        [--steady-rate 5000] [--steady-records 25000]

Each round runs, for each binary in turn (the order swaps every round, so drift in the
machine's load falls on both alike), once with default settings and once with
`--flush-messages 1` (fsync before every acknowledgement), each on a fresh broker:

1. throughput: confluent-kafka (scripts/bench_clients.py `run --acks all`) produces
   `--records` records of 1 KiB round-robin into a new 6-partition topic with acks=all, then
   fetches them all back. Reported: MB/s and the broker's CPU-seconds per GB of record values
   (from /proc/PID/stat);
2. steady latency: confluent-kafka sends one record per request (linger.ms=0, acks=all) at
   `--steady-rate` records/s over 6 partitions (`bench_clients.py steady`); p50 and p99 of
   produce()-to-acknowledgement.

Then, in fsync mode, `runnel bench produce` sends `--latency-records` records of 1 KiB at
`--rate` records/s with acks=all, `linger.ms=0`, one partition (p50, p99).

Once per round, fio measures this disk's own fsync latency in the same temp directory
(4 KiB writes, each followed by fsync, for 5 s): the floor the fsync mode stands on.

Prints a table of medians with ratios after/before, and `COMPARE_JSON {...}`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLIENTS = REPO / "scripts" / "bench_clients.py"


def log(message: str) -> None:
    print(f"bench_compare: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Broker:
    """A broker process on a free port and a fresh data dir, stopped with SIGTERM on exit."""

    def __init__(self, binary: str, work: Path, extra: list[str]):
        self.port = free_port()
        self.data = Path(tempfile.mkdtemp(prefix="data-", dir=work))
        self.log = open(work / f"broker-{self.port}.log", "w")
        self.process = subprocess.Popen(
            [binary, "server", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data), *extra],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{binary} did not start")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> "Broker":
        return self

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


def json_line(command: list[str]) -> dict:
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def throughput(binary: str, work: Path, records: int, mode: str) -> dict:
    extra = ["--flush-messages", "1"] if mode == "fsync" else []
    with Broker(binary, work, extra) as broker:
        result = json_line([
            sys.executable, str(CLIENTS), "run", "--bootstrap", broker.bootstrap,
            "--records", str(records), "--acks", "all", "--broker-pid", str(broker.process.pid),
        ])
    out = {}
    for phase, key in (("produce", "produce_acks_all"), ("fetch", "fetch")):
        figures = result[key]
        gb = figures["records"] * figures["record_bytes"] / 1e9
        cpu_s = figures["broker_cpu_pct"] / 100 * figures["seconds"]
        out[f"{mode}_{phase}_mb_per_s"] = figures["mb_per_s"]
        out[f"{mode}_{phase}_broker_cpu_s_per_gb"] = round(cpu_s / gb, 3)
    return out


def steady_latency(binary: str, work: Path, records: int, rate: int, mode: str) -> dict:
    """confluent-kafka sending one record per request at `rate`/s over 6 partitions."""
    extra = ["--flush-messages", "1"] if mode == "fsync" else []
    with Broker(binary, work, extra) as broker:
        result = json_line([
            sys.executable, str(CLIENTS), "steady", "--bootstrap", broker.bootstrap,
            "--rate", str(rate), "--records", str(records), "--partitions", "6",
            "--broker-pid", str(broker.process.pid),
        ])
    latency = result["latency_ms"]
    return {
        f"{mode}_steady_{rate}_p50_ms": latency["p50"],
        f"{mode}_steady_{rate}_p99_ms": latency["p99"],
    }


def fsync_latency(binary: str, runnel: str, work: Path, records: int, rate: int) -> dict:
    with Broker(binary, work, ["--flush-messages", "1"]) as broker:
        result = json_line([
            runnel, "bench", "produce", "--bootstrap", broker.bootstrap, "--topic", "latency",
            "--partitions", "1", "--records", str(records), "--rate", str(rate),
            "--acks", "all", "--linger-ms", "0", "--format", "json",
        ])
    latency = result["latency_ms"]
    return {"fsync_mode_p50_ms": latency["p50"], "fsync_mode_p99_ms": latency["p99"]}


def fio_fsync(work: Path) -> dict:
    output = subprocess.run(
        ["fio", "--name=fsync", f"--directory={work}", "--size=64m", "--bs=4k", "--rw=write",
         "--fsync=1", "--ioengine=sync", "--runtime=5", "--time_based", "--output-format=json"],
        check=True, capture_output=True, text=True,
    ).stdout
    sync = json.loads(output)["jobs"][0]["sync"]["lat_ns"]
    return {
        "fio_fsync_p50_ms": round(sync["percentile"]["50.000000"] / 1e6, 3),
        "fio_fsync_p99_ms": round(sync["percentile"]["99.000000"] / 1e6, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    parser.add_argument("--runnel", help="the `runnel bench` binary (default: --after)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--latency-records", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--steady-rate", type=int, default=5000)
    parser.add_argument("--steady-records", type=int, default=25_000)
    args = parser.parse_args()
    runnel = args.runnel or args.after
    work = Path(tempfile.mkdtemp(prefix="runnel-compare-"))
    figures: dict[str, list[dict]] = {"before": [], "after": []}
    disk: list[dict] = []
    try:
        for round_index in range(args.rounds):
            disk.append(fio_fsync(work))
            log(f"round {round_index + 1}: fio {disk[-1]}")
            order = [("before", args.before), ("after", args.after)]
            if round_index % 2:
                order.reverse()
            for label, binary in order:
                result = {}
                for mode in ("default", "fsync"):
                    result.update(throughput(binary, work, args.records, mode))
                    result.update(steady_latency(binary, work, args.steady_records, args.steady_rate, mode))
                result.update(fsync_latency(binary, runnel, work, args.latency_records, args.rate))
                log(f"round {round_index + 1} {label}: {result}")
                figures[label].append(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = {
        label: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        for label, runs in figures.items()
    }
    fio = {key: statistics.median(run[key] for run in disk) for key in disk[0]}
    print(f"{'figure':40} {'before':>10} {'after':>10} {'after/before':>13}")
    for key in medians["before"]:
        before, after = medians["before"][key], medians["after"][key]
        print(f"{key:40} {before:>10} {after:>10} {after / before:>13.2f}")
    for key, value in fio.items():
        print(f"{key:40} {value:>10} (this disk, same session)")
    print("COMPARE_JSON " + json.dumps({"rounds": figures, "medians": medians, "fio": fio, "disk_rounds": disk}))


if __name__ == "__main__":
    main()
