//! A partition's replication state as its leader keeps it (Kafka's `Partition` with its
//! `Replica` states), as a plain value: the metadata's assignment (replicas, ISR, epochs), the
//! ISR change in flight, and each follower's fetch position. Every rule is a method here, with
//! time passed in, so the rules are tested alone; `Partition` holds one behind a short lock.
//!
//! The rules are Kafka's (see `shared/REPLICATION-NOTES.md`, 1.2-1.6):
//! - a follower's fetch at offset f, when the leader's log end is L: caught up now if f >= L,
//!   else caught up as of its previous fetch if f reached the log end the leader had then;
//! - the high watermark is the smallest log end among the leader and every follower in the
//!   maximal ISR (the ISR plus a member being added), and does not advance while the ISR is
//!   smaller than min.insync.replicas (Kafka 3.7+); it never goes back;
//! - a follower joins the ISR once its log end reaches the high watermark and the start of the
//!   leader's epoch; an ISR member leaves after `replica.lag.time.max.ms` without catching up;
//! - one ISR change at a time; it is proposed to the controller and takes effect when the
//!   metadata says so.

use std::collections::BTreeMap;

use crate::controller::record::{NodeId, PartitionRegistration};

/// A follower as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// Its log end (the offset of its last fetch); -1 until it fetches under this leader.
    pub log_end: i64,
    pub last_caught_up_ms: i64,
    /// The leader's log end at the follower's previous fetch, and when that was.
    pub last_fetch_leader_log_end: i64,
    pub last_fetch_ms: i64,
}

/// The leader's view of its partition's replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderState {
    pub me: NodeId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    /// An ISR change sent to the controller and not yet in the metadata.
    pub pending_isr: Option<Vec<NodeId>>,
    pub followers: BTreeMap<NodeId, FollowerState>,
    /// The log end when this leader's epoch began: a follower joining the ISR must have it all.
    pub epoch_start_offset: i64,
}

impl LeaderState {
    /// Becoming leader (Kafka's `makeLeader`): ISR followers count as caught up now, the
    /// others not; every follower's log end is unknown until it fetches.
    pub fn new(me: NodeId, reg: &PartitionRegistration, log_end: i64, now_ms: i64) -> Self {
        let followers = reg
            .replicas
            .iter()
            .filter(|r| **r != me)
            .map(|r| {
                let caught_up = if reg.isr.contains(r) { now_ms } else { 0 };
                (
                    *r,
                    FollowerState {
                        log_end: -1,
                        last_caught_up_ms: caught_up,
                        last_fetch_leader_log_end: -1,
                        last_fetch_ms: 0,
                    },
                )
            })
            .collect();
        LeaderState {
            me,
            leader_epoch: reg.leader_epoch,
            partition_epoch: reg.partition_epoch,
            replicas: reg.replicas.clone(),
            isr: reg.isr.clone(),
            pending_isr: None,
            followers,
            epoch_start_offset: log_end,
        }
    }

    /// The metadata changed the registration within the same leader epoch (an ISR change was
    /// committed, or another partition change): take its ISR and partition epoch.
    pub fn update(&mut self, reg: &PartitionRegistration, now_ms: i64) {
        if reg.partition_epoch == self.partition_epoch {
            return;
        }
        self.partition_epoch = reg.partition_epoch;
        self.isr = reg.isr.clone();
        self.pending_isr = None;
        for r in &reg.replicas {
            if *r != self.me {
                self.followers.entry(*r).or_insert(FollowerState {
                    log_end: -1,
                    last_caught_up_ms: if reg.isr.contains(r) { now_ms } else { 0 },
                    last_fetch_leader_log_end: -1,
                    last_fetch_ms: 0,
                });
            }
        }
        self.followers.retain(|id, _| reg.replicas.contains(id));
        self.replicas = reg.replicas.clone();
    }

    /// The ISR counting a member being added (KIP-497: it counts for the high watermark at
    /// once); a member being removed still counts until the removal is committed.
    pub fn maximal_isr(&self) -> Vec<NodeId> {
        let mut isr = self.isr.clone();
        if let Some(pending) = &self.pending_isr {
            for r in pending {
                if !isr.contains(r) {
                    isr.push(*r);
                }
            }
        }
        isr
    }

    /// `min.insync.replicas` capped by the replication factor.
    pub fn effective_min_isr(&self, min_insync_replicas: u32) -> usize {
        (min_insync_replicas as usize).min(self.replicas.len()).max(1)
    }

