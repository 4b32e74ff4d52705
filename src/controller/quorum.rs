//! The active controller: what the quorum's leader does beyond keeping the log (Kafka's
//! `QuorumController` with its `BrokerHeartbeatManager`).
//!
//! - Writes: every proposal (local, or forwarded by another node) goes through
//!   [`QuorumController::write_local`] on the leader.
//! - Broker liveness is in memory here, as in Kafka: the time of each broker's last heartbeat.
//!   A broker silent for `broker.session.timeout.ms`, or whose heartbeat connection closed (a
//!   dead process: detected at once, so failover after `kill -9` is quick; fencing a live broker
//!   by mistake is safe, it heartbeats again and is unfenced), is fenced together with the
//!   partition changes that follows from it (`election::on_fence`), in one command.
//! - A fenced broker that heartbeats with its current registration and has applied the log up
//!   to that registration is unfenced, and leads the leaderless partitions whose ISR holds it.
//!
//! A node that becomes leader starts every broker's clock afresh (it does not know when they
//! last heartbeated), as Kafka does, and probes each broker's listener once: a refused
//! connection means no process is there (the old leader's own broker, killed with it), and that
//! broker is fenced at once instead of after the session timeout.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{Raft, ServerState};
use tokio::sync::watch;

use crate::controller::election::{self, ElectionType};
use crate::controller::image::MetadataImage;
use crate::controller::journal::Journal;
use crate::controller::network::{
    AlterPartitionRequest, BrokerHeartbeat, ElectionOutcome, ElectionResults, ForwardError, HeartbeatReply,
    QuorumState, ReassignResults, Reassignment, ReplicaProgress,
};
use crate::controller::reassignment::{self, ReassignError};
use crate::controller::record::{ApplyResult, MetadataCommand, MetadataRecord, NodeId, PartitionChange};
use crate::controller::takeover::LeaderLoss;
use crate::controller::TypeConfig;

/// How often the leader looks for brokers to fence or unfence.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// How long a new leader waits for a heartbeat from a broker whose listener refused its probe
/// before fencing it.
const PROBE_GRACE: Duration = Duration::from_millis(1000);
/// How often it looks for leaderless partitions that can be given a leader (Kafka's
/// `unclean.leader.election.interval.ms` is 5 minutes; a clean election here is cheap).
const ELECT_EVERY: u32 = 10;
/// Preferred-leader elections written per rebalance (Kafka's `MAX_ELECTIONS_PER_IMBALANCE`);
/// more wait for the next check.
const MAX_ELECTIONS_PER_REBALANCE: usize = 1_000;

/// Rounds of AlterPartitionReassignments' decisions: those a concurrent change (an ISR change)
/// beat are decided again on the newer image.
const REASSIGN_ATTEMPTS: usize = 3;

fn same_partition(a: &PartitionChange, b: &PartitionChange) -> bool {
    a.topic_id == b.topic_id && a.partition == b.partition
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    epoch: i64,
    at: Instant,
    /// The controller connection its last heartbeat came over (0: none, or this node's own).
    conn: u64,
    /// That connection closed: fence now.
    closed: bool,
    /// The metadata offset it had applied, as its last heartbeat said.
    applied: Option<u64>,
}

#[derive(Debug, Default)]
struct Liveness {
    /// The term this node leads in (None: not the leader).
    leading_term: Option<u64>,
    seen: HashMap<NodeId, Seen>,
    /// Brokers with a fence or unfence being written.
    in_flight: HashSet<NodeId>,
    /// The last other node seen leading the quorum: when this node takes over, most likely
    /// dead (with its broker).
    previous_leader: Option<NodeId>,
    /// When each voter last held the whole log, as this leader's checks saw it (wall ms).
    voters_caught_up: HashMap<NodeId, i64>,
}

/// Why a broker loses its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retire {
    Fence,
    ControlledShutdown,
}

/// The active controller's state and decisions.
pub struct QuorumController {
    node_id: NodeId,
    pub(super) raft: Raft<TypeConfig>,
    images: watch::Receiver<Arc<MetadataImage>>,
    /// The entries applied lately, for broker-only nodes' deltas.
    journal: Arc<Journal>,
    /// How often partitions go back to their preferred leaders (`auto.leader.rebalance.enable`).
    rebalance_every: Option<Duration>,
    /// The Raft leader's lease (`controller.quorum.election.timeout.ms`).
    leader_lease: Duration,
    session_timeout: Duration,
    unclean_default: bool,
    liveness: Mutex<Liveness>,
    /// A dead leader noticed by this voter (see [`crate::controller::takeover`]).
    leader_loss: Arc<LeaderLoss>,
}

