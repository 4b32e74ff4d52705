//! `GroupCoordinator`: the one owner of every classic group on this broker, as a tokio task
//! (the actor) behind a bounded channel, in the style of mini-redis.
//!
//! Why an actor: group state changes on requests *and* on timers (initial delay, rebalance and
//! session timeouts), and a JoinGroup or SyncGroup often waits seconds for other members. The
//! actor owns `HashMap<String, GroupMetadata>` alone, so no lock is shared with the network
//! tasks; a connection only awaits a `oneshot` reply, so it never blocks anything while its
//! group forms.
//!
//! How it works:
//! - [`GroupCoordinator`] (cheap to clone) sends a `Command` carrying a `oneshot` sender over a
//!   bounded channel ([`COMMAND_CHANNEL_CAPACITY`]: callers wait when the actor is behind) and
//!   awaits the reply. If the actor is gone, the answer is COORDINATOR_NOT_AVAILABLE, which
//!   makes clients look up the coordinator again.
//! - A `Pending` JoinGroup or SyncGroup parks its reply sender in `Waiters`, keyed by
//!   (group, member id) per kind. After every command and every tick the actor drains the
//!   group's completions and answers the parked senders.
//! - Timers: each group's `next_deadline_ms()` is filed in `Deadlines` (ordered by time), the
//!   actor sleeps until the earliest, then ticks at most [`MAX_GROUPS_PER_TICK`] due groups per
//!   wake-up (the rest on the next turn of the loop, after pending commands had a chance).
//! - Time: `Clock` turns `tokio::time::Instant` into the state machine's `now_ms` (see there),
//!   so tests run with tokio's paused time and no real waiting.
//!
//! Kafka's rules for groups that do not exist: JoinGroup with an empty member id creates the
//! group; SyncGroup, Heartbeat and LeaveGroup members get UNKNOWN_MEMBER_ID; DescribeGroups
//! reports state "Dead" without error; DeleteGroups gets GROUP_ID_NOT_FOUND (NON_EMPTY_GROUP if
//! the group has members). Empty group ids get INVALID_GROUP_ID except in DescribeGroups.
//!
//! Not yet: committed offsets, persistence (`__consumer_offsets`), and removal of Empty groups
//! other than by DeleteGroups (Kafka drops them with their expired offsets).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::error::GroupError;
use super::group::GroupMetadata;
use super::messages::{
    Completion, GroupOverview, GroupState, GroupSummary, HeartbeatParams, JoinGroupParams, JoinGroupResult,
    JoinOutcome, LeaveGroupMember, LeaveMemberResult, SyncGroupParams, SyncGroupResult, SyncOutcome,
};
use super::GroupCoordinatorConfig;

/// Requests queued for the actor before callers wait (back-pressure, not loss).
pub const COMMAND_CHANNEL_CAPACITY: usize = 1024;

/// At most this many due groups are ticked per timer wake-up, so a burst of expiries cannot
/// starve the requests queued behind it.
pub const MAX_GROUPS_PER_TICK: usize = 256;

/// One group's DescribeGroups answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    /// As asked.
    pub group_id: String,
    /// The summary (state "Dead" for an unknown group, as Kafka), or the error.
    pub result: Result<GroupSummary, GroupError>,
}

/// One group's DeleteGroups answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedGroup {
    /// As asked.
    pub group_id: String,
    /// `Ok` when deleted.
    pub result: Result<(), GroupError>,
}

type Reply<T> = oneshot::Sender<T>;

/// A request to the actor, with the sender for its answer.
#[derive(Debug)]
enum Command {
    Join {
        group_id: String,
        params: JoinGroupParams,
        reply: Reply<JoinGroupResult>,
    },
    Sync {
        group_id: String,
        params: SyncGroupParams,
        reply: Reply<SyncGroupResult>,
    },
    Heartbeat {
        group_id: String,
        params: HeartbeatParams,
        reply: Reply<Result<(), GroupError>>,
    },
    Leave {
        group_id: String,
        members: Vec<LeaveGroupMember>,
        reply: Reply<Result<Vec<LeaveMemberResult>, GroupError>>,
    },
    Describe {
        group_ids: Vec<String>,
        reply: Reply<Vec<DescribedGroup>>,
    },
    List {
        states_filter: Vec<String>,
        reply: Reply<Vec<GroupOverview>>,
    },
    Delete {
        group_ids: Vec<String>,
        reply: Reply<Vec<DeletedGroup>>,
    },
}

