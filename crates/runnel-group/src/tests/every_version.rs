//! Every response this crate builds must encode at the version it answers: the encoder refuses
//! a field set to a non-default value in a version that lacks it, and the client would see a
//! dropped connection. Each API is driven through its success and error paths at every version
//! `kafka-protocol` knows (what the broker advertises), and every answer is encoded.

use bytes::BytesMut;
use kafka_protocol::protocol::Encodable;

use super::*;

fn encodes<T: Encodable + std::fmt::Debug>(what: &str, message: &T, version: i16) {
    let mut buf = BytesMut::new();
    if let Err(error) = message.encode(&mut buf, version) {
        panic!("{what} v{version}: {error}\n{message:?}");
    }
}

fn versions(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let range = key.valid_versions();
    range.min..=range.max
}

/// Encodes every output: joins at `join_version`, syncs at `sync_version`.
fn encode_outputs(h: &mut Harness, join_version: i16, sync_version: i16) {
    for output in h.out.drain(..) {
        match output {
            Output::Join { response, .. } => encodes("JoinGroup", &response, join_version),
            Output::Sync { response, .. } => encodes("SyncGroup", &response, sync_version),
            Output::Persist { .. } => {}
        }
    }
}

/// A join at `version` without a member id, through MEMBER_ID_REQUIRED where the version has it.
fn join_at(
    h: &mut Harness,
    now_ms: i64,
    version: i16,
    group: &str,
    instance: Option<&str>,
) -> (Token, Option<String>) {
    let token = h.send_join(now_ms, version, join_request(group, "", instance, &range()));
    if version >= 4 && instance.is_none() {
        let response = h.join_answer(token).unwrap();
        encodes("JoinGroup", &response, version);
        let member_id = response.member_id.to_string();
        let token = h.send_join(
            now_ms,
            version,
            join_request(group, &member_id, None, &range()),
        );
        return (token, Some(member_id));
    }
    (token, None)
}

#[test]
fn join_and_sync_answers_encode_at_every_version() {
    for jv in versions(ApiKey::JoinGroup) {
        for sv in versions(ApiKey::SyncGroup) {
            let mut h = Harness::new();
            let sync =
                |h: &mut Harness, member: &str, generation: i32, assignments: &[(&str, &[u8])]| {
                    let token = h.token();
                    let mut request = SyncGroupRequest::default();
                    request.group_id = gid("g");
                    request.member_id = s(member);
                    request.generation_id = generation;
                    request.assignments = assignments
                        .iter()
                        .map(|(m, a)| {
                            let mut assignment =
                                sync_group_request::SyncGroupRequestAssignment::default();
                            assignment.member_id = s(m);
                            assignment.assignment = Bytes::copy_from_slice(a);
                            assignment
                        })
                        .collect();
                    if sv >= 5 {
                        request.protocol_type = Some(s("consumer"));
                        request.protocol_name = Some(s("range"));
                    }
                    h.coordinator
                        .sync_group(10_000, token, sv, request, &mut h.out);
                };
            // Refusals.
            h.send_join(0, jv, join_request("", "", None, &range()));
            h.send_join(0, jv, join_request("g", "", None, &[]));
            encode_outputs(&mut h, jv, sv);

            let (ta, _) = join_at(&mut h, 0, jv, "g", None);
            let (tb, _) = join_at(&mut h, 0, jv, "g", None);
            let static_member = jv >= 5;
            if static_member {
                join_at(&mut h, 0, jv, "g", Some("instance"));
            }
            h.tick(DELAY_MS);
            h.tick(2 * DELAY_MS);
            let a = h.join_answer(ta).unwrap();
            let b = h.join_answer(tb).unwrap();
            encodes("JoinGroup leader", &a, jv);
            encodes("JoinGroup follower", &b, jv);
            encode_outputs(&mut h, jv, sv);
            let (a, b, generation) = (
                a.member_id.to_string(),
                b.member_id.to_string(),
                a.generation_id,
            );

            // A resent join response, a follower's parked sync, a refused sync, the leader's sync.
            h.rejoin_at(6_100, jv, "g", &a);
            sync(&mut h, &b, generation, &[]);
            sync(&mut h, &b, generation + 7, &[]);
            sync(
                &mut h,
                &a,
                generation,
                &[(a.as_str(), b"A"), (b.as_str(), b"B")],
            );
            encode_outputs(&mut h, jv, sv);
            assert_eq!(h.state("g"), Some(GroupState::Stable), "v{jv}/{sv}");

            if static_member {
                // A static restart in Stable: answered at once (with members at v9).
                h.send_join(7_000, jv, join_request("g", "", Some("instance"), &range()));
                encode_outputs(&mut h, jv, sv);
            }

            // A rebalance: a superseded join, a sync refused while preparing, the completion.
            h.rejoin_at(8_000, jv, "g", &a);
            h.rejoin_at(8_000, jv, "g", &a);
            sync(&mut h, &b, generation, &[]);
            h.rejoin_at(8_000, jv, "g", &b);
            h.tick(8_000 + i64::from(REBALANCE_MS));
            encode_outputs(&mut h, jv, sv);
            // A member leaving while another's sync is parked.
            let generation = generation + 1;
            sync(&mut h, &b, generation, &[]);
            h.leave(45_000, "g", &a);
            encode_outputs(&mut h, jv, sv);
        }
    }
}

