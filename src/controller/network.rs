//! How the quorum's voters reach each other: Raft RPCs over TCP on the controller listener
//! (`CONTROLLER://` in `listeners`). Clients never see this protocol (Kafka's controllers speak
//! KRaft's own messages; ours is openraft's, see `shared/REPLICATION-NOTES.md` 1.11).
//!
//! Framing: `[len: u32][JSON]` each way, one request at a time per connection, frames capped at
//! [`MAX_FRAME`]. A peer that sends anything else has its connection closed; the listener and
//! other connections go on.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::controller::election::{ElectionError, ElectionType};
use crate::controller::image::MetadataImage;
use crate::controller::quorum::QuorumController;
use crate::controller::record::{ApplyResult, MetadataCommand, NodeId};
use crate::controller::TypeConfig;

type RaftNodeId = u64;

/// The largest frame either side accepts (snapshot chunks are 3 MiB by default).
pub const MAX_FRAME: usize = 64 << 20;

/// A request to a controller: Raft's own RPCs between voters, what brokers ask of the active
/// controller (a command to write, a heartbeat), and broker-only nodes' metadata fetches.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<RaftNodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Propose a command (a broker's proposal forwarded to the leader).
    Write(MetadataCommand),
    Heartbeat(BrokerHeartbeat),
    /// Partition leaders' ISR changes, a batch (Kafka's AlterPartition).
    AlterPartition(Vec<AlterPartitionRequest>),
    /// A broker-only node asks for an image newer than `after` (any, when `None`), answered
    /// at once if there is one, else when one comes or after `max_wait_ms` (capped).
    FetchMetadata {
        after: Option<u64>,
        max_wait_ms: u64,
    },
    /// The quorum's state, from its leader (Kafka's DescribeQuorum).
    DescribeQuorum,
    /// An operator's leader elections (Kafka's ElectLeaders): the partitions named, or every
    /// partition that needs one.
    ElectLeaders {
        election: ElectionType,
        partitions: Option<Vec<(String, i32)>>,
    },
    /// An operator removes a broker from the cluster (Kafka's UnregisterBroker).
    UnregisterBroker(NodeId),
    /// An operator adds a voter to the controller quorum at its controller `address`
    /// (Kafka's AddRaftVoter), waiting up to `timeout_ms` for it to catch up.
    AddVoter {
        id: NodeId,
        address: String,
        timeout_ms: u64,
    },
    /// An operator removes a voter from the controller quorum (Kafka's RemoveRaftVoter).
    RemoveVoter(NodeId),
    /// An operator's partition reassignments (Kafka's AlterPartitionReassignments).
    AlterReassignments {
        reassignments: Vec<Reassignment>,
        allow_rf_change: bool,
    },
}

/// One partition of AlterPartitionReassignments: its new replicas, or `None` to cancel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    pub target: Option<Vec<NodeId>>,
}

/// AlterPartitionReassignments' answer: one outcome per reassignment in order, and the
/// metadata offset that holds them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReassignResults {
    pub offset: u64,
    pub outcomes: Vec<Result<(), super::reassignment::ReassignError>>,
}

/// One partition's outcome of ElectLeaders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionOutcome {
    pub topic: String,
    pub partition: i32,
    pub result: Result<(), ElectionError>,
}

/// ElectLeaders' answer: each partition's outcome, and the metadata offset that holds them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ElectionResults {
    pub offset: u64,
    pub outcomes: Vec<ElectionOutcome>,
}

/// The longest a FetchMetadata is held.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(5);

/// A voter's answer to FetchMetadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetadataUpdate {
    /// The quorum's leader as this voter knows it.
    pub leader: Option<NodeId>,
    /// This voter's latest applied image, if newer than asked for and not sent as `entries`.
    pub image: Option<MetadataImage>,
    /// The entries applied after the offset asked for, up to this voter's latest (instead of
    /// the image, when its journal still holds them all).
    pub entries: Option<Vec<super::journal::JournalEntry>>,
}

/// A partition leader asks for a new ISR, decided on the epochs it names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlterPartitionRequest {
    pub broker: NodeId,
    pub topic_id: uuid::Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<NodeId>,
}

/// Its answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    AppendEntries(Result<AppendEntriesResponse<RaftNodeId>, RaftError<RaftNodeId>>),
    Vote(Result<VoteResponse<RaftNodeId>, RaftError<RaftNodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<RaftNodeId>, RaftError<RaftNodeId, InstallSnapshotError>>),
    Write(Result<ApplyResult, ForwardError>),
    Heartbeat(Result<HeartbeatReply, ForwardError>),
    /// One answer per change of the batch, in order.
    AlterPartition(Result<Vec<Result<(), ForwardError>>, ForwardError>),
    FetchMetadata(Result<MetadataUpdate, ForwardError>),
    DescribeQuorum(Result<QuorumState, ForwardError>),
    ElectLeaders(Result<ElectionResults, ForwardError>),
    AlterReassignments(Result<ReassignResults, ForwardError>),
    /// The offset that removed it, and whether it was registered (nothing written if not).
    UnregisterBroker(Result<(u64, bool), ForwardError>),
    /// A voter change (offset 0: nothing to wait for), or why it was not made.
    AddVoter(Result<(u64, Result<(), crate::controller::membership::VoterChangeError>), ForwardError>),
    RemoveVoter(Result<(u64, Result<(), crate::controller::membership::VoterChangeError>), ForwardError>),
}

