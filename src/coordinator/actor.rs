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
//! Committed offsets: the actor owns the [`OffsetStore`] too, so an OffsetCommit is validated
//! against the group's generation and stored in one step, with no lock between them. Groups
//! that only have offsets (simple consumers, or every member gone before a restart) exist as
//! Empty groups. Every `offsets.retention.check.interval.ms` the actor expires the offsets of
//! groups without members (Kafka's retention rule: measured from the later of the commit and the
//! group becoming Empty) and removes Empty groups left without offsets, as Kafka does.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
#[cfg(test)]
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::error::GroupError;
use super::group::GroupMetadata;
use super::log::{Leadership, Replication};
use super::messages::{
    Completion, GroupOverview, GroupState, GroupSummary, HeartbeatParams, JoinGroupParams, JoinGroupResult,
    JoinOutcome, LeaveGroupMember, LeaveMemberResult, OffsetCommitParams, SyncGroupParams, SyncGroupResult,
    SyncOutcome, TxnOffsetCommitParams,
};
use super::offsets::{FetchedOffset, LoadedOffsets, NotServed, OffsetStore, StoreError};
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

/// Reads the topics a member subscribes to from its protocol metadata (the API layer knows the
/// consumer protocol's encoding; the coordinator does not). Used by OffsetDelete.
pub type SubscribedTopics = fn(&bytes::Bytes) -> Vec<String>;

/// A (topic, partition) pair.
pub type TopicPartition = (String, i32);

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
    CommitOffsets {
        group_id: String,
        params: OffsetCommitParams,
        reply: Reply<Result<(), GroupError>>,
    },
    FetchOffsets {
        group_id: String,
        partitions: Option<Vec<TopicPartition>>,
        require_stable: bool,
        reply: Reply<Result<Vec<FetchedOffset>, GroupError>>,
    },
    TxnCommitOffsets {
        group_id: String,
        params: TxnOffsetCommitParams,
        reply: Reply<Result<(), GroupError>>,
    },
    EndTxn {
        producer_id: i64,
        commit: bool,
        reply: Reply<Result<(), GroupError>>,
    },
    DeleteOffsets {
        group_id: String,
        partitions: Vec<TopicPartition>,
        subscribed_topics: SubscribedTopics,
        reply: Reply<Result<Vec<Option<GroupError>>, GroupError>>,
    },
    RemoveTopics {
        topics: Vec<String>,
        reply: Reply<()>,
    },
    /// This broker gained or lost the leadership of one of its topic's partitions.
    Leadership(Leadership),
    /// A load started by `Elect` finished (sent by the loading task).
    Loaded {
        partition: i32,
        epoch: i32,
        result: Result<LoadedOffsets, StoreError>,
    },
    Shutdown {
        reply: Reply<()>,
    },
    Stats {
        reply: Reply<CoordinatorStats>,
    },
}

