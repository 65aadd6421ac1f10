//! Small builders for the request fields every client part fills the same way: names as the
//! generated message types want them, and the OffsetCommit request that the admin client and
//! both consumer group protocols send.

use std::collections::BTreeMap;

use kafka_protocol::messages::{offset_commit_request, GroupId, OffsetCommitRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

pub(crate) fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(str_bytes(name))
}

pub(crate) fn group_id(group: &str) -> GroupId {
    GroupId(str_bytes(group))
}

/// Offsets to commit, by topic: (partition, offset, leader epoch of the last record read).
pub(crate) type OffsetsByTopic<'a> = BTreeMap<&'a str, Vec<(i32, i64, Option<i32>)>>;

/// An OffsetCommit at `version` from `member_id` in `generation_or_epoch` (-1 and an empty id
/// for a commit from outside the group), with empty metadata, as Kafka's clients send it.
pub(crate) fn offset_commit_request(
    group: &str,
    generation_or_epoch: i32,
    member_id: &str,
    offsets: &OffsetsByTopic<'_>,
    version: i16,
) -> OffsetCommitRequest {
    let topics = offsets
        .iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .iter()
                .map(|&(partition, offset, epoch)| {
                    let mut entry = offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(partition)
                        .with_committed_offset(offset)
                        .with_committed_metadata(Some(StrBytes::new()));
                    // The leader epoch field exists from v6.
                    if version >= 6 {
                        entry.committed_leader_epoch = epoch.unwrap_or(-1);
                    }
                    entry
                })
                .collect();
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(generation_or_epoch)
        .with_member_id(str_bytes(member_id))
        .with_topics(topics)
}
