"""Produce and fetch throughput against a running Runnel broker with confluent-kafka.

Run by scripts/bench_matrix.py (through scripts/bench.sh) with the repo's .venv; usable alone:

    .venv/bin/python scripts/bench_clients.py run --bootstrap 127.0.0.1:9092 \
        --records 300000 [--broker-pid PID]
    .venv/bin/python scripts/bench_clients.py create-topic --bootstrap ... --topic T
    .venv/bin/python scripts/bench_clients.py produce --bootstrap ... --topic T --acks 1 \
        [--records N --size B --partitions P --latency --broker-pid PID]
    .venv/bin/python scripts/bench_clients.py consume --bootstrap ... --topic T [--records N]
    .venv/bin/python scripts/bench_clients.py steady --bootstrap ... --topic T [--rate 5000]

`run` creates one 6-partition topic per acks setting (--acks, default "1,all": acks=1 then
acks=all), produces `--records` records of `--size` bytes into each (linger.ms=5,
batch.size=1MB, no compression), timed from the first produce() to the end of the final
flush(), then fetches the first of those topics from the beginning with a manually assigned consumer (no consumer groups: the broker has none
yet), timed from assign() to the last record. It prints progress to stderr and one JSON
object to stdout. MB is 10^6 bytes of record values (keys, headers and framing not counted).

`produce` and `consume` are the single runs that scripts/bench_matrix.py sets beside `runnel
bench produce|consume`, with settings matched to the Rust client's defaults: one topic (created
if missing; create it first, since librdkafka's metadata request auto-creates it with one
partition), records without a key and no `partition=` so librdkafka's own partitioner places
them (sticky for null keys, like the Rust client's KIP-480 partitioner; `--round-robin` sets
`partition=i % partitions` instead), linger.ms=5, batch.size=1000000,
queue.buffering.max.kbytes=32768 (the Rust client's 32 MiB buffer.memory), poll(0) every 1,000
records. With --latency every
record gets a delivery report whose Message.latency() (produce() to the report being served)
goes into p50/p95/p99/max, as `runnel bench` records send-to-acknowledgement for every record;
without it only failed deliveries are reported (cheaper for the Python loop). Each prints one
JSON object to stdout.

`steady` is the latency probe: one record per request (linger.ms=0, acks=all, idempotence off)
at --rate records/s, round-robin over --partitions partitions, reporting produce()-to-delivery
latency p50/p99/p99.9/max. librdkafka pipelines these requests on its one connection. With
STEADY_TRACE=1 in the environment, every delivery is also printed to stderr as
"monotonic-seconds partition latency-ms", to see when a tail happened.

With --broker-pid, the broker's CPU time over each phase is read from /proc, reported as a
percentage of one core (200% = both cores of a 2-core machine), next to this client's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"bench_clients: {message}", file=sys.stderr, flush=True)


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of a process, from /proc/PID/stat (fields 14 and 15)."""
    if pid is None:
        return None
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """Wall time and the CPU of this process and the broker over one phase."""

    def __init__(self, broker_pid: int | None):
        self.broker_pid = broker_pid

    def __enter__(self) -> "Meter":
        self.broker_cpu0 = process_cpu_s(self.broker_pid)
        self.client_cpu0 = own_cpu_s()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.elapsed_s = time.perf_counter() - self.t0
        self.client_cpu_pct = 100.0 * (own_cpu_s() - self.client_cpu0) / self.elapsed_s
        broker_cpu = process_cpu_s(self.broker_pid)
        self.broker_cpu_pct = (
            None if broker_cpu is None else 100.0 * (broker_cpu - self.broker_cpu0) / self.elapsed_s
        )

    def result(self, records: int, size: int) -> dict:
        return {
            "records": records,
            "record_bytes": size,
            "seconds": round(self.elapsed_s, 3),
            "records_per_s": round(records / self.elapsed_s),
            "mb_per_s": round(records * size / 1e6 / self.elapsed_s, 2),
            "bits_per_s": round(records * size * 8 / self.elapsed_s),
            "client_cpu_pct": round(self.client_cpu_pct),
            "broker_cpu_pct": None if self.broker_cpu_pct is None else round(self.broker_cpu_pct),
        }


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    futures[topic].result(timeout=30)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        meta = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
        if meta is not None and meta.error is None and len(meta.partitions) == partitions:
            if all(p.leader >= 0 for p in meta.partitions.values()):
                return
        time.sleep(0.1)
    raise RuntimeError(f"topic {topic} not ready with {partitions} partitions")


