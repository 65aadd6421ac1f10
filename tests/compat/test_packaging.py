"""The deployment files in packaging/, exercised as far as this machine allows.

There is no Docker daemon here (nor in CI), so no image is built and no container runs. What
is run instead are the exact command lines the files give, as local processes of the built
binary (target/debug/runnel, as every compat test):

- compose.yaml: its structure (three nodes, one quorum naming them all, listeners advertised
  on the ports published for them, a volume at each data directory), then each service's
  command with the service names mapped to 127.0.0.1 and every port to a free one, as a
  3-node cluster; each service's healthcheck passes once it is ready, and kcat produces and
  consumes through it; every node stops cleanly on SIGTERM.
- runnel.service: `systemd-analyze verify` on a copy whose ExecStart names the built binary
  and an existing config (and whose man page is found), with nothing reported about the
  unit; its exposure rating; its limits against the example config.
- runnel.toml: the unit's ExecStart with a copy of it (data directory and ports replaced)
  starts a broker that serves kcat and stops cleanly.
- Dockerfile: every COPY source exists and passes .dockerignore, and the build context cargo
  would see resolves with --locked; the builder's Rust satisfies the workspace's
  rust-version; the entrypoint is the copied binary; CMD runs as a broker whose HEALTHCHECK
  command passes, and what the healthcheck runs is installed in the image.

What needs Docker itself (the build, the image's user and volume permissions, the compose
network's DNS, published ports) is not exercised; docs/deploy.md says so.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from conftest import broker_environment, free_port, runnel_bin, unique_topic

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"
COMPOSE = PACKAGING / "compose.yaml"
DOCKERFILE = PACKAGING / "Dockerfile"
UNIT = PACKAGING / "runnel.service"
EXAMPLE_CONFIG = PACKAGING / "runnel.toml"
DOCKERIGNORE = REPO / ".dockerignore"

# Debug binaries on a loaded 2-core machine: a cluster's first election takes a few seconds.
READY_WITHIN_S = 60.0
STOP_WITHIN_S = 60.0
TOOL_TIMEOUT_S = 60.0

# Where the unit expects things, and what its ExecStart must be.
UNIT_BINARY = "/usr/local/bin/runnel"
UNIT_CONFIG = "/etc/runnel/runnel.toml"
# `HOST:PORT` inside an argument: `--listen=0.0.0.0:19092`, `1@node1:9093`, a URL.
ADDRESS = re.compile(r"(?<![\w.-])([A-Za-z0-9][A-Za-z0-9.-]*):(\d{1,5})(?!\d)")


# --- Tools ------------------------------------------------------------------------------


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; this test needs it (see docs/deploy.md)", pytrace=False)
    return path


def binary() -> Path:
    path = runnel_bin()
    if not path.is_file():
        pytest.fail(f"runnel binary not found at {path}: run `cargo build -p runnel-cli` or set RUNNEL_BIN", pytrace=False)
    return path


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, **kwargs)


def checked(command: list[str], **kwargs) -> str:
    result = run(command, **kwargs)
    assert result.returncode == 0, (
        f"{shlex.join(command)} exited {result.returncode}\nstdout:\n{result.stdout[-3000:]}\n"
        f"stderr:\n{result.stderr[-3000:]}"
    )
    return result.stdout


_server_flags: set[str] | None = None


def server_flags() -> set[str]:
    """Every long flag `runnel server --help` lists."""
    global _server_flags
    if _server_flags is None:
        text = checked([str(binary()), "server", "--help"])
        _server_flags = set(re.findall(r"^\s+(?:-\w, )?(--[a-z0-9-]+)", text, flags=re.MULTILINE))
        assert "--listen" in _server_flags and "--config" in _server_flags, text
    return _server_flags


def flag_values(args: list[str]) -> dict[str, str]:
    """`--flag=value` and `--flag value` pairs of a command line (after its subcommand); a
    switch's value is empty."""
    values: dict[str, str] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        assert arg.startswith("--"), f"{arg!r} in {args} is not a flag"
        if "=" in arg:
            name, value = arg.split("=", 1)
        elif index + 1 == len(args) or args[index + 1].startswith("--"):
            name, value = arg, ""  # a switch (--console)
        else:
            name, value = arg, args[index + 1]
            index += 1
        assert name not in values, f"{name} given twice in {args}"
        values[name] = value
        index += 1
    return values


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def host_of(address: str) -> str:
    return address.rsplit(":", 1)[0]


