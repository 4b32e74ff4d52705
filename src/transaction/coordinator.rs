//! The transaction coordinator actor (Kafka's `TransactionCoordinator` and
//! `TransactionStateManager`).
//!
//! One tokio task owns the [`TransactionStateMachine`] of the transactional ids this broker
//! coordinates: those whose `__transaction_state` partition (Kafka's
//! `abs(hashCode(transactional.id)) % transaction.state.log.num.partitions`) it leads. The
//! metadata listener tells it which partitions it gained (`elect`: the partition is replayed off
//! the async workers, COORDINATOR_LOAD_IN_PROGRESS meanwhile) and lost (`resign`: its ids are
//! dropped); an id of any other partition gets NOT_COORDINATOR and the client looks the
//! coordinator up again. Request handlers talk to it through [`TxnCoordinator`].
//!
//! Every state change is a record (one per transactional id, see `record.rs`) appended to the
//! id's partition at the leader epoch it was loaded with, and takes effect, in memory and for
//! the client, only once the partition's high watermark passes it (replicated to the ISR), as
//! Kafka's `appendTransactionToLog` does. Meanwhile later requests for the same id wait their
//! turn (parked in order) so each one sees the state the previous one left (Kafka answers them
//! CONCURRENT_TRANSACTIONS and the client retries). A write not replicated within the
//! transaction's timeout (Kafka's bound) answers COORDINATOR_NOT_AVAILABLE, one whose
//! leadership was lost NOT_COORDINATOR; the id's state stays what was last replicated.
//!
//! Completing a transaction: EndTxn (or a fencing InitProducerId, or the timeout) moves it to
//! PrepareCommit / PrepareAbort; once that is replicated the client is answered and a marker
//! task (`markers.rs`) writes the commit/abort marker to every partition of the transaction; when
//! all are acknowledged the actor records CompleteCommit / CompleteAbort. A new coordinator
//! that loads a transaction in a Prepare state writes its markers again (markers are idempotent
//! for the log: a second one for a producer without an open transaction changes nothing a
//! consumer sees), so transaction state survives the death of its coordinator's broker.

use std::collections::{HashMap, VecDeque};
use std::sync::Weak;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::markers::{write_markers, CoordinatorPartition};
use super::record;
use super::state_machine::{MarkerJob, TransactionMetadata, TransactionStateMachine, TxnError, TxnResult};
use super::TransactionConfig;
use crate::broker::Broker;
use crate::coordinator::log::{partition_for, CoordinatorLog, KeyValue, Leadership, LogError};

/// The topic of the partition AddOffsetsToTxn adds: the group's `__consumer_offsets` partition.
pub use crate::coordinator::log::OFFSETS_TOPIC;
const COMMAND_CHANNEL_CAPACITY: usize = 1024;

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
        reply: Reply<Vec<Result<Option<TransactionMetadata>, TxnError>>>,
    },
    List {
        reply: Reply<Result<Vec<TransactionMetadata>, TxnError>>,
    },
    MarkersWritten {
        job: MarkerJob,
        coordinator: CoordinatorPartition,
    },
    /// This broker gained or lost the leadership of one of its topic's partitions.
    Leadership(Leadership),
    /// A partition's replay finished (the latest record of every id, `None` for a tombstone).
    Loaded {
        partition: i32,
        epoch: i32,
        result: Result<Vec<(String, Option<TransactionMetadata>)>, LogError>,
    },
    /// A state record's replication finished.
    Written {
        write: Box<Write>,
        result: Result<(), LogError>,
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

    /// DescribeTransactions: each id's state, `None` if unknown, `Err` where this broker does
    /// not coordinate it. `Err` if the actor is gone.
    pub async fn describe(
        &self,
        transactional_ids: Vec<String>,
    ) -> Result<Vec<Result<Option<TransactionMetadata>, TxnError>>, TxnError> {
        self.call(|reply| Command::Describe {
            transactional_ids,
            reply,
        })
        .await
        .ok_or(TxnError::CoordinatorNotAvailable)
    }

    /// ListTransactions: every transactional id this broker coordinates, sorted
    /// (COORDINATOR_LOAD_IN_PROGRESS while one of its partitions loads).
    pub async fn list(&self) -> Result<Vec<TransactionMetadata>, TxnError> {
        self.call(|reply| Command::List { reply })
            .await
            .unwrap_or(Err(TxnError::CoordinatorNotAvailable))
    }

    /// This broker gained a `__transaction_state` partition's leadership (its ids are loaded,
    /// and served once loaded) or lost it (its ids are dropped: NOT_COORDINATOR).
    pub async fn leadership(&self, change: Leadership) {
        let _ = self.commands.send(Command::Leadership(change)).await;
    }

    /// Stops the actor; later calls answer COORDINATOR_NOT_AVAILABLE.
    pub async fn shutdown(&self) {
        let _ = self.call(|reply| Command::Shutdown { reply }).await;
    }
}