impl Harness {
    fn rejoin_at(&mut self, now_ms: i64, version: i16, group: &str, member_id: &str) -> Token {
        self.send_join(
            now_ms,
            version,
            join_request(group, member_id, None, &range()),
        )
    }
}

#[test]
fn heartbeat_and_leave_answers_encode_at_every_version() {
    let mut h = Harness::new();
    let (members, generation) = h.stable_group("g");
    for version in versions(ApiKey::Heartbeat) {
        for (member, generation) in [
            (members[1].as_str(), generation),
            ("nobody", generation),
            (members[1].as_str(), 99),
        ] {
            let mut request = HeartbeatRequest::default();
            request.group_id = gid("g");
            request.member_id = s(member);
            request.generation_id = generation;
            let response = h.coordinator.heartbeat(7_000, version, request);
            encodes("Heartbeat", &response, version);
        }
    }
    for version in versions(ApiKey::LeaveGroup) {
        let mut h = Harness::new();
        let (members, _) = h.stable_group("g");
        let mut request = LeaveGroupRequest::default();
        request.group_id = gid("g");
        if version <= 2 {
            request.member_id = s(&members[2]);
        } else {
            let identity = |member: &str, instance: Option<&str>| {
                let mut m = leave_group_request::MemberIdentity::default();
                m.member_id = s(member);
                m.group_instance_id = instance.map(s);
                if version >= 5 {
                    m.reason = Some(s("bye"));
                }
                m
            };
            request.members = vec![
                identity(&members[2], None),
                identity("", Some("x")),
                identity("nobody", None),
            ];
        }
        let response = h
            .coordinator
            .leave_group(7_000, version, request, &mut h.out);
        encodes("LeaveGroup", &response, version);
        encode_outputs(&mut h, 9, 5);
    }
}