class Ports:
    """A free local port for each (container, port) the files name, the same every time."""

    def __init__(self) -> None:
        self.ports: dict[tuple[str, int], int] = {}

    def get(self, container: str, port: int) -> int:
        key = (container, port)
        if key not in self.ports:
            self.ports[key] = free_port()
        return self.ports[key]


def localize(arg: str, container: str, hosts: set[str], ports: Ports, paths: dict[str, Path]) -> str:
    """One argument of `container`'s command as it runs here: the other containers' names
    (`hosts`) become 127.0.0.1, every port the container's or theirs a free local port, and
    container paths local folders. Binding 0.0.0.0 stays as it is."""

    def address(match: re.Match) -> str:
        host, port = match.group(1), int(match.group(2))
        if host == "0.0.0.0":
            return f"0.0.0.0:{ports.get(container, port)}"
        if host in ("127.0.0.1", "localhost"):
            return f"127.0.0.1:{ports.get(container, port)}"
        if host in hosts:
            return f"127.0.0.1:{ports.get(host, port)}"
        pytest.fail(f"{container}: {arg!r} names {host}, neither a container nor a local address", pytrace=False)

    arg = ADDRESS.sub(address, arg)
    for container_path, local in paths.items():
        arg = arg.replace(container_path, str(local))
    return arg


# --- Processes ----------------------------------------------------------------------------


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


class Process:
    """One `runnel` process started from a command line the packaging files give."""

    def __init__(self, name: str, command: list[str], work_dir: Path):
        self.name = name
        self.command = command
        self.work_dir = work_dir
        self.log_path = work_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Process":
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"=== {shlex.join(self.command)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command,
                cwd=self.work_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=broker_environment(),
            )
        return self

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, admin_port: int, deadline: float) -> None:
        """Until /health/ready answers 200, as the healthchecks and probes wait."""
        url = f"http://127.0.0.1:{admin_port}/health/ready"
        while http_status(url) != 200:
            if not self.is_running():
                pytest.fail(f"{self.name} exited ({self.proc.returncode}) before it was ready\n{self.log_tail()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name}: {url} did not answer 200 in time\n{self.log_tail()}", pytrace=False)
            time.sleep(0.1)

    def terminate(self) -> None:
        if self.is_running():
            self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, deadline: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} did not stop within {STOP_WITHIN_S}s of SIGTERM\n{self.log_tail()}", pytrace=False)

    def kill(self) -> None:
        if self.is_running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


class Processes:
    """The processes one test started; conftest attaches their logs to a failure report."""

    def __init__(self) -> None:
        self.all: list[Process] = []

    def start(self, name: str, command: list[str], work_dir: Path) -> Process:
        binary()
        process = Process(name, command, work_dir).start()
        self.all.append(process)
        return process

    def stop_all(self) -> None:
        """SIGTERM to every node at once, as `docker compose down` or `systemctl stop` send it;
        each must exit 0, its logs closed cleanly."""
        for process in self.all:
            process.terminate()
        deadline = time.monotonic() + STOP_WITHIN_S
        for process in self.all:
            status = process.wait_stopped(deadline)
            assert status == 0, f"{process.name} exited {status} on SIGTERM\n{process.log_tail()}"
            assert "stopped cleanly" in process.log_text(), f"{process.name}: no clean stop\n{process.log_tail()}"

    def runnel_brokers(self) -> list[Process]:
        return self.all


@pytest.fixture
def processes() -> Iterator[Processes]:
    instance = Processes()
    try:
        yield instance
    finally:
        for process in instance.all:
            process.kill()


def kcat(bootstrap: str, *args: str, stdin: str | None = None) -> str:
    return checked([tool("kcat"), "-b", bootstrap, *args], input=stdin)


