//! Static membership (KIP-345): a restarted member with the same `group.instance.id` takes its
//! old place without a rebalance; the id it replaced is fenced.

use super::*;

fn static_join(h: &mut Harness, now_ms: i64, version: i16, instance: &str) -> Token {
    h.send_join(
        now_ms,
        version,
        join_request("g", "", Some(instance), &range()),
    )
}

/// Two static members, Stable with assignments "A" and "B". Returns their member ids and the
/// generation.
fn stable_static_group(h: &mut Harness) -> (String, String, i32) {
    // Static members skip MEMBER_ID_REQUIRED.
    let t1 = static_join(h, 0, 9, "i1");
    let t2 = static_join(h, 100, 9, "i2");
    h.tick(DELAY_MS);
    h.tick(2 * DELAY_MS);
    let (j1, j2) = (h.joined(t1), h.joined(t2));
    assert!(j1.member_id.starts_with("i1-"));
    assert_eq!(j1.leader, j1.member_id);
    let s1 = h.send_sync(
        6_100,
        "g",
        &j1.member_id,
        j1.generation,
        &[(&j1.member_id, b"A"), (&j2.member_id, b"B")],
    );
    let s2 = h.send_sync(6_100, "g", &j2.member_id, j2.generation, &[]);
    assert_eq!(h.sync_answer(s1).unwrap().assignment.as_ref(), b"A");
    assert_eq!(h.sync_answer(s2).unwrap().assignment.as_ref(), b"B");
    h.persisted();
    (j1.member_id, j2.member_id, j1.generation)
}

#[test]
fn a_restarted_static_member_keeps_its_assignment_without_a_rebalance() {
    let mut h = Harness::new();
    let (m1, m2, generation) = stable_static_group(&mut h);
    // i2 restarts (no LeaveGroup: static members do not send one) and rejoins without an id.
    let token = static_join(&mut h, 7_000, 9, "i2");
    let joined = h.joined(token);
    assert_ne!(joined.member_id, m2);
    assert!(joined.member_id.starts_with("i2-"));
    assert_eq!(joined.generation, generation, "no new generation");
    assert_eq!(joined.leader, m1);
    assert!(joined.members.is_empty());
    assert_eq!(h.state("g"), Some(GroupState::Stable));
    assert_eq!(h.persisted().len(), 1, "the new member id is recorded");
    let sync = h.send_sync(7_100, "g", &joined.member_id, generation, &[]);
    assert_eq!(h.sync_answer(sync).unwrap().assignment.as_ref(), b"B");
    // The leader was not disturbed.
    assert_eq!(h.heartbeat(7_200, "g", &m1, generation), 0);

    // The old member id is fenced wherever it names its instance id.
    let mut heartbeat = HeartbeatRequest::default();
    heartbeat.group_id = gid("g");
    heartbeat.member_id = s(&m2);
    heartbeat.generation_id = generation;
    heartbeat.group_instance_id = Some(s("i2"));
    assert_eq!(
        h.coordinator
            .heartbeat(7_300, 4, heartbeat.clone())
            .error_code,
        82
    );
    heartbeat.group_instance_id = None;
    assert_eq!(h.coordinator.heartbeat(7_300, 4, heartbeat).error_code, 25);
    let mut commit = commit_request("g", &m2, generation, &[("t", 0, 9)]);
    commit.group_instance_id = Some(s("i2"));
    let plan = h.coordinator.prepare_offset_commit(7_400, 8, commit);
    assert_eq!(plan.response.topics[0].partitions[0].error_code, 82);
    assert!(plan.records.is_empty());
    let token = h.send_join(7_500, 9, join_request("g", &m2, Some("i2"), &range()));
    assert_eq!(h.join_answer(token).unwrap().error_code, 82);
    assert_eq!(h.state("g"), Some(GroupState::Stable));
}

