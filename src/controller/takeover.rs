//! A quorum leader killed outright is replaced as soon as its lease runs out, not at some
//! voter's next random election timeout.
//!
//! openraft's voters refuse votes while the leader's lease holds (T = `election_timeout_max`
//! since its last AppendEntries), and a follower of an established leader starts an election
//! only after the lease plus its random timeout in [T/2, T): 1.5 T to 2 T after the leader's
//! last word (2-3 s of failover with Kafka's default T of 1 s). A process that is gone is seen
//! at once, though: the connection its AppendEntries came over closes, and its controller
//! listener refuses connections. Then the lowest-numbered other voter asks for an election just
//! after the lease ends (openraft's `trigger().elect()`), about T after the leader died; the
//! others keep to their timers, which fire later, so the vote does not split. A leader that is
//! slow, paused or cut off keeps its connections (or its listener answers) and is left to the
//! timers, as before.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::{Raft, ServerState};
use tokio::net::TcpStream;

use crate::controller::record::NodeId;
use crate::controller::TypeConfig;

/// After the lease: the other voters' leases, started by the same heartbeat a few ms apart,
/// have run out too.
const MARGIN: Duration = Duration::from_millis(50);
/// How long a probe of the leader's listener may take (a refusal is immediate), and how often
/// it is probed.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// What a voter knows of the leader's AppendEntries.
pub struct LeaderLoss {
    lease: Duration,
    /// The last AppendEntries received, and the leader that sent it.
    last_append: Mutex<Option<(NodeId, Instant)>>,
    /// The last AppendEntries a takeover is being prepared after (one for all the leader's
    /// connections that closed).
    armed: Mutex<Option<Instant>>,
}

impl LeaderLoss {
    pub fn new(lease: Duration) -> Self {
        LeaderLoss {
            lease,
            last_append: Mutex::new(None),
            armed: Mutex::new(None),
        }
    }

    /// An AppendEntries from `leader` arrived.
    pub fn append_from(&self, leader: NodeId) {
        *self.last_append.lock().unwrap_or_else(|p| p.into_inner()) = Some((leader, Instant::now()));
    }

    fn last_append_from(&self, leader: NodeId) -> Option<Instant> {
        self.last_append
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .filter(|(from, _)| *from == leader)
            .map(|(_, at)| at)
    }

    /// The connection `leader`'s AppendEntries came over closed (read by `me`, a voter). If
    /// `me` is the voter to take over and the leader's listener refuses a connection, an
    /// election is asked for when the lease ends, unless by then a leader was heard from.
    pub fn connection_closed(self: &Arc<Self>, me: NodeId, raft: &Raft<TypeConfig>, leader: NodeId) {
        let Some(since) = self.last_append_from(leader) else {
            tracing::debug!(leader, "leader connection closed: a newer leader has been heard from");
            return;
        };
        let addr = {
            let m = raft.metrics();
            let m = m.borrow();
            let leader_id = u64::try_from(leader).ok();
            if m.current_leader != leader_id || m.state == ServerState::Leader {
                tracing::debug!(leader, current = ?m.current_leader, state = ?m.state, "leader connection closed: not the leader now");
                return;
            }
            let membership = m.membership_config.membership();
            let first = membership.voter_ids().filter(|v| Some(*v) != leader_id).min();
            if first != u64::try_from(me).ok() {
                tracing::debug!(leader, ?first, "leader connection closed: another voter takes over");
                return;
            }
            match leader_id.and_then(|id| membership.get_node(&id)) {
                Some(node) => node.addr.clone(),
                None => return,
            }
        };
        {
            let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
            if *armed == Some(since) {
                return;
            }
            *armed = Some(since);
        }
        let (raft, this) = (raft.clone(), Arc::clone(self));
        tokio::spawn(async move {
            // Probed until the lease ends: a process being killed may still hold its listener
            // for a moment after the connection closed; one that lives always answers.
            let deadline = since + this.lease + MARGIN;
            loop {
                let probe = match tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(&addr)).await {
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                    other => other.map(|r| r.map(|_| ())),
                };
                if Instant::now() + PROBE_EVERY >= deadline {
                    tracing::debug!(leader, ?probe, "leader connection closed: its listener did not refuse");
                    return;
                }
                tokio::time::sleep(PROBE_EVERY).await;
            }
            tokio::time::sleep_until(deadline.into()).await;
            let still_gone = {
                let m = raft.metrics();
                let m = m.borrow();
                m.current_leader == u64::try_from(leader).ok() && m.state != ServerState::Leader
            };
            if !still_gone || this.last_append_from(leader) != Some(since) {
                tracing::debug!(
                    leader,
                    still_gone,
                    "leader connection closed: a leader was heard from since"
                );
                return;
            }
            tracing::info!(
                leader,
                "the quorum's leader is gone (its connection closed, its listener refuses): \
                 asking for an election as its lease ends"
            );
            if let Err(e) = raft.trigger().elect().await {
                tracing::warn!(error = %e, "could not start an election");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_leaders_last_append_counts() {
        let loss = LeaderLoss::new(Duration::from_millis(1000));
        assert_eq!(loss.last_append_from(1), None);
        loss.append_from(1);
        let at = loss.last_append_from(1).expect("recorded");
        assert_eq!(loss.last_append_from(2), None, "another leader's appends are not its");
        loss.append_from(2);
        assert_eq!(loss.last_append_from(1), None, "a newer leader replaced it");
        assert!(loss.last_append_from(2).is_some_and(|t| t >= at));
    }
}
