//! A partition's role and its replication (a child module of `partition`): becoming leader or
//! follower from the metadata (Kafka's `makeLeader` / `makeFollower`), the high watermark on
//! the leader, followers' fetches served by it, and the follower's own appends and truncation.

use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

use bytes::Bytes;
use uuid::Uuid;

use super::{publish, Partition};
use crate::controller::record::{NodeId, PartitionRegistration};
use crate::error::BrokerError;
use crate::replication::isr::LeaderState;
use crate::storage::{LogAppendInfo, StorageError};

/// An ISR change the leader asks the controller for (Kafka's AlterPartition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    /// The partition epoch the change was decided on (compare and set at the controller).
    pub partition_epoch: i32,
    pub new_isr: Vec<NodeId>,
    /// A follower joins (else members leave): for the ISR expand / shrink counters.
    pub expands: bool,
}

/// A led partition's replication as the metrics show it.
#[derive(Debug, Clone, Default)]
pub struct ReplicationStatus {
    pub replicas: usize,
    pub isr: usize,
    /// `min.insync.replicas`, capped by the replication factor.
    pub min_isr: usize,
    /// Each follower's lag behind the leader's log end, in offsets (its whole log end while
    /// it has not fetched under this leader).
    pub lags: Vec<(NodeId, i64)>,
}

/// What a follower's fetch gets from the leader.
#[derive(Debug, Clone, Default)]
pub struct FollowerRead {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// The follower's log diverged: (epoch, end offset) it must truncate against; no records.
    pub diverging: Option<(i32, i64)>,
}

/// Kafka's check of a request's view of the leader epoch against ours (-1: not checked).
pub fn check_epoch(ours: i32, theirs: i32) -> Result<(), BrokerError> {
    if theirs < 0 || theirs == ours {
        Ok(())
    } else if theirs < ours {
        Err(BrokerError::FencedLeaderEpoch)
    } else {
        Err(BrokerError::UnknownLeaderEpoch)
    }
}

impl Partition {
    fn replication(&self) -> MutexGuard<'_, Option<LeaderState>> {
        self.replication.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn leader_id(&self) -> NodeId {
        self.leader_id.load(Ordering::Relaxed)
    }

    /// Becomes the leader the registration names (this broker, `me`), at its epoch: the epoch
    /// starts at the log end in the leader-epoch cache, even before a record of it exists (a
    /// follower truncating against this log must find it); followers are tracked afresh.
    /// Within the same epoch, only the ISR and partition epoch are taken.
    pub fn make_leader(&self, me: NodeId, reg: &PartitionRegistration, now_ms: i64) -> Result<(), StorageError> {
        {
            let mut state = self.replication();
            if let Some(ls) = state.as_mut().filter(|ls| ls.leader_epoch == reg.leader_epoch) {
                ls.update(reg, now_ms);
            } else {
                if reg.leader_epoch < self.leader_epoch() {
                    return Ok(()); // an older image than one already applied
                }
                let mut log = self.log();
                if log.latest_epoch().is_none_or(|latest| reg.leader_epoch > latest) {
                    let leo = log.log_end_offset();
                    log.assign_epoch_start_offset(reg.leader_epoch, leo)?;
                }
                let leo = log.log_end_offset();
                drop(log);
                *state = Some(LeaderState::new(me, reg, leo, now_ms));
                self.leader_epoch.store(reg.leader_epoch, Ordering::Relaxed);
                self.leader_id.store(me, Ordering::Relaxed);
                self.leader.store(true, Ordering::Release);
                self.notify_role_change();
            }
        }
        self.maybe_advance_high_watermark();
        Ok(())
    }

    /// Stops leading: `leader` leads at `epoch` (or no one, -1). Produce and consumer fetches
    /// get NOT_LEADER_OR_FOLLOWER here from now on.
    pub fn make_follower(&self, leader: NodeId, epoch: i32) {
        let mut state = self.replication();
        let _log = self.log(); // ordered with appends in progress
        *state = None;
        if epoch >= self.leader_epoch() {
            self.leader_epoch.store(epoch, Ordering::Relaxed);
        }
        self.leader_id.store(leader, Ordering::Relaxed);
        self.leader.store(false, Ordering::Release);
        drop(_log);
        drop(state);
        self.notify_role_change();
    }

    /// Moves the high watermark as far as the ISR's positions allow (leader only).
    pub fn maybe_advance_high_watermark(&self) {
        let state = self.replication();
        let Some(ls) = state.as_ref() else { return };
        let min_isr = self.min_insync_replicas.load(Ordering::Relaxed);
        let durable = self.durable_offset();
        if let Some(hw) = ls.high_watermark(durable, self.high_watermark(), min_isr) {
            let hw = self.log().update_high_watermark(hw);
            drop(state);
            self.publish_high_watermark(hw);
        }
    }