def produce_and_consume(bootstrap: str, topic: str, lines: list[str]) -> None:
    """acks=all through the listeners the nodes advertise, then read back."""
    kcat(bootstrap, "-P", "-t", topic, "-X", "request.required.acks=-1", stdin="\n".join(lines) + "\n")
    read = kcat(bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q").splitlines()
    assert sorted(read) == sorted(lines)


# --- The Dockerfile -----------------------------------------------------------------------


class Dockerfile:
    """Instructions by stage: [(INSTRUCTION, arguments)], continuation lines joined."""

    def __init__(self, path: Path):
        self.args: dict[str, str] = {}
        self.stages: list[dict] = []
        logical = ""
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if not logical and (not stripped or stripped.startswith("#")):
                continue
            if stripped.startswith("#"):
                continue  # a comment inside a continued instruction
            if stripped.endswith("\\"):
                logical += stripped[:-1] + " "
                continue
            self._add(logical + stripped)
            logical = ""
        assert not logical, "the Dockerfile ends inside a continued line"

    def _add(self, line: str) -> None:
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "ARG" and not self.stages:
            name, _, default = rest.partition("=")
            self.args[name] = default
        elif instruction == "FROM":
            words = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: self.args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            self.stages.append({"image": image, "name": name, "instructions": []})
        else:
            assert self.stages, f"{instruction} before FROM"
            self.stages[-1]["instructions"].append((instruction, rest))

    def stage(self, name: str | None = None) -> dict:
        """The stage named `name`; without one, the final stage (the image)."""
        if name is None:
            return self.stages[-1]
        [stage] = [s for s in self.stages if s["name"] == name]
        return stage

    def all(self, instruction: str, stage: dict) -> list[str]:
        return [rest for name, rest in stage["instructions"] if name == instruction]

    def one(self, instruction: str, stage: dict | None = None) -> str:
        found = self.all(instruction, stage or self.stage())
        assert len(found) == 1, f"expected one {instruction} in the image, found {found}"
        return found[0]


def exec_form(value: str) -> list[str]:
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(word, str) for word in parsed), value
    return parsed


def apt_installed(stage: dict) -> set[str]:
    packages: set[str] = set()
    for name, rest in stage["instructions"]:
        if name == "RUN":
            for match in re.finditer(r"apt-get install((?:\s+[-\w.+=]+)+)", rest):
                packages |= {word for word in match.group(1).split() if not word.startswith("-")}
    return packages


def provided_by_image(program: str) -> bool:
    """Whether the image has `program` besides what debian:bookworm-slim has: an installed
    package of that name, or the runnel binary itself."""
    return program in apt_installed(Dockerfile(DOCKERFILE).stage()) or program in ("runnel", UNIT_BINARY)


def dockerignore_patterns() -> list[tuple[bool, re.Pattern]]:
    """(negated, regex) per line of .dockerignore, in order: `*` within one path element,
    `**` across them, a pattern matching a folder matching everything in it."""
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        glob = line.lstrip("!").strip("/")
        regex = ""
        index = 0
        while index < len(glob):
            if glob.startswith("**/", index):
                regex += "(?:.*/)?"
                index += 3
            elif glob.startswith("**", index):
                regex += ".*"
                index += 2
            elif glob[index] == "*":
                regex += "[^/]*"
                index += 1
            elif glob[index] == "?":
                regex += "[^/]"
                index += 1
            else:
                regex += re.escape(glob[index])
                index += 1
        patterns.append((negated, re.compile(regex + "(?:/.*)?")))
    return patterns


def in_build_context(relative: str) -> bool:
    included = True
    for negated, pattern in dockerignore_patterns():
        if pattern.fullmatch(relative):
            included = negated
    return included


def build_context_files() -> list[str]:
    """The files `docker build` would send, by .dockerignore; excluded folders no pattern
    re-includes anything under are not walked (target/ is huge)."""
    negations = [line.lstrip("!").strip("/") for line in DOCKERIGNORE.read_text().splitlines() if line.startswith("!")]
    files = []

    def walk(folder: Path) -> None:
        for entry in sorted(folder.iterdir()):
            relative = entry.relative_to(REPO).as_posix()
            if entry.is_dir() and not entry.is_symlink():
                if in_build_context(relative) or any(n.startswith(relative + "/") or n == relative for n in negations):
                    walk(entry)
            elif in_build_context(relative):
                files.append(relative)

    walk(REPO)
    return files


