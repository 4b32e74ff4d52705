//! `GroupMetadata`: one classic consumer group and the join/sync logic of Kafka's
//! `GroupCoordinator`, as a synchronous, deterministic state machine driven by an explicit
//! `now_ms`. It does no I/O and owns no timers, so every rule is unit-testable.
//!
//! Parked requests: a JoinGroup or SyncGroup often cannot be answered at once. The call then
//! returns `Pending` (with the member id to file the waiter under) and the answer appears later
//! in [`GroupMetadata::take_completions`]: after the call that completes the rebalance or sync
//! (often the same call), or after [`GroupMetadata::tick`] when a timer fires. The owner must
//! drain completions after *every* call and tick at [`GroupMetadata::next_deadline_ms`].
//!
//! Timers (Kafka's purgatories, reduced to deadlines; the rebalance part is in `group_rebalance.rs`):
//! - the join timer: `InitialDelayedJoin` when the group leaves Empty (wait
//!   `group.initial.rebalance.delay.ms`, extended while new members keep arriving, within the
//!   rebalance timeout), else `DelayedJoin` (completes early once every member has rejoined, or
//!   at the rebalance timeout, dropping members that did not rejoin);
//! - the sync timer (Kafka 3.2+ `DelayedSync`): members that do not SyncGroup within the
//!   rebalance timeout after the join completes are removed;
//! - per member, the heartbeat (session) deadline; per pending member id, its session timeout.
//!
//! Differences from Kafka, on purpose:
//! - a member removed while its SyncGroup is parked gets UNKNOWN_MEMBER_ID (Kafka leaves it
//!   unanswered); a superseded parked JoinGroup of the same member is the owner's to answer;
//! - a JoinGroup with a pending (MEMBER_ID_REQUIRED) member id *and* a group.instance.id gets
//!   UNKNOWN_MEMBER_ID (Kafka throws an IllegalStateException);
//! - protocol selection breaks vote ties by the first member's preference (Kafka: hash order);
//! - members are kept in join order (a `Vec`: linear lookups, fine for groups of hundreds);
//! - the coordinator persists [`GroupMetadata::snapshot`] when the group is Stable or Empty and
//!   [`GroupMetadata::restore`]s it at startup.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;

use super::error::GroupError;
use super::group_record::{GroupRecord, MemberRecord};
use super::member::{MemberMetadata, Protocol, NEW_MEMBER_JOIN_TIMEOUT_MS};
use super::messages::{
    Completion, GroupOverview, GroupState, GroupSummary, HeartbeatParams, JoinGroupMember, JoinGroupParams,
    JoinGroupResult, JoinOutcome, LeaveGroupMember, LeaveMemberResult, MemberSummary, SyncGroupParams, SyncGroupResult,
    SyncOutcome,
};
use super::GroupCoordinatorConfig;

/// The pending join phase's timer (Kafka's `InitialDelayedJoin` / `DelayedJoin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinTimer {
    /// Never completes early; when it fires, extends itself once more if a new member arrived
    /// meanwhile and rebalance time remains.
    Initial {
        deadline_ms: u64,
        delay_ms: u64,
        remaining_ms: u64,
    },
    /// Completes as soon as all members have rejoined, or when it fires.
    Delayed { deadline_ms: u64 },
}

impl JoinTimer {
    fn deadline_ms(self) -> u64 {
        match self {
            JoinTimer::Initial { deadline_ms, .. } | JoinTimer::Delayed { deadline_ms } => deadline_ms,
        }
    }
}

/// One classic group: its state, generation, members and timers.
#[derive(Debug)]
pub struct GroupMetadata {
    group_id: String,
    config: GroupCoordinatorConfig,
    state: GroupState,
    generation_id: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader_id: Option<String>,
    /// In join order.
    members: Vec<MemberMetadata>,
    /// group.instance.id -> current member id.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED -> when they expire.
    pending_members: BTreeMap<String, u64>,
    join_timer: Option<JoinTimer>,
    /// A member joined during the initial delay of generation 0 (extends the delay).
    new_member_added: bool,
    /// Members that have not sent SyncGroup since the join completed.
    pending_sync: HashSet<String>,
    sync_deadline_ms: Option<u64>,
    completions: Vec<Completion>,
}

