"""Fixtures that run the real `runnel` binary for the compat suite.

Each broker is a child process on a free loopback port with its own data directory. It is
ready when the port answers a Kafka ApiVersions request; it is killed (SIGKILL) at teardown
whatever the outcome. When a test fails, the tail of every broker log it used is attached to
the failure report, together with the log's full path.

Scopes: `broker` is one broker per test module (tests use unique topic names);
`broker_factory` starts brokers owned by one test, for crash and restart tests.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import signal
import socket
import struct
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_DEADLINE_S = 20.0
LOG_TAIL_LINES = 80

API_KEY_API_VERSIONS = 18
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def runnel_bin() -> Path:
    return Path(os.environ.get("RUNNEL_BIN", REPO_ROOT / "target" / "debug" / "runnel"))


_HANDED_OUT_PORTS: set[int] = set()


def _ephemeral_range_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_slice() -> range:
    """The ports this process draws from: 10000 up to the ephemeral range, or, under
    pytest-xdist (scripts/test.sh runs the suite on several workers), this worker's share of
    them, so that tests running at once in two workers never pick the same port."""
    lowest = 10000
    below = max(_ephemeral_range_start(), lowest + 1000)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "").removeprefix("gw")
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if worker.isdigit() and workers.isdigit() and int(worker) < int(workers):
        width = (below - lowest) // int(workers)
        start = lowest + int(worker) * width
        return range(start, start + width)
    return range(lowest, below)


def free_port() -> int:
    """A free loopback port, free when asked; the test binds it soon after.

    Taken from below the kernel's ephemeral range, so that a client's outgoing connection
    cannot take it between the asking and the binding (as a `bind(0)` port can), and never
    handed out twice in one test run, so that two nodes of a cluster never share one.
    """
    candidates = list(_port_slice())
    random.shuffle(candidates)
    for port in candidates:
        if port in _HANDED_OUT_PORTS:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT_PORTS.add(port)
        return port
    raise RuntimeError("no free loopback port left in this worker's share")


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- ApiVersions over a raw socket --------------------------------------------------------


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    chunks = []
    while count > 0:
        chunk = sock.recv(count)
        if not chunk:
            raise ConnectionError("broker closed the connection mid-response")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def api_versions_request(
    port: int,
    api_version: int = 0,
    correlation_id: int = 7,
    timeout_s: float = 2.0,
    host: str = "127.0.0.1",
) -> tuple[int, dict[int, tuple[int, int]]]:
    """Send ApiVersions (request header v1, no body) and parse the v0-format response.

    Returns (error_code, {api_key: (min_version, max_version)}). A broker answers an
    unsupported ApiVersions version with a v0 body carrying UNSUPPORTED_VERSION, so the
    v0 parser is right for any version asked here. Versions >= 3 use a flexible header and
    body and are not sent by this helper.
    """
    assert api_version <= 2 or api_version >= 100, "flexible versions are not built here"
    client_id = b"runnel-compat"
    header = struct.pack(">hhih", API_KEY_API_VERSIONS, api_version, correlation_id, len(client_id))
    request = header + client_id
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        body = _recv_exact(sock, size)
    (got_correlation_id, error_code, count) = struct.unpack(">ihi", body[:10])
    if got_correlation_id != correlation_id:
        raise AssertionError(f"correlation id {got_correlation_id}, expected {correlation_id}")
    apis = {}
    offset = 10
    for _ in range(count):
        key, min_v, max_v = struct.unpack(">hhh", body[offset : offset + 6])
        apis[key] = (min_v, max_v)
        offset += 6
    return error_code, apis


def broker_environment() -> dict[str, str]:
    # The broker reads RUNNEL_* variables as flags; a developer's own must not leak into tests.
    env = {name: value for name, value in os.environ.items() if not name.startswith("RUNNEL_")}
    env["RUST_BACKTRACE"] = "1"
    env["NO_COLOR"] = "1"
    return env


# --- The broker process --------------------------------------------------------------------


class Broker:
    """One `runnel server` child process; restartable on the same port and data directory."""

    def __init__(
        self,
        work_dir: Path,
        extra_args: tuple[str, ...] = (),
        node_id: int = 0,
        host: str = "127.0.0.1",
        runner: tuple[str, ...] = (),
        sync_ledger: bool = False,
    ):
        self.work_dir = work_dir
        self.data_dir = work_dir / "data"
        self.log_path = work_dir / "broker.log"
        self.extra_args = tuple(str(a) for a in extra_args)
        self.node_id = node_id
        self.host = host
        # What the command runs under: `ip netns exec NAME` for a node in its own namespace.
        self.runner = runner
        self.port = free_port() if host == "127.0.0.1" else 9092
        # The admin listener (/metrics, /health/*): the default port would be shared by every
        # broker a test starts on this machine.
        self.admin_port = free_port() if host == "127.0.0.1" else 9644
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        # The address clients are told to use; a fault-injecting proxy's, for example.
        self.advertised: str | None = None
        # Where the broker writes down what each fsync made durable, for tear_unsynced_tail.
        self.sync_ledger = work_dir / "sync.ledger" if sync_ledger else None
        self.data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{self.admin_port}"

    def command(self) -> list[str]:
        return [
            *self.runner,
            str(runnel_bin()),
            "server",
            "--listen",
            self.bootstrap,
            "--advertised-listener",
            self.advertised or self.bootstrap,
            "--data-dir",
            str(self.data_dir),
            "--node-id",
            str(self.node_id),
            "--admin-listen",
            f"{self.host}:{self.admin_port}",
            *(("--sync-ledger", str(self.sync_ledger)) if self.sync_ledger else ()),
            *self.extra_args,
        ]

    def start(self) -> "Broker":
        self.spawn()
        self.wait_ready()
        return self

    def spawn(self) -> None:
        """Starts the process without waiting for it: a cluster node lets clients in only
        once the controller quorum answers, which needs its peers started too."""
        binary = runnel_bin()
        if not binary.is_file() or not os.access(binary, os.X_OK):
            pytest.fail(
                f"runnel binary not found at {binary}: run `cargo build -p runnel-cli` "
                "or set RUNNEL_BIN",
                pytrace=False,
            )
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        self.starts += 1
        command = self.command()
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start #{self.starts}: {' '.join(command)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=broker_environment(),
            )

    def wait_ready(self, deadline_s: float = READY_DEADLINE_S) -> None:
        deadline = time.monotonic() + deadline_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(
                    f"runnel exited with status {self.proc.returncode} before it was ready\n"
                    f"--- {self.log_path} (tail) ---\n{self.log_tail()}",
                    pytrace=False,
                )
            try:
                error_code, apis = api_versions_request(self.port, timeout_s=1.0, host=self.host)
                if error_code == 0 and API_KEY_API_VERSIONS in apis:
                    return
                last_error = AssertionError(f"ApiVersions error_code {error_code}, apis {apis}")
            except (OSError, ConnectionError, AssertionError, struct.error) as error:
                last_error = error
            time.sleep(0.05)
        self.kill9()
        pytest.fail(
            f"runnel did not answer ApiVersions on {self.bootstrap} within {deadline_s}s "
            f"(last error: {last_error!r})\n--- {self.log_path} (tail) ---\n{self.log_tail()}",
            pytrace=False,
        )

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL, as a crash: no chance to flush or close anything."""
        if self.is_running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def tear_unsynced_tail(self, rng: random.Random) -> int:
        """After kill9: cuts every file back to a point its sync ledger allows, as a power
        cut would (kill -9 alone keeps the page cache): anywhere between what the last fsync
        made durable and what was written, and sometimes zeroes the last bytes kept, a sector
        that reached the disk empty. Returns how many bytes were cut. The next life starts
        a fresh ledger: what is on disk then counts as durable."""
        assert self.sync_ledger is not None, "started without a sync ledger"
        assert not self.is_running(), "tear only a stopped broker"
        durable: dict[str, int | None] = {}
        for line in self.sync_ledger.read_text().splitlines():
            kind, *fields = line.split("\t")
            if kind == "created":
                durable[fields[0]] = 0
            elif kind == "synced":
                durable[fields[1]] = int(fields[0])
            elif kind == "renamed":
                durable[fields[1]] = durable.pop(fields[0], None)
            elif kind == "removed":
                gone = fields[0]
                durable = {p: n for p, n in durable.items() if p != gone and not p.startswith(gone + "/")}
            else:
                raise AssertionError(f"unknown sync ledger line {line!r}")
        cut_bytes = 0
        for path, length in sorted(durable.items()):
            if length is None or not os.path.isfile(path):
                continue
            size = os.path.getsize(path)
            if size <= length:
                continue
            # Half the time everything unsynced is lost, the harshest case.
            cut = length if rng.random() < 0.5 else rng.randint(length, size)
            with open(path, "r+b") as file:
                file.truncate(cut)
                zeroed = min(512, cut - length)
                if zeroed and rng.random() < 0.5:
                    file.seek(cut - zeroed)
                    file.write(bytes(zeroed))
            cut_bytes += size - cut
        self.sync_ledger.unlink()
        return cut_bytes

    def terminate(self, timeout_s: float = 20.0) -> int:
        """SIGTERM and wait for a clean stop; return the exit status (SIGKILL after the wait)."""
        assert self.proc is not None and self.is_running(), "broker is not running"
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill9()
            pytest.fail(
                f"runnel did not exit within {timeout_s}s of SIGTERM\n"
                f"--- {self.log_path} (tail) ---\n{self.log_tail()}",
                pytrace=False,
            )

    def restart(self) -> "Broker":
        """Start again on the same port and data directory (after kill9 or terminate)."""
        self.kill9()
        return self.start()

    def log_text(self) -> str:
        try:
            return ANSI_ESCAPE.sub("", self.log_path.read_text(errors="replace"))
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def runnel_brokers(self) -> list["Broker"]:
        return [self]