/// The handle to the coordinator actor. Clone it freely; the actor stops when every handle is
/// dropped, answering parked requests with COORDINATOR_NOT_AVAILABLE.
#[derive(Debug, Clone)]
pub struct GroupCoordinator {
    commands: mpsc::Sender<Command>,
}

/// Starts the actor on the current tokio runtime. `config` should have passed
/// [`GroupCoordinatorConfig::validate`] (done where the broker config is loaded).
pub fn spawn(config: GroupCoordinatorConfig) -> (GroupCoordinator, JoinHandle<()>) {
    let (commands, receiver) = mpsc::channel(COMMAND_CHANNEL_CAPACITY);
    let actor = Actor::new(config, Clock::start());
    let task = tokio::spawn(actor.run(receiver));
    (GroupCoordinator { commands }, task)
}

impl GroupCoordinator {
    /// Sends a command and awaits its reply; `None` if the actor is gone.
    async fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).await.ok()?;
        answer.await.ok()
    }

    /// JoinGroup. Waits while the group rebalances (up to the rebalance timeout).
    pub async fn join_group(&self, group_id: impl Into<String>, params: JoinGroupParams) -> JoinGroupResult {
        let member_id = params.member_id.clone();
        let group_id = group_id.into();
        self.call(|reply| Command::Join {
            group_id,
            params,
            reply,
        })
        .await
        .unwrap_or_else(|| JoinGroupResult::error(member_id, GroupError::CoordinatorNotAvailable))
    }

    /// SyncGroup. Followers wait for the leader's assignments.
    pub async fn sync_group(&self, group_id: impl Into<String>, params: SyncGroupParams) -> SyncGroupResult {
        let group_id = group_id.into();
        self.call(|reply| Command::Sync {
            group_id,
            params,
            reply,
        })
        .await
        .unwrap_or_else(|| SyncGroupResult::error(GroupError::CoordinatorNotAvailable))
    }

    /// Heartbeat.
    pub async fn heartbeat(&self, group_id: impl Into<String>, params: HeartbeatParams) -> Result<(), GroupError> {
        let group_id = group_id.into();
        self.call(|reply| Command::Heartbeat {
            group_id,
            params,
            reply,
        })
        .await
        .unwrap_or(Err(GroupError::CoordinatorNotAvailable))
    }

    /// LeaveGroup: one result per member, or a group-level error.
    pub async fn leave_group(
        &self,
        group_id: impl Into<String>,
        members: Vec<LeaveGroupMember>,
    ) -> Result<Vec<LeaveMemberResult>, GroupError> {
        let group_id = group_id.into();
        self.call(|reply| Command::Leave {
            group_id,
            members,
            reply,
        })
        .await
        .unwrap_or(Err(GroupError::CoordinatorNotAvailable))
    }

    /// DescribeGroups: one answer per group id, in order.
    pub async fn describe_groups(&self, group_ids: Vec<String>) -> Vec<DescribedGroup> {
        let fallback: Vec<DescribedGroup> = group_ids
            .iter()
            .map(|group_id| DescribedGroup {
                group_id: group_id.clone(),
                result: Err(GroupError::CoordinatorNotAvailable),
            })
            .collect();
        self.call(|reply| Command::Describe { group_ids, reply })
            .await
            .unwrap_or(fallback)
    }

    /// ListGroups: every group whose state is in `states_filter` (all when empty; state names
    /// compared ignoring ASCII case).
    pub async fn list_groups(&self, states_filter: Vec<String>) -> Result<Vec<GroupOverview>, GroupError> {
        self.call(|reply| Command::List { states_filter, reply })
            .await
            .ok_or(GroupError::CoordinatorNotAvailable)
    }

    /// DeleteGroups: one answer per group id, in order. Only groups without members go.
    pub async fn delete_groups(&self, group_ids: Vec<String>) -> Vec<DeletedGroup> {
        let fallback: Vec<DeletedGroup> = group_ids
            .iter()
            .map(|group_id| DeletedGroup {
                group_id: group_id.clone(),
                result: Err(GroupError::CoordinatorNotAvailable),
            })
            .collect();
        self.call(|reply| Command::Delete { group_ids, reply })
            .await
            .unwrap_or(fallback)
    }
}

