"""Every figure of Runnel's performance targets, measured in one run, each beside its baseline.

    .venv/bin/python scripts/bench_matrix.py --runnel target/release/runnel \
        [--before OLD/runnel] [--rounds 3] [--records 300000] [--json PATH]

Run by scripts/bench.sh (which installs the tools and builds the binary first). Once per run:
iperf3 on loopback (the network ceiling) and fio (this disk's fsync latency: 4 KiB writes,
each followed by fsync, for 5 s, in the same temp directory the brokers use). Then `--rounds`
rounds; each runs every workload below on a fresh broker with a fresh data directory, so that
no run inherits another's page cache or files. With `--before`, each round runs them for both
binaries, in an order that swaps every round, so that drift in the machine's load falls on both.

Workloads (1 KiB records; MB = 10^6 bytes of record values; CPU in seconds per GB of values):
- `default_*` / `fsync_*`: the broker with default settings, then with `--flush-messages 1`
  (fsync before every acknowledgement). confluent-kafka produces `--records` records
  round-robin into 6 partitions with acks=all (linger.ms=5, batch.size=1000000), then fetches
  them back: MB/s and broker CPU for each.
- `*_steady_*`: confluent-kafka sends one record per request (linger.ms=0, acks=all,
  idempotence off) at 5,000 records/s over 6 partitions for 5 s: produce() to delivery report,
  p50/p99/p99.9.
- `partitions_*`: default settings, 6 against 1,000 partitions: confluent-kafka round-robin
  (one or two records per batch at 1,000 partitions) and `runnel bench produce` (sticky).
- `clients_*`: default settings, each client with its defaults as a user gets them (ours:
  batch.size 1,000,000, linger 5 ms, 5 requests in flight; librdkafka: the same batch.size and
  linger, its own sticky partitioner): `runnel bench produce` against confluent-kafka with
  acks=all into 1 and into 6 partitions, then `runnel bench consume` against a confluent-kafka
  consumer reading the same 6-partition topic from the start.

Prints a table (median over rounds, the baseline, the ratio, the target where one applies) and
writes the rounds, medians and ratios as JSON to `--json` (default: target/bench-matrix.json).
"""

from __future__ import annotations

import argparse
import json
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
RECORD_BYTES = 1024
STEADY_RATE = 5000
STEADY_SECONDS = 5
MANY_PARTITIONS = 1000


