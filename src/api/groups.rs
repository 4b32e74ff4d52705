//! The classic group APIs: FindCoordinator (10), JoinGroup (11), Heartbeat (12), LeaveGroup
//! (13), SyncGroup (14), DescribeGroups (15), ListGroups (16), DeleteGroups (42).
//!
//! Each handler only translates between the wire types and the coordinator's plain messages;
//! the rules live in `crate::coordinator` and its errors become codes through
//! `crate::error::group_error_code`. Fields a version does not have are left at their defaults
//! (the crate refuses to encode them otherwise).

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authz::Authz;
use super::RequestContext;
use crate::coordinator::{
    GroupError, GroupState, HeartbeatParams, JoinGroupParams, LeaveGroupMember, Protocol, SyncGroupParams,
};
use crate::error::{group_error_code, group_response_error};
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

/// FindCoordinator key types.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// The group type ListGroups v5 reports for classic groups (KIP-848 names).
const GROUP_TYPE_CLASSIC: &str = "classic";

fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

/// READ on the group (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit).
pub(super) fn may_read_group(ctx: &RequestContext<'_>, group: &str) -> bool {
    Authz::new(ctx).allows(Operation::Read, ResourceType::Group, group)
}

fn opt(text: Option<StrBytes>) -> Option<String> {
    text.map(|t| t.to_string())
}

