"""A `runnel connect standalone` worker as a child process, and a REST client for it, shared by
the Connect tests."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import ANSI_ESCAPE, broker_environment, free_port, runnel_bin

READY_DEADLINE_S = 30.0
HTTP_TIMEOUT_S = 60.0
LOG_TAIL_LINES = 80
# Tests commit offsets (and so see a file sink's output made durable) every second rather than
# every 10 s, the interval of Kafka's sample worker config and of the worker's default.
OFFSET_FLUSH_INTERVAL_MS = 1000
# A sink task killed with its worker keeps its partitions until its consumer's session times
# out: the broker's least (group.min.session.timeout.ms), not the consumer's 45 s default.
SINK_SESSION_TIMEOUT_MS = 6000
# How long the workers' group waits for a distributed worker killed with kill -9.
WORKER_SESSION_TIMEOUT_MS = 6000


@dataclass
class Reply:
    status: int
    body: Any  # the parsed JSON, or None when the answer is empty or not JSON
    text: str
    headers: Any


class ConnectWorker:
    """One `runnel connect standalone` child process with its own REST port and offsets file, or
    with `group_id`, one `runnel connect distributed` worker of that group."""

    def __init__(
        self,
        work_dir: Path,
        bootstrap: str,
        connector_files: tuple[Path, ...] = (),
        env: dict[str, str] | None = None,
        group_id: str | None = None,
        properties: dict[str, str] | None = None,
    ):
        self.work_dir = work_dir
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.bootstrap = bootstrap
        self.connector_files = tuple(connector_files)
        self.env = dict(env or {})
        self.group_id = group_id
        self.properties = dict(properties or {})
        self.port = free_port()
        self.offsets_file = work_dir / "connect.offsets"
        self.stdout_path = work_dir / "connect.stdout"
        self.stderr_path = work_dir / "connect.stderr"
        # Read by the failure-report hook in conftest.py, with log_tail().
        self.log_path = self.stderr_path
        self.proc: subprocess.Popen | None = None
        # No proxy from the environment may stand between the tests and the loopback worker.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def rest_listen(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.rest_listen}"

    def command(self) -> list[str]:
        if self.group_id is None:
            mode = ["standalone", "--offsets-file", str(self.offsets_file)]
        else:
            # Topics of the group's own, so that tests sharing a broker never meet.
            mode = [
                "distributed",
                "--group-id",
                self.group_id,
                "--config-topic",
                f"{self.group_id}-configs",
                "--offsets-topic",
                f"{self.group_id}-offsets",
                "--status-topic",
                f"{self.group_id}-status",
                "--session-timeout-ms",
                str(WORKER_SESSION_TIMEOUT_MS),
            ]
        return [
            str(runnel_bin()),
            "connect",
            *mode,
            "--bootstrap",
            self.bootstrap,
            "--rest-listen",
            self.rest_listen,
            "-X",
            f"offset.flush.interval.ms={OFFSET_FLUSH_INTERVAL_MS}",
            "-X",
            f"consumer.session.timeout.ms={SINK_SESSION_TIMEOUT_MS}",
            *(arg for key, value in self.properties.items() for arg in ("-X", f"{key}={value}")),
            *(str(path) for path in self.connector_files),
        ]

    def start(self) -> "ConnectWorker":
        binary = runnel_bin()
        if not binary.is_file() or not os.access(binary, os.X_OK):
            pytest.fail(
                f"runnel binary not found at {binary}: run `cargo build -p runnel-cli` or set RUNNEL_BIN",
                pytrace=False,
            )
        command = self.command()
        env = broker_environment()
        env.update(self.env)
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            err.write(f"\n=== start: {' '.join(command)}\n".encode())
            err.flush()
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                env=env,
            )
        self.wait_ready()
        return self

    def wait_ready(self, deadline_s: float = READY_DEADLINE_S) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + deadline_s
        last_error = "no attempt"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"`runnel connect standalone` exited with status {self.proc.returncode} before "
                    f"its REST API answered on {self.rest_listen}\n{self.log_tail()}",
                    pytrace=False,
                )
            try:
                reply = self.call("GET", "/", timeout_s=2.0)
                if reply.status == 200:
                    return
                last_error = f"GET / answered HTTP {reply.status}: {reply.text[:300]!r}"
            except (OSError, http.client.HTTPException) as error:
                last_error = repr(error)
            time.sleep(0.1)
        self.kill()
        pytest.fail(
            f"the Connect worker did not answer GET / on {self.rest_listen} within {deadline_s}s "
            f"(last: {last_error})\n{self.log_tail()}",
            pytrace=False,
        )

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.is_running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        data: bytes | None = None,
        content_type: str = "application/json",
        timeout_s: float = HTTP_TIMEOUT_S,
    ) -> Reply:
        """One HTTP request; 4xx and 5xx answers are returned, not raised. `body` is sent as
        JSON unless it is None; `data` sends raw bytes instead."""
        if body is not None:
            data = json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=timeout_s) as response:
                status, raw, answer_headers = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            status, raw, answer_headers = error.code, error.read(), error.headers
            error.close()
        text = raw.decode("utf-8", errors="replace")
        parsed = None
        if text.strip():
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
        return Reply(status, parsed, text, answer_headers)

    def rest(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(HTTP status, parsed JSON body or None); never raises on an error status."""
        reply = self.call(method, path, body)
        return reply.status, reply.body

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        parts = []
        for path in (self.stderr_path, self.stdout_path):
            try:
                text = ANSI_ESCAPE.sub("", path.read_text(errors="replace"))
            except FileNotFoundError:
                text = ""
            parts.append(f"--- {path} (tail) ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts)

    def runnel_brokers(self) -> list["ConnectWorker"]:
        """For conftest's failure-report hook, which attaches the log tail of such objects."""
        return [self]


class WorkerFactory:
    def __init__(self, base_dir: Path, bootstrap: str):
        self.base_dir = base_dir
        self.bootstrap = bootstrap
        self.workers: list[ConnectWorker] = []

    def start(self, connector_files: tuple[Path, ...] = ()) -> ConnectWorker:
        worker = ConnectWorker(self.base_dir / f"worker{len(self.workers)}", self.bootstrap, connector_files)
        self.workers.append(worker)
        return worker.start()

    def kill_all(self) -> None:
        for worker in self.workers:
            worker.kill()

    def runnel_brokers(self) -> list[ConnectWorker]:
        return list(self.workers)
