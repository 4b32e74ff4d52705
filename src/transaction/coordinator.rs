//! The transaction coordinator actor (Kafka's `TransactionCoordinator` on one node).
//!
//! One tokio task owns the [`TransactionStateMachine`] and the `__transaction_state-0` internal
//! log; request handlers talk to it through [`TxnCoordinator`]. Every state change is appended to
//! the log (one record per transactional id, key-compacted) before the client is answered, and
//! undone in memory if the append fails (the client gets COORDINATOR_NOT_AVAILABLE and retries).
//!
//! Completing a transaction: EndTxn (or a fencing InitProducerId, or the timeout) moves it to
//! PrepareCommit / PrepareAbort, which is persisted; the client is answered; then a marker task
//! writes the commit/abort marker to every data partition of the transaction (waiting, as
//! acks=-1, for each to be acknowledged) and hands the group coordinator the end of the
//! producer's transactional offsets (`__consumer_offsets` in the transaction, added by
//! AddOffsetsToTxn). Failed partitions are retried with backoff. When all are done the actor
//! persists CompleteCommit / CompleteAbort. After a restart, transactions found in a Prepare state
//! get their markers written again (markers are idempotent for the log: a second one for a
//! producer without an open transaction changes nothing a consumer sees).

use std::collections::{BTreeMap, HashMap};
use std::sync::Weak;
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::record;
use super::state_machine::{MarkerJob, TransactionMetadata, TransactionStateMachine, TxnError, TxnResult};
use super::TransactionConfig;
use crate::broker::Broker;
use crate::controller::record::NO_LEADER;
use crate::metadata::MetadataClient;
use crate::replication::broker_client::BrokerClient;
use crate::storage::internal_log::{InternalLog, InternalLogError, KeyValue};
use crate::storage::{EndTxnMarker, MarkerType};

/// Directory of the transaction log under the broker's log dir (Kafka's topic name, one partition).
pub const TXN_LOG_DIR: &str = "__transaction_state-0";
/// The topic of the partition AddOffsetsToTxn adds: the group's `__consumer_offsets` partition.
pub use crate::coordinator::log::OFFSETS_TOPIC;
const COMMAND_CHANNEL_CAPACITY: usize = 1024;
/// How long one round of marker writes waits for acknowledgements before retrying.
const MARKER_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const MARKER_RETRY_MAX_BACKOFF: Duration = Duration::from_secs(5);

type Reply<T> = oneshot::Sender<T>;

enum Command {
    InitProducerId {
        transactional_id: String,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        reply: Reply<Result<(i64, i16), TxnError>>,
    },
    AddPartitions {
        transactional_id: String,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<(String, i32)>,
        verify_only: bool,
        reply: Reply<Result<(), TxnError>>,
    },
    EndTxn {
        transactional_id: String,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        reply: Reply<Result<(), TxnError>>,
    },
    Describe {
        transactional_ids: Vec<String>,
        reply: Reply<Vec<Option<TransactionMetadata>>>,
    },
    List {
        reply: Reply<Vec<TransactionMetadata>>,
    },
    MarkersWritten {
        job: MarkerJob,
    },
    Shutdown {
        reply: Reply<()>,
    },
}

/// The handle request handlers use. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TxnCoordinator {
    commands: mpsc::Sender<Command>,
}

/// The actor's end of the command channel, until [`spawn`] runs it.
pub struct TxnCommands {
    receiver: mpsc::Receiver<Command>,
    sender: mpsc::WeakSender<Command>,
}

/// A handle and the receiver its actor will read (the broker holds the handle before the actor,
/// which needs the broker, can start).
pub fn channel() -> (TxnCoordinator, TxnCommands) {
    let (sender, receiver) = mpsc::channel(COMMAND_CHANNEL_CAPACITY);
    let weak = sender.downgrade();
    (
        TxnCoordinator { commands: sender },
        TxnCommands { receiver, sender: weak },
    )
}