    /// The log end when this replica's leader epoch began, while leading (Kafka's
    /// `leaderEpochStartOffsetOpt`): until the high watermark reaches it, a new leader does
    /// not yet know what its predecessor committed (ListOffsets answers OFFSET_NOT_AVAILABLE).
    pub fn leader_epoch_start_offset(&self) -> Option<i64> {
        self.replication().as_ref().map(|ls| ls.epoch_start_offset)
    }

    /// (ISR size, maximal ISR size, effective min ISR) while leading, for acks=-1.
    pub fn isr_sizes(&self) -> Option<(usize, usize, usize)> {
        let state = self.replication();
        let ls = state.as_ref()?;
        let min_isr = ls.effective_min_isr(self.min_insync_replicas.load(Ordering::Relaxed));
        Some((ls.isr.len(), ls.maximal_isr().len(), min_isr))
    }

    /// Whether `replica` is in the ISR, while leading.
    pub fn has_in_sync(&self, replica: NodeId) -> bool {
        self.replication().as_ref().is_some_and(|ls| ls.isr.contains(&replica))
    }

    /// The ISR change to propose when members have not caught up for `lag_ms`.
    pub fn shrink_check(&self, now_ms: i64, lag_ms: i64) -> Option<IsrChange> {
        let leo = *self.log_end.borrow();
        let mut state = self.replication();
        let ls = state.as_mut()?;
        let new_isr = ls.shrink_candidate(leo, now_ms, lag_ms)?;
        ls.pending_isr = Some(new_isr.clone());
        Some(IsrChange {
            topic_id: self.topic_id,
            partition: self.index,
            leader_epoch: ls.leader_epoch,
            partition_epoch: ls.partition_epoch,
            new_isr,
            expands: false,
        })
    }

    /// Each follower's log end as of its last fetch, while leading (-1: none yet).
    pub fn follower_log_ends(&self) -> Vec<(NodeId, i64)> {
        self.replication()
            .as_ref()
            .map(|ls| ls.followers.iter().map(|(id, f)| (*id, f.log_end)).collect())
            .unwrap_or_default()
    }

    /// Replicas, ISR, min ISR and followers' lags while leading (metrics).
    pub fn replication_status(&self) -> Option<ReplicationStatus> {
        let leo = *self.log_end.borrow();
        let state = self.replication();
        let ls = state.as_ref()?;
        Some(ReplicationStatus {
            replicas: ls.replicas.len(),
            isr: ls.isr.len(),
            min_isr: ls.effective_min_isr(self.min_insync_replicas.load(Ordering::Relaxed)),
            lags: ls
                .followers
                .iter()
                .map(|(id, f)| (*id, (leo - f.log_end.max(0)).max(0)))
                .collect(),
        })
    }

    /// The controller refused (or did not get) an ISR change: forget it, so the check runs
    /// again (the metadata shows what was decided).
    pub fn isr_change_failed(&self, partition_epoch: i32) {
        if let Some(ls) = self
            .replication()
            .as_mut()
            .filter(|ls| ls.partition_epoch == partition_epoch)
        {
            ls.pending_isr = None;
        }
    }

