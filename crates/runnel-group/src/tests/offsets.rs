//! Offset commit (both phases), fetch, delete and expiry.

use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};

use super::*;
use crate::records::{decode_key, decode_offset_value, RecordKey};

fn offsets(h: &Harness, group: &str) -> Vec<(String, i32, i64)> {
    h.coordinator
        .committed_offsets(group)
        .into_iter()
        .map(|((topic, partition), committed)| (topic, partition, committed.offset))
        .collect()
}

fn fetch_v1(
    h: &Harness,
    group: &str,
    topic: &str,
    partitions: Vec<i32>,
    version: i16,
) -> Vec<(i32, i64, i32)> {
    let mut request = OffsetFetchRequest::default();
    request.group_id = gid(group);
    let mut t = OffsetFetchRequestTopic::default();
    t.name = TopicName(s(topic));
    t.partition_indexes = partitions;
    request.topics = Some(vec![t]);
    let response = h.coordinator.offset_fetch(version, request);
    response.topics[0]
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.committed_offset,
                p.committed_leader_epoch,
            )
        })
        .collect()
}

#[test]
fn simple_consumer_commits_create_an_empty_group_and_are_fetched_back() {
    let mut h = Harness::new();
    let plan = h.coordinator.prepare_offset_commit(
        1_000,
        2,
        commit_request("simple", "", -1, &[("t", 0, 10), ("t", 1, 20)]),
    );
    assert_eq!(plan.group, "simple");
    assert_eq!(plan.records.len(), 2);
    // Nothing is visible before the records are written and applied.
    assert!(!h.coordinator.group_exists("simple"));
    let (key, value) = &plan.records[1];
    assert_eq!(
        decode_key(key).unwrap(),
        RecordKey::OffsetCommit {
            group: "simple".into(),
            topic: "t".into(),
            partition: 1
        }
    );
    let value = decode_offset_value(value.as_ref().unwrap()).unwrap();
    assert_eq!(
        (
            value.offset,
            value.leader_epoch,
            value.metadata.as_str(),
            value.commit_timestamp_ms
        ),
        (20, -1, "meta", 1_000)
    );
    h.coordinator.apply_offset_commit(plan.pending);
    assert_eq!(h.state("simple"), Some(GroupState::Empty));
    assert_eq!(
        fetch_v1(&h, "simple", "t", vec![0, 1, 2], 1),
        vec![(0, 10, -1), (1, 20, -1), (2, -1, -1)]
    );
    let described = h.describe("simple");
    assert_eq!(
        (
            described.group_state.as_str(),
            described.protocol_type.as_str()
        ),
        ("Empty", "")
    );
}

#[test]
fn a_failed_write_leaves_nothing_behind() {
    let mut h = Harness::new();
    let plan =
        h.coordinator
            .prepare_offset_commit(1_000, 9, commit_request("g", "", -1, &[("t", 0, 10)]));
    drop(plan.pending);
    assert!(h.coordinator.committed_offsets("g").is_empty());
    assert_eq!(fetch_v1(&h, "g", "t", vec![0], 7), vec![(0, -1, -1)]);
}

#[test]
fn metadata_over_the_limit_fails_only_its_partition() {
    let mut h = Harness::new();
    let mut request = commit_request("g", "", -1, &[("t", 0, 1), ("t", 1, 2)]);
    request.topics[0].partitions[1].committed_metadata = Some(s(&"x".repeat(4_097)));
    let plan = h.coordinator.prepare_offset_commit(0, 9, request);
    let codes: Vec<i16> = plan.response.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, vec![0, 12]);
    assert_eq!(plan.records.len(), 1);
    h.coordinator.apply_offset_commit(plan.pending);
    assert_eq!(offsets(&h, "g"), vec![("t".into(), 0, 1)]);
}

