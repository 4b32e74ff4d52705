//! The controller quorum: the replicated metadata log (Kafka's KRaft `__cluster_metadata`),
//! kept with openraft (pinned 0.9.25; see `shared/REPLICATION-NOTES.md`, section 4), and
//! the image every broker reads. `docs/cluster-design.md` has the whole design.
//!
//! - `record`: the metadata records and commands (our KRaft records).
//! - `image`: `MetadataImage`, a pure value each command is applied to, deterministically.
//! - `raft_log`: the durable Raft log store (fsync before acknowledging, torn tails cut).
//! - `state_machine`: applies entries to the image, publishes images, snapshots.
//! - `network`: how voters reach each other (a quorum of one needs no network).
//!
//! [`Controller`] is the handle the broker holds: propose a command, read the latest image,
//! wait until an offset is applied.

pub mod image;
pub mod network;
pub mod placement;
pub mod raft_log;
pub mod record;
pub mod state_machine;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Raft};
use tokio::sync::watch;

use image::MetadataImage;
use record::{ApplyResult, MetadataCommand, NodeId};

openraft::declare_raft_types!(
    /// openraft's types for the metadata log.
    pub TypeConfig:
        D = MetadataCommand,
        R = ApplyResult,
);

/// The metadata log's directory under a log dir (Kafka's name).
pub const METADATA_DIR: &str = "__cluster_metadata-0";

/// Why a proposal did not go through (a refusal by the image is not an error: it is in the
/// [`ApplyResult`]).
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("this node is not the active controller (leader: {0:?})")]
    NotController(Option<NodeId>),
    #[error("the metadata quorum is unavailable: {0}")]
    Unavailable(String),
}

/// The timing of the quorum (Kafka's `controller.quorum.*` settings).
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// `controller.quorum.election.timeout.ms`: a follower that hears nothing from a leader
    /// for this long (randomised up to twice it) starts an election.
    pub election_timeout_ms: u64,
    /// Heartbeats from the leader (a fraction of the election timeout).
    pub heartbeat_interval_ms: u64,
}

impl Default for QuorumConfig {
    fn default() -> Self {
        QuorumConfig {
            election_timeout_ms: 1_000,
            heartbeat_interval_ms: 100,
        }
    }
}

/// The broker's handle on the metadata quorum.
pub struct Controller {
    node_id: NodeId,
    raft: Raft<TypeConfig>,
    images: watch::Receiver<Arc<MetadataImage>>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").field("node_id", &self.node_id).finish()
    }
}

fn raft_id(id: NodeId) -> u64 {
    u64::try_from(id).unwrap_or(0)
}

impl Controller {
    /// Opens the metadata log under `log_dir` and starts this node's Raft member. `voters`
    /// (node id -> controller address) forms the quorum when the log is pristine: every voter
    /// initialises with the same set, as openraft allows, so no format step is needed.
    pub async fn start(
        node_id: NodeId,
        log_dir: &Path,
        voters: &BTreeMap<NodeId, String>,
        quorum: &QuorumConfig,
        network: network::Network,
    ) -> anyhow::Result<Controller> {
        let dir = log_dir.join(METADATA_DIR);
        let log = raft_log::RaftLogStore::open(&dir)?;
        let pristine = log.is_pristine();
        let (machine, images) = state_machine::StateMachine::open(&dir)?;
        let config = openraft::Config {
            cluster_name: "sluice".into(),
            election_timeout_min: quorum.election_timeout_ms,
            election_timeout_max: quorum.election_timeout_ms * 2,
            heartbeat_interval: quorum.heartbeat_interval_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1_000),
            max_in_snapshot_log_to_keep: 1_000,
            ..openraft::Config::default()
        }
        .validate()?;
        let raft = Raft::new(raft_id(node_id), Arc::new(config), network, log, machine).await?;
        if pristine {
            let members: BTreeMap<u64, BasicNode> = voters
                .iter()
                .map(|(id, addr)| (raft_id(*id), BasicNode::new(addr)))
                .collect();
            match raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => anyhow::bail!("initialising the metadata quorum: {e}"),
            }
        }
        Ok(Controller { node_id, raft, images })
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The Raft member (for serving peers' RPCs).
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// The latest applied image.
    pub fn image(&self) -> Arc<MetadataImage> {
        Arc::clone(&self.images.borrow())
    }

    /// A receiver of every new image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.images.clone()
    }

    /// The current leader of the quorum (the active controller), if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .current_leader
            .and_then(|id| NodeId::try_from(id).ok())
    }

    /// Waits (up to `timeout`) until the quorum has a leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, ControllerError> {
        let mut metrics = self.raft.metrics();
        let wait = async {
            loop {
                if let Some(id) = metrics.borrow_and_update().current_leader {
                    return NodeId::try_from(id).map_err(|_| ControllerError::Unavailable("bad leader id".into()));
                }
                if metrics.changed().await.is_err() {
                    return Err(ControllerError::Unavailable("the Raft task stopped".into()));
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or_else(|_| Err(ControllerError::Unavailable("no controller leader elected".into())))
    }

    /// Proposes `command` (this node must be the leader) and returns once it is applied here.
    pub async fn write(&self, command: MetadataCommand) -> Result<ApplyResult, ControllerError> {
        match self.raft.client_write(command).await {
            Ok(response) => {
                let result = response.data;
                self.wait_applied(result.offset).await;
                Ok(result)
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(ControllerError::NotController(
                f.leader_id.and_then(|id| NodeId::try_from(id).ok()),
            )),
            Err(e) => Err(ControllerError::Unavailable(e.to_string())),
        }
    }

    /// Returns once this node's image has applied `offset`.
    pub async fn wait_applied(&self, offset: u64) {
        let mut rx = self.images.clone();
        let _ = rx.wait_for(|image| image.offset >= offset).await;
    }

    /// Stops the Raft member (at broker shutdown).
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}