def percentile(ordered: list, fraction: float) -> float:
    """The nearest-rank percentile of a sorted list."""
    rank = math.ceil(fraction * len(ordered))
    return ordered[min(len(ordered), max(1, rank)) - 1]


def produce(
    args,
    topic: str,
    acks: str,
    *,
    round_robin: bool = True,
    latency: bool = False,
    poll_every: int = 10_000,
    queue_kbytes: int | None = None,
) -> dict:
    """Produce args.records records into `topic`. round_robin: `partition=i % partitions` on
    each produce(); otherwise no partition and no key, so
    librdkafka's partitioner picks (sticky for null keys)."""
    errors = []
    latencies = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        elif latency:
            latencies.append(msg.latency())

    config = {
        "bootstrap.servers": args.bootstrap,
        "acks": acks,
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "compression.type": "none",
        "delivery.report.only.error": not latency,
        "on_delivery": on_delivery,
    }
    if queue_kbytes is not None:
        config["queue.buffering.max.kbytes"] = queue_kbytes
    producer = Producer(config)
    # Warm the connection and metadata outside the timed part.
    producer.list_topics(topic=topic, timeout=10)
    value = os.urandom(args.size)
    partitions = args.partitions
    records = args.records
    with Meter(args.broker_pid) as meter:
        if round_robin:
            for i in range(records):
                while True:
                    try:
                        producer.produce(topic, value, partition=i % partitions)
                        break
                    except BufferError:  # local queue full: let librdkafka send
                        producer.poll(0.001)
                if i % poll_every == 0:
                    producer.poll(0)
        else:
            for i in range(records):
                while True:
                    try:
                        producer.produce(topic, value)
                        break
                    except BufferError:
                        producer.poll(0.001)
                if i % poll_every == 0:
                    producer.poll(0)
        remaining = producer.flush(120)
    if remaining or errors:
        raise RuntimeError(f"acks={acks}: {remaining} undelivered, {len(errors)} errors: {errors[:3]}")
    result = meter.result(records, args.size)
    if latency:
        ordered = sorted(x for x in latencies if x is not None and x >= 0)
        if len(ordered) != records:
            raise RuntimeError(f"{len(ordered)} latencies for {records} records")
        result["latency_ms"] = {
            name: round(percentile(ordered, q) * 1000, 3)
            for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("p99.9", 0.999))
        }
        result["latency_ms"]["max"] = round(ordered[-1] * 1000, 3)
    log(f"produce acks={acks}: {result}")
    return result


def steady(args) -> None:
    """A steady producer: args.rate single-record requests per second (linger.ms=0, acks=all,
    round-robin over args.partitions partitions), args.records records. Prints the
    produce()-to-delivery-report latency percentiles as JSON."""
    topic = f"{args.topic}-{uuid.uuid4().hex[:8]}"
    create_topic(args.bootstrap, topic, args.partitions)
    latencies = []
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            latencies.append(msg.latency())
            if os.environ.get("STEADY_TRACE"):
                print(f"{time.monotonic():.4f} {msg.partition()} {msg.latency()*1000:.2f}", file=sys.stderr)

    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "acks": "all",
        "linger.ms": 0,
        "compression.type": "none",
        "enable.idempotence": False,
        "on_delivery": on_delivery,
    })
    producer.list_topics(topic=topic, timeout=10)
    value = os.urandom(args.size)
    interval = 1.0 / args.rate
    start = time.monotonic()
    with Meter(args.broker_pid) as meter:
        for i in range(args.records):
            due = start + i * interval
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            producer.produce(topic, value, partition=i % args.partitions)
            producer.poll(0)
        remaining = producer.flush(120)
    if remaining or errors:
        raise RuntimeError(f"steady: {remaining} undelivered, {len(errors)} errors: {errors[:3]}")
    ordered = sorted(x for x in latencies if x is not None and x >= 0)
    result = meter.result(args.records, args.size)
    result["rate"] = args.rate
    result["latency_ms"] = {
        name: round(percentile(ordered, q) * 1000, 3)
        for name, q in (("p50", 0.50), ("p99", 0.99), ("p99.9", 0.999))
    }
    result["latency_ms"]["max"] = round(ordered[-1] * 1000, 3)
    log(f"steady {args.rate}/s: {result}")
    print(json.dumps(result), flush=True)


