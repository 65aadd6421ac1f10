//! Every error path of JoinGroup, SyncGroup, Heartbeat and LeaveGroup, each checked to leave
//! the rest of the group exactly as it was.

use super::*;

/// What a refused request must not change: the whole group as DescribeGroups shows it, the
/// generation, and the committed offsets.
fn snapshot(h: &Harness, group: &str) -> String {
    let g = h.coordinator.groups.get(group);
    format!(
        "{:?} {:?} {:?}",
        h.describe(group),
        g.map(|g| (
            g.generation_id,
            g.leader_id.clone(),
            g.members
                .iter()
                .map(|m| (
                    m.member_id.clone(),
                    m.session_deadline_ms,
                    m.assignment.clone()
                ))
                .collect::<Vec<_>>()
        )),
        h.coordinator.committed_offsets(group)
    )
}

#[test]
fn join_errors() {
    let mut h = Harness::new();
    let (members, generation) = h.stable_group("g");
    h.commit(7_000, "g", &members[0], generation, &[("t", 0, 1)]);
    let before = snapshot(&h, "g");
    let expect = |h: &mut Harness, request: JoinGroupRequest, code: i16| {
        let token = h.send_join(7_500, 9, request);
        let response = h.join_answer(token).expect("answered at once");
        assert_eq!(response.error_code, code, "{response:?}");
    };

    expect(&mut h, join_request("", "", None, &range()), 24); // INVALID_GROUP_ID
    let mut short = join_request("g", "", None, &range());
    short.session_timeout_ms = 1_000;
    expect(&mut h, short, 26); // INVALID_SESSION_TIMEOUT
    let mut long = join_request("g", "", None, &range());
    long.session_timeout_ms = 1_800_001;
    expect(&mut h, long, 26);
    expect(&mut h, join_request("g", "", None, &[]), 23); // INCONSISTENT_GROUP_PROTOCOL
    let mut no_type = join_request("g", "", None, &range());
    no_type.protocol_type = s("");
    expect(&mut h, no_type, 23);
    let mut connect = join_request("g", "", None, &range());
    connect.protocol_type = s("connect");
    expect(&mut h, connect, 23);
    expect(
        &mut h,
        join_request("g", "", None, &[("roundrobin", Bytes::new())]),
        23,
    );
    expect(&mut h, join_request("g", "nobody", None, &range()), 25); // UNKNOWN_MEMBER_ID
    assert_eq!(snapshot(&h, "g"), before);
    assert_eq!(h.state("g"), Some(GroupState::Stable));

    // A join that fails cannot create a group.
    expect(&mut h, join_request("new", "someone", None, &range()), 25);
    expect(&mut h, join_request("new", "", None, &[]), 23);
    assert!(!h.coordinator.group_exists("new"));
    assert!(h.persisted().is_empty());
}

#[test]
fn a_full_group_turns_new_members_away() {
    let mut h = Harness::with_config(GroupConfig {
        group_initial_rebalance_delay_ms: DELAY_MS,
        group_max_size: 3,
        ..GroupConfig::default()
    });
    let (members, generation) = h.stable_group("g");
    let before = snapshot(&h, "g");
    let token = h.send_join(7_000, 9, join_request("g", "", None, &range()));
    assert_eq!(h.join_answer(token).unwrap().error_code, 81); // GROUP_MAX_SIZE_REACHED
    assert_eq!(snapshot(&h, "g"), before);
    // Members already in do rejoin.
    let token = h.rejoin(7_100, "g", &members[1]);
    assert_eq!(h.joined(token).generation, generation);
}

#[test]
fn join_with_an_empty_protocol_list_on_a_new_group_is_refused_at_every_version() {
    let mut h = Harness::new();
    for version in 0..=9 {
        let token = h.send_join(0, version, join_request("g", "", None, &[]));
        assert_eq!(h.join_answer(token).unwrap().error_code, 23, "v{version}");
    }
}