def test_the_dockerfile_builds_what_the_workspace_has_and_runs_a_broker(processes, tmp_path):
    dockerfile = Dockerfile(DOCKERFILE)
    builder = dockerfile.stage("builder")
    image = dockerfile.stage()

    # The builder's Rust is at least the workspace's rust-version ("1" is the newest 1.x).
    workspace = tomllib.loads((REPO / "Cargo.toml").read_text())
    needed = tuple(int(part) for part in workspace["workspace"]["package"]["rust-version"].split("."))
    match = re.fullmatch(r"rust:(\d+(?:\.\d+){0,2})(?:-[a-z]+)*", builder["image"])
    assert match, f"the builder is {builder['image']}, not an official rust image"
    version = tuple(int(part) for part in match.group(1).split("."))
    if len(version) == 1:
        assert version[0] == needed[0], f"{builder['image']} is not Rust {needed[0]}.x"
    else:
        assert version >= needed[: len(version)], f"{builder['image']} is older than rust-version {needed}"
    assert image["image"].startswith("debian:bookworm"), "the runtime's glibc must match the bookworm builder's"
    assert "bookworm" in builder["image"]

    builds = [rest for rest in dockerfile.all("RUN", builder) if "cargo build" in rest]
    assert len(builds) == 1 and re.search(r"cargo build --release -p runnel-cli --locked\b", builds[0]), builds

    # Every COPY source exists and is in the build context; the context is a workspace that
    # cargo resolves with --locked (Cargo.lock up to date) from what the context holds alone.
    for stage in dockerfile.stages:
        for rest in dockerfile.all("COPY", stage):
            if rest.startswith("--from="):
                continue
            *sources, _destination = rest.split()
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
                assert in_build_context(source), f"COPY {source}: excluded by .dockerignore"
    context = build_context_files()
    assert "crates/runnel-cli/src/main.rs" in context and "Cargo.lock" in context
    assert not [f for f in context if f.startswith(("target/", ".git/", ".venv/")) or "/target/" in f]
    copied = tmp_path / "context"
    for relative in context:
        (copied / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, copied / relative)
    host = re.search(r"^host: (\S+)$", checked([tool("rustc"), "-vV"]), flags=re.MULTILINE).group(1)
    checked(
        [tool("cargo"), "metadata", "--format-version=1", "--locked", "--filter-platform", host]
        + ["--manifest-path", str(copied / "Cargo.toml")]
    )

    # The image's entrypoint is the binary the builder built, copied onto PATH.
    [copy] = [rest for rest in dockerfile.all("COPY", image) if rest.startswith("--from=builder")]
    _, built, installed = copy.split()
    assert any(built in rest for rest in dockerfile.all("RUN", builder)), f"the builder never writes {built}"
    assert installed == UNIT_BINARY
    entrypoint = exec_form(dockerfile.one("ENTRYPOINT"))
    assert entrypoint in (["runnel"], [UNIT_BINARY]), entrypoint

    user = dockerfile.one("USER").split(":")[0]
    assert user not in ("root", "0"), "the broker must not run as root"
    assert any("useradd" in rest and user in rest for rest in dockerfile.all("RUN", image)), f"no user {user} is created"

    cmd = exec_form(dockerfile.one("CMD"))
    assert cmd[0] == "server", cmd
    flags = flag_values(cmd[1:])
    unknown = set(flags) - server_flags()
    assert not unknown, f"CMD passes flags `runnel server` does not have: {unknown}"
    [volume] = exec_form(dockerfile.one("VOLUME"))
    assert flags["--data-dir"] == volume, "the data directory must be the volume"
    exposed = {int(port) for port in dockerfile.one("EXPOSE").split()}
    assert {port_of(flags["--listen"]), port_of(flags["--admin-listen"]), 9093} <= exposed, exposed
    assert port_of(flags["--advertised-listener"]) == port_of(flags["--listen"]), "advertise the port docker run -p publishes"

    healthcheck = dockerfile.one("HEALTHCHECK")
    assert "--start-period=" in healthcheck
    probe = exec_form(healthcheck.split(" CMD ", 1)[1])
    assert provided_by_image(probe[0]), f"the HEALTHCHECK runs {probe[0]}, which the image does not install"
    assert any(f"127.0.0.1:{port_of(flags['--admin-listen'])}/health/ready" in word for word in probe), probe

    # CMD as a process: it serves, its healthcheck passes, it stops cleanly on SIGTERM.
    ports = Ports()
    paths = {volume: tmp_path / "data"}
    command = [str(binary())] + [localize(arg, "runnel", set(), ports, paths) for arg in cmd]
    node = processes.start("docker-cmd", command, tmp_path)
    node.wait_ready(ports.get("runnel", port_of(flags["--admin-listen"])), time.monotonic() + READY_WITHIN_S)
    checked([tool(probe[0])] + [localize(arg, "runnel", set(), ports, paths) for arg in probe[1:]])
    bootstrap = f"127.0.0.1:{ports.get('runnel', port_of(flags['--listen']))}"
    produce_and_consume(bootstrap, unique_topic("docker"), ["one record"])
    processes.stop_all()