impl GroupMetadata {
    /// A new, Empty group.
    pub fn new(group_id: impl Into<String>, config: GroupCoordinatorConfig) -> Self {
        GroupMetadata {
            group_id: group_id.into(),
            config,
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: Vec::new(),
            static_members: HashMap::new(),
            pending_members: BTreeMap::new(),
            join_timer: None,
            new_member_added: false,
            pending_sync: HashSet::new(),
            sync_deadline_ms: None,
            completions: Vec::new(),
        }
    }

    /// Group id.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// Current state.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// Current generation (0 before the first rebalance completes).
    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    /// The leader's member id.
    pub fn leader_id(&self) -> Option<&str> {
        self.leader_id.as_deref()
    }

    /// The protocol type of the group ("consumer" for consumers).
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// The protocol selected for the current generation.
    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    /// Members in join order.
    pub fn members(&self) -> &[MemberMetadata] {
        &self.members
    }

    /// One member.
    pub fn member(&self, member_id: &str) -> Option<&MemberMetadata> {
        self.members.iter().find(|m| m.member_id == member_id)
    }

    /// Whether `member_id` was handed out with MEMBER_ID_REQUIRED and has not joined yet.
    pub fn is_pending_member(&self, member_id: &str) -> bool {
        self.pending_members.contains_key(member_id)
    }

    /// The current member id of a static member.
    pub fn static_member_id(&self, group_instance_id: &str) -> Option<&str> {
        self.static_members.get(group_instance_id).map(String::as_str)
    }

    /// Answers to parked requests produced since the last call. Drain after every call.
    pub fn take_completions(&mut self) -> Vec<Completion> {
        std::mem::take(&mut self.completions)
    }

