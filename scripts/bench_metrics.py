"""What the broker's instrumentation costs: throughput and broker CPU with metrics on against
a build without them, in one run.

    .venv/bin/python scripts/bench_metrics.py --on target/release/runnel \
        --off OLD/target/release/runnel [--rounds 5] [--records 300000]

`--on` is a build with the metrics (every request counted and timed, every partition's bytes
and records counted, fsyncs timed) and is scraped at `/metrics` once a second while it works,
sixty times as often as Prometheus's default interval, so the scrape's cost counts too. `--off` is
a build from before the metrics (commit 64ace7c). Each round runs scripts/bench_matrix.py's
default and fsync workloads (confluent-kafka producing `--records` 1 KiB records into 6
partitions with acks=all, then fetching them) on a fresh broker of each build, in an order
that swaps every round. Prints medians and the on/off ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path
import shutil
import tempfile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_matrix  # noqa: E402  (the workloads and the broker harness are shared)

# Where a broker started without --admin-listen serves its metrics.
METRICS_URL = "http://127.0.0.1:9644/metrics"


class Scraper:
    """Scrapes METRICS_URL every second until stopped; counts the scrapes that answered."""

    def __init__(self) -> None:
        self.scrapes = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stopping.wait(1.0):
            try:
                with urllib.request.urlopen(METRICS_URL, timeout=5) as response:
                    response.read()
                    self.scrapes += 1
            except OSError:
                pass

    def __enter__(self) -> "Scraper":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--on", required=True, help="a build with the metrics")
    parser.add_argument("--off", required=True, help="a build without them")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=300_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="runnel-metrics-bench-"))
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    scrapes = 0
    try:
        for index in range(args.rounds):
            order = [("on", args.on), ("off", args.off)]
            if index % 2:
                order.reverse()
            for label, binary in order:
                figures: dict = {}
                for mode in ("default", "fsync"):
                    if label == "on":
                        with Scraper() as scraper:
                            figures.update(bench_matrix.throughput(binary, work, args.records, mode))
                        scrapes += scraper.scrapes
                    else:
                        figures.update(bench_matrix.throughput(binary, work, args.records, mode))
                bench_matrix.log(f"round {index + 1} {label}: {figures}")
                runs[label].append(figures)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if scrapes == 0:
        sys.exit(f"the --on broker never answered {METRICS_URL}: is port 9644 taken?")
    print(f"\n{args.rounds} rounds of {args.records} records; {scrapes} scrapes answered during the 'on' runs")
    print(f"{'figure':<40}{'off':>10}{'on':>10}{'on/off':>10}")
    for key in runs["on"][0]:
        on = statistics.median(run[key] for run in runs["on"])
        off = statistics.median(run[key] for run in runs["off"])
        print(f"{key:<40}{off:>10.2f}{on:>10.2f}{on / off if off else float('nan'):>10.3f}")


if __name__ == "__main__":
    main()