def consume(args, topic: str) -> dict:
    """Fetch all of `topic` (args.partitions partitions, args.records records) from the start."""
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": "runnel-bench-unused",  # librdkafka wants one; assign() never uses it
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
        }
    )
    partitions = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(args.partitions)]
    expected = sum(consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions)
    if expected != args.records:
        raise RuntimeError(f"{topic} holds {expected} records, expected {args.records}")
    received = 0
    payload = 0
    deadline = time.monotonic() + 300
    with Meter(args.broker_pid) as meter:
        consumer.assign(partitions)
        while received < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"fetch timed out after {received} of {expected} records")
            for message in consumer.consume(num_messages=10_000, timeout=1.0):
                if message.error() is not None:
                    raise KafkaException(message.error())
                received += 1
                payload += len(message.value())
    consumer.close()
    if payload != expected * args.size:
        raise RuntimeError(f"fetched {payload} value bytes, expected {expected * args.size}")
    result = meter.result(received, args.size)
    log(f"fetch: {result}")
    return result


def run(args) -> None:
    results = {}
    topics = {}
    for acks in args.acks.split(","):
        topic = f"bench-acks{acks}-{uuid.uuid4().hex[:8]}"
        create_topic(args.bootstrap, topic, args.partitions)
        topics[acks] = topic
        results[f"produce_acks_{acks}"] = produce(args, topic, acks)
    results["fetch"] = consume(args, next(iter(topics.values())))
    print(json.dumps(results), flush=True)


def produce_one(args) -> None:
    create_topic_if_missing(args.bootstrap, args.topic, args.partitions)
    result = produce(
        args, args.topic, args.acks, round_robin=args.round_robin, latency=args.latency,
        poll_every=1_000, queue_kbytes=args.queue_kbytes,
    )
    print(json.dumps(result), flush=True)


def consume_one(args) -> None:
    print(json.dumps(consume(args, args.topic)), flush=True)


def create_topic_if_missing(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    meta = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None or len(meta.partitions) == 0:
        create_topic(bootstrap, topic, partitions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="produce (acks=1, acks=all) and fetch; JSON on stdout")
    run_parser.add_argument("--bootstrap", required=True)
    run_parser.add_argument("--records", type=int, default=300_000)
    run_parser.add_argument("--size", type=int, default=1024)
    run_parser.add_argument("--partitions", type=int, default=6)
    run_parser.add_argument("--broker-pid", type=int)
    run_parser.add_argument("--acks", default="1,all", help="produce runs, in order; fetch reads the first")
    topic_parser = sub.add_parser("create-topic", help="create a topic and wait for its leaders")
    topic_parser.add_argument("--bootstrap", required=True)
    topic_parser.add_argument("--topic", required=True)
    topic_parser.add_argument("--partitions", type=int, default=6)
    one = sub.add_parser("produce", help="one produce run, settings matched to `runnel bench produce`")
    one.add_argument("--bootstrap", required=True)
    one.add_argument("--topic", required=True, help="created with --partitions if missing")
    one.add_argument("--acks", default="1")
    one.add_argument("--records", type=int, default=300_000)
    one.add_argument("--size", type=int, default=1024)
    one.add_argument("--partitions", type=int, default=6)
    one.add_argument("--latency", action="store_true", help="a delivery report per record, for p50/p99")
    one.add_argument("--round-robin", action="store_true", help="partition=i %% partitions instead of librdkafka's partitioner")
    one.add_argument("--queue-kbytes", type=int, default=32768, help="queue.buffering.max.kbytes")
    one.add_argument("--broker-pid", type=int)
    fetch = sub.add_parser("consume", help="one fetch of a whole topic from the beginning (assign, no group)")
    fetch.add_argument("--bootstrap", required=True)
    fetch.add_argument("--topic", required=True)
    fetch.add_argument("--records", type=int, default=300_000, help="what the topic must hold")
    fetch.add_argument("--size", type=int, default=1024, help="each record's value bytes")
    fetch.add_argument("--partitions", type=int, default=6)
    fetch.add_argument("--broker-pid", type=int)
    paced = sub.add_parser("steady", help="single-record requests at a steady rate; latency percentiles")
    paced.add_argument("--bootstrap", required=True)
    paced.add_argument("--topic", default="steady", help="prefix of the new topic's name")
    paced.add_argument("--rate", type=int, default=5000, help="records (= requests) per second")
    paced.add_argument("--records", type=int, default=50_000)
    paced.add_argument("--size", type=int, default=1024)
    paced.add_argument("--partitions", type=int, default=6)
    paced.add_argument("--broker-pid", type=int)
    args = parser.parse_args()
    if args.command == "steady":
        steady(args)
    elif args.command == "run":
        run(args)
    elif args.command == "produce":
        produce_one(args)
    elif args.command == "consume":
        consume_one(args)
    else:
        create_topic(args.bootstrap, args.topic, args.partitions)


if __name__ == "__main__":
    main()