# --- compose.yaml -------------------------------------------------------------------------


def interpolate(text: str, environment: dict[str, str]) -> str:
    """Compose's `${VAR:-default}`, `${VAR-default}` and `${VAR}`; a variable with no default
    must be set (compose would put an empty string in)."""

    def value(match: re.Match) -> str:
        name, default = match.group(1), match.group(3)
        if name in environment and (environment[name] or match.group(2) != ":-"):
            return environment[name]
        assert default is not None, f"${{{name}}} has no default: compose.yaml must work with nothing set"
        return default

    return re.sub(r"\$\{(\w+)(?:(:?-)([^}]*))?\}", value, text).replace("$$", "$")


def load_compose(environment: dict[str, str] | None = None) -> dict:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), environment or {}))


def duration_s(value: str) -> float:
    """`90s`, `1m30s` (compose) or `120`, `2min` (systemd) in seconds."""
    if value.isdigit():
        return float(value)
    units = {"ms": 0.001, "s": 1, "min": 60, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|min|s|m|h)", value)
    assert parts, f"{value!r} is not a duration"
    return sum(float(n) * units[u] for n, u in parts)


def test_compose_runs_a_three_node_cluster(processes, tmp_path):
    compose = load_compose()
    services = compose["services"]
    assert sorted(services) == ["node1", "node2", "node3"]
    volumes = compose.get("volumes") or {}
    nodes: dict[str, dict[str, str]] = {}
    quorums = set()
    for name, service in services.items():
        build = service["build"]
        assert (COMPOSE.parent / build["context"]).resolve() == REPO, "build from the repository root"
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        assert service.get("hostname", name) == name
        assert duration_s(service["stop_grace_period"]) >= 30, "give the controlled shutdown time"
        command = service["command"]
        assert command[0] == "server", command
        flags = flag_values(command[1:])
        unknown = set(flags) - server_flags()
        assert not unknown, f"{name} passes flags `runnel server` does not have: {unknown}"
        assert set(flags["--roles"].split(",")) == {"broker", "controller"}
        nodes[name] = flags
        quorums.add(flags["--controller-quorum"])

        # The advertised listener: this node's name, on the port it listens on, published
        # under the same number: one address for the other nodes and the host.
        listen = flags["--listen"]
        assert host_of(listen) == "0.0.0.0"
        assert flags["--advertised-listener"] == f"{name}:{port_of(listen)}"
        published = [str(p) for p in service["ports"]]
        assert f"{port_of(listen)}:{port_of(listen)}" in published, published
        admin = flags["--admin-listen"]
        assert host_of(admin) == "0.0.0.0"
        assert any(p.endswith(f":{port_of(admin)}") for p in published), f"{name}: the admin port is not published"

        # The data directory is the named volume.
        [mount] = [v for v in service["volumes"] if v.endswith(":" + flags["--data-dir"])]
        assert mount.split(":")[0] in volumes, f"{name}: {mount} is not a named volume"

        probe = service["healthcheck"]["test"]
        assert probe[0] == "CMD" and provided_by_image(probe[1]), probe
        assert f"127.0.0.1:{port_of(admin)}/health/ready" in " ".join(probe)

    # One quorum, naming each node by its service name, its node id and its controller port.
    assert len(quorums) == 1, f"the nodes disagree on the quorum: {quorums}"
    voters = dict(voter.split("@") for voter in quorums.pop().split(","))
    assert sorted(voters) == sorted(flags["--node-id"] for flags in nodes.values())
    for name, flags in nodes.items():
        assert voters[flags["--node-id"]] == f"{name}:{port_of(flags['--controller-listen'])}"
    # `[IP:]HOST_PORT:CONTAINER_PORT`: the host side is all but the last part.
    published_hosts = [str(p).rsplit(":", 1)[0] for s in services.values() for p in s["ports"]]
    assert len(published_hosts) == len(set(published_hosts)), "two services publish one host port"

    # With RUNNEL_ADVERTISED_HOST, every node advertises that host, still on its own port.
    advertised = [
        flag_values(s["command"][1:])["--advertised-listener"]
        for s in load_compose({"RUNNEL_ADVERTISED_HOST": "192.0.2.7"})["services"].values()
    ]
    assert len(set(advertised)) == 3 and all(a.startswith("192.0.2.7:") for a in advertised), advertised

    # The exact commands, as local processes: a cluster, ready, healthy, serving kcat.
    ports = Ports()
    hosts = set(services)
    started = {}
    for name, service in services.items():
        paths = {nodes[name]["--data-dir"]: tmp_path / name / "data"}
        command = [str(binary())] + [localize(arg, name, hosts, ports, paths) for arg in service["command"]]
        started[name] = processes.start(name, command, tmp_path / name)
    deadline = time.monotonic() + READY_WITHIN_S
    for name, process in started.items():
        process.wait_ready(ports.get(name, port_of(nodes[name]["--admin-listen"])), deadline)
    for name, service in services.items():
        probe = service["healthcheck"]["test"][1:]
        checked([tool(probe[0])] + [localize(arg, name, hosts, ports, {}) for arg in probe[1:]])

    bootstrap = ",".join(f"127.0.0.1:{ports.get(name, port_of(nodes[name]['--listen']))}" for name in services)
    metadata = json.loads(kcat(bootstrap, "-L", "-J"))
    expected = {
        int(flags["--node-id"]): f"127.0.0.1:{ports.get(name, port_of(flags['--listen']))}" for name, flags in nodes.items()
    }
    assert {broker["id"]: broker["name"] for broker in metadata["brokers"]} == expected
    # acks=all on a topic auto-created with --default-replication-factor: followers copy the
    # leader's log through the listener it advertises, or the produce would not be answered.
    topic = unique_topic("compose")
    produce_and_consume(bootstrap, topic, [f"record {i}" for i in range(10)])
    [described] = json.loads(kcat(bootstrap, "-L", "-J", "-t", topic))["topics"]
    for partition in described["partitions"]:
        assert sorted(r["id"] for r in partition["replicas"]) == sorted(expected), partition
    processes.stop_all()