#[test]
fn offset_answers_encode_at_every_version() {
    for version in versions(ApiKey::OffsetCommit) {
        let mut h = Harness::new();
        let (members, generation) = h.stable_group("g");
        let mut request = commit_request(
            "g",
            &members[0],
            generation,
            &[("t", 0, 1), ("t", 1, 2), ("u", 0, 3)],
        );
        request.topics[0].partitions[1].committed_metadata = Some(s(&"m".repeat(5_000)));
        let plan = h.coordinator.prepare_offset_commit(7_000, version, request);
        encodes("OffsetCommit", &plan.response, version);
        let refused = h.coordinator.prepare_offset_commit(
            7_000,
            version,
            commit_request("g", "nobody", 1, &[("t", 0, 1)]),
        );
        encodes("OffsetCommit refused", &refused.response, version);
        h.coordinator.apply_offset_commit(plan.pending);
    }
    let mut h = Harness::new();
    h.commit(0, "g", "", -1, &[("t", 0, 1), ("u", 2, 3)]);
    for version in versions(ApiKey::OffsetFetch) {
        let mut request = OffsetFetchRequest::default();
        if version < 8 {
            request.group_id = gid("g");
            let mut t = offset_fetch_request::OffsetFetchRequestTopic::default();
            t.name = TopicName(s("t"));
            t.partition_indexes = vec![0, 1];
            request.topics = Some(vec![t]);
            encodes(
                "OffsetFetch",
                &h.coordinator.offset_fetch(version, request.clone()),
                version,
            );
            if version >= 2 {
                request.topics = None;
                encodes(
                    "OffsetFetch all",
                    &h.coordinator.offset_fetch(version, request),
                    version,
                );
            }
        } else {
            let mut all = offset_fetch_request::OffsetFetchRequestGroup::default();
            all.group_id = gid("g");
            all.topics = None;
            let mut some = offset_fetch_request::OffsetFetchRequestGroup::default();
            some.group_id = gid("missing");
            let mut t = offset_fetch_request::OffsetFetchRequestTopics::default();
            t.name = TopicName(s("t"));
            t.partition_indexes = vec![0];
            some.topics = Some(vec![t]);
            request.groups = vec![all, some];
            encodes(
                "OffsetFetch batched",
                &h.coordinator.offset_fetch(version, request),
                version,
            );
        }
    }
    for version in versions(ApiKey::OffsetDelete) {
        for group in ["g", "missing"] {
            let mut request = OffsetDeleteRequest::default();
            request.group_id = gid(group);
            let mut t = offset_delete_request::OffsetDeleteRequestTopic::default();
            t.name = TopicName(s("t"));
            t.partitions = vec![offset_delete_request::OffsetDeleteRequestPartition::default()];
            request.topics = vec![t];
            let response = h.coordinator.offset_delete(request, &mut h.out);
            encodes("OffsetDelete", &response, version);
        }
    }
}

#[test]
fn admin_answers_encode_at_every_version() {
    let mut h = Harness::new();
    let t1 = h.send_join(0, 9, join_request("static", "", Some("i1"), &range()));
    h.tick(DELAY_MS);
    h.joined(t1);
    h.stable_group("g");
    h.commit(0, "simple", "", -1, &[("t", 0, 1)]);
    for version in versions(ApiKey::ListGroups) {
        let mut request = ListGroupsRequest::default();
        encodes(
            "ListGroups",
            &h.coordinator.list_groups(version, request.clone()),
            version,
        );
        if version >= 4 {
            request.states_filter = vec![s("Stable")];
        }
        if version >= 5 {
            request.types_filter = vec![s("classic")];
        }
        encodes(
            "ListGroups filtered",
            &h.coordinator.list_groups(version, request),
            version,
        );
    }
    for version in versions(ApiKey::DescribeGroups) {
        let mut request = DescribeGroupsRequest::default();
        request.groups = vec![gid("g"), gid("static"), gid("simple"), gid("missing")];
        encodes(
            "DescribeGroups",
            &h.coordinator.describe_groups(version, request),
            version,
        );
    }
    for version in versions(ApiKey::DeleteGroups) {
        let mut h = Harness::new();
        h.stable_group("g");
        h.commit(0, "simple", "", -1, &[("t", 0, 1)]);
        let mut request = DeleteGroupsRequest::default();
        request.groups_names = vec![gid("g"), gid("simple"), gid("missing")];
        encodes(
            "DeleteGroups",
            &h.coordinator.delete_groups(version, request, &mut h.out),
            version,
        );
    }
}
