//! ListGroups, DescribeGroups, DeleteGroups.

use super::*;

fn list(
    h: &Harness,
    version: i16,
    states: &[&str],
    types: &[&str],
) -> Vec<(String, String, String)> {
    let mut request = ListGroupsRequest::default();
    request.states_filter = states.iter().map(|x| s(x)).collect();
    request.types_filter = types.iter().map(|x| s(x)).collect();
    h.coordinator
        .list_groups(version, request)
        .groups
        .into_iter()
        .map(|g| {
            (
                g.group_id.0.to_string(),
                g.protocol_type.to_string(),
                g.group_state.to_string(),
            )
        })
        .collect()
}

#[test]
fn list_groups_filters_by_state_and_type() {
    let mut h = Harness::new();
    h.stable_group("live");
    h.commit(7_000, "simple", "", -1, &[("t", 0, 1)]);
    assert_eq!(
        list(&h, 4, &[], &[]),
        vec![
            ("live".into(), "consumer".into(), "Stable".into()),
            ("simple".into(), "".into(), "Empty".into()),
        ]
    );
    assert_eq!(
        list(&h, 4, &["empty"], &[]).len(),
        1,
        "states match case-insensitively"
    );
    assert_eq!(list(&h, 4, &["Stable", "Empty"], &[]).len(), 2);
    assert_eq!(list(&h, 5, &[], &["Classic"]).len(), 2);
    assert!(list(&h, 5, &[], &["consumer"]).is_empty());
    // Before v4 there is no state in the answer.
    assert_eq!(list(&h, 3, &[], &[])[0].2, "");
    let mut request = ListGroupsRequest::default();
    request.types_filter = vec![s("classic")];
    let response = h.coordinator.list_groups(5, request);
    assert_eq!(response.groups[0].group_type.as_str(), "classic");
}

#[test]
fn describe_groups() {
    let mut h = Harness::new();
    let (members, _) = h.stable_group("g");
    let mut request = DescribeGroupsRequest::default();
    request.groups = vec![gid("g"), gid("nope")];
    let response = h.coordinator.describe_groups(5, request.clone());
    let g = &response.groups[0];
    assert_eq!(
        (
            g.error_code,
            g.group_state.as_str(),
            g.protocol_type.as_str(),
            g.protocol_data.as_str()
        ),
        (0, "Stable", "consumer", "range")
    );
    let described: Vec<(&str, &str, &str, &[u8])> = g
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.as_str(),
                m.client_id.as_str(),
                m.client_host.as_str(),
                m.member_assignment.as_ref(),
            )
        })
        .collect();
    assert_eq!(
        described,
        vec![
            (members[0].as_str(), "client", "/127.0.0.1", &b"A"[..]),
            (members[1].as_str(), "client", "/127.0.0.1", &b"B"[..]),
            (members[2].as_str(), "client", "/127.0.0.1", &b"C"[..]),
        ]
    );
    assert_eq!(g.members[0].member_metadata, subscription(&["t"]));
    // Unknown: Dead without an error before v6, GROUP_ID_NOT_FOUND from v6 (KIP-1043).
    let unknown = &response.groups[1];
    assert_eq!(
        (unknown.error_code, unknown.group_state.as_str()),
        (0, "Dead")
    );
    let response = h.coordinator.describe_groups(6, request);
    assert_eq!(
        (
            response.groups[1].error_code,
            response.groups[1].group_state.as_str()
        ),
        (69, "Dead")
    );

    // While rebalancing, metadata and assignments are not shown.
    h.rejoin(7_000, "g", &members[0]);
    let g = h.describe("g");
    assert_eq!(
        (g.group_state.as_str(), g.protocol_data.as_str()),
        ("PreparingRebalance", "")
    );
    assert!(g
        .members
        .iter()
        .all(|m| m.member_assignment.is_empty() && m.member_metadata.is_empty()));
}

#[test]
fn delete_groups_only_when_empty() {
    let mut h = Harness::new();
    let (members, generation) = h.stable_group("live");
    h.commit(7_000, "live", &members[0], generation, &[("t", 0, 1)]);
    h.commit(7_000, "simple", "", -1, &[("t", 0, 1), ("t", 1, 1)]);
    let mut request = DeleteGroupsRequest::default();
    request.groups_names = vec![gid("live"), gid("simple"), gid("nope"), gid("")];
    let response = h.coordinator.delete_groups(2, request, &mut h.out);
    let codes: Vec<i16> = response.results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![68, 0, 69, 24]);
    assert!(h.coordinator.group_exists("live"));
    assert_eq!(h.coordinator.committed_offsets("live").len(), 1);
    assert!(!h.coordinator.group_exists("simple"));
    let persisted = h.persisted();
    assert_eq!(persisted.len(), 1);
    assert_eq!(persisted[0].0, "simple");
    assert_eq!(
        persisted[0].1.len(),
        3,
        "two offset tombstones and the group's"
    );
    assert!(persisted[0].1.iter().all(|(_, value)| value.is_none()));
}