    /// Serves a follower's fetch (Kafka's `Partition.fetchRecords` for a replica): epoch and
    /// membership checks, divergence against the follower's last fetched epoch, records up to
    /// the log end; then its position moves the HW, and may bring it into the ISR (returned as
    /// the change to propose) if the metadata says it may join (`isr_eligible`: registered,
    /// unfenced, not shutting down; Kafka's KIP-841 check, so a fenced follower's every fetch
    /// does not become a refused proposal).
    #[allow(clippy::too_many_arguments)]
    pub fn read_for_follower(
        &self,
        replica: NodeId,
        isr_eligible: bool,
        fetch_offset: i64,
        last_fetched_epoch: i32,
        current_leader_epoch: i32,
        max_bytes: usize,
        now_ms: i64,
    ) -> Result<(FollowerRead, Option<IsrChange>), BrokerError> {
        if !self.is_leader() {
            return Err(BrokerError::NotLeaderOrFollower);
        }
        check_epoch(self.leader_epoch(), current_leader_epoch)?;
        let (plan, log_start, leo) = {
            let log = self.log();
            let (log_start, leo) = (log.log_start_offset(), log.log_end_offset());
            if last_fetched_epoch >= 0 {
                match log.end_offset_for_epoch(last_fetched_epoch) {
                    Some((epoch, end)) if epoch < last_fetched_epoch || end < fetch_offset => {
                        return Ok((
                            FollowerRead {
                                high_watermark: self.high_watermark(),
                                log_start_offset: log_start,
                                log_end_offset: leo,
                                diverging: Some((epoch, end)),
                                ..FollowerRead::default()
                            },
                            None,
                        ));
                    }
                    Some(_) => {}
                    None => {
                        return Err(StorageError::OffsetOutOfRange {
                            offset: fetch_offset,
                            log_start,
                            log_end: leo,
                        }
                        .into())
                    }
                }
            }
            // Nothing to send (a throttled replica, or the response is full): no read.
            let plan = (max_bytes > 0)
                .then(|| log.read_plan(fetch_offset, max_bytes, leo, true))
                .transpose()?;
            (plan, log_start, leo)
        };
        let records = match plan {
            Some(plan) => plan.read()?.records,
            None => Default::default(),
        };
        let change = {
            let mut state = self.replication();
            let Some(ls) = state.as_mut() else {
                return Err(BrokerError::NotLeaderOrFollower);
            };
            if !ls.on_fetch(replica, fetch_offset, leo, now_ms) {
                return Err(BrokerError::NotLeaderOrFollower); // not one of the replicas
            }
            let candidate = isr_eligible
                .then(|| ls.expand_candidate(replica, self.high_watermark()))
                .flatten();
            let change = candidate.map(|new_isr| {
                ls.pending_isr = Some(new_isr.clone());
                IsrChange {
                    topic_id: self.topic_id,
                    partition: self.index,
                    leader_epoch: ls.leader_epoch,
                    partition_epoch: ls.partition_epoch,
                    new_isr,
                    expands: true,
                }
            });
            change
        };
        self.maybe_advance_high_watermark();
        Ok((
            FollowerRead {
                records,
                high_watermark: self.high_watermark(),
                log_start_offset: log_start,
                log_end_offset: leo,
                diverging: None,
            },
            change,
        ))
    }

    /// What a follower's next fetch asks from: (log end, epoch of its last batch, log start).
    pub fn fetch_position(&self) -> (i64, i32, i64) {
        let log = self.log();
        (
            log.log_end_offset(),
            log.latest_epoch().unwrap_or(-1),
            log.log_start_offset(),
        )
    }

    /// Appends what the leader sent and takes its high watermark (capped by this log's end).
    pub fn append_as_follower(
        &self,
        records: &Bytes,
        leader_high_watermark: i64,
        now_ms: i64,
    ) -> Result<Option<LogAppendInfo>, BrokerError> {
        if self.is_leader() {
            return Err(BrokerError::NotLeaderOrFollower);
        }
        let mut log = self.log();
        let info = if records.is_empty() {
            None
        } else {
            Some(log.append_as_follower(records, now_ms)?)
        };
        let leo = log.log_end_offset();
        let current = log.high_watermark();
        let hw = log.update_high_watermark(leader_high_watermark.min(leo).max(current));
        drop(log);
        publish(&self.log_end, leo);
        publish(&self.durable, leo);
        self.publish_high_watermark(hw);
        Ok(info)
    }

    /// Truncates a follower's log against the leader's (epoch, end offset) for its diverging
    /// epoch (KIP-279): to the smaller of that end and this log's own end of that epoch, or
    /// of the largest epoch it has below it. Returns the new log end.
    pub fn truncate_diverging(&self, epoch: i32, end_offset: i64) -> Result<i64, BrokerError> {
        let mut log = self.log();
        let leo = log.log_end_offset();
        let target = match log.end_offset_for_epoch(epoch) {
            Some((_, local_end)) => end_offset.min(local_end).min(leo),
            None => end_offset.min(leo),
        };
        let new_end = log.truncate_to(target)?;
        let hw = log.high_watermark();
        drop(log);
        publish(&self.log_end, new_end);
        publish(&self.durable, new_end);
        self.high_watermark.send_replace(hw);
        Ok(new_end)
    }

    /// A follower outside the leader's log range: behind its start, begin there; past its end
    /// (no epoch to compare), truncate to the leader's high watermark, all it may have committed.
    pub fn reset_out_of_range(&self, leader_log_start: i64, leader_high_watermark: i64) -> Result<i64, BrokerError> {
        let mut log = self.log();
        let new_end = if log.log_end_offset() < leader_log_start {
            log.truncate_fully_and_start_at(leader_log_start)?
        } else {
            log.truncate_to(leader_high_watermark.max(0))?
        };
        let hw = log.high_watermark();
        drop(log);
        publish(&self.log_end, new_end);
        publish(&self.durable, new_end);
        self.high_watermark.send_replace(hw);
        Ok(new_end)
    }
}
