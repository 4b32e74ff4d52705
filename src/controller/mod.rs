//! The controller quorum: the replicated metadata log (Kafka's KRaft `__cluster_metadata`),
//! kept with openraft (pinned 0.9.25; see `shared/REPLICATION-NOTES.md`, section 4), and
//! the image every broker reads. `docs/cluster-design.md` has the whole design.
//!
//! - `record`: the metadata records and commands (our KRaft records).
//! - `image`: `MetadataImage`, a pure value each command is applied to, deterministically.
//! - `raft_log`: the durable Raft log store (fsync before acknowledging, torn tails cut).
//! - `state_machine`: applies entries to the image, publishes images, snapshots.
//! - `network`: Raft RPCs between voters and brokers' requests to the active controller, over
//!   the controller listener (a quorum of one needs no network).
//! - `observer`: a broker-only node's pull of the images from the voters.
//! - `journal`: the entries a voter applied lately, sent to broker-only nodes as deltas.
//! - `quorum`: the active controller: proposals, broker heartbeats, fencing and unfencing.
//! - `election`: the partition changes fencing, unfencing and leaders' ISR changes bring (pure).
//! - `reassignment`: the partition changes AlterPartitionReassignments makes and completes (pure).
//! - `takeover`: a voter that sees the quorum's leader process gone asks for an election as
//!   the leader's lease ends.
//! - `placement`: where new partitions' replicas go (Kafka's spread).
//! - `membership`: adding and removing voters (AddRaftVoter, RemoveRaftVoter) with openraft's
//!   membership change.
//!
//! [`Controller`] is the handle the broker holds: propose a command, read the latest image,
//! wait until an offset is applied.

pub mod election;
pub mod image;
pub mod journal;
pub mod membership;
pub mod network;
pub mod observer;
pub mod placement;
pub mod quorum;
pub mod raft_log;
pub mod reassignment;
pub mod record;
pub mod state_machine;
pub mod takeover;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
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

/// How long a forwarded request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long DescribeQuorum waits for a leader to answer.
const DESCRIBE_QUORUM_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a write is retried while the quorum has no leader to take it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request did not reach the leader.
enum Forward {
    /// Not handled: safe to send again.
    Retry(String),
    /// Perhaps handled.
    Final(String),
}

/// The timing of the quorum (Kafka's `controller.quorum.*` settings).
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// `controller.quorum.election.timeout.ms`: a voter that hears nothing from a leader for
    /// this long (at most; randomised from half of it) starts an election.
    pub election_timeout_ms: u64,
    /// Heartbeats from the leader (a fraction of the election timeout).
    pub heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub broker_session_timeout_ms: u64,
    /// `unclean.leader.election.enable`, the broker default.
    pub unclean_leader_election: bool,
    /// `leader.imbalance.check.interval.seconds` if `auto.leader.rebalance.enable`: how often
    /// the active controller gives partitions back to their preferred replicas.
    pub leader_rebalance_every: Option<Duration>,
}

impl Default for QuorumConfig {
    fn default() -> Self {
        QuorumConfig {
            election_timeout_ms: 1_000,
            heartbeat_interval_ms: 100,
            broker_session_timeout_ms: 9_000,
            unclean_leader_election: false,
            leader_rebalance_every: Some(Duration::from_secs(300)),
        }
    }
}

/// The broker's handle on the metadata quorum.
pub struct Controller {
    node_id: NodeId,
    member: Member,
    images: watch::Receiver<Arc<MetadataImage>>,
    /// Each voter's controller listener address (empty for a quorum of one).
    voters: BTreeMap<NodeId, String>,
    /// The connections heartbeats go over, one per voter: kept open, as a closing one tells
    /// its controller this broker may be gone.
    heartbeat_conns: tokio::sync::Mutex<BTreeMap<NodeId, network::PeerClient>>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").field("node_id", &self.node_id).finish()
    }
}