    /// Records a follower's fetch at `fetch_offset` (its log end) while the leader's log end
    /// is `leader_log_end`. False if it is not a replica.
    pub fn on_fetch(&mut self, id: NodeId, fetch_offset: i64, leader_log_end: i64, now_ms: i64) -> bool {
        let Some(f) = self.followers.get_mut(&id) else {
            return false;
        };
        if fetch_offset >= leader_log_end {
            f.last_caught_up_ms = f.last_caught_up_ms.max(now_ms);
        } else if fetch_offset >= f.last_fetch_leader_log_end && f.last_fetch_leader_log_end >= 0 {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.log_end = fetch_offset;
        f.last_fetch_leader_log_end = leader_log_end;
        f.last_fetch_ms = now_ms;
        true
    }

    /// The high watermark these positions allow, if it is above `current`. `leader_offset` is
    /// what the leader holds durably under its flush policy (its log end by default).
    pub fn high_watermark(&self, leader_offset: i64, current: i64, min_insync_replicas: u32) -> Option<i64> {
        let isr = self.maximal_isr();
        if isr.len() < self.effective_min_isr(min_insync_replicas) {
            return None;
        }
        let mut hw = leader_offset;
        for r in isr.iter().filter(|r| **r != self.me) {
            let end = self.followers.get(r).map_or(-1, |f| f.log_end);
            hw = hw.min(end);
        }
        (hw > current).then_some(hw)
    }

    /// The ISR to propose with `id` added, if it has caught up and no change is in flight.
    pub fn expand_candidate(&self, id: NodeId, high_watermark: i64) -> Option<Vec<NodeId>> {
        if self.pending_isr.is_some() || self.isr.contains(&id) {
            return None;
        }
        let f = self.followers.get(&id)?;
        (f.log_end >= high_watermark && f.log_end >= self.epoch_start_offset).then(|| {
            let mut isr = self.isr.clone();
            isr.push(id);
            isr
        })
    }

    /// The ISR to propose without the members that have not caught up for `lag_ms`, if any
    /// and no change is in flight. A follower at the leader's log end is never out of sync.
    pub fn shrink_candidate(&self, leader_log_end: i64, now_ms: i64, lag_ms: i64) -> Option<Vec<NodeId>> {
        if self.pending_isr.is_some() {
            return None;
        }
        let lagging = |r: &NodeId| {
            *r != self.me
                && self
                    .followers
                    .get(r)
                    .is_none_or(|f| f.log_end != leader_log_end && now_ms - f.last_caught_up_ms > lag_ms)
        };
        let kept: Vec<NodeId> = self.isr.iter().copied().filter(|r| !lagging(r)).collect();
        (kept.len() < self.isr.len()).then_some(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(replicas: &[NodeId], isr: &[NodeId]) -> PartitionRegistration {
        PartitionRegistration {
            isr: isr.to_vec(),
            ..PartitionRegistration::new(replicas.to_vec())
        }
    }

    #[test]
    fn the_high_watermark_waits_for_every_isr_member_and_min_isr() {
        let mut s = LeaderState::new(1, &reg(&[1, 2, 3], &[1, 2, 3]), 0, 1000);
        assert_eq!(s.high_watermark(10, 0, 1), None, "followers' log ends unknown");
        s.on_fetch(2, 10, 10, 1100);
        assert_eq!(s.high_watermark(10, 0, 1), None, "3 has not fetched");
        s.on_fetch(3, 6, 10, 1100);
        assert_eq!(s.high_watermark(10, 0, 1), Some(6));
        assert_eq!(s.high_watermark(10, 6, 1), None, "never back, never the same");
        // 3 leaves the ISR: with min.insync.replicas=3 nothing advances.
        s.update(
            &PartitionRegistration {
                isr: vec![1, 2],
                partition_epoch: 1,
                ..reg(&[1, 2, 3], &[1, 2])
            },
            1200,
        );
        assert_eq!(s.high_watermark(10, 6, 1), Some(10));
        assert_eq!(s.high_watermark(10, 6, 3), None, "ISR 2 < min ISR 3");
        assert_eq!(s.high_watermark(10, 6, 2), Some(10));
    }

    #[test]
    fn caught_up_follows_kafkas_rule_and_laggards_leave_the_isr() {
        let mut s = LeaderState::new(1, &reg(&[1, 2], &[1, 2]), 100, 0);
        // A follower always one produce behind still counts as caught up: it reached the
        // log end the leader had at its previous fetch.
        s.on_fetch(2, 100, 100, 1_000);
        s.on_fetch(2, 100, 110, 2_000);
        assert_eq!(s.followers[&2].last_caught_up_ms, 1_000);
        s.on_fetch(2, 110, 120, 3_000);
        assert_eq!(s.followers[&2].last_caught_up_ms, 2_000);
        assert_eq!(s.shrink_candidate(120, 20_000, 30_000), None);
        // Then it stops fetching: out after the lag time.
        assert_eq!(s.shrink_candidate(130, 32_001, 30_000), Some(vec![1]));
        assert_eq!(
            s.shrink_candidate(110, 32_001, 30_000),
            None,
            "at the log end it is never out"
        );
    }

    #[test]
    fn a_follower_joins_at_the_high_watermark_and_the_epoch_start() {
        let mut s = LeaderState::new(1, &reg(&[1, 2], &[1]), 50, 0);
        s.on_fetch(2, 40, 60, 10);
        assert_eq!(s.expand_candidate(2, 40), None, "below the leader's epoch start (50)");
        s.on_fetch(2, 55, 60, 20);
        assert_eq!(s.expand_candidate(2, 58), None, "below the high watermark");
        assert_eq!(s.expand_candidate(2, 55), Some(vec![1, 2]));
        s.pending_isr = Some(vec![1, 2]);
        assert_eq!(s.maximal_isr(), vec![1, 2], "counts at once for the high watermark");
        assert_eq!(s.high_watermark(60, 55, 2), None, "its log end is 55");
        s.on_fetch(2, 60, 60, 30);
        assert_eq!(s.high_watermark(60, 55, 2), Some(60));
        assert_eq!(s.expand_candidate(2, 60), None, "one change at a time");
    }
}