/// FindCoordinator: a group's coordinator is the leader of its `__consumer_offsets` partition
/// (the topic is created at the first lookup), a transactional id's the leader of its
/// `__transaction_state` partition; COORDINATOR_NOT_AVAILABLE while there is none.
pub async fn find_coordinator(ctx: &RequestContext<'_>, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let key_type = req.key_type;
    let authz = Authz::new(ctx);
    let authz = &authz;
    let answer = |key: StrBytes| async move {
        let base = Coordinator::default().with_key(key.clone());
        let found = match key_type {
            KEY_TYPE_GROUP if !authz.allows(Operation::Describe, ResourceType::Group, key.as_str()) => Err((
                ResponseError::GroupAuthorizationFailed,
                "Group authorization failed.".to_string(),
            )),
            KEY_TYPE_TRANSACTION if !authz.allows(Operation::Describe, ResourceType::TransactionalId, key.as_str()) => {
                Err((
                    ResponseError::TransactionalIdAuthorizationFailed,
                    "Transactional Id authorization failed.".to_string(),
                ))
            }
            KEY_TYPE_GROUP => ctx
                .broker
                .group_coordinator(key.as_str(), ctx.listener)
                .await
                .map_err(|e| (ResponseError::CoordinatorNotAvailable, e.to_string())),
            KEY_TYPE_TRANSACTION => ctx
                .broker
                .transaction_coordinator(key.as_str(), ctx.listener)
                .await
                .map_err(|e| (ResponseError::CoordinatorNotAvailable, e.to_string())),
            _ => Err((
                ResponseError::InvalidRequest,
                "unknown coordinator key type".to_string(),
            )),
        };
        match found {
            Ok(c) => base
                .with_node_id(BrokerId(c.node_id))
                .with_host(s(c.host))
                .with_port(c.port)
                .with_error_message(None),
            Err((e, message)) => base
                .with_node_id(BrokerId(-1))
                .with_host(s(""))
                .with_port(-1)
                .with_error_code(e.code())
                .with_error_message(Some(s(message))),
        }
    };
    if ctx.version >= 4 {
        let mut coordinators = Vec::with_capacity(req.coordinator_keys.len());
        for key in req.coordinator_keys {
            coordinators.push(answer(key).await);
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let one = answer(req.key).await;
    let mut resp = FindCoordinatorResponse::default()
        .with_error_code(one.error_code)
        .with_node_id(one.node_id)
        .with_host(one.host)
        .with_port(one.port);
    if ctx.version >= 1 {
        resp.error_message = one.error_message;
    }
    resp
}

/// JoinGroup: waits (without blocking anything else) until the rebalance completes.
pub async fn join_group(ctx: &RequestContext<'_>, req: JoinGroupRequest) -> JoinGroupResponse {
    let version = ctx.version;
    if !may_read_group(ctx, req.group_id.as_str()) {
        let mut resp = JoinGroupResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code())
            .with_generation_id(-1);
        if version < 7 {
            resp.protocol_name = Some(s(""));
        }
        return resp;
    }
    let params = JoinGroupParams {
        member_id: req.member_id.to_string(),
        group_instance_id: opt(req.group_instance_id),
        client_id: ctx.header.client_id.as_deref().unwrap_or("").to_string(),
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| Protocol::new(p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    let result = ctx.broker.groups.join_group(req.group_id.to_string(), params).await;
    let members = result
        .members
        .into_iter()
        .map(|m| {
            let member = JoinGroupResponseMember::default()
                .with_member_id(s(m.member_id))
                .with_metadata(m.metadata);
            if version >= 5 {
                member.with_group_instance_id(m.group_instance_id.map(s))
            } else {
                member
            }
        })
        .collect();
    let mut resp = JoinGroupResponse::default()
        .with_error_code(group_error_code(result.error))
        .with_generation_id(result.generation_id)
        .with_leader(s(result.leader_id))
        .with_member_id(s(result.member_id))
        .with_members(members);
    // Nullable from v7; before that an absent name is the empty string.
    resp.protocol_name = match (result.protocol_name, version >= 7) {
        (Some(name), _) => Some(s(name)),
        (None, true) => None,
        (None, false) => Some(s("")),
    };
    if version >= 7 {
        resp.protocol_type = result.protocol_type.map(s);
    }
    if version >= 9 {
        resp.skip_assignment = result.skip_assignment;
    }
    resp
}

/// SyncGroup: followers wait for the leader's assignment.
pub async fn sync_group(ctx: &RequestContext<'_>, req: SyncGroupRequest) -> SyncGroupResponse {
    if !may_read_group(ctx, req.group_id.as_str()) {
        return SyncGroupResponse::default().with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let params = SyncGroupParams {
        member_id: req.member_id.to_string(),
        group_instance_id: opt(req.group_instance_id),
        generation_id: req.generation_id,
        protocol_type: opt(req.protocol_type),
        protocol_name: opt(req.protocol_name),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let result = ctx.broker.groups.sync_group(req.group_id.to_string(), params).await;
    let mut resp = SyncGroupResponse::default()
        .with_error_code(group_error_code(result.error))
        .with_assignment(result.assignment);
    if ctx.version >= 5 {
        resp.protocol_type = result.protocol_type.map(s);
        resp.protocol_name = result.protocol_name.map(s);
    }
    resp
}

pub async fn heartbeat(ctx: &RequestContext<'_>, req: HeartbeatRequest) -> HeartbeatResponse {
    if !may_read_group(ctx, req.group_id.as_str()) {
        return HeartbeatResponse::default().with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let params = HeartbeatParams {
        member_id: req.member_id.to_string(),
        group_instance_id: opt(req.group_instance_id),
        generation_id: req.generation_id,
    };
    let result = ctx.broker.groups.heartbeat(req.group_id.to_string(), params).await;
    HeartbeatResponse::default().with_error_code(group_error_code(result.err()))
}

/// LeaveGroup: v0-2 carry one member id, v3+ a batch of members (each answered).
pub async fn leave_group(ctx: &RequestContext<'_>, req: LeaveGroupRequest) -> LeaveGroupResponse {
    if !may_read_group(ctx, req.group_id.as_str()) {
        return LeaveGroupResponse::default().with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let batched = ctx.version >= 3;
    let members: Vec<LeaveGroupMember> = if batched {
        req.members
            .into_iter()
            .map(|m| LeaveGroupMember {
                member_id: m.member_id.to_string(),
                group_instance_id: opt(m.group_instance_id),
            })
            .collect()
    } else {
        vec![LeaveGroupMember {
            member_id: req.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let result = ctx.broker.groups.leave_group(req.group_id.to_string(), members).await;
    match result {
        Err(e) => LeaveGroupResponse::default().with_error_code(e.code()),
        Ok(results) if !batched => {
            let code = group_error_code(results.first().and_then(|r| r.error));
            LeaveGroupResponse::default().with_error_code(code)
        }
        Ok(results) => LeaveGroupResponse::default().with_members(
            results
                .into_iter()
                .map(|r| {
                    MemberResponse::default()
                        .with_member_id(s(r.member_id))
                        .with_group_instance_id(r.group_instance_id.map(s))
                        .with_error_code(group_error_code(r.error))
                })
                .collect(),
        ),
    }
}

pub async fn describe_groups(ctx: &RequestContext<'_>, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let version = ctx.version;
    let authz = Authz::new(ctx);
    let ids: Vec<String> = req.groups.iter().map(|g| g.to_string()).collect();
    let (allowed, denied): (Vec<String>, Vec<String>) = ids
        .iter()
        .cloned()
        .partition(|g| authz.allows(Operation::Describe, ResourceType::Group, g));
    let mut described = ctx.broker.groups.describe_groups(allowed).await.into_iter();
    let groups = ids
        .into_iter()
        .filter_map(|id| {
            if denied.contains(&id) {
                let mut group = DescribedGroup::default()
                    .with_group_id(GroupId(s(id)))
                    .with_authorized_operations(i32::MIN)
                    .with_error_code(ResponseError::GroupAuthorizationFailed.code());
                if version >= 6 {
                    group.error_message = Some(s("Group authorization failed."));
                }
                return Some(group);
            }
            let d = described.next()?;
            let operations = if version >= 3 && req.include_authorized_operations {
                authz.operations_bitfield(ResourceType::Group, &d.group_id)
            } else {
                i32::MIN
            };
            let base = DescribedGroup::default()
                .with_group_id(GroupId(s(d.group_id)))
                .with_authorized_operations(operations);
            // v6+ (KIP-1043): a group that does not exist is an error, not just state Dead.
            let result = match d.result {
                Ok(summary) if version >= 6 && summary.state == GroupState::Dead => Err(GroupError::GroupIdNotFound),
                other => other,
            };
            Some(match result {
                Err(e) => {
                    let mut group = base.with_error_code(e.code()).with_group_state(s("Dead"));
                    if version >= 6 {
                        group.error_message = Some(s(e.to_string()));
                    }
                    group
                }
                Ok(summary) => base
                    .with_group_state(s(summary.state.as_str()))
                    .with_protocol_type(s(summary.protocol_type))
                    .with_protocol_data(s(summary.protocol_name))
                    .with_members(
                        summary
                            .members
                            .into_iter()
                            .map(|m| {
                                let member = DescribedGroupMember::default()
                                    .with_member_id(s(m.member_id))
                                    .with_client_id(s(m.client_id))
                                    .with_client_host(s(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment);
                                if version >= 4 {
                                    member.with_group_instance_id(m.group_instance_id.map(s))
                                } else {
                                    member
                                }
                            })
                            .collect(),
                    ),
            })
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

/// ListGroups: states filter from v4, types filter from v5 (every group here is "classic").
pub async fn list_groups(ctx: &RequestContext<'_>, req: ListGroupsRequest) -> ListGroupsResponse {
    let version = ctx.version;
    let wants_classic = req.types_filter.is_empty()
        || req
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case(GROUP_TYPE_CLASSIC));
    if !wants_classic {
        return ListGroupsResponse::default();
    }
    let states = req.states_filter.iter().map(|s| s.to_string()).collect();
    // DESCRIBE on the cluster lists every group, else only those the principal may describe.
    let authz = Authz::new(ctx);
    let all = authz.quietly_allows(Operation::Describe, ResourceType::Cluster, CLUSTER_NAME);
    match ctx.broker.groups.list_groups(states).await {
        Err(e) => ListGroupsResponse::default().with_error_code(e.code()),
        Ok(groups) => ListGroupsResponse::default().with_groups(
            groups
                .into_iter()
                .filter(|g| all || authz.quietly_allows(Operation::Describe, ResourceType::Group, &g.group_id))
                .map(|g| {
                    let mut listed = ListedGroup::default()
                        .with_group_id(GroupId(s(g.group_id)))
                        .with_protocol_type(s(g.protocol_type));
                    if version >= 4 {
                        listed.group_state = s(g.state.as_str());
                    }
                    if version >= 5 {
                        listed.group_type = s(GROUP_TYPE_CLASSIC);
                    }
                    listed
                })
                .collect(),
        ),
    }
}

/// DeleteGroups: groups without members go, with their committed offsets.
pub async fn delete_groups(ctx: &RequestContext<'_>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let authz = Authz::new(ctx);
    let (allowed, denied): (Vec<String>, Vec<String>) = req
        .groups_names
        .iter()
        .map(|g| g.to_string())
        .partition(|g| authz.allows(Operation::Delete, ResourceType::Group, g));
    let results = ctx.broker.groups.delete_groups(allowed).await;
    DeleteGroupsResponse::default().with_results(
        denied
            .into_iter()
            .map(|g| {
                DeletableGroupResult::default()
                    .with_group_id(GroupId(s(g)))
                    .with_error_code(ResponseError::GroupAuthorizationFailed.code())
            })
            .chain(results.into_iter().map(|d| {
                DeletableGroupResult::default()
                    .with_group_id(GroupId(s(d.group_id)))
                    .with_error_code(d.result.err().map_or(0, |e| group_response_error(e).code()))
            }))
            .collect(),
    )
}

/// The topics a consumer-protocol member subscribes to (for OffsetDelete); nothing if its
/// metadata does not decode.
pub fn subscribed_topics(metadata: &Bytes) -> Vec<String> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::{Decodable, Message};
    let mut buf = metadata.clone();
    let Some(&[hi, lo]) = metadata.get(..2) else {
        return Vec::new();
    };
    let version = i16::from_be_bytes([hi, lo]);
    bytes::Buf::advance(&mut buf, 2);
    // Newer versions than we know are read as the newest we know: their fields come first.
    let version = version.clamp(0, ConsumerProtocolSubscription::VERSIONS.max);
    match ConsumerProtocolSubscription::decode(&mut buf, version) {
        Ok(sub) => sub.topics.into_iter().map(|t| t.to_string()).collect(),
        Err(_) => Vec::new(),
    }
}
