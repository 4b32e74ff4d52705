//! The replica manager's replication duties (Kafka's `ReplicaManager.applyDelta`,
//! `fetchMessages` for replicas and `maybeShrinkIsr`): roles from each image, followers'
//! fetches served by leaders, and the ISR changes leaders propose to the controller.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{
    ThrottledReplicas, FOLLOWER_THROTTLED_RATE, FOLLOWER_THROTTLED_REPLICAS, LEADER_THROTTLED_RATE,
    LEADER_THROTTLED_REPLICAS,
};
use crate::controller::image::{MetadataImage, TopicImage};
use crate::controller::record::NO_LEADER;
use crate::error::BrokerError;
use crate::replication::partition::{FollowerRead, IsrChange, Partition};
use crate::replication::replica_manager::{now_ms, ReplicaManager};

/// One partition of a follower's fetch.
#[derive(Debug, Clone)]
pub struct FollowerFetchTarget {
    pub partition: Result<Arc<Partition>, i16>,
    pub fetch_offset: i64,
    pub last_fetched_epoch: i32,
    pub current_leader_epoch: i32,
    pub max_bytes: usize,
}

impl ReplicaManager {
    /// Makes each hosted partition of `meta` leader or follower as its registration says
    /// (Kafka's `ReplicaManager.applyDelta`): a leader takes the epoch, ISR and partition epoch;
    /// a follower fetches from the named leader; a partition without a leader waits.
    pub fn apply_leadership(&self, meta: &TopicImage) {
        let now = now_ms();
        for (index, reg) in meta.partitions.iter().enumerate() {
            let Some(p) = self.get_partition(&meta.name, index as i32) else {
                continue;
            };
            if reg.leader == self.node_id {
                if !p.is_leader() || p.leader_epoch() < reg.leader_epoch {
                    crate::metrics::leadership_taken();
                }
                self.fetchers.unfollow(p.topic_id, p.index);
                if let Err(e) = p.make_leader(self.node_id, reg, now) {
                    tracing::error!(topic = %meta.name, partition = index, error = %e, "could not become leader");
                }
            } else {
                let changed = p.is_leader() || p.leader_id() != reg.leader || p.leader_epoch() != reg.leader_epoch;
                if changed {
                    p.make_follower(reg.leader, reg.leader_epoch);
                    if reg.leader == NO_LEADER {
                        self.fetchers.unfollow(p.topic_id, p.index);
                    } else {
                        self.fetchers.follow(Arc::clone(&p), reg.leader, reg.leader_epoch);
                    }
                }
            }
        }
        self.refresh_throttles(meta);
    }

    /// Marks which replicas of `meta` hosted here are throttled: those its
    /// `leader.replication.throttled.replicas` names (as leaders, towards followers outside the
    /// ISR), and those its `follower.replication.throttled.replicas` names while outside the ISR.
    pub(crate) fn refresh_throttles(&self, meta: &TopicImage) {
        let list = |key: &str| {
            meta.configs
                .get(key)
                .and_then(|v| ThrottledReplicas::parse(v).ok())
                .unwrap_or_default()
        };
        let (leader, follower) = (list(LEADER_THROTTLED_REPLICAS), list(FOLLOWER_THROTTLED_REPLICAS));
        let me = self.node_id;
        for (index, reg) in meta.partitions.iter().enumerate() {
            if let Some(p) = self.get_partition(&meta.name, index as i32) {
                let i = index as i32;
                p.throttle.set(
                    leader.contains(i, me),
                    follower.contains(i, me) && !reg.isr.contains(&me),
                );
            }
        }
    }

    /// Sets the throttle rates the image gives this broker (its own dynamic configs, else the
    /// cluster-wide defaults; unset: unbounded).
    pub fn set_throttle_rates(&self, image: &MetadataImage) {
        let rate = |key: &str| {
            image
                .dynamic_broker_config(self.node_id, key)
                .and_then(|(v, _)| v.parse::<u64>().ok())
        };
        self.leader_quota.set_rate(rate(LEADER_THROTTLED_RATE));
        self.follower_quota.set_rate(rate(FOLLOWER_THROTTLED_RATE));
    }

    /// Hands an ISR change to the task that sends them to the controller.
    pub(crate) fn propose_isr_change(&self, p: &Arc<Partition>, change: IsrChange) {
        let sent = self
            .isr_changes
            .get()
            .map(|tx| tx.try_send((Arc::clone(p), change.clone())).is_ok())
            .unwrap_or(false);
        if !sent {
            p.isr_change_failed(change.partition_epoch);
        }
    }

    /// Leaders drop ISR members that have not caught up for `lag_ms` (run every half of it).
    pub fn shrink_isrs(&self, lag_ms: i64) {
        let now = now_ms();
        for p in self.all_partitions() {
            if let Some(change) = p.shrink_check(now, lag_ms) {
                tracing::info!(topic = %p.topic, partition = p.index, new_isr = ?change.new_isr,
                    "shrinking the ISR: members did not catch up within replica.lag.time.max.ms");
                self.propose_isr_change(&p, change);
            }
        }
    }

