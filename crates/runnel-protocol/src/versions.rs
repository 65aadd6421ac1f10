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
        let mut range = key.valid_versions();
        if key == ApiKey::Produce {
            range.min = 0;
        }
        (key, range)
    })
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
    ApiKey::IncrementalAlterConfigs,
    ApiKey::DescribeCluster,
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
}