#[test]
fn commits_are_fenced_by_generation_and_membership() {
    let mut h = Harness::new();
    let (members, generation) = h.stable_group("g");
    assert_eq!(
        h.commit(7_000, "g", &members[0], generation, &[("t", 0, 100)]),
        vec![0]
    );
    let before = offsets(&h, "g");
    let deadlines: Vec<i64> = h.coordinator.groups["g"]
        .members
        .iter()
        .map(|m| m.session_deadline_ms)
        .collect();
    // Stale and future generations, unknown members, generation -1 on a live group.
    assert_eq!(
        h.commit(7_100, "g", &members[1], generation - 1, &[("t", 0, 1)]),
        vec![22]
    );
    assert_eq!(
        h.commit(7_100, "g", &members[1], generation + 1, &[("t", 0, 1)]),
        vec![22]
    );
    assert_eq!(
        h.commit(7_100, "g", "nobody", generation, &[("t", 0, 1)]),
        vec![25]
    );
    assert_eq!(
        h.commit(7_100, "g", "", -1, &[("t", 0, 1), ("u", 0, 1)]),
        vec![25, 25]
    );
    // A generation on a group that does not exist.
    assert_eq!(h.commit(7_100, "nope", "m", 3, &[("t", 0, 1)]), vec![22]);
    assert!(!h.coordinator.group_exists("nope"));
    assert_eq!(offsets(&h, "g"), before, "refused commits change no offset");
    let after: Vec<i64> = h.coordinator.groups["g"]
        .members
        .iter()
        .map(|m| m.session_deadline_ms)
        .collect();
    assert_eq!(after, deadlines, "refused commits extend no session");

    // A commit from a member of the new generation before it synced.
    let tokens: Vec<Token> = members.iter().map(|m| h.rejoin(7_200, "g", m)).collect();
    let joined = h.joined(tokens[1]);
    assert_eq!(h.state("g"), Some(GroupState::CompletingRebalance));
    assert_eq!(
        h.commit(7_300, "g", &members[1], joined.generation, &[("t", 0, 1)]),
        vec![27]
    );
    assert_eq!(offsets(&h, "g"), before);
}

#[test]
fn a_members_commit_changes_only_its_own_partitions() {
    let mut h = Harness::new();
    let (members, generation) = h.stable_group("g");
    h.commit(
        7_000,
        "g",
        &members[0],
        generation,
        &[("t", 0, 5), ("t", 1, 6)],
    );
    h.commit(7_100, "g", &members[1], generation, &[("t", 2, 7)]);
    assert_eq!(
        offsets(&h, "g"),
        vec![("t".into(), 0, 5), ("t".into(), 1, 6), ("t".into(), 2, 7)]
    );
    assert_eq!(h.state("g"), Some(GroupState::Stable));
}

#[test]
fn fetch_all_and_batched_groups() {
    let mut h = Harness::new();
    h.commit(0, "a", "", -1, &[("t", 0, 1), ("t", 1, 2), ("u", 0, 3)]);
    h.commit(0, "b", "", -1, &[("t", 0, 9)]);
    // v2+: topics null = everything committed, grouped by topic.
    let mut request = OffsetFetchRequest::default();
    request.group_id = gid("a");
    request.topics = None;
    let response = h.coordinator.offset_fetch(6, request);
    let all: Vec<(String, Vec<i64>)> = response
        .topics
        .iter()
        .map(|t| {
            (
                t.name.0.to_string(),
                t.partitions.iter().map(|p| p.committed_offset).collect(),
            )
        })
        .collect();
    assert_eq!(all, vec![("t".into(), vec![1, 2]), ("u".into(), vec![3])]);
    // The leader epoch is returned from v5 (the commits above were v9 with epoch 4).
    assert_eq!(fetch_v1(&h, "a", "t", vec![0], 5), vec![(0, 1, 4)]);
    assert_eq!(fetch_v1(&h, "a", "t", vec![0], 4), vec![(0, 1, -1)]);

    let mut request = OffsetFetchRequest::default();
    let mut a = OffsetFetchRequestGroup::default();
    a.group_id = gid("a");
    a.topics = None;
    let mut b = OffsetFetchRequestGroup::default();
    b.group_id = gid("b");
    let mut t = OffsetFetchRequestTopics::default();
    t.name = TopicName(s("t"));
    t.partition_indexes = vec![0, 5];
    b.topics = Some(vec![t]);
    let mut missing = OffsetFetchRequestGroup::default();
    missing.group_id = gid("missing");
    missing.topics = None;
    request.groups = vec![a, b, missing];
    let response = h.coordinator.offset_fetch(8, request);
    assert_eq!(response.groups.len(), 3);
    assert_eq!(response.groups[0].topics.len(), 2);
    let b: Vec<(i32, i64)> = response.groups[1].topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert_eq!(b, vec![(0, 9), (5, -1)]);
    assert!(response.groups[2].topics.is_empty());
    assert_eq!(response.groups[2].error_code, 0);
}

fn delete_request(group: &str, topics: &[(&str, &[i32])]) -> OffsetDeleteRequest {
    let mut request = OffsetDeleteRequest::default();
    request.group_id = gid(group);
    request.topics = topics
        .iter()
        .map(|(name, partitions)| {
            let mut t = OffsetDeleteRequestTopic::default();
            t.name = TopicName(s(name));
            t.partitions = partitions
                .iter()
                .map(|p| {
                    let mut partition = OffsetDeleteRequestPartition::default();
                    partition.partition_index = *p;
                    partition
                })
                .collect();
            t
        })
        .collect();
    request
}