#[test]
fn a_restarted_static_leader_is_told_to_skip_assignment_from_v9() {
    let mut h = Harness::new();
    let (m1, _, generation) = stable_static_group(&mut h);
    let token = static_join(&mut h, 7_000, 9, "i1");
    let response = h.join_answer(token).unwrap();
    assert_eq!(response.error_code, 0);
    assert!(response.skip_assignment);
    assert_eq!(response.leader, response.member_id);
    assert_eq!(response.members.len(), 2);
    assert_eq!(response.members[0].group_instance_id.as_deref(), Some("i1"));
    assert_eq!(response.generation_id, generation);
    let new_leader = response.member_id.to_string();

    // Before v9 the old leader id is reported, so the client does not think it leads.
    let token = static_join(&mut h, 8_000, 8, "i1");
    let response = h.join_answer(token).unwrap();
    assert_eq!(response.error_code, 0);
    assert_eq!(response.leader.as_str(), new_leader);
    assert_ne!(response.member_id.as_str(), new_leader);
    assert!(response.members.is_empty());
    assert_eq!(h.state("g"), Some(GroupState::Stable));
    let _ = m1;
}

#[test]
fn a_static_member_with_new_metadata_rebalances() {
    let mut h = Harness::new();
    stable_static_group(&mut h);
    let changed = vec![("range", subscription(&["t", "other"]))];
    let token = h.send_join(7_000, 9, join_request("g", "", Some("i2"), &changed));
    assert!(h.join_answer(token).is_none(), "parked for the rebalance");
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
}

#[test]
fn a_static_member_that_misses_a_rebalance_stays_until_its_session_ends() {
    let mut h = Harness::new();
    let (m1, m2, generation) = stable_static_group(&mut h);
    let t1 = h.send_join(7_000, 9, join_request("g", &m1, Some("i1"), &range()));
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
    // i2 is alive but busy (it heartbeats, so its session holds) and does not rejoin; the join
    // phase ends at the rebalance timeout without dropping it, as it is static.
    for now in (8_000..37_000).step_by(4_000) {
        assert_eq!(h.heartbeat(now, "g", &m2, generation), 27);
        h.tick(now);
    }
    h.tick(7_000 + i64::from(REBALANCE_MS));
    let j1 = h.joined(t1);
    assert_eq!(j1.generation, generation + 1);
    assert_eq!(j1.members, vec![m1.clone(), m2.clone()]);
    // When it comes back it takes its place; the group is not Stable yet, so it rebalances.
    let t2 = static_join(&mut h, 38_000, 9, "i2");
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
    let t1 = h.send_join(38_100, 9, join_request("g", &m1, Some("i1"), &range()));
    let (j1, j2) = (h.joined(t1), h.joined(t2));
    assert_eq!(
        (j1.generation, j2.generation),
        (generation + 2, generation + 2)
    );
}

#[test]
fn static_members_leave_by_instance_id_and_stale_ids_are_fenced() {
    let mut h = Harness::new();
    let (_, m2, _) = stable_static_group(&mut h);
    let restarted = static_join(&mut h, 7_000, 9, "i2");
    h.joined(restarted);
    let identity = |member: &str, instance: Option<&str>| {
        let mut m = leave_group_request::MemberIdentity::default();
        m.member_id = s(member);
        m.group_instance_id = instance.map(s);
        m
    };
    let mut request = LeaveGroupRequest::default();
    request.group_id = gid("g");
    request.members = vec![identity(&m2, Some("i2"))];
    let response = h
        .coordinator
        .leave_group(7_100, 5, request.clone(), &mut h.out);
    assert_eq!(response.members[0].error_code, 82);
    assert_eq!(h.state("g"), Some(GroupState::Stable));
    // Administrative removal names only the instance.
    request.members = vec![identity("", Some("i2"))];
    let response = h.coordinator.leave_group(7_200, 5, request, &mut h.out);
    assert_eq!(response.members[0].error_code, 0);
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
    assert_eq!(h.describe("g").members.len(), 1);
}
