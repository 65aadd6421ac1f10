//! Which API versions Runnel serves: from the floor Kafka 4.0 keeps (KIP-896) to the newest in
//! the schemas the `kafka-protocol` crate was generated from.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;

/// Produce v0-2 are advertised but answered with UNSUPPORTED_VERSION, as Kafka does since
/// KAFKA-18659: librdkafka before 2.12 turns compression off when the advertised Produce range
/// does not start at 0.
pub const PRODUCE_MIN_DECODABLE_VERSION: i16 = 3;

/// The APIs this broker implements, with the version range it advertises for each.
pub fn supported_versions() -> impl Iterator<Item = (ApiKey, VersionRange)> {
    SUPPORTED_APIS.iter().map(|&key| {
        let mut range = decodable_versions(key);
        if key == ApiKey::Produce {
            range.min = 0;
        }
        (key, range)
    })
}

/// The versions the generated codecs can both decode and answer: the request schema's range
/// within the API's. They differ where the crate's response schema is newer than its request
/// schema (OffsetCommit and OffsetFetch v10 in 0.18).
fn decodable_versions(key: ApiKey) -> VersionRange {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;
    let request = match key {
        ApiKey::Produce => ProduceRequest::VERSIONS,
        ApiKey::Fetch => FetchRequest::VERSIONS,
        ApiKey::ListOffsets => ListOffsetsRequest::VERSIONS,
        ApiKey::Metadata => MetadataRequest::VERSIONS,
        ApiKey::OffsetCommit => OffsetCommitRequest::VERSIONS,
        ApiKey::OffsetFetch => OffsetFetchRequest::VERSIONS,
        ApiKey::FindCoordinator => FindCoordinatorRequest::VERSIONS,
        ApiKey::JoinGroup => JoinGroupRequest::VERSIONS,
        ApiKey::Heartbeat => HeartbeatRequest::VERSIONS,
        ApiKey::LeaveGroup => LeaveGroupRequest::VERSIONS,
        ApiKey::SyncGroup => SyncGroupRequest::VERSIONS,
        ApiKey::DescribeGroups => DescribeGroupsRequest::VERSIONS,
        ApiKey::ListGroups => ListGroupsRequest::VERSIONS,
        ApiKey::ApiVersions => ApiVersionsRequest::VERSIONS,
        ApiKey::CreateTopics => CreateTopicsRequest::VERSIONS,
        ApiKey::DeleteTopics => DeleteTopicsRequest::VERSIONS,
        ApiKey::DeleteRecords => DeleteRecordsRequest::VERSIONS,
        ApiKey::OffsetForLeaderEpoch => OffsetForLeaderEpochRequest::VERSIONS,
        ApiKey::DescribeConfigs => DescribeConfigsRequest::VERSIONS,
        ApiKey::AlterConfigs => AlterConfigsRequest::VERSIONS,
        ApiKey::DescribeLogDirs => DescribeLogDirsRequest::VERSIONS,
        ApiKey::CreatePartitions => CreatePartitionsRequest::VERSIONS,
        ApiKey::DeleteGroups => DeleteGroupsRequest::VERSIONS,
        ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::VERSIONS,
        ApiKey::OffsetDelete => OffsetDeleteRequest::VERSIONS,
        ApiKey::DescribeCluster => DescribeClusterRequest::VERSIONS,
        ApiKey::ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest::VERSIONS,
        ApiKey::ConsumerGroupDescribe => ConsumerGroupDescribeRequest::VERSIONS,
        ApiKey::InitProducerId => InitProducerIdRequest::VERSIONS,
        ApiKey::DescribeProducers => DescribeProducersRequest::VERSIONS,
        ApiKey::AddOffsetsToTxn => AddOffsetsToTxnRequest::VERSIONS,
        ApiKey::DescribeTransactions => DescribeTransactionsRequest::VERSIONS,
        ApiKey::ListTransactions => ListTransactionsRequest::VERSIONS,
        // v4 is the brokers' batched form (KIP-890: partition leaders verify with
        // `verify_only`); clients send v3 and below. v5 belongs to transaction version 2.
        ApiKey::AddPartitionsToTxn => VersionRange { min: 0, max: 4 },
        // v5 belongs to transaction version 2 (KIP-890), which Runnel does not offer.
        ApiKey::EndTxn => VersionRange { min: 0, max: 4 },
        // v5 belongs to transaction version 2 as well.
        ApiKey::TxnOffsetCommit => VersionRange { min: 0, max: 4 },
        other => other.valid_versions(),
    };
    key.valid_versions().intersect(&request)
}

/// The version range for `key`, if served.
pub(crate) fn supported_range(key: ApiKey) -> Option<VersionRange> {
    supported_versions()
        .find(|(k, _)| *k == key)
        .map(|(_, range)| range)
}

const SUPPORTED_APIS: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::Metadata,
    ApiKey::ApiVersions,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::DeleteRecords,
    ApiKey::OffsetForLeaderEpoch,
    ApiKey::DescribeConfigs,
    ApiKey::AlterConfigs,
    ApiKey::DescribeLogDirs,
    ApiKey::CreatePartitions,
    ApiKey::ElectLeaders,
    ApiKey::AlterPartitionReassignments,
    ApiKey::ListPartitionReassignments,
    ApiKey::WriteTxnMarkers,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::DescribeCluster,
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::ListGroups,
    ApiKey::DescribeGroups,
    ApiKey::DeleteGroups,
    ApiKey::OffsetDelete,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::ConsumerGroupDescribe,
    ApiKey::InitProducerId,
    ApiKey::DescribeProducers,
    ApiKey::AddPartitionsToTxn,
    ApiKey::AddOffsetsToTxn,
    ApiKey::EndTxn,
    ApiKey::TxnOffsetCommit,
    ApiKey::DescribeTransactions,
    ApiKey::ListTransactions,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_is_advertised_from_zero_and_fetch_reaches_zstd() {
        let produce = supported_range(ApiKey::Produce).unwrap();
        assert_eq!(produce.min, 0);
        assert!(produce.max >= 7, "zstd needs Produce 7+");
        assert!(
            supported_range(ApiKey::Fetch).unwrap().max >= 10,
            "zstd needs Fetch 10+"
        );
    }

    #[test]
    fn advertised_versions_are_decodable() {
        // OffsetCommit's response schema reaches v10 in kafka-protocol 0.18, its request v9.
        assert_eq!(supported_range(ApiKey::OffsetCommit).unwrap().max, 9);
        assert_eq!(supported_range(ApiKey::OffsetFetch).unwrap().max, 9);
    }
}