/// The quorum as its leader sees it (Kafka's DescribeQuorum partition data). Offsets are the
/// metadata log's: a log end offset is the index after the last entry a replica holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumState {
    pub leader: NodeId,
    /// The Raft term (Kafka's leader epoch of `__cluster_metadata`).
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub voters: Vec<ReplicaProgress>,
    /// Broker-only nodes, which follow the log without a vote.
    pub observers: Vec<ReplicaProgress>,
}

/// A replica of the metadata log: how far it is, when the leader last heard of its progress
/// and when it last held everything (wall clock ms; -1: never seen by this leader).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaProgress {
    pub id: NodeId,
    pub log_end_offset: i64,
    pub last_fetch_ms: i64,
    pub last_caught_up_ms: i64,
}

/// Why a forwarded request was not handled.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    #[error("not the leader (leader: {0:?})")]
    NotLeader(Option<NodeId>),
    #[error("{0}")]
    Unavailable(String),
    /// Handled and refused (Kafka's FENCED_LEADER_EPOCH, INVALID_UPDATE_VERSION, ...).
    #[error("refused: {0}")]
    Refused(String),
}

/// A broker's heartbeat to the active controller (Kafka's BrokerHeartbeat): who it is, the
/// registration it speaks for, and how far its metadata has caught up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokerHeartbeat {
    pub id: NodeId,
    pub epoch: i64,
    pub applied_offset: u64,
    /// The broker is stopping (SIGTERM) and asks for its leaderships to move first (Kafka's
    /// `wantShutDown`, controlled shutdown).
    #[serde(default)]
    pub want_shut_down: bool,
    /// Its log dir is offline (a write failed: the disk is full or failed); Kafka's
    /// `offlineLogDirs`.
    #[serde(default)]
    pub log_dir_offline: bool,
}

/// The controller's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// Fenced: its replicas lead nothing and are out of every ISR until it is unfenced.
    pub fenced: bool,
    /// The registration is not the current one (a newer one exists, or none): register again.
    pub unknown_epoch: bool,
    /// A broker that asked to shut down leads nothing any more: it may stop (Kafka's
    /// `shouldShutDown`).
    #[serde(default)]
    pub should_shut_down: bool,
}

async fn write_frame(stream: &mut TcpStream, value: &impl Serialize) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::other("frame too large"));
    }
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await
}

async fn read_frame<T: for<'de> Deserialize<'de>>(stream: &mut TcpStream) -> io::Result<T> {
    let len = stream.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too large"));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Creates a client per peer (openraft's factory). Addresses come from the membership's
/// `BasicNode`s, which hold the peers' controller listener addresses.
#[derive(Debug, Clone, Default)]
pub struct Network {}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: RaftNodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            stream: None,
        }
    }
}

/// A connection to one peer, opened on first use and after any failure.
#[derive(Debug)]
pub struct PeerClient {
    target: RaftNodeId,
    addr: String,
    stream: Option<TcpStream>,
}

fn unreachable<E: std::error::Error>(e: &io::Error) -> RPCError<RaftNodeId, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(e))
}

impl PeerClient {
    /// A client of the controller at `addr` (a broker reaching the active controller).
    pub fn new(addr: String) -> Self {
        PeerClient {
            target: 0,
            addr,
            stream: None,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub async fn call(&mut self, request: PeerRequest, ttl: Duration) -> io::Result<PeerResponse> {
        let exchange = async {
            if self.stream.is_none() {
                let stream = TcpStream::connect(&self.addr).await?;
                stream.set_nodelay(true)?;
                self.stream = Some(stream);
            }
            let stream = self.stream.as_mut().ok_or_else(|| io::Error::other("no connection"))?;
            write_frame(stream, &request).await?;
            read_frame::<PeerResponse>(stream).await
        };
        let result = match tokio::time::timeout(ttl, exchange).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "controller RPC timed out")),
        };
        if result.is_err() {
            self.stream = None; // a half-done exchange leaves the stream unusable
        }
        result
    }
}

