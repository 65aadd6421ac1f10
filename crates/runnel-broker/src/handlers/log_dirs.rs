//! DescribeLogDirs: the one data directory and the size of each partition in it.

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

pub(crate) fn describe_log_dirs(
    broker: &Broker,
    version: i16,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let wanted = |topic: &str, partition: i32| match &request.topics {
        None => true,
        Some(topics) => topics
            .iter()
            .any(|t| t.topic.as_str() == topic && t.partitions.contains(&partition)),
    };
    let topics = broker
        .topics
        .list()
        .into_iter()
        .filter_map(|topic| {
            let partitions: Vec<_> = topic
                .partitions()
                .into_iter()
                .filter(|p| wanted(&topic.name, p.index))
                .filter_map(|p| {
                    let size = p.with_log(|log| Ok(log.size_bytes())).ok()?;
                    let mut entry = DescribeLogDirsPartition::default();
                    entry.partition_index = p.index;
                    entry.partition_size = size as i64;
                    Some(entry)
                })
                .collect();
            if partitions.is_empty() {
                return None;
            }
            let mut entry = DescribeLogDirsTopic::default();
            entry.name = TopicName(StrBytes::from_string(topic.name.to_string()));
            entry.partitions = partitions;
            Some(entry)
        })
        .collect();
    let mut result = DescribeLogDirsResult::default();
    result.log_dir = StrBytes::from_string(absolute(broker).display().to_string());
    result.topics = topics;
    if let (Ok(space), true) = (broker.fs.space(&broker.config.data_dir), version >= 4) {
        result.total_bytes = i64::try_from(space.total_bytes).unwrap_or(i64::MAX);
        result.usable_bytes = i64::try_from(space.usable_bytes).unwrap_or(i64::MAX);
    }
    let mut response = DescribeLogDirsResponse::default();
    response.results = vec![result];
    response
}

fn absolute(broker: &Broker) -> std::path::PathBuf {
    std::fs::canonicalize(&broker.config.data_dir)
        .unwrap_or_else(|_| broker.config.data_dir.clone())
}