/// The state machine's clock: wall-clock milliseconds at start plus the `tokio::time::Instant`
/// elapsed since. Monotonic (an NTP step cannot expire every session at once), still close to
/// epoch milliseconds (for timestamps that may be persisted later), and mockable: with tokio's
/// paused time (`start_paused`) the elapsed part advances only as the test runtime advances it.
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: Instant,
    start_wall_ms: u64,
}

impl Clock {
    fn start() -> Self {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Clock {
            start: Instant::now(),
            start_wall_ms: u64::try_from(wall.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.start_wall_ms.saturating_add(elapsed)
    }

    /// The instant of a `now_ms`-style time; `None` if it is too far away to represent.
    fn instant_at(&self, at_ms: u64) -> Option<Instant> {
        self.start
            .checked_add(Duration::from_millis(at_ms.saturating_sub(self.start_wall_ms)))
    }
}

/// Each group's next deadline, ordered by time.
#[derive(Debug, Default)]
struct Deadlines {
    by_time: BTreeSet<(u64, String)>,
    by_group: HashMap<String, u64>,
}

impl Deadlines {
    fn set(&mut self, group_id: &str, deadline_ms: Option<u64>) {
        if let Some(old) = self.by_group.remove(group_id) {
            self.by_time.remove(&(old, group_id.to_string()));
        }
        if let Some(deadline_ms) = deadline_ms {
            self.by_group.insert(group_id.to_string(), deadline_ms);
            self.by_time.insert((deadline_ms, group_id.to_string()));
        }
    }

    fn earliest_ms(&self) -> Option<u64> {
        self.by_time.first().map(|(deadline_ms, _)| *deadline_ms)
    }

    /// Removes and returns up to `limit` groups due at `now_ms`.
    fn pop_due(&mut self, now_ms: u64, limit: usize) -> Vec<String> {
        let mut due = Vec::new();
        while due.len() < limit {
            let Some((deadline_ms, _)) = self.by_time.first() else {
                break;
            };
            if *deadline_ms > now_ms {
                break;
            }
            if let Some((_, group_id)) = self.by_time.pop_first() {
                self.by_group.remove(&group_id);
                due.push(group_id);
            }
        }
        due
    }
}

/// Reply senders of parked requests, by (group id, member id).
#[derive(Debug, Default)]
struct Waiters {
    join: HashMap<(String, String), Reply<JoinGroupResult>>,
    sync: HashMap<(String, String), Reply<SyncGroupResult>>,
}

impl Waiters {
    /// Parks a JoinGroup. A member's earlier parked JoinGroup (the client gave up on it and
    /// sent another; the state machine parks the member once) gets REBALANCE_IN_PROGRESS,
    /// which only tells that connection to rejoin.
    fn park_join(&mut self, group_id: &str, member_id: String, reply: Reply<JoinGroupResult>) {
        let superseded = self.join.insert((group_id.to_string(), member_id.clone()), reply);
        if let Some(old) = superseded {
            let _ = old.send(JoinGroupResult::error(member_id, GroupError::RebalanceInProgress));
        }
    }

    /// Parks a SyncGroup; an earlier parked one of the member gets REBALANCE_IN_PROGRESS.
    fn park_sync(&mut self, group_id: &str, member_id: String, reply: Reply<SyncGroupResult>) {
        if let Some(old) = self.sync.insert((group_id.to_string(), member_id), reply) {
            let _ = old.send(SyncGroupResult::error(GroupError::RebalanceInProgress));
        }
    }

    /// Answers parked requests. A send fails only if the client went away, which is fine.
    fn complete(&mut self, group_id: &str, completions: Vec<Completion>) {
        for completion in completions {
            match completion {
                Completion::Join { member_id, result } => match self.join.remove(&(group_id.to_string(), member_id)) {
                    Some(reply) => {
                        let _ = reply.send(result);
                    }
                    None => tracing::debug!(group = %group_id, "JoinGroup completion without a waiter"),
                },
                Completion::Sync { member_id, result } => match self.sync.remove(&(group_id.to_string(), member_id)) {
                    Some(reply) => {
                        let _ = reply.send(result);
                    }
                    None => tracing::debug!(group = %group_id, "SyncGroup completion without a waiter"),
                },
            }
        }
    }

    /// Answers every parked request of `group_id` (all groups for `None`) with COORDINATOR_NOT_AVAILABLE.
    fn abandon(&mut self, group_id: Option<&str>) {
        let matches = |key: &(String, String)| group_id.is_none_or(|g| key.0 == g);
        let joins: Vec<(String, String)> = self.join.keys().filter(|k| matches(k)).cloned().collect();
        for key in joins {
            if let Some(reply) = self.join.remove(&key) {
                let _ = reply.send(JoinGroupResult::error(key.1, GroupError::CoordinatorNotAvailable));
            }
        }
        let syncs: Vec<(String, String)> = self.sync.keys().filter(|k| matches(k)).cloned().collect();
        for key in syncs {
            if let Some(reply) = self.sync.remove(&key) {
                let _ = reply.send(SyncGroupResult::error(GroupError::CoordinatorNotAvailable));
            }
        }
    }
}

/// The task that owns every group.
#[derive(Debug)]
struct Actor {
    config: GroupCoordinatorConfig,
    clock: Clock,
    groups: HashMap<String, GroupMetadata>,
    waiters: Waiters,
    deadlines: Deadlines,
}

impl Actor {
    fn new(config: GroupCoordinatorConfig, clock: Clock) -> Self {
        Actor {
            config,
            clock,
            groups: HashMap::new(),
            waiters: Waiters::default(),
            deadlines: Deadlines::default(),
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            let wake_at = self.deadlines.earliest_ms().and_then(|ms| self.clock.instant_at(ms));
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.handle(command),
                    None => break,
                },
                () = sleep_until(wake_at) => self.tick_due(),
            }
        }
        self.waiters.abandon(None);
        tracing::debug!("group coordinator stopped");
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Join {
                group_id,
                params,
                reply,
            } => self.join(group_id, params, reply),
            Command::Sync {
                group_id,
                params,
                reply,
            } => self.sync(&group_id, params, reply),
            Command::Heartbeat {
                group_id,
                params,
                reply,
            } => {
                let _ = reply.send(self.heartbeat(&group_id, &params));
            }
            Command::Leave {
                group_id,
                members,
                reply,
            } => {
                let _ = reply.send(self.leave(&group_id, &members));
            }
            Command::Describe { group_ids, reply } => {
                let _ = reply.send(group_ids.into_iter().map(|id| self.describe(id)).collect());
            }
            Command::List { states_filter, reply } => {
                let _ = reply.send(self.list(&states_filter));
            }
            Command::Delete { group_ids, reply } => {
                let _ = reply.send(group_ids.into_iter().map(|id| self.delete(id)).collect());
            }
        }
    }

    fn join(&mut self, group_id: String, params: JoinGroupParams, reply: Reply<JoinGroupResult>) {
        let member_id = params.member_id.clone();
        if group_id.is_empty() {
            let _ = reply.send(JoinGroupResult::error(member_id, GroupError::InvalidGroupId));
            return;
        }
        let created = !self.groups.contains_key(&group_id);
        if created && !member_id.is_empty() {
            // Kafka creates a group only for a member without id.
            let _ = reply.send(JoinGroupResult::error(member_id, GroupError::UnknownMemberId));
            return;
        }
        let now_ms = self.clock.now_ms();
        let config = self.config;
        let group = self
            .groups
            .entry(group_id.clone())
            .or_insert_with(|| GroupMetadata::new(group_id.clone(), config));
        match group.join(params, now_ms) {
            JoinOutcome::Done(result) => {
                // A refused first join leaves no group behind (MEMBER_ID_REQUIRED keeps the
                // pending member id in it).
                let refused = result.error.is_some_and(|e| e != GroupError::MemberIdRequired);
                let _ = reply.send(result);
                if created && refused {
                    self.groups.remove(&group_id);
                }
            }
            JoinOutcome::Pending { member_id } => self.waiters.park_join(&group_id, member_id, reply),
        }
        self.after_call(&group_id);
    }

    fn sync(&mut self, group_id: &str, params: SyncGroupParams, reply: Reply<SyncGroupResult>) {
        if group_id.is_empty() {
            let _ = reply.send(SyncGroupResult::error(GroupError::InvalidGroupId));
            return;
        }
        let now_ms = self.clock.now_ms();
        let Some(group) = self.groups.get_mut(group_id) else {
            let _ = reply.send(SyncGroupResult::error(GroupError::UnknownMemberId));
            return;
        };
        let member_id = params.member_id.clone();
        match group.sync(params, now_ms) {
            SyncOutcome::Done(result) => {
                let _ = reply.send(result);
            }
            // Park before draining: the leader's own SyncGroup completes in this same call.
            SyncOutcome::Pending => self.waiters.park_sync(group_id, member_id, reply),
        }
        self.after_call(group_id);
    }

    fn heartbeat(&mut self, group_id: &str, params: &HeartbeatParams) -> Result<(), GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let now_ms = self.clock.now_ms();
        let group = self.groups.get_mut(group_id).ok_or(GroupError::UnknownMemberId)?;
        let result = group.heartbeat(params, now_ms);
        self.after_call(group_id);
        result
    }

    fn leave(&mut self, group_id: &str, members: &[LeaveGroupMember]) -> Result<Vec<LeaveMemberResult>, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let now_ms = self.clock.now_ms();
        let Some(group) = self.groups.get_mut(group_id) else {
            // Kafka: no group-level error, each member unknown.
            return Ok(members
                .iter()
                .map(|m| LeaveMemberResult {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    error: Some(GroupError::UnknownMemberId),
                })
                .collect());
        };
        let result = group.leave(members, now_ms);
        self.after_call(group_id);
        result
    }

    fn describe(&self, group_id: String) -> DescribedGroup {
        let summary = self.groups.get(&group_id).map_or_else(
            || GroupSummary {
                state: GroupState::Dead,
                protocol_type: String::new(),
                protocol_name: String::new(),
                members: Vec::new(),
            },
            GroupMetadata::describe,
        );
        DescribedGroup {
            group_id,
            result: Ok(summary),
        }
    }

    fn list(&self, states_filter: &[String]) -> Vec<GroupOverview> {
        let mut groups: Vec<GroupOverview> = self
            .groups
            .values()
            .filter(|g| {
                let state = g.state().as_str();
                states_filter.is_empty() || states_filter.iter().any(|s| s.eq_ignore_ascii_case(state))
            })
            .map(GroupMetadata::overview)
            .collect();
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        groups
    }

    fn delete(&mut self, group_id: String) -> DeletedGroup {
        let result = self.try_delete(&group_id);
        DeletedGroup { group_id, result }
    }

    fn try_delete(&mut self, group_id: &str) -> Result<(), GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let group = self.groups.get_mut(group_id).ok_or(GroupError::GroupIdNotFound)?;
        if !group.members().is_empty() {
            return Err(GroupError::NonEmptyGroup);
        }
        group.mark_dead();
        let completions = group.take_completions();
        self.waiters.complete(group_id, completions);
        self.waiters.abandon(Some(group_id));
        self.groups.remove(group_id);
        self.deadlines.set(group_id, None);
        tracing::info!(group = %group_id, "group deleted");
        Ok(())
    }

    /// After any call on a group: answer its completions and refile its deadline.
    fn after_call(&mut self, group_id: &str) {
        let Some(group) = self.groups.get_mut(group_id) else {
            self.deadlines.set(group_id, None);
            return;
        };
        let completions = group.take_completions();
        let deadline_ms = group.next_deadline_ms();
        self.waiters.complete(group_id, completions);
        self.deadlines.set(group_id, deadline_ms);
    }

    /// Ticks the groups whose deadline has passed (at most [`MAX_GROUPS_PER_TICK`]).
    fn tick_due(&mut self) {
        let now_ms = self.clock.now_ms();
        for group_id in self.deadlines.pop_due(now_ms, MAX_GROUPS_PER_TICK) {
            let Some(group) = self.groups.get_mut(&group_id) else {
                continue;
            };
            let mut completions = group.tick(now_ms);
            completions.extend(group.take_completions());
            // A deadline that did not move would wake us in a loop: never earlier than 1 ms on.
            let deadline_ms = group.next_deadline_ms().map(|d| d.max(now_ms.saturating_add(1)));
            self.waiters.complete(&group_id, completions);
            self.deadlines.set(&group_id, deadline_ms);
        }
    }
}

