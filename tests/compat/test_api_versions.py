"""ApiVersions as every client sees it first, sent as raw bytes."""

from conftest import api_versions_request

# The APIs Runnel implements today, by Kafka api_key.
IMPLEMENTED_APIS = {
    0: "Produce",
    1: "Fetch",
    2: "ListOffsets",
    3: "Metadata",
    18: "ApiVersions",
    19: "CreateTopics",
    20: "DeleteTopics",
    21: "DeleteRecords",
    23: "OffsetForLeaderEpoch",
    32: "DescribeConfigs",
    33: "AlterConfigs",
    35: "DescribeLogDirs",
    37: "CreatePartitions",
    44: "IncrementalAlterConfigs",
    60: "DescribeCluster",
    8: "OffsetCommit",
    9: "OffsetFetch",
    10: "FindCoordinator",
    11: "JoinGroup",
    12: "Heartbeat",
    13: "LeaveGroup",
    14: "SyncGroup",
    15: "DescribeGroups",
    16: "ListGroups",
    42: "DeleteGroups",
    47: "OffsetDelete",
    68: "ConsumerGroupHeartbeat",
    69: "ConsumerGroupDescribe",
}

UNSUPPORTED_VERSION = 35


def test_api_versions_v0_lists_every_implemented_api(broker):
    error_code, apis = api_versions_request(broker.port, api_version=0, correlation_id=41)
    assert error_code == 0
    missing = {key: name for key, name in IMPLEMENTED_APIS.items() if key not in apis}
    assert not missing, f"ApiVersions does not list {sorted(missing.values())}"
    for key, (min_version, max_version) in apis.items():
        assert 0 <= min_version <= max_version, f"api {key}: min {min_version} > max {max_version}"
    # librdkafka's ApiVersions v3 and the fetch/produce paths of current clients need these.
    assert apis[18][1] >= 3
    assert apis[0][1] >= 3, "record batch v2 needs Produce v3+"
    assert apis[1][1] >= 4, "record batch v2 needs Fetch v4+"


def test_api_versions_v1_and_v2_answer_with_correlation_id(broker):
    for version, correlation_id in ((1, 1001), (2, 2002)):
        # v1+ responses add throttle_time_ms after the api list; the helper reads the list only.
        error_code, apis = api_versions_request(broker.port, api_version=version, correlation_id=correlation_id)
        assert error_code == 0
        assert 18 in apis


def test_api_versions_unsupported_version_answers_v0_with_error(broker):
    # KIP-511: a client that asks with a version newer than the broker knows gets a v0 response
    # with UNSUPPORTED_VERSION and the broker's list, then retries with a version it supports.
    error_code, apis = api_versions_request(broker.port, api_version=127, correlation_id=99)
    assert error_code == UNSUPPORTED_VERSION
    assert 18 in apis