pub(super) fn leader_of(raft: &Raft<TypeConfig>) -> Option<NodeId> {
    raft.metrics()
        .borrow()
        .current_leader
        .and_then(|id| NodeId::try_from(id).ok())
}

impl QuorumController {
    pub fn new(
        node_id: NodeId,
        raft: Raft<TypeConfig>,
        images: watch::Receiver<Arc<MetadataImage>>,
        journal: Arc<Journal>,
        config: &super::QuorumConfig,
    ) -> Self {
        let session_timeout = Duration::from_millis(config.broker_session_timeout_ms);
        let unclean_default = config.unclean_leader_election;
        let leader_lease = Duration::from_millis(config.election_timeout_ms.max(2));
        QuorumController {
            node_id,
            raft,
            images,
            journal,
            rebalance_every: config.leader_rebalance_every,
            leader_lease,
            session_timeout,
            unclean_default,
            liveness: Mutex::new(Liveness::default()),
            leader_loss: Arc::new(LeaderLoss::new(leader_lease)),
        }
    }

    /// An AppendEntries from `leader` arrived on a peer connection.
    pub fn append_received(&self, leader: NodeId) {
        self.leader_loss.append_from(leader);
    }

    /// The peer connection `leader`'s AppendEntries came over was closed by the other end.
    pub fn leader_connection_closed(&self, leader: NodeId) {
        self.leader_loss.connection_closed(self.node_id, &self.raft, leader);
    }

    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// FetchMetadata (a broker-only node's pull), waiting up to `wait` for this voter to apply
    /// past `after`: the entries after it (from the journal) when it still holds them all,
    /// else (and for a node that has nothing yet) the latest applied image.
    pub async fn fetch_metadata(&self, after: Option<u64>, wait: Duration) -> super::network::MetadataUpdate {
        let newer = |i: &Arc<MetadataImage>| after.is_none_or(|a| i.offset > a);
        let mut images = self.images.clone();
        let _ = tokio::time::timeout(wait, images.wait_for(newer)).await;
        let image = Arc::clone(&images.borrow());
        let leader = leader_of(&self.raft);
        let (image, entries) = match after {
            Some(a) if image.offset <= a => (None, None),
            Some(a) => match self.journal.between(a, image.offset) {
                Some(entries) => (None, Some(entries)),
                None => (Some((*image).clone()), None),
            },
            None => (Some((*image).clone()), None),
        };
        super::network::MetadataUpdate { leader, image, entries }
    }