impl TxnCoordinator {
    async fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).await.ok()?;
        answer.await.ok()
    }

    /// InitProducerId with a transactional id: (producer id, epoch).
    pub async fn init_producer_id(
        &self,
        transactional_id: String,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), TxnError> {
        self.call(|reply| Command::InitProducerId {
            transactional_id,
            timeout_ms,
            expected,
            reply,
        })
        .await
        .unwrap_or(Err(TxnError::CoordinatorNotAvailable))
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn; `verify_only` (v4+ from brokers) only checks that
    /// the partitions are in the open transaction.
    pub async fn add_partitions(
        &self,
        transactional_id: String,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<(String, i32)>,
        verify_only: bool,
    ) -> Result<(), TxnError> {
        self.call(|reply| Command::AddPartitions {
            transactional_id,
            producer_id,
            epoch,
            partitions,
            verify_only,
            reply,
        })
        .await
        .unwrap_or(Err(TxnError::CoordinatorNotAvailable))
    }

    /// EndTxn: answered once the decision is durable; markers follow.
    pub async fn end_txn(
        &self,
        transactional_id: String,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), TxnError> {
        self.call(|reply| Command::EndTxn {
            transactional_id,
            producer_id,
            epoch,
            commit,
            reply,
        })
        .await
        .unwrap_or(Err(TxnError::CoordinatorNotAvailable))
    }

    /// DescribeTransactions: each id's state, `None` if unknown. `Err` if the actor is gone.
    pub async fn describe(&self, transactional_ids: Vec<String>) -> Result<Vec<Option<TransactionMetadata>>, TxnError> {
        self.call(|reply| Command::Describe {
            transactional_ids,
            reply,
        })
        .await
        .ok_or(TxnError::CoordinatorNotAvailable)
    }

    /// ListTransactions: every transactional id, sorted.
    pub async fn list(&self) -> Result<Vec<TransactionMetadata>, TxnError> {
        self.call(|reply| Command::List { reply })
            .await
            .ok_or(TxnError::CoordinatorNotAvailable)
    }

    /// Closes the transaction log cleanly; later calls answer COORDINATOR_NOT_AVAILABLE.
    pub async fn shutdown(&self) {
        let _ = self.call(|reply| Command::Shutdown { reply }).await;
    }
}

/// The transaction log: one record per transactional id (see `record.rs`), tombstone on expiry.
pub struct TxnStore {
    log: InternalLog,
}

impl TxnStore {
    /// Opens `<log_dir>/__transaction_state-0` and replays it into `machine`.
    pub fn open(
        log_dir: &std::path::Path,
        had_clean_shutdown: bool,
        now_ms: i64,
        machine: &mut TransactionStateMachine,
    ) -> Result<Self, InternalLogError> {
        let log = InternalLog::open(log_dir, TXN_LOG_DIR, had_clean_shutdown, now_ms, |r| {
            let key = r.key.ok_or("record without a key")?;
            let id = record::decode_key(key).map_err(|e| e.to_string())?;
            match r.value {
                None => machine.forget(&id),
                Some(value) => machine.restore(record::decode_value(&id, value).map_err(|e| e.to_string())?),
            }
            Ok(())
        })?;
        Ok(TxnStore { log })
    }

    fn kv(t: &TransactionMetadata) -> Result<KeyValue, InternalLogError> {
        let encode = |e: record::RecordError| InternalLogError::Encode(e.to_string());
        Ok((
            record::encode_key(&t.transactional_id).map_err(encode)?,
            Some(record::encode_value(t).map_err(encode)?),
        ))
    }

    fn store(&mut self, t: &TransactionMetadata, now_ms: i64) -> Result<(), InternalLogError> {
        self.log.append(&[Self::kv(t)?], now_ms)
    }

    fn remove(&mut self, ids: &[String], now_ms: i64) -> Result<(), InternalLogError> {
        let mut kvs: Vec<KeyValue> = Vec::with_capacity(ids.len());
        for id in ids {
            let key = record::encode_key(id).map_err(|e| InternalLogError::Encode(e.to_string()))?;
            kvs.push((key, None::<Bytes>));
        }
        self.log.append_chunked(&kvs, now_ms, |_| {})
    }

    fn maybe_compact(&mut self, machine: &TransactionStateMachine, now_ms: i64) {
        let live = machine.list();
        if !self.log.should_compact(live.len()) {
            return;
        }
        let kvs: Result<Vec<KeyValue>, InternalLogError> = live.into_iter().map(Self::kv).collect();
        let compacted = crate::coordinator::run_blocking(|| kvs.and_then(|kvs| self.log.compact(&kvs, now_ms)));
        if let Err(e) = compacted {
            tracing::warn!(error = %e, "transaction log compaction failed");
        }
    }
}