#[test]
fn offset_delete() {
    let mut h = Harness::new();
    let response = h
        .coordinator
        .offset_delete(delete_request("nope", &[("t", &[0])]), &mut h.out);
    assert_eq!(response.error_code, 69, "GROUP_ID_NOT_FOUND");

    // A live consumer group: its subscribed topic ("t") is protected, others can go.
    let (members, generation) = h.stable_group("g");
    h.commit(
        7_000,
        "g",
        &members[0],
        generation,
        &[("t", 0, 1), ("old", 0, 2), ("old", 1, 3)],
    );
    let response = h.coordinator.offset_delete(
        delete_request("g", &[("t", &[0]), ("old", &[0, 7])]),
        &mut h.out,
    );
    assert_eq!(response.error_code, 0);
    assert_eq!(
        response.topics[0].partitions[0].error_code, 86,
        "GROUP_SUBSCRIBED_TO_TOPIC"
    );
    assert_eq!(
        response.topics[1]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect::<Vec<_>>(),
        vec![0, 0]
    );
    assert_eq!(
        offsets(&h, "g"),
        vec![("old".into(), 1, 3), ("t".into(), 0, 1)]
    );
    let persisted = h.persisted();
    assert_eq!(persisted.len(), 1);
    assert_eq!(
        persisted[0].1.len(),
        1,
        "one tombstone: old-7 was never committed"
    );
    assert_eq!(persisted[0].1[0].1, None);

    // An Empty group: everything can go.
    h.commit(0, "simple", "", -1, &[("t", 0, 1)]);
    let response = h
        .coordinator
        .offset_delete(delete_request("simple", &[("t", &[0])]), &mut h.out);
    assert_eq!(response.topics[0].partitions[0].error_code, 0);
    assert!(offsets(&h, "simple").is_empty());
}

#[test]
fn offsets_expire_a_retention_after_the_group_empties() {
    let retention = 100_000;
    let mut h = Harness::with_config(GroupConfig {
        group_initial_rebalance_delay_ms: DELAY_MS,
        offsets_retention_ms: retention,
        ..GroupConfig::default()
    });
    let (members, generation) = h.stable_group("g");
    h.commit(
        7_000,
        "g",
        &members[0],
        generation,
        &[("t", 0, 1), ("t", 1, 2)],
    );
    // A live group keeps its offsets however old.
    for member in &members {
        h.heartbeat(7_000 + retention, "g", member, generation);
    }
    h.tick(7_000 + retention);
    assert_eq!(offsets(&h, "g").len(), 2);
    for member in &members {
        h.leave(110_000, "g", member);
    }
    assert_eq!(h.state("g"), Some(GroupState::Empty));
    h.persisted();
    assert_eq!(h.coordinator.next_deadline_ms(), Some(110_000 + retention));
    h.tick(110_000 + retention - 1);
    assert_eq!(offsets(&h, "g").len(), 2);
    h.tick(110_000 + retention);
    assert!(offsets(&h, "g").is_empty());
    assert!(!h.coordinator.group_exists("g"));
    let persisted = h.persisted();
    // Two offset tombstones, then the group's.
    let records: Vec<(RecordKey, bool)> = persisted
        .iter()
        .flat_map(|(_, records)| {
            records
                .iter()
                .map(|(k, v)| (decode_key(k).unwrap(), v.is_some()))
        })
        .collect();
    assert_eq!(
        records,
        vec![
            (
                RecordKey::OffsetCommit {
                    group: "g".into(),
                    topic: "t".into(),
                    partition: 0
                },
                false
            ),
            (
                RecordKey::OffsetCommit {
                    group: "g".into(),
                    topic: "t".into(),
                    partition: 1
                },
                false
            ),
            (RecordKey::GroupMetadata { group: "g".into() }, false),
        ]
    );
}

#[test]
fn simple_group_offsets_expire_by_commit_time() {
    let mut h = Harness::with_config(GroupConfig {
        offsets_retention_ms: 1_000,
        ..GroupConfig::default()
    });
    h.commit(0, "s", "", -1, &[("t", 0, 1)]);
    h.commit(500, "s", "", -1, &[("t", 1, 1)]);
    assert_eq!(h.coordinator.next_deadline_ms(), Some(1_000));
    h.tick(1_000);
    assert_eq!(offsets(&h, "s"), vec![("t".into(), 1, 1)]);
    h.tick(1_500);
    assert!(!h.coordinator.group_exists("s"));
    // The simple group never wrote metadata, so only offset tombstones.
    let persisted = h.persisted();
    assert_eq!(persisted.iter().map(|(_, r)| r.len()).sum::<usize>(), 2);
}