/// What the metrics endpoint shows of the coordinator.
#[derive(Debug, Clone, Default)]
pub struct CoordinatorStats {
    /// Groups per state name (every state listed, zeros included).
    pub groups_by_state: Vec<(&'static str, usize)>,
    /// Every committed offset.
    pub committed: Vec<CommittedEntry>,
}

/// One committed offset, for the metrics.
#[derive(Debug, Clone)]
pub struct CommittedEntry {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[path = "actor_handle.rs"]
mod handle;
#[path = "actor_partitions.rs"]
mod partitions;
#[path = "actor_timers.rs"]
mod timers;

#[cfg(test)]
pub use handle::spawn;
pub use handle::{start, GroupCoordinator};
use timers::{sleep_until, Clock, Deadlines, Waiters};

/// The task that owns every group and the offset store.
struct Actor {
    config: GroupCoordinatorConfig,
    clock: Clock,
    groups: HashMap<String, GroupMetadata>,
    waiters: Waiters,
    deadlines: Deadlines,
    /// `None` once shut down.
    store: Option<OffsetStore>,
    /// When each Empty group became Empty (for offsets retention).
    empty_since_ms: HashMap<String, u64>,
    /// What was last persisted of each group: (state, generation, member ids).
    persisted: HashMap<String, Signature>,
    /// Each group's state after the last call (to count rebalances).
    last_state: HashMap<String, GroupState>,
    /// For loading tasks to report back (weak: the actor stops when the handles go).
    sender: mpsc::WeakSender<Command>,
}

/// The facts whose change makes the actor persist a group's metadata.
type Signature = (GroupState, i32, Vec<String>);

fn signature(group: &GroupMetadata) -> Signature {
    (
        group.state(),
        group.generation_id(),
        group.members().iter().map(|m| m.member_id.clone()).collect(),
    )
}

impl Actor {
    /// An actor over `store` (its loaded partitions' groups restored; more come by `Elect`).
    fn new(
        config: GroupCoordinatorConfig,
        clock: Clock,
        store: OffsetStore,
        sender: mpsc::WeakSender<Command>,
    ) -> Self {
        let ids = store.all_group_ids();
        let mut actor = Actor {
            config,
            clock,
            groups: HashMap::new(),
            waiters: Waiters::default(),
            deadlines: Deadlines::default(),
            store: Some(store),
            empty_since_ms: HashMap::new(),
            persisted: HashMap::new(),
            last_state: HashMap::new(),
            sender,
        };
        actor.restore_groups(ids);
        actor
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let every = Duration::from_millis(self.config.offsets_retention_check_interval_ms.max(1));
        let mut expiry = tokio::time::interval_at(Instant::now() + every, every);
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake_at = self.deadlines.earliest_ms().and_then(|ms| self.clock.instant_at(ms));
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        self.close_store();
                        let _ = reply.send(());
                        break;
                    }
                    Some(command) => self.handle(command),
                    None => break,
                },
                () = sleep_until(wake_at) => self.tick_due(),
                _ = expiry.tick() => self.expire_offsets(),
            }
        }
        self.close_store();
        self.waiters.abandon(None);
        tracing::debug!("group coordinator stopped");
    }

    /// Stops serving: the partitions' logs belong to the replica manager, which closes them.
    fn close_store(&mut self) {
        self.store.take();
    }

    fn now_ms_i64(&self) -> i64 {
        i64::try_from(self.clock.now_ms()).unwrap_or(i64::MAX)
    }

    /// The store, or COORDINATOR_NOT_AVAILABLE after shutdown.
    fn store_mut(&mut self) -> Result<&mut OffsetStore, GroupError> {
        self.store.as_mut().ok_or(GroupError::CoordinatorNotAvailable)
    }

    fn handle(&mut self, command: Command) {
        if let Some(command) = self.refuse_if_not_served(command) {
            self.dispatch(command);
        }
    }

    /// Answers a group command this broker does not serve now (see `check_coordinator`);
    /// returns the others.
    fn refuse_if_not_served(&mut self, command: Command) -> Option<Command> {
        let group_id = match &command {
            Command::Join { group_id, .. }
            | Command::Sync { group_id, .. }
            | Command::Heartbeat { group_id, .. }
            | Command::Leave { group_id, .. }
            | Command::CommitOffsets { group_id, .. }
            | Command::FetchOffsets { group_id, .. }
            | Command::TxnCommitOffsets { group_id, .. }
            | Command::DeleteOffsets { group_id, .. } => group_id,
            _ => return Some(command),
        };
        let Err(e) = self.check_coordinator(group_id) else {
            return Some(command);
        };
        match command {
            Command::Join { params, reply, .. } => {
                let _ = reply.send(JoinGroupResult::error(params.member_id, e));
            }
            Command::Sync { reply, .. } => {
                let _ = reply.send(SyncGroupResult::error(e));
            }
            Command::Heartbeat { reply, .. } | Command::CommitOffsets { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Command::TxnCommitOffsets { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Command::Leave { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Command::FetchOffsets { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Command::DeleteOffsets { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            other => return Some(other),
        }
        None
    }

    fn dispatch(&mut self, command: Command) {
        match command {
            Command::Leadership(Leadership::Gained {
                partition,
                epoch,
                count,
            }) => self.elect(partition, epoch, count),
            Command::Leadership(Leadership::Lost { partition }) => self.resign(partition),
            Command::Loaded {
                partition,
                epoch,
                result,
            } => self.loaded(partition, epoch, result),
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
                let described = group_ids
                    .into_iter()
                    .map(|id| match self.check_coordinator(&id) {
                        Ok(()) => self.describe(id),
                        Err(e) => DescribedGroup {
                            group_id: id,
                            result: Err(e),
                        },
                    })
                    .collect();
                let _ = reply.send(described);
            }
            Command::List { states_filter, reply } => {
                let _ = reply.send(self.list(&states_filter));
            }
            Command::Delete { group_ids, reply } => {
                let deleted = group_ids
                    .into_iter()
                    .map(|id| match self.check_coordinator(&id) {
                        Ok(()) => self.delete(id),
                        Err(e) => DeletedGroup {
                            group_id: id,
                            result: Err(e),
                        },
                    })
                    .collect();
                let _ = reply.send(deleted);
            }
            Command::CommitOffsets {
                group_id,
                params,
                reply,
            } => match self.commit_offsets(&group_id, params) {
                Ok(write) => self.reply_when_replicated(vec![write], reply),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::FetchOffsets {
                group_id,
                partitions,
                require_stable,
                reply,
            } => {
                let result = match &mut self.store {
                    None => Err(GroupError::CoordinatorNotAvailable),
                    Some(store) => {
                        store.settle();
                        let mut fetched = store.fetch(&group_id, partitions.as_deref());
                        if require_stable {
                            for f in &mut fetched {
                                f.unstable = store.has_pending(&group_id, &f.topic, f.partition);
                            }
                        }
                        Ok(fetched)
                    }
                };
                let _ = reply.send(result);
            }
            Command::TxnCommitOffsets {
                group_id,
                params,
                reply,
            } => match self.txn_commit_offsets(&group_id, params) {
                Ok(write) => self.reply_when_replicated(vec![write], reply),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::EndTxn {
                producer_id,
                commit,
                reply,
            } => {
                let now = self.now_ms_i64();
                let result = self.store_mut().and_then(|s| {
                    s.end_txn(producer_id, commit, now)
                        .map_err(|e| store_failed("transaction end", &e))
                });
                match result {
                    Ok(writes) => self.reply_when_replicated(writes, reply),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::DeleteOffsets {
                group_id,
                partitions,
                subscribed_topics,
                reply,
            } => {
                let _ = reply.send(self.delete_offsets(&group_id, &partitions, subscribed_topics));
            }
            Command::RemoveTopics { topics, reply } => {
                self.remove_topics(&topics);
                let _ = reply.send(());
            }
            Command::Shutdown { reply } => {
                self.close_store();
                let _ = reply.send(());
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
        }
    }

    fn stats(&self) -> CoordinatorStats {
        let states = [
            GroupState::Empty,
            GroupState::PreparingRebalance,
            GroupState::CompletingRebalance,
            GroupState::Stable,
            GroupState::Dead,
        ];
        let groups_by_state = states
            .iter()
            .map(|s| (s.as_str(), self.groups.values().filter(|g| g.state() == *s).count()))
            .collect();
        let committed = self
            .store
            .as_ref()
            .map(|store| {
                store
                    .all_committed()
                    .map(|(group, topic, partition, offset)| CommittedEntry {
                        group: group.to_string(),
                        topic: topic.to_string(),
                        partition,
                        offset,
                    })
                    .collect()
            })
            .unwrap_or_default();
        CoordinatorStats {
            groups_by_state,
            committed,
        }
    }

    /// The group checks OffsetCommit and TxnOffsetCommit share. Kafka: only a simple consumer or
    /// admin (no generation) creates a group by committing; `missing` answers a member of a
    /// group that does not exist.
    fn validate_commit(
        &mut self,
        group_id: &str,
        member_id: &str,
        group_instance_id: &Option<String>,
        generation_id: i32,
        transactional: bool,
        missing: GroupError,
    ) -> Result<(), GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let now_ms = self.clock.now_ms();
        match self.groups.get_mut(group_id) {
            Some(group) => {
                group.validate_offset_commit(member_id, group_instance_id, generation_id, transactional, now_ms)
            }
            None if generation_id < 0 => {
                self.groups
                    .insert(group_id.to_string(), GroupMetadata::new(group_id, self.config));
                Ok(())
            }
            None => Err(missing),
        }
    }

    fn commit_offsets(&mut self, group_id: &str, params: OffsetCommitParams) -> Result<Replication, GroupError> {
        // The API layer answers ILLEGAL_GENERATION for a missing group below OffsetCommit v9, as Kafka.
        self.validate_commit(
            group_id,
            &params.member_id,
            &params.group_instance_id,
            params.generation_id,
            false,
            GroupError::GroupIdNotFound,
        )?;
        let now = self.now_ms_i64();
        let stored = self.store_mut()?.commit(group_id, &params.entries, now);
        self.after_call(group_id);
        stored.map_err(|e| store_failed("commit", &e))
    }

    fn txn_commit_offsets(&mut self, group_id: &str, params: TxnOffsetCommitParams) -> Result<Replication, GroupError> {
        self.validate_commit(
            group_id,
            &params.member_id,
            &params.group_instance_id,
            params.generation_id,
            true,
            GroupError::IllegalGeneration,
        )?;
        let now = self.now_ms_i64();
        let stored = self
            .store_mut()?
            .txn_commit(params.producer_id, group_id, &params.entries, now);
        self.after_call(group_id);
        stored.map_err(|e| store_failed("transactional commit", &e))
    }

    fn delete_offsets(
        &mut self,
        group_id: &str,
        partitions: &[TopicPartition],
        subscribed_topics: SubscribedTopics,
    ) -> Result<Vec<Option<GroupError>>, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let group = self.groups.get(group_id).ok_or(GroupError::GroupIdNotFound)?;
        if group.state() == GroupState::Dead {
            return Err(GroupError::GroupIdNotFound);
        }
        // Kafka: while the group has members, offsets of topics they subscribe to stay.
        let subscribed: BTreeSet<String> = match (group.state(), group.protocol_name()) {
            (GroupState::Empty, _) | (_, None) => BTreeSet::new(),
            (_, Some(protocol)) if group.protocol_type() == Some("consumer") => group
                .members()
                .iter()
                .filter_map(|m| m.metadata(protocol))
                .flat_map(subscribed_topics)
                .collect(),
            // A group of another protocol type: its members' metadata means nothing to us.
            (_, Some(_)) => return Err(GroupError::NonEmptyGroup),
        };
        let results: Vec<Option<GroupError>> = partitions
            .iter()
            .map(|(topic, _)| subscribed.contains(topic).then_some(GroupError::GroupSubscribedToTopic))
            .collect();
        let deletable: Vec<TopicPartition> = partitions
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        let now = self.now_ms_i64();
        self.store_mut()?
            .delete_offsets(group_id, &deletable, now)
            .map_err(|e| store_failed("offset delete", &e))?;
        Ok(results)
    }

    fn remove_topics(&mut self, topics: &[String]) {
        let now = self.now_ms_i64();
        let Some(store) = self.store.as_mut() else {
            return;
        };
        for topic in topics {
            match store.remove_topic(topic, now) {
                Ok(0) => {}
                Ok(removed) => tracing::info!(topic = %topic, removed, "removed committed offsets of a deleted topic"),
                Err(e) => tracing::error!(topic = %topic, error = %e, "removing offsets of a deleted topic failed"),
            }
        }
    }

    /// Kafka's offsets retention and group cleanup (`cleanupGroupMetadata`).
    fn expire_offsets(&mut self) {
        let now = self.now_ms_i64();
        let retention_ms = self.config.offsets_retention_ms;
        let groups = &self.groups;
        let empty_since = &self.empty_since_ms;
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let base = |group_id: &str| -> Option<i64> {
            match groups.get(group_id) {
                Some(g) if g.state() != GroupState::Empty => None,
                _ => Some(
                    empty_since
                        .get(group_id)
                        .map_or(i64::MIN, |&ms| i64::try_from(ms).unwrap_or(i64::MAX)),
                ),
            }
        };
        if let Err(e) = store.expire(now, retention_ms, base) {
            tracing::error!(error = %e, "expiring committed offsets failed");
        }
        let gone: Vec<String> = self
            .groups
            .iter()
            .filter(|(id, g)| g.state() == GroupState::Empty && !store.has_offsets(id))
            .map(|(id, _)| id.clone())
            .collect();
        for group_id in gone {
            if let Some(mut group) = self.groups.remove(&group_id) {
                group.mark_dead();
                self.waiters.complete(&group_id, group.take_completions());
            }
            self.waiters.abandon(Some(&group_id));
            self.deadlines.set(&group_id, None);
            self.empty_since_ms.remove(&group_id);
            self.last_state.remove(&group_id);
            self.unpersist(&group_id);
            tracing::info!(group = %group_id, "removed empty group without offsets");
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
        let now = self.now_ms_i64();
        self.store_mut()?
            .delete_group(group_id, now)
            .map_err(|e| store_failed("group delete", &e))?;
        if let Some(group) = self.groups.get_mut(group_id) {
            group.mark_dead();
            let completions = group.take_completions();
            self.waiters.complete(group_id, completions);
        }
        self.waiters.abandon(Some(group_id));
        self.groups.remove(group_id);
        self.deadlines.set(group_id, None);
        self.empty_since_ms.remove(group_id);
        self.last_state.remove(group_id);
        self.persisted.remove(group_id);
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
        let state = group.state();
        self.waiters.complete(group_id, completions);
        self.deadlines.set(group_id, deadline_ms);
        self.note_state(group_id, state);
        self.persist_if_changed(group_id);
    }

    /// Persists the group's metadata when it reached Stable or Empty with different facts than
    /// last stored (Kafka stores it after the leader's SyncGroup and when the group empties).
    /// Groups that never had a generation are not stored (Kafka neither).
    fn persist_if_changed(&mut self, group_id: &str) {
        let Some(group) = self.groups.get(group_id) else {
            return;
        };
        if !matches!(group.state(), GroupState::Stable | GroupState::Empty) || group.generation_id() == 0 {
            return;
        }
        // Compared in place: this runs after every heartbeat of a Stable group.
        let unchanged = self
            .persisted
            .get(group_id)
            .is_some_and(|(state, generation, members)| {
                *state == group.state()
                    && *generation == group.generation_id()
                    && members.iter().eq(group.members().iter().map(|m| &m.member_id))
            });
        if unchanged {
            return;
        }
        let current = signature(group);
        let record = group.snapshot();
        let now = self.now_ms_i64();
        let Some(store) = self.store.as_mut() else {
            return;
        };
        // Not waited for: a group record lost with its leader costs the members a rejoin.
        match store.store_group(group_id, Some(&record), now) {
            Ok(_unawaited) => {
                self.persisted.insert(group_id.to_string(), current);
            }
            Err(e) => tracing::error!(group = %group_id, error = %e, "persisting group metadata failed"),
        }
    }

    /// Forgets a removed group's persisted metadata (a tombstone in the log).
    fn unpersist(&mut self, group_id: &str) {
        self.persisted.remove(group_id);
        let now = self.now_ms_i64();
        if let Some(store) = self.store.as_mut() {
            if let Err(e) = store.store_group(group_id, None, now).map(drop) {
                tracing::error!(group = %group_id, error = %e, "removing group metadata failed");
            }
        }
    }

    /// Tracks when a group became Empty (offsets retention counts from then) and counts
    /// rebalances (entries into PreparingRebalance) for the metrics.
    fn note_state(&mut self, group_id: &str, state: GroupState) {
        let previous = self.last_state.insert(group_id.to_string(), state);
        if state == GroupState::PreparingRebalance && previous != Some(GroupState::PreparingRebalance) {
            crate::metrics::group_rebalance();
        }
        if state == GroupState::Empty {
            if !self.empty_since_ms.contains_key(group_id) {
                self.empty_since_ms.insert(group_id.to_string(), self.clock.now_ms());
            }
        } else {
            self.empty_since_ms.remove(group_id);
        }
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
            let state = group.state();
            self.waiters.complete(&group_id, completions);
            self.deadlines.set(&group_id, deadline_ms);
            self.note_state(&group_id, state);
            self.persist_if_changed(&group_id);
        }
    }
}

/// A store failure, logged, as the client sees it: the coordinator is not available (it retries
/// and looks the coordinator up again), as Kafka answers when its offsets log cannot be written.
fn store_failed(what: &str, error: &StoreError) -> GroupError {
    if error.is_not_leader() {
        return GroupError::NotCoordinator;
    }
    tracing::error!(error = %error, "offsets log {what} failed");
    GroupError::CoordinatorNotAvailable
}

/// A commit that could not be replicated, as the client sees it (Kafka's mapping): another
/// broker leads the partition now (NOT_COORDINATOR), or it could not be replicated in time or
/// the ISR is too small (COORDINATOR_NOT_AVAILABLE); either way the client retries.
fn replication_failed(error: &StoreError) -> GroupError {
    if error.is_not_leader() {
        GroupError::NotCoordinator
    } else {
        tracing::warn!(error = %error, "an offsets write was not replicated");
        GroupError::CoordinatorNotAvailable
    }
}

#[cfg(test)]
#[path = "actor_tests.rs"]
mod tests;