struct Actor {
    config: TransactionConfig,
    machine: TransactionStateMachine,
    store: Option<TxnStore>,
    broker: Weak<Broker>,
    /// For marker tasks to report back (weak: the actor stops when the broker's handle goes).
    sender: mpsc::WeakSender<Command>,
}

fn now_ms() -> u64 {
    u64::try_from(crate::replication::replica_manager::now_ms()).unwrap_or(0)
}

/// The actor, owning the opened transaction log, as a future for the broker's supervisor to
/// spawn. Transactions left in a Prepare state get their markers written.
pub fn actor(
    commands: TxnCommands,
    config: TransactionConfig,
    machine: TransactionStateMachine,
    store: TxnStore,
    broker: Weak<Broker>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let TxnCommands { receiver, sender } = commands;
    let actor = Actor {
        config,
        machine,
        store: Some(store),
        broker,
        sender,
    };
    actor.run(receiver)
}

impl Actor {
    async fn run(mut self, mut receiver: mpsc::Receiver<Command>) {
        for job in self.machine.pending_marker_jobs() {
            tracing::info!(transactional_id = %job.transactional_id, result = ?job.result, "resuming transaction markers");
            self.dispatch_markers(job);
        }
        let mut abort_tick =
            tokio::time::interval(Duration::from_millis(self.config.abort_timed_out_interval_ms.max(1)));
        let mut expire_tick =
            tokio::time::interval(Duration::from_millis(self.config.remove_expired_interval_ms.max(1)));
        abort_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        expire_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = receiver.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        self.close();
                        let _ = reply.send(());
                        return;
                    }
                    Some(command) => self.handle(command),
                    None => break,
                },
                _ = abort_tick.tick() => self.abort_timed_out(),
                _ = expire_tick.tick() => self.expire_ids(),
            }
        }
        self.close();
    }

    fn close(&mut self) {
        if let Some(store) = self.store.take() {
            if let Err(e) = store.log.close(crate::replication::replica_manager::now_ms()) {
                tracing::error!(error = %e, "closing the transaction log failed");
            }
        }
    }

    fn handle(&mut self, command: Command) {
        let now = now_ms();
        match command {
            Command::InitProducerId {
                transactional_id,
                timeout_ms,
                expected,
                reply,
            } => {
                let before = self.machine.get(&transactional_id).cloned();
                let broker = self.broker.upgrade();
                let mut allocation_failed = false;
                let mut allocate = || match broker.as_ref().map(|b| b.metadata.allocate_producer_id()) {
                    Some(Ok(id)) => id,
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "allocating a producer id failed");
                        allocation_failed = true;
                        -1
                    }
                    None => {
                        allocation_failed = true;
                        -1
                    }
                };
                let outcome =
                    self.machine
                        .init_producer_id(&transactional_id, timeout_ms, expected, now, &mut allocate);
                drop(broker);
                let result = if allocation_failed {
                    self.revert(&transactional_id, before);
                    Err(TxnError::CoordinatorNotAvailable)
                } else {
                    self.persist(&transactional_id, before).and(outcome.result)
                };
                if let Some(job) = outcome.markers {
                    if !matches!(result, Err(TxnError::CoordinatorNotAvailable)) {
                        self.dispatch_markers(job);
                    }
                }
                let _ = reply.send(result);
            }
            Command::AddPartitions {
                transactional_id,
                producer_id,
                epoch,
                partitions,
                verify_only,
                reply,
            } => {
                let result = if verify_only {
                    self.machine
                        .verify_partitions(&transactional_id, producer_id, epoch, &partitions)
                } else {
                    let before = self.machine.get(&transactional_id).cloned();
                    let result = self
                        .machine
                        .add_partitions(&transactional_id, producer_id, epoch, &partitions, now);
                    result.and_then(|()| self.persist(&transactional_id, before))
                };
                let _ = reply.send(result);
            }
            Command::EndTxn {
                transactional_id,
                producer_id,
                epoch,
                commit,
                reply,
            } => {
                let before = self.machine.get(&transactional_id).cloned();
                let result = if commit { TxnResult::Commit } else { TxnResult::Abort };
                let outcome = self.machine.end_txn(&transactional_id, producer_id, epoch, result, now);
                let result = outcome.result.and_then(|()| self.persist(&transactional_id, before));
                if let (Ok(()), Some(job)) = (&result, outcome.markers) {
                    self.dispatch_markers(job);
                }
                let _ = reply.send(result);
            }
            Command::Describe {
                transactional_ids,
                reply,
            } => {
                let found = transactional_ids
                    .iter()
                    .map(|id| self.machine.get(id).cloned())
                    .collect();
                let _ = reply.send(found);
            }
            Command::List { reply } => {
                let _ = reply.send(self.machine.list().into_iter().cloned().collect());
            }
            Command::MarkersWritten { job } => {
                let before = self.machine.get(&job.transactional_id).cloned();
                self.machine.markers_written(&job, now);
                if let Err(e) = self.persist(&job.transactional_id, before) {
                    // The markers are in the logs; the Prepare state stays and is retried.
                    tracing::warn!(transactional_id = %job.transactional_id, error = %e, "could not persist a completed transaction; retrying its markers");
                    self.dispatch_markers(job);
                } else {
                    tracing::debug!(transactional_id = %job.transactional_id, result = ?job.result, "transaction complete");
                }
            }
            Command::Shutdown { reply } => {
                self.close();
                let _ = reply.send(());
            }
        }
    }

    /// Writes the id's record if the call changed it; on failure restores `before` in memory.
    fn persist(&mut self, transactional_id: &str, before: Option<TransactionMetadata>) -> Result<(), TxnError> {
        let after = self.machine.get(transactional_id).cloned();
        if after == before {
            return Ok(());
        }
        let Some(after) = after else { return Ok(()) };
        let now = crate::replication::replica_manager::now_ms();
        let written = match self.store.as_mut() {
            Some(store) => store.store(&after, now),
            None => Err(InternalLogError::Poisoned),
        };
        match written {
            Ok(()) => {
                if let Some(store) = self.store.as_mut() {
                    store.maybe_compact(&self.machine, now);
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(transactional_id, error = %e, "writing the transaction log failed");
                self.revert(transactional_id, before);
                Err(TxnError::CoordinatorNotAvailable)
            }
        }
    }

    fn revert(&mut self, transactional_id: &str, before: Option<TransactionMetadata>) {
        match before {
            Some(t) => self.machine.restore(t),
            None => self.machine.forget(transactional_id),
        }
    }

    fn abort_timed_out(&mut self) {
        let now = now_ms();
        for job in self.machine.abort_timed_out(now) {
            tracing::info!(transactional_id = %job.transactional_id, producer_id = job.producer_id,
                "aborting a transaction past its timeout");
            if let (Some(store), Some(t)) = (self.store.as_mut(), self.machine.get(&job.transactional_id)) {
                if let Err(e) = store.store(t, crate::replication::replica_manager::now_ms()) {
                    tracing::error!(error = %e, "writing the transaction log failed");
                }
            }
            self.dispatch_markers(job);
        }
    }

    fn expire_ids(&mut self) {
        let gone = self.machine.expire_ids(now_ms(), self.config.id_expiration_ms);
        if gone.is_empty() {
            return;
        }
        tracing::info!(count = gone.len(), "expired transactional ids");
        if let Some(store) = self.store.as_mut() {
            if let Err(e) = store.remove(&gone, crate::replication::replica_manager::now_ms()) {
                tracing::error!(error = %e, "writing the transaction log failed");
            }
        }
    }

    /// Writes the job's markers on a task of its own; it reports `MarkersWritten` when done.
    fn dispatch_markers(&self, job: MarkerJob) {
        let Some(tasks) = self.broker.upgrade().map(|b| b.tasks.clone()) else {
            return; // the broker is gone: shutting down
        };
        let broker = self.broker.clone();
        let done = self.sender.clone();
        tasks.spawn("transaction-markers", async move {
            if write_markers(&broker, &job).await {
                if let Some(done) = done.upgrade() {
                    let _ = done.send(Command::MarkersWritten { job }).await;
                }
            }
        });
    }
}

