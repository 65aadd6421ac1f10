//! Recovery: replaying every record the coordinator asked to be written rebuilds the same
//! offsets and groups.

use proptest::prelude::*;

use super::*;
use crate::RecordFormatError;

type Log = Vec<(Bytes, Option<Bytes>)>;

/// Moves what the coordinator asked to persist into `log`, in order.
fn drain(h: &mut Harness, log: &mut Log) {
    for (_, records) in h.persisted() {
        log.extend(records);
    }
}

fn commit_logged(
    h: &mut Harness,
    log: &mut Log,
    now_ms: i64,
    group: &str,
    member: &str,
    generation: i32,
    offsets: &[(&str, i32, i64)],
) {
    drain(h, log);
    let plan = h.coordinator.prepare_offset_commit(
        now_ms,
        9,
        commit_request(group, member, generation, offsets),
    );
    log.extend(plan.records);
    h.coordinator.apply_offset_commit(plan.pending);
}

fn replayed(log: &Log) -> GroupCoordinator {
    let mut coordinator = GroupCoordinator::new(GroupConfig::default());
    for (key, value) in log {
        coordinator.replay(key, value.as_deref()).unwrap();
    }
    coordinator
}

fn describe_all(coordinator: &GroupCoordinator, groups: &[&str]) -> String {
    let mut request = DescribeGroupsRequest::default();
    request.groups = groups.iter().map(|g| gid(g)).collect();
    format!("{:?}", coordinator.describe_groups(5, request))
}

#[test]
fn replay_rebuilds_groups_and_offsets() {
    let mut h = Harness::new();
    let mut log = Log::new();
    let (members, generation) = h.stable_group("g");
    drain(&mut h, &mut log);
    // stable_group dropped its Persist outputs: rebalance once more so the log has the group.
    let tokens: Vec<Token> = members.iter().map(|m| h.rejoin(7_000, "g", m)).collect();
    let generation = generation + 1;
    for token in tokens {
        assert_eq!(h.joined(token).generation, generation);
    }
    let sync = h.send_sync(
        7_100,
        "g",
        &members[0],
        generation,
        &[
            (&members[0], b"A"),
            (&members[1], b"B"),
            (&members[2], b"C"),
        ],
    );
    h.sync_answer(sync);
    commit_logged(
        &mut h,
        &mut log,
        7_200,
        "g",
        &members[1],
        generation,
        &[("t", 0, 10), ("t", 1, 11)],
    );
    commit_logged(
        &mut h,
        &mut log,
        7_300,
        "g",
        &members[1],
        generation,
        &[("t", 0, 12)],
    );
    commit_logged(&mut h, &mut log, 7_300, "simple", "", -1, &[("u", 3, 30)]);
    // An emptied group with offsets, and a deleted one.
    let (e, te) = h.join_new(7_400, "emptied");
    h.tick(7_400 + DELAY_MS);
    let ge = h.joined(te).generation;
    let sync = h.send_sync(10_450, "emptied", &e, ge, &[(&e, b"E")]);
    assert_eq!(h.sync_answer(sync).unwrap().error_code, 0);
    commit_logged(&mut h, &mut log, 10_500, "emptied", &e, ge, &[("v", 0, 5)]);
    h.leave(10_600, "emptied", &e);
    commit_logged(&mut h, &mut log, 10_700, "doomed", "", -1, &[("w", 0, 1)]);
    let mut delete = DeleteGroupsRequest::default();
    delete.groups_names = vec![gid("doomed")];
    h.coordinator.delete_groups(2, delete, &mut h.out);
    drain(&mut h, &mut log);

    let restored = replayed(&log);
    let groups = ["g", "simple", "emptied", "doomed"];
    assert_eq!(
        describe_all(&restored, &groups),
        describe_all(&h.coordinator, &groups)
    );
    for group in groups {
        assert_eq!(
            restored.committed_offsets(group),
            h.coordinator.committed_offsets(group),
            "{group}"
        );
    }
    assert!(!restored.group_exists("doomed"));
    assert_eq!(restored.group_state("emptied"), Some(GroupState::Empty));
    let mut list = ListGroupsRequest::default();
    list.states_filter = vec![];
    assert_eq!(
        restored.list_groups(4, list.clone()),
        h.coordinator.list_groups(4, list)
    );

    // The restored members carry on: sessions start at the first tick, the generation holds.
    let mut restored_h = Harness::new();
    restored_h.coordinator = restored;
    assert_eq!(restored_h.coordinator.next_deadline_ms(), Some(0));
    restored_h.tick(1_000_000);
    assert_eq!(restored_h.state("g"), Some(GroupState::Stable));
    assert_eq!(
        restored_h.coordinator.next_deadline_ms(),
        Some(1_000_000 + i64::from(SESSION_MS))
    );
    assert_eq!(
        restored_h.heartbeat(1_000_100, "g", &members[2], generation),
        0
    );
    let sync = restored_h.send_sync(1_000_200, "g", &members[2], generation, &[]);
    assert_eq!(
        restored_h.sync_answer(sync).unwrap().assignment.as_ref(),
        b"C"
    );
    // Silent restored members expire as usual.
    restored_h.tick(1_000_000 + i64::from(SESSION_MS));
    assert_eq!(restored_h.state("g"), Some(GroupState::PreparingRebalance));
}