class BrokerFactory:
    def __init__(self, base_dir: Path):
        self.base_dir = base_dir
        self.brokers: list[Broker] = []

    def create(self, *extra_args: str | int) -> Broker:
        """A broker not started yet, to be configured first."""
        broker = Broker(self.base_dir / f"broker{len(self.brokers)}", tuple(str(a) for a in extra_args))
        self.brokers.append(broker)
        return broker

    def start(self, *extra_args: str | int) -> Broker:
        return self.create(*extra_args).start()

    def runnel_brokers(self) -> list[Broker]:
        return self.brokers

    def kill_all(self) -> None:
        for broker in self.brokers:
            broker.kill9()


# Short enough that faults show within seconds, long enough for a loaded 2-core machine.
CLUSTER_TIMINGS = (
    "--broker-session-timeout-ms",
    "4000",
    "--broker-heartbeat-interval-ms",
    "500",
    "--replica-lag-time-max-ms",
    "5000",
)


class Netns:
    """One network namespace per node, joined by a bridge (needs root, as TESTING.md says):
    cutting a node's link partitions it from every peer and every client, as a pulled cable
    does, and healing it puts it back. Uses only a private subnet it picks and creates, and
    removes everything at `close`."""

    # Names are unique within this process: a namespace's links outlive `ip netns del` for a
    # moment (the kernel tears them down asynchronously), so the next network must not reuse them.
    _serial = itertools.count()

    def __init__(self, count: int):
        tag = f"{os.getpid() % 10000:04d}{next(Netns._serial) % 100:02d}"
        self.bridge = f"rbr{tag}"
        self.namespaces = [f"rns{tag}-{i + 1}" for i in range(count)]
        self.links = [f"rb{tag}-{i + 1}" for i in range(count)]
        self.subnet = f"10.{random.randrange(64, 128)}.{random.randrange(256)}"
        try:
            self._ip("link", "add", self.bridge, "type", "bridge")
            self._ip("addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
            self._ip("link", "set", self.bridge, "up")
            for i, (namespace, link) in enumerate(zip(self.namespaces, self.links)):
                inside = f"rv{tag}-{i + 1}"
                self._ip("netns", "add", namespace)
                self._ip("link", "add", inside, "type", "veth", "peer", "name", link)
                self._ip("link", "set", inside, "netns", namespace)
                self._ip("link", "set", link, "master", self.bridge, "up")
                self._ip("-n", namespace, "addr", "add", f"{self.address(i + 1)}/24", "dev", inside)
                self._ip("-n", namespace, "link", "set", inside, "up")
                self._ip("-n", namespace, "link", "set", "lo", "up")
        except subprocess.CalledProcessError as error:
            self.close()
            pytest.fail(
                f"cannot build the test network ({error.cmd}: {error.stderr.strip()}); "
                "the network fault tests need root and `ip` (iproute2)",
                pytrace=False,
            )

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    def address(self, node_id: int) -> str:
        return f"{self.subnet}.{node_id}"

    def runner(self, node_id: int) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.namespaces[node_id - 1])

    def cut(self, node_id: int) -> None:
        self._ip("link", "set", self.links[node_id - 1], "down")

    def heal(self, node_id: int) -> None:
        self._ip("link", "set", self.links[node_id - 1], "up")

    def isolate(self, node_id: int, isolated: bool) -> None:
        """Isolated bridge ports cannot reach each other, but still reach the others and the
        test itself: isolating two nodes cuts them from each other only."""
        flag = "on" if isolated else "off"
        self._ip("link", "set", "dev", self.links[node_id - 1], "type", "bridge_slave", "isolated", flag)

    def close(self) -> None:
        for namespace in self.namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        # Gone before the next test builds its network: a later process may get this pid.
        deadline = time.monotonic() + 10
        while any(self._exists(link) for link in self.links) and time.monotonic() < deadline:
            time.sleep(0.1)

    @staticmethod
    def _exists(link: str) -> bool:
        return subprocess.run(["ip", "link", "show", link], capture_output=True).returncode == 0