    /// DescribeQuorum on the leader: the term, the high watermark (the log applied here), each
    /// voter's log end (openraft's replication progress) and each broker-only node's (the
    /// offset its last heartbeat said it applied). A replica's last fetch is its broker's last
    /// heartbeat to this leader; a voter was caught up when a check saw it hold the whole log,
    /// an observer when its heartbeat reported the high watermark.
    pub fn describe_quorum(&self) -> Result<QuorumState, ForwardError> {
        let m = self.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return Err(ForwardError::NotLeader(leader_of(&self.raft)));
        }
        let end = |index: Option<u64>| index.map_or(0, |i| i64::try_from(i).unwrap_or(i64::MAX).saturating_add(1));
        let high_watermark = end(m.last_applied.map(|l| l.index));
        let (now, wall) = (Instant::now(), crate::clock::now_ms());
        let wall_of = |at: Instant| wall - i64::try_from(now.duration_since(at).as_millis()).unwrap_or(i64::MAX);
        let voter_ids: Vec<NodeId> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter_map(|id| NodeId::try_from(id).ok())
            .collect();
        let l = self.liveness();
        let voters = voter_ids
            .iter()
            .map(|&id| {
                if id == self.node_id {
                    return ReplicaProgress {
                        id,
                        log_end_offset: end(m.last_log_index),
                        last_fetch_ms: wall,
                        last_caught_up_ms: wall,
                    };
                }
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&u64::try_from(id).unwrap_or(u64::MAX)).copied().flatten());
                ReplicaProgress {
                    id,
                    log_end_offset: matched.map_or(0, |l| end(Some(l.index))),
                    last_fetch_ms: l
                        .seen
                        .get(&id)
                        .filter(|s| s.applied.is_some())
                        .map_or(-1, |s| wall_of(s.at)),
                    last_caught_up_ms: l.voters_caught_up.get(&id).copied().unwrap_or(-1),
                }
            })
            .collect();
        let mut observers: Vec<ReplicaProgress> = l
            .seen
            .iter()
            .filter(|(id, _)| !voter_ids.contains(id))
            .filter_map(|(&id, s)| {
                let log_end_offset = end(Some(s.applied?));
                let at = wall_of(s.at);
                Some(ReplicaProgress {
                    id,
                    log_end_offset,
                    last_fetch_ms: at,
                    last_caught_up_ms: if log_end_offset >= high_watermark { at } else { -1 },
                })
            })
            .collect();
        observers.sort_by_key(|o| o.id);
        Ok(QuorumState {
            leader: self.node_id,
            leader_epoch: i32::try_from(m.current_term).unwrap_or(i32::MAX),
            high_watermark,
            voters,
            observers,
        })
    }

    fn liveness(&self) -> MutexGuard<'_, Liveness> {
        self.liveness.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Proposes `command` on this node, which must be the leader.
    pub async fn write_local(&self, command: MetadataCommand) -> Result<ApplyResult, ForwardError> {
        match self.raft.client_write(command).await {
            Ok(response) => Ok(response.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(ForwardError::NotLeader(
                f.leader_id.and_then(|id| NodeId::try_from(id).ok()),
            )),
            Err(e) => Err(ForwardError::Unavailable(e.to_string())),
        }
    }

    /// A broker's heartbeat, over controller connection `conn` (0 for this node's own). Only
    /// the leader takes them.
    pub fn heartbeat(self: &Arc<Self>, hb: &BrokerHeartbeat, conn: u64) -> Result<HeartbeatReply, ForwardError> {
        if !self.is_leader() {
            return Err(ForwardError::NotLeader(leader_of(&self.raft)));
        }
        let image = Arc::clone(&self.images.borrow());
        let Some(reg) = image.brokers.get(&hb.id).filter(|b| b.epoch == hb.epoch) else {
            return Ok(HeartbeatReply {
                fenced: true,
                unknown_epoch: true,
                should_shut_down: hb.want_shut_down,
            });
        };
        let fenced = reg.fenced;
        let mut should_shut_down = false;
        if hb.want_shut_down {
            let leads_nothing = !image.topics().any(|t| t.partitions.iter().any(|p| p.leader == hb.id));
            // A leader that has not heard from a quorum for its lease cannot write the move:
            // the broker may as well stop (the last brokers of a cluster stopping).
            let quorum_lost = self
                .raft
                .metrics()
                .borrow()
                .millis_since_quorum_ack
                .is_none_or(|ms| u128::from(ms) > self.leader_lease.as_millis());
            should_shut_down = fenced || quorum_lost || (reg.in_controlled_shutdown && leads_nothing);
            if !fenced && !quorum_lost && !reg.in_controlled_shutdown {
                let me = Arc::clone(self);
                let (id, epoch) = (hb.id, hb.epoch);
                tokio::spawn(async move { me.retire(id, epoch, Retire::ControlledShutdown).await });
            }
        }
        if !fenced && !hb.want_shut_down && reg.log_dir_offline != hb.log_dir_offline {
            let me = Arc::clone(self);
            let (id, epoch, offline) = (hb.id, hb.epoch, hb.log_dir_offline);
            tokio::spawn(async move { me.set_log_dir_offline(id, epoch, offline).await });
        }
        let caught_up = hb.applied_offset >= u64::try_from(hb.epoch).unwrap_or(u64::MAX);
        self.liveness().seen.insert(
            hb.id,
            Seen {
                epoch: hb.epoch,
                at: Instant::now(),
                conn,
                closed: false,
                applied: Some(hb.applied_offset),
            },
        );
        if fenced && caught_up && !hb.want_shut_down {
            // Unfence now rather than at the next check: a starting broker waits for it.
            let me = Arc::clone(self);
            let (id, epoch) = (hb.id, hb.epoch);
            tokio::spawn(async move { me.unfence(id, epoch).await });
        }
        Ok(HeartbeatReply {
            fenced,
            unknown_epoch: false,
            should_shut_down,
        })
    }

    /// Broker `id` heartbeated at `epoch` after `since` (and its connection is not closed).
    fn heartbeat_since(&self, id: NodeId, epoch: i64, since: Instant) -> bool {
        self.liveness()
            .seen
            .get(&id)
            .is_some_and(|s| s.epoch == epoch && s.at > since && !s.closed)
    }

    /// The heartbeat connection `conn` of broker `id` at `epoch` closed (or its listener
    /// refused a probe: `conn` 0): fence it now (clients looking up the new leader a moment
    /// later must find it), unless its heartbeats have moved to another connection (a broker
    /// that follows a new quorum leader drops the old one).
    pub fn connection_closed(self: &Arc<Self>, id: NodeId, epoch: i64, conn: u64) {
        {
            let mut l = self.liveness();
            // No heartbeat recorded yet (a new leader): only a probe (conn 0) counts.
            let seen = l.seen.entry(id).or_insert(Seen {
                epoch,
                at: Instant::now(),
                conn: 0,
                closed: false,
                applied: None,
            });
            if seen.epoch != epoch || (conn != 0 && seen.conn != conn) {
                return;
            }
            seen.closed = true;
        }
        let registered = self
            .images
            .borrow()
            .brokers
            .get(&id)
            .is_some_and(|b| b.epoch == epoch && !b.fenced);
        if registered && self.is_leader() {
            let me = Arc::clone(self);
            tokio::spawn(async move { me.fence(id, epoch).await });
        }
    }

    /// Partition leaders' ISR changes (Kafka's `ReplicationControlManager.alterPartition`, which
    /// takes a batch too): each must come from the leader at its leader epoch and partition
    /// epoch, hold the leader and lie within the replicas, and add only live members. The valid
    /// ones are written as one command (one Raft entry: a restarted broker rejoining thousands of
    /// ISRs costs one write, not one each), a compare-and-set on each partition epoch; if a
    /// concurrent change made that command fail, each is written on its own. One answer per
    /// change, in order.
    pub async fn alter_partitions(
        &self,
        batch: &[AlterPartitionRequest],
    ) -> Result<Vec<Result<(), ForwardError>>, ForwardError> {
        if !self.is_leader() {
            return Err(ForwardError::NotLeader(leader_of(&self.raft)));
        }
        let image = Arc::clone(&self.images.borrow());
        let checked: Vec<Result<PartitionChange, ForwardError>> = batch
            .iter()
            .map(|r| {
                let mut change = election::on_alter_isr(&image, r).map_err(ForwardError::Refused)?;
                if let Some(reg) = image.topic_by_id(r.topic_id).and_then(|t| t.partition(r.partition)) {
                    reassignment::complete(&image, reg, &mut change);
                }
                Ok(change)
            })
            .collect();
        let valid: Vec<(usize, PartitionChange)> = checked
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().ok().map(|c| (i, c.clone())))
            .collect();
        let mut results: Vec<Result<(), ForwardError>> = checked.into_iter().map(|c| c.map(|_| ())).collect();
        let started = Instant::now();
        let (indexes, changes): (Vec<usize>, Vec<PartitionChange>) = valid.into_iter().unzip();
        let (_, refusals) = self.write_changes(changes).await?;
        tracing::debug!(
            changes = indexes.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "AlterPartition written"
        );
        for (i, refused) in indexes.into_iter().zip(refusals) {
            if let Some(why) = refused {
                results[i] = Err(ForwardError::Refused(why));
            }
        }
        Ok(results)
    }

    /// Writes partition changes, each a compare-and-set on its partition epoch, as one command
    /// (one Raft entry); if a concurrent change made that command fail, each on its own.
    /// Returns the offset of the last write and, per change in order, why it was refused.
    async fn write_changes(&self, changes: Vec<PartitionChange>) -> Result<(u64, Vec<Option<String>>), ForwardError> {
        let mut refusals = vec![None; changes.len()];
        if changes.is_empty() {
            return Ok((self.images.borrow().offset, refusals));
        }
        let command = MetadataCommand {
            records: changes.iter().cloned().map(MetadataRecord::ChangePartition).collect(),
        };
        let written = self.write_local(command).await?;
        let mut offset = written.offset;
        match written.refused {
            None => {}
            Some(why) if changes.len() == 1 => refusals[0] = Some(why.to_string()),
            Some(_) => {
                for (i, change) in changes.into_iter().enumerate() {
                    let one = self
                        .write_local(MetadataCommand::one(MetadataRecord::ChangePartition(change)))
                        .await?;
                    offset = one.offset;
                    refusals[i] = one.refused.map(|why| why.to_string());
                }
            }
        }
        Ok((offset, refusals))
    }

    /// An operator's leader elections (Kafka's `ReplicationControlManager.electLeaders`): the
    /// partitions named (each answered, ELECTION_NOT_NEEDED included), or with none named every
    /// partition an election applies to. The elections are written together (see
    /// [`Self::write_changes`]); the answer comes once they are committed.
    pub async fn elect_leaders(
        &self,
        kind: ElectionType,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<ElectionResults, ForwardError> {
        if !self.is_leader() {
            return Err(ForwardError::NotLeader(leader_of(&self.raft)));
        }
        let image = Arc::clone(&self.images.borrow());
        let decided = match partitions {
            Some(named) => named
                .into_iter()
                .map(|(topic, partition)| {
                    let outcome = election::on_elect(&image, &topic, partition, kind);
                    (topic, partition, outcome)
                })
                .collect(),
            None => election::on_elect_all(&image, kind),
        };
        let mut outcomes = Vec::with_capacity(decided.len());
        let mut changes = Vec::new();
        let mut changed_at = Vec::new();
        for (topic, partition, outcome) in decided {
            let result = match outcome {
                Ok(change) => {
                    changed_at.push(outcomes.len());
                    changes.push(change);
                    Ok(())
                }
                Err(e) => Err(e),
            };
            outcomes.push(ElectionOutcome {
                topic,
                partition,
                result,
            });
        }
        let elections = changes.len();
        let (offset, refusals) = self.write_changes(changes).await?;
        for (i, refused) in changed_at.into_iter().zip(refusals) {
            if let Some(why) = refused {
                outcomes[i].result = Err(election::ElectionError::Changed(why));
            }
        }
        if elections > 0 {
            tracing::info!(?kind, elections, "leaders elected on request");
        }
        Ok(ElectionResults { offset, outcomes })
    }

    /// An operator's partition reassignments (Kafka's `ReplicationControlManager.
    /// alterPartitionReassignments`): each decided by `reassignment::on_reassign` on the
    /// latest image and written together (see [`Self::write_changes`]); those a concurrent
    /// change beat are decided again on the newer image, a few times. One outcome per
    /// reassignment, in order; the answer comes once they are committed.
    pub async fn alter_reassignments(
        &self,
        reassignments: Vec<Reassignment>,
        allow_rf_change: bool,
    ) -> Result<ReassignResults, ForwardError> {
        if !self.is_leader() {
            return Err(ForwardError::NotLeader(leader_of(&self.raft)));
        }
        let mut outcomes: Vec<Result<(), ReassignError>> = vec![Ok(()); reassignments.len()];
        let mut pending: Vec<usize> = (0..reassignments.len()).collect();
        let mut offset = self.images.borrow().offset;
        for _ in 0..REASSIGN_ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            let image = Arc::clone(&self.images.borrow());
            let mut changes = Vec::new();
            let mut changed_at = Vec::new();
            for &i in &pending {
                let r = &reassignments[i];
                let decided = reassignment::on_reassign(
                    &image,
                    &r.topic,
                    r.partition,
                    r.target.as_deref(),
                    allow_rf_change,
                    self.unclean_default,
                );
                match decided {
                    Ok(Some(change)) if !changes.iter().any(|c: &PartitionChange| same_partition(c, &change)) => {
                        changed_at.push(i);
                        changes.push(change);
                        outcomes[i] = Ok(());
                    }
                    // A second reassignment of one partition is decided on the image the
                    // first one makes, in the next round.
                    Ok(Some(change)) => {
                        outcomes[i] = Err(ReassignError::Changed(format!(
                            "partition {} named twice",
                            change.partition
                        )))
                    }
                    Ok(None) => outcomes[i] = Ok(()),
                    Err(e) => outcomes[i] = Err(e),
                }
            }
            let (written, refusals) = self.write_changes(changes).await?;
            offset = written;
            let mut again: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|i| matches!(outcomes[*i], Err(ReassignError::Changed(_))))
                .collect();
            for (i, refused) in changed_at.into_iter().zip(refusals) {
                if let Some(why) = refused {
                    outcomes[i] = Err(ReassignError::Changed(why));
                    again.push(i);
                }
            }
            again.sort_unstable();
            pending = again;
        }
        let moved = outcomes.iter().filter(|o| o.is_ok()).count();
        tracing::info!(
            reassignments = reassignments.len(),
            accepted = moved,
            "partition reassignments requested"
        );
        Ok(ReassignResults { offset, outcomes })
    }

    /// Removes broker `id` from the cluster (Kafka's `QuorumController.unregisterBroker`): out of
    /// every ISR and leadership as when fenced, then its registration goes, in one command.
    /// Its replicas stay in the assignments (offline) until reassigned. Returns the offset and
    /// whether it was registered at all.
    pub async fn unregister_broker(&self, id: NodeId) -> Result<(u64, bool), ForwardError> {
        if !self.is_leader() {
            return Err(ForwardError::NotLeader(leader_of(&self.raft)));
        }
        let image = Arc::clone(&self.images.borrow());
        let Some(b) = image.brokers.get(&id) else {
            return Ok((image.offset, false));
        };
        let mut records: Vec<MetadataRecord> = election::on_fence(&image, id, self.unclean_default)
            .into_iter()
            .map(MetadataRecord::ChangePartition)
            .collect();
        let partitions = records.len();
        records.push(MetadataRecord::UnregisterBroker { id, epoch: b.epoch });
        let written = self.write_local(MetadataCommand { records }).await?;
        if let Some(why) = written.refused {
            return Err(ForwardError::Refused(why.to_string()));
        }
        self.liveness().seen.remove(&id);
        tracing::info!(broker = id, partitions, "broker unregistered");
        Ok((written.offset, true))
    }

    /// Checks liveness every [`CHECK_EVERY`] while this node leads, until `shutdown`.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut known_leader = None;
        let mut ticks = 0u32;
        let mut last_rebalance = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            // openraft's own logs are off by default (RUST_LOG=openraft=info shows them): the
            // quorum's state changes are reported here, once each.
            let (leader, term) = {
                let m = self.raft.metrics();
                let m = m.borrow();
                (m.current_leader, m.current_term)
            };
            if let Some(l) = leader
                .and_then(|l| NodeId::try_from(l).ok())
                .filter(|l| *l != self.node_id)
            {
                self.liveness().previous_leader = Some(l);
            }
            if leader != known_leader {
                known_leader = leader;
                match leader {
                    Some(l) => tracing::info!(leader = l, term, "controller quorum leader"),
                    None => tracing::warn!(term, "controller quorum has no leader"),
                }
            }
            self.check().await;
            ticks = ticks.wrapping_add(1);
            if ticks % ELECT_EVERY == 0 && self.is_leader() {
                self.elect_leaderless().await;
            }
            if let Some(every) = self.rebalance_every {
                if !self.is_leader() {
                    last_rebalance = Instant::now();
                } else if last_rebalance.elapsed() >= every && !self.rebalance_leaders().await {
                    // All of them moved (or none to move): the next look after a whole interval.
                    last_rebalance = Instant::now();
                }
            }
        }
    }

    /// Gives partitions back to their preferred replicas where those are live ISR members
    /// (Kafka's `auto.leader.rebalance.enable`: `maybeBalancePartitionLeaders`), at most
    /// [`MAX_ELECTIONS_PER_REBALANCE`] at a time. Returns whether more may be waiting.
    async fn rebalance_leaders(&self) -> bool {
        let image = Arc::clone(&self.images.borrow());
        let changes: Vec<PartitionChange> = election::on_elect_all(&image, ElectionType::Preferred)
            .into_iter()
            .filter_map(|(_, _, outcome)| outcome.ok())
            .take(MAX_ELECTIONS_PER_REBALANCE)
            .collect();
        if changes.is_empty() {
            return false;
        }
        let n = changes.len();
        match self.write_changes(changes).await {
            Ok((_, refusals)) => {
                let moved = refusals.iter().filter(|r| r.is_none()).count();
                tracing::info!(partitions = moved, "gave partitions back to their preferred leaders");
                n == MAX_ELECTIONS_PER_REBALANCE
            }
            Err(e) => {
                tracing::debug!(error = %e, "leader rebalance not written");
                false
            }
        }
    }

    async fn check(self: &Arc<Self>) {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            self.liveness().leading_term = None;
            return;
        }
        let image = Arc::clone(&self.images.borrow());
        let now = Instant::now();
        let due: Vec<(NodeId, i64)> = {
            let mut l = self.liveness();
            if l.leading_term != Some(metrics.current_term) {
                l.voters_caught_up.clear();
                // A new leader: every broker's clock starts now. Which connection each one's
                // heartbeats came over is kept (those taken before this first check count: a
                // kill -9 a moment later must still be seen as its connection closing).
                l.leading_term = Some(metrics.current_term);
                l.seen
                    .retain(|id, seen| image.brokers.get(id).is_some_and(|b| b.epoch == seen.epoch));
                for seen in l.seen.values_mut() {
                    seen.at = now;
                    seen.closed = false;
                }
                let previous = l.previous_leader;
                for b in image.brokers.values().filter(|b| !b.fenced && b.id != self.node_id) {
                    let Some(e) = b.endpoints.first() else { continue };
                    let me = Arc::clone(self);
                    let (id, epoch, addr) = (b.id, b.epoch, format!("{}:{}", e.host, e.port));
                    // The old leader's broker refusing is the case the probe is for: no grace.
                    let grace = if previous == Some(id) {
                        Duration::ZERO
                    } else {
                        PROBE_GRACE
                    };
                    tokio::spawn(async move {
                        let since = Instant::now();
                        let probe = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(&addr));
                        if let Ok(Err(e)) = probe.await {
                            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                                // A starting broker is unfenced before it binds its listener;
                                // it heartbeats, a dead one does not (brokers heartbeat at once
                                // when the quorum's leader changes). The old leader's broker
                                // gets no grace: it is the one most likely dead.
                                tokio::time::sleep(grace).await;
                                if !grace.is_zero() && me.heartbeat_since(id, epoch, since) {
                                    return;
                                }
                                tracing::info!(broker = id, %addr, "broker refuses connections and sends no heartbeat: fencing it now");
                                me.connection_closed(id, epoch, 0);
                            }
                        }
                    });
                }
            }
            if let Some(replication) = &metrics.replication {
                let wall = crate::clock::now_ms();
                for (id, matched) in replication.iter() {
                    if matched.map(|m| m.index) == metrics.last_log_index {
                        if let Ok(id) = NodeId::try_from(*id) {
                            l.voters_caught_up.insert(id, wall);
                        }
                    }
                }
            }
            let mut due = Vec::new();
            for b in image.brokers.values().filter(|b| !b.fenced) {
                let seen = *l.seen.entry(b.id).or_insert(Seen {
                    epoch: b.epoch,
                    at: now,
                    conn: 0,
                    closed: false,
                    applied: None,
                });
                let expired =
                    seen.epoch != b.epoch || seen.closed || now.duration_since(seen.at) > self.session_timeout;
                if expired && !l.in_flight.contains(&b.id) {
                    due.push((b.id, b.epoch));
                }
            }
            due
        };
        for (id, epoch) in due {
            self.fence(id, epoch).await;
        }
    }

    /// Gives leaderless partitions a leader where one is eligible now (together; each on its
    /// own if a concurrent change beat one of them, see [`Self::write_changes`]).
    async fn elect_leaderless(&self) {
        let image = Arc::clone(&self.images.borrow());
        let changes = election::on_leaderless(&image, self.unclean_default);
        if changes.is_empty() {
            return;
        }
        let n = changes.len();
        let unclean = changes.iter().filter(|c| c.isr.is_some()).count();
        match self.write_changes(changes).await {
            Ok((_, refusals)) => {
                let refused = refusals.iter().filter(|r| r.is_some()).count();
                if refused < n {
                    tracing::info!(
                        partitions = n - refused,
                        unclean,
                        "elected leaders for leaderless partitions"
                    );
                }
                if refused > 0 {
                    tracing::debug!(refused, "elections refused; retried later");
                }
            }
            Err(e) => tracing::debug!(error = %e, "election not written"),
        }
    }

    /// Fences broker `id` (registration `epoch`) with every partition change it brings.
    async fn fence(&self, id: NodeId, epoch: i64) {
        self.retire(id, epoch, Retire::Fence).await
    }

    /// Takes every leadership and ISR membership from broker `id` (registration `epoch`):
    /// fencing it (it stopped heartbeating), or marking it in controlled shutdown (it asked:
    /// it stays registered and unfenced, but may neither lead nor join an ISR until it
    /// registers again). One command: the broker change and the partition changes.
    async fn retire(&self, id: NodeId, epoch: i64, why: Retire) {
        if !self.liveness().in_flight.insert(id) {
            return;
        }
        let image = Arc::clone(&self.images.borrow());
        let controlled = why == Retire::ControlledShutdown;
        let mut records = vec![MetadataRecord::BrokerChange {
            id,
            epoch,
            fenced: (!controlled).then_some(true),
            in_controlled_shutdown: controlled.then_some(true),
            log_dir_offline: None,
        }];
        let changes = election::on_fence(&image, id, self.unclean_default);
        let partitions = changes.len();
        records.extend(changes.into_iter().map(MetadataRecord::ChangePartition));
        let result = self.write_local(MetadataCommand { records }).await;
        self.liveness().in_flight.remove(&id);
        match result {
            Ok(r) if r.refused.is_none() && controlled => tracing::info!(
                broker = id,
                broker_epoch = epoch,
                partitions,
                "controlled shutdown: the broker's leaderships and ISR places moved"
            ),
            Ok(r) if r.refused.is_none() => tracing::warn!(
                broker = id,
                broker_epoch = epoch,
                partitions,
                "fenced a broker that stopped heartbeating"
            ),
            Ok(r) => {
                tracing::debug!(broker = id, refused = ?r.refused, ?why, "refused; the next check or heartbeat retries")
            }
            Err(e) => tracing::debug!(broker = id, error = %e, ?why, "not written"),
        }
    }

    /// Broker `id` (registration `epoch`) says its log dir went offline (or is back): recorded
    /// with the partition changes that move its work to other replicas
    /// ([`election::on_log_dir_offline`]); back online it is eligible again, and its leaders
    /// add it to their ISRs once it has caught up.
    async fn set_log_dir_offline(&self, id: NodeId, epoch: i64, offline: bool) {
        let image = Arc::clone(&self.images.borrow());
        if !image
            .brokers
            .get(&id)
            .is_some_and(|b| b.epoch == epoch && !b.fenced && b.log_dir_offline != offline)
        {
            return;
        }
        if !self.liveness().in_flight.insert(id) {
            return;
        }
        let mut records = vec![MetadataRecord::BrokerChange {
            id,
            epoch,
            fenced: None,
            in_controlled_shutdown: None,
            log_dir_offline: Some(offline),
        }];
        let changes = if offline {
            election::on_log_dir_offline(&image, id)
        } else {
            Vec::new()
        };
        let partitions = changes.len();
        records.extend(changes.into_iter().map(MetadataRecord::ChangePartition));
        let result = self.write_local(MetadataCommand { records }).await;
        self.liveness().in_flight.remove(&id);
        match result {
            Ok(r) if r.refused.is_none() && offline => tracing::warn!(
                broker = id,
                broker_epoch = epoch,
                partitions,
                "a broker's log dir is offline: its leaderships and ISR places moved where another replica can take them"
            ),
            Ok(r) if r.refused.is_none() => {
                tracing::info!(broker = id, broker_epoch = epoch, "a broker's log dir is online again")
            }
            Ok(r) => tracing::debug!(broker = id, refused = ?r.refused, "log dir change refused; the next heartbeat retries"),
            Err(e) => tracing::debug!(broker = id, error = %e, "log dir change not written"),
        }
    }

    /// Unfences broker `id` if it is still fenced at registration `epoch`.
    async fn unfence(&self, id: NodeId, epoch: i64) {
        let image = Arc::clone(&self.images.borrow());
        if !image.brokers.get(&id).is_some_and(|b| b.fenced && b.epoch == epoch) {
            return;
        }
        if !self.liveness().in_flight.insert(id) {
            return;
        }
        let mut records = vec![MetadataRecord::BrokerChange {
            id,
            epoch,
            fenced: Some(false),
            in_controlled_shutdown: Some(false),
            log_dir_offline: None,
        }];
        records.extend(
            election::on_unfence(&image, id)
                .into_iter()
                .map(MetadataRecord::ChangePartition),
        );
        let result = self.write_local(MetadataCommand { records }).await;
        {
            let mut l = self.liveness();
            l.in_flight.remove(&id);
            if let Some(seen) = l.seen.get_mut(&id) {
                seen.at = Instant::now();
            }
        }
        match result {
            Ok(r) if r.refused.is_none() => tracing::info!(broker = id, broker_epoch = epoch, "unfenced a broker"),
            Ok(r) => tracing::debug!(broker = id, refused = ?r.refused, "unfencing refused"),
            Err(e) => tracing::debug!(broker = id, error = %e, "unfencing not written"),
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }
}
