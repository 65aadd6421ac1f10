"""A release broker for the benchmark scripts: started on a fresh data directory in a temp
directory (optionally pinned to CPUs with taskset), ready once its log says "runnel ready",
stopped with SIGTERM. Used by bench_exactly_once.py and bench_streams.py."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path


class Broker:
    def __init__(self, binary: Path, port: int, *args: str, cpus: str | None = None):
        self.work = Path(tempfile.mkdtemp(prefix="runnel-bench-"))
        self.port = port
        self.binary = binary
        self.args = args
        # taskset's CPU list, e.g. "0": the broker runs on those CPUs only.
        self.cpus = cpus
        self.log = self.work / "broker.log"
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *extra: str) -> str:
        with open(self.log, "ab") as log:
            log.write(b"=== start\n")
        command = [str(self.binary), "server", "--listen", self.bootstrap,
                   "--data-dir", str(self.work / "data"), *self.args, *extra]
        if self.cpus is not None:
            command = ["taskset", "-c", self.cpus, *command]
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNEL_")}
        env["NO_COLOR"] = "1"
        self.proc = subprocess.Popen(command, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 300
        while time.time() < deadline:
            text = self.current_log()
            if "runnel ready" in text:
                return text
            time.sleep(0.05)
        raise SystemExit(f"broker not ready; see {self.log}")

    def current_log(self) -> str:
        return self.log.read_text(errors="replace").split("=== start\n")[-1]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(120)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def rss_kib(self) -> tuple[int, int]:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        field = lambda name: int(re.search(rf"{name}:\s+(\d+)", status).group(1))
        return field("VmRSS"), field("VmHWM")
