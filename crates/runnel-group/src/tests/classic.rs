//! Rebalances end to end: the first join, the initial delay, sync, new members, session expiry,
//! rebalance timeouts, leaving, and every parked request answered exactly once.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

#[test]
fn first_join_gets_member_id_required_from_v4() {
    let mut h = Harness::new();
    for version in 4..=9 {
        let token = h.send_join(0, version, join_request("g", "", None, &range()));
        let response = h.join_answer(token).unwrap();
        assert_eq!(response.error_code, 79, "v{version}");
        assert!(response.member_id.starts_with("client-"), "v{version}");
        assert_eq!(response.generation_id, -1);
    }
    // Before v4 the member joins directly and waits for the rebalance.
    let token = h.send_join(0, 3, join_request("g3", "", None, &range()));
    assert!(h.join_answer(token).is_none());
    h.tick(DELAY_MS);
    let joined = h.joined(token);
    assert!(joined.member_id.starts_with("client-"));
    assert_eq!(joined.generation, 1);
}

#[test]
fn three_members_in_the_initial_delay_get_one_generation_and_one_leader() {
    let mut h = Harness::new();
    let (a, ta) = h.join_new(0, "g");
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
    assert_eq!(h.coordinator.next_deadline_ms(), Some(DELAY_MS));
    let (b, tb) = h.join_new(1_000, "g");
    let (c, tc) = h.join_new(2_000, "g");
    h.tick(DELAY_MS);
    // New members arrived during the delay: it is extended once more, within the rebalance timeout.
    assert!(h.out.is_empty());
    assert_eq!(h.coordinator.next_deadline_ms(), Some(2 * DELAY_MS));
    h.tick(2 * DELAY_MS - 1);
    assert!(h.out.is_empty());
    h.tick(2 * DELAY_MS);
    let (ja, jb, jc) = (h.joined(ta), h.joined(tb), h.joined(tc));
    assert_eq!((ja.generation, jb.generation, jc.generation), (1, 1, 1));
    assert_eq!(
        (ja.leader.as_str(), jb.leader.as_str(), jc.leader.as_str()),
        (a.as_str(), a.as_str(), a.as_str())
    );
    assert_eq!(ja.members, vec![a.clone(), b.clone(), c.clone()]);
    assert!(jb.members.is_empty() && jc.members.is_empty());
    assert_eq!((jb.member_id, jc.member_id), (b, c));
    assert_eq!(h.state("g"), Some(GroupState::CompletingRebalance));
}

#[test]
fn initial_delay_is_bounded_by_the_rebalance_timeout() {
    let mut h = Harness::new();
    let (_, ta) = h.join_new(0, "g");
    // A new member in every delay window: the join phase still ends by the rebalance timeout.
    let mut now = 0;
    let mut tokens = vec![ta];
    while h.join_answer(ta).is_none() {
        now += 1_000;
        assert!(
            now <= i64::from(REBALANCE_MS),
            "join phase outlived the rebalance timeout"
        );
        if now % DELAY_MS == 1_000 {
            tokens.push(h.join_new(now, "g").1);
        }
        h.tick(now);
    }
    for token in &tokens[1..] {
        assert_eq!(h.joined(*token).generation, 1);
    }
}

#[test]
fn sync_passes_the_leaders_assignment_through_byte_for_byte() {
    let mut h = Harness::new();
    let (a, ta) = h.join_new(0, "g");
    let (b, tb) = h.join_new(0, "g");
    let (c, tc) = h.join_new(0, "g");
    h.tick(DELAY_MS);
    h.tick(2 * DELAY_MS);
    let generation = h.joined(ta).generation;
    h.joined(tb);
    h.joined(tc);
    // A follower's sync waits for the leader's.
    let sb = h.send_sync(6_100, "g", &b, generation, &[]);
    assert!(h.sync_answer(sb).is_none());
    let for_b: &[u8] = &[0, 1, 0, 0, 0, 1, 0, 1, b't', 0xff, 0x00, 0x80];
    let sa = h.send_sync(
        6_200,
        "g",
        &a,
        generation,
        // An assignment for a non-member is ignored; c is left out and gets an empty one.
        &[(a.as_str(), b"for-a"), (b.as_str(), for_b), ("ghost", b"x")],
    );
    let persisted = h.persisted();
    assert_eq!(persisted.len(), 1, "one group metadata record");
    let sa = h.sync_answer(sa).unwrap();
    let sb = h.sync_answer(sb).unwrap();
    assert_eq!((sa.error_code, sa.assignment.as_ref()), (0, &b"for-a"[..]));
    assert_eq!((sb.error_code, sb.assignment.as_ref()), (0, for_b));
    assert_eq!(sa.protocol_name.as_deref(), Some("range"));
    assert_eq!(h.state("g"), Some(GroupState::Stable));
    // A member syncing after the leader gets its assignment at once.
    let sc = h.send_sync(6_300, "g", &c, generation, &[]);
    let sc = h.sync_answer(sc).unwrap();
    assert_eq!((sc.error_code, sc.assignment.len()), (0, 0));
    let described = h.describe("g");
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(described.members[1].member_assignment.as_ref(), for_b);
    assert!(!described
        .members
        .iter()
        .any(|m| m.member_id.as_str() == "ghost"));
}