class Cluster:
    """Nodes that are each a broker and a controller voter (`--roles broker,controller`), as
    `runnel dev cluster` runs them. Node ids are 1..count. On loopback, or each node in its
    own namespace of `network`."""

    def __init__(
        self,
        base_dir: Path,
        count: int = 3,
        extra_args: tuple[str, ...] = (),
        network: Netns | None = None,
        sync_ledger: bool = False,
        racks: list[str] | None = None,
    ):
        if network is None:
            hosts = ["127.0.0.1"] * count
            controller_ports = [free_port() for _ in range(count)]
        else:
            hosts = [network.address(i + 1) for i in range(count)]
            controller_ports = [9093] * count
        quorum = ",".join(f"{i + 1}@{hosts[i]}:{port}" for i, port in enumerate(controller_ports))
        self.base_dir = base_dir
        self.quorum = quorum
        self.nodes = [
            Broker(
                base_dir / f"node{i + 1}",
                (
                    "--roles",
                    "broker,controller",
                    "--controller-listen",
                    f"{hosts[i]}:{controller_ports[i]}",
                    "--controller-quorum",
                    quorum,
                    "--default-replication-factor",
                    str(min(count, 3)),
                    *CLUSTER_TIMINGS,
                    *(("--rack", racks[i]) if racks else ()),
                    *extra_args,
                ),
                node_id=i + 1,
                host=hosts[i],
                runner=network.runner(i + 1) if network else (),
                sync_ledger=sync_ledger,
            )
            for i in range(count)
        ]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> Broker:
        return self.nodes[node_id - 1]

    def start(self) -> "Cluster":
        """Starts every node, and returns once each lists them all as live brokers."""
        for node in self.nodes:
            node.spawn()
        for node in self.nodes:
            node.wait_ready()
        deadline = time.monotonic() + READY_DEADLINE_S
        for node in self.nodes:
            admin = AdminClient({"bootstrap.servers": node.bootstrap})
            while True:
                try:
                    # A node lets clients in once it has caught up with the metadata; the
                    # others may not have registered yet.
                    if len(admin.list_topics(timeout=10).brokers) == len(self.nodes):
                        break
                except KafkaException:
                    pass
                assert time.monotonic() < deadline, f"node {node.node_id} does not see every broker"
                time.sleep(0.1)
        return self

    def add_broker(self) -> Broker:
        """Starts one more node, a broker only (`--roles broker`), with the next node id; it
        takes partitions only when they are reassigned to it."""
        node_id = len(self.nodes) + 1
        node = Broker(
            self.base_dir / f"node{node_id}",
            (
                "--roles",
                "broker",
                "--controller-quorum",
                self.quorum,
                *CLUSTER_TIMINGS,
            ),
            node_id=node_id,
        )
        self.nodes.append(node)
        return node.start()

    def running(self) -> list[Broker]:
        return [node for node in self.nodes if node.is_running()]

    def runnel_brokers(self) -> list[Broker]:
        return self.nodes

    def kill_all(self) -> None:
        for node in self.nodes:
            node.kill9()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A 3-node cluster, started."""
    instance = Cluster(tmp_path)
    try:
        instance.start()
        yield instance
    finally:
        instance.kill_all()


@pytest.fixture
def network() -> Iterator[Netns]:
    """Three network namespaces on a bridge, for a cluster whose links can be cut."""
    instance = Netns(3)
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    instance = Broker(tmp_path_factory.mktemp("runnel"))
    try:
        instance.start()
        yield instance
    finally:
        instance.kill9()


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[BrokerFactory]:
    factory = BrokerFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.kill_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed:
        seen = set()
        for value in getattr(item, "funcargs", {}).values():
            brokers = getattr(value, "runnel_brokers", None)
            if not callable(brokers):
                continue
            for broker_instance in brokers():
                if id(broker_instance) in seen:
                    continue
                seen.add(id(broker_instance))
                report.sections.append(
                    (
                        f"runnel log tail ({broker_instance.log_path})",
                        broker_instance.log_tail(),
                    )
                )
    return report


def pytest_collection_modifyitems(config, items):
    """Soak tests run only with RUNNEL_SOAK=1; otherwise they are deselected, so the default
    suite reports no skips: a test that is collected must run."""
    if os.environ.get("RUNNEL_SOAK") == "1":
        return
    soak = [item for item in items if item.get_closest_marker("soak")]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if not item.get_closest_marker("soak")]