/// A broker that stops leading a group's partition forgets the group, and answers what is
/// parked in it NOT_COORDINATOR; the broker that leads it next rebuilds it from the log.
#[test]
fn unload_answers_parked_requests_and_replay_elsewhere_rebuilds_the_group() {
    let mut h = Harness::new();
    let mut log = Log::new();
    let (members, generation) = h.stable_group("moving");
    h.stable_group("staying");
    commit_logged(
        &mut h,
        &mut log,
        7_000,
        "moving",
        &members[0],
        generation,
        &[("t", 0, 42)],
    );
    drain(&mut h, &mut log);
    // A rebalance in progress: the first rejoin parks until the others rejoin or time out.
    let parked = h.rejoin(8_000, "moving", &members[0]);
    assert!(
        h.join_answer(parked).is_none(),
        "parked while the group rebalances"
    );

    let answers = h.coordinator.unload(|group| group == "moving");

    let Some(Output::Join { token, response }) = answers.first() else {
        panic!("the parked join is answered: {answers:?}");
    };
    assert_eq!(
        (*token, response.error_code),
        (parked, 16),
        "NOT_COORDINATOR"
    );
    assert!(!h.coordinator.group_exists("moving"));
    assert_eq!(
        h.state("staying"),
        Some(GroupState::Stable),
        "other partitions stay"
    );
    let elsewhere = replayed(&log);
    let mut fetch = OffsetFetchRequest::default();
    fetch.group_id = gid("moving");
    fetch.topics = None;
    let fetched = elsewhere.offset_fetch(5, fetch);
    assert_eq!(fetched.topics[0].partitions[0].committed_offset, 42);
}

#[test]
fn replay_refuses_garbage_and_other_record_types() {
    let mut coordinator = GroupCoordinator::new(GroupConfig::default());
    assert!(coordinator.replay(&[0], None).is_err());
    assert_eq!(
        coordinator.replay(&[0, 5, 0, 1, b'g'], Some(&[0, 0])),
        Err(RecordFormatError::UnknownKeyVersion(5))
    );
    let key =
        crate::records::encode_key(&crate::records::RecordKey::GroupMetadata { group: "g".into() });
    assert!(coordinator.replay(&key, Some(&[0, 3, 0])).is_err());
    assert!(!coordinator.group_exists("g"));
}

#[derive(Debug, Clone)]
enum Op {
    Commit {
        group: u8,
        topic: u8,
        partition: i32,
        offset: i64,
    },
    DeleteOffset {
        group: u8,
        topic: u8,
        partition: i32,
    },
    DeleteGroup {
        group: u8,
    },
    DeleteTopic {
        topic: u8,
    },
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u8, 0..2u8, 0..3i32, any::<i64>()).prop_map(|(group, topic, partition, offset)| Op::Commit { group, topic, partition, offset }),
        1 => (0..3u8, 0..2u8, 0..3i32).prop_map(|(group, topic, partition)| Op::DeleteOffset { group, topic, partition }),
        1 => (0..3u8).prop_map(|group| Op::DeleteGroup { group }),
        1 => (0..2u8).prop_map(|topic| Op::DeleteTopic { topic }),
        1 => (0..200_000i64).prop_map(Op::Advance),
    ]
}

proptest! {
    #[test]
    fn replay_rebuilds_the_same_offsets(ops in proptest::collection::vec(op(), 1..40)) {
        let mut h = Harness::with_config(GroupConfig { offsets_retention_ms: 300_000, ..GroupConfig::default() });
        let mut log = Log::new();
        let mut now = 0;
        for op in ops {
            match op {
                Op::Commit { group, topic, partition, offset } => {
                    let topic = format!("t{topic}");
                    commit_logged(&mut h, &mut log, now, &format!("g{group}"), "", -1, &[(topic.as_str(), partition, offset)]);
                }
                Op::DeleteOffset { group, topic, partition } => {
                    let mut request = OffsetDeleteRequest::default();
                    request.group_id = gid(&format!("g{group}"));
                    let mut t = offset_delete_request::OffsetDeleteRequestTopic::default();
                    t.name = TopicName(s(&format!("t{topic}")));
                    let mut p = offset_delete_request::OffsetDeleteRequestPartition::default();
                    p.partition_index = partition;
                    t.partitions = vec![p];
                    request.topics = vec![t];
                    h.coordinator.offset_delete(request, &mut h.out);
                }
                Op::DeleteGroup { group } => {
                    let mut request = DeleteGroupsRequest::default();
                    request.groups_names = vec![gid(&format!("g{group}"))];
                    h.coordinator.delete_groups(2, request, &mut h.out);
                }
                Op::DeleteTopic { topic } => {
                    h.coordinator.remove_offsets_of_topic(&format!("t{topic}"), &mut h.out);
                }
                Op::Advance(ms) => {
                    now += ms;
                    h.tick(now);
                }
            }
            drain(&mut h, &mut log);
        }
        // Groups left with nothing go at the next tick (as Kafka's cleanup would remove them).
        h.tick(now);
        drain(&mut h, &mut log);
        let restored = replayed(&log);
        for group in ["g0", "g1", "g2"] {
            prop_assert_eq!(restored.committed_offsets(group), h.coordinator.committed_offsets(group));
            prop_assert_eq!(restored.group_exists(group), h.coordinator.group_exists(group));
        }
    }

    #[test]
    fn replaying_garbage_never_panics(
        key in proptest::collection::vec(any::<u8>(), 0..32),
        value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        group_key in any::<bool>(),
    ) {
        let mut coordinator = GroupCoordinator::new(GroupConfig::default());
        let key = if group_key {
            let mut k = vec![0, 2, 0, 1, b'g'];
            k.extend(key);
            k
        } else {
            key
        };
        let _ = coordinator.replay(&key, value.as_deref());
        coordinator.tick(0, &mut Vec::new());
    }
}