    /// Serves a follower's fetch: reads every partition up to its log end; with less than
    /// `min_bytes` and nothing to report, waits for new data (or `max_wait`) and reads again.
    pub async fn fetch_for_follower(
        &self,
        replica: i32,
        isr_eligible: bool,
        max_wait: Duration,
        min_bytes: usize,
        max_bytes: usize,
        targets: &[FollowerFetchTarget],
    ) -> Vec<Result<FollowerRead, BrokerError>> {
        let deadline = Instant::now() + max_wait;
        let mut watchers: Vec<_> = targets
            .iter()
            .filter_map(|t| t.partition.as_ref().ok().map(|p| p.subscribe_log_end()))
            .collect();
        loop {
            let results = self.read_for_follower(replica, isr_eligible, max_bytes, targets);
            let bytes: usize = results
                .iter()
                .map(|r| r.as_ref().map(|d| d.records.len()).unwrap_or(0))
                .sum();
            let must_answer = results
                .iter()
                .any(|r| r.as_ref().map_or(true, |d| d.diverging.is_some()));
            if bytes >= min_bytes || must_answer || watchers.is_empty() || Instant::now() >= deadline {
                return results;
            }
            let changed = futures::future::select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
            match tokio::time::timeout_at(deadline, changed).await {
                Ok((Ok(()), _, _)) => continue,
                Ok((Err(_), _, _)) | Err(_) => {
                    return self.read_for_follower(replica, isr_eligible, max_bytes, targets)
                }
            }
        }
    }

    fn read_for_follower(
        &self,
        replica: i32,
        isr_eligible: bool,
        max_bytes: usize,
        targets: &[FollowerFetchTarget],
    ) -> Vec<Result<FollowerRead, BrokerError>> {
        let now = now_ms();
        let mut remaining = max_bytes;
        let mut out = Vec::with_capacity(targets.len());
        let over_quota = self.leader_quota.is_exceeded(now);
        for t in targets {
            let p = match &t.partition {
                Ok(p) => p,
                Err(_) => {
                    out.push(Err(BrokerError::UnknownTopicOrPartition));
                    continue;
                }
            };
            // A throttled replica outside the ISR gets nothing while the leader's throttled
            // replication is over its rate (Kafka's `shouldLeaderThrottle`).
            let throttled = p.throttle.leader() && !p.has_in_sync(replica);
            let limit = if throttled && over_quota {
                0
            } else {
                t.max_bytes.min(remaining)
            };
            let read = p.read_for_follower(
                replica,
                isr_eligible,
                t.fetch_offset,
                t.last_fetched_epoch,
                t.current_leader_epoch,
                limit,
                now,
            );
            match read {
                Ok((read, change)) => {
                    remaining = remaining.saturating_sub(read.records.len());
                    if throttled {
                        self.leader_quota.record(read.records.len() as u64, now);
                    }
                    if let Some(change) = change {
                        tracing::info!(topic = %p.topic, partition = p.index, new_isr = ?change.new_isr,
                            follower = replica, "expanding the ISR: the follower caught up");
                        self.propose_isr_change(p, change);
                    }
                    out.push(Ok(read));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        out
    }
}

/// At most this many ISR changes go in one AlterPartition.
const MAX_ISR_BATCH: usize = 500;

/// Sends the ISR changes to the active controller (Kafka's `AlterPartitionManager`): those
/// waiting are sent together, one batch in flight at a time; a change refused or not
/// delivered is forgotten by its partition, which proposes again when due.
pub async fn run_isr_changes(
    mut rx: mpsc::Receiver<(Arc<Partition>, IsrChange)>,
    controller: Arc<crate::controller::Controller>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_ISR_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let changes: Vec<IsrChange> = batch.iter().map(|(_, c)| c.clone()).collect();
        let started = Instant::now();
        let results = controller.alter_partitions(controller.node_id(), &changes).await;
        let took_ms = started.elapsed().as_millis() as u64;
        tracing::debug!(
            changes = batch.len(),
            took_ms,
            queued = rx.len(),
            ok = results.is_ok(),
            "ISR changes sent"
        );
        let mut results: Vec<Option<String>> = match results {
            Ok(results) => results.into_iter().map(|r| r.err().map(|e| e.to_string())).collect(),
            Err(e) => vec![Some(e.to_string()); batch.len()],
        };
        results.resize_with(batch.len(), || None);
        for ((p, change), error) in batch.iter().zip(results) {
            if error.is_none() {
                crate::metrics::isr_changed(change.expands);
            }
            if let Some(e) = error {
                tracing::info!(topic = %p.topic, partition = p.index, error = %e, took_ms, "ISR change not made");
                p.isr_change_failed(change.partition_epoch);
            }
        }
    }
}
