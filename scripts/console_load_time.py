"""How long the web console's pages take to load on a cluster of 1,000 partitions and 100
consumer groups: the median of several loads of the cluster, topics and groups pages, from
navigation start to the page's `<page>-loaded` marker (the page has drawn its data), in
headless Chromium. Not run in CI: a measurement, not a test.

Against a broker started with the console, e.g. a debug build:

    target/debug/runnel server --listen 127.0.0.1:9092 --advertised-listener 127.0.0.1:9092 \
        --admin-listen 127.0.0.1:9644 --data-dir ./console-load --console
    .venv/bin/python scripts/console_load_time.py --bootstrap 127.0.0.1:9092 \
        --console http://127.0.0.1:9644/console/

It first makes the cluster (skipped with --skip-setup, or for what already exists):
--topics topics of --partitions partitions each (100 x 10), --records-per-partition records
in each partition, and --groups groups, each of which commits offsets halfway through one
topic's partitions, so every group has lag. Then each page is loaded --runs times (5) in a
fresh navigation and the times are printed as a table:

    page       marker            median ms   min ms   max ms
    overview   overview-loaded        41.0     38.2     55.3
    ...

Needs the packages of tests/compat/requirements.txt (confluent-kafka, playwright) and
Chromium at /usr/bin/chromium (or --chromium).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
]

# The pages measured: name, route, the marker its script adds once the data is drawn.
PAGES = [
    ("overview", "#/", "overview-loaded"),
    ("topics", "#/topics", "topics-loaded"),
    ("groups", "#/groups", "groups-loaded"),
]


def setup(args: argparse.Namespace) -> None:
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    names = [f"{args.prefix}-{i:03d}" for i in range(args.topics)]
    existing = set(admin.list_topics(timeout=30).topics)
    wanted = [NewTopic(name, num_partitions=args.partitions, replication_factor=1)
              for name in names if name not in existing]
    if wanted:
        print(f"creating {len(wanted)} topics of {args.partitions} partitions", file=sys.stderr)
        for name, future in admin.create_topics(wanted, operation_timeout=60, request_timeout=120).items():
            future.result(timeout=120)
        # Until every leader is known, a produce to a new partition waits.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            topics = admin.list_topics(timeout=30).topics
            if all(name in topics and len(topics[name].partitions) == args.partitions
                   and all(p.leader >= 0 for p in topics[name].partitions.values()) for name in names):
                break
            time.sleep(0.2)
        producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 20})
        for name in names:
            for partition in range(args.partitions):
                for i in range(args.records_per_partition):
                    producer.produce(name, value=f'{{"n": {i}}}'.encode(), partition=partition)
            producer.poll(0)
        remaining = producer.flush(120)
        assert remaining == 0, f"{remaining} records not delivered"
    print(f"committing offsets for {args.groups} groups", file=sys.stderr)
    half = args.records_per_partition // 2
    for g in range(args.groups):
        topic = names[g % len(names)]
        consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": f"{args.prefix}-group-{g:03d}",
                             "enable.auto.commit": False})
        offsets = [TopicPartition(topic, p, half) for p in range(args.partitions)]
        for attempt in range(50):
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
                break
            except KafkaException:
                # The first commits of a fresh broker wait for __consumer_offsets.
                if attempt == 49:
                    raise
                time.sleep(0.2)
        consumer.close()


def measure(args: argparse.Namespace) -> list[tuple[str, str, list[float]]]:
    from playwright.sync_api import sync_playwright

    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            for name, route, marker in PAGES:
                times = []
                # One load first, not counted: the browser's first start of its caches.
                for run in range(args.runs + 1):
                    page.goto("about:blank")
                    page.goto(args.console + route, wait_until="commit")
                    # performance.now() counts from this navigation's start.
                    handle = page.wait_for_function(
                        f"() => document.querySelector('[data-testid=\"{marker}\"]') ? performance.now() : null",
                        polling=5,
                    )
                    elapsed = float(handle.json_value())
                    if page.get_by_test_id("error").count():
                        raise SystemExit(f"{name}: the page shows an error: {page.get_by_test_id('error').first.inner_text()}")
                    if run > 0:
                        times.append(elapsed)
                results.append((name, marker, times))
        finally:
            browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--console", default="http://127.0.0.1:9644/console/")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=10)
    parser.add_argument("--records-per-partition", type=int, default=10)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--prefix", default="console-load")
    parser.add_argument("--skip-setup", action="store_true")
    args = parser.parse_args()
    if not args.skip_setup:
        setup(args)
    results = measure(args)
    print(f"{args.topics * args.partitions} partitions in {args.topics} topics, {args.groups} groups; "
          f"median of {args.runs} loads")
    print(f"{'page':<10} {'marker':<17} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for name, marker, times in results:
        print(f"{name:<10} {marker:<17} {statistics.median(times):>10.1f} {min(times):>8.1f} {max(times):>8.1f}")


if __name__ == "__main__":
    main()