#[test]
fn a_fourth_member_triggers_a_rebalance_and_heartbeats_say_rejoin() {
    let mut h = Harness::new();
    let (members, generation) = h.stable_group("g");
    for member in &members {
        assert_eq!(h.heartbeat(7_000, "g", member, generation), 0);
    }
    let (d, td) = h.join_new(8_000, "g");
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
    for member in &members {
        assert_eq!(
            h.heartbeat(8_100, "g", member, generation),
            27,
            "REBALANCE_IN_PROGRESS"
        );
    }
    // Commits are still taken while the group prepares.
    assert_eq!(
        h.commit(8_150, "g", &members[1], generation, &[("t", 0, 5)]),
        vec![0]
    );
    let tokens: Vec<Token> = members.iter().map(|m| h.rejoin(8_200, "g", m)).collect();
    // Everyone rejoined: the rebalance completes at once.
    let joined: Vec<Joined> = tokens.iter().map(|t| h.joined(*t)).collect();
    let jd = h.joined(td);
    assert_eq!(jd.generation, generation + 1);
    assert!(joined.iter().all(|j| j.generation == generation + 1));
    assert_eq!(joined[0].leader, members[0]);
    assert_eq!(joined[0].members.len(), 4);
    assert!(joined[0].members.contains(&d));
    // The old generation is fenced now.
    assert_eq!(
        h.heartbeat(8_300, "g", &members[1], generation),
        22,
        "ILLEGAL_GENERATION"
    );
}

#[test]
fn session_expiry_removes_a_silent_member_and_rebalances() {
    let mut h = Harness::new();
    let (members, generation) = h.stable_group("g");
    let (a, b, c) = (&members[0], &members[1], &members[2]);
    // Sessions were renewed at sync (6_100..6_300); a and b keep heartbeating, c is silent.
    for now in [9_000, 12_000, 15_000] {
        assert_eq!(h.heartbeat(now, "g", a, generation), 0);
        assert_eq!(h.heartbeat(now, "g", b, generation), 0);
    }
    h.tick(16_299);
    assert_eq!(h.state("g"), Some(GroupState::Stable));
    h.tick(16_300);
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
    assert_eq!(
        h.heartbeat(16_400, "g", c, generation),
        25,
        "UNKNOWN_MEMBER_ID"
    );
    assert_eq!(h.heartbeat(16_400, "g", a, generation), 27);
    let ta = h.rejoin(16_500, "g", a);
    let tb = h.rejoin(16_500, "g", b);
    let (ja, jb) = (h.joined(ta), h.joined(tb));
    assert_eq!(
        (ja.generation, jb.generation),
        (generation + 1, generation + 1)
    );
    assert_eq!(ja.members, vec![a.clone(), b.clone()]);
}

#[test]
fn the_rebalance_timeout_drops_members_that_do_not_rejoin() {
    let mut h = Harness::new();
    let (members, generation) = h.stable_group("g");
    let (a, b, c) = (&members[0], &members[1], &members[2]);
    // The leader rejoining starts a rebalance (it may have seen metadata change).
    let ta = h.rejoin(7_000, "g", a);
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
    let tb = h.rejoin(7_100, "g", b);
    // c keeps heartbeating but never rejoins.
    let mut now = 7_000;
    while now < 7_000 + i64::from(REBALANCE_MS) {
        assert_eq!(h.heartbeat(now, "g", c, generation), 27);
        assert!(h.join_answer(ta).is_none());
        now += 5_000;
        h.tick(now.min(7_000 + i64::from(REBALANCE_MS) - 1));
    }
    h.tick(7_000 + i64::from(REBALANCE_MS));
    let (ja, jb) = (h.joined(ta), h.joined(tb));
    assert_eq!(ja.generation, generation + 1);
    assert_eq!(jb.generation, generation + 1);
    assert_eq!(ja.members, vec![a.clone(), b.clone()]);
    assert_eq!(h.heartbeat(now + 1, "g", c, generation), 25);
}