    /// The earliest time at which [`GroupMetadata::tick`] has something to do.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let timers = [self.join_timer.map(JoinTimer::deadline_ms), self.sync_deadline_ms];
        let members = self.members.iter().filter_map(MemberMetadata::expiry_deadline_ms);
        let pending = self.pending_members.values().copied();
        timers.into_iter().flatten().chain(members).chain(pending).min()
    }

    /// Fires every timer due at `now_ms` and returns the answers this produced.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Completion> {
        self.pending_members.retain(|_, deadline| *deadline > now_ms);
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.is_expired(now_ms))
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in expired {
            if self.member(&member_id).is_some_and(|m| m.is_expired(now_ms)) {
                tracing::info!(group = %self.group_id, member = %member_id, "session expired, removing member");
                self.remove_member(&member_id, now_ms);
            }
        }
        if self.sync_deadline_ms.is_some_and(|d| d <= now_ms) {
            self.expire_pending_sync(now_ms);
        }
        if let Some(timer) = self.join_timer.filter(|t| t.deadline_ms() <= now_ms) {
            self.fire_join_timer(timer, now_ms);
        }
        self.maybe_complete_join(now_ms);
        self.take_completions()
    }

    /// JoinGroup (Kafka's `handleJoinGroup`).
    pub fn join(&mut self, params: JoinGroupParams, now_ms: u64) -> JoinOutcome {
        let session = i64::from(params.session_timeout_ms);
        if session < i64::from(self.config.group_min_session_timeout_ms)
            || session > i64::from(self.config.group_max_session_timeout_ms)
        {
            return JoinOutcome::Done(JoinGroupResult::error(
                params.member_id,
                GroupError::InvalidSessionTimeout,
            ));
        }
        if !self.accepts_joining_member(&params.member_id) {
            if self.member(&params.member_id).is_some() {
                self.remove_member(&params.member_id, now_ms);
            }
            self.maybe_complete_join(now_ms);
            return JoinOutcome::Done(JoinGroupResult::error("", GroupError::GroupMaxSizeReached));
        }
        let outcome = if params.member_id.is_empty() {
            self.join_new_member(params, now_ms)
        } else {
            self.join_current_member(params, now_ms)
        };
        self.maybe_complete_join(now_ms);
        outcome
    }

    /// SyncGroup (Kafka's `doSyncGroup`).
    pub fn sync(&mut self, params: SyncGroupParams, now_ms: u64) -> SyncOutcome {
        if let Err(error) = self.validate_generation(&params.member_id, &params.group_instance_id, params.generation_id)
        {
            return SyncOutcome::Done(SyncGroupResult::error(error));
        }
        if inconsistent(&params.protocol_type, &self.protocol_type)
            || inconsistent(&params.protocol_name, &self.protocol_name)
        {
            return SyncOutcome::Done(SyncGroupResult::error(GroupError::InconsistentGroupProtocol));
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => {
                SyncOutcome::Done(SyncGroupResult::error(GroupError::UnknownMemberId))
            }
            GroupState::PreparingRebalance => {
                SyncOutcome::Done(SyncGroupResult::error(GroupError::RebalanceInProgress))
            }
            GroupState::CompletingRebalance => {
                self.remove_pending_sync(&params.member_id);
                if let Some(member) = self.member_mut(&params.member_id) {
                    member.awaiting_sync = true;
                }
                if self.is_leader(&params.member_id) {
                    self.set_and_propagate_assignment(params.assignments, now_ms);
                }
                SyncOutcome::Pending
            }
            GroupState::Stable => {
                self.remove_pending_sync(&params.member_id);
                let assignment = match self.member_mut(&params.member_id) {
                    Some(member) => {
                        member.heartbeat(now_ms);
                        member.assignment.clone()
                    }
                    None => Bytes::new(),
                };
                SyncOutcome::Done(self.sync_ok(assignment))
            }
        }
    }

    /// Heartbeat (Kafka's `handleHeartbeat`).
    pub fn heartbeat(&mut self, params: &HeartbeatParams, now_ms: u64) -> Result<(), GroupError> {
        self.validate_generation(&params.member_id, &params.group_instance_id, params.generation_id)?;
        let state = self.state;
        let member = self.member_mut(&params.member_id).ok_or(GroupError::UnknownMemberId)?;
        match state {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                member.heartbeat(now_ms);
                Err(GroupError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.heartbeat(now_ms);
                Ok(())
            }
        }
    }

    /// LeaveGroup (Kafka's `handleLeaveGroup`): one result per member, or a group-level error.
    pub fn leave(&mut self, leaving: &[LeaveGroupMember], now_ms: u64) -> Result<Vec<LeaveMemberResult>, GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let results = leaving
            .iter()
            .map(|l| LeaveMemberResult {
                member_id: l.member_id.clone(),
                group_instance_id: l.group_instance_id.clone(),
                error: self.leave_one(l, now_ms).err(),
            })
            .collect();
        self.maybe_complete_join(now_ms);
        Ok(results)
    }

    /// What is persisted of the group (Kafka's `GroupMetadataValue`): meaningful when Stable
    /// or Empty, the states the coordinator stores it in.
    pub fn snapshot(&self) -> GroupRecord {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupRecord {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation_id: self.generation_id,
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone(),
            members: self
                .members
                .iter()
                .map(|m| MemberRecord {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    subscription: m.metadata(&protocol).cloned().unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// A group as persisted, loaded at startup (Kafka's `GroupMetadata.loadGroup`): Stable with
    /// its members if it had any, else Empty. Every member gets a full session timeout from
    /// `now_ms` to show it is still there, as Kafka schedules their heartbeats on load.
    pub fn restore(
        group_id: impl Into<String>,
        config: GroupCoordinatorConfig,
        record: &GroupRecord,
        now_ms: u64,
    ) -> Self {
        let mut group = GroupMetadata::new(group_id, config);
        group.generation_id = record.generation_id;
        group.protocol_type = (!record.protocol_type.is_empty()).then(|| record.protocol_type.clone());
        group.protocol_name = record.protocol_name.clone();
        group.leader_id = record.leader_id.clone();
        let protocol = record.protocol_name.clone().unwrap_or_default();
        for m in &record.members {
            let mut member = MemberMetadata {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocol_type: record.protocol_type.clone(),
                protocols: vec![Protocol::new(protocol.clone(), m.subscription.clone())],
                assignment: m.assignment.clone(),
                last_heartbeat_ms: now_ms,
                heartbeat_deadline_ms: now_ms,
                awaiting_join: false,
                awaiting_sync: false,
                is_new: false,
            };
            member.heartbeat(now_ms);
            if let Some(instance_id) = &m.group_instance_id {
                group.static_members.insert(instance_id.clone(), m.member_id.clone());
            }
            group.members.push(member);
        }
        if group.members.is_empty() {
            group.leader_id = None;
        } else {
            group.state = GroupState::Stable;
        }
        group
    }

    /// Kafka's `validateOffsetCommit` for classic groups: an admin or simple consumer
    /// (generation < 0, no member id, no instance id) may commit to an Empty group only; a member
    /// must be known (or is fenced), of the current generation, and not mid-sync. A member's valid
    /// commit counts as a heartbeat, as in Kafka.
    pub fn validate_offset_commit(
        &mut self,
        member_id: &str,
        group_instance_id: &Option<String>,
        generation_id: i32,
        transactional: bool,
        now_ms: u64,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if generation_id < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation_id >= 0 || !member_id.is_empty() || group_instance_id.is_some() {
            self.validate_member(member_id, group_instance_id)?;
            if generation_id != self.generation_id {
                return Err(GroupError::IllegalGeneration);
            }
        } else if !transactional {
            // A simple consumer committing into a group that has members. Kafka lets
            // TxnOffsetCommit through (its older versions carry no member or generation).
            return Err(GroupError::UnknownMemberId);
        }
        if !transactional && self.state == GroupState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        if let Some(member) = self.member_mut(member_id) {
            member.heartbeat(now_ms);
        }
        Ok(())
    }

    /// Marks the group Dead (deleted or unloaded): parked requests get COORDINATOR_NOT_AVAILABLE.
    pub fn mark_dead(&mut self) {
        for member in &mut self.members {
            if std::mem::take(&mut member.awaiting_join) {
                let result = JoinGroupResult::error(member.member_id.clone(), GroupError::CoordinatorNotAvailable);
                self.completions.push(Completion::Join {
                    member_id: member.member_id.clone(),
                    result,
                });
            }
            if std::mem::take(&mut member.awaiting_sync) {
                let result = SyncGroupResult::error(GroupError::CoordinatorNotAvailable);
                self.completions.push(Completion::Sync {
                    member_id: member.member_id.clone(),
                    result,
                });
            }
        }
        self.members.clear();
        self.static_members.clear();
        self.pending_members.clear();
        self.pending_sync.clear();
        self.join_timer = None;
        self.sync_deadline_ms = None;
        self.leader_id = None;
        self.state = GroupState::Dead;
    }

    /// DescribeGroups data (Kafka's `GroupMetadata.summary`): metadata and assignments only
    /// when Stable.
    pub fn describe(&self) -> GroupSummary {
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = self
            .members
            .iter()
            .map(|m| MemberSummary {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    m.metadata(&protocol).cloned().unwrap_or_default()
                } else {
                    Bytes::new()
                },
                assignment: if stable { m.assignment.clone() } else { Bytes::new() },
            })
            .collect();
        GroupSummary {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: if stable { protocol } else { String::new() },
            members,
        }
    }

    /// ListGroups data.
    pub fn overview(&self) -> GroupOverview {
        GroupOverview {
            group_id: self.group_id.clone(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            state: self.state,
        }
    }

    // ---- JoinGroup paths -------------------------------------------------------------------

    /// Kafka's `acceptJoiningMember`: `group.max.size`, counting awaiting members while
    /// rebalancing so the last rejoiners of an oversized group are the ones shed.
    fn accepts_joining_member(&self, member_id: &str) -> bool {
        let max = self.config.group_max_size.map_or(usize::MAX, |m| m as usize);
        let member = self.member(member_id);
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                member.is_some_and(|m| m.awaiting_join) || self.members.iter().filter(|m| m.awaiting_join).count() < max
            }
            GroupState::CompletingRebalance | GroupState::Stable => member.is_some() || self.members.len() < max,
        }
    }

    /// A JoinGroup with an empty member id (Kafka's `doNewMemberJoinGroup`).
    fn join_new_member(&mut self, params: JoinGroupParams, now_ms: u64) -> JoinOutcome {
        if self.state == GroupState::Dead {
            return JoinOutcome::Done(JoinGroupResult::error("", GroupError::CoordinatorNotAvailable));
        }
        if !self.supports_protocols(&params.protocol_type, &params.protocols) {
            return JoinOutcome::Done(JoinGroupResult::error("", GroupError::InconsistentGroupProtocol));
        }
        let prefix = params.group_instance_id.as_deref().unwrap_or(&params.client_id);
        let new_member_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
        let known_static = params
            .group_instance_id
            .as_ref()
            .and_then(|id| self.static_members.get(id))
            .cloned();
        if let Some(old_member_id) = known_static {
            self.update_static_member_and_rebalance(&old_member_id, new_member_id, params, now_ms)
        } else if params.group_instance_id.is_none() && params.require_known_member_id {
            let session_ms = timeout_ms(params.session_timeout_ms);
            self.pending_members
                .insert(new_member_id.clone(), now_ms.saturating_add(session_ms));
            JoinOutcome::Done(JoinGroupResult::error(new_member_id, GroupError::MemberIdRequired))
        } else {
            self.add_member_and_rebalance(new_member_id, params, now_ms)
        }
    }

    /// A JoinGroup with a member id (Kafka's `doCurrentMemberJoinGroup`).
    fn join_current_member(&mut self, params: JoinGroupParams, now_ms: u64) -> JoinOutcome {
        let member_id = params.member_id.clone();
        if self.state == GroupState::Dead {
            return JoinOutcome::Done(JoinGroupResult::error(member_id, GroupError::CoordinatorNotAvailable));
        }
        if !self.supports_protocols(&params.protocol_type, &params.protocols) {
            return JoinOutcome::Done(JoinGroupResult::error(member_id, GroupError::InconsistentGroupProtocol));
        }
        if self.is_pending_member(&member_id) {
            if params.group_instance_id.is_some() {
                return JoinOutcome::Done(JoinGroupResult::error(member_id, GroupError::UnknownMemberId));
            }
            return self.add_member_and_rebalance(member_id, params, now_ms);
        }
        if let Err(error) = self.validate_member(&member_id, &params.group_instance_id) {
            return JoinOutcome::Done(JoinGroupResult::error(member_id, error));
        }
        let matches = self.member(&member_id).is_some_and(|m| m.matches(&params.protocols));
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(params, now_ms),
            GroupState::CompletingRebalance if matches => {
                // It lost its JoinGroup answer: repeat the current generation's.
                JoinOutcome::Done(self.join_result_for(&member_id))
            }
            GroupState::Stable if matches && !self.is_leader(&member_id) => {
                // A follower with unchanged metadata: no rebalance, just the current generation.
                let mut result = self.join_result_for(&member_id);
                result.members.clear();
                JoinOutcome::Done(result)
            }
            // The leader rejoining a Stable group forces a rebalance (it may have seen topic
            // metadata change); so does any member whose protocols changed.
            GroupState::CompletingRebalance | GroupState::Stable => self.update_member_and_rebalance(params, now_ms),
            GroupState::Empty | GroupState::Dead => {
                JoinOutcome::Done(JoinGroupResult::error(member_id, GroupError::UnknownMemberId))
            }
        }
    }

    fn add_member_and_rebalance(&mut self, member_id: String, params: JoinGroupParams, now_ms: u64) -> JoinOutcome {
        let mut member = MemberMetadata {
            member_id: member_id.clone(),
            group_instance_id: params.group_instance_id,
            client_id: params.client_id,
            client_host: params.client_host,
            session_timeout_ms: timeout_ms(params.session_timeout_ms),
            rebalance_timeout_ms: timeout_ms(params.rebalance_timeout_ms),
            protocol_type: params.protocol_type,
            protocols: params.protocols,
            assignment: Bytes::new(),
            last_heartbeat_ms: now_ms,
            heartbeat_deadline_ms: now_ms,
            awaiting_join: true,
            awaiting_sync: false,
            is_new: true,
        };
        // New members cannot heartbeat before their first answer; drop them if they never get one.
        member.touch(now_ms, NEW_MEMBER_JOIN_TIMEOUT_MS);
        if self.state == GroupState::PreparingRebalance && self.generation_id == 0 {
            self.new_member_added = true;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member_id.clone());
        }
        match &member.group_instance_id {
            Some(instance_id) => {
                self.static_members.insert(instance_id.clone(), member_id.clone());
            }
            None => {
                self.pending_members.remove(&member_id);
            }
        }
        self.members.push(member);
        self.maybe_prepare_rebalance(now_ms);
        JoinOutcome::Pending { member_id }
    }

    fn update_member_and_rebalance(&mut self, params: JoinGroupParams, now_ms: u64) -> JoinOutcome {
        let member_id = params.member_id.clone();
        self.update_member(&member_id, params);
        self.maybe_prepare_rebalance(now_ms);
        JoinOutcome::Pending { member_id }
    }

    /// Replaces a member's protocols and timeouts and parks its JoinGroup.
    fn update_member(&mut self, member_id: &str, params: JoinGroupParams) {
        if let Some(member) = self.member_mut(member_id) {
            member.protocols = params.protocols;
            member.session_timeout_ms = timeout_ms(params.session_timeout_ms);
            member.rebalance_timeout_ms = timeout_ms(params.rebalance_timeout_ms);
            member.client_id = params.client_id;
            member.client_host = params.client_host;
            member.awaiting_join = true;
        }
    }

    /// A known static member rejoined with an empty member id (a restart): it takes a new member
    /// id, the old one is fenced, and a Stable group whose selected protocol stays the same keeps
    /// its generation and assignments (Kafka's `updateStaticMemberAndRebalance`).
    fn update_static_member_and_rebalance(
        &mut self,
        old_member_id: &str,
        new_member_id: String,
        params: JoinGroupParams,
        now_ms: u64,
    ) -> JoinOutcome {
        let current_leader = self.leader_id.clone().unwrap_or_default();
        self.replace_static_member(old_member_id, &new_member_id);
        let supports_skip = params.supports_skip_assignment;
        let mut params = params;
        params.member_id = new_member_id.clone();
        self.update_member(&new_member_id, params);
        if let Some(member) = self.member_mut(&new_member_id) {
            member.heartbeat(now_ms);
        }
        match self.state {
            GroupState::Stable => {
                if self.select_protocol() != self.protocol_name {
                    self.maybe_prepare_rebalance(now_ms);
                    return JoinOutcome::Pending {
                        member_id: new_member_id,
                    };
                }
                if let Some(member) = self.member_mut(&new_member_id) {
                    member.awaiting_join = false;
                }
                let mut result = self.join_result_for(&new_member_id);
                if supports_skip && self.is_leader(&new_member_id) {
                    // v9+: the leader learns the members but keeps the current assignment.
                    result.skip_assignment = true;
                } else {
                    // Older clients: name the old leader id so that a restarted leader does not
                    // compute an assignment a Stable group would never distribute.
                    result.members.clear();
                    result.leader_id = current_leader;
                }
                JoinOutcome::Done(result)
            }
            GroupState::CompletingRebalance => {
                // The leader may be assigning to the old member id: start over.
                self.prepare_rebalance(now_ms);
                JoinOutcome::Pending {
                    member_id: new_member_id,
                }
            }
            GroupState::PreparingRebalance => JoinOutcome::Pending {
                member_id: new_member_id,
            },
            GroupState::Empty | GroupState::Dead => {
                JoinOutcome::Done(JoinGroupResult::error(new_member_id, GroupError::UnknownMemberId))
            }
        }
    }

    /// Gives a static member a new member id, answering the old id's parked requests with
    /// FENCED_INSTANCE_ID.
    fn replace_static_member(&mut self, old_member_id: &str, new_member_id: &str) {
        let Some(member) = self.members.iter_mut().find(|m| m.member_id == old_member_id) else {
            return;
        };
        if std::mem::take(&mut member.awaiting_join) {
            let result = JoinGroupResult::error(old_member_id, GroupError::FencedInstanceId);
            self.completions.push(Completion::Join {
                member_id: old_member_id.to_string(),
                result,
            });
        }
        if std::mem::take(&mut member.awaiting_sync) {
            let result = SyncGroupResult::error(GroupError::FencedInstanceId);
            self.completions.push(Completion::Sync {
                member_id: old_member_id.to_string(),
                result,
            });
        }
        member.member_id = new_member_id.to_string();
        if let Some(instance_id) = member.group_instance_id.clone() {
            self.static_members.insert(instance_id, new_member_id.to_string());
        }
        if self.leader_id.as_deref() == Some(old_member_id) {
            self.leader_id = Some(new_member_id.to_string());
        }
        if self.pending_sync.remove(old_member_id) {
            self.pending_sync.insert(new_member_id.to_string());
        }
    }

    // ---- SyncGroup ---------------------------------------------------------------------------

    fn set_and_propagate_assignment(&mut self, assignments: Vec<(String, Bytes)>, now_ms: u64) {
        let mut assignments: HashMap<String, Bytes> = assignments.into_iter().collect();
        for member in &mut self.members {
            member.assignment = assignments.remove(&member.member_id).unwrap_or_default();
        }
        self.state = GroupState::Stable;
        tracing::info!(group = %self.group_id, generation = self.generation_id, "group is stable");
        let (protocol_type, protocol_name) = (self.protocol_type.clone(), self.protocol_name.clone());
        for member in &mut self.members {
            if std::mem::take(&mut member.awaiting_sync) {
                member.heartbeat(now_ms);
                let result = SyncGroupResult {
                    error: None,
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol_name.clone(),
                    assignment: member.assignment.clone(),
                };
                self.completions.push(Completion::Sync {
                    member_id: member.member_id.clone(),
                    result,
                });
            }
        }
    }

    fn sync_ok(&self, assignment: Bytes) -> SyncGroupResult {
        SyncGroupResult {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment,
        }
    }

    fn remove_pending_sync(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_deadline_ms = None;
        }
    }

    /// Kafka's `onExpirePendingSync`: members that never sent SyncGroup are removed.
    fn expire_pending_sync(&mut self, now_ms: u64) {
        self.sync_deadline_ms = None;
        if !matches!(self.state, GroupState::CompletingRebalance | GroupState::Stable) {
            return;
        }
        let mut late: Vec<String> = self.pending_sync.drain().collect();
        late.sort();
        for member_id in late {
            tracing::info!(group = %self.group_id, member = %member_id, "no SyncGroup within the rebalance timeout");
            self.remove_member(&member_id, now_ms);
        }
    }

    // ---- LeaveGroup and removal ----------------------------------------------------------------

    fn leave_one(&mut self, leaving: &LeaveGroupMember, now_ms: u64) -> Result<(), GroupError> {
        if leaving.member_id.is_empty() {
            // An admin removing a static member by group.instance.id.
            let current = leaving
                .group_instance_id
                .as_ref()
                .and_then(|id| self.static_members.get(id))
                .cloned();
            let member_id = current.ok_or(GroupError::UnknownMemberId)?;
            self.remove_member(&member_id, now_ms);
            return Ok(());
        }
        if self.pending_members.remove(&leaving.member_id).is_some() {
            return Ok(());
        }
        self.validate_member(&leaving.member_id, &leaving.group_instance_id)?;
        self.remove_member(&leaving.member_id, now_ms);
        Ok(())
    }

    /// Kafka's `removeMemberAndUpdateGroup`: parked requests of the member get
    /// UNKNOWN_MEMBER_ID, and the others must rebalance.
    fn remove_member(&mut self, member_id: &str, now_ms: u64) {
        let Some(index) = self.members.iter().position(|m| m.member_id == member_id) else {
            return;
        };
        let member = self.members.remove(index);
        if member.awaiting_join {
            let result = JoinGroupResult::error("", GroupError::UnknownMemberId);
            self.completions.push(Completion::Join {
                member_id: member_id.to_string(),
                result,
            });
        }
        if member.awaiting_sync {
            let result = SyncGroupResult::error(GroupError::UnknownMemberId);
            self.completions.push(Completion::Sync {
                member_id: member_id.to_string(),
                result,
            });
        }
        if let Some(instance_id) = &member.group_instance_id {
            if self.static_members.get(instance_id).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance_id);
            }
        }
        self.pending_sync.remove(member_id);
        if self.leader_id.as_deref() == Some(member_id) {
            self.leader_id = self.members.first().map(|m| m.member_id.clone());
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.maybe_prepare_rebalance(now_ms),
            GroupState::PreparingRebalance | GroupState::Empty | GroupState::Dead => {}
        }
    }

    // ---- Helpers -----------------------------------------------------------------------------

    /// Kafka's `validateCurrentMember`: a group.instance.id bound to another member id is fenced;
    /// otherwise the member id must be known.
    fn validate_member(&self, member_id: &str, group_instance_id: &Option<String>) -> Result<(), GroupError> {
        let bound = group_instance_id.as_ref().and_then(|id| self.static_members.get(id));
        if bound.is_some_and(|current| current != member_id) {
            return Err(GroupError::FencedInstanceId);
        }
        if self.member(member_id).is_none() {
            return Err(GroupError::UnknownMemberId);
        }
        Ok(())
    }

    /// The checks SyncGroup and Heartbeat share: Dead, fenced, unknown, generation.
    fn validate_generation(
        &self,
        member_id: &str,
        group_instance_id: &Option<String>,
        generation_id: i32,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.validate_member(member_id, group_instance_id)?;
        if generation_id != self.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    /// The JoinGroup answer of the current generation; the leader gets every member's metadata.
    fn join_result_for(&self, member_id: &str) -> JoinGroupResult {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = if self.is_leader(member_id) {
            self.members
                .iter()
                .map(|m| JoinGroupMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    metadata: m.metadata(&protocol).cloned().unwrap_or_default(),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinGroupResult {
            error: None,
            member_id: member_id.to_string(),
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone().unwrap_or_default(),
            members,
            skip_assignment: false,
        }
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    fn member_mut(&mut self, member_id: &str) -> Option<&mut MemberMetadata> {
        self.members.iter_mut().find(|m| m.member_id == member_id)
    }

    /// The group's rebalance timeout: the largest of its members'.
    fn rebalance_timeout_ms(&self) -> u64 {
        self.members.iter().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0)
    }
}

/// A protocol type or name given in SyncGroup v5+ that differs from the group's.
fn inconsistent(given: &Option<String>, current: &Option<String>) -> bool {
    given.as_ref().is_some_and(|g| current.as_ref() != Some(g))
}

/// A timeout from the wire; negative values count as zero.
fn timeout_ms(value: i32) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[path = "group_rebalance.rs"]
mod rebalance;

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
