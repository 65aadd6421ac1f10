"""Distributed Connect workers (`runnel connect distributed`) sharing connectors through a
group and three compacted topics, against a real broker:

- a connector created through one worker is seen, and can be changed, through any other (writes
  are forwarded to the leader);
- a worker killed with kill -9 loses its tasks to the survivors within the group's session
  timeout, and no line of the copied file is lost (at-least-once: a line may be copied twice);
- with exactly-once sources (KIP-618, `exactly.once.source.support=enabled`), a worker killed
  mid-copy leaves every line in the topic exactly once, as read_committed consumers see it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from conftest import unique_topic
from connect_support import ConnectWorker
from support import high_watermark, read_with_librdkafka, wait_until

TIMEOUT_S = 60.0


def start_workers(broker, tmp_path: Path, count: int, properties: dict | None = None) -> list[ConnectWorker]:
    group = unique_topic("connect-group")
    workers = [
        ConnectWorker(tmp_path / f"worker{i}", broker.bootstrap, group_id=group, properties=properties)
        for i in range(count)
    ]
    for worker in workers:
        worker.start()
    return workers


def status(worker: ConnectWorker, name: str) -> dict:
    code, body = worker.rest("GET", f"/connectors/{name}/status")
    return body if code == 200 else {}


def running_on(worker: ConnectWorker, name: str, tasks: int) -> dict | None:
    """The status when the connector and `tasks` tasks are RUNNING, else None."""
    body = status(worker, name)
    states = [t.get("state") for t in body.get("tasks", [])]
    if body.get("connector", {}).get("state") == "RUNNING" and states == ["RUNNING"] * tasks:
        return body
    return None


def create(worker: ConnectWorker, name: str, config: dict) -> None:
    # A rebalance answers 409: retry, as Kafka Connect's clients do.
    def created() -> bool:
        code, body = worker.rest("POST", "/connectors", {"name": name, "config": config})
        assert code in (201, 409), (code, body)
        return code == 201

    wait_until(created, TIMEOUT_S, f"{name} created", describe=worker.log_tail, interval_s=0.5)


def test_workers_share_connectors_and_a_killed_workers_tasks_move(broker, tmp_path):
    workers = start_workers(broker, tmp_path, 2)
    try:
        topic = unique_topic("connect-dist")
        source, sink = tmp_path / "in.txt", tmp_path / "out.txt"
        total = 20_000
        source.write_text("".join(f"line {i:06d}\n" for i in range(total)))
        # Created through different workers: at most one of them is the leader.
        create(workers[0], "dist-source", {"connector.class": "FileStreamSource", "file": str(source), "topic": topic})
        create(workers[1], "dist-sink", {"connector.class": "FileStreamSink", "file": str(sink), "topics": topic})
        for worker in workers:
            code, names = worker.rest("GET", "/connectors")
            assert code == 200 and sorted(names) == ["dist-sink", "dist-source"], (code, names)
        for name in ("dist-source", "dist-sink"):
            wait_until(lambda n=name: running_on(workers[1], n, 1), TIMEOUT_S, f"{name} running", describe=workers[1].log_tail)

        def copied(count: int) -> bool:
            return sink.exists() and len(set(sink.read_text().splitlines())) >= count

        wait_until(lambda: copied(total), TIMEOUT_S, "the first lines copied", describe=workers[0].log_tail)

        # Kill the worker running the source task; its survivor takes it over.
        owner = status(workers[0], "dist-source")["tasks"][0]["worker_id"]
        victim = next(w for w in workers if w.rest_listen == owner)
        survivor = next(w for w in workers if w is not victim)
        victim.kill()
        killed_at = time.monotonic()
        with source.open("a") as f:
            f.write("".join(f"line {i:06d}\n" for i in range(total, 2 * total)))

        def moved() -> bool:
            body = running_on(survivor, "dist-source", 1)
            return body is not None and body["tasks"][0]["worker_id"] == survivor.rest_listen

        wait_until(moved, TIMEOUT_S, "the source task moved to the survivor", describe=survivor.log_tail)
        print(f"task moved {time.monotonic() - killed_at:.2f}s after kill -9 (session timeout 6 s)")
        wait_until(lambda: copied(2 * total), TIMEOUT_S, "every line copied", describe=survivor.log_tail)
        written = sink.read_text().splitlines()
        assert list(dict.fromkeys(written)) == [f"line {i:06d}" for i in range(2 * total)]

        # The survivor, now alone and the leader, still takes writes.
        code, _ = survivor.rest("PUT", "/connectors/dist-sink/pause")
        assert code == 202
        wait_until(
            lambda: status(survivor, "dist-sink").get("connector", {}).get("state") == "PAUSED",
            TIMEOUT_S,
            "dist-sink paused",
        )
    finally:
        for worker in workers:
            worker.kill()


def test_exactly_once_sources_write_each_line_once_across_kill_9(broker, tmp_path):
    workers = start_workers(broker, tmp_path, 2, {"exactly.once.source.support": "enabled"})
    try:
        topic = unique_topic("connect-eos")
        source = tmp_path / "in.txt"
        total = 40_000
        lines = [f"line {i:06d}" for i in range(total)]
        source.write_text("".join(line + "\n" for line in lines))
        create(
            workers[0],
            "eos-source",
            {"connector.class": "FileStreamSource", "file": str(source), "topic": topic, "batch.size": "500"},
        )
        wait_until(lambda: running_on(workers[1], "eos-source", 1), TIMEOUT_S, "eos-source running")
        # Kill the task's worker once part of the file is in the topic (which the task's
        # first write creates).
        wait_until(lambda: high_watermark(broker.bootstrap, topic) > total // 5, TIMEOUT_S, "some lines copied")
        owner = status(workers[0], "eos-source")["tasks"][0]["worker_id"]
        victim = next(w for w in workers if w.rest_listen == owner)
        survivor = next(w for w in workers if w is not victim)
        victim.kill()

        def moved() -> bool:
            body = running_on(survivor, "eos-source", 1)
            return body is not None and body["tasks"][0]["worker_id"] == survivor.rest_listen

        wait_until(moved, TIMEOUT_S, "the task moved to the survivor", describe=survivor.log_tail)
        values = read_with_librdkafka(broker.bootstrap, topic, "read_committed", total, 1, timeout_s=TIMEOUT_S * 2)
        read = [json.loads(value)["payload"] for value in values]
        assert len(read) == total and read == lines, f"{len(read)} lines read for {total}: duplicates or gaps"
    finally:
        for worker in workers:
            worker.kill()
