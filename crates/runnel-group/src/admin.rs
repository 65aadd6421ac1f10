//! The Admin APIs over classic groups: ListGroups (state filter v4+, type filter v5+),
//! DescribeGroups, DeleteGroups. KIP-848 groups are listed and described by their own module;
//! the shell merges the answers.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, ListGroupsRequest, ListGroupsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::group::GroupState;
use crate::records::{self, RecordKey};
use crate::{GroupCoordinator, Output};

/// The group type ListGroups v5+ reports for every group here.
const CLASSIC: &str = "classic";

impl GroupCoordinator {
    /// ListGroups: every classic group, filtered by state (v4+) and type (v5+), both compared
    /// case-insensitively as Kafka does.
    pub fn list_groups(&self, version: i16, request: ListGroupsRequest) -> ListGroupsResponse {
        let states: Vec<&str> = if version >= 4 {
            request.states_filter.iter().map(|s| s.as_str()).collect()
        } else {
            Vec::new()
        };
        let types_match = version < 5
            || request.types_filter.is_empty()
            || request
                .types_filter
                .iter()
                .any(|t| t.as_str().eq_ignore_ascii_case(CLASSIC));
        let mut response = ListGroupsResponse::default();
        if !types_match {
            return response;
        }
        response.groups = self
            .groups
            .values()
            .filter(|g| {
                states.is_empty()
                    || states
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state.name()))
            })
            .map(|g| {
                let mut listed = ListedGroup::default();
                listed.group_id = GroupId(StrBytes::from_string(g.group_id.clone()));
                listed.protocol_type =
                    StrBytes::from_string(g.protocol_type.clone().unwrap_or_default());
                if version >= 4 {
                    listed.group_state = StrBytes::from_static_str(g.state.name());
                }
                if version >= 5 {
                    listed.group_type = StrBytes::from_static_str(CLASSIC);
                }
                listed
            })
            .collect();
        response
    }

    /// DescribeGroups. Members' metadata and assignments are shown only when Stable (as Kafka
    /// does: otherwise they are in flux). An unknown group is "Dead" with no members; v6+ also
    /// says GROUP_ID_NOT_FOUND (KIP-1043).
    pub fn describe_groups(
        &self,
        version: i16,
        request: DescribeGroupsRequest,
    ) -> DescribeGroupsResponse {
        let mut response = DescribeGroupsResponse::default();
        response.groups = request
            .groups
            .into_iter()
            .map(|group_id| {
                let mut described = DescribedGroup::default();
                let Some(group) = self.groups.get(group_id.0.as_str()) else {
                    described.group_state = StrBytes::from_static_str(GroupState::Dead.name());
                    if version >= 6 {
                        described.error_code = ResponseError::GroupIdNotFound.code();
                        described.error_message = Some(StrBytes::from_string(format!(
                            "Group {} not found.",
                            group_id.0
                        )));
                    }
                    described.group_id = group_id;
                    return described;
                };
                described.group_id = group_id;
                described.group_state = StrBytes::from_static_str(group.state.name());
                described.protocol_type =
                    StrBytes::from_string(group.protocol_type.clone().unwrap_or_default());
                let stable_protocol = (group.state == GroupState::Stable)
                    .then(|| group.protocol_name.clone())
                    .flatten();
                described.protocol_data =
                    StrBytes::from_string(stable_protocol.clone().unwrap_or_default());
                described.members = group
                    .members
                    .iter()
                    .map(|m| {
                        let mut member = DescribedGroupMember::default();
                        member.member_id = StrBytes::from_string(m.member_id.clone());
                        if version >= 4 {
                            member.group_instance_id =
                                m.group_instance_id.clone().map(StrBytes::from_string);
                        }
                        member.client_id = StrBytes::from_string(m.client_id.clone());
                        member.client_host = StrBytes::from_string(m.client_host.clone());
                        if let Some(protocol) = &stable_protocol {
                            member.member_metadata = m.metadata_for(protocol);
                            member.member_assignment = m.assignment.clone();
                        }
                        member
                    })
                    .collect();
                described
            })
            .collect();
        response
    }

    /// DeleteGroups: only groups without members (Empty) can go, with their offsets; others
    /// get NON_EMPTY_GROUP, unknown ones GROUP_ID_NOT_FOUND.
    pub fn delete_groups(
        &mut self,
        _version: i16,
        request: DeleteGroupsRequest,
        out: &mut Vec<Output>,
    ) -> DeleteGroupsResponse {
        let mut response = DeleteGroupsResponse::default();
        for group_id in request.groups_names {
            let id = group_id.0.to_string();
            let error = if id.is_empty() {
                Some(ResponseError::InvalidGroupId)
            } else {
                match self.groups.get(&id).map(|g| g.state) {
                    None => Some(ResponseError::GroupIdNotFound),
                    Some(GroupState::Empty | GroupState::Dead) => {
                        if let Some(group) = self.remove_group(&id) {
                            let mut records: Vec<_> = group
                                .offsets
                                .keys()
                                .map(|(topic, partition)| {
                                    let key = RecordKey::OffsetCommit {
                                        group: id.clone(),
                                        topic: topic.clone(),
                                        partition: *partition,
                                    };
                                    (records::encode_key(&key), None)
                                })
                                .collect();
                            records.push((
                                records::encode_key(&RecordKey::GroupMetadata {
                                    group: id.clone(),
                                }),
                                None,
                            ));
                            out.push(Output::Persist {
                                group: id.clone(),
                                records,
                            });
                        }
                        None
                    }
                    Some(_) => Some(ResponseError::NonEmptyGroup),
                }
            };
            let mut result = DeletableGroupResult::default();
            result.group_id = group_id;
            result.error_code = error.map_or(0, |e| e.code());
            response.results.push(result);
        }
        response
    }
}