/// Writes a job's markers until every partition has acknowledged one; false if the broker is
/// gone (shutdown). Each partition goes to its leader as the current metadata names it: this
/// broker's own partitions directly, the others as WriteTxnMarkers to their leader; a
/// `__consumer_offsets` partition ends the producer's pending offsets in its group coordinator.
/// A partition gone from the metadata (its topic deleted) has nothing to mark; one without a
/// leader, or whose leader fails, is retried with backoff.
async fn write_markers(broker: &Weak<Broker>, job: &MarkerJob) -> bool {
    let commit = job.result == TxnResult::Commit;
    let marker = EndTxnMarker {
        marker: if commit { MarkerType::Commit } else { MarkerType::Abort },
        coordinator_epoch: 0,
        producer_id: job.producer_id,
        producer_epoch: job.producer_epoch,
    };
    let mut left: Vec<(String, i32)> = job.partitions.clone();
    let mut clients: HashMap<i32, BrokerClient> = HashMap::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(b) = broker.upgrade() else { return false };
        let image = b.metadata.image();
        let me = b.config.node_id;
        let mut local_data = Vec::new();
        let mut local_offsets = Vec::new();
        let mut remote: HashMap<i32, Vec<(String, i32)>> = HashMap::new();
        let mut failed = Vec::new();
        for (topic, partition) in left.drain(..) {
            let leader = image
                .topic(&topic)
                .and_then(|t| t.partition(partition))
                .map(|p| p.leader);
            match leader {
                // A legacy (single-node) offsets entry, or a deleted topic.
                None if topic == OFFSETS_TOPIC => local_offsets.push((topic, partition)),
                None => {}
                Some(NO_LEADER) => failed.push((topic, partition)),
                Some(l) if l == me && topic == OFFSETS_TOPIC => local_offsets.push((topic, partition)),
                Some(l) if l == me => local_data.push((topic, partition)),
                Some(l) => remote.entry(l).or_default().push((topic, partition)),
            }
        }
        if !local_data.is_empty() {
            let results = b
                .replicas
                .write_txn_markers(marker, &local_data, MARKER_WRITE_TIMEOUT)
                .await;
            for (tp, r) in local_data.into_iter().zip(results) {
                if let Err(e) = r {
                    tracing::warn!(topic = %tp.0, partition = tp.1, producer_id = job.producer_id, error = %e,
                        "writing a transaction marker failed; retrying");
                    failed.push(tp);
                }
            }
        }
        if !local_offsets.is_empty() {
            if let Err(e) = b.groups.end_txn(job.producer_id, commit).await {
                tracing::warn!(producer_id = job.producer_id, error = %e, "ending transactional offsets failed; retrying");
                failed.extend(local_offsets);
            }
        }
        for (leader, partitions) in remote {
            let addr = MetadataClient::live_endpoints(&image, &b.config.cluster.inter_broker_listener_name)
                .into_iter()
                .find(|(id, ..)| *id == leader)
                .map(|(_, host, port, _)| format!("{host}:{port}"));
            match send_markers(&mut clients, leader, addr, &marker, commit, &partitions).await {
                Ok(refused) => failed.extend(refused),
                Err(e) => {
                    tracing::warn!(leader, producer_id = job.producer_id, error = %e,
                        "sending transaction markers failed; retrying");
                    clients.remove(&leader);
                    failed.extend(partitions);
                }
            }
        }
        drop(image);
        drop(b);
        if failed.is_empty() {
            return true;
        }
        left = failed;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MARKER_RETRY_MAX_BACKOFF);
    }
}

