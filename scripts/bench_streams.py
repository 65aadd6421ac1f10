#!/usr/bin/env python3
"""runnel-streams against quixstreams, on one fresh release broker, same input, same run:

1. Throughput on one core: word count (input of one partition, and of two: quixstreams
   regroups a one-partition input in place, runnel-streams always through a repartition
   topic) and a windowed count (per key, tumbling 60 s windows on event time, 10 s grace,
   emitted on every update), each run by runnel-streams
   (crates/runnel-streams/examples/streams_bench) and by quixstreams
   (scripts/bench_streams_quix.py), interleaved over --rounds rounds, each run with a fresh
   consumer group and output topic. The app runs pinned to core 1 (`taskset -c 1`), the broker
   to core 0. At least once, both with the same commit interval (--commit-interval-ms). A
   run's time is from the app's start until its group has committed the end of the input
   (and of its repartition topic, if any), polled every 100 ms; records/s = input records /
   that time. Each run's output is then read back and checked against the input.
2. End-to-end latency under exactly-once, with each library's default commit interval
   (runnel-streams: 100 ms, Kafka Streams' default under exactly-once; quixstreams: 5 s, and
   once more at 100 ms for comparison), for the passthrough pipeline at --latency-rate
   records/s for --latency-seconds: time the record is read (read_committed) from the output
   minus the time it was produced to the input.

Usage: .venv/bin/python scripts/bench_streams.py [--rounds 3]
       [--wordcount-lines 100000] [--windowed-records 300000]
Needs release builds (`cargo build --release -p runnel-cli` and
`cargo build --release -p runnel-streams --example streams_bench`), confluent-kafka in .venv
(tests/compat/requirements.txt), and quixstreams in its own virtualenv .venv-quix
(scripts/bench-requirements.txt; quixstreams 3.28.1 needs confluent-kafka < 2.13, the
compat tests pin 2.16.1):
    python3 -m venv .venv-quix && .venv-quix/bin/python -m pip install -r scripts/bench-requirements.txt
Prints a Markdown report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import shutil
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench_broker import Broker

REPO = Path(__file__).resolve().parents[1]
QUIX_APP = REPO / "scripts" / "bench_streams_quix.py"
BROKER_CPU = "0"
APP_CPU = "1"
WINDOW_MS = 60_000
USERS = 10_000
VOCABULARY = 3_000
# Windowed input: event time advances this much per record, and each record is up to
# JITTER_MS earlier than that (out of order, well within the 10 s grace).
STEP_MS = 2
JITTER_MS = 2_000
LIBRARIES = ("runnel-streams", "quixstreams")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"bench_streams: {message}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p / 100))]


class Bench:
    def __init__(self, args: argparse.Namespace, broker: Broker):
        self.args = args
        self.broker = broker
        self.bootstrap = broker.bootstrap
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})
        self.work = Path(tempfile.mkdtemp(prefix="bench-streams-"))
        self.watermarks = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "bench-watermarks",
                                    "enable.auto.commit": False})

    # Topics and input.

    def create_topic(self, name: str, partitions: int = 1) -> None:
        self.admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)

    def partitions(self, topic: str) -> list[TopicPartition]:
        metadata = self.admin.list_topics(topic, timeout=10).topics[topic]
        return [TopicPartition(topic, p) for p in sorted(metadata.partitions)]

    def ends(self, topic: str) -> dict[tuple[str, int], int]:
        """Each partition's high watermark."""
        return {(tp.topic, tp.partition): self.watermarks.get_watermark_offsets(tp, timeout=10)[1]
                for tp in self.partitions(topic)}

    def produce(self, topic: str, records, partitions: int = 1) -> None:
        """Produces `records` (key, value, timestamp) round-robin over `partitions`."""
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 20, "batch.size": 1_000_000,
                             "acks": "all"})
        failed = []
        on_delivery = lambda error, _message: error and failed.append(error)
        for n, (key, value, timestamp) in enumerate(records):
            while True:
                try:
                    producer.produce(topic, value, key, partition=n % partitions, timestamp=timestamp or 0,
                                     on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)
        if producer.flush(120) or failed:
            raise SystemExit(f"filling {topic} failed: {failed[:3]}")

    # Apps.

    def command(self, library: str, pipeline: str, source: str, sink: str, group: str,
                exactly_once: bool, commit_ms: int | None) -> list[str]:
        common = ["--bootstrap", self.bootstrap, "--pipeline", pipeline, "--input", source,
                  "--output", sink, "--application-id", group]
        if exactly_once:
            common.append("--exactly-once")
        # Each run's stores on disk (each library's default engine) in a fresh directory.
        state = tempfile.mkdtemp(prefix="state-", dir=self.work)
        if library == "runnel-streams":
            command = [self.args.app, *common, "--state-dir", state]
            if commit_ms is not None:
                command += ["--commit-interval-ms", str(commit_ms)]
        else:
            command = [self.args.quix_python, str(QUIX_APP), *common, "--state-dir", state]
            if commit_ms is not None:
                command += ["--commit-interval", str(commit_ms / 1000)]
        return ["taskset", "-c", APP_CPU, *command]

    def start(self, command: list[str], group: str) -> subprocess.Popen:
        output = open(self.work / f"{group}.log", "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUST_LOG")}
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)

    def stop(self, process: subprocess.Popen, group: str) -> str | None:
        """SIGTERM, then waits up to 60 s; what went wrong, if anything."""
        if process.poll() is not None:
            return f"exited early ({process.returncode}): {self.log_tail(group)}"
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return "did not stop within 60 s of SIGTERM (killed)"
        return None if code == 0 else f"exit code {code} after SIGTERM: {self.log_tail(group)}"

    def log_tail(self, group: str) -> str:
        text = (self.work / f"{group}.log").read_text(errors="replace").strip().splitlines()
        return " / ".join(text[-3:])[-600:]

    # Progress.

    def committed(self, group: str) -> dict[tuple[str, int], int]:
        request = ConsumerGroupTopicPartitions(group)
        try:
            answer = self.admin.list_consumer_group_offsets([request])[group].result(10)
        except Exception:  # the group has no offsets yet
            return {}
        return {(tp.topic, tp.partition): tp.offset for tp in answer.topic_partitions if tp.offset >= 0}

    def caught_up(self, group: str, source_ends: dict[tuple[str, int], int]) -> list[str] | None:
        """The repartition topics, once `group` committed the end of the input (`source_ends`)
        and of them. (Their ends are final by then: each library flushes what it produced
        before it commits the input records it came from.)"""
        committed = self.committed(group)
        if any(committed.get(tp, -1) < end for tp, end in source_ends.items()):
            return None
        # runnel-streams': <group>-<name>-repartition; quixstreams': repartition__<group>--<name>.
        repartition = [topic for topic in self.admin.list_topics(timeout=10).topics
                       if topic.startswith(f"repartition__{group}--")
                       or (topic.startswith(f"{group}-") and topic.endswith("-repartition"))]
        for topic in repartition:
            if any(committed.get(tp, -1) < end for tp, end in self.ends(topic).items()):
                return None
        return repartition

    def first_record(self, topic: str, found: dict, stop: threading.Event) -> None:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "bench-first",
                             "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        consumer.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in self.partitions(topic)])
        while not stop.is_set():
            message = consumer.poll(0.05)
            if message is not None and message.error() is None:
                found["at"] = time.monotonic()
                break
        consumer.close()

    def read_all(self, topic: str, isolation: str = "read_uncommitted"):
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "bench-read",
                             "enable.auto.commit": False, "isolation.level": isolation})
        ends = {tp: end for tp, end in self.ends(topic).items() if end > 0}
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for _, partition in ends])
        last_read = time.monotonic()
        while ends and time.monotonic() - last_read < 30:
            for message in consumer.consume(10_000, 1.0):
                if message.error() is None:
                    last_read = time.monotonic()
                    tp = (message.topic(), message.partition())
                    if message.offset() + 1 >= ends.get(tp, 0):
                        ends.pop(tp, None)
                    yield message.key(), message.value()
        consumer.close()

    # 1. Throughput.

    def throughput_run(self, library: str, case: str, pipeline: str, source: str, label: str) -> dict:
        group = f"{case}-{library}-{label}"
        sink = f"out-{group}"
        source_ends = self.ends(source)
        self.create_topic(sink, len(source_ends))
        command = self.command(library, pipeline, source, sink, group, False, self.args.commit_interval_ms)
        found: dict = {}
        stop_first = threading.Event()
        watcher = threading.Thread(target=self.first_record, args=(sink, found, stop_first))
        watcher.start()
        broker_cpu = cpu_seconds(self.broker.proc.pid)
        started = time.monotonic()
        process = self.start(command, group)
        result: dict = {"library": library, "case": case, "sink": sink}
        while time.monotonic() - started < self.args.run_timeout:
            if process.poll() is not None:
                break
            repartition = self.caught_up(group, source_ends)
            if repartition is not None:
                result["seconds"] = time.monotonic() - started
                result["repartition"] = repartition
                result["app_cpu"] = cpu_seconds(process.pid) / result["seconds"]
                result["broker_cpu"] = (cpu_seconds(self.broker.proc.pid) - broker_cpu) / result["seconds"]
                break
            time.sleep(0.1)
        stop_first.set()
        watcher.join()
        if "at" in found:
            result["first_output_s"] = found["at"] - started
        if "seconds" not in result:
            result["error"] = (f"did not commit the end of the input within {self.args.run_timeout} s "
                               f"(committed: {self.committed(group)})")
        stopping = time.monotonic()
        stopped = self.stop(process, group)
        result["stop_s"] = time.monotonic() - stopping
        if stopped:
            result["error"] = "; ".join(filter(None, [result.get("error"), stopped]))
        return result

    # 2. Latency.

    def latency_run(self, library: str, commit_ms: int | None, label: str) -> dict:
        group = f"latency-{library}-{label}"
        source, sink = f"in-{group}", f"out-{group}"
        self.create_topic(source)
        self.create_topic(sink)
        total = self.args.latency_rate * self.args.latency_seconds
        latencies: dict[int, float] = {}
        duplicates = 0
        warmed = threading.Event()
        finished = threading.Event()

        def consume() -> None:
            nonlocal duplicates
            consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "bench-latency",
                                 "enable.auto.commit": False, "isolation.level": "read_committed",
                                 "fetch.wait.max.ms": 5})
            consumer.assign([TopicPartition(sink, 0, OFFSET_BEGINNING)])
            while not finished.is_set():
                messages = consumer.consume(1000, 0.05)
                now = time.time_ns()
                for message in messages:
                    if message.error() is not None:
                        continue
                    sequence, produced = map(int, message.value().split())
                    if sequence < 0:
                        warmed.set()
                    elif sequence in latencies:
                        duplicates += 1
                    else:
                        latencies[sequence] = (now - produced) / 1e6
                if len(latencies) >= total:
                    break
            consumer.close()

        reader = threading.Thread(target=consume)
        reader.start()
        command = self.command(library, "passthrough", source, sink, group, True, commit_ms)
        process = self.start(command, group)
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 0, "acks": "all"})
        result: dict = {"library": library, "commit_ms": commit_ms}
        deadline = time.monotonic() + 120
        while not warmed.is_set() and time.monotonic() < deadline and process.poll() is None:
            producer.produce(source, b"-1 %d" % time.time_ns())
            producer.poll(0)
            warmed.wait(0.2)
        if warmed.is_set():
            time.sleep(1)
            start = time.monotonic()
            for sequence in range(total):
                ahead = start + sequence / self.args.latency_rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
                producer.produce(source, b"%d %d" % (sequence, time.time_ns()))
                producer.poll(0)
            producer.flush(30)
            reader.join(60)
        finished.set()
        reader.join()
        stopped = self.stop(process, group)
        values = sorted(latencies.values())
        if values:
            result.update(min=values[0], p50=percentile(values, 50), p99=percentile(values, 99), max=values[-1])
        result.update(received=len(values), missing=total - len(values), duplicates=duplicates)
        if not warmed.is_set():
            result["error"] = "no output within 120 s of the start"
        if stopped:
            result["error"] = "; ".join(filter(None, [result.get("error"), stopped]))
        return result


