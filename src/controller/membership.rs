//! Changing the controller quorum's voters (Kafka's KIP-853: AddRaftVoter and RemoveRaftVoter,
//! what `kafka-metadata-quorum add-controller / remove-controller` and the Java client's
//! `Admin.addRaftVoter` / `removeRaftVoter` send), through openraft's membership change, one voter
//! at a time: a new voter first follows the log as a learner until it has caught up, then a
//! joint-consensus change makes it a voter; a removed voter leaves the membership (not kept as a
//! learner). openraft commits each change before it answers, on the active controller only.
//!
//! A new controller node starts with its id outside `controller.quorum.voters` (so it does not
//! form a quorum of its own) and waits until it is added; see the README ("Controller voters").

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use serde::{Deserialize, Serialize};

use super::network::ForwardError;
use super::quorum::{leader_of, QuorumController};
use super::record::NodeId;

/// Why a voter change was not made (Kafka's error codes in `api::raft_voters`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum VoterChangeError {
    /// DUPLICATE_VOTER.
    #[error("node {0} is already a voter")]
    Duplicate(NodeId),
    /// VOTER_NOT_FOUND.
    #[error("node {0} is not a voter")]
    NotFound(NodeId),
    /// INVALID_REQUEST: the last voter cannot go.
    #[error("node {0} is the only voter")]
    LastVoter(NodeId),
    /// REQUEST_TIMED_OUT: the new voter did not catch up (is it running, at that address?).
    #[error("node {0} did not catch up with the metadata log within {1} ms (is it running at {2}?)")]
    NotCaughtUp(NodeId, u64, String),
    /// Another change is in progress, or openraft refused (the message says why).
    #[error("{0}")]
    Refused(String),
}

type Outcome = Result<(u64, Result<(), VoterChangeError>), ForwardError>;

fn node_id(id: NodeId) -> u64 {
    u64::try_from(id).unwrap_or(0)
}

impl QuorumController {
    fn voter_ids(&self) -> BTreeSet<u64> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// openraft's refusal of a change, as this module answers it.
    fn refused(&self, e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> Outcome {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                Err(ForwardError::NotLeader(leader_of(&self.raft)))
            }
            other => Ok((0, Err(VoterChangeError::Refused(other.to_string())))),
        }
    }

    /// Adds node `id` (its controller listener at `address`) as a voter once it has caught up
    /// as a learner, waiting up to `timeout` for that.
    pub async fn add_voter(&self, id: NodeId, address: String, timeout: Duration) -> Outcome {
        if !self.is_leader() {
            return Err(ForwardError::NotLeader(leader_of(&self.raft)));
        }
        if self.voter_ids().contains(&node_id(id)) {
            return Ok((0, Err(VoterChangeError::Duplicate(id))));
        }
        let learner = self.raft.add_learner(node_id(id), BasicNode::new(&address), true);
        match tokio::time::timeout(timeout, learner).await {
            Err(_) => {
                let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                return Ok((0, Err(VoterChangeError::NotCaughtUp(id, ms, address))));
            }
            Ok(Err(e)) => return self.refused(e),
            Ok(Ok(_)) => {}
        }
        let change = ChangeMembers::AddVoterIds(BTreeSet::from([node_id(id)]));
        match self.raft.change_membership(change, false).await {
            Ok(_) => {
                tracing::warn!(node = id, %address, "added a voter to the controller quorum");
                Ok((0, Ok(())))
            }
            Err(e) => self.refused(e),
        }
    }

    /// Removes node `id` from the voters (and from the membership).
    pub async fn remove_voter(&self, id: NodeId) -> Outcome {
        if !self.is_leader() {
            return Err(ForwardError::NotLeader(leader_of(&self.raft)));
        }
        let voters = self.voter_ids();
        if !voters.contains(&node_id(id)) {
            return Ok((0, Err(VoterChangeError::NotFound(id))));
        }
        if voters.len() == 1 {
            return Ok((0, Err(VoterChangeError::LastVoter(id))));
        }
        let change = ChangeMembers::RemoveVoters(BTreeSet::from([node_id(id)]));
        match self.raft.change_membership(change, false).await {
            Ok(_) => {
                tracing::warn!(node = id, "removed a voter from the controller quorum");
                Ok((0, Ok(())))
            }
            Err(e) => self.refused(e),
        }
    }
}
