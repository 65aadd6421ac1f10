"""Kafka Connect's REST API, as served by `runnel connect standalone`.

A worker is started the way a user starts it, next to the module's `broker`:

    runnel connect standalone --bootstrap HOST:PORT --rest-listen 127.0.0.1:PORT \
        --offsets-file FILE [CONNECTOR.json ...]

and driven over HTTP with the standard library only. The connectors are the two file connectors
Kafka ships, `FileStreamSource` (keys file, topic, batch.size) and `FileStreamSink` (file,
topics); the fully qualified names org.apache.kafka.connect.file.FileStream{Source,Sink}Connector
are accepted as aliases of the short ones.

Every expectation was worked out from Kafka's description of the API, not from runnel. The
comment on each check names its source:

- [REST]    Kafka documentation, "Connect REST Interface" (documentation/#connect_rest) and the
            section on connector and task states that follows it;
- [KIP-875] offsets endpoints (GET/PATCH/DELETE /offsets) and PUT /stop;
- [KIP-745] POST /restart?includeTasks=&onlyFailed=;
- [KIP-477] PATCH /connectors/{name}/config;
- [KIP-980] `initial_state` in POST /connectors;
- [KIP-769] GET /connector-plugins?connectorsOnly= and GET /connector-plugins/{plugin}/config;
- [KIP-558] GET /connectors/{name}/topics and PUT .../topics/reset;
- [KIP-297], [KIP-887] `${file:...}` and `${env:...}` config placeholders;
- [src]     where the documentation is silent: what Kafka's standalone worker answers, as its
            source shows it (ConnectorsResource, ConnectorPluginsResource, RootResource, the
            rest/entities classes, ConnectExceptionMapper, AbstractHerder, StandaloneHerder,
            Worker, FileStreamSourceTask/Connector, FileStreamSinkConnector).

Where Kafka's own answer is arguably a bug (a 500 for a malformed body or an unknown connector
class, 200 for the active topics of a connector that does not exist), the test accepts Kafka's
answer and the obvious fix, and says so; the error body must still have Kafka's shape.

Timing: the file sink writes its output file when offsets are committed, so the tests expect the
worker to commit at least every ~10 s (Kafka's standalone example sets
offset.flush.interval.ms=10000), and a stopped task to commit its final offsets (Kafka does).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import unique_topic
from connect_support import ConnectWorker, Reply, WorkerFactory
from support import admin_client, consume_to_end, create_topic, high_watermark, wait_until

SOURCE = "FileStreamSource"
SINK = "FileStreamSink"
SOURCE_CLASS = "org.apache.kafka.connect.file.FileStreamSourceConnector"
SINK_CLASS = "org.apache.kafka.connect.file.FileStreamSinkConnector"
# Names under which the plugin list may show each file connector (Kafka shows the class name).
SOURCE_NAMES = {SOURCE, SOURCE + "Connector", SOURCE_CLASS}
SINK_NAMES = {SINK, SINK + "Connector", SINK_CLASS}

# Given to the worker's environment, for the `${env:...}` placeholder test.
ENV_SOURCE_FILE = "CONNECT_REST_TEST_SOURCE_FILE"

STATE_TIMEOUT_S = 30.0
DATA_TIMEOUT_S = 45.0
# Longer than FileStreamSource's one-second wait for more input: time enough for a record that
# should not come to show up.
SETTLE_S = 1.5

# [src] entities/ConfigKeyInfo: the JSON names of a configuration key's definition. The order in
# its group is serialised as "order" (KIP-769's example shows it too).
CONFIG_KEY_FIELDS = {
    "name",
    "type",
    "required",
    "default_value",
    "importance",
    "documentation",
    "group",
    "order",
    "width",
    "display_name",
    "dependents",
}
# [src] entities/ConfigValueInfo.
CONFIG_VALUE_FIELDS = {"name", "value", "recommended_values", "errors", "visible"}
# [KIP-769] the plugin types GET /connector-plugins?connectorsOnly=false may list.
PLUGIN_TYPES = {"source", "sink", "converter", "header_converter", "transformation", "predicate"}


# --- The worker process and its REST client --------------------------------------------------


@pytest.fixture(scope="module")
def worker(broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnectWorker]:
    """One worker for the module; every test uses its own connector names, topics and files."""
    work_dir = tmp_path_factory.mktemp("connect")
    instance = ConnectWorker(work_dir, broker.bootstrap, env={ENV_SOURCE_FILE: str(work_dir / "env-source.txt")})
    try:
        instance.start()
        yield instance
    finally:
        instance.kill()


@pytest.fixture
def worker_factory(broker, tmp_path: Path) -> Iterator[WorkerFactory]:
    """Workers owned by one test (started with connector files on the command line)."""
    factory = WorkerFactory(tmp_path, broker.bootstrap)
    try:
        yield factory
    finally:
        factory.kill_all()


# --- Helpers -----------------------------------------------------------------------------------


def source_config(path: Path, topic: str, extra: dict | None = None) -> dict:
    return {"connector.class": SOURCE, "tasks.max": "1", "file": str(path), "topic": topic, **(extra or {})}


def sink_config(path: Path, topics: str, extra: dict | None = None) -> dict:
    return {"connector.class": SINK, "tasks.max": "1", "file": str(path), "topics": topics, **(extra or {})}


def write_lines(path: Path, lines: list[str], mode: str = "w") -> None:
    with open(path, mode, encoding="utf-8") as file:
        file.write("".join(line + "\n" for line in lines))


def file_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def assert_error(reply: tuple[int, Any] | Reply, status: int, *fragments: str) -> str:
    """[src] ConnectExceptionMapper/ErrorMessage: every error is {"error_code": <the HTTP
    status>, "message": "..."} and nothing else. Returns the message."""
    got_status, body = (reply.status, reply.body) if isinstance(reply, Reply) else reply
    assert got_status == status, f"expected HTTP {status}, got {got_status}: {body!r}"
    return assert_error_body(got_status, body, *fragments)


def assert_error_body(status: int, body: Any, *fragments: str) -> str:
    assert isinstance(body, dict), f"HTTP {status}: error body is not a JSON object: {body!r}"
    assert set(body) == {"error_code", "message"}, f"error body fields: {body!r}"
    assert body["error_code"] == status, f"error_code {body['error_code']} in an HTTP {status} answer"
    message = body["message"]
    assert isinstance(message, str) and message, f"empty error message: {body!r}"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in error message {message!r}"
    return message


def create(worker: ConnectWorker, name: str, config: dict, initial_state: str | None = None) -> dict:
    body: dict[str, Any] = {"name": name, "config": config}
    if initial_state is not None:
        body["initial_state"] = initial_state
    status, info = worker.rest("POST", "/connectors", body)
    assert status == 201, f"POST /connectors {name}: HTTP {status} {info!r}"
    return info


def task_states(status_body: dict) -> list[str]:
    return [task["state"] for task in sorted(status_body["tasks"], key=lambda task: task["id"])]


def wait_for_state(
    worker: ConnectWorker,
    name: str,
    connector_state: str,
    tasks: list[str] | None,
    timeout_s: float = STATE_TIMEOUT_S,
) -> dict:
    """Poll GET /status until the connector is in `connector_state` and its tasks, by id, are in
    `tasks` (any tasks when None). [REST] state changes are asynchronous: poll, do not expect."""
    last: list[Any] = [None]

    def reached() -> bool:
        last[0] = worker.rest("GET", f"/connectors/{name}/status")
        status, body = last[0]
        if status != 200 or not isinstance(body, dict):
            return False
        if body.get("connector", {}).get("state") != connector_state:
            return False
        return tasks is None or task_states(body) == tasks

    wait_until(
        reached,
        timeout_s,
        f"connector {name} {connector_state} with tasks {tasks}",
        describe=lambda: f"last GET /status: {last[0]!r}",
        interval_s=0.2,
    )
    return last[0][1]


def wait_for_records(bootstrap: str, topic: str, count: int, settle: bool = False) -> None:
    """Wait until partition 0 of `topic` holds `count` records; with `settle`, also check that
    no more arrive in the next SETTLE_S seconds."""
    seen: list[Any] = [None]

    def enough() -> bool:
        seen[0] = high_watermark(bootstrap, topic)
        return seen[0] >= count

    wait_until(enough, DATA_TIMEOUT_S, f"{count} records in {topic}", lambda: f"high watermark {seen[0]}", 0.2)
    if settle:
        time.sleep(SETTLE_S)
        assert high_watermark(bootstrap, topic) == count, f"more than {count} records in {topic}"


def values(bootstrap: str, topic: str) -> list[bytes]:
    return [record.value or b"" for record in consume_to_end(bootstrap, topic, [0])]


def assert_values_carry(values_read: list[bytes], lines: list[str]) -> None:
    """Each record carries its line. The worker's converter decides the exact bytes (a JSON
    envelope or the bare string), so only containment is checked."""
    assert len(values_read) == len(lines), f"{len(values_read)} records for {len(lines)} lines: {values_read!r}"
    for value, line in zip(values_read, lines):
        assert line.encode() in value, f"record {value!r} does not carry line {line!r}"


def wait_for_file_lines(path: Path, expected: list[str]) -> None:
    wait_until(
        lambda: file_lines(path) == expected,
        DATA_TIMEOUT_S,
        f"{path} holding {expected}",
        lambda: f"it holds {file_lines(path)!r}",
        0.2,
    )


def offsets_key(entry: dict) -> str:
    return json.dumps(entry.get("partition"), sort_keys=True)


def wait_for_offsets(worker: ConnectWorker, name: str, expected: list[dict]) -> None:
    """Poll GET /offsets until its entries are `expected` (in any order)."""
    last: list[Any] = [None]
    want = sorted(expected, key=offsets_key)

    def matches() -> bool:
        last[0] = worker.rest("GET", f"/connectors/{name}/offsets")
        status, body = last[0]
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("offsets"), list):
            return False
        return sorted(body["offsets"], key=offsets_key) == want

    wait_until(matches, DATA_TIMEOUT_S, f"offsets of {name} == {want}", lambda: f"last: {last[0]!r}", 0.2)


def assert_offsets_shape(body: Any) -> None:
    # [KIP-875] {"offsets": [{"partition": {...}, "offset": {...}}, ...]}
    assert isinstance(body, dict) and set(body) == {"offsets"}, body
    assert isinstance(body["offsets"], list), body
    for entry in body["offsets"]:
        assert set(entry) == {"partition", "offset"}, entry
        assert isinstance(entry["partition"], dict), entry


def config_values(infos: dict) -> dict[str, dict]:
    """The `value` half of each entry of a validation answer, by key name."""
    return {item["value"]["name"]: item["value"] for item in infos["configs"] if item.get("value") is not None}


def failing_keys(infos: dict) -> dict[str, list[str]]:
    return {name: value["errors"] for name, value in config_values(infos).items() if value["errors"]}


def running_source(
    worker: ConnectWorker, broker, tmp_path: Path, lines: list[str], prefix: str = "rest-src"
) -> tuple[str, Path, str]:
    """A FileStreamSource over a file of `lines`, RUNNING, with every line in its topic."""
    topic = unique_topic(prefix)
    create_topic(broker.bootstrap, topic)
    path = tmp_path / f"{prefix}.txt"
    write_lines(path, lines)
    name = unique_topic(prefix)
    create(worker, name, source_config(path, topic))
    wait_for_state(worker, name, "RUNNING", ["RUNNING"])
    if lines:
        wait_for_records(broker.bootstrap, topic, len(lines))
    return name, path, topic


# --- Root and plugins ----------------------------------------------------------------------------


def test_root_describes_the_worker_and_its_kafka_cluster(worker, broker):
    # [REST] GET / : the worker's version and commit, and the id of the Kafka cluster it uses.
    # [src] entities/ServerInfo names the fields version, commit, kafka_cluster_id.
    status, body = worker.rest("GET", "/")
    assert status == 200, body
    assert set(body) == {"version", "commit", "kafka_cluster_id"}, body
    assert isinstance(body["version"], str) and body["version"]
    assert isinstance(body["commit"], str) and body["commit"]
    cluster_id = admin_client(broker.bootstrap).list_topics(timeout=10).cluster_id
    assert body["kafka_cluster_id"] == cluster_id


def test_unknown_paths_and_methods_answer_with_an_error_body(worker):
    # [src] ConnectExceptionMapper turns the HTTP layer's own 404 and 405 into the usual
    # {"error_code", "message"} body.
    assert_error(worker.rest("GET", "/no-such-resource"), 404)
    assert_error(worker.rest("DELETE", "/connector-plugins"), 405)
    assert_error(worker.rest("POST", "/"), 405)


def test_connector_plugins_lists_the_file_connectors(worker):
    # [REST] GET /connector-plugins; [src] entities/PluginInfo: {"class", "type", "version"}, the
    # version left out when the plugin has none. [KIP-769] connectorsOnly defaults to true, so
    # only source and sink connectors are listed.
    status, plugins = worker.rest("GET", "/connector-plugins")
    assert status == 200 and isinstance(plugins, list), plugins
    for plugin in plugins:
        assert {"class", "type"} <= set(plugin) <= {"class", "type", "version"}, plugin
        assert plugin["type"] in ("source", "sink"), plugin
        assert isinstance(plugin.get("version", ""), str), plugin
    sources = [p for p in plugins if p["class"] in SOURCE_NAMES]
    sinks = [p for p in plugins if p["class"] in SINK_NAMES]
    assert len(sources) == 1 and sources[0]["type"] == "source", plugins
    assert len(sinks) == 1 and sinks[0]["type"] == "sink", plugins

    # [KIP-769] connectorsOnly=true is the default; connectorsOnly=false adds the other plugin
    # kinds (transformations, predicates, converters, header converters) to the same list.
    assert worker.rest("GET", "/connector-plugins?connectorsOnly=true") == (200, plugins)
    status, everything = worker.rest("GET", "/connector-plugins?connectorsOnly=false")
    assert status == 200 and isinstance(everything, list), everything
    assert all(plugin in everything for plugin in plugins), everything
    assert {plugin["type"] for plugin in everything} <= PLUGIN_TYPES, everything


@pytest.mark.parametrize("plugin", [SOURCE, SOURCE_CLASS])
def test_plugin_config_describes_the_file_source(worker, plugin):
    # [KIP-769] GET /connector-plugins/{plugin}/config: a list of key definitions, the plugin's own
    # keys and the framework's (name, connector.class, tasks.max, ...); the plugin may be named
    # by class or alias. The types, defaults and importance of file/topic/batch.size are those of
    # FileStreamSourceConnector's ConfigDef [src].
    status, keys = worker.rest("GET", f"/connector-plugins/{plugin}/config")
    assert status == 200 and isinstance(keys, list), keys
    for key in keys:
        assert set(key) == CONFIG_KEY_FIELDS, key
    by_name = {key["name"]: key for key in keys}
    assert {"file", "topic", "batch.size", "name", "connector.class", "tasks.max"} <= set(by_name), sorted(by_name)

    topic = by_name["topic"]
    assert (topic["type"], topic["required"], topic["default_value"], topic["importance"]) == (
        "STRING",
        True,
        None,
        "HIGH",
    ), topic
    file = by_name["file"]
    assert (file["type"], file["required"], file["default_value"]) == ("STRING", False, None), file
    batch = by_name["batch.size"]
    assert (batch["type"], batch["required"], batch["default_value"]) == ("INT", False, "2000"), batch
    tasks_max = by_name["tasks.max"]
    assert (tasks_max["type"], tasks_max["required"], tasks_max["default_value"]) == ("INT", False, "1"), tasks_max
    assert by_name["connector.class"]["required"] is True


def test_plugin_config_describes_the_file_sink(worker):
    # [KIP-769] as above; `topics` is the sink framework's key, a LIST [src SinkConnectorConfig].
    status, keys = worker.rest("GET", f"/connector-plugins/{SINK}/config")
    assert status == 200 and isinstance(keys, list), keys
    by_name = {key["name"]: key for key in keys}
    assert {"file", "topics", "name", "connector.class", "tasks.max"} <= set(by_name), sorted(by_name)
    assert by_name["topics"]["type"] == "LIST"
    assert (by_name["file"]["type"], by_name["file"]["required"]) == ("STRING", False)


def test_plugin_config_of_an_unknown_plugin_is_404(worker):
    # [src] AbstractHerder.connectorPluginConfig: a plugin that cannot be found is a 404 naming it.
    assert_error(worker.rest("GET", "/connector-plugins/NoSuchPlugin/config"), 404, "NoSuchPlugin")


# --- Validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path_plugin, body_class",
    [(SOURCE, SOURCE), (SOURCE, SOURCE_CLASS), (SOURCE_CLASS, SOURCE_CLASS), ("FileStreamSourceConnector", SOURCE)],
)
def test_validate_accepts_a_good_source_config(worker, tmp_path, path_plugin, body_class):
    # [REST] PUT /connector-plugins/{type}/config/validate answers 200 with a ConfigInfos:
    # {"name", "error_count", "groups", "configs": [{"definition": {...}, "value": {...}}]}
    # [src] the body must name the class in connector.class (the path is only checked against it,
    # "Connector" suffix aside); "name" is then the class as given in the body; `name` is a
    # required key like any other, so a good config carries it.
    body = {
        "connector.class": body_class,
        "name": unique_topic("rest-validate"),
        "tasks.max": "1",
        "file": str(tmp_path / "in.txt"),
        "topic": "validate-topic",
    }
    status, infos = worker.rest("PUT", f"/connector-plugins/{path_plugin}/config/validate", body)
    assert status == 200, infos
    assert set(infos) == {"name", "error_count", "groups", "configs"}, infos
    assert infos["name"] == body_class
    assert infos["error_count"] == 0, failing_keys(infos)
    assert isinstance(infos["groups"], list) and all(isinstance(group, str) for group in infos["groups"])
    assert isinstance(infos["configs"], list) and infos["configs"]
    for item in infos["configs"]:
        assert set(item) == {"definition", "value"}, item
        definition, value = item["definition"], item["value"]
        if definition is not None:
            assert set(definition) == CONFIG_KEY_FIELDS, definition
            # Every group a key belongs to is listed in "groups".
            assert definition["group"] is None or definition["group"] in infos["groups"], definition
        if value is not None:
            assert set(value) == CONFIG_VALUE_FIELDS, value
            assert isinstance(value["errors"], list) and isinstance(value["recommended_values"], list), value
            assert isinstance(value["visible"], bool), value
            if definition is not None:
                assert value["name"] == definition["name"], item
    given = config_values(infos)
    for key, sent in body.items():
        # Values come back as strings, as given.
        assert given[key]["value"] == sent, given[key]
        assert given[key]["errors"] == [], given[key]


def test_validate_attaches_errors_to_exactly_the_failing_keys(worker, tmp_path):
    # [REST] validation "returns suggested values and error messages": still HTTP 200, with
    # error_count > 0 [src AbstractHerder.generateResult: the number of error messages] and the
    # messages on the keys that fail: `topic` is required by FileStreamSource [src its ConfigDef],
    # `tasks.max` must be an INT.
    body = {
        "connector.class": SOURCE,
        "name": unique_topic("rest-validate-bad"),
        "file": str(tmp_path / "in.txt"),
        "tasks.max": "abc",
    }
    status, infos = worker.rest("PUT", f"/connector-plugins/{SOURCE}/config/validate", body)
    assert status == 200, infos
    failing = failing_keys(infos)
    assert set(failing) == {"topic", "tasks.max"}, failing
    assert infos["error_count"] == sum(len(errors) for errors in failing.values()) > 0, infos["error_count"]
    for errors in failing.values():
        assert all(isinstance(message, str) and message for message in errors), failing


def test_validate_of_a_sink_without_topics_flags_topics(worker, tmp_path):
    # [src SinkConnectorConfig.validate] a sink needs `topics` or `topics.regex`; the error sits on
    # both keys (the second only where the worker knows topics.regex).
    body = {"connector.class": SINK, "name": unique_topic("rest-validate-sink"), "file": str(tmp_path / "out.txt")}
    status, infos = worker.rest("PUT", f"/connector-plugins/{SINK}/config/validate", body)
    assert status == 200, infos
    failing = failing_keys(infos)
    assert "topics" in failing and set(failing) <= {"topics", "topics.regex"}, failing
    assert infos["error_count"] > 0


def test_validate_refuses_a_body_without_or_against_the_plugin_class(worker, tmp_path):
    good = {"name": "x", "file": str(tmp_path / "in.txt"), "topic": "t", "tasks.max": "1"}
    # [src ConnectorPluginsResource] connector.class naming another plugin than the path: 400.
    assert_error(
        worker.rest("PUT", f"/connector-plugins/{SINK}/config/validate", {**good, "connector.class": SOURCE}), 400
    )
    # [src AbstractHerder.validateConnectorConfig] no connector.class in the body: 400.
    assert_error(worker.rest("PUT", f"/connector-plugins/{SOURCE}/config/validate", good), 400)


@pytest.mark.parametrize("where", ["validate", "create"])
def test_an_unknown_connector_class_is_refused(worker, tmp_path, where):
    # [src] Kafka answers 500 here (Plugins.newConnector throws a plain ConnectException, which the
    # exception mapper turns into a 500 "Failed to find any class that implements Connector...").
    # A 400 or 404 is the obvious fix; any of the three is accepted, with the error body's shape.
    config = {"connector.class": "NoSuchConnector", "name": "x", "file": str(tmp_path / "in.txt"), "topic": "t"}
    if where == "validate":
        reply = worker.call("PUT", "/connector-plugins/NoSuchConnector/config/validate", config)
    else:
        name = unique_topic("rest-noclass")
        reply = worker.call("POST", "/connectors", {"name": name, "config": {**config, "name": name}})
    assert reply.status in (400, 404, 500), (reply.status, reply.text)
    assert_error_body(reply.status, reply.body, "NoSuchConnector")
    if where == "create":
        assert worker.rest("GET", f"/connectors/{name}")[0] == 404


# --- Create, read, update ------------------------------------------------------------------------


def test_create_answers_201_with_the_connector_and_refuses_a_duplicate(worker, broker, tmp_path):
    topic = unique_topic("rest-create")
    create_topic(broker.bootstrap, topic)
    path = tmp_path / "in.txt"
    path.write_text("")
    name = unique_topic("rest-create")
    config = source_config(path, topic)

    # [REST] POST /connectors {"name", "config"}; [src] 201 with a Location header and a
    # ConnectorInfo body {"name", "config", "tasks": [{"connector", "task"}], "type"}; the stored
    # config gains "name"; the standalone worker answers once the task configs exist.
    reply = worker.call("POST", "/connectors", {"name": name, "config": config})
    assert reply.status == 201, reply.text
    expected_config = {**config, "name": name}
    expected_info = {
        "name": name,
        "config": expected_config,
        "tasks": [{"connector": name, "task": 0}],
        "type": "source",
    }
    assert reply.body == expected_info
    assert (reply.headers.get("Location") or "").endswith(f"/connectors/{name}"), dict(reply.headers)

    # [REST] GET /connectors/{name}, GET /connectors/{name}/config, GET /connectors (a JSON list).
    assert worker.rest("GET", f"/connectors/{name}") == (200, expected_info)
    assert worker.rest("GET", f"/connectors/{name}/config") == (200, expected_config)
    status, names = worker.rest("GET", "/connectors")
    assert status == 200 and isinstance(names, list) and name in names, names

    # [src] a second POST with the same name: 409 Conflict, naming the connector; nothing changes.
    other = source_config(path, topic, {"batch.size": "7"})
    assert_error(worker.rest("POST", "/connectors", {"name": name, "config": other}), 409, name)
    assert worker.rest("GET", f"/connectors/{name}/config") == (200, expected_config)


def test_create_takes_json_numbers_as_config_strings(worker, broker, tmp_path):
    # [src] Kafka reads config values into a map of strings and its JSON reader turns scalars into
    # their text, so {"tasks.max": 1} is accepted and stored as "1" (the API documents strings).
    topic = unique_topic("rest-numbers")
    create_topic(broker.bootstrap, topic)
    name = unique_topic("rest-numbers")
    config = {
        "connector.class": SOURCE,
        "tasks.max": 1,
        "batch.size": 100,
        "file": str(tmp_path / "in.txt"),
        "topic": topic,
    }
    info = create(worker, name, config)
    assert info["config"]["tasks.max"] == "1" and info["config"]["batch.size"] == "100", info
    status, stored = worker.rest("GET", f"/connectors/{name}/config")
    assert status == 200 and stored["tasks.max"] == "1" and stored["batch.size"] == "100", stored


def test_create_refuses_invalid_configs_with_400(worker, tmp_path):
    path = tmp_path / "in.txt"
    # [src StandaloneHerder/AbstractHerder.maybeAddConfigErrors] a config failing validation: 400,
    # the message listing the errors (here the missing `topic`); nothing is created.
    name = unique_topic("rest-invalid")
    config = {"connector.class": SOURCE, "tasks.max": "1", "file": str(path)}
    assert_error(worker.rest("POST", "/connectors", {"name": name, "config": config}), 400, "topic")
    assert_error(worker.rest("GET", f"/connectors/{name}"), 404, name)

    # [src] no connector.class at all: 400.
    assert_error(worker.rest("POST", "/connectors", {"name": name, "config": {"file": str(path), "topic": "t"}}), 400)
    assert worker.rest("GET", f"/connectors/{name}")[0] == 404

    # [src ConnectorsResource] a "name" inside config that differs from the connector's name: 400
    # naming both, on POST /connectors and on PUT /connectors/{name}/config.
    other = unique_topic("rest-other")
    config = source_config(path, "t", {"name": other})
    assert_error(worker.rest("POST", "/connectors", {"name": name, "config": config}), 400, name, other)
    assert_error(worker.rest("PUT", f"/connectors/{name}/config", config), 400, name, other)
    assert worker.rest("GET", f"/connectors/{name}")[0] == 404
    assert worker.rest("GET", f"/connectors/{other}")[0] == 404


def test_put_config_creates_with_201_then_updates_with_200(worker, broker, tmp_path):
    topic = unique_topic("rest-put")
    create_topic(broker.bootstrap, topic)
    name = unique_topic("rest-put")
    config = source_config(tmp_path / "in.txt", topic)

    # [REST] PUT /connectors/{name}/config; [src] 201 + Location when it creates the connector,
    # 200 when it replaces the config; both answer with the ConnectorInfo.
    reply = worker.call("PUT", f"/connectors/{name}/config", config)
    assert reply.status == 201, reply.text
    assert reply.body["name"] == name and reply.body["type"] == "source", reply.body
    assert reply.body["config"] == {**config, "name": name}
    assert (reply.headers.get("Location") or "").endswith(f"/connectors/{name}"), dict(reply.headers)
    wait_for_state(worker, name, "RUNNING", ["RUNNING"])

    updated = {**config, "batch.size": "10"}
    status, info = worker.rest("PUT", f"/connectors/{name}/config", updated)
    assert status == 200, info
    assert info["name"] == name and info["config"] == {**updated, "name": name} and info["type"] == "source", info
    assert isinstance(info["tasks"], list)
    assert worker.rest("GET", f"/connectors/{name}/config") == (200, {**updated, "name": name})
    wait_for_state(worker, name, "RUNNING", ["RUNNING"])


def test_patch_config_merges_and_null_removes_a_key(worker, broker, tmp_path):
    topic = unique_topic("rest-patch")
    create_topic(broker.bootstrap, topic)
    name = unique_topic("rest-patch")
    config = source_config(tmp_path / "in.txt", topic, {"batch.size": "100"})
    create(worker, name, config)

    # [KIP-477] PATCH /connectors/{name}/config: the body is merged into the current config, a
    # null value removes the key; 200 with the ConnectorInfo [src].
    status, info = worker.rest("PATCH", f"/connectors/{name}/config", {"batch.size": None, "tasks.max": "2"})
    expected = {key: value for key, value in config.items() if key != "batch.size"}
    expected.update({"tasks.max": "2", "name": name})
    assert status == 200, info
    assert info["name"] == name and info["config"] == expected and info["type"] == "source", info
    assert worker.rest("GET", f"/connectors/{name}/config") == (200, expected)
    wait_for_state(worker, name, "RUNNING", ["RUNNING"])

    # [KIP-477] the patched config is validated like a PUT: removing the required `topic` is a 400
    # and the config stays as it was.
    assert_error(worker.rest("PATCH", f"/connectors/{name}/config", {"topic": None}), 400)
    assert worker.rest("GET", f"/connectors/{name}/config") == (200, expected)


# --- Running: status, tasks, expand ------------------------------------------------------------


def test_a_running_source_reports_status_and_tasks(worker, broker, tmp_path):
    lines = ["first line", "second line", "third line"]
    name, path, topic = running_source(worker, broker, tmp_path, lines)
    assert_values_carry(values(broker.bootstrap, topic), lines)

    # [REST] GET /connectors/{name}/status (the example under "connector and task states"):
    # {"name", "connector": {"state", "worker_id"}, "tasks": [{"id", "state", "worker_id"}],
    # "type"}; [src] a "trace" appears only for a failure.
    status, body = worker.rest("GET", f"/connectors/{name}/status")
    assert status == 200, body
    assert set(body) == {"name", "connector", "tasks", "type"}, body
    assert body["name"] == name and body["type"] == "source"
    assert set(body["connector"]) == {"state", "worker_id"}, body
    assert body["connector"]["state"] == "RUNNING"
    assert isinstance(body["connector"]["worker_id"], str) and body["connector"]["worker_id"]
    [task] = body["tasks"]
    assert set(task) == {"id", "state", "worker_id"} and task["id"] == 0 and task["state"] == "RUNNING", task

    # [REST] GET /connectors/{name}/tasks: [{"id": {"connector", "task"}, "config": {...}}]; the
    # file source hands its own config to its single task.
    status, tasks = worker.rest("GET", f"/connectors/{name}/tasks")
    assert status == 200 and isinstance(tasks, list) and len(tasks) == 1, tasks
    assert set(tasks[0]) == {"id", "config"}, tasks
    assert tasks[0]["id"] == {"connector": name, "task": 0}
    assert tasks[0]["config"]["file"] == str(path) and tasks[0]["config"]["topic"] == topic, tasks

    # [REST] GET /connectors/{name}/tasks/{id}/status: one task's {"id", "state", "worker_id"}.
    status, task_status = worker.rest("GET", f"/connectors/{name}/tasks/0/status")
    assert status == 200, task_status
    assert task_status == {"id": 0, "state": "RUNNING", "worker_id": task["worker_id"]}
    # [src AbstractHerder.taskStatus] a task that does not exist: 404 naming it.
    assert_error(worker.rest("GET", f"/connectors/{name}/tasks/5/status"), 404, name)

    # Lines appended later flow too.
    write_lines(path, ["fourth line"], mode="a")
    wait_for_records(broker.bootstrap, topic, 4)


def test_a_sink_with_two_tasks_lists_both(worker, broker, tmp_path):
    # [src FileStreamSinkConnector.taskConfigs] one task config per tasks.max.
    topic = unique_topic("rest-sink2")
    create_topic(broker.bootstrap, topic)
    name = unique_topic("rest-sink2")
    info = create(worker, name, sink_config(tmp_path / "out.txt", topic, {"tasks.max": "2"}))
    assert info["type"] == "sink", info
    body = wait_for_state(worker, name, "RUNNING", ["RUNNING", "RUNNING"])
    assert body["type"] == "sink"
    status, tasks = worker.rest("GET", f"/connectors/{name}/tasks")
    assert status == 200 and [task["id"] for task in tasks] == [
        {"connector": name, "task": 0},
        {"connector": name, "task": 1},
    ], tasks


def test_list_connectors_expands_status_and_info(worker, broker, tmp_path):
    name, _, _ = running_source(worker, broker, tmp_path, [])
    info = worker.rest("GET", f"/connectors/{name}")[1]

    # [src ConnectorsResource.listConnectors] with ?expand=..., an object keyed by connector name,
    # each holding the requested expansions; expand may repeat; unknown expansions are ignored.
    status, body = worker.rest("GET", "/connectors?expand=status&expand=info")
    assert status == 200 and isinstance(body, dict) and name in body, body
    entry = body[name]
    assert set(entry) == {"status", "info"}, entry
    assert entry["info"] == info
    assert entry["status"]["name"] == name and entry["status"]["type"] == "source", entry
    assert entry["status"]["connector"]["state"] == "RUNNING", entry
    assert task_states(entry["status"]) == ["RUNNING"], entry

    status, body = worker.rest("GET", "/connectors?expand=info")
    assert status == 200 and set(body[name]) == {"info"} and body[name]["info"] == info, body
    status, body = worker.rest("GET", "/connectors?expand=status")
    assert status == 200 and set(body[name]) == {"status"}, body
    status, body = worker.rest("GET", "/connectors?expand=nonsense")
    assert status == 200 and body[name] == {}, body


# --- Pause, resume, stop, initial state ------------------------------------------------------------


def test_pause_resume_and_stop(worker, broker, tmp_path):
    name, _, _ = running_source(worker, broker, tmp_path, ["a", "b"])

    # [REST] PUT /pause; [src] 202 Accepted without a body; idempotent. Connector and task go
    # PAUSED (asynchronously: poll).
    reply = worker.call("PUT", f"/connectors/{name}/pause")
    assert reply.status == 202 and reply.body is None, (reply.status, reply.text)
    wait_for_state(worker, name, "PAUSED", ["PAUSED"])
    assert worker.call("PUT", f"/connectors/{name}/pause").status == 202

    # [REST] PUT /resume; [src] 202.
    reply = worker.call("PUT", f"/connectors/{name}/resume")
    assert reply.status == 202 and reply.body is None, (reply.status, reply.text)
    wait_for_state(worker, name, "RUNNING", ["RUNNING"])

    # [REST]/[KIP-875] PUT /stop shuts the tasks down; [src] 204 No Content; idempotent. A stopped
    # connector has no tasks: none in its status [REST "STOPPED"], none in its info or task list.
    reply = worker.call("PUT", f"/connectors/{name}/stop")
    assert reply.status == 204 and reply.text == "", (reply.status, reply.text)
    wait_for_state(worker, name, "STOPPED", [])
    assert worker.rest("GET", f"/connectors/{name}")[1]["tasks"] == []
    assert worker.rest("GET", f"/connectors/{name}/tasks") == (200, [])
    assert worker.call("PUT", f"/connectors/{name}/stop").status == 204

    # [REST] resume works on a stopped connector as on a paused one.
    assert worker.call("PUT", f"/connectors/{name}/resume").status == 202
    wait_for_state(worker, name, "RUNNING", ["RUNNING"])
    assert worker.rest("GET", f"/connectors/{name}")[1]["tasks"] == [{"connector": name, "task": 0}]


@pytest.mark.parametrize("initial_state", ["PAUSED", "STOPPED"])
def test_create_in_an_initial_state(worker, broker, tmp_path, initial_state):
    # [KIP-980]/[REST] POST /connectors accepts "initial_state": RUNNING (the default), PAUSED or
    # STOPPED. The connector then reads nothing until resumed. [src] A connector created STOPPED
    # has no tasks; one created PAUSED may list paused tasks (Kafka's standalone worker lists
    # none until it is resumed).
    lines = ["one", "two", "three"]
    topic = unique_topic("rest-initial")
    create_topic(broker.bootstrap, topic)
    path = tmp_path / "in.txt"
    write_lines(path, lines)
    name = unique_topic("rest-initial")
    info = create(worker, name, source_config(path, topic), initial_state=initial_state)
    assert info["name"] == name and info["config"] == {**source_config(path, topic), "name": name}, info
    if initial_state == "STOPPED":
        assert info["tasks"] == [], info
        wait_for_state(worker, name, "STOPPED", [])
    else:
        body = wait_for_state(worker, name, "PAUSED", None)
        assert all(state == "PAUSED" for state in task_states(body)), body
    time.sleep(SETTLE_S)
    assert high_watermark(broker.bootstrap, topic) == 0, f"a {initial_state} connector produced records"

    assert worker.call("PUT", f"/connectors/{name}/resume").status == 202
    wait_for_state(worker, name, "RUNNING", ["RUNNING"])
    wait_for_records(broker.bootstrap, topic, len(lines), settle=True)
    assert_values_carry(values(broker.bootstrap, topic), lines)


# --- Restarts ----------------------------------------------------------------------------------


def test_restart_connector_and_tasks(worker, broker, tmp_path):
    name, _, _ = running_source(worker, broker, tmp_path, ["x"])

    # [KIP-745] without includeTasks/onlyFailed (both default to false), or with both false
    # explicitly, only the connector instance restarts and the answer is 204 without a body, as
    # before KIP-745.
    reply = worker.call("POST", f"/connectors/{name}/restart")
    assert reply.status == 204 and reply.text == "", (reply.status, reply.text)
    wait_for_state(worker, name, "RUNNING", ["RUNNING"])
    reply = worker.call("POST", f"/connectors/{name}/restart?includeTasks=false&onlyFailed=false")
    assert reply.status == 204, (reply.status, reply.text)
    wait_for_state(worker, name, "RUNNING", ["RUNNING"])

    # [KIP-745] includeTasks=true&onlyFailed=false: 202 Accepted with the connector's status as
    # the restart plan has it: everything restarted shows RESTARTING.
    status, body = worker.rest("POST", f"/connectors/{name}/restart?includeTasks=true&onlyFailed=false")
    assert status == 202, body
    assert set(body) == {"name", "connector", "tasks", "type"} and body["name"] == name, body
    assert body["connector"]["state"] == "RESTARTING", body
    assert task_states(body) == ["RESTARTING"], body
    wait_for_state(worker, name, "RUNNING", ["RUNNING"])

    # [KIP-745] onlyFailed=true restarts only FAILED instances: nothing here, so the 202 answer
    # shows everything still RUNNING.
    status, body = worker.rest("POST", f"/connectors/{name}/restart?includeTasks=true&onlyFailed=true")
    assert status == 202, body
    assert body["connector"]["state"] == "RUNNING" and task_states(body) == ["RUNNING"], body


def test_restart_one_task(worker, broker, tmp_path):
    name, _, _ = running_source(worker, broker, tmp_path, ["y"])
    # [REST] POST /connectors/{name}/tasks/{id}/restart; [src] 204 without a body.
    reply = worker.call("POST", f"/connectors/{name}/tasks/0/restart")
    assert reply.status == 204 and reply.text == "", (reply.status, reply.text)
    wait_for_state(worker, name, "RUNNING", ["RUNNING"])
    # [src StandaloneHerder.restartTask] a task the connector does not have: 404 naming it.
    assert_error(worker.rest("POST", f"/connectors/{name}/tasks/9/restart"), 404, name)


# --- Offsets (KIP-875) ---------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_source_offsets_read_alter_and_reset(worker, broker, tmp_path):
    lines = ["alpha", "bravo", "charlie"]
    size = sum(len(line) + 1 for line in lines)
    name, path, topic = running_source(worker, broker, tmp_path, lines)
    partition = {"filename": str(path)}

    # [KIP-875] GET /offsets works in any state: {"offsets": [{"partition", "offset"}]}.
    status, body = worker.rest("GET", f"/connectors/{name}/offsets")
    assert status == 200, body
    assert_offsets_shape(body)

    # [KIP-875]/[REST] offsets may be altered or reset only while the connector is STOPPED; [src]
    # otherwise 400, the message naming the STOPPED state (and the /stop endpoint). PAUSED is not
    # enough.
    alter_to_start = {"offsets": [{"partition": partition, "offset": {"position": 0}}]}
    assert_error(worker.rest("PATCH", f"/connectors/{name}/offsets", alter_to_start), 400, "STOPPED")
    assert_error(worker.rest("DELETE", f"/connectors/{name}/offsets"), 400, "STOPPED")
    assert worker.call("PUT", f"/connectors/{name}/pause").status == 202
    wait_for_state(worker, name, "PAUSED", ["PAUSED"])
    assert_error(worker.rest("PATCH", f"/connectors/{name}/offsets", alter_to_start), 400, "STOPPED")

    # [REST] the file source's partition is {"filename": <the file config>} and its offset
    # {"position": <bytes consumed, newlines included>} [src FileStreamSourceTask]. Stopping
    # commits the task's last offsets.
    assert worker.call("PUT", f"/connectors/{name}/stop").status == 204
    wait_for_state(worker, name, "STOPPED", [])
    wait_for_offsets(worker, name, [{"partition": partition, "offset": {"position": size}}])

    # [KIP-875] PATCH /offsets when STOPPED: 200 with {"message": ...} [src entities/Message]
    # saying the offsets were altered; GET shows the new offset; on resume the source reads from it.
    skip_first = len(lines[0]) + 1
    status, body = worker.rest(
        "PATCH",
        f"/connectors/{name}/offsets",
        {"offsets": [{"partition": partition, "offset": {"position": skip_first}}]},
    )
    assert status == 200, body
    assert set(body) == {"message"} and "altered" in body["message"] and "success" in body["message"], body
    wait_for_offsets(worker, name, [{"partition": partition, "offset": {"position": skip_first}}])
    assert worker.call("PUT", f"/connectors/{name}/resume").status == 202
    wait_for_records(broker.bootstrap, topic, len(lines) + 2, settle=True)
    assert_values_carry(values(broker.bootstrap, topic)[len(lines) :], lines[1:])

    # [KIP-875] DELETE /offsets when STOPPED: 200 with a message saying they were reset; GET then
    # lists no offset for the file, and on resume the source reads the file from its start.
    assert worker.call("PUT", f"/connectors/{name}/stop").status == 204
    wait_for_state(worker, name, "STOPPED", [])
    wait_for_offsets(worker, name, [{"partition": partition, "offset": {"position": size}}])
    status, body = worker.rest("DELETE", f"/connectors/{name}/offsets")
    assert status == 200, body
    assert set(body) == {"message"} and "reset" in body["message"] and "success" in body["message"], body
    wait_for_offsets(worker, name, [])
    assert worker.call("PUT", f"/connectors/{name}/resume").status == 202
    wait_for_records(broker.bootstrap, topic, 2 * len(lines) + 2, settle=True)
    assert_values_carry(values(broker.bootstrap, topic)[len(lines) + 2 :], lines)


def test_offsets_can_be_set_before_a_stopped_connector_first_runs(worker, broker, tmp_path):
    # [KIP-980] the reason for initial_state=STOPPED: create the connector, set its offsets
    # [KIP-875], then let it run from there.
    lines = ["skip me", "keep me", "and me"]
    topic = unique_topic("rest-presets")
    create_topic(broker.bootstrap, topic)
    path = tmp_path / "in.txt"
    write_lines(path, lines)
    name = unique_topic("rest-presets")
    create(worker, name, source_config(path, topic), initial_state="STOPPED")
    wait_for_state(worker, name, "STOPPED", [])
    assert worker.rest("GET", f"/connectors/{name}/offsets") == (200, {"offsets": []})

    partition = {"filename": str(path)}
    offset = {"position": len(lines[0]) + 1}
    status, body = worker.rest(
        "PATCH", f"/connectors/{name}/offsets", {"offsets": [{"partition": partition, "offset": offset}]}
    )
    assert status == 200 and set(body) == {"message"}, body
    wait_for_offsets(worker, name, [{"partition": partition, "offset": offset}])

    assert worker.call("PUT", f"/connectors/{name}/resume").status == 202
    wait_for_records(broker.bootstrap, topic, len(lines) - 1, settle=True)
    assert_values_carry(values(broker.bootstrap, topic), lines[1:])


@pytest.mark.timeout(240)
def test_sink_offsets_read_alter_and_reset(worker, broker, tmp_path):
    # The sink reads what a file source wrote, so both ends use the worker's own converter.
    lines = ["one", "two", "three"]
    _, _, topic = running_source(worker, broker, tmp_path, lines, prefix="rest-feed")
    out = tmp_path / "out.txt"
    name = unique_topic("rest-sink")
    create(worker, name, sink_config(out, topic))
    wait_for_state(worker, name, "RUNNING", ["RUNNING"])
    wait_for_file_lines(out, lines)

    status, body = worker.rest("GET", f"/connectors/{name}/offsets")
    assert status == 200, body
    assert_offsets_shape(body)
    partition = {"kafka_topic": topic, "kafka_partition": 0}
    rewind = {"offsets": [{"partition": partition, "offset": {"kafka_offset": 0}}]}
    assert_error(worker.rest("PATCH", f"/connectors/{name}/offsets", rewind), 400, "STOPPED")

    # [REST]/[KIP-875] a sink's offsets have one shape for every sink connector: partition
    # {"kafka_topic", "kafka_partition"}, offset {"kafka_offset": <next offset to read>}.
    assert worker.call("PUT", f"/connectors/{name}/stop").status == 204
    wait_for_state(worker, name, "STOPPED", [])
    wait_for_offsets(worker, name, [{"partition": partition, "offset": {"kafka_offset": len(lines)}}])

    # [src SinkUtils] a sink partition without kafka_partition: 400.
    assert_error(
        worker.rest(
            "PATCH",
            f"/connectors/{name}/offsets",
            {"offsets": [{"partition": {"kafka_topic": topic}, "offset": {"kafka_offset": 1}}]},
        ),
        400,
    )

    # [KIP-875] alter to offset 1: 200, message says altered; on resume the sink delivers the
    # records from offset 1 again.
    status, body = worker.rest(
        "PATCH", f"/connectors/{name}/offsets", {"offsets": [{"partition": partition, "offset": {"kafka_offset": 1}}]}
    )
    assert status == 200, body
    assert set(body) == {"message"} and "altered" in body["message"] and "success" in body["message"], body
    wait_for_offsets(worker, name, [{"partition": partition, "offset": {"kafka_offset": 1}}])
    assert worker.call("PUT", f"/connectors/{name}/resume").status == 202
    wait_for_file_lines(out, lines + lines[1:])

    # [KIP-875] reset: 200, message says reset, no offsets left; [src Worker] a sink without
    # committed offsets starts from the earliest record, so it delivers everything once more.
    assert worker.call("PUT", f"/connectors/{name}/stop").status == 204
    wait_for_state(worker, name, "STOPPED", [])
    wait_for_offsets(worker, name, [{"partition": partition, "offset": {"kafka_offset": len(lines)}}])
    status, body = worker.rest("DELETE", f"/connectors/{name}/offsets")
    assert status == 200, body
    assert set(body) == {"message"} and "reset" in body["message"] and "success" in body["message"], body
    wait_for_offsets(worker, name, [])
    assert worker.call("PUT", f"/connectors/{name}/resume").status == 202
    wait_for_file_lines(out, lines + lines[1:] + lines)


def test_altering_offsets_needs_a_non_empty_list(worker, broker, tmp_path):
    # [src ConnectorsResource.alterConnectorOffsets] no "offsets", or an empty list: 400 (checked
    # before the connector's state).
    name = unique_topic("rest-emptyoffsets")
    create(worker, name, source_config(tmp_path / "in.txt", "t"), initial_state="STOPPED")
    assert_error(worker.rest("PATCH", f"/connectors/{name}/offsets", {"offsets": []}), 400)
    assert_error(worker.rest("PATCH", f"/connectors/{name}/offsets", {}), 400)


# --- Active topics (KIP-558) ---------------------------------------------------------------------


def test_active_topics_and_their_reset(worker, broker, tmp_path):
    name, path, topic = running_source(worker, broker, tmp_path, ["to the topic"])

    # [REST]/[KIP-558] GET /connectors/{name}/topics: {"<name>": {"topics": [...]}}, the topics
    # the connector has used since it was created or since the last reset.
    def topics_are(expected: list[str]) -> bool:
        status, body = worker.rest("GET", f"/connectors/{name}/topics")
        return status == 200 and body == {name: {"topics": expected}}

    wait_until(lambda: topics_are([topic]), STATE_TIMEOUT_S, f"{name} using {topic}",
               lambda: repr(worker.rest("GET", f"/connectors/{name}/topics")), 0.2)

    # [REST]/[KIP-558] PUT /topics/reset empties the set; [src] 202 without a body.
    reply = worker.call("PUT", f"/connectors/{name}/topics/reset")
    assert reply.status == 202 and reply.body is None, (reply.status, reply.text)
    wait_until(lambda: topics_are([]), STATE_TIMEOUT_S, f"{name} using no topic after the reset",
               lambda: repr(worker.rest("GET", f"/connectors/{name}/topics")), 0.2)

    # The set fills again from the connector's later use of topics.
    write_lines(path, ["again"], mode="a")
    wait_until(lambda: topics_are([topic]), DATA_TIMEOUT_S, f"{name} using {topic} again",
               lambda: repr(worker.rest("GET", f"/connectors/{name}/topics")), 0.2)


def test_active_topics_of_an_unknown_connector(worker):
    # [src] Kafka does not check that the connector exists here: 200 {"<name>": {"topics": []}}
    # and 202 for the reset. A 404 is the obvious fix and is accepted too.
    name = unique_topic("rest-nosuch")
    status, body = worker.rest("GET", f"/connectors/{name}/topics")
    if status == 200:
        assert body == {name: {"topics": []}}, body
    else:
        assert_error((status, body), 404, name)
    status, body = worker.rest("PUT", f"/connectors/{name}/topics/reset")
    if status != 202:
        assert_error((status, body), 404, name)


# --- Delete and unknown connectors ---------------------------------------------------------------


def test_delete_then_every_lookup_is_404(worker, broker, tmp_path):
    name, _, _ = running_source(worker, broker, tmp_path, [])
    # [REST] DELETE /connectors/{name}; [src] 204 without a body.
    reply = worker.call("DELETE", f"/connectors/{name}")
    assert reply.status == 204 and reply.text == "", (reply.status, reply.text)
    # [src] afterwards 404 {"error_code": 404, "message": "... <name> ..."}.
    assert_error(worker.rest("GET", f"/connectors/{name}"), 404, name)
    assert_error(worker.rest("GET", f"/connectors/{name}/status"), 404, name)
    assert_error(worker.rest("DELETE", f"/connectors/{name}"), 404, name)
    assert name not in worker.rest("GET", "/connectors")[1]


UNKNOWN_CONNECTOR_CALLS = [
    ("GET", "/connectors/{name}", None),
    ("GET", "/connectors/{name}/config", None),
    ("PATCH", "/connectors/{name}/config", {"batch.size": "5"}),
    ("GET", "/connectors/{name}/status", None),
    ("GET", "/connectors/{name}/tasks", None),
    ("GET", "/connectors/{name}/tasks/0/status", None),
    ("POST", "/connectors/{name}/tasks/0/restart", None),
    ("PUT", "/connectors/{name}/pause", None),
    ("PUT", "/connectors/{name}/resume", None),
    ("PUT", "/connectors/{name}/stop", None),
    ("POST", "/connectors/{name}/restart", None),
    ("POST", "/connectors/{name}/restart?includeTasks=true&onlyFailed=false", None),
    ("DELETE", "/connectors/{name}", None),
    ("GET", "/connectors/{name}/offsets", None),
    (
        "PATCH",
        "/connectors/{name}/offsets",
        {"offsets": [{"partition": {"filename": "/nowhere"}, "offset": {"position": 0}}]},
    ),
    ("DELETE", "/connectors/{name}/offsets", None),
]


@pytest.mark.parametrize(
    "method, path, body",
    UNKNOWN_CONNECTOR_CALLS,
    ids=[f"{method} {path}" for method, path, _ in UNKNOWN_CONNECTOR_CALLS],
)
def test_an_unknown_connector_is_404(worker, method, path, body):
    # [src] every connector-scoped endpoint answers 404 naming the connector (Kafka's messages:
    # "Connector <name> not found", "Unknown connector <name>", "No status found for connector
    # <name>", "No status found for task <name>-0"). Kafka's standalone worker answers PUT /stop
    # for an unknown connector with a 500 (an IllegalArgumentException from its config store);
    # its distributed worker answers 404, as expected here.
    name = unique_topic("rest-nosuch")
    assert_error(worker.rest(method, path.format(name=name), body), 404, name)


# --- Request bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/connectors"),
        ("PUT", "/connectors/rest-malformed/config"),
        ("PATCH", "/connectors/rest-malformed/config"),
        ("PUT", f"/connector-plugins/{SOURCE}/config/validate"),
        ("PATCH", "/connectors/rest-malformed/offsets"),
    ],
)
def test_a_malformed_json_body_is_refused(worker, method, path):
    # [src] Kafka lets the JSON parser's exception reach its generic mapper: HTTP 500 with
    # {"error_code": 500, "message": "Unexpected character ..."}. 400 is the better answer; both
    # are accepted, with the error body's shape. Nothing may be created, and the worker lives on.
    reply = worker.call(method, path, data=b'{"name": "rest-malformed", "config": {"topic": ')
    assert reply.status in (400, 500), (reply.status, reply.text)
    assert_error_body(reply.status, reply.body)
    assert worker.rest("GET", "/connectors/rest-malformed")[0] == 404
    assert worker.rest("GET", "/")[0] == 200


def test_a_body_that_is_not_json_by_content_type_is_415(worker, tmp_path):
    # [src] the resources consume application/json only: another Content-Type (curl's default for
    # -d is application/x-www-form-urlencoded) is 415 Unsupported Media Type, with the error body.
    name = unique_topic("rest-415")
    body = json.dumps({"name": name, "config": source_config(tmp_path / "in.txt", "t")}).encode()
    reply = worker.call("POST", "/connectors", data=body, content_type="application/x-www-form-urlencoded")
    assert_error(reply, 415)
    assert worker.rest("GET", f"/connectors/{name}")[0] == 404


# --- Secrets: config placeholders (KIP-297, KIP-887) --------------------------------------------


def test_config_placeholders_are_stored_and_shown_unresolved(worker, broker):
    # [KIP-297]/[KIP-887] `${env:VAR}` and `${file:PATH:KEY}` are resolved when the connector and its
    # tasks start; the REST API keeps showing the placeholders (the connector's config, its info,
    # the expanded list and the task configs, for which Kafka writes the placeholders back), so a
    # secret never leaves the worker through it. (Kafka needs config.providers=env,file in the
    # worker config for this; the runnel worker is expected to offer both.)
    source_file = Path(worker.env[ENV_SOURCE_FILE])
    lines = ["secret one", "secret two"]
    write_lines(source_file, lines)
    topic = unique_topic("rest-secret")
    create_topic(broker.bootstrap, topic)
    secrets = worker.work_dir / "secrets.properties"
    secrets.write_text(f"# the real topic\ntopic={topic}\n", encoding="utf-8")

    name = unique_topic("rest-secret")
    config = {
        "connector.class": SOURCE,
        "tasks.max": "1",
        "file": "${env:" + ENV_SOURCE_FILE + "}",
        "topic": "${file:" + str(secrets) + ":topic}",
    }
    expected_config = {**config, "name": name}
    info = create(worker, name, config)
    assert info["config"] == expected_config, info
    assert worker.rest("GET", f"/connectors/{name}/config") == (200, expected_config)
    assert worker.rest("GET", f"/connectors/{name}")[1]["config"] == expected_config
    assert worker.rest("GET", "/connectors?expand=info")[1][name]["info"]["config"] == expected_config

    # The resolved values do work: the file named by the variable lands in the topic named in the
    # properties file.
    wait_for_state(worker, name, "RUNNING", ["RUNNING"])
    wait_for_records(broker.bootstrap, topic, len(lines))
    assert_values_carry(values(broker.bootstrap, topic), lines)

    status, tasks = worker.rest("GET", f"/connectors/{name}/tasks")
    assert status == 200 and tasks, tasks
    for task in tasks:
        shown = json.dumps(task["config"])
        assert str(source_file) not in shown and topic not in shown, f"resolved secret in task config: {task}"

    # Validation shows the values as written too, where Kafka shows them resolved: a validate
    # call must not be a way to read a secret.
    status, infos = worker.rest("PUT", f"/connector-plugins/{SOURCE}/config/validate", {**config, "name": name})
    assert status == 200 and infos["error_count"] == 0, infos
    shown = json.dumps(infos)
    assert str(source_file) not in shown and topic not in shown, f"resolved secret in validation: {infos}"
    assert config_values(infos)["topic"]["value"] == config["topic"], infos


# --- Connector files on the command line ------------------------------------------------------------


def test_connector_files_given_on_the_command_line_are_started(worker_factory, worker, broker, tmp_path):
    # [REST docs, standalone mode] each file after the worker config is a connector config: a JSON
    # object shaped like the body of POST /connectors ({"name", "config"}) or of PUT
    # /connectors/{name}/config (the flat config, with "name").
    topic_a = unique_topic("rest-file-a")
    topic_b = unique_topic("rest-file-b")
    for topic in (topic_a, topic_b):
        create_topic(broker.bootstrap, topic)
    input_a, input_b = tmp_path / "a.txt", tmp_path / "b.txt"
    write_lines(input_a, ["from a"])
    write_lines(input_b, ["from b"])
    name_a, name_b = unique_topic("rest-file-a"), unique_topic("rest-file-b")
    post_shaped = tmp_path / "a.json"
    post_shaped.write_text(json.dumps({"name": name_a, "config": source_config(input_a, topic_a)}))
    put_shaped = tmp_path / "b.json"
    put_shaped.write_text(json.dumps({**source_config(input_b, topic_b), "name": name_b}))

    second = worker_factory.start((post_shaped, put_shaped))
    status, names = second.rest("GET", "/connectors")
    assert status == 200 and set(names) == {name_a, name_b}, names
    config_a = {**source_config(input_a, topic_a), "name": name_a}
    config_b = {**source_config(input_b, topic_b), "name": name_b}
    assert second.rest("GET", f"/connectors/{name_a}/config") == (200, config_a)
    assert second.rest("GET", f"/connectors/{name_b}/config") == (200, config_b)
    wait_for_state(second, name_a, "RUNNING", ["RUNNING"])
    wait_for_state(second, name_b, "RUNNING", ["RUNNING"])
    wait_for_records(broker.bootstrap, topic_a, 1)
    wait_for_records(broker.bootstrap, topic_b, 1)
    # The module's worker is a separate worker: it does not see them.
    assert name_a not in worker.rest("GET", "/connectors")[1]