# --- runnel.service and runnel.toml -------------------------------------------------------


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def example_settings() -> tuple[dict, dict]:
    """The example config's keys as set, and with its `#key = value` lines (settings shown at
    their defaults, or to uncomment for a cluster) set too."""
    text = EXAMPLE_CONFIG.read_text()
    active = tomllib.loads(text)
    shown = tomllib.loads(re.sub(r"^#([a-z][a-z0-9-]* = )", r"\1", text, flags=re.MULTILINE))
    return active, shown


def test_the_example_config_has_only_server_flags_as_keys():
    active, shown = example_settings()
    assert len(shown) > len(active) + 5, "the commented-out settings were not found"
    unknown = {f"--{key}" for key in shown} - server_flags()
    assert not unknown, f"runnel.toml has keys `runnel server` does not know: {unknown}"
    assert active["data-dir"] == "/var/lib/runnel"
    assert host_of(active["advertised-listener"]) not in ("0.0.0.0", "127.0.0.1", "localhost")


def test_systemd_verifies_the_unit(tmp_path):
    settings = unit_settings()
    assert settings["ExecStart"] == [f"{UNIT_BINARY} server --config {UNIT_CONFIG}"]
    assert settings["User"] and settings["User"] != ["root"]
    assert settings["Restart"] == ["on-failure"]
    assert settings.get("NoNewPrivileges") == ["yes"] and settings.get("ProtectSystem") == ["strict"]
    # The broker may write its data directory, and the open-files limit covers what the
    # example config's limits need (one file per partition, sealed segments, connections).
    active, shown = example_settings()
    writable = " ".join(settings.get("ReadWritePaths", [])).split()
    assert active["data-dir"] in writable, f"data-dir {active['data-dir']} is read-only under ProtectSystem=strict"
    needed = shown["partitions-max"] + shown["sealed-segment-files-max"] + shown["connections-max"] + 1024
    assert int(settings["LimitNOFILE"][0]) >= needed
    assert duration_s(settings["TimeoutStopSec"][0]) >= 30, "give the controlled shutdown time"

    # systemd's own check, on a copy pointing at what exists here: the built binary, a config,
    # the man page Documentation= names (generated by `runnel man`).
    config = tmp_path / "runnel.toml"
    shutil.copy(EXAMPLE_CONFIG, config)
    unit = tmp_path / "runnel.service"
    unit.write_text(UNIT.read_text().replace(UNIT_BINARY, str(binary())).replace(UNIT_CONFIG, str(config)))
    checked([str(binary()), "man", "--dir", str(tmp_path / "man" / "man1")])
    environment = {**broker_environment(), "MANPATH": str(tmp_path / "man"), "SYSTEMD_LOG_COLOR": "0"}
    analyze = tool("systemd-analyze")
    result = run([analyze, "verify", str(unit)], env=environment)
    about_unit = [line for line in (result.stdout + result.stderr).splitlines() if "runnel" in line]
    assert result.returncode == 0 and not about_unit, (
        f"systemd-analyze verify (exit status {result.returncode}) finds problems in the unit:\n"
        f"{result.stdout}{result.stderr}"
    )
    # The hardening, as systemd rates it (0 best, 10 worst; "OK" below 4.0 or so).
    checked([analyze, "security", "--offline=yes", "--threshold=25", str(unit)], env=environment)


