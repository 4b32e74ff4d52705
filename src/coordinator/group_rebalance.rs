//! The rebalance engine of [`GroupMetadata`] (Kafka's `prepareRebalance`, `InitialDelayedJoin`,
//! `DelayedJoin`, `onCompleteJoin`, `selectProtocol`, `supportsProtocols`): entering
//! PreparingRebalance, the join timer, and completing the join into the next generation.

use bytes::Bytes;

use super::{GroupMetadata, JoinTimer};
use crate::coordinator::error::GroupError;
use crate::coordinator::member::Protocol;
use crate::coordinator::messages::{Completion, GroupState, SyncGroupResult};

impl GroupMetadata {
    pub(super) fn maybe_prepare_rebalance(&mut self, now_ms: u64) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(now_ms);
        }
    }

    pub(super) fn prepare_rebalance(&mut self, now_ms: u64) {
        if self.state == GroupState::CompletingRebalance {
            // Parked SyncGroups will never get an assignment of this generation: rejoin.
            for member in &mut self.members {
                member.assignment = Bytes::new();
                if std::mem::take(&mut member.awaiting_sync) {
                    member.heartbeat(now_ms);
                    let result = SyncGroupResult::error(GroupError::RebalanceInProgress);
                    self.completions.push(Completion::Sync {
                        member_id: member.member_id.clone(),
                        result,
                    });
                }
            }
        }
        self.pending_sync.clear();
        self.sync_deadline_ms = None;
        let rebalance_ms = self.rebalance_timeout_ms();
        self.join_timer = Some(if self.state == GroupState::Empty {
            let delay_ms = self.config.group_initial_rebalance_delay_ms;
            JoinTimer::Initial {
                deadline_ms: now_ms.saturating_add(delay_ms),
                delay_ms,
                remaining_ms: rebalance_ms.saturating_sub(delay_ms),
            }
        } else {
            JoinTimer::Delayed {
                deadline_ms: now_ms.saturating_add(rebalance_ms),
            }
        });
        tracing::info!(group = %self.group_id, generation = self.generation_id, from = %self.state, "preparing to rebalance");
        self.state = GroupState::PreparingRebalance;
    }

    pub(super) fn fire_join_timer(&mut self, timer: JoinTimer, now_ms: u64) {
        match timer {
            JoinTimer::Initial {
                delay_ms, remaining_ms, ..
            } if self.new_member_added && remaining_ms != 0 => {
                self.new_member_added = false;
                let delay = self.config.group_initial_rebalance_delay_ms.min(remaining_ms);
                self.join_timer = Some(JoinTimer::Initial {
                    deadline_ms: now_ms.saturating_add(delay),
                    delay_ms: delay,
                    remaining_ms: remaining_ms.saturating_sub(delay_ms),
                });
            }
            JoinTimer::Initial { .. } | JoinTimer::Delayed { .. } => self.complete_join(now_ms),
        }
    }

    /// Kafka's `DelayedJoin.tryComplete`: every member has rejoined and no MEMBER_ID_REQUIRED
    /// member id is outstanding.
    pub(super) fn maybe_complete_join(&mut self, now_ms: u64) {
        let delayed = matches!(self.join_timer, Some(JoinTimer::Delayed { .. }));
        let all_joined = self.members.iter().all(|m| m.awaiting_join) && self.pending_members.is_empty();
        if self.state == GroupState::PreparingRebalance && delayed && all_joined {
            self.complete_join(now_ms);
        }
    }

    /// Kafka's `onCompleteJoin`: drop dynamic members that did not rejoin, elect a leader among
    /// those that did, start the next generation and answer every parked JoinGroup.
    pub(super) fn complete_join(&mut self, now_ms: u64) {
        self.join_timer = None;
        self.new_member_added = false;
        let not_rejoined: Vec<String> = self
            .members
            .iter()
            .filter(|m| !m.awaiting_join && !m.is_static())
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in not_rejoined {
            self.remove_member(&member_id, now_ms);
        }
        if self.state == GroupState::Dead {
            return;
        }
        if !self.elect_joined_leader() && !self.members.is_empty() {
            // Only static members that have not rejoined remain: wait for them or their expiry.
            let wait_ms = self.rebalance_timeout_ms().max(1);
            self.join_timer = Some(JoinTimer::Delayed {
                deadline_ms: now_ms.saturating_add(wait_ms),
            });
            return;
        }
        self.generation_id = self.generation_id.wrapping_add(1);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader_id = None;
            self.state = GroupState::Empty;
            tracing::info!(group = %self.group_id, generation = self.generation_id, "group is empty");
            return;
        }
        self.protocol_name = self.select_protocol();
        self.state = GroupState::CompletingRebalance;
        self.pending_sync = self.members.iter().map(|m| m.member_id.clone()).collect();
        self.sync_deadline_ms = Some(now_ms.saturating_add(self.rebalance_timeout_ms()));
        tracing::info!(group = %self.group_id, generation = self.generation_id, members = self.members.len(), "rebalance joined");
        let ids: Vec<String> = self.members.iter().map(|m| m.member_id.clone()).collect();
        for member_id in ids {
            let result = self.join_result_for(&member_id);
            if let Some(member) = self.member_mut(&member_id) {
                member.heartbeat(now_ms);
                member.is_new = false;
                if std::mem::take(&mut member.awaiting_join) {
                    self.completions.push(Completion::Join { member_id, result });
                }
            }
        }
    }

    /// Kafka's `maybeElectNewJoinedLeader`: keep the leader if it rejoined, else take the first
    /// member that did.
    pub(super) fn elect_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader_id.clone() else {
            return false;
        };
        if self.member(&leader).is_some_and(|m| m.awaiting_join) {
            return true;
        }
        match self.members.iter().find(|m| m.awaiting_join) {
            Some(m) => {
                self.leader_id = Some(m.member_id.clone());
                true
            }
            None => false,
        }
    }

    /// Kafka's `selectProtocol`: among the protocols every member supports, each member votes for
    /// its most preferred one and the most votes win (ties: the first member's preference).
    pub(super) fn select_protocol(&self) -> Option<String> {
        let first = self.members.first()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.iter().all(|m| m.supports(name)))
            .collect();
        let mut votes = vec![0usize; candidates.len()];
        for member in &self.members {
            if let Some(vote) = member.vote(&candidates) {
                if let Some(count) = candidates
                    .iter()
                    .position(|c| *c == vote)
                    .and_then(|i| votes.get_mut(i))
                {
                    *count += 1;
                }
            }
        }
        // max_by_key keeps the last maximum: iterate in reverse so the first candidate wins ties.
        let best = votes
            .iter()
            .enumerate()
            .rev()
            .max_by_key(|(_, n)| **n)
            .map(|(i, _)| i)?;
        candidates.get(best).map(|s| s.to_string())
    }

    /// Kafka's `supportsProtocols`: an Empty group takes any non-empty protocol list; otherwise
    /// the protocol type must match and one protocol must be supported by every member.
    pub(super) fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.state == GroupState::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|p| self.members.iter().all(|m| m.supports(&p.name)))
    }
}