/// Kafka's `onPartitionsDeleted`: a deleted topic's offsets go from every group, each with a
/// tombstone, and nothing else about the groups changes; a group left with nothing goes at
/// the next tick, as Kafka's offset-expiry pass removes it.
#[test]
fn a_deleted_topics_offsets_go_from_every_group_with_tombstones() {
    let mut h = Harness::new();
    // A live consumer group subscribed to the topic, with offsets on another one too.
    let (members, generation) = h.stable_group("live");
    h.commit(
        7_000,
        "live",
        &members[0],
        generation,
        &[("t", 0, 1), ("t", 1, 2), ("kept", 0, 3)],
    );
    // A consumer group that emptied with offsets only on the topic: its metadata is in the log.
    let (member, token) = h.join_new(7_100, "emptied");
    h.tick(7_100 + DELAY_MS);
    let joined = h.joined(token);
    let sync = h.send_sync(10_200, "emptied", &member, joined.generation, &[]);
    assert_eq!(h.sync_answer(sync).map(|r| r.error_code), Some(0));
    h.commit(
        10_300,
        "emptied",
        &member,
        joined.generation,
        &[("t", 0, 4)],
    );
    h.leave(10_400, "emptied", &member);
    assert_eq!(h.state("emptied"), Some(GroupState::Empty));
    // A simple group with offsets only on the topic, and one on a topic whose name starts
    // the same.
    h.commit(10_500, "simple", "", -1, &[("t", 2, 5)]);
    h.commit(10_500, "other", "", -1, &[("t2", 0, 6)]);
    h.persisted();

    let mut out = Vec::new();
    h.coordinator.remove_offsets_of_topic("t", &mut out);

    let mut tombstones: Vec<(String, RecordKey)> = out
        .iter()
        .flat_map(|output| {
            let Output::Persist { group, records } = output else {
                panic!("only records to write: {output:?}");
            };
            records.iter().map(move |(key, value)| {
                assert_eq!(*value, None, "a tombstone");
                (group.clone(), decode_key(key).unwrap())
            })
        })
        .collect();
    tombstones.sort_by_key(|(group, key)| (group.clone(), format!("{key:?}")));
    let offset_key = |group: &str, partition| RecordKey::OffsetCommit {
        group: group.into(),
        topic: "t".into(),
        partition,
    };
    assert_eq!(
        tombstones,
        vec![
            ("emptied".into(), offset_key("emptied", 0)),
            ("live".into(), offset_key("live", 0)),
            ("live".into(), offset_key("live", 1)),
            ("simple".into(), offset_key("simple", 2)),
        ],
        "each tombstone goes to its own group's partition"
    );
    assert_eq!(offsets(&h, "live"), vec![("kept".into(), 0, 3)]);
    assert_eq!(
        fetch_v1(&h, "live", "t", vec![0, 1], 5),
        vec![(0, -1, -1), (1, -1, -1)]
    );
    assert_eq!(offsets(&h, "other"), vec![("t2".into(), 0, 6)]);
    assert!(offsets(&h, "emptied").is_empty());
    assert!(offsets(&h, "simple").is_empty());
    // The live group carries on as it was.
    assert_eq!(h.state("live"), Some(GroupState::Stable));
    assert_eq!(h.heartbeat(10_600, "live", &members[1], generation), 0);

    // Nothing left to remove: nothing more to write.
    let mut again = Vec::new();
    h.coordinator.remove_offsets_of_topic("t", &mut again);
    assert!(again.is_empty(), "{again:?}");

    // The groups left with nothing go at the next tick; only the one whose metadata is in the
    // log needs a tombstone for it.
    assert!(h.coordinator.group_exists("emptied"));
    assert!(h.coordinator.group_exists("simple"));
    h.tick(10_700);
    assert!(!h.coordinator.group_exists("emptied"));
    assert!(!h.coordinator.group_exists("simple"));
    assert!(h.coordinator.group_exists("live"));
    assert!(h.coordinator.group_exists("other"));
    let removed: Vec<(String, RecordKey, bool)> = h
        .persisted()
        .into_iter()
        .flat_map(|(group, records)| {
            records.into_iter().map(move |(key, value)| {
                (group.clone(), decode_key(&key).unwrap(), value.is_some())
            })
        })
        .collect();
    assert_eq!(
        removed,
        vec![(
            "emptied".into(),
            RecordKey::GroupMetadata {
                group: "emptied".into()
            },
            false
        )]
    );
}
