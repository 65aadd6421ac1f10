"""confluent-kafka AdminClient against Runnel: topics, configs, partitions, records."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)

from conftest import unique_topic
from support import (
    CLIENT_TIMEOUT_S,
    admin_client,
    consume_to_end,
    create_topic,
    produce_and_flush,
    producer,
    wait_for_topic,
    watermarks,
)

KAFKA_DEFAULT_RETENTION_MS = "604800000"


def error_code_of(future) -> int:
    with pytest.raises(KafkaException) as raised:
        future.result(timeout=CLIENT_TIMEOUT_S)
    return raised.value.args[0].code()


def topic_names(admin) -> set[str]:
    return set(admin.list_topics(timeout=10).topics)


def describe_topic_configs(admin, topic: str) -> dict[str, ConfigEntry]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return admin.describe_configs([resource])[resource].result(timeout=CLIENT_TIMEOUT_S)


def test_create_topic_with_six_partitions(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-create")
    futures = admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
    assert futures[topic].result(timeout=CLIENT_TIMEOUT_S) is None
    wait_for_topic(admin, topic, 6)
    meta = admin.list_topics(topic=topic, timeout=10).topics[topic]
    assert sorted(meta.partitions) == [0, 1, 2, 3, 4, 5]
    for partition in meta.partitions.values():
        assert partition.leader == 0
        assert partition.replicas == [0]
        assert partition.isrs == [0]


def test_create_topic_validate_only_creates_nothing(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-validate")
    futures = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)], validate_only=True)
    assert futures[topic].result(timeout=CLIENT_TIMEOUT_S) is None
    assert topic not in topic_names(admin)


def test_create_existing_topic_fails_with_topic_already_exists(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-exists")
    create_topic(broker.bootstrap, topic, partitions=2)
    futures = admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    assert error_code_of(futures[topic]) == KafkaError.TOPIC_ALREADY_EXISTS


def test_create_topic_with_invalid_name_fails(broker):
    admin = admin_client(broker.bootstrap)
    for name in ("bad name with spaces", "bad/slash", "x" * 250, ".."):
        futures = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
        assert error_code_of(futures[name]) == KafkaError.TOPIC_EXCEPTION, name
    assert not {"bad name with spaces", "bad/slash", ".."} & topic_names(admin)


def test_create_topic_with_zero_partitions_fails(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-zero")
    futures = admin.create_topics([NewTopic(topic, num_partitions=0, replication_factor=1)])
    assert error_code_of(futures[topic]) == KafkaError.INVALID_PARTITIONS
    assert topic not in topic_names(admin)


def test_create_topic_with_replication_factor_above_cluster_size_fails(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-rf")
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)])
    assert error_code_of(futures[topic]) == KafkaError.INVALID_REPLICATION_FACTOR
    assert topic not in topic_names(admin)


def test_list_topics_reports_broker_and_topics(broker):
    admin = admin_client(broker.bootstrap)
    first, second = unique_topic("admin-list"), unique_topic("admin-list")
    create_topic(broker.bootstrap, first, partitions=1)
    create_topic(broker.bootstrap, second, partitions=4)
    metadata = admin.list_topics(timeout=10)
    assert {b.id: (b.host, b.port) for b in metadata.brokers.values()} == {0: ("127.0.0.1", broker.port)}
    assert len(metadata.topics[first].partitions) == 1
    assert len(metadata.topics[second].partitions) == 4


def test_describe_cluster(broker):
    admin = admin_client(broker.bootstrap)
    cluster = admin.describe_cluster(request_timeout=10).result(timeout=CLIENT_TIMEOUT_S)
    assert [(n.id, n.host, n.port) for n in cluster.nodes] == [(0, "127.0.0.1", broker.port)]
    assert cluster.controller is not None and cluster.controller.id == 0
    assert cluster.cluster_id


def test_describe_configs_shows_default_retention(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-describe")
    create_topic(broker.bootstrap, topic)
    configs = describe_topic_configs(admin, topic)
    assert "retention.ms" in configs, sorted(configs)
    entry = configs["retention.ms"]
    assert entry.value == KAFKA_DEFAULT_RETENTION_MS
    assert ConfigSource(entry.source) == ConfigSource.DEFAULT_CONFIG
    assert entry.is_default
    for name in ("cleanup.policy", "segment.bytes", "retention.bytes", "message.timestamp.type"):
        assert name in configs, f"{name} missing from {sorted(configs)}"
    assert configs["cleanup.policy"].value == "delete"
    assert configs["retention.bytes"].value == "-1"
    assert configs["message.timestamp.type"].value == "CreateTime"


def test_describe_configs_shows_configs_given_at_creation(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-created-config")
    create_topic(broker.bootstrap, topic, config={"retention.ms": "123456"})
    entry = describe_topic_configs(admin, topic)["retention.ms"]
    assert entry.value == "123456"
    assert ConfigSource(entry.source) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert not entry.is_default


def test_describe_configs_of_unknown_topic_fails(broker):
    admin = admin_client(broker.bootstrap)
    resource = ConfigResource(ConfigResource.Type.TOPIC, unique_topic("admin-missing"))
    code = error_code_of(admin.describe_configs([resource])[resource])
    assert code == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_alter_configs_then_describe(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-alter")
    create_topic(broker.bootstrap, topic)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"retention.ms": "3600000"})
    assert admin.alter_configs([resource])[resource].result(timeout=CLIENT_TIMEOUT_S) is None
    entry = describe_topic_configs(admin, topic)["retention.ms"]
    assert entry.value == "3600000"
    assert ConfigSource(entry.source) == ConfigSource.DYNAMIC_TOPIC_CONFIG


def test_incremental_alter_configs_set_then_delete(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-incremental")
    create_topic(broker.bootstrap, topic)

    set_resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
        ],
    )
    admin.incremental_alter_configs([set_resource])[set_resource].result(timeout=CLIENT_TIMEOUT_S)
    configs = describe_topic_configs(admin, topic)
    assert configs["retention.bytes"].value == "1048576"
    assert ConfigSource(configs["retention.bytes"].source) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert configs["retention.ms"].value == "7200000"

    delete_resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)],
    )
    admin.incremental_alter_configs([delete_resource])[delete_resource].result(timeout=CLIENT_TIMEOUT_S)
    configs = describe_topic_configs(admin, topic)
    assert configs["retention.ms"].value == KAFKA_DEFAULT_RETENTION_MS
    assert ConfigSource(configs["retention.ms"].source) == ConfigSource.DEFAULT_CONFIG
    assert configs["retention.bytes"].value == "1048576", "deleting one key must keep the others"


def test_incremental_alter_unknown_config_fails(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-bad-config")
    create_topic(broker.bootstrap, topic)
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET)],
    )
    assert error_code_of(admin.incremental_alter_configs([resource])[resource]) == KafkaError.INVALID_CONFIG


def test_create_partitions_grows_topic(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-grow")
    create_topic(broker.bootstrap, topic, partitions=2)
    futures = admin.create_partitions([NewPartitions(topic, 5)])
    assert futures[topic].result(timeout=CLIENT_TIMEOUT_S) is None
    wait_for_topic(admin, topic, 5)

    # The new partitions take writes and reads like the old ones.
    p = producer(broker.bootstrap)
    for partition in range(5):
        p.produce(topic, value=f"p{partition}".encode(), partition=partition)
    produce_and_flush(p)
    records = consume_to_end(broker.bootstrap, topic, list(range(5)))
    assert sorted((r.partition, r.offset, r.value) for r in records) == [
        (partition, 0, f"p{partition}".encode()) for partition in range(5)
    ]


def test_create_partitions_cannot_shrink(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-shrink")
    create_topic(broker.bootstrap, topic, partitions=3)
    futures = admin.create_partitions([NewPartitions(topic, 2)])
    assert error_code_of(futures[topic]) == KafkaError.INVALID_PARTITIONS
    assert len(admin.list_topics(timeout=10).topics[topic].partitions) == 3


def test_delete_topics(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-delete")
    create_topic(broker.bootstrap, topic, partitions=2)
    p = producer(broker.bootstrap)
    p.produce(topic, value=b"doomed", partition=1)
    produce_and_flush(p)

    assert admin.delete_topics([topic])[topic].result(timeout=CLIENT_TIMEOUT_S) is None
    deadline = time.monotonic() + 10
    while topic in topic_names(admin):
        assert time.monotonic() < deadline, f"{topic} still listed 10 s after deletion"
        time.sleep(0.2)


def test_delete_unknown_topic_fails(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-never")
    assert error_code_of(admin.delete_topics([topic])[topic]) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_deleted_topic_name_can_be_created_again_empty(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-recreate")
    create_topic(broker.bootstrap, topic, partitions=1)
    p = producer(broker.bootstrap)
    for i in range(10):
        p.produce(topic, value=f"old-{i}".encode())
    produce_and_flush(p)
    admin.delete_topics([topic])[topic].result(timeout=CLIENT_TIMEOUT_S)
    deadline = time.monotonic() + 10
    while topic in topic_names(admin):
        assert time.monotonic() < deadline
        time.sleep(0.2)

    create_topic(broker.bootstrap, topic, partitions=1)
    assert watermarks(broker.bootstrap, topic, 0) == (0, 0)


def test_delete_records_moves_log_start_offset(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-delete-records")
    create_topic(broker.bootstrap, topic, partitions=2)
    p = producer(broker.bootstrap)
    for i in range(10):
        p.produce(topic, value=f"r{i}".encode(), partition=0)
    produce_and_flush(p)

    futures = admin.delete_records([TopicPartition(topic, 0, 5)])
    [future] = futures.values()
    assert future.result(timeout=CLIENT_TIMEOUT_S).low_watermark == 5
    assert watermarks(broker.bootstrap, topic, 0) == (5, 10)

    records = consume_to_end(broker.bootstrap, topic, [0])
    assert [(r.offset, r.value) for r in records] == [(i, f"r{i}".encode()) for i in range(5, 10)]

    earliest = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.earliest()})
    [result] = earliest.values()
    assert result.result(timeout=CLIENT_TIMEOUT_S).offset == 5


def test_delete_records_beyond_high_watermark_fails(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-delete-beyond")
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap)
    for i in range(3):
        p.produce(topic, value=b"x", partition=0)
    produce_and_flush(p)
    [future] = admin.delete_records([TopicPartition(topic, 0, 50)]).values()
    assert error_code_of(future) == KafkaError.OFFSET_OUT_OF_RANGE
    assert watermarks(broker.bootstrap, topic, 0) == (0, 3)


def test_dynamic_broker_configs_reach_topics_without_overrides(broker_factory):
    # A broker of its own: a broker-wide default would change what other tests see.
    # (librdkafka cannot name the cluster-wide default, broker ""; `runnel cluster config`
    # tests that one.)
    broker = broker_factory.start()
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("dynamic-default")
    create_topic(broker.bootstrap, topic)
    change = ConfigResource(
        ConfigResource.Type.BROKER,
        "0",
        incremental_configs=[ConfigEntry("log.retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)],
    )
    assert admin.incremental_alter_configs([change])[change].result(timeout=CLIENT_TIMEOUT_S) is None

    this_broker = ConfigResource(ConfigResource.Type.BROKER, "0")
    configs = admin.describe_configs([this_broker])[this_broker].result(timeout=CLIENT_TIMEOUT_S)
    assert configs["log.retention.ms"].value == "3600000"
    assert ConfigSource(configs["log.retention.ms"].source) == ConfigSource.DYNAMIC_BROKER_CONFIG
    assert not configs["log.retention.ms"].is_read_only
    assert configs["num.partitions"].is_read_only
    retention = describe_topic_configs(admin, topic)["retention.ms"]
    assert retention.value == "3600000"
    assert ConfigSource(retention.source) == ConfigSource.DYNAMIC_BROKER_CONFIG

    static = ConfigResource(
        ConfigResource.Type.BROKER,
        "0",
        incremental_configs=[ConfigEntry("num.io.threads", "3", incremental_operation=AlterConfigOpType.SET)],
    )
    assert error_code_of(admin.incremental_alter_configs([static])[static]) == KafkaError.INVALID_REQUEST