# Inputs and their expected results.

def wordcount_input(lines: int, seed: int):
    """Lines of 6 to 10 words (8 on average) drawn from a fixed vocabulary with Zipf-like
    weights, a tenth of them capitalized; and each lower-cased word's count."""
    rng = random.Random(seed)
    vocabulary: set[str] = set()
    while len(vocabulary) < VOCABULARY:
        vocabulary.add("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 10))))
    words = sorted(vocabulary)
    rng.shuffle(words)
    lengths = [rng.randint(6, 10) for _ in range(lines)]
    drawn = rng.choices(words, weights=[1 / (rank + 1) for rank in range(len(words))], k=sum(lengths))
    counts = Counter(drawn)
    cased = [word.capitalize() if rng.random() < 0.1 else word for word in drawn]
    records, at = [], 0
    for length in lengths:
        records.append((None, " ".join(cased[at:at + length]).encode(), None))
        at += length
    return records, counts


def windowed_input(count: int, seed: int):
    """Records keyed by one of USERS user ids, event time STEP_MS apart with up to JITTER_MS of
    disorder, an hour and more in the past; and each (user, window start)'s count."""
    rng = random.Random(seed)
    users = [f"user-{n:05d}" for n in range(USERS)]
    base = int(time.time() * 1000) - 3_600_000 - count * STEP_MS
    records, counts = [], Counter()
    for n in range(count):
        user = rng.choice(users)
        timestamp = base + n * STEP_MS - rng.randrange(JITTER_MS)
        records.append((user.encode(), b"page-%d" % rng.randrange(1000), timestamp))
        counts[(user, timestamp - timestamp % WINDOW_MS)] += 1
    return records, counts


def check_wordcount(bench: Bench, sink: str, library: str, counts: Counter) -> tuple[str, dict]:
    last: dict[str, int] = {}
    records = 0
    for key, value in bench.read_all(sink):
        last[key.decode()] = int(value)
        records += 1
    wrong = sum(1 for word, count in counts.items() if last.get(word) != count)
    extra = len(set(last) - set(counts))
    expected = sum(counts.values())
    verdict = "ok" if not wrong and not extra and records == expected else (
        f"{wrong} words with a wrong final count, {extra} unexpected words, "
        f"{records:,} output records for {expected:,} words")
    return verdict, last


def check_windowed(bench: Bench, sink: str, library: str, counts: Counter) -> tuple[str, dict]:
    last: dict[tuple[str, int], int] = {}
    records = 0
    for key, value in bench.read_all(sink):
        records += 1
        if library == "runnel-streams":
            window = (key[:-8].decode(), int.from_bytes(key[-8:], "big"))
            last[window] = int.from_bytes(value, "big", signed=True)
        else:
            result = json.loads(value)
            last[(key.decode(), result["start"])] = result["value"]
    wrong = sum(1 for window, count in counts.items() if last.get(window) != count)
    extra = len(set(last) - set(counts))
    expected = sum(counts.values())
    verdict = "ok" if not wrong and not extra and records == expected else (
        f"{wrong} windows with a wrong final count, {extra} unexpected windows, "
        f"{records:,} output records for {expected:,} input records")
    return verdict, last


# The report.

def machine() -> list[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    git = lambda *a: subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = git("status", "--porcelain", "--untracked-files=no")
    quix = subprocess.run([ARGS.quix_python, "-c", "import quixstreams, confluent_kafka; "
                           "print(quixstreams.__version__, confluent_kafka.version(), confluent_kafka.libversion()[0])"],
                          capture_output=True, text=True)
    import confluent_kafka
    return [
        f"- machine: {os.cpu_count()} CPUs (`nproc` {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()}), "
        f"{cpu}, Linux {platform.release()}",
        f"- commit: {git('rev-parse', '--short', 'HEAD')}"
        + (f" with uncommitted changes in {len(dirty.splitlines())} tracked files" if dirty else ""),
        f"- command: `{' '.join(shlex.quote(a) for a in sys.argv)}`",
        ("- quixstreams {} on confluent-kafka {} (librdkafka {})".format(*quix.stdout.split()) if quix.returncode == 0
         else f"- quixstreams unavailable: {quix.stderr.strip()[-400:]}")
        + f", in {Path(ARGS.quix_python).parent.parent.name}; this script: confluent-kafka {confluent_kafka.version()}",
    ]


def fmt(value: float | None, spec: str) -> str:
    return spec.format(value) if value is not None else "–"


def fmt_rate(value: float | None) -> str:
    return fmt(value, "{:,.0f}")


def median_of(runs: list[dict], field: str) -> float | None:
    values = [run[field] for run in runs if field in run and "error" not in run]
    return statistics.median(values) if values else None


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=str(REPO / "target" / "release" / "runnel"))
    parser.add_argument("--app", default=str(REPO / "target" / "release" / "examples" / "streams_bench"))
    parser.add_argument("--quix-python", default=str(REPO / ".venv-quix" / "bin" / "python"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wordcount-lines", type=int, default=100_000)
    parser.add_argument("--windowed-records", type=int, default=300_000)
    parser.add_argument("--commit-interval-ms", type=int, default=1000,
                        help="both libraries' commit interval in the throughput runs")
    parser.add_argument("--latency-rate", type=int, default=1000)
    parser.add_argument("--latency-seconds", type=int, default=30)
    parser.add_argument("--run-timeout", type=float, default=600)
    parser.add_argument("--port", type=int, default=19700)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    ARGS = parser.parse_args()
    for path in (ARGS.bin, ARGS.app):
        if not Path(path).exists():
            raise SystemExit(f"{path} is missing: build it first (see this script's docstring)")
    libraries = list(LIBRARIES)
    probe = subprocess.run([ARGS.quix_python, "-c", "import quixstreams"], capture_output=True, text=True)
    quix_error = None if probe.returncode == 0 else (probe.stderr.strip() or f"{ARGS.quix_python} failed")
    if quix_error:
        libraries.remove("quixstreams")

    # A new group's first rebalance does not wait for more members: one app per group here.
    broker = Broker(Path(ARGS.bin), ARGS.port, "--group-initial-rebalance-delay-ms", "0", cpus=BROKER_CPU)
    broker.start()
    bench = Bench(ARGS, broker)
    print("## runnel-streams and quixstreams\n")
    print("\n".join(machine()))
    print(f"- broker: `runnel server --group-initial-rebalance-delay-ms 0` on core {BROKER_CPU}; "
          f"each app on core {APP_CPU} (`taskset`); topics of 1 partition unless said otherwise")
    if quix_error:
        print(f"- **quixstreams could not run**: {quix_error}")
    try:
        if not ARGS.skip_throughput:
            throughput(bench, libraries)
        if not ARGS.skip_latency:
            latency(bench, libraries)
    finally:
        bench.watermarks.close()
        broker.remove()
        shutil.rmtree(bench.work, ignore_errors=True)


def throughput(bench: Bench, libraries: list[str]) -> None:
    log("generating the inputs")
    lines, words = wordcount_input(ARGS.wordcount_lines, 1)
    clicks, windows = windowed_input(ARGS.windowed_records, 2)
    # case: (pipeline, input topic, its partitions, records, expected results, check). quixstreams
    # re-keys in place when its input has one partition (no repartition topic); with two, both
    # libraries repartition through the broker.
    cases = {
        "wordcount, 1 partition": ("wordcount", "lines", 1, lines, words, check_wordcount),
        "wordcount, 2 partitions": ("wordcount", "lines-2", 2, lines, words, check_wordcount),
        "windowed, 1 partition": ("windowed", "clicks", 1, clicks, windows, check_windowed),
    }
    for _, topic, partitions, records, _, _ in cases.values():
        bench.create_topic(topic, partitions)
        log(f"producing {len(records):,} records to {topic}")
        bench.produce(topic, records, partitions)
    runs: list[dict] = []
    samples: dict[str, dict[str, dict]] = {}
    for round_ in range(ARGS.rounds):
        for case, (pipeline, topic, _, records, expected, check) in cases.items():
            order = libraries if round_ % 2 == 0 else libraries[::-1]
            for library in order:
                log(f"round {round_ + 1}: {case} by {library}")
                slug = case.replace(", ", "-").replace(" ", "")
                run = bench.throughput_run(library, slug, pipeline, topic, f"r{round_}")
                run["case"] = case
                if "seconds" in run:
                    run["records_per_s"] = len(records) / run["seconds"]
                    if "first_output_s" in run:
                        run["after_first_per_s"] = len(records) / (run["seconds"] - run["first_output_s"])
                run["check"], last = check(bench, run["sink"], library, expected)
                if case == "wordcount, 2 partitions":
                    samples[library] = last
                log(f"  {json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in run.items()})}")
                runs.append(run)
    print(f"\n### 1. Throughput on one core (at least once, commit interval {ARGS.commit_interval_ms} ms "
          f"for both)\n")
    print(f"Word count: {ARGS.wordcount_lines:,} lines of 6-10 words (8 on average) from {VOCABULARY:,} words, "
          f"regrouped by word: runnel-streams always repartitions through the broker (as Kafka Streams), "
          f"quixstreams only when its input has more than one partition. Windowed: {ARGS.windowed_records:,} "
          f"records over {USERS:,} keys, event time +{STEP_MS} ms a record with up to {JITTER_MS / 1000:g} s of "
          f"disorder; 60 s tumbling windows, 10 s grace, emitted on every update. Stores on disk (each library's "
          f"default engine) with changelogs. Time = app start to the end of the input committed (seen up to one commit interval "
          f"after the last record is processed, which weighs most on the shortest runs); \"records/s after it\" "
          f"leaves out the start (process, group join) up to the first output record. Medians of {ARGS.rounds} "
          f"rounds, order alternating. CPU = CPU-seconds per second of the run. Output = every run's output read "
          f"back: each word's (window's) last count equals the input's, one output record per word (input "
          f"record).\n")
    print("| input | library | input records/s | s (min–max) | first output at s | records/s after it | app CPU | "
          "broker CPU | output |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for case in cases:
        rates, after = {}, {}
        for library in libraries:
            mine = [run for run in runs if run["case"] == case and run["library"] == library]
            rates[library] = median_of(mine, "records_per_s")
            after[library] = median_of(mine, "after_first_per_s")
            checks = sorted({run["check"] for run in mine})
            errors = [run["error"] for run in mine if "error" in run]
            seconds, first = median_of(mine, "seconds"), median_of(mine, "first_output_s")
            done = [run["seconds"] for run in mine if "seconds" in run and "error" not in run]
            spread = f" ({min(done):.1f}–{max(done):.1f})" if len(done) > 1 else ""
            app_cpu, broker_cpu = median_of(mine, "app_cpu"), median_of(mine, "broker_cpu")
            cells = [fmt_rate(rates[library]), fmt(seconds, "{:.2f}") + spread, fmt(first, "{:.2f}"),
                     fmt_rate(after[library]),
                     fmt(app_cpu, "{:.0%}"), fmt(broker_cpu, "{:.0%}"),
                     "; ".join(checks + ([f"**{len(errors)} failed**: {errors[0]}"] if errors else []))]
            print(f"| {case} | {library} | " + " | ".join(cells) + " |")
        if len(rates) == len(LIBRARIES):
            ratio = lambda of: f"**{of['runnel-streams'] / of['quixstreams']:.1f}x**" if all(of.values()) else "–"
            print(f"| {case} | **runnel-streams / quixstreams** | {ratio(rates)} | | | {ratio(after)} | | | |")
    if len(samples) == len(LIBRARIES):
        chosen = [word for word, _ in words.most_common(3)] + [min(words, key=words.get)]
        shown = ", ".join(f"{word!r} {'/'.join(str(samples[lib].get(word)) for lib in LIBRARIES)}/{words[word]}"
                          for word in chosen)
        print(f"\nFinal word counts (runnel-streams/quixstreams/input), 2 partitions, last round: {shown}.")


def latency(bench: Bench, libraries: list[str]) -> None:
    variants = [("runnel-streams", None, "default (100 ms)")]
    if "quixstreams" in libraries:
        variants += [("quixstreams", None, "default (5 s)"), ("quixstreams", 100, "100 ms")]
    runs: dict[int, list[dict]] = {n: [] for n in range(len(variants))}
    for round_ in range(ARGS.rounds):
        order = list(range(len(variants)))
        if round_ % 2:
            order.reverse()
        for n in order:
            library, commit_ms, label = variants[n]
            log(f"round {round_ + 1}: latency, {library}, commit interval {label}")
            run = bench.latency_run(library, commit_ms, f"{n}-r{round_}")
            log(f"  {json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in run.items()})}")
            runs[n].append(run)
    print(f"\n### 2. End-to-end latency, exactly once (passthrough, {ARGS.latency_rate:,} records/s for "
          f"{ARGS.latency_seconds} s)\n")
    print("Latency = read from the output (read_committed) minus produced to the input (linger.ms 0), one "
          "partition. Each library's default commit interval under exactly-once: runnel-streams 100 ms "
          "(`StreamsConfig::exactly_once()`, as Kafka Streams), quixstreams 5 s (`Application(commit_interval=5.0)`, "
          "unchanged by `processing_guarantee=\"exactly-once\"`); quixstreams once more at 100 ms. Medians over "
          f"{ARGS.rounds} rounds of each run's percentiles; missing / duplicated over all rounds.\n")
    print("| library | commit interval | p50 ms | p99 ms | max ms | missing / duplicated |")
    print("|---|---|---:|---:|---:|---|")
    for n, (library, _, label) in enumerate(variants):
        mine = runs[n]
        p50, p99, most = (median_of(mine, field) for field in ("p50", "p99", "max"))
        lost = f"{sum(r['missing'] for r in mine)} / {sum(r['duplicates'] for r in mine)}"
        errors = [run["error"] for run in mine if "error" in run]
        failed = f"; **{len(errors)} failed**: {errors[0]}" if errors else ""
        if p50 is None:
            print(f"| {library} | {label} | – | – | – | {lost}{failed} |")
        else:
            print(f"| {library} | {label} | {p50:,.1f} | {p99:,.1f} | {most:,.1f} | {lost}{failed} |")


ARGS = argparse.Namespace()

if __name__ == "__main__":
    main()