#[test]
fn a_follower_rejoining_unchanged_gets_the_current_generation() {
    let mut h = Harness::new();
    let (members, generation) = h.stable_group("g");
    let token = h.rejoin(7_000, "g", &members[1]);
    let joined = h.joined(token);
    assert_eq!(joined.generation, generation);
    assert!(joined.members.is_empty());
    assert_eq!(h.state("g"), Some(GroupState::Stable));
    // Changed metadata does rebalance.
    let changed = vec![("range", subscription(&["t", "u"]))];
    h.send_join(7_100, 9, join_request("g", &members[1], None, &changed));
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
}

#[test]
fn leaving_rebalances_and_the_last_leave_empties_the_group() {
    let mut h = Harness::new();
    let (members, generation) = h.stable_group("g");
    h.commit(7_000, "g", &members[0], generation, &[("t", 0, 42)]);
    let response = h.leave(7_100, "g", &members[2]);
    assert_eq!(response.members[0].error_code, 0);
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
    h.leave(7_200, "g", &members[1]);
    h.leave(7_300, "g", &members[0]);
    // Everyone is gone: the rebalance completes at once, into Empty, and is recorded.
    assert_eq!(h.state("g"), Some(GroupState::Empty));
    let persisted = h.persisted();
    assert_eq!(persisted.len(), 1);
    let value = persisted[0].1[0].1.clone().unwrap();
    let value = crate::records::decode_group_value(&value).unwrap();
    assert_eq!((value.generation, value.members.len()), (generation + 1, 0));
    assert_eq!(value.current_state_timestamp_ms, 7_300);
    assert_eq!(value.protocol_type, "consumer");
    // The offsets keep the group.
    h.tick(8_000);
    assert!(h.coordinator.group_exists("g"));
}

#[test]
fn members_that_never_sync_are_removed_after_the_rebalance_timeout() {
    let mut h = Harness::new();
    let (a, ta) = h.join_new(0, "g");
    let (b, tb) = h.join_new(0, "g");
    h.tick(DELAY_MS);
    h.tick(2 * DELAY_MS);
    let generation = h.joined(ta).generation;
    h.joined(tb);
    let sa = h.send_sync(
        6_100,
        "g",
        &a,
        generation,
        &[(a.as_str(), b"A"), (b.as_str(), b"B")],
    );
    assert_eq!(h.sync_answer(sa).unwrap().error_code, 0);
    // b got its join response but never syncs; it keeps its session alive by heartbeats.
    for now in (7_000..=34_000).step_by(3_000) {
        h.heartbeat(now, "g", &b, generation);
        h.heartbeat(now, "g", &a, generation);
        h.tick(now);
    }
    h.tick(2 * DELAY_MS + i64::from(REBALANCE_MS));
    assert_eq!(h.heartbeat(36_001, "g", &b, generation), 25);
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
}

#[test]
fn a_rejoin_during_completing_rebalance_resends_the_join_response() {
    let mut h = Harness::new();
    let (a, ta) = h.join_new(0, "g");
    let (b, tb) = h.join_new(0, "g");
    h.tick(DELAY_MS);
    h.tick(2 * DELAY_MS);
    let first = h.joined(ta);
    h.joined(tb);
    let again = h.rejoin(6_100, "g", &a);
    let again = h.joined(again);
    assert_eq!(again, first);
    let b_again = h.rejoin(6_100, "g", &b);
    assert!(h.joined(b_again).members.is_empty());
    assert_eq!(h.state("g"), Some(GroupState::CompletingRebalance));
}

#[test]
fn a_member_leaving_during_completing_rebalance_voids_parked_syncs() {
    let mut h = Harness::new();
    let (a, ta) = h.join_new(0, "g");
    let (b, tb) = h.join_new(0, "g");
    let (c, tc) = h.join_new(0, "g");
    h.tick(DELAY_MS);
    h.tick(2 * DELAY_MS);
    let generation = h.joined(ta).generation;
    h.joined(tb);
    h.joined(tc);
    let sb = h.send_sync(6_100, "g", &b, generation, &[]);
    h.leave(6_200, "g", &c);
    assert_eq!(h.sync_answer(sb).unwrap().error_code, 27);
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
    let _ = a;
}