/// What this node is in the quorum.
enum Member {
    /// A voter (`process.roles` with `controller`): a Raft member, and the active controller's
    /// side when it leads.
    Voter {
        raft: Raft<TypeConfig>,
        quorum: Arc<quorum::QuorumController>,
    },
    /// A broker-only node: images pulled from the voters (`observer`), which also name the
    /// leader that writes go to.
    Observer { leader: watch::Receiver<Option<NodeId>> },
}

fn raft_id(id: NodeId) -> u64 {
    u64::try_from(id).unwrap_or(0)
}

impl Controller {
    /// Opens the metadata log under `log_dir` (`metadata.log.dir`) and starts this node's Raft member. `voters`
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
        let journal = machine.journal();
        let config = openraft::Config {
            cluster_name: "sluice".into(),
            // Votes are refused while the leader's lease (openraft: the maximum, T) holds, and
            // a follower starts an election after the lease and a random time in [T/2, T)
            // without hearing from the leader: 1.5 T to 2 T; a leader whose process is gone
            // is replaced just after T (`takeover`).
            election_timeout_min: (quorum.election_timeout_ms / 2).max(1),
            election_timeout_max: quorum.election_timeout_ms.max(2),
            heartbeat_interval: quorum.heartbeat_interval_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1_000),
            max_in_snapshot_log_to_keep: 1_000,
            ..openraft::Config::default()
        }
        .validate()?;
        let raft = Raft::new(raft_id(node_id), Arc::new(config), network, log, machine).await?;
        // A node outside `controller.quorum.voters` joins an existing quorum: it waits to be
        // added (AddRaftVoter) instead of forming one of its own.
        let joining = !voters.contains_key(&node_id);
        if joining && pristine {
            tracing::warn!(
                node_id,
                "this controller is not among controller.quorum.voters: it waits to be added as a voter (AddRaftVoter)"
            );
        }
        if pristine && !joining {
            let members: BTreeMap<u64, BasicNode> = voters
                .iter()
                .map(|(id, addr)| (raft_id(*id), BasicNode::new(addr)))
                .collect();
            match raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => anyhow::bail!("initialising the metadata quorum: {e}"),
            }
        }
        let quorum = Arc::new(quorum::QuorumController::new(
            node_id,
            raft.clone(),
            images.clone(),
            journal,
            quorum,
        ));
        let voters = voters
            .iter()
            .filter(|(_, a)| !a.is_empty())
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        Ok(Controller {
            node_id,
            member: Member::Voter { raft, quorum },
            images,
            voters,
            heartbeat_conns: tokio::sync::Mutex::new(BTreeMap::new()),
        })
    }

    /// A broker-only node's handle: no Raft member, images pulled from `voters` by a task the
    /// caller runs under supervision (the returned future; see [`observer`]).
    pub fn observe(
        node_id: NodeId,
        voters: &BTreeMap<NodeId, String>,
        shutdown: watch::Receiver<bool>,
    ) -> (Controller, impl std::future::Future<Output = ()> + Send + 'static) {
        let (images_tx, images) = watch::channel(Arc::new(MetadataImage::default()));
        let (leader_tx, leader) = watch::channel(None);
        let pull = observer::run(voters.clone(), images_tx, leader_tx, shutdown);
        let controller = Controller {
            node_id,
            member: Member::Observer { leader },
            images,
            voters: voters.clone(),
            heartbeat_conns: tokio::sync::Mutex::new(BTreeMap::new()),
        };
        (controller, pull)
    }

    /// The active controller's side of this node (run by the caller under supervision);
    /// `None` on a broker-only node.
    pub fn quorum(&self) -> Option<&Arc<quorum::QuorumController>> {
        match &self.member {
            Member::Voter { quorum, .. } => Some(quorum),
            Member::Observer { .. } => None,
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
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
        match &self.member {
            Member::Voter { raft, .. } => raft
                .metrics()
                .borrow()
                .current_leader
                .and_then(|id| NodeId::try_from(id).ok()),
            Member::Observer { leader } => *leader.borrow(),
        }
    }

    /// Waits (up to `timeout`) until the quorum has a leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, ControllerError> {
        let wait = async {
            match &self.member {
                Member::Voter { raft, .. } => {
                    let mut metrics = raft.metrics();
                    loop {
                        if let Some(id) = metrics.borrow_and_update().current_leader {
                            return NodeId::try_from(id)
                                .map_err(|_| ControllerError::Unavailable("bad leader id".into()));
                        }
                        if metrics.changed().await.is_err() {
                            return Err(ControllerError::Unavailable("the Raft task stopped".into()));
                        }
                    }
                }
                Member::Observer { leader } => {
                    let mut leader = leader.clone();
                    let found = match leader.wait_for(Option::is_some).await {
                        Ok(l) => *l,
                        Err(_) => return Err(ControllerError::Unavailable("the metadata fetcher stopped".into())),
                    };
                    found.ok_or_else(|| ControllerError::Unavailable("no leader".into()))
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or_else(|_| Err(ControllerError::Unavailable("no controller leader elected".into())))
    }

    /// Sends `request` to the quorum's leader: handled here when this node leads, forwarded
    /// over the controller listener otherwise. `Retry` errors left the request unhandled
    /// (no leader, not the leader, connection refused); other errors may or may not have.
    async fn to_leader(&self, request: network::PeerRequest) -> Result<network::PeerResponse, Forward> {
        use network::{PeerRequest, PeerResponse};
        let Some(leader) = self.leader() else {
            return Err(Forward::Retry("no controller leader".into()));
        };
        if let (true, Some(quorum)) = (leader == self.node_id, self.quorum()) {
            return Ok(match request {
                PeerRequest::Write(c) => PeerResponse::Write(quorum.write_local(c).await),
                PeerRequest::AlterPartition(r) => PeerResponse::AlterPartition(quorum.alter_partitions(&r).await),
                PeerRequest::DescribeQuorum => PeerResponse::DescribeQuorum(quorum.describe_quorum()),
                PeerRequest::ElectLeaders { election, partitions } => {
                    PeerResponse::ElectLeaders(quorum.elect_leaders(election, partitions).await)
                }
                PeerRequest::AlterReassignments {
                    reassignments,
                    allow_rf_change,
                } => PeerResponse::AlterReassignments(quorum.alter_reassignments(reassignments, allow_rf_change).await),
                PeerRequest::UnregisterBroker(id) => PeerResponse::UnregisterBroker(quorum.unregister_broker(id).await),
                PeerRequest::AddVoter {
                    id,
                    address,
                    timeout_ms,
                } => PeerResponse::AddVoter(quorum.add_voter(id, address, Duration::from_millis(timeout_ms)).await),
                PeerRequest::RemoveVoter(id) => PeerResponse::RemoveVoter(quorum.remove_voter(id).await),
                _ => return Err(Forward::Final("not a forwarded request".into())),
            });
        }
        let addr = self
            .address_of(leader)
            .ok_or_else(|| Forward::Retry(format!("no address for controller {leader}")))?;
        let mut client = network::PeerClient::new(addr);
        match client.call(request, FORWARD_TIMEOUT).await {
            Ok(r) => Ok(r),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(Forward::Retry(e.to_string())),
            Err(e) => Err(Forward::Final(e.to_string())),
        }
    }

    /// Proposes `command` to the quorum's leader (wherever it is) and returns once it is
    /// applied here. Retried while no leader can take it, up to [`WRITE_TIMEOUT`]; never
    /// retried once it may have been written (a lost answer), so it is applied at most once.
    pub async fn write(&self, command: MetadataCommand) -> Result<ApplyResult, ControllerError> {
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        loop {
            let outcome = match self.to_leader(network::PeerRequest::Write(command.clone())).await {
                Ok(network::PeerResponse::Write(Ok(result))) => Ok(result),
                Ok(network::PeerResponse::Write(Err(network::ForwardError::NotLeader(_)))) => {
                    Err(Forward::Retry("not the leader".into()))
                }
                Ok(network::PeerResponse::Write(Err(e))) => Err(Forward::Final(e.to_string())),
                Ok(_) => Err(Forward::Final("wrong response".into())),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(result) => {
                    self.wait_applied(result.offset).await;
                    return Ok(result);
                }
                Err(Forward::Retry(why)) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(reason = %why, "metadata write: retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(Forward::Retry(why) | Forward::Final(why)) => return Err(ControllerError::Unavailable(why)),
            }
        }
    }

    /// An operator's leader elections (ElectLeaders), decided and written by the active
    /// controller (retried while no leader can take them, up to `timeout`); returns once they
    /// are applied here, so this broker's Metadata shows the new leaders.
    pub async fn elect_leaders(
        &self,
        election: election::ElectionType,
        partitions: Option<Vec<(String, i32)>>,
        timeout: Duration,
    ) -> Result<Vec<network::ElectionOutcome>, ControllerError> {
        let request = || network::PeerRequest::ElectLeaders {
            election,
            partitions: partitions.clone(),
        };
        self.decide(request, timeout, |response| match response {
            network::PeerResponse::ElectLeaders(r) => Some(r.map(|r| (r.offset, r.outcomes))),
            _ => None,
        })
        .await
    }

    /// An operator's partition reassignments (AlterPartitionReassignments), decided and
    /// written by the active controller (retried while no leader can take them, up to
    /// `timeout`); returns one outcome per reassignment once they are applied here.
    pub async fn alter_reassignments(
        &self,
        reassignments: Vec<network::Reassignment>,
        allow_rf_change: bool,
        timeout: Duration,
    ) -> Result<Vec<Result<(), reassignment::ReassignError>>, ControllerError> {
        let request = || network::PeerRequest::AlterReassignments {
            reassignments: reassignments.clone(),
            allow_rf_change,
        };
        self.decide(request, timeout, |response| match response {
            network::PeerResponse::AlterReassignments(r) => Some(r.map(|r| (r.offset, r.outcomes))),
            _ => None,
        })
        .await
    }

    /// Controller `id`'s address: from the quorum's membership on a voter (a voter added since
    /// this node started is there), else from `controller.quorum.voters`.
    fn address_of(&self, id: NodeId) -> Option<String> {
        if let Member::Voter { raft, .. } = &self.member {
            let m = raft.metrics().borrow().membership_config.clone();
            if let Some(n) = m.membership().get_node(&raft_id(id)) {
                return Some(n.addr.clone());
            }
        }
        self.voters.get(&id).cloned()
    }

    /// Adds node `id`, its controller listener at `address`, to the quorum's voters once it
    /// has caught up (AddRaftVoter), through the active controller. The catch-up may take up
    /// to `timeout`, capped below the forwarding timeout (the metadata log is small).
    pub async fn add_voter(
        &self,
        id: NodeId,
        address: String,
        timeout: Duration,
    ) -> Result<Result<(), membership::VoterChangeError>, ControllerError> {
        let timeout = timeout.min(FORWARD_TIMEOUT - Duration::from_secs(2));
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.decide(
            || network::PeerRequest::AddVoter {
                id,
                address: address.clone(),
                timeout_ms,
            },
            // The learner's catch-up, then the joint change.
            timeout + Duration::from_secs(10),
            |response| match response {
                network::PeerResponse::AddVoter(r) => Some(r),
                _ => None,
            },
        )
        .await
    }

    /// Removes node `id` from the quorum's voters (RemoveRaftVoter), through the active
    /// controller.
    pub async fn remove_voter(
        &self,
        id: NodeId,
        timeout: Duration,
    ) -> Result<Result<(), membership::VoterChangeError>, ControllerError> {
        self.decide(
            || network::PeerRequest::RemoveVoter(id),
            timeout,
            |response| match response {
                network::PeerResponse::RemoveVoter(r) => Some(r),
                _ => None,
            },
        )
        .await
    }

    /// Removes broker `id` from the cluster (UnregisterBroker), through the active controller;
    /// `false` if no such broker is registered.
    pub async fn unregister_broker(&self, id: NodeId, timeout: Duration) -> Result<bool, ControllerError> {
        self.decide(
            || network::PeerRequest::UnregisterBroker(id),
            timeout,
            |response| match response {
                network::PeerResponse::UnregisterBroker(r) => Some(r),
                _ => None,
            },
        )
        .await
    }

    /// Asks the active controller for a decision it writes (`request()`, retried while no
    /// leader can take it, up to `timeout`) and returns it once applied here. `take` picks the
    /// answer and the metadata offset holding it out of the response (`None`: a wrong one).
    async fn decide<T>(
        &self,
        request: impl Fn() -> network::PeerRequest,
        timeout: Duration,
        take: impl Fn(network::PeerResponse) -> Option<Result<(u64, T), network::ForwardError>>,
    ) -> Result<T, ControllerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let why = match self.to_leader(request()).await.map(&take) {
                Ok(Some(Ok((offset, answer)))) => {
                    self.wait_applied(offset).await;
                    return Ok(answer);
                }
                Ok(Some(Err(network::ForwardError::NotLeader(_)))) => "not the leader".to_string(),
                Ok(Some(Err(e))) => return Err(ControllerError::Unavailable(e.to_string())),
                Ok(None) => return Err(ControllerError::Unavailable("wrong response".into())),
                Err(Forward::Retry(why)) => why,
                Err(Forward::Final(why)) => return Err(ControllerError::Unavailable(why)),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(ControllerError::Unavailable(why));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Each voter's controller address (`host:port`), as `controller.quorum.voters` gives it.
    pub fn voter_addresses(&self) -> &BTreeMap<NodeId, String> {
        &self.voters
    }

    /// The quorum's state from its leader (Kafka's DescribeQuorum, which brokers forward to
    /// the active controller), retried for a short while when no leader can answer.
    pub async fn describe_quorum(&self) -> Result<network::QuorumState, ControllerError> {
        let deadline = tokio::time::Instant::now() + DESCRIBE_QUORUM_TIMEOUT;
        loop {
            let why = match self.to_leader(network::PeerRequest::DescribeQuorum).await {
                Ok(network::PeerResponse::DescribeQuorum(Ok(state))) => return Ok(state),
                Ok(network::PeerResponse::DescribeQuorum(Err(e))) => e.to_string(),
                Ok(_) => return Err(ControllerError::Unavailable("wrong response".into())),
                Err(Forward::Retry(why) | Forward::Final(why)) => why,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(ControllerError::Unavailable(why));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends partition leaders' ISR changes, a batch, to the active controller (retried while
    /// no leader can take it); the metadata then carries the new ISRs to every broker. One
    /// answer per change, in order.
    pub async fn alter_partitions(
        &self,
        broker: NodeId,
        changes: &[crate::replication::partition::IsrChange],
    ) -> Result<Vec<Result<(), ControllerError>>, ControllerError> {
        let request: Vec<network::AlterPartitionRequest> = changes
            .iter()
            .map(|change| network::AlterPartitionRequest {
                broker,
                topic_id: change.topic_id,
                partition: change.partition,
                leader_epoch: change.leader_epoch,
                partition_epoch: change.partition_epoch,
                new_isr: change.new_isr.clone(),
            })
            .collect();
        let deadline = tokio::time::Instant::now() + FORWARD_TIMEOUT;
        loop {
            match self
                .to_leader(network::PeerRequest::AlterPartition(request.clone()))
                .await
            {
                Ok(network::PeerResponse::AlterPartition(Ok(results))) if results.len() == changes.len() => {
                    return Ok(results
                        .into_iter()
                        .map(|r| r.map_err(|e| ControllerError::Unavailable(e.to_string())))
                        .collect())
                }
                Ok(network::PeerResponse::AlterPartition(Err(network::ForwardError::NotLeader(_))))
                | Err(Forward::Retry(_))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(changes = changes.len(), leader = ?self.leader(), "AlterPartition: no leader took it; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(network::PeerResponse::AlterPartition(Err(e))) => {
                    return Err(ControllerError::Unavailable(e.to_string()))
                }
                Ok(_) => return Err(ControllerError::Unavailable("wrong response".into())),
                Err(Forward::Retry(why) | Forward::Final(why)) => return Err(ControllerError::Unavailable(why)),
            }
        }
    }

    /// Sends a broker heartbeat to the active controller, waiting at most `timeout` (the
    /// heartbeat interval) for the answer, so a call held by an old leader cut off by the
    /// network ends before the new leader's session clock runs out. One connection per voter
    /// is kept open: following a new leader never closes the connection to another (a closed
    /// heartbeat connection tells its controller this broker died, and a leader view that
    /// flaps, as an observer's can, would otherwise get a live broker fenced).
    pub async fn heartbeat(
        &self,
        hb: network::BrokerHeartbeat,
        timeout: Duration,
    ) -> Result<network::HeartbeatReply, ControllerError> {
        let leader = self
            .leader()
            .ok_or_else(|| ControllerError::Unavailable("no controller leader".into()))?;
        if let (true, Some(quorum)) = (leader == self.node_id, self.quorum()) {
            return quorum
                .heartbeat(&hb, 0)
                .map_err(|e| ControllerError::Unavailable(e.to_string()));
        }
        let addr = self
            .address_of(leader)
            .ok_or_else(|| ControllerError::Unavailable(format!("no address for controller {leader}")))?;
        let mut conns = self.heartbeat_conns.lock().await;
        let client = conns.entry(leader).or_insert_with(|| network::PeerClient::new(addr));
        match client.call(network::PeerRequest::Heartbeat(hb), timeout).await {
            Ok(network::PeerResponse::Heartbeat(Ok(reply))) => Ok(reply),
            Ok(network::PeerResponse::Heartbeat(Err(e))) => Err(ControllerError::Unavailable(e.to_string())),
            Ok(_) => Err(ControllerError::Unavailable("wrong response".into())),
            Err(e) => Err(ControllerError::Unavailable(e.to_string())),
        }
    }

    /// Returns once this node knows of a quorum leader other than `from` (a moment without
    /// one, as during an election that ends with the same leader, is not a change).
    pub async fn leader_changes_from(&self, from: Option<NodeId>) {
        let moved = |now: Option<NodeId>| now.is_some() && now != from;
        match &self.member {
            Member::Voter { raft, .. } => {
                let mut metrics = raft.metrics();
                loop {
                    let now = metrics.borrow_and_update().current_leader;
                    if moved(now.and_then(|id| NodeId::try_from(id).ok())) {
                        return;
                    }
                    if metrics.changed().await.is_err() {
                        return std::future::pending().await;
                    }
                }
            }
            Member::Observer { leader } => {
                let mut leader = leader.clone();
                if leader.wait_for(|l| moved(*l)).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    /// Returns once this node's image has applied `offset`.
    pub async fn wait_applied(&self, offset: u64) {
        let mut rx = self.images.clone();
        let _ = rx.wait_for(|image| image.offset >= offset).await;
    }

    /// Stops the Raft member (at broker shutdown; a broker-only node's fetcher stops with the
    /// shutdown signal).
    pub async fn shutdown(&self) {
        if let Member::Voter { raft, .. } = &self.member {
            let _ = raft.shutdown().await;
        }
    }
}