#[test]
fn sync_errors() {
    let mut h = Harness::new();
    let (members, generation) = h.stable_group("g");
    let before = snapshot(&h, "g");
    let expect = |h: &mut Harness, group: &str, member: &str, generation: i32, code: i16| {
        let token = h.send_sync(7_000, group, member, generation, &[(member, b"stolen")]);
        assert_eq!(h.sync_answer(token).unwrap().error_code, code);
    };
    expect(&mut h, "nope", &members[0], generation, 25); // unknown group: UNKNOWN_MEMBER_ID
    expect(&mut h, "g", "nobody", generation, 25);
    expect(&mut h, "g", &members[0], generation - 1, 22); // ILLEGAL_GENERATION
    expect(&mut h, "g", &members[0], generation + 1, 22);
    assert_eq!(snapshot(&h, "g"), before);

    // v5: a protocol name that is not the group's.
    let token = h.token();
    let mut request = SyncGroupRequest::default();
    request.group_id = gid("g");
    request.member_id = s(&members[1]);
    request.generation_id = generation;
    request.protocol_type = Some(s("consumer"));
    request.protocol_name = Some(s("roundrobin"));
    h.coordinator
        .sync_group(7_000, token, 5, request, &mut h.out);
    assert_eq!(h.sync_answer(token).unwrap().error_code, 23);
    assert_eq!(snapshot(&h, "g"), before);

    // PreparingRebalance: REBALANCE_IN_PROGRESS, and the syncing member is not changed.
    h.rejoin(7_100, "g", &members[0]);
    let before = snapshot(&h, "g");
    expect(&mut h, "g", &members[1], generation, 27);
    assert_eq!(snapshot(&h, "g"), before);
}

#[test]
fn heartbeat_errors() {
    let mut h = Harness::new();
    let (members, generation) = h.stable_group("g");
    let before = snapshot(&h, "g");
    assert_eq!(h.heartbeat(7_000, "nope", &members[0], generation), 25);
    assert_eq!(h.heartbeat(7_000, "g", "nobody", generation), 25);
    assert_eq!(h.heartbeat(7_000, "g", &members[0], generation + 1), 22);
    assert_eq!(h.heartbeat(7_000, "g", &members[0], generation - 1), 22);
    assert_eq!(
        snapshot(&h, "g"),
        before,
        "a refused heartbeat extends no session"
    );
    assert!(!h.coordinator.group_exists("nope"));
}

#[test]
fn leave_errors() {
    let mut h = Harness::new();
    let (members, _) = h.stable_group("g");
    // v0-2: one member, its error at the top level.
    let mut request = LeaveGroupRequest::default();
    request.group_id = gid("g");
    request.member_id = s("nobody");
    let response = h
        .coordinator
        .leave_group(7_000, 1, request.clone(), &mut h.out);
    assert_eq!(response.error_code, 25);
    request.group_id = gid("nope");
    let response = h.coordinator.leave_group(7_000, 0, request, &mut h.out);
    assert_eq!(response.error_code, 25);
    assert_eq!(h.state("g"), Some(GroupState::Stable));

    // v3+: per-member errors, the good ones still leave.
    let mut request = LeaveGroupRequest::default();
    request.group_id = gid("g");
    let identity = |member: &str, instance: Option<&str>| {
        let mut m = leave_group_request::MemberIdentity::default();
        m.member_id = s(member);
        m.group_instance_id = instance.map(s);
        m
    };
    request.members = vec![
        identity("nobody", None),
        identity(&members[2], None),
        identity("", Some("no-such-instance")),
    ];
    let response = h.coordinator.leave_group(7_100, 4, request, &mut h.out);
    assert_eq!(response.error_code, 0);
    let codes: Vec<i16> = response.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![25, 0, 25]);
    assert_eq!(response.members[1].member_id.as_str(), members[2]);
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));

    let mut request = LeaveGroupRequest::default();
    request.group_id = gid("nope");
    request.members = vec![identity("x", None)];
    let response = h.coordinator.leave_group(7_200, 5, request, &mut h.out);
    assert_eq!(
        (response.error_code, response.members[0].error_code),
        (0, 25)
    );
}
