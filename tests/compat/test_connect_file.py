"""The file connectors end to end: a file read by FileStreamSource into a topic and written back
out by FileStreamSink, through a real broker and a real `runnel connect standalone` worker
started with connector files, as Kafka users start `connect-standalone.sh`.

- Without faults the copy is byte-identical, for lines of every shape (empty, long, UTF-8, tabs).
- Lines appended while the worker runs follow.
- `runnel server --connect` runs a broker and a worker in one process, and stops the worker
  (committing its offsets) before the broker.
- After `kill -9` of the worker and a restart on the same offsets file, every line still arrives,
  in order; the only allowed difference is lines written again (at-least-once: the source
  re-sends what it read after its last committed offset, the sink re-writes what it received
  after its group's last commit).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import broker_environment, free_port, runnel_bin, unique_topic
from connect_support import ConnectWorker
from support import wait_until

COPY_TIMEOUT_S = 60.0


def connector_files(tmp_path: Path, source: Path, sink: Path, topic: str) -> tuple[Path, Path]:
    """The two connectors as JSON files, in the shape of a POST /connectors body."""
    source_file = tmp_path / "source.json"
    source_file.write_text(
        json.dumps(
            {
                "name": f"{topic}-source",
                "config": {"connector.class": "FileStreamSource", "file": str(source), "topic": topic},
            }
        )
    )
    sink_file = tmp_path / "sink.json"
    sink_file.write_text(
        json.dumps(
            {
                "name": f"{topic}-sink",
                "config": {"connector.class": "FileStreamSink", "file": str(sink), "topics": topic},
            }
        )
    )
    return source_file, sink_file


def wait_for_size(path: Path, size: int, worker: ConnectWorker) -> None:
    def reached() -> bool:
        return path.exists() and path.stat().st_size >= size

    wait_until(
        reached,
        COPY_TIMEOUT_S,
        f"{path} to reach {size} bytes",
        describe=lambda: f"{path.stat().st_size if path.exists() else 'no file'} bytes\n{worker.log_tail()}",
    )


def test_a_file_copied_through_a_topic_is_byte_identical(broker, tmp_path):
    topic = unique_topic("connect-copy")
    source, sink = tmp_path / "in.txt", tmp_path / "out.txt"
    lines = [f"line {i}" for i in range(5000)]
    lines[10] = ""  # an empty line is a record too
    lines[20] = "ünïcödé ✓ 日本語"
    lines[30] = "\ttabs\tand  spaces  "
    lines[40] = "x" * 100_000
    lines[50] = '{"looks": "like json", "n": 1}'
    source.write_bytes(("\n".join(lines) + "\n").encode())
    worker = ConnectWorker(tmp_path / "worker", broker.bootstrap, connector_files(tmp_path, source, sink, topic))
    try:
        worker.start()
        wait_for_size(sink, source.stat().st_size, worker)
        assert sink.read_bytes() == source.read_bytes()

        # Lines appended while it runs are copied too.
        with source.open("ab") as f:
            f.write(b"appended 1\nappended 2\n")
        wait_for_size(sink, source.stat().st_size, worker)
        assert sink.read_bytes() == source.read_bytes()

        # The worker's /metrics counts what moved, per task, and the connectors' states.
        samples = worker_metrics(worker)
        copied = len(lines) + 2
        assert samples[("runnel_connect_source_records_polled_total", f"{topic}-source")] == copied
        assert samples[("runnel_connect_source_records_sent_total", f"{topic}-source")] == copied
        assert samples[("runnel_connect_sink_records_put_total", f"{topic}-sink")] >= copied
        assert samples[("runnel_connect_connectors", "RUNNING")] == 2
        assert samples[("runnel_connect_tasks", "RUNNING")] == 2
    finally:
        worker.kill()


def worker_metrics(worker: ConnectWorker) -> dict[tuple[str, str], float]:
    """GET /metrics, parsed by Prometheus's own parser: (sample name, connector or state) -> value."""
    with urllib.request.urlopen(f"{worker.base_url}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.labels.get("connector") or sample.labels.get("state") or ""
            samples[(sample.name, key)] = sample.value
    return samples


def test_a_worker_killed_mid_copy_loses_no_line(broker, tmp_path):
    topic = unique_topic("connect-crash")
    source, sink = tmp_path / "in.txt", tmp_path / "out.txt"
    total = 100_000
    source.write_bytes("".join(f"record {i:07d}\n" for i in range(total)).encode())
    files = connector_files(tmp_path, source, sink, topic)
    worker = ConnectWorker(tmp_path / "worker", broker.bootstrap, files)
    try:
        worker.start()
        # Kill it once part of the file has made it through.
        wait_for_size(sink, source.stat().st_size // 10, worker)
        worker.kill()
        time.sleep(0.5)
        worker.start()
        expected = [f"record {i:07d}" for i in range(total)]

        def complete() -> bool:
            seen = set(sink.read_text().splitlines())
            return len(seen) == total

        wait_until(complete, COPY_TIMEOUT_S * 2, "every line in the sink file", describe=worker.log_tail)
    finally:
        worker.kill()
    written = sink.read_text().splitlines()
    # At-least-once: drop repeats (each line is unique), and the order must be the source's.
    first_seen = list(dict.fromkeys(written))
    assert first_seen == expected
    # A repeat is only ever a re-delivery of lines after a committed offset: bounded, not a
    # second copy of the file.
    assert len(written) < total * 1.5, f"{len(written) - total} lines written twice"


def test_a_broker_started_with_connect_runs_a_worker_and_stops_it_first(tmp_path):
    """`runnel server --connect HOST:PORT`: one process, a broker and a standalone worker on it."""
    broker_port, rest_port = free_port(), free_port()
    data_dir = tmp_path / "data"
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            str(runnel_bin()),
            "server",
            "--listen",
            f"127.0.0.1:{broker_port}",
            "--data-dir",
            str(data_dir),
            "--connect",
            f"127.0.0.1:{rest_port}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=broker_environment(),
    )
    rest = ConnectWorker(tmp_path / "client", f"127.0.0.1:{broker_port}")
    rest.port = rest_port  # the embedded worker's; this object only talks to it
    try:

        def answers() -> bool:
            assert proc.poll() is None, (tmp_path / "server.log").read_text(errors="replace")
            try:
                return rest.call("GET", "/", timeout_s=2.0).status == 200
            except OSError:
                return False

        wait_until(answers, COPY_TIMEOUT_S, "the embedded worker's REST API")
        source, sink = tmp_path / "in.txt", tmp_path / "out.txt"
        source.write_text("a\nb\nc\n")
        topic = unique_topic("embedded")
        for name, config in [
            ("embedded-source", {"connector.class": "FileStreamSource", "file": str(source), "topic": topic}),
            ("embedded-sink", {"connector.class": "FileStreamSink", "file": str(sink), "topics": topic}),
        ]:
            code, body = rest.rest("POST", "/connectors", {"name": name, "config": config})
            assert code == 201, (code, body)
        wait_for_size(sink, source.stat().st_size, rest)
        assert sink.read_bytes() == source.read_bytes()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, (tmp_path / "server.log").read_text(errors="replace")
        # The worker committed its source offsets before the broker stopped.
        offsets = json.loads((data_dir / "connect.offsets").read_text())
        assert offsets["embedded-source"][0]["offset"] == {"position": 6}, offsets
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