fn wrong_answer<E: std::error::Error>(target: RaftNodeId) -> RPCError<RaftNodeId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&io::Error::other(format!(
        "node {target} answered with the wrong response type"
    ))))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<RaftNodeId>, RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>> {
        match self.call(PeerRequest::AppendEntries(rpc), option.hard_ttl()).await {
            Ok(PeerResponse::AppendEntries(r)) => {
                r.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(wrong_answer(self.target)),
            Err(e) => Err(unreachable(&e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<RaftNodeId>,
        RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId, InstallSnapshotError>>,
    > {
        match self.call(PeerRequest::InstallSnapshot(rpc), option.hard_ttl()).await {
            Ok(PeerResponse::InstallSnapshot(r)) => {
                r.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(wrong_answer(self.target)),
            Err(e) => Err(unreachable(&e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftNodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<RaftNodeId>, RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>> {
        match self.call(PeerRequest::Vote(rpc), option.hard_ttl()).await {
            Ok(PeerResponse::Vote(r)) => {
                r.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(wrong_answer(self.target)),
            Err(e) => Err(unreachable(&e)),
        }
    }
}

/// Serves peers' RPCs on the controller listener until `shutdown` turns true. Connections are
/// capped (a quorum has few members, and each broker holds one for heartbeats); each is served
/// by its own task. A connection that carried a broker's heartbeats and closes tells the active
/// controller that broker may be gone (`QuorumController::connection_closed`).
pub async fn serve(listener: TcpListener, quorum: Arc<QuorumController>, mut shutdown: watch::Receiver<bool>) {
    const MAX_PEER_CONNECTIONS: usize = 1024;
    let open = Arc::new(AtomicUsize::new(0));
    // Each connection's id (from 1), so a closed one is told apart from a newer one.
    let mut conn_ids: u64 = 0;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (mut stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "controller listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if open.fetch_add(1, Ordering::Relaxed) >= MAX_PEER_CONNECTIONS {
            open.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(%peer, "too many controller connections; closing");
            continue;
        }
        let quorum = Arc::clone(&quorum);
        let open = Arc::clone(&open);
        let mut stop = shutdown.clone();
        conn_ids += 1;
        let conn = conn_ids;
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let mut heartbeats_from: Option<(NodeId, i64)> = None;
            // The quorum leader this connection carried AppendEntries from, and whether the
            // other end closed it (not this node stopping).
            let mut appends_from: Option<NodeId> = None;
            let mut closed_by_peer = false;
            loop {
                let request = tokio::select! {
                    r = read_frame::<PeerRequest>(&mut stream) => r,
                    _ = stop.changed() => break,
                };
                let Ok(request) = request else {
                    closed_by_peer = true;
                    break;
                };
                let raft = quorum.raft();
                let response = match request {
                    PeerRequest::AppendEntries(r) => {
                        if let Some(leader) = r.vote.leader_id().voted_for().and_then(|id| NodeId::try_from(id).ok()) {
                            appends_from = Some(leader);
                            quorum.append_received(leader);
                        }
                        PeerResponse::AppendEntries(raft.append_entries(r).await)
                    }
                    PeerRequest::Vote(r) => PeerResponse::Vote(raft.vote(r).await),
                    PeerRequest::InstallSnapshot(r) => PeerResponse::InstallSnapshot(raft.install_snapshot(r).await),
                    PeerRequest::Write(command) => PeerResponse::Write(quorum.write_local(command).await),
                    PeerRequest::Heartbeat(hb) => {
                        heartbeats_from = Some((hb.id, hb.epoch));
                        PeerResponse::Heartbeat(quorum.heartbeat(&hb, conn))
                    }
                    PeerRequest::AlterPartition(r) => PeerResponse::AlterPartition(quorum.alter_partitions(&r).await),
                    PeerRequest::ElectLeaders { election, partitions } => {
                        PeerResponse::ElectLeaders(quorum.elect_leaders(election, partitions).await)
                    }
                    PeerRequest::AlterReassignments {
                        reassignments,
                        allow_rf_change,
                    } => PeerResponse::AlterReassignments(
                        quorum.alter_reassignments(reassignments, allow_rf_change).await,
                    ),
                    PeerRequest::UnregisterBroker(id) => {
                        PeerResponse::UnregisterBroker(quorum.unregister_broker(id).await)
                    }
                    PeerRequest::AddVoter {
                        id,
                        address,
                        timeout_ms,
                    } => PeerResponse::AddVoter(quorum.add_voter(id, address, Duration::from_millis(timeout_ms)).await),
                    PeerRequest::RemoveVoter(id) => PeerResponse::RemoveVoter(quorum.remove_voter(id).await),
                    PeerRequest::DescribeQuorum => PeerResponse::DescribeQuorum(quorum.describe_quorum()),
                    PeerRequest::FetchMetadata { after, max_wait_ms } => {
                        let wait = Duration::from_millis(max_wait_ms).min(MAX_FETCH_WAIT);
                        PeerResponse::FetchMetadata(Ok(quorum.fetch_metadata(after, wait).await))
                    }
                };
                if write_frame(&mut stream, &response).await.is_err() {
                    closed_by_peer = true;
                    break;
                }
            }
            if let Some((id, epoch)) = heartbeats_from {
                quorum.connection_closed(id, epoch, conn);
            }
            if let (true, Some(leader)) = (closed_by_peer, appends_from) {
                quorum.leader_connection_closed(leader);
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}