def test_the_unit_runs_a_broker_from_the_example_config(processes, tmp_path):
    """The unit's ExecStart, with a copy of runnel.toml whose data directory and ports are
    this test's."""
    text = EXAMPLE_CONFIG.read_text()
    active, _ = example_settings()
    ports = Ports()

    def local(match: re.Match) -> str:
        key, value = match.group(1), tomllib.loads(match.group(0))[match.group(1)]
        if key == "data-dir":
            return f'{key} = "{tmp_path / "data"}"'
        host = host_of(value) if host_of(value) == "0.0.0.0" else "127.0.0.1"
        return f'{key} = "{host}:{ports.get("node", port_of(value))}"'

    addresses = [key for key, value in active.items() if isinstance(value, str) and ADDRESS.fullmatch(value)]
    assert {"listen", "advertised-listener", "admin-listen"} <= set(addresses)
    keys = "|".join(re.escape(key) for key in [*addresses, "data-dir"])
    config = tmp_path / "runnel.toml"
    config.write_text(re.sub(rf"^({keys}) = .*$", local, text, flags=re.MULTILINE))
    assert tomllib.loads(config.read_text()).keys() == active.keys()

    [exec_start] = unit_settings()["ExecStart"]
    command = shlex.split(exec_start.replace(UNIT_BINARY, str(binary())).replace(UNIT_CONFIG, str(config)))
    node = processes.start("systemd", command, tmp_path)
    node.wait_ready(ports.get("node", port_of(active["admin-listen"])), time.monotonic() + READY_WITHIN_S)
    produce_and_consume(f"127.0.0.1:{ports.get('node', port_of(active['listen']))}", unique_topic("unit"), ["a", "b"])
    processes.stop_all()