#[test]
fn an_unused_member_id_expires_and_lets_the_rebalance_complete() {
    let mut h = Harness::new();
    let (members, generation) = h.stable_group("g");
    // d asks for a member id but never joins with it; the others rejoin.
    let token = h.send_join(7_000, 9, join_request("g", "", None, &range()));
    assert_eq!(h.join_answer(token).unwrap().error_code, 79);
    let ta = h.rejoin(7_100, "g", &members[0]);
    let tb = h.rejoin(7_100, "g", &members[1]);
    let tc = h.rejoin(7_100, "g", &members[2]);
    assert!(h.join_answer(ta).is_none(), "waits for the handed-out id");
    h.tick(7_000 + i64::from(SESSION_MS));
    for token in [ta, tb, tc] {
        assert_eq!(h.joined(token).generation, generation + 1);
    }
}

/// Counts the answers in `h.out` and learns member ids and generations from joins.
fn record(
    h: &mut Harness,
    member_ids: &mut [Option<String>],
    generations: &mut [i32],
    owners: &BTreeMap<Token, usize>,
    answers: &mut BTreeMap<Token, usize>,
) {
    for output in h.out.drain(..) {
        match output {
            Output::Join { token, response } => {
                *answers.entry(token).or_default() += 1;
                if let Some(&who) = owners.get(&token) {
                    if response.error_code == 0 || response.error_code == 79 {
                        member_ids[who] = Some(response.member_id.to_string());
                        generations[who] = response.generation_id;
                    }
                }
            }
            Output::Sync { token, .. } => *answers.entry(token).or_default() += 1,
            Output::Persist { .. } => {}
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Join(usize),
    Rejoin(usize),
    Sync(usize),
    Heartbeat(usize),
    Leave(usize),
    Advance(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..4usize).prop_map(Step::Join),
        (0..4usize).prop_map(Step::Rejoin),
        (0..4usize).prop_map(Step::Sync),
        (0..4usize).prop_map(Step::Heartbeat),
        (0..4usize).prop_map(Step::Leave),
        (0..20_000i64).prop_map(Step::Advance),
    ]
}

proptest! {
    /// Whatever clients do, every parked JoinGroup and SyncGroup is answered exactly once, and
    /// the group never has two leaders or a leader that is not a member.
    #[test]
    fn every_parked_request_is_answered_exactly_once(steps in proptest::collection::vec(step(), 1..60)) {
        let mut h = Harness::new();
        let mut now = 0i64;
        let mut member_ids: Vec<Option<String>> = vec![None; 4];
        let mut generations: Vec<i32> = vec![-1; 4];
        let mut sent: Vec<Token> = Vec::new();
        let mut answers: BTreeMap<Token, usize> = BTreeMap::new();
        let mut owners: BTreeMap<Token, usize> = BTreeMap::new();
        for step in steps {
            match step {
                Step::Join(who) | Step::Rejoin(who) => {
                    let id = if matches!(step, Step::Join(_)) { String::new() } else { member_ids[who].clone().unwrap_or_default() };
                    let token = h.send_join(now, 9, join_request("g", &id, None, &range()));
                    sent.push(token);
                    owners.insert(token, who);
                }
                Step::Sync(who) => {
                    let id = member_ids[who].clone().unwrap_or_default();
                    let all: Vec<String> = member_ids.iter().flatten().cloned().collect();
                    let assignments: Vec<(&str, &[u8])> = all.iter().map(|m| (m.as_str(), &b"x"[..])).collect();
                    sent.push(h.send_sync(now, "g", &id, generations[who], &assignments));
                }
                Step::Heartbeat(who) => {
                    let id = member_ids[who].clone().unwrap_or_default();
                    h.heartbeat(now, "g", &id, generations[who]);
                }
                Step::Leave(who) => {
                    let id = member_ids[who].clone().unwrap_or_default();
                    h.leave(now, "g", &id);
                }
                Step::Advance(ms) => {
                    now += ms;
                    h.tick(now);
                }
            }
            record(&mut h, &mut member_ids, &mut generations, &owners, &mut answers);
            for answered in answers.values() {
                prop_assert_eq!(*answered, 1);
            }
            if let Some(group) = h.coordinator.groups.get("g") {
                if let Some(leader) = &group.leader_id {
                    prop_assert!(group.has_member(leader));
                }
                prop_assert!(group.members.is_empty() || group.leader_id.is_some());
            }
        }
        // Let every timer run out: all members die, every parked request is answered.
        for _ in 0..100 {
            match h.coordinator.next_deadline_ms() {
                Some(at) if at < now + 10_000_000 => {
                    now = now.max(at);
                    h.tick(now);
                }
                _ => break,
            }
        }
        record(&mut h, &mut member_ids, &mut generations, &owners, &mut answers);
        for token in sent {
            prop_assert_eq!(answers.get(&token).copied(), Some(1), "token {} answered", token);
        }
    }
}