def log(message: str) -> None:
    print(f"bench_matrix: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(process: subprocess.Popen, how: signal.Signals) -> None:
    """Signals `process` to stop, and kills it if it has not within 60 s."""
    process.send_signal(how)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Broker:
    """A broker on a free port with a fresh data dir, stopped with SIGTERM on exit."""

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
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError(f"{binary} did not start (see {self.log.name})")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> str:
        return str(self.process.pid)

    def __enter__(self) -> "Broker":
        return self

    def __exit__(self, *exc) -> None:
        stop(self.process, signal.SIGTERM)
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


def json_line(command: list[str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def clients(*arguments: str) -> dict:
    return json_line([sys.executable, str(CLIENTS), *arguments])


def librdkafka_figures(result: dict) -> dict:
    """MB/s and CPU-s per GB from a bench_clients.py result."""
    gb = result["records"] * result["record_bytes"] / 1e9
    return {
        "mb_per_s": result["mb_per_s"],
        "broker_cpu_s_per_gb": round(result["broker_cpu_pct"] / 100 * result["seconds"] / gb, 3),
        "client_cpu_s_per_gb": round(result["client_cpu_pct"] / 100 * result["seconds"] / gb, 3),
    }


def runnel_figures(result: dict) -> dict:
    """The same from `runnel bench --format json` (whose own MB is 2^20 bytes)."""
    return {
        "mb_per_s": round(result["bytes"] / 1e6 / result["elapsed_s"], 2),
        "broker_cpu_s_per_gb": result["broker_cpu_s_per_gb"],
        "client_cpu_s_per_gb": result["client_cpu_s_per_gb"],
    }


def prefixed(prefix: str, figures: dict) -> dict:
    return {f"{prefix}_{key}": value for key, value in figures.items()}


def throughput(binary: str, work: Path, records: int, mode: str) -> dict:
    extra = ["--flush-messages", "1"] if mode == "fsync" else []
    with Broker(binary, work, extra) as broker:
        result = clients(
            "run", "--bootstrap", broker.bootstrap, "--records", str(records), "--acks", "all",
            "--broker-pid", broker.pid,
        )
    produce = librdkafka_figures(result["produce_acks_all"])
    fetch = librdkafka_figures(result["fetch"])
    return {
        f"{mode}_produce_mb_per_s": produce["mb_per_s"],
        f"{mode}_produce_broker_cpu_s_per_gb": produce["broker_cpu_s_per_gb"],
        f"{mode}_fetch_mb_per_s": fetch["mb_per_s"],
        f"{mode}_fetch_broker_cpu_s_per_gb": fetch["broker_cpu_s_per_gb"],
    }


def steady(binary: str, work: Path, mode: str) -> dict:
    extra = ["--flush-messages", "1"] if mode == "fsync" else []
    with Broker(binary, work, extra) as broker:
        result = clients(
            "steady", "--bootstrap", broker.bootstrap, "--rate", str(STEADY_RATE),
            "--records", str(STEADY_RATE * STEADY_SECONDS), "--partitions", "6",
            "--broker-pid", broker.pid,
        )
    latency = result["latency_ms"]
    return {
        f"{mode}_steady_p50_ms": latency["p50"],
        f"{mode}_steady_p99_ms": latency["p99"],
        f"{mode}_steady_p999_ms": latency["p99.9"],
    }


def runnel_produce(runnel: str, broker: Broker, topic: str, partitions: int, records: int) -> dict:
    return runnel_figures(json_line([
        runnel, "bench", "produce", "--bootstrap", broker.bootstrap, "--topic", topic,
        "--partitions", str(partitions), "--records", str(records), "--acks", "all",
        "--broker-pid", broker.pid, "--format", "json",
    ]))


def librdkafka_produce(
    runnel: str, broker: Broker, topic: str, partitions: int, records: int, round_robin: bool
) -> dict:
    # Created first: librdkafka's metadata request would auto-create it with one partition.
    subprocess.run(
        [runnel, "topic", "create", topic, "--partitions", str(partitions), "--bootstrap", broker.bootstrap],
        check=True, capture_output=True,
    )
    arguments = [
        "produce", "--bootstrap", broker.bootstrap, "--topic", topic, "--acks", "all",
        "--records", str(records), "--partitions", str(partitions), "--broker-pid", broker.pid,
    ]
    if round_robin:
        arguments.append("--round-robin")
    return librdkafka_figures(clients(*arguments))


def partitions(binary: str, runnel: str, work: Path, records: int) -> dict:
    out = {}
    for count in (6, MANY_PARTITIONS):
        with Broker(binary, work, []) as broker:
            out.update(prefixed(f"partitions_{count}_librdkafka", librdkafka_produce(
                runnel, broker, "rr", count, records, round_robin=True)))
        with Broker(binary, work, []) as broker:
            out.update(prefixed(f"partitions_{count}_ours", runnel_produce(
                runnel, broker, "sticky", count, records)))
    return out


def client_comparison(binary: str, runnel: str, work: Path, records: int, swap: bool) -> dict:
    out = {}
    for count in (1, 6):
        with Broker(binary, work, []) as broker:
            runs = [
                ("ours", lambda: runnel_produce(runnel, broker, "ours", count, records)),
                ("librdkafka", lambda: librdkafka_produce(runnel, broker, "lib", count, records, round_robin=False)),
            ]
            for name, run in reversed(runs) if swap else runs:
                out.update(prefixed(f"clients_produce_{count}p_{name}", run()))
            if count == 6:
                consumers = [
                    ("ours", lambda: runnel_figures(json_line([
                        runnel, "bench", "consume", "--bootstrap", broker.bootstrap, "--topic", "ours",
                        "--broker-pid", broker.pid, "--format", "json",
                    ]))),
                    ("librdkafka", lambda: librdkafka_figures(clients(
                        "consume", "--bootstrap", broker.bootstrap, "--topic", "ours",
                        "--records", str(records), "--broker-pid", broker.pid,
                    ))),
                ]
                for name, run in reversed(consumers) if swap else consumers:
                    out.update(prefixed(f"clients_consume_6p_{name}", run()))
    return out


def fio_fsync(work: Path) -> dict:
    output = subprocess.run(
        ["fio", "--name=fsync", f"--directory={work}", "--size=64m", "--bs=4k", "--rw=write",
         "--fsync=1", "--ioengine=sync", "--runtime=5", "--time_based", "--output-format=json"],
        check=True, capture_output=True, text=True,
    ).stdout
    sync = json.loads(output)["jobs"][0]["sync"]["lat_ns"]["percentile"]
    return {
        "fio_fsync_p50_ms": round(sync["50.000000"] / 1e6, 3),
        "fio_fsync_p99_ms": round(sync["99.000000"] / 1e6, 3),
    }


def iperf3_loopback() -> dict:
    port = free_port()
    server = subprocess.Popen(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True)
            if "LISTEN" in listening.stdout:
                break
            time.sleep(0.05)
        output = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", "5", "-J"],
                                check=True, capture_output=True, text=True).stdout
    finally:
        server.wait(10)
    bits = json.loads(output)["end"]["sum_received"]["bits_per_second"]
    return {"iperf3_loopback_mb_per_s": round(bits / 8e6, 1)}


# (figure, baseline, target, what the target is): the ratio is figure / baseline.
RATIOS = [
    ("default_produce_mb_per_s", "iperf3_loopback_mb_per_s", None, ""),
    ("default_fetch_mb_per_s", "iperf3_loopback_mb_per_s", None, ""),
    ("default_fetch_broker_cpu_s_per_gb", "default_produce_broker_cpu_s_per_gb", 1.0, "at most"),
    ("fsync_produce_mb_per_s", "default_produce_mb_per_s", 0.7, "at least"),
    ("fsync_fetch_broker_cpu_s_per_gb", "fsync_produce_broker_cpu_s_per_gb", 1.0, "at most"),
    ("default_steady_p99_ms", "fio_fsync_p99_ms", None, ""),
    ("fsync_steady_p50_ms", "fio_fsync_p50_ms", None, ""),
    ("fsync_steady_p99_ms", "fio_fsync_p99_ms", 3.0, "at most"),
    ("fsync_steady_p999_ms", "fio_fsync_p99_ms", None, ""),
    (f"partitions_{MANY_PARTITIONS}_librdkafka_mb_per_s", "partitions_6_librdkafka_mb_per_s", 0.9, "at least"),
    (f"partitions_{MANY_PARTITIONS}_librdkafka_broker_cpu_s_per_gb", "partitions_6_librdkafka_broker_cpu_s_per_gb", None, ""),
    (f"partitions_{MANY_PARTITIONS}_ours_mb_per_s", "partitions_6_ours_mb_per_s", 0.9, "at least"),
    (f"partitions_{MANY_PARTITIONS}_ours_broker_cpu_s_per_gb", "partitions_6_ours_broker_cpu_s_per_gb", None, ""),
    ("clients_produce_1p_ours_mb_per_s", "clients_produce_1p_librdkafka_mb_per_s", 1.0, "at least"),
    ("clients_produce_1p_ours_client_cpu_s_per_gb", "clients_produce_1p_librdkafka_client_cpu_s_per_gb", 1.0, "at most"),
    ("clients_produce_6p_ours_mb_per_s", "clients_produce_6p_librdkafka_mb_per_s", 1.0, "at least"),
    ("clients_produce_6p_ours_client_cpu_s_per_gb", "clients_produce_6p_librdkafka_client_cpu_s_per_gb", 1.0, "at most"),
    ("clients_produce_6p_ours_broker_cpu_s_per_gb", "clients_produce_6p_librdkafka_broker_cpu_s_per_gb", None, ""),
    ("clients_consume_6p_ours_mb_per_s", "clients_consume_6p_librdkafka_mb_per_s", 1.0, "at least"),
    ("clients_consume_6p_ours_client_cpu_s_per_gb", "clients_consume_6p_librdkafka_client_cpu_s_per_gb", 1.0, "at most"),
]


def one_round(binary: str, runnel: str, work: Path, records: int, swap: bool) -> dict:
    figures = {}
    for mode in ("default", "fsync"):
        figures.update(throughput(binary, work, records, mode))
        figures.update(steady(binary, work, mode))
    figures.update(partitions(binary, runnel, work, records))
    figures.update(client_comparison(binary, runnel, work, records, swap))
    return figures


def medians(runs: list[dict]) -> dict:
    return {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}


def ratio_rows(figures: dict) -> list[dict]:
    rows = []
    for figure, baseline, target, sense in RATIOS:
        value, base = figures[figure], figures[baseline]
        ratio = round(value / base, 3) if base else None
        met = None
        if target is not None and ratio is not None:
            met = ratio >= target if sense == "at least" else ratio <= target
        rows.append({"figure": figure, "value": value, "baseline": baseline, "baseline_value": base,
                     "ratio": ratio, "target": f"{sense} {target}" if target else None, "met": met})
    return rows


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    header = f"{'figure':<52}{'value':>10}  {'baseline':<48}{'value':>10}{'ratio':>8}  target"
    print(header)
    print("-" * len(header))
    for row in rows:
        target = "" if row["target"] is None else f"{row['target']}: {'met' if row['met'] else 'NOT met'}"
        print(f"{row['figure']:<52}{row['value']:>10}  {row['baseline']:<48}{row['baseline_value']:>10}"
              f"{row['ratio']:>8}  {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runnel", required=True, help="the broker under test, also the `runnel bench` client")
    parser.add_argument("--before", help="a second broker binary, measured alike, for after/before ratios")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--json", default=str(REPO / "target" / "bench-matrix.json"))
    args = parser.parse_args()
    binaries = [("after", args.runnel)] + ([("before", args.before)] if args.before else [])
    work = Path(tempfile.mkdtemp(prefix="runnel-matrix-"))
    rounds: dict[str, list[dict]] = {label: [] for label, _ in binaries}
    machine: dict = {}
    try:
        machine.update(iperf3_loopback())
        machine.update(fio_fsync(work))
        log(f"machine: {machine}")
        for index in range(args.rounds):
            order = binaries if index % 2 == 0 else list(reversed(binaries))
            for label, binary in order:
                figures = one_round(binary, args.runnel, work, args.records, swap=index % 2 == 1)
                log(f"round {index + 1} {label}: {figures}")
                rounds[label].append(figures)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary: dict = {"records": args.records, "record_bytes": RECORD_BYTES, "rounds": args.rounds,
                     "machine": machine, "runs": rounds}
    for label, runs in rounds.items():
        figures = {**machine, **medians(runs)}
        summary[f"medians_{label}"] = figures
        summary[f"ratios_{label}"] = ratio_rows(figures)
        print_table(f"{label}: medians of {args.rounds} rounds ({args.records} records of {RECORD_BYTES} B)",
                    summary[f"ratios_{label}"])
    if args.before:
        after, before = summary["medians_after"], summary["medians_before"]
        summary["after_over_before"] = {key: round(after[key] / before[key], 3) if before[key] else None
                                        for key in after}
        print(f"\n{'figure':<52}{'before':>10}{'after':>10}{'after/before':>14}")
        for key, ratio in summary["after_over_before"].items():
            print(f"{key:<52}{before[key]:>10}{after[key]:>10}{ratio!s:>14}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\nJSON summary: {args.json}")


if __name__ == "__main__":
    main()
