//! The plain inputs and outputs of the group state machine: what the API layer extracts from
//! JoinGroup / SyncGroup / Heartbeat / LeaveGroup requests and what it turns into responses.
//! No kafka-protocol types here, so the state machine does not change when the wire crate does.

use std::fmt;

use bytes::Bytes;

use super::error::GroupError;
use super::member::Protocol;

/// Kafka's group states, named as Kafka prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members (offsets may still be stored).
    Empty,
    /// Waiting for the members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignments (SyncGroup).
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Removed; requests should go to the coordinator again.
    Dead,
}

impl GroupState {
    /// The name Kafka uses in DescribeGroups / ListGroups.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A JoinGroup request, any version.
#[derive(Debug, Clone)]
pub struct JoinGroupParams {
    /// Empty on a first join.
    pub member_id: String,
    /// `group.instance.id` (v5+), for static membership.
    pub group_instance_id: Option<String>,
    /// The request header's client id.
    pub client_id: String,
    /// The peer's host as Kafka prints it (e.g. "/127.0.0.1").
    pub client_host: String,
    /// Session timeout asked for.
    pub session_timeout_ms: i32,
    /// Rebalance timeout (v1+); the API layer passes the session timeout for v0, as Kafka does.
    pub rebalance_timeout_ms: i32,
    /// Protocol type, e.g. "consumer".
    pub protocol_type: String,
    /// Protocols, most preferred first.
    pub protocols: Vec<Protocol>,
    /// True from JoinGroup v4: a dynamic member without member id gets MEMBER_ID_REQUIRED first.
    pub require_known_member_id: bool,
    /// True from JoinGroup v9 (KIP-814): a rejoining static leader may be told to skip assignment.
    pub supports_skip_assignment: bool,
}

/// One member's metadata, as the leader's JoinGroup response lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupMember {
    /// Member id.
    pub member_id: String,
    /// Its `group.instance.id`, if static.
    pub group_instance_id: Option<String>,
    /// Its metadata for the selected protocol.
    pub metadata: Bytes,
}

/// A JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupResult {
    /// `None` on success.
    pub error: Option<GroupError>,
    /// The member's id (the generated one for MEMBER_ID_REQUIRED).
    pub member_id: String,
    /// The new generation, -1 on error.
    pub generation_id: i32,
    /// The group's protocol type (v7+).
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id (empty on error).
    pub leader_id: String,
    /// Every member's metadata for the leader; empty for the others.
    pub members: Vec<JoinGroupMember>,
    /// v9+: the (static) leader must not compute a new assignment.
    pub skip_assignment: bool,
}

impl JoinGroupResult {
    /// An error answer, as Kafka's `JoinGroupResult(memberId, error)`.
    pub fn error(member_id: impl Into<String>, error: GroupError) -> Self {
        JoinGroupResult {
            error: Some(error),
            member_id: member_id.into(),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader_id: String::new(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

/// What a JoinGroup call gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    /// The answer, now.
    Done(JoinGroupResult),
    /// Parked until the rebalance completes: the answer comes as a [`Completion::Join`] for
    /// this member id (which may be a newly generated one).
    Pending {
        /// The waiter key.
        member_id: String,
    },
}

/// A SyncGroup request, any version.
#[derive(Debug, Clone)]
pub struct SyncGroupParams {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` (v3+).
    pub group_instance_id: Option<String>,
    /// The generation from the member's JoinGroup answer.
    pub generation_id: i32,
    /// v5+: must match the group's when given.
    pub protocol_type: Option<String>,
    /// v5+: must match the group's when given.
    pub protocol_name: Option<String>,
    /// The leader's assignments (member id -> assignment); empty for followers.
    pub assignments: Vec<(String, Bytes)>,
}

/// A SyncGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupResult {
    /// `None` on success.
    pub error: Option<GroupError>,
    /// The group's protocol type (v5+).
    pub protocol_type: Option<String>,
    /// The selected protocol (v5+).
    pub protocol_name: Option<String>,
    /// This member's assignment.
    pub assignment: Bytes,
}

impl SyncGroupResult {
    /// An error answer.
    pub fn error(error: GroupError) -> Self {
        SyncGroupResult {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// What a SyncGroup call gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The answer, now.
    Done(SyncGroupResult),
    /// Parked until the leader's assignments arrive (the leader's own SyncGroup is parked too,
    /// and answered in the same batch): the answer comes as a [`Completion::Sync`].
    Pending,
}

/// A Heartbeat request.
#[derive(Debug, Clone)]
pub struct HeartbeatParams {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` (v3+).
    pub group_instance_id: Option<String>,
    /// The member's generation.
    pub generation_id: i32,
}

/// One member leaving (LeaveGroup v3+ batches them; v0-2 carry one member id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroupMember {
    /// Member id; may be empty when an admin removes a static member by instance id.
    pub member_id: String,
    /// `group.instance.id`.
    pub group_instance_id: Option<String>,
}

/// The answer for one leaving member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveMemberResult {
    /// As sent.
    pub member_id: String,
    /// As sent.
    pub group_instance_id: Option<String>,
    /// `None` on success.
    pub error: Option<GroupError>,
}

/// An answer to a parked request, produced when the rebalance or the sync completes, times out,
/// or the member is removed or fenced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Answer the JoinGroup parked under `member_id`.
    Join {
        /// Waiter key.
        member_id: String,
        /// The answer.
        result: JoinGroupResult,
    },
    /// Answer the SyncGroup parked under `member_id`.
    Sync {
        /// Waiter key.
        member_id: String,
        /// The answer.
        result: SyncGroupResult,
    },
}

/// One member in DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSummary {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Metadata for the selected protocol (empty unless the group is Stable, as Kafka).
    pub metadata: Bytes,
    /// Assignment (empty unless the group is Stable, as Kafka).
    pub assignment: Bytes,
}

/// DescribeGroups data for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    /// State.
    pub state: GroupState,
    /// Protocol type ("" if none).
    pub protocol_type: String,
    /// Selected protocol ("" unless Stable, as Kafka).
    pub protocol_name: String,
    /// Members.
    pub members: Vec<MemberSummary>,
}

/// ListGroups data for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOverview {
    /// Group id.
    pub group_id: String,
    /// Protocol type ("" if none).
    pub protocol_type: String,
    /// State.
    pub state: GroupState,
}

/// An OffsetCommit for one group, after the API layer checked each partition (known topic,
/// metadata size).
#[derive(Debug, Clone)]
pub struct TxnOffsetCommitParams {
    /// The transaction's producer id and epoch.
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The group member's identity (v3+; empty / -1 otherwise, as for a simple consumer).
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    /// The offsets, visible once the transaction commits.
    pub entries: Vec<super::offsets::OffsetCommitEntry>,
}

/// OffsetCommit's input.
#[derive(Debug, Clone)]
pub struct OffsetCommitParams {
    /// Member id; empty for a simple consumer or an admin.
    pub member_id: String,
    /// `group.instance.id` (v7+).
    pub group_instance_id: Option<String>,
    /// The member's generation; -1 for a simple consumer or an admin.
    pub generation_id: i32,
    /// The offsets to store.
    pub entries: Vec<super::offsets::OffsetCommitEntry>,
}