/// A state change appended and waiting to be replicated, with what to do once it is.
pub struct Write {
    transactional_id: String,
    at: CoordinatorPartition,
    after: TransactionMetadata,
    /// Markers to write once the change is durable.
    markers: Option<MarkerJob>,
    answer: Answer,
}

/// Who waits for a state change, and what they are told once it is replicated.
enum Answer {
    Nobody,
    ProducerId(Reply<Result<(i64, i16), TxnError>>, Result<(i64, i16), TxnError>),
    Done(Reply<Result<(), TxnError>>, Result<(), TxnError>),
    /// A completion: if it cannot be recorded the markers are written again.
    Completion(MarkerJob),
}

impl Answer {
    /// Sends the answer the change carries, or `failure` instead.
    fn finish(self, failure: Option<TxnError>) {
        match self {
            Answer::ProducerId(reply, result) => {
                let _ = reply.send(failure.map_or(result, Err));
            }
            Answer::Done(reply, result) => {
                let _ = reply.send(failure.map_or(result, Err));
            }
            Answer::Nobody | Answer::Completion(_) => {}
        }
    }

    fn succeed(self) {
        self.finish(None);
    }

    fn fail(self, error: TxnError) {
        self.finish(Some(error));
    }
}

/// Whether a partition of `__transaction_state` led here is being replayed or serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    Loading(i32),
    Loaded(i32),
}

struct Actor {
    config: TransactionConfig,
    machine: TransactionStateMachine,
    log: CoordinatorLog,
    /// `__transaction_state`'s partition count (from the metadata; the config until it exists).
    partition_count: i32,
    partitions: HashMap<i32, Load>,
    /// Ids with a state change being replicated, and the requests for them waiting their turn.
    pending: HashMap<String, VecDeque<Command>>,
    broker: Weak<Broker>,
    /// For tasks to report back (weak: the actor stops when the broker's handle goes).
    sender: mpsc::WeakSender<Command>,
}

fn now_ms() -> u64 {
    u64::try_from(crate::replication::replica_manager::now_ms()).unwrap_or(0)
}

/// The actor as a future for the broker's supervisor to spawn. It serves no transactional id
/// until the metadata listener elects it for a partition.
pub fn actor(
    commands: TxnCommands,
    config: TransactionConfig,
    log: CoordinatorLog,
    partition_count: i32,
    broker: Weak<Broker>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let TxnCommands { receiver, sender } = commands;
    let actor = Actor {
        machine: TransactionStateMachine::new(config.max_timeout_ms),
        config,
        log,
        partition_count: partition_count.max(1),
        partitions: HashMap::new(),
        pending: HashMap::new(),
        broker,
        sender,
    };
    actor.run(receiver)
}

/// The client's answer to a failed state write.
fn write_failed(error: &LogError) -> TxnError {
    if error.is_not_leader() {
        TxnError::NotCoordinator
    } else {
        tracing::warn!(error = %error, "a transaction state record was not replicated");
        TxnError::CoordinatorNotAvailable
    }
}