/// Sleeps until `at`, or forever for `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::coordinator::Protocol;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const SESSION_MS: i32 = 10_000;
    const REBALANCE_MS: i32 = 30_000;

    fn join_params(member_id: &str, client_id: &str) -> JoinGroupParams {
        JoinGroupParams {
            member_id: member_id.to_string(),
            group_instance_id: None,
            client_id: client_id.to_string(),
            client_host: "/127.0.0.1".to_string(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            protocol_type: "consumer".to_string(),
            protocols: vec![Protocol::new("range", format!("{client_id}:range"))],
            require_known_member_id: true,
            supports_skip_assignment: false,
        }
    }

    fn sync_params(member_id: &str, generation_id: i32, assignments: Vec<(String, Bytes)>) -> SyncGroupParams {
        SyncGroupParams {
            member_id: member_id.to_string(),
            group_instance_id: None,
            generation_id,
            protocol_type: Some("consumer".to_string()),
            protocol_name: Some("range".to_string()),
            assignments,
        }
    }

    fn hb(member_id: &str, generation_id: i32) -> HeartbeatParams {
        HeartbeatParams {
            member_id: member_id.to_string(),
            group_instance_id: None,
            generation_id,
        }
    }

    /// The v4+ dance through the actor: MEMBER_ID_REQUIRED, then the rejoin that waits.
    async fn join_new(coordinator: &GroupCoordinator, group_id: &str, client_id: &str) -> JoinGroupResult {
        let first = coordinator.join_group(group_id, join_params("", client_id)).await;
        assert_eq!(first.error, Some(GroupError::MemberIdRequired));
        assert!(!first.member_id.is_empty());
        coordinator
            .join_group(group_id, join_params(&first.member_id, client_id))
            .await
    }

    /// A consumer joins and syncs; the leader assigns "a:<member id>" to each member.
    async fn consumer(coordinator: GroupCoordinator, group_id: &str, client_id: &str) -> (JoinGroupResult, Bytes) {
        let joined = join_new(&coordinator, group_id, client_id).await;
        let assignments = joined
            .members
            .iter()
            .map(|m| (m.member_id.clone(), Bytes::from(format!("a:{}", m.member_id))))
            .collect();
        let synced = coordinator
            .sync_group(
                group_id,
                sync_params(&joined.member_id, joined.generation_id, assignments),
            )
            .await;
        assert_eq!(synced.error, None, "{client_id}");
        (joined, synced.assignment)
    }

    async fn three_consumer_group(coordinator: &GroupCoordinator, group_id: &str) -> Vec<(JoinGroupResult, Bytes)> {
        let (a, b, c) = tokio::join!(
            consumer(coordinator.clone(), group_id, "c1"),
            consumer(coordinator.clone(), group_id, "c2"),
            consumer(coordinator.clone(), group_id, "c3"),
        );
        vec![a, b, c]
    }

    #[tokio::test(start_paused = true)]
    async fn lone_consumer_is_answered_right_after_the_initial_delay() -> TestResult {
        let (coordinator, _task) = spawn(GroupCoordinatorConfig::default());
        let start = Instant::now();
        let joined = join_new(&coordinator, "g", "c1").await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(3000), "{waited:?}");
        assert!(waited < Duration::from_millis(3010), "{waited:?}");
        assert_eq!(joined.error, None);
        assert_eq!(joined.generation_id, 1);
        assert_eq!(joined.leader_id, joined.member_id);
        assert_eq!(joined.members.len(), 1);
        let assignment = vec![(joined.member_id.clone(), Bytes::from_static(b"all"))];
        let synced = coordinator
            .sync_group("g", sync_params(&joined.member_id, 1, assignment))
            .await;
        assert_eq!(synced.error, None);
        assert_eq!(synced.assignment, Bytes::from_static(b"all"));
        assert_eq!(start.elapsed(), waited, "SyncGroup of a lone leader does not wait");
        coordinator.heartbeat("g", hb(&joined.member_id, 1)).await?;
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn three_concurrent_consumers_all_join_and_get_their_assignments() -> TestResult {
        let (coordinator, _task) = spawn(GroupCoordinatorConfig::default());
        let start = Instant::now();
        let results = three_consumer_group(&coordinator, "g").await;
        // As Kafka's InitialDelayedJoin: members arriving during the 3 s delay extend it once more.
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(6000), "{waited:?}");
        assert!(waited < Duration::from_millis(6010), "{waited:?}");
        let leaders: Vec<&JoinGroupResult> = results
            .iter()
            .map(|(j, _)| j)
            .filter(|j| !j.members.is_empty())
            .collect();
        assert_eq!(leaders.len(), 1);
        for (joined, assignment) in &results {
            assert_eq!(joined.error, None);
            assert_eq!(joined.generation_id, 1);
            assert_eq!(
                joined.leader_id,
                leaders.first().map(|l| l.member_id.clone()).unwrap_or_default()
            );
            assert_eq!(*assignment, Bytes::from(format!("a:{}", joined.member_id)));
        }
        let described = coordinator.describe_groups(vec!["g".to_string()]).await;
        let summary = described.first().ok_or("no answer")?.result.clone()?;
        assert_eq!(summary.state, GroupState::Stable);
        assert_eq!(summary.members.len(), 3);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn silent_member_expires_and_the_others_are_told_to_rebalance() -> TestResult {
        let (coordinator, _task) = spawn(GroupCoordinatorConfig::default());
        let results = three_consumer_group(&coordinator, "g").await;
        let stable_at = Instant::now();
        let ids: Vec<String> = results.iter().map(|(j, _)| j.member_id.clone()).collect();
        let [live_a, live_b, silent_id] = ids.as_slice() else {
            return Err("expected three members".into());
        };
        // The two live members heartbeat every 3 s; the third says nothing.
        let error = loop {
            tokio::time::sleep(Duration::from_millis(3000)).await;
            let mut errors = Vec::new();
            for id in [live_a, live_b] {
                if let Err(e) = coordinator.heartbeat("g", hb(id, 1)).await {
                    errors.push(e);
                }
            }
            if let Some(e) = errors.first() {
                break *e;
            }
            assert!(stable_at.elapsed() < Duration::from_millis(20_000), "no expiry");
        };
        assert_eq!(error, GroupError::RebalanceInProgress);
        assert_eq!(
            stable_at.elapsed(),
            Duration::from_millis(12_000),
            "expired at 10 s, seen at the next heartbeat"
        );
        assert_eq!(
            coordinator.heartbeat("g", hb(silent_id, 1)).await,
            Err(GroupError::UnknownMemberId)
        );
        // The live members rejoin; the join completes as soon as both did.
        let rejoin = |id: &String| coordinator.join_group("g", join_params(id, "live"));
        let (a, b) = tokio::join!(rejoin(live_a), rejoin(live_b));
        for joined in [&a, &b] {
            assert_eq!(joined.error, None);
            assert_eq!(joined.generation_id, 2);
        }
        assert_eq!(
            a.members.len() + b.members.len(),
            2,
            "only the leader lists the two members"
        );
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_join_of_a_waiting_member_releases_the_first() -> TestResult {
        let (coordinator, _task) = spawn(GroupCoordinatorConfig::default());
        let first = coordinator.join_group("g", join_params("", "c1")).await;
        let params = join_params(&first.member_id, "c1");
        let (old, new) = tokio::join!(coordinator.join_group("g", params.clone()), async {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            coordinator.join_group("g", params.clone()).await
        });
        assert_eq!(old.error, Some(GroupError::RebalanceInProgress));
        assert_eq!(new.error, None);
        assert_eq!(new.generation_id, 1);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_groups_follow_kafka() -> TestResult {
        let (coordinator, _task) = spawn(GroupCoordinatorConfig::default());
        assert_eq!(
            coordinator.heartbeat("nope", hb("m", 1)).await,
            Err(GroupError::UnknownMemberId)
        );
        let synced = coordinator.sync_group("nope", sync_params("m", 1, Vec::new())).await;
        assert_eq!(synced.error, Some(GroupError::UnknownMemberId));
        let leaving = vec![LeaveGroupMember {
            member_id: "m".to_string(),
            group_instance_id: None,
        }];
        let left = coordinator.leave_group("nope", leaving).await?;
        assert_eq!(left.first().and_then(|l| l.error), Some(GroupError::UnknownMemberId));
        let joined = coordinator.join_group("nope", join_params("m", "c1")).await;
        assert_eq!(joined.error, Some(GroupError::UnknownMemberId));
        let joined = coordinator.join_group("", join_params("", "c1")).await;
        assert_eq!(joined.error, Some(GroupError::InvalidGroupId));
        let described = coordinator.describe_groups(vec!["nope".to_string()]).await;
        let summary = described.first().ok_or("no answer")?.result.clone()?;
        assert_eq!(summary.state, GroupState::Dead);
        assert!(summary.members.is_empty());
        assert!(
            coordinator.list_groups(Vec::new()).await?.is_empty(),
            "refused joins leave no group"
        );
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn list_describe_and_delete_groups() -> TestResult {
        let (coordinator, _task) = spawn(GroupCoordinatorConfig::default());
        let results = three_consumer_group(&coordinator, "busy").await;
        let quiet = join_new(&coordinator, "quiet", "q1").await;
        let leaving = vec![LeaveGroupMember {
            member_id: quiet.member_id.clone(),
            group_instance_id: None,
        }];
        let left = coordinator.leave_group("quiet", leaving).await?;
        assert_eq!(left.first().and_then(|l| l.error), None);

        let all = coordinator.list_groups(Vec::new()).await?;
        let names: Vec<(&str, GroupState)> = all.iter().map(|g| (g.group_id.as_str(), g.state)).collect();
        assert_eq!(names, vec![("busy", GroupState::Stable), ("quiet", GroupState::Empty)]);
        let stable = coordinator.list_groups(vec!["stable".to_string()]).await?;
        assert_eq!(stable.len(), 1);
        assert_eq!(stable.first().map(|g| g.protocol_type.as_str()), Some("consumer"));

        let described = coordinator
            .describe_groups(vec!["busy".to_string(), "quiet".to_string()])
            .await;
        let busy = described.first().ok_or("no answer")?.result.clone()?;
        assert_eq!(busy.protocol_name, "range");
        for (joined, assignment) in &results {
            let member = busy
                .members
                .iter()
                .find(|m| m.member_id == joined.member_id)
                .ok_or("member not described")?;
            assert_eq!(member.assignment, *assignment);
        }

        let deleted = coordinator
            .delete_groups(vec!["busy".to_string(), "quiet".to_string(), "nope".to_string()])
            .await;
        let errors: Vec<Result<(), GroupError>> = deleted.into_iter().map(|d| d.result).collect();
        assert_eq!(
            errors,
            vec![Err(GroupError::NonEmptyGroup), Ok(()), Err(GroupError::GroupIdNotFound)]
        );
        let described = coordinator.describe_groups(vec!["quiet".to_string()]).await;
        assert_eq!(
            described.first().ok_or("no answer")?.result.clone()?.state,
            GroupState::Dead
        );
        assert_eq!(coordinator.list_groups(Vec::new()).await?.len(), 1);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_actor_answers_coordinator_not_available() -> TestResult {
        let (coordinator, task) = spawn(GroupCoordinatorConfig::default());
        let first = coordinator.join_group("g", join_params("", "c1")).await;
        let waiting = {
            let coordinator = coordinator.clone();
            let params = join_params(&first.member_id, "c1");
            tokio::spawn(async move { coordinator.join_group("g", params).await })
        };
        tokio::task::yield_now().await;
        task.abort();
        let joined = waiting.await?;
        assert_eq!(joined.error, Some(GroupError::CoordinatorNotAvailable));
        assert_eq!(
            coordinator.heartbeat("g", hb(&first.member_id, 0)).await,
            Err(GroupError::CoordinatorNotAvailable)
        );
        Ok(())
    }
}