/// One WriteTxnMarkers to `leader`: the partitions it refused (to retry), or the connection's
/// error.
async fn send_markers(
    clients: &mut HashMap<i32, BrokerClient>,
    leader: i32,
    addr: Option<String>,
    marker: &EndTxnMarker,
    commit: bool,
    partitions: &[(String, i32)],
) -> std::io::Result<Vec<(String, i32)>> {
    let client = match clients.entry(leader) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => {
            let addr = addr.ok_or_else(|| std::io::Error::other(format!("broker {leader} is not live")))?;
            v.insert(BrokerClient::connect(&addr, "sluice-txn-markers", Duration::from_secs(5)).await?)
        }
    };
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    let request = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(marker.producer_id))
        .with_producer_epoch(marker.producer_epoch)
        .with_transaction_result(commit)
        .with_coordinator_epoch(marker.coordinator_epoch)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    WritableTxnMarkerTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partition_indexes(ps)
                })
                .collect(),
        )]);
    let response = client
        .send(&request, 1, MARKER_WRITE_TIMEOUT + Duration::from_secs(5))
        .await?;
    let mut refused = Vec::new();
    for m in response.markers {
        for t in m.topics {
            for p in t.partitions {
                if p.error_code != 0 {
                    tracing::debug!(topic = %t.name.as_str(), partition = p.partition_index, leader, code = p.error_code,
                        "a transaction marker was refused; retrying");
                    refused.push((t.name.to_string(), p.partition_index));
                }
            }
        }
    }
    Ok(refused)
}