impl Actor {
    async fn run(mut self, mut receiver: mpsc::Receiver<Command>) {
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
                        let _ = reply.send(());
                        return;
                    }
                    Some(command) => self.handle(command),
                    None => return,
                },
                _ = abort_tick.tick() => self.abort_timed_out(),
                _ = expire_tick.tick() => self.expire_ids(),
            }
        }
    }

    /// Where `transactional_id` is coordinated, if here: its partition at the loaded epoch.
    fn serving(&self, transactional_id: &str) -> Result<CoordinatorPartition, TxnError> {
        let partition = partition_for(transactional_id, self.partition_count);
        match self.partitions.get(&partition) {
            Some(Load::Loaded(epoch)) => Ok(CoordinatorPartition {
                partition,
                epoch: *epoch,
            }),
            Some(Load::Loading(_)) => Err(TxnError::CoordinatorLoadInProgress),
            None => Err(TxnError::NotCoordinator),
        }
    }

    /// The id a command changes, if it changes one.
    fn changes(command: &Command) -> Option<&str> {
        match command {
            Command::InitProducerId { transactional_id, .. }
            | Command::EndTxn { transactional_id, .. }
            | Command::AddPartitions {
                transactional_id,
                verify_only: false,
                ..
            } => Some(transactional_id),
            Command::MarkersWritten { job, .. } => Some(&job.transactional_id),
            _ => None,
        }
    }

    fn handle(&mut self, command: Command) {
        if let Some(id) = Self::changes(&command) {
            if let Some(queue) = self.pending.get_mut(id) {
                queue.push_back(command);
                return;
            }
        }
        let now = now_ms();
        match command {
            Command::InitProducerId {
                transactional_id,
                timeout_ms,
                expected,
                reply,
            } => {
                if let Err(e) = self.serving(&transactional_id) {
                    let _ = reply.send(Err(e));
                    return;
                }
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
                if allocation_failed {
                    self.revert(&transactional_id, before);
                    let _ = reply.send(Err(TxnError::CoordinatorNotAvailable));
                    return;
                }
                let answer = Answer::ProducerId(reply, outcome.result);
                self.record_change(transactional_id, before, outcome.markers, answer);
            }
            Command::AddPartitions {
                transactional_id,
                producer_id,
                epoch,
                partitions,
                verify_only,
                reply,
            } => {
                if let Err(e) = self.serving(&transactional_id) {
                    let _ = reply.send(Err(e));
                    return;
                }
                if verify_only {
                    let _ =
                        reply.send(
                            self.machine
                                .verify_partitions(&transactional_id, producer_id, epoch, &partitions),
                        );
                    return;
                }
                let before = self.machine.get(&transactional_id).cloned();
                let result = self
                    .machine
                    .add_partitions(&transactional_id, producer_id, epoch, &partitions, now);
                self.record_change(transactional_id, before, None, Answer::Done(reply, result));
            }
            Command::EndTxn {
                transactional_id,
                producer_id,
                epoch,
                commit,
                reply,
            } => {
                if let Err(e) = self.serving(&transactional_id) {
                    let _ = reply.send(Err(e));
                    return;
                }
                let before = self.machine.get(&transactional_id).cloned();
                let result = if commit { TxnResult::Commit } else { TxnResult::Abort };
                let outcome = self.machine.end_txn(&transactional_id, producer_id, epoch, result, now);
                let markers = outcome.markers.filter(|_| outcome.result.is_ok());
                self.record_change(transactional_id, before, markers, Answer::Done(reply, outcome.result));
            }
            Command::Describe {
                transactional_ids,
                reply,
            } => {
                let found = transactional_ids
                    .iter()
                    .map(|id| self.serving(id).map(|_| self.machine.get(id).cloned()))
                    .collect();
                let _ = reply.send(found);
            }
            Command::List { reply } => {
                let loading = self.partitions.values().any(|l| matches!(l, Load::Loading(_)));
                let _ = reply.send(if loading {
                    Err(TxnError::CoordinatorLoadInProgress)
                } else {
                    Ok(self.machine.list().into_iter().cloned().collect())
                });
            }
            Command::MarkersWritten { job, coordinator } => {
                if self.serving(&job.transactional_id) != Ok(coordinator) {
                    return; // another coordinator (or epoch) finishes it
                }
                let id = job.transactional_id.clone();
                let before = self.machine.get(&id).cloned();
                self.machine.markers_written(&job, now);
                self.record_change(id, before, None, Answer::Completion(job));
            }
            Command::Leadership(Leadership::Gained {
                partition,
                epoch,
                count,
            }) => self.elect(partition, epoch, count),
            Command::Leadership(Leadership::Lost { partition }) => self.resign(partition),
            Command::Loaded {
                partition,
                epoch,
                result,
            } => self.loaded(partition, epoch, result),
            Command::Written { write, result } => self.written(*write, result),
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
        }
    }

    /// The state machine changed `transactional_id` (or not) from `before`: the change is put
    /// back, appended to the id's partition, and applied when replicated (see the module docs).
    /// Nothing changed: the answer goes out now.
    fn record_change(
        &mut self,
        transactional_id: String,
        before: Option<TransactionMetadata>,
        markers: Option<MarkerJob>,
        answer: Answer,
    ) {
        let after = self.machine.get(&transactional_id).cloned();
        let Some(after) = after.filter(|a| Some(a) != before.as_ref()) else {
            answer.succeed();
            if let Some(job) = markers {
                self.dispatch_markers(job);
            }
            return;
        };
        self.revert(&transactional_id, before);
        let at = match self.serving(&transactional_id) {
            Ok(at) => at,
            Err(e) => return answer.fail(e),
        };
        let appended = state_record(&after).and_then(|kv| {
            self.log.append(
                at.partition,
                at.epoch,
                &[kv],
                crate::replication::replica_manager::now_ms(),
            )
        });
        let replication = match appended {
            Ok(r) => r,
            Err(e) => return answer.fail(write_failed(&e)),
        };
        let Some(tasks) = self.broker.upgrade().map(|b| b.tasks.clone()) else {
            return answer.fail(TxnError::CoordinatorNotAvailable); // shutting down
        };
        // Kafka waits for the ISR as long as the transaction's own timeout; then the client
        // gets COORDINATOR_NOT_AVAILABLE and retries.
        let timeout = Duration::from_millis(u64::try_from(after.timeout_ms).unwrap_or(0).max(1));
        self.pending.entry(transactional_id.clone()).or_default();
        let write = Box::new(Write {
            transactional_id,
            at,
            after,
            markers,
            answer,
        });
        let done = self.sender.clone();
        tasks.spawn("transaction-state-write", async move {
            let result = replication.wait(timeout).await;
            if let Some(done) = done.upgrade() {
                let _ = done.send(Command::Written { write, result }).await;
            }
        });
    }

    /// A state record's replication finished: the change applies if it is committed and this
    /// broker still coordinates the id; then the requests parked behind it run.
    fn written(&mut self, write: Write, result: Result<(), LogError>) {
        let parked = self.pending.remove(&write.transactional_id).unwrap_or_default();
        let current = self.serving(&write.transactional_id) == Ok(write.at);
        match (result, current) {
            (Ok(()), true) => {
                self.machine.restore(write.after);
                write.answer.succeed();
                if let Some(job) = write.markers {
                    self.dispatch_markers(job);
                }
            }
            (Ok(()), false) => write.answer.fail(TxnError::NotCoordinator),
            (Err(e), _) => {
                let error = write_failed(&e);
                if let (Answer::Completion(job), true) = (&write.answer, current) {
                    // The markers are in the logs; the Prepare state stays: write them again.
                    self.dispatch_markers(job.clone());
                }
                write.answer.fail(error);
            }
        }
        for command in parked {
            self.handle(command);
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
        for id in self.machine.timed_out(now) {
            if self.pending.contains_key(&id) {
                continue; // the next round sees what the write in flight leaves
            }
            let before = self.machine.get(&id).cloned();
            let Some(job) = self.machine.abort_timed_out_one(&id, now) else {
                continue;
            };
            tracing::info!(transactional_id = %id, producer_id = job.producer_id,
                "aborting a transaction past its timeout");
            self.record_change(id, before, Some(job), Answer::Nobody);
        }
    }

    /// Forgets ids unused for `transactional.id.expiration.ms`, with a tombstone each (not
    /// waited for: an expiry that is lost only keeps an idle id a while longer).
    fn expire_ids(&mut self) {
        let gone: Vec<String> = self
            .machine
            .expired(now_ms(), self.config.id_expiration_ms)
            .into_iter()
            .filter(|id| !self.pending.contains_key(id))
            .collect();
        if gone.is_empty() {
            return;
        }
        tracing::info!(count = gone.len(), "expiring transactional ids");
        let mut by_partition: HashMap<CoordinatorPartition, Vec<KeyValue>> = HashMap::new();
        for id in &gone {
            let (Ok(at), Ok(key)) = (self.serving(id), record::encode_key(id)) else {
                continue;
            };
            by_partition.entry(at).or_default().push((key, None));
            self.machine.forget(id);
        }
        let now = crate::replication::replica_manager::now_ms();
        for (at, kvs) in by_partition {
            // The replication is not waited for (see above).
            if let Err(e) = self.log.append(at.partition, at.epoch, &kvs, now).map(drop) {
                tracing::warn!(partition = at.partition, error = %e, "writing transactional id tombstones failed");
            }
        }
    }

    /// Writes the job's markers on a task of its own; it reports `MarkersWritten` when done.
    fn dispatch_markers(&self, job: MarkerJob) {
        let Ok(coordinator) = self.serving(&job.transactional_id) else {
            return; // no longer coordinated here: the new coordinator resumes it
        };
        let Some(tasks) = self.broker.upgrade().map(|b| b.tasks.clone()) else {
            return; // the broker is gone: shutting down
        };
        let broker = self.broker.clone();
        let done = self.sender.clone();
        tasks.spawn("transaction-markers", async move {
            if write_markers(&broker, &job, coordinator).await {
                if let Some(done) = done.upgrade() {
                    let _ = done.send(Command::MarkersWritten { job, coordinator }).await;
                }
            }
        });
    }
}

/// An id's state as its `__transaction_state` record.
fn state_record(t: &TransactionMetadata) -> Result<KeyValue, LogError> {
    let encode = |e: record::RecordError| LogError::Encode(e.to_string());
    Ok((
        record::encode_key(&t.transactional_id).map_err(encode)?,
        Some(record::encode_value(t).map_err(encode)?),
    ))
}

#[path = "loading.rs"]
mod loading;
